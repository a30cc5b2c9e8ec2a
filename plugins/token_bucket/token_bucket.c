/*
 * token_bucket - limit plugin: a bucket of `burst` tokens refilled at
 * `count` tokens per `window`; a request takes one token.  A key can
 * burst up to `burst` requests at once, then is held to the rate
 * (Enterprise "burst allowances").
 *
 * Options: name, count, window (the refill rate), burst (capacity;
 * default count).  A key record's override may set any of them.
 *
 * Slot words (fixed point, 1 token = 1,000,000 units): [0] tokens,
 * [1] time of the last refill (us), [2] 1 once initialised.
 */
#include "../common/limitconf.h"

#define UNIT 1000000LL

static kg_result tb_run(struct limitconf *lc, kg_call *call, int take);

static kg_error tb_create(kg_opts *o, void **inst_r)
{
    return limitconf_create(o, inst_r, "burst", 1, 1, LC_BUCKET, tb_run);
}

static kg_result tb_run(struct limitconf *lc, kg_call *call, int take)
{
    int64_t count, window, burst, now_us = kg_call_now(call);
    int64_t *w, tokens, cap, retry = 0, full_in;
    kg_slot *slot;
    kg_result r = KG_RESULT_OK;

    limitconf_effective(lc, call, &count, &window, &burst);
    cap = burst * UNIT;
    slot = kg_call_slot_lock(call, lc->name, window + (count ? burst * window / count : window));
    if (slot == NULL)
        return take > 0 ? KG_RESULT_UNAVAILABLE : KG_RESULT_OK;
    w = kg_slot_words(slot);
    if (!w[2]) {
        w[0] = cap;
        w[1] = now_us;
        w[2] = 1;
    } else if (now_us > w[1]) {
        /* Refill: elapsed_us * count / window_s units (1 token = 1e6 units). */
        __int128 add = (__int128)(now_us - w[1]) * count / window;
        w[0] = add >= (__int128)(cap - w[0]) ? cap : w[0] + (int64_t)add;
        w[1] = now_us;
    }
    if (w[0] > cap)
        w[0] = cap;  /* the capacity was lowered */
    if (take > 0) {
        if (w[0] >= UNIT)
            w[0] -= UNIT;
        else
            r = KG_RESULT_FAIL;
    } else if (take < 0) {
        w[0] = w[0] + UNIT > cap ? cap : w[0] + UNIT;
    }
    tokens = w[0];
    kg_slot_unlock(slot);
    if (take < 0)
        return KG_RESULT_OK;
    /* Seconds until full, and until one token, at count per window. */
    full_in = count > 0 ? (int64_t)(((__int128)(cap - tokens) * window / count + UNIT - 1) / UNIT) : 0;
    if (r == KG_RESULT_FAIL) {
        retry = count > 0 ? (int64_t)(((__int128)(UNIT - tokens) * window / count + UNIT - 1) / UNIT)
                          : window;
        if (retry < 1)
            retry = 1;
        kg_call_deny(call, KG_CODE_RATE_LIMITED, "rate limit exceeded: the burst "
                     "allowance is used up; retry after the time in Retry-After");
    }
    kg_call_limit_report(call, lc->name, burst, tokens / UNIT,
                         now_us / 1000000 + full_in, window, retry);
    return r;
}

static const struct kg_limit_ops tb_ops = LIMITCONF_OPS;

KG_PLUGIN_DEFINE(token_bucket) = {
    KG_PLUGIN_HEADER,
    .kind = KG_PLUGIN_LIMIT,
    .name = "token_bucket",
    .description = "token bucket: a rate with a burst allowance",
    .create = tb_create,
    .destroy = limitconf_destroy,
    .limit = &tb_ops,
};
