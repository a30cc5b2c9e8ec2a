/*
 * alerts.h - usage alerts: the policy's `alerts:` rules, the notifier
 * plugin ABI (`notifiers:`), the durable outbox and its sender.
 *
 * Rules are evaluated in the background (keygated's alerts thread, every
 * few seconds), never on the request path: an alert that fires is
 * written to the outbox first, then sent by the notifiers, retried with
 * exponential backoff and jitter, and its message id is the same on
 * every attempt so that a receiver can drop duplicates.  docs/alerts.md
 * describes the rules and the delivery.
 */
#ifndef KEYGATE_ALERTS_H
#define KEYGATE_ALERTS_H

#include <keygate/keygate.h>
#include <keygate/plugin.h>
#include <keygate/webhook.h>

#ifdef __cplusplus
extern "C" {
#endif

#pragma GCC visibility push(default)

/* ------------------------------------------------------------------ */
/* The notifier plugin ABI (kind KG_PLUGIN_NOTIFIER)                   */

/* One delivery attempt of one alert. */
typedef struct kg_notify_msg {
    const char *id;          /* "msg_…": the same on every attempt */
    int64_t timestamp;       /* Unix seconds of this attempt */
    const char *type;        /* "alert.fired", "alert.cleared", "alert.test" */
    const char *rule;        /* the rule's name */
    const char *account_id;  /* "" if none */
    const char *payload;     /* JSON, sent byte for byte */
    size_t payload_len;
    /* An account's own receiver (its override), or NULL: the
     * notifier's own URL and secrets. */
    const char *url;
    const kg_webhook_secrets *secrets;
} kg_notify_msg;

struct kg_notifier_ops {
    /*
     * Deliver one message; may block (it runs on the sender thread,
     * never on the request path), bounded by the notifier's timeout.
     * KG_OK: delivered.  KG_ERR_UNAVAILABLE: try again later (no
     * answer, 5xx, 408, 429).  KG_ERR_INVALID: refused for good (any
     * other 4xx): the alert is marked failed.  *status_r gets the HTTP
     * status (0 if none), diag the reason (never a secret).
     */
    kg_error (*send)(void *inst, const kg_notify_msg *m, int *status_r,
                     kg_diag *diag);
};

/* ------------------------------------------------------------------ */
/* The outbox                                                          */

typedef enum kg_outbox_state {
    KG_OUTBOX_PENDING = 0,   /* to be sent (again) at next_at */
    KG_OUTBOX_SENT = 1,
    KG_OUTBOX_FAILED = 2     /* refused for good, or retried past max_age */
} kg_outbox_state;

/* "pending", "sent", "failed"; NULL for another value. */
const char *kg_outbox_state_name(int state);

/* One message to one notifier. */
typedef struct kg_outbox_entry {
    int64_t id;              /* store-assigned; 0 on put */
    const char *msg_id;      /* unique: a put of a known msg_id is a no-op */
    const char *notifier;    /* the notifiers: name */
    const char *rule;
    const char *account_id;  /* "" if none */
    const char *type;        /* "alert.fired", ... */
    const char *payload;     /* JSON */
    int64_t created;         /* Unix seconds */
    int64_t next_at;         /* when it is due */
    int attempts;
    int state;               /* kg_outbox_state */
    int last_status;         /* HTTP status of the last attempt, 0: none */
    const char *last_error;  /* "" if none */
    /* An account's own receiver (kg_alert_override), or NULL / "". */
    const char *url;
    const char *secret_file;
} kg_outbox_entry;

typedef int (*kg_outbox_cb)(const kg_outbox_entry *e, void *ud);

/* Per-account settings of a rule (docs/alerts.md "Per-account rules"). */
typedef struct kg_alert_override {
    const char *account_id;
    const char *rule;
    /* The rule's figure (quota %, spike factor, denial count, days);
     * 0: the rule's own.  -1: the rule is off for this account. */
    double threshold;
    const char *url;          /* NULL or "": the notifiers' own */
    const char *secret_file;  /* the secret of that URL, read when sending */
} kg_alert_override;
typedef int (*kg_alert_override_cb)(const kg_alert_override *o, void *ud);

/*
 * Outbox operations of a store (the usage store, plugin.h's
 * kg_usage_ops; or kg_outbox_memory() in tests).  put: insert, unless
 * an entry of that msg_id exists (then KG_OK, *created_r 0).  due:
 * pending entries with next_at <= now, oldest first, at most limit.
 * mark: an attempt's outcome (also `keygate alerts retry`: pending,
 * due now).  list: newest first, state -1 for any, before_id 0 for the
 * newest.  get: one entry by id (KG_ERR_NOT_FOUND).  depth: pending
 * entries.
 */
struct kg_outbox_ops {
    kg_error (*put)(void *inst, const kg_outbox_entry *e, int *created_r,
                    kg_diag *diag);
    kg_error (*due)(void *inst, int64_t now, size_t limit, kg_outbox_cb cb,
                    void *ud, kg_diag *diag);
    kg_error (*mark)(void *inst, int64_t id, int state, int attempts,
                     int64_t next_at, int last_status, const char *last_error,
                     kg_diag *diag);
    kg_error (*list)(void *inst, int state, int64_t before_id, size_t limit,
                     kg_outbox_cb cb, void *ud, kg_diag *diag);
    kg_error (*get)(void *inst, int64_t id, kg_outbox_cb cb, void *ud,
                    kg_diag *diag);
    kg_error (*depth)(void *inst, int64_t *n_r, kg_diag *diag);
    /* Per-account settings, kept with the outbox: put replaces the
     * (account, rule) one; delete answers KG_ERR_NOT_FOUND if there is
     * none; list gives every one, by account then rule. */
    kg_error (*override_put)(void *inst, const kg_alert_override *o,
                             kg_diag *diag);
    kg_error (*override_delete)(void *inst, const char *account_id,
                                const char *rule, kg_diag *diag);
    kg_error (*override_list)(void *inst, kg_alert_override_cb cb, void *ud,
                              kg_diag *diag);
};

/* The policy's durable outbox: its usage store's (the usage: section's
 * plugin, kg_usage_ops.outbox).  KG_ERR_UNSUPPORTED (diag says why) if
 * the policy has no usage store or its store keeps no outbox. */
kg_error kg_policy_outbox(const kg_policy *p, const struct kg_outbox_ops **ops_r,
                          void **store_r, kg_diag *diag);

/* An outbox in memory (not durable): for tests and for a policy
 * without a usage store.  Free it with kg_outbox_memory_free(). */
typedef struct kg_outbox_memory kg_outbox_memory;
kg_outbox_memory *kg_outbox_memory_new(void);
void kg_outbox_memory_free(kg_outbox_memory *m);
const struct kg_outbox_ops *kg_outbox_memory_ops(void);

/* ------------------------------------------------------------------ */
/* Rules and their evaluation                                          */

/* The policy's rules and notifiers, for listing. */
size_t kg_policy_alert_count(const kg_policy *p);
/* Rule i's name, its kind ("quota", "spike", ...) and a one-line
 * description of its condition into buf; NULL if i is out of range. */
const char *kg_policy_alert(const kg_policy *p, size_t i, const char **kind_r,
                            char *buf, size_t size);
size_t kg_policy_notifier_count(const kg_policy *p);
const char *kg_policy_notifier(const kg_policy *p, size_t i,
                               const char **module_r);


/*
 * The evaluator: the state of every rule per account and key.  One per
 * process (keygated's alerts thread; tests), kept across policy
 * reloads; not thread safe (one thread feeds and runs it).
 */
typedef struct kg_alerts kg_alerts;

kg_error kg_alerts_new(kg_alerts **a_r);
void kg_alerts_free(kg_alerts *a);

/* Observations, fed from the usage counters as they are flushed (rows
 * of a minute), from the events (each denial and a sample of allowed
 * decisions: `client` their address) and from the limiters' reports. */
kg_error kg_alerts_observe_count(kg_alerts *a, const char *account_id,
                                 const char *key_id, int64_t minute_start,
                                 kg_code code, int64_t count);
kg_error kg_alerts_observe_client(kg_alerts *a, const char *account_id,
                                  const char *key_id, const char *key_prefix,
                                  int64_t time_s, const char *client);

/*
 * Seed the spike rules' history from the policy's usage store
 * (docs/alerts.md "spike"): what it counted before `until` (Unix
 * seconds; where the feed of kg_alerts_observe_count() starts), back
 * over the longest baseline.  A new evaluator, and one whose spike
 * rules changed with p, starts a seeding (`until` is read then, and
 * ignored by the calls that go on with it); each call reads at most
 * `pages` pages (an hour of rows each, newest first), so that the
 * caller can run the rules between calls: baselines are exact over
 * the days read so far.  *done_r gets 1 once it is done (at once
 * without a spike rule or a usage store); *rows_r (may be NULL) the
 * rows read by this call.  A store error is returned and the page is
 * read again by the next call.  Binds p's rules as kg_alerts_run()
 * does, so that observations fed after it count under them.
 */
kg_error kg_alerts_seed(kg_alerts *a, const kg_policy *p, int64_t until,
                        size_t pages, size_t *rows_r, int *done_r,
                        kg_diag *diag);

/* The policy's quota rules' figures, from the context's watch of the
 * limiters' reports (kg_check() keeps it when a rule needs it);
 * kg_alerts_run() reads the watch itself first. */
kg_error kg_alerts_observe_quota(kg_alerts *a, const char *subject,
                                 const char *limit_name, int64_t limit,
                                 int64_t used, int64_t reset,
                                 int64_t window);
kg_error kg_alerts_observe_quotas(kg_alerts *a, kg_context *ctx);

/* Set the per-account overrides (replacing those set before); copied. */
kg_error kg_alerts_set_overrides(kg_alerts *a, const kg_alert_override *o,
                                 size_t n);
/* The same, with every override the store keeps (its override_list). */
kg_error kg_alerts_load_overrides(kg_alerts *a, const struct kg_outbox_ops *ops,
                                  void *store, kg_diag *diag);

/*
 * Evaluate every rule of p at `now` (Unix seconds) and put what fires
 * or clears into the outbox (one entry per notifier of the rule), and
 * key rules against the policy's key store (keys_every seconds apart at
 * most, 0: now).  *n_r (may be NULL) gets the number of entries written.
 */
kg_error kg_alerts_run(kg_alerts *a, const kg_policy *p, int64_t now,
                       const struct kg_outbox_ops *ops, void *store,
                       size_t *n_r, kg_diag *diag);
/* Key rules need the keys: kg_alerts_run() lists them from the policy's
 * store at most this often (seconds; default 300). */
void kg_alerts_set_key_interval(kg_alerts *a, int64_t seconds);

/*
 * Send what is due: each due entry to its notifier (NULL ops: the
 * policy's), then marked sent, failed, or pending again at now +
 * backoff (kg_outbox_backoff).  *sent_r, *failed_r (may be NULL) count
 * this round's outcomes.  Stops at the first store error.
 */
kg_error kg_alerts_send_due(kg_alerts *a, const kg_policy *p, int64_t now,
                            const struct kg_outbox_ops *ops, void *store,
                            size_t limit, size_t *sent_r, size_t *failed_r,
                            kg_diag *diag);
/* Seconds to wait after attempt n (1, 2, ...): min(2^(n-1) * 30 s, 1 h),
 * from 50% to 100% of it at random (rand01 in [0,1)). */
int64_t kg_outbox_backoff(int attempt, double rand01);
/* Retries stop after this long (seconds since the alert): 48 h. */
#define KG_OUTBOX_MAX_AGE (48 * 3600)

/* Send a sample alert of `rule` to every notifier of the policy (now,
 * not through the outbox); cb gets each notifier's outcome. */
typedef void (*kg_alerts_test_cb)(const char *notifier, kg_error e,
                                  int status, const char *message, void *ud);
kg_error kg_alerts_test(const kg_policy *p, const char *rule,
                        kg_alerts_test_cb cb, void *ud, kg_diag *diag);

/* Counters for /metrics: attempts made, failed attempts (incl. those
 * retried), alerts fired, since the process started. */
typedef struct kg_alerts_stats {
    uint64_t attempts, failures, fired, cleared;
} kg_alerts_stats;
void kg_alerts_stats_get(const kg_alerts *a, kg_alerts_stats *st);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif

#endif
