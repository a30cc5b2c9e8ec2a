/*
 * alerts_int.h - what the alerts files of the core share: the parsed
 * `notifiers:` and `alerts:` sections (alerts_policy.c), read by the
 * evaluator (alerts.c, alerts_rules.c) and the sender (alerts_send.c).
 */
#ifndef KG_ALERTS_INT_H
#define KG_ALERTS_INT_H

#include "internal.h"
#include <keygate/alerts.h>

enum kg__alert_kind {
    KG__AR_QUOTA = 0,
    KG__AR_SPIKE,
    KG__AR_DENIED,
    KG__AR_NEWNET,
    KG__AR_EXPIRES,
    KG__AR_UNUSED
};

#define KG__AR_MAX_NOTIFY 8
#define KG__AR_MAX_CODES 16

typedef struct kg__notifier {
    char *name;
    const kg__module *mod;
    void *inst;
} kg__notifier;

typedef struct kg__alert_rule {
    char *name;
    int kind;                 /* enum kg__alert_kind */
    int per_key;              /* spike, denied: per key instead of account */
    double threshold;         /* quota %, spike factor, denied count */
    int64_t over, baseline_days, min_requests;  /* spike */
    kg_code codes[KG__AR_MAX_CODES];            /* denied */
    size_t ncodes;
    int64_t within;           /* denied: seconds, a multiple of 60 */
    int prefix4, prefix6;     /* new_client_network */
    int64_t duration;         /* key_expires_within, key_unused_for */
    size_t notify[KG__AR_MAX_NOTIFY];   /* indexes of notifiers */
    size_t nnotify;
} kg__alert_rule;

typedef struct kg__alerts_conf {
    kg__notifier *nv;
    size_t nn;
    kg__alert_rule *rv;
    size_t nr;
    int quota;                /* some rule reads the limiters' reports */
    double quota_min;         /* the lowest quota threshold of the rules */
} kg__alerts_conf;

/* The kind's name as the policy writes it ("quota", "spike", ...). */
const char *kg__alert_kind_name(int kind);
/* The policy's section, or NULL if it has none. */
const kg__alerts_conf *kg__alerts_conf_of(const kg_policy *p);
/* The rule of that name, or NULL. */
const kg__alert_rule *kg__alerts_rule(const kg__alerts_conf *c,
                                      const char *name);
/* The notifier of that name, or NULL. */
const kg__notifier *kg__alerts_notifier(const kg__alerts_conf *c,
                                        const char *name);

/* ---- alerts_quota.c: the limiters' reports, watched -------------------- */

kg_error kg__quota_watch_new(kg_context *ctx);
/* The reports kg_check() saw of subject's limits, those at or above
 * the watch's floor (kg__quota_floor_set; before it is set, `dflt`, the
 * policy's lowest quota threshold), in percent of the limit. */
void kg__quota_watch(kg_context *ctx, const char *subject,
                     const kg_decision *d, double dflt);
/* The floor: the lowest threshold of the quota rules and of the
 * accounts' settings of them (kg_alerts_run() sets it). */
void kg__quota_floor_set(kg_context *ctx, double pct);
void kg__quota_watch_free(kg_context *ctx);
/* Each entry, under its shard's lock (cb must not call back in). */
typedef void (*kg__quota_cb)(const char *subject, const char *limit,
                             int64_t limit_n, int64_t used, int64_t reset,
                             int64_t window, void *ud);
void kg__quota_each(kg_context *ctx, kg__quota_cb cb, void *ud);

#endif
