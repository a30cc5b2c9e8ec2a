/*
 * alerts_eval.h - the evaluator's state (alerts.c), shared with the
 * rules' evaluation (alerts_rules.c) and the sender (alerts_send.c).
 */
#ifndef KG_ALERTS_EVAL_H
#define KG_ALERTS_EVAL_H

#include "alerts_int.h"

/* new_client_network: an account's networks seen in its first day are
 * learned quietly; at most this many are kept per account. */
#define KG__LEARN_SECONDS 86400
#define KG__MAX_NETS 1024

struct kg__net {
    unsigned char net[16];
    int64_t seen;
    int pending;   /* new: to be alerted */
};

struct kg__quota {
    char limit[48];
    int64_t limit_n, used, reset, window;
    int64_t fired_reset[8];   /* per quota rule (by order), 0: none */
    int active[8];
};

/* One rule's state for one subject. */
struct kg__aslot {
    uint32_t *ring;    /* spike: counts per period; denied: per minute */
    size_t nring;
    int64_t cur;       /* the period the ring is at */
    int64_t first;     /* the first period (spike, denied) or time (newnet) seen */
    int active;        /* fired, not cleared */
    int64_t fired_at;  /* the window it fired in */
    int64_t last_hit;  /* spike: the last period over the threshold */
    struct kg__net *nets;
    size_t nnets, capnets;
    int64_t value;     /* key rules: the expiry / last use it fired for */
};

struct kg__subj {
    struct kg__subj *next;
    uint64_t hash;
    int is_key;
    char *id;
    char *account_id;  /* the account (for a key: its account, if any) */
    char *key_id;      /* the last key seen of the account */
    char *key_prefix;
    struct kg__aslot *slots;   /* one per rule */
    struct kg__quota *quota;   /* one per limit */
    size_t nquota;
    int dirty;         /* observed since its last evaluation */
};

struct kg__override {
    char *account_id, *rule, *url, *secret_file;
    double threshold;
};

struct kg_alerts {
    struct kg__subj **tab;
    size_t cap, n;
    const kg__alerts_conf *conf;   /* of the policy of the last run */
    char *sig;
    size_t nslots;
    struct kg__override *ov;
    size_t nov;
    int64_t key_interval, last_keys;
    int64_t last_full;   /* the minute of the last round over every subject */
    /* Seeding the spike rules from the usage store (alerts_seed.c):
     * pages [seed_from, seed_next) are still to read, newest first;
     * seed_until is where the seeding started (0: not started). */
    int64_t seed_until, seed_next, seed_from;
    /* During a run: where entries go. */
    const struct kg_outbox_ops *ops;
    void *store;
    kg_diag *diag;
    size_t written;
    int oom;
    kg_alerts_stats stats;   /* updated with __atomic builtins */
};

/* Use p's rules (their state starts afresh if they changed). */
kg_error kg__alerts_bind(kg_alerts *a, const kg_policy *p);
/* The subject, made if create (NULL: out of memory, or none). */
struct kg__subj *kg__alerts_subject(kg_alerts *a, int is_key, const char *id,
                                    int create);
int kg__ring_advance(struct kg__aslot *sl, size_t size, int64_t p);
/* Add `count` to period p (of the rule's own length) of rule i's slot
 * of the subject that the rule counts the row under; `older`: seeding,
 * the row is older than what was seen (it keeps the last key seen). */
kg_error kg__alerts_add_count(kg_alerts *a, size_t i, const char *account_id,
                              const char *key_id, int64_t p, int64_t count,
                              int older);
const struct kg__override *kg__alerts_override(const kg_alerts *a,
                                               const char *account_id,
                                               const char *rule);
/* Write the alert to the outbox: one entry per notifier of r (and the
 * account's own receiver); `figures` a JSON object. */
kg_error kg__alerts_emit(kg_alerts *a, const kg__alert_rule *r,
                         const char *type, const char *account_id,
                         const char *key_id, const char *key_prefix,
                         int64_t window, int64_t now, const char *figures,
                         const char *message);

/* alerts_rules.c */
kg_error kg__alerts_eval_subject(kg_alerts *a, struct kg__subj *s,
                                 int64_t now);
kg_error kg__alerts_eval_keys(kg_alerts *a, const kg_policy *p, int64_t now);
/* A spike rule's baseline for period `p` of the slot: the mean count of
 * the same period on each earlier day the subject has history for;
 * *days_r gets how many (0: no baseline yet). */
double kg__spike_baseline(const kg__alert_rule *r, const struct kg__aslot *sl,
                          int64_t p, int *days_r);

#endif
