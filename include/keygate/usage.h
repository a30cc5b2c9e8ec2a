/*
 * usage.h - usage metering: what every account and key used, and the
 * events (denials, a sample of allowed decisions) kept for access-log
 * review (docs/usage.md).
 *
 * Every kg_check() of a policy with a `usage:` section is counted in
 * memory, in the context, per (account, key, minute, outcome); the
 * denials and a sample of the allowed decisions are kept as events.
 * kg_usage_flush() writes them to the section's usage store (a plugin
 * whose descriptor sets `usage`, plugin.h) in one call; the queries
 * below read the store.  Nothing here is on the request path but the
 * counting.
 */
#ifndef KEYGATE_USAGE_H
#define KEYGATE_USAGE_H

#include <keygate/keygate.h>

#ifdef __cplusplus
extern "C" {
#endif

#pragma GCC visibility push(default)

/* One counted bucket: `count` decisions of `code` (KG_CODE_NONE =
 * allowed) for (account, key) in [start, start + span).  "" for no
 * account / no key (requests without an identified key). */
typedef struct kg_usage_row {
    int64_t start;          /* Unix seconds, a multiple of span */
    int32_t span;           /* 60, 3600 or 86400 */
    const char *account_id;
    const char *key_id;
    kg_code code;
    int64_t count;
} kg_usage_row;

/* One event (each denial; a sample of allowed decisions).  Never a key:
 * key_prefix is the record's display prefix (8 characters). */
typedef struct kg_usage_event {
    int64_t id;             /* store-assigned, 0 on write; a cursor */
    int64_t time_ms;        /* Unix milliseconds */
    const char *account_id, *key_id, *key_prefix;   /* "" if none */
    const char *client;     /* the client address, "" if unknown */
    const char *method, *path, *decided_by;
    int status;
    kg_code code;
} kg_usage_event;

/* Buckets to read. */
typedef struct kg_usage_query {
    const char *account_id, *key_id;   /* NULL: any */
    int64_t since, until;              /* [since, until), Unix seconds */
    int32_t span;                      /* 60, 3600 or 86400 */
} kg_usage_query;

/* Events to read. */
typedef struct kg_event_query {
    const char *account_id, *key_id;   /* NULL: any */
    int status_min, status_max;        /* 0: any */
    kg_code code;
    int any_code;                      /* 1: every code (code ignored) */
    int64_t since_ms, until_ms;        /* [since, until); 0: open */
    int64_t before_id;                 /* 0: the newest; else ids below */
    size_t limit;                      /* 0: no limit */
} kg_event_query;

/* Callbacks: return non-zero to stop. */
typedef int (*kg_usage_row_cb)(const kg_usage_row *r, void *ud);
typedef int (*kg_usage_event_cb)(const kg_usage_event *e, void *ud);
typedef int (*kg_usage_top_cb)(const char *account_id, const char *key_id,
                               int64_t allowed, int64_t denied, void *ud);

/*
 * Queries through the policy's usage store: KG_ERR_UNSUPPORTED (the
 * diag says so) if the policy has no usage: section; the store's error
 * otherwise.  Rows come out ordered by start, then account, key, code;
 * events newest first.  kg_usage_top() sums [since, until) per account
 * (by_key 0; key_id is then "") or per key (by_key 1), heaviest first,
 * at most `limit` (0: all).  What has been counted but not flushed is
 * not in the store yet: flush first to read it.
 */
kg_error kg_usage_query_rows(const kg_policy *p, const kg_usage_query *q,
                             kg_usage_row_cb cb, void *ud, kg_diag *diag);
kg_error kg_usage_top(const kg_policy *p, int by_key, int64_t since,
                      int64_t until, size_t limit, kg_usage_top_cb cb,
                      void *ud, kg_diag *diag);
kg_error kg_usage_events(const kg_policy *p, const kg_event_query *q,
                         kg_usage_event_cb cb, void *ud, kg_diag *diag);

/*
 * Write what the context has counted to the policy's store now, in one
 * write (keygated calls it every flush_interval, at reload with the old
 * policy, and at shutdown).  Only one flush runs at a time per context;
 * a second caller waits.  KG_ERR_UNSUPPORTED: the policy has no usage
 * section.  KG_ERR_UNAVAILABLE (or the store's error): nothing was
 * written; the batch is kept (at most the section's max_pending rows
 * and events, what does not fit is dropped and counted) and written by
 * the next flush.
 */
kg_error kg_usage_flush(const kg_policy *p, kg_diag *diag);

/* The usage section's flush_interval in seconds; 0 without one. */
int64_t kg_usage_flush_interval(const kg_policy *p);

/* The context's metering figures, for /metrics (no per-key figure). */
typedef struct kg_usage_stats {
    uint64_t flushes;         /* flushes that wrote (or had nothing) */
    uint64_t flush_errors;    /* flushes the store refused */
    uint64_t rows_written;
    uint64_t events_written;
    uint64_t rows_dropped;    /* buckets dropped past max_pending */
    uint64_t events_dropped;  /* events dropped past max_pending */
    uint64_t pending_rows;    /* buckets counted, not written yet */
    uint64_t pending_events;
    int64_t last_flush_us;    /* how long the last flush's write took */
} kg_usage_stats;
void kg_usage_stats_get(const kg_context *ctx, kg_usage_stats *out);

/* The name of a code as events and rows carry it ("allowed" for
 * KG_CODE_NONE, else kg_code_name()), and back: KG_ERR_INVALID for a
 * name that is none. */
const char *kg_usage_code_name(kg_code code);
kg_error kg_usage_code_parse(const char *name, kg_code *code_r);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif

#endif
