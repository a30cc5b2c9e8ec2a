/*
 * keygated_metrics.c - counters for GET /metrics (Prometheus text 0.0.4).
 *
 * Labels are bounded by construction: decision codes are an enum and
 * plans come from the policy (a decision's plan is always one of the
 * policy's plan names), so a client cannot mint new series.  There is
 * deliberately no per-key label: key ids are unbounded and would make
 * the metrics a second key list.
 *
 * Every counter is a relaxed atomic: the request path never takes a
 * lock here except the first time a plan name is seen.  This is the
 * process's one set of counters (a program, not a library), hence the
 * file-level state.
 */
#include "config.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "keygated.h"

#define MAX_PLANS 64
#define NBUCKETS 13

/* Histogram bounds in microseconds. */
static const int64_t bucket_us[NBUCKETS] = {
    50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000,
    250000, 1000000
};

struct plan_row {
    char name[64];
    atomic_ulong by_code[KG_CODE__LAST];
};

static struct {
    pthread_mutex_t lock;
    struct plan_row plans[MAX_PLANS + 1];  /* [0]: no plan identified */
    atomic_size_t nplans;
    atomic_ulong buckets[NBUCKETS + 1];    /* + the +Inf bucket */
    atomic_ullong sum_us;
    atomic_ulong count;
    atomic_ulong requests[KGD_EP__LAST];
    atomic_ulong reloads_ok, reloads_failed;
    atomic_ulong store_errors;
    atomic_ulong leases_released, leases_unknown;
    atomic_ulong rejected_400, rejected_414, rejected_431, rejected_other;
    atomic_ulong rejected_503;   /* past --max-connections */
    atomic_long inflight;
    int64_t started;
    atomic_llong last_reload;
} M = { .lock = PTHREAD_MUTEX_INITIALIZER };

static const char *const ep_names[KGD_EP__LAST] = {
    "check", "whoami", "leases", "healthz", "metrics", "other"
};

void kgd_metrics_init(void)
{
    M.started = (int64_t)time(NULL);
    atomic_store(&M.last_reload, (long long)M.started);
    atomic_store(&M.nplans, 1);
}

void kgd_metrics_request(enum kgd_endpoint ep)
{
    atomic_fetch_add_explicit(&M.requests[ep], 1, memory_order_relaxed);
}

static struct plan_row *plan_row(const char *plan)
{
    size_t i, n;

    if (plan == NULL || *plan == '\0')
        return &M.plans[0];
    n = atomic_load_explicit(&M.nplans, memory_order_acquire);
    for (i = 1; i < n; i++)
        if (strcmp(M.plans[i].name, plan) == 0)
            return &M.plans[i];
    pthread_mutex_lock(&M.lock);
    n = atomic_load_explicit(&M.nplans, memory_order_acquire);
    for (i = 1; i < n; i++)
        if (strcmp(M.plans[i].name, plan) == 0)
            break;
    if (i == n) {
        if (n > MAX_PLANS) {
            i = 0;   /* more plans than rows: count them as "" */
        } else {
            snprintf(M.plans[n].name, sizeof(M.plans[n].name), "%s", plan);
            atomic_store_explicit(&M.nplans, n + 1, memory_order_release);
        }
    }
    pthread_mutex_unlock(&M.lock);
    return &M.plans[i];
}

