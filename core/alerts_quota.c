/*
 * alerts_quota.c - where each account's limits stand, as the limiters
 * reported them to kg_check(), for the quota rules.
 *
 * Why the limiters' reports and not the usage counters: a limit's window
 * is the limiter's (a fixed window aligned as the plugin aligns it, a
 * token bucket's refill, a monthly quota, an account override), and its
 * state may be in Redis or a shared file; the report (limit, remaining,
 * reset) that every decision already carries is the limiter's own
 * answer, for every backend, where summing minute counters would only
 * approximate the fixed windows (docs/alerts.md "quota").  The cost on
 * the request path is one short lock of a shard and a few stores, and
 * only for a policy with a quota rule.
 */
#include "alerts_int.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define SHARDS 64
/* Entries past this many are not added (the quota rules then miss
 * subjects beyond it; a million limits is far beyond one instance's). */
#define MAX_ENTRIES (1u << 20)

struct qentry {
    struct qentry *next;
    uint64_t hash;
    int64_t limit, used, reset, window;
    char subject[64];
    char name[48];
};

struct qshard {
    pthread_mutex_t mu;
    struct qentry **tab;
    size_t cap, n;
};

struct kg__quota_watch {
    struct qshard s[SHARDS];
    size_t total;   /* approximate: read without the shards' locks */
    /* Reports under this (per-mille of the limit) are not kept: most
     * checks are far from any threshold, and cost a compare; -1: not
     * set yet (the policy's lowest threshold then). */
    int floor_pm;
};

static uint64_t hash2(const char *a, const char *b)
{
    uint64_t h = 1469598103934665603ULL;
    while (*a)
        h = (h ^ (unsigned char)*a++) * 1099511628211ULL;
    h = (h ^ 0x1f) * 1099511628211ULL;
    while (*b)
        h = (h ^ (unsigned char)*b++) * 1099511628211ULL;
    return h;
}

kg_error kg__quota_watch_new(kg_context *ctx)
{
    struct kg__quota_watch *w = calloc(1, sizeof(*w));
    size_t i;

    if (w == NULL)
        return KG_ERR_NOMEM;
    for (i = 0; i < SHARDS; i++)
        pthread_mutex_init(&w->s[i].mu, NULL);
    w->floor_pm = -1;
    ctx->quota = w;
    return KG_OK;
}

static struct qentry *find(struct qshard *sh, uint64_t h, const char *subject,
                           const char *name, int create, size_t *total)
{
    struct qentry *e;
    size_t i;

    if (sh->cap == 0) {
        if (!create || (sh->tab = calloc(64, sizeof(*sh->tab))) == NULL)
            return NULL;
        sh->cap = 64;
    }
    for (e = sh->tab[(h >> 6) & (sh->cap - 1)]; e != NULL; e = e->next)
        if (e->hash == h && strcmp(e->subject, subject) == 0 &&
            strcmp(e->name, name) == 0)
            return e;
    if (!create || *total >= MAX_ENTRIES || strlen(subject) >= sizeof(e->subject))
        return NULL;
    if (sh->n >= sh->cap) {
        struct qentry **nt = calloc(sh->cap * 2, sizeof(*nt));
        if (nt != NULL) {
            for (i = 0; i < sh->cap; i++) {
                struct qentry *x = sh->tab[i], *next;
                for (; x != NULL; x = next) {
                    size_t k = (x->hash >> 6) & (sh->cap * 2 - 1);
                    next = x->next;
                    x->next = nt[k];
                    nt[k] = x;
                }
            }
            free(sh->tab);
            sh->tab = nt;
            sh->cap *= 2;
        }
    }
    if ((e = calloc(1, sizeof(*e))) == NULL)
        return NULL;
    e->hash = h;
    kg__strlcpy(e->subject, subject, sizeof(e->subject));
    kg__strlcpy(e->name, name, sizeof(e->name));
    i = (h >> 6) & (sh->cap - 1);
    e->next = sh->tab[i];
    sh->tab[i] = e;
    sh->n++;
    __atomic_fetch_add(total, 1, __ATOMIC_RELAXED);
    return e;
}

void kg__quota_floor_set(kg_context *ctx, double pct)
{
    if (ctx->quota != NULL)
        __atomic_store_n(&ctx->quota->floor_pm, (int)(pct * 10), __ATOMIC_RELAXED);
}

void kg__quota_watch(kg_context *ctx, const char *subject, const kg_decision *d,
                     double dflt)
{
    struct kg__quota_watch *w;
    int64_t floor_pm;
    size_t i;

    if (subject == NULL || d->nlimits == 0 || (w = ctx->quota) == NULL)
        return;
    floor_pm = __atomic_load_n(&w->floor_pm, __ATOMIC_RELAXED);
    if (floor_pm < 0)
        floor_pm = (int64_t)(dflt * 10);
    for (i = 0; i < d->nlimits; i++) {
        const struct kg__limit_report *r = &d->limits[i];
        uint64_t h;
        struct qshard *sh;
        struct qentry *e;
        int64_t used;

        if (r->limit <= 0)
            continue;
        used = r->limit - r->remaining;
        /* Under every threshold: nothing to keep (the evaluator clears a
         * fired alert when its window ends, without a report). */
        if (used * 1000 < floor_pm * r->limit)
            continue;
        h = hash2(subject, r->name);
        sh = &w->s[h & (SHARDS - 1)];
        pthread_mutex_lock(&sh->mu);
        if ((e = find(sh, h, subject, r->name, 1, &w->total)) != NULL) {
            /* The highest figure of a window: concurrent checks report
             * out of order. */
            if (e->reset != r->reset || used > e->used)
                e->used = used;
            e->limit = r->limit;
            e->reset = r->reset;
            e->window = r->window;
        }
        pthread_mutex_unlock(&sh->mu);
    }
}

void kg__quota_each(kg_context *ctx, kg__quota_cb cb, void *ud)
{
    struct kg__quota_watch *w = ctx->quota;
    size_t i, j;

    if (w == NULL)
        return;
    for (i = 0; i < SHARDS; i++) {
        struct qshard *sh = &w->s[i];
        pthread_mutex_lock(&sh->mu);
        for (j = 0; j < sh->cap; j++) {
            const struct qentry *e;
            for (e = sh->tab[j]; e != NULL; e = e->next)
                cb(e->subject, e->name, e->limit, e->used, e->reset,
                   e->window, ud);
        }
        pthread_mutex_unlock(&sh->mu);
    }
}

void kg__quota_watch_free(kg_context *ctx)
{
    struct kg__quota_watch *w = ctx->quota;
    size_t i, j;

    if (w == NULL)
        return;
    for (i = 0; i < SHARDS; i++) {
        for (j = 0; j < w->s[i].cap; j++) {
            struct qentry *e = w->s[i].tab[j], *next;
            for (; e != NULL; e = next) {
                next = e->next;
                free(e);
            }
        }
        free(w->s[i].tab);
        pthread_mutex_destroy(&w->s[i].mu);
    }
    free(w);
    ctx->quota = NULL;
}
