/*
 * usage.c - the sql plugin as a usage store (the policy's usage:
 * section; plugin.h struct kg_usage_ops): the instance, and write().
 *
 *   usage:
 *     module: sql
 *     options:
 *       url: sqlite:///var/lib/keygate/usage.db   # or driver + path/conninfo
 *       retention: {minute: 48h, hour: 90d, day: 2y, events: 7d}
 *
 * A write is one transaction.  Its rows are summed in memory per
 * (start, account, key, code) for each span (a minute row also counts
 * in its hour and its day: the store rolls up, no cron job), then ADDED
 * to what the tables hold by multi-row INSERT ... ON CONFLICT DO UPDATE
 * SET count = count + excluded.count, so that several keygated writing
 * into one PostgreSQL add up exactly.  The rows go in sorted order, so
 * that two writers lock the rows they share in the same order and never
 * deadlock.  Events take their ids from keygate_usage_state in the same
 * transaction (004_usage.sql says why).  Retention is a transaction of
 * its own after a write, at most every SQL_RETENTION_EVERY seconds of
 * the writer's clock.  A database that cannot be reached or fails
 * mid-way answers KG_ERR_UNAVAILABLE with nothing written: the core
 * keeps the batch.
 *
 * The store migrates its schema itself when it is created, and refuses
 * one newer than this build (migrate.c).  A store that cannot be written
 * (an unwritable SQLite file or folder, a read-only PostgreSQL or one
 * whose role lacks the privileges) fails create(), so that the policy
 * fails to load at the section; a PostgreSQL that cannot be reached at
 * all is looked at again by the first write, as a key store's is.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "usage.h"

/* Seconds of the writer's clock between two retention runs. */
#define SQL_RETENTION_EVERY 300

const struct sql_usage_span sql_usage_spans[SQL_USAGE_NSPANS] = {
    { 60, "keygate_usage_minute" },
    { 3600, "keygate_usage_hour" },
    { 86400, "keygate_usage_day" },
};

#define BUCKET_COLS "start, account_id, key_id, code, count"
#define BUCKET_NCOLS 5
#define EVENT_COLS "id, time_ms, account_id, key_id, key_prefix, client, " \
                   "method, path, status, code, decided_by"
#define EVENT_NCOLS 11

/* One row of a single-row statement: the multi-row ones repeat it. */
static const char *const upsert_one[SQL_USAGE_NSPANS] = {
#define UPSERT(t) "INSERT INTO " t " (" BUCKET_COLS ") VALUES ($1, $2, $3, $4, $5) " \
    "ON CONFLICT (start, account_id, key_id, code) DO UPDATE SET count = " \
    t ".count + excluded.count"
    UPSERT("keygate_usage_minute"), UPSERT("keygate_usage_hour"),
    UPSERT("keygate_usage_day"),
#undef UPSERT
};
static const char event_one[] =
    "INSERT INTO keygate_usage_events (" EVENT_COLS ") VALUES "
    "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";
/* Take n ids: the row stays locked until the write commits. */
static const char ids_take_sql[] =
    "UPDATE keygate_usage_state SET value = value + $1 WHERE name = 'next_event_id'";
static const char ids_read_sql[] =
    "SELECT value FROM keygate_usage_state WHERE name = 'next_event_id'";
static const char *const trim_sql[SQL_KEEP_N] = {
    "DELETE FROM keygate_usage_minute WHERE start < $1",
    "DELETE FROM keygate_usage_hour WHERE start < $1",
    "DELETE FROM keygate_usage_day WHERE start < $1",
    "DELETE FROM keygate_usage_events WHERE time_ms < $1",
};

int sql_usage_span_index(int32_t span)
{
    int i;
    for (i = 0; i < SQL_USAGE_NSPANS; i++)
        if (sql_usage_spans[i].span == span)
            return i;
    return -1;
}

kg_error sql_usage_error(int rc, kg_diag *d, const char *err)
{
    if (rc == SQL_OK)
        return KG_OK;
    kg_diag_set(d, "the usage store %s: %s", SQL_UNAVAILABLE(rc) ?
                "is unavailable" : "failed", err);
    return SQL_UNAVAILABLE(rc) ? KG_ERR_UNAVAILABLE : KG_ERR_IO;
}

/*
 * The single-row statement `one` (ending "($1, ..., $ncols)" and then
 * `tail`) with `nrows` rows: "($1..$n), ($n+1..$2n), ...".  NULL when
 * out of memory.
 */
