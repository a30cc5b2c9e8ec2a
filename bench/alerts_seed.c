/*
 * bench/alerts_seed - what seeding the spike rule's history from the
 * usage store costs a starting keygated (docs/alerts.md "spike"): a
 * SQLite usage store holding ACCOUNTS accounts' hour rows for DAYS days
 * (every hour of every account: the worst case) and a minute row each
 * in the hour in progress; the spike rule (over 1h, baseline
 * 7d); kg_alerts_seed() a page at a time, as keygated's alerts thread
 * calls it, until done.  Prints the rows read, the wall and CPU time,
 * and the process's resident memory before, after and at its peak; then
 * the time of one kg_alerts_run() over every seeded account.
 *
 *   bench/alerts_seed [ACCOUNTS [DAYS [DB]]]   (KEYGATE_PLUGIN_PATH: the plugins)
 *
 * DB (default: a new file under /tmp, removed at the end) is written
 * only if it holds no hour rows yet, so that a second run measures the
 * seeding alone.  The store's two secondary indexes are dropped before
 * the rows are written (the seeding reads by start, the primary key;
 * writing 10^7 rows through three B-trees would take most of the run).
 * Not a test: the figures depend on the machine.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include <keygate/alerts.h>

static double clock_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A field of /proc/self/status in MB (VmRSS, VmHWM). */
static double status_mb(const char *field)
{
    char line[256];
    double kb = -1;
    FILE *f = fopen("/proc/self/status", "r");
    size_t n = strlen(field);
    while (f != NULL && fgets(line, sizeof(line), f) != NULL)
        if (strncmp(line, field, n) == 0 && line[n] == ':')
            kb = atof(line + n + 1);
    if (f != NULL)
        fclose(f);
    return kb / 1024;
}

static int sql(sqlite3 *db, const char *s)
{
    char *err = NULL;
    if (sqlite3_exec(db, s, NULL, NULL, &err) != SQLITE_OK) {
        fprintf(stderr, "%s: %s\n", s, err);
        sqlite3_free(err);
        return -1;
    }
    return 0;
}

static int count_cb(void *ud, int n, char **v, char **names)
{
    (void)n;
    (void)names;
    *(long long *)ud = v[0] ? atoll(v[0]) : 0;
    return 0;
}

