/*
 * sqlite.c - the SQLite driver of the sql keystore (libsqlite3).
 *
 * Each pooled connection is its own sqlite3 handle (opened NOMUTEX: the
 * pool hands a connection to one thread at a time).  The database runs in
 * WAL mode, so that lookups never wait for a writer (`keygate key
 * create` in another process) and writers wait for each other at most
 * busy_timeout.  A new database file is created with mode 0600.
 * Statements are prepared once per connection and kept, keyed by the
 * address of the plugin's static SQL text.
 *
 * Lookups reuse a read snapshot.  In WAL mode every read transaction
 * takes and drops a POSIX lock on the -shm file (two fcntl() calls), and
 * an empty WAL adds an fstat(): three system calls that were most of an
 * uncached lookup's time and much of its tail (a system call costs
 * microseconds on a paravirtualised VM).  So lite_read() leaves its read
 * transaction open after a lookup and the next lookup on the connection
 * runs inside it, with no system call at all, as long as the snapshot
 * is provably current: every commit by any connection of any process
 * rewrites the WAL-index header (the first 96 bytes of the -shm file,
 * mapped in every reader: https://www.sqlite.org/walformat.html, 2.1;
 * its change counter and last frame change with each transaction), so
 * a lookup compares that header with its copy taken before the snapshot
 * began, and starts a fresh transaction if it differs.  A revoke
 * committed by another process is therefore seen by the next lookup, as
 * before.  Any other statement (a write, a migration) first ends the
 * snapshot; the pool's keeper ends one that has been unused for
 * snapshot_idle, so that an idle connection never holds up checkpoints
 * (a reader's snapshot pins the WAL frames it may need).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "sql.h"

#define MAX_STMTS 64
#define MAX_COLS 32
/* The two copies of the WAL-index header at the start of the -shm file. */
#define WAL_HDR 96
/* Its first region, as SQLite's WAL maps it. */
#define WAL_REGION 32768

struct lite {
    sqlite3 *db;
    struct {
        const char *key;
        sqlite3_stmt *st;
    } stmts[MAX_STMTS];
    int nstmts;
    int reuse;                       /* snapshot_idle > 0 */
    const volatile unsigned char *walhdr;  /* in the mapped -shm; NULL: unknown */
    int snap_open;                   /* a read transaction is held open */
    unsigned char snap_hdr[WAL_HDR]; /* the header before it began */
    int64_t snap_used_ms;            /* when it last answered a lookup */
};

static int classify(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_DONE:
    case SQLITE_ROW:
        return SQL_OK;
    case SQLITE_BUSY:     /* busy_timeout has passed */
    case SQLITE_LOCKED:
        return SQL_TIMEOUT;
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
    case SQLITE_FULL:
    case SQLITE_PROTOCOL:
    case SQLITE_NOMEM:
        return SQL_DOWN;
    case SQLITE_CONSTRAINT:
        return SQL_CONSTRAINT;
    default:
        return SQL_ERROR;
    }
}

/* End the held read transaction, if any (it wrote nothing). */
static void end_snapshot(struct lite *l)
{
    if (!l->snap_open)
        return;
    l->snap_open = 0;
    if (!sqlite3_get_autocommit(l->db))
        sqlite3_exec(l->db, "ROLLBACK", NULL, NULL, NULL);
}

static void lite_close(void *conn)
{
    struct lite *l = conn;
    int i;
    if (l == NULL)
        return;
    end_snapshot(l);
    for (i = 0; i < l->nstmts; i++)
        sqlite3_finalize(l->stmts[i].st);
    sqlite3_close(l->db);
    free(l);
}

