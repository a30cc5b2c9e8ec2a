/*
 * keygated_admin_keys.c - an account's keys (list, create) and one key
 * (get, patch, rotate, revoke).
 *
 * A key appears as `keygate key show --json` shows it (never its hash)
 * with its status now: active, revoked, expired, or rotating (replaced
 * by a rotation, valid until its grace ends).  The key itself is in the
 * answer of a create or a rotate only, once, and is wiped from
 * keygated's memory once the answer is built.  A customer key reaches
 * the keys of its own account only: any other key is 404.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <microhttpd.h>

#include "admin_perms.h"
#include "keygated_admin.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static const struct kgd_field create_fields[] = {
    { "name", KGD_F_STRING, 1 },
    { "permissions", KGD_F_STRINGS, 0 },
    { "allowed_cidrs", KGD_F_STRINGS, 0 },
    { "limits", KGD_F_LIMITS, 0 },
    { "expires", KGD_F_STRING_NULL, 0 },
};
static const struct kgd_field patch_fields[] = {
    { "name", KGD_F_STRING, 0 },
    { "permissions", KGD_F_STRINGS, 0 },
    { "allowed_cidrs", KGD_F_STRINGS, 0 },
    { "limits", KGD_F_LIMITS, 0 },
    { "expires", KGD_F_STRING_NULL, 0 },
};
static const struct kgd_field rotate_fields[] = {
    { "grace", KGD_F_STRING, 0 },
};

/* A key's fields that change without anyone editing it: not in its ETag. */
#define ETAG_SKIP "last_used"

json_t *kgd_admin_key_json(kgd_admin_call *c, const kg_record *r)
{
    (void)c;
    /* its status now: active, revoked, expired or rotating */
    return kgd_admin_parse(kg_record_to_json_at(r, (int64_t)time(NULL)));
}

static int respond_key(kgd_admin_call *c, unsigned status, json_t *j)
{
    char etag[24];
    kgd_admin_etag(j, ETAG_SKIP, etag);
    return kgd_admin_json(c, status, j, etag);
}

/* The key (a new reference) if the caller may see it; else NULL after a
 * 404 (or the store's error). */
static kg_record *find_key(kgd_admin_call *c, const char *id, int *ret_r)
{
    kg_record *r = NULL;
    kg_diag d;
    kg_error e;

    memset(&d, 0, sizeof(d));
    e = kg_keys_get(c->p, id, &r, &d);
    if (e == KG_OK && !kgd_admin_may_see(c, kg_record_account_id(r))) {
        kg_record_unref(r);
        r = NULL;
        e = KG_ERR_NOT_FOUND;
    }
    if (e == KG_ERR_NOT_FOUND)
        *ret_r = kgd_admin_error(c, 404, "not_found", "no such key", NULL);
    else if (e != KG_OK)
        *ret_r = kgd_admin_kg_error(c, e, &d, NULL);
    return r;
}

/* "30d" from now, a date, or null (never). */
static kg_error parse_expires(json_t *v, int64_t *t_r)
{
    int64_t s;
    if (json_is_null(v)) {
        *t_r = 0;
        return KG_OK;
    }
    if (kg_duration_parse(json_string_value(v), &s) == KG_OK && s > 0) {
        *t_r = (int64_t)time(NULL) + s;
        return KG_OK;
    }
    return kg_time_parse(json_string_value(v), t_r);
}

/* The body's fields into the record. */
static kg_error apply(kgd_admin_call *c, kg_record *r, const char **field_r,
                      kg_diag *d)
{
    json_t *v, *e;
    const char *k;
    size_t i;
    kg_error err;

    if ((v = json_object_get(c->body, "name")) != NULL &&
        (err = kg_record_set_name(r, json_string_value(v))) != KG_OK)
        return *field_r = "name", err;
    if ((v = json_object_get(c->body, "permissions")) != NULL) {
        kg_record_clear_permissions(r);
        json_array_foreach(v, i, e) {
            if ((err = kg_record_add_permission(r, json_string_value(e))) != KG_OK) {
                kg_diag_set(d, "permission '%.64s' is not valid",
                            json_string_value(e));
                return *field_r = "permissions", err;
            }
        }
    }
    if ((v = json_object_get(c->body, "allowed_cidrs")) != NULL) {
        kg_record_clear_cidrs(r);
        json_array_foreach(v, i, e) {
            kg_cidr cidr;
            if (kg_cidr_parse(json_string_value(e), &cidr) != KG_OK ||
                kg_record_add_cidr(r, json_string_value(e)) != KG_OK) {
                kg_diag_set(d, "'%.64s' is not an address or CIDR (e.g. "
                            "10.0.0.0/8, 2001:db8::/32)", json_string_value(e));
                return *field_r = "allowed_cidrs", KG_ERR_INVALID;
            }
        }
    }
    if ((v = json_object_get(c->body, "limits")) != NULL) {
        kg_record_clear_limits(r);
        json_object_foreach(v, k, e) {
            err = kg_record_add_limit(r, k,
                json_integer_value(json_object_get(e, "count")),
                json_integer_value(json_object_get(e, "window")),
                json_integer_value(json_object_get(e, "burst")));
            if (err != KG_OK)
                return *field_r = "limits", err;
        }
    }
    if ((v = json_object_get(c->body, "expires")) != NULL) {
        int64_t t;
        if (parse_expires(v, &t) != KG_OK) {
            kg_diag_set(d, "expires must be a duration from now (30d, 12h), a "
                        "date (2026-12-31, 2026-12-31T12:00:00Z) or null");
            return *field_r = "expires", KG_ERR_INVALID;
        }
        kg_record_set_expires(r, t);
    }
    return KG_OK;
}

