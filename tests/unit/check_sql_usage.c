/*
 * check_sql_usage.c - the sql plugin's usage store (plugins/sql/usage.c,
 * usage_query.c, conf/sql/004_usage.sql) against a real database: SQLite
 * in a temporary folder, or, when test_postgres.sh runs it with
 * KG_TEST_PG_CONNINFO set, the PostgreSQL it started (then also the
 * outage and read-only tests).  The store's operations are called
 * directly (the plugin's sources are linked in), with the `now` each
 * test gives; the policy tests load it through the usage: section.
 */
#include "config.h"

#include <pthread.h>
#include <sqlite3.h>
#ifdef HAVE_PQ
#include <libpq-fe.h>
#endif
#include <unistd.h>

#include "testutil.h"
#include "plugins/sql/usage.h"

/* A day's start: buckets of every span begin here. */
#define T0 INT64_C(1799971200)

static int pg;                 /* PostgreSQL (else SQLite) */
static char *dir;
static char dbpath[600];
static kg_context *ctx;
static tu_clock clk = { T0 * 1000000 };

/* ---- the database, raw ------------------------------------------------- */

static const char *env(const char *name)
{
    const char *v = getenv(name);
    ck_assert_msg(v != NULL && *v, "%s is not set: run test_postgres.sh", name);
    return v;
}

#ifdef HAVE_PQ
static PGconn *pg_raw(void)
{
    char ci[1024];
    PGconn *c;
    snprintf(ci, sizeof(ci), "%s password=%s", env("KG_TEST_PG_USAGE_CONNINFO"),
             env("KG_TEST_PG_PASSWORD"));
    c = PQconnectdb(ci);
    ck_assert_msg(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    return c;
}
#endif

/* Run SQL on the database as it is; the first column of the first row
 * as a number (-1: no row). */
static long long raw(const char *sql)
{
    long long v = -1;
    if (pg) {
#ifdef HAVE_PQ
        PGconn *c = pg_raw();
        PGresult *r = PQexec(c, sql);
        ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK ||
                      PQresultStatus(r) == PGRES_COMMAND_OK, "%s: %s", sql,
                      PQresultErrorMessage(r));
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0)
            v = PQgetisnull(r, 0, 0) ? 0 : atoll(PQgetvalue(r, 0, 0));
        PQclear(r);
        PQfinish(c);
#endif
    } else {
        sqlite3 *db;
        sqlite3_stmt *st;
        const char *tail = sql;
        ck_assert_int_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
        sqlite3_busy_timeout(db, 5000);
        while (tail && *tail) {
            ck_assert_msg(sqlite3_prepare_v2(db, tail, -1, &st, &tail) == SQLITE_OK,
                          "%s: %s", sql, sqlite3_errmsg(db));
            if (st == NULL)
                break;
            if (sqlite3_step(st) == SQLITE_ROW)
                v = sqlite3_column_int64(st, 0);
            sqlite3_finalize(st);
        }
        sqlite3_close(db);
    }
    return v;
}

/* conf/sql/NAME from the source tree. */
static char *migration(const char *name)
{
    char *path = tu_fmt("%s/conf/sql/%s", env("KEYGATE_SRCDIR"), name);
    char *text = tu_read(path);
    ck_assert_ptr_nonnull(text);
    free(path);
    return text;
}

static void setup(void)
{
    pg = getenv("KG_TEST_PG_USAGE_CONNINFO") != NULL;
    dir = tu_tmpdir();
    snprintf(dbpath, sizeof(dbpath), "%s/usage.db", dir);
    ck_assert_int_eq(kg_context_new(&ctx), KG_OK);
    clk.now_us = (T0 + 3600) * 1000000;
    kg_context_set_clock(ctx, tu_clock_fn, &clk);
    /* Every table of the schema, whichever migrations made them (the
     * audit log's, the alerts' outbox): each test starts from nothing. */
    if (pg)
        raw("DO $$ DECLARE t record; BEGIN FOR t IN SELECT tablename FROM "
            "pg_tables WHERE schemaname = current_schema() AND tablename "
            "LIKE 'keygate\\_%' LOOP EXECUTE 'DROP TABLE IF EXISTS ' || "
            "quote_ident(t.tablename) || ' CASCADE'; END LOOP; END $$");
}

static void teardown(void)
{
    kg_context_free(ctx);
    tu_rmrf(dir);
    free(dir);
}

/* ---- the store, directly ------------------------------------------------ */

/* A usage store on the test's database; NULL with *e_r and d if it
 * does not open.  `conninfo_extra`: appended to PostgreSQL's. */
static struct sqlstore *store_try(const int64_t *keep, const char *pg_extra,
                                  kg_error *e_r, kg_diag *d)
{
    struct sqlstore *s = calloc(1, sizeof(*s));
    int reached;

    ck_assert_ptr_nonnull(s);
    s->ctx = ctx;
    if (pg) {
#ifdef HAVE_PQ
        s->conf.driver = &sql_driver_postgresql;
#else
        ck_abort_msg("KG_TEST_PG_USAGE_CONNINFO is set, but this build has no PostgreSQL");
#endif
        s->conf.conninfo = tu_fmt("%s%s", env("KG_TEST_PG_USAGE_CONNINFO"),
                                  pg_extra ? pg_extra : "");
        s->conf.password = strdup(env("KG_TEST_PG_PASSWORD"));
        s->conf.sslmode = strdup("disable");
        s->conf.connect_timeout_s = 2;
        s->conf.statement_timeout_ms = 10000;
    } else {
        s->conf.driver = &sql_driver_sqlite;
        s->conf.path = strdup(dbpath);
        s->conf.busy_timeout_ms = 5000;
    }
    s->conf.pool_size = 2;
    s->conf.pool_wait_ms = 2000;
    s->conf.reconnect_delay_ms = 0;
    s->conf.driver->describe(&s->conf, s->name, sizeof(s->name));
    ck_assert_int_eq(sql_pool_init(&s->pool, &s->conf), 0);
    s->pool_ready = 1;
    memset(d, 0, sizeof(*d));
    *e_r = sql_usage_attach(s, keep ? keep : sql_usage_keep_default, &reached, d);
    if (*e_r != KG_OK) {
        sql_destroy(s);
        return NULL;
    }
    return s;
}

static struct sqlstore *store(void)
{
    kg_diag d;
    kg_error e;
    struct sqlstore *s = store_try(NULL, NULL, &e, &d);
    ck_assert_msg(s != NULL, "usage store: %s: %s", kg_strerror(e), d.message);
    return s;
}

static kg_error put(struct sqlstore *s, const kg_usage_row *rows, size_t n,
                    const kg_usage_event *ev, size_t nev, int64_t now)
{
    kg_diag d;
    memset(&d, 0, sizeof(d));
    return sql_usage_ops.write(s, rows, n, ev, nev, now, &d);
}

