/*
 * check.c - one check: the request's target -> credential -> key format
 * -> keystore (through the cache) -> core checks of the key and its
 * account -> the plan's account stage -> the plan's limit stage (each
 * line counting under the account or the key) -> decision.
 *
 * Each stage is run by the chain engine (chain.c).  A stage that ends
 * "unavailable" always becomes 503 auth_unavailable, never an invalid
 * key.  A limit stage that denies gives back what its earlier limiters
 * took, so a denied request consumes no quota.
 */
#include "internal.h"
#include "alerts_int.h"

#include <stdio.h>
#include <string.h>

/* ---- running a stage --------------------------------------------------- */

static void unavailable(kg_call *c, const kg__line *l, const char *what)
{
    char msg[160];
    snprintf(msg, sizeof(msg), "%s is unavailable; try again shortly", what);
    kg__decision_deny(c->d, KG_CODE_AUTH_UNAVAILABLE, msg,
                      l ? l->label : "core");
}

/*
 * Credential stage: returns 0 and the key, or 1 with the decision made.
 * Two modules that both found a key must agree on it.
 */
static int run_credential(kg_call *c, const char **key_r, size_t *len_r)
{
    const kg__stack *st = &c->policy->credential;
    kg__chain ch;
    const char *key = NULL, *found_by = NULL;
    size_t klen = 0, i;
    int any_present = 0;
    kg_code codes[64];
    const char *msgs[64];
    char msgbuf[64][96];

    /* read below st->n only */
    memset(codes, 0, (st->n < 64 ? st->n : 64) * sizeof(codes[0]));
    kg__chain_init(&ch);
    for (i = 0; i < st->n; i++) {
        const kg__line *l = st->lines[i];
        const char *k = NULL;
        size_t kl = 0;
        kg_result r;

        c->deny_code = KG_CODE_NONE;
        c->deny_message = NULL;
        r = l->run.extract(l->inst, c, &k, &kl);
        if (i < 64) {
            codes[i] = c->deny_code;
            msgs[i] = NULL;
            if (c->deny_message) {
                snprintf(msgbuf[i], sizeof(msgbuf[i]), "%s", c->deny_message);
                msgs[i] = msgbuf[i];
            }
        }
        if (r == KG_RESULT_OK) {
            any_present = 1;
            if (k == NULL) {
                r = KG_RESULT_FAIL;
            } else if (key != NULL && (kl != klen || memcmp(k, key, kl) != 0)) {
                char msg[200];
                snprintf(msg, sizeof(msg), "the request carries two different "
                         "API keys (%s and %s); send exactly one",
                         found_by, l->label);
                kg__decision_deny(c->d, KG_CODE_INVALID_REQUEST, msg, l->label);
                return 1;
            } else if (key == NULL) {
                key = k;
                klen = kl;
                found_by = l->label;
            }
        } else if (r == KG_RESULT_FAIL) {
            any_present = 1;
            /* A malformed credential ("Bearer a b") makes the request
             * ambiguous, like two different keys: never fall through to
             * another module's key because this line was optional. */
            if (c->deny_code == KG_CODE_INVALID_REQUEST) {
                kg__decision_deny(c->d, KG_CODE_INVALID_REQUEST,
                                  i < 64 && msgs[i] ? msgs[i]
                                                    : "malformed credentials",
                                  l->label);
                return 1;
            }
        }
        if (!kg__chain_step(&ch, l->actions, r, (int)i))
            break;
    }
    switch (kg__chain_result(&ch)) {
    case KG_RESULT_OK:
        if (key == NULL) {
            kg__decision_deny(c->d, KG_CODE_UNAUTHORIZED, c->policy->missing_key,
                              "credential");
            c->d->no_key = 1;
            return 1;
        }
        *key_r = key;
        *len_r = klen;
        return 0;
    case KG_RESULT_UNAVAILABLE:
        unavailable(c, ch.decider >= 0 ? st->lines[ch.decider] : NULL,
                    "the credential check");
        return 1;
    default:
        /* The module that decided, else the first that said why it failed
         * (an optional bearer line seeing "Bearer a b" still explains). */
        {
            int who = -1;
            if (ch.decider >= 0 && ch.decider < 64 && codes[ch.decider] != KG_CODE_NONE)
                who = ch.decider;
            for (i = 0; who < 0 && i < st->n && i < 64; i++)
                if (codes[i] != KG_CODE_NONE)
                    who = (int)i;
            if (who >= 0) {
                kg__decision_deny(c->d, codes[who],
                                  msgs[who] ? msgs[who] : "invalid credentials",
                                  st->lines[who]->label);
                return 1;
            }
        }
        if (!any_present) {
            kg__decision_deny(c->d, KG_CODE_UNAUTHORIZED,
                              c->policy->missing_key,
                              ch.decider >= 0 ? st->lines[ch.decider]->label
                                              : "credential");
            c->d->no_key = 1;
        } else {
            kg__decision_deny(c->d, KG_CODE_UNAUTHORIZED, "invalid API key",
                              ch.decider >= 0 ? st->lines[ch.decider]->label
                                              : "credential");
        }
        return 1;
    }
}

