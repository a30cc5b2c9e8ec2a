/*
 * check_sql_sqlite.c - the sql keystore with its SQLite driver: records
 * through the public API, migrations, injection strings, write-behind
 * last_used, and `keygate key create` processes writing while threads
 * read.  Each test works in a fresh database in a temporary folder.
 */
#include "config.h"

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sqltest.h"

static char *dir;
static char dbpath[512];
static char opts[1024];
static kg_context *ctx;

static void setup(void)
{
    dir = tu_tmpdir();
    snprintf(dbpath, sizeof(dbpath), "%s/keys.db", dir);
    snprintf(opts, sizeof(opts), "driver: sqlite, path: '%s', reconnect_delay: 0",
             dbpath);
    ck_assert_int_eq(kg_context_new(&ctx), KG_OK);
    kg_context_set_clock(ctx, tu_clock_fn, &test_clk);
}

static void teardown(void)
{
    tu_teardown(dir, NULL, ctx, NULL);
}

/* Run one SQL statement on the file directly, waiting up to busy_ms for
 * locks; an integer answer or -1. */
static long long raw_sql_wait(const char *sql, int busy_ms)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    long long v = -1;
    ck_assert_int_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, busy_ms);
    ck_assert_msg(sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK,
                  "%s: %s", sql, sqlite3_errmsg(db));
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_type(st, 0) == SQLITE_NULL ? 0 : sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static long long raw_sql(const char *sql)
{
    return raw_sql_wait(sql, 5000);
}

/* ---- records ----------------------------------------------------------- */

START_TEST(test_roundtrip)
{
    kg_policy *p = test_policy_ok(ctx, opts, "{ttl: 5s, negative_ttl: 1s}");
    kg_record *r = kg_record_new(), *got = NULL;
    char key[KG_KEY_MAX];
    kg_diag d;
    const char *name;
    int64_t c, w, b;

    kg_record_set_plan(r, "pro");
    kg_record_set_name(r, "scraper prod");
    kg_record_add_permission(r, "scrape:read");
    kg_record_add_permission(r, "jobs:write");
    kg_record_add_cidr(r, "127.0.0.0/8");
    kg_record_add_cidr(r, "2001:db8::/32");
    kg_record_add_limit(r, "hour", 100000, 3600, 500);
    kg_record_set_expires(r, tu_clock_fn(&test_clk) / 1000000 + 86400);
    ck_assert_int_eq(kg_keys_create(p, r, key, sizeof(key), &d), KG_OK);
    ck_assert_int_eq(kg_keys_get(p, kg_record_id(r), &got, &d), KG_OK);
    ck_assert_str_eq(kg_record_name(got), "scraper prod");
    ck_assert_str_eq(kg_record_plan(got), "pro");
    ck_assert_int_eq(memcmp(kg_record_hash(got), kg_record_hash(r), KG_HASH_LEN), 0);
    ck_assert_int_eq(kg_record_permission_count(got), 2);
    ck_assert_str_eq(kg_record_permission(got, 1), "jobs:write");
    ck_assert_int_eq(kg_record_cidr_count(got), 2);
    ck_assert_str_eq(kg_record_cidr(got, 1), "2001:db8::/32");
    /* Created without an account: one of its own, the override moved
     * to it (docs/sql.md "Accounts"). */
    ck_assert_int_eq(kg_record_limit_count(got), 0);
    ck_assert_ptr_nonnull(kg_record_account(got));
    {
        char want[128];
        ck_assert_int_eq(strncmp(kg_record_id(r), "k_", 2), 0);
        snprintf(want, sizeof(want), "acct_%s", kg_record_id(r) + 2);
        ck_assert_str_eq(kg_record_account_id(got), want);
    }
    ck_assert_str_eq(kg_account_name(kg_record_account(got)), "scraper prod");
    ck_assert_str_eq(kg_account_plan(kg_record_account(got)), "pro");
    ck_assert_int_eq(kg_account_limit_count(kg_record_account(got)), 1);
    kg_account_limit(kg_record_account(got), 0, &name, &c, &w, &b);
    ck_assert_str_eq(name, "hour");
    ck_assert_int_eq(c, 100000);
    ck_assert_int_eq(w, 3600);
    ck_assert_int_eq(b, 500);
    ck_assert_int_eq(kg_record_expires(got), tu_clock_fn(&test_clk) / 1000000 + 86400);
    ck_assert_int_eq(kg_record_created(got), tu_clock_fn(&test_clk) / 1000000);
    ck_assert_int_eq(strncmp(kg_record_prefix(got), key, 8), 0);
    kg_record_unref(got);
    kg_record_unref(r);
    kg_policy_free(p);
}
END_TEST

