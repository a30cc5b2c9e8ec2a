/*
 * check_sql_postgres.c - the sql keystore against a real PostgreSQL,
 * started by test_postgres.sh, which passes:
 *   KG_TEST_PG_CONNINFO   libpq conninfo of an empty database
 *   KG_TEST_PG_PASSWORD   its password (the policies read ${KG_TEST_PG_PASSWORD})
 *   KG_TEST_PG_STOP / KG_TEST_PG_START   shell commands that stop / start
 *                         the server (the fault test)
 * Time is injected (cache TTLs); only the pool and outage tests wait on
 * the real server.  The tests share the database and run in order.
 */
#include "config.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include "../unit/sqltest.h"

static kg_context *ctx;
static char opts[2048];

static const char *env(const char *name)
{
    const char *v = getenv(name);
    ck_assert_msg(v != NULL && *v, "%s is not set: run test_postgres.sh", name);
    return v;
}

static PGconn *raw_connect(void)
{
    char ci[1024];
    PGconn *c;
    snprintf(ci, sizeof(ci), "%s password=%s application_name=kgtest",
             env("KG_TEST_PG_CONNINFO"), env("KG_TEST_PG_PASSWORD"));
    c = PQconnectdb(ci);
    ck_assert_msg(PQstatus(c) == CONNECTION_OK, "raw connect: %s", PQerrorMessage(c));
    return c;
}

static long long raw_int(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    long long v = -1;
    ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK ||
                  PQresultStatus(r) == PGRES_COMMAND_OK, "%s: %s", sql,
                  PQresultErrorMessage(r));
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0)
        v = PQgetisnull(r, 0, 0) ? 0 : atoll(PQgetvalue(r, 0, 0));
    PQclear(r);
    return v;
}

static void setup(void)
{
    snprintf(opts, sizeof(opts),
             "driver: postgresql, conninfo: '%s', password: '${KG_TEST_PG_PASSWORD}', "
             "sslmode: disable, auto_migrate: true, reconnect_delay: 0, "
             "connect_timeout: 2s",
             env("KG_TEST_PG_CONNINFO"));
    ck_assert_int_eq(kg_context_new(&ctx), KG_OK);
    kg_context_set_clock(ctx, tu_clock_fn, &test_clk);
}

static void teardown(void)
{
    kg_context_free(ctx);
}

static kg_policy *with(const char *extra, const char *cache)
{
    char o[3000];
    snprintf(o, sizeof(o), "%s%s%s", opts, extra ? ", " : "", extra ? extra : "");
    return test_policy_ok(ctx, o, cache);
}

/* ---- lookups ----------------------------------------------------------- */

START_TEST(test_lookup)
{
    kg_policy *p = with(NULL, NULL);
    char key[KG_KEY_MAX], other[KG_KEY_MAX], id[64];
    kg_record *r = kg_record_new(), *got = NULL;
    kg_diag d;
    int status;

    /* its lookups wait on the network: an event loop runs them on a
     * thread (nginx's module) */
    ck_assert_int_eq(kg_policy_may_wait(p), KG_WAITS_KEYSTORE);
    kg_record_set_plan(r, "pro");
    kg_record_set_name(r, "pg key");
    kg_record_add_permission(r, "scrape:read");
    kg_record_add_cidr(r, "127.0.0.0/8");
    kg_record_add_limit(r, "day", 1000, 86400, 0);
    ck_assert_int_eq(kg_keys_create(p, r, key, sizeof(key), &d), KG_OK);
    snprintf(id, sizeof(id), "%s", kg_record_id(r));
    ck_assert_int_eq(test_check_code(p, key, &status), KG_CODE_NONE);
    ck_assert_int_eq(status, 200);
    test_unknown_key(other);
    ck_assert_int_eq(test_check_code(p, other, &status), KG_CODE_UNAUTHORIZED);
    ck_assert_int_eq(kg_keys_get(p, id, &got, &d), KG_OK);
    ck_assert_str_eq(kg_record_name(got), "pg key");
    ck_assert_str_eq(kg_record_cidr(got, 0), "127.0.0.0/8");
    /* created without an account: one of its own, the override moved */
    ck_assert_int_eq(kg_record_limit_count(got), 0);
    ck_assert_ptr_nonnull(kg_record_account(got));
    ck_assert_int_eq(kg_account_limit_count(kg_record_account(got)), 1);
    ck_assert_int_eq(memcmp(kg_record_hash(got), kg_record_hash(r), KG_HASH_LEN), 0);
    kg_record_unref(got);
    kg_record_unref(r);
    ck_assert_int_ge(test_count_keys(p), 1);
    kg_policy_free(p);
}
END_TEST

