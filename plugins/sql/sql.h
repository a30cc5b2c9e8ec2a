/*
 * sql.h - the insides of the sql keystore plugin: the driver interface
 * that sqlite.c and postgresql.c implement, the connection pool
 * (pool.c), the last-used write-behind (touch.c) and the migrations
 * (migrate.c).  Nothing here is exported: the module's only public
 * symbol is its descriptor.
 *
 * The plugin speaks one SQL dialect: statements are written once, in
 * sql.c, with PostgreSQL's $1..$n placeholders; the SQLite driver maps
 * them to ?1..?n.  Every value travels as text (NULL for SQL NULL) and
 * as a bound parameter, never spliced into a statement.
 */
#ifndef KEYGATE_SQL_H
#define KEYGATE_SQL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <keygate/plugin.h>

/* What a driver call answers. */
enum {
    SQL_OK = 0,
    SQL_DOWN,        /* connection lost, timed out or busy: try later */
    SQL_CONSTRAINT,  /* a unique or check constraint refused the row */
    SQL_ERROR,       /* the statement itself failed (bug, wrong schema) */
    SQL_TIMEOUT      /* no answer within the timeout: like SQL_DOWN, but
                      * not worth an immediate retry */
};
/* The database could not answer (the connection is not worth keeping). */
#define SQL_UNAVAILABLE(rc) ((rc) == SQL_DOWN || (rc) == SQL_TIMEOUT)

/* Called for each result row; values are NUL-terminated text or NULL.
 * Return non-zero to stop reading rows. */
typedef int (*sql_row_cb)(void *ud, int ncols, const char *const *vals);

struct sql_conf;

struct sql_driver {
    const char *name;
    /* Open a connection.  NULL with err filled on failure (never with a
     * password in it). */
    void *(*open)(const struct sql_conf *conf, char *err, size_t errlen);
    void (*close)(void *conn);
    /*
     * Run one statement with text parameters.  `sql` is one of the
     * plugin's static strings: drivers may cache a prepared statement
     * keyed by its address.  *changes_r (may be NULL) gets the number
     * of rows written.
     */
    int (*exec)(void *conn, const char *sql, int nparams,
                const char *const *params, sql_row_cb cb, void *ud,
                long *changes_r, char *err, size_t errlen);
    /* Run a script of several statements, no parameters (migrations). */
    int (*script)(void *conn, const char *sql, char *err, size_t errlen);
    /* The schema version recorded in keygate_schema (0: no table). */
    int (*schema_version)(void *conn, int *version_r, char *err,
                          size_t errlen);
    /* Starts the migration transaction, serialised across processes. */
    const char *begin_migration;
    /*
     * Optional (NULL: exec is used).  Like exec, for a read-only
     * statement on the request path (the key lookup): the driver may
     * answer it from a read snapshot it keeps open between calls, as
     * long as that snapshot is provably current (sqlite.c).
     */
    int (*read)(void *conn, const char *sql, int nparams,
                const char *const *params, sql_row_cb cb, void *ud,
                char *err, size_t errlen);
    /* Optional: called for an idle connection now and then (the pool's
     * keeper); releases what the driver holds open after idle_ms unused. */
    void (*idle)(void *conn, int64_t now_ms, int64_t idle_ms);
};

extern const struct sql_driver sql_driver_sqlite;
extern const struct sql_driver sql_driver_postgresql;

/* The options of a policy line, as the drivers need them. */
struct sql_conf {
    const struct sql_driver *driver;
    /* sqlite */
    char *path;
    int64_t busy_timeout_ms;
    int64_t snapshot_idle_ms;  /* 0: a read transaction per lookup */
    int64_t mmap_size;
    /* postgresql */
    char *conninfo;
    char *password;          /* wiped on free */
    char *sslmode;
    char *sslrootcert;
    int64_t connect_timeout_s;
    int64_t statement_timeout_ms;
    /* the pool */
    int pool_size;
    int64_t pool_wait_ms;
    int64_t reconnect_delay_ms;
};

/* ---- pool.c ----------------------------------------------------------- */

struct sql_conn {
    void *h;              /* the driver's handle; NULL: not connected */
    int schema;           /* schema version seen when it was opened */
    int busy;
};

struct sql_pool {
    const struct sql_conf *conf;
    pthread_mutex_t lock;
    pthread_cond_t freed;
    struct sql_conn *conns;
    int n;
    int64_t down_until_ms;  /* after a failed connect: fail fast until then */
    char last_error[512];
    /* the keeper thread (sql_pool_keep) */
    pthread_t keeper;
    pthread_cond_t keeper_wake;
    int keeper_started, keeper_stop;
    int64_t keeper_idle_ms;
};

int sql_pool_init(struct sql_pool *p, const struct sql_conf *conf);
void sql_pool_destroy(struct sql_pool *p);
/*
 * Take a connection, opening it if needed (and checking its schema
 * version).  SQL_DOWN if none came free within pool_wait_ms, or the
 * database cannot be reached (err says why).
 */
int sql_pool_get(struct sql_pool *p, struct sql_conn **c_r, int *fresh_r,
                 char *err, size_t errlen);
/* Give it back; `broken` closes it (the next user reconnects). */
void sql_pool_put(struct sql_pool *p, struct sql_conn *c, int broken);
/* Close every idle connection (reload: re-resolve hosts, pick up a
 * failed-over primary). */
void sql_pool_drop_idle(struct sql_pool *p);
/*
 * Start a thread that hands each idle connection to the driver's idle()
 * every idle_ms / 2, so that what a driver keeps open between calls (a
 * read snapshot) never outlives idle_ms by much.  Stopped by
 * sql_pool_destroy.  0, or -1 if no thread could be started.
 */
int sql_pool_keep(struct sql_pool *p, int64_t idle_ms);
int64_t sql_now_ms(void);

/* ---- migrate.c -------------------------------------------------------- */

/* The newest schema version this build knows. */
int sql_schema_latest(void);
/*
 * Bring the schema to sql_schema_latest() (apply=0: only report).
 * KG_ERR_INVALID if the database is newer than this build.
 */
kg_error sql_migrate(const struct sql_driver *drv, void *conn, int apply,
                     int *from_r, int *to_r, char *err, size_t errlen);

/* ---- touch.c: last_used_at written behind ------------------------------ */

struct sql_touch;
struct sqlstore;
/* Flush every `interval_s` seconds from a thread of its own. */
struct sql_touch *sql_touch_new(struct sqlstore *s, int64_t interval_s,
                                size_t max_pending);
/* Stop the thread after a last flush. */
void sql_touch_free(struct sql_touch *t);
/* Never blocks on the database: records (id, when) in memory. */
void sql_touch_note(struct sql_touch *t, const char *id, int64_t last_used,
                    int64_t when);
/* Write what is pending now (reload, shutdown). */
void sql_touch_flush(struct sql_touch *t);

/* sql.c: write a batch of last-used times in one transaction. */
int sql_store_write_last_used(struct sqlstore *s, size_t n,
                              const char *const *ids, const int64_t *whens);

#endif
