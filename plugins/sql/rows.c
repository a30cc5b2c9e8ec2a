/*
 * rows.c - key records and accounts as rows of keygate_keys and
 * keygate_accounts and back: every value is text, a list is one column
 * with an item per line, limits are "name count window burst" lines.
 */
#include "config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sql.h"

/* What a list column is read into: a record or an account. */
typedef kg_error (*add_item_fn)(void *obj, const char *item);
typedef kg_error (*add_limit_fn)(void *obj, const char *name, int64_t count,
                                 int64_t window, int64_t burst);

static kg_error rec_perm(void *o, const char *s) { return kg_record_add_permission(o, s); }
static kg_error rec_cidr(void *o, const char *s) { return kg_record_add_cidr(o, s); }
static kg_error rec_limit(void *o, const char *n, int64_t c, int64_t w, int64_t b)
{
    return kg_record_add_limit(o, n, c, w, b);
}
static kg_error acct_perm(void *o, const char *s) { return kg_account_add_permission(o, s); }
static kg_error acct_cidr(void *o, const char *s) { return kg_account_add_cidr(o, s); }
static kg_error acct_limit(void *o, const char *n, int64_t c, int64_t w, int64_t b)
{
    return kg_account_add_limit(o, n, c, w, b);
}

/* A list column: one item per line. */
static kg_error split_lines(const char *s, void *obj, add_item_fn add)
{
    char buf[512];
    while (s != NULL && *s) {
        const char *nl = strchr(s, '\n');
        size_t n = nl ? (size_t)(nl - s) : strlen(s);
        if (n > 0 && n < sizeof(buf)) {
            kg_error e;
            memcpy(buf, s, n);
            buf[n] = '\0';
            if ((e = add(obj, buf)) != KG_OK)
                return e;
        }
        s += n + (nl ? 1 : 0);
    }
    return KG_OK;
}

