/*
 * postgresql.c - the PostgreSQL driver of the sql keystore (libpq).
 *
 * The connection string is libpq's own (key=value or URI), so several
 * hosts for failover ("host=db1,db2 target_session_attrs=read-write"),
 * TLS (sslmode, sslrootcert) and everything else libpq knows pass
 * straight through.  The password comes from the policy (${ENV} or a
 * file), is handed to libpq as a parameter and never appears in an
 * error: libpq's messages do not carry it and ours never print the
 * connection string.
 *
 * Queries are sent asynchronously and waited for with poll(), so that a
 * server that stops answering (a hung host, a black-holed network)
 * costs a request statement_timeout, not forever; the server is also
 * told the same statement_timeout, so that it gives up too.  Statements
 * are prepared once per connection.
 */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "sql.h"

#define MAX_STMTS 64
#define MAX_COLS 32

struct pgc {
    PGconn *c;
    int64_t timeout_ms;
    struct {
        const char *key;
        char name[16];
    } stmts[MAX_STMTS];
    int nstmts;
};

/* libpq's messages end in a newline; errors here are one line. */
static void set_err(char *err, size_t errlen, const char *prefix,
                    const char *msg)
{
    size_t n;
    snprintf(err, errlen, "%s%s", prefix, msg ? msg : "unknown error");
    n = strlen(err);
    while (n > 0 && (err[n - 1] == '\n' || err[n - 1] == ' '))
        err[--n] = '\0';
    /* Several hosts tried: one message per host, on one line. */
    for (; n > 0; n--)
        if (err[n - 1] == '\n' || err[n - 1] == '\t')
            err[n - 1] = ' ';
}

static void pg_close(void *conn)
{
    struct pgc *p = conn;
    if (p == NULL)
        return;
    PQfinish(p->c);
    free(p);
}

/* What a failed result means for the caller. */
static int classify(PGconn *c, const PGresult *res)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

    if (PQstatus(c) == CONNECTION_BAD || state == NULL)
        return SQL_DOWN;
    if (strncmp(state, "23", 2) == 0)
        return SQL_CONSTRAINT;
    if (strcmp(state, "57014") == 0)        /* statement_timeout, cancel */
        return SQL_TIMEOUT;
    if (strncmp(state, "08", 2) == 0 ||     /* connection exception */
        strncmp(state, "53", 2) == 0 ||     /* insufficient resources */
        strncmp(state, "57", 2) == 0 ||     /* shutdown, canceled, timeout */
        strcmp(state, "25006") == 0 ||      /* read-only: hit a standby */
        strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0)
        return SQL_DOWN;
    return SQL_ERROR;
}

/*
 * Wait for every result of what was sent, calling cb for rows.  Keeps
 * the first failure.  On a timeout the connection is left mid-query:
 * the caller reports SQL_TIMEOUT and the pool closes it.
 */
static int wait_results(struct pgc *p, sql_row_cb cb, void *ud,
                        long *changes_r, char *err, size_t errlen)
{
    int64_t deadline = sql_now_ms() + p->timeout_ms;
    int rc = SQL_OK, stop = 0;

    for (;;) {
        PGresult *res;
        while (!PQisBusy(p->c)) {
            res = PQgetResult(p->c);
            if (res == NULL)
                return rc;
            switch (PQresultStatus(res)) {
            case PGRES_TUPLES_OK: {
                int r, n = PQntuples(res), nc = PQnfields(res), k;
                if (nc > MAX_COLS)
                    nc = MAX_COLS;
                for (r = 0; r < n && !stop && rc == SQL_OK; r++) {
                    const char *vals[MAX_COLS];
                    for (k = 0; k < nc; k++)
                        vals[k] = PQgetisnull(res, r, k) ? NULL : PQgetvalue(res, r, k);
                    if (cb != NULL && cb(ud, nc, vals) != 0)
                        stop = 1;
                }
                break;
            }
            case PGRES_COMMAND_OK:
                if (changes_r != NULL)
                    *changes_r = atol(PQcmdTuples(res));
                break;
            default:
                if (rc == SQL_OK) {
                    rc = classify(p->c, res);
                    set_err(err, errlen, "PostgreSQL: ", PQresultErrorMessage(res));
                }
                break;
            }
            PQclear(res);
        }
        {
            struct pollfd pfd = { .fd = PQsocket(p->c), .events = POLLIN };
            int64_t left = deadline - sql_now_ms();
            int n;
            if (pfd.fd < 0) {
                set_err(err, errlen, "PostgreSQL: ", PQerrorMessage(p->c));
                return SQL_DOWN;
            }
            if (left <= 0) {
                snprintf(err, errlen, "PostgreSQL did not answer within %lld ms "
                         "(statement_timeout)", (long long)p->timeout_ms);
                return SQL_TIMEOUT;
            }
            n = poll(&pfd, 1, (int)left);
            if (n < 0 && errno != EINTR) {
                snprintf(err, errlen, "poll: %s", strerror(errno));
                return SQL_DOWN;
            }
            if (n > 0 && !PQconsumeInput(p->c)) {
                set_err(err, errlen, "PostgreSQL: ", PQerrorMessage(p->c));
                return SQL_DOWN;
            }
        }
    }
}

static int pg_script(void *conn, const char *sql, char *err, size_t errlen)
{
    struct pgc *p = conn;
    if (!PQsendQuery(p->c, sql)) {
        set_err(err, errlen, "PostgreSQL: ", PQerrorMessage(p->c));
        return SQL_DOWN;
    }
    return wait_results(p, NULL, NULL, NULL, err, errlen);
}

