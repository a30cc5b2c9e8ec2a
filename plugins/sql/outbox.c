/*
 * outbox.c - the alerts' durable outbox in the usage store
 * (keygate/alerts.h struct kg_outbox_ops; conf/sql/005_alerts.sql's
 * table; docs/alerts.md "Delivery").
 *
 * put() is one transaction: a msg_id already there is left as it is
 * (the evaluator writes the same alert under the same id however often
 * it is written: after a restart, from two keygated on one PostgreSQL),
 * else the row takes the next id from keygate_usage_state and is
 * inserted.  The unique msg_id settles two writers racing past the
 * look: the loser's insert fails on the constraint and is taken as "was
 * there".  due(), mark(), list(), get() and depth() are single
 * statements.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <keygate/alerts.h>

#include "usage.h"

#define OB_COLS "id, msg_id, notifier, rule, account_id, type, payload, " \
    "created, next_at, attempts, state, last_status, last_error, url, " \
    "secret_file"
#define OB_NCOLS 15

static const char has_sql[] =
    "SELECT COUNT(*) FROM keygate_alert_outbox WHERE msg_id = $1";
static const char take_sql[] =
    "UPDATE keygate_usage_state SET value = value + 1 WHERE name = 'next_outbox_id'";
static const char read_sql[] =
    "SELECT value FROM keygate_usage_state WHERE name = 'next_outbox_id'";
static const char insert_sql[] =
    "INSERT INTO keygate_alert_outbox (" OB_COLS ") VALUES ($1, $2, $3, $4, "
    "$5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)";
static const char due_sql[] =
    "SELECT " OB_COLS " FROM keygate_alert_outbox WHERE state = 0 AND "
    "next_at <= $1 ORDER BY next_at, id LIMIT $2";
static const char mark_sql[] =
    "UPDATE keygate_alert_outbox SET state = $2, attempts = $3, next_at = $4, "
    "last_status = $5, last_error = $6 WHERE id = $1";
static const char list_sql[] =
    "SELECT " OB_COLS " FROM keygate_alert_outbox WHERE id < $1 AND "
    "(CAST($2 AS BIGINT) < 0 OR state = CAST($2 AS BIGINT)) ORDER BY id DESC "
    "LIMIT $3";
static const char get_sql[] =
    "SELECT " OB_COLS " FROM keygate_alert_outbox WHERE id = $1";
static const char depth_sql[] =
    "SELECT COUNT(*) FROM keygate_alert_outbox WHERE state = 0";

#define NO_END "9223372036854775807"

static const char *num(char buf[24], int64_t v)
{
    snprintf(buf, 24, "%lld", (long long)v);
    return buf;
}

static kg_error ready(struct sqlstore *s, kg_diag *d)
{
    if (s->usage == NULL) {
        kg_diag_set(d, "this sql line is not the policy's usage store");
        return KG_ERR_UNSUPPORTED;
    }
    return sql_usage_ensure(s, d);
}

static kg_error ob_put(void *inst, const kg_outbox_entry *e, int *created_r,
                       kg_diag *diag)
{
    struct sqlstore *s = inst;
    struct sql_tx t;
    long long have = 0, next = 0;
    char nb[7][24];
    const char *p[OB_NCOLS];
    kg_error err;
    int rc;

    *created_r = 0;
    if ((err = ready(s, diag)) != KG_OK)
        return err;
    p[0] = e->msg_id;
    if ((rc = sql_tx_begin(s, &t)) != SQL_OK)
        return sql_usage_error(rc, diag, t.err);
    sql_tx_exec(&t, has_sql, 1, p, sql_one_ll, &have, NULL);
    if (t.rc == SQL_OK && have > 0) {
        rc = sql_tx_end(&t, 1);
        return sql_usage_error(rc, diag, t.err);
    }
    sql_tx_exec(&t, take_sql, 0, NULL, NULL, NULL, NULL);
    sql_tx_exec(&t, read_sql, 0, NULL, sql_one_ll, &next, NULL);
    p[0] = num(nb[0], next - 1);
    p[1] = e->msg_id;
    p[2] = e->notifier;
    p[3] = e->rule;
    p[4] = e->account_id ? e->account_id : "";
    p[5] = e->type;
    p[6] = e->payload;
    p[7] = num(nb[1], e->created);
    p[8] = num(nb[2], e->next_at);
    p[9] = num(nb[3], e->attempts);
    p[10] = num(nb[4], e->state);
    p[11] = num(nb[5], e->last_status);
    p[12] = e->last_error ? e->last_error : "";
    p[13] = e->url ? e->url : "";
    p[14] = e->secret_file ? e->secret_file : "";
    if (t.rc == SQL_OK && next < 2) {
        snprintf(t.err, sizeof(t.err), "keygate_usage_state has no "
                 "next_outbox_id (migration 005 not applied?)");
        t.rc = SQL_ERROR;
    }
    sql_tx_exec(&t, insert_sql, OB_NCOLS, p, NULL, NULL, NULL);
    if (t.rc == SQL_CONSTRAINT) {
        /* Another writer put the same msg_id since the look. */
        sql_tx_end(&t, 0);
        return KG_OK;
    }
    rc = sql_tx_end(&t, 1);
    if (rc == SQL_OK)
        *created_r = 1;
    return sql_usage_error(rc, diag, t.err);
}