static void put_ok(struct sqlstore *s, const kg_usage_row *rows, size_t n,
                   const kg_usage_event *ev, size_t nev, int64_t now)
{
    kg_diag d;
    kg_error e;
    memset(&d, 0, sizeof(d));
    e = sql_usage_ops.write(s, rows, n, ev, nev, now, &d);
    ck_assert_msg(e == KG_OK, "write: %s: %s", kg_strerror(e), d.message);
}

/* Buckets read back as "start-T0 account key code count;" lines. */
struct text {
    char buf[4096];
};

static int row_text(const kg_usage_row *r, void *ud)
{
    struct text *t = ud;
    size_t n = strlen(t->buf);
    snprintf(t->buf + n, sizeof(t->buf) - n, "%lld %s %s %s %lld;",
             (long long)(r->start - T0), r->account_id[0] ? r->account_id : "-",
             r->key_id[0] ? r->key_id : "-", kg_usage_code_name(r->code),
             (long long)r->count);
    return 0;
}

static const char *rows_of(struct sqlstore *s, struct text *t, int32_t span,
                           const char *account, const char *key, int64_t since,
                           int64_t until)
{
    kg_usage_query q = { account, key, since, until, span };
    kg_diag d;
    kg_error e;
    t->buf[0] = '\0';
    memset(&d, 0, sizeof(d));
    e = sql_usage_ops.query(s, &q, row_text, t, &d);
    ck_assert_msg(e == KG_OK, "query: %s: %s", kg_strerror(e), d.message);
    return t->buf;
}

#define ROW(start, span, a, k, code, n) { (start), (span), (a), (k), (code), (n) }

static const kg_usage_row batch[] = {
    ROW(T0 + 60, 60, "acct_a", "k_1", KG_CODE_NONE, 3),
    ROW(T0 + 60, 60, "", "", KG_CODE_UNAUTHORIZED, 7),
    ROW(T0 + 61, 60, "acct_a", "k_1", KG_CODE_NONE, 2),   /* the same minute */
    ROW(T0 + 60, 60, "acct_a", "k_1", KG_CODE_RATE_LIMITED, 1),
    ROW(T0 + 120, 60, "acct_b", "k_2", KG_CODE_NONE, 4),
};
#define NBATCH (sizeof(batch) / sizeof(batch[0]))

/* ---- writes ---------------------------------------------------------------- */

START_TEST(test_upsert_adds)
{
    struct sqlstore *s = store();
    struct text t;

    put_ok(s, batch, NBATCH, NULL, 0, T0 + 3600);
    ck_assert_str_eq(rows_of(s, &t, 60, NULL, NULL, T0, T0 + 3600),
                     "60 - - unauthorized 7;60 acct_a k_1 allowed 5;"
                     "60 acct_a k_1 rate_limited 1;120 acct_b k_2 allowed 4;");
    /* a second write of the same counts adds them, it replaces nothing */
    put_ok(s, batch, NBATCH, NULL, 0, T0 + 3600);
    ck_assert_str_eq(rows_of(s, &t, 60, NULL, NULL, T0, T0 + 3600),
                     "60 - - unauthorized 14;60 acct_a k_1 allowed 10;"
                     "60 acct_a k_1 rate_limited 2;120 acct_b k_2 allowed 8;");
    ck_assert_int_eq(raw("SELECT count(*) FROM keygate_usage_minute"), 4);
    /* nothing to write is no error */
    put_ok(s, NULL, 0, NULL, 0, T0 + 3600);
    sql_destroy(s);
}
END_TEST

START_TEST(test_rollups)
{
    struct sqlstore *s = store();
    struct text t;
    static const kg_usage_row more[] = {
        ROW(T0 + 3600 + 300, 60, "acct_a", "k_1", KG_CODE_NONE, 6),
        ROW(T0 + 7200, 3600, "acct_b", "k_2", KG_CODE_NONE, 100),  /* an hour row */
        ROW(T0 + 86400 + 60, 60, "acct_b", "k_2", KG_CODE_NONE, 1),
    };

    put_ok(s, batch, NBATCH, NULL, 0, T0 + 3600);
    put_ok(s, more, 3, NULL, 0, T0 + 3600);
    /* the hour row is no minute row */
    ck_assert_str_eq(rows_of(s, &t, 60, "acct_b", NULL, T0, T0 + 2 * 86400),
                     "120 acct_b k_2 allowed 4;86460 acct_b k_2 allowed 1;");
    ck_assert_str_eq(rows_of(s, &t, 3600, NULL, NULL, T0, T0 + 2 * 86400),
                     "0 - - unauthorized 7;0 acct_a k_1 allowed 5;"
                     "0 acct_a k_1 rate_limited 1;0 acct_b k_2 allowed 4;"
                     "3600 acct_a k_1 allowed 6;7200 acct_b k_2 allowed 100;"
                     "86400 acct_b k_2 allowed 1;");
    ck_assert_str_eq(rows_of(s, &t, 86400, NULL, NULL, T0, T0 + 2 * 86400),
                     "0 - - unauthorized 7;0 acct_a k_1 allowed 11;"
                     "0 acct_a k_1 rate_limited 1;0 acct_b k_2 allowed 104;"
                     "86400 acct_b k_2 allowed 1;");
    sql_destroy(s);
}
END_TEST

START_TEST(test_bad_rows_write_nothing)
{
    struct sqlstore *s = store();
    struct text t;
    kg_usage_row bad[2] = { ROW(T0, 60, "acct_a", "k_1", KG_CODE_NONE, 1),
                            ROW(T0, 61, "acct_a", "k_1", KG_CODE_NONE, 1) };
    kg_usage_event ev = { 0 };

    ck_assert_int_eq(put(s, bad, 2, NULL, 0, T0), KG_ERR_INVALID);
    bad[1].span = 60;
    bad[1].code = KG_CODE__LAST;
    ck_assert_int_eq(put(s, bad, 2, NULL, 0, T0), KG_ERR_INVALID);
    bad[1].code = KG_CODE_NONE;
    bad[1].count = -1;
    ck_assert_int_eq(put(s, bad, 2, NULL, 0, T0), KG_ERR_INVALID);
    ev.code = (kg_code)-1;
    ck_assert_int_eq(put(s, bad, 1, &ev, 1, T0), KG_ERR_INVALID);
    ck_assert_str_eq(rows_of(s, &t, 60, NULL, NULL, 0, 0), "");
    sql_destroy(s);
}
END_TEST

/*
 * A write is one transaction: an event the database refuses (its id
 * taken by a row put there by hand) leaves the buckets as they were.
 */
