/*
 * accounts.c - the sql keystore's accounts (docs/plugins.md "Accounts",
 * docs/sql.md "Accounts"): keygate_accounts rows read and written, each
 * write one transaction that checks what the unique constraints cannot
 * say by field (an id or an external id another account has, as the
 * other's id or external id), and the account of its own that a key
 * created without one is given (the rule of migration 003).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sql.h"

/* By id first, then by external id (an external id never equals another
 * account's id: the put below refuses that). */
static const char get_sql[] =
    "SELECT " SQL_ACCT_COLS " FROM keygate_accounts WHERE id = $1 OR "
    "external_id = $1 ORDER BY CASE WHEN id = $1 THEN 0 ELSE 1 END LIMIT 1";
static const char list_sql[] =
    "SELECT " SQL_ACCT_COLS " FROM keygate_accounts ORDER BY created_at, id";
/* A page: the primary key's index, from `after` on (a keyset). */
static const char page_sql[] =
    "SELECT " SQL_ACCT_COLS " FROM keygate_accounts WHERE id > $1 "
    "ORDER BY id LIMIT $2";
static const char id_taken_sql[] =
    "SELECT count(*) FROM keygate_accounts WHERE id = $1";
/* Another account whose id or external id is this one's id or external
 * id: its id and external id. */
static const char clash_sql[] =
    "SELECT id, external_id FROM keygate_accounts WHERE id <> $1 AND "
    "(external_id = $1 OR id = $2 OR external_id = $2) LIMIT 1";
static const char insert_sql[] =
    "INSERT INTO keygate_accounts (" SQL_ACCT_COLS ") VALUES "
    "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";
static const char update_sql[] =
    "UPDATE keygate_accounts SET external_id = $2, name = $3, plan = $4, "
    "limits = $5, allowed_cidrs = $6, permissions = $7, status = $8, "
    "created_at = $9, updated_at = $10, metadata = $11 WHERE id = $1";
static const char live_keys_sql[] =
    "SELECT count(*) FROM keygate_keys WHERE account_id = $1 AND "
    "status <> 'revoked'";
static const char revoke_keys_sql[] =
    "UPDATE keygate_keys SET status = 'revoked' WHERE account_id = $1 AND "
    "status <> 'revoked'";
static const char delete_sql[] =
    "DELETE FROM keygate_accounts WHERE id = $1";

struct one_acct {
    kg_account *a;
    int bad;
};

static int one_acct_row(void *ud, int n, const char *const *v)
{
    struct one_acct *o = ud;
    o->a = sql_row_to_account(n, v);
    o->bad = o->a == NULL;
    return 1;
}

kg_error sql_account_get(void *inst, const char *id, kg_account **a_r,
                         kg_diag *diag)
{
    struct sqlstore *s = inst;
    const char *params[1] = { id };
    struct one_acct o = { NULL, 0 };
    char err[512] = "";
    int rc = sql_run(s, get_sql, 1, params, one_acct_row, &o, NULL, err, sizeof(err));

    if (rc != SQL_OK) {
        kg_account_unref(o.a);
        return sql_to_kg(rc, diag, err);
    }
    if (o.bad) {
        kg_diag_set(diag, "account '%.160s': the stored row cannot be read", id);
        return KG_ERR_IO;
    }
    if (o.a == NULL) {
        kg_diag_set(diag, "account: no account with id or external id '%.160s'", id);
        return KG_ERR_NOT_FOUND;
    }
    *a_r = o.a;
    return KG_OK;
}

struct listing {
    kg_account_cb cb;
    void *ud;
    int bad;
};

static int list_row(void *ud, int n, const char *const *v)
{
    struct listing *l = ud;
    kg_account *a = sql_row_to_account(n, v);
    int stop;
    if (a == NULL) {
        l->bad++;
        return 0;
    }
    stop = l->cb(a, l->ud);
    kg_account_unref(a);
    return stop;
}

/* Every account a statement answers, to cb. */
static kg_error list_accounts(struct sqlstore *s, const char *sql, int n,
                              const char *const *params, kg_account_cb cb,
                              void *ud, kg_diag *diag)
{
    struct listing l = { cb, ud, 0 };
    char err[512] = "";
    int rc = sql_run(s, sql, n, params, list_row, &l, NULL, err, sizeof(err));

    if (rc != SQL_OK)
        return sql_to_kg(rc, diag, err);
    if (l.bad) {
        kg_diag_set(diag, "%d stored account(s) could not be read and were skipped",
                    l.bad);
        return KG_ERR_IO;
    }
    return KG_OK;
}

kg_error sql_account_list(void *inst, kg_account_cb cb, void *ud, kg_diag *diag)
{
    return list_accounts(inst, list_sql, 0, NULL, cb, ud, diag);
}

kg_error sql_account_page(void *inst, const char *after, size_t limit,
                          kg_account_cb cb, void *ud, kg_diag *diag)
{
    char n[24];
    const char *params[2] = { after, n };

    snprintf(n, sizeof(n), "%zu", limit);
    return list_accounts(inst, page_sql, 2, params, cb, ud, diag);
}

/* The first row's first two columns, copied. */
struct two {
    char a[KG_ACCOUNT_ID_MAX + 1], b[KG_ACCOUNT_ID_MAX + 1];
    int found;
};

static int two_row(void *ud, int n, const char *const *v)
{
    struct two *t = ud;
    t->found = 1;
    snprintf(t->a, sizeof(t->a), "%s", n > 0 && v[0] ? v[0] : "");
    snprintf(t->b, sizeof(t->b), "%s", n > 1 && v[1] ? v[1] : "");
    return 1;
}

