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
 * statements (here), one driver file per database.  A lookup is one
 * probe of the unique index on key_hash, with the hash as a bound
 * parameter.  A database that is down, busy or slow makes a lookup
 * answer UNAVAILABLE, never FAIL: the core then serves the keys it has
 * cached and answers 503 for the others.  last_used_at is written
 * behind (touch.c).
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sql.h"

#define SQL_SCHEMA 100  /* the connection's schema is not this build's */

struct sqlstore {
    struct sql_conf conf;
    struct sql_pool pool;
    int pool_ready;
    struct sql_touch *touch;
};

/* ---- statements --------------------------------------------------------- */

#define COLS "id, key_hash, name, prefix, plan, status, permissions, " \
             "allowed_cidrs, limits, created_at, expires_at, last_used_at"
#define NCOLS 12

static const char lookup_sql[] =
    "SELECT " COLS " FROM keygate_keys WHERE key_hash = $1";
static const char get_sql[] =
    "SELECT " COLS " FROM keygate_keys WHERE id = $1";
static const char list_sql[] =
    "SELECT " COLS " FROM keygate_keys ORDER BY created_at, id";
static const char insert_sql[] =
    "INSERT INTO keygate_keys (" COLS ") VALUES "
    "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";
/* last_used_at only moves forward: a replace never undoes a newer use
 * that the write-behind has recorded meanwhile. */
static const char update_sql[] =
    "UPDATE keygate_keys SET key_hash = $2, name = $3, prefix = $4, "
    "plan = $5, status = $6, permissions = $7, allowed_cidrs = $8, "
    "limits = $9, created_at = $10, expires_at = $11, last_used_at = "
    "CASE WHEN last_used_at IS NULL OR last_used_at < $12 THEN $12 "
    "ELSE last_used_at END WHERE id = $1";
static const char touch_sql[] =
    "UPDATE keygate_keys SET last_used_at = $2 WHERE id = $1 AND "
    "(last_used_at IS NULL OR last_used_at < $2)";

/* ---- small helpers ------------------------------------------------------ */


/* "250ms", "2s", "1m" or a bare number of milliseconds. */
static kg_error opt_ms(kg_opts *o, const char *key, int64_t def, int64_t *ms_r)
{
    const char *s;
    char *end;
    long long v;
    kg_error e = kg_opts_get_string(o, key, NULL, &s);

    *ms_r = def;
    if (e != KG_OK || s == NULL)
        return e;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (end == s || errno != 0 || v < 0)
        goto bad;
    if (*end == '\0' || strcmp(end, "ms") == 0)
        *ms_r = v;
    else if (strcmp(end, "s") == 0)
        *ms_r = v * 1000;
    else if (strcmp(end, "m") == 0)
        *ms_r = v * 60000;
    else
        goto bad;
    return KG_OK;
bad:
    return kg_opts_error(o, key, "%s must be a time such as 250ms, 2s or 1m, "
                         "not '%s'", key, s);
}

static char *read_secret_file(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    char buf[1024];
    size_t n;

    if (f == NULL) {
        snprintf(err, errlen, "%s: cannot read the password file: %s", path,
                 strerror(errno));
        return NULL;
    }
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = '\0';
    {
        char *s = strdup(buf);
        kg_wipe(buf, sizeof(buf));
        if (s == NULL)
            snprintf(err, errlen, "out of memory");
        return s;
    }
}

static void free_secret(char *s)
{
    if (s != NULL) {
        kg_wipe(s, strlen(s));
        free(s);
    }
}

/* ---- records <-> rows --------------------------------------------------- */

/* A list column: one item per line. */
static kg_error split_lines(const char *s, kg_record *r,
                            kg_error (*add)(kg_record *, const char *))
{
    char buf[512];
    while (s != NULL && *s) {
        const char *nl = strchr(s, '\n');
        size_t n = nl ? (size_t)(nl - s) : strlen(s);
        if (n > 0 && n < sizeof(buf)) {
            kg_error e;
            memcpy(buf, s, n);
            buf[n] = '\0';
            if ((e = add(r, buf)) != KG_OK)
                return e;
        }
        s += n + (nl ? 1 : 0);
    }
    return KG_OK;
}

