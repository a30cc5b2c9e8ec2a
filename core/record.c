/*
 * record.c - key records: reference counted, built by key stores, read
 * by the account and limit stages.  A record never holds the key, only
 * its SHA-256.
 */
#include "internal.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* Records live in 256-byte cells on huge pages (cells.c): what a check
 * reads is the first two cache lines, one aligned pair, which the
 * hardware fetches together; and a huge page saves the TLB miss that a
 * record among a million on 4 KiB pages costs on top of its cache miss. */
_Static_assert(sizeof(kg_record) <= KG__RECORD_CELL, "a record fits its cell");
_Static_assert(offsetof(kg_record, last_used) + sizeof(int64_t) <= 128,
               "what a check reads and touches is in the first two lines");
static kg__cells records = KG__CELLS_INIT(KG__RECORD_CELL);

kg_record *kg_record_new(void)
{
    kg_record *r = kg__cells_alloc(&records);
    if (r != NULL) {
        memset(r, 0, sizeof(*r));
        atomic_init(&r->refs, 1);
    }
    return r;
}

kg_record *kg_record_ref(kg_record *r)
{
    if (r != NULL)
        atomic_fetch_add_explicit(&r->refs, 1, memory_order_relaxed);
    return r;
}

void kg__strv_free(char **v, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void kg__overrides_free(struct kg__limit_override *v, uint32_t n)
{
    uint32_t i;
    for (i = 0; i < n; i++)
        free(v[i].name);
    free(v);
}

void kg__nets_clear(char ***cidrs, size_t *ncidrs, kg_cidr **nets, size_t *nnets)
{
    kg__strv_free(*cidrs, *ncidrs);
    *cidrs = NULL;
    *ncidrs = 0;
    free(*nets);
    *nets = NULL;
    *nnets = 0;
}

/* The account's id string is the record's while the account is
 * attached (see struct kg_record). */
static void drop_account(kg_record *r)
{
    if (r->account != NULL) {
        kg_account_unref(r->account);
        r->account = NULL;
        r->account_id = NULL;
    } else {
        free(r->account_id);
        r->account_id = NULL;
    }
}

void kg__record_clear(kg_record *r)
{
    if (r->id != r->idbuf)
        free(r->id);
    if (r->plan != r->planbuf)
        free(r->plan);
    drop_account(r);
    free(r->name);
    free(r->prefix);
    free(r->replaced_by);
    free(r->replaces);
    kg__strv_free(r->perms, r->nperms);
    kg__strv_free(r->cidrs, r->ncidrs);
    free(r->nets);
    kg__overrides_free(r->limits, r->nlimits);
    kg_wipe(r->hash, sizeof(r->hash));
}

void kg_record_unref(kg_record *r)
{
    struct kg_record_table *t;

    if (r == NULL)
        return;
    if (atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) != 1)
        return;
    t = r->table;
    kg__record_clear(r);
    if (t != NULL)
        kg__record_table_unref(t);
    else
        kg__cells_free(&records, r);
}

static kg_error set_str(char **dst, const char *s)
{
    char *p = NULL;
    if (s != NULL && (p = strdup(s)) == NULL)
        return KG_ERR_NOMEM;
    free(*dst);
    *dst = p;
    return KG_OK;
}

/* A short string goes into the record's own buffer (no allocation, and
 * no cache miss apart from the record's when a check reads it). */
static kg_error set_inline(char **dst, char *buf, size_t size, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (s == NULL || n >= size) {
        if (*dst == buf)
            *dst = NULL;
        return set_str(dst, s);
    }
    if (*dst != buf)
        free(*dst);
    memmove(buf, s, n + 1);
    *dst = buf;
    return KG_OK;
}

kg_error kg_record_set_id(kg_record *r, const char *s) { return set_inline(&r->id, r->idbuf, sizeof(r->idbuf), s); }
kg_error kg_record_set_plan(kg_record *r, const char *s) { return set_inline(&r->plan, r->planbuf, sizeof(r->planbuf), s); }
kg_error kg_record_set_name(kg_record *r, const char *s) { return set_str(&r->name, s); }
kg_error kg_record_set_prefix(kg_record *r, const char *s) { return set_str(&r->prefix, s); }
kg_error kg_record_set_replaced_by(kg_record *r, const char *s) { return set_str(&r->replaced_by, s); }
kg_error kg_record_set_replaces(kg_record *r, const char *s) { return set_str(&r->replaces, s); }

