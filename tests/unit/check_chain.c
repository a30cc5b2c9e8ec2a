/*
 * check_chain - the chain engine (core/chain.c) through the public API.
 *
 * A policy with a bearer credential, a file store holding one valid key,
 * and a plan whose account stage is a list of `scripted` modules (each
 * answers what its options say, and when it fails, names itself in the
 * message: "line N").  Every row of the table says what Linux-PAM's
 * pam.conf(5) makes of the sequence, written from the man page:
 *
 *   required   failure leads to failure, but only after the remaining
 *              modules ran;
 *   requisite  like required, but control returns at once on failure;
 *   sufficient success returns at once, if no prior required module
 *              failed; its failure is ignored;
 *   optional   its result matters only if it is the only module;
 *
 * and the explicit form's actions:
 *   ignore  no effect on the stack's result;
 *   bad     failure; the first failure's status is the stack's;
 *   die     bad, and the stack ends;
 *   ok      success, unless the stack already holds a failure;
 *   done    ok, and the stack ends (if it holds no failure);
 *   reset   forget everything so far, go on.
 *
 * keygate maps its results onto PAM's: ok = success, fail = a failure,
 * unavailable = a failure of its own kind (PAM's "default" for the
 * keywords), ignore = PAM_IGNORE, which never makes a stack succeed.
 * Two rules of keygate's own (docs/architecture.md): a stack in which nothing
 * counted fails; and unavailable is never reported as a definite no:
 * when the stack's status comes from an unavailable module (the first
 * failure), or no module counted and one of them could not answer, the
 * decision is 503 auth_unavailable.
 *
 * The expected outcomes were written from these rules, not by running the
 * code.
 */
#include "testutil.h"

enum { ALLOW = 200, DENY = 403, UNAVAIL = 503 };

struct step {
    const char *control;  /* a keyword or an explicit {…} mapping */
    const char *result;   /* ok, fail, ignore, unavailable */
};

struct row {
    const char *why;
    struct step s[5];
    int expect;           /* ALLOW, DENY or UNAVAIL */
    /* DENY: the line whose failure decided (its message "line N" and code
     * ip_not_allowed); 0: no module's failure did (the stack ended with
     * nothing counted, or an "ok" was mapped to bad) - the core's default
     * code insufficient_permissions. */
    int line;
    /* decided_by for denials: "account:scripted" when a module decided,
     * "account" when none did. */
    const char *by;
};

#define MOD "account:scripted"
#define NONE "account"

#define R "required"
#define Q "requisite"
#define S "sufficient"
#define O "optional"

