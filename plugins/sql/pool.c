/*
 * pool.c - a fixed number of database connections shared by every
 * thread of an instance.
 *
 * Connections are opened on first use, so that a policy loads (and
 * keygated starts) while the database is down, and are closed when a
 * driver reports them broken, so that the next user reconnects: a lost
 * connection or a failed-over primary heals without a restart.  After a
 * failed connect the pool fails fast for reconnect_delay instead of
 * making every request wait for a connect timeout.  A caller that finds
 * every connection busy waits at most pool_wait and then gets SQL_TIMEOUT
 * (the request gets 503, never a hang).
 *
 * A driver that keeps something open on an idle connection between
 * calls (SQLite: the read snapshot of the last lookup) gets a keeper
 * thread, which hands it each idle connection now and then to let go of
 * what has been unused too long.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sql.h"

int64_t sql_now_ms(void)
{
    return kg_modutil_mono_us() / 1000;
}

int sql_pool_init(struct sql_pool *p, const struct sql_conf *conf)
{
    pthread_condattr_t ca;

    memset(p, 0, sizeof(*p));
    p->conf = conf;
    p->n = conf->pool_size > 0 ? conf->pool_size : 1;
    p->conns = calloc((size_t)p->n, sizeof(*p->conns));
    if (p->conns == NULL)
        return -1;
    pthread_mutex_init(&p->lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->freed, &ca);
    pthread_cond_init(&p->keeper_wake, &ca);
    pthread_condattr_destroy(&ca);
    return 0;
}

static void stop_keeper(struct sql_pool *p)
{
    if (!p->keeper_started)
        return;
    pthread_mutex_lock(&p->lock);
    p->keeper_stop = 1;
    pthread_cond_signal(&p->keeper_wake);
    pthread_mutex_unlock(&p->lock);
    pthread_join(p->keeper, NULL);
    p->keeper_started = 0;
}

void sql_pool_destroy(struct sql_pool *p)
{
    int i;
    if (p->conns == NULL)
        return;
    stop_keeper(p);
    for (i = 0; i < p->n; i++)
        if (p->conns[i].h != NULL)
            p->conf->driver->close(p->conns[i].h);
    free(p->conns);
    p->conns = NULL;
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->freed);
    pthread_cond_destroy(&p->keeper_wake);
}

/* Open slot c's connection (called without the lock held). */
static int connect_slot(struct sql_pool *p, struct sql_conn *c, char *err,
                        size_t errlen)
{
    const struct sql_driver *drv = p->conf->driver;
    void *h = drv->open(p->conf, err, errlen);
    int v = 0;

    if (h == NULL)
        return SQL_DOWN;
    if (drv->schema_version(h, &v, err, errlen) != SQL_OK) {
        drv->close(h);
        return SQL_DOWN;
    }
    c->h = h;
    c->schema = v;
    return SQL_OK;
}

