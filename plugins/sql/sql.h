/*
 * sql.h - the insides of the sql keystore plugin: the driver interface
 * that sqlite.c and postgresql.c implement, the connection pool
 * (pool.c), the last-used write-behind (touch.c), the migrations
 * (migrate.c), the options (options.c), records as rows (rows.c) and
 * the management operations (manage.c).  Nothing here is exported: the
 * module's only public symbol is its descriptor.
 *
 * The plugin speaks one SQL dialect: statements are written once, in
 * sql.c and manage.c, with PostgreSQL's $1..$n placeholders; the SQLite
 * driver maps them to ?1..?n.  Every value travels as text (NULL for SQL NULL) and
 * as a bound parameter, never spliced into a statement.
 */
#ifndef KEYGATE_SQL_H
#define KEYGATE_SQL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <keygate/plugin.h>
#include <keygate/modutil.h>

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
    /* Starts a write transaction (management: a key and its account). */
    const char *begin_write;
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
    /* The database's name in the operator's log: where it is, never a
     * password ("postgresql host=db1 port=5432 dbname=keygate"). */
    void (*describe)(const struct sql_conf *conf, char *out, size_t size);
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

/* ---- sql.c: the instance and its statements ---------------------------- */

struct sqlstore {
    kg_context *ctx;         /* the operator's log */
    char name[256];          /* the driver's describe() */
    struct sql_conf conf;
    struct sql_pool pool;
    int pool_ready;
    struct sql_touch *touch;
    struct sql_usage *usage;  /* a usage store (usage.c); NULL: a key store */
};

/* The columns of keygate_keys, in the order of a row (rows.c). */
#define SQL_COLS "id, key_hash, name, prefix, plan, status, permissions, " \
                 "allowed_cidrs, limits, created_at, expires_at, last_used_at, " \
                 "account_id, replaced_by, replaces"
#define SQL_NCOLS 15
/* The columns of keygate_accounts, in the order of a row (rows.c). */
#define SQL_ACCT_COLS "id, external_id, name, plan, limits, allowed_cidrs, " \
                      "permissions, status, created_at, updated_at, metadata"
#define SQL_ACCT_NCOLS 11
/*
 * A key with its account, in one statement (docs/plugins.md "Accounts":
 * one lookup per check): the SQL_COLS of the key, then the
 * SQL_ACCT_COLS of its account (NULLs if it has none).
 */
#define SQL_JOIN_COLS \
    "k.id, k.key_hash, k.name, k.prefix, k.plan, k.status, k.permissions, " \
    "k.allowed_cidrs, k.limits, k.created_at, k.expires_at, k.last_used_at, " \
    "k.account_id, k.replaced_by, k.replaces, a.id, a.external_id, a.name, a.plan, a.limits, " \
    "a.allowed_cidrs, a.permissions, a.status, a.created_at, a.updated_at, " \
    "a.metadata"
#define SQL_JOIN_FROM \
    "keygate_keys k LEFT JOIN keygate_accounts a ON a.id = k.account_id"

/*
 * Run one statement on a pooled connection (retried once on a fresh one
 * if the connection turns out dead).  An SQL_* code, err filled if not
 * SQL_OK.
 */
int sql_run(struct sqlstore *s, const char *sql, int n,
            const char *const *params, sql_row_cb cb, void *ud,
            long *changes_r, char *err, size_t errlen);
/* An SQL_* code as a kg_error, with the message in d. */
kg_error sql_to_kg(int rc, kg_diag *d, const char *err);
/* Free an instance, also a half-built one (the descriptor's destroy). */
void sql_destroy(void *inst);

/* ---- options.c -------------------------------------------------------- */

/* The `driver` option: which driver of those built (s->conf.driver). */
kg_error sql_pick_driver(kg_opts *o, struct sqlstore *s);
/* The other options, into s->conf and the out parameters (a usage
 * store's, `usage`, have no auto_migrate and last_used_*); what is
 * allocated is freed by the caller's destroy, also on error. */
kg_error sql_read_options(kg_opts *o, struct sqlstore *s, int usage,
                          int *auto_r, int64_t *interval_r,
                          int64_t *max_pending_r);
int sql_is_pg(const struct sql_driver *d);

/* ---- rows.c: records <-> rows ------------------------------------------ */

/*
 * The record of a row of SQL_COLS, or of SQL_JOIN_COLS (then with its
 * account attached, its plan the account's); NULL if it cannot be read.
 */
kg_record *sql_row_to_record(int n, const char *const *v);
/* The account of a row of SQL_ACCT_COLS; NULL if it cannot be read. */
kg_account *sql_row_to_account(int n, const char *const *v);

/* The record as the SQL_NCOLS text parameters of insert_sql / update_sql. */
struct sql_params {
    char hash[2 * KG_HASH_LEN + 1];
    char *perms, *cidrs, *limits;
    char created[24], expires[24], last_used[24];
    const char *v[SQL_NCOLS];
};

