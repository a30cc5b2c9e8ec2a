/*
 * keygated_admin_info.c - what the API says about itself and its
 * caller: /plans, /me, /audit and /openapi.json (docs/openapi.json,
 * embedded at build time and served as it is).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <microhttpd.h>
#include <keygate/audit.h>

#include "keygated_admin.h"

/* docs/openapi.json, embedded by make (keygated_openapi.c). */
extern const char kgd_openapi_json[];

int kgd_admin_openapi(struct MHD_Connection *conn, const kgd_conf *conf)
{
    (void)conf;
    return kgd_admin_raw(conn, 200, "application/json", kgd_openapi_json,
                         strlen(kgd_openapi_json), NULL, 0);
}

int kgd_admin_plans(kgd_admin_call *c, char *const *ids)
{
    size_t i, j, n = kg_policy_plan_count(c->p);
    json_t *items = json_array();
    (void)ids;

    if (items == NULL)
        return MHD_NO;
    for (i = 0; i < n; i++) {
        const char *name = kg_policy_plan_name(c->p, i);
        size_t nl = kg_policy_plan_limit_count(c->p, name);
        json_t *limits = json_array(), *plan;
        for (j = 0; limits != NULL && j < nl; j++) {
            const char *ln = kg_policy_plan_limit_name(c->p, name, j);
            int64_t count, window;
            /* count and window null where the line's plugin reads no
             * count; window null where it reads no window (concurrency). */
            int sized = kg_policy_plan_limit_size(c->p, name, j, &count,
                                                  &window) == KG_OK;
            json_array_append_new(limits, json_pack("{s:s?, s:s, s:o, s:o}",
                "name", ln,
                "per", kg_policy_plan_limit_per_key(c->p, name, j) == 1
                       ? "key" : "account",
                "count", sized ? json_integer(count) : json_null(),
                "window", sized && window > 0 ? json_integer(window)
                                              : json_null()));
        }
        plan = json_pack("{s:s, s:o, s:b, s:b}", "name", name, "limits", limits,
                         "checks_permissions",
                         kg_policy_plan_has_module(c->p, name, "scope") == 1,
                         "checks_networks",
                         kg_policy_plan_has_module(c->p, name, "ipacl") == 1);
        if (plan == NULL || json_array_append_new(items, plan) != 0) {
            json_decref(items);
            return MHD_NO;
        }
    }
    return kgd_admin_json(c, 200, json_pack("{s:o}", "items", items), NULL);
}

int kgd_admin_me(kgd_admin_call *c, char *const *ids)
{
    kg_record *r = NULL;
    kg_account *a = NULL;
    json_t *key = NULL, *acct = NULL;
    kg_diag d;
    kg_error e;
    int ret = MHD_NO;
    (void)ids;

    memset(&d, 0, sizeof(d));
    if ((e = kg_keys_get(c->p, c->key_id, &r, &d)) != KG_OK)
        return kgd_admin_kg_error(c, e, &d, NULL);
    if ((key = kgd_admin_key_json(c, r)) == NULL)
        goto out;
    if (c->account_id[0] != '\0' &&
        kg_accounts_get(c->p, c->account_id, &a, &d) == KG_OK)
        acct = kgd_admin_parse(kg_account_to_json(a));
    ret = kgd_admin_json(c, 200, json_pack("{s:o, s:o, s:s}", "key", key,
                         "account", acct ? acct : json_null(), "scope",
                         c->operator ? "operator" : "account"), NULL);
    key = NULL;
out:
    json_decref(key);
    kg_account_unref(a);
    kg_record_unref(r);
    return ret;
}

static int add_record(const kg_audit_record *r, void *ud)
{
    return kgd_admin_idpage_add(ud, kgd_admin_parse(kg_audit_record_to_json(r)),
                                r->id);
}

int kgd_admin_audit_list(kgd_admin_call *c, char *const *ids)
{
    const char *acct = MHD_lookup_connection_value(c->conn, MHD_GET_ARGUMENT_KIND, "account");
    kg_audit_query q;
    struct kgd_admin_idpage pg;
    int64_t since;
    kg_diag d;
    kg_error e;
    int ret = MHD_NO;
    (void)ids;

    memset(&q, 0, sizeof(q));
    memset(&d, 0, sizeof(d));
    if (kgd_admin_idpage_start(c, &pg, &q.before_id, &q.limit, &ret) != 0)
        return ret;
    /* A customer reads its own account's trail, and no other's. */
    if (!c->operator) {
        if (acct != NULL && strcmp(acct, c->account_id) != 0) {
            ret = kgd_admin_error(c, 404, "not_found", "no such account", NULL);
            goto out;
        }
        acct = c->account_id;
    }
    q.account_id = acct;
    q.target = MHD_lookup_connection_value(c->conn, MHD_GET_ARGUMENT_KIND, "target");
    q.action = MHD_lookup_connection_value(c->conn, MHD_GET_ARGUMENT_KIND, "action");
    if (kgd_admin_time_arg(c, "since", 0, &since, &ret) != 0)
        goto out;
    q.since_ms = since * 1000;
    e = kg_audit_query_run(c->p, &q, add_record, &pg, &d);
    if (e != KG_OK && !pg.oom)
        ret = kgd_admin_kg_error(c, e, &d, NULL);
    else
        ret = kgd_admin_idpage_answer(c, &pg);
out:
    json_decref(pg.items);
    return ret;
}