void kg_record_set_hash(kg_record *r, const unsigned char hash[KG_HASH_LEN])
{
    memcpy(r->hash, hash, KG_HASH_LEN);
}

void kg_record_set_status(kg_record *r, kg_key_status s) { r->status = s; }
void kg_record_set_created(kg_record *r, int64_t t) { r->created = t; }
void kg_record_set_expires(kg_record *r, int64_t t) { r->expires = t; }
void kg_record_set_last_used(kg_record *r, int64_t t)
{
    atomic_store_explicit(&r->last_used, t, memory_order_relaxed);
}

void kg_record_touch(const kg_record *r, int64_t when)
{
    _Atomic int64_t *lu = &((kg_record *)r)->last_used;
    int64_t cur = atomic_load_explicit(lu, memory_order_relaxed);
    while (cur < when &&
           !atomic_compare_exchange_weak_explicit(lu, &cur, when, memory_order_relaxed,
                                                  memory_order_relaxed))
        ;
}

kg_error kg__strv_push(char ***v, size_t *n, const char *s)
{
    char **nv;
    char *dup;

    if (s == NULL)
        return KG_ERR_INVALID;
    dup = strdup(s);
    if (dup == NULL)
        return KG_ERR_NOMEM;
    nv = realloc(*v, (*n + 1) * sizeof(*nv));
    if (nv == NULL) {
        free(dup);
        return KG_ERR_NOMEM;
    }
    nv[(*n)++] = dup;
    *v = nv;
    return KG_OK;
}

kg_error kg_record_add_permission(kg_record *r, const char *p)
{
    return kg__strv_push(&r->perms, &r->nperms, p);
}

kg_error kg_record_set_account(kg_record *r, kg_account *a)
{
    if (a == NULL || a->id == NULL)
        return KG_ERR_INVALID;
    kg_account_ref(a);
    drop_account(r);
    r->account = a;
    r->account_id = a->id;
    return KG_OK;
}

kg_error kg_record_set_account_id(kg_record *r, const char *id)
{
    char *dup = NULL;
    if (r->account != NULL && id != NULL && strcmp(r->account->id, id) == 0)
        return KG_OK;
    if (id != NULL && (dup = strdup(id)) == NULL)
        return KG_ERR_NOMEM;
    drop_account(r);
    r->account_id = dup;
    return KG_OK;
}

const kg_account *kg_record_account(const kg_record *r) { return r->account; }
const char *kg_record_account_id(const kg_record *r) { return r->account_id; }

/*
 * The string is kept as given (stores write it back, management shows
 * it) and parsed here, once, so that the account stage matches parsed
 * networks on every check.  A string that is not a network is kept but
 * gets no parsed form: it matches no address (fail closed), as before.
 */
kg_error kg_record_add_cidr(kg_record *r, const char *c)
{
    return kg__nets_push(&r->cidrs, &r->ncidrs, &r->nets, &r->nnets, c);
}

kg_error kg__nets_push(char ***cidrs, size_t *ncidrs, kg_cidr **nets,
                       size_t *nnets, const char *c)
{
    kg_cidr net;
    kg_cidr *nv;
    kg_error e = kg__strv_push(cidrs, ncidrs, c);

    if (e != KG_OK || kg_cidr_parse(c, &net) != KG_OK)
        return e;
    nv = realloc(*nets, (*nnets + 1) * sizeof(*nv));
    if (nv == NULL) {
        /* All or nothing: a string without its network would deny. */
        free((*cidrs)[--*ncidrs]);
        return KG_ERR_NOMEM;
    }
    nv[(*nnets)++] = net;
    *nets = nv;
    return KG_OK;
}

kg_error kg_record_add_limit(kg_record *r, const char *name, int64_t count,
                             int64_t window, int64_t burst)
{
    return kg__override_set(&r->limits, &r->nlimits, name, count, window, burst);
}