START_TEST(test_check_and_revoke)
{
    kg_policy *p = test_policy_ok(ctx, opts, "{ttl: 5s, negative_ttl: 1s}");
    char key[KG_KEY_MAX], other[KG_KEY_MAX], id[64];
    kg_record *r = NULL;
    kg_diag d;
    int status;

    test_make_key(p, "free", "a", key, id, sizeof(id));
    ck_assert_int_eq(test_check_code(p, key, &status), KG_CODE_NONE);
    ck_assert_int_eq(status, 200);
    test_unknown_key(other);
    ck_assert_int_eq(test_check_code(p, other, &status), KG_CODE_UNAUTHORIZED);
    ck_assert_int_eq(status, 401);
    ck_assert_int_eq(test_count_keys(p), 1);
    ck_assert_int_eq(kg_keys_get(p, id, &r, &d), KG_OK);
    kg_record_set_status(r, KG_STATUS_REVOKED);
    ck_assert_int_eq(kg_keys_update(p, r, &d), KG_OK);
    kg_record_unref(r);
    ck_assert_int_eq(test_check_code(p, key, &status), KG_CODE_KEY_REVOKED);
    ck_assert_int_eq(raw_sql("SELECT count(*) FROM keygate_keys WHERE status = 'revoked'"), 1);
    kg_policy_free(p);
}
END_TEST

/* A revoke by another process (the CLI) reaches a running instance
 * within the cache TTL, and not before: the clock is injected. */
START_TEST(test_revoke_by_other_within_ttl)
{
    kg_policy *p = test_policy_ok(ctx, opts, "{ttl: 5s, negative_ttl: 1s}");
    kg_policy *cli = test_policy_ok(ctx, opts, NULL);
    char key[KG_KEY_MAX], id[64];
    kg_record *r = NULL;
    kg_diag d;

    test_make_key(cli, "free", "a", key, id, sizeof(id));
    ck_assert_int_eq(test_check_code(p, key, NULL), KG_CODE_NONE);
    ck_assert_int_eq(kg_keys_get(cli, id, &r, &d), KG_OK);
    kg_record_set_status(r, KG_STATUS_REVOKED);
    ck_assert_int_eq(kg_keys_update(cli, r, &d), KG_OK);
    kg_record_unref(r);
    tu_clock_advance(&test_clk, 4);
    ck_assert_int_eq(test_check_code(p, key, NULL), KG_CODE_NONE);  /* cached */
    tu_clock_advance(&test_clk, 2);
    ck_assert_int_eq(test_check_code(p, key, NULL), KG_CODE_KEY_REVOKED);
    kg_policy_free(cli);
    kg_policy_free(p);
}
END_TEST

START_TEST(test_injection)
{
    kg_policy *p = test_policy_ok(ctx, opts, NULL);
    char key[KG_KEY_MAX], id[64];

    test_make_key(p, "free", "victim", key, id, sizeof(id));
    test_injection_strings(p, id, key);
    /* The table is still there and whole. */
    ck_assert_int_eq(raw_sql("SELECT count(*) FROM keygate_keys WHERE status = 'active'"),
                     1 + 8);
    kg_policy_free(p);
}
END_TEST

START_TEST(test_create_exists)
{
    kg_policy *p = test_policy_ok(ctx, opts, NULL);
    kg_record *r = kg_record_new();
    char key[KG_KEY_MAX];
    kg_diag d;

    kg_record_set_id(r, "k_fixed");
    kg_record_set_plan(r, "free");
    ck_assert_int_eq(kg_keys_create(p, r, key, sizeof(key), &d), KG_OK);
    ck_assert_int_eq(kg_keys_create(p, r, key, sizeof(key), &d), KG_ERR_EXISTS);
    ck_assert_ptr_nonnull(strstr(d.message, "k_fixed"));
    kg_record_unref(r);
    kg_policy_free(p);
}
END_TEST

/* ---- read snapshots ---------------------------------------------------- */

/*
 * Whether a reader holds a read snapshot: a TRUNCATE checkpoint, not
 * allowed to wait, reports busy (1) while any reader uses the WAL.
 */
static long long checkpoint_busy(void)
{
    return raw_sql_wait("PRAGMA wal_checkpoint(TRUNCATE)", 0);
}

static void raw_set_status(const char *id, const char *status)
{
    char sql[256];
    snprintf(sql, sizeof(sql), "UPDATE keygate_keys SET status = '%s' WHERE id = '%s'",
             status, id);
    raw_sql(sql);
}

/* A commit that puts frames in the WAL (SQLite writes no page for an
 * UPDATE that changes nothing). */
static void raw_commit(void)
{
    raw_sql("UPDATE keygate_keys SET name = name || '.'");
}

/*
 * Run `args` (NULL-terminated) in another process and wait for it: the
 * keygate CLI, or this test binary's --raw-sql mode (a plain SQLite
 * connection of its own: SQLite must not be used in a forked child of a
 * process that has connections open, so the child execs).
 */
static void other_process(const char *const *args)
{
    pid_t pid = fork();
    int st;
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0)
            dup2(null, 1);
        execv(args[0], (char *const *)args);
        _exit(127);
    }
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s %s: exit %d",
                  args[0], args[1], WIFEXITED(st) ? WEXITSTATUS(st) : -1);
}