START_TEST(test_write_all_or_nothing)
{
    struct sqlstore *s = store();
    struct text t;
    kg_usage_event ev = { 0, (T0 + 5) * 1000, "acct_a", "k_1", "whizo_ab",
                          "127.0.0.1", "GET", "/v1/x", "ratelimit", 429,
                          KG_CODE_RATE_LIMITED };
    kg_diag d;
    char *sql;

    put_ok(s, batch, 1, NULL, 0, T0 + 3600);
    sql = tu_fmt("INSERT INTO keygate_usage_events (id, time_ms, account_id, "
                 "key_id, key_prefix, client, method, path, status, code, "
                 "decided_by) VALUES (%lld, 0, '', '', '', '', 'GET', '/', 200, "
                 "'allowed', '')", raw("SELECT value FROM keygate_usage_state "
                                       "WHERE name = 'next_event_id'"));
    raw(sql);
    free(sql);
    memset(&d, 0, sizeof(d));
    ck_assert_int_ne(sql_usage_ops.write(s, batch, NBATCH, &ev, 1, T0 + 3600, &d), KG_OK);
    ck_assert_msg(strstr(d.message, "usage store") != NULL, "%s", d.message);
    ck_assert_str_eq(rows_of(s, &t, 60, NULL, NULL, 0, 0), "60 acct_a k_1 allowed 3;");
    ck_assert_str_eq(rows_of(s, &t, 86400, NULL, NULL, 0, 0), "0 acct_a k_1 allowed 3;");
    ck_assert_int_eq(raw("SELECT count(*) FROM keygate_usage_events"), 1);
    sql_destroy(s);
}
END_TEST

/* ---- retention --------------------------------------------------------------- */

START_TEST(test_retention)
{
    struct sqlstore *s = store();
    int64_t now = T0 + 100 * 86400;
    struct text t;
    kg_usage_row rows[] = {
        ROW(now - 49 * 3600 - (now - 49 * 3600) % 60, 60, "acct_a", "k_1", KG_CODE_NONE, 1),
        ROW(now - 47 * 3600 - (now - 47 * 3600) % 60, 60, "acct_a", "k_1", KG_CODE_NONE, 2),
        ROW(T0, 3600, "acct_a", "k_1", KG_CODE_NONE, 4),   /* 100 days ago */
    };
    kg_usage_event ev[2] = {
        { 0, (now - 8 * 86400) * 1000, "acct_a", "k_1", "whizo_ab", "", "GET",
          "/old", "bearer", 401, KG_CODE_UNAUTHORIZED },
        { 0, (now - 6 * 86400) * 1000, "acct_a", "k_1", "whizo_ab", "", "GET",
          "/new", "bearer", 401, KG_CODE_UNAUTHORIZED },
    };

    /* written and trimmed in one call: the minute row of 49 h ago and
     * the hour row of 100 days ago go, their coarser buckets stay */
    put_ok(s, rows, 3, ev, 2, now);
    ck_assert_int_eq(raw("SELECT count(*) FROM keygate_usage_minute"), 1);
    ck_assert_int_eq(raw("SELECT SUM(count) FROM keygate_usage_minute"), 2);
    ck_assert_int_eq(raw("SELECT count(*) FROM keygate_usage_hour"), 2);
    ck_assert_int_eq(raw("SELECT SUM(count) FROM keygate_usage_hour"), 3);
    ck_assert_int_eq(raw("SELECT SUM(count) FROM keygate_usage_day"), 7);
    ck_assert_int_eq(raw("SELECT count(*) FROM keygate_usage_events"), 1);
    ck_assert_int_eq(raw("SELECT count(*) FROM keygate_usage_events WHERE path = '/new'"), 1);
    /* not on every write: 10 s later an old row stays ... */
    put_ok(s, rows, 1, NULL, 0, now + 10);
    ck_assert_int_eq(raw("SELECT count(*) FROM keygate_usage_minute"), 2);
    /* ... until SQL_RETENTION_EVERY (300 s) has passed, even with
     * nothing to write */
    put_ok(s, NULL, 0, NULL, 0, now + 299);
    ck_assert_int_eq(raw("SELECT count(*) FROM keygate_usage_minute"), 2);
    put_ok(s, NULL, 0, NULL, 0, now + 300);
    ck_assert_int_eq(raw("SELECT count(*) FROM keygate_usage_minute"), 1);
    /* two years of days; the day of T0 is 100 days old: kept */
    ck_assert_str_eq(rows_of(s, &t, 86400, NULL, NULL, T0, T0 + 1),
                     "0 acct_a k_1 allowed 4;");
    sql_destroy(s);
}
END_TEST

START_TEST(test_retention_options)
{
    int64_t keep[SQL_KEEP_N] = { 60, 1800, 0, 1 };   /* day: forever */
    kg_diag d;
    kg_error e;
    struct sqlstore *s = store_try(keep, NULL, &e, &d);
    int64_t now = T0 + 5000 * 86400;
    kg_usage_row rows[] = {
        ROW(now - 120, 60, "a", "k", KG_CODE_NONE, 1),
        ROW(now, 60, "a", "k", KG_CODE_NONE, 1),
        ROW(T0, 86400, "a", "k", KG_CODE_NONE, 1),
    };
    kg_usage_event ev = { 0, (now - 2) * 1000, "a", "k", "", "", "GET", "/",
                          "bearer", 401, KG_CODE_UNAUTHORIZED };

    ck_assert_msg(s != NULL, "%s", d.message);
    put_ok(s, rows, 3, &ev, 1, now);
    ck_assert_int_eq(raw("SELECT count(*) FROM keygate_usage_minute"), 1);
    ck_assert_int_eq(raw("SELECT count(*) FROM keygate_usage_hour"), 1);
    ck_assert_int_eq(raw("SELECT count(*) FROM keygate_usage_day"), 3);  /* 3 days */
    ck_assert_int_eq(raw("SELECT count(*) FROM keygate_usage_events"), 0);
    sql_destroy(s);
}
END_TEST

/* ---- queries ----------------------------------------------------------------- */

START_TEST(test_query_filters)
{
    struct sqlstore *s = store();
    struct text t;
    kg_usage_row inj = ROW(T0 + 60, 60, "x' OR '1'='1", "k_1", KG_CODE_NONE, 1);

    put_ok(s, batch, NBATCH, NULL, 0, T0 + 3600);
    put_ok(s, &inj, 1, NULL, 0, T0 + 3600);
    ck_assert_str_eq(rows_of(s, &t, 60, "acct_a", NULL, T0, T0 + 3600),
                     "60 acct_a k_1 allowed 5;60 acct_a k_1 rate_limited 1;");
    ck_assert_str_eq(rows_of(s, &t, 60, NULL, "k_2", T0, T0 + 3600),
                     "120 acct_b k_2 allowed 4;");
    ck_assert_str_eq(rows_of(s, &t, 60, "acct_b", "k_1", T0, T0 + 3600), "");
    ck_assert_str_eq(rows_of(s, &t, 60, "x' OR '1'='1", "k_1", T0, T0 + 3600),
                     "60 x' OR '1'='1 k_1 allowed 1;");
    ck_assert_str_eq(rows_of(s, &t, 60, "", "", T0, T0 + 3600),
                     "60 - - unauthorized 7;");
    /* [since, until): a bucket counts by its start */
    ck_assert_str_eq(rows_of(s, &t, 60, "acct_b", NULL, T0 + 120, T0 + 121),
                     "120 acct_b k_2 allowed 4;");
    ck_assert_str_eq(rows_of(s, &t, 60, "acct_b", NULL, T0, T0 + 120), "");
    ck_assert_str_eq(rows_of(s, &t, 60, "acct_b", NULL, T0 + 121, 0), "");
    {
        kg_usage_query q = { NULL, NULL, 0, 0, 120 };
        kg_diag d;
        ck_assert_int_eq(sql_usage_ops.query(s, &q, row_text, &t, &d), KG_ERR_INVALID);
    }
    sql_destroy(s);
}
END_TEST

