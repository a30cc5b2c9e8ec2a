/*
 * accttest.h - the account model's tests, shared by every key store that
 * keeps accounts (sqltest.h's SQLite and PostgreSQL suites, check_ldap):
 * the same calls through the public API against each store, so that the
 * stores keep one contract (docs/plugins.md "Accounts").
 */
#ifndef KEYGATE_ACCTTEST_H
#define KEYGATE_ACCTTEST_H

#include "testutil.h"

static int test_count_cb(const kg_record *r, void *ud)
{
    (void)r;
    (*(int *)ud)++;
    return 0;
}

static int test_count_keys(kg_policy *p)
{
    int n = 0;
    kg_diag d;
    kg_error e = kg_keys_list(p, test_count_cb, &n, &d);
    ck_assert_msg(e == KG_OK, "key list: %s: %s", kg_strerror(e), d.message);
    return n;
}

/*
 * A policy with accounts' limits on the keystore line `store_line` (YAML,
 * "  - module: ...\n" and its indented options): free counts `hour` (10
 * an hour) per account and `ci` per key, and applies the account's
 * ceiling (ipacl, scope); pro counts `hour` (200) per account.
 */
static kg_policy *test_acct_policy_on(kg_context *ctx, const char *store_line)
{
    char *yaml = tu_fmt("version: 1\n"
                        "key_prefix: whizo\n"
                        "credential: [{module: bearer}]\n"
                        "keystore:\n"
                        "%s"
                        "plans:\n"
                        "  free:\n"
                        "    account: [{module: ipacl}, {module: scope, options: {routes: "
                        "{\"POST /v1/jobs\": jobs:write}, unmapped: allow}}]\n"
                        "    limit:\n"
                        "      - {module: fixed_window, control: requisite, options: {name: hour, count: 10, window: 1h}}\n"
                        "      - {module: fixed_window, control: requisite, per: key, options: {name: ci, count: 100, window: 1h}}\n"
                        "  pro: {limit: [{module: fixed_window, control: requisite, options: {name: hour, count: 200, window: 1h}}]}\n",
                        store_line);
    kg_policy *p = tu_policy(ctx, yaml);
    free(yaml);
    return p;
}

static kg_account *test_account_new(kg_policy *p, const char *name,
                                    const char *plan, const char *external_id)
{
    kg_account *a = kg_account_new();
    kg_diag d;
    kg_error e;
    ck_assert_ptr_nonnull(a);
    kg_account_set_name(a, name);
    kg_account_set_plan(a, plan);
    kg_account_set_external_id(a, external_id);
    memset(&d, 0, sizeof(d));
    e = kg_accounts_create(p, a, &d);
    ck_assert_msg(e == KG_OK, "account create: %s: %s", kg_strerror(e), d.message);
    ck_assert(strncmp(kg_account_id(a), "acct_", 5) == 0);
    return a;
}

static kg_record *test_key_for(kg_policy *p, const kg_account *a,
                               char key[KG_KEY_MAX])
{
    kg_record *r = kg_record_new();
    kg_record_set_account_id(r, kg_account_id(a));
    kg_record_set_name(r, "a key");
    tu_keys_create(p, r, key);
    return r;
}

static int test_count_acct_cb(const kg_account *a, void *ud)
{
    (void)a;
    (*(int *)ud)++;
    return 0;
}

static int test_count_accounts(kg_policy *p)
{
    int n = 0;
    kg_diag d;
    kg_error e = kg_accounts_list(p, test_count_acct_cb, &n, &d);
    ck_assert_msg(e == KG_OK, "account list: %s: %s", kg_strerror(e), d.message);
    return n;
}

/* The code of a check of `key`, its account id (if any) into aid. */
static kg_code test_check_account(kg_policy *p, const char *key, char *aid,
                                  size_t len)
{
    kg_decision *d = tu_check_bearer(p, key, "GET", "/v1/scrape", "127.0.0.1");
    kg_code c = kg_decision_code(d);
    if (aid != NULL)
        snprintf(aid, len, "%s", kg_decision_account_id(d) ? kg_decision_account_id(d) : "");
    kg_decision_free(d);
    return c;
}

/*
 * Create, get (by id and by external id), list, update, refuse what
 * clashes (naming the field, nothing written), delete: refused while a
 * key is live, with_keys revokes it (its account id kept) in the same
 * transaction.  `tag` keeps external ids apart between calls.
 */