static void *lite_open(const struct sql_conf *conf, char *err, size_t errlen)
{
    struct lite *l = calloc(1, sizeof(*l));
    char *msg = NULL, pragmas[160];
    sqlite3_stmt *st = NULL;
    int rc, fd;

    if (l == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    /* Create the file ourselves, so that it is born 0600 (SQLite gives
     * its -wal and -shm files the same mode). */
    fd = open(conf->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0)
        close(fd);
    rc = sqlite3_open_v2(conf->path, &l->db,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                         SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "%s: cannot open the database: %s", conf->path,
                 l->db ? sqlite3_errmsg(l->db) : sqlite3_errstr(rc));
        goto fail;
    }
    sqlite3_extended_result_codes(l->db, 1);
    sqlite3_busy_timeout(l->db, (int)conf->busy_timeout_ms);
    /* journal_mode answers the mode in force: insist on WAL. */
    rc = sqlite3_prepare_v2(l->db, "PRAGMA journal_mode=WAL", -1, &st, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        snprintf(err, errlen, "%s: cannot switch to WAL mode: %s", conf->path,
                 sqlite3_errmsg(l->db));
        goto fail;
    }
    if (strcmp((const char *)sqlite3_column_text(st, 0), "wal") != 0) {
        snprintf(err, errlen, "%s: the database refuses WAL mode (journal "
                 "mode '%s'); it must be a file on a local file system",
                 conf->path, sqlite3_column_text(st, 0));
        goto fail;
    }
    sqlite3_finalize(st);
    st = NULL;
    /*
     * Reads through a memory map (no read() per page: the map costs
     * address space, not memory, and shares the OS page cache, so
     * pool_size connections do not multiply it); SQLite's own page cache
     * only holds pages read from the WAL.
     */
    snprintf(pragmas, sizeof(pragmas), "PRAGMA synchronous=FULL; "
             "PRAGMA mmap_size=%lld; PRAGMA cache_size=-8192",
             (long long)conf->mmap_size);
    l->reuse = conf->snapshot_idle_ms > 0;
    if (sqlite3_exec(l->db, pragmas, NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", conf->path, msg ? msg : "PRAGMA failed");
        sqlite3_free(msg);
        goto fail;
    }
    return l;
fail:
    sqlite3_finalize(st);
    lite_close(l);
    return NULL;
}

/* The plugin writes $1..$n; SQLite's numbered form is ?1..?n. */
static char *to_sqlite(const char *sql)
{
    char *out = strdup(sql), *p;
    if (out == NULL)
        return NULL;
    for (p = out; *p; p++)
        if (p[0] == '$' && p[1] >= '0' && p[1] <= '9')
            *p = '?';
    return out;
}

static sqlite3_stmt *prepare(struct lite *l, const char *sql, int *owned_r,
                             int *rc_r)
{
    sqlite3_stmt *st = NULL;
    char *text;
    int i;

    *owned_r = 0;
    for (i = 0; i < l->nstmts; i++)
        if (l->stmts[i].key == sql)
            return l->stmts[i].st;
    text = to_sqlite(sql);
    if (text == NULL) {
        *rc_r = SQLITE_NOMEM;
        return NULL;
    }
    *rc_r = sqlite3_prepare_v2(l->db, text, -1, &st, NULL);
    free(text);
    if (*rc_r != SQLITE_OK)
        return NULL;
    if (l->nstmts < MAX_STMTS) {
        l->stmts[l->nstmts].key = sql;
        l->stmts[l->nstmts].st = st;
        l->nstmts++;
    } else {
        *owned_r = 1;
    }
    return st;
}

/* One statement, in whatever transaction the connection is in. */
static int run_stmt(struct lite *l, const char *sql, int nparams,
                    const char *const *params, sql_row_cb cb, void *ud,
                    long *changes_r, char *err, size_t errlen)
{
    int owned, rc = SQLITE_OK, i, stop = 0;
    sqlite3_stmt *st = prepare(l, sql, &owned, &rc);

    if (st == NULL) {
        snprintf(err, errlen, "%s", sqlite3_errmsg(l->db));
        return classify(rc) == SQL_OK ? SQL_ERROR : classify(rc);
    }
    for (i = 0; i < nparams && rc == SQLITE_OK; i++) {
        if (params[i] == NULL)
            rc = sqlite3_bind_null(st, i + 1);
        else
            rc = sqlite3_bind_text(st, i + 1, params[i], -1, SQLITE_STATIC);
    }
    while (rc == SQLITE_OK || rc == SQLITE_ROW) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW && !stop) {
            const char *vals[MAX_COLS];
            int n = sqlite3_column_count(st), c;
            if (n > MAX_COLS)
                n = MAX_COLS;
            for (c = 0; c < n; c++)
                vals[c] = (const char *)sqlite3_column_text(st, c);
            if (cb != NULL && cb(ud, n, vals) != 0)
                stop = 1;
        }
        if (stop)
            break;
    }
    if (rc == SQLITE_ROW || rc == SQLITE_DONE)
        rc = SQLITE_OK;
    if (rc != SQLITE_OK)
        snprintf(err, errlen, "%s", sqlite3_errmsg(l->db));
    else if (changes_r != NULL)
        *changes_r = sqlite3_changes(l->db);
    if (owned) {
        sqlite3_finalize(st);
    } else {
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
    }
    return classify(rc);
}

static int lite_exec(void *conn, const char *sql, int nparams,
                     const char *const *params, sql_row_cb cb, void *ud,
                     long *changes_r, char *err, size_t errlen)
{
    struct lite *l = conn;
    end_snapshot(l);
    return run_stmt(l, sql, nparams, params, cb, ud, changes_r, err, errlen);
}