kg_error sql_account_put(void *inst, const kg_account *a, int create,
                         kg_diag *diag)
{
    struct sqlstore *s = inst;
    struct sql_acct_params p;
    struct sql_tx t;
    struct two other = { "", "", 0 };
    const char *id = kg_account_id(a), *x = kg_account_external_id(a);
    const char *keys[2] = { id, x };
    long long taken = 0;
    long changes = 0;
    kg_error e;

    if ((e = sql_acct_params_build(&p, a, diag)) != KG_OK) {
        sql_acct_params_free(&p);
        return e;
    }
    if (sql_tx_begin(s, &t) != SQL_OK) {
        sql_acct_params_free(&p);
        return sql_to_kg(t.rc, diag, t.err);
    }
    if (create && sql_tx_exec(&t, id_taken_sql, 1, keys, sql_one_ll, &taken,
                              NULL) == SQL_OK && taken > 0) {
        kg_diag_set(diag, "id: account '%s' exists already", id);
        e = KG_ERR_EXISTS;
        goto out;
    }
    if (sql_tx_exec(&t, clash_sql, 2, keys, two_row, &other, NULL) == SQL_OK &&
        other.found) {
        kg_diag_set(diag, "external_id: '%s' is account %s's already",
                    x != NULL && (strcmp(other.a, x) == 0 || strcmp(other.b, x) == 0)
                        ? x : id, other.a);
        e = KG_ERR_EXISTS;
        goto out;
    }
    sql_tx_exec(&t, create ? insert_sql : update_sql, SQL_ACCT_NCOLS, p.v, NULL,
                NULL, &changes);
    if (t.rc == SQL_CONSTRAINT) {
        /* Another writer took it between the check and the write. */
        kg_diag_set(diag, "id: account '%s' (or external_id '%s') exists already",
                    id, x ? x : "");
        e = KG_ERR_EXISTS;
    } else if (t.rc == SQL_OK && !create && changes == 0) {
        kg_diag_set(diag, "id: no account with id '%s'", id);
        e = KG_ERR_NOT_FOUND;
    }
out:
    if (sql_tx_end(&t, e == KG_OK) != SQL_OK && e == KG_OK)
        e = sql_to_kg(t.rc, diag, t.err);
    sql_acct_params_free(&p);
    return e;
}

kg_error sql_account_delete(void *inst, const char *id, int with_keys,
                            kg_diag *diag)
{
    struct sqlstore *s = inst;
    struct sql_tx t;
    struct two found = { "", "", 0 };
    const char *params[1] = { id }, *aid[1] = { found.a };
    long long live = 0;
    kg_error e = KG_OK;

    if (sql_tx_begin(s, &t) != SQL_OK)
        return sql_to_kg(t.rc, diag, t.err);
    if (sql_tx_exec(&t, get_sql, 1, params, two_row, &found, NULL) == SQL_OK &&
        !found.found) {
        kg_diag_set(diag, "account: no account with id or external id '%.160s'", id);
        e = KG_ERR_NOT_FOUND;
        goto out;
    }
    /* Deleted first: the row's lock waits for a key being written for
     * it (manage.c's put), so that the count below sees that key. */
    sql_tx_exec(&t, delete_sql, 1, aid, NULL, NULL, NULL);
    if (sql_tx_exec(&t, live_keys_sql, 1, aid, sql_one_ll, &live, NULL) == SQL_OK &&
        live > 0 && !with_keys) {
        kg_diag_set(diag, "account %s has %lld key%s that %s not revoked: revoke "
                    "them first, or delete with --with-keys (which revokes them)",
                    found.a, live, live == 1 ? "" : "s", live == 1 ? "is" : "are");
        e = KG_ERR_EXISTS;
        goto out;
    }
    /* Revoked keys keep their account id (docs/plugins.md "Accounts"). */
    if (live > 0)
        sql_tx_exec(&t, revoke_keys_sql, 1, aid, NULL, NULL, NULL);
out:
    if (sql_tx_end(&t, e == KG_OK) != SQL_OK && e == KG_OK)
        e = sql_to_kg(t.rc, diag, t.err);
    return e;
}

kg_error sql_account_of_its_own(struct sql_tx *t, const kg_record *r,
                                char *id_out, size_t idlen, kg_diag *diag)
{
    struct sql_acct_params p;
    kg_account *a = NULL;
    long long taken;
    unsigned n = 0;
    kg_error e;

    /* The account's id is the same in every store that migrates
     * (docs/plugins.md "Accounts"); a suffix if taken. */
    do {
        const char *params[1];
        kg_account_unref(a);
        if ((a = kg_account_for_key(r, n++, (int64_t)time(NULL))) == NULL)
            return KG_ERR_NOMEM;
        params[0] = kg_account_id(a);
        taken = 0;
        if (sql_tx_exec(t, id_taken_sql, 1, params, sql_one_ll, &taken, NULL) != SQL_OK) {
            kg_account_unref(a);
            return sql_to_kg(t->rc, diag, t->err);
        }
    } while (taken != 0);
    snprintf(id_out, idlen, "%s", kg_account_id(a));
    e = sql_acct_params_build(&p, a, diag);
    if (e == KG_OK &&
        sql_tx_exec(t, insert_sql, SQL_ACCT_NCOLS, p.v, NULL, NULL, NULL) != SQL_OK)
        e = sql_to_kg(t->rc, diag, t->err);
    sql_acct_params_free(&p);
    kg_account_unref(a);
    return e;
}