/* A policy file for the keygate CLI, on the test's database. */
static void write_cli_policy(char *path, size_t len)
{
    FILE *f;
    snprintf(path, len, "%s/policy.yaml", dir);
    f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "version: 1\nkey_prefix: whizo\ncredential:\n"
            "  - {module: bearer, control: required}\nkeystore:\n"
            "  - module: sql\n    control: required\n"
            "    options: {driver: sqlite, path: '%s', busy_timeout: 10s}\n"
            "plans:\n  free: {priority: 0}\n", dbpath);
    fclose(f);
}

static char self_exe[600];

/* Uncached lookups share a read snapshot, yet see a commit by another
 * process (`keygate key revoke`, a plain SQLite connection) at the very
 * next lookup, both ways. */
START_TEST(test_snapshot_sees_other_process)
{
    kg_policy *p = test_policy_ok(ctx, opts, NULL);
    const char *builddir = getenv("KEYGATE_BUILDDIR");
    char key[KG_KEY_MAX], id[64], tool[600], policy[600], sql[256];
    int i;

    ck_assert_msg(builddir != NULL, "KEYGATE_BUILDDIR is not set (run through make check)");
    snprintf(tool, sizeof(tool), "%s/tools/keygate", builddir);
    write_cli_policy(policy, sizeof(policy));
    test_make_key(p, "free", "a", key, id, sizeof(id));
    snprintf(sql, sizeof(sql), "UPDATE keygate_keys SET status = 'active' "
             "WHERE id = '%s'", id);
    for (i = 0; i < 2; i++) {
        const char *revoke[] = { tool, "--config", policy, "key", "revoke", id, NULL };
        const char *activate[] = { self_exe, "--raw-sql", dbpath, sql, NULL };

        ck_assert_int_eq(test_check_code(p, key, NULL), KG_CODE_NONE);
        ck_assert_int_eq(test_check_code(p, key, NULL), KG_CODE_NONE);
        ck_assert_int_eq(checkpoint_busy(), 1);  /* the snapshot is held */
        other_process(revoke);
        ck_assert_int_eq(test_check_code(p, key, NULL), KG_CODE_KEY_REVOKED);
        ck_assert_int_eq(test_check_code(p, key, NULL), KG_CODE_KEY_REVOKED);
        other_process(activate);
    }
    ck_assert_int_eq(test_check_code(p, key, NULL), KG_CODE_NONE);
    kg_policy_free(p);
}
END_TEST

/* A write on a connection whose held snapshot is stale (another
 * connection committed since) ends the snapshot first: no busy error. */
START_TEST(test_snapshot_then_write)
{
    kg_policy *p = test_policy_ok(ctx, opts, NULL);
    char key[KG_KEY_MAX], id[64];
    kg_record *r = NULL;
    kg_diag d;

    test_make_key(p, "free", "a", key, id, sizeof(id));
    ck_assert_int_eq(test_check_code(p, key, NULL), KG_CODE_NONE);
    raw_sql("UPDATE keygate_keys SET name = 'renamed'");
    ck_assert_int_eq(kg_keys_get(p, id, &r, &d), KG_OK);
    ck_assert_str_eq(kg_record_name(r), "renamed");
    kg_record_set_status(r, KG_STATUS_REVOKED);
    ck_assert_int_eq(test_check_code(p, key, NULL), KG_CODE_NONE);
    raw_sql("UPDATE keygate_keys SET name = 'again'");
    ck_assert_msg(kg_keys_update(p, r, &d) == KG_OK, "update: %s", d.message);
    kg_record_unref(r);
    ck_assert_int_eq(test_check_code(p, key, NULL), KG_CODE_KEY_REVOKED);
    kg_policy_free(p);
}
END_TEST

/* An idle connection lets go of its snapshot after snapshot_idle, so
 * that checkpoints go on; reload and destroy let go at once;
 * snapshot_idle: 0 never holds one. */
START_TEST(test_snapshot_released)
{
    char o[1200], key[KG_KEY_MAX], id[64];
    kg_policy *p;
    kg_diag d;
    int i;

    snprintf(o, sizeof(o), "%s, snapshot_idle: 100ms", opts);
    p = test_policy_ok(ctx, o, NULL);
    test_make_key(p, "free", "a", key, id, sizeof(id));
    ck_assert_int_eq(test_check_code(p, key, NULL), KG_CODE_NONE);
    ck_assert_int_eq(test_check_code(p, key, NULL), KG_CODE_NONE);
    ck_assert_int_eq(checkpoint_busy(), 1);
    /* the keeper looks every 50 ms: give it up to 5 s on a loaded machine */
    for (i = 0; i < 500 && checkpoint_busy() != 0; i++)
        usleep(10000);
    ck_assert_msg(i < 500, "the idle snapshot was not released");
    raw_set_status(id, "revoked");
    ck_assert_int_eq(test_check_code(p, key, NULL), KG_CODE_KEY_REVOKED);
    kg_policy_free(p);

    /* reload closes the idle connections */
    p = test_policy_ok(ctx, opts, NULL);
    raw_set_status(id, "active");
    ck_assert_int_eq(test_check_code(p, key, NULL), KG_CODE_NONE);
    ck_assert_int_eq(test_check_code(p, key, NULL), KG_CODE_NONE);
    ck_assert_int_eq(checkpoint_busy(), 1);
    ck_assert_int_eq(kg_policy_reload_stores(p, &d), KG_OK);
    ck_assert_int_eq(checkpoint_busy(), 0);
    /* A new connection (its first lookup finds the WAL-index), then a
     * commit (a snapshot of an empty WAL does not stop a TRUNCATE
     * checkpoint). */
    ck_assert_int_eq(test_check_code(p, key, NULL), KG_CODE_NONE);
    raw_commit();
    ck_assert_int_eq(test_check_code(p, key, NULL), KG_CODE_NONE);
    ck_assert_int_eq(checkpoint_busy(), 1);
    kg_policy_free(p);
    ck_assert_int_eq(checkpoint_busy(), 0);

    /* snapshot_idle: 0 - a read transaction per lookup, none held */
    snprintf(o, sizeof(o), "%s, snapshot_idle: 0", opts);
    p = test_policy_ok(ctx, o, NULL);
    ck_assert_int_eq(test_check_code(p, key, NULL), KG_CODE_NONE);
    raw_commit();
    ck_assert_int_eq(test_check_code(p, key, NULL), KG_CODE_NONE);
    ck_assert_int_eq(test_check_code(p, key, NULL), KG_CODE_NONE);
    ck_assert_int_eq(checkpoint_busy(), 0);
    raw_set_status(id, "revoked");
    ck_assert_int_eq(test_check_code(p, key, NULL), KG_CODE_KEY_REVOKED);
    kg_policy_free(p);
}
END_TEST