static void *pg_open(const struct sql_conf *conf, char *err, size_t errlen)
{
    struct pgc *p = calloc(1, sizeof(*p));
    const char *kw[8], *val[8];
    char timeout[24], set[64];
    int n = 0;

    if (p == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    p->timeout_ms = conf->statement_timeout_ms;
    snprintf(timeout, sizeof(timeout), "%lld", (long long)conf->connect_timeout_s);
    /* Processed in order, later ones win: the conninfo may name the
     * application; the policy's own options override the conninfo. */
    kw[n] = "application_name"; val[n++] = "keygate";
    kw[n] = "dbname"; val[n++] = conf->conninfo;
    kw[n] = "connect_timeout"; val[n++] = timeout;
    if (conf->password != NULL) { kw[n] = "password"; val[n++] = conf->password; }
    if (conf->sslmode != NULL) { kw[n] = "sslmode"; val[n++] = conf->sslmode; }
    if (conf->sslrootcert != NULL) { kw[n] = "sslrootcert"; val[n++] = conf->sslrootcert; }
    kw[n] = NULL; val[n] = NULL;
    p->c = PQconnectdbParams(kw, val, 1);
    if (p->c == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (PQstatus(p->c) != CONNECTION_OK) {
        set_err(err, errlen, "cannot connect to PostgreSQL: ", PQerrorMessage(p->c));
        goto fail;
    }
    snprintf(set, sizeof(set), "SET statement_timeout = %lld",
             (long long)conf->statement_timeout_ms);
    if (pg_script(p, set, err, errlen) != SQL_OK)
        goto fail;
    return p;
fail:
    pg_close(p);
    return NULL;
}

static int pg_exec(void *conn, const char *sql, int nparams,
                   const char *const *params, sql_row_cb cb, void *ud,
                   long *changes_r, char *err, size_t errlen)
{
    struct pgc *p = conn;
    const char *name = NULL;
    char tmpname[16];
    int i, rc;

    for (i = 0; i < p->nstmts; i++)
        if (p->stmts[i].key == sql)
            name = p->stmts[i].name;
    if (name == NULL) {
        if (p->nstmts < MAX_STMTS) {
            snprintf(p->stmts[p->nstmts].name, sizeof(p->stmts[0].name),
                     "kg%d", p->nstmts);
            name = p->stmts[p->nstmts].name;
        } else {
            /* The unnamed statement: prepared again on every use. */
            tmpname[0] = '\0';
            name = tmpname;
        }
        if (!PQsendPrepare(p->c, name, sql, nparams, NULL)) {
            set_err(err, errlen, "PostgreSQL: ", PQerrorMessage(p->c));
            return SQL_DOWN;
        }
        if ((rc = wait_results(p, NULL, NULL, NULL, err, errlen)) != SQL_OK)
            return rc;
        if (name != tmpname)
            p->stmts[p->nstmts++].key = sql;
    }
    if (!PQsendQueryPrepared(p->c, name, nparams, params, NULL, NULL, 0)) {
        set_err(err, errlen, "PostgreSQL: ", PQerrorMessage(p->c));
        return SQL_DOWN;
    }
    return wait_results(p, cb, ud, changes_r, err, errlen);
}

static int first_col(void *ud, int n, const char *const *v)
{
    snprintf((char *)ud, 16, "%s", n > 0 && v[0] ? v[0] : "");
    return 1;
}

static const char has_schema_sql[] =
    "SELECT to_regclass('keygate_schema') IS NOT NULL";
static const char version_sql[] =
    "SELECT COALESCE(MAX(version), 0) FROM keygate_schema";

static int pg_schema_version(void *conn, int *v, char *err, size_t errlen)
{
    char buf[16] = "";
    int rc;
    *v = 0;
    rc = pg_exec(conn, has_schema_sql, 0, NULL, first_col, buf, NULL, err, errlen);
    if (rc != SQL_OK || strcmp(buf, "t") != 0)
        return rc;
    rc = pg_exec(conn, version_sql, 0, NULL, first_col, buf, NULL, err, errlen);
    if (rc == SQL_OK)
        *v = atoi(buf);
    return rc;
}

static void pg_describe(const struct sql_conf *conf, char *out, size_t size)
{
    PQconninfoOption *opts = PQconninfoParse(conf->conninfo, NULL), *o;
    const char *host = NULL, *port = NULL, *db = NULL;
    for (o = opts; o != NULL && o->keyword != NULL; o++) {
        if (strcmp(o->keyword, "host") == 0 || (strcmp(o->keyword, "hostaddr") == 0 && !host))
            host = o->val;
        else if (strcmp(o->keyword, "port") == 0)
            port = o->val;
        else if (strcmp(o->keyword, "dbname") == 0)
            db = o->val;
    }
    snprintf(out, size, "postgresql host=%s port=%s dbname=%s",
             host ? host : "(default)", port ? port : "(default)",
             db ? db : "(default)");
    PQconninfoFree(opts);
}

const struct sql_driver sql_driver_postgresql = {
    .name = "postgresql",
    .open = pg_open,
    .close = pg_close,
    .exec = pg_exec,
    .script = pg_script,
    .schema_version = pg_schema_version,
    /* Concurrent `keygate db migrate` runs take turns. */
    .begin_migration = "BEGIN; SELECT pg_advisory_xact_lock(7305001)",
    .begin_write = "BEGIN",
    .describe = pg_describe,
};
