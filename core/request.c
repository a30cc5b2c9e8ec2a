/*
 * request.c - what a front end knows of a request: method, path, client
 * address and headers.  Header values are kept byte for byte (they may
 * hold NULs; the stages decide what is malformed) and are wiped when the
 * request is reset or freed, since one of them carries the key.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct kg__header {
    char *name;
    char *value;
    size_t vlen;
};

struct kg_request {
    char *method;
    char *path;
    char *client;
    struct kg__header *h;
    size_t nh;
    size_t cap;
};

kg_error kg_request_new(kg_request **req_r)
{
    kg_request *r;
    if (req_r == NULL)
        return KG_ERR_INVALID;
    r = calloc(1, sizeof(*r));
    if (r == NULL)
        return KG_ERR_NOMEM;
    *req_r = r;
    return KG_OK;
}

void kg_request_reset(kg_request *r)
{
    size_t i;
    if (r == NULL)
        return;
    for (i = 0; i < r->nh; i++) {
        free(r->h[i].name);
        kg_wipe(r->h[i].value, r->h[i].vlen);
        free(r->h[i].value);
    }
    r->nh = 0;
    free(r->method);
    free(r->path);
    free(r->client);
    r->method = r->path = r->client = NULL;
}

void kg_request_free(kg_request *r)
{
    if (r == NULL)
        return;
    kg_request_reset(r);
    free(r->h);
    free(r);
}

static kg_error set(char **dst, const char *s)
{
    char *p;
    if (s == NULL)
        return KG_ERR_INVALID;
    p = strdup(s);
    if (p == NULL)
        return KG_ERR_NOMEM;
    free(*dst);
    *dst = p;
    return KG_OK;
}

kg_error kg_request_set_method(kg_request *r, const char *m) { return r ? set(&r->method, m) : KG_ERR_INVALID; }
kg_error kg_request_set_path(kg_request *r, const char *p) { return r ? set(&r->path, p) : KG_ERR_INVALID; }
kg_error kg_request_set_client(kg_request *r, const char *c) { return r ? set(&r->client, c) : KG_ERR_INVALID; }

kg_error kg_request_add_header_n(kg_request *r, const char *name,
                                 size_t name_len, const char *value,
                                 size_t value_len)
{
    struct kg__header *nh;
    char *n, *v;

    if (r == NULL || name == NULL || value == NULL)
        return KG_ERR_INVALID;
    if (r->nh == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 8;
        nh = realloc(r->h, cap * sizeof(*nh));
        if (nh == NULL)
            return KG_ERR_NOMEM;
        r->h = nh;
        r->cap = cap;
    }
    n = kg__strndup(name, name_len);
    v = kg__strndup(value, value_len);
    if (n == NULL || v == NULL) {
        free(n);
        free(v);
        return KG_ERR_NOMEM;
    }
    r->h[r->nh].name = n;
    r->h[r->nh].value = v;
    r->h[r->nh].vlen = value_len;
    r->nh++;
    return KG_OK;
}

kg_error kg_request_add_header(kg_request *r, const char *name,
                               const char *value)
{
    if (name == NULL || value == NULL)
        return KG_ERR_INVALID;
    return kg_request_add_header_n(r, name, strlen(name), value,
                                   strlen(value));
}

const char *kg_request_method(const kg_request *r) { return r->method ? r->method : "GET"; }
const char *kg_request_path(const kg_request *r) { return r->path ? r->path : "/"; }
const char *kg_request_client(const kg_request *r) { return r->client; }
size_t kg_request_header_count(const kg_request *r) { return r->nh; }

kg_error kg_request_header_at(const kg_request *r, size_t i,
                              const char **name_r, const char **value_r,
                              size_t *len_r)
{
    if (i >= r->nh)
        return KG_ERR_NOT_FOUND;
    if (name_r) *name_r = r->h[i].name;
    if (value_r) *value_r = r->h[i].value;
    if (len_r) *len_r = r->h[i].vlen;
    return KG_OK;
}

const char *kg_request_header_find(const kg_request *r, const char *name,
                                   size_t nth, size_t *len_r)
{
    size_t i;
    for (i = 0; i < r->nh; i++) {
        if (strcasecmp(r->h[i].name, name) == 0 && nth-- == 0) {
            if (len_r)
                *len_r = r->h[i].vlen;
            return r->h[i].value;
        }
    }
    return NULL;
}
