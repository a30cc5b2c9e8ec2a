/*
 * audit.c - the audit log (keygate/audit.h, docs/audit.md): records
 * checked here, then kept and read by the policy's first key store that
 * has the audit ops.
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <keygate/audit.h>

/* The first keystore line whose plugin keeps an audit log. */
static const kg__line *audit_store(kg_policy *p, kg_diag *diag)
{
    size_t i;
    for (i = 0; p != NULL && i < p->keystore.n; i++) {
        const kg__line *l = p->keystore.lines[i];
        const struct kg_keystore_ops *o = l->mod->plugin->keystore;
        /* A plugin built against ABI 1.5 or older has a shorter table. */
        if (l->mod->plugin->abi_minor >= 6 && o->audit_append != NULL &&
            o->audit_query != NULL)
            return l;
    }
    kg__diag_set(diag, p ? p->source : NULL, 0, 0, "no keystore in this policy "
                 "keeps an audit log (the file and sql stores do, the ldap "
                 "store with its audit_file option: docs/audit.md)");
    return NULL;
}

static int base62(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
           (c >= 'A' && c <= 'Z');
}

/*
 * 1 if s holds a key of this policy's form with a valid checksum: a
 * caller's bug (a key in a name, in changes) must not put a live key
 * into a log that operators read and ship.
 */
static int holds_key(const char *s, const char *prefix)
{
    size_t pl = strlen(prefix), klen = pl + 1 + KG_KEY_RANDOM_LEN + KG_KEY_CHECKSUM_LEN;
    const char *at = s;

    while (s != NULL && (at = strstr(at, prefix)) != NULL) {
        size_t i;
        if (at[pl] == '_') {
            for (i = pl + 1; i < klen && base62(at[i]); i++)
                ;
            if (i == klen && kg_key_validate(at, klen) == KG_OK)
                return 1;
        }
        at++;
    }
    return 0;
}

static const char *or_empty(const char *s)
{
    return s != NULL ? s : "";
}

kg_error kg_audit_append(kg_policy *p, const kg_audit_record *r, kg_diag *diag)
{
    const kg__line *l;
    kg_audit_record w;
    char *canon = NULL, err[200];
    const char *const *f;
    kg_error e;
    size_t i;

    kg__diag_clear(diag);
    if (p == NULL || r == NULL)
        return KG_ERR_INVALID;
    if ((l = audit_store(p, diag)) == NULL)
        return KG_ERR_UNSUPPORTED;
    w = *r;
    {
        /* The target may be "": a create refused before it had an id. */
        const char *need[] = { w.actor, w.action, w.result };
        const char *names[] = { "actor", "action", "result" };
        for (i = 0; i < KG__ARRAY_LEN(need); i++) {
            if (need[i] == NULL || need[i][0] == '\0') {
                kg__diag_set(diag, NULL, 0, 0, "audit record: no %s", names[i]);
                return KG_ERR_INVALID;
            }
        }
    }
    w.target = or_empty(w.target);
    w.actor_key_id = or_empty(w.actor_key_id);
    w.actor_account_id = or_empty(w.actor_account_id);
    w.client = or_empty(w.client);
    w.account_id = or_empty(w.account_id);
    /* One compact JSON object: a JSON-lines store keeps it on one line. */
    if (w.changes != NULL &&
        kg__json_object_canon(w.changes, strlen(w.changes), &canon, err,
                              sizeof(err)) != 0) {
        kg__diag_set(diag, NULL, 0, 0, "audit record: changes: %s", err);
        return KG_ERR_INVALID;
    }
    w.changes = canon != NULL ? canon : "{}";
    {
        const char *const all[] = { w.actor_key_id, w.actor_account_id, w.actor,
                                    w.client, w.action, w.target, w.account_id,
                                    w.changes, w.result, NULL };
        for (f = all; *f != NULL; f++) {
            if (holds_key(*f, p->key_prefix)) {
                kg__diag_set(diag, NULL, 0, 0, "audit record: holds an API "
                             "key (a record never does: docs/audit.md)");
                e = KG_ERR_INVALID;
                goto out;
            }
        }
    }
    if (w.time_ms == 0)
        w.time_ms = kg_context_now(p->ctx) / 1000;
    w.id = 0;
    e = l->mod->plugin->keystore->audit_append(l->inst, &w, diag);
out:
    free(canon);
    return e;
}

