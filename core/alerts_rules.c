/*
 * alerts_rules.c - each rule's condition, on one subject's state: when
 * it fires (once per condition and window) and when it clears
 * (docs/alerts.md "Rules").
 */
#include "alerts_eval.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The rule's figure for this account: its override's, else its own;
 * < 0: the rule is off for the account. */
static double threshold(const kg_alerts *a, const kg__alert_rule *r,
                        const char *account_id)
{
    const struct kg__override *o = kg__alerts_override(a, account_id, r->name);
    if (o != NULL && o->threshold != 0)
        return o->threshold;
    return r->threshold;
}

static kg_error eval_quota(kg_alerts *a, struct kg__subj *s, size_t qi,
                           const kg__alert_rule *r, int64_t now)
{
    double t = threshold(a, r, s->id);
    size_t i;
    kg_error e = KG_OK;

    if (qi >= 8)
        return KG_OK;
    for (i = 0; i < s->nquota && e == KG_OK; i++) {
        struct kg__quota *q = &s->quota[i];
        double pct = q->limit_n > 0 ? 100.0 * (double)q->used / (double)q->limit_n : 0;
        /* The window the figure is of is over once its reset has come:
         * nothing is used of the next one yet. */
        int over = q->reset > 0 && now >= q->reset;
        char fig[256], msg[300];

        if (t < 0)
            return KG_OK;
        if (!over && pct >= t && q->fired_reset[qi] != q->reset) {
            snprintf(fig, sizeof(fig), "{\"limit\":\"%s\",\"used\":%lld,"
                     "\"of\":%lld,\"percent\":%.1f,\"threshold\":%g,"
                     "\"window\":%lld,\"reset\":%lld}", q->limit,
                     (long long)q->used, (long long)q->limit_n, pct, t,
                     (long long)q->window, (long long)q->reset);
            snprintf(msg, sizeof(msg), "%s has used %lld of %lld (%.0f%%) of "
                     "its %s limit in this window", s->id, (long long)q->used,
                     (long long)q->limit_n, pct, q->limit);
            e = kg__alerts_emit(a, r, "alert.fired", s->id, NULL, NULL,
                                q->reset, now, fig, msg);
            if (e == KG_OK) {
                q->fired_reset[qi] = q->reset;
                q->active[qi] = 1;
            }
        } else if (q->active[qi] && (over || (q->reset != q->fired_reset[qi] &&
                                             pct < t))) {
            snprintf(fig, sizeof(fig), "{\"limit\":\"%s\",\"used\":%lld,"
                     "\"of\":%lld,\"threshold\":%g}", q->limit,
                     (long long)(over ? 0 : q->used), (long long)q->limit_n, t);
            snprintf(msg, sizeof(msg), "%s is back under %g%% of its %s "
                     "limit in a new window", s->id, t, q->limit);
            e = kg__alerts_emit(a, r, "alert.cleared", s->id, NULL, NULL,
                                q->fired_reset[qi], now, fig, msg);
            if (e == KG_OK)
                q->active[qi] = 0;
        }
    }
    return e;
}

double kg__spike_baseline(const kg__alert_rule *r, const struct kg__aslot *sl,
                          int64_t p, int *days_r)
{
    int64_t per_day = 86400 / r->over, d;
    double sum = 0;
    int n = 0;

    for (d = 1; d <= r->baseline_days; d++) {
        int64_t q = p - d * per_day;
        /* Only days the subject was seen on (from its first period):
         * a new account has no baseline, not a baseline of zero. */
        if (q < sl->first || q <= sl->cur - (int64_t)sl->nring)
            break;
        sum += sl->ring[q % (int64_t)sl->nring];
        n++;
    }
    *days_r = n;
    return n ? sum / n : 0;
}

