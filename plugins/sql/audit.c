/*
 * audit.c - the sql keystore's audit log: keygate_audit (migration 006,
 * docs/audit.md).  One insert per record, committed before it returns
 * (the database's own durability); one query with every filter as a
 * parameter (NULL: any), newest first by id.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sql.h"

#define AUDIT_COLS "id, time_ms, actor_key_id, actor_account_id, actor, " \
                   "client, action, target, account_id, changes, result"
#define AUDIT_NCOLS 11

static const char insert_sql[] =
    "INSERT INTO keygate_audit (time_ms, actor_key_id, actor_account_id, "
    "actor, client, action, target, account_id, changes, result) VALUES "
    "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
/* Static, so that drivers may keep it prepared: a filter left out is a
 * NULL parameter (typed by the CAST: PostgreSQL cannot tell the type of
 * a bare `$1 IS NULL`), the bounds are numbers that include every row. */
static const char query_sql[] =
    "SELECT " AUDIT_COLS " FROM keygate_audit WHERE "
    "(CAST($1 AS TEXT) IS NULL OR account_id = $1) AND "
    "(CAST($2 AS TEXT) IS NULL OR target = $2) AND "
    "(CAST($3 AS TEXT) IS NULL OR action = $3) AND time_ms >= $4 AND time_ms < $5 AND "
    "id < $6 ORDER BY id DESC LIMIT $7";

kg_error sql_audit_append(void *inst, const kg_audit_record *r, kg_diag *diag)
{
    struct sqlstore *s = inst;
    char when[24], err[512] = "";
    const char *params[10];
    int rc;

    snprintf(when, sizeof(when), "%lld", (long long)r->time_ms);
    params[0] = when;
    params[1] = r->actor_key_id;
    params[2] = r->actor_account_id;
    params[3] = r->actor;
    params[4] = r->client;
    params[5] = r->action;
    params[6] = r->target;
    params[7] = r->account_id;
    params[8] = r->changes;
    params[9] = r->result;
    rc = sql_run(s, insert_sql, 10, params, NULL, NULL, NULL, err, sizeof(err));
    return rc == SQL_OK ? KG_OK : sql_to_kg(rc, diag, err);
}

struct query_state {
    kg_audit_cb cb;
    void *ud;
};

static int audit_row(void *ud, int n, const char *const *v)
{
    struct query_state *qs = ud;
    kg_audit_record r;

    if (n < AUDIT_NCOLS || v[0] == NULL)
        return 0;
    memset(&r, 0, sizeof(r));
    r.id = strtoll(v[0], NULL, 10);
    r.time_ms = v[1] ? strtoll(v[1], NULL, 10) : 0;
    r.actor_key_id = v[2];
    r.actor_account_id = v[3];
    r.actor = v[4];
    r.client = v[5];
    r.action = v[6];
    r.target = v[7];
    r.account_id = v[8];
    r.changes = v[9];
    r.result = v[10];
    return qs->cb(&r, qs->ud);
}

static const char *or_null(const char *s)
{
    return s != NULL && s[0] != '\0' ? s : NULL;
}

kg_error sql_audit_query(void *inst, const kg_audit_query *q, kg_audit_cb cb,
                         void *ud, kg_diag *diag)
{
    struct sqlstore *s = inst;
    struct query_state qs = { cb, ud };
    char since[24], until[24], before[24], limit[24], err[512] = "";
    const char *params[7];
    int rc;

    snprintf(since, sizeof(since), "%lld", (long long)q->since_ms);
    snprintf(until, sizeof(until), "%lld",
             q->until_ms > 0 ? (long long)q->until_ms : (long long)INT64_MAX);
    snprintf(before, sizeof(before), "%lld",
             q->before_id > 0 ? (long long)q->before_id : (long long)INT64_MAX);
    snprintf(limit, sizeof(limit), "%lld",
             q->limit > 0 && q->limit < (size_t)INT64_MAX ? (long long)q->limit
                                                          : (long long)INT64_MAX);
    params[0] = or_null(q->account_id);
    params[1] = or_null(q->target);
    params[2] = or_null(q->action);
    params[3] = since;
    params[4] = until;
    params[5] = before;
    params[6] = limit;
    rc = sql_run(s, query_sql, 7, params, audit_row, &qs, NULL, err, sizeof(err));
    return rc == SQL_OK ? KG_OK : sql_to_kg(rc, diag, err);
}