static const struct row rows[] = {
    /* ---- one module ---------------------------------------------------- */
    { "required ok", { { R, "ok" } }, ALLOW, 0, NULL },
    { "required fail", { { R, "fail" } }, DENY, 1, MOD },
    { "required ignore: nothing counted", { { R, "ignore" } }, DENY, 0, NONE },
    { "required unavailable", { { R, "unavailable" } }, UNAVAIL, 0, MOD },
    { "requisite ok", { { Q, "ok" } }, ALLOW, 0, NULL },
    { "requisite fail", { { Q, "fail" } }, DENY, 1, MOD },
    { "requisite ignore: nothing counted", { { Q, "ignore" } }, DENY, 0, NONE },
    { "requisite unavailable", { { Q, "unavailable" } }, UNAVAIL, 0, MOD },
    { "sufficient ok", { { S, "ok" } }, ALLOW, 0, NULL },
    { "sufficient fail is ignored: nothing counted", { { S, "fail" } }, DENY, 0, NONE },
    { "sufficient ignore: nothing counted", { { S, "ignore" } }, DENY, 0, NONE },
    { "sufficient unavailable alone: nothing counted, one could not answer",
      { { S, "unavailable" } }, UNAVAIL, 0, MOD },
    { "optional ok alone counts", { { O, "ok" } }, ALLOW, 0, NULL },
    { "optional fail alone: nothing counted", { { O, "fail" } }, DENY, 0, NONE },
    { "optional ignore alone", { { O, "ignore" } }, DENY, 0, NONE },
    { "optional unavailable alone: could not answer",
      { { O, "unavailable" } }, UNAVAIL, 0, MOD },

    /* ---- required: remember the failure, run the rest ------------------ */
    { "required ok, required ok", { { R, "ok" }, { R, "ok" } }, ALLOW, 0, NULL },
    { "required ok, required fail", { { R, "ok" }, { R, "fail" } }, DENY, 2, MOD },
    { "required fail, required ok: fails at the end",
      { { R, "fail" }, { R, "ok" } }, DENY, 1, MOD },
    { "two failures: the first one's status",
      { { R, "fail" }, { R, "fail" } }, DENY, 1, MOD },
    { "fail then unavailable: the first failure (a definite no) stands",
      { { R, "fail" }, { R, "unavailable" } }, DENY, 1, MOD },
    { "unavailable then fail: the first failure (unavailable) stands",
      { { R, "unavailable" }, { R, "fail" } }, UNAVAIL, 0, MOD },
    { "required ok then unavailable", { { R, "ok" }, { R, "unavailable" } },
      UNAVAIL, 0, MOD },
    { "ignore has no effect (before)", { { R, "ignore" }, { R, "ok" } }, ALLOW, 0, NULL },
    { "ignore has no effect (after)", { { R, "ok" }, { R, "ignore" } }, ALLOW, 0, NULL },
    { "required goes on after a failure: a later reset forgets it",
      { { R, "fail" }, { "{ok: reset}", "ok" }, { R, "ok" } }, ALLOW, 0, NULL },

    /* ---- requisite: return at once ------------------------------------- */
    { "requisite ok, required fail", { { Q, "ok" }, { R, "fail" } }, DENY, 2, MOD },
    { "requisite fail stops the stack (the reset is never reached)",
      { { Q, "fail" }, { "{ok: reset}", "ok" }, { R, "ok" } }, DENY, 1, MOD },
    { "requisite unavailable stops the stack",
      { { Q, "unavailable" }, { "{ok: reset}", "ok" }, { R, "ok" } }, UNAVAIL, 0, MOD },
    { "requisite ignore has no effect", { { Q, "ignore" }, { R, "ok" } }, ALLOW, 0, NULL },
    { "an earlier failure stands after a requisite failure",
      { { R, "unavailable" }, { Q, "fail" } }, UNAVAIL, 0, MOD },
    { "required ok, requisite unavailable, required ok",
      { { R, "ok" }, { Q, "unavailable" }, { R, "ok" } }, UNAVAIL, 0, MOD },

    /* ---- sufficient: success at once, unless a required failed --------- */
    { "sufficient ok returns at once: the later failure never runs",
      { { S, "ok" }, { R, "fail" } }, ALLOW, 0, NULL },
    { "required ok, sufficient ok, required fail",
      { { R, "ok" }, { S, "ok" }, { R, "fail" } }, ALLOW, 0, NULL },
    { "sufficient after a required failure does not succeed",
      { { R, "fail" }, { S, "ok" }, { R, "ok" } }, DENY, 1, MOD },
    { "sufficient after a required failure does not end the stack",
      { { R, "fail" }, { S, "ok" }, { "{ok: reset}", "ok" }, { R, "ok" } },
      ALLOW, 0, NULL },
    { "sufficient after required unavailable does not succeed",
      { { R, "unavailable" }, { S, "ok" } }, UNAVAIL, 0, MOD },
    { "sufficient fail is ignored", { { S, "fail" }, { R, "ok" } }, ALLOW, 0, NULL },
    { "sufficient fail, required fail", { { S, "fail" }, { R, "fail" } }, DENY, 2, MOD },
    { "sufficient unavailable is ignored", { { S, "unavailable" }, { R, "ok" } },
      ALLOW, 0, NULL },
    { "sufficient ignore, sufficient ok", { { S, "ignore" }, { S, "ok" } }, ALLOW, 0, NULL },
    { "two sufficient failures: nothing counted",
      { { S, "fail" }, { S, "fail" } }, DENY, 0, NONE },
    { "sufficient ok before an unavailable one: returned already",
      { { S, "ok" }, { R, "unavailable" } }, ALLOW, 0, NULL },

    /* ---- optional: matters only alone ---------------------------------- */
    { "optional ok does not save a required failure",
      { { O, "ok" }, { R, "fail" } }, DENY, 2, MOD },
    { "optional fail next to a required ok", { { O, "fail" }, { R, "ok" } }, ALLOW, 0, NULL },
    { "required ok, optional fail", { { R, "ok" }, { O, "fail" } }, ALLOW, 0, NULL },
    { "optional unavailable next to a required ok",
      { { O, "unavailable" }, { R, "ok" } }, ALLOW, 0, NULL },
    { "optional ok, optional fail: the failure is ignored",
      { { O, "ok" }, { O, "fail" } }, ALLOW, 0, NULL },

    /* ---- the explicit form --------------------------------------------- */
    { "done: success and stop", { { "{ok: done}", "ok" }, { R, "fail" } }, ALLOW, 0, NULL },
    { "die: failure and stop",
      { { "{fail: die}", "fail" }, { "{ok: reset}", "ok" }, { R, "ok" } }, DENY, 1, MOD },
    { "bad: failure, go on",
      { { "{fail: bad}", "fail" }, { "{ok: reset}", "ok" }, { R, "ok" } }, ALLOW, 0, NULL },
    { "fail: ignore", { { "{fail: ignore}", "fail" }, { R, "ok" } }, ALLOW, 0, NULL },
    { "fail: ignore alone: nothing counted", { { "{fail: ignore}", "fail" } }, DENY, 0, NONE },
    { "continue is ignore", { { "{fail: continue}", "fail" }, { R, "ok" } }, ALLOW, 0, NULL },
    { "unavailable: ignore skips a module that is down",
      { { "{unavailable: ignore}", "unavailable" }, { R, "ok" } }, ALLOW, 0, NULL },
    { "unavailable: bad, then a definite failure: unavailable came first",
      { { "{unavailable: bad}", "unavailable" }, { R, "fail" } }, UNAVAIL, 0, MOD },
    { "unavailable: die", { { "{unavailable: die}", "unavailable" }, { R, "ok" } },
      UNAVAIL, 0, MOD },
    { "ok: bad makes a success a failure", { { "{ok: bad}", "ok" } }, DENY, 0, MOD },
    { "ignore: ok never makes a stack succeed", { { "{ignore: ok}", "ignore" } }, DENY, 0, NONE },
    { "ignore: bad", { { "{ignore: bad}", "ignore" }, { R, "ok" } }, DENY, 0, MOD },
    { "reset on a failure result",
      { { R, "fail" }, { "{fail: reset}", "fail" }, { R, "ok" } }, ALLOW, 0, NULL },
    { "reset leaves nothing: the stack ends with nothing counted",
      { { R, "ok" }, { "{ok: reset}", "ok" } }, DENY, 0, NONE },
    { "unnamed results act as with required",
      { { "{ok: done}", "fail" }, { R, "ok" } }, DENY, 1, MOD },
    { "all four named",
      { { "{ok: ok, fail: ignore, ignore: ignore, unavailable: ignore}", "unavailable" },
        { "{ok: ok, fail: ignore, ignore: ignore, unavailable: ignore}", "ok" } },
      ALLOW, 0, NULL },
};

