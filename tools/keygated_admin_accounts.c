/*
 * keygated_admin_accounts.c - /api/v1/accounts: list (search, pages),
 * create, get, patch (If-Match), delete, suspend, resume.
 *
 * An account is what kg_account_to_json() gives.  The library checks
 * what is written (plan, networks, permissions, limits, ids: docs/
 * policy.md "Accounts"); what it refuses is answered 400 with the
 * field, nothing written.  A customer key sees its own account only;
 * changes to accounts are an operator's (the route table says which).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>

#include "keygated_admin.h"

static const struct kgd_field account_fields[] = {
    { "id", KGD_F_STRING, 0 },
    { "external_id", KGD_F_STRING_NULL, 0 },
    { "name", KGD_F_STRING, 1 },
    { "plan", KGD_F_STRING, 1 },
    { "permissions", KGD_F_STRINGS, 0 },
    { "allowed_cidrs", KGD_F_STRINGS, 0 },
    { "limits", KGD_F_LIMITS, 0 },
    { "metadata", KGD_F_OBJECT, 0 },
};
/* PATCH: the same but the id, none required. */
static const struct kgd_field patch_fields[] = {
    { "external_id", KGD_F_STRING_NULL, 0 },
    { "name", KGD_F_STRING, 0 },
    { "plan", KGD_F_STRING, 0 },
    { "permissions", KGD_F_STRINGS, 0 },
    { "allowed_cidrs", KGD_F_STRINGS, 0 },
    { "limits", KGD_F_LIMITS, 0 },
    { "metadata", KGD_F_OBJECT, 0 },
};
#define N(a) (sizeof(a) / sizeof((a)[0]))

static json_t *account_json(const kg_account *a)
{
    return kgd_admin_parse(kg_account_to_json(a));
}

kg_account *kgd_admin_account_find(kgd_admin_call *c, const char *id,
                                   int *ret_r)
{
    kg_account *a = NULL;
    kg_diag d;
    kg_error e;

    memset(&d, 0, sizeof(d));
    e = kg_accounts_get(c->p, id, &a, &d);
    if (e == KG_OK && !kgd_admin_may_see(c, kg_account_id(a))) {
        kg_account_unref(a);
        a = NULL;
        e = KG_ERR_NOT_FOUND;
    }
    if (e == KG_ERR_NOT_FOUND)
        *ret_r = kgd_admin_error(c, 404, "not_found", "no such account", NULL);
    else if (e != KG_OK)
        *ret_r = kgd_admin_kg_error(c, e, &d, NULL);
    return a;
}

/* 1 if the policy has the plan; else 0 after a 400 naming its plans. */
static int plan_known(kgd_admin_call *c, const char *plan, int *ret_r)
{
    char msg[512];
    size_t i, n = kg_policy_plan_count(c->p), len;

    for (i = 0; i < n; i++)
        if (strcmp(kg_policy_plan_name(c->p, i), plan) == 0)
            return 1;
    len = (size_t)snprintf(msg, sizeof(msg), "unknown plan '%.64s' (this "
                           "policy has:", plan);
    for (i = 0; i < n && len < sizeof(msg); i++)
        len += (size_t)snprintf(msg + len, sizeof(msg) - len, " %s",
                                kg_policy_plan_name(c->p, i));
    if (len < sizeof(msg))
        snprintf(msg + len, sizeof(msg) - len, ")");
    *ret_r = kgd_admin_error(c, 400, "invalid_request", msg, "plan");
    return 0;
}

/*
 * The body's fields into the account (what it has replaces what the
 * account had).  KG_OK, or an error with *field_r and a message in d.
 */
