/*
 * manage.c - the sql keystore's management operations: get and list
 * (one statement each, every key with its account), put (insert or
 * update, in a transaction with the account check, or with the account
 * of its own that a key created without one is given), and migrate.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sql.h"

static const char get_sql[] =
    "SELECT " SQL_JOIN_COLS " FROM " SQL_JOIN_FROM " WHERE k.id = $1";
static const char list_sql[] =
    "SELECT " SQL_JOIN_COLS " FROM " SQL_JOIN_FROM
    " ORDER BY k.created_at, k.id";
/* A page of one account's keys: its (account_id) index (003), from
 * `after` on (a keyset). */
static const char page_sql[] =
    "SELECT " SQL_JOIN_COLS " FROM " SQL_JOIN_FROM
    " WHERE k.account_id = $1 AND k.id > $2 ORDER BY k.id LIMIT $3";
/* The key's account exists, and stays until this transaction ends: a
 * write of its row takes its lock (PostgreSQL; SQLite's BEGIN IMMEDIATE
 * holds the whole database), which an account delete waits for before it
 * counts the account's keys (accounts.c). */
static const char account_lock_sql[] =
    "UPDATE keygate_accounts SET updated_at = updated_at WHERE id = $1";
static const char insert_sql[] =
    "INSERT INTO keygate_keys (" SQL_COLS ") VALUES "
    "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)";
/* last_used_at only moves forward: a replace never undoes a newer use
 * that the write-behind has recorded meanwhile.  A record replaced
 * without an account id keeps the one stored. */
static const char update_sql[] =
    "UPDATE keygate_keys SET key_hash = $2, name = $3, prefix = $4, "
    "plan = $5, status = $6, permissions = $7, allowed_cidrs = $8, "
    "limits = $9, created_at = $10, expires_at = $11, last_used_at = "
    "CASE WHEN last_used_at IS NULL OR last_used_at < $12 THEN $12 "
    "ELSE last_used_at END, account_id = COALESCE($13, account_id), "
    "replaced_by = $14, replaces = $15 WHERE id = $1";

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

/* Every key a statement answers, to cb. */
static kg_error list_keys(struct sqlstore *s, const char *sql, int n,
                          const char *const *params, kg_record_cb cb, void *ud,
                          kg_diag *diag)
{
    struct listing l = { cb, ud, 0, 0, 0 };
    char err[512] = "";
    int rc = sql_run(s, sql, n, params, list_row, &l, NULL, err, sizeof(err));

    if (rc != SQL_OK)
        return sql_to_kg(rc, diag, err);
    if (l.bad) {
        kg_diag_set(diag, "%d stored record(s) could not be read and were skipped",
                 l.bad);
        return KG_ERR_IO;
    }
    return KG_OK;
}

kg_error sql_store_list(void *inst, kg_record_cb cb, void *ud, kg_diag *diag)
{
    return list_keys(inst, list_sql, 0, NULL, cb, ud, diag);
}

kg_error sql_store_key_page(void *inst, const char *account_id, const char *after,
                            size_t limit, kg_record_cb cb, void *ud, kg_diag *diag)
{
    char n[24];
    const char *params[3] = { account_id, after, n };

    snprintf(n, sizeof(n), "%zu", limit);
    return list_keys(inst, page_sql, 3, params, cb, ud, diag);
}

/*
 * In one transaction: the key's account exists (or, for a key created
 * without one, an account of its own is made, its overrides moved to
 * it), then the key is written.  Nothing is written if any step fails.
 */
kg_error sql_store_put(void *inst, const kg_record *r, int create,
                       kg_diag *diag)
{
    struct sqlstore *s = inst;
    struct sql_params p;
    struct sql_tx t;
    kg_record *own = NULL;
    const char *aid = kg_record_account_id(r);
    char own_id[KG_ACCOUNT_ID_MAX + 32];
    long changes = 0, n = -1;
    kg_error e = KG_OK;

    memset(&p, 0, sizeof(p));
    if (sql_tx_begin(s, &t) != SQL_OK)
        return sql_to_kg(t.rc, diag, t.err);
    if (aid != NULL) {
        const char *params[1] = { aid };
        if (sql_tx_exec(&t, account_lock_sql, 1, params, NULL, NULL, &n) == SQL_OK &&
            n == 0) {
            kg_diag_set(diag, "account: no account with id '%.160s'", aid);
            e = KG_ERR_NOT_FOUND;
            goto out;
        }
    } else if (create) {
        if ((e = sql_account_of_its_own(&t, r, own_id, sizeof(own_id), diag)) != KG_OK)
            goto out;
        if ((own = kg_record_dup(r)) == NULL ||
            kg_record_set_account_id(own, own_id) != KG_OK) {
            e = KG_ERR_NOMEM;
            goto out;
        }
        kg_record_clear_limits(own);
        r = own;
    }
    if ((e = sql_params_build(&p, r, diag)) != KG_OK)
        goto out;
    sql_tx_exec(&t, create ? insert_sql : update_sql, SQL_NCOLS, p.v, NULL,
                NULL, &changes);
    if (t.rc == SQL_CONSTRAINT && create) {
        kg_diag_set(diag, "key id '%s' (or its hash) already exists", kg_record_id(r));
        e = KG_ERR_EXISTS;
    } else if (t.rc == SQL_OK && !create && changes == 0) {
        kg_diag_set(diag, "no key with id '%s'", kg_record_id(r));
        e = KG_ERR_NOT_FOUND;
    }
out:
    if (sql_tx_end(&t, e == KG_OK) != SQL_OK && e == KG_OK)
        e = sql_to_kg(t.rc, diag, t.err);
    sql_params_free(&p);
    kg_record_unref(own);
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