/* Ask each keystore line (its cache, or the store if it can) to start
 * fetching what its lookup of this hash will read first. */
static void prefetch_keystore(const kg__stack *st, const unsigned char *hash)
{
    size_t i;
    for (i = 0; i < st->n; i++) {
        const kg__line *l = st->lines[i];
        if (l->cache != NULL)
            kg__cache_prefetch(l->cache, hash);
        else if (l->prefetch != NULL)
            l->prefetch(l->inst, hash);
    }
}

/* One keystore line, through its cache if it has one.  A store that
 * would wait in a check that may not (kg_call_would_block) leaves
 * c->blocked set, its answer dropped and nothing counted. */
static kg_result lookup_line(kg_call *c, const kg__line *l,
                             const unsigned char *hash, kg_record **rec_r)
{
    kg_record *rec = NULL;
    int fresh = 0, cached = 0;
    kg_result r;

    *rec_r = NULL;
    if (l->cache != NULL) {
        cached = kg__cache_get(l->cache, hash, c->now_us, &rec, &fresh);
        if (cached && fresh) {
            kg_call_stat_add(c, KG_STAT_CACHE_HITS, 1);
            *rec_r = rec;
            return rec ? KG_RESULT_OK : KG_RESULT_FAIL;
        }
    }
    r = l->run.lookup(l->inst, c, hash, rec_r);
    if (c->blocked) {
        kg_record_unref(*rec_r);
        *rec_r = NULL;
        kg_record_unref(rec);
        return KG_RESULT_UNAVAILABLE;
    }
    if (l->cache != NULL)
        kg_call_stat_add(c, KG_STAT_CACHE_MISSES, 1);
    if (r == KG_RESULT_OK && *rec_r == NULL)
        r = KG_RESULT_FAIL;
    if (r != KG_RESULT_OK && *rec_r != NULL) {
        kg_record_unref(*rec_r);
        *rec_r = NULL;
    }
    if (l->cache != NULL) {
        if (r == KG_RESULT_OK || r == KG_RESULT_FAIL) {
            kg__cache_put(l->cache, hash, *rec_r, c->now_us);
        } else if (r == KG_RESULT_UNAVAILABLE && cached && rec != NULL) {
            /* Serve a stale record while the store cannot answer.  Never
             * a stale "no such key": negative_ttl bounds how long a key
             * just created can be refused, and a store that cannot say
             * whether it exists now is an outage (503), not a 401. */
            kg_call_stat_add(c, KG_STAT_CACHE_STALE, 1);
            *rec_r = rec;
            return KG_RESULT_OK;
        }
    }
    kg_record_unref(rec);
    return r;
}

/* 0 with the record, 1 with the decision made, 2 if a store would
 * have waited (c->blocked; no decision). */
