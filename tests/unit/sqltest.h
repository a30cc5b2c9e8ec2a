/*
 * sqltest.h - helpers shared by the sql keystore tests (SQLite unit
 * tests and the PostgreSQL integration test): a policy around one sql
 * store line, an injected clock, keys made and checked through the
 * public API only (with testutil.h's helpers).
 */
#ifndef KEYGATE_SQLTEST_H
#define KEYGATE_SQLTEST_H

#include "testutil.h"

/* The injected clock: kg_context_set_clock(ctx, tu_clock_fn, &test_clk). */
static tu_clock test_clk = { INT64_C(1800000000) * 1000000 };

/*
 * A policy: bearer credential, one sql keystore line with `store_opts`
 * (YAML flow-mapping body) and `cache` (a flow mapping or NULL), plans
 * free and pro.
 */
static char *test_policy_text(const char *store_opts, const char *cache)
{
    return tu_fmt("version: 1\n"
                  "key_prefix: whizo\n"
                  "credential:\n"
                  "  - module: bearer\n"
                  "    control: required\n"
                  "keystore:\n"
                  "  - module: sql\n"
                  "    control: required\n"
                  "%s%s%s"
                  "    options: {%s}\n"
                  "plans:\n"
                  "  free:\n"
                  "    priority: 0\n"
                  "  pro:\n"
                  "    priority: 2\n",
                  cache ? "    cache: " : "", cache ? cache : "", cache ? "\n" : "",
                  store_opts);
}

static kg_error test_policy(kg_context *ctx, const char *store_opts,
                            const char *cache, kg_policy **p_r, kg_diag *d)
{
    char *yaml = test_policy_text(store_opts, cache);
    kg_error e = kg_policy_load_string(ctx, yaml, "test.yaml", p_r, d);
    free(yaml);
    return e;
}

static kg_policy *test_policy_ok(kg_context *ctx, const char *store_opts,
                                 const char *cache)
{
    char *yaml = test_policy_text(store_opts, cache);
    kg_policy *p = tu_policy(ctx, yaml);
    free(yaml);
    return p;
}

/* Create a key; its id into id_out (may be NULL). */
static void test_make_key(kg_policy *p, const char *plan, const char *name,
                          char key[KG_KEY_MAX], char *id_out, size_t idlen)
{
    kg_record *r;
    tu_key_new(p, plan, name, key, &r);
    if (id_out != NULL)
        snprintf(id_out, idlen, "%s", kg_record_id(r));
    kg_record_unref(r);
}

/* Run a check with "Authorization: Bearer <key>"; the decision's code. */
static kg_code test_check_code(kg_policy *p, const char *key, int *status_r)
{
    kg_decision *dec = tu_check_bearer(p, key, "GET", "/v1/scrape", "127.0.0.1");
    kg_code code = kg_decision_code(dec);
    if (status_r != NULL)
        *status_r = kg_decision_status(dec);
    kg_decision_free(dec);
    return code;
}

/* A key with a valid format and checksum that no store has. */
static void test_unknown_key(char key[KG_KEY_MAX])
{
    ck_assert_int_eq(kg_key_generate("whizo", key, KG_KEY_MAX), KG_OK);
}

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

/* Strings that would change a statement if anything spliced them in. */
static const char *const test_injections[] = {
    "' OR '1'='1",
    "x'; DROP TABLE keygate_keys; --",
    "\" OR \"\"=\"",
    /* every column of the table, within a name's 128 bytes */
    "k_1' UNION SELECT * FROM keygate_keys --",
    "%' --",
    "\\'; SELECT pg_sleep(10); --",
    ";",
    "--",
};

/*
 * Injection-looking values are just unknown keys or ids: nothing found,
 * nothing changed, nothing crashed, the table intact.
 */
