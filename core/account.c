/*
 * account.c - account records: the customer that owns keys, its plan,
 * its limit overrides, the ceiling of its keys' networks and
 * permissions, its status and metadata (docs/policy.md "Accounts").
 * Reference counted like key records; a key record holds a reference to
 * its account (kg_record_set_account), so a check reads both.
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

kg_account *kg_account_new(void)
{
    kg_account *a;
    /* Aligned: the fields a check reads are one cache line. */
    if (posix_memalign((void **)&a, 64, sizeof(*a)) != 0)
        return NULL;
    memset(a, 0, sizeof(*a));
    atomic_init(&a->refs, 1);
    return a;
}

kg_account *kg_account_ref(kg_account *a)
{
    if (a != NULL)
        atomic_fetch_add_explicit(&a->refs, 1, memory_order_relaxed);
    return a;
}

void kg_account_unref(kg_account *a)
{
    if (a == NULL ||
        atomic_fetch_sub_explicit(&a->refs, 1, memory_order_acq_rel) != 1)
        return;
    if (a->id != a->idbuf)
        free(a->id);
    free(a->external_id);
    free(a->name);
    if (a->plan != a->planbuf)
        free(a->plan);
    free(a->metadata);
    kg__strv_free(a->perms, a->nperms);
    kg__strv_free(a->cidrs, a->ncidrs);
    free(a->nets);
    kg__overrides_free(a->limits, a->nlimits);
    free(a);
}

kg_error kg_account_set_id(kg_account *a, const char *s) { return kg__str_set_inline(&a->id, a->idbuf, sizeof(a->idbuf), s); }
kg_error kg_account_set_external_id(kg_account *a, const char *s) { return kg__str_set(&a->external_id, s); }
kg_error kg_account_set_name(kg_account *a, const char *s) { return kg__str_set(&a->name, s); }
kg_error kg_account_set_plan(kg_account *a, const char *s) { return kg__str_set_inline(&a->plan, a->planbuf, sizeof(a->planbuf), s); }

kg_error kg_account_set_metadata(kg_account *a, const char *json)
{
    char err[160], *canon = NULL;
    if (json == NULL) {
        free(a->metadata);
        a->metadata = NULL;
        return KG_OK;
    }
    if (strlen(json) > KG_ACCOUNT_METADATA_MAX ||
        kg__json_object_canon(json, strlen(json), &canon, err, sizeof(err)) != 0)
        return KG_ERR_INVALID;
    free(a->metadata);
    a->metadata = canon;
    return KG_OK;
}

void kg_account_set_status(kg_account *a, kg_account_status s) { a->status = s; }
void kg_account_set_created(kg_account *a, int64_t t) { a->created = t; }
void kg_account_set_updated(kg_account *a, int64_t t) { a->updated = t; }

kg_error kg_account_add_permission(kg_account *a, const char *p)
{
    return kg__strv_push(&a->perms, &a->nperms, p);
}

kg_error kg_account_add_cidr(kg_account *a, const char *c)
{
    return kg__nets_push(&a->cidrs, &a->ncidrs, &a->nets, &a->nnets, c);
}

kg_error kg_account_add_limit(kg_account *a, const char *name, int64_t count,
                              int64_t window, int64_t burst)
{
    return kg__override_set(&a->limits, &a->nlimits, name, count, window, burst);
}

void kg_account_clear_permissions(kg_account *a)
{
    kg__strv_free(a->perms, a->nperms);
    a->perms = NULL;
    a->nperms = 0;
}

void kg_account_clear_cidrs(kg_account *a)
{
    kg__nets_clear(&a->cidrs, &a->ncidrs, &a->nets, &a->nnets);
}

void kg_account_clear_limits(kg_account *a)
{
    kg__overrides_free(a->limits, a->nlimits);
    a->limits = NULL;
    a->nlimits = 0;
}

kg_account *kg_account_for_key(const kg_record *r, unsigned n, int64_t now)
{
    const char *kid = kg_record_id(r), *name = kg_record_name(r);
    char id[KG_ACCOUNT_ID_MAX + 1];
    kg_account *a;
    kg_error e = KG_OK;
    size_t i;

    if (kid == NULL || (a = kg_account_new()) == NULL)
        return NULL;
    if (strncmp(kid, "k_", 2) == 0)
        kid += 2;
    if (n == 0)
        snprintf(id, sizeof(id), "acct_%s", kid);
    else
        snprintf(id, sizeof(id), "acct_%s.%u", kid, n);
    e |= kg_account_set_id(a, id);
    e |= kg_account_set_name(a, name != NULL ? name : kg_record_id(r));
    e |= kg_account_set_plan(a, kg_record_plan(r));
    a->created = kg_record_created(r) ? kg_record_created(r) : now;
    a->updated = now;
    /* The key's overrides become the account's: they were the plan's
     * limits for this key, now counted per account. */
    for (i = 0; i < kg_record_limit_count(r); i++) {
        const char *lname;
        int64_t c, w, b;
        kg_record_limit(r, i, &lname, &c, &w, &b);
        e |= kg_account_add_limit(a, lname, c, w, b);
    }
    if (e != KG_OK) {
        kg_account_unref(a);
        return NULL;
    }
    return a;
}