struct ob_ud {
    kg_outbox_cb cb;
    void *ud;
    int bad, stop;
};

static int one_entry(void *ud, int n, const char *const *v)
{
    struct ob_ud *r = ud;
    kg_outbox_entry e;

    if (r->stop)
        return 0;
    if (n < OB_NCOLS) {
        r->bad = 1;
        return 1;
    }
    memset(&e, 0, sizeof(e));
    e.id = strtoll(v[0], NULL, 10);
    e.msg_id = v[1];
    e.notifier = v[2];
    e.rule = v[3];
    e.account_id = v[4];
    e.type = v[5];
    e.payload = v[6];
    e.created = strtoll(v[7], NULL, 10);
    e.next_at = strtoll(v[8], NULL, 10);
    e.attempts = (int)strtol(v[9], NULL, 10);
    e.state = (int)strtol(v[10], NULL, 10);
    e.last_status = (int)strtol(v[11], NULL, 10);
    e.last_error = v[12];
    e.url = v[13];
    e.secret_file = v[14];
    if (r->cb(&e, r->ud))
        r->stop = 1;
    return 0;
}

static kg_error read_entries(struct sqlstore *s, const char *sql, int n,
                             const char *const *p, kg_outbox_cb cb, void *ud,
                             kg_diag *diag)
{
    struct ob_ud r = { cb, ud, 0, 0 };
    char err[512] = "";
    kg_error e = ready(s, diag);

    if (e != KG_OK)
        return e;
    e = sql_usage_error(sql_run(s, sql, n, p, one_entry, &r, NULL, err,
                                sizeof(err)), diag, err);
    if (e == KG_OK && r.bad) {
        kg_diag_set(diag, "an outbox row cannot be read");
        e = KG_ERR_IO;
    }
    return e;
}

static kg_error ob_due(void *inst, int64_t now, size_t limit, kg_outbox_cb cb,
                       void *ud, kg_diag *diag)
{
    char nb[2][24];
    const char *p[2] = { num(nb[0], now), num(nb[1], (int64_t)limit) };
    return read_entries(inst, due_sql, 2, p, cb, ud, diag);
}

static kg_error ob_mark(void *inst, int64_t id, int state, int attempts,
                        int64_t next_at, int last_status,
                        const char *last_error, kg_diag *diag)
{
    struct sqlstore *s = inst;
    char nb[5][24], err[512] = "";
    const char *p[6] = { num(nb[0], id), num(nb[1], state),
                         num(nb[2], attempts), num(nb[3], next_at),
                         num(nb[4], last_status),
                         last_error ? last_error : "" };
    long changes = 0;
    kg_error e = ready(s, diag);

    if (e != KG_OK)
        return e;
    e = sql_usage_error(sql_run(s, mark_sql, 6, p, NULL, NULL, &changes, err,
                                sizeof(err)), diag, err);
    if (e == KG_OK && changes == 0) {
        kg_diag_set(diag, "no outbox entry %lld", (long long)id);
        e = KG_ERR_NOT_FOUND;
    }
    return e;
}

static kg_error ob_list(void *inst, int state, int64_t before_id, size_t limit,
                        kg_outbox_cb cb, void *ud, kg_diag *diag)
{
    char nb[3][24];
    const char *p[3] = { before_id > 0 ? num(nb[0], before_id) : NO_END,
                         num(nb[1], state),
                         limit > 0 ? num(nb[2], (int64_t)limit) : NO_END };
    return read_entries(inst, list_sql, 3, p, cb, ud, diag);
}

struct found {
    kg_outbox_cb cb;
    void *ud;
    int n;
};

static int count_found(const kg_outbox_entry *e, void *ud)
{
    struct found *f = ud;
    f->n++;
    return f->cb(e, f->ud);
}