struct tops {
    char buf[1024];
    int stop_after;
};

static int top_text(const char *account, const char *key, int64_t allowed,
                    int64_t denied, void *ud)
{
    struct tops *t = ud;
    size_t n = strlen(t->buf);
    snprintf(t->buf + n, sizeof(t->buf) - n, "%s/%s %lld %lld;",
             account[0] ? account : "-", key[0] ? key : "-",
             (long long)allowed, (long long)denied);
    return t->stop_after > 0 && --t->stop_after == 0;
}

static const char *top_of(struct sqlstore *s, struct tops *t, int by_key,
                          int64_t since, int64_t until, size_t limit)
{
    kg_diag d;
    kg_error e;
    t->buf[0] = '\0';
    memset(&d, 0, sizeof(d));
    e = sql_usage_ops.top(s, by_key, since, until, limit, top_text, t, &d);
    ck_assert_msg(e == KG_OK, "top: %s: %s", kg_strerror(e), d.message);
    return t->buf;
}

START_TEST(test_top)
{
    struct sqlstore *s = store();
    struct tops t = { "", 0 };
    static const kg_usage_row k3 = ROW(T0 + 600, 60, "acct_a", "k_3", KG_CODE_NONE, 10);

    put_ok(s, batch, NBATCH, NULL, 0, T0 + 3600);
    put_ok(s, &k3, 1, NULL, 0, T0 + 3600);
    /* the day (aligned: the day table) and minutes [60, 660) (the
     * minute table) say the same */
    ck_assert_str_eq(top_of(s, &t, 0, T0, T0 + 86400, 0),
                     "acct_a/- 15 1;-/- 0 7;acct_b/- 4 0;");
    ck_assert_str_eq(top_of(s, &t, 0, T0 + 60, T0 + 660, 0),
                     "acct_a/- 15 1;-/- 0 7;acct_b/- 4 0;");
    ck_assert_str_eq(top_of(s, &t, 1, T0, T0 + 86400, 0),
                     "acct_a/k_3 10 0;-/- 0 7;acct_a/k_1 5 1;acct_b/k_2 4 0;");
    ck_assert_str_eq(top_of(s, &t, 1, T0, 0, 2), "acct_a/k_3 10 0;-/- 0 7;");
    /* only minute 600 */
    ck_assert_str_eq(top_of(s, &t, 1, T0 + 600, T0 + 660, 0), "acct_a/k_3 10 0;");
    t.stop_after = 1;
    ck_assert_str_eq(top_of(s, &t, 0, T0, 0, 0), "acct_a/- 15 1;");
    sql_destroy(s);
}
END_TEST

/* ---- events ------------------------------------------------------------------- */

static int event_text(const kg_usage_event *e, void *ud)
{
    struct text *t = ud;
    size_t n = strlen(t->buf);
    snprintf(t->buf + n, sizeof(t->buf) - n, "%lld %lld %s %s %s %s %s %s %d %s %s;",
             (long long)e->id, (long long)(e->time_ms - T0 * 1000), e->account_id,
             e->key_id, e->key_prefix, e->client, e->method, e->path, e->status,
             kg_usage_code_name(e->code), e->decided_by);
    return 0;
}

static const char *events_of(struct sqlstore *s, struct text *t,
                             const kg_event_query *q)
{
    kg_diag d;
    kg_error e;
    t->buf[0] = '\0';
    memset(&d, 0, sizeof(d));
    e = sql_usage_ops.events(s, q, event_text, t, &d);
    ck_assert_msg(e == KG_OK, "events: %s: %s", kg_strerror(e), d.message);
    return t->buf;
}

/* Given out of time order: ids follow time. */
static const kg_usage_event evs[] = {
    { 0, T0 * 1000 + 3000, "acct_a", "k_1", "whizo_a1", "10.0.0.1", "POST",
      "/v1/jobs", "scope", 403, KG_CODE_INSUFFICIENT_PERMISSIONS },
    { 0, T0 * 1000 + 1000, "acct_a", "k_1", "whizo_a1", "10.0.0.1", "GET",
      "/v1/a", "fixed_window", 429, KG_CODE_RATE_LIMITED },
    { 0, T0 * 1000 + 2000, "", "", "", "::1", "GET", "/v1/b", "bearer", 401,
      KG_CODE_UNAUTHORIZED },
    { 0, T0 * 1000 + 4000, "acct_b", "k_2", "whizo_b2", "10.0.0.2", "GET",
      "/v1/c", "", 200, KG_CODE_NONE },
    { 0, T0 * 1000 + 5000, "acct_b", "k_2", "whizo_b2", "10.0.0.2", "GET",
      "/v1/d?q='; DROP TABLE x;--", "fixed_window", 429, KG_CODE_RATE_LIMITED },
};