static int run_keystore(kg_call *c, const unsigned char *hash,
                        kg_record **rec_r, const kg__line **from_r)
{
    const kg__stack *st = &c->policy->keystore;
    kg__chain ch;
    kg_record *found = NULL;
    size_t i;

    kg__chain_init(&ch);
    for (i = 0; i < st->n; i++) {
        const kg__line *l = st->lines[i];
        kg_record *rec = NULL;
        kg_result r = lookup_line(c, l, hash, &rec);

        if (c->blocked) {
            kg_record_unref(found);
            return 2;
        }
        /* A store that returns a record for another hash is broken:
         * the hashes are compared in constant time, as always. */
        if (r == KG_RESULT_OK && !kg_hash_equal(rec->hash, hash)) {
            kg_record_unref(rec);
            rec = NULL;
            r = KG_RESULT_FAIL;
        }
        if (!kg__chain_step(&ch, l->actions, r, (int)i)) {
            if (r == KG_RESULT_OK && found == NULL && ch.decider == (int)i) {
                found = rec;
                *from_r = l;
                rec = NULL;
            }
            kg_record_unref(rec);
            break;
        }
        if (r == KG_RESULT_OK && found == NULL && ch.decider == (int)i) {
            found = rec;
            *from_r = l;
            rec = NULL;
        }
        kg_record_unref(rec);
    }
    switch (kg__chain_result(&ch)) {
    case KG_RESULT_OK:
        if (found != NULL) {
            *rec_r = found;
            c->ok_by = *from_r ? (*from_r)->label : NULL;
            return 0;
        }
        kg__decision_deny(c->d, KG_CODE_UNAUTHORIZED, "invalid API key",
                          "keystore");
        return 1;
    case KG_RESULT_UNAVAILABLE:
        kg_record_unref(found);
        unavailable(c, ch.decider >= 0 ? st->lines[ch.decider] : NULL,
                    "the key store");
        return 1;
    default:
        kg_record_unref(found);
        kg__decision_deny(c->d, KG_CODE_UNAUTHORIZED, "invalid API key",
                          ch.decider >= 0 ? st->lines[ch.decider]->label
                                          : "keystore");
        return 1;
    }
}

static int run_account(kg_call *c, const kg__stack *st)
{
    kg__chain ch;
    size_t i;
    kg_code code = KG_CODE_NONE;
    char msg[256];

    if (st->n == 0)
        return 0;
    msg[0] = '\0';   /* not the whole array, on every check */
    kg__chain_init(&ch);
    for (i = 0; i < st->n; i++) {
        const kg__line *l = st->lines[i];
        kg_result r;
        int go;
        c->deny_code = KG_CODE_NONE;
        c->deny_message = NULL;
        r = l->run.check(l->inst, c);
        go = kg__chain_step(&ch, l->actions, r, (int)i);
        if (ch.decider == (int)i && ch.impression < 0) {
            code = c->deny_code;
            snprintf(msg, sizeof(msg), "%s", c->deny_message ? c->deny_message : "");
        }
        if (!go)
            break;
    }
    switch (kg__chain_result(&ch)) {
    case KG_RESULT_OK:
        if (ch.decider >= 0)
            c->ok_by = st->lines[ch.decider]->label;
        return 0;
    case KG_RESULT_UNAVAILABLE:
        unavailable(c, ch.decider >= 0 ? st->lines[ch.decider] : NULL,
                    "an account check");
        return 1;
    default:
        kg__decision_deny(c->d,
                          code != KG_CODE_NONE ? code : KG_CODE_INSUFFICIENT_PERMISSIONS,
                          msg[0] ? msg : "this key may not make this request",
                          ch.decider >= 0 ? st->lines[ch.decider]->label : "account");
        return 1;
    }
}

/*
 * Lines i.. that one batch() can decide (plugin.h): lines of the same
 * non-NULL batch key (policy_line.c: set only where the control is
 * required or requisite, ok continues and every other result fails the
 * stage), at most KG__MAX_BATCH.  Returns the count
 * (1: no batch).  The memory limiters have no batch_key, so their path
 * is the plain one below.
 */
#define KG__MAX_BATCH 16

static size_t batch_span(const kg__stack *st, size_t i)
{
    const char *key, *k2;
    size_t j;
    if ((key = st->lines[i]->batch_key) == NULL)
        return 1;
    for (j = i + 1; j < st->n && j - i < KG__MAX_BATCH; j++) {
        /* One batch counts under one subject (kg_call_subject). */
        if (st->lines[j]->per_key != st->lines[i]->per_key)
            break;
        k2 = st->lines[j]->batch_key;
        if (k2 == NULL || strcmp(k2, key) != 0)
            break;
    }
    return j - i;
}

/* What line l counts under: its key's id for `per: key` (or a key
 * without an account), else the account's (docs/policy.md "Accounts"). */
static void set_subject(kg_call *c, const kg__line *l)
{
    c->per_key = l->per_key;
    c->subject = c->account != NULL && !l->per_key ? c->record->account_id
                                                   : c->record->id;
}

