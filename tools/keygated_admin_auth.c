/*
 * keygated_admin_auth.c - who calls the admin API, and what they may do
 * (docs/admin-api.md, "Who may call it").
 *
 * The caller's key is checked by the serving policy as a request for the
 * admin route itself (its method and path), so that the key's plan's
 * account stage (a revoked or expired key, its networks, its scope's
 * route rules) and its limits apply as on any route; no concurrency
 * lease is taken (nothing would release it).  Then the scope:
 *
 *   operator  a key holding the permission "admin" on the plan "admin":
 *             every account;
 *   customer  a key holding "account:manage": its own account only;
 *             another account's resources are answered 404, as if they
 *             did not exist, so that ids cannot be probed.
 *
 * Only those exact permissions count: a "*" key (everything on the
 * data routes) is not a management key.  Any other key gets 403.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <microhttpd.h>

#include "admin_perms.h"
#include "keygated_admin.h"


struct headers {
    kg_request *req;
    int oom;
};

static enum MHD_Result add_header(void *cls, enum MHD_ValueKind kind,
                                  const char *key, size_t key_size,
                                  const char *value, size_t value_size)
{
    struct headers *h = cls;
    (void)kind;
    if (kg_request_add_header_n(h->req, key, key_size, value ? value : "",
                                value ? value_size : 0) == KG_ERR_NOMEM)
        h->oom = 1;
    return MHD_YES;
}

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* The denial as the check renders it (status, body, WWW-Authenticate,
 * rate-limit headers, Retry-After), with the admin answers' headers. */
static int respond_decision(struct MHD_Connection *conn, const kg_decision *d)
{
    struct kgd_hdr h[KGD_MAX_ANSWER_HEADERS];
    size_t i, n = 0, nd = kg_decision_header_count(d);
    const char *body = kg_decision_body(d);

    for (i = 0; i < nd && n < KGD_MAX_ANSWER_HEADERS; i++) {
        if (kg_decision_header(d, i, &h[n].name, &h[n].value) == KG_OK &&
            strcasecmp(h[n].name, "Content-Type") != 0 &&
            strcasecmp(h[n].name, "Cache-Control") != 0)
            n++;
    }
    return kgd_admin_raw(conn, (unsigned)kg_decision_status(d),
                         "application/json", body, strlen(body), h, n);
}

static int has_permission(json_t *rec, const char *perm)
{
    json_t *perms = json_object_get(rec, "permissions"), *v;
    size_t i;
    json_array_foreach(perms, i, v) {
        if (json_is_string(v) && strcmp(json_string_value(v), perm) == 0)
            return 1;
    }
    return 0;
}

int kgd_admin_auth(kgd_admin_call *c, int *ret_r)
{
    const union MHD_ConnectionInfo *ci;
    struct headers h = { NULL, 0 };
    kg_decision *d = NULL;
    json_t *rec = NULL;
    const char *plan, *acct;
    int64_t t0 = now_us();
    int ok = 0;

    *ret_r = MHD_NO;
    if (kg_request_new(&h.req) != KG_OK)
        return 0;
    MHD_get_connection_values_n(c->conn, MHD_HEADER_KIND, add_header, &h);
    ci = MHD_get_connection_info(c->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    /* The TCP peer: the admin listener trusts no proxy's word for it. */
    if (ci != NULL && ci->client_addr != NULL) {
        kgd_sockaddr_str(ci->client_addr, c->client, sizeof(c->client));
        if (kg_request_set_client_addr(h.req, ci->client_addr) == KG_ERR_NOMEM)
            h.oom = 1;
    }
    if (h.oom || kg_request_set_no_lease(h.req, 1) != KG_OK)
        goto out;
    if (kg_request_set_target(h.req, c->method, c->url) == KG_ERR_NOMEM)
        goto out;
    if (kg_check(c->p, h.req, &d) != KG_OK)
        goto out;
    {
        struct kgd_access a;
        a.endpoint = "admin";
        a.client = c->client[0] ? c->client : NULL;
        a.method = c->method;
        a.path = kg_request_path(h.req);
        if (a.path != NULL && *a.path == '\0')
            a.path = NULL;
        a.d = d;
        a.micros = now_us() - t0;
        kgd_log_access(&a);
    }
    if (!kg_decision_allowed(d)) {
        *ret_r = respond_decision(c->conn, d);
        goto out;
    }
    snprintf(c->key_id, sizeof(c->key_id), "%s",
             kg_decision_key_id(d) ? kg_decision_key_id(d) : "");
    acct = kg_decision_account_id(d);
    snprintf(c->account_id, sizeof(c->account_id), "%s", acct ? acct : "");
    snprintf(c->actor, sizeof(c->actor), "key:%s", c->key_id);
    plan = kg_decision_plan(d);
    rec = kgd_admin_parse(kg_decision_record_json(d));
    if (rec == NULL)
        goto out;
    if (plan != NULL && strcmp(plan, KG_ADMIN_PLAN) == 0 &&
        has_permission(rec, KG_ADMIN_PERM)) {
        c->operator = 1;
        ok = 1;
    } else if (c->account_id[0] != '\0' && has_permission(rec, KG_ADMIN_PERM_MANAGE)) {
        ok = 1;
    } else {
        *ret_r = kgd_admin_error(c, 403, "forbidden",
                                 "this key may not use the admin API (it "
                                 "needs the permission account:manage, or "
                                 "admin on the admin plan)", NULL);
    }
out:
    json_decref(rec);
    kg_decision_free(d);
    kg_request_free(h.req);
    return ok;
}

int kgd_admin_may_see(const kgd_admin_call *c, const char *account_id)
{
    if (c->operator)
        return 1;
    return account_id != NULL && c->account_id[0] != '\0' &&
           strcmp(account_id, c->account_id) == 0;
}
