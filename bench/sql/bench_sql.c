/*
 * bench_sql - lookups per second and latency percentiles of the sql key
 * store, through kg_check() (bearer credential, one keystore line, a plan
 * with no account or limit stage), single-threaded:
 *
 *   uncached   every check goes to the database (no cache: on the line);
 *              for SQLite also with snapshot_idle: 0 (a read transaction
 *              per lookup, as before snapshot reuse), in the same run
 *   cached     the core's record cache in front of the same store, warm
 *   memory     bench/memstore (every key in an in-memory hash table),
 *              asked for the same hot keys: the baseline for "cached",
 *              and, run first and last, the same-run reference that
 *              tells a loaded machine from a slow store
 *   floor      after each uncached run: a busy loop calibrated to that
 *              run's median, timed the same way.  Its p99 is what this
 *              machine, as loaded as it is, does to ANY operation that
 *              long (interrupts, other processes, the hypervisor): the
 *              store's p99 can only be judged against it.
 *
 * The bench loads its own keys: --keys N (default 1,000,000) random keys
 * are generated, hashed, and bulk-loaded into SQLite (one transaction)
 * and/or PostgreSQL (COPY), --keys-per-account A (default 10) to an
 * account (so 100,000 accounts: each lookup reads the key's account too,
 * docs/sql.md "Accounts"; 0: keys without accounts).  Usage:
 *
 *   bench_sql [--keys N] [--keys-per-account A] [--checks M] [--pg-checks M]
 *             [--working-set W] [--sqlite DB-PATH] [--pg CONNINFO]
 *             (password: $PGPASSWORD)
 *
 * Profiling just the measured uncached runs: start bench_sql under
 * `perf record -D -1 --control fifo:CTL` and set BENCH_PERF_CTL=CTL;
 * the bench enables the events around those runs only (with
 * BENCH_PERF_ONLY=TEXT, around the runs whose label contains TEXT).
 *
 * bench/sql/run.sh builds it, starts a PostgreSQL of its own, and runs it.
 */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <keygate/keygate.h>
#include <keygate/plugin.h>

#ifdef HAVE_SQLITE
#include <sqlite3.h>
#endif
#ifdef HAVE_PQ
#include <libpq-fe.h>
#endif

static char (*keys)[KG_KEY_MAX];
static char (*hexes)[2 * KG_HASH_LEN + 1];
static long nkeys = 1000000, nchecks = 200000, pgchecks = 20000, wset = 10000;
static long per_account = 10;  /* keys per account; 0: none */

/* The account of key i (NULL: none), into buf. */
static const char *account_of(long i, char *buf, size_t len)
{
    if (per_account <= 0)
        return NULL;
    snprintf(buf, len, "acct_%07ld", i / per_account);
    return buf;
}
static FILE *perf_ctl;  /* BENCH_PERF_CTL: perf's control fifo */

static int64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t now_ns(void)
{
    return clock_ns(CLOCK_MONOTONIC);
}

static void perf_events(const char *cmd)
{
    if (perf_ctl != NULL) {
        fprintf(perf_ctl, "%s\n", cmd);
        fflush(perf_ctl);
    }
}

