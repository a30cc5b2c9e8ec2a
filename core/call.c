/*
 * call.c - the kg_call accessors plugins use (plugin.h): what a call is
 * about (request, record, account, plan, time), its deny, its limits'
 * reports, the limiter slots and leases of its subject (the account or
 * the key: kg_call_subject; the memory state: limits.c, leases.c), and
 * the context's counters.  The stages that hand a call
 * to plugins: check.c.
 */
#include "internal.h"

#include <stdio.h>
#include <string.h>

const kg_request *kg_call_request(kg_call *c) { return c->req; }
const kg_record *kg_call_record(kg_call *c) { return c->record; }
const char *kg_call_plan(kg_call *c) { return c->plan; }
kg_context *kg_call_context(kg_call *c) { return c->policy->ctx; }
int64_t kg_call_now(kg_call *c) { return c->now_us; }
int kg_call_peek(kg_call *c) { return c->peek; }
int kg_call_lease_wanted(kg_call *c)
{
    return !c->peek && !kg__request_no_lease(c->req);
}

const kg_account *kg_call_account(kg_call *c) { return c->account; }
const char *kg_call_subject(kg_call *c) { return c->subject; }

/* What the memory state of this call's limit is keyed by: the running
 * line's subject, else (a plugin calling outside the limit stage) the
 * key's id; NULL without a record. */
static const char *subject(const kg_call *c)
{
    if (c->subject != NULL)
        return c->subject;
    return c->record ? c->record->id : NULL;
}

/* The call's pin holds the slot of its main subject (the account, or the
 * key without one), found through the key hash's hint; a `per: key` line
 * of a key with an account finds its own slot without it. */
static kg__lpin *pin(kg_call *c)
{
    return c->per_key && c->account != NULL ? NULL : &c->lpin;
}

void kg_call_deny(kg_call *c, kg_code code, const char *message)
{
    c->deny_code = code;
    if (message != NULL) {
        snprintf(c->deny_buf, sizeof(c->deny_buf), "%s", message);
        c->deny_message = c->deny_buf;
    } else {
        c->deny_message = NULL;
    }
}

int kg_call_limit(kg_call *c, const char *name, int64_t *count,
                  int64_t *window, int64_t *burst)
{
    const struct kg__limit_override *o;
    if (c->record == NULL)
        return 0;
    /* A line counted per account reads the account's overrides; one
     * counted per key (or a key without an account), the key's. */
    if (c->account != NULL && !c->per_key && c->record->acct_nlimits > 0)
        o = kg__override_find(c->account->limits, c->account->nlimits, name);
    else
        o = kg__override_find(c->record->limits, c->record->nlimits, name);
    if (o == NULL)
        return 0;
    if (count) *count = o->count;
    if (window && o->window > 0) *window = o->window;
    if (burst && o->burst > 0) *burst = o->burst;
    return 1;
}

void kg_call_limit_report(kg_call *c, const char *name, int64_t limit,
                          int64_t remaining, int64_t reset_unix,
                          int64_t window, int64_t retry_after)
{
    kg_decision *d = c->d;
    struct kg__limit_report *r = NULL;
    size_t i;

    for (i = 0; i < d->nlimits; i++)
        if (d->limits[i].name[0] == name[0] && strcmp(d->limits[i].name, name) == 0)
            r = &d->limits[i];
    if (r == NULL) {
        if (d->nlimits >= KG__MAX_LIMITS)
            return;
        r = &d->limits[d->nlimits++];
        kg__strlcpy(r->name, name, sizeof(r->name));
    }
    r->limit = limit;
    r->remaining = remaining < 0 ? 0 : remaining;
    r->reset = reset_unix;
    r->window = window;
    r->retry_after = retry_after;
    r->reset_in = reset_unix - c->now_us / 1000000;
    if (r->reset_in < 0)
        r->reset_in = 0;
}

kg_slot *kg_call_slot_lock(kg_call *c, const char *limit, int64_t idle)
{
    const char *subj = subject(c);
    struct kg__shm *m = kg__ctx_shm(c->policy->ctx);
    if (subj == NULL)
        return NULL;
    if (m != NULL)
        return kg__shm_lock(m, subj, limit, c->now_us / 1000000, idle);
    return kg__limits_lock(c->policy->ctx->limits, subj, limit,
                           c->now_us / 1000000, idle, pin(c));
}

/*
 * The lease is written straight into the decision's list: room for it is
 * made first (on the heap past the inline list), so that a lease is never
 * taken that cannot be handed out.  Out of memory, *in_use_r is -1 and
 * nothing is held (the plugin answers unavailable).
 */