kg_error kg_audit_query_run(kg_policy *p, const kg_audit_query *q,
                            kg_audit_cb cb, void *ud, kg_diag *diag)
{
    const kg__line *l;
    kg_audit_query none;

    kg__diag_clear(diag);
    if (p == NULL || cb == NULL)
        return KG_ERR_INVALID;
    if ((l = audit_store(p, diag)) == NULL)
        return KG_ERR_UNSUPPORTED;
    if (q == NULL) {
        memset(&none, 0, sizeof(none));
        q = &none;
    }
    return l->mod->plugin->keystore->audit_query(l->inst, q, cb, ud, diag);
}

const char *kg_audit_result(kg_error e)
{
    switch (e) {
    case KG_OK: return "ok";
    case KG_ERR_INVALID: case KG_ERR_POLICY: case KG_ERR_KEY_FORMAT:
        return "invalid";
    case KG_ERR_NOT_FOUND: return "not_found";
    case KG_ERR_EXISTS: return "conflict";
    case KG_ERR_READONLY: return "read_only";
    case KG_ERR_UNAVAILABLE: return "unavailable";
    case KG_ERR_UNSUPPORTED: return "unsupported";
    case KG_ERR_IO: return "io_error";
    case KG_ERR_NOMEM: return "no_memory";
    case KG_ERR_PLUGIN: case KG_ERR_VERIFY: case KG_ERR_WOULD_BLOCK:
    case KG_ERR__LAST:
        break;
    }
    return "error";
}

char *kg_audit_record_to_json(const kg_audit_record *r)
{
    kg__buf b;
    char ts[32], err[8], *canon = NULL;
    int64_t s = r->time_ms >= 0 ? r->time_ms / 1000 : (r->time_ms - 999) / 1000;
    int ms = (int)(r->time_ms - s * 1000);

    /* "2026-12-31T10:00:00Z" -> "2026-12-31T10:00:00.123Z" */
    kg__format_time(s, ts);
    ts[19] = '\0';
    kg__buf_init(&b);
    kg__buf_addf(&b, "{\"id\":%lld,\"time\":\"%s.%03dZ\"", (long long)r->id, ts, ms);
    kg__buf_adds(&b, ",\"actor\":");
    kg__buf_json_str(&b, or_empty(r->actor));
    kg__buf_adds(&b, ",\"actor_key_id\":");
    kg__buf_json_str(&b, or_empty(r->actor_key_id));
    kg__buf_adds(&b, ",\"actor_account_id\":");
    kg__buf_json_str(&b, or_empty(r->actor_account_id));
    kg__buf_adds(&b, ",\"client\":");
    kg__buf_json_str(&b, or_empty(r->client));
    kg__buf_adds(&b, ",\"action\":");
    kg__buf_json_str(&b, or_empty(r->action));
    kg__buf_adds(&b, ",\"target\":");
    kg__buf_json_str(&b, or_empty(r->target));
    kg__buf_adds(&b, ",\"account_id\":");
    kg__buf_json_str(&b, or_empty(r->account_id));
    kg__buf_adds(&b, ",\"changes\":");
    /* What kg_audit_append() checked is one compact object; anything
     * else (a row edited by hand) goes out as a string: the output stays
     * JSON and nothing is lost. */
    if (r->changes == NULL || r->changes[0] == '\0')
        kg__buf_adds(&b, "{}");
    else if (kg__json_object_canon(r->changes, strlen(r->changes), &canon, err,
                                   sizeof(err)) == 0)
        kg__buf_adds(&b, canon);
    else
        kg__buf_json_str(&b, r->changes);
    free(canon);
    kg__buf_adds(&b, ",\"result\":");
    kg__buf_json_str(&b, or_empty(r->result));
    kg__buf_adds(&b, "}");
    return kg__buf_take(&b);
}
