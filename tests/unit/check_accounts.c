/*
 * check_accounts - accounts (core/account.c, core/accounts.c, the check)
 * in the file keystore (plugins/file/accounts.c): an account's keys share
 * its plan's limits (a `per: key` line counts per key), concurrency per
 * account, a rotation's new key shares the account's remaining quota,
 * suspension is 403 account_suspended and resume restores, the ceiling,
 * bad input refused with nothing written, metadata, and the migration of
 * a key file written before accounts.
 */
#include "testutil.h"

static char *dir, *keyfile;
static char key0[KG_KEY_MAX];
static kg_context *ctx;
static kg_policy *pol;
static tu_clock clk;

static char *policy_text(void)
{
    return tu_fmt("credential: [{module: bearer}]\n"
                  "keystore: [{module: file, options: {path: \"%s\", refresh: 0}}]\n"
                  "plans:\n"
                  "  free:\n"
                  "    account: [{module: ipacl}, {module: scope, options: {routes: "
                  "{\"GET /v1/jobs\": jobs:read, \"POST /v1/jobs\": jobs:write}, unmapped: allow}}]\n"
                  "    limit:\n"
                  "      - {module: fixed_window, control: requisite, options: {name: hour, count: 10, window: 1h}}\n"
                  "      - {module: fixed_window, control: requisite, per: key, options: {name: ci, count: 100, window: 1h}}\n"
                  "      - {module: concurrency, control: requisite, options: {name: concurrency, count: 1}}\n"
                  "  pro: {limit: [{module: fixed_window, control: requisite, options: {name: hour, count: 200, window: 1h}}]}\n",
                  keyfile);
}

static void setup(void)
{
    char *t;
    tu_setup(&dir, &keyfile, "free", key0, &ctx);
    tu_clock_install(ctx, &clk);
    tu_clock_set(&clk, 1800000000);
    t = policy_text();
    pol = tu_policy(ctx, t);
    free(t);
}

static void teardown(void)
{
    tu_teardown(dir, keyfile, ctx, pol);
}

static kg_account *account_new(const char *name, const char *plan)
{
    kg_account *a = kg_account_new();
    kg_diag d;
    kg_error e;
    ck_assert_ptr_nonnull(a);
    kg_account_set_name(a, name);
    kg_account_set_plan(a, plan);
    memset(&d, 0, sizeof(d));
    e = kg_accounts_create(pol, a, &d);
    ck_assert_msg(e == KG_OK, "account create: %s: %s", kg_strerror(e), d.message);
    ck_assert(strncmp(kg_account_id(a), "acct_", 5) == 0);
    return a;
}

static kg_record *key_for(const kg_account *a, char k[KG_KEY_MAX])
{
    kg_record *r = kg_record_new();
    kg_record_set_account_id(r, kg_account_id(a));
    kg_record_set_name(r, "a key");
    tu_keys_create(pol, r, k);
    return r;
}

/* A check that is released at once (the concurrency slot freed). */
static kg_code check_released(const char *k)
{
    kg_decision *d = tu_check_key(pol, k);
    kg_code c = kg_decision_code(d);
    if (kg_decision_lease(d))
        kg_release(ctx, kg_decision_lease(d));
    kg_decision_free(d);
    return c;
}

START_TEST(three_keys_share_the_account_quota)
{
    kg_account *a = account_new("Acme", "free");
    char k[3][KG_KEY_MAX];
    kg_record *r[3];
    kg_decision *d;
    int i;

    for (i = 0; i < 3; i++)
        r[i] = key_for(a, k[i]);
    ck_assert_str_eq(kg_record_plan(r[0]), "free");
    for (i = 0; i < 10; i++)
        ck_assert_int_eq(check_released(k[i % 3]), KG_CODE_NONE);
    for (i = 0; i < 3; i++)
        ck_assert_int_eq(check_released(k[i]), KG_CODE_RATE_LIMITED);
    /* The headers show the account's remaining; the decision names it. */
    d = tu_check_key(pol, k[1]);
    ck_assert_str_eq(kg_decision_header_value(d, "X-RateLimit-Remaining"), "0");
    ck_assert_str_eq(kg_decision_account_id(d), kg_account_id(a));
    kg_decision_free(d);
    for (i = 0; i < 3; i++)
        kg_record_unref(r[i]);
    kg_account_unref(a);
}
END_TEST

