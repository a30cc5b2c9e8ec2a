/*
 * alerts_outbox.c - an outbox in memory, with the operations of a
 * store's (struct kg_outbox_ops): for tests, and for a keygated whose
 * policy has no usage store (then an alert not sent before a restart is
 * lost, which docs/alerts.md says).
 */
#include "internal.h"
#include <keygate/alerts.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct mentry {
    kg_outbox_entry e;   /* its strings are owned */
};

struct kg_outbox_memory {
    pthread_mutex_t mu;
    struct mentry *v;
    size_t n, cap;
    kg_alert_override *ov;   /* strings owned */
    size_t nov;
};

static void ov_free(kg_alert_override *o)
{
    free((char *)o->account_id);
    free((char *)o->rule);
    free((char *)o->url);
    free((char *)o->secret_file);
}

kg_outbox_memory *kg_outbox_memory_new(void)
{
    kg_outbox_memory *m = calloc(1, sizeof(*m));
    if (m != NULL)
        pthread_mutex_init(&m->mu, NULL);
    return m;
}

static void entry_free(kg_outbox_entry *e)
{
    free((char *)e->msg_id);
    free((char *)e->notifier);
    free((char *)e->rule);
    free((char *)e->account_id);
    free((char *)e->type);
    free((char *)e->payload);
    free((char *)e->last_error);
    free((char *)e->url);
    free((char *)e->secret_file);
}