/* ---- fixture: a scratch folder with a key file ---------------------------- */

static char *dir, *keyfile;
static char key[KG_KEY_MAX];
static kg_context *ctx;

static void setup(void)
{
    tu_setup(&dir, &keyfile, "p", key, &ctx);
}

static void teardown(void)
{
    tu_teardown(dir, keyfile, ctx, NULL);
}

static char *policy_text(const struct row *r)
{
    char *acc = tu_fmt("%s", ""), *text;
    size_t i;
    for (i = 0; i < 5 && r->s[i].control; i++) {
        char *n = tu_fmt("%s      - module: scripted\n        control: %s\n"
                         "        options: {result: %s, code: ip_not_allowed, "
                         "message: line %zu}\n",
                         acc, r->s[i].control, r->s[i].result, i + 1);
        free(acc);
        acc = n;
    }
    text = tu_fmt("credential:\n  - {module: bearer}\n"
                  "keystore:\n  - {module: file, options: {path: \"%s\"}}\n"
                  "plans:\n  p:\n    account:\n%s", keyfile, acc);
    free(acc);
    return text;
}

START_TEST(chain_table)
{
    const struct row *r = &rows[_i];
    char *text = policy_text(r);
    kg_policy *p = tu_policy(ctx, text);
    kg_decision *d = tu_check_key(p, key);
    char want_msg[16];

    ck_assert_msg(kg_decision_status(d) == r->expect,
                  "row %d (%s): status %d, expected %d (%s: %s)", _i, r->why,
                  kg_decision_status(d), r->expect,
                  kg_code_name(kg_decision_code(d)), kg_decision_message(d));
    switch (r->expect) {
    case ALLOW:
        ck_assert_int_eq(kg_decision_allowed(d), 1);
        ck_assert_int_eq(kg_decision_code(d), KG_CODE_NONE);
        ck_assert_str_eq(kg_decision_key_id(d), "k_test");
        ck_assert_str_eq(kg_decision_plan(d), "p");
        break;
    case UNAVAIL:
        /* Never "invalid key", never a permission denial. */
        ck_assert_int_eq(kg_decision_allowed(d), 0);
        ck_assert_int_eq(kg_decision_code(d), KG_CODE_AUTH_UNAVAILABLE);
        ck_assert_str_eq(kg_code_name(kg_decision_code(d)), "auth_unavailable");
        if (r->by != NULL)
            ck_assert_str_eq(kg_decision_decided_by(d), r->by);
        break;
    case DENY:
        ck_assert_int_eq(kg_decision_allowed(d), 0);
        if (r->line > 0) {
            snprintf(want_msg, sizeof(want_msg), "line %d", r->line);
            ck_assert_msg(strcmp(kg_decision_message(d), want_msg) == 0,
                          "row %d (%s): decided by '%s', expected '%s'", _i,
                          r->why, kg_decision_message(d), want_msg);
            ck_assert_int_eq(kg_decision_code(d), KG_CODE_IP_NOT_ALLOWED);
        } else {
            ck_assert_int_eq(kg_decision_code(d), KG_CODE_INSUFFICIENT_PERMISSIONS);
        }
        ck_assert_msg(strcmp(kg_decision_decided_by(d), r->by) == 0,
                      "row %d (%s): decided_by '%s', expected '%s'", _i, r->why,
                      kg_decision_decided_by(d), r->by);
        break;
    }
    kg_decision_free(d);
    kg_policy_free(p);
    free(text);
}
END_TEST