/* The rows, in the primary key's order, in one transaction. */
static int fill(const char *path, size_t n, int days, int64_t h0)
{
    sqlite3 *db;
    sqlite3_stmt *st[2];
    long long have = 0;
    int64_t t;
    size_t i;
    int rc = -1;

    if (sqlite3_open(path, &db) != SQLITE_OK)
        return -1;
    sqlite3_exec(db, "SELECT COUNT(*) FROM keygate_usage_hour", count_cb, &have, NULL);
    if (have > 0) {
        fprintf(stderr, "%s holds %lld hour rows: not written again\n", path, have);
        sqlite3_close(db);
        return 0;
    }
    if (sql(db, "PRAGMA journal_mode=WAL; DROP INDEX IF EXISTS keygate_usage_hour_account;"
            "DROP INDEX IF EXISTS keygate_usage_hour_key;"
            "DROP INDEX IF EXISTS keygate_usage_minute_account;"
            "DROP INDEX IF EXISTS keygate_usage_minute_key; BEGIN") != 0 ||
        sqlite3_prepare_v2(db, "INSERT INTO keygate_usage_hour VALUES (?, ?, ?, 'allowed', ?)",
                           -1, &st[0], NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "INSERT INTO keygate_usage_minute VALUES (?, ?, ?, 'allowed', ?)",
                           -1, &st[1], NULL) != SQLITE_OK)
        goto out;
    for (t = h0 - (int64_t)days * 86400; t <= h0; t += 3600) {
        sqlite3_stmt *s = st[t == h0];
        for (i = 0; i < n; i++) {
            char acct[32], key[32];
            snprintf(acct, sizeof(acct), "acct_%07zu", i);
            snprintf(key, sizeof(key), "key_%07zu", i);
            sqlite3_bind_int64(s, 1, t);
            sqlite3_bind_text(s, 2, acct, -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(s, 3, key, -1, SQLITE_TRANSIENT);
            sqlite3_bind_int64(s, 4, 10 + (int64_t)(i % 100));
            if (sqlite3_step(s) != SQLITE_DONE)
                goto out;
            sqlite3_reset(s);
        }
    }
    rc = sql(db, "COMMIT");
out:
    if (rc != 0)
        fprintf(stderr, "writing %s: %s\n", path, sqlite3_errmsg(db));
    sqlite3_finalize(st[0]);
    sqlite3_finalize(st[1]);
    sqlite3_close(db);
    return rc;
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 100000, rows, total = 0;
    int days = argc > 2 ? atoi(argv[2]) : 7, done = 0, pages = 0, own = argc <= 3;
    char tmp[] = "/tmp/kg-bench-seed.XXXXXX", path[512], keys[600], yaml[2048];
    const char *db = argc > 3 ? argv[3] : NULL;
    /* The hour in progress: the store's clock is the real one. */
    int64_t now = (int64_t)time(NULL), h0 = now - now % 3600;
    kg_context *ctx = NULL;
    kg_policy *p = NULL;
    kg_alerts *al = NULL;
    kg_outbox_memory *box = kg_outbox_memory_new();
    double w0, c0, wall, cpu, rss0, rss1, anon0;
    size_t written = 0;
    kg_diag d;
    FILE *f;

    if (own) {
        if (mkdtemp(tmp) == NULL)
            return 1;
        snprintf(path, sizeof(path), "%s/usage.db", tmp);
        db = path;
    }
    if (strlen(db) > 500)
        return 1;
    snprintf(keys, sizeof(keys), "%.500s.keys.yaml", db);
    if ((f = fopen(keys, "w")) == NULL)
        return 1;
    fputs("keys: []\n", f);
    fclose(f);
    if (snprintf(yaml, sizeof(yaml), "credential: [{module: bearer}]\n"
                 "keystore: [{module: file, options: {path: %s}}]\n"
                 "plans: {free: {}}\n"
                 "usage: {module: sql, options: {url: \"sqlite://%s\"}}\n"
                 "notifiers: {log: {module: log, options: {path: /dev/null}}}\n"
                 "alerts:\n"
                 "  - {name: spike, when: {spike: {factor: 5, over: 1h, baseline: %dd, "
                 "min_requests: 100}}, notify: [log]}\n", keys, db, days) >= (int)sizeof(yaml))
        return 1;
    if (kg_context_new(&ctx) != KG_OK || kg_alerts_new(&al) != KG_OK ||
        kg_policy_load_string(ctx, yaml, "bench.yaml", &p, &d) != KG_OK) {
        fprintf(stderr, "policy: %s\n", d.message);
        return 1;
    }
    w0 = clock_s(CLOCK_MONOTONIC);
    if (fill(db, n, days, h0) != 0)
        return 1;
    fprintf(stderr, "store written in %.1f s\n", clock_s(CLOCK_MONOTONIC) - w0);

    rss0 = status_mb("VmRSS");
    anon0 = status_mb("RssAnon");
    w0 = clock_s(CLOCK_MONOTONIC);
    c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
    while (!done) {
        if (kg_alerts_seed(al, p, h0 + 1800, 1, &rows, &done, &d) != KG_OK) {
            fprintf(stderr, "seed: %s\n", d.message);
            return 1;
        }
        total += rows;
        pages++;
    }
    wall = clock_s(CLOCK_MONOTONIC) - w0;
    cpu = clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
    rss1 = status_mb("VmRSS");
    printf("seeded %zu accounts x %d days: %zu rows in %d pages, %.2f s wall, "
           "%.2f s CPU (%.0f rows/s)\n", n, days, total, pages, wall, cpu,
           (double)total / wall);
    printf("resident memory: %.1f MB before, %.1f MB after (+%.1f MB, %.0f bytes "
           "an account), peak %.1f MB; of it anonymous (the heap) %.1f MB before, "
           "%.1f MB after (+%.0f bytes an account), the rest the store's file "
           "mapped (its mmap_size)\n", rss0, rss1, rss1 - rss0,
           (rss1 - rss0) * 1048576 / (double)n, status_mb("VmHWM"), anon0,
           status_mb("RssAnon"), (status_mb("RssAnon") - anon0) * 1048576 / (double)n);
    w0 = clock_s(CLOCK_MONOTONIC);
    if (kg_alerts_run(al, p, h0 + 1800, kg_outbox_memory_ops(), box, &written,
                      &d) != KG_OK) {
        fprintf(stderr, "run: %s\n", d.message);
        return 1;
    }
    printf("then one kg_alerts_run over them: %.2f s, %zu alerts\n",
           clock_s(CLOCK_MONOTONIC) - w0, written);
    kg_alerts_free(al);
    kg_outbox_memory_free(box);
    kg_policy_free(p);
    kg_context_free(ctx);
    unlink(keys);
    if (own) {
        snprintf(path, sizeof(path), "rm -rf '%s'", tmp);
        if (system(path) != 0)
            fprintf(stderr, "%s failed\n", path);
    }
    return 0;
}
