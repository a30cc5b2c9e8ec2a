/*
 * alerts_send.c - the outbox's sender: each due entry to its notifier,
 * then marked sent, failed, or due again after an exponential backoff
 * with jitter, for KG_OUTBOX_MAX_AGE (docs/alerts.md "Delivery").  And
 * `keygate alerts test`: a sample to every notifier, now.
 */
#include "alerts_eval.h"

#include <errno.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *kg_outbox_state_name(int state)
{
    switch (state) {
    case KG_OUTBOX_PENDING: return "pending";
    case KG_OUTBOX_SENT: return "sent";
    case KG_OUTBOX_FAILED: return "failed";
    }
    return NULL;
}

int64_t kg_outbox_backoff(int attempt, double rand01)
{
    int64_t base = 30;
    int i;
    /* 30 s, 1 m, 2 m, ... 1 h, then every hour: about 30 attempts in
     * 24 h, and the receiver's outage of a night costs at most an hour
     * once it is back.  Half to all of it, at random, so that the
     * retries of many alerts do not arrive together. */
    for (i = 1; i < attempt && base < 3600; i++)
        base *= 2;
    if (base > 3600)
        base = 3600;
    if (rand01 < 0 || rand01 >= 1)
        rand01 = 0;
    return base / 2 + (int64_t)((double)(base - base / 2) * rand01);
}

static double rand01(void)
{
    uint32_t r = 0;
    if (RAND_bytes((unsigned char *)&r, sizeof(r)) != 1)
        return 0.5;
    return (double)r / 4294967296.0;
}

/* One due entry, copied out of the store's callback. */
struct due {
    int64_t id, created;
    int attempts;
    char *msg_id, *notifier, *rule, *account_id, *type, *payload, *url,
        *secret_file;
};

struct due_list {
    struct due *v;
    size_t n, cap;
    int oom;
};

static void due_free(struct due *d)
{
    free(d->msg_id);
    free(d->notifier);
    free(d->rule);
    free(d->account_id);
    free(d->type);
    free(d->payload);
    free(d->url);
    free(d->secret_file);
}

static char *dup0(const char *s)
{
    return strdup(s ? s : "");
}

static int due_cb(const kg_outbox_entry *e, void *ud)
{
    struct due_list *l = ud;
    struct due *d;

    if (kg__grow(&l->v, &l->cap, l->n, sizeof(*l->v), 16) != 0) {
        l->oom = 1;
        return 1;
    }
    d = &l->v[l->n++];
    memset(d, 0, sizeof(*d));
    d->id = e->id;
    d->created = e->created;
    d->attempts = e->attempts;
    if ((d->msg_id = dup0(e->msg_id)) == NULL ||
        (d->notifier = dup0(e->notifier)) == NULL ||
        (d->rule = dup0(e->rule)) == NULL ||
        (d->account_id = dup0(e->account_id)) == NULL ||
        (d->type = dup0(e->type)) == NULL ||
        (d->payload = dup0(e->payload)) == NULL ||
        (d->url = dup0(e->url)) == NULL ||
        (d->secret_file = dup0(e->secret_file)) == NULL) {
        l->oom = 1;
        return 1;
    }
    return 0;
}

/* The secret of an account's own receiver, read from its file now (a
 * rotated file takes effect at the next attempt). */
static kg_error read_secret(const char *path, kg_webhook_secrets **s_r,
                            kg_diag *diag)
{
    char buf[1024];
    size_t n;
    FILE *f;
    kg_error e;

    *s_r = NULL;
    if ((f = fopen(path, "re")) == NULL) {
        kg_diag_set(diag, "cannot read the account's secret file %s: %s",
                    path, strerror(errno));
        return KG_ERR_IO;
    }
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    buf[strcspn(buf, "\r\n")] = '\0';
    if (buf[0] == '\0') {
        kg_diag_set(diag, "the account's secret file %s is empty", path);
        e = KG_ERR_INVALID;
    } else if ((e = kg_webhook_secrets_new(s_r)) == KG_OK &&
               (e = kg_webhook_secrets_add(*s_r, buf, strlen(buf))) != KG_OK) {
        kg_webhook_secrets_free(*s_r);
        *s_r = NULL;
    }
    kg_wipe(buf, sizeof(buf));
    return e;
}

/* One attempt of d through n: KG_OK, KG_ERR_UNAVAILABLE or
 * KG_ERR_INVALID (for good), with *status_r and diag. */
static kg_error attempt(const kg__notifier *n, const struct due *d,
                        int64_t now, int *status_r, kg_diag *diag)
{
    kg_webhook_secrets *sec = NULL;
    kg_notify_msg m;
    kg_error e;

    *status_r = 0;
    memset(&m, 0, sizeof(m));
    m.id = d->msg_id;
    m.timestamp = now;
    m.type = d->type;
    m.rule = d->rule;
    m.account_id = d->account_id;
    m.payload = d->payload;
    m.payload_len = strlen(d->payload);
    if (d->url[0]) {
        m.url = d->url;
        if (d->secret_file[0] &&
            (e = read_secret(d->secret_file, &sec, diag)) != KG_OK)
            return e == KG_ERR_NOMEM ? e : KG_ERR_UNAVAILABLE;
        m.secrets = sec;
    }
    e = n->mod->plugin->notifier->send(n->inst, &m, status_r, diag);
    kg_webhook_secrets_free(sec);
    return e;
}