static kg_error parse_limits(const char *s, void *obj, add_limit_fn add)
{
    while (s != NULL && *s) {
        char name[128];
        long long c, w, b;
        int used = 0;
        if (sscanf(s, "%127s %lld %lld %lld%n", name, &c, &w, &b, &used) != 4)
            return KG_ERR_INVALID;
        if (add(obj, name, c, w, b) != KG_OK)
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

kg_account *sql_row_to_account(int n, const char *const *v)
{
    kg_account *a;

    if (n < SQL_ACCT_NCOLS || v[0] == NULL || v[2] == NULL || v[3] == NULL)
        return NULL;
    if ((a = kg_account_new()) == NULL)
        return NULL;
    if (kg_account_set_id(a, v[0]) != KG_OK ||
        kg_account_set_external_id(a, v[1]) != KG_OK ||
        kg_account_set_name(a, v[2]) != KG_OK ||
        kg_account_set_plan(a, v[3]) != KG_OK ||
        parse_limits(v[4], a, acct_limit) != KG_OK ||
        split_lines(v[5], a, acct_cidr) != KG_OK ||
        split_lines(v[6], a, acct_perm) != KG_OK ||
        (v[10] != NULL && kg_account_set_metadata(a, v[10]) != KG_OK)) {
        kg_account_unref(a);
        return NULL;
    }
    kg_account_set_status(a, v[7] && strcmp(v[7], "active") == 0
                             ? KG_ACCOUNT_ACTIVE : KG_ACCOUNT_SUSPENDED);
    kg_account_set_created(a, to_i64(v[8]));
    kg_account_set_updated(a, to_i64(v[9]));
    return a;
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
        split_lines(v[6], r, rec_perm) != KG_OK ||
        split_lines(v[7], r, rec_cidr) != KG_OK ||
        parse_limits(v[8], r, rec_limit) != KG_OK ||
        kg_record_set_account_id(r, v[12]) != KG_OK ||
        kg_record_set_replaced_by(r, v[13]) != KG_OK ||
        kg_record_set_replaces(r, v[14]) != KG_OK)
        goto bad;
    kg_record_set_status(r, v[5] && strcmp(v[5], "active") == 0
                                ? KG_STATUS_ACTIVE : KG_STATUS_REVOKED);
    kg_record_set_created(r, to_i64(v[9]));
    kg_record_set_expires(r, to_i64(v[10]));
    kg_record_set_last_used(r, to_i64(v[11]));
    /* The joined account, if the row has one: the key's plan is its. */
    if (n >= SQL_NCOLS + SQL_ACCT_NCOLS && v[SQL_NCOLS] != NULL) {
        kg_account *a = sql_row_to_account(n - SQL_NCOLS, v + SQL_NCOLS);
        kg_error e = a == NULL ? KG_ERR_INVALID : kg_record_set_account(r, a);
        if (e == KG_OK)
            e = kg_record_set_plan(r, kg_account_plan(a));
        kg_account_unref(a);
        if (e != KG_OK)
            goto bad;
    }
    return r;
bad:
    kg_record_unref(r);
    return NULL;
}

static int bad_item(const char *s)
{
    for (; *s; s++)
        if (isspace((unsigned char)*s) || iscntrl((unsigned char)*s))
            return 1;
    return 0;
}

/* A list as one column, an item per line (an item with a space or a
 * control character refused, `what` naming it); *out malloc()ed. */
static kg_error join_items(const void *obj, size_t n,
                           const char *(*item)(const void *, size_t),
                           const char *what, char **out, kg_diag *d)
{
    size_t i, len = 1;
    char *s;

    for (i = 0; i < n; i++)
        len += strlen(item(obj, i)) + 1;
    if ((*out = s = calloc(1, len)) == NULL)
        return KG_ERR_NOMEM;
    for (i = 0; i < n; i++) {
        const char *x = item(obj, i);
        if (bad_item(x)) {
            kg_diag_set(d, "%s '%s' contains a space or control character", what, x);
            return KG_ERR_INVALID;
        }
        s += sprintf(s, "%s%s", i ? "\n" : "", x);
    }
    return KG_OK;
}

/* Limits as "name count window burst" lines; *out malloc()ed. */
static kg_error join_limits(const void *obj, size_t n,
                            kg_error (*limit)(const void *, size_t, const char **,
                                              int64_t *, int64_t *, int64_t *),
                            char **out, kg_diag *d)
{
    size_t i, len = 1;
    const char *name;
    int64_t c, w, b;
    char *s;

    for (i = 0; i < n; i++) {
        limit(obj, i, &name, &c, &w, &b);
        len += strlen(name) + 80;
    }
    if ((*out = s = calloc(1, len)) == NULL)
        return KG_ERR_NOMEM;
    for (i = 0; i < n; i++) {
        limit(obj, i, &name, &c, &w, &b);
        if (*name == '\0' || strlen(name) > 127 || bad_item(name)) {
            kg_diag_set(d, "limit name '%s' must be 1-127 characters without "
                     "spaces", name);
            return KG_ERR_INVALID;
        }
        s += sprintf(s, "%s%s %lld %lld %lld", i ? "\n" : "", name,
                     (long long)c, (long long)w, (long long)b);
    }
    return KG_OK;
}

static const char *rec_perm_at(const void *o, size_t i) { return kg_record_permission(o, i); }
static const char *rec_cidr_at(const void *o, size_t i) { return kg_record_cidr(o, i); }
static kg_error rec_limit_at(const void *o, size_t i, const char **n, int64_t *c,
                             int64_t *w, int64_t *b)
{
    return kg_record_limit(o, i, n, c, w, b);
}
static const char *acct_perm_at(const void *o, size_t i) { return kg_account_permission(o, i); }
static const char *acct_cidr_at(const void *o, size_t i) { return kg_account_cidr(o, i); }
static kg_error acct_limit_at(const void *o, size_t i, const char **n, int64_t *c,
                              int64_t *w, int64_t *b)
{
    return kg_account_limit(o, i, n, c, w, b);
}

void sql_params_free(struct sql_params *p)
{
    free(p->perms);
    free(p->cidrs);
    free(p->limits);
    kg_wipe(p->hash, sizeof(p->hash));
}

kg_error sql_params_build(struct sql_params *p, const kg_record *r, kg_diag *d)
{
    kg_error e;

    memset(p, 0, sizeof(*p));
    kg_hash_to_hex(kg_record_hash(r), p->hash);
    if ((e = join_items(r, kg_record_permission_count(r), rec_perm_at,
                        "permission", &p->perms, d)) != KG_OK ||
        (e = join_items(r, kg_record_cidr_count(r), rec_cidr_at, "address",
                        &p->cidrs, d)) != KG_OK ||
        (e = join_limits(r, kg_record_limit_count(r), rec_limit_at, &p->limits,
                         d)) != KG_OK)
        return e;
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
    p->v[12] = kg_record_account_id(r);
    p->v[13] = kg_record_replaced_by(r);
    p->v[14] = kg_record_replaces(r);
    if (p->v[0] == NULL || p->v[4] == NULL) {
        kg_diag_set(d, "a key record needs an id and a plan");
        return KG_ERR_INVALID;
    }
    return KG_OK;
}

void sql_acct_params_free(struct sql_acct_params *p)
{
    free(p->perms);
    free(p->cidrs);
    free(p->limits);
}

kg_error sql_acct_params_build(struct sql_acct_params *p, const kg_account *a,
                               kg_diag *d)
{
    kg_error e;

    memset(p, 0, sizeof(*p));
    if ((e = join_items(a, kg_account_permission_count(a), acct_perm_at,
                        "permissions: permission", &p->perms, d)) != KG_OK ||
        (e = join_items(a, kg_account_cidr_count(a), acct_cidr_at,
                        "allowed_cidrs: address", &p->cidrs, d)) != KG_OK ||
        (e = join_limits(a, kg_account_limit_count(a), acct_limit_at,
                         &p->limits, d)) != KG_OK)
        return e;
    snprintf(p->created, sizeof(p->created), "%lld", (long long)kg_account_created(a));
    snprintf(p->updated, sizeof(p->updated), "%lld", (long long)kg_account_updated(a));
    p->v[0] = kg_account_id(a);
    p->v[1] = kg_account_external_id(a);
    p->v[2] = kg_account_name(a);
    p->v[3] = kg_account_plan(a);
    p->v[4] = p->limits;
    p->v[5] = p->cidrs;
    p->v[6] = p->perms;
    p->v[7] = kg_account_status_name(kg_account_status_of(a));
    p->v[8] = p->created;
    p->v[9] = p->updated;
    p->v[10] = kg_account_metadata(a);
    if (p->v[0] == NULL || p->v[2] == NULL || p->v[3] == NULL) {
        kg_diag_set(d, "an account needs an id, a name and a plan");
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

int sql_one_ll(void *ud, int n, const char *const *v)
{
    if (n > 0 && v[0] != NULL)
        *(long long *)ud = strtoll(v[0], NULL, 10);
    return 1;
}