kg_account *kg_account_dup(const kg_account *a)
{
    kg_account *c;
    kg_error e = KG_OK;
    size_t i;

    if (a == NULL || (c = kg_account_new()) == NULL)
        return NULL;
    e |= kg_account_set_id(c, a->id);
    e |= kg__str_set(&c->external_id, a->external_id);
    e |= kg__str_set(&c->name, a->name);
    e |= kg_account_set_plan(c, a->plan);
    e |= kg__str_set(&c->metadata, a->metadata);
    c->status = a->status;
    c->created = a->created;
    c->updated = a->updated;
    for (i = 0; i < a->nperms; i++)
        e |= kg_account_add_permission(c, a->perms[i]);
    for (i = 0; i < a->ncidrs; i++)
        e |= kg_account_add_cidr(c, a->cidrs[i]);
    for (i = 0; i < a->nlimits; i++)
        e |= kg_account_add_limit(c, a->limits[i].name, a->limits[i].count,
                                  a->limits[i].window, a->limits[i].burst);
    if (e != KG_OK) {
        kg_account_unref(c);
        return NULL;
    }
    return c;
}

const char *kg_account_id(const kg_account *a) { return a->id; }
const char *kg_account_external_id(const kg_account *a) { return a->external_id; }
const char *kg_account_name(const kg_account *a) { return a->name; }
const char *kg_account_plan(const kg_account *a) { return a->plan; }
const char *kg_account_metadata(const kg_account *a) { return a->metadata; }
kg_account_status kg_account_status_of(const kg_account *a) { return a->status; }
int64_t kg_account_created(const kg_account *a) { return a->created; }
int64_t kg_account_updated(const kg_account *a) { return a->updated; }
size_t kg_account_permission_count(const kg_account *a) { return a->nperms; }
const char *kg_account_permission(const kg_account *a, size_t i)
{
    return i < a->nperms ? a->perms[i] : NULL;
}
size_t kg_account_cidr_count(const kg_account *a) { return a->ncidrs; }
const char *kg_account_cidr(const kg_account *a, size_t i)
{
    return i < a->ncidrs ? a->cidrs[i] : NULL;
}
const kg_cidr *kg_account_allowed_nets(const kg_account *a, size_t *n_r)
{
    *n_r = a->nnets;
    return a->nets;
}
size_t kg_account_limit_count(const kg_account *a) { return a->nlimits; }

kg_error kg_account_limit(const kg_account *a, size_t i, const char **name_r,
                          int64_t *count_r, int64_t *window_r, int64_t *burst_r)
{
    if (i >= a->nlimits)
        return KG_ERR_NOT_FOUND;
    if (name_r) *name_r = a->limits[i].name;
    if (count_r) *count_r = a->limits[i].count;
    if (window_r) *window_r = a->limits[i].window;
    if (burst_r) *burst_r = a->limits[i].burst;
    return KG_OK;
}

const char *kg_account_status_name(kg_account_status s)
{
    return s == KG_ACCOUNT_SUSPENDED ? "suspended" : "active";
}

int kg__account_id_valid(const char *s)
{
    size_t n;
    if (s == NULL || (n = strlen(s)) == 0 || n > KG_ACCOUNT_ID_MAX)
        return 0;
    return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                     "0123456789._:@-") == n;
}

char *kg_account_to_json(const kg_account *a)
{
    kg__buf b;

    kg__buf_init(&b);
    kg__buf_adds(&b, "{\"id\":");
    kg__buf_json_str(&b, a->id);
    kg__buf_adds(&b, ",\"external_id\":");
    kg__buf_json_str(&b, a->external_id);
    kg__buf_adds(&b, ",\"name\":");
    kg__buf_json_str(&b, a->name);
    kg__buf_adds(&b, ",\"plan\":");
    kg__buf_json_str(&b, a->plan);
    kg__buf_adds(&b, ",\"status\":");
    kg__buf_json_str(&b, kg_account_status_name(a->status));
    kg__buf_adds(&b, ",\"permissions\":");
    kg__json_strv(&b, a->perms, a->nperms);
    kg__buf_adds(&b, ",\"allowed_cidrs\":");
    kg__json_strv(&b, a->cidrs, a->ncidrs);
    kg__buf_adds(&b, ",\"limits\":");
    kg__json_overrides(&b, a->limits, a->nlimits);
    /* Checked to be one JSON object when it was set. */
    kg__buf_adds(&b, ",\"metadata\":");
    kg__buf_adds(&b, a->metadata ? a->metadata : "{}");
    kg__json_time(&b, "created", a->created);
    kg__json_time(&b, "updated", a->updated);
    kg__buf_adds(&b, "}");
    return kg__buf_take(&b);
}