void kg_outbox_memory_free(kg_outbox_memory *m)
{
    size_t i;
    if (m == NULL)
        return;
    for (i = 0; i < m->n; i++)
        entry_free(&m->v[i].e);
    free(m->v);
    for (i = 0; i < m->nov; i++)
        ov_free(&m->ov[i]);
    free(m->ov);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

static char *d0(const char *s)
{
    return strdup(s ? s : "");
}

static kg_error m_put(void *inst, const kg_outbox_entry *e, int *created_r,
                      kg_diag *diag)
{
    kg_outbox_memory *m = inst;
    kg_outbox_entry *d;
    kg_error err = KG_OK;
    size_t i;

    (void)diag;
    *created_r = 0;
    pthread_mutex_lock(&m->mu);
    for (i = 0; i < m->n; i++)
        if (strcmp(m->v[i].e.msg_id, e->msg_id) == 0)
            goto out;
    if (kg__grow(&m->v, &m->cap, m->n, sizeof(*m->v), 16) != 0) {
        err = KG_ERR_NOMEM;
        goto out;
    }
    d = &m->v[m->n].e;
    *d = *e;
    d->id = (int64_t)m->n + 1;
    d->msg_id = d0(e->msg_id);
    d->notifier = d0(e->notifier);
    d->rule = d0(e->rule);
    d->account_id = d0(e->account_id);
    d->type = d0(e->type);
    d->payload = d0(e->payload);
    d->last_error = d0(e->last_error);
    d->url = d0(e->url);
    d->secret_file = d0(e->secret_file);
    if (!d->msg_id || !d->notifier || !d->rule || !d->account_id || !d->type ||
        !d->payload || !d->last_error || !d->url || !d->secret_file) {
        entry_free(d);
        err = KG_ERR_NOMEM;
        goto out;
    }
    m->n++;
    *created_r = 1;
out:
    pthread_mutex_unlock(&m->mu);
    return err;
}

/* Callbacks run with the lock held: copies are the caller's to make. */
static kg_error m_due(void *inst, int64_t now, size_t limit, kg_outbox_cb cb,
                      void *ud, kg_diag *diag)
{
    kg_outbox_memory *m = inst;
    size_t i, k = 0;
    (void)diag;
    pthread_mutex_lock(&m->mu);
    for (i = 0; i < m->n && k < limit; i++) {
        const kg_outbox_entry *e = &m->v[i].e;
        if (e->state == KG_OUTBOX_PENDING && e->next_at <= now) {
            k++;
            if (cb(e, ud))
                break;
        }
    }
    pthread_mutex_unlock(&m->mu);
    return KG_OK;
}

static kg_error m_mark(void *inst, int64_t id, int state, int attempts,
                       int64_t next_at, int last_status, const char *last_error,
                       kg_diag *diag)
{
    kg_outbox_memory *m = inst;
    kg_error e = KG_OK;
    char *err;

    pthread_mutex_lock(&m->mu);
    if (id < 1 || (size_t)id > m->n) {
        kg_diag_set(diag, "no outbox entry %lld", (long long)id);
        e = KG_ERR_NOT_FOUND;
    } else if ((err = d0(last_error)) == NULL) {
        e = KG_ERR_NOMEM;
    } else {
        kg_outbox_entry *x = &m->v[id - 1].e;
        x->state = state;
        x->attempts = attempts;
        x->next_at = next_at;
        x->last_status = last_status;
        free((char *)x->last_error);
        x->last_error = err;
    }
    pthread_mutex_unlock(&m->mu);
    return e;
}

static kg_error m_list(void *inst, int state, int64_t before_id, size_t limit,
                       kg_outbox_cb cb, void *ud, kg_diag *diag)
{
    kg_outbox_memory *m = inst;
    size_t i, k = 0;
    (void)diag;
    pthread_mutex_lock(&m->mu);
    for (i = m->n; i > 0 && k < limit; i--) {
        const kg_outbox_entry *e = &m->v[i - 1].e;
        if ((state >= 0 && e->state != state) ||
            (before_id > 0 && e->id >= before_id))
            continue;
        k++;
        if (cb(e, ud))
            break;
    }
    pthread_mutex_unlock(&m->mu);
    return KG_OK;
}

static kg_error m_get(void *inst, int64_t id, kg_outbox_cb cb, void *ud,
                      kg_diag *diag)
{
    kg_outbox_memory *m = inst;
    kg_error e = KG_OK;
    pthread_mutex_lock(&m->mu);
    if (id < 1 || (size_t)id > m->n) {
        kg_diag_set(diag, "no outbox entry %lld", (long long)id);
        e = KG_ERR_NOT_FOUND;
    } else {
        cb(&m->v[id - 1].e, ud);
    }
    pthread_mutex_unlock(&m->mu);
    return e;
}

static kg_error m_depth(void *inst, int64_t *n_r, kg_diag *diag)
{
    kg_outbox_memory *m = inst;
    size_t i;
    (void)diag;
    *n_r = 0;
    pthread_mutex_lock(&m->mu);
    for (i = 0; i < m->n; i++)
        *n_r += m->v[i].e.state == KG_OUTBOX_PENDING;
    pthread_mutex_unlock(&m->mu);
    return KG_OK;
}

static kg_error m_ov_delete(void *inst, const char *account_id,
                            const char *rule, kg_diag *diag)
{
    kg_outbox_memory *m = inst;
    size_t i;
    kg_error e = KG_ERR_NOT_FOUND;

    pthread_mutex_lock(&m->mu);
    for (i = 0; i < m->nov; i++)
        if (strcmp(m->ov[i].account_id, account_id) == 0 &&
            strcmp(m->ov[i].rule, rule) == 0) {
            ov_free(&m->ov[i]);
            m->ov[i] = m->ov[--m->nov];
            e = KG_OK;
            break;
        }
    pthread_mutex_unlock(&m->mu);
    if (e != KG_OK)
        kg_diag_set(diag, "account %s has no setting for rule %s", account_id,
                    rule);
    return e;
}

static kg_error m_ov_put(void *inst, const kg_alert_override *o, kg_diag *diag)
{
    kg_outbox_memory *m = inst;
    kg_alert_override c;
    void *nv;

    m_ov_delete(inst, o->account_id, o->rule, NULL);
    c = *o;
    c.account_id = d0(o->account_id);
    c.rule = d0(o->rule);
    c.url = d0(o->url);
    c.secret_file = d0(o->secret_file);
    (void)diag;
    pthread_mutex_lock(&m->mu);
    nv = realloc(m->ov, (m->nov + 1) * sizeof(*m->ov));
    if (nv == NULL || !c.account_id || !c.rule || !c.url || !c.secret_file) {
        pthread_mutex_unlock(&m->mu);
        if (nv != NULL)
            m->ov = nv;
        ov_free(&c);
        return KG_ERR_NOMEM;
    }
    m->ov = nv;
    m->ov[m->nov++] = c;
    pthread_mutex_unlock(&m->mu);
    return KG_OK;
}

static kg_error m_ov_list(void *inst, kg_alert_override_cb cb, void *ud,
                          kg_diag *diag)
{
    kg_outbox_memory *m = inst;
    size_t i;
    (void)diag;
    pthread_mutex_lock(&m->mu);
    for (i = 0; i < m->nov; i++)
        if (cb(&m->ov[i], ud))
            break;
    pthread_mutex_unlock(&m->mu);
    return KG_OK;
}

static const struct kg_outbox_ops memory_ops = {
    .put = m_put, .due = m_due, .mark = m_mark, .list = m_list,
    .get = m_get, .depth = m_depth, .override_put = m_ov_put,
    .override_delete = m_ov_delete, .override_list = m_ov_list,
};

const struct kg_outbox_ops *kg_outbox_memory_ops(void)
{
    return &memory_ops;
}