int sql_pool_get(struct sql_pool *p, struct sql_conn **c_r, int *fresh_r,
                 char *err, size_t errlen)
{
    struct timespec deadline;
    struct sql_conn *c = NULL;
    int i, rc;
    int64_t wait = p->conf->pool_wait_ms;

    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += wait / 1000;
    deadline.tv_nsec += (wait % 1000) * 1000000;
    if (deadline.tv_nsec >= 1000000000) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000;
    }
    *fresh_r = 0;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        /* An open idle connection first, then an empty slot. */
        for (i = 0; i < p->n && c == NULL; i++)
            if (!p->conns[i].busy && p->conns[i].h != NULL)
                c = &p->conns[i];
        for (i = 0; i < p->n && c == NULL; i++)
            if (!p->conns[i].busy)
                c = &p->conns[i];
        if (c != NULL)
            break;
        if (pthread_cond_timedwait(&p->freed, &p->lock, &deadline) == ETIMEDOUT) {
            pthread_mutex_unlock(&p->lock);
            snprintf(err, errlen, "all %d database connections are busy "
                     "(pool_size; waited %lld ms)", p->n, (long long)wait);
            return SQL_TIMEOUT;
        }
    }
    c->busy = 1;
    if (c->h != NULL) {
        pthread_mutex_unlock(&p->lock);
        *c_r = c;
        return SQL_OK;
    }
    if (sql_now_ms() < p->down_until_ms) {
        snprintf(err, errlen, "%s", p->last_error);
        c->busy = 0;
        pthread_cond_signal(&p->freed);
        pthread_mutex_unlock(&p->lock);
        return SQL_DOWN;
    }
    pthread_mutex_unlock(&p->lock);

    rc = connect_slot(p, c, err, errlen);

    pthread_mutex_lock(&p->lock);
    if (rc != SQL_OK) {
        p->down_until_ms = sql_now_ms() + p->conf->reconnect_delay_ms;
        snprintf(p->last_error, sizeof(p->last_error), "%s", err);
        c->busy = 0;
        pthread_cond_signal(&p->freed);
        pthread_mutex_unlock(&p->lock);
        return rc;
    }
    p->down_until_ms = 0;
    pthread_mutex_unlock(&p->lock);
    *fresh_r = 1;
    *c_r = c;
    return SQL_OK;
}

void sql_pool_put(struct sql_pool *p, struct sql_conn *c, int broken)
{
    void *h = NULL;
    pthread_mutex_lock(&p->lock);
    if (broken) {
        h = c->h;
        c->h = NULL;
    }
    c->busy = 0;
    pthread_cond_signal(&p->freed);
    pthread_mutex_unlock(&p->lock);
    if (h != NULL)
        p->conf->driver->close(h);
}

void sql_pool_drop_idle(struct sql_pool *p)
{
    int i;
    for (i = 0; i < p->n; i++) {
        void *h = NULL;
        pthread_mutex_lock(&p->lock);
        if (!p->conns[i].busy) {
            h = p->conns[i].h;
            p->conns[i].h = NULL;
        }
        pthread_mutex_unlock(&p->lock);
        if (h != NULL)
            p->conf->driver->close(h);
    }
    pthread_mutex_lock(&p->lock);
    p->down_until_ms = 0;
    pthread_mutex_unlock(&p->lock);
}

/* One round of the keeper: each idle connection, taken like a request
 * takes it (so no request can use it meanwhile), goes to the driver. */
static void keep_round(struct sql_pool *p)
{
    const struct sql_driver *drv = p->conf->driver;
    int i;

    for (i = 0; i < p->n; i++) {
        void *h = NULL;
        pthread_mutex_lock(&p->lock);
        if (!p->conns[i].busy && p->conns[i].h != NULL) {
            p->conns[i].busy = 1;
            h = p->conns[i].h;
        }
        pthread_mutex_unlock(&p->lock);
        if (h == NULL)
            continue;
        drv->idle(h, sql_now_ms(), p->keeper_idle_ms);
        sql_pool_put(p, &p->conns[i], 0);
    }
}

static void *keeper(void *arg)
{
    struct sql_pool *p = arg;
    int64_t period = p->keeper_idle_ms / 2 > 10 ? p->keeper_idle_ms / 2 : 10;

    pthread_mutex_lock(&p->lock);
    while (!p->keeper_stop) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += period / 1000;
        ts.tv_nsec += (period % 1000) * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        if (pthread_cond_timedwait(&p->keeper_wake, &p->lock, &ts) != ETIMEDOUT)
            continue;
        pthread_mutex_unlock(&p->lock);
        keep_round(p);
        pthread_mutex_lock(&p->lock);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

int sql_pool_keep(struct sql_pool *p, int64_t idle_ms)
{
    if (p->conf->driver->idle == NULL || idle_ms <= 0 || p->keeper_started)
        return 0;
    p->keeper_idle_ms = idle_ms;
    p->keeper_stop = 0;
    if (pthread_create(&p->keeper, NULL, keeper, p) != 0)
        return -1;
    p->keeper_started = 1;
    return 0;
}