START_TEST(test_events)
{
    struct sqlstore *s = store();
    struct text t;
    kg_event_query q;
    int64_t first;

    put_ok(s, NULL, 0, evs, 5, T0 + 10);
    first = raw("SELECT MIN(id) FROM keygate_usage_events");
    ck_assert_int_eq(first, 1);
    memset(&q, 0, sizeof(q));
    q.any_code = 1;
    ck_assert_str_eq(events_of(s, &t, &q),
        "5 5000 acct_b k_2 whizo_b2 10.0.0.2 GET /v1/d?q='; DROP TABLE x;-- 429 rate_limited fixed_window;"
        "4 4000 acct_b k_2 whizo_b2 10.0.0.2 GET /v1/c 200 allowed ;"
        "3 3000 acct_a k_1 whizo_a1 10.0.0.1 POST /v1/jobs 403 insufficient_permissions scope;"
        "2 2000    ::1 GET /v1/b 401 unauthorized bearer;"
        "1 1000 acct_a k_1 whizo_a1 10.0.0.1 GET /v1/a 429 rate_limited fixed_window;");
    /* pages of two, by the id cursor */
    q.limit = 2;
    ck_assert_str_eq(events_of(s, &t, &q),
        "5 5000 acct_b k_2 whizo_b2 10.0.0.2 GET /v1/d?q='; DROP TABLE x;-- 429 rate_limited fixed_window;"
        "4 4000 acct_b k_2 whizo_b2 10.0.0.2 GET /v1/c 200 allowed ;");
    q.before_id = 4;
    ck_assert_str_eq(events_of(s, &t, &q),
        "3 3000 acct_a k_1 whizo_a1 10.0.0.1 POST /v1/jobs 403 insufficient_permissions scope;"
        "2 2000    ::1 GET /v1/b 401 unauthorized bearer;");
    q.before_id = 2;
    ck_assert_str_eq(events_of(s, &t, &q),
        "1 1000 acct_a k_1 whizo_a1 10.0.0.1 GET /v1/a 429 rate_limited fixed_window;");
    q.before_id = 1;
    ck_assert_str_eq(events_of(s, &t, &q), "");
    /* filters */
    memset(&q, 0, sizeof(q));
    q.any_code = 1;
    q.account_id = "acct_a";
    ck_assert_str_eq(events_of(s, &t, &q),
        "3 3000 acct_a k_1 whizo_a1 10.0.0.1 POST /v1/jobs 403 insufficient_permissions scope;"
        "1 1000 acct_a k_1 whizo_a1 10.0.0.1 GET /v1/a 429 rate_limited fixed_window;");
    q.account_id = NULL;
    q.key_id = "k_2";
    q.status_min = 400;
    q.status_max = 499;
    ck_assert_str_eq(events_of(s, &t, &q),
        "5 5000 acct_b k_2 whizo_b2 10.0.0.2 GET /v1/d?q='; DROP TABLE x;-- 429 rate_limited fixed_window;");
    q.key_id = NULL;
    q.any_code = 0;
    q.code = KG_CODE_RATE_LIMITED;
    q.status_min = q.status_max = 0;
    q.since_ms = T0 * 1000 + 1001;
    ck_assert_str_eq(events_of(s, &t, &q),
        "5 5000 acct_b k_2 whizo_b2 10.0.0.2 GET /v1/d?q='; DROP TABLE x;-- 429 rate_limited fixed_window;");
    q.since_ms = 0;
    q.until_ms = T0 * 1000 + 5000;
    q.account_id = "acct_a";
    q.key_id = "k_1";
    ck_assert_str_eq(events_of(s, &t, &q),
        "1 1000 acct_a k_1 whizo_a1 10.0.0.1 GET /v1/a 429 rate_limited fixed_window;");
    q.account_id = q.key_id = NULL;
    q.code = KG_CODE_NONE;
    q.until_ms = 0;
    ck_assert_str_eq(events_of(s, &t, &q),
        "4 4000 acct_b k_2 whizo_b2 10.0.0.2 GET /v1/c 200 allowed ;");
    /* the next write's ids follow */
    put_ok(s, NULL, 0, evs, 1, T0 + 20);
    memset(&q, 0, sizeof(q));
    q.any_code = 1;
    q.limit = 1;
    ck_assert_int_eq(atoi(events_of(s, &t, &q)), 6);
    sql_destroy(s);
}
END_TEST

/* ---- several writers ----------------------------------------------------------- */

#define WRITERS 4
#define ROUNDS 15
#define KEYS 120

struct writer_arg {
    struct sqlstore *s;
    int unavailable;     /* writes answered KG_ERR_UNAVAILABLE */
};

static void *writer(void *arg)
{
    struct writer_arg *w = arg;
    kg_usage_row rows[KEYS];
    char acct[KEYS][16], key[KEYS][16];
    unsigned seed = (unsigned)(uintptr_t)arg;
    int r, i;

    for (r = 0; r < ROUNDS; r++) {
        /* the same buckets in another order each round and writer */
        for (i = 0; i < KEYS; i++) {
            int k = (int)(((unsigned)i * 7919u + (unsigned)rand_r(&seed)) % KEYS);
            snprintf(acct[i], sizeof(acct[i]), "acct_%d", k % 10);
            snprintf(key[i], sizeof(key[i]), "k_%d", k);
            rows[i].start = T0 + 60 * (k % 3);
            rows[i].span = 60;
            rows[i].account_id = acct[i];
            rows[i].key_id = key[i];
            rows[i].code = (k & 1) ? KG_CODE_NONE : KG_CODE_RATE_LIMITED;
            rows[i].count = 1;
        }
        /* the core keeps a batch the store could not take and retries */
        while (put(w->s, rows, KEYS, NULL, 0, T0 + 3600) == KG_ERR_UNAVAILABLE) {
            w->unavailable++;
            usleep(1000);
        }
    }
    return NULL;
}

/*
 * Several stores (several keygated) add into the same buckets at once,
 * each batch in another order: the totals are exact, and on PostgreSQL
 * no write ever failed (rows are written in one order: no deadlock);
 * SQLite's writers may wait past busy_timeout and retry.
 */
START_TEST(test_writers_add_up)
{
    struct writer_arg w[WRITERS];
    pthread_t th[WRITERS];
    int i;

    for (i = 0; i < WRITERS; i++) {
        w[i].s = store();
        w[i].unavailable = 0;
    }
    for (i = 0; i < WRITERS; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, writer, &w[i]), 0);
    for (i = 0; i < WRITERS; i++)
        pthread_join(th[i], NULL);
    for (i = 0; i < WRITERS && pg; i++)
        ck_assert_msg(w[i].unavailable == 0, "writer %d: %d writes unavailable "
                      "(deadlocks?)", i, w[i].unavailable);
    ck_assert_int_eq(raw("SELECT SUM(count) FROM keygate_usage_minute"),
                     WRITERS * ROUNDS * KEYS);
    ck_assert_int_eq(raw("SELECT SUM(count) FROM keygate_usage_hour"),
                     WRITERS * ROUNDS * KEYS);
    ck_assert_int_eq(raw("SELECT SUM(count) FROM keygate_usage_day"),
                     WRITERS * ROUNDS * KEYS);
    for (i = 0; i < WRITERS; i++)
        sql_destroy(w[i].s);
}
END_TEST

/* ---- the schema ------------------------------------------------------------------ */

START_TEST(test_migrates_a_v3_store)
{
    static const char *const files[] = { "001_init.sql",
        "002_hash_primary_key.sqlite.sql", "003_accounts.sql" };
    struct sqlstore *s;
    size_t i;

    for (i = 0; i < 3; i++) {
        char *sql;
        if (pg && strstr(files[i], ".sqlite.") != NULL)
            continue;
        sql = migration(files[i]);
        raw(sql);
        free(sql);
    }
    raw("CREATE TABLE keygate_schema (version INTEGER PRIMARY KEY, name TEXT "
        "NOT NULL, applied_at BIGINT NOT NULL)");
    raw("INSERT INTO keygate_schema VALUES (1, '001_init', 0)");
    raw("INSERT INTO keygate_schema VALUES (2, '002_hash_primary_key', 0)");
    raw("INSERT INTO keygate_schema VALUES (3, '003_accounts', 0)");
    raw("INSERT INTO keygate_accounts (id, name, plan, created_at, updated_at) "
        "VALUES ('acct_x', 'X', 'free', 1, 1)");
    raw("INSERT INTO keygate_keys (id, key_hash, plan, created_at, account_id) "
        "VALUES ('k_x', 'abc', 'free', 1, 'acct_x')");
    s = store();
    ck_assert_int_eq(raw("SELECT MAX(version) FROM keygate_schema"), tu_schema_latest());
    ck_assert_int_eq(raw("SELECT count(*) FROM keygate_keys WHERE account_id = 'acct_x'"), 1);
    put_ok(s, batch, NBATCH, evs, 1, T0 + 3600);
    ck_assert_int_eq(raw("SELECT SUM(count) FROM keygate_usage_day"), 17);
    sql_destroy(s);
    /* opened again: nothing to do */
    s = store();
    ck_assert_int_eq(raw("SELECT count(*) FROM keygate_schema"), tu_schema_latest());
    sql_destroy(s);
}
END_TEST