/* The account as the SQL_ACCT_NCOLS text parameters of its insert and
 * update (accounts.c). */
struct sql_acct_params {
    char *perms, *cidrs, *limits;
    char created[24], updated[24];
    const char *v[SQL_ACCT_NCOLS];
};

/* Fill p from r (each list one column, an item per line; an item with
 * a space or control character is refused); p->v then holds the
 * parameters.  p must be freed with sql_params_free even on error. */
kg_error sql_params_build(struct sql_params *p, const kg_record *r, kg_diag *d);
void sql_params_free(struct sql_params *p);
/* Fill p from a (as sql_params_build); freed with sql_acct_params_free. */
kg_error sql_acct_params_build(struct sql_acct_params *p, const kg_account *a,
                               kg_diag *d);
void sql_acct_params_free(struct sql_acct_params *p);

/* One row into o->rec (o->bad: it could not be read); a sql_row_cb. */
struct sql_one {
    kg_record *rec;
    int bad;
};
int sql_one_row(void *ud, int n, const char *const *v);

/* ---- manage.c: the management operations ------------------------------ */

kg_error sql_store_get(void *inst, const char *id, kg_record **rec_r,
                       kg_diag *diag);
kg_error sql_store_list(void *inst, kg_record_cb cb, void *ud, kg_diag *diag);
kg_error sql_store_key_page(void *inst, const char *account_id, const char *after,
                            size_t limit, kg_record_cb cb, void *ud, kg_diag *diag);
kg_error sql_store_put(void *inst, const kg_record *r, int create,
                       kg_diag *diag);
kg_error sql_store_migrate(void *inst, int apply, int *from_r, int *to_r,
                           kg_diag *diag);

/* ---- audit.c: the audit log (keygate_audit, migration 006) ------------- */

kg_error sql_audit_append(void *inst, const kg_audit_record *r, kg_diag *diag);
kg_error sql_audit_query(void *inst, const kg_audit_query *q, kg_audit_cb cb,
                         void *ud, kg_diag *diag);

/* One statement of a transaction (sql_tx_*), with an SQL_* answer. */
struct sql_tx {
    struct sqlstore *s;
    struct sql_conn *c;
    int rc;              /* the first failure; SQL_OK so far */
    char err[512];
};
/*
 * A write transaction on one pooled connection (the driver's
 * begin_write: on SQLite it takes the write lock at once, so that two
 * writers never deadlock upgrading).  sql_tx_exec runs a statement
 * unless one failed before (then it answers that failure again);
 * sql_tx_end commits if `commit` and nothing failed, else rolls back,
 * and gives the connection back.  Each answers an SQL_* code.
 */
int sql_tx_begin(struct sqlstore *s, struct sql_tx *t);
int sql_tx_exec(struct sql_tx *t, const char *sql, int n,
                const char *const *params, sql_row_cb cb, void *ud,
                long *changes_r);
int sql_tx_end(struct sql_tx *t, int commit);
/* A sql_row_cb: the first column of the first row as a long long
 * (*(long long *)ud; stays as it was if there is no row). */
int sql_one_ll(void *ud, int n, const char *const *v);

/* ---- accounts.c: the account operations (docs/plugins.md "Accounts") -- */

kg_error sql_account_get(void *inst, const char *id, kg_account **a_r,
                         kg_diag *diag);
kg_error sql_account_list(void *inst, kg_account_cb cb, void *ud,
                          kg_diag *diag);
kg_error sql_account_page(void *inst, const char *after, size_t limit,
                          kg_account_cb cb, void *ud, kg_diag *diag);
kg_error sql_account_put(void *inst, const kg_account *a, int create,
                         kg_diag *diag);
kg_error sql_account_delete(void *inst, const char *id, int with_keys,
                            kg_diag *diag);
/* In t: give the key record r an account of its own (acct_ + its id
 * after k_, a suffix if taken; its name, plan and created; its limit
 * overrides), as migration 003 does; its id into id_out. */
kg_error sql_account_of_its_own(struct sql_tx *t, const kg_record *r,
                                char *id_out, size_t idlen, kg_diag *diag);

/* ---- touch.c: last_used_at written behind ------------------------------ */

struct sql_touch;
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

/* ---- usage.c: the usage store (docs/sql.md "Usage") -------------------- */

struct sql_usage;
extern const struct kg_usage_ops sql_usage_ops;
/* The alerts' outbox in the usage store (outbox.c). */
extern const struct kg_outbox_ops sql_outbox_ops;
/* Make s (options read, pool ready) a usage store: its retention
 * options, its schema migrated, found writable (else an error at the
 * option's place). */
kg_error sql_usage_create(kg_opts *o, struct sqlstore *s);
void sql_usage_free(struct sql_usage *u);

#endif