static kg_error eval_spike(kg_alerts *a, struct kg__subj *s,
                           struct kg__aslot *sl, const kg__alert_rule *r,
                           int64_t now)
{
    const char *acct = s->is_key ? s->account_id : s->id;
    const char *key = s->is_key ? s->id : NULL;
    double t = threshold(a, r, acct), base;
    int64_t p = now / r->over, cur;
    int days;
    char fig[256], msg[300];
    kg_error e = KG_OK;

    if (sl->ring == NULL || t < 0)
        return KG_OK;
    if (kg__ring_advance(sl, sl->nring, p) != 0)
        return KG_ERR_NOMEM;
    cur = sl->ring[p % (int64_t)sl->nring];
    base = kg__spike_baseline(r, sl, p, &days);
    if (days > 0 && cur >= r->min_requests && (double)cur > t * base) {
        sl->last_hit = p;
        if (!sl->active) {
            snprintf(fig, sizeof(fig), "{\"requests\":%lld,\"baseline\":%.1f,"
                     "\"factor\":%g,\"over\":%lld,\"baseline_days\":%d,"
                     "\"period_start\":%lld}", (long long)cur, base, t,
                     (long long)r->over, days, (long long)(p * r->over));
            snprintf(msg, sizeof(msg), "%s made %lld requests in this %llds "
                     "period, over %g x its usual %.1f (the mean of the same "
                     "period over %d days)", key ? key : acct, (long long)cur,
                     (long long)r->over, t, base, days);
            e = kg__alerts_emit(a, r, "alert.fired", acct, key, s->key_prefix,
                                p, now, fig, msg);
            if (e == KG_OK) {
                sl->active = 1;
                sl->fired_at = p;
            }
        }
    } else if (sl->active && p - 1 > sl->last_hit) {
        /* A whole period passed without the spike: it is over. */
        snprintf(fig, sizeof(fig), "{\"requests\":%lld,\"baseline\":%.1f,"
                 "\"factor\":%g,\"over\":%lld,\"since\":%lld}",
                 (long long)sl->ring[(p - 1) % (int64_t)sl->nring], base, t,
                 (long long)r->over, (long long)(sl->fired_at * r->over));
        snprintf(msg, sizeof(msg), "the spike of %s is over",
                 key ? key : acct);
        e = kg__alerts_emit(a, r, "alert.cleared", acct, key, s->key_prefix,
                            sl->fired_at, now, fig, msg);
        if (e == KG_OK)
            sl->active = 0;
    }
    return e;
}

static kg_error eval_denied(kg_alerts *a, struct kg__subj *s,
                            struct kg__aslot *sl, const kg__alert_rule *r,
                            int64_t now)
{
    const char *acct = s->is_key ? s->account_id : s->id;
    const char *key = s->is_key ? s->id : NULL;
    double t = threshold(a, r, acct);
    int64_t m = now / 60, sum = 0;
    size_t i;
    char fig[256], msg[300];
    kg_error e = KG_OK;

    if (sl->ring == NULL || t < 0)
        return KG_OK;
    if (kg__ring_advance(sl, sl->nring, m) != 0)
        return KG_ERR_NOMEM;
    for (i = 0; i < sl->nring; i++)
        sum += sl->ring[i];
    if ((double)sum >= t && !sl->active) {
        /* The burst's window is its first minute in the ring: the same
         * counts fed again (keygated restarted, reading back) make the
         * same alert, which the outbox keeps once. */
        int64_t first = m;
        for (i = 0; i < sl->nring; i++) {
            int64_t q = m - (int64_t)(sl->nring - 1) + (int64_t)i;
            if (q >= sl->first && sl->ring[q % (int64_t)sl->nring] != 0) {
                first = q;
                break;
            }
        }
        snprintf(fig, sizeof(fig), "{\"denials\":%lld,\"count\":%g,"
                 "\"within\":%lld}", (long long)sum, t, (long long)r->within);
        snprintf(msg, sizeof(msg), "%lld requests of %s denied in the last "
                 "%llds", (long long)sum, acct && acct[0] ? acct :
                 "unidentified clients", (long long)r->within);
        e = kg__alerts_emit(a, r, "alert.fired", acct, key, s->key_prefix,
                            first, now, fig, msg);
        if (e == KG_OK) {
            sl->active = 1;
            sl->fired_at = first;
        }
    } else if (sl->active && (double)sum < t) {
        snprintf(fig, sizeof(fig), "{\"denials\":%lld,\"count\":%g,"
                 "\"within\":%lld}", (long long)sum, t, (long long)r->within);
        snprintf(msg, sizeof(msg), "denials of %s are back under %g in %llds",
                 acct && acct[0] ? acct : "unidentified clients", t,
                 (long long)r->within);
        e = kg__alerts_emit(a, r, "alert.cleared", acct, key, s->key_prefix,
                            sl->fired_at, now, fig, msg);
        if (e == KG_OK)
            sl->active = 0;
    }
    return e;
}