START_TEST(one_in_flight_across_the_keys)
{
    kg_account *a = account_new("Acme", "free");
    char k1[KG_KEY_MAX], k2[KG_KEY_MAX];
    kg_record *r1 = key_for(a, k1), *r2 = key_for(a, k2);
    kg_decision *d1 = tu_check_key(pol, k1), *d2;

    ck_assert_int_eq(kg_decision_status(d1), 200);
    ck_assert_ptr_nonnull(kg_decision_lease(d1));
    /* The lease names the account, not the key. */
    d2 = tu_check_key(pol, k2);
    ck_assert_int_eq(kg_decision_code(d2), KG_CODE_RATE_LIMITED);
    kg_decision_free(d2);
    ck_assert_int_eq(kg_release(ctx, kg_decision_lease(d1)), KG_OK);
    ck_assert_int_eq(check_released(k2), KG_CODE_NONE);
    kg_decision_free(d1);
    kg_record_unref(r1);
    kg_record_unref(r2);
    kg_account_unref(a);
}
END_TEST

START_TEST(rotation_shares_the_remaining_quota)
{
    kg_account *a = account_new("Acme", "free");
    char k1[KG_KEY_MAX], k2[KG_KEY_MAX];
    kg_record *r1 = key_for(a, k1), *nr = NULL;
    kg_diag d;
    int i;

    for (i = 0; i < 7; i++)
        ck_assert_int_eq(check_released(k1), KG_CODE_NONE);
    memset(&d, 0, sizeof(d));
    ck_assert_int_eq(kg_keys_rotate(pol, kg_record_id(r1), 3600, k2, sizeof(k2),
                                    &nr, &d), KG_OK);
    ck_assert_str_eq(kg_record_account_id(nr), kg_account_id(a));
    /* 3 left for both keys together, not 3 + 10. */
    ck_assert_int_eq(check_released(k2), KG_CODE_NONE);
    ck_assert_int_eq(check_released(k1), KG_CODE_NONE);
    ck_assert_int_eq(check_released(k2), KG_CODE_NONE);
    ck_assert_int_eq(check_released(k2), KG_CODE_RATE_LIMITED);
    ck_assert_int_eq(check_released(k1), KG_CODE_RATE_LIMITED);
    kg_record_unref(r1);
    kg_record_unref(nr);
    kg_account_unref(a);
}
END_TEST

START_TEST(per_key_line_counts_per_key)
{
    kg_account *a = account_new("Acme", "free");
    char k1[KG_KEY_MAX], k2[KG_KEY_MAX];
    kg_record *r1 = kg_record_new(), *r2;
    kg_decision *d;
    size_t i;

    kg_record_set_account_id(r1, kg_account_id(a));
    kg_record_set_name(r1, "ci");
    kg_record_add_limit(r1, "ci", 2, 3600, 0);
    tu_keys_create(pol, r1, k1);
    r2 = key_for(a, k2);
    ck_assert_int_eq(check_released(k1), KG_CODE_NONE);
    ck_assert_int_eq(check_released(k1), KG_CODE_NONE);
    ck_assert_int_eq(check_released(k1), KG_CODE_RATE_LIMITED);
    /* The other key's ci is its own (100); hour is shared: 2 used. */
    d = tu_check_key(pol, k2);
    ck_assert_int_eq(kg_decision_status(d), 200);
    for (i = 0; i < kg_decision_limit_count(d); i++) {
        const char *name;
        int64_t lim, rem, reset, win;
        kg_decision_limit(d, i, &name, &lim, &rem, &reset, &win);
        if (!strcmp(name, "hour"))
            ck_assert_int_eq(rem, 7);
        if (!strcmp(name, "ci"))
            ck_assert_int_eq(rem, 99);
    }
    kg_release(ctx, kg_decision_lease(d));
    kg_decision_free(d);
    kg_record_unref(r1);
    kg_record_unref(r2);
    kg_account_unref(a);
}
END_TEST