/* SQLite: the plan of a statement, its details joined by ';'. */
static char *lite_plan(const char *sql)
{
    char *plan = tu_fmt("%s", ""), *more;
    sqlite3 *db;
    sqlite3_stmt *st;
    char *eqp = tu_fmt("EXPLAIN QUERY PLAN %s", sql);

    ck_assert_int_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
    ck_assert_msg(sqlite3_prepare_v2(db, eqp, -1, &st, NULL) == SQLITE_OK,
                  "%s: %s", sql, sqlite3_errmsg(db));
    while (sqlite3_step(st) == SQLITE_ROW) {
        more = tu_fmt("%s%s;", plan, (const char *)sqlite3_column_text(st, 3));
        free(plan);
        plan = more;
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    free(eqp);
    return plan;
}

static void plan_has(const char *sql, const char *want, const char *not_want)
{
    char *plan = lite_plan(sql);

    ck_assert_msg(strstr(plan, want) != NULL, "%s: plan '%s', not '%s'", sql, plan, want);
    ck_assert_msg(not_want == NULL || strstr(plan, not_want) == NULL,
                  "%s: plan '%s' has '%s'", sql, plan, not_want);
    free(plan);
}

/* One number that changes with any column of any row of a bucket table. */
#define DIGEST(t) "SELECT count(*) * 1000000 + SUM((start - 1799971200) / 60 + " \
    "count * 7 + length(account_id) * 11 + length(key_id) * 13 + " \
    "length(code) * 17) FROM " t

/*
 * A store at version 6 with rows in its bucket tables (written in no
 * order) is migrated to 7 when it opens (conf/sql/007_usage_by_account:
 * SQLite rebuilds the tables in account order WITHOUT ROWID, PostgreSQL
 * makes the account index covering): every row is still there, the
 * queries answer what the rows say, a flush adds to the migrated rows,
 * and each statement finds its rows by an index (docs/sql.md "Tables").
 */
START_TEST(test_migrates_a_v6_store_with_usage)
{
    static const char *const files[] = { "001_init.sql",
        "002_hash_primary_key.sqlite.sql", "003_accounts.sql", "004_usage.sql",
        "005_alerts.sql", "006_audit.sqlite.sql", "006_audit.postgresql.sql" };
    static const char *const tables[] = { "keygate_usage_minute",
        "keygate_usage_hour", "keygate_usage_day" };
    long long before[3];
    struct sqlstore *s;
    struct text t;
    size_t i;

    raw("CREATE TABLE keygate_schema (version INTEGER PRIMARY KEY, name TEXT "
        "NOT NULL, applied_at BIGINT NOT NULL)");
    for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        char *sql;
        if (strstr(files[i], pg ? ".sqlite." : ".postgresql.") != NULL)
            continue;
        sql = migration(files[i]);
        raw(sql);
        free(sql);
    }
    raw("INSERT INTO keygate_schema VALUES (1, '001_init', 0), (2, "
        "'002_hash_primary_key', 0), (3, '003_accounts', 0), (4, '004_usage', 0), "
        "(5, '005_alerts', 0), (6, '006_audit', 0)");
    ck_assert_int_eq(raw("SELECT MAX(version) FROM keygate_schema"), 6);
    /* rows of 004's schema, out of every order the tables know */
    for (i = 0; i < 3; i++) {
        char *sql = tu_fmt(
            "INSERT INTO %s (start, account_id, key_id, code, count) VALUES "
            "(1799971200 + 86400, 'acct_b', 'k_2', 'allowed', 4),"
            "(1799971200, 'acct_b', 'k_2', 'allowed', 9),"
            "(1799971200 + 86400, 'acct_a', 'k_1', 'rate_limited', 2),"
            "(1799971200, '', '', 'unauthorized', 7),"
            "(1799971200 + 86400, 'acct_a', 'k_1', 'allowed', 5),"
            "(1799971200, 'acct_a', 'k_3', 'allowed', 1),"
            "(1799971200, 'acct_a', 'k_1', 'allowed', 3)", tables[i]);
        char *digest = tu_fmt(DIGEST("%s"), tables[i]);
        raw(sql);
        before[i] = raw(digest);
        free(sql);
        free(digest);
    }

    s = store();
    ck_assert_int_eq(raw("SELECT MAX(version) FROM keygate_schema"), tu_schema_latest());
    for (i = 0; i < 3; i++) {
        char *digest = tu_fmt(DIGEST("%s"), tables[i]);
        int32_t span = i == 0 ? 60 : i == 1 ? 3600 : 86400;
        ck_assert_msg(raw(digest) == before[i], "%s changed", tables[i]);
        free(digest);
        ck_assert_str_eq(rows_of(s, &t, span, "acct_a", NULL, T0, T0 + 2 * 86400),
                         "0 acct_a k_1 allowed 3;0 acct_a k_3 allowed 1;"
                         "86400 acct_a k_1 allowed 5;86400 acct_a k_1 rate_limited 2;");
        ck_assert_str_eq(rows_of(s, &t, span, "acct_a", NULL, T0 + 1, T0 + 2 * 86400),
                         "86400 acct_a k_1 allowed 5;86400 acct_a k_1 rate_limited 2;");
        ck_assert_str_eq(rows_of(s, &t, span, NULL, "k_2", T0, 0),
                         "0 acct_b k_2 allowed 9;86400 acct_b k_2 allowed 4;");
        ck_assert_str_eq(rows_of(s, &t, span, "acct_a", "k_1", T0, T0 + 86400),
                         "0 acct_a k_1 allowed 3;");
        ck_assert_str_eq(rows_of(s, &t, span, NULL, NULL, T0, T0 + 86400),
                         "0 - - unauthorized 7;0 acct_a k_1 allowed 3;"
                         "0 acct_a k_3 allowed 1;0 acct_b k_2 allowed 9;");
    }
    /* a flush adds to a migrated row (its ON CONFLICT finds the new key) */
    {
        static const kg_usage_row more[] = {
            ROW(T0, 60, "acct_a", "k_1", KG_CODE_NONE, 10),
        };
        put_ok(s, more, 1, NULL, 0, T0 + 3600);
        ck_assert_str_eq(rows_of(s, &t, 86400, "acct_a", "k_1", T0, T0 + 1),
                         "0 acct_a k_1 allowed 13;");
        ck_assert_int_eq(raw("SELECT count(*) FROM keygate_usage_hour"), 7);
    }
    for (i = 0; i < 3; i++) {
        char *sql, *want;
        if (pg) {
            /* the index by account carries every column the query reads */
            sql = tu_fmt("SELECT indnatts * 10 + indnkeyatts FROM pg_index WHERE "
                         "indexrelid = '%s_account'::regclass", tables[i]);
            ck_assert_int_eq(raw(sql), 54);
            free(sql);
            continue;
        }
        sql = tu_fmt("SELECT count(*) FROM sqlite_schema WHERE name = '%s' "
                     "AND sql LIKE '%%WITHOUT ROWID'", tables[i]);
        ck_assert_int_eq(raw(sql), 1);
        free(sql);
        /* by account: one search of the table's own key, no sort */
        sql = tu_fmt("SELECT start, account_id, key_id, code, count FROM %s WHERE "
                     "start >= 1 AND start < 2 AND account_id = 'a' ORDER BY start, "
                     "account_id, key_id, code", tables[i]);
        plan_has(sql, "USING PRIMARY KEY (account_id=? AND start>? AND start<?)",
                 "TEMP B-TREE");
        free(sql);
        /* by key, and over every account: an index, no sort */
        sql = tu_fmt("SELECT start, account_id, key_id, code, count FROM %s WHERE "
                     "start >= 1 AND start < 2 AND key_id = 'k' ORDER BY start, "
                     "account_id, key_id, code", tables[i]);
        want = tu_fmt("INDEX %s_key (key_id=? AND start>? AND start<?)", tables[i]);
        plan_has(sql, want, "TEMP B-TREE");
        free(want);
        free(sql);
        sql = tu_fmt("SELECT start, account_id, key_id, code, count FROM %s WHERE "
                     "start >= 1 AND start < 2 ORDER BY start, account_id, key_id, code",
                     tables[i]);
        want = tu_fmt("INDEX %s_start (start>? AND start<?)", tables[i]);
        plan_has(sql, want, "TEMP B-TREE");
        free(want);
        free(sql);
        /* retention: the oldest rows by the start index, not a scan */
        sql = tu_fmt("DELETE FROM %s WHERE start < 1", tables[i]);
        want = tu_fmt("COVERING INDEX %s_start (start<?)", tables[i]);
        plan_has(sql, want, NULL);
        free(want);
        free(sql);
    }
    sql_destroy(s);
}
END_TEST