static char *many_rows(const char *one, int ncols, int nrows)
{
    const char *values = strstr(one, "VALUES ");
    const char *tail = strchr(values, ')') + 1;
    size_t head = (size_t)(values + 7 - one), size = head + strlen(tail) + 1 +
                  (size_t)nrows * ((size_t)ncols * 8 + 4);
    char *out = malloc(size), *p;
    int r, c;

    if (out == NULL)
        return NULL;
    memcpy(out, one, head);
    p = out + head;
    for (r = 0; r < nrows; r++) {
        *p++ = r ? ',' : '(';
        if (r)
            *p++ = '(';
        for (c = 0; c < ncols; c++)
            p += sprintf(p, "%s$%d", c ? ", " : "", r * ncols + c + 1);
        *p++ = ')';
    }
    strcpy(p, tail);
    return out;
}

/* Unix seconds or a count as a parameter. */
static const char *num(char buf[24], int64_t v)
{
    snprintf(buf, 24, "%lld", (long long)v);
    return buf;
}

/* ---- the schema and the probe ------------------------------------------ */

/*
 * Write one row to every table, take no id and trim nothing, then roll
 * back: the statements of a write, so that a store that would refuse
 * them (read-only, missing privileges) is found now.  An SQL_* code.
 */
static int probe(struct sqlstore *s, char *err, size_t errlen)
{
    static const char *const row[BUCKET_NCOLS] = { "0", "", "", "allowed", "0" };
    static const char *const ev[EVENT_NCOLS] = { "0", "0", "", "", "", "",
                                                 "GET", "/", "200", "allowed", "" };
    static const char *const zero[1] = { "0" };
    static const char *const never[1] = { "-9223372036854775807" };
    struct sql_tx t;
    long long next = 0;
    int i, rc;

    if (sql_tx_begin(s, &t) == SQL_OK) {
        for (i = 0; i < SQL_USAGE_NSPANS; i++)
            sql_tx_exec(&t, upsert_one[i], BUCKET_NCOLS, row, NULL, NULL, NULL);
        sql_tx_exec(&t, ids_take_sql, 1, zero, NULL, NULL, NULL);
        sql_tx_exec(&t, ids_read_sql, 0, NULL, sql_one_ll, &next, NULL);
        sql_tx_exec(&t, event_one, EVENT_NCOLS, ev, NULL, NULL, NULL);
        for (i = 0; i < SQL_KEEP_N; i++)
            sql_tx_exec(&t, trim_sql[i], 1, never, NULL, NULL, NULL);
        if (t.rc == SQL_OK && next < 1) {
            t.rc = SQL_ERROR;
            snprintf(t.err, sizeof(t.err), "keygate_usage_state has no "
                     "next_event_id (a table changed by hand?)");
        }
    }
    rc = t.rc;
    snprintf(err, errlen, "%s", t.err);
    sql_tx_end(&t, 0);
    return rc;
}

/*
 * Migrate and probe.  *reached_r: a connection was made (what failed
 * after that is the store's answer, not an outage).
 */
static kg_error prepare(struct sqlstore *s, int *reached_r, kg_diag *d)
{
    struct sql_conn *c;
    char err[512] = "";
    int fresh, rc, from = 0, to = 0;
    kg_error e = KG_OK;

    *reached_r = 0;
    rc = sql_pool_get(&s->pool, &c, &fresh, err, sizeof(err));
    if (rc != SQL_OK) {
        kg_diag_set(d, "%s", err);
        return SQL_UNAVAILABLE(rc) ? KG_ERR_UNAVAILABLE : KG_ERR_IO;
    }
    *reached_r = 1;
    if (c->schema != sql_schema_latest()) {
        e = sql_migrate(s->conf.driver, c->h, 1, &from, &to, err, sizeof(err));
        if (e == KG_OK)
            c->schema = to;
    }
    sql_pool_put(&s->pool, c, e == KG_ERR_UNAVAILABLE);
    if (e != KG_OK) {
        kg_diag_set(d, "the usage store's schema: %s", err);
        return e;
    }
    if ((rc = probe(s, err, sizeof(err))) != SQL_OK) {
        kg_diag_set(d, "the usage store cannot be written: %s", err);
        return KG_ERR_IO;
    }
    return KG_OK;
}