/* ---- options ------------------------------------------------------------- */

static void load_fails(const char *o, const char *expect)
{
    kg_policy *p = NULL;
    kg_diag d;
    kg_error e = test_policy(ctx, o, NULL, &p, &d);
    ck_assert_msg(e != KG_OK, "'%s' loaded", o);
    ck_assert_ptr_null(p);
    ck_assert_msg(strstr(d.message, expect) != NULL, "'%s': message '%s' lacks '%s'",
                  o, d.message, expect);
}

START_TEST(test_bad_options)
{
    char o[1200];
    load_fails("driver: mysql, path: x.db", "unknown driver 'mysql'");
    load_fails("path: x.db", "'driver' is required");
    load_fails("driver: sqlite", "needs 'path'");
    snprintf(o, sizeof(o), "driver: sqlite, path: '%s', conninfo: 'host=x'", dbpath);
    load_fails(o, "is for the postgresql driver");
    snprintf(o, sizeof(o), "driver: sqlite, path: '%s', pool_size: 0", dbpath);
    load_fails(o, "pool_size must be");
    snprintf(o, sizeof(o), "driver: sqlite, path: '%s', busy_timeout: soon", dbpath);
    load_fails(o, "busy_timeout must be a time");
    snprintf(o, sizeof(o), "driver: sqlite, path: '%s', snapshot_idle: never", dbpath);
    load_fails(o, "snapshot_idle must be a time");
    snprintf(o, sizeof(o), "driver: sqlite, path: '%s', mmap_size: -1", dbpath);
    load_fails(o, "mmap_size must be");
    load_fails("driver: sqlite, path: /nonexistent-dir/keys.db", "cannot open the database");
#ifndef HAVE_PQ
    load_fails("driver: postgresql, conninfo: 'host=x'", "not built");
#endif
}
END_TEST

/* The shipped example loads as it is, under a scratch state folder. */
START_TEST(test_example_policy)
{
    const char *src = getenv("KEYGATE_SRCDIR");
    char path[600], key[KG_KEY_MAX];
    kg_policy *p = NULL;
    kg_diag d;
    kg_error e;

    ck_assert_msg(src != NULL, "KEYGATE_SRCDIR is not set (run through make check)");
    snprintf(path, sizeof(path), "%s/conf/examples/sqlite.yaml", src);
    setenv("KEYGATE_STATE_DIR", dir, 1);
    e = kg_policy_load_file(ctx, path, &p, &d);
    ck_assert_msg(e == KG_OK, "%s: %s", path, d.message);
    test_make_key(p, "enterprise", "example", key, NULL, 0);
    ck_assert_int_eq(test_check_code(p, key, NULL), KG_CODE_NONE);
    ck_assert_int_eq(raw_sql("SELECT count(*) FROM keygate_keys"), 1);
    kg_policy_free(p);
}
END_TEST

/* ---- migrations ---------------------------------------------------------- */