START_TEST(suspend_and_resume)
{
    kg_account *a = account_new("Acme", "free");
    char k[KG_KEY_MAX];
    kg_record *r = key_for(a, k);
    kg_decision *d;
    kg_diag dg;

    ck_assert_int_eq(check_released(k), KG_CODE_NONE);
    kg_account_set_status(a, KG_ACCOUNT_SUSPENDED);
    memset(&dg, 0, sizeof(dg));
    ck_assert_int_eq(kg_accounts_update(pol, a, &dg), KG_OK);
    d = tu_check_key(pol, k);
    ck_assert_int_eq(kg_decision_status(d), 403);
    ck_assert_int_eq(kg_decision_code(d), KG_CODE_ACCOUNT_SUSPENDED);
    ck_assert_str_eq(kg_code_name(kg_decision_code(d)), "account_suspended");
    ck_assert_ptr_nonnull(strstr(kg_decision_body(d), "\"account_suspended\""));
    kg_decision_free(d);
    kg_account_set_status(a, KG_ACCOUNT_ACTIVE);
    ck_assert_int_eq(kg_accounts_update(pol, a, &dg), KG_OK);
    ck_assert_int_eq(check_released(k), KG_CODE_NONE);
    kg_record_unref(r);
    kg_account_unref(a);
}
END_TEST

START_TEST(ceiling_is_applied_and_checked)
{
    kg_account *a = kg_account_new();
    char k[KG_KEY_MAX];
    kg_record *r = kg_record_new();
    kg_decision *d;
    kg_request *rq;
    kg_diag dg;
    char *before;

    kg_account_set_name(a, "Acme");
    kg_account_set_plan(a, "free");
    kg_account_add_cidr(a, "192.0.2.0/24");
    kg_account_add_permission(a, "jobs:read");
    memset(&dg, 0, sizeof(dg));
    ck_assert_int_eq(kg_accounts_create(pol, a, &dg), KG_OK);
    /* Outside the ceiling: refused, nothing written. */
    before = tu_read(keyfile);
    kg_record_set_account_id(r, kg_account_id(a));
    kg_record_set_name(r, "k");
    kg_record_add_permission(r, "jobs:write");
    ck_assert_int_eq(kg_keys_create(pol, r, k, sizeof(k), &dg), KG_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(dg.message, "permission"));
    kg_record_clear_permissions(r);
    kg_record_add_cidr(r, "198.51.100.0/24");
    ck_assert_int_eq(kg_keys_create(pol, r, k, sizeof(k), &dg), KG_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(dg.message, "allowed_cidrs"));
    kg_record_clear_cidrs(r);
    kg_record_set_plan(r, "pro");
    ck_assert_int_eq(kg_keys_create(pol, r, k, sizeof(k), &dg), KG_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(dg.message, "plan"));
    { char *after = tu_read(keyfile); ck_assert_str_eq(before, after); free(after); }
    free(before);
    /* A key with no settings of its own gets the account's. */
    kg_record_set_plan(r, NULL);
    kg_record_add_permission(r, "jobs:*");
    ck_assert_int_eq(kg_keys_create(pol, r, k, sizeof(k), &dg), KG_ERR_INVALID);
    kg_record_clear_permissions(r);
    kg_record_add_permission(r, "jobs:read");
    tu_keys_create(pol, r, k);
    d = tu_check_bearer(pol, k, "GET", "/v1/jobs", "192.0.2.9");
    ck_assert_int_eq(kg_decision_status(d), 200);
    kg_release(ctx, kg_decision_lease(d));
    kg_decision_free(d);
    d = tu_check_bearer(pol, k, "GET", "/v1/jobs", "198.51.100.9");
    ck_assert_int_eq(kg_decision_code(d), KG_CODE_IP_NOT_ALLOWED);
    kg_decision_free(d);
    (void)rq;
    kg_record_unref(r);
    kg_account_unref(a);
}
END_TEST