kg_error kg_alerts_send_due(kg_alerts *a, const kg_policy *p, int64_t now,
                            const struct kg_outbox_ops *ops, void *store,
                            size_t limit, size_t *sent_r, size_t *failed_r,
                            kg_diag *diag)
{
    const kg__alerts_conf *c = kg__alerts_conf_of(p);
    struct due_list l = { NULL, 0, 0, 0 };
    size_t i, sent = 0, failed = 0;
    kg_error e;

    kg__diag_clear(diag);
    e = ops->due(store, now, limit ? limit : 100, due_cb, &l, diag);
    if (e == KG_OK && l.oom)
        e = KG_ERR_NOMEM;
    for (i = 0; i < l.n && e == KG_OK; i++) {
        const struct due *d = &l.v[i];
        const kg__notifier *n = kg__alerts_notifier(c, d->notifier);
        kg_diag why;
        int status = 0, state, attempts = d->attempts + 1;
        int64_t next = now;
        kg_error r;

        memset(&why, 0, sizeof(why));
        if (n == NULL) {
            kg_diag_set(&why, "notifier '%s' is not in the policy",
                        d->notifier);
            r = KG_ERR_UNAVAILABLE;   /* a reload may bring it back */
        } else {
            r = attempt(n, d, now, &status, &why);
            __atomic_fetch_add(&a->stats.attempts, 1, __ATOMIC_RELAXED);
            if (r != KG_OK)
                __atomic_fetch_add(&a->stats.failures, 1, __ATOMIC_RELAXED);
        }
        if (r == KG_OK) {
            state = KG_OUTBOX_SENT;
            sent++;
            why.message[0] = '\0';
        } else if (r == KG_ERR_INVALID) {
            state = KG_OUTBOX_FAILED;
            failed++;
        } else {
            next = now + kg_outbox_backoff(attempts, rand01());
            state = KG_OUTBOX_PENDING;
            if (next - d->created > KG_OUTBOX_MAX_AGE) {
                state = KG_OUTBOX_FAILED;
                failed++;
            }
        }
        e = ops->mark(store, d->id, state, attempts, next, status, why.message,
                      diag);
    }
    for (i = 0; i < l.n; i++)
        due_free(&l.v[i]);
    free(l.v);
    if (sent_r != NULL)
        *sent_r = sent;
    if (failed_r != NULL)
        *failed_r = failed;
    return e;
}

kg_error kg_alerts_test(const kg_policy *p, const char *rule,
                        kg_alerts_test_cb cb, void *ud, kg_diag *diag)
{
    const kg__alerts_conf *c = kg__alerts_conf_of(p);
    char mid[KG_WEBHOOK_ID_LEN + 1], tbuf[32];
    char *payload;
    kg__buf b;
    size_t i;
    int64_t now;
    kg_error e;

    kg__diag_clear(diag);
    if (c == NULL || c->nn == 0) {
        kg__diag_set(diag, p->source, 0, 0, "the policy has no notifiers:");
        return KG_ERR_NOT_FOUND;
    }
    if (rule != NULL && kg__alerts_rule(c, rule) == NULL) {
        kg__diag_set(diag, p->source, 0, 0, "the policy has no rule '%s'",
                     rule);
        return KG_ERR_NOT_FOUND;
    }
    if ((e = kg_webhook_id_generate(mid, sizeof(mid))) != KG_OK)
        return e;
    now = kg_context_now(p->ctx) / 1000000;
    kg__format_time(now, tbuf);
    kg__buf_init(&b);
    kg__buf_adds(&b, "{\"type\":\"alert.test\",\"id\":");
    kg__buf_json_str(&b, mid);
    kg__buf_adds(&b, ",\"time\":");
    kg__buf_json_str(&b, tbuf);
    kg__buf_adds(&b, ",\"rule\":");
    kg__buf_json_str(&b, rule ? rule : "test");
    kg__buf_adds(&b, ",\"kind\":");
    kg__buf_json_str(&b, rule ? kg__alert_kind_name(kg__alerts_rule(c, rule)->kind)
                              : "test");
    kg__buf_adds(&b, ",\"account\":null,\"key\":null,\"figures\":{},"
                 "\"message\":\"a test of keygate's alerts: no action needed\"}");
    if ((payload = kg__buf_take(&b)) == NULL)
        return KG_ERR_NOMEM;
    for (i = 0; i < c->nn; i++) {
        kg_notify_msg m;
        kg_diag why;
        int status = 0;
        kg_error r;

        memset(&m, 0, sizeof(m));
        memset(&why, 0, sizeof(why));
        m.id = mid;
        m.timestamp = now;
        m.type = "alert.test";
        m.rule = rule ? rule : "test";
        m.account_id = "";
        m.payload = payload;
        m.payload_len = strlen(payload);
        r = c->nv[i].mod->plugin->notifier->send(c->nv[i].inst, &m, &status,
                                                 &why);
        if (cb != NULL)
            cb(c->nv[i].name, r, status, why.message, ud);
        if (r != KG_OK && e == KG_OK)
            e = r;
    }
    free(payload);
    return e;
}