static int run_limit(kg_call *c, const kg__stack *st)
{
    kg__chain ch;
    size_t i, ran = 0;
    unsigned char took[64];
    size_t rep_from[64];   /* the first report of line i */
    kg_code code = KG_CODE_NONE;
    char msg[256];
    size_t denier_report = (size_t)-1;
    kg_result bres[KG__MAX_BATCH];
    size_t bfrom = 0, bn = 0;   /* the batch that lines bfrom.. are in */
    size_t bbefore = 0;
    kg_code bcode = KG_CODE_NONE;
    char bmsg[256];

    if (st->n == 0)
        return 0;
    msg[0] = bmsg[0] = '\0';   /* not the whole arrays, on every check */
    kg__chain_init(&ch);
    memset(took, 0, sizeof(took));
    for (i = 0; i < st->n; i++) {
        const kg__line *l = st->lines[i];
        kg_result r;
        int go, in_batch = 0;
        size_t before = c->d->nlimits;

        if (i < sizeof(took))
            rep_from[i] = before;
        c->deny_code = KG_CODE_NONE;
        c->deny_message = NULL;
        set_subject(c, l);
        if (i >= bfrom + bn) {
            /* A new run of lines: one batch() call if they share a backend. */
            size_t span = batch_span(st, i);
            bn = 0;
            if (span > 1) {
                void *insts[KG__MAX_BATCH];
                size_t j;
                for (j = 0; j < span; j++) {
                    insts[j] = st->lines[i + j]->inst;
                    bres[j] = KG_RESULT_UNAVAILABLE;
                }
                bfrom = i;
                bn = span;
                bbefore = c->d->nlimits;
                l->mod->plugin->limit->batch(insts, span, c, bres);
                bcode = c->deny_code;
                snprintf(bmsg, sizeof(bmsg), "%s",
                         c->deny_message ? c->deny_message : "");
            }
        }
        if (bn > 0 && i >= bfrom && i < bfrom + bn) {
            int all_ok = 1;
            size_t j;
            in_batch = 1;
            for (j = 0; j < bn; j++)
                if (bres[j] != KG_RESULT_OK)
                    all_ok = 0;
            r = bres[i - bfrom];
            /* All-or-nothing: only a fully admitted batch took anything. */
            if (!c->peek && all_ok && i < sizeof(took))
                took[i] = 1;
        } else if (c->peek) {
            const struct kg_limit_ops *ops = l->mod->plugin->limit;
            if (ops->peek)
                ops->peek(l->inst, c);
            r = KG_RESULT_OK;
        } else {
            r = l->run.acquire(l->inst, c);
            if (r == KG_RESULT_OK && i < sizeof(took))
                took[i] = 1;
        }
        ran = i + 1;
        go = kg__chain_step(&ch, l->actions, r, (int)i);
        if (ch.decider == (int)i && ch.impression < 0) {
            if (in_batch) {
                /* batch() set the deny of its first failing line (the
                 * decider) and reported that line's limit last. */
                if (c->d->nlimits > bbefore)
                    denier_report = c->d->nlimits - 1;
                code = bcode;
                snprintf(msg, sizeof(msg), "%s", bmsg);
            } else {
                code = c->deny_code;
                snprintf(msg, sizeof(msg), "%s", c->deny_message ? c->deny_message : "");
                /* The limit this module reported (its last report) denied. */
                if (c->d->nlimits > before)
                    denier_report = c->d->nlimits - 1;
                else if (c->d->nlimits > 0 && r == KG_RESULT_FAIL)
                    denier_report = before > 0 ? before - 1 : 0;
            }
        }
        if (!go)
            break;
    }
    if (kg__chain_result(&ch) == KG_RESULT_OK) {
        if (ch.decider >= 0)
            c->ok_by = st->lines[ch.decider]->label;
        c->subject = NULL;
        c->per_key = 0;
        return 0;
    }
    /* Denied: give back what was taken, newest first, and say so in the
     * reports of the lines given back (the headers of a 429 tell what
     * remains after this request, which took nothing: issue 23 item 3).
     * A line's reports run to the next line's first (a batch's are all
     * on its first line, and a batch is given back whole). */
    for (i = ran; i > 0; i--) {
        const kg__line *l = st->lines[i - 1];
        if (i - 1 < sizeof(took) && took[i - 1] && l->mod->plugin->limit->undo) {
            size_t k, end = i < ran && i < sizeof(took) ? rep_from[i] : c->d->nlimits;
            set_subject(c, l);
            l->mod->plugin->limit->undo(l->inst, c);
            for (k = rep_from[i - 1]; k < end && k < c->d->nlimits; k++)
                if ((int)k != (int)denier_report &&
                    c->d->limits[k].remaining < c->d->limits[k].limit)
                    c->d->limits[k].remaining++;
        }
    }
    c->subject = NULL;
    c->per_key = 0;
    if (kg__chain_result(&ch) == KG_RESULT_UNAVAILABLE) {
        unavailable(c, ch.decider >= 0 ? st->lines[ch.decider] : NULL,
                    "the rate limiter");
        return 1;
    }
    if (denier_report != (size_t)-1)
        c->d->denied_limit = (int)denier_report;
    kg__decision_deny(c->d, code != KG_CODE_NONE ? code : KG_CODE_RATE_LIMITED,
                      msg[0] ? msg : "rate limit exceeded",
                      ch.decider >= 0 ? st->lines[ch.decider]->label : "limit");
    return 1;
}