static void print_load(const char *when)
{
    FILE *f = fopen("/proc/loadavg", "r");
    double a = 0, b = 0, c = 0;
    if (f != NULL && fscanf(f, "%lf %lf %lf", &a, &b, &c) == 3)
        printf("-- %s: load average %.2f %.2f %.2f\n", when, a, b, c);
    if (f != NULL)
        fclose(f);
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static void die(const char *what, const char *why)
{
    fprintf(stderr, "bench_sql: %s: %s\n", what, why);
    exit(1);
}

static kg_policy *load(kg_context *ctx, const char *keystore_line)
{
    char yaml[4096];
    kg_policy *p = NULL;
    kg_diag d;
    snprintf(yaml, sizeof(yaml),
             "version: 1\nkey_prefix: whizo\n"
             "credential:\n  - {module: bearer, control: required}\n"
             "keystore:\n%s"
             "plans:\n  free: {priority: 0}\n", keystore_line);
    if (kg_policy_load_string(ctx, yaml, "bench.yaml", &p, &d) != KG_OK)
        die("policy", d.message);
    return p;
}

static void report(const char *label, int64_t *lat, long n, int64_t total,
                   long denied)
{
    qsort(lat, (size_t)n, sizeof(*lat), cmp64);
    printf("%-42s %9.0f /s   p50 %7.1f us   p99 %7.1f us   p99.9 %7.1f us%s\n",
           label, (double)n / ((double)total / 1e9), lat[n / 2] / 1000.0,
           lat[(long)(n * 0.99)] / 1000.0, lat[(long)(n * 0.999)] / 1000.0,
           denied ? "   (SOME DENIED!)" : "");
    fflush(stdout);
}

/*
 * The machine's floor for an operation of `target_ns`: a busy loop
 * calibrated to that length, timed like a check.  It touches no memory,
 * makes no system call and cannot wait for anything, so whatever tail
 * it has comes from the machine.
 */
static void machine_floor(int64_t target_ns, long n)
{
    int64_t *lat = malloc((size_t)n * sizeof(*lat)), t0, total;
    volatile uint64_t sink = 0;
    uint64_t x = 88172645463325252ULL;
    long i, j, iters = 1000;
    int round;
    char label[64];

    if (lat == NULL || n < 101)
        die("floor", "out of memory");
    /* iterations for target_ns: scaled by the median of 101 timings of
     * the loop as it is timed below, three times over */
    for (round = 0; round < 3; round++) {
        for (i = 0; i < 101; i++) {
            t0 = now_ns();
            for (j = 0; j < iters; j++) {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            }
            sink += x;
            lat[i] = now_ns() - t0;
        }
        qsort(lat, 101, sizeof(*lat), cmp64);
        iters = (long)((double)iters * (double)target_ns / (double)(lat[50] ? lat[50] : 1));
        if (iters < 1)
            iters = 1;
    }
    total = now_ns();
    for (i = 0; i < n; i++) {
        t0 = now_ns();
        for (j = 0; j < iters; j++) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        }
        sink += x;
        lat[i] = now_ns() - t0;
    }
    total = now_ns() - total;
    snprintf(label, sizeof(label), "  machine floor (a %.1f us busy loop)",
             target_ns / 1000.0);
    report(label, lat, n, total, 0);
    free(lat);
}

/* Run `n` checks of keys picked (pseudo-randomly) among the first
 * `among`; print checks/s and percentiles; the median (ns). */
static int64_t measure(const char *label, kg_policy *p, long among, long n)
{
    int64_t *lat = malloc((size_t)n * sizeof(*lat)), t0, total, p50;
    kg_request *req;
    uint64_t x = 88172645463325252ULL;
    long i, denied = 0;

    if (lat == NULL || kg_request_new(&req) != KG_OK)
        die("measure", "out of memory");
    total = now_ns();
    for (i = 0; i < n; i++) {
        char hdr[KG_KEY_MAX + 8];
        kg_decision *dec;
        long k;
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        k = (long)(x % (uint64_t)among);
        snprintf(hdr, sizeof(hdr), "Bearer %s", keys[k]);
        kg_request_reset(req);
        kg_request_add_header(req, "Authorization", hdr);
        t0 = now_ns();
        kg_check(p, req, &dec);
        lat[i] = now_ns() - t0;
        if (!kg_decision_allowed(dec))
            denied++;
        kg_decision_free(dec);
    }
    total = now_ns() - total;
    report(label, lat, n, total, denied);
    if (denied)
        fprintf(stderr, "bench_sql: %s: %ld of %ld checks denied\n", label, denied, n);
    p50 = lat[n / 2];
    kg_request_free(req);
    free(lat);
    return p50;
}

/* An uncached run: measured (with perf's events on, if asked), then the
 * machine's floor for an operation as long as its median. */
static void measure_uncached(const char *label, kg_policy *p, long n)
{
    const char *only = getenv("BENCH_PERF_ONLY");
    int on = only == NULL || strstr(label, only) != NULL;
    int64_t p50;
    if (on)
        perf_events("enable");
    p50 = measure(label, p, nkeys, n);
    if (on)
        perf_events("disable");
    machine_floor(p50, n);
}