START_TEST(test_injection)
{
    kg_policy *p = with(NULL, NULL);
    char key[KG_KEY_MAX], id[64];
    PGconn *c = raw_connect();

    test_make_key(p, "free", "victim", key, id, sizeof(id));
    test_injection_strings(p, id, key);
    ck_assert_int_eq(raw_int(c, "SELECT count(*) FROM pg_tables WHERE tablename = 'keygate_keys'"), 1);
    ck_assert_int_ge(raw_int(c, "SELECT count(*) FROM keygate_keys"), 9);
    PQfinish(c);
    kg_policy_free(p);
}
END_TEST

/* Two instances (two policies: own pools, own caches).  A revoke through
 * one reaches the other when its cache entry expires, not before. */
START_TEST(test_revoke_after_ttl)
{
    kg_policy *a = with(NULL, "{ttl: 5s, negative_ttl: 1s}");
    kg_policy *b = with(NULL, "{ttl: 5s, negative_ttl: 1s}");
    char key[KG_KEY_MAX], id[64];
    kg_record *r = NULL;
    kg_diag d;

    test_make_key(b, "free", "to revoke", key, id, sizeof(id));
    ck_assert_int_eq(test_check_code(a, key, NULL), KG_CODE_NONE);
    ck_assert_int_eq(kg_keys_get(b, id, &r, &d), KG_OK);
    kg_record_set_status(r, KG_STATUS_REVOKED);
    ck_assert_int_eq(kg_keys_update(b, r, &d), KG_OK);
    kg_record_unref(r);
    ck_assert_int_eq(test_check_code(b, key, NULL), KG_CODE_KEY_REVOKED);
    tu_clock_advance(&test_clk, 4);
    ck_assert_int_eq(test_check_code(a, key, NULL), KG_CODE_NONE);
    tu_clock_advance(&test_clk, 2);
    ck_assert_int_eq(test_check_code(a, key, NULL), KG_CODE_KEY_REVOKED);
    kg_policy_free(a);
    kg_policy_free(b);
}
END_TEST

START_TEST(test_refuse_newer_schema)
{
    kg_policy *p = NULL;
    kg_diag d;
    PGconn *c = raw_connect();
    kg_policy *q = with(NULL, NULL);  /* migrated */

    raw_int(c, "INSERT INTO keygate_schema VALUES (99, '099_future', 0)");
    ck_assert_int_ne(test_policy(ctx, opts, NULL, &p, &d), KG_OK);
    ck_assert_ptr_nonnull(strstr(d.message, "newer than this keygate knows"));
    {
        int from, to;
        ck_assert_int_eq(kg_policy_migrate(q, 1, &from, &to, &d), KG_ERR_INVALID);
        ck_assert_int_eq(from, 99);
    }
    raw_int(c, "DELETE FROM keygate_schema WHERE version = 99");
    PQfinish(c);
    kg_policy_free(q);
}
END_TEST

/* ---- the pool ---------------------------------------------------------- */