static kg_error check(const kg_policy *p, const kg_request *req,
                      kg_decision **decision_r, int peek)
{
    kg_call c;
    kg_decision *d;
    const char *key = NULL;
    size_t klen = 0;
    unsigned char hash[KG_HASH_LEN];
    kg_record *rec = NULL;
    const kg__line *store = NULL;
    const kg__plan *plan;
    const kg_account *acct = NULL;
    const char *plan_name;
    int ks;

    if (p == NULL || req == NULL || decision_r == NULL)
        return KG_ERR_INVALID;
    *decision_r = NULL;
    d = kg__decision_new();
    if (d == NULL)
        return KG_ERR_NOMEM;
    memset(&c, 0, offsetof(kg_call, deny_buf));
    c.policy = p;
    c.req = req;
    c.d = d;
    c.peek = peek;
    c.now_us = kg_context_now(p->ctx);
    c.nowait = kg__request_nowait(req);

    /* A target the front end could not set, or one the upstream may read
     * otherwise than the route check would, is refused before anything
     * else: no key or plan makes it safe (docs/policy.md "Request
     * targets"). */
    {
        const char *why = kg__target_refusal(kg__request_target_state(req) &
                                             ~p->paths_allow);
        if (why != NULL) {
            kg__decision_deny(d, KG_CODE_INVALID_REQUEST, why, "core:target");
            goto done;
        }
    }
    if (run_credential(&c, &key, &klen) != 0)
        goto done;
    /* No key is longer: what is, is refused before it is hashed. */
    if (klen >= KG_KEY_MAX) {
        kg__decision_deny(d, KG_CODE_UNAUTHORIZED, "invalid API key",
                          "core:keyfmt");
        goto done;
    }
    kg_key_hash(key, klen, hash);
    /* At a million keys the key's limiter slot and its store entry are
     * cache misses, each behind another (the hint, the bucket): ask for
     * the first of both chains now, then the second, so that they
     * overlap instead of following each other; the store's first, as
     * the check waits for its record before it needs the slot.  (A
     * policy whose limiters all keep their state elsewhere, in Redis,
     * has no slot to fetch.) */
    prefetch_keystore(&p->keystore, hash);
    if (p->memory_limits && kg__ctx_shm(p->ctx) == NULL)
        kg__limits_prefetch(p->ctx->limits, hash, &c.lpin);
    /* The checksum refuses typos and forgeries before any store is
     * asked; checked here, its work (a CRC-32 of the key, byte by byte)
     * is done while those lines come in, not before they are asked for. */
    if (kg_key_validate(key, klen) != KG_OK) {
        kg__decision_deny(d, KG_CODE_UNAUTHORIZED, "invalid API key",
                          "core:keyfmt");
        goto done;
    }
    kg__limits_prefetch_slot(&c.lpin);
    ks = run_keystore(&c, hash, &rec, &store);
    if (ks == 2) {
        /* kg_request_set_nowait: nothing was taken yet (the limits come
         * after the store); the caller asks again where it may wait. */
        kg__limits_unpin(&c.lpin);
        kg_wipe(hash, sizeof(hash));
        kg_decision_free(d);
        return KG_ERR_WOULD_BLOCK;
    }
    if (ks != 0)
        goto done;
    d->record = rec;
    c.record = rec;
    /* The key's usage bucket, fetched while the stages run. */
    if (p->usage != NULL && !peek)
        c.ushard = kg__usage_prefetch(p, rec, c.now_us);
    if (rec->status == KG_STATUS_REVOKED) {
        kg__decision_deny(d, KG_CODE_KEY_REVOKED, "this API key has been revoked",
                          "core:account");
        goto done;
    }
    if (rec->expires != 0 && c.now_us / 1000000 >= rec->expires) {
        kg__decision_deny(d, KG_CODE_KEY_EXPIRED, "this API key has expired",
                          "core:account");
        goto done;
    }
    /* The key's account (docs/policy.md "Accounts"), read with the
     * record: its plan is the key's, and while it is suspended no key
     * of it passes.  A key naming an account its store did not find
     * (deleted) is no key. */
    acct = rec->account;
    if (acct == NULL && rec->account_id != NULL) {
        kg__decision_deny(d, KG_CODE_UNAUTHORIZED, "this API key's account "
                          "does not exist", "core:account");
        goto done;
    }
    /* Read from the record's copies (record.c), not the account's line. */
    if (acct != NULL && rec->acct_suspended) {
        kg__decision_deny(d, KG_CODE_ACCOUNT_SUSPENDED, "this API key's "
                          "account is suspended", "core:account");
        goto done;
    }
    plan_name = rec->plan;   /* the account's, when it has one */
    plan = kg__policy_plan(p, plan_name);
    if (plan == NULL) {
        char msg[200];
        snprintf(msg, sizeof(msg), "this key's plan '%s' is not offered "
                 "by this service", plan_name ? plan_name : "");
        kg__decision_deny(d, KG_CODE_UNAUTHORIZED, msg, "core:plan");
        goto done;
    }
    c.account = acct;
    c.plan = plan->name;
    c.planp = plan;
    d->plan = plan_name;   /* == plan->name, and lives as long as d */
    d->priority = plan->priority;
    if (run_account(&c, &plan->account) != 0) {
        /* A key identified and refused by its account (403): its limits
         * as they stand, taking nothing, so that the denial carries the
         * rate-limit headers as every identified key's does. */
        if (d->status == 403) {
            /* A limiter that cannot answer the peek (Redis down) leaves
             * no report, and never turns the 403 into a 503. */
            kg_code code = d->code;
            char msg[sizeof(d->message)], by[sizeof(d->decided_by)];
            memcpy(msg, d->message, sizeof(msg));
            memcpy(by, d->decided_by, sizeof(by));
            c.peek = 1;
            if (run_limit(&c, &plan->limit) != 0) {
                kg__decision_deny(d, code, msg, by);
                d->denied_limit = -1;
            }
        }
        goto done;
    }
    if (run_limit(&c, &plan->limit) != 0)
        goto done;
    /* Allowed: the module whose ok made the last stage pass. */
    kg__strlcpy(d->decided_by, c.ok_by ? c.ok_by : "keystore", sizeof(d->decided_by));
    if (!peek && store->touch)
        store->touch(store->inst, rec, c.now_us / 1000000);
done:
    kg__limits_unpin(&c.lpin);
    if (p->usage != NULL && !peek)
        kg__usage_count(p, req, d, c.now_us, c.ushard);
    /* The quota rules read where the limits stand (alerts_quota.c). */
    if (!peek && p->alerts != NULL && p->alerts->quota && rec != NULL)
        kg__quota_watch(p->ctx, acct != NULL ? acct->id : rec->id, d,
                        p->alerts->quota_min);
    if (d->status == 401) {
        kg__strlcpy(d->realm, p->realm, sizeof(d->realm));
        kg__strlcpy(d->scheme, p->auth_scheme, sizeof(d->scheme));
    }
    kg_wipe(hash, sizeof(hash));
    *decision_r = d;
    return KG_OK;
}

kg_error kg_check(const kg_policy *p, const kg_request *req,
                  kg_decision **decision_r)
{
    return check(p, req, decision_r, 0);
}

kg_error kg_check_peek(const kg_policy *p, const kg_request *req,
                       kg_decision **decision_r)
{
    return check(p, req, decision_r, 1);
}
