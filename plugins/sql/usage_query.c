/*
 * usage_query.c - the usage store's reads (plugin.h struct kg_usage_ops:
 * query, top, events; their contracts are usage.h's).  One static
 * statement per table and filter, so that each is prepared once per
 * connection and each can use its index: by start (the primary key),
 * by account or by key (004_usage.sql).  The bounds a caller leaves
 * open become the widest values, not other statements.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "usage.h"

/* The filters: neither, account ($3), key ($3), both ($3, $4). */
#define BY_ACCOUNT " AND account_id = $3"
#define BY_KEY " AND key_id = $3"
#define BY_BOTH " AND account_id = $3 AND key_id = $4"

#define ROWS(t, w) "SELECT start, account_id, key_id, code, count FROM " t \
    " WHERE start >= $1 AND start < $2" w \
    " ORDER BY start, account_id, key_id, code"
#define ROWS4(t) { ROWS(t, ""), ROWS(t, BY_ACCOUNT), ROWS(t, BY_KEY), ROWS(t, BY_BOTH) }
static const char *const rows_sql[SQL_USAGE_NSPANS][4] = {
    ROWS4("keygate_usage_minute"), ROWS4("keygate_usage_hour"),
    ROWS4("keygate_usage_day"),
};

/* Heaviest first (allowed + denied), then by id, so that ties come out
 * the same on both databases. */
#define TOP(t, key, group) "SELECT account_id, " key ", " \
    "SUM(CASE WHEN code = 'allowed' THEN count ELSE 0 END), " \
    "SUM(CASE WHEN code = 'allowed' THEN 0 ELSE count END) FROM " t \
    " WHERE start >= $1 AND start < $2 GROUP BY account_id" group \
    " ORDER BY SUM(count) DESC, account_id" group " LIMIT $3"
#define TOP2(t) { TOP(t, "''", ""), TOP(t, "key_id", ", key_id") }
static const char *const top_sql[SQL_USAGE_NSPANS][2] = {
    TOP2("keygate_usage_minute"), TOP2("keygate_usage_hour"),
    TOP2("keygate_usage_day"),
};

/* Newest first by id (004_usage.sql: ids are in commit order). */
#define EVENTS(w) "SELECT id, time_ms, account_id, key_id, key_prefix, " \
    "client, method, path, status, code, decided_by FROM keygate_usage_events" \
    " WHERE id < $1 AND time_ms >= $2 AND time_ms < $3 AND status >= $4 AND " \
    "status <= $5 AND (CAST($6 AS TEXT) = '' OR code = $6)" w \
    " ORDER BY id DESC LIMIT $7"
static const char *const events_sql[4] = {
    EVENTS(""), EVENTS(" AND account_id = $8"), EVENTS(" AND key_id = $8"),
    EVENTS(" AND account_id = $8 AND key_id = $9"),
};

#define NO_END "9223372036854775807"

static const char *num(char buf[24], int64_t v)
{
    snprintf(buf, 24, "%lld", (long long)v);
    return buf;
}

static int64_t to_i64(const char *s, int *bad)
{
    char *end;
    long long v;
    if (s == NULL) {
        *bad = 1;
        return 0;
    }
    errno = 0;
    v = strtoll(s, &end, 10);
    /* PostgreSQL's SUM of a bigint is a numeric: "12" all the same. */
    if (end == s || *end != '\0' || errno != 0)
        *bad = 1;
    return v;
}

/* Which of the filters (0..3), the parameters into p from p[first]. */
static int filter(const char *account, const char *key, const char **p,
                  int first, int *n_r)
{
    int f = (account != NULL) | (key != NULL) << 1;
    *n_r = first;
    if (account != NULL)
        p[(*n_r)++] = account;
    if (key != NULL)
        p[(*n_r)++] = key;
    return f;
}

/* Run a read on a pooled connection: the answer as a kg_error. */
static kg_error run_read(struct sqlstore *s, const char *sql, int n,
                         const char *const *p, sql_row_cb cb, void *ud,
                         kg_diag *d)
{
    char err[512] = "";
    kg_error e = sql_usage_ensure(s, d);
    if (e != KG_OK)
        return e;
    return sql_usage_error(sql_run(s, sql, n, p, cb, ud, NULL, err,
                                   sizeof(err)), d, err);
}

/* ---- buckets -------------------------------------------------------------- */

struct rows_ud {
    int32_t span;
    kg_usage_row_cb cb;
    void *ud;
    int bad;
};

static int one_bucket(void *ud, int n, const char *const *v)
{
    struct rows_ud *r = ud;
    kg_usage_row row;
    int bad = n < 5;

    if (!bad) {
        row.start = to_i64(v[0], &bad);
        row.span = r->span;
        row.account_id = v[1] ? v[1] : "";
        row.key_id = v[2] ? v[2] : "";
        row.count = to_i64(v[4], &bad);
        if (v[3] == NULL || kg_usage_code_parse(v[3], &row.code) != KG_OK)
            bad = 1;
    }
    if (bad) {
        r->bad = 1;
        return 1;
    }
    return r->cb(&row, r->ud);
}

