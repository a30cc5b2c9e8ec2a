/*
 * limitconf.h - what every limiter plugin reads from its options, and
 * the per-key override lookup.  Header-only (static inline) so that each
 * plugin stays one self-contained module.
 *
 *   name: hour       the limit's name: the override key in a key record
 *                    and the name in the RateLimit headers
 *   count: 10        requests (or tokens, or leases) per window
 *   window: 1h       the window (fixed/sliding) or refill period (bucket)
 *   burst: 50        token bucket only: the bucket's capacity
 */
#ifndef KEYGATE_PLUGINS_LIMITCONF_H
#define KEYGATE_PLUGINS_LIMITCONF_H

#include <stdlib.h>
#include <string.h>

#include <keygate/plugin.h>

struct limitconf {
    char name[48];
    int64_t count;
    int64_t window;   /* seconds */
    int64_t burst;
};

static inline kg_error limitconf_read(kg_opts *o, struct limitconf *lc,
                                      const char *default_name,
                                      int want_window, int want_burst)
{
    const char *name;
    kg_error e;
    size_t i;

    if ((e = kg_opts_get_string(o, "name", default_name, &name)) != KG_OK)
        return e;
    if (name == NULL || *name == '\0' || strlen(name) >= sizeof(lc->name))
        return kg_opts_error(o, "name", "a limit needs a name of 1 to %zu characters",
                             sizeof(lc->name) - 1);
    for (i = 0; name[i]; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return kg_opts_error(o, "name", "limit names are letters, digits, _ and -");
    }
    strcpy(lc->name, name);
    if (!kg_opts_has(o, "count"))
        return kg_opts_error(o, NULL, "option 'count' is required");
    if ((e = kg_opts_get_int(o, "count", 0, &lc->count)) != KG_OK)
        return e;
    if (lc->count < 0)
        return kg_opts_error(o, "count", "count must be 0 or more");
    lc->window = 0;
    if (want_window) {
        if (!kg_opts_has(o, "window"))
            return kg_opts_error(o, NULL, "option 'window' is required (e.g. 1h)");
        if ((e = kg_opts_get_duration(o, "window", 0, &lc->window)) != KG_OK)
            return e;
        if (lc->window < 1)
            return kg_opts_error(o, "window", "window must be at least 1s");
    }
    lc->burst = 0;
    if (want_burst) {
        if ((e = kg_opts_get_int(o, "burst", lc->count, &lc->burst)) != KG_OK)
            return e;
        if (lc->burst < 1)
            return kg_opts_error(o, "burst", "burst must be at least 1");
    }
    return KG_OK;
}

/* The limit that applies to this call's key: the plan's, or the key's
 * override of the same name. */
static inline void limitconf_effective(const struct limitconf *lc, kg_call *call,
                                       int64_t *count, int64_t *window,
                                       int64_t *burst)
{
    *count = lc->count;
    *window = lc->window;
    *burst = lc->burst;
    kg_call_limit(call, lc->name, count, window, burst);
    if (*burst < *count)
        *burst = *count;
}

static inline kg_error limitconf_create(kg_opts *o, void **inst_r,
                                        const char *default_name,
                                        int want_window, int want_burst)
{
    struct limitconf *lc = calloc(1, sizeof(*lc));
    kg_error e;
    if (lc == NULL)
        return KG_ERR_NOMEM;
    e = limitconf_read(o, lc, default_name, want_window, want_burst);
    if (e != KG_OK) {
        free(lc);
        return e;
    }
    *inst_r = lc;
    return KG_OK;
}

static inline void limitconf_destroy(void *inst)
{
    free(inst);
}

#endif