kg_error kg__override_set(struct kg__limit_override **v, uint32_t *n,
                          const char *name, int64_t count, int64_t window,
                          int64_t burst)
{
    struct kg__limit_override *nv;
    char *dup;
    uint32_t i;

    if (name == NULL || count < 0 || window < 0 || burst < 0)
        return KG_ERR_INVALID;
    /* One override per name: a second one replaces the first. */
    for (i = 0; i < *n; i++) {
        if (strcmp((*v)[i].name, name) == 0) {
            (*v)[i].count = count;
            (*v)[i].window = window;
            (*v)[i].burst = burst;
            return KG_OK;
        }
    }
    dup = strdup(name);
    if (dup == NULL)
        return KG_ERR_NOMEM;
    nv = realloc(*v, (*n + 1) * sizeof(*nv));
    if (nv == NULL) {
        free(dup);
        return KG_ERR_NOMEM;
    }
    nv[*n].name = dup;
    nv[*n].count = count;
    nv[*n].window = window;
    nv[*n].burst = burst;
    (*n)++;
    *v = nv;
    return KG_OK;
}

const struct kg__limit_override *kg__override_find(
    const struct kg__limit_override *v, uint32_t n, const char *name)
{
    uint32_t i;
    for (i = 0; i < n; i++)
        if (strcmp(v[i].name, name) == 0)
            return &v[i];
    return NULL;
}

void kg_record_clear_permissions(kg_record *r)
{
    kg__strv_free(r->perms, r->nperms);
    r->perms = NULL;
    r->nperms = 0;
}

void kg_record_clear_cidrs(kg_record *r)
{
    kg__nets_clear(&r->cidrs, &r->ncidrs, &r->nets, &r->nnets);
}

void kg_record_clear_limits(kg_record *r)
{
    kg__overrides_free(r->limits, r->nlimits);
    r->limits = NULL;
    r->nlimits = 0;
}

kg_error kg__record_copy_fields(kg_record *c, const kg_record *r)
{
    size_t i;
    kg_error e = KG_OK;

    e |= kg_record_set_id(c, r->id);
    e |= kg_record_set_name(c, r->name);
    e |= kg_record_set_prefix(c, r->prefix);
    e |= kg_record_set_plan(c, r->plan);
    e |= kg_record_set_replaced_by(c, r->replaced_by);
    e |= kg_record_set_replaces(c, r->replaces);
    memcpy(c->hash, r->hash, KG_HASH_LEN);
    c->status = r->status;
    c->created = r->created;
    c->expires = r->expires;
    kg_record_set_last_used(c, kg_record_last_used(r));
    if (r->account != NULL)
        e |= kg_record_set_account(c, r->account);
    else
        e |= kg_record_set_account_id(c, r->account_id);
    for (i = 0; i < r->nperms; i++)
        e |= kg_record_add_permission(c, r->perms[i]);
    for (i = 0; i < r->ncidrs; i++)
        e |= kg_record_add_cidr(c, r->cidrs[i]);
    for (i = 0; i < r->nlimits; i++)
        e |= kg_record_add_limit(c, r->limits[i].name, r->limits[i].count,
                                 r->limits[i].window, r->limits[i].burst);
    return e != KG_OK ? KG_ERR_NOMEM : KG_OK;
}

kg_record *kg_record_dup(const kg_record *r)
{
    kg_record *c;

    if (r == NULL || (c = kg_record_new()) == NULL)
        return NULL;
    if (kg__record_copy_fields(c, r) != KG_OK) {
        kg_record_unref(c);
        return NULL;
    }
    return c;
}

const char *kg_record_id(const kg_record *r) { return r->id; }
const char *kg_record_name(const kg_record *r) { return r->name; }
const char *kg_record_prefix(const kg_record *r) { return r->prefix; }
const char *kg_record_plan(const kg_record *r) { return r->plan; }
const char *kg_record_replaced_by(const kg_record *r) { return r->replaced_by; }
const char *kg_record_replaces(const kg_record *r) { return r->replaces; }

const char *kg_record_state(const kg_record *r, int64_t now)
{
    if (r->status == KG_STATUS_REVOKED)
        return "revoked";
    /* as check.c: expired from the second it names */
    if (r->expires != 0 && now >= r->expires)
        return "expired";
    return r->replaced_by != NULL ? "rotating" : "active";
}
const unsigned char *kg_record_hash(const kg_record *r) { return r->hash; }
kg_key_status kg_record_status(const kg_record *r) { return r->status; }
int64_t kg_record_created(const kg_record *r) { return r->created; }
int64_t kg_record_expires(const kg_record *r) { return r->expires; }
int64_t kg_record_last_used(const kg_record *r)
{
    return atomic_load_explicit(&((kg_record *)r)->last_used, memory_order_relaxed);
}
size_t kg_record_permission_count(const kg_record *r) { return r->nperms; }
const char *kg_record_permission(const kg_record *r, size_t i)
{
    return i < r->nperms ? r->perms[i] : NULL;
}
size_t kg_record_cidr_count(const kg_record *r) { return r->ncidrs; }
const char *kg_record_cidr(const kg_record *r, size_t i)
{
    return i < r->ncidrs ? r->cidrs[i] : NULL;
}
const kg_cidr *kg_record_allowed_nets(const kg_record *r, size_t *n_r)
{
    *n_r = r->nnets;
    return r->nets;
}
size_t kg_record_limit_count(const kg_record *r) { return r->nlimits; }