START_TEST(test_migrate)
{
    char o[1200], key[KG_KEY_MAX];
    kg_policy *p;
    kg_diag d;
    int from = -1, to = -1;

    snprintf(o, sizeof(o), "%s, auto_migrate: false", opts);
    p = test_policy_ok(ctx, o, NULL);
    ck_assert_int_eq(kg_policy_migrate(p, 0, &from, &to, &d), KG_OK);
    ck_assert_int_eq(from, 0);
    ck_assert_int_eq(to, 0);
    /* Unmigrated: management says what to do; a lookup has no answer,
     * which is 503, not "invalid key". */
    {
        kg_record *r = NULL;
        ck_assert_int_eq(kg_keys_get(p, "k_x", &r, &d), KG_ERR_IO);
        ck_assert_ptr_nonnull(strstr(d.message, "keygate db migrate"));
    }
    test_unknown_key(key);
    ck_assert_int_eq(test_check_code(p, key, NULL), KG_CODE_AUTH_UNAVAILABLE);
    ck_assert_int_eq(kg_policy_migrate(p, 1, &from, &to, &d), KG_OK);
    ck_assert_int_eq(from, 0);
    ck_assert_int_eq(to, tu_schema_latest());
    ck_assert_int_eq(raw_sql("SELECT max(version) FROM keygate_schema"),
                     tu_schema_latest());
    ck_assert_int_eq(kg_policy_migrate(p, 1, &from, &to, &d), KG_OK);
    ck_assert_int_eq(from, tu_schema_latest());
    ck_assert_int_eq(to, tu_schema_latest());
    ck_assert_int_eq(test_check_code(p, key, NULL), KG_CODE_UNAUTHORIZED);
    kg_policy_free(p);
}
END_TEST

/* Whether any text column of any row of `sql` contains `needle`. */
static int raw_has(const char *sql, const char *needle)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    int found = 0, i;
    ck_assert_int_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
    ck_assert_msg(sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK,
                  "%s: %s", sql, sqlite3_errmsg(db));
    while (!found && sqlite3_step(st) == SQLITE_ROW)
        for (i = 0; i < sqlite3_column_count(st); i++) {
            const char *t = (const char *)sqlite3_column_text(st, i);
            if (t != NULL && strstr(t, needle) != NULL)
                found = 1;
        }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return found;
}

/* The lookup is one search of the table's own B-tree (002), and a find
 * by id one index search. */
static void assert_v2_shape(void)
{
    ck_assert(raw_has("SELECT sql FROM sqlite_master WHERE name = 'keygate_keys'",
                      "WITHOUT ROWID"));
    ck_assert(raw_has("EXPLAIN QUERY PLAN SELECT * FROM keygate_keys WHERE "
                      "key_hash = 'x'", "USING PRIMARY KEY (key_hash=?)"));
    ck_assert(raw_has("EXPLAIN QUERY PLAN SELECT * FROM keygate_keys WHERE "
                      "id = 'x'", "USING INDEX keygate_keys_id (id=?)"));
}

/* A version-1 database (as 001 left it, with keys in it) migrated to the
 * latest: every key kept with its state, the table rebuilt keyed by
 * hash (002), each key in an account of its own (003). */