/* A network's window id (the alert is once per network, ever). */
static int64_t net_id(const unsigned char net[16])
{
    uint64_t h = 1469598103934665603ULL;
    size_t i;
    for (i = 0; i < 16; i++)
        h = (h ^ net[i]) * 1099511628211ULL;
    return (int64_t)(h >> 1);
}

static kg_error eval_newnet(kg_alerts *a, struct kg__subj *s,
                            struct kg__aslot *sl, const kg__alert_rule *r,
                            int64_t now)
{
    const char *acct = s->is_key ? s->account_id : s->id;
    size_t i;
    kg_error e = KG_OK;

    if (threshold(a, r, acct) < 0)
        return KG_OK;
    for (i = 0; i < sl->nnets && e == KG_OK; i++) {
        struct kg__net *n = &sl->nets[i];
        char addr[64], fig[200], msg[300];
        int v4 = memcmp(n->net, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) == 0;
        if (!n->pending)
            continue;
        if (v4)
            snprintf(addr, sizeof(addr), "%u.%u.%u.%u/%d", n->net[12],
                     n->net[13], n->net[14], n->net[15], r->prefix4);
        else
            snprintf(addr, sizeof(addr), "%02x%02x:%02x%02x:%02x%02x:%02x%02x"
                     "::/%d", n->net[0], n->net[1], n->net[2], n->net[3],
                     n->net[4], n->net[5], n->net[6], n->net[7], r->prefix6);
        snprintf(fig, sizeof(fig), "{\"network\":\"%s\",\"first_seen\":%lld,"
                 "\"known_networks\":%zu}", addr, (long long)n->seen,
                 sl->nnets - 1);
        snprintf(msg, sizeof(msg), "%s was used from a new network, %s",
                 s->key_id ? s->key_id : acct, addr);
        e = kg__alerts_emit(a, r, "alert.fired", acct, s->key_id,
                            s->key_prefix, net_id(n->net), now,
                            fig, msg);
        if (e == KG_OK)
            n->pending = 0;
    }
    return e;
}

kg_error kg__alerts_eval_subject(kg_alerts *a, struct kg__subj *s, int64_t now)
{
    const kg__alerts_conf *c = a->conf;
    size_t i, qi = 0;
    kg_error e = KG_OK;

    for (i = 0; i < c->nr && e == KG_OK; i++) {
        const kg__alert_rule *r = &c->rv[i];
        switch (r->kind) {
        case KG__AR_QUOTA:
            e = eval_quota(a, s, qi++, r, now);
            break;
        case KG__AR_SPIKE:
            e = eval_spike(a, s, &s->slots[i], r, now);
            break;
        case KG__AR_DENIED:
            e = eval_denied(a, s, &s->slots[i], r, now);
            break;
        case KG__AR_NEWNET:
            e = eval_newnet(a, s, &s->slots[i], r, now);
            break;
        default:
            break;   /* key rules: kg__alerts_eval_keys */
        }
    }
    return e;
}

/* ---- key rules: over the policy's key store ------------------------- */

struct keys_run {
    kg_alerts *a;
    int64_t now;
    kg_error e;
};

