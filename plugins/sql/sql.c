/*
 * sql - keystore plugin: key records in an SQL database, SQLite
 * (embedded, one file) or PostgreSQL (shared by several keygated).
 *
 *   keystore:
 *     - module: sql
 *       control: required
 *       cache: {ttl: 5s, negative_ttl: 1s}   # revocation reaches every
 *                                            # instance within ttl
 *       options:
 *         driver: sqlite                     # or postgresql
 *         path: ${KEYGATE_STATE_DIR}/keys.db # sqlite
 *         conninfo: "host=db1,db2 dbname=keygate user=keygate"  # postgresql
 *         password: ${KEYGATE_DB_PASSWORD}   # or password_file: FILE
 *
 * (all options: docs/sql.md).  One schema (conf/sql/), one set of
 * statements (here, manage.c and accounts.c), one driver file per
 * database.  A lookup is one statement: a probe of the unique index on
 * key_hash, with the hash as a bound parameter, joined with the key's
 * account by its primary key (docs/sql.md "Accounts").  A database that is down, busy or slow makes a lookup
 * answer UNAVAILABLE, never FAIL: the core then serves the keys it has
 * cached and answers 503 for the others.  last_used_at is written
 * behind (touch.c).
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sql.h"

#define SQL_SCHEMA 100  /* the connection's schema is not this build's */

/* ---- statements --------------------------------------------------------- */

/* The key with its account: one statement, one probe of each table. */
static const char lookup_sql[] =
    "SELECT " SQL_JOIN_COLS " FROM " SQL_JOIN_FROM " WHERE k.key_hash = $1";
static const char touch_sql[] =
    "UPDATE keygate_keys SET last_used_at = $2 WHERE id = $1 AND "
    "(last_used_at IS NULL OR last_used_at < $2)";

/* ---- running statements ------------------------------------------------ */

/* The connection must speak this build's schema (re-read if not: a
 * `keygate db migrate` may have run since it was opened). */
static int schema_ok(struct sqlstore *s, struct sql_conn *c, char *err,
                     size_t errlen)
{
    int v, rc;
    if (c->schema == sql_schema_latest())
        return SQL_OK;
    rc = s->conf.driver->schema_version(c->h, &v, err, errlen);
    if (rc != SQL_OK)
        return rc;
    c->schema = v;
    if (v == sql_schema_latest())
        return SQL_OK;
    if (v > sql_schema_latest())
        snprintf(err, errlen, "the database schema is at version %d, newer "
                 "than this keygate knows (%d): upgrade keygate", v,
                 sql_schema_latest());
    else
        snprintf(err, errlen, "the database schema is at version %d, this "
                 "keygate needs %d: run `keygate db migrate`", v,
                 sql_schema_latest());
    return SQL_SCHEMA;
}

/*
 * One statement on a pooled connection.  A connection that turns out
 * dead (the server restarted since it was last used) is replaced and
 * the statement retried once on a fresh one.  `lookup`: a read on the
 * request path, which the driver may answer from a held read snapshot.
 */
static int run_stmt(struct sqlstore *s, int lookup, const char *sql, int n,
                    const char *const *params, sql_row_cb cb, void *ud,
                    long *changes_r, char *err, size_t errlen)
{
    const struct sql_driver *drv = s->conf.driver;
    int attempt, rc = SQL_DOWN;

    for (attempt = 0; attempt < 2; attempt++) {
        struct sql_conn *c;
        int fresh;
        rc = sql_pool_get(&s->pool, &c, &fresh, err, errlen);
        if (rc != SQL_OK)
            return rc;
        rc = schema_ok(s, c, err, errlen);
        if (rc == SQL_OK && lookup && drv->read != NULL)
            rc = drv->read(c->h, sql, n, params, cb, ud, err, errlen);
        else if (rc == SQL_OK)
            rc = drv->exec(c->h, sql, n, params, cb, ud, changes_r, err, errlen);
        sql_pool_put(&s->pool, c, SQL_UNAVAILABLE(rc));
        /* Only a lost connection is retried: a timeout would just cost
         * the caller twice the time. */
        if (rc != SQL_DOWN || fresh)
            break;
    }
    return rc;
}

int sql_run(struct sqlstore *s, const char *sql, int n,
            const char *const *params, sql_row_cb cb, void *ud,
            long *changes_r, char *err, size_t errlen)
{
    return run_stmt(s, 0, sql, n, params, cb, ud, changes_r, err, errlen);
}

int sql_tx_begin(struct sqlstore *s, struct sql_tx *t)
{
    const struct sql_driver *drv = s->conf.driver;
    int attempt, fresh;

    t->s = s;
    t->c = NULL;
    t->err[0] = '\0';
    for (attempt = 0; attempt < 2; attempt++) {
        t->rc = sql_pool_get(&s->pool, &t->c, &fresh, t->err, sizeof(t->err));
        if (t->rc != SQL_OK) {
            t->c = NULL;
            return t->rc;
        }
        t->rc = schema_ok(s, t->c, t->err, sizeof(t->err));
        if (t->rc == SQL_OK)
            t->rc = drv->script(t->c->h, drv->begin_write, t->err, sizeof(t->err));
        if (t->rc == SQL_OK)
            return SQL_OK;
        sql_pool_put(&s->pool, t->c, SQL_UNAVAILABLE(t->rc));
        t->c = NULL;
        /* A connection found dead before anything was written: once more
         * on a fresh one, as a single statement is. */
        if (t->rc != SQL_DOWN || fresh)
            break;
    }
    return t->rc;
}