START_TEST(test_migrate_v1_to_v2)
{
    const char *src = getenv("KEYGATE_SRCDIR");
    char path[600], o[1200], sql[512], keys[2][KG_KEY_MAX], hex[2 * KG_HASH_LEN + 1];
    char *v1, other[KG_KEY_MAX];
    kg_policy *p;
    kg_record *r = NULL;
    kg_diag d;
    sqlite3 *db;
    FILE *f;
    long n;
    int from = -1, to = -1, i;

    ck_assert_msg(src != NULL, "KEYGATE_SRCDIR is not set (run through make check)");
    snprintf(path, sizeof(path), "%s/conf/sql/001_init.sql", src);
    f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    v1 = calloc(1, 65536);
    n = (long)fread(v1, 1, 65535, f);
    fclose(f);
    ck_assert_int_gt(n, 100);
    ck_assert_int_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(db, "PRAGMA journal_mode=WAL; BEGIN", NULL, NULL, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(db, v1, NULL, NULL, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(db, "CREATE TABLE keygate_schema (version INTEGER "
                                  "PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT "
                                  "NOT NULL); INSERT INTO keygate_schema VALUES "
                                  "(1, '001_init', 0)", NULL, NULL, NULL), SQLITE_OK);
    for (i = 0; i < 2; i++) {
        unsigned char h[KG_HASH_LEN];
        ck_assert_int_eq(kg_key_generate("whizo", keys[i], KG_KEY_MAX), KG_OK);
        kg_key_hash(keys[i], strlen(keys[i]), h);
        kg_hash_to_hex(h, hex);
        snprintf(sql, sizeof(sql), "INSERT INTO keygate_keys (id, key_hash, name, plan, "
                 "status, permissions, created_at) VALUES ('k_%d', '%s', 'old %d', "
                 "'free', '%s', 'scrape:read', 1700000000)", i, hex, i,
                 i == 0 ? "active" : "revoked");
        ck_assert_int_eq(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    }
    ck_assert_int_eq(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    free(v1);

    snprintf(o, sizeof(o), "%s, auto_migrate: false", opts);
    p = test_policy_ok(ctx, o, NULL);
    ck_assert_int_eq(test_check_code(p, keys[0], NULL), KG_CODE_AUTH_UNAVAILABLE);
    ck_assert_int_eq(kg_policy_migrate(p, 1, &from, &to, &d), KG_OK);
    ck_assert_int_eq(from, 1);
    ck_assert_int_eq(to, tu_schema_latest());
    assert_v2_shape();
    ck_assert_int_eq(raw_sql("SELECT count(*) FROM keygate_keys"), 2);
    ck_assert_int_eq(test_check_code(p, keys[0], NULL), KG_CODE_NONE);
    ck_assert_int_eq(test_check_code(p, keys[1], NULL), KG_CODE_KEY_REVOKED);
    test_unknown_key(other);
    ck_assert_int_eq(test_check_code(p, other, NULL), KG_CODE_UNAUTHORIZED);
    ck_assert_int_eq(kg_keys_get(p, "k_0", &r, &d), KG_OK);
    ck_assert_str_eq(kg_record_name(r), "old 0");
    ck_assert_int_eq(kg_record_permission_count(r), 1);
    ck_assert_int_eq(kg_record_created(r), 1700000000);
    /* still unique: id and hash */
    ck_assert_int_eq(kg_keys_create(p, r, other, sizeof(other), &d), KG_ERR_EXISTS);
    kg_record_unref(r);
    ck_assert_int_eq(raw_sql("INSERT OR IGNORE INTO keygate_keys (id, key_hash, plan, "
                             "created_at) SELECT 'k_new', key_hash, 'free', 0 FROM "
                             "keygate_keys WHERE id = 'k_0'"), -1);
    ck_assert_int_eq(raw_sql("SELECT count(*) FROM keygate_keys"), 2);
    kg_policy_free(p);
}
END_TEST

/* A new database gets the same shape (auto_migrate). */
START_TEST(test_new_db_shape)
{
    kg_policy *p = test_policy_ok(ctx, opts, NULL);
    assert_v2_shape();
    kg_policy_free(p);
}
END_TEST

START_TEST(test_refuse_newer_schema)
{
    kg_policy *p = test_policy_ok(ctx, opts, NULL), *p2 = NULL;
    char key[KG_KEY_MAX];
    kg_diag d;
    int from, to;

    test_make_key(p, "free", "a", key, NULL, 0);
    raw_sql("INSERT INTO keygate_schema (version, name, applied_at) VALUES (99, '099_future', 0)");
    /* A running instance's migrate refuses... */
    ck_assert_int_eq(kg_policy_migrate(p, 1, &from, &to, &d), KG_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(d.message, "newer than this keygate knows"));
    ck_assert_int_eq(raw_sql("SELECT max(version) FROM keygate_schema"), 99);
    kg_policy_free(p);
    /* ...and so does a new one, at load time. */
    ck_assert_int_ne(test_policy(ctx, opts, NULL, &p2, &d), KG_OK);
    ck_assert_ptr_nonnull(strstr(d.message, "newer than this keygate knows"));
    ck_assert_int_eq(raw_sql("SELECT count(*) FROM keygate_keys"), 1);
}
END_TEST

/* ---- last_used, written behind ----------------------------------------- */

static long long last_used_of(const char *id)
{
    char sql[256];
    snprintf(sql, sizeof(sql), "SELECT last_used_at FROM keygate_keys WHERE id = '%s'", id);
    return raw_sql(sql);
}

START_TEST(test_last_used_write_behind)
{
    char o[1200], key[KG_KEY_MAX], id[64];
    kg_policy *p;
    kg_diag d;
    int64_t t0 = tu_clock_fn(&test_clk) / 1000000;

    snprintf(o, sizeof(o), "%s, last_used_interval: 60s", opts);
    p = test_policy_ok(ctx, o, NULL);
    test_make_key(p, "free", "a", key, id, sizeof(id));
    ck_assert_int_eq(test_check_code(p, key, NULL), KG_CODE_NONE);
    /* Off the request path: nothing written yet (the thread flushes
     * every 60 s of real time). */
    ck_assert_int_eq(last_used_of(id), 0);
    ck_assert_int_eq(kg_policy_reload_stores(p, &d), KG_OK);  /* flush */
    ck_assert_int_eq(last_used_of(id), t0);
    /* Within the interval: not written again. */
    tu_clock_advance(&test_clk, 30);
    ck_assert_int_eq(test_check_code(p, key, NULL), KG_CODE_NONE);
    ck_assert_int_eq(kg_policy_reload_stores(p, &d), KG_OK);
    ck_assert_int_eq(last_used_of(id), t0);
    /* Past it: written, batched to the latest use. */
    tu_clock_advance(&test_clk, 31);
    ck_assert_int_eq(test_check_code(p, key, NULL), KG_CODE_NONE);
    tu_clock_advance(&test_clk, 5);
    ck_assert_int_eq(kg_policy_reload_stores(p, &d), KG_OK);
    ck_assert_int_eq(last_used_of(id), t0 + 61);
    /* Shutdown writes what is pending. */
    tu_clock_advance(&test_clk, 100);
    ck_assert_int_eq(test_check_code(p, key, NULL), KG_CODE_NONE);
    kg_policy_free(p);
    ck_assert_int_eq(last_used_of(id), t0 + 166);
}
END_TEST

/* ---- concurrency: CLI writers while threads read --------------------------- */

#define NREAD 3
#define NKEYS 8
#define NWRITERS 4
#define PER_WRITER 5

struct reader {
    kg_policy *p;
    char (*keys)[KG_KEY_MAX];
    volatile int *stop;
    long checks, bad;
};

static void *read_loop(void *arg)
{
    struct reader *r = arg;
    int i = 0;
    while (!*r->stop || r->checks < 50) {
        if (test_check_code(r->p, r->keys[i++ % NKEYS], NULL) != KG_CODE_NONE)
            r->bad++;
        r->checks++;
        /* Read hard, but let the writer processes run on a busy machine. */
        sched_yield();
    }
    return NULL;
}

START_TEST(test_cli_writes_while_reading)
{
    char keys[NKEYS][KG_KEY_MAX], policy[600], tool[600];
    const char *builddir = getenv("KEYGATE_BUILDDIR");
    volatile int stop = 0;
    pthread_t th[NREAD];
    struct reader rd[NREAD];
    pid_t pids[NWRITERS];
    kg_policy *p;
    int i, j;

    ck_assert_msg(builddir != NULL, "KEYGATE_BUILDDIR is not set (run through make check)");
    snprintf(tool, sizeof(tool), "%s/tools/keygate", builddir);
    write_cli_policy(policy, sizeof(policy));

    /* No cache: every check reads the database. */
    p = test_policy_ok(ctx, opts, NULL);
    for (i = 0; i < NKEYS; i++)
        test_make_key(p, "free", "seed", keys[i], NULL, 0);
    for (i = 0; i < NREAD; i++) {
        rd[i].p = p;
        rd[i].keys = keys;
        rd[i].stop = &stop;
        rd[i].checks = rd[i].bad = 0;
        ck_assert_int_eq(pthread_create(&th[i], NULL, read_loop, &rd[i]), 0);
    }
    for (i = 0; i < NWRITERS; i++) {
        pids[i] = fork();
        ck_assert_int_ge(pids[i], 0);
        if (pids[i] == 0) {
            int failed = 0;
            int null = open("/dev/null", O_WRONLY);
            if (null < 0 || dup2(null, 1) < 0 || dup2(null, 2) < 0)
                _exit(3);
            for (j = 0; j < PER_WRITER; j++) {
                pid_t c = fork();
                int st;
                if (c == 0) {
                    execl(tool, tool, "--config", policy, "key", "create",
                          "--name", "cli", "--plan", "free", (char *)NULL);
                    _exit(127);
                }
                if (c < 0 || waitpid(c, &st, 0) != c || !WIFEXITED(st) ||
                    WEXITSTATUS(st) != 0)
                    failed++;
            }
            _exit(failed ? 1 : 0);
        }
    }
    for (i = 0; i < NWRITERS; i++) {
        int st;
        ck_assert_int_eq(waitpid(pids[i], &st, 0), pids[i]);
        ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0,
                      "writer %d: a `keygate key create` failed", i);
    }
    stop = 1;
    for (i = 0; i < NREAD; i++) {
        pthread_join(th[i], NULL);
        ck_assert_msg(rd[i].bad == 0, "reader %d: %ld of %ld checks denied",
                      i, rd[i].bad, rd[i].checks);
    }
    ck_assert_int_eq(test_count_keys(p), NKEYS + NWRITERS * PER_WRITER);
    ck_assert_int_eq(raw_sql("SELECT count(*) FROM keygate_keys WHERE name = 'cli'"),
                     NWRITERS * PER_WRITER);
    kg_policy_free(p);
}
END_TEST


/* ---- accounts (docs/sql.md "Accounts") ------------------------------------ */

START_TEST(test_accounts_model)
{
    kg_policy *p = test_acct_policy(ctx, opts, NULL);
    test_accounts_crud(p, "lite");
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

static void lite_raw(void *ud, const char *sql)
{
    sqlite3 *db = ud;
    char *msg = NULL;
    ck_assert_msg(sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK, "%s: %s",
                  sql, msg ? msg : "?");
}

/* Whether keygate_keys has a column of that name. */
static int has_column(const char *name)
{
    char sql[200];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM pragma_table_info('keygate_keys') "
             "WHERE name = '%s'", name);
    return raw_sql(sql) > 0;
}

/*
 * A store written by main before accounts (schema 2, the fixture of
 * sqltest.h) migrated by `keygate db migrate` (kg_policy_migrate): each
 * key in an account of its own, every key works with its limits.  A
 * migration that fails half-way changes nothing: the accounts made
 * before the failure are rolled back with the rest.
 */
START_TEST(test_migrate_v2_accounts)
{
    char o[1200], keys[TEST_NOLD][KG_KEY_MAX];
    kg_policy *p;
    kg_diag d;
    sqlite3 *db;
    int from = -1, to = -1;

    ck_assert_int_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
    lite_raw(db, "PRAGMA journal_mode=WAL; BEGIN");
    test_old_store(lite_raw, db, 1, keys);
    lite_raw(db, "COMMIT");
    /* A trap for the last statement of 003: the index name is taken. */
    lite_raw(db, "CREATE INDEX keygate_keys_account ON keygate_keys (plan)");
    sqlite3_close(db);

    snprintf(o, sizeof(o), "%s, auto_migrate: false", opts);
    p = test_acct_policy(ctx, o, NULL);
    ck_assert_int_eq(test_check_code(p, keys[0], NULL), KG_CODE_AUTH_UNAVAILABLE);
    memset(&d, 0, sizeof(d));
    ck_assert_int_ne(kg_policy_migrate(p, 1, &from, &to, &d), KG_OK);
    ck_assert_ptr_nonnull(strstr(d.message, "003_accounts"));
    ck_assert_int_eq(raw_sql("SELECT max(version) FROM keygate_schema"), 2);
    ck_assert(!has_column("account_id"));
    ck_assert_int_eq(raw_sql("SELECT count(*) FROM sqlite_master WHERE name = "
                             "'keygate_accounts'"), 0);
    ck_assert_int_eq(raw_sql("SELECT count(*) FROM keygate_keys WHERE limits <> ''"), 2);
    raw_sql("DROP INDEX keygate_keys_account");

    ck_assert_int_eq(kg_policy_migrate(p, 1, &from, &to, &d), KG_OK);
    ck_assert_int_eq(from, 2);
    ck_assert_int_eq(to, tu_schema_latest());
    assert_v2_shape();
    ck_assert(has_column("account_id"));
    test_old_store_migrated(p, keys);
    kg_policy_free(p);
}
END_TEST

/* The lookup reads the key and its account in one statement: one search
 * of each table's B-tree (what sql.c's lookup_sql asks). */
START_TEST(test_lookup_join_plan)
{
    kg_policy *p = test_acct_policy(ctx, opts, NULL);
    ck_assert(raw_has("EXPLAIN QUERY PLAN SELECT k.id, a.id FROM keygate_keys k "
                      "LEFT JOIN keygate_accounts a ON a.id = k.account_id WHERE "
                      "k.key_hash = 'x'", "USING PRIMARY KEY (key_hash=?)"));
    ck_assert(raw_has("EXPLAIN QUERY PLAN SELECT k.id, a.id FROM keygate_keys k "
                      "LEFT JOIN keygate_accounts a ON a.id = k.account_id WHERE "
                      "k.key_hash = 'x'", "(id=?)"));
    kg_policy_free(p);
}
END_TEST

static Suite *sql_sqlite_suite(void)
{
    Suite *s = suite_create("sql_sqlite");
    TCase *tc;

    tc = tcase_create("records");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_roundtrip);
    tcase_add_test(tc, test_check_and_revoke);
    tcase_add_test(tc, test_revoke_by_other_within_ttl);
    tcase_add_test(tc, test_create_exists);
    tcase_add_test(tc, test_injection);
    suite_add_tcase(s, tc);

    tc = tcase_create("snapshots");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_snapshot_sees_other_process);
    tcase_add_test(tc, test_snapshot_then_write);
    tcase_add_test(tc, test_snapshot_released);
    suite_add_tcase(s, tc);

    tc = tcase_create("options");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_bad_options);
    tcase_add_test(tc, test_example_policy);
    suite_add_tcase(s, tc);

    tc = tcase_create("migrations");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_migrate);
    tcase_add_test(tc, test_refuse_newer_schema);
    tcase_add_test(tc, test_migrate_v1_to_v2);
    tcase_add_test(tc, test_new_db_shape);
    tcase_add_test(tc, test_migrate_v2_accounts);
    suite_add_tcase(s, tc);

    tc = tcase_create("accounts");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_accounts_model);
    tcase_add_test(tc, test_pages_in_one_query);
    tcase_add_test(tc, test_accounts_quota_and_suspension);
    tcase_add_test(tc, test_lookup_join_plan);
    suite_add_tcase(s, tc);

    tc = tcase_create("last_used");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_last_used_write_behind);
    suite_add_tcase(s, tc);

    tc = tcase_create("concurrency");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_cli_writes_while_reading);
    suite_add_tcase(s, tc);
    return s;
}