void kgd_metrics_decision(const kg_decision *d, int64_t micros)
{
    struct plan_row *row = plan_row(kg_decision_plan(d));
    kg_code code = kg_decision_code(d);
    size_t b;
    const char *by;

    if ((unsigned)code >= KG_CODE__LAST)
        code = KG_CODE_NONE;
    atomic_fetch_add_explicit(&row->by_code[code], 1, memory_order_relaxed);
    for (b = 0; b < NBUCKETS && micros > bucket_us[b]; b++)
        ;
    atomic_fetch_add_explicit(&M.buckets[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&M.sum_us, (unsigned long long)(micros < 0 ? 0 : micros),
                              memory_order_relaxed);
    atomic_fetch_add_explicit(&M.count, 1, memory_order_relaxed);
    by = kg_decision_decided_by(d);
    if (code == KG_CODE_AUTH_UNAVAILABLE && by != NULL &&
        strncmp(by, "keystore", 8) == 0)
        atomic_fetch_add_explicit(&M.store_errors, 1, memory_order_relaxed);
}

void kgd_metrics_reload(int ok)
{
    if (ok) {
        atomic_fetch_add(&M.reloads_ok, 1);
        atomic_store(&M.last_reload, (long long)time(NULL));
    } else {
        atomic_fetch_add(&M.reloads_failed, 1);
    }
}

void kgd_metrics_lease_release(int ok)
{
    atomic_fetch_add(ok ? &M.leases_released : &M.leases_unknown, 1);
}

void kgd_metrics_rejected(int status)
{
    atomic_ulong *c = status == 400 ? &M.rejected_400 :
                      status == 414 ? &M.rejected_414 :
                      status == 431 ? &M.rejected_431 :
                      status == 503 ? &M.rejected_503 : &M.rejected_other;
    atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

void kgd_metrics_inflight(int delta)
{
    atomic_fetch_add_explicit(&M.inflight, delta, memory_order_relaxed);
}

long kgd_metrics_inflight_now(void)
{
    return atomic_load(&M.inflight);
}

static void add(char **buf, size_t *len, size_t *cap, int *oom,
                const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void add(char **buf, size_t *len, size_t *cap, int *oom,
                const char *fmt, ...)
{
    va_list ap;
    int n;

    if (*oom)
        return;
    for (;;) {
        va_start(ap, fmt);
        n = vsnprintf(*buf + *len, *cap - *len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            *oom = 1;
            return;
        }
        if ((size_t)n < *cap - *len) {
            *len += (size_t)n;
            return;
        }
        {
            size_t ncap = *cap * 2 + (size_t)n;
            char *nb = realloc(*buf, ncap);
            if (nb == NULL) {
                *oom = 1;
                return;
            }
            *buf = nb;
            *cap = ncap;
        }
    }
}

char *kgd_metrics_render(const kg_context *ctx)
{
    size_t len = 0, cap = 8192, i, n;
    int oom = 0, c;
    char *b = malloc(cap);
    unsigned long cum = 0;

    if (b == NULL)
        return NULL;
    b[0] = '\0';
#define A(...) add(&b, &len, &cap, &oom, __VA_ARGS__)
    A("# HELP keygated_decisions_total Decisions by code (\"ok\" when allowed) and plan (\"\" when no key was identified).\n"
      "# TYPE keygated_decisions_total counter\n");
    n = atomic_load(&M.nplans);
    for (i = 0; i < n; i++) {
        for (c = 0; c < KG_CODE__LAST; c++) {
            unsigned long v = atomic_load_explicit(&M.plans[i].by_code[c],
                                                   memory_order_relaxed);
            if (v == 0 && !(i == 0 && c == 0))
                continue;
            A("keygated_decisions_total{code=\"%s\",plan=\"%s\"} %lu\n",
              c == 0 ? "ok" : kg_code_name((kg_code)c), M.plans[i].name, v);
        }
    }
    A("# HELP keygated_decision_duration_seconds Time to decide a check, from request to decision.\n"
      "# TYPE keygated_decision_duration_seconds histogram\n");
    for (i = 0; i < NBUCKETS; i++) {
        cum += atomic_load_explicit(&M.buckets[i], memory_order_relaxed);
        A("keygated_decision_duration_seconds_bucket{le=\"%g\"} %lu\n",
          (double)bucket_us[i] / 1e6, cum);
    }
    cum += atomic_load_explicit(&M.buckets[NBUCKETS], memory_order_relaxed);
    A("keygated_decision_duration_seconds_bucket{le=\"+Inf\"} %lu\n", cum);
    A("keygated_decision_duration_seconds_sum %.6f\n",
      (double)atomic_load(&M.sum_us) / 1e6);
    A("keygated_decision_duration_seconds_count %lu\n", cum);
    A("# HELP keygated_requests_total HTTP requests by endpoint.\n"
      "# TYPE keygated_requests_total counter\n");
    for (i = 0; i < KGD_EP__LAST; i++)
        A("keygated_requests_total{endpoint=\"%s\"} %lu\n", ep_names[i],
          atomic_load(&M.requests[i]));
    A("# HELP keygated_rejected_requests_total Requests refused before a decision (malformed, too large; 503: past --max-connections).\n"
      "# TYPE keygated_rejected_requests_total counter\n"
      "keygated_rejected_requests_total{status=\"400\"} %lu\n"
      "keygated_rejected_requests_total{status=\"414\"} %lu\n"
      "keygated_rejected_requests_total{status=\"431\"} %lu\n"
      "keygated_rejected_requests_total{status=\"503\"} %lu\n",
      atomic_load(&M.rejected_400), atomic_load(&M.rejected_414),
      atomic_load(&M.rejected_431), atomic_load(&M.rejected_503));
    A("# HELP keygated_store_errors_total Checks answered 503 because a key store could not answer.\n"
      "# TYPE keygated_store_errors_total counter\n"
      "keygated_store_errors_total %lu\n", atomic_load(&M.store_errors));
    A("# HELP keygated_reloads_total Policy reloads (SIGHUP) by result.\n"
      "# TYPE keygated_reloads_total counter\n"
      "keygated_reloads_total{result=\"ok\"} %lu\n"
      "keygated_reloads_total{result=\"failed\"} %lu\n",
      atomic_load(&M.reloads_ok), atomic_load(&M.reloads_failed));
    A("# HELP keygated_policy_loaded_timestamp_seconds When the serving policy was loaded.\n"
      "# TYPE keygated_policy_loaded_timestamp_seconds gauge\n"
      "keygated_policy_loaded_timestamp_seconds %lld\n", (long long)atomic_load(&M.last_reload));
    A("# HELP keygated_lease_releases_total DELETE /leases/<id> by result.\n"
      "# TYPE keygated_lease_releases_total counter\n"
      "keygated_lease_releases_total{result=\"released\"} %lu\n"
      "keygated_lease_releases_total{result=\"unknown\"} %lu\n",
      atomic_load(&M.leases_released), atomic_load(&M.leases_unknown));
    A("# HELP keygated_in_flight_requests Requests being answered now.\n"
      "# TYPE keygated_in_flight_requests gauge\n"
      "keygated_in_flight_requests %ld\n", atomic_load(&M.inflight));
    A("# HELP keygated_limiter_entries Live (key, limit) entries in the memory limiter state.\n"
      "# TYPE keygated_limiter_entries gauge\n"
      "keygated_limiter_entries %zu\n", kg_context_limit_entries(ctx));
    {
        uint64_t hits = kg_context_stat(ctx, KG_STAT_CACHE_HITS);
        uint64_t misses = kg_context_stat(ctx, KG_STAT_CACHE_MISSES);
        uint64_t stale = kg_context_stat(ctx, KG_STAT_CACHE_STALE);
        A("# HELP keygated_keystore_cache_total Key-store cache lookups by outcome (keystore lines with cache:).\n"
          "# TYPE keygated_keystore_cache_total counter\n"
          "keygated_keystore_cache_total{result=\"hit\"} %llu\n"
          "keygated_keystore_cache_total{result=\"miss\"} %llu\n"
          "keygated_keystore_cache_total{result=\"stale\"} %llu\n",
          (unsigned long long)hits, (unsigned long long)misses,
          (unsigned long long)stale);
    }
    A("# HELP keygated_limit_backend_errors_total A limiter backend (Redis) could not answer; by what the limit did then.\n"
      "# TYPE keygated_limit_backend_errors_total counter\n"
      "keygated_limit_backend_errors_total %llu\n"
      "# HELP keygated_limit_backend_fallbacks_total Requests decided without the limiter backend (on_backend_error).\n"
      "# TYPE keygated_limit_backend_fallbacks_total counter\n"
      "keygated_limit_backend_fallbacks_total{action=\"allow\"} %llu\n"
      "keygated_limit_backend_fallbacks_total{action=\"local\"} %llu\n",
      (unsigned long long)kg_context_stat(ctx, KG_STAT_LIMIT_BACKEND_ERRORS),
      (unsigned long long)kg_context_stat(ctx, KG_STAT_LIMIT_FAIL_OPEN),
      (unsigned long long)kg_context_stat(ctx, KG_STAT_LIMIT_FAIL_LOCAL));
    A("# HELP keygated_limit_slots_at_home_total Memory limiter slots made at their key's home (one cache miss per check instead of two).\n"
      "# TYPE keygated_limit_slots_at_home_total counter\n"
      "keygated_limit_slots_at_home_total %llu\n",
      (unsigned long long)kg_context_stat(ctx, KG_STAT_LIMIT_SLOTS_AT_HOME));
    {
        /* Metering (docs/usage.md): totals only, never a label per key
         * or account. */
        kg_usage_stats us;
        kg_usage_stats_get(ctx, &us);
        A("# HELP keygated_usage_flushes_total Usage flushes by result (\"failed\": the store refused, the counts were kept).\n"
          "# TYPE keygated_usage_flushes_total counter\n"
          "keygated_usage_flushes_total{result=\"ok\"} %llu\n"
          "keygated_usage_flushes_total{result=\"failed\"} %llu\n"
          "# HELP keygated_usage_written_total Usage rows (account, key, minute, outcome) and events written to the usage store.\n"
          "# TYPE keygated_usage_written_total counter\n"
          "keygated_usage_written_total{what=\"rows\"} %llu\n"
          "keygated_usage_written_total{what=\"events\"} %llu\n"
          "# HELP keygated_usage_dropped_total Usage rows and events dropped past max_pending.\n"
          "# TYPE keygated_usage_dropped_total counter\n"
          "keygated_usage_dropped_total{what=\"rows\"} %llu\n"
          "keygated_usage_dropped_total{what=\"events\"} %llu\n"
          "# HELP keygated_usage_pending Usage rows and events counted and not written yet.\n"
          "# TYPE keygated_usage_pending gauge\n"
          "keygated_usage_pending{what=\"rows\"} %llu\n"
          "keygated_usage_pending{what=\"events\"} %llu\n"
          "# HELP keygated_usage_flush_duration_seconds How long the last write to the usage store took.\n"
          "# TYPE keygated_usage_flush_duration_seconds gauge\n"
          "keygated_usage_flush_duration_seconds %.6f\n",
          (unsigned long long)us.flushes, (unsigned long long)us.flush_errors,
          (unsigned long long)us.rows_written, (unsigned long long)us.events_written,
          (unsigned long long)us.rows_dropped, (unsigned long long)us.events_dropped,
          (unsigned long long)us.pending_rows, (unsigned long long)us.pending_events,
          (double)us.last_flush_us / 1e6);
    }
    {
        /* Alerts (docs/alerts.md): delivery attempts, failed ones, and
         * the outbox's pending entries. */
        uint64_t at, fail, fired, cleared;
        int64_t depth;
        kgd_alerts_metrics(&at, &fail, &fired, &cleared, &depth);
        A("# HELP keygated_alert_deliveries_total Alert delivery attempts by result (\"failed\": retried later or given up).\n"
          "# TYPE keygated_alert_deliveries_total counter\n"
          "keygated_alert_deliveries_total{result=\"ok\"} %llu\n"
          "keygated_alert_deliveries_total{result=\"failed\"} %llu\n"
          "# HELP keygated_alerts_total Alerts written to the outbox, by type.\n"
          "# TYPE keygated_alerts_total counter\n"
          "keygated_alerts_total{type=\"fired\"} %llu\n"
          "keygated_alerts_total{type=\"cleared\"} %llu\n"
          "# HELP keygated_alert_outbox_depth Alert outbox entries waiting to be sent (-1: the store did not answer).\n"
          "# TYPE keygated_alert_outbox_depth gauge\n"
          "keygated_alert_outbox_depth %lld\n",
          (unsigned long long)(at - fail), (unsigned long long)fail,
          (unsigned long long)fired, (unsigned long long)cleared,
          (long long)depth);
    }
    A("# HELP keygated_start_time_seconds When keygated started.\n"
      "# TYPE keygated_start_time_seconds gauge\n"
      "keygated_start_time_seconds %lld\n", (long long)M.started);
#undef A
    if (oom) {
        free(b);
        return NULL;
    }
    return b;
}