/* ---- stages around the table --------------------------------------------- */

START_TEST(empty_account_stage_passes)
{
    char *text = tu_fmt("credential: [{module: bearer}]\n"
                        "keystore: [{module: file, options: {path: \"%s\"}}]\n"
                        "plans: {p: {account: []}}\n", keyfile);
    kg_policy *p = tu_policy(ctx, text);
    kg_decision *d = tu_check_key(p, key);
    ck_assert_int_eq(kg_decision_allowed(d), 1);
    kg_decision_free(d);
    kg_policy_free(p);
    free(text);
}
END_TEST

START_TEST(default_control_is_required)
{
    char *text = tu_fmt("credential: [{module: bearer}]\n"
                        "keystore: [{module: file, options: {path: \"%s\"}}]\n"
                        "plans: {p: {account: [\n"
                        "  {module: scripted, options: {result: fail, code: ip_not_allowed, message: one}},\n"
                        "  {module: scripted, control: sufficient, options: {result: ok}}]}}\n",
                        keyfile);
    kg_policy *p = tu_policy(ctx, text);
    kg_decision *d = tu_check_key(p, key);
    ck_assert_int_eq(kg_decision_status(d), 403);
    ck_assert_str_eq(kg_decision_message(d), "one");
    kg_decision_free(d);
    kg_policy_free(p);
    free(text);
}
END_TEST

/* The keystore stage runs the same engine; unavailable stays 503 there. */
static char *store_policy(const char *flaky_control, const char *file_control,
                          const char *hash_hex, int down)
{
    char *down_path = tu_path(dir, "down"), *t;
    if (down)
        tu_write(down_path, "");
    t = tu_fmt("credential: [{module: bearer}]\n"
               "keystore:\n"
               "  - {module: flaky, control: %s, options: {hash: \"%s\", id: k_flaky, plan: p, down: \"%s\"}}\n"
               "  - {module: file, control: %s, options: {path: \"%s\"}}\n"
               "plans: {p: {}}\n",
               flaky_control, hash_hex, down_path, file_control, keyfile);
    free(down_path);
    return t;
}