static kg_error parse_limits(const char *s, kg_record *r)
{
    while (s != NULL && *s) {
        char name[128];
        long long c, w, b;
        int used = 0;
        if (sscanf(s, "%127s %lld %lld %lld%n", name, &c, &w, &b, &used) != 4)
            return KG_ERR_INVALID;
        if (kg_record_add_limit(r, name, c, w, b) != KG_OK)
            return KG_ERR_INVALID;
        s += used;
        while (*s == '\n')
            s++;
    }
    return KG_OK;
}

static int64_t to_i64(const char *s)
{
    return s ? (int64_t)strtoll(s, NULL, 10) : 0;
}

static kg_record *row_to_record(int n, const char *const *v)
{
    kg_record *r;
    unsigned char h[KG_HASH_LEN];

    if (n < NCOLS || v[0] == NULL || v[1] == NULL || v[4] == NULL)
        return NULL;
    if (kg_hash_from_hex(v[1], h) != KG_OK)
        return NULL;
    r = kg_record_new();
    if (r == NULL)
        return NULL;
    kg_record_set_hash(r, h);
    kg_wipe(h, sizeof(h));
    if (kg_record_set_id(r, v[0]) != KG_OK ||
        kg_record_set_name(r, v[2]) != KG_OK ||
        kg_record_set_prefix(r, v[3]) != KG_OK ||
        kg_record_set_plan(r, v[4]) != KG_OK ||
        split_lines(v[6], r, kg_record_add_permission) != KG_OK ||
        split_lines(v[7], r, kg_record_add_cidr) != KG_OK ||
        parse_limits(v[8], r) != KG_OK) {
        kg_record_unref(r);
        return NULL;
    }
    kg_record_set_status(r, v[5] && strcmp(v[5], "active") == 0
                                ? KG_STATUS_ACTIVE : KG_STATUS_REVOKED);
    kg_record_set_created(r, to_i64(v[9]));
    kg_record_set_expires(r, to_i64(v[10]));
    kg_record_set_last_used(r, to_i64(v[11]));
    return r;
}

/* The record as the 12 text parameters of insert_sql / update_sql. */
struct params {
    char hash[2 * KG_HASH_LEN + 1];
    char *perms, *cidrs, *limits;
    char created[24], expires[24], last_used[24];
    const char *v[NCOLS];
};

static void params_free(struct params *p)
{
    free(p->perms);
    free(p->cidrs);
    free(p->limits);
    kg_wipe(p->hash, sizeof(p->hash));
}

static int bad_item(const char *s)
{
    for (; *s; s++)
        if (isspace((unsigned char)*s) || iscntrl((unsigned char)*s))
            return 1;
    return 0;
}