START_TEST(test_refuses_a_newer_schema)
{
    struct sqlstore *s = store();
    kg_diag d;
    kg_error e;

    sql_destroy(s);
    raw("INSERT INTO keygate_schema VALUES (99, '099_future', 0)");
    s = store_try(NULL, NULL, &e, &d);
    ck_assert_ptr_null(s);
    ck_assert_int_eq(e, KG_ERR_INVALID);
    ck_assert_msg(strstr(d.message, "newer than this keygate") != NULL, "%s", d.message);
    ck_assert_int_eq(raw("SELECT count(*) FROM keygate_usage_minute"), 0);
}
END_TEST

/* ---- through the policy's usage: section ------------------------------------------- */

static char *usage_policy(const char *options)
{
    return tu_fmt("version: 1\n"
                  "credential: [{module: bearer}]\n"
                  "keystore: [{module: sql, options: {driver: sqlite, path: '%s/keys.db'}}]\n"
                  "plans: {free: {}}\n"
                  "usage:\n"
                  "  module: sql\n"
                  "  options: %s\n", dir, options);
}

/* The policy fails at line 7 (options:), column >= 12, saying `want`. */
static void policy_fails(const char *options, const char *want)
{
    char *yaml = usage_policy(options), buf[2048];
    kg_diag d;
    tu_policy_error(ctx, yaml, &d);
    kg_diag_format(&d, buf, sizeof(buf));
    ck_assert_msg(strstr(buf, want) != NULL, "'%s' not in: %s", want, buf);
    ck_assert_msg(d.line == 7, "line %d: %s", d.line, buf);
    free(yaml);
}

START_TEST(test_policy_section)
{
    char *opts = tu_fmt("{url: 'sqlite://%s/usage.db', retention: {minute: 2h, "
                        "hour: 30d, day: 2y, events: 1w}}", dir);
    char *yaml = usage_policy(opts), *file;
    kg_policy *p = tu_policy(ctx, yaml);
    kg_usage_query q = { NULL, NULL, 0, 0, 60 };
    struct text t = { "" };
    kg_diag d;

    ck_assert_int_eq(kg_usage_query_rows(p, &q, row_text, &t, &d), KG_OK);
    ck_assert_str_eq(t.buf, "");
    kg_policy_free(p);
    free(yaml);
    free(opts);
    /* a store that cannot be written: an error at the section */
    file = tu_path(dir, "file");
    tu_write(file, "x");
    opts = tu_fmt("{driver: sqlite, path: '%s/usage.db'}", file);
    policy_fails(opts, "cannot open");
    free(opts);
    opts = tu_fmt("{url: 'sqlite://%s/usage.db'}", file);
    policy_fails(opts, "cannot open");
    free(opts);
    if (getuid() != 0) {
        /* (root writes a read-only file all the same) */
        char *db = tu_path(dir, "ro.db");
        opts = tu_fmt("{driver: sqlite, path: '%s'}", db);
        yaml = usage_policy(opts);
        kg_policy_free(tu_policy(ctx, yaml));
        free(yaml);
        ck_assert_int_eq(chmod(db, 0444), 0);
        policy_fails(opts, "readonly");
        free(opts);
        free(db);
    }
    free(file);
    /* options */
    policy_fails("{url: 'sqlite:usage.db'}", "sqlite:///ABSOLUTE/PATH");
    policy_fails("{url: 'mysql://x'}", "url must start with");
    policy_fails("{url: 'sqlite:///tmp/x.db', driver: sqlite}", "not both");
    policy_fails("{url: 'sqlite:///tmp/x.db', path: x.db}", "not both");
    policy_fails("{driver: sqlite, path: x.db, retention: 5}", "mapping");
    policy_fails("{driver: sqlite, path: x.db, retention: {day: 2x}}", "duration");
    policy_fails("{driver: sqlite, path: x.db, retention: {week: 2w}}", "week");
    /* a key store's options are not a usage store's */
    policy_fails("{driver: sqlite, path: x.db, last_used_interval: 1m}", "last_used_interval");
}
END_TEST

/* kg_policy_may_wait(): a PostgreSQL usage store's flush waits on the
 * network (nginx's module flushes it on a thread), SQLite's does not. */
START_TEST(test_policy_usage_may_wait)
{
    char *opts = pg ? tu_fmt("{driver: postgresql, conninfo: '%s', "
                             "password: '${KG_TEST_PG_PASSWORD}'}",
                             env("KG_TEST_PG_USAGE_CONNINFO"))
                    : tu_fmt("{driver: sqlite, path: '%s/usage.db'}", dir);
    char *yaml = usage_policy(opts);
    kg_policy *p = tu_policy(ctx, yaml);

    ck_assert_int_eq(kg_policy_may_wait(p), (pg ? KG_WAITS_USAGE : 0));
    kg_policy_free(p);
    free(yaml);
    free(opts);
}
END_TEST

/*
 * End to end: checks counted by the core, flushed into the store at the
 * context's clock, read back through the public API.
 */