START_TEST(keystore_unavailable_is_never_invalid_key)
{
    char other[KG_KEY_MAX], hex[65];
    unsigned char h[KG_HASH_LEN];
    kg_policy *p;
    kg_decision *d;
    char *t;

    ck_assert_int_eq(kg_key_generate("whizo", other, sizeof(other)), KG_OK);
    kg_key_hash(other, strlen(other), h);
    kg_hash_to_hex(h, hex);

    /* required store down, the key in the next store: first failure is
     * unavailable -> 503 */
    t = store_policy("required", "sufficient", hex, 1);
    p = tu_policy(ctx, t);
    d = tu_check_key(p, key);
    ck_assert_int_eq(kg_decision_status(d), 503);
    ck_assert_int_eq(kg_decision_code(d), KG_CODE_AUTH_UNAVAILABLE);
    ck_assert_str_eq(kg_decision_decided_by(d), "keystore:flaky");
    kg_decision_free(d);
    /* ... and for a key nobody knows, still 503, not 401 */
    d = tu_check_key(p, other);
    ck_assert_int_eq(kg_decision_status(d), 503);
    kg_decision_free(d);
    kg_policy_free(p);
    free(t);

    /* sufficient store down: ignored; the file store answers */
    t = store_policy("sufficient", "required", hex, 1);
    p = tu_policy(ctx, t);
    d = tu_check_key(p, key);
    ck_assert_int_eq(kg_decision_status(d), 200);
    ck_assert_str_eq(kg_decision_key_id(d), "k_test");
    kg_decision_free(d);
    kg_policy_free(p);
    free(t);

    /* optional stores only, the one that knows the key is down: nothing
     * counted and one could not answer -> 503, not 401 */
    t = store_policy("optional", "optional", hex, 1);
    p = tu_policy(ctx, t);
    d = tu_check_key(p, other);
    ck_assert_int_eq(kg_decision_status(d), 503);
    ck_assert_str_eq(kg_decision_decided_by(d), "keystore:flaky");
    kg_decision_free(d);
    kg_policy_free(p);
    free(t);
}
END_TEST

START_TEST(keystore_sufficient_store_answers)
{
    char other[KG_KEY_MAX], hex[65];
    unsigned char h[KG_HASH_LEN];
    kg_policy *p;
    kg_decision *d;
    char *t;

    ck_assert_int_eq(kg_key_generate("whizo", other, sizeof(other)), KG_OK);
    kg_key_hash(other, strlen(other), h);
    kg_hash_to_hex(h, hex);
    t = store_policy("sufficient", "required", hex, 0);
    p = tu_policy(ctx, t);
    /* in the first store: done there */
    d = tu_check_key(p, other);
    ck_assert_int_eq(kg_decision_status(d), 200);
    ck_assert_str_eq(kg_decision_key_id(d), "k_flaky");
    kg_decision_free(d);
    /* only in the second */
    d = tu_check_key(p, key);
    ck_assert_int_eq(kg_decision_status(d), 200);
    ck_assert_str_eq(kg_decision_key_id(d), "k_test");
    kg_decision_free(d);
    /* in neither: 401, decided by the required store */
    ck_assert_int_eq(kg_key_generate("whizo", other, sizeof(other)), KG_OK);
    d = tu_check_key(p, other);
    ck_assert_int_eq(kg_decision_status(d), 401);
    ck_assert_int_eq(kg_decision_code(d), KG_CODE_UNAUTHORIZED);
    ck_assert_str_eq(kg_decision_decided_by(d), "keystore:file");
    kg_decision_free(d);
    kg_policy_free(p);
    free(t);
}
END_TEST

static Suite *chain_suite(void)
{
    Suite *s = suite_create("chain");
    TCase *tc;

    tc = tcase_create("pam table");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_loop_test(tc, chain_table, 0, (int)(sizeof(rows) / sizeof(rows[0])));
    suite_add_tcase(s, tc);

    tc = tcase_create("stages");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, empty_account_stage_passes);
    tcase_add_test(tc, default_control_is_required);
    tcase_add_test(tc, keystore_unavailable_is_never_invalid_key);
    tcase_add_test(tc, keystore_sufficient_store_answers);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(chain_suite());
}
