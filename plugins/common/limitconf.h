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
 *   backend: memory  where the state lives: memory (this process) or
 *                    redis (shared by every instance; see redis.h)
 *   on_backend_error: deny | allow | local
 *                    what a redis limit does when Redis cannot answer:
 *                    503 auth_unavailable, admit (counted), or decide
 *                    from the memory state until Redis answers again
 *   redis: {...}     the Redis connection (plugins/common/redis.h)
 */
#ifndef KEYGATE_PLUGINS_LIMITCONF_H
#define KEYGATE_PLUGINS_LIMITCONF_H

#include <stdlib.h>
#include <string.h>

#include <keygate/plugin.h>

enum { LC_MEMORY = 0, LC_REDIS = 1 };
enum { LC_ERR_DENY = 0, LC_ERR_ALLOW = 1, LC_ERR_LOCAL = 2 };
/* The algorithm, as the Redis script names it. */
enum { LC_FIXED = 'f', LC_SLIDING = 's', LC_BUCKET = 'b', LC_CONCURRENCY = 'c' };

/* Lines batched together read each other's limitconf: the layout is
 * checked by this tag (and the batch key names the protocol). */
#define LIMITCONF_MAGIC 0x4b47524cu  /* "KGRL" */

struct kgr_client;
struct limitconf;
/* The plugin's memory algorithm: take 1 (acquire), 0 (peek), -1 (undo). */
typedef kg_result (*limitconf_local_fn)(struct limitconf *lc, kg_call *call,
                                        int take);

struct limitconf {
    uint32_t magic;
    int algo;
    char name[48];
    int64_t count;
    int64_t window;   /* seconds */
    int64_t burst;
    int64_t ttl;      /* concurrency: lease ttl (0: the plan's) */
    int backend;      /* LC_MEMORY, LC_REDIS */
    int on_error;     /* LC_ERR_* */
    limitconf_local_fn local;
    struct kgr_client *redis;   /* LC_REDIS: the connection (redis.c) */
};

#ifdef KG_REDIS
#include "redis.h"
#endif

/* backend, on_backend_error and (for redis) the connection. */
static inline kg_error limitconf_read_backend(kg_opts *o, struct limitconf *lc)
{
    const char *v;
    kg_error e;

    lc->magic = LIMITCONF_MAGIC;
    if ((e = kg_opts_get_string(o, "backend", "memory", &v)) != KG_OK)
        return e;
    if (strcmp(v, "memory") == 0)
        lc->backend = LC_MEMORY;
    else if (strcmp(v, "redis") == 0)
        lc->backend = LC_REDIS;
    else
        return kg_opts_error(o, "backend", "backend must be memory or redis, not '%s'", v);
    if ((e = kg_opts_get_string(o, "on_backend_error", "deny", &v)) != KG_OK)
        return e;
    if (strcmp(v, "deny") == 0)
        lc->on_error = LC_ERR_DENY;
    else if (strcmp(v, "allow") == 0)
        lc->on_error = LC_ERR_ALLOW;
    else if (strcmp(v, "local") == 0)
        lc->on_error = LC_ERR_LOCAL;
    else
        return kg_opts_error(o, "on_backend_error", "on_backend_error must be "
                             "deny, allow or local, not '%s'", v);
    if (lc->backend == LC_MEMORY) {
        if (kg_opts_has(o, "redis"))
            return kg_opts_error(o, "redis", "'redis' options need backend: redis");
        return KG_OK;
    }
#ifdef KG_REDIS
    /* every check asks Redis (a round trip, or its timeout) */
    kg_opts_may_wait(o, 1);
    return kgr_client_new(o, lc, &lc->redis);
#else
    return kg_opts_error(o, "backend", "this keygate was built without hiredis, so "
                         "backend: redis is not available; rebuild with "
                         "./configure --with-hiredis (apt-get install libhiredis-dev)");
#endif
}

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
    return limitconf_read_backend(o, lc);
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

static inline void limitconf_destroy(void *inst)
{
    struct limitconf *lc = inst;
    if (lc == NULL)
        return;
#ifdef KG_REDIS
    kgr_client_free(lc->redis);
#endif
    free(lc);
}

static inline kg_error limitconf_create(kg_opts *o, void **inst_r,
                                        const char *default_name,
                                        int want_window, int want_burst,
                                        int algo, limitconf_local_fn local)
{
    struct limitconf *lc = calloc(1, sizeof(*lc));
    kg_error e;
    if (lc == NULL)
        return KG_ERR_NOMEM;
    lc->algo = algo;
    lc->local = local;
    e = limitconf_read(o, lc, default_name, want_window, want_burst);
    if (e != KG_OK) {
        limitconf_destroy(lc);
        return e;
    }
    *inst_r = lc;
    return KG_OK;
}

/*
 * The stage calls: the memory algorithm, or the Redis backend (a batch
 * of one; several lines of a plan are batched by the core through
 * LIMITCONF_OPS's batch hooks).
 */
static inline kg_result limitconf_acquire(void *inst, kg_call *call)
{
    struct limitconf *lc = inst;
#ifdef KG_REDIS
    if (lc->redis != NULL) {
        kg_result r = KG_RESULT_UNAVAILABLE;
        kgr_batch(&inst, 1, call, &r);
        return r;
    }
#endif
    return lc->local(lc, call, 1);
}

static inline void limitconf_undo(void *inst, kg_call *call)
{
    struct limitconf *lc = inst;
#ifdef KG_REDIS
    if (lc->redis != NULL) {
        kgr_undo(lc, call);
        return;
    }
#endif
    lc->local(lc, call, -1);
}

static inline void limitconf_peek(void *inst, kg_call *call)
{
    struct limitconf *lc = inst;
#ifdef KG_REDIS
    if (lc->redis != NULL) {
        kg_result r;
        kgr_batch(&inst, 1, call, &r);
        return;
    }
#endif
    lc->local(lc, call, 0);
}

#ifdef KG_REDIS
#define LIMITCONF_BATCH .batch_key = kgr_batch_key, .batch = kgr_batch,
#else
#define LIMITCONF_BATCH
#endif

/* The ops table every limiter plugin exports. */
#define LIMITCONF_OPS                                                      \
    {                                                                      \
        .acquire = limitconf_acquire, .undo = limitconf_undo,              \
        .peek = limitconf_peek, LIMITCONF_BATCH                            \
    }

#endif