static kg_error apply(kgd_admin_call *c, kg_account *a, const char **field_r,
                      kg_diag *d)
{
    json_t *v, *e;
    const char *k;
    size_t i;
    kg_error err = KG_OK;

    if ((v = json_object_get(c->body, "id")) != NULL &&
        (err = kg_account_set_id(a, json_string_value(v))) != KG_OK)
        return *field_r = "id", err;
    if ((v = json_object_get(c->body, "external_id")) != NULL &&
        (err = kg_account_set_external_id(a, json_string_value(v))) != KG_OK)
        return *field_r = "external_id", err;
    if ((v = json_object_get(c->body, "name")) != NULL &&
        (err = kg_account_set_name(a, json_string_value(v))) != KG_OK)
        return *field_r = "name", err;
    if ((v = json_object_get(c->body, "plan")) != NULL &&
        (err = kg_account_set_plan(a, json_string_value(v))) != KG_OK)
        return *field_r = "plan", err;
    if ((v = json_object_get(c->body, "permissions")) != NULL) {
        kg_account_clear_permissions(a);
        json_array_foreach(v, i, e) {
            if ((err = kg_account_add_permission(a, json_string_value(e))) != KG_OK) {
                kg_diag_set(d, "permission '%.64s' is not valid",
                            json_string_value(e));
                return *field_r = "permissions", err;
            }
        }
    }
    if ((v = json_object_get(c->body, "allowed_cidrs")) != NULL) {
        kg_account_clear_cidrs(a);
        json_array_foreach(v, i, e) {
            kg_cidr cidr;
            if (kg_cidr_parse(json_string_value(e), &cidr) != KG_OK ||
                (err = kg_account_add_cidr(a, json_string_value(e))) != KG_OK) {
                kg_diag_set(d, "'%.64s' is not an address or CIDR (e.g. "
                            "10.0.0.0/8, 2001:db8::/32)", json_string_value(e));
                return *field_r = "allowed_cidrs", err ? err : KG_ERR_INVALID;
            }
        }
    }
    if ((v = json_object_get(c->body, "limits")) != NULL) {
        kg_account_clear_limits(a);
        json_object_foreach(v, k, e) {
            err = kg_account_add_limit(a, k,
                json_integer_value(json_object_get(e, "count")),
                json_integer_value(json_object_get(e, "window")),
                json_integer_value(json_object_get(e, "burst")));
            if (err != KG_OK)
                return *field_r = "limits", err;
        }
    }
    if ((v = json_object_get(c->body, "metadata")) != NULL) {
        char *m = json_dumps(v, JSON_COMPACT);
        if (m == NULL)
            return KG_ERR_NOMEM;
        err = kg_account_set_metadata(a, m);
        free(m);
        if (err != KG_OK) {
            kg_diag_set(d, "metadata must be one JSON object of at most %d "
                        "bytes", KG_ACCOUNT_METADATA_MAX);
            return *field_r = "metadata", err;
        }
    }
    return KG_OK;
}

/* ---- list ---------------------------------------------------------------- */

struct collect {
    kgd_admin_call *c;
    const char *search;
    const char *after;
    json_t *items;
    int oom;
};

static int collect_account(const kg_account *a, void *ud)
{
    struct collect *k = ud;
    const char *ext = kg_account_external_id(a);
    json_t *j;

    if (!kgd_admin_may_see(k->c, kg_account_id(a)))
        return 0;
    if (k->after[0] != '\0' && strcmp(kg_account_id(a), k->after) <= 0)
        return 0;
    if (k->search != NULL && *k->search != '\0' &&
        strcasestr(kg_account_name(a) ? kg_account_name(a) : "", k->search) == NULL &&
        strcasestr(ext ? ext : "", k->search) == NULL &&
        strcasestr(kg_account_id(a), k->search) == NULL)
        return 0;
    if ((j = account_json(a)) == NULL || json_array_append_new(k->items, j) != 0) {
        k->oom = 1;
        return 1;
    }
    return 0;
}

static int by_id(const void *x, const void *y)
{
    json_t *const *a = x, *const *b = y;
    return strcmp(json_string_value(json_object_get(*a, "id")),
                  json_string_value(json_object_get(*b, "id")));
}

/*
 * Sort a list's items by id and keep the first `limit`; *more_r says
 * whether there were more.  The items' array is rebuilt (jansson has no
 * sort), with references moved.
 */
