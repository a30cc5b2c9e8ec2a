/*
 * keygated_alerts.c - the alerts thread (docs/alerts.md): every
 * --alerts-interval seconds it feeds the evaluator what the usage store
 * has taken since the last round (complete minutes' rows, new events),
 * evaluates the serving policy's rules into the outbox, and sends what
 * is due.  At start, and after a reload that changed the spike rules,
 * it first seeds their history from the store (a few pages a round,
 * kg_alerts_seed).  Never on the request path; a slow receiver or store
 * holds up only this thread.
 */
#include "config.h"

#include <pthread.h>
#include <string.h>
#include <time.h>

#include <keygate/alerts.h>
#include <keygate/usage.h>

#include "keygated.h"

/* Minutes of usage rows read again at start (docs/alerts.md). */
#define LOOKBACK (10 * 60)
/* Events read per round at most (newest first; the rest next round). */
#define EVENTS_PER_ROUND 5000
/* Seeding per round at most (microseconds), before the rules run and
 * what is due is sent: pages are read until it is spent. */
#define SEED_BUDGET_US 1000000

static struct {
    pthread_t thread;
    int running, stop;
    pthread_mutex_t lock;      /* stop, wake, and the figures below */
    pthread_cond_t wake;
    unsigned interval;
    kg_context *ctx;
    kg_alerts *al;
    kg_outbox_memory *mem;     /* a policy without a durable outbox */
    int64_t fed_until;         /* usage rows fed: minutes before this */
    int64_t last_event;        /* the newest event id fed */
    int failing;               /* the last round's store error was logged */
    int seeding;               /* a seeding is under way */
    int seed_failing;          /* its store error was logged */
    size_t seed_rows;          /* rows it read so far */
    int64_t seed_us;           /* time it took so far */
    int64_t depth;
    kg_alerts_stats st;
} A = { .lock = PTHREAD_MUTEX_INITIALIZER, .depth = -1 };

static int row_cb(const kg_usage_row *r, void *ud)
{
    (void)ud;
    kg_alerts_observe_count(A.al, r->account_id, r->key_id, r->start, r->code,
                            r->count);
    return 0;
}

static int event_cb(const kg_usage_event *e, void *ud)
{
    int64_t *newest = ud;
    if (e->id <= A.last_event)
        return 1;   /* newest first: the rest was fed before */
    if (e->id > *newest)
        *newest = e->id;
    if (e->client != NULL && e->client[0])
        kg_alerts_observe_client(A.al, e->account_id, e->key_id, e->key_prefix,
                                 e->time_ms / 1000, e->client);
    return 0;
}

/* The feed's end this round: whole minutes that the flusher has written
 * (its interval and a margin after the minute's end).  At start the
 * feed begins the last minutes again: what the previous process had
 * not read yet (a restart between a burst and its minute's end).  What
 * it had read and written makes the same alerts under the same ids,
 * which the outbox keeps once. */
static int64_t feed_until(const kg_policy *p, int64_t now)
{
    int64_t lag = kg_usage_flush_interval(p);
    int64_t until = (now - (lag > 0 ? lag : 5) - 2) / 60 * 60;
    if (A.fed_until == 0)
        A.fed_until = until - LOOKBACK;
    return until;
}

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/*
 * The spike rules' history before the feed's start, from the usage
 * store (docs/alerts.md "spike"): pages until SEED_BUDGET_US is spent,
 * the rest next round, so that the rules still run and alerts are
 * still sent meanwhile.  Also binds p's rules before the feed (a feed
 * into the rules of the previous policy would be dropped with them).
 */
static void seed(const kg_policy *p)
{
    int64_t t0 = mono_us(), t;
    size_t rows;
    int done = 0;
    kg_diag d;
    kg_error e;
    char buf[2048];

    do {
        memset(&d, 0, sizeof(d));
        e = kg_alerts_seed(A.al, p, A.fed_until, 1, &rows, &done, &d);
        A.seed_rows += rows;
        t = mono_us();
        if (!done && !A.seeding) {
            A.seeding = 1;   /* a seeding started: at start, or a reload */
            A.seed_rows = rows;
            A.seed_us = 0;
        }
    } while (e == KG_OK && !done && t - t0 < SEED_BUDGET_US);
    A.seed_us += t - t0;
    /* A store that is down: said once, the page read again next round. */
    if (e != KG_OK && !A.seed_failing)
        kgd_log_msg("alerts: seeding the spike baselines from the usage "
                    "store: %s (retried next round)",
                    kg_diag_format(&d, buf, sizeof(buf)));
    A.seed_failing = e != KG_OK;
    if (done && A.seeding) {
        kgd_log_msg("alerts: spike baselines seeded from the usage store: "
                    "%zu rows in %.1f s", A.seed_rows, (double)A.seed_us / 1e6);
        A.seeding = 0;
    }
}

