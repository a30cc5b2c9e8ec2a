/*
 * check_batch.c - the limit stage's batch hook (plugin.h, ABI 1.1):
 * which lines the core hands to one batch() call, all-or-nothing, who
 * decides a denial, and the undo of a batch that a later line denied.
 * Uses the batchlim fixture, whose reports say which path ran.
 */
#include "testutil.h"

static char *dir;
static kg_context *ctx;
static kg_policy *pol;

#define L(name, group, verdict, control)                                     \
    "      - {module: batchlim, control: " control ", options: {name: " name \
    ", group: '" group "', verdict: " verdict "}}\n"

static const char *POLICY =
    "credential:\n"
    "  - {module: bearer, control: required}\n"
    "keystore:\n"
    "  - module: file\n"
    "    options: {path: %s/keys.yaml}\n"
    "plans:\n"
    "  together:\n"
    "    limit:\n"
    L("a1", "g", "ok", "requisite") L("a2", "g", "ok", "required") L("a3", "g", "ok", "requisite")
    "  denied:\n"
    "    limit:\n"
    L("d1", "g", "ok", "requisite") L("d2", "g", "fail", "requisite") L("d3", "g", "ok", "requisite")
    "  groups:\n"
    "    limit:\n"
    L("g1", "x", "ok", "requisite") L("g2", "x", "ok", "requisite") L("g3", "y", "ok", "requisite")
    "  mixed:\n"
    "    limit:\n"
    L("m1", "g", "ok", "requisite") L("m2", "g", "ok", "sufficient")
    "  later:\n"
    "    limit:\n"
    L("l1", "g", "ok", "requisite") L("l2", "g", "ok", "requisite") L("l3", "", "fail", "requisite")
    "  down:\n"
    "    limit:\n"
    L("u1", "g", "unavailable", "requisite") L("u2", "g", "ok", "requisite");

#pragma GCC diagnostic ignored "-Wformat-nonliteral"
static void setup(void)
{
    dir = tu_tmpdir();
    ck_assert_int_eq(kg_context_new(&ctx), KG_OK);
    pol = tu_policyf(ctx, POLICY, dir);
}

static void teardown(void)
{
    tu_teardown(dir, NULL, ctx, pol);
}

static void new_key(const char *plan, char key[KG_KEY_MAX])
{
    tu_key_new(pol, plan, "t", key, NULL);
}

static kg_decision *run(const char *key, int peek)
{
    kg_request *req = tu_request_bearer(key, NULL, NULL, NULL);
    kg_decision *d;
    ck_assert_int_eq(peek ? kg_check_peek(pol, req, &d) : kg_check(pol, req, &d), KG_OK);
    kg_request_free(req);
    return d;
}

/* The counters line `name` reported: single acquires, batched, undos,
 * size of the last batch it led.  -1 if it did not report. */
struct counts { int64_t acquires, batched, undos, led; };

static struct counts lim(const kg_decision *d, const char *name)
{
    struct counts c = {-1, -1, -1, -1};
    size_t i;
    for (i = 0; i < kg_decision_limit_count(d); i++) {
        const char *n;
        int64_t limit, remaining, reset, window;
        kg_decision_limit(d, i, &n, &limit, &remaining, &reset, &window);
        if (strcmp(n, name) == 0) {
            c.acquires = limit;
            c.batched = remaining;
            c.undos = reset;
            c.led = window;
        }
    }
    return c;
}

START_TEST(same_group_is_one_batch)
{
    char key[KG_KEY_MAX];
    kg_decision *d;
    new_key("together", key);
    d = run(key, 0);
    ck_assert_int_eq(kg_decision_status(d), 200);
    ck_assert_int_eq(lim(d, "a1").led, 3);
    ck_assert_int_eq(lim(d, "a1").acquires, 0);
    ck_assert_int_eq(lim(d, "a2").batched, 1);
    ck_assert_int_eq(lim(d, "a3").batched, 1);
    ck_assert_int_eq(lim(d, "a3").acquires, 0);
    kg_decision_free(d);
}
END_TEST

