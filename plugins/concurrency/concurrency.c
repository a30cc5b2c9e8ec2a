/*
 * concurrency - limit plugin: at most `count` requests of a key in
 * flight.  A check that passes takes a lease (its id is in the decision,
 * kg_decision_lease(); keygated sends it upstream as X-Keygate-Lease);
 * kg_release() / DELETE /leases/<id> ends it, and it expires on its own
 * after `ttl` (default: the plan's lease_ttl), so a lost release cannot
 * lock a key out for ever.
 *
 * Options: name (default "concurrency"), count, ttl.
 */
#include "../common/limitconf.h"

struct conc {
    struct limitconf lc;
    int64_t ttl;
};

static kg_error cc_create(kg_opts *o, void **inst_r)
{
    struct conc *c = calloc(1, sizeof(*c));
    kg_error e;
    if (c == NULL)
        return KG_ERR_NOMEM;
    if ((e = limitconf_read(o, &c->lc, "concurrency", 0, 0)) != KG_OK ||
        (e = kg_opts_get_duration(o, "ttl", 0, &c->ttl)) != KG_OK) {
        free(c);
        return e;
    }
    *inst_r = c;
    return KG_OK;
}

static void report(struct conc *c, kg_call *call, int64_t max, int64_t in_use,
                   int64_t retry)
{
    int64_t now_s = kg_call_now(call) / 1000000;
    kg_call_limit_report(call, c->lc.name, max, max - in_use, now_s, 0, retry);
}

static kg_result cc_acquire(void *inst, kg_call *call)
{
    struct conc *c = inst;
    int64_t max, window, burst, in_use = 0;

    limitconf_effective(&c->lc, call, &max, &window, &burst);
    if (kg_call_lease_acquire(call, c->lc.name, max, c->ttl, &in_use)) {
        report(c, call, max, in_use, 0);
        return KG_RESULT_OK;
    }
    report(c, call, max, in_use, 1);
    kg_call_deny(call, KG_CODE_RATE_LIMITED, "too many requests in flight for "
                 "this key; retry when one has finished");
    return KG_RESULT_FAIL;
}

static void cc_undo(void *inst, kg_call *call)
{
    struct conc *c = inst;
    kg_call_lease_undo(call, c->lc.name);
}

static void cc_peek(void *inst, kg_call *call)
{
    struct conc *c = inst;
    int64_t max, window, burst;
    limitconf_effective(&c->lc, call, &max, &window, &burst);
    report(c, call, max, kg_call_lease_count(call, c->lc.name), 0);
}

static const struct kg_limit_ops cc_ops = {
    .acquire = cc_acquire,
    .undo = cc_undo,
    .peek = cc_peek,
};

KG_PLUGIN_DEFINE(concurrency) = {
    KG_PLUGIN_HEADER,
    .kind = KG_PLUGIN_LIMIT,
    .name = "concurrency",
    .description = "at most N requests of a key in flight (leases with a TTL)",
    .create = cc_create,
    .destroy = free,
    .limit = &cc_ops,
};