int sql_tx_exec(struct sql_tx *t, const char *sql, int n,
                const char *const *params, sql_row_cb cb, void *ud,
                long *changes_r)
{
    if (t->rc == SQL_OK)
        t->rc = t->s->conf.driver->exec(t->c->h, sql, n, params, cb, ud,
                                        changes_r, t->err, sizeof(t->err));
    return t->rc;
}

int sql_tx_end(struct sql_tx *t, int commit)
{
    const struct sql_driver *drv = t->s->conf.driver;
    char err2[256];

    if (t->c == NULL)
        return t->rc;
    if (commit && t->rc == SQL_OK)
        t->rc = drv->script(t->c->h, "COMMIT", t->err, sizeof(t->err));
    if (!commit || t->rc != SQL_OK)
        drv->script(t->c->h, "ROLLBACK", err2, sizeof(err2));
    sql_pool_put(&t->s->pool, t->c, SQL_UNAVAILABLE(t->rc));
    t->c = NULL;
    return t->rc;
}

kg_error sql_to_kg(int rc, kg_diag *d, const char *err)
{
    switch (rc) {
    case SQL_OK:
        return KG_OK;
    case SQL_DOWN:
    case SQL_TIMEOUT:
        kg_diag_set(d, "the key database is unavailable: %s", err);
        return KG_ERR_UNAVAILABLE;
    case SQL_CONSTRAINT:
        kg_diag_set(d, "the key database refused the record: %s", err);
        return KG_ERR_EXISTS;
    default:
        kg_diag_set(d, "%s", err);
        return KG_ERR_IO;
    }
}

/* ---- keystore operations ----------------------------------------------- */

static kg_result sql_lookup(void *inst, kg_call *call,
                            const unsigned char hash[KG_HASH_LEN],
                            kg_record **rec_r)
{
    struct sqlstore *s = inst;
    char hex[2 * KG_HASH_LEN + 1], err[512];
    const char *params[1] = { hex };
    struct sql_one o = { NULL, 0 };
    int rc;

    /* PostgreSQL is a server that may hang: a check that may not wait
     * (keygated's HTTP threads) hands this lookup on.  SQLite is a local
     * file, read as it always is. */
    if (sql_is_pg(s->conf.driver) && kg_call_would_block(call))
        return KG_RESULT_UNAVAILABLE;
    kg_hash_to_hex(hash, hex);
    rc = run_stmt(s, 1, lookup_sql, 1, params, sql_one_row, &o, NULL, err,
                  sizeof(err));
    kg_wipe(hex, sizeof(hex));
    if (rc != SQL_OK || o.bad) {
        /* Down, slow, or a row this build cannot read: no answer, which
         * is not the same as "no such key".  The operator hears why. */
        kg_context_log_backend(s->ctx, s->name, "%s", rc != SQL_OK ? err
                               : "a key's row could not be read (a newer "
                                 "schema, or a row written by hand?)");
        kg_record_unref(o.rec);
        return KG_RESULT_UNAVAILABLE;
    }
    if (o.rec == NULL)
        return KG_RESULT_FAIL;
    if (!kg_hash_equal(kg_record_hash(o.rec), hash)) {
        kg_record_unref(o.rec);
        return KG_RESULT_FAIL;
    }
    *rec_r = o.rec;
    return KG_RESULT_OK;
}

int sql_store_write_last_used(struct sqlstore *s, size_t n,
                              const char *const *ids, const int64_t *whens)
{
    const struct sql_driver *drv = s->conf.driver;
    struct sql_conn *c;
    char err[512];
    int fresh, rc;
    size_t i;

    if ((rc = sql_pool_get(&s->pool, &c, &fresh, err, sizeof(err))) != SQL_OK)
        return -1;
    rc = schema_ok(s, c, err, sizeof(err));
    if (rc == SQL_OK)
        rc = drv->script(c->h, "BEGIN", err, sizeof(err));
    for (i = 0; i < n && rc == SQL_OK; i++) {
        char when[24];
        const char *params[2] = { ids[i], when };
        snprintf(when, sizeof(when), "%lld", (long long)whens[i]);
        rc = drv->exec(c->h, touch_sql, 2, params, NULL, NULL, NULL, err,
                       sizeof(err));
    }
    if (rc == SQL_OK)
        rc = drv->script(c->h, "COMMIT", err, sizeof(err));
    else if (rc != SQL_SCHEMA)
        drv->script(c->h, "ROLLBACK", err, sizeof(err));
    sql_pool_put(&s->pool, c, SQL_UNAVAILABLE(rc));
    return rc == SQL_OK ? 0 : -1;
}