int kg_call_lease_acquire(kg_call *c, const char *limit, int64_t max,
                          int64_t ttl, int64_t *in_use_r)
{
    size_t klen, nlen, len;
    const char *subj = subject(c);
    struct kg__shm *m;
    char *out;
    int r;

    if (subj == NULL)
        return 0;
    /* A request that asked for no lease (kg_request_set_no_lease) is
     * admitted holding none, and told what others hold. */
    if (!kg_call_lease_wanted(c)) {
        *in_use_r = kg_call_lease_count(c, limit);
        return 1;
    }
    if (ttl <= 0)
        ttl = kg_call_lease_ttl(c);
    klen = strlen(subj);
    nlen = strlen(limit);
    len = KG_LEASE_SIZE(klen, nlen) - 1;
    if ((out = kg__decision_lease_room(c->d, len)) == NULL) {
        *in_use_r = -1;
        return 0;
    }
    if ((m = kg__ctx_shm(c->policy->ctx)) != NULL)
        r = kg__shm_lease_acquire(m, subj, klen, limit, nlen, max, ttl,
                                  c->now_us, out, in_use_r);
    else
        r = kg__lease_acquire(c->policy->ctx->limits, subj, klen, limit,
                              nlen, max, ttl, c->now_us, out, in_use_r, pin(c),
                              c->d->nlh < KG__LEASE_HANDLES
                                  ? &c->d->lh[c->d->nlh] : NULL);
    if (r == 1 && m == NULL && c->d->nlh < KG__LEASE_HANDLES)
        c->d->nlh++;
    if (r == 1)
        kg__decision_lease_commit(c->d, len);
    return r == 1;
}

/* Release the lease of this (key, limit) that this call took (a later
 * limit denied the request), matched in the list in place, and take it
 * out of the list. */
void kg_call_lease_undo(kg_call *c, const char *limit)
{
    kg_decision *d = c->d;
    char *p, *end = d->lease + d->lease_len, *comma;
    const char *subj = subject(c);
    size_t klen;

    if (subj == NULL)
        return;
    klen = strlen(subj);
    for (p = d->lease; p < end; p = comma + 1) {
        if ((comma = memchr(p, ',', (size_t)(end - p))) == NULL)
            comma = end;
        if (kg__lease_id_names(p, (size_t)(comma - p), subj, klen, limit)) {
            uint64_t id;
            if (kg__lease_id_random(p, (size_t)(comma - p), &id) == 0)
                kg__decision_lease_forget(d, id);
            kg__lease_release_of(c->policy->ctx, p, (size_t)(comma - p),
                                 subj, klen, limit, c->now_us);
            kg__decision_lease_remove(d, p, (size_t)(comma - p));
            return;
        }
    }
}

kg_error kg_call_lease_new(kg_call *c, const char *limit, char *out,
                           size_t size)
{
    const char *subj = subject(c);
    if (subj == NULL || limit == NULL || out == NULL)
        return KG_ERR_INVALID;
    if (kg__lease_format(c->policy->ctx->limits, subj, limit, out, size) != 0)
        return KG_ERR_INVALID;
    return KG_OK;
}

kg_error kg_call_lease_add(kg_call *c, const char *lease)
{
    size_t len;
    char *out;

    if (lease == NULL || *lease == '\0' || strchr(lease, ',') != NULL)
        return KG_ERR_INVALID;
    len = strlen(lease);
    if ((out = kg__decision_lease_room(c->d, len)) == NULL)
        return KG_ERR_NOMEM;
    memcpy(out, lease, len);
    kg__decision_lease_commit(c->d, len);
    return KG_OK;
}

int64_t kg_call_lease_ttl(kg_call *c)
{
    return c->planp && c->planp->lease_ttl > 0 ? c->planp->lease_ttl : 300;
}

int kg_call_would_block(kg_call *c)
{
    if (c == NULL || !c->nowait)
        return 0;
    c->blocked = 1;
    return 1;
}

void kg_call_stat_add(kg_call *c, kg_stat stat, uint64_t n)
{
    if ((int)stat >= 0 && stat < KG_STAT__LAST)
        atomic_fetch_add(&c->policy->ctx->stats[stat], n);
}

int64_t kg_call_lease_count(kg_call *c, const char *limit)
{
    const char *subj = subject(c);
    if (subj == NULL)
        return 0;
    return kg__lease_count(c->policy->ctx, subj, limit, c->now_us);
}

int64_t kg_call_lease_retry_after(kg_call *c, const char *limit, int64_t ttl)
{
    const char *subj = subject(c);
    if (subj == NULL)
        return 0;
    if (ttl <= 0)
        ttl = kg_call_lease_ttl(c);
    return kg__lease_retry_after(c->policy->ctx, subj, limit, ttl,
                                 c->now_us);
}
