/*
 * keygated_usage.c - the usage flusher (docs/usage.md): a thread that
 * writes what the context has counted to the serving policy's usage
 * store every flush_interval, so that a slow or hung store never holds
 * up the main thread's signals or a request.  The flushes at reload (into
 * the old policy's store) and at exit are kgd_usage_flush_policy()'s,
 * called by the holder.
 */
#include "config.h"

#include <pthread.h>
#include <string.h>
#include <time.h>

#include <keygate/usage.h>

#include "keygated.h"

static struct {
    pthread_t thread;
    int running;
    int stop;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    int failing;            /* the last flush failed (logged once) */
    uint64_t dropped;       /* drops already logged */
    kg_context *ctx;
} U = { .lock = PTHREAD_MUTEX_INITIALIZER };

void kgd_usage_flush_policy(const kg_policy *p, const char *when)
{
    kg_usage_stats st;
    kg_diag d;
    kg_error e;
    char buf[2048];

    memset(&d, 0, sizeof(d));
    e = kg_usage_flush(p, &d);
    if (e == KG_ERR_UNSUPPORTED)
        return;
    pthread_mutex_lock(&U.lock);
    if (e != KG_OK && strcmp(when, "at exit") == 0 && U.ctx != NULL) {
        /* Nobody flushes after this one. */
        kg_usage_stats_get(U.ctx, &st);
        kgd_log_msg("usage: flush at exit failed; %llu buckets and %llu "
                    "events are lost: %s", (unsigned long long)st.pending_rows,
                    (unsigned long long)st.pending_events,
                    kg_diag_format(&d, buf, sizeof(buf)));
    } else if (e != KG_OK && !U.failing)
        /* A store that stays down is said once, and its return once. */
        kgd_log_msg("usage: flush %s failed, the counts are kept for the next "
                    "one: %s", when, kg_diag_format(&d, buf, sizeof(buf)));
    else if (e == KG_OK && U.failing)
        kgd_log_msg("usage: flush %s: the store took the kept counts", when);
    U.failing = e != KG_OK;
    if (U.ctx != NULL) {
        kg_usage_stats_get(U.ctx, &st);
        if (st.rows_dropped + st.events_dropped > U.dropped) {
            kgd_log_msg("usage: %llu buckets and %llu events dropped so far "
                        "past max_pending (the store is down or slow)",
                        (unsigned long long)st.rows_dropped,
                        (unsigned long long)st.events_dropped);
            U.dropped = st.rows_dropped + st.events_dropped;
        }
    }
    pthread_mutex_unlock(&U.lock);
}

static void *flusher(void *unused)
{
    (void)unused;
    pthread_mutex_lock(&U.lock);
    while (!U.stop) {
        kgd_policy_ref *r;
        int64_t every = 5;
        struct timespec until;

        pthread_mutex_unlock(&U.lock);
        r = kgd_policy_get();
        if (r != NULL) {
            if (kg_usage_flush_interval(kgd_policy_of(r)) > 0)
                every = kg_usage_flush_interval(kgd_policy_of(r));
            kgd_policy_put(r);
        }
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += (time_t)every;
        pthread_mutex_lock(&U.lock);
        while (!U.stop &&
               pthread_cond_timedwait(&U.wake, &U.lock, &until) == 0)
            ;
        if (U.stop)
            break;
        pthread_mutex_unlock(&U.lock);
        r = kgd_policy_get();
        if (r != NULL) {
            kgd_usage_flush_policy(kgd_policy_of(r), "on schedule");
            kgd_policy_put(r);
        }
        pthread_mutex_lock(&U.lock);
    }
    pthread_mutex_unlock(&U.lock);
    return NULL;
}

int kgd_usage_start(kg_context *ctx)
{
    pthread_condattr_t ca;
    U.ctx = ctx;
    U.stop = 0;
    pthread_condattr_init(&ca);
    pthread_cond_init(&U.wake, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&U.thread, NULL, flusher, NULL) != 0) {
        pthread_cond_destroy(&U.wake);
        return -1;
    }
    U.running = 1;
    return 0;
}

void kgd_usage_stop(void)
{
    if (!U.running)
        return;
    pthread_mutex_lock(&U.lock);
    U.stop = 1;
    pthread_cond_signal(&U.wake);
    pthread_mutex_unlock(&U.lock);
    pthread_join(U.thread, NULL);
    pthread_cond_destroy(&U.wake);
    U.running = 0;
}