static kg_error params_build(struct params *p, const kg_record *r, kg_diag *d)
{
    size_t i, len;
    char *s;

    memset(p, 0, sizeof(*p));
    kg_hash_to_hex(kg_record_hash(r), p->hash);
    /* Each list is one column, an item per line. */
    for (len = 1, i = 0; i < kg_record_permission_count(r); i++)
        len += strlen(kg_record_permission(r, i)) + 1;
    for (i = 0; i < kg_record_cidr_count(r); i++)
        len += strlen(kg_record_cidr(r, i)) + 1;
    for (i = 0; i < kg_record_limit_count(r); i++) {
        const char *name;
        int64_t c, w, b;
        kg_record_limit(r, i, &name, &c, &w, &b);
        len += strlen(name) + 80;
    }
    p->perms = calloc(1, len);
    p->cidrs = calloc(1, len);
    p->limits = calloc(1, len);
    if (p->perms == NULL || p->cidrs == NULL || p->limits == NULL)
        return KG_ERR_NOMEM;
    for (s = p->perms, i = 0; i < kg_record_permission_count(r); i++) {
        const char *x = kg_record_permission(r, i);
        if (bad_item(x)) {
            kg_diag_set(d, "permission '%s' contains a space or control character", x);
            return KG_ERR_INVALID;
        }
        s += sprintf(s, "%s%s", i ? "\n" : "", x);
    }
    for (s = p->cidrs, i = 0; i < kg_record_cidr_count(r); i++) {
        const char *x = kg_record_cidr(r, i);
        if (bad_item(x)) {
            kg_diag_set(d, "address '%s' contains a space or control character", x);
            return KG_ERR_INVALID;
        }
        s += sprintf(s, "%s%s", i ? "\n" : "", x);
    }
    for (s = p->limits, i = 0; i < kg_record_limit_count(r); i++) {
        const char *name;
        int64_t c, w, b;
        kg_record_limit(r, i, &name, &c, &w, &b);
        if (*name == '\0' || strlen(name) > 127 || bad_item(name)) {
            kg_diag_set(d, "limit name '%s' must be 1-127 characters without "
                     "spaces", name);
            return KG_ERR_INVALID;
        }
        s += sprintf(s, "%s%s %lld %lld %lld", i ? "\n" : "", name,
                     (long long)c, (long long)w, (long long)b);
    }
    snprintf(p->created, sizeof(p->created), "%lld", (long long)kg_record_created(r));
    snprintf(p->expires, sizeof(p->expires), "%lld", (long long)kg_record_expires(r));
    snprintf(p->last_used, sizeof(p->last_used), "%lld", (long long)kg_record_last_used(r));
    p->v[0] = kg_record_id(r);
    p->v[1] = p->hash;
    p->v[2] = kg_record_name(r);
    p->v[3] = kg_record_prefix(r);
    p->v[4] = kg_record_plan(r);
    p->v[5] = kg_record_status(r) == KG_STATUS_REVOKED ? "revoked" : "active";
    p->v[6] = p->perms;
    p->v[7] = p->cidrs;
    p->v[8] = p->limits;
    p->v[9] = p->created;
    p->v[10] = kg_record_expires(r) ? p->expires : NULL;
    p->v[11] = kg_record_last_used(r) ? p->last_used : NULL;
    if (p->v[0] == NULL || p->v[4] == NULL) {
        kg_diag_set(d, "a key record needs an id and a plan");
        return KG_ERR_INVALID;
    }
    return KG_OK;
}

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

static int run(struct sqlstore *s, const char *sql, int n,
               const char *const *params, sql_row_cb cb, void *ud,
               long *changes_r, char *err, size_t errlen)
{
    return run_stmt(s, 0, sql, n, params, cb, ud, changes_r, err, errlen);
}

static kg_error to_kg(int rc, kg_diag *d, const char *err)
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

struct one {
    kg_record *rec;
    int bad;
};

static int one_row(void *ud, int n, const char *const *v)
{
    struct one *o = ud;
    o->rec = row_to_record(n, v);
    o->bad = o->rec == NULL;
    return 1;
}

