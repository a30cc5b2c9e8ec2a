/*
 * bench_usage - how long the sql usage store takes to write one flush:
 * --rows N (default 100,000) distinct (account, key, minute) rows, 10
 * keys an account, all in one minute (the worst case for the rollups:
 * each row is also a new hour and a new day row, 3N rows written), and
 * --events E (default 1,000) events, through the store's write() (the
 * plugin's sources are linked in, as in tests/unit/check_sql_usage).
 *
 *   first    into empty tables: every row inserted
 *   again    the same rows once more: every row an update (count added),
 *            the steady state of a minute flushed every few seconds
 *   next     the next minute's rows: new minute rows, updated hours and days
 *
 * each --rounds R times (default 3) into a fresh database, median and
 * best reported.  SQLite (--sqlite PATH, a file that is replaced) and/or
 * PostgreSQL (--pg CONNINFO, password from $PGPASSWORD; its usage tables
 * are dropped first).  bench/usage/run.sh starts a PostgreSQL and runs it.
 */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "plugins/sql/usage.h"

#define T0 INT64_C(1799971200)

static long nrows = 100000, nevents = 1000, rounds = 3;
static kg_usage_row *rows;
static kg_usage_event *events;
static kg_context *ctx;

static double clock_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* This process's CPU time of the last timed_write (SQLite works in it;
 * PostgreSQL's server does not count). */
static double last_cpu;

static void make_rows(void)
{
    long i;
    rows = calloc((size_t)nrows, sizeof(*rows));
    events = calloc((size_t)(nevents ? nevents : 1), sizeof(*events));
    if (rows == NULL || events == NULL)
        exit(1);
    for (i = 0; i < nrows; i++) {
        char a[32], k[32];
        snprintf(a, sizeof(a), "acct_%08ld", i / 10);
        snprintf(k, sizeof(k), "k_%010ld", i);
        rows[i].start = T0;
        rows[i].span = 60;
        rows[i].account_id = strdup(a);
        rows[i].key_id = strdup(k);
        rows[i].code = i % 50 == 0 ? KG_CODE_RATE_LIMITED : KG_CODE_NONE;
        rows[i].count = 1 + i % 7;
    }
    for (i = 0; i < nevents; i++) {
        events[i].time_ms = T0 * 1000 + i;
        events[i].account_id = rows[i % nrows].account_id;
        events[i].key_id = rows[i % nrows].key_id;
        events[i].key_prefix = "whizo_Ab";
        events[i].client = "203.0.113.7";
        events[i].method = "GET";
        events[i].path = "/v1/scrape?url=https%3A%2F%2Fexample.com";
        events[i].decided_by = "fixed_window";
        events[i].status = 429;
        events[i].code = KG_CODE_RATE_LIMITED;
    }
}

static struct sqlstore *open_store(const struct sql_driver *drv, const char *where)
{
    struct sqlstore *s = calloc(1, sizeof(*s));
    kg_diag d;
    int reached;
    kg_error e;

    s->ctx = ctx;
    s->conf.driver = drv;
    if (sql_is_pg(drv)) {
        s->conf.conninfo = strdup(where);
        if (getenv("PGPASSWORD"))
            s->conf.password = strdup(getenv("PGPASSWORD"));
        s->conf.connect_timeout_s = 5;
        s->conf.statement_timeout_ms = 60000;
    } else {
        s->conf.path = strdup(where);
        s->conf.busy_timeout_ms = 5000;
        s->conf.mmap_size = 1LL << 30;
    }
    s->conf.pool_size = 2;
    s->conf.pool_wait_ms = 5000;
    drv->describe(&s->conf, s->name, sizeof(s->name));
    if (sql_pool_init(&s->pool, &s->conf) != 0)
        exit(1);
    s->pool_ready = 1;
    memset(&d, 0, sizeof(d));
    if ((e = sql_usage_attach(s, sql_usage_keep_default, &reached, &d)) != KG_OK) {
        fprintf(stderr, "bench_usage: %s: %s\n", s->name, d.message);
        exit(1);
    }
    return s;
}