/*
 * What the key's plan would not enforce is refused, as keygate key
 * create/update refuse it (tools/cli_key_edit.c): permissions on a plan
 * without a scope line (but the admin API's own, which it checks on any
 * plan), networks on one without ipacl.  KG_OK, or KG_ERR_INVALID with
 * the field and why.
 */
static kg_error enforced(kgd_admin_call *c, const char *plan,
                         const kg_record *r, const char **field_r, kg_diag *d)
{
    size_t i;

    for (i = 0; plan != NULL && i < kg_record_permission_count(r); i++) {
        if (kg_admin_api_permission(kg_record_permission(r, i)) ||
            kg_policy_plan_has_module(c->p, plan, "scope") == 1)
            continue;
        kg_diag_set(d, "plan '%s' does not check permissions (no scope line), "
                    "so '%s' would never be enforced", plan,
                    kg_record_permission(r, i));
        *field_r = "permissions";
        return KG_ERR_INVALID;
    }
    if (plan != NULL && kg_record_cidr_count(r) > 0 &&
        kg_policy_plan_has_module(c->p, plan, "ipacl") != 1) {
        kg_diag_set(d, "plan '%s' does not check the client's address (no "
                    "ipacl line), so allowed_cidrs would never be enforced", plan);
        *field_r = "allowed_cidrs";
        return KG_ERR_INVALID;
    }
    return KG_OK;
}

/* ---- an account's keys --------------------------------------------------- */

struct collect {
    kgd_admin_call *c;
    const char *account;
    const char *after;
    json_t *items;
    int oom;
};

static int collect_key(const kg_record *r, void *ud)
{
    struct collect *k = ud;
    const char *acct = kg_record_account_id(r);
    json_t *j;

    if (acct == NULL || strcmp(acct, k->account) != 0)
        return 0;
    if (k->after[0] != '\0' && strcmp(kg_record_id(r), k->after) <= 0)
        return 0;
    if ((j = kgd_admin_key_json(k->c, r)) == NULL ||
        json_array_append_new(k->items, j) != 0) {
        k->oom = 1;
        return 1;
    }
    return 0;
}

int kgd_admin_keys_list(kgd_admin_call *c, char *const *ids)
{
    char after[KG_ACCOUNT_ID_MAX + 1];
    struct collect k;
    kg_account *a;
    json_t *page;
    kg_diag d;
    kg_error e;
    size_t limit;
    int ret = MHD_NO, more = 0, paged;

    if (kgd_admin_page(c, &limit, after, sizeof(after), &ret) != 0)
        return ret;
    if ((a = kgd_admin_account_find(c, ids[0], &ret)) == NULL)
        return ret;
    memset(&k, 0, sizeof(k));
    memset(&d, 0, sizeof(d));
    k.c = c;
    k.account = kg_account_id(a);
    k.after = "";             /* a store's page starts after the cursor itself */
    if ((k.items = json_array()) == NULL)
        goto out;
    /* One query when the store reads pages (docs/admin-api.md "Lists"). */
    e = kg_keys_page(c->p, k.account, after, limit + 1, collect_key, &k, &d);
    paged = e != KG_ERR_UNSUPPORTED;
    if (!paged) {
        k.after = after;
        e = kg_keys_list(c->p, collect_key, &k, &d);
    }
    if (e != KG_OK || k.oom) {
        ret = k.oom ? MHD_NO : kgd_admin_kg_error(c, e, &d, NULL);
        goto out;
    }
    page = paged ? kgd_admin_page_cut(k.items, limit, &more)
                 : kgd_admin_page_of(k.items, limit, &more);
    if (page == NULL)
        goto out;
    ret = kgd_admin_json(c, 200, kgd_admin_list(page,
        json_array_size(page) ? json_string_value(json_object_get(
            json_array_get(page, json_array_size(page) - 1), "id")) : NULL,
        more), NULL);
out:
    json_decref(k.items);
    kg_account_unref(a);
    return ret;
}

