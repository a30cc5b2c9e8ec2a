/*
 * concurrency - limit plugin: at most `count` requests of a key in
 * flight.  A check that passes takes a lease (its id is in the decision,
 * kg_decision_lease(); keygated sends it upstream as X-Keygate-Lease);
 * kg_release() / DELETE /leases/<id> ends it, and it expires on its own
 * after `ttl` (default: the plan's lease_ttl), so a lost release cannot
 * lock a key out for ever.  With backend: redis the leases are a sorted
 * set in Redis scored by expiry (plugins/common/limits.lua).
 *
 * Options: name (default "concurrency"), count, ttl, backend,
 * on_backend_error, redis.
 */
#include "../common/limitconf.h"

static kg_result cc_run(struct limitconf *lc, kg_call *call, int take);

static kg_error cc_create(kg_opts *o, void **inst_r)
{
    struct limitconf *lc = calloc(1, sizeof(*lc));
    kg_error e;
    if (lc == NULL)
        return KG_ERR_NOMEM;
    lc->algo = LC_CONCURRENCY;
    lc->local = cc_run;
    /* ttl before the backend, so that a redis connection is made last. */
    if ((e = kg_opts_get_duration(o, "ttl", 0, &lc->ttl)) != KG_OK ||
        (e = limitconf_read(o, lc, "concurrency", 0, 0)) != KG_OK) {
        limitconf_destroy(lc);
        return e;
    }
    *inst_r = lc;
    return KG_OK;
}

static void report(struct limitconf *lc, kg_call *call, int64_t max,
                   int64_t in_use, int64_t retry)
{
    int64_t now_s = kg_call_now(call) / 1000000;
    kg_call_limit_report(call, lc->name, max, max - in_use, now_s, 0, retry);
}

/* The memory state: take 1 (acquire), 0 (peek), -1 (undo). */
static kg_result cc_run(struct limitconf *lc, kg_call *call, int take)
{
    int64_t max, window, burst, in_use = 0;

    if (take < 0) {
        kg_call_lease_undo(call, lc->name);
        return KG_RESULT_OK;
    }
    limitconf_effective(lc, call, &max, &window, &burst);
    if (take == 0) {
        report(lc, call, max, kg_call_lease_count(call, lc->name), 0);
        return KG_RESULT_OK;
    }
    if (kg_call_lease_acquire(call, lc->name, max, lc->ttl, &in_use)) {
        report(lc, call, max, in_use, 0);
        return KG_RESULT_OK;
    }
    if (in_use < 0)     /* out of memory: no lease, and no "in use" to tell */
        return KG_RESULT_UNAVAILABLE;
    report(lc, call, max, in_use, kg_call_lease_retry_after(call, lc->name, lc->ttl));
    kg_call_deny(call, KG_CODE_RATE_LIMITED, "too many requests in flight for "
                 "this key; retry when one has finished");
    return KG_RESULT_FAIL;
}

static const struct kg_limit_ops cc_ops = LIMITCONF_OPS;

KG_PLUGIN_DEFINE(concurrency) = {
    KG_PLUGIN_HEADER,
    .kind = KG_PLUGIN_LIMIT,
    .name = "concurrency",
    .description = "at most N requests of a key in flight (leases with a TTL)",
    .create = cc_create,
    .destroy = limitconf_destroy,
    .limit = &cc_ops,
};