kg_error sql_usage_ensure(struct sqlstore *s, kg_diag *d)
{
    struct sql_usage *u = s->usage;
    kg_error e = KG_OK;
    int reached = 1;

    pthread_mutex_lock(&u->lock);
    if (!u->ready && (e = prepare(s, &reached, d)) == KG_OK)
        u->ready = 1;
    pthread_mutex_unlock(&u->lock);
    if (e != KG_OK && !reached && d != NULL) {
        char why[sizeof(d->message)];
        snprintf(why, sizeof(why), "%s", d->message);
        kg_diag_set(d, "the usage store is unavailable: %s", why);
    }
    return e;
}

/* ---- write ---------------------------------------------------------------- */

struct bucket {
    int64_t start;
    const char *account, *key;
    int code;
    int64_t count;
};

static int bucket_cmp(const void *a, const void *b)
{
    const struct bucket *x = a, *y = b;
    int c;
    if (x->start != y->start)
        return x->start < y->start ? -1 : 1;
    if ((c = strcmp(x->account, y->account)) != 0 ||
        (c = strcmp(x->key, y->key)) != 0)
        return c;
    return x->code - y->code;
}

/*
 * The rows summed per (start, account, key, code) in b[i] for each span
 * i, sorted: a row counts in its own span and every coarser one.  b[]
 * is the caller's to free, also on error.  KG_ERR_INVALID (nothing to
 * write) for a row that is no bucket.
 */
static kg_error sum_rows(const kg_usage_row *rows, size_t n,
                         struct bucket *b[SQL_USAGE_NSPANS],
                         size_t nb[SQL_USAGE_NSPANS], kg_diag *d)
{
    size_t i, j;
    int t;

    for (i = 0; i < n; i++) {
        const kg_usage_row *r = &rows[i];
        if (sql_usage_span_index(r->span) < 0 || r->start < 0 || r->count < 0 ||
            (unsigned)r->code >= KG_CODE__LAST) {
            kg_diag_set(d, "usage row %zu is no bucket (span %d, start %lld, "
                        "count %lld, code %d): nothing written", i, (int)r->span,
                        (long long)r->start, (long long)r->count, (int)r->code);
            return KG_ERR_INVALID;
        }
    }
    for (t = 0; t < SQL_USAGE_NSPANS; t++) {
        int32_t span = sql_usage_spans[t].span;
        nb[t] = 0;
        if ((b[t] = malloc((n ? n : 1) * sizeof(*b[t]))) == NULL)
            return KG_ERR_NOMEM;
        for (i = 0; i < n; i++) {
            const kg_usage_row *r = &rows[i];
            struct bucket *o;
            if (r->span > span || r->count == 0)
                continue;
            o = &b[t][nb[t]++];
            o->start = r->start - r->start % span;
            o->account = r->account_id ? r->account_id : "";
            o->key = r->key_id ? r->key_id : "";
            o->code = (int)r->code;
            o->count = r->count;
        }
        qsort(b[t], nb[t], sizeof(*b[t]), bucket_cmp);
        for (i = 0, j = 0; i < nb[t]; i++) {
            if (j > 0 && bucket_cmp(&b[t][j - 1], &b[t][i]) == 0)
                b[t][j - 1].count += b[t][i].count;
            else
                b[t][j++] = b[t][i];
        }
        nb[t] = j;
    }
    return KG_OK;
}

/* Add the buckets of span index t, SQL_USAGE_CHUNK rows a statement. */
static void put_buckets(struct sql_tx *tx, const struct sql_usage *u, int t,
                        const struct bucket *b, size_t n)
{
    const char *params[BUCKET_NCOLS * SQL_USAGE_CHUNK];
    char nums[SQL_USAGE_CHUNK][2][24];
    size_t i = 0, k, j;

    while (i < n && tx->rc == SQL_OK) {
        k = n - i >= SQL_USAGE_CHUNK ? SQL_USAGE_CHUNK : 1;
        for (j = 0; j < k; j++) {
            const struct bucket *x = &b[i + j];
            const char **p = &params[j * BUCKET_NCOLS];
            p[0] = num(nums[j][0], x->start);
            p[1] = x->account;
            p[2] = x->key;
            p[3] = kg_usage_code_name((kg_code)x->code);
            p[4] = num(nums[j][1], x->count);
        }
        sql_tx_exec(tx, k > 1 ? u->upsert_many[t] : upsert_one[t],
                    (int)(k * BUCKET_NCOLS), params, NULL, NULL, NULL);
        i += k;
    }
}

static const char *str(const char *s)
{
    return s ? s : "";
}

/* An event's place in time order (ties: as given), for its id. */
struct event_at {
    int64_t time_ms;
    size_t i;
};