kg_error sql_usage_query(void *inst, const kg_usage_query *q,
                         kg_usage_row_cb cb, void *ud, kg_diag *diag)
{
    struct sqlstore *s = inst;
    struct rows_ud r = { q->span, cb, ud, 0 };
    char since[24], until[24];
    const char *p[4];
    int t = sql_usage_span_index(q->span), n, f;
    kg_error e;

    if (t < 0) {
        kg_diag_set(diag, "usage buckets are 60, 3600 or 86400 seconds, not %d",
                    (int)q->span);
        return KG_ERR_INVALID;
    }
    p[0] = num(since, q->since);
    p[1] = q->until > 0 ? num(until, q->until) : NO_END;
    f = filter(q->account_id, q->key_id, p, 2, &n);
    e = run_read(s, rows_sql[t][f], n, p, one_bucket, &r, diag);
    if (e == KG_OK && r.bad) {
        kg_diag_set(diag, "a usage row cannot be read (a newer keygate's "
                    "code, or a row written by hand?)");
        e = KG_ERR_IO;
    }
    return e;
}

/* ---- top ------------------------------------------------------------------ */

struct top_ud {
    int by_key;
    kg_usage_top_cb cb;
    void *ud;
    int bad;
};

static int one_top(void *ud, int n, const char *const *v)
{
    struct top_ud *t = ud;
    int bad = n < 4;
    int64_t allowed = 0, denied = 0;

    if (!bad) {
        allowed = to_i64(v[2], &bad);
        denied = to_i64(v[3], &bad);
    }
    if (bad) {
        t->bad = 1;
        return 1;
    }
    return t->cb(v[0] ? v[0] : "", t->by_key && v[1] ? v[1] : "", allowed,
                 denied, t->ud);
}

/*
 * The table to sum [since, until) from: the coarsest whose buckets both
 * ends fall on (fewest rows), else the finest; either way one whose
 * retention still holds `since`, if any does (a bucket counts if it
 * starts in the range).
 */
static int top_span(const struct sql_usage *u, int64_t since, int64_t until,
                    int64_t now)
{
    int t;
    for (t = SQL_USAGE_NSPANS - 1; t >= 0; t--) {
        int64_t span = sql_usage_spans[t].span;
        int kept = u->keep[t] == 0 || since >= now - u->keep[t];
        if (kept && since % span == 0 && (until <= 0 || until % span == 0))
            return t;
    }
    for (t = 0; t < SQL_USAGE_NSPANS; t++)
        if (u->keep[t] == 0 || since >= now - u->keep[t])
            return t;
    return SQL_USAGE_NSPANS - 1;
}

kg_error sql_usage_top(void *inst, int by_key, int64_t since, int64_t until,
                       size_t limit, kg_usage_top_cb cb, void *ud,
                       kg_diag *diag)
{
    struct sqlstore *s = inst;
    struct top_ud r = { by_key != 0, cb, ud, 0 };
    char a[24], b[24], l[24];
    const char *p[3];
    int t = top_span(s->usage, since, until, kg_context_now(s->ctx) / 1000000);
    kg_error e;

    p[0] = num(a, since);
    p[1] = until > 0 ? num(b, until) : NO_END;
    p[2] = limit > 0 ? num(l, (int64_t)limit) : NO_END;
    e = run_read(s, top_sql[t][r.by_key], 3, p, one_top, &r, diag);
    if (e == KG_OK && r.bad) {
        kg_diag_set(diag, "a usage sum cannot be read");
        e = KG_ERR_IO;
    }
    return e;
}

/* ---- events --------------------------------------------------------------- */

struct events_ud {
    kg_usage_event_cb cb;
    void *ud;
    int bad;
};

static int one_event(void *ud, int n, const char *const *v)
{
    struct events_ud *r = ud;
    kg_usage_event ev;
    int bad = n < 11, i;

    if (!bad) {
        for (i = 2; i <= 10; i++)
            if (v[i] == NULL)
                bad = 1;
    }
    if (!bad) {
        ev.id = to_i64(v[0], &bad);
        ev.time_ms = to_i64(v[1], &bad);
        ev.account_id = v[2];
        ev.key_id = v[3];
        ev.key_prefix = v[4];
        ev.client = v[5];
        ev.method = v[6];
        ev.path = v[7];
        ev.status = (int)to_i64(v[8], &bad);
        ev.decided_by = v[10];
        if (kg_usage_code_parse(v[9], &ev.code) != KG_OK)
            bad = 1;
    }
    if (bad) {
        r->bad = 1;
        return 1;
    }
    return r->cb(&ev, r->ud);
}

kg_error sql_usage_events(void *inst, const kg_event_query *q,
                          kg_usage_event_cb cb, void *ud, kg_diag *diag)
{
    struct sqlstore *s = inst;
    struct events_ud r = { cb, ud, 0 };
    char nb[6][24];
    const char *p[9];
    int n, f;
    kg_error e;

    if (!q->any_code && (unsigned)q->code >= KG_CODE__LAST) {
        kg_diag_set(diag, "no such decision code: %d", (int)q->code);
        return KG_ERR_INVALID;
    }
    p[0] = q->before_id > 0 ? num(nb[0], q->before_id) : NO_END;
    p[1] = num(nb[1], q->since_ms > 0 ? q->since_ms : 0);
    p[2] = q->until_ms > 0 ? num(nb[2], q->until_ms) : NO_END;
    p[3] = num(nb[3], q->status_min > 0 ? q->status_min : 0);
    p[4] = num(nb[4], q->status_max > 0 ? q->status_max : 999);
    p[5] = q->any_code ? "" : kg_usage_code_name(q->code);
    p[6] = q->limit > 0 ? num(nb[5], (int64_t)q->limit) : NO_END;
    f = filter(q->account_id, q->key_id, p, 7, &n);
    e = run_read(s, events_sql[f], n, p, one_event, &r, diag);
    if (e == KG_OK && r.bad) {
        kg_diag_set(diag, "a usage event cannot be read (a newer keygate's "
                    "code, or a row written by hand?)");
        e = KG_ERR_IO;
    }
    return e;
}
