/*
 * touch.c - last_used_at, written behind.
 *
 * A request only notes (key id, time) in a small map, under a mutex held
 * for a hash probe: it never waits for the database.  A thread of the
 * instance's own writes what is pending every `interval`, in batched
 * transactions, and on reload and shutdown.  A key is written at most
 * once per interval (a use within `interval` of the last written time
 * is not even noted), so a busy key costs one UPDATE a minute, not one
 * per request.  A crash loses at most the last interval of last-used
 * times, and nothing else.  The map is bounded: past max_pending keys a
 * new key's use is dropped (last_used is informational; memory is not).
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sql.h"

#define BATCH 256

struct tentry {
    char *id;
    int64_t pending;   /* to write; 0: nothing */
    int64_t written;   /* last written (or seen in the store) */
    struct tentry *next;
};

struct sql_touch {
    struct sqlstore *s;
    int64_t interval;
    size_t max;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_mutex_t flushing;  /* one flush at a time */
    pthread_t thread;
    int started, stop;
    struct tentry **b;
    size_t nb, n;
    int64_t latest;            /* newest time noted */
};

static size_t hash_id(const char *s)
{
    size_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static struct tentry **find(struct sql_touch *t, const char *id)
{
    struct tentry **pp = &t->b[hash_id(id) & (t->nb - 1)];
    while (*pp != NULL && strcmp((*pp)->id, id) != 0)
        pp = &(*pp)->next;
    return pp;
}

void sql_touch_note(struct sql_touch *t, const char *id, int64_t last_used,
                    int64_t when)
{
    struct tentry **pp, *e;
    int64_t base;

    if (t == NULL || id == NULL)
        return;
    pthread_mutex_lock(&t->lock);
    if (when > t->latest)
        t->latest = when;
    pp = find(t, id);
    e = *pp;
    base = last_used;
    if (e != NULL && e->written > base)
        base = e->written;
    if ((base != 0 && when < base + t->interval) ||
        (e != NULL && e->pending >= when))
        goto out;
    if (e == NULL) {
        if (t->n >= t->max)
            goto out;
        e = calloc(1, sizeof(*e));
        if (e == NULL || (e->id = strdup(id)) == NULL) {
            free(e);
            goto out;
        }
        e->written = last_used;
        *pp = e;
        t->n++;
    }
    e->pending = when;
out:
    pthread_mutex_unlock(&t->lock);
}

/* Put a batch that could not be written back (unless newer uses came). */
static void requeue(struct sql_touch *t, size_t n, char **ids, int64_t *whens)
{
    size_t i;
    pthread_mutex_lock(&t->lock);
    for (i = 0; i < n; i++) {
        struct tentry *e = *find(t, ids[i]);
        if (e != NULL && e->pending < whens[i])
            e->pending = whens[i];
    }
    pthread_mutex_unlock(&t->lock);
}

void sql_touch_flush(struct sql_touch *t)
{
    char *ids[BATCH];
    int64_t whens[BATCH];
    size_t i, n;
    int more = 1;

    if (t == NULL)
        return;
    pthread_mutex_lock(&t->flushing);
    while (more) {
        n = 0;
        more = 0;
        pthread_mutex_lock(&t->lock);
        for (i = 0; i < t->nb; i++) {
            struct tentry **pp = &t->b[i];
            while (*pp != NULL) {
                struct tentry *e = *pp;
                if (e->pending != 0) {
                    if (n == BATCH) {
                        more = 1;
                        break;
                    }
                    ids[n] = strdup(e->id);
                    if (ids[n] == NULL)
                        break;
                    whens[n++] = e->pending;
                    e->written = e->pending;
                    e->pending = 0;
                } else if (e->written + t->interval <= t->latest) {
                    /* Throttling it no longer needs the entry. */
                    *pp = e->next;
                    free(e->id);
                    free(e);
                    t->n--;
                    continue;
                }
                pp = &e->next;
            }
            if (more)
                break;
        }
        pthread_mutex_unlock(&t->lock);
        if (n > 0 && sql_store_write_last_used(t->s, n, (const char *const *)ids,
                                               whens) != 0) {
            requeue(t, n, ids, whens);
            more = 0;  /* the store is down: try again next interval */
        }
        for (i = 0; i < n; i++)
            free(ids[i]);
    }
    pthread_mutex_unlock(&t->flushing);
}

static void *run(void *arg)
{
    struct sql_touch *t = arg;
    int stop = 0;

    while (!stop) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += t->interval;
        pthread_mutex_lock(&t->lock);
        while (!t->stop) {
            if (pthread_cond_timedwait(&t->wake, &t->lock, &ts) == ETIMEDOUT)
                break;
        }
        stop = t->stop;
        pthread_mutex_unlock(&t->lock);
        sql_touch_flush(t);
    }
    return NULL;
}

struct sql_touch *sql_touch_new(struct sqlstore *s, int64_t interval_s,
                                size_t max_pending)
{
    struct sql_touch *t = calloc(1, sizeof(*t));
    pthread_condattr_t ca;

    if (t == NULL)
        return NULL;
    t->s = s;
    t->interval = interval_s > 0 ? interval_s : 1;
    t->max = max_pending;
    t->nb = 1024;
    while (t->nb < max_pending / 4 && t->nb < (1u << 20))
        t->nb <<= 1;
    t->b = calloc(t->nb, sizeof(*t->b));
    if (t->b == NULL) {
        free(t);
        return NULL;
    }
    pthread_mutex_init(&t->lock, NULL);
    pthread_mutex_init(&t->flushing, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&t->wake, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&t->thread, NULL, run, t) != 0) {
        sql_touch_free(t);
        return NULL;
    }
    t->started = 1;
    return t;
}

void sql_touch_free(struct sql_touch *t)
{
    size_t i;
    if (t == NULL)
        return;
    if (t->started) {
        pthread_mutex_lock(&t->lock);
        t->stop = 1;
        pthread_cond_signal(&t->wake);
        pthread_mutex_unlock(&t->lock);
        pthread_join(t->thread, NULL);  /* it flushes once more */
    }
    for (i = 0; i < t->nb; i++) {
        struct tentry *e = t->b[i], *next;
        for (; e != NULL; e = next) {
            next = e->next;
            free(e->id);
            free(e);
        }
    }
    free(t->b);
    pthread_mutex_destroy(&t->lock);
    pthread_mutex_destroy(&t->flushing);
    pthread_cond_destroy(&t->wake);
    free(t);
}