static void test_injection_strings(kg_policy *p, const char *known_id,
                                   const char *known_key)
{
    size_t i;
    int before = test_count_keys(p);

    for (i = 0; i < sizeof(test_injections) / sizeof(test_injections[0]); i++) {
        const char *s = test_injections[i];
        kg_record *r = NULL;
        kg_diag d;
        kg_error e = kg_keys_get(p, s, &r, &d);
        int status;

        ck_assert_msg(e == KG_ERR_NOT_FOUND, "get(%s): %s", s, kg_strerror(e));
        ck_assert_ptr_null(r);
        /* A replace of that id revokes nothing. */
        r = kg_record_new();
        kg_record_set_id(r, s);
        kg_record_set_plan(r, "free");
        kg_record_set_status(r, KG_STATUS_REVOKED);
        e = kg_keys_update(p, r, &d);
        ck_assert_msg(e == KG_ERR_NOT_FOUND, "update(%s): %s", s, kg_strerror(e));
        kg_record_unref(r);
        /* As a presented key it is refused as a key (malformed: 400, or
         * not a key: 401), never 503 or 200: only its hash could ever
         * reach the store. */
        {
            kg_code code = test_check_code(p, s, &status);
            ck_assert_msg(code == KG_CODE_UNAUTHORIZED ||
                          code == KG_CODE_INVALID_REQUEST,
                          "check(%s): %s", s, kg_code_name(code));
            ck_assert_msg(status == 401 || status == 400, "status %d", status);
        }
    }
    ck_assert_int_eq(test_count_keys(p), before);
    ck_assert_int_eq(test_check_code(p, known_key, NULL), KG_CODE_NONE);
    {
        kg_record *r = NULL;
        kg_diag d;
        ck_assert_int_eq(kg_keys_get(p, known_id, &r, &d), KG_OK);
        ck_assert_int_eq(kg_record_status(r), KG_STATUS_ACTIVE);
        kg_record_unref(r);
    }
    /* Stored verbatim, read back verbatim. */
    for (i = 0; i < sizeof(test_injections) / sizeof(test_injections[0]); i++) {
        char key[KG_KEY_MAX], id[64];
        kg_record *r = NULL;
        kg_diag d;
        test_make_key(p, "free", test_injections[i], key, id, sizeof(id));
        ck_assert_int_eq(kg_keys_get(p, id, &r, &d), KG_OK);
        ck_assert_str_eq(kg_record_name(r), test_injections[i]);
        kg_record_unref(r);
        ck_assert_int_eq(test_check_code(p, key, NULL), KG_CODE_NONE);
    }
    ck_assert_int_eq(test_count_keys(p), before + (int)(sizeof(test_injections) /
                                                        sizeof(test_injections[0])));
}

/* ---- accounts (docs/sql.md "Accounts") ----------------------------------- */

/*
 * A policy with accounts' limits: free counts `hour` (10 an hour) per
 * account and `ci` per key, and applies the account's ceiling (ipacl,
 * scope); pro counts `hour` (200) per account.
 */