/* {"key": the key, "record": the key's record}: 201. */
static int respond_new_key(kgd_admin_call *c, char *key, json_t *rec)
{
    json_t *j = json_pack("{s:s, s:o}", "key", key, "record", rec);
    char *text;
    int ret;

    kg_wipe(key, strlen(key));
    if (j == NULL)
        return MHD_NO;
    text = json_dumps(j, JSON_COMPACT);
    /* the key is in j's string and in text: both wiped */
    kg_wipe((char *)json_string_value(json_object_get(j, "key")),
            strlen(json_string_value(json_object_get(j, "key"))));
    json_decref(j);
    if (text == NULL)
        return MHD_NO;
    ret = kgd_admin_raw(c->conn, 201, "application/json", text, strlen(text),
                        NULL, 0);
    kg_wipe(text, strlen(text));
    free(text);
    return ret;
}

int kgd_admin_keys_create(kgd_admin_call *c, char *const *ids)
{
    char key[KG_KEY_MAX];
    kg_account *a;
    kg_record *r = NULL, *stored = NULL;
    const char *field = NULL;
    json_t *after = NULL;
    kg_diag d;
    kg_error e;
    int ret = MHD_NO;

    memset(&d, 0, sizeof(d));
    if ((a = kgd_admin_account_find(c, ids[0], &ret)) == NULL) {
        kgd_admin_audit(c, "key.create", NULL, ids[0], NULL, NULL, "not_found");
        return ret;
    }
    if (kgd_admin_body(c, create_fields, N(create_fields), &ret) != 0) {
        kgd_admin_audit(c, "key.create", NULL, kg_account_id(a), NULL, c->body,
                        "invalid_request");
        goto out;
    }
    if ((r = kg_record_new()) == NULL ||
        kg_record_set_account_id(r, kg_account_id(a)) != KG_OK)
        goto out;
    e = apply(c, r, &field, &d);
    if (e == KG_OK)
        e = enforced(c, kg_account_plan(a), r, &field, &d);
    if (e == KG_OK)
        e = kg_keys_create(c->p, r, key, sizeof(key), &d);
    if (e != KG_OK) {
        if (field == NULL)
            field = kgd_admin_field_of(c, &d);
        kgd_admin_audit(c, "key.create", NULL, kg_account_id(a), NULL, c->body,
                        kgd_admin_code_of(e));
        ret = kgd_admin_kg_error(c, e, &d, field);
        goto out;
    }
    if (kg_keys_get(c->p, kg_record_id(r), &stored, &d) == KG_OK)
        after = kgd_admin_key_json(c, stored);
    else
        after = kgd_admin_key_json(c, r);
    if (after == NULL) {
        kg_wipe(key, sizeof(key));
        goto out;
    }
    kgd_admin_audit(c, "key.create", kg_record_id(r), kg_account_id(a), NULL,
                    after, "ok");
    ret = respond_new_key(c, key, after);
out:
    kg_record_unref(stored);
    kg_record_unref(r);
    kg_account_unref(a);
    return ret;
}

/* ---- one key ------------------------------------------------------------- */

int kgd_admin_key_get(kgd_admin_call *c, char *const *ids)
{
    int ret = MHD_NO;
    kg_record *r = find_key(c, ids[0], &ret);
    json_t *j;

    if (r == NULL)
        return ret;
    j = kgd_admin_key_json(c, r);
    kg_record_unref(r);
    return j ? respond_key(c, 200, j) : MHD_NO;
}

/* Change a key: the body's fields (revoke: its status) on a copy,
 * written with kg_keys_update(), audited as `action`. */