static void sql_touch(void *inst, const kg_record *rec, int64_t when)
{
    struct sqlstore *s = inst;
    sql_touch_note(s->touch, kg_record_id(rec), kg_record_last_used(rec), when);
}

static kg_error sql_reload(void *inst, kg_diag *diag)
{
    struct sqlstore *s = inst;
    (void)diag;
    sql_touch_flush(s->touch);
    sql_pool_drop_idle(&s->pool);
    return KG_OK;
}

/* ---- instances ----------------------------------------------------------- */

void sql_destroy(void *inst)
{
    struct sqlstore *s = inst;
    if (s == NULL)
        return;
    sql_touch_free(s->touch);  /* flushes what is pending */
    if (s->pool_ready)
        sql_pool_destroy(&s->pool);
    sql_usage_free(s->usage);
    free(s->conf.path);
    free(s->conf.conninfo);
    kg_modutil_wipe_free(s->conf.password);
    free(s->conf.sslmode);
    free(s->conf.sslrootcert);
    free(s);
}

static kg_error sql_create(kg_opts *o, void **inst_r)
{
    struct sqlstore *s = calloc(1, sizeof(*s));
    int usage = kg_opts_section(o) == KG_PLUGIN_USAGE;
    int auto_migrate = 0, fresh, rc;
    int64_t interval = 60, max_pending = 100000;
    struct sql_conn *c;
    char err[512] = "";
    kg_error e;

    if (s == NULL)
        return KG_ERR_NOMEM;
    s->ctx = kg_opts_context(o);
    if ((e = sql_pick_driver(o, s)) != KG_OK ||
        (e = sql_read_options(o, s, usage, &auto_migrate, &interval,
                              &max_pending)) != KG_OK)
        goto fail;
    s->conf.driver->describe(&s->conf, s->name, sizeof(s->name));
    if (sql_pool_init(&s->pool, &s->conf) != 0) {
        e = KG_ERR_NOMEM;
        goto fail;
    }
    s->pool_ready = 1;
    /* PostgreSQL's lookups (kg_call_would_block first) and flushes wait
     * on the network; SQLite's read and write a local file. */
    if (sql_is_pg(s->conf.driver))
        kg_opts_may_wait(o, 0);
    if (usage) {
        /* the usage: section (usage.c) */
        if ((e = sql_usage_create(o, s)) != KG_OK)
            goto fail;
        *inst_r = s;
        return KG_OK;
    }
    /*
     * Look at the database now.  SQLite is a local file: not opening it is
     * a configuration error.  PostgreSQL may be down while keygated starts:
     * then the pool connects later and lookups answer unavailable
     * meanwhile.  A schema newer than this build is refused either way.
     */
    rc = sql_pool_get(&s->pool, &c, &fresh, err, sizeof(err));
    if (rc == SQL_OK) {
        int from = 0, to = 0;
        if (c->schema > sql_schema_latest()) {
            sql_pool_put(&s->pool, c, 0);
            e = kg_opts_error(o, NULL, "the database schema is at version %d, "
                              "newer than this keygate knows (%d): upgrade "
                              "keygate", c->schema, sql_schema_latest());
            goto fail;
        }
        if (auto_migrate && c->schema < sql_schema_latest()) {
            e = sql_migrate(s->conf.driver, c->h, 1, &from, &to, err, sizeof(err));
            if (e == KG_OK)
                c->schema = to;
        }
        sql_pool_put(&s->pool, c, 0);
        if (e != KG_OK) {
            e = kg_opts_error(o, NULL, "%s", err);
            goto fail;
        }
    } else if (sql_is_pg(s->conf.driver)) {
        /* postgresql: carry on, connect later */
    } else {
        e = kg_opts_error(o, "path", "%s", err);
        goto fail;
    }
    if (sql_pool_keep(&s->pool, s->conf.snapshot_idle_ms) != 0) {
        e = KG_ERR_NOMEM;
        goto fail;
    }
    if (interval > 0) {
        s->touch = sql_touch_new(s, interval, (size_t)max_pending);
        if (s->touch == NULL) {
            e = KG_ERR_NOMEM;
            goto fail;
        }
    }
    *inst_r = s;
    return KG_OK;
fail:
    sql_destroy(s);
    return e;
}

static const struct kg_keystore_ops sql_ops = {
    .lookup = sql_lookup,
    .get = sql_store_get,
    .list = sql_store_list,
    .put = sql_store_put,
    .reload = sql_reload,
    .touch = sql_touch,
    .migrate = sql_store_migrate,
    .account_get = sql_account_get,
    .account_list = sql_account_list,
    .account_put = sql_account_put,
    .account_delete = sql_account_delete,
    .audit_append = sql_audit_append,
    .audit_query = sql_audit_query,
    .account_page = sql_account_page,
    .key_page = sql_store_key_page,
};

KG_PLUGIN_DEFINE(sql) = {
    KG_PLUGIN_HEADER,
    .kind = KG_PLUGIN_KEYSTORE,
    .name = "sql",
    .description = "key records (hashes only) and usage in SQLite or PostgreSQL",
    .create = sql_create,
    .destroy = sql_destroy,
    .keystore = &sql_ops,
    .usage = &sql_usage_ops,
};