struct worker {
    kg_policy *p;
    const char *key;
    int n;
    int ok, unavailable, other;
    int64_t max_ms;
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void *work(void *arg)
{
    struct worker *w = arg;
    int i;
    for (i = 0; i < w->n; i++) {
        int64_t t0 = mono_ms();
        kg_code c = test_check_code(w->p, w->key, NULL);
        int64_t dt = mono_ms() - t0;
        if (dt > w->max_ms)
            w->max_ms = dt;
        if (c == KG_CODE_NONE) w->ok++;
        else if (c == KG_CODE_AUTH_UNAVAILABLE) w->unavailable++;
        else w->other++;
    }
    return NULL;
}

static void run_workers(kg_policy *p, const char *key, int nthreads, int n,
                        struct worker *w)
{
    pthread_t th[16];
    int i;
    for (i = 0; i < nthreads; i++) {
        memset(&w[i], 0, sizeof(w[i]));
        w[i].p = p;
        w[i].key = key;
        w[i].n = n;
        ck_assert_int_eq(pthread_create(&th[i], NULL, work, &w[i]), 0);
    }
    for (i = 0; i < nthreads; i++)
        pthread_join(th[i], NULL);
}

START_TEST(test_pool)
{
    kg_policy *p = with("pool_size: 2, pool_wait: 1s, statement_timeout: 800ms", NULL);
    char key[KG_KEY_MAX];
    struct worker w[8];
    PGconn *blocker = raw_connect(), *watch = raw_connect();
    int i;

    test_make_key(p, "free", "pooled", key, NULL, 0);
    /* More threads than connections: they queue, all are served. */
    run_workers(p, key, 8, 40, w);
    for (i = 0; i < 8; i++) {
        ck_assert_int_eq(w[i].ok, 40);
    }
    ck_assert_int_le(raw_int(watch, "SELECT count(*) FROM pg_stat_activity "
                             "WHERE application_name = 'keygate'"), 2);

    /* Exhaustion: the table is locked, the two connections hang in their
     * statements until statement_timeout, and the other callers give up
     * after pool_wait.  Everyone gets 503 within bounded time. */
    raw_int(blocker, "BEGIN");
    raw_int(blocker, "LOCK TABLE keygate_keys IN ACCESS EXCLUSIVE MODE");
    run_workers(p, key, 6, 1, w);
    for (i = 0; i < 6; i++) {
        ck_assert_int_eq(w[i].unavailable, 1);
        ck_assert_msg(w[i].max_ms < 4000, "a check took %lld ms", (long long)w[i].max_ms);
    }
    ck_assert_int_le(raw_int(watch, "SELECT count(*) FROM pg_stat_activity "
                             "WHERE application_name = 'keygate'"), 2);
    raw_int(blocker, "ROLLBACK");
    /* And it heals at once, without a restart. */
    run_workers(p, key, 4, 10, w);
    for (i = 0; i < 4; i++)
        ck_assert_int_eq(w[i].ok, 10);
    PQfinish(blocker);
    PQfinish(watch);
    kg_policy_free(p);
}
END_TEST

/* ---- the fault test ---------------------------------------------------- */

static void server(const char *what)
{
    const char *cmd = env(what);
    ck_assert_msg(system(cmd) == 0, "%s failed: %s", what, cmd);
}

START_TEST(test_outage)
{
    kg_policy *p = with("last_used_interval: 60s", "{ttl: 2s, negative_ttl: 1s}");
    char k1[KG_KEY_MAX], k2[KG_KEY_MAX], id1[64], unknown[KG_KEY_MAX], late[KG_KEY_MAX];
    char refused[KG_KEY_MAX];
    kg_record *r;
    kg_diag d;
    int status, i;
    PGconn *c;

    test_make_key(p, "free", "known 1", k1, id1, sizeof(id1));
    test_make_key(p, "pro", "known 2", k2, NULL, 0);
    ck_assert_int_eq(test_check_code(p, k1, NULL), KG_CODE_NONE);
    ck_assert_int_eq(test_check_code(p, k2, NULL), KG_CODE_NONE);
    ck_assert_int_eq(kg_policy_reload_stores(p, &d), KG_OK);  /* flush last_used */
    ck_assert_int_eq(test_check_code(p, k1, NULL), KG_CODE_NONE);  /* re-cache */
    ck_assert_int_eq(test_check_code(p, k2, NULL), KG_CODE_NONE);
    /* A key refused as unknown just before the outage: its "no" is
     * cached for negative_ttl only (issue 16 item 4). */
    test_unknown_key(refused);
    ck_assert_int_eq(test_check_code(p, refused, &status), KG_CODE_UNAUTHORIZED);

    server("KG_TEST_PG_STOP");
    ck_assert_int_eq(test_check_code(p, refused, &status), KG_CODE_UNAUTHORIZED);
    tu_clock_advance(&test_clk, 120);  /* every cache entry is stale now */
    for (i = 0; i < 3; i++) {
        /* a stale record is served, a stale "no such key" never is */
        ck_assert_int_eq(test_check_code(p, refused, &status), KG_CODE_AUTH_UNAVAILABLE);
        ck_assert_int_eq(status, 503);
        ck_assert_int_eq(test_check_code(p, k1, &status), KG_CODE_NONE);
        ck_assert_int_eq(status, 200);
        ck_assert_int_eq(test_check_code(p, k2, &status), KG_CODE_NONE);
        test_unknown_key(unknown);
        ck_assert_int_eq(test_check_code(p, unknown, &status), KG_CODE_AUTH_UNAVAILABLE);
        ck_assert_int_eq(status, 503);
    }
    /* Writing fails clearly, and last_used stays pending. */
    r = kg_record_new();
    kg_record_set_plan(r, "free");
    ck_assert_int_eq(kg_keys_create(p, r, late, sizeof(late), &d), KG_ERR_UNAVAILABLE);
    ck_assert_ptr_nonnull(strstr(d.message, "unavailable"));
    kg_record_unref(r);
    kg_policy_reload_stores(p, &d);

    server("KG_TEST_PG_START");
    /* Recovery without a restart: the same policy, new connections. */
    ck_assert_int_eq(test_check_code(p, unknown, &status), KG_CODE_UNAUTHORIZED);
    ck_assert_int_eq(status, 401);
    ck_assert_int_eq(test_check_code(p, k1, NULL), KG_CODE_NONE);
    test_make_key(p, "free", "after", late, NULL, 0);
    ck_assert_int_eq(test_check_code(p, late, NULL), KG_CODE_NONE);
    /* The use during the outage was written once the server was back. */
    ck_assert_int_eq(kg_policy_reload_stores(p, &d), KG_OK);
    c = raw_connect();
    {
        char sql[200];
        snprintf(sql, sizeof(sql), "SELECT last_used_at FROM keygate_keys WHERE id = '%s'", id1);
        ck_assert_int_eq(raw_int(c, sql), tu_clock_fn(&test_clk) / 1000000);
    }
    PQfinish(c);
    kg_policy_free(p);
}
END_TEST

START_TEST(test_password_file)
{
    char path[] = "/tmp/kg-pgpw-XXXXXX", o[3000];
    int fd = mkstemp(path);
    kg_policy *p;
    ck_assert_int_ge(fd, 0);
    ck_assert_int_gt(write(fd, env("KG_TEST_PG_PASSWORD"), strlen(env("KG_TEST_PG_PASSWORD"))), 0);
    ck_assert_int_eq(write(fd, "\n", 1), 1);
    close(fd);
    snprintf(o, sizeof(o), "driver: postgresql, conninfo: '%s', password_file: '%s'",
             env("KG_TEST_PG_CONNINFO"), path);
    p = test_policy_ok(ctx, o, NULL);
    ck_assert_int_ge(test_count_keys(p), 1);
    kg_policy_free(p);
    unlink(path);
}
END_TEST


/* ---- accounts (docs/sql.md "Accounts") ------------------------------------ */

START_TEST(test_accounts_model)
{
    kg_policy *p = test_acct_policy(ctx, opts, NULL);
    test_accounts_crud(p, "pg");
    kg_policy_free(p);
}
END_TEST

/* docs/admin-api.md "Lists": a page in one keyset query. */
START_TEST(test_pages_in_one_query)
{
    kg_policy *p = test_acct_policy(ctx, opts, NULL);
    test_accounts_pages(p, 1);
    kg_policy_free(p);
}
END_TEST

START_TEST(test_accounts_quota_and_suspension)
{
    kg_policy *p = test_acct_policy(ctx, opts, NULL);
    test_accounts_shared_quota(p);
    kg_policy_free(p);
}
END_TEST

/*
 * Several keygated-like instances (own contexts, own pools, own caches)
 * against one PostgreSQL see one account: the keys one creates check
 * with the account on the others, a suspension through one reaches
 * each within its cache's ttl, a plan changed through another too.
 */
START_TEST(test_accounts_shared_by_instances)
{
    enum { N = 3 };
    kg_context *c[N];
    kg_policy *p[N];
    kg_account *a;
    kg_record *r[N];
    char k[N][KG_KEY_MAX], aid[160];
    kg_diag d;
    int i, j;

    for (i = 0; i < N; i++) {
        ck_assert_int_eq(kg_context_new(&c[i]), KG_OK);
        kg_context_set_clock(c[i], tu_clock_fn, &test_clk);
        p[i] = test_acct_policy(c[i], opts, "{ttl: 5s, negative_ttl: 1s}");
    }
    a = test_account_new(p[0], "Shared", "free", NULL);
    for (i = 0; i < N; i++)
        r[i] = test_key_for(p[i], a, k[i]);   /* each instance makes one */
    for (i = 0; i < N; i++)
        for (j = 0; j < N; j++) {
            ck_assert_int_eq(test_check_account(p[i], k[j], aid, sizeof(aid)), KG_CODE_NONE);
            ck_assert_str_eq(aid, kg_account_id(a));
        }
    for (i = 0; i < N; i++) {
        kg_account *seen = NULL;
        ck_assert_int_eq(kg_accounts_get(p[i], kg_account_id(a), &seen, &d), KG_OK);
        ck_assert_str_eq(kg_account_name(seen), "Shared");
        kg_account_unref(seen);
    }
    kg_account_set_status(a, KG_ACCOUNT_SUSPENDED);
    memset(&d, 0, sizeof(d));
    ck_assert_msg(kg_accounts_update(p[1], a, &d) == KG_OK, "%s", d.message);
    tu_clock_advance(&test_clk, 6);
    for (i = 0; i < N; i++)
        for (j = 0; j < N; j++)
            ck_assert_int_eq(test_check_account(p[i], k[j], NULL, 0),
                             KG_CODE_ACCOUNT_SUSPENDED);
    kg_account_set_status(a, KG_ACCOUNT_ACTIVE);
    kg_account_set_plan(a, "pro");
    ck_assert_msg(kg_accounts_update(p[2], a, &d) == KG_OK, "%s", d.message);
    tu_clock_advance(&test_clk, 6);
    for (i = 0; i < N; i++) {
        kg_record *got = NULL;
        ck_assert_int_eq(test_check_account(p[i], k[(i + 1) % N], NULL, 0), KG_CODE_NONE);
        ck_assert_int_eq(kg_keys_get(p[i], kg_record_id(r[i]), &got, &d), KG_OK);
        ck_assert_str_eq(kg_record_plan(got), "pro");
        kg_record_unref(got);
    }
    for (i = 0; i < N; i++) {
        kg_record_unref(r[i]);
        kg_policy_free(p[i]);
        kg_context_free(c[i]);
    }
    kg_account_unref(a);
}
END_TEST


struct deleter {
    kg_policy *p;
    const char *id;
    kg_error e;
    kg_diag d;
};

static void *delete_account(void *arg)
{
    struct deleter *x = arg;
    x->e = kg_accounts_delete(x->p, x->id, 0, &x->d);
    return NULL;
}

/*
 * A delete racing a key being written for the account (another instance
 * or CLI, mid-transaction, holding what put holds: the account row's
 * lock and its new key) waits for it and then refuses (KG_ERR_EXISTS):
 * it never leaves a live key without its account.
 */
START_TEST(test_account_delete_waits_for_a_key)
{
    kg_policy *p = test_acct_policy(ctx, opts, NULL);
    kg_account *a = test_account_new(p, "Racing", "free", NULL), *got = NULL;
    PGconn *c = raw_connect();
    struct deleter x;
    pthread_t th;
    char sql[512], key[KG_KEY_MAX], hex[2 * KG_HASH_LEN + 1];
    unsigned char h[KG_HASH_LEN];

    ck_assert_int_eq(kg_key_generate("whizo", key, KG_KEY_MAX), KG_OK);
    kg_key_hash(key, strlen(key), h);
    kg_hash_to_hex(h, hex);
    raw_int(c, "BEGIN");
    snprintf(sql, sizeof(sql), "UPDATE keygate_accounts SET updated_at = updated_at "
             "WHERE id = '%s'", kg_account_id(a));
    raw_int(c, sql);
    snprintf(sql, sizeof(sql), "INSERT INTO keygate_keys (id, key_hash, plan, "
             "created_at, account_id) VALUES ('k_racing', '%s', 'free', 1800000000, "
             "'%s')", hex, kg_account_id(a));
    raw_int(c, sql);
    memset(&x, 0, sizeof(x));
    x.p = p;
    x.id = kg_account_id(a);
    ck_assert_int_eq(pthread_create(&th, NULL, delete_account, &x), 0);
    usleep(150 * 1000);   /* within the 500 ms statement_timeout */
    raw_int(c, "COMMIT");
    pthread_join(th, NULL);
    ck_assert_msg(x.e == KG_ERR_EXISTS, "delete: %s: %s", kg_strerror(x.e), x.d.message);
    ck_assert_int_eq(kg_accounts_get(p, kg_account_id(a), &got, &x.d), KG_OK);
    kg_account_unref(got);
    ck_assert_int_eq(test_check_account(p, key, NULL, 0), KG_CODE_NONE);
    PQfinish(c);
    kg_account_unref(a);
    kg_policy_free(p);
}
END_TEST

static void pg_raw(void *ud, const char *sql)
{
    PGresult *r = PQexec(ud, sql);
    ck_assert_msg(PQresultStatus(r) == PGRES_COMMAND_OK ||
                  PQresultStatus(r) == PGRES_TUPLES_OK, "%s: %s", sql,
                  PQresultErrorMessage(r));
    PQclear(r);
}

/*
 * A store written by main before accounts (schema 2, the fixture of
 * sqltest.h, in the database keygate_old) migrated: each key in an
 * account of its own, every key works with its limits.  A migration
 * that fails half-way (a trap for its last statement) changes nothing.
 */
START_TEST(test_migrate_v2_accounts)
{
    char ci[1024], o[3000], keys[TEST_NOLD][KG_KEY_MAX];
    PGconn *c;
    kg_policy *p;
    kg_diag d;
    int from = -1, to = -1;

    snprintf(ci, sizeof(ci), "%s dbname=keygate_old password=%s", env("KG_TEST_PG_CONNINFO"),
             env("KG_TEST_PG_PASSWORD"));
    c = PQconnectdb(ci);
    ck_assert_msg(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    pg_raw(c, "BEGIN");
    test_old_store(pg_raw, c, 0, keys);
    pg_raw(c, "COMMIT");
    pg_raw(c, "CREATE INDEX keygate_keys_account ON keygate_keys (plan)");

    snprintf(o, sizeof(o), "driver: postgresql, conninfo: '%s dbname=keygate_old', "
             "password: '${KG_TEST_PG_PASSWORD}', sslmode: disable, auto_migrate: false, "
             "reconnect_delay: 0, connect_timeout: 2s", env("KG_TEST_PG_CONNINFO"));
    p = test_acct_policy(ctx, o, NULL);
    ck_assert_int_eq(test_check_code(p, keys[0], NULL), KG_CODE_AUTH_UNAVAILABLE);
    memset(&d, 0, sizeof(d));
    ck_assert_int_ne(kg_policy_migrate(p, 1, &from, &to, &d), KG_OK);
    ck_assert_ptr_nonnull(strstr(d.message, "003_accounts"));
    ck_assert_int_eq(raw_int(c, "SELECT max(version) FROM keygate_schema"), 2);
    ck_assert_int_eq(raw_int(c, "SELECT count(*) FROM information_schema.columns WHERE "
                             "table_name = 'keygate_keys' AND column_name = 'account_id'"), 0);
    ck_assert_int_eq(raw_int(c, "SELECT count(*) FROM pg_tables WHERE tablename = "
                             "'keygate_accounts'"), 0);
    ck_assert_int_eq(raw_int(c, "SELECT count(*) FROM keygate_keys WHERE limits <> ''"), 2);
    pg_raw(c, "DROP INDEX keygate_keys_account");

    ck_assert_int_eq(kg_policy_migrate(p, 1, &from, &to, &d), KG_OK);
    ck_assert_int_eq(from, 2);
    ck_assert_int_eq(to, tu_schema_latest());
    test_old_store_migrated(p, keys);
    PQfinish(c);
    kg_policy_free(p);
}
END_TEST

static Suite *sql_postgres_suite(void)
{
    Suite *s = suite_create("sql_postgres");
    TCase *tc = tcase_create("postgresql");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_lookup);
    tcase_add_test(tc, test_injection);
    tcase_add_test(tc, test_revoke_after_ttl);
    tcase_add_test(tc, test_refuse_newer_schema);
    tcase_add_test(tc, test_password_file);
    tcase_add_test(tc, test_accounts_model);
    tcase_add_test(tc, test_pages_in_one_query);
    tcase_add_test(tc, test_accounts_quota_and_suspension);
    tcase_add_test(tc, test_accounts_shared_by_instances);
    tcase_add_test(tc, test_account_delete_waits_for_a_key);
    tcase_add_test(tc, test_migrate_v2_accounts);
    tcase_add_test(tc, test_pool);
    tcase_add_test(tc, test_outage);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(sql_postgres_suite());
}