static int event_cmp(const void *a, const void *b)
{
    const struct event_at *x = a, *y = b;
    if (x->time_ms != y->time_ms)
        return x->time_ms < y->time_ms ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

/* Take n ids and insert the events, SQL_EVENT_CHUNK a statement. */
static void put_events(struct sql_tx *tx, const struct sql_usage *u,
                       const kg_usage_event *ev, const struct event_at *order,
                       size_t n)
{
    const char *params[EVENT_NCOLS * SQL_EVENT_CHUNK];
    char nums[SQL_EVENT_CHUNK][3][24], take[24];
    const char *tp[1] = { num(take, (int64_t)n) };
    long long next = 0;
    size_t i = 0, k, j;

    sql_tx_exec(tx, ids_take_sql, 1, tp, NULL, NULL, NULL);
    sql_tx_exec(tx, ids_read_sql, 0, NULL, sql_one_ll, &next, NULL);
    if (tx->rc == SQL_OK && next <= (long long)n) {
        tx->rc = SQL_ERROR;
        snprintf(tx->err, sizeof(tx->err), "keygate_usage_state has no "
                 "next_event_id (a table changed by hand?)");
    }
    next -= (long long)n;
    while (i < n && tx->rc == SQL_OK) {
        k = n - i >= SQL_EVENT_CHUNK ? SQL_EVENT_CHUNK : 1;
        for (j = 0; j < k; j++) {
            const kg_usage_event *e = &ev[order[i + j].i];
            const char **p = &params[j * EVENT_NCOLS];
            p[0] = num(nums[j][0], (int64_t)(next + (long long)(i + j)));
            p[1] = num(nums[j][1], e->time_ms);
            p[2] = str(e->account_id);
            p[3] = str(e->key_id);
            p[4] = str(e->key_prefix);
            p[5] = str(e->client);
            p[6] = str(e->method);
            p[7] = str(e->path);
            p[8] = num(nums[j][2], e->status);
            p[9] = kg_usage_code_name(e->code);
            p[10] = str(e->decided_by);
        }
        sql_tx_exec(tx, k > 1 ? u->events_many : event_one,
                    (int)(k * EVENT_NCOLS), params, NULL, NULL, NULL);
        i += k;
    }
}

/* Trim what is older than each retention, in a transaction of its own;
 * a failure is the operator's to hear, the write stands. */
static void trim(struct sqlstore *s, int64_t now)
{
    struct sql_usage *u = s->usage;
    struct sql_tx t;
    int i;

    pthread_mutex_lock(&u->lock);
    i = u->last_retention != 0 && now >= u->last_retention &&
        now < u->last_retention + SQL_RETENTION_EVERY;
    if (!i)
        u->last_retention = now;
    pthread_mutex_unlock(&u->lock);
    if (i)
        return;
    if (sql_tx_begin(s, &t) == SQL_OK) {
        for (i = 0; i < SQL_KEEP_N; i++) {
            char cut[24];
            const char *p[1];
            if (u->keep[i] == 0)
                continue;
            p[0] = num(cut, (now - u->keep[i]) * (i == SQL_KEEP_EVENTS ? 1000 : 1));
            sql_tx_exec(&t, trim_sql[i], 1, p, NULL, NULL, NULL);
        }
    }
    if (sql_tx_end(&t, 1) != SQL_OK)
        kg_context_log_backend(s->ctx, s->name, "usage retention: %s", t.err);
}

static kg_error usage_write(void *inst, const kg_usage_row *rows, size_t nrows,
                            const kg_usage_event *events, size_t nevents,
                            int64_t now, kg_diag *diag)
{
    struct sqlstore *s = inst;
    struct bucket *b[SQL_USAGE_NSPANS] = { NULL };
    size_t nb[SQL_USAGE_NSPANS] = { 0 }, i;
    struct event_at *order = NULL;
    struct sql_tx t;
    kg_error e;
    int k;

    if ((e = sum_rows(rows, nrows, b, nb, diag)) != KG_OK)
        goto out;
    for (i = 0; i < nevents; i++) {
        if ((unsigned)events[i].code >= KG_CODE__LAST) {
            kg_diag_set(diag, "usage event %zu has no code (%d): nothing "
                        "written", i, (int)events[i].code);
            e = KG_ERR_INVALID;
            goto out;
        }
    }
    if (nevents > 0) {
        if ((order = malloc(nevents * sizeof(*order))) == NULL) {
            e = KG_ERR_NOMEM;
            goto out;
        }
        for (i = 0; i < nevents; i++) {
            order[i].time_ms = events[i].time_ms;
            order[i].i = i;
        }
        qsort(order, nevents, sizeof(*order), event_cmp);
    }
    if ((e = sql_usage_ensure(s, diag)) != KG_OK)
        goto out;
    if (nb[0] + nb[1] + nb[2] + nevents > 0) {
        if (sql_tx_begin(s, &t) == SQL_OK) {
            for (k = 0; k < SQL_USAGE_NSPANS; k++)
                put_buckets(&t, s->usage, k, b[k], nb[k]);
            if (nevents > 0)
                put_events(&t, s->usage, events, order, nevents);
        }
        sql_tx_end(&t, 1);
        if ((e = sql_usage_error(t.rc, diag, t.err)) != KG_OK)
            goto out;
    }
    trim(s, now);
out:
    for (k = 0; k < SQL_USAGE_NSPANS; k++)
        free(b[k]);
    free(order);
    return e;
}

const struct kg_usage_ops sql_usage_ops = {
    .write = usage_write,
    .query = sql_usage_query,
    .top = sql_usage_top,
    .events = sql_usage_events,
    .outbox = &sql_outbox_ops,
};

/* ---- the instance ---------------------------------------------------------- */

void sql_usage_free(struct sql_usage *u)
{
    int i;
    if (u == NULL)
        return;
    for (i = 0; i < SQL_USAGE_NSPANS; i++)
        free(u->upsert_many[i]);
    free(u->events_many);
    pthread_mutex_destroy(&u->lock);
    free(u);
}

/* retention: {minute: 48h, hour: 90d, day: 2y, events: 7d} */
static kg_error read_retention(kg_opts *o, int64_t keep[SQL_KEEP_N])
{
    static const char *const names[SQL_KEEP_N] = { "minute", "hour", "day", "events" };
    kg_opts *r = kg_opts_child(o, "retention");
    kg_error e;
    int i;

    if (r == NULL && kg_opts_has(o, "retention"))
        return kg_opts_error(o, "retention", "retention must be a mapping such "
                             "as {minute: 48h, hour: 90d, day: 2y, events: 7d}");
    for (i = 0; i < SQL_KEEP_N; i++) {
        keep[i] = sql_usage_keep_default[i];
        if (r != NULL && (e = kg_opts_get_duration(r, names[i], keep[i],
                                                   &keep[i])) != KG_OK)
            return e;
    }
    return KG_OK;
}

const int64_t sql_usage_keep_default[SQL_KEEP_N] = {
    48 * 3600, 90 * 86400, 2 * 365 * 86400, 7 * 86400
};

kg_error sql_usage_attach(struct sqlstore *s, const int64_t keep[SQL_KEEP_N],
                          int *reached_r, kg_diag *d)
{
    struct sql_usage *u = calloc(1, sizeof(*u));
    kg_error e;
    int i;

    *reached_r = 0;
    if (u == NULL)
        return KG_ERR_NOMEM;
    pthread_mutex_init(&u->lock, NULL);
    s->usage = u;
    memcpy(u->keep, keep, sizeof(u->keep));
    for (i = 0; i < SQL_USAGE_NSPANS; i++)
        if ((u->upsert_many[i] = many_rows(upsert_one[i], BUCKET_NCOLS,
                                           SQL_USAGE_CHUNK)) == NULL)
            return KG_ERR_NOMEM;
    if ((u->events_many = many_rows(event_one, EVENT_NCOLS, SQL_EVENT_CHUNK)) == NULL)
        return KG_ERR_NOMEM;
    if ((e = prepare(s, reached_r, d)) == KG_OK)
        u->ready = 1;
    return e;
}

kg_error sql_usage_create(kg_opts *o, struct sqlstore *s)
{
    const char *where = kg_opts_has(o, "url") ? "url" :
                        sql_is_pg(s->conf.driver) ? "conninfo" : "path";
    int64_t keep[SQL_KEEP_N];
    int reached;
    kg_diag d;
    kg_error e;

    if ((e = read_retention(o, keep)) != KG_OK)
        return e;
    memset(&d, 0, sizeof(d));
    e = sql_usage_attach(s, keep, &reached, &d);
    if (e == KG_OK || e == KG_ERR_NOMEM)
        return e;
    if (!reached && sql_is_pg(s->conf.driver))
        return KG_OK;   /* down now: the first write looks again */
    /* SQLite's messages name the file; PostgreSQL's do not name the server */
    return kg_opts_error(o, where, "%s%s%s", sql_is_pg(s->conf.driver) ?
                         s->name : "", sql_is_pg(s->conf.driver) ? ": " : "",
                         d.message);
}