static kg_error key_rule(kg_alerts *a, const kg__alert_rule *r, size_t ri,
                         const kg_record *rec, int64_t now)
{
    const char *acct = kg_record_account_id(rec);
    const char *kid = kg_record_id(rec);
    double t = threshold(a, r, acct);
    int64_t dur = t > 0 && t != r->threshold ? (int64_t)(t * 86400) : r->duration;
    int64_t value, exp = kg_record_expires(rec);
    struct kg__subj *s;
    struct kg__aslot *sl;
    int hit;
    char fig[200], msg[300], when[32];
    kg_error e = KG_OK;

    if (t < 0 || kid == NULL)
        return KG_OK;
    if (r->kind == KG__AR_EXPIRES) {
        value = exp;
        hit = exp != 0 && exp > now && exp - now <= dur;
    } else {
        value = kg_record_last_used(rec) ? kg_record_last_used(rec)
                                         : kg_record_created(rec);
        hit = value != 0 && now - value >= dur;
    }
    if (kg_record_status(rec) != KG_STATUS_ACTIVE || (exp != 0 && exp <= now))
        hit = 0;
    s = kg__alerts_subject(a, 1, kid, hit);
    if (s == NULL)
        return hit ? KG_ERR_NOMEM : KG_OK;
    sl = &s->slots[ri];
    kg__format_time(value, when);
    if (hit && !(sl->active && sl->value == value)) {
        if (r->kind == KG__AR_EXPIRES) {
            snprintf(fig, sizeof(fig), "{\"expires\":\"%s\",\"in_seconds\":"
                     "%lld}", when, (long long)(exp - now));
            snprintf(msg, sizeof(msg), "key %s (%s) expires at %s", kid,
                     kg_record_prefix(rec), when);
        } else {
            snprintf(fig, sizeof(fig), "{\"last_used\":\"%s\",\"idle_seconds\":"
                     "%lld}", when, (long long)(now - value));
            snprintf(msg, sizeof(msg), "key %s (%s) has not been used since %s",
                     kid, kg_record_prefix(rec), when);
        }
        e = kg__alerts_emit(a, r, "alert.fired", acct, kid,
                            kg_record_prefix(rec), value, now, fig, msg);
        if (e == KG_OK) {
            sl->active = 1;
            sl->value = value;
        }
    } else if (!hit && sl->active) {
        snprintf(fig, sizeof(fig), "{\"%s\":\"%s\"}", r->kind == KG__AR_EXPIRES
                 ? "expires" : "last_used", value ? when : "never");
        snprintf(msg, sizeof(msg), r->kind == KG__AR_EXPIRES
                 ? "key %s no longer expires soon" : "key %s was used again",
                 kid);
        e = kg__alerts_emit(a, r, "alert.cleared", acct, kid,
                            kg_record_prefix(rec), sl->value, now, fig, msg);
        if (e == KG_OK)
            sl->active = 0;
    }
    return e;
}

static int key_cb(const kg_record *rec, void *ud)
{
    struct keys_run *k = ud;
    const kg__alerts_conf *c = k->a->conf;
    size_t i;

    for (i = 0; i < c->nr && k->e == KG_OK; i++)
        if (c->rv[i].kind == KG__AR_EXPIRES || c->rv[i].kind == KG__AR_UNUSED)
            k->e = key_rule(k->a, &c->rv[i], i, rec, k->now);
    return k->e != KG_OK;
}

kg_error kg__alerts_eval_keys(kg_alerts *a, const kg_policy *p, int64_t now)
{
    struct keys_run k = { a, now, KG_OK };
    size_t i;
    kg_diag d;
    kg_error e;

    for (i = 0; i < a->conf->nr; i++)
        if (a->conf->rv[i].kind == KG__AR_EXPIRES ||
            a->conf->rv[i].kind == KG__AR_UNUSED)
            break;
    if (i == a->conf->nr)
        return KG_OK;
    /* The policy is read, not changed: listing keys writes nothing. */
    e = kg_keys_list((kg_policy *)p, key_cb, &k, &d);
    if (k.e != KG_OK)
        return k.e;
    if (e == KG_ERR_UNSUPPORTED || e == KG_ERR_READONLY)
        return KG_OK;   /* a store that cannot list: no key rules */
    return e;
}