/* What the rules of p need from the usage store, since the last round. */
static void feed(const kg_policy *p, int64_t until)
{
    int counts = 0, clients = 0;
    size_t i;
    kg_diag d;

    for (i = 0; i < kg_policy_alert_count(p); i++) {
        const char *kind = "";
        kg_policy_alert(p, i, &kind, NULL, 0);
        counts |= !strcmp(kind, "spike") || !strcmp(kind, "denied");
        clients |= !strcmp(kind, "new_client_network");
    }
    if (counts && until > A.fed_until) {
        kg_usage_query q = { NULL, NULL, A.fed_until, until, 60 };
        memset(&d, 0, sizeof(d));
        if (kg_usage_query_rows(p, &q, row_cb, NULL, &d) == KG_OK)
            A.fed_until = until;
    } else if (!counts) {
        A.fed_until = until;
    }
    if (clients) {
        kg_event_query q;
        int64_t newest = A.last_event;
        memset(&q, 0, sizeof(q));
        q.any_code = 1;
        q.limit = EVENTS_PER_ROUND;
        memset(&d, 0, sizeof(d));
        if (kg_usage_events(p, &q, event_cb, &newest, &d) == KG_OK)
            A.last_event = newest;
    }
}

/* One round; 1 if a seeding is under way and its store answers (the
 * next round may start at once). */
static int round_once(void)
{
    kgd_policy_ref *r = kgd_policy_get();
    const struct kg_outbox_ops *ops;
    const kg_policy *p;
    void *store;
    kg_diag d;
    kg_error e;
    int64_t now, until, depth = -1;
    int go_on = 0;
    char buf[2048];

    if (r == NULL)
        return 0;
    p = kgd_policy_of(r);
    if (kg_policy_notifier_count(p) == 0)
        goto out;
    memset(&d, 0, sizeof(d));
    if (kg_policy_outbox(p, &ops, &store, &d) != KG_OK) {
        ops = kg_outbox_memory_ops();
        store = A.mem;
    }
    now = kg_context_now(A.ctx) / 1000000;
    until = feed_until(p, now);
    seed(p);
    go_on = A.seeding && !A.seed_failing;
    feed(p, until);
    memset(&d, 0, sizeof(d));
    e = kg_alerts_load_overrides(A.al, ops, store, &d);
    if (e == KG_OK)
        e = kg_alerts_run(A.al, p, now, ops, store, NULL, &d);
    if (e == KG_OK) {
        memset(&d, 0, sizeof(d));
        e = kg_alerts_send_due(A.al, p, now, ops, store, 100, NULL, NULL, &d);
    }
    /* A store that stays down is said once, and its return once. */
    if (e != KG_OK && !A.failing)
        kgd_log_msg("alerts: %s (the outbox keeps what it has; retried "
                    "next round)", kg_diag_format(&d, buf, sizeof(buf)));
    else if (e == KG_OK && A.failing)
        kgd_log_msg("alerts: the store answers again");
    A.failing = e != KG_OK;
    memset(&d, 0, sizeof(d));
    if (ops->depth(store, &depth, &d) != KG_OK)
        depth = -1;
    pthread_mutex_lock(&A.lock);
    A.depth = depth;
    kg_alerts_stats_get(A.al, &A.st);
    pthread_mutex_unlock(&A.lock);
out:
    kgd_policy_put(r);
    return go_on;
}

static void *runner(void *unused)
{
    (void)unused;
    pthread_mutex_lock(&A.lock);
    while (!A.stop) {
        struct timespec until;
        int go_on;
        pthread_mutex_unlock(&A.lock);
        go_on = round_once();
        clock_gettime(CLOCK_REALTIME, &until);
        /* A seeding under way goes on at once (its round already spent
         * SEED_BUDGET_US on it, then ran the rules and sent). */
        if (!go_on)
            until.tv_sec += (time_t)A.interval;
        pthread_mutex_lock(&A.lock);
        while (!A.stop &&
               pthread_cond_timedwait(&A.wake, &A.lock, &until) == 0)
            ;
    }
    pthread_mutex_unlock(&A.lock);
    return NULL;
}

int kgd_alerts_start(kg_context *ctx, unsigned interval)
{
    A.ctx = ctx;
    A.interval = interval ? interval : 5;
    A.stop = 0;
    if (kg_alerts_new(&A.al) != KG_OK || (A.mem = kg_outbox_memory_new()) == NULL)
        goto fail;
    pthread_cond_init(&A.wake, NULL);
    if (pthread_create(&A.thread, NULL, runner, NULL) != 0) {
        pthread_cond_destroy(&A.wake);
        goto fail;
    }
    A.running = 1;
    return 0;
fail:
    kg_alerts_free(A.al);
    kg_outbox_memory_free(A.mem);
    A.al = NULL;
    A.mem = NULL;
    return -1;
}

void kgd_alerts_stop(void)
{
    if (!A.running)
        return;
    pthread_mutex_lock(&A.lock);
    A.stop = 1;
    pthread_cond_signal(&A.wake);
    pthread_mutex_unlock(&A.lock);
    pthread_join(A.thread, NULL);
    pthread_cond_destroy(&A.wake);
    kg_alerts_free(A.al);
    kg_outbox_memory_free(A.mem);
    A.al = NULL;
    A.mem = NULL;
    A.running = 0;
}

void kgd_alerts_metrics(uint64_t *attempts, uint64_t *failures,
                        uint64_t *fired, uint64_t *cleared, int64_t *depth)
{
    pthread_mutex_lock(&A.lock);
    *attempts = A.st.attempts;
    *failures = A.st.failures;
    *fired = A.st.fired;
    *cleared = A.st.cleared;
    *depth = A.depth;
    pthread_mutex_unlock(&A.lock);
}