json_t *kgd_admin_page_of(json_t *items, size_t limit, int *more_r)
{
    size_t i, n = json_array_size(items);
    json_t **v = malloc((n ? n : 1) * sizeof(*v)), *out = json_array();

    if (v == NULL || out == NULL) {
        free(v);
        json_decref(out);
        return NULL;
    }
    for (i = 0; i < n; i++)
        v[i] = json_array_get(items, i);
    qsort(v, n, sizeof(*v), by_id);
    for (i = 0; i < n && i < limit; i++)
        json_array_append(out, v[i]);
    *more_r = n > limit;
    free(v);
    return out;
}

/* A customer's list: its own account, read by id (not the whole store
 * filtered down to it); gone meanwhile: none. */
static kg_error own_account(kgd_admin_call *c, struct collect *k, kg_diag *d)
{
    kg_account *a = NULL;
    kg_error e = kg_accounts_get(c->p, c->account_id, &a, d);

    if (e == KG_ERR_NOT_FOUND)
        return KG_OK;
    if (e == KG_OK)
        collect_account(a, k);
    kg_account_unref(a);
    return e;
}

/*
 * A page the store read itself (kg_accounts_page, kg_keys_page: limit + 1
 * items after the cursor, in its order of ids): the first `limit`, in
 * that order (re-sorting by strcmp would disagree with a PostgreSQL
 * collation, and the next page starts where the store's order says);
 * *more_r: the store had one more.
 */
json_t *kgd_admin_page_cut(json_t *items, size_t limit, int *more_r)
{
    *more_r = json_array_size(items) > limit;
    while (json_array_size(items) > limit)
        json_array_remove(items, json_array_size(items) - 1);
    return json_incref(items);
}

int kgd_admin_accounts_list(kgd_admin_call *c, char *const *ids)
{
    char after[KG_ACCOUNT_ID_MAX + 1];
    struct collect k;
    json_t *page;
    kg_diag d;
    kg_error e;
    size_t limit;
    int ret = MHD_NO, more = 0, paged;
    (void)ids;

    if (kgd_admin_page(c, &limit, after, sizeof(after), &ret) != 0)
        return ret;
    memset(&k, 0, sizeof(k));
    memset(&d, 0, sizeof(d));
    k.c = c;
    k.after = "";             /* a store's page starts after the cursor itself */
    k.search = MHD_lookup_connection_value(c->conn, MHD_GET_ARGUMENT_KIND, "search");
    if ((k.items = json_array()) == NULL)
        return MHD_NO;
    /* An operator's page without a search: one query when the store
     * reads pages (docs/admin-api.md "Lists"); else the whole list; a
     * customer's: its own account. */
    e = KG_ERR_UNSUPPORTED;
    if (c->operator && (k.search == NULL || *k.search == '\0'))
        e = kg_accounts_page(c->p, after, limit + 1, collect_account, &k, &d);
    paged = e != KG_ERR_UNSUPPORTED;
    if (!paged) {
        k.after = after;
        e = c->operator ? kg_accounts_list(c->p, collect_account, &k, &d)
                        : own_account(c, &k, &d);
    }
    if (e != KG_OK || k.oom) {
        json_decref(k.items);
        return k.oom ? MHD_NO : kgd_admin_kg_error(c, e, &d, NULL);
    }
    page = paged ? kgd_admin_page_cut(k.items, limit, &more)
                 : kgd_admin_page_of(k.items, limit, &more);
    json_decref(k.items);
    if (page == NULL)
        return MHD_NO;
    return kgd_admin_json(c, 200, kgd_admin_list(page,
        json_array_size(page) ? json_string_value(json_object_get(
            json_array_get(page, json_array_size(page) - 1), "id")) : NULL,
        more), NULL);
}

/* ---- one account ------------------------------------------------------- */

/* Answer the account with its ETag. */
static int respond_account(kgd_admin_call *c, unsigned status, json_t *j)
{
    char etag[24];
    kgd_admin_etag(j, NULL, etag);
    return kgd_admin_json(c, status, j, etag);
}