START_TEST(bad_input_names_the_field)
{
    kg_account *a = account_new("Acme", "free"), *b = kg_account_new(), *got = NULL;
    kg_diag dg;
    char *before;

    ck_assert_int_eq(kg_account_set_metadata(b, "[1,2]"), KG_ERR_INVALID);
    ck_assert_int_eq(kg_account_set_metadata(b, "{a: b}"), KG_ERR_INVALID);
    ck_assert_int_eq(kg_account_set_metadata(b, "{\"a\": 'b'}"), KG_ERR_INVALID);
    ck_assert_int_eq(kg_account_set_metadata(b, "{\"a\": [1, 2.5e3, true, null, {\"b\": \"c\\n\"}]}"), KG_OK);
    ck_assert_str_eq(kg_account_metadata(b), "{\"a\":[1,2.5e3,true,null,{\"b\":\"c\\n\"}]}");
    {
        char big[KG_ACCOUNT_METADATA_MAX + 32];
        memset(big, 'x', sizeof(big));
        memcpy(big, "{\"a\":\"", 6);
        strcpy(big + sizeof(big) - 3, "\"}");
        ck_assert_int_eq(kg_account_set_metadata(b, big), KG_ERR_INVALID);
    }
    before = tu_read(keyfile);
    kg_account_set_name(b, "Other");
    kg_account_set_plan(b, "gold");
    memset(&dg, 0, sizeof(dg));
    ck_assert_int_eq(kg_accounts_create(pol, b, &dg), KG_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(dg.message, "plan"));
    kg_account_set_plan(b, "free");
    kg_account_set_external_id(b, "cus_1");
    kg_account_set_id(a, kg_account_id(a));
    kg_account_set_external_id(a, "cus_1");
    ck_assert_int_eq(kg_accounts_update(pol, a, &dg), KG_OK);
    kg_account_set_id(b, NULL);
    ck_assert_int_eq(kg_accounts_create(pol, b, &dg), KG_ERR_EXISTS);
    ck_assert_ptr_nonnull(strstr(dg.message, "external_id"));
    /* Found by its external id too. */
    ck_assert_int_eq(kg_accounts_get(pol, "cus_1", &got, &dg), KG_OK);
    ck_assert_str_eq(kg_account_id(got), kg_account_id(a));
    kg_account_unref(got);
    ck_assert_int_eq(kg_accounts_get(pol, "cus_2", &got, &dg), KG_ERR_NOT_FOUND);
    free(before);
    kg_account_unref(a);
    kg_account_unref(b);
}
END_TEST

START_TEST(delete_refuses_while_keys_exist)
{
    kg_account *a = account_new("Acme", "free"), *got = NULL;
    char k[KG_KEY_MAX];
    kg_record *r = key_for(a, k);
    kg_diag dg;

    memset(&dg, 0, sizeof(dg));
    ck_assert_int_eq(kg_accounts_delete(pol, kg_account_id(a), 0, &dg), KG_ERR_EXISTS);
    ck_assert_int_eq(check_released(k), KG_CODE_NONE);
    ck_assert_int_eq(kg_accounts_delete(pol, kg_account_id(a), 1, &dg), KG_OK);
    ck_assert_int_eq(kg_accounts_get(pol, kg_account_id(a), &got, &dg), KG_ERR_NOT_FOUND);
    ck_assert_int_eq(check_released(k), KG_CODE_KEY_REVOKED);
    kg_record_unref(r);
    kg_account_unref(a);
}
END_TEST

