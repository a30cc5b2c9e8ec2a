/*
 * manage.c - the sql keystore's management operations: get, list, put
 * (insert or update), each one statement on a pooled connection, and
 * migrate.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sql.h"

static const char get_sql[] =
    "SELECT " SQL_COLS " FROM keygate_keys WHERE id = $1";
static const char list_sql[] =
    "SELECT " SQL_COLS " FROM keygate_keys ORDER BY created_at, id";
static const char insert_sql[] =
    "INSERT INTO keygate_keys (" SQL_COLS ") VALUES "
    "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";
/* last_used_at only moves forward: a replace never undoes a newer use
 * that the write-behind has recorded meanwhile. */
static const char update_sql[] =
    "UPDATE keygate_keys SET key_hash = $2, name = $3, prefix = $4, "
    "plan = $5, status = $6, permissions = $7, allowed_cidrs = $8, "
    "limits = $9, created_at = $10, expires_at = $11, last_used_at = "
    "CASE WHEN last_used_at IS NULL OR last_used_at < $12 THEN $12 "
    "ELSE last_used_at END WHERE id = $1";

kg_error sql_store_get(void *inst, const char *id, kg_record **rec_r,
                       kg_diag *diag)
{
    struct sqlstore *s = inst;
    const char *params[1] = { id };
    struct sql_one o = { NULL, 0 };
    char err[512] = "";
    int rc = sql_run(s, get_sql, 1, params, sql_one_row, &o, NULL, err, sizeof(err));

    if (rc != SQL_OK) {
        kg_record_unref(o.rec);
        return sql_to_kg(rc, diag, err);
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
    kg_record *r = sql_row_to_record(n, v);
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

kg_error sql_store_list(void *inst, kg_record_cb cb, void *ud, kg_diag *diag)
{
    struct sqlstore *s = inst;
    struct listing l = { cb, ud, 0, 0, 0 };
    char err[512] = "";
    int rc = sql_run(s, list_sql, 0, NULL, list_row, &l, NULL, err, sizeof(err));

    if (rc != SQL_OK)
        return sql_to_kg(rc, diag, err);
    if (l.bad) {
        kg_diag_set(diag, "%d stored record(s) could not be read and were skipped",
                 l.bad);
        return KG_ERR_IO;
    }
    return KG_OK;
}

kg_error sql_store_put(void *inst, const kg_record *r, int create,
                       kg_diag *diag)
{
    struct sqlstore *s = inst;
    struct sql_params p;
    char err[512] = "";
    long changes = 0;
    kg_error e;
    int rc;

    if ((e = sql_params_build(&p, r, diag)) != KG_OK)
        goto out;
    rc = sql_run(s, create ? insert_sql : update_sql, SQL_NCOLS, p.v, NULL, NULL,
             &changes, err, sizeof(err));
    if (rc == SQL_CONSTRAINT && create) {
        kg_diag_set(diag, "key id '%s' (or its hash) already exists", kg_record_id(r));
        e = KG_ERR_EXISTS;
    } else if (rc != SQL_OK) {
        e = sql_to_kg(rc, diag, err);
    } else if (!create && changes == 0) {
        kg_diag_set(diag, "no key with id '%s'", kg_record_id(r));
        e = KG_ERR_NOT_FOUND;
    }
out:
    sql_params_free(&p);
    return e;
}

kg_error sql_store_migrate(void *inst, int apply, int *from_r, int *to_r,
                           kg_diag *diag)
{
    struct sqlstore *s = inst;
    struct sql_conn *c;
    char err[512] = "";
    int fresh, rc;
    kg_error e;

    rc = sql_pool_get(&s->pool, &c, &fresh, err, sizeof(err));
    if (rc != SQL_OK)
        return sql_to_kg(rc, diag, err);
    e = sql_migrate(s->conf.driver, c->h, apply, from_r, to_r, err, sizeof(err));
    if (e == KG_OK)
        c->schema = *to_r;
    else
        kg_diag_set(diag, "%s", err);
    sql_pool_put(&s->pool, c, e == KG_ERR_UNAVAILABLE);
    return e;
}