START_TEST(denial_in_a_batch_names_the_line_and_takes_nothing_back)
{
    char key[KG_KEY_MAX];
    kg_decision *d;
    new_key("denied", key);
    d = run(key, 0);
    ck_assert_int_eq(kg_decision_status(d), 429);
    ck_assert_str_eq(kg_decision_message(d), "d2");
    ck_assert_str_eq(kg_decision_header_value(d, "Retry-After"), "7");
    ck_assert_int_eq(lim(d, "d1").led, 3);
    kg_decision_free(d);
    /* all-or-nothing: the batch gave nothing, so the core undid nothing */
    d = run(key, 0);
    ck_assert_int_eq(lim(d, "d1").undos, 0);
    ck_assert_int_eq(lim(d, "d3").undos, 0);
    ck_assert_int_eq(lim(d, "d1").batched, 2);
    kg_decision_free(d);
}
END_TEST

START_TEST(only_equal_keys_batch)
{
    char key[KG_KEY_MAX];
    kg_decision *d;
    new_key("groups", key);
    d = run(key, 0);
    ck_assert_int_eq(kg_decision_status(d), 200);
    ck_assert_int_eq(lim(d, "g1").led, 2);
    ck_assert_int_eq(lim(d, "g2").batched, 1);
    ck_assert_int_eq(lim(d, "g3").batched, 0);   /* alone: plain acquire */
    ck_assert_int_eq(lim(d, "g3").acquires, 1);
    kg_decision_free(d);
}
END_TEST

START_TEST(other_controls_do_not_batch)
{
    char key[KG_KEY_MAX];
    kg_decision *d;
    new_key("mixed", key);
    d = run(key, 0);
    ck_assert_int_eq(kg_decision_status(d), 200);
    ck_assert_int_eq(lim(d, "m1").batched, 0);
    ck_assert_int_eq(lim(d, "m1").acquires, 1);
    ck_assert_int_eq(lim(d, "m2").acquires, 1);
    kg_decision_free(d);
}
END_TEST

START_TEST(later_denial_undoes_an_admitted_batch)
{
    char key[KG_KEY_MAX];
    kg_decision *d;
    new_key("later", key);
    d = run(key, 0);
    ck_assert_int_eq(kg_decision_status(d), 429);
    ck_assert_str_eq(kg_decision_message(d), "l3");
    kg_decision_free(d);
    d = run(key, 0);
    ck_assert_int_eq(lim(d, "l1").undos, 1);
    ck_assert_int_eq(lim(d, "l2").undos, 1);
    kg_decision_free(d);
}
END_TEST

START_TEST(unavailable_in_a_batch_is_503)
{
    char key[KG_KEY_MAX];
    kg_decision *d;
    new_key("down", key);
    d = run(key, 0);
    ck_assert_int_eq(kg_decision_status(d), 503);
    ck_assert_str_eq(kg_code_name(kg_decision_code(d)), "auth_unavailable");
    kg_decision_free(d);
}
END_TEST

START_TEST(peek_batches_without_denying)
{
    char key[KG_KEY_MAX];
    kg_decision *d;
    new_key("denied", key);
    d = run(key, 1);
    ck_assert_int_eq(kg_decision_status(d), 200);
    ck_assert_int_eq(lim(d, "d1").led, 3);
    kg_decision_free(d);
}
END_TEST

static Suite *batch_suite(void)
{
    Suite *s = suite_create("limit batch");
    TCase *tc = tcase_create("batch");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, same_group_is_one_batch);
    tcase_add_test(tc, denial_in_a_batch_names_the_line_and_takes_nothing_back);
    tcase_add_test(tc, only_equal_keys_batch);
    tcase_add_test(tc, other_controls_do_not_batch);
    tcase_add_test(tc, later_denial_undoes_an_admitted_batch);
    tcase_add_test(tc, unavailable_in_a_batch_is_503);
    tcase_add_test(tc, peek_batches_without_denying);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(batch_suite());
}