static int lite_script(void *conn, const char *sql, char *err, size_t errlen)
{
    struct lite *l = conn;
    char *msg = NULL;
    int rc;

    end_snapshot(l);
    rc = sqlite3_exec(l->db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK)
        snprintf(err, errlen, "%s", msg ? msg : sqlite3_errstr(rc));
    sqlite3_free(msg);
    return classify(rc);
}

/* The WAL-index header as it is now.  Copied with volatile loads after
 * an acquire fence: a commit that finished before this call is seen. */
static void read_walhdr(const struct lite *l, unsigned char out[WAL_HDR])
{
    int i;
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    for (i = 0; i < WAL_HDR; i++)
        out[i] = l->walhdr[i];
}

/* Find the mapped -shm region that holds the header: the connection's
 * WAL has mapped it by its first read, and keeps it until it closes. */
static void find_walhdr(struct lite *l)
{
    sqlite3_file *f = NULL;
    volatile void *p = NULL;

    if (sqlite3_file_control(l->db, "main", SQLITE_FCNTL_FILE_POINTER, &f) !=
        SQLITE_OK || f == NULL || f->pMethods == NULL ||
        f->pMethods->iVersion < 2 || f->pMethods->xShmMap == NULL)
        return;
    if (f->pMethods->xShmMap(f, 0, WAL_REGION, 0, &p) == SQLITE_OK && p != NULL)
        l->walhdr = p;
}

/*
 * A lookup: like lite_exec, but inside the connection's held read
 * snapshot when nothing has been committed since it began (see the top
 * of the file).  Only SELECTs come here.
 */
static int lite_read(void *conn, const char *sql, int nparams,
                     const char *const *params, sql_row_cb cb, void *ud,
                     char *err, size_t errlen)
{
    struct lite *l = conn;
    unsigned char now[WAL_HDR];
    int rc;

    if (!l->reuse)
        return lite_exec(conn, sql, nparams, params, cb, ud, NULL, err, errlen);
    if (l->walhdr != NULL) {
        read_walhdr(l, now);
        if (l->snap_open && memcmp(now, l->snap_hdr, WAL_HDR) != 0)
            end_snapshot(l);
        if (!l->snap_open) {
            /* The header copy is taken before the snapshot begins: a
             * commit in between makes the next lookup start afresh. */
            memcpy(l->snap_hdr, now, WAL_HDR);
            if (sqlite3_exec(l->db, "BEGIN", NULL, NULL, NULL) == SQLITE_OK)
                l->snap_open = 1;
        }
    }
    if (!l->snap_open) {
        /* No header (yet): a transaction of its own, then look again. */
        rc = lite_exec(conn, sql, nparams, params, cb, ud, NULL, err, errlen);
        if (rc == SQL_OK && l->walhdr == NULL)
            find_walhdr(l);
        return rc;
    }
    rc = run_stmt(l, sql, nparams, params, cb, ud, NULL, err, errlen);
    if (rc != SQL_OK)
        end_snapshot(l);
    else
        l->snap_used_ms = sql_now_ms();
    return rc;
}

static void lite_idle(void *conn, int64_t now_ms, int64_t idle_ms)
{
    struct lite *l = conn;
    if (l->snap_open && now_ms - l->snap_used_ms >= idle_ms)
        end_snapshot(l);
}

static int one_int(void *ud, int n, const char *const *v)
{
    *(int *)ud = n > 0 && v[0] ? atoi(v[0]) : 0;
    return 1;
}

static const char has_schema_sql[] =
    "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'keygate_schema'";
static const char version_sql[] =
    "SELECT COALESCE(MAX(version), 0) FROM keygate_schema";

static int lite_schema_version(void *conn, int *v, char *err, size_t errlen)
{
    int has = 0, rc;
    *v = 0;
    rc = lite_exec(conn, has_schema_sql, 0, NULL, one_int, &has, NULL, err, errlen);
    if (rc != SQL_OK || !has)
        return rc;
    return lite_exec(conn, version_sql, 0, NULL, one_int, v, NULL, err, errlen);
}

static void lite_describe(const struct sql_conf *conf, char *out, size_t size)
{
    snprintf(out, size, "sqlite %s", conf->path ? conf->path : "");
}

const struct sql_driver sql_driver_sqlite = {
    .name = "sqlite",
    .open = lite_open,
    .close = lite_close,
    .exec = lite_exec,
    .script = lite_script,
    .schema_version = lite_schema_version,
    .begin_migration = "BEGIN IMMEDIATE",
    .begin_write = "BEGIN IMMEDIATE",
    .read = lite_read,
    .idle = lite_idle,
    .describe = lite_describe,
};