static void make_keys(void)
{
    long i;
    int64_t t0 = now_ns();
    keys = malloc((size_t)nkeys * sizeof(*keys));
    hexes = malloc((size_t)nkeys * sizeof(*hexes));
    if (keys == NULL || hexes == NULL)
        die("keys", "out of memory");
    for (i = 0; i < nkeys; i++) {
        unsigned char h[KG_HASH_LEN];
        if (kg_key_generate("whizo", keys[i], KG_KEY_MAX) != KG_OK)
            die("keys", "kg_key_generate failed");
        kg_key_hash(keys[i], strlen(keys[i]), h);
        kg_hash_to_hex(h, hexes[i]);
    }
    printf("generated %ld keys in %.1f s\n", nkeys, (now_ns() - t0) / 1e9);
}

/* The baseline: bench/memstore, every key in an in-memory hash table,
 * asked for the same hot keys as the cached runs. */
static char keys_path[] = "/tmp/kg-bench-keys-XXXXXX";
static int keys_written;

static void bench_memory(kg_context *ctx)
{
    char line[512], label[64];
    const char *path = keys_path;
    kg_policy *p;
    long i;

    if (!keys_written) {  /* written once, for both memory runs */
        int fd = mkstemp(keys_path);
        FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
        if (f == NULL)
            die("memstore", "cannot create a temporary file");
        for (i = 0; i < nkeys; i++)
            fprintf(f, "%s\n", keys[i]);
        fclose(f);
        keys_written = 1;
    }
    snprintf(line, sizeof(line), "  - module: memstore\n    control: required\n"
             "    options: {keys_file: '%s', plan: free}\n", path);
    p = load(ctx, line);
    print_load("memory");
    snprintf(label, sizeof(label), "memory (memstore, %ld hot)", wset);
    measure(label, p, wset, nchecks);
    kg_policy_free(p);
}

static void bench_store(kg_context *ctx, const char *name, const char *opts,
                        long n)
{
    char line[2048], label[96];
    kg_policy *p;

    print_load(name);
    snprintf(line, sizeof(line), "  - module: sql\n    control: required\n"
             "    options: {%s, last_used_interval: 0}\n", opts);
    p = load(ctx, line);
    /* Warm the OS page cache and the connections first: "uncached" is
     * about keygate's cache, not a cold disk. */
    measure("(warming the store)", p, nkeys, n / 2);
    snprintf(label, sizeof(label), "%s uncached (%ld keys)", name, nkeys);
    measure_uncached(label, p, n);
    kg_policy_free(p);

    if (strcmp(name, "sqlite") == 0) {
        /* The same store without snapshot reuse: what every lookup cost
         * before it, measured in the same run. */
        snprintf(line, sizeof(line), "  - module: sql\n    control: required\n"
                 "    options: {%s, last_used_interval: 0, snapshot_idle: 0}\n", opts);
        p = load(ctx, line);
        measure("(warming the store)", p, nkeys, n / 4);
        snprintf(label, sizeof(label), "%s uncached, snapshot_idle: 0", name);
        measure_uncached(label, p, n);
        kg_policy_free(p);
    }

    snprintf(line, sizeof(line), "  - module: sql\n    control: required\n"
             "    cache: {ttl: 1h, negative_ttl: 1s, max_entries: %ld}\n"
             "    options: {%s, last_used_interval: 0}\n", wset * 2, opts);
    p = load(ctx, line);
    measure("(warming the cache)", p, wset, wset * 4);
    snprintf(label, sizeof(label), "%s cached (%ld hot)", name, wset);
    measure(label, p, wset, nchecks);
    kg_policy_free(p);
}

#ifdef HAVE_SQLITE
static int cmp_hex(const void *a, const void *b)
{
    return strcmp(hexes[*(const long *)a], hexes[*(const long *)b]);
}