static int change(kgd_admin_call *c, const char *id, const char *action,
                  int revoke)
{
    kg_record *r, *copy = NULL, *stored = NULL;
    const char *field = NULL, *acct;
    json_t *before = NULL, *after = NULL;
    kg_diag d;
    kg_error e = KG_OK;
    int ret = MHD_NO;

    memset(&d, 0, sizeof(d));
    if ((r = find_key(c, id, &ret)) == NULL) {
        kgd_admin_audit(c, action, id, NULL, NULL, NULL, "not_found");
        return ret;
    }
    acct = kg_record_account_id(r);
    if ((before = kgd_admin_key_json(c, r)) == NULL ||
        (copy = kg_record_dup(r)) == NULL)
        goto out;
    if (!kgd_admin_if_match(c, before, ETAG_SKIP, &ret)) {
        kgd_admin_audit(c, action, id, acct, before, NULL, "precondition_failed");
        goto out;
    }
    if (revoke)
        kg_record_set_status(copy, KG_STATUS_REVOKED);
    else if ((e = apply(c, copy, &field, &d)) == KG_OK)
        e = enforced(c, kg_record_account(copy) != NULL
                            ? kg_account_plan(kg_record_account(copy))
                            : kg_record_plan(copy), copy, &field, &d);
    if (e == KG_OK)
        e = kg_keys_update(c->p, copy, &d);
    if (e != KG_OK) {
        if (field == NULL)
            field = kgd_admin_field_of(c, &d);
        kgd_admin_audit(c, action, id, acct, before, NULL, kgd_admin_code_of(e));
        ret = kgd_admin_kg_error(c, e, &d, field);
        goto out;
    }
    if (kg_keys_get(c->p, id, &stored, &d) == KG_OK)
        after = kgd_admin_key_json(c, stored);
    else
        after = kgd_admin_key_json(c, copy);
    if (after == NULL)
        goto out;
    kgd_admin_audit(c, action, id, acct, before, after, "ok");
    ret = respond_key(c, 200, after);
out:
    json_decref(before);
    kg_record_unref(stored);
    kg_record_unref(copy);
    kg_record_unref(r);
    return ret;
}

int kgd_admin_key_patch(kgd_admin_call *c, char *const *ids)
{
    int ret = MHD_NO;
    if (kgd_admin_body(c, patch_fields, N(patch_fields), &ret) != 0) {
        kgd_admin_audit(c, "key.update", ids[0], NULL, NULL, NULL,
                        "invalid_request");
        return ret;
    }
    return change(c, ids[0], "key.update", 0);
}

int kgd_admin_key_revoke(kgd_admin_call *c, char *const *ids)
{
    int ret = MHD_NO;
    if (kgd_admin_body(c, NULL, 0, &ret) != 0)
        return ret;
    return change(c, ids[0], "key.revoke", 1);
}

int kgd_admin_key_rotate(kgd_admin_call *c, char *const *ids)
{
    char key[KG_KEY_MAX];
    kg_record *r, *nr = NULL, *old = NULL;
    const char *g, *acct;
    json_t *before = NULL, *after = NULL, *rec = NULL;
    int64_t grace = 0;
    kg_diag d;
    kg_error e;
    int ret = MHD_NO;

    memset(&d, 0, sizeof(d));
    if ((r = find_key(c, ids[0], &ret)) == NULL) {
        kgd_admin_audit(c, "key.rotate", ids[0], NULL, NULL, NULL, "not_found");
        return ret;
    }
    acct = kg_record_account_id(r);
    if ((before = kgd_admin_key_json(c, r)) == NULL)
        goto out;
    if (kgd_admin_body(c, rotate_fields, N(rotate_fields), &ret) != 0) {
        kgd_admin_audit(c, "key.rotate", ids[0], acct, before, NULL,
                        "invalid_request");
        goto out;
    }
    g = kgd_admin_str(c, "grace");
    if (g != NULL && (kg_duration_parse(g, &grace) != KG_OK || grace < 0)) {
        kgd_admin_audit(c, "key.rotate", ids[0], acct, before, NULL,
                        "invalid_request");
        ret = kgd_admin_error(c, 400, "invalid_request", "grace must be a "
                              "duration (0s, 15m, 1d)", "grace");
        goto out;
    }
    e = kg_keys_rotate(c->p, ids[0], grace, key, sizeof(key), &nr, &d);
    if (e != KG_OK) {
        kgd_admin_audit(c, "key.rotate", ids[0], acct, before, NULL,
                        kgd_admin_code_of(e));
        ret = kgd_admin_kg_error(c, e, &d, NULL);
        goto out;
    }
    /* The old key as it is now (its grace, or revoked), linked to the new. */
    if (kg_keys_get(c->p, ids[0], &old, &d) == KG_OK)
        after = kgd_admin_key_json(c, old);
    kgd_admin_audit(c, "key.rotate", ids[0], acct, before, after, "ok");
    if ((rec = kgd_admin_key_json(c, nr)) == NULL) {
        kg_wipe(key, sizeof(key));
        goto out;
    }
    ret = respond_new_key(c, key, rec);
out:
    json_decref(before);
    json_decref(after);
    kg_record_unref(old);
    kg_record_unref(nr);
    kg_record_unref(r);
    return ret;
}