static double timed_write(struct sqlstore *s, int64_t minute)
{
    kg_diag d;
    double t;
    long i;
    kg_error e;

    for (i = 0; i < nrows; i++)
        rows[i].start = minute;
    memset(&d, 0, sizeof(d));
    last_cpu = clock_s(CLOCK_PROCESS_CPUTIME_ID);
    t = clock_s(CLOCK_MONOTONIC);
    e = sql_usage_ops.write(s, rows, (size_t)nrows, events, (size_t)nevents,
                            T0 + 3600, &d);
    t = clock_s(CLOCK_MONOTONIC) - t;
    last_cpu = clock_s(CLOCK_PROCESS_CPUTIME_ID) - last_cpu;
    if (e != KG_OK) {
        fprintf(stderr, "bench_usage: write: %s: %s\n", kg_strerror(e), d.message);
        exit(1);
    }
    return t;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void report(const char *db, const char *what, double *t, double *cpu)
{
    qsort(t, (size_t)rounds, sizeof(*t), cmp_d);
    qsort(cpu, (size_t)rounds, sizeof(*cpu), cmp_d);
    printf("%-10s %-6s %7ld rows %5ld events: wall median %6.3f s best %6.3f s"
           "; this process's CPU median %6.3f s\n", db, what, nrows, nevents,
           t[rounds / 2], t[0], cpu[rounds / 2]);
}

static void drop_all(struct sqlstore *s)
{
    struct sql_conn *c;
    char err[512];
    int fresh;
    if (sql_pool_get(&s->pool, &c, &fresh, err, sizeof(err)) != SQL_OK)
        exit(1);
    s->conf.driver->script(c->h, "DROP TABLE IF EXISTS keygate_usage_minute, "
                           "keygate_usage_hour, keygate_usage_day, "
                           "keygate_usage_events, keygate_usage_state, "
                           "keygate_keys, keygate_accounts, keygate_schema CASCADE",
                           err, sizeof(err));
    sql_pool_put(&s->pool, c, 1);
}

static void bench(const struct sql_driver *drv, const char *where)
{
    double first[16], again[16], next[16], cfirst[16], cagain[16], cnext[16];
    long r;

    for (r = 0; r < rounds; r++) {
        struct sqlstore *s;
        if (sql_is_pg(drv)) {
            s = open_store(drv, where);
            drop_all(s);
            sql_destroy(s);
        } else {
            char *wal = malloc(strlen(where) + 8);
            unlink(where);
            sprintf(wal, "%s-wal", where);
            unlink(wal);
            sprintf(wal, "%s-shm", where);
            unlink(wal);
            free(wal);
        }
        s = open_store(drv, where);
        first[r] = timed_write(s, T0);
        cfirst[r] = last_cpu;
        again[r] = timed_write(s, T0);
        cagain[r] = last_cpu;
        next[r] = timed_write(s, T0 + 60);
        cnext[r] = last_cpu;
        sql_destroy(s);
    }
    report(drv->name, "first", first, cfirst);
    report(drv->name, "again", again, cagain);
    report(drv->name, "next", next, cnext);
}

int main(int argc, char **argv)
{
    const char *sqlite = NULL, *pgc = NULL;
    int c;
    static const struct option lo[] = {
        { "rows", 1, NULL, 'r' }, { "events", 1, NULL, 'e' },
        { "rounds", 1, NULL, 'n' }, { "sqlite", 1, NULL, 's' },
        { "pg", 1, NULL, 'p' }, { NULL, 0, NULL, 0 },
    };

    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'r': nrows = atol(optarg); break;
        case 'e': nevents = atol(optarg); break;
        case 'n': rounds = atol(optarg); break;
        case 's': sqlite = optarg; break;
        case 'p': pgc = optarg; break;
        default:
            fprintf(stderr, "usage: bench_usage [--rows N] [--events E] "
                    "[--rounds R] [--sqlite PATH] [--pg CONNINFO]\n");
            return 2;
        }
    }
    if (nrows < 1 || rounds < 1 || rounds > 16 || nevents < 0)
        return 2;
    if (kg_context_new(&ctx) != KG_OK)
        return 1;
    make_rows();
#ifdef HAVE_SQLITE
    if (sqlite != NULL)
        bench(&sql_driver_sqlite, sqlite);
#endif
#ifdef HAVE_PQ
    if (pgc != NULL)
        bench(&sql_driver_postgresql, pgc);
#endif
    kg_context_free(ctx);
    return 0;
}
