/*
 * keygated_admin_reply.c - the admin API's answers: JSON with the
 * security headers every one carries, errors in the service's one shape
 * ({"error":{"code","message","field"?}}), ETags and list pages.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <microhttpd.h>

#include "keygated_admin.h"

/* Every admin answer: not sniffed into HTML, not cached (it holds
 * keys' settings, and once a key), not framed. */
static const struct kgd_hdr security[] = {
    { "X-Content-Type-Options", "nosniff" },
    { "Cache-Control", "no-store" },
    { "X-Frame-Options", "DENY" },
    { "Referrer-Policy", "no-referrer" },
};

int kgd_admin_raw(struct MHD_Connection *conn, unsigned status,
                  const char *type, const char *body, size_t len,
                  const struct kgd_hdr *extra, size_t nextra)
{
    struct MHD_Response *r;
    size_t i;
    int ret;

    r = MHD_create_response_from_buffer(len, (void *)(body ? body : ""),
                                        MHD_RESPMEM_MUST_COPY);
    if (r == NULL)
        return MHD_NO;
    if (type != NULL && len > 0)
        MHD_add_response_header(r, "Content-Type", type);
    for (i = 0; i < sizeof(security) / sizeof(security[0]); i++)
        MHD_add_response_header(r, security[i].name, security[i].value);
    for (i = 0; i < nextra; i++)
        MHD_add_response_header(r, extra[i].name, extra[i].value);
    ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

int kgd_admin_json(kgd_admin_call *c, unsigned status, json_t *body,
                   const char *etag)
{
    struct kgd_hdr h = { "ETag", etag };
    char *text = NULL;
    int ret;

    if (body != NULL) {
        text = json_dumps(body, JSON_COMPACT);
        json_decref(body);
        if (text == NULL)
            return MHD_NO;
    }
    ret = kgd_admin_raw(c->conn, status, "application/json", text,
                        text ? strlen(text) : 0, &h, etag ? 1 : 0);
    free(text);
    return ret;
}

int kgd_admin_error(kgd_admin_call *c, unsigned status, const char *code,
                    const char *message, const char *field)
{
    json_t *err = json_pack("{s:s, s:s}", "code", code, "message", message);
    if (err != NULL && field != NULL)
        json_object_set_new(err, "field", json_string(field));
    if (err == NULL)
        return MHD_NO;
    return kgd_admin_json(c, status, json_pack("{s:o}", "error", err), NULL);
}

unsigned kgd_admin_status_of(kg_error e)
{
    switch (e) {
    case KG_ERR_NOT_FOUND: return 404;
    case KG_ERR_INVALID: return 400;
    case KG_ERR_EXISTS: return 409;
    case KG_ERR_READONLY: return 409;
    case KG_ERR_UNSUPPORTED: return 501;
    case KG_ERR_UNAVAILABLE: return 503;
    default: return 500;
    }
}

const char *kgd_admin_code_of(kg_error e)
{
    switch (e) {
    case KG_ERR_NOT_FOUND: return "not_found";
    case KG_ERR_INVALID: return "invalid_request";
    case KG_ERR_EXISTS: return "conflict";
    case KG_ERR_READONLY: return "read_only";
    case KG_ERR_UNSUPPORTED: return "not_implemented";
    case KG_ERR_UNAVAILABLE: return "unavailable";
    default: return "internal_error";
    }
}

int kgd_admin_kg_error(kgd_admin_call *c, kg_error e, const kg_diag *d,
                       const char *field)
{
    /* The message alone: the diag's file is the server's policy path. */
    const char *m = d != NULL && d->message[0] != '\0' ? d->message
                                                       : kg_strerror(e);

    return kgd_admin_error(c, kgd_admin_status_of(e), kgd_admin_code_of(e), m,
                           e == KG_ERR_INVALID ? field : NULL);
}

void kgd_admin_etag(json_t *resource, const char *skip, char out[24])
{
    unsigned char h[KG_HASH_LEN];
    json_t *copy = json_copy(resource);
    char *text;
    int i;

    if (copy != NULL && skip != NULL)
        json_object_del(copy, skip);
    /* sorted keys: the same resource, the same tag */
    text = copy ? json_dumps(copy, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(copy);
    memset(h, 0, sizeof(h));
    if (text != NULL)
        kg_key_hash(text, strlen(text), h);
    free(text);
    out[0] = '"';
    for (i = 0; i < 8; i++)
        snprintf(out + 1 + 2 * i, 3, "%02x", h[i]);
    out[17] = '"';
    out[18] = '\0';
}

json_t *kgd_admin_parse(char *text)
{
    json_t *j = NULL;
    if (text != NULL)
        j = json_loads(text, 0, NULL);
    free(text);
    if (j != NULL && !json_is_object(j)) {
        json_decref(j);
        j = NULL;
    }
    return j;
}

/* The cursor: the last id, in hex (opaque to clients; ids are short). */
static void cursor_of(const char *id, char *out, size_t size)
{
    size_t i, n = 0;
    for (i = 0; id[i] && n + 3 < size; i++)
        n += (size_t)snprintf(out + n, size - n, "%02x", (unsigned char)id[i]);
    out[n] = '\0';
}

static int cursor_parse(const char *s, char *out, size_t size)
{
    size_t i, n = strlen(s);
    if (n % 2 != 0 || n / 2 >= size || n == 0)
        return -1;
    for (i = 0; i < n; i += 2) {
        unsigned v;
        if (sscanf(s + i, "%2x", &v) != 1 || !strchr("0123456789abcdef", s[i]) ||
            !strchr("0123456789abcdef", s[i + 1]) || v == 0)
            return -1;
        out[i / 2] = (char)v;
    }
    out[n / 2] = '\0';
    return 0;
}

int kgd_admin_page(kgd_admin_call *c, size_t *limit_r, char *after,
                   size_t after_size, int *ret_r)
{
    const char *l = MHD_lookup_connection_value(c->conn, MHD_GET_ARGUMENT_KIND, "limit");
    const char *cur = MHD_lookup_connection_value(c->conn, MHD_GET_ARGUMENT_KIND, "cursor");
    char *end;
    unsigned long v;

    *limit_r = KGD_ADMIN_PAGE_DEFAULT;
    after[0] = '\0';
    if (l != NULL) {
        v = strtoul(l, &end, 10);
        if (*l == '\0' || *end != '\0' || *l == '-' || v < 1 ||
            v > KGD_ADMIN_PAGE_MAX) {
            *ret_r = kgd_admin_error(c, 400, "invalid_request",
                                     "limit must be a number from 1 to 500",
                                     "limit");
            return -1;
        }
        *limit_r = v;
    }
    if (cur != NULL && *cur != '\0' && cursor_parse(cur, after, after_size) != 0) {
        *ret_r = kgd_admin_error(c, 400, "invalid_request",
                                 "cursor is not one this API gave", "cursor");
        return -1;
    }
    return 0;
}

json_t *kgd_admin_list(json_t *items, const char *last_id, int more)
{
    char cur[2 * KG_ACCOUNT_ID_MAX + 4];
    if (!more || last_id == NULL)
        return json_pack("{s:o, s:n}", "items", items, "next_cursor");
    cursor_of(last_id, cur, sizeof(cur));
    return json_pack("{s:o, s:s}", "items", items, "next_cursor", cur);
}

json_t *kgd_admin_time(int64_t t)
{
    char ts[32];
    if (t == 0)
        return json_null();
    kg_time_format(t, ts);
    return json_string(ts);
}

int kgd_admin_time_arg(kgd_admin_call *c, const char *name, int64_t def,
                       int64_t *t_r, int *ret_r)
{
    const char *s = MHD_lookup_connection_value(c->conn, MHD_GET_ARGUMENT_KIND, name);
    int64_t v;
    char msg[160];

    *t_r = def;
    if (s == NULL)
        return 0;
    if (kg_duration_parse(s, &v) == KG_OK) {
        *t_r = (int64_t)time(NULL) - v;
        return 0;
    }
    if (kg_time_parse(s, &v) == KG_OK) {
        *t_r = v;
        return 0;
    }
    snprintf(msg, sizeof(msg), "%s must be a duration back from now (7d, "
             "12h) or a time (2026-12-31, 2026-12-31T12:00:00Z)", name);
    *ret_r = kgd_admin_error(c, 400, "invalid_request", msg, name);
    return -1;
}

int kgd_admin_idpage_start(kgd_admin_call *c, struct kgd_admin_idpage *pg,
                           int64_t *before_r, size_t *ask_r, int *ret_r)
{
    char after[KG_ACCOUNT_ID_MAX + 1];

    memset(pg, 0, sizeof(*pg));
    *before_r = 0;
    if (kgd_admin_page(c, &pg->limit, after, sizeof(after), ret_r) != 0)
        return -1;
    if (after[0] != '\0') {
        char *end;
        *before_r = strtoll(after, &end, 10);
        if (*end != '\0' || *before_r <= 0) {
            *ret_r = kgd_admin_error(c, 400, "invalid_request",
                                     "cursor is not one this API gave", "cursor");
            return -1;
        }
    }
    if ((pg->items = json_array()) == NULL) {
        *ret_r = MHD_NO;
        return -1;
    }
    *ask_r = pg->limit + 1;
    return 0;
}

int kgd_admin_idpage_add(struct kgd_admin_idpage *pg, json_t *j, int64_t id)
{
    if (pg->n == pg->limit) {   /* one more than a page: there is a next */
        json_decref(j);
        pg->n++;
        return 1;
    }
    if (j == NULL || json_array_append_new(pg->items, j) != 0) {
        pg->oom = 1;
        return 1;
    }
    pg->last_id = id;
    pg->n++;
    return 0;
}

int kgd_admin_idpage_answer(kgd_admin_call *c, struct kgd_admin_idpage *pg)
{
    char last[32];
    json_t *items = pg->items;

    pg->items = NULL;
    if (pg->oom) {
        json_decref(items);
        return MHD_NO;
    }
    snprintf(last, sizeof(last), "%lld", (long long)pg->last_id);
    return kgd_admin_json(c, 200, kgd_admin_list(items, last, pg->n > pg->limit),
                          NULL);
}