/* --raw-sql DB SQL: run one statement on a connection of its own. */
static int raw_sql_main(const char *db_path, const char *sql)
{
    sqlite3 *db;
    int rc;
    if (sqlite3_open(db_path, &db) != SQLITE_OK)
        return 2;
    sqlite3_busy_timeout(db, 10000);
    rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    sqlite3_close(db);
    return rc == SQLITE_OK ? 0 : 1;
}

int main(int argc, char **argv)
{
    SRunner *sr;
    int failed;
    ssize_t n;

    if (argc == 4 && strcmp(argv[1], "--raw-sql") == 0)
        return raw_sql_main(argv[2], argv[3]);
    n = readlink("/proc/self/exe", self_exe, sizeof(self_exe) - 1);
    self_exe[n > 0 ? n : 0] = '\0';
    sr = srunner_create(sql_sqlite_suite());
#ifdef __SANITIZE_ADDRESS__
    /*
     * Under ASan, all tests in this one process (unless CK_FORK says
     * otherwise): LeakSanitizer's tracer crashes (SIGSEGV while it scans
     * dynamic TLS; GCC 12's libasan with glibc 2.36) at the exit of
     * Check's forked per-test processes of this binary, on the VMs this
     * was written on.  In one process the leak check still runs, once,
     * over every test, at exit.
     */
    if (getenv("CK_FORK") == NULL)
        srunner_set_fork_status(sr, CK_NOFORK);
#endif
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
