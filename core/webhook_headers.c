/*
 * webhook_headers.c - the header list a signer writes and a verifier
 * reads: names compared case-insensitively, values trimmed of blanks,
 * duplicates kept (and counted) so that a scheme can refuse a signature
 * header that appears twice.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <keygate/webhook.h>

struct kg_webhook_headers {
    char **name;
    char **value;
    size_t n, cap;
};

kg_error kg_webhook_headers_new(kg_webhook_headers **h_r)
{
    if (h_r == NULL)
        return KG_ERR_INVALID;
    *h_r = calloc(1, sizeof(**h_r));
    return *h_r ? KG_OK : KG_ERR_NOMEM;
}

void kg_webhook_headers_reset(kg_webhook_headers *h)
{
    size_t i;
    if (h == NULL)
        return;
    for (i = 0; i < h->n; i++) {
        free(h->name[i]);
        free(h->value[i]);
    }
    h->n = 0;
}

void kg_webhook_headers_free(kg_webhook_headers *h)
{
    if (h == NULL)
        return;
    kg_webhook_headers_reset(h);
    free(h->name);
    free(h->value);
    free(h);
}

static int blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static int token_char(unsigned char c)
{
    /* RFC 9110 tchar */
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || (c && strchr("!#$%&'*+-.^_`|~", c));
}

static kg_error add_n(kg_webhook_headers *h, const char *name, size_t nlen,
                      const char *value, size_t vlen)
{
    size_t i;
    char *n, *v;

    if (nlen == 0)
        return KG_ERR_INVALID;
    for (i = 0; i < nlen; i++)
        if (!token_char((unsigned char)name[i]))
            return KG_ERR_INVALID;
    while (vlen > 0 && blank(*value)) {
        value++;
        vlen--;
    }
    while (vlen > 0 && blank(value[vlen - 1]))
        vlen--;
    /* A line break or NUL inside a value would forge another header. */
    for (i = 0; i < vlen; i++)
        if (value[i] == '\r' || value[i] == '\n' || value[i] == '\0')
            return KG_ERR_INVALID;
    if (h->n == h->cap) {
        size_t cap = h->cap ? 2 * h->cap : 4;
        char **nn = realloc(h->name, cap * sizeof(*nn));
        char **nv;
        if (nn == NULL)
            return KG_ERR_NOMEM;
        h->name = nn;
        nv = realloc(h->value, cap * sizeof(*nv));
        if (nv == NULL)
            return KG_ERR_NOMEM;
        h->value = nv;
        h->cap = cap;
    }
    n = kg__strndup(name, nlen);
    v = kg__strndup(value, vlen);
    if (n == NULL || v == NULL) {
        free(n);
        free(v);
        return KG_ERR_NOMEM;
    }
    h->name[h->n] = n;
    h->value[h->n] = v;
    h->n++;
    return KG_OK;
}

kg_error kg_webhook_headers_add(kg_webhook_headers *h, const char *name,
                                const char *value)
{
    if (h == NULL || name == NULL || value == NULL)
        return KG_ERR_INVALID;
    return add_n(h, name, strlen(name), value, strlen(value));
}

kg_error kg_webhook_headers_add_line(kg_webhook_headers *h, const char *line)
{
    const char *colon;

    if (h == NULL || line == NULL)
        return KG_ERR_INVALID;
    colon = strchr(line, ':');
    if (colon == NULL)
        return KG_ERR_INVALID;
    /* No blank between the name and the colon (RFC 9112 section 5.1). */
    return add_n(h, line, (size_t)(colon - line), colon + 1, strlen(colon + 1));
}

size_t kg_webhook_headers_count(const kg_webhook_headers *h)
{
    return h ? h->n : 0;
}

kg_error kg_webhook_headers_at(const kg_webhook_headers *h, size_t i,
                               const char **name_r, const char **value_r)
{
    if (h == NULL || i >= h->n)
        return KG_ERR_NOT_FOUND;
    if (name_r)
        *name_r = h->name[i];
    if (value_r)
        *value_r = h->value[i];
    return KG_OK;
}

const char *kg_webhook_headers_get(const kg_webhook_headers *h,
                                   const char *name, size_t *count_r)
{
    const char *first = NULL;
    size_t i, count = 0;

    if (h != NULL && name != NULL) {
        for (i = 0; i < h->n; i++) {
            if (strcasecmp(h->name[i], name) != 0)
                continue;
            if (count++ == 0)
                first = h->value[i];
        }
    }
    if (count_r != NULL)
        *count_r = count;
    return first;
}