static void test_accounts_crud(kg_policy *p, const char *tag)
{
    char x1[64], x2[64], key[KG_KEY_MAX], k2[KG_KEY_MAX];
    kg_account *a, *b, *got = NULL, *dup;
    kg_record *r, *r2, *rg = NULL;
    kg_diag d;
    const char *name;
    int64_t c, w, bu;
    int before = test_count_accounts(p);

    snprintf(x1, sizeof(x1), "cus_%s_1", tag);
    snprintf(x2, sizeof(x2), "cus_%s_2", tag);
    a = kg_account_new();
    kg_account_set_name(a, "Acme O'Brien; DROP TABLE keygate_accounts;--");
    kg_account_set_plan(a, "free");
    kg_account_set_external_id(a, x1);
    kg_account_add_cidr(a, "127.0.0.0/8");
    kg_account_add_permission(a, "jobs:write");
    kg_account_add_limit(a, "hour", 20, 3600, 5);
    ck_assert_int_eq(kg_account_set_metadata(a, "{\"tier\": \"gold\", \"n\": 1}"), KG_OK);
    memset(&d, 0, sizeof(d));
    ck_assert_msg(kg_accounts_create(p, a, &d) == KG_OK, "%s", d.message);
    ck_assert_int_eq(test_count_accounts(p), before + 1);
    /* by id, and by external id: every field back */
    ck_assert_int_eq(kg_accounts_get(p, kg_account_id(a), &got, &d), KG_OK);
    ck_assert_str_eq(kg_account_name(got), "Acme O'Brien; DROP TABLE keygate_accounts;--");
    ck_assert_str_eq(kg_account_plan(got), "free");
    ck_assert_str_eq(kg_account_external_id(got), x1);
    ck_assert_int_eq(kg_account_cidr_count(got), 1);
    ck_assert_str_eq(kg_account_cidr(got, 0), "127.0.0.0/8");
    ck_assert_int_eq(kg_account_permission_count(got), 1);
    ck_assert_str_eq(kg_account_permission(got, 0), "jobs:write");
    ck_assert_int_eq(kg_account_limit_count(got), 1);
    kg_account_limit(got, 0, &name, &c, &w, &bu);
    ck_assert_str_eq(name, "hour");
    ck_assert_int_eq(c, 20);
    ck_assert_int_eq(w, 3600);
    ck_assert_int_eq(bu, 5);
    ck_assert_str_eq(kg_account_metadata(got), kg_account_metadata(a));
    ck_assert_int_eq(kg_account_status_of(got), KG_ACCOUNT_ACTIVE);
    ck_assert_int_eq(kg_account_created(got), kg_account_created(a));
    ck_assert_int_gt(kg_account_created(got), 0);
    kg_account_unref(got);
    got = NULL;
    ck_assert_int_eq(kg_accounts_get(p, x1, &got, &d), KG_OK);
    ck_assert_str_eq(kg_account_id(got), kg_account_id(a));
    kg_account_unref(got);
    got = NULL;
    ck_assert_int_eq(kg_accounts_get(p, "acct_none", &got, &d), KG_ERR_NOT_FOUND);
    ck_assert_int_eq(kg_accounts_get(p, "' OR '1'='1", &got, &d), KG_ERR_NOT_FOUND);

    /* a key of it: get and list give its account id */
    r = test_key_for(p, a, key);
    ck_assert_int_eq(kg_keys_get(p, kg_record_id(r), &rg, &d), KG_OK);
    ck_assert_str_eq(kg_record_account_id(rg), kg_account_id(a));
    ck_assert_str_eq(kg_record_plan(rg), "free");
    kg_record_unref(rg);
    rg = NULL;
    /* a key for an account that does not exist: refused, not written */
    {
        kg_record *nr = kg_record_new();
        char nk[KG_KEY_MAX];
        int nkeys = test_count_keys(p);
        kg_record_set_account_id(nr, "acct_nosuch");
        memset(&d, 0, sizeof(d));
        ck_assert_int_ne(kg_keys_create(p, nr, nk, sizeof(nk), &d), KG_OK);
        ck_assert_ptr_nonnull(strstr(d.message, "account"));
        ck_assert_int_eq(test_count_keys(p), nkeys);
        kg_record_unref(nr);
    }

    /* a second account: its external id may not be the first's, nor its
     * id; the first may not take the second's: KG_ERR_EXISTS naming the
     * field, nothing written */
    b = test_account_new(p, "Beta", "pro", x2);
    dup = kg_account_new();
    kg_account_set_name(dup, "Dup");
    kg_account_set_plan(dup, "free");
    kg_account_set_external_id(dup, x1);
    memset(&d, 0, sizeof(d));
    ck_assert_int_eq(kg_accounts_create(p, dup, &d), KG_ERR_EXISTS);
    ck_assert_msg(strstr(d.message, "external_id") != NULL, "%s", d.message);
    kg_account_set_external_id(dup, kg_account_id(b));
    kg_account_set_id(dup, NULL);
    memset(&d, 0, sizeof(d));
    ck_assert_int_eq(kg_accounts_create(p, dup, &d), KG_ERR_EXISTS);
    ck_assert_msg(strstr(d.message, "external_id") != NULL, "%s", d.message);
    kg_account_set_external_id(dup, NULL);
    kg_account_set_id(dup, kg_account_id(a));
    memset(&d, 0, sizeof(d));
    ck_assert_int_eq(kg_accounts_create(p, dup, &d), KG_ERR_EXISTS);
    ck_assert_msg(strstr(d.message, "id") != NULL, "%s", d.message);
    kg_account_unref(dup);
    ck_assert_int_eq(test_count_accounts(p), before + 2);
    kg_account_set_external_id(a, x2);
    memset(&d, 0, sizeof(d));
    ck_assert_int_eq(kg_accounts_update(p, a, &d), KG_ERR_EXISTS);
    ck_assert_msg(strstr(d.message, "external_id") != NULL, "%s", d.message);
    ck_assert_int_eq(kg_accounts_get(p, x1, &got, &d), KG_OK);  /* unchanged */
    ck_assert_str_eq(kg_account_id(got), kg_account_id(a));
    kg_account_unref(got);
    got = NULL;

    /* update: name, plan, limits, metadata replaced; the key follows */
    kg_account_set_external_id(a, x1);
    kg_account_set_name(a, "Acme Ltd");
    kg_account_set_plan(a, "pro");
    kg_account_clear_limits(a);
    kg_account_clear_cidrs(a);
    kg_account_clear_permissions(a);
    ck_assert_int_eq(kg_account_set_metadata(a, "{\"tier\":\"platinum\"}"), KG_OK);
    memset(&d, 0, sizeof(d));
    ck_assert_msg(kg_accounts_update(p, a, &d) == KG_OK, "%s", d.message);
    ck_assert_int_eq(kg_accounts_get(p, kg_account_id(a), &got, &d), KG_OK);
    ck_assert_str_eq(kg_account_name(got), "Acme Ltd");
    ck_assert_str_eq(kg_account_plan(got), "pro");
    ck_assert_int_eq(kg_account_limit_count(got), 0);
    ck_assert_str_eq(kg_account_metadata(got), "{\"tier\":\"platinum\"}");
    kg_account_unref(got);
    got = NULL;
    ck_assert_int_eq(kg_keys_get(p, kg_record_id(r), &rg, &d), KG_OK);
    ck_assert_str_eq(kg_record_plan(rg), "pro");
    kg_record_unref(rg);
    rg = NULL;
    {
        kg_account *ghost = kg_account_new();
        kg_account_set_id(ghost, "acct_ghost");
        kg_account_set_name(ghost, "Ghost");
        kg_account_set_plan(ghost, "free");
        memset(&d, 0, sizeof(d));
        ck_assert_int_eq(kg_accounts_update(p, ghost, &d), KG_ERR_NOT_FOUND);
        kg_account_unref(ghost);
    }

    /* delete: refused while a key is live, nothing written */
    r2 = test_key_for(p, a, k2);
    ck_assert_int_eq(test_check_account(p, key, NULL, 0), KG_CODE_NONE);
    memset(&d, 0, sizeof(d));
    ck_assert_int_eq(kg_accounts_delete(p, kg_account_id(a), 0, &d), KG_ERR_EXISTS);
    ck_assert_msg(strstr(d.message, "2 keys") != NULL, "%s", d.message);
    ck_assert_int_eq(kg_accounts_get(p, kg_account_id(a), &got, &d), KG_OK);
    kg_account_unref(got);
    got = NULL;
    ck_assert_int_eq(test_check_account(p, key, NULL, 0), KG_CODE_NONE);
    /* with_keys, by external id: both keys revoked, their account id kept */
    memset(&d, 0, sizeof(d));
    ck_assert_msg(kg_accounts_delete(p, x1, 1, &d) == KG_OK, "%s", d.message);
    ck_assert_int_eq(kg_accounts_get(p, kg_account_id(a), &got, &d), KG_ERR_NOT_FOUND);
    ck_assert_int_eq(kg_keys_get(p, kg_record_id(r2), &rg, &d), KG_OK);
    ck_assert_int_eq(kg_record_status(rg), KG_STATUS_REVOKED);
    ck_assert_str_eq(kg_record_account_id(rg), kg_account_id(a));
    kg_record_unref(rg);
    ck_assert_int_eq(test_check_account(p, k2, NULL, 0), KG_CODE_KEY_REVOKED);
    ck_assert_int_eq(kg_accounts_delete(p, kg_account_id(a), 1, &d), KG_ERR_NOT_FOUND);
    /* an account without keys goes at once */
    ck_assert_int_eq(kg_accounts_delete(p, kg_account_id(b), 0, &d), KG_OK);
    ck_assert_int_eq(test_count_accounts(p), before);
    kg_record_unref(r);
    kg_record_unref(r2);
    kg_account_unref(a);
    kg_account_unref(b);
}