kg_error kg_record_limit(const kg_record *r, size_t i, const char **name_r,
                         int64_t *count_r, int64_t *window_r, int64_t *burst_r)
{
    if (i >= r->nlimits)
        return KG_ERR_NOT_FOUND;
    if (name_r) *name_r = r->limits[i].name;
    if (count_r) *count_r = r->limits[i].count;
    if (window_r) *window_r = r->limits[i].window;
    if (burst_r) *burst_r = r->limits[i].burst;
    return KG_OK;
}

void kg__json_time(kg__buf *b, const char *key, int64_t t)
{
    char ts[32];
    kg__buf_addf(b, ",\"%s\":", key);
    if (t == 0) {
        kg__buf_adds(b, "null");
    } else {
        kg__format_time(t, ts);
        kg__buf_json_str(b, ts);
    }
}

void kg__json_strv(kg__buf *b, char *const *v, size_t n)
{
    size_t i;
    kg__buf_adds(b, "[");
    for (i = 0; i < n; i++) {
        if (i) kg__buf_adds(b, ",");
        kg__buf_json_str(b, v[i]);
    }
    kg__buf_adds(b, "]");
}

void kg__json_overrides(kg__buf *b, const struct kg__limit_override *v, uint32_t n)
{
    uint32_t i;
    kg__buf_adds(b, "{");
    for (i = 0; i < n; i++) {
        if (i) kg__buf_adds(b, ",");
        kg__buf_json_str(b, v[i].name);
        kg__buf_addf(b, ":{\"count\":%lld,\"window\":%lld,\"burst\":%lld}",
                     (long long)v[i].count, (long long)v[i].window,
                     (long long)v[i].burst);
    }
    kg__buf_adds(b, "}");
}

/* The record's JSON with `status` as given. */
static char *record_json(const kg_record *r, const char *status)
{
    kg__buf b;

    kg__buf_init(&b);
    kg__buf_adds(&b, "{\"id\":");
    kg__buf_json_str(&b, r->id);
    kg__buf_adds(&b, ",\"name\":");
    kg__buf_json_str(&b, r->name);
    kg__buf_adds(&b, ",\"prefix\":");
    kg__buf_json_str(&b, r->prefix);
    kg__buf_adds(&b, ",\"account\":");
    kg__buf_json_str(&b, r->account_id);
    kg__buf_adds(&b, ",\"plan\":");
    kg__buf_json_str(&b, r->account ? r->account->plan : r->plan);
    kg__buf_adds(&b, ",\"status\":");
    kg__buf_json_str(&b, status);
    if (r->replaced_by != NULL) {
        kg__buf_adds(&b, ",\"replaced_by\":");
        kg__buf_json_str(&b, r->replaced_by);
    }
    if (r->replaces != NULL) {
        kg__buf_adds(&b, ",\"replaces\":");
        kg__buf_json_str(&b, r->replaces);
    }
    kg__buf_adds(&b, ",\"permissions\":");
    kg__json_strv(&b, r->perms, r->nperms);
    kg__buf_adds(&b, ",\"allowed_cidrs\":");
    kg__json_strv(&b, r->cidrs, r->ncidrs);
    kg__buf_adds(&b, ",\"limits\":");
    kg__json_overrides(&b, r->limits, r->nlimits);
    kg__json_time(&b, "created", r->created);
    kg__json_time(&b, "expires", r->expires);
    kg__json_time(&b, "last_used", kg_record_last_used(r));
    kg__buf_adds(&b, "}");
    return kg__buf_take(&b);
}

char *kg_record_to_json(const kg_record *r)
{
    return record_json(r, r->status == KG_STATUS_REVOKED ? "revoked" : "active");
}

char *kg_record_to_json_at(const kg_record *r, int64_t now)
{
    return record_json(r, kg_record_state(r, now));
}
