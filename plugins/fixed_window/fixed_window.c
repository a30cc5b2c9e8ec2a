/*
 * fixed_window - limit plugin: `count` requests per `window`, windows
 * aligned to the clock (an "hour" window resets on the hour, a "day"
 * window at 00:00 UTC).
 *
 * Options: name, count, window (see plugins/common/limitconf.h).
 *
 * Slot words: [0] start of the current window (Unix s), [1] requests
 * admitted in it.  Increment-then-compare under the slot lock: N threads
 * against a limit L admit exactly L; a denied request takes nothing.
 */
#include "../common/limitconf.h"

static kg_result fw_run(struct limitconf *lc, kg_call *call, int take);

static kg_error fw_create(kg_opts *o, void **inst_r)
{
    return limitconf_create(o, inst_r, "window", 1, 0, LC_FIXED, fw_run);
}

/* Run the algorithm; `take` 1 to consume, 0 to look, -1 to give back. */
static kg_result fw_run(struct limitconf *lc, kg_call *call, int take)
{
    int64_t count, window, burst, now_s = kg_call_now(call) / 1000000;
    int64_t start, *w, used, remaining;
    kg_slot *slot;
    kg_result r = KG_RESULT_OK;

    limitconf_effective(lc, call, &count, &window, &burst);
    start = now_s - now_s % window;
    slot = kg_call_slot_lock(call, lc->name, window);
    if (slot == NULL)
        return take > 0 ? KG_RESULT_UNAVAILABLE : KG_RESULT_OK;
    w = kg_slot_words(slot);
    if (w[0] != start) {
        if (take < 0) {         /* the window moved on: nothing to give back */
            kg_slot_unlock(slot);
            return KG_RESULT_OK;
        }
        w[0] = start;
        w[1] = 0;
    }
    if (take > 0) {
        if (w[1] < count)
            w[1]++;
        else
            r = KG_RESULT_FAIL;
    } else if (take < 0 && w[1] > 0) {
        w[1]--;
    }
    used = w[1];
    kg_slot_unlock(slot);
    if (take < 0)
        return KG_RESULT_OK;
    remaining = count - used;
    kg_call_limit_report(call, lc->name, count, remaining, start + window,
                         window, r == KG_RESULT_FAIL ? start + window - now_s : 0);
    if (r == KG_RESULT_FAIL)
        kg_call_deny(call, KG_CODE_RATE_LIMITED, "rate limit exceeded: too many "
                     "requests in this window; retry after the time in Retry-After");
    return r;
}

static const struct kg_limit_ops fw_ops = LIMITCONF_OPS;

KG_PLUGIN_DEFINE(fixed_window) = {
    KG_PLUGIN_HEADER,
    .kind = KG_PLUGIN_LIMIT,
    .name = "fixed_window",
    .description = "count requests per clock-aligned window (e.g. 10 per hour)",
    .create = fw_create,
    .destroy = limitconf_destroy,
    .limit = &fw_ops,
};