/*
 * Three keys of a Free account share its 10 an hour: 10 checks across
 * the keys pass, the 11th is 429 on whichever key; a suspension is 403
 * account_suspended on each key (the account read with the key in one
 * lookup), resume restores.  `p` has no record cache.
 */
static void test_accounts_shared_quota(kg_policy *p)
{
    kg_account *a = test_account_new(p, "Free customer", "free", NULL);
    char k[3][KG_KEY_MAX], aid[160];
    kg_record *r[3];
    kg_diag d;
    int i;

    for (i = 0; i < 3; i++) {
        r[i] = test_key_for(p, a, k[i]);
        ck_assert_str_eq(kg_record_plan(r[i]), "free");
    }
    for (i = 0; i < 10; i++) {
        ck_assert_int_eq(test_check_account(p, k[i % 3], aid, sizeof(aid)), KG_CODE_NONE);
        ck_assert_str_eq(aid, kg_account_id(a));
    }
    for (i = 0; i < 3; i++)
        ck_assert_int_eq(test_check_account(p, k[i], NULL, 0), KG_CODE_RATE_LIMITED);

    kg_account_set_status(a, KG_ACCOUNT_SUSPENDED);
    memset(&d, 0, sizeof(d));
    ck_assert_msg(kg_accounts_update(p, a, &d) == KG_OK, "%s", d.message);
    for (i = 0; i < 3; i++) {
        kg_decision *dec = tu_check_bearer(p, k[i], "GET", "/v1/scrape", "127.0.0.1");
        ck_assert_int_eq(kg_decision_status(dec), 403);
        ck_assert_int_eq(kg_decision_code(dec), KG_CODE_ACCOUNT_SUSPENDED);
        ck_assert_ptr_nonnull(strstr(kg_decision_body(dec), "\"account_suspended\""));
        kg_decision_free(dec);
    }
    /* resumed: back to the quota's answer (still spent) */
    kg_account_set_status(a, KG_ACCOUNT_ACTIVE);
    ck_assert_msg(kg_accounts_update(p, a, &d) == KG_OK, "%s", d.message);
    ck_assert_int_eq(test_check_account(p, k[0], NULL, 0), KG_CODE_RATE_LIMITED);
    for (i = 0; i < 3; i++)
        kg_record_unref(r[i]);
    kg_account_unref(a);
}

