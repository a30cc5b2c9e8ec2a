/*
 * rows.c - key records as rows of keygate_keys and back: every value is
 * text, a list is one column with an item per line, limits are
 * "name count window burst" lines.
 */
#include "config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sql.h"

/* A list column: one item per line. */
static kg_error split_lines(const char *s, kg_record *r,
                            kg_error (*add)(kg_record *, const char *))
{
    char buf[512];
    while (s != NULL && *s) {
        const char *nl = strchr(s, '\n');
        size_t n = nl ? (size_t)(nl - s) : strlen(s);
        if (n > 0 && n < sizeof(buf)) {
            kg_error e;
            memcpy(buf, s, n);
            buf[n] = '\0';
            if ((e = add(r, buf)) != KG_OK)
                return e;
        }
        s += n + (nl ? 1 : 0);
    }
    return KG_OK;
}

static kg_error parse_limits(const char *s, kg_record *r)
{
    while (s != NULL && *s) {
        char name[128];
        long long c, w, b;
        int used = 0;
        if (sscanf(s, "%127s %lld %lld %lld%n", name, &c, &w, &b, &used) != 4)
            return KG_ERR_INVALID;
        if (kg_record_add_limit(r, name, c, w, b) != KG_OK)
            return KG_ERR_INVALID;
        s += used;
        while (*s == '\n')
            s++;
    }
    return KG_OK;
}

static int64_t to_i64(const char *s)
{
    return s ? (int64_t)strtoll(s, NULL, 10) : 0;
}

kg_record *sql_row_to_record(int n, const char *const *v)
{
    kg_record *r;
    unsigned char h[KG_HASH_LEN];

    if (n < SQL_NCOLS || v[0] == NULL || v[1] == NULL || v[4] == NULL)
        return NULL;
    if (kg_hash_from_hex(v[1], h) != KG_OK)
        return NULL;
    r = kg_record_new();
    if (r == NULL)
        return NULL;
    kg_record_set_hash(r, h);
    kg_wipe(h, sizeof(h));
    if (kg_record_set_id(r, v[0]) != KG_OK ||
        kg_record_set_name(r, v[2]) != KG_OK ||
        kg_record_set_prefix(r, v[3]) != KG_OK ||
        kg_record_set_plan(r, v[4]) != KG_OK ||
        split_lines(v[6], r, kg_record_add_permission) != KG_OK ||
        split_lines(v[7], r, kg_record_add_cidr) != KG_OK ||
        parse_limits(v[8], r) != KG_OK) {
        kg_record_unref(r);
        return NULL;
    }
    kg_record_set_status(r, v[5] && strcmp(v[5], "active") == 0
                                ? KG_STATUS_ACTIVE : KG_STATUS_REVOKED);
    kg_record_set_created(r, to_i64(v[9]));
    kg_record_set_expires(r, to_i64(v[10]));
    kg_record_set_last_used(r, to_i64(v[11]));
    return r;
}

void sql_params_free(struct sql_params *p)
{
    free(p->perms);
    free(p->cidrs);
    free(p->limits);
    kg_wipe(p->hash, sizeof(p->hash));
}

static int bad_item(const char *s)
{
    for (; *s; s++)
        if (isspace((unsigned char)*s) || iscntrl((unsigned char)*s))
            return 1;
    return 0;
}

kg_error sql_params_build(struct sql_params *p, const kg_record *r, kg_diag *d)
{
    size_t i, len;
    char *s;

    memset(p, 0, sizeof(*p));
    kg_hash_to_hex(kg_record_hash(r), p->hash);
    /* Each list is one column, an item per line. */
    for (len = 1, i = 0; i < kg_record_permission_count(r); i++)
        len += strlen(kg_record_permission(r, i)) + 1;
    for (i = 0; i < kg_record_cidr_count(r); i++)
        len += strlen(kg_record_cidr(r, i)) + 1;
    for (i = 0; i < kg_record_limit_count(r); i++) {
        const char *name;
        int64_t c, w, b;
        kg_record_limit(r, i, &name, &c, &w, &b);
        len += strlen(name) + 80;
    }
    p->perms = calloc(1, len);
    p->cidrs = calloc(1, len);
    p->limits = calloc(1, len);
    if (p->perms == NULL || p->cidrs == NULL || p->limits == NULL)
        return KG_ERR_NOMEM;
    for (s = p->perms, i = 0; i < kg_record_permission_count(r); i++) {
        const char *x = kg_record_permission(r, i);
        if (bad_item(x)) {
            kg_diag_set(d, "permission '%s' contains a space or control character", x);
            return KG_ERR_INVALID;
        }
        s += sprintf(s, "%s%s", i ? "\n" : "", x);
    }
    for (s = p->cidrs, i = 0; i < kg_record_cidr_count(r); i++) {
        const char *x = kg_record_cidr(r, i);
        if (bad_item(x)) {
            kg_diag_set(d, "address '%s' contains a space or control character", x);
            return KG_ERR_INVALID;
        }
        s += sprintf(s, "%s%s", i ? "\n" : "", x);
    }
    for (s = p->limits, i = 0; i < kg_record_limit_count(r); i++) {
        const char *name;
        int64_t c, w, b;
        kg_record_limit(r, i, &name, &c, &w, &b);
        if (*name == '\0' || strlen(name) > 127 || bad_item(name)) {
            kg_diag_set(d, "limit name '%s' must be 1-127 characters without "
                     "spaces", name);
            return KG_ERR_INVALID;
        }
        s += sprintf(s, "%s%s %lld %lld %lld", i ? "\n" : "", name,
                     (long long)c, (long long)w, (long long)b);
    }
    snprintf(p->created, sizeof(p->created), "%lld", (long long)kg_record_created(r));
    snprintf(p->expires, sizeof(p->expires), "%lld", (long long)kg_record_expires(r));
    snprintf(p->last_used, sizeof(p->last_used), "%lld", (long long)kg_record_last_used(r));
    p->v[0] = kg_record_id(r);
    p->v[1] = p->hash;
    p->v[2] = kg_record_name(r);
    p->v[3] = kg_record_prefix(r);
    p->v[4] = kg_record_plan(r);
    p->v[5] = kg_record_status(r) == KG_STATUS_REVOKED ? "revoked" : "active";
    p->v[6] = p->perms;
    p->v[7] = p->cidrs;
    p->v[8] = p->limits;
    p->v[9] = p->created;
    p->v[10] = kg_record_expires(r) ? p->expires : NULL;
    p->v[11] = kg_record_last_used(r) ? p->last_used : NULL;
    if (p->v[0] == NULL || p->v[4] == NULL) {
        kg_diag_set(d, "a key record needs an id and a plan");
        return KG_ERR_INVALID;
    }
    return KG_OK;
}

int sql_one_row(void *ud, int n, const char *const *v)
{
    struct sql_one *o = ud;
    o->rec = sql_row_to_record(n, v);
    o->bad = o->rec == NULL;
    return 1;
}