static kg_policy *test_acct_policy(kg_context *ctx, const char *store_opts,
                                   const char *cache)
{
    char *yaml = tu_fmt("version: 1\n"
                        "key_prefix: whizo\n"
                        "credential: [{module: bearer}]\n"
                        "keystore:\n"
                        "  - module: sql\n"
                        "%s%s%s"
                        "    options: {%s}\n"
                        "plans:\n"
                        "  free:\n"
                        "    account: [{module: ipacl}, {module: scope, options: {routes: "
                        "{\"POST /v1/jobs\": jobs:write}, unmapped: allow}}]\n"
                        "    limit:\n"
                        "      - {module: fixed_window, control: requisite, options: {name: hour, count: 10, window: 1h}}\n"
                        "      - {module: fixed_window, control: requisite, per: key, options: {name: ci, count: 100, window: 1h}}\n"
                        "  pro: {limit: [{module: fixed_window, control: requisite, options: {name: hour, count: 200, window: 1h}}]}\n",
                        cache ? "    cache: " : "", cache ? cache : "", cache ? "\n" : "",
                        store_opts);
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

/* Run a script of SQL on the database as it is (no keygate). */
typedef void (*test_raw_fn)(void *ud, const char *sql);

/* conf/sql/NAME from the source tree. */
static char *test_read_migration(const char *name)
{
    const char *src = getenv("KEYGATE_SRCDIR");
    char path[600];
    char *text;
    FILE *f;
    long n;

    ck_assert_msg(src != NULL, "KEYGATE_SRCDIR is not set (run through make check)");
    snprintf(path, sizeof(path), "%s/conf/sql/%s", src, name);
    f = fopen(path, "r");
    ck_assert_msg(f != NULL, "%s", path);
    text = calloc(1, 65536);
    n = (long)fread(text, 1, 65535, f);
    fclose(f);
    ck_assert_int_gt(n, 100);
    return text;
}

/* The keys of the old store: id, name (NULL: none), plan, limits,
 * status; and the account each must be in after the migration. */
static const struct {
    const char *id, *name, *plan, *limits, *status, *account;
} test_old_keys[] = {
    { "k_alpha", "Alpha", "free", "hour 3 3600 0", "active", "acct_alpha" },
    { "k_beta", NULL, "free", "", "active", "acct_beta" },
    { "k_gone", "Gone", "free", "", "revoked", "acct_gone" },
    { "k_pro", "Pro user", "pro", "hour 5 3600 0", "active", "acct_pro" },
    /* the same account id by the rule: the one without k_ gets ".1" */
    { "legacy", "Legacy", "free", "", "active", "acct_legacy.1" },
    { "k_legacy", "Legacy 2", "free", "", "active", "acct_legacy" },
};
#define TEST_NOLD (sizeof(test_old_keys) / sizeof(test_old_keys[0]))

/*
 * The fixture: a store as main wrote it before accounts (schema version
 * 2: conf/sql/001_init.sql, and 002 for SQLite, as released), with the
 * keys of test_old_keys (their keys into keys[]).
 */
static void test_old_store(test_raw_fn raw, void *ud, int sqlite,
                           char keys[][KG_KEY_MAX])
{
    char *ddl = test_read_migration("001_init.sql"), sql[1024];
    size_t i;

    raw(ud, ddl);
    free(ddl);
    if (sqlite) {
        ddl = test_read_migration("002_hash_primary_key.sqlite.sql");
        raw(ud, ddl);
        free(ddl);
    }
    raw(ud, "CREATE TABLE keygate_schema (version INTEGER PRIMARY KEY, name TEXT "
            "NOT NULL, applied_at BIGINT NOT NULL); INSERT INTO keygate_schema "
            "VALUES (1, '001_init', 0); INSERT INTO keygate_schema VALUES "
            "(2, '002_hash_primary_key', 0)");
    for (i = 0; i < TEST_NOLD; i++) {
        unsigned char h[KG_HASH_LEN];
        char hex[2 * KG_HASH_LEN + 1], name[64];
        ck_assert_int_eq(kg_key_generate("whizo", keys[i], KG_KEY_MAX), KG_OK);
        kg_key_hash(keys[i], strlen(keys[i]), h);
        kg_hash_to_hex(h, hex);
        if (test_old_keys[i].name)
            snprintf(name, sizeof(name), "'%s'", test_old_keys[i].name);
        else
            snprintf(name, sizeof(name), "NULL");
        snprintf(sql, sizeof(sql), "INSERT INTO keygate_keys (id, key_hash, name, "
                 "prefix, plan, status, limits, created_at) VALUES ('%s', '%s', %s, "
                 "'%.8s', '%s', '%s', '%s', 1700000000)", test_old_keys[i].id, hex,
                 name, keys[i], test_old_keys[i].plan, test_old_keys[i].status,
                 test_old_keys[i].limits);
        raw(ud, sql);
    }
}

/*
 * After `keygate db migrate` (p: a policy on the migrated store, no
 * cache): each key is in an account of its own by the rule, its name
 * and plan, its overrides moved to the account, and every key works
 * with its limits (alpha 3 an hour, beta the plan's 10, pro 5).
 */
static void test_old_store_migrated(kg_policy *p, char keys[][KG_KEY_MAX])
{
    size_t i;
    int n;
    char aid[160];

    ck_assert_int_eq(test_count_accounts(p), (int)TEST_NOLD);
    for (i = 0; i < TEST_NOLD; i++) {
        kg_record *r = NULL;
        kg_account *a = NULL;
        kg_diag d;
        ck_assert_int_eq(kg_keys_get(p, test_old_keys[i].id, &r, &d), KG_OK);
        ck_assert_str_eq(kg_record_account_id(r), test_old_keys[i].account);
        ck_assert_int_eq(kg_record_limit_count(r), 0);
        ck_assert_int_eq(kg_accounts_get(p, test_old_keys[i].account, &a, &d), KG_OK);
        ck_assert_str_eq(kg_account_name(a), test_old_keys[i].name
                                             ? test_old_keys[i].name : test_old_keys[i].id);
        ck_assert_str_eq(kg_account_plan(a), test_old_keys[i].plan);
        ck_assert_int_eq(kg_account_limit_count(a), *test_old_keys[i].limits ? 1 : 0);
        ck_assert_int_eq(kg_account_created(a), 1700000000);
        kg_account_unref(a);
        kg_record_unref(r);
    }
    /* alpha: its own 3 an hour, now the account's */
    for (n = 0; n < 3; n++) {
        ck_assert_int_eq(test_check_account(p, keys[0], aid, sizeof(aid)), KG_CODE_NONE);
        ck_assert_str_eq(aid, "acct_alpha");
    }
    ck_assert_int_eq(test_check_account(p, keys[0], NULL, 0), KG_CODE_RATE_LIMITED);
    /* beta: the plan's 10 */
    for (n = 0; n < 10; n++)
        ck_assert_int_eq(test_check_account(p, keys[1], NULL, 0), KG_CODE_NONE);
    ck_assert_int_eq(test_check_account(p, keys[1], NULL, 0), KG_CODE_RATE_LIMITED);
    ck_assert_int_eq(test_check_account(p, keys[2], NULL, 0), KG_CODE_KEY_REVOKED);
    /* pro: its 5, not the plan's 200 */
    for (n = 0; n < 5; n++)
        ck_assert_int_eq(test_check_account(p, keys[3], NULL, 0), KG_CODE_NONE);
    ck_assert_int_eq(test_check_account(p, keys[3], NULL, 0), KG_CODE_RATE_LIMITED);
    /* the two legacy keys: two accounts, two quotas */
    ck_assert_int_eq(test_check_account(p, keys[4], aid, sizeof(aid)), KG_CODE_NONE);
    ck_assert_str_eq(aid, "acct_legacy.1");
    ck_assert_int_eq(test_check_account(p, keys[5], aid, sizeof(aid)), KG_CODE_NONE);
    ck_assert_str_eq(aid, "acct_legacy");
}

#endif