/* ids lent to a page's callback, appended to a buffer of "id;" */
struct test_page {
    char ids[4096];
    char last[KG_ACCOUNT_ID_MAX + 1];
    int n;
};

static int test_page_acct_cb(const kg_account *a, void *ud)
{
    struct test_page *t = ud;
    size_t len = strlen(t->ids);
    snprintf(t->ids + len, sizeof(t->ids) - len, "%s;", kg_account_id(a));
    snprintf(t->last, sizeof(t->last), "%s", kg_account_id(a));
    t->n++;
    return 0;
}

static int test_page_key_cb(const kg_record *r, void *ud)
{
    struct test_page *t = ud;
    size_t len = strlen(t->ids);
    snprintf(t->ids + len, sizeof(t->ids) - len, "%s=%s;", kg_record_id(r),
             kg_record_account_id(r) ? kg_record_account_id(r) : "");
    snprintf(t->last, sizeof(t->last), "%s", kg_record_id(r));
    t->n++;
    return 0;
}

static int test_strcmp_p(const void *x, const void *y)
{
    return strcmp(*(char *const *)x, *(char *const *)y);
}

/*
 * kg_accounts_page / kg_keys_page (docs/admin-api.md "Lists"): pages of
 * 2 walk every account once, in id order, each page starting after the
 * last id of the one before; an account's keys page the same way, and
 * never hold another account's key.  `paged` 0: the store reads no
 * pages (KG_ERR_UNSUPPORTED).
 */