static void load_sqlite(kg_context *ctx, const char *path)
{
    char opts[1024], line[1200];
    sqlite3 *db;
    sqlite3_stmt *st;
    kg_policy *p;
    long i, *order = malloc((size_t)nkeys * sizeof(*order));
    int64_t t0 = now_ns();

    /* In hash order, as `keygate db migrate` leaves a table (packed);
     * in random order it takes three times as long to load. */
    if (order == NULL)
        die("load", "out of memory");
    for (i = 0; i < nkeys; i++)
        order[i] = i;
    qsort(order, (size_t)nkeys, sizeof(*order), cmp_hex);
    unlink(path);
    snprintf(opts, sizeof(opts), "driver: sqlite, path: '%s'", path);
    snprintf(line, sizeof(line), "  - module: sql\n    control: required\n"
             "    options: {%s}\n", opts);
    p = load(ctx, line);  /* creates and migrates the database */
    kg_policy_free(p);
    if (sqlite3_open(path, &db) != SQLITE_OK)
        die(path, sqlite3_errmsg(db));
    /* A bench's load: no fsync, and written once into the file rather
     * than into the WAL and then again by the checkpoint; the store
     * reads the same pages either way, in WAL mode again after. */
    sqlite3_exec(db, "PRAGMA journal_mode=DELETE; PRAGMA cache_size=-262144; "
                 "PRAGMA synchronous=OFF; BEGIN", NULL, NULL, NULL);
    if (sqlite3_prepare_v2(db, "INSERT INTO keygate_accounts (id, name, plan, "
                           "created_at, updated_at) VALUES (?1, ?1, 'free', "
                           "1800000000, 1800000000)", -1, &st, NULL) != SQLITE_OK)
        die(path, sqlite3_errmsg(db));
    for (i = 0; per_account > 0 && i < nkeys; i += per_account) {
        char aid[32];
        sqlite3_bind_text(st, 1, account_of(i, aid, sizeof(aid)), -1, SQLITE_TRANSIENT);
        if (sqlite3_step(st) != SQLITE_DONE)
            die(path, sqlite3_errmsg(db));
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    if (sqlite3_prepare_v2(db, "INSERT INTO keygate_keys (id, key_hash, plan, "
                           "created_at, account_id) VALUES (?1, ?2, 'free', "
                           "1800000000, ?3)", -1, &st, NULL) != SQLITE_OK)
        die(path, sqlite3_errmsg(db));
    for (i = 0; i < nkeys; i++) {
        char id[32], aid[32];
        snprintf(id, sizeof(id), "b_%07ld", order[i]);
        sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 2, hexes[order[i]], -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, account_of(order[i], aid, sizeof(aid)), -1,
                          SQLITE_TRANSIENT);
        if (sqlite3_step(st) != SQLITE_DONE)
            die(path, sqlite3_errmsg(db));
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    if (sqlite3_exec(db, "COMMIT; PRAGMA journal_mode=WAL", NULL, NULL, NULL) != SQLITE_OK)
        die(path, sqlite3_errmsg(db));
    sqlite3_close(db);
    free(order);
    printf("loaded %ld keys (%ld per account) into SQLite in %.1f s\n", nkeys,
           per_account, (now_ns() - t0) / 1e9);
    bench_store(ctx, "sqlite", opts, nchecks);
    unlink(path);
}
#endif

#ifdef HAVE_PQ
static void load_pg(kg_context *ctx, const char *conninfo)
{
    char opts[1200], line[1400], buf[160];
    PGconn *c;
    PGresult *r;
    kg_policy *p;
    long i;
    int64_t t0 = now_ns();

    snprintf(opts, sizeof(opts), "driver: postgresql, conninfo: '%s', "
             "auto_migrate: true, pool_size: 2", conninfo);
    snprintf(line, sizeof(line), "  - module: sql\n    control: required\n"
             "    options: {%s}\n", opts);
    p = load(ctx, line);
    kg_policy_free(p);
    c = PQconnectdb(conninfo);
    if (PQstatus(c) != CONNECTION_OK)
        die("PostgreSQL", PQerrorMessage(c));
    PQclear(PQexec(c, "TRUNCATE keygate_keys, keygate_accounts"));
    r = PQexec(c, "COPY keygate_accounts (id, name, plan, created_at, updated_at) "
               "FROM STDIN");
    if (PQresultStatus(r) != PGRES_COPY_IN)
        die("COPY", PQerrorMessage(c));
    PQclear(r);
    for (i = 0; per_account > 0 && i < nkeys; i += per_account) {
        char aid[32];
        int n = snprintf(buf, sizeof(buf), "%s\t%s\tfree\t1800000000\t1800000000\n",
                         account_of(i, aid, sizeof(aid)), aid);
        if (PQputCopyData(c, buf, n) != 1)
            die("COPY", PQerrorMessage(c));
    }
    if (PQputCopyEnd(c, NULL) != 1)
        die("COPY", PQerrorMessage(c));
    r = PQgetResult(c);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        die("COPY", PQresultErrorMessage(r));
    PQclear(r);
    r = PQexec(c, "COPY keygate_keys (id, key_hash, plan, created_at, account_id) "
               "FROM STDIN");
    if (PQresultStatus(r) != PGRES_COPY_IN)
        die("COPY", PQerrorMessage(c));
    PQclear(r);
    for (i = 0; i < nkeys; i++) {
        char aid[32];
        const char *a = account_of(i, aid, sizeof(aid));
        int n = snprintf(buf, sizeof(buf), "b_%07ld\t%s\tfree\t1800000000\t%s\n", i,
                         hexes[i], a ? a : "\\N");
        if (PQputCopyData(c, buf, n) != 1)
            die("COPY", PQerrorMessage(c));
    }
    if (PQputCopyEnd(c, NULL) != 1)
        die("COPY", PQerrorMessage(c));
    r = PQgetResult(c);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        die("COPY", PQresultErrorMessage(r));
    PQclear(r);
    PQclear(PQexec(c, "ANALYZE keygate_keys; ANALYZE keygate_accounts"));
    PQfinish(c);
    printf("loaded %ld keys (%ld per account) into PostgreSQL in %.1f s\n", nkeys,
           per_account, (now_ns() - t0) / 1e9);
    bench_store(ctx, "postgresql", opts, pgchecks);
}
#endif

int main(int argc, char **argv)
{
    static const struct option lo[] = {
        { "keys", required_argument, NULL, 'k' },
        { "keys-per-account", required_argument, NULL, 'A' },
        { "checks", required_argument, NULL, 'n' },
        { "pg-checks", required_argument, NULL, 'P' },
        { "working-set", required_argument, NULL, 'w' },
        { "sqlite", required_argument, NULL, 's' },
        { "pg", required_argument, NULL, 'p' },
        { NULL, 0, NULL, 0 },
    };
    const char *sqlite_path = NULL, *pg = NULL;
    kg_context *ctx;
    int64_t start = now_ns();
    int ch;

    while ((ch = getopt_long(argc, argv, "k:A:n:P:w:s:p:", lo, NULL)) != -1) {
        switch (ch) {
        case 'k': nkeys = atol(optarg); break;
        case 'A': per_account = atol(optarg); break;
        case 'n': nchecks = atol(optarg); break;
        case 'P': pgchecks = atol(optarg); break;
        case 'w': wset = atol(optarg); break;
        case 's': sqlite_path = optarg; break;
        case 'p': pg = optarg; break;
        default:
            fprintf(stderr, "usage: bench_sql [--keys N] [--keys-per-account A] [--checks M] [--pg-checks M] [--working-set W] "
                    "[--sqlite PATH] [--pg CONNINFO]\n");
            return 2;
        }
    }
    if (nkeys < 1 || nchecks < 100 || pgchecks < 100 || wset < 1 || wset > nkeys)
        die("arguments", "need keys >= working-set >= 1 and checks >= 100");
    if (getenv("BENCH_PERF_CTL") != NULL &&
        (perf_ctl = fopen(getenv("BENCH_PERF_CTL"), "w")) == NULL)
        die(getenv("BENCH_PERF_CTL"), "cannot open perf's control fifo");
    if (kg_context_new(&ctx) != KG_OK)
        die("context", "out of memory");
    make_keys();
    bench_memory(ctx);
#ifdef HAVE_SQLITE
    if (sqlite_path != NULL)
        load_sqlite(ctx, sqlite_path);
#endif
#ifdef HAVE_PQ
    if (pg != NULL)
        load_pg(ctx, pg);
#endif
    bench_memory(ctx);  /* again, to show the noise */
    unlink(keys_path);
    print_load("end");
    printf("the bench took %.0f s\n", (now_ns() - start) / 1e9);
    kg_context_free(ctx);
    if (perf_ctl != NULL)
        fclose(perf_ctl);
    free(keys);
    free(hexes);
    return 0;
}