/* A key file as main wrote it before accounts (tests/fixtures/
 * keys-before-accounts.yaml has the shape): each key works as it did,
 * and the next write gives each an account of its own with its
 * overrides. */
START_TEST(migration_of_a_file_without_accounts)
{
    char k1[KG_KEY_MAX], k2[KG_KEY_MAX], *r1, *r2, *text, *after;
    kg_account *a = NULL;
    kg_record *got = NULL;
    kg_diag dg;
    kg_decision *d;

    ck_assert_int_eq(kg_key_generate("whizo", k1, sizeof(k1)), KG_OK);
    ck_assert_int_eq(kg_key_generate("whizo", k2, sizeof(k2)), KG_OK);
    r1 = tu_key_record("k_00000000000000a1", k1, "free",
                       "    limits:\n      hour: {count: 2, window: 3600}\n");
    r2 = tu_key_record("k_00000000000000a2", k2, "pro", NULL);
    text = tu_fmt("keys:\n%s%s", r1, r2);
    tu_write(keyfile, text);
    ck_assert_int_eq(kg_policy_reload_stores(pol, NULL), KG_OK);
    ck_assert_int_eq(check_released(k1), KG_CODE_NONE);
    ck_assert_int_eq(check_released(k1), KG_CODE_NONE);
    ck_assert_int_eq(check_released(k1), KG_CODE_RATE_LIMITED);
    d = tu_check_key(pol, k2);
    ck_assert_str_eq(kg_decision_plan(d), "pro");
    ck_assert_ptr_null(kg_decision_account_id(d));
    kg_decision_free(d);
    /* A write migrates. */
    a = account_new("New", "pro");
    after = tu_read(keyfile);
    ck_assert_ptr_nonnull(strstr(after, "accounts:"));
    ck_assert_ptr_nonnull(strstr(after, "account: acct_00000000000000a1"));
    free(after);
    memset(&dg, 0, sizeof(dg));
    ck_assert_int_eq(kg_keys_get(pol, "k_00000000000000a1", &got, &dg), KG_OK);
    ck_assert_str_eq(kg_record_account_id(got), "acct_00000000000000a1");
    ck_assert_int_eq(kg_record_limit_count(got), 0);
    kg_record_unref(got);
    kg_account_unref(a);
    ck_assert_int_eq(kg_accounts_get(pol, "acct_00000000000000a1", &a, &dg), KG_OK);
    ck_assert_str_eq(kg_account_plan(a), "free");
    ck_assert_int_eq(kg_account_limit_count(a), 1);
    kg_account_unref(a);
    /* Same limits after: the override, now the account's, still holds
     * (the counter, now the account's, starts again). */
    ck_assert_int_eq(check_released(k1), KG_CODE_NONE);
    ck_assert_int_eq(check_released(k1), KG_CODE_NONE);
    ck_assert_int_eq(check_released(k1), KG_CODE_RATE_LIMITED);
    d = tu_check_key(pol, k2);
    ck_assert_int_eq(kg_decision_status(d), 200);
    ck_assert_str_eq(kg_decision_account_id(d), "acct_00000000000000a2");
    kg_decision_free(d);
    free(r1);
    free(r2);
    free(text);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("accounts");
    TCase *tc = tcase_create("limits");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, three_keys_share_the_account_quota);
    tcase_add_test(tc, one_in_flight_across_the_keys);
    tcase_add_test(tc, rotation_shares_the_remaining_quota);
    tcase_add_test(tc, per_key_line_counts_per_key);
    suite_add_tcase(s, tc);
    tc = tcase_create("management");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, suspend_and_resume);
    tcase_add_test(tc, ceiling_is_applied_and_checked);
    tcase_add_test(tc, bad_input_names_the_field);
    tcase_add_test(tc, delete_refuses_while_keys_exist);
    tcase_add_test(tc, migration_of_a_file_without_accounts);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