static kg_error ob_get(void *inst, int64_t id, kg_outbox_cb cb, void *ud,
                       kg_diag *diag)
{
    char nb[24];
    const char *p[1] = { num(nb, id) };
    struct found f = { cb, ud, 0 };
    kg_error e = read_entries(inst, get_sql, 1, p, count_found, &f, diag);
    if (e == KG_OK && f.n == 0) {
        kg_diag_set(diag, "no outbox entry %lld", (long long)id);
        e = KG_ERR_NOT_FOUND;
    }
    return e;
}

static kg_error ob_depth(void *inst, int64_t *n_r, kg_diag *diag)
{
    struct sqlstore *s = inst;
    long long n = 0;
    char err[512] = "";
    kg_error e = ready(s, diag);

    *n_r = 0;
    if (e != KG_OK)
        return e;
    e = sql_usage_error(sql_run(s, depth_sql, 0, NULL, sql_one_ll, &n, NULL,
                                err, sizeof(err)), diag, err);
    *n_r = n;
    return e;
}

/* ---- per-account settings ---------------------------------------------- */

static const char ov_delete_sql[] =
    "DELETE FROM keygate_alert_overrides WHERE account_id = $1 AND rule = $2";
static const char ov_insert_sql[] =
    "INSERT INTO keygate_alert_overrides (account_id, rule, threshold, url, "
    "secret_file) VALUES ($1, $2, $3, $4, $5)";
static const char ov_list_sql[] =
    "SELECT account_id, rule, threshold, url, secret_file FROM "
    "keygate_alert_overrides ORDER BY account_id, rule";

static kg_error ob_ov_put(void *inst, const kg_alert_override *o, kg_diag *diag)
{
    struct sqlstore *s = inst;
    struct sql_tx t;
    char th[40];
    const char *p[5];
    kg_error e;
    int rc;

    if ((e = ready(s, diag)) != KG_OK)
        return e;
    snprintf(th, sizeof(th), "%.17g", o->threshold);
    p[0] = o->account_id;
    p[1] = o->rule;
    p[2] = th;
    p[3] = o->url ? o->url : "";
    p[4] = o->secret_file ? o->secret_file : "";
    if ((rc = sql_tx_begin(s, &t)) != SQL_OK)
        return sql_usage_error(rc, diag, t.err);
    sql_tx_exec(&t, ov_delete_sql, 2, p, NULL, NULL, NULL);
    sql_tx_exec(&t, ov_insert_sql, 5, p, NULL, NULL, NULL);
    rc = sql_tx_end(&t, 1);
    return sql_usage_error(rc, diag, t.err);
}

static kg_error ob_ov_delete(void *inst, const char *account_id,
                             const char *rule, kg_diag *diag)
{
    struct sqlstore *s = inst;
    const char *p[2] = { account_id, rule };
    char err[512] = "";
    long changes = 0;
    kg_error e = ready(s, diag);

    if (e != KG_OK)
        return e;
    e = sql_usage_error(sql_run(s, ov_delete_sql, 2, p, NULL, NULL, &changes,
                                err, sizeof(err)), diag, err);
    if (e == KG_OK && changes == 0) {
        kg_diag_set(diag, "account %s has no setting for rule %s", account_id,
                    rule);
        e = KG_ERR_NOT_FOUND;
    }
    return e;
}

struct ov_ud {
    kg_alert_override_cb cb;
    void *ud;
    int stop;
};

static int one_override(void *ud, int n, const char *const *v)
{
    struct ov_ud *r = ud;
    kg_alert_override o;
    if (r->stop || n < 5)
        return 0;
    o.account_id = v[0];
    o.rule = v[1];
    o.threshold = strtod(v[2], NULL);
    o.url = v[3];
    o.secret_file = v[4];
    if (r->cb(&o, r->ud))
        r->stop = 1;
    return 0;
}

static kg_error ob_ov_list(void *inst, kg_alert_override_cb cb, void *ud,
                           kg_diag *diag)
{
    struct sqlstore *s = inst;
    struct ov_ud r = { cb, ud, 0 };
    char err[512] = "";
    kg_error e = ready(s, diag);

    if (e != KG_OK)
        return e;
    return sql_usage_error(sql_run(s, ov_list_sql, 0, NULL, one_override, &r,
                                   NULL, err, sizeof(err)), diag, err);
}

const struct kg_outbox_ops sql_outbox_ops = {
    .put = ob_put, .due = ob_due, .mark = ob_mark, .list = ob_list,
    .get = ob_get, .depth = ob_depth, .override_put = ob_ov_put,
    .override_delete = ob_ov_delete, .override_list = ob_ov_list,
};