int kgd_admin_accounts_create(kgd_admin_call *c, char *const *ids)
{
    kg_account *a = NULL, *stored = NULL;
    const char *field = NULL;
    json_t *after = NULL;
    kg_diag d;
    kg_error e;
    int ret = MHD_NO;
    (void)ids;

    memset(&d, 0, sizeof(d));
    if (kgd_admin_body(c, account_fields, N(account_fields), &ret) != 0 ||
        !plan_known(c, kgd_admin_str(c, "plan"), &ret)) {
        kgd_admin_audit(c, "account.create", kgd_admin_str(c, "id"), NULL,
                        NULL, c->body, "invalid_request");
        return ret;
    }
    if ((a = kg_account_new()) == NULL)
        return MHD_NO;
    e = apply(c, a, &field, &d);
    if (e == KG_OK)
        e = kg_accounts_create(c->p, a, &d);
    if (e != KG_OK) {
        if (field == NULL)
            field = kgd_admin_field_of(c, &d);
        kgd_admin_audit(c, "account.create", kg_account_id(a),
                        kg_account_id(a), NULL, c->body, kgd_admin_code_of(e));
        ret = kgd_admin_kg_error(c, e, &d, field);
        goto out;
    }
    /* What the store holds now (ids, times filled in). */
    if (kg_accounts_get(c->p, kg_account_id(a), &stored, &d) == KG_OK)
        after = account_json(stored);
    else
        after = account_json(a);
    if (after == NULL)
        goto out;
    kgd_admin_audit(c, "account.create", kg_account_id(a), kg_account_id(a),
                    NULL, after, "ok");
    ret = respond_account(c, 201, after);
out:
    kg_account_unref(stored);
    kg_account_unref(a);
    return ret;
}

int kgd_admin_account_get(kgd_admin_call *c, char *const *ids)
{
    int ret = MHD_NO;
    kg_account *a = kgd_admin_account_find(c, ids[0], &ret);
    json_t *j;

    if (a == NULL)
        return ret;
    j = account_json(a);
    kg_account_unref(a);
    return j ? respond_account(c, 200, j) : MHD_NO;
}

/*
 * 1 if If-Match (when sent) names the resource's ETag now; else 0 after
 * a 412.  Without If-Match the write is not conditional.
 */
int kgd_admin_if_match(kgd_admin_call *c, json_t *now, const char *skip,
                       int *ret_r)
{
    const char *want = MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND,
                                                   "If-Match");
    char etag[24];

    if (want == NULL || strcmp(want, "*") == 0)
        return 1;
    kgd_admin_etag(now, skip, etag);
    if (strcmp(want, etag) == 0)
        return 1;
    *ret_r = kgd_admin_error(c, 412, "precondition_failed",
                             "the resource changed since it was read (its "
                             "ETag is not the If-Match given): read it again",
                             NULL);
    return 0;
}

/*
 * Change an account: `edit` (NULL: the body's fields) on a copy of it,
 * written with kg_accounts_update(), audited as `action`.
 */