static kg_result sql_lookup(void *inst, kg_call *call,
                            const unsigned char hash[KG_HASH_LEN],
                            kg_record **rec_r)
{
    struct sqlstore *s = inst;
    char hex[2 * KG_HASH_LEN + 1], err[512];
    const char *params[1] = { hex };
    struct one o = { NULL, 0 };
    int rc;

    (void)call;
    kg_hash_to_hex(hash, hex);
    rc = run_stmt(s, 1, lookup_sql, 1, params, one_row, &o, NULL, err,
                  sizeof(err));
    kg_wipe(hex, sizeof(hex));
    if (rc != SQL_OK || o.bad) {
        /* Down, slow, or a row this build cannot read: no answer, which
         * is not the same as "no such key". */
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

static kg_error sql_get(void *inst, const char *id, kg_record **rec_r,
                        kg_diag *diag)
{
    struct sqlstore *s = inst;
    const char *params[1] = { id };
    struct one o = { NULL, 0 };
    char err[512] = "";
    int rc = run(s, get_sql, 1, params, one_row, &o, NULL, err, sizeof(err));

    if (rc != SQL_OK) {
        kg_record_unref(o.rec);
        return to_kg(rc, diag, err);
    }
    if (o.bad) {
        kg_diag_set(diag, "key '%s': the stored record cannot be read", id);
        return KG_ERR_IO;
    }
    if (o.rec == NULL)
        return KG_ERR_NOT_FOUND;
    *rec_r = o.rec;
    return KG_OK;
}

struct listing {
    kg_record_cb cb;
    void *ud;
    int stopped, bad, nomem;
};

static int list_row(void *ud, int n, const char *const *v)
{
    struct listing *l = ud;
    kg_record *r = row_to_record(n, v);
    int stop;
    if (r == NULL) {
        l->bad++;
        return 0;
    }
    stop = l->cb(r, l->ud);
    kg_record_unref(r);
    if (stop)
        l->stopped = 1;
    return stop;
}

static kg_error sql_list(void *inst, kg_record_cb cb, void *ud, kg_diag *diag)
{
    struct sqlstore *s = inst;
    struct listing l = { cb, ud, 0, 0, 0 };
    char err[512] = "";
    int rc = run(s, list_sql, 0, NULL, list_row, &l, NULL, err, sizeof(err));

    if (rc != SQL_OK)
        return to_kg(rc, diag, err);
    if (l.bad) {
        kg_diag_set(diag, "%d stored record(s) could not be read and were skipped",
                 l.bad);
        return KG_ERR_IO;
    }
    return KG_OK;
}

static kg_error sql_put(void *inst, const kg_record *r, int create,
                        kg_diag *diag)
{
    struct sqlstore *s = inst;
    struct params p;
    char err[512] = "";
    long changes = 0;
    kg_error e;
    int rc;

    if ((e = params_build(&p, r, diag)) != KG_OK)
        goto out;
    rc = run(s, create ? insert_sql : update_sql, NCOLS, p.v, NULL, NULL,
             &changes, err, sizeof(err));
    if (rc == SQL_CONSTRAINT && create) {
        kg_diag_set(diag, "key id '%s' (or its hash) already exists", kg_record_id(r));
        e = KG_ERR_EXISTS;
    } else if (rc != SQL_OK) {
        e = to_kg(rc, diag, err);
    } else if (!create && changes == 0) {
        kg_diag_set(diag, "no key with id '%s'", kg_record_id(r));
        e = KG_ERR_NOT_FOUND;
    }
out:
    params_free(&p);
    return e;
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

static kg_error sql_do_migrate(void *inst, int apply, int *from_r, int *to_r,
                               kg_diag *diag)
{
    struct sqlstore *s = inst;
    struct sql_conn *c;
    char err[512] = "";
    int fresh, rc;
    kg_error e;

    rc = sql_pool_get(&s->pool, &c, &fresh, err, sizeof(err));
    if (rc != SQL_OK)
        return to_kg(rc, diag, err);
    e = sql_migrate(s->conf.driver, c->h, apply, from_r, to_r, err, sizeof(err));
    if (e == KG_OK)
        c->schema = *to_r;
    else
        kg_diag_set(diag, "%s", err);
    sql_pool_put(&s->pool, c, e == KG_ERR_UNAVAILABLE);
    return e;
}

/* ---- instances ----------------------------------------------------------- */

static const struct sql_driver *const drivers[] = {
#ifdef HAVE_SQLITE
    &sql_driver_sqlite,
#endif
#ifdef HAVE_PQ
    &sql_driver_postgresql,
#endif
    NULL
};

static int is_pg(const struct sql_driver *d)
{
    return strcmp(d->name, "postgresql") == 0;
}

static void sql_destroy(void *inst)
{
    struct sqlstore *s = inst;
    if (s == NULL)
        return;
    sql_touch_free(s->touch);  /* flushes what is pending */
    if (s->pool_ready)
        sql_pool_destroy(&s->pool);
    free(s->conf.path);
    free(s->conf.conninfo);
    free_secret(s->conf.password);
    free(s->conf.sslmode);
    free(s->conf.sslrootcert);
    free(s);
}

static kg_error dup_opt(kg_opts *o, const char *key, char **out)
{
    const char *v;
    kg_error e = kg_opts_get_string(o, key, NULL, &v);
    if (e != KG_OK || v == NULL)
        return e;
    *out = strdup(v);
    return *out ? KG_OK : KG_ERR_NOMEM;
}

static kg_error pick_driver(kg_opts *o, struct sqlstore *s)
{
    const char *name;
    char built[64] = "";
    size_t i;
    kg_error e = kg_opts_get_string(o, "driver", NULL, &name);

    if (e != KG_OK)
        return e;
    for (i = 0; drivers[i] != NULL; i++)
        snprintf(built + strlen(built), sizeof(built) - strlen(built), "%s%s",
                 i ? ", " : "", drivers[i]->name);
    if (name == NULL)
        return kg_opts_error(o, NULL, "option 'driver' is required (built "
                             "drivers: %s)", built);
    for (i = 0; drivers[i] != NULL; i++) {
        if (strcmp(drivers[i]->name, name) == 0) {
            s->conf.driver = drivers[i];
            return KG_OK;
        }
    }
    if (strcmp(name, "sqlite") == 0 || strcmp(name, "postgresql") == 0)
        return kg_opts_error(o, "driver", "the %s driver is not built into "
                             "this sql plugin (built: %s): rebuild keygate "
                             "with %s installed (./configure --with-%s)", name,
                             built[0] ? built : "none",
                             name[0] == 's' ? "libsqlite3-dev" : "libpq-dev",
                             name[0] == 's' ? "sqlite" : "pq");
    return kg_opts_error(o, "driver", "unknown driver '%s' (built drivers: %s)",
                         name, built);
}

static kg_error read_options(kg_opts *o, struct sqlstore *s, int *auto_r,
                             int64_t *interval_r, int64_t *max_pending_r)
{
    static const char *const pg_only[] = { "conninfo", "password",
        "password_file", "sslmode", "sslrootcert", "connect_timeout",
        "statement_timeout", NULL };
    static const char *const lite_only[] = { "path", "busy_timeout",
        "snapshot_idle", "mmap_size", NULL };
    struct sql_conf *c = &s->conf;
    int pg = is_pg(c->driver);
    const char *const *other;
    kg_error e;
    size_t i;

    other = pg ? lite_only : pg_only;
    for (i = 0; other[i] != NULL; i++)
        if (kg_opts_has(o, other[i]))
            return kg_opts_error(o, other[i], "option '%s' is for the %s "
                                 "driver, not %s", other[i],
                                 pg ? "sqlite" : "postgresql", c->driver->name);
    if ((e = opt_ms(o, "pool_wait", 200, &c->pool_wait_ms)) != KG_OK ||
        (e = opt_ms(o, "reconnect_delay", 1000, &c->reconnect_delay_ms)) != KG_OK ||
        (e = kg_opts_get_bool(o, "auto_migrate", !pg, auto_r)) != KG_OK ||
        (e = kg_opts_get_duration(o, "last_used_interval", 60, interval_r)) != KG_OK ||
        (e = kg_opts_get_int(o, "last_used_max_pending", 100000, max_pending_r)) != KG_OK)
        return e;
    {
        int64_t n;
        if ((e = kg_opts_get_int(o, "pool_size", pg ? 8 : 4, &n)) != KG_OK)
            return e;
        if (n < 1 || n > 1000)
            return kg_opts_error(o, "pool_size", "pool_size must be 1..1000");
        c->pool_size = (int)n;
    }
    if (*max_pending_r < 1)
        return kg_opts_error(o, "last_used_max_pending", "must be at least 1");
    if (!pg) {
        const char *path;
        if ((e = kg_opts_get_path(o, "path", NULL, &path)) != KG_OK ||
            (e = opt_ms(o, "busy_timeout", 2000, &c->busy_timeout_ms)) != KG_OK ||
            (e = opt_ms(o, "snapshot_idle", 1000, &c->snapshot_idle_ms)) != KG_OK ||
            (e = kg_opts_get_int(o, "mmap_size", 1LL << 30, &c->mmap_size)) != KG_OK)
            return e;
        if (c->mmap_size < 0)
            return kg_opts_error(o, "mmap_size", "mmap_size must be a number "
                                 "of bytes (0: no memory map)");
        if (path == NULL)
            return kg_opts_error(o, NULL, "the sqlite driver needs 'path' (the "
                                 "database file, e.g. ${KEYGATE_STATE_DIR}/keys.db)");
        if ((c->path = strdup(path)) == NULL)
            return KG_ERR_NOMEM;
        return KG_OK;
    }
    if ((e = dup_opt(o, "conninfo", &c->conninfo)) != KG_OK ||
        (e = dup_opt(o, "password", &c->password)) != KG_OK ||
        (e = dup_opt(o, "sslmode", &c->sslmode)) != KG_OK ||
        (e = kg_opts_get_duration(o, "connect_timeout", 2, &c->connect_timeout_s)) != KG_OK ||
        (e = opt_ms(o, "statement_timeout", 500, &c->statement_timeout_ms)) != KG_OK)
        return e;
    if (c->statement_timeout_ms < 1)
        return kg_opts_error(o, "statement_timeout", "statement_timeout must be "
                             "at least 1ms");
    if (c->conninfo == NULL)
        return kg_opts_error(o, NULL, "the postgresql driver needs 'conninfo' "
                             "(e.g. \"host=db1,db2 dbname=keygate user=keygate\")");
    if (kg_opts_has(o, "password_file")) {
        const char *pf;
        char err[512];
        if (c->password != NULL)
            return kg_opts_error(o, "password_file", "give password or "
                                 "password_file, not both");
        if ((e = kg_opts_get_path(o, "password_file", NULL, &pf)) != KG_OK)
            return e;
        if ((c->password = read_secret_file(pf, err, sizeof(err))) == NULL)
            return kg_opts_error(o, "password_file", "%s", err);
    }
    if (kg_opts_has(o, "sslrootcert")) {
        const char *p;
        if ((e = kg_opts_get_path(o, "sslrootcert", NULL, &p)) != KG_OK)
            return e;
        if ((c->sslrootcert = strdup(p)) == NULL)
            return KG_ERR_NOMEM;
    }
    return KG_OK;
}

static kg_error sql_create(kg_opts *o, void **inst_r)
{
    struct sqlstore *s = calloc(1, sizeof(*s));
    int auto_migrate = 0, fresh, rc;
    int64_t interval = 60, max_pending = 100000;
    struct sql_conn *c;
    char err[512] = "";
    kg_error e;

    if (s == NULL)
        return KG_ERR_NOMEM;
    if ((e = pick_driver(o, s)) != KG_OK ||
        (e = read_options(o, s, &auto_migrate, &interval, &max_pending)) != KG_OK)
        goto fail;
    if (sql_pool_init(&s->pool, &s->conf) != 0) {
        e = KG_ERR_NOMEM;
        goto fail;
    }
    s->pool_ready = 1;
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
    } else if (is_pg(s->conf.driver)) {
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
    .get = sql_get,
    .list = sql_list,
    .put = sql_put,
    .reload = sql_reload,
    .touch = sql_touch,
    .migrate = sql_do_migrate,
};

KG_PLUGIN_DEFINE(sql) = {
    KG_PLUGIN_HEADER,
    .kind = KG_PLUGIN_KEYSTORE,
    .name = "sql",
    .description = "key records (hashes only) in SQLite or PostgreSQL",
    .create = sql_create,
    .destroy = sql_destroy,
    .keystore = &sql_ops,
};
