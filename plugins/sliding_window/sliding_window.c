/*
 * sliding_window - limit plugin: `count` requests per any `window`-long
 * span, estimated from the current and the previous fixed window (the
 * previous window's count weighted by how much of it the sliding window
 * still covers).  Unlike a fixed window it allows no 2x burst across a
 * window edge.
 *
 * Options: name, count, window.
 *
 * Slot words: [0] start of the current fixed window, [1] its count,
 * [2] the previous window's count.
 */
#include "../common/limitconf.h"

static kg_result sw_run(struct limitconf *lc, kg_call *call, int take);

static kg_error sw_create(kg_opts *o, void **inst_r)
{
    return limitconf_create(o, inst_r, "window", 1, 0, LC_SLIDING, sw_run);
}

/*
 * The estimate, scaled by the window length in microseconds so that it
 * stays integral: est * W = prev * (W - elapsed) + cur * W.
 */
static __int128 scaled_estimate(int64_t prev, int64_t cur, int64_t w_us,
                                int64_t elapsed_us)
{
    return (__int128)prev * (w_us - elapsed_us) + (__int128)cur * w_us;
}

static kg_result sw_run(struct limitconf *lc, kg_call *call, int take)
{
    int64_t count, window, burst, now_us = kg_call_now(call);
    int64_t now_s = now_us / 1000000, start, *w, w_us, elapsed_us;
    int64_t prev, cur, remaining, retry = 0;
    kg_slot *slot;
    kg_result r = KG_RESULT_OK;
    __int128 est;

    limitconf_effective(lc, call, &count, &window, &burst);
    start = now_s - now_s % window;
    w_us = window * 1000000;
    elapsed_us = now_us - start * 1000000;
    slot = kg_call_slot_lock(call, lc->name, 2 * window);
    if (slot == NULL)
        return take > 0 ? KG_RESULT_UNAVAILABLE : KG_RESULT_OK;
    w = kg_slot_words(slot);
    if (w[0] != start) {
        if (take < 0) {
            kg_slot_unlock(slot);
            return KG_RESULT_OK;
        }
        /* Roll over: the old current window becomes the previous one if
         * it was the window just before; otherwise both are empty. */
        w[2] = w[0] == start - window ? w[1] : 0;
        w[0] = start;
        w[1] = 0;
    }
    if (take > 0) {
        if (scaled_estimate(w[2], w[1] + 1, w_us, elapsed_us) <= (__int128)count * w_us)
            w[1]++;
        else
            r = KG_RESULT_FAIL;
    } else if (take < 0 && w[1] > 0) {
        w[1]--;
    }
    prev = w[2];
    cur = w[1];
    kg_slot_unlock(slot);
    if (take < 0)
        return KG_RESULT_OK;
    est = scaled_estimate(prev, cur, w_us, elapsed_us);
    remaining = (int64_t)(((__int128)count * w_us - est) / w_us);
    if (r == KG_RESULT_FAIL) {
        /*
         * When does one more fit?  If the current window alone is full,
         * not before the next window (and then the weight of this one
         * decays); otherwise when the previous window's weight has
         * decayed enough: prev * (W - e - t) / W + cur + 1 <= count.
         */
        if (cur + 1 > count || prev == 0) {
            retry = start + window - now_s;
        } else {
            __int128 need = (__int128)prev * (w_us - elapsed_us) -
                            (__int128)(count - cur - 1) * w_us;
            int64_t t_us = (int64_t)(need / prev);
            retry = (t_us + 999999) / 1000000;
        }
        if (retry < 1)
            retry = 1;
        kg_call_deny(call, KG_CODE_RATE_LIMITED, "rate limit exceeded: too many "
                     "requests in the last window; retry after the time in Retry-After");
    }
    kg_call_limit_report(call, lc->name, count, remaining, start + window, window,
                         retry);
    return r;
}

static const struct kg_limit_ops sw_ops = LIMITCONF_OPS;

KG_PLUGIN_DEFINE(sliding_window) = {
    KG_PLUGIN_HEADER,
    .kind = KG_PLUGIN_LIMIT,
    .name = "sliding_window",
    .description = "count requests over a sliding window (no burst at window edges)",
    .create = sw_create,
    .destroy = limitconf_destroy,
    .limit = &sw_ops,
};
