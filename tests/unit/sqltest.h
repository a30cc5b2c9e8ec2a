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

#endif