START_TEST(test_policy_flush_and_read)
{
    char *opts = tu_fmt("{driver: sqlite, path: '%s/usage.db'}", dir);
    char *yaml = usage_policy(opts);
    kg_policy *p = tu_policy(ctx, yaml);
    char key[KG_KEY_MAX], id[64];
    kg_usage_query q = { NULL, NULL, T0, 0, 3600 };
    kg_event_query eq;
    struct text t = { "" };
    kg_record *r;
    kg_diag d;
    int i;

    tu_key_new(p, "free", "k", key, &r);
    snprintf(id, sizeof(id), "%s", kg_record_id(r));
    kg_record_unref(r);
    for (i = 0; i < 3; i++)
        kg_decision_free(tu_check_bearer(p, key, "GET", "/v1/x", "127.0.0.1"));
    kg_decision_free(tu_check_bearer(p, "whizo_nope", "GET", "/v1/y", "127.0.0.1"));
    memset(&d, 0, sizeof(d));
    ck_assert_msg(kg_usage_flush(p, &d) == KG_OK, "%s", d.message);
    q.key_id = id;
    ck_assert_int_eq(kg_usage_query_rows(p, &q, row_text, &t, &d), KG_OK);
    ck_assert_msg(strstr(t.buf, " allowed 3;") != NULL, "%s", t.buf);
    memset(&eq, 0, sizeof(eq));
    eq.any_code = 1;
    eq.status_min = 400;
    t.buf[0] = '\0';
    ck_assert_int_eq(kg_usage_events(p, &eq, event_text, &t, &d), KG_OK);
    ck_assert_msg(strstr(t.buf, "/v1/y") != NULL, "%s", t.buf);
    kg_policy_free(p);
    free(yaml);
    free(opts);
}
END_TEST

#ifdef HAVE_PQ
/* ---- PostgreSQL only ------------------------------------------------------------- */

static void pg_ctl(const char *var)
{
    ck_assert_msg(system(env(var)) == 0, "%s failed", var);
}

/* Stopped: UNAVAILABLE, nothing written; started: the next write works
 * and the totals are the successful writes'. */
START_TEST(test_pg_outage)
{
    struct sqlstore *s = store();
    kg_diag d;

    put_ok(s, batch, NBATCH, NULL, 0, T0 + 3600);
    pg_ctl("KG_TEST_PG_STOP");
    memset(&d, 0, sizeof(d));
    ck_assert_int_eq(sql_usage_ops.write(s, batch, NBATCH, evs, 2, T0 + 3600, &d),
                     KG_ERR_UNAVAILABLE);
    ck_assert_msg(strstr(d.message, "unavailable") != NULL, "%s", d.message);
    {
        struct text t;
        kg_usage_query q = { NULL, NULL, 0, 0, 60 };
        ck_assert_int_eq(sql_usage_ops.query(s, &q, row_text, &t, &d), KG_ERR_UNAVAILABLE);
    }
    pg_ctl("KG_TEST_PG_START");
    put_ok(s, batch, 1, evs, 1, T0 + 3600);
    ck_assert_int_eq(raw("SELECT SUM(count) FROM keygate_usage_day"), 17 + 3);
    ck_assert_int_eq(raw("SELECT count(*) FROM keygate_usage_events"), 1);
    sql_destroy(s);
}
END_TEST

/* Down when the policy loads: it loads; the first use after the server
 * is back migrates and works. */
START_TEST(test_pg_down_at_load)
{
    char *opts = tu_fmt("{driver: postgresql, conninfo: '%s', password: '%s', "
                        "sslmode: disable, connect_timeout: 2s, reconnect_delay: 0}",
                        env("KG_TEST_PG_USAGE_CONNINFO"), env("KG_TEST_PG_PASSWORD"));
    char *yaml = usage_policy(opts);
    kg_usage_query q = { NULL, NULL, 0, 0, 60 };
    struct text t = { "" };
    kg_policy *p;
    kg_diag d;

    pg_ctl("KG_TEST_PG_STOP");
    p = tu_policy(ctx, yaml);
    memset(&d, 0, sizeof(d));
    ck_assert_int_eq(kg_usage_query_rows(p, &q, row_text, &t, &d), KG_ERR_UNAVAILABLE);
    ck_assert_msg(strstr(d.message, "the usage store is unavailable: cannot connect") != NULL,
                  "%s", d.message);
    /* no diag: the same answer */
    ck_assert_int_eq(kg_usage_query_rows(p, &q, row_text, &t, NULL), KG_ERR_UNAVAILABLE);
    pg_ctl("KG_TEST_PG_START");
    ck_assert_int_eq(kg_usage_query_rows(p, &q, row_text, &t, &d), KG_OK);
    ck_assert_int_eq(raw("SELECT MAX(version) FROM keygate_schema"), tu_schema_latest());
    kg_policy_free(p);
    free(yaml);
    free(opts);
}
END_TEST

/* A read-only PostgreSQL (a standby, default_transaction_read_only, a
 * role without the privileges) fails create(). */
START_TEST(test_pg_read_only)
{
    struct sqlstore *s = store();
    kg_diag d;
    kg_error e;

    sql_destroy(s);
    s = store_try(NULL, " options='-c default_transaction_read_only=on'", &e, &d);
    ck_assert_ptr_null(s);
    ck_assert_int_eq(e, KG_ERR_IO);
    ck_assert_msg(strstr(d.message, "cannot be written") != NULL &&
                  strstr(d.message, "read-only") != NULL, "%s", d.message);
}
END_TEST
#endif

static Suite *suite(void)
{
    Suite *s = suite_create(getenv("KG_TEST_PG_USAGE_CONNINFO") ? "usage_postgresql"
                                                                 : "usage_sqlite");
    TCase *tc = tcase_create("store");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_upsert_adds);
    tcase_add_test(tc, test_rollups);
    tcase_add_test(tc, test_bad_rows_write_nothing);
    tcase_add_test(tc, test_write_all_or_nothing);
    tcase_add_test(tc, test_retention);
    tcase_add_test(tc, test_retention_options);
    tcase_add_test(tc, test_query_filters);
    tcase_add_test(tc, test_top);
    tcase_add_test(tc, test_events);
    tcase_add_test(tc, test_writers_add_up);
    tcase_add_test(tc, test_migrates_a_v3_store);
    tcase_add_test(tc, test_migrates_a_v6_store_with_usage);
    tcase_add_test(tc, test_refuses_a_newer_schema);
    tcase_add_test(tc, test_policy_usage_may_wait);
    if (getenv("KG_TEST_PG_USAGE_CONNINFO") == NULL) {
        tcase_add_test(tc, test_policy_section);
        tcase_add_test(tc, test_policy_flush_and_read);
    }
#ifdef HAVE_PQ
    else {
        tcase_add_test(tc, test_pg_read_only);
        tcase_add_test(tc, test_pg_down_at_load);
        tcase_add_test(tc, test_pg_outage);
    }
#endif
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(suite());
}
