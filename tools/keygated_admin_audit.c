/*
 * keygated_admin_audit.c - every change made through the admin API, and
 * every change refused, into the policy's audit log (kg_audit_append,
 * docs/audit.md): who (the calling key and its account), from where
 * (the client's address), what (action, target, the account), the
 * fields that changed (before and after: never a key, never a hash; a
 * refused change carries what was asked for as "after") and the result.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <keygate/audit.h>

#include "keygated_admin.h"

/* Fields that change without anyone changing them (checks touch
 * last_used): not changes. */
static int ignored(const char *field)
{
    return strcmp(field, "last_used") == 0 || strcmp(field, "updated") == 0;
}

json_t *kgd_admin_changes(json_t *before, json_t *after)
{
    json_t *out = json_object(), *v;
    const char *k;

    if (out == NULL)
        return NULL;
    json_object_foreach(after, k, v) {
        json_t *b = json_object_get(before, k);
        if (ignored(k) || (b != NULL && json_equal(b, v)))
            continue;
        json_object_set_new(out, k, json_pack("{s:O?, s:O}", "before", b,
                                              "after", v));
    }
    json_object_foreach(before, k, v) {
        if (ignored(k) || json_object_get(after, k) != NULL || after != NULL)
            continue;
        json_object_set_new(out, k, json_pack("{s:O, s:n}", "before", v,
                                              "after"));
    }
    return out;
}

void kgd_admin_audit(kgd_admin_call *c, const char *action,
                     const char *target, const char *account_id,
                     json_t *before, json_t *after, const char *result)
{
    kg_audit_record r;
    json_t *changes;
    char *text;
    kg_diag d;
    kg_error e;

    /* A refused change: what was asked for (the body), or nothing. */
    if (strcmp(result, "ok") != 0 && after == NULL)
        after = c->body != NULL ? json_incref(c->body) : json_object();
    else
        json_incref(after);
    changes = kgd_admin_changes(before, after);
    json_decref(after);
    text = changes ? json_dumps(changes, JSON_COMPACT) : NULL;
    json_decref(changes);
    memset(&r, 0, sizeof(r));
    memset(&d, 0, sizeof(d));
    r.actor_key_id = c->key_id;
    r.actor_account_id = c->account_id;
    r.actor = c->actor;
    r.client = c->client;
    r.action = action;
    r.target = target != NULL && *target ? target : "-";
    r.account_id = account_id != NULL ? account_id : "";
    r.changes = text;
    r.result = result;
    e = kg_audit_append(c->p, &r, &d);
    if (e != KG_OK)
        kgd_log_msg("audit: %s of %s by %s (%s) not recorded: %s", action,
                    r.target, c->actor, result,
                    d.message[0] ? d.message : kg_strerror(e));
    free(text);
}