static int change(kgd_admin_call *c, const char *id, const char *action,
                  int suspend)
{
    kg_account *a, *copy = NULL, *stored = NULL;
    const char *field = NULL;
    json_t *before = NULL, *after = NULL;
    kg_diag d;
    kg_error e;
    int ret = MHD_NO;

    memset(&d, 0, sizeof(d));
    if ((a = kgd_admin_account_find(c, id, &ret)) == NULL) {
        kgd_admin_audit(c, action, id, NULL, NULL, NULL, "not_found");
        return ret;
    }
    if ((before = account_json(a)) == NULL || (copy = kg_account_dup(a)) == NULL)
        goto out;
    if (suspend < 0) {
        if (!kgd_admin_if_match(c, before, NULL, &ret)) {
            kgd_admin_audit(c, action, id, id, before, NULL, "precondition_failed");
            goto out;
        }
        if (kgd_admin_has(c, "plan") &&
            !plan_known(c, kgd_admin_str(c, "plan"), &ret)) {
            kgd_admin_audit(c, action, id, id, before, NULL, "invalid_request");
            goto out;
        }
        e = apply(c, copy, &field, &d);
    } else {
        kg_account_set_status(copy, suspend ? KG_ACCOUNT_SUSPENDED
                                            : KG_ACCOUNT_ACTIVE);
        e = KG_OK;
    }
    if (e == KG_OK)
        e = kg_accounts_update(c->p, copy, &d);
    if (e != KG_OK) {
        if (field == NULL)
            field = kgd_admin_field_of(c, &d);
        kgd_admin_audit(c, action, id, id, before, NULL, kgd_admin_code_of(e));
        ret = kgd_admin_kg_error(c, e, &d, field);
        goto out;
    }
    if (kg_accounts_get(c->p, id, &stored, &d) == KG_OK)
        after = account_json(stored);
    else
        after = account_json(copy);
    if (after == NULL)
        goto out;
    kgd_admin_audit(c, action, id, id, before, after, "ok");
    ret = respond_account(c, 200, after);
out:
    json_decref(before);
    kg_account_unref(stored);
    kg_account_unref(copy);
    kg_account_unref(a);
    return ret;
}

int kgd_admin_account_patch(kgd_admin_call *c, char *const *ids)
{
    int ret = MHD_NO;
    if (kgd_admin_body(c, patch_fields, N(patch_fields), &ret) != 0) {
        kgd_admin_audit(c, "account.update", ids[0], NULL, NULL, NULL,
                        "invalid_request");
        return ret;
    }
    return change(c, ids[0], "account.update", -1);
}

int kgd_admin_account_suspend(kgd_admin_call *c, char *const *ids)
{
    int ret = MHD_NO;
    if (kgd_admin_body(c, NULL, 0, &ret) != 0)
        return ret;
    return change(c, ids[0], "account.suspend", 1);
}

int kgd_admin_account_resume(kgd_admin_call *c, char *const *ids)
{
    int ret = MHD_NO;
    if (kgd_admin_body(c, NULL, 0, &ret) != 0)
        return ret;
    return change(c, ids[0], "account.resume", 0);
}

int kgd_admin_account_delete(kgd_admin_call *c, char *const *ids)
{
    const char *wk = MHD_lookup_connection_value(c->conn, MHD_GET_ARGUMENT_KIND,
                                                 "with_keys");
    kg_account *a;
    json_t *before;
    kg_diag d;
    kg_error e;
    int ret = MHD_NO, with_keys = wk != NULL && strcmp(wk, "true") == 0;

    if (wk != NULL && !with_keys && strcmp(wk, "false") != 0)
        return kgd_admin_error(c, 400, "invalid_request",
                               "with_keys must be true or false", "with_keys");
    if ((a = kgd_admin_account_find(c, ids[0], &ret)) == NULL) {
        kgd_admin_audit(c, "account.delete", ids[0], NULL, NULL, NULL, "not_found");
        return ret;
    }
    before = account_json(a);
    if (!kgd_admin_if_match(c, before, NULL, &ret)) {
        kgd_admin_audit(c, "account.delete", ids[0], ids[0], before, NULL,
                        "precondition_failed");
        goto out;
    }
    memset(&d, 0, sizeof(d));
    e = kg_accounts_delete(c->p, kg_account_id(a), with_keys, &d);
    kgd_admin_audit(c, "account.delete", kg_account_id(a), kg_account_id(a),
                    before, NULL, e == KG_OK ? "ok" : kgd_admin_code_of(e));
    if (e == KG_ERR_EXISTS)
        ret = kgd_admin_error(c, 409, "conflict", "the account still has keys "
                              "(revoke them, or delete with ?with_keys=true, "
                              "which revokes them)", NULL);
    else if (e != KG_OK)
        ret = kgd_admin_kg_error(c, e, &d, NULL);
    else
        ret = kgd_admin_json(c, 204, NULL, NULL);
out:
    json_decref(before);
    kg_account_unref(a);
    return ret;
}
