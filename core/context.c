/*
 * context.c - the process-wide handle: loaded plugins, the memory
 * limiter state and the clock.  Policies come and go; the context stays.
 */
#include "internal.h"

#include <stdlib.h>
#include <time.h>

static int64_t real_clock(void *unused)
{
    struct timespec ts;
    (void)unused;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

kg_error kg_context_new(kg_context **ctx_r)
{
    kg_context *c;
    kg_error e;

    if (ctx_r == NULL)
        return KG_ERR_INVALID;
    *ctx_r = NULL;
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return KG_ERR_NOMEM;
    c->clock = real_clock;
    if ((e = kg__loader_new(&c->loader)) != KG_OK ||
        (e = kg__limits_new(&c->limits)) != KG_OK) {
        kg_context_free(c);
        return e;
    }
    *ctx_r = c;
    return KG_OK;
}

void kg_context_free(kg_context *c)
{
    if (c == NULL)
        return;
    kg__limits_free(c->limits);
    kg__loader_free(c->loader);
    free(c);
}

void kg_context_set_clock(kg_context *c, kg_clock_fn fn, void *userdata)
{
    c->clock = fn ? fn : real_clock;
    c->clock_userdata = fn ? userdata : NULL;
}

int64_t kg_context_now(const kg_context *c)
{
    return c->clock(c->clock_userdata);
}

void kg_context_set_limit_capacity(kg_context *c, size_t max)
{
    kg__limits_set_capacity(c->limits, max ? max : 1000000);
}

size_t kg_context_limit_entries(const kg_context *c)
{
    return kg__limits_entries(c->limits);
}

void kg_context_cache_stats(const kg_context *c, uint64_t *hits_r,
                            uint64_t *misses_r, uint64_t *stale_r)
{
    if (hits_r)
        *hits_r = atomic_load_explicit(&c->cache_hits, memory_order_relaxed);
    if (misses_r)
        *misses_r = atomic_load_explicit(&c->cache_misses, memory_order_relaxed);
    if (stale_r)
        *stale_r = atomic_load_explicit(&c->cache_stale, memory_order_relaxed);
}