static TU_UNUSED void test_accounts_pages(kg_policy *p, int paged)
{
    kg_account *a[5];
    kg_record *r;
    char key[KG_KEY_MAX], *sorted[5], wantk[1024] = "";
    char *kid[3];
    struct test_page walk, page;
    kg_diag d;
    kg_error e;
    int i, calls;

    for (i = 0; i < 5; i++) {
        char name[16];
        snprintf(name, sizeof(name), "page %d", i);
        a[i] = test_account_new(p, name, "free", NULL);
        sorted[i] = (char *)kg_account_id(a[i]);
    }
    for (i = 0; i < 3; i++) {
        r = test_key_for(p, a[0], key);
        kid[i] = strdup(kg_record_id(r));
        kg_record_unref(r);
    }
    kg_record_unref(test_key_for(p, a[1], key));
    memset(&d, 0, sizeof(d));
    memset(&page, 0, sizeof(page));
    e = kg_accounts_page(p, NULL, 2, test_page_acct_cb, &page, &d);
    if (!paged) {
        ck_assert_int_eq(e, KG_ERR_UNSUPPORTED);
        ck_assert_int_eq(kg_keys_page(p, kg_account_id(a[0]), NULL, 2,
                                      test_page_key_cb, &page, &d), KG_ERR_UNSUPPORTED);
        goto out;
    }
    /* the five among other accounts (the store may hold more): every
     * account once, in order */
    memset(&walk, 0, sizeof(walk));
    for (calls = 0; calls < 100; calls++) {
        memset(&page, 0, sizeof(page));
        e = kg_accounts_page(p, walk.last, 2, test_page_acct_cb, &page, &d);
        ck_assert_msg(e == KG_OK, "account page: %s: %s", kg_strerror(e), d.message);
        ck_assert_int_le(page.n, 2);
        if (page.n == 0)
            break;
        ck_assert_msg(walk.last[0] == '\0' || strcmp(page.ids, walk.last) > 0,
                      "page '%s' after '%s'", page.ids, walk.last);
        strcat(walk.ids, page.ids);
        snprintf(walk.last, sizeof(walk.last), "%s", page.last);
        walk.n += page.n;
    }
    ck_assert_int_eq(walk.n, test_count_accounts(p));
    qsort(sorted, 5, sizeof(sorted[0]), test_strcmp_p);
    for (i = 0; i < 5; i++) {
        char *at = strstr(walk.ids, sorted[i]);
        ck_assert_msg(at != NULL, "%s not walked: %s", sorted[i], walk.ids);
        ck_assert_msg(i == 0 || at > strstr(walk.ids, sorted[i - 1]),
                      "%s before %s: %s", sorted[i], sorted[i - 1], walk.ids);
    }
    /* a's three keys: 2, then 1, then none; a[1]'s key never */
    qsort(kid, 3, sizeof(kid[0]), test_strcmp_p);
    for (i = 0; i < 3; i++) {
        size_t len = strlen(wantk);
        snprintf(wantk + len, sizeof(wantk) - len, "%s=%s;", kid[i], kg_account_id(a[0]));
    }
    memset(&walk, 0, sizeof(walk));
    for (calls = 0; calls < 3; calls++) {
        memset(&page, 0, sizeof(page));
        e = kg_keys_page(p, kg_account_id(a[0]), walk.last, 2, test_page_key_cb, &page, &d);
        ck_assert_msg(e == KG_OK, "key page: %s: %s", kg_strerror(e), d.message);
        ck_assert_int_eq(page.n, calls == 0 ? 2 : calls == 1 ? 1 : 0);
        strcat(walk.ids, page.ids);
        if (page.n)
            snprintf(walk.last, sizeof(walk.last), "%s", page.last);
    }
    ck_assert_str_eq(walk.ids, wantk);
    /* an account without keys: an empty page */
    memset(&page, 0, sizeof(page));
    ck_assert_int_eq(kg_keys_page(p, kg_account_id(a[4]), "", 2, test_page_key_cb,
                                  &page, &d), KG_OK);
    ck_assert_int_eq(page.n, 0);
out:
    for (i = 0; i < 3; i++)
        free(kid[i]);
    for (i = 0; i < 5; i++)
        kg_account_unref(a[i]);
}

#endif
