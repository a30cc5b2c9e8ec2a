/*
 * check_policy - policy parsing (core/policy.c, core/yaml.c, core/opts.c)
 * and every error path, each with its file:line:column.
 *
 * The policies below use ${KGT_KEYS} (set by the fixture to a key file in
 * a scratch folder) so that the text, and so every line and column, is
 * fixed.
 */
#include "config.h"
#include "testutil.h"

static char *dir, *keyfile;
static char key[KG_KEY_MAX];
static kg_context *ctx;

static void setup(void)
{
    tu_setup(&dir, &keyfile, "free", key, &ctx);
    setenv("KGT_KEYS", keyfile, 1);
    setenv("KGT_REALM", "from env", 1);
    unsetenv("KGT_UNSET");
}

static void teardown(void)
{
    tu_teardown(dir, keyfile, ctx, NULL);
}

/* Lines 1-5: a credential and a keystore stage; plans follow. */
#define HEAD \
    "credential:\n"                                   /* 1 */ \
    "  - module: bearer\n"                            /* 2 */ \
    "keystore:\n"                                     /* 3 */ \
    "  - module: file\n"                              /* 4 */ \
    "    options: {path: \"${KGT_KEYS}\"}\n"          /* 5 */
#define PLANS "plans:\n  free: {}\n"                  /* 6, 7 */

/* 65 account lines: more than a stack holds (line 73 is the 65th). */
#define ACC "    - {module: ipacl}\n"
#define ACC8 ACC ACC ACC ACC ACC ACC ACC ACC
#define ACC64 ACC8 ACC8 ACC8 ACC8 ACC8 ACC8 ACC8 ACC8
#define NAME60 "n123456789n123456789n123456789n123456789n123456789n123456789"

/* Limit lines, to make a plan of more limits than a decision reports. */
#define LIM(n) "    - {module: fixed_window, options: {name: l" #n ", count: 5, window: 1h}}\n"
#define LIM16 LIM(1) LIM(2) LIM(3) LIM(4) LIM(5) LIM(6) LIM(7) LIM(8) \
    LIM(9) LIM(10) LIM(11) LIM(12) LIM(13) LIM(14) LIM(15) LIM(16)
#define MANY_LIMITS HEAD "plans:\n  free:\n    limit:\n" LIM16   /* 6-24 */

struct bad {
    const char *why;
    const char *yaml;
    kg_error err;
    unsigned line, column;
    const char *says;   /* a part of the message */
};

static const struct bad bads[] = {
    { "YAML syntax error (unclosed flow mapping)",
      HEAD "plans: {free: {}\n", KG_ERR_POLICY, 7, 1, "YAML syntax error" },
    { "YAML syntax error (bad indentation)",
      "credential:\n  - module: bearer\n   control: x\n", KG_ERR_POLICY, 3, 4,
      "YAML syntax error" },
    { "unknown top-level key",
      HEAD PLANS "colour: red\n", KG_ERR_POLICY, 8, 1, "unknown key 'colour' in the policy" },
    { "unknown key in a module line",
      "credential:\n  - module: bearer\n    colour: red\n"
      "keystore:\n  - module: file\n    options: {path: \"${KGT_KEYS}\"}\n" PLANS,
      KG_ERR_POLICY, 3, 5, "unknown key 'colour' in a module line" },
    { "unknown key in a plan",
      HEAD "plans:\n  free: {colour: 1}\n", KG_ERR_POLICY, 7, 10,
      "unknown key 'colour' in a plan" },
    { "unknown key in cache",
      "credential:\n  - module: bearer\nkeystore:\n  - module: file\n"
      "    cache: {ttl: 5s, size: 3}\n    options: {path: \"${KGT_KEYS}\"}\n" PLANS,
      KG_ERR_POLICY, 5, 22, "unknown key 'size' in cache" },
    { "unknown key in control",
      "credential:\n  - module: bearer\n    control: {ok: done, maybe: die}\n"
      "keystore:\n  - module: file\n    options: {path: \"${KGT_KEYS}\"}\n" PLANS,
      KG_ERR_POLICY, 3, 25, "unknown key 'maybe' in control" },
    { "bad control keyword",
      "credential:\n  - module: bearer\n    control: mandatory\n"
      "keystore:\n  - module: file\n    options: {path: \"${KGT_KEYS}\"}\n" PLANS,
      KG_ERR_POLICY, 3, 14, "unknown control 'mandatory'" },
    { "bad action",
      "credential:\n  - module: bearer\n    control: {ok: finish}\n"
      "keystore:\n  - module: file\n    options: {path: \"${KGT_KEYS}\"}\n" PLANS,
      KG_ERR_POLICY, 3, 19, "unknown action 'finish' for result ok" },
    { "control neither keyword nor mapping",
      "credential:\n  - module: bearer\n    control: [ok]\n"
      "keystore:\n  - module: file\n    options: {path: \"${KGT_KEYS}\"}\n" PLANS,
      KG_ERR_POLICY, 3, 14, "control must be" },
    { "missing credential",
      "keystore:\n  - module: file\n    options: {path: \"${KGT_KEYS}\"}\n" PLANS,
      KG_ERR_POLICY, 1, 1, "no credential: stage" },
    { "missing keystore",
      "credential:\n  - module: bearer\n" PLANS, KG_ERR_POLICY, 1, 1,
      "no keystore: stage" },
    { "missing plans", HEAD, KG_ERR_POLICY, 1, 1, "no plans:" },
    { "empty credential stage",
      "credential: []\nkeystore:\n  - module: file\n    options: {path: \"${KGT_KEYS}\"}\n" PLANS,
      KG_ERR_POLICY, 1, 13, "the credential stage is empty" },
    { "empty keystore stage",
      "credential:\n  - module: bearer\nkeystore:\n" PLANS, KG_ERR_POLICY, 3, 10,
      "the keystore stage is empty" },
    { "empty plans", HEAD "plans: {}\n", KG_ERR_POLICY, 6, 8, "plans must be a mapping" },
    { "a stage that is not a list",
      "credential: bearer\nkeystore:\n  - module: file\n    options: {path: \"${KGT_KEYS}\"}\n" PLANS,
      KG_ERR_POLICY, 1, 13, "credential must be a list" },
    { "a line that is a bare name",
      "credential: [bearer]\nkeystore:\n  - module: file\n    options: {path: \"${KGT_KEYS}\"}\n" PLANS,
      KG_ERR_POLICY, 1, 14, "must be a mapping such as" },
    { "a line without module",
      "credential:\n  - control: required\nkeystore:\n  - module: file\n"
      "    options: {path: \"${KGT_KEYS}\"}\n" PLANS,
      KG_ERR_POLICY, 2, 5, "line without 'module:'" },
    { "extends an undefined plan",
      HEAD "plans:\n  free: {}\n  pro:\n    extends: gold\n", KG_ERR_POLICY, 9, 5,
      "plan 'pro' extends 'gold', which is not defined" },
    { "extends cycle",
      HEAD "plans:\n  a: {extends: b}\n  b: {extends: c}\n  c: {extends: a}\n",
      KG_ERR_POLICY, 7, 3, "cycle" },
    { "a plan extending itself",
      HEAD "plans:\n  a: {extends: a}\n", KG_ERR_POLICY, 7, 3, "cycle" },
    { "plugin not found",
      "credential:\n  - module: nosuchplugin\nkeystore:\n  - module: file\n"
      "    options: {path: \"${KGT_KEYS}\"}\n" PLANS,
      KG_ERR_PLUGIN, 2, 13, "plugin 'nosuchplugin' not found" },
    { "an invalid plugin name",
      "credential:\n  - module: ../bearer\nkeystore:\n  - module: file\n"
      "    options: {path: \"${KGT_KEYS}\"}\n" PLANS,
      KG_ERR_PLUGIN, 2, 13, "not a valid plugin name" },
    { "wrong kind in a stage",
      "credential:\n  - module: file\n    options: {path: \"${KGT_KEYS}\"}\n"
      "keystore:\n  - module: file\n    options: {path: \"${KGT_KEYS}\"}\n" PLANS,
      KG_ERR_PLUGIN, 2, 13, "is a keystore plugin, expected a credential plugin" },
    { "unknown plugin option (found by the core after create)",
      "credential:\n  - module: bearer\nkeystore:\n  - module: file\n"
      "    options: {path: \"${KGT_KEYS}\", colour: red}\n" PLANS,
      KG_ERR_POLICY, 5, 36, "unknown option 'colour' for plugin file" },
    { "unknown option in a plugin without options",
      "credential:\n  - module: bearer\n    options: {realm: x}\nkeystore:\n  - module: file\n"
      "    options: {path: \"${KGT_KEYS}\"}\n" PLANS,
      KG_ERR_POLICY, 3, 15, "unknown option 'realm' for plugin bearer" },
    { "bad option type (duration)",
      "credential:\n  - module: bearer\nkeystore:\n  - module: file\n"
      "    options: {path: \"${KGT_KEYS}\", refresh: soon}\n" PLANS,
      KG_ERR_POLICY, 5, 45, "option 'refresh' of file must be a duration" },
    { "bad option type (bool)",
      "credential:\n  - module: bearer\nkeystore:\n  - module: file\n"
      "    options: {path: \"${KGT_KEYS}\", create: maybe}\n" PLANS,
      KG_ERR_POLICY, 5, 44, "option 'create' of file must be true or false" },
    { "bad option type (a list for a string)",
      "credential:\n  - module: bearer\nkeystore:\n  - module: file\n"
      "    options: {path: [a, b]}\n" PLANS,
      KG_ERR_POLICY, 5, 21, "option 'path' of file must be a single value" },
    { "an option refused by the plugin itself",
      "credential:\n  - module: header\n    options: {name: \"X Key\"}\nkeystore:\n"
      "  - module: file\n    options: {path: \"${KGT_KEYS}\"}\n" PLANS,
      KG_ERR_POLICY, 3, 21, "not a valid header name" },
    { "options that are not a mapping",
      "credential:\n  - module: bearer\n    options: [x]\nkeystore:\n  - module: file\n"
      "    options: {path: \"${KGT_KEYS}\"}\n" PLANS,
      KG_ERR_POLICY, 3, 14, "options must be a mapping" },
    { "cache on a line that is not a keystore",
      "credential:\n  - module: bearer\n    cache: {ttl: 5s}\nkeystore:\n  - module: file\n"
      "    options: {path: \"${KGT_KEYS}\"}\n" PLANS,
      KG_ERR_POLICY, 3, 5, "only allowed on keystore lines" },
    { "bad cache ttl",
      "credential:\n  - module: bearer\nkeystore:\n  - module: file\n"
      "    cache: {ttl: later}\n    options: {path: \"${KGT_KEYS}\"}\n" PLANS,
      KG_ERR_POLICY, 5, 18, "cache ttl must be a duration" },
    { "unset environment variable",
      "realm: \"${KGT_UNSET}\"\n" HEAD PLANS, KG_ERR_POLICY, 1, 8,
      "environment variable KGT_UNSET is not set" },
    { "unterminated ${",
      "realm: \"${KGT_REALM\"\n" HEAD PLANS, KG_ERR_POLICY, 1, 8, "unterminated ${" },
    /* A mapping key whose expansion fails must not be compared (it crashed). */
    { "unterminated ${ in a mapping key",
      "a: 1\n${b: 2\n", KG_ERR_POLICY, 2, 1, "unterminated ${" },
    { "unterminated ${ in a key after a broken line",
      "r c:\n:${:", KG_ERR_POLICY, 2, 1, "unterminated ${" },
    { "unset variable in a second mapping key",
      "a: 1\n${KGT_UNSET}: 2\n", KG_ERR_POLICY, 2, 1,
      "environment variable KGT_UNSET is not set" },
    { "duplicate key at the top",
      HEAD PLANS "credential:\n  - module: header\n", KG_ERR_POLICY, 8, 1,
      "duplicate key 'credential' (first at line 1)" },
    { "duplicate key in a mapping",
      HEAD "plans:\n  free: {priority: 1, priority: 2}\n", KG_ERR_POLICY, 7, 23,
      "duplicate key 'priority'" },
    { "alias bomb",
      "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
      "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
      "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
      "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
      "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
      "f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
      "g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n"
      "h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]\n"
      "i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h, *h]\n",
      KG_ERR_POLICY, 0, 0, "too large" },
    { "unsupported version", "version: 2\n" HEAD PLANS, KG_ERR_POLICY, 1, 10,
      "unsupported policy version" },
    { "bad key_prefix", "key_prefix: who_zo\n" HEAD PLANS, KG_ERR_POLICY, 1, 13,
      "key_prefix must be" },
    { "realm with a quote", "realm: 'a\"b'\n" HEAD PLANS, KG_ERR_POLICY, 1, 8,
      "realm must be" },
    { "plugin_path of the wrong type", "plugin_path: {a: b}\n" HEAD PLANS,
      KG_ERR_POLICY, 1, 14, "plugin_path must be" },
    { "priority out of range", HEAD "plans:\n  free: {priority: 5000}\n",
      KG_ERR_POLICY, 7, 20, "priority must be a number from 0 to 1000" },
    { "bad lease_ttl", HEAD "plans:\n  free: {lease_ttl: forever}\n",
      KG_ERR_POLICY, 7, 21, "lease_ttl must be a duration" },
    { "more limit lines than a decision reports", MANY_LIMITS LIM(17),
      KG_ERR_POLICY, 25, 7, "plan 'free' has 17 limit lines, more than the 16" },
    /* Issue 23 item 13: load errors instead of a silent cap. */
    { "a stack of 65 lines", HEAD "plans:\n  free:\n    account:\n" ACC64 ACC,
      KG_ERR_POLICY, 73, 7, "the account stage has 65 lines, more than the 64" },
    { "a limit name of 60 bytes (a plugin that would take it)",
      HEAD "plans:\n  free:\n    limit:\n    - {module: batchlim, options: {name: "
      NAME60 "}}\n",
      KG_ERR_POLICY, 9, 42, "is 60 bytes; at most 47" },
    { "a limit name of 48 bytes (a shipped limiter)",
      HEAD "plans:\n  free:\n    limit:\n    - {module: fixed_window, options: {name: "
      "n123456789n123456789n123456789n123456789n1234567, count: 1, window: 1h}}\n",
      KG_ERR_POLICY, 0, 0, "a name of 1 to 47 characters" },
    { "a policy that is a list", "- a\n- b\n", KG_ERR_POLICY, 1, 1,
      "a policy must be a mapping" },
    { "an empty document", "", KG_ERR_POLICY, 1, 1, "empty" },
    { "a mapping key that is not a string", "? [a]\n: b\n", KG_ERR_POLICY, 1, 3,
      "mapping keys must be plain strings" },
};

START_TEST(error_paths)
{
    const struct bad *b = &bads[_i];
    kg_diag d;
    kg_error e = tu_policy_error(ctx, b->yaml, &d);
    char buf[2048];

    kg_diag_format(&d, buf, sizeof(buf));
    ck_assert_msg(e == b->err, "case %d (%s): error %s, expected %s: %s", _i,
                  b->why, kg_strerror(e), kg_strerror(b->err), buf);
    ck_assert_msg(strstr(d.message, b->says) != NULL,
                  "case %d (%s): message '%s' does not say '%s'", _i, b->why,
                  d.message, b->says);
    ck_assert_msg(strcmp(d.file, "bad.yaml") == 0, "case %d (%s): file '%s'",
                  _i, b->why, d.file);
    if (b->line != 0) {
        ck_assert_msg(d.line == b->line && d.column == b->column,
                      "case %d (%s): at %u:%u, expected %u:%u: %s", _i, b->why,
                      d.line, d.column, b->line, b->column, buf);
        /* The formatted diag leads with file:line:column. */
        {
            char want[64];
            snprintf(want, sizeof(want), "bad.yaml:%u:%u: ", b->line, b->column);
            ck_assert_msg(strncmp(buf, want, strlen(want)) == 0, "%s", buf);
        }
    }
}
END_TEST

/* ---- what loads ------------------------------------------------------- */

/* Sixteen limits (a decision reports that many) load, and all are
 * reported. */
START_TEST(sixteen_limits_load)
{
    kg_policy *p = tu_policy(ctx, MANY_LIMITS);
    kg_decision *d = tu_check_key(p, key);
    ck_assert_msg(kg_decision_allowed(d), "%s", kg_decision_message(d));
    ck_assert_uint_eq(kg_decision_limit_count(d), 16);
    kg_decision_free(d);
    kg_policy_free(p);
}
END_TEST

START_TEST(minimal_policy_loads)
{
    kg_policy *p = tu_policy(ctx, HEAD PLANS);
    kg_decision *d = tu_check_key(p, key);
    ck_assert_int_eq(kg_decision_allowed(d), 1);
    ck_assert_uint_eq(kg_policy_plan_count(p), 1);
    ck_assert_str_eq(kg_policy_plan_name(p, 0), "free");
    ck_assert_ptr_null(kg_policy_plan_name(p, 1));
    ck_assert_str_eq(kg_policy_source(p), "test.yaml");
    kg_decision_free(d);
    kg_policy_free(p);
}
END_TEST

START_TEST(env_expansion)
{
    kg_policy *p;
    char *x;

    /* ${VAR}, in the middle of a value */
    p = tu_policy(ctx, "realm: \"x ${KGT_REALM} y\"\n" HEAD PLANS);
    x = kg_policy_explain(p);
    ck_assert_ptr_nonnull(strstr(x, "realm: \"x from env y\""));
    free(x);
    kg_policy_free(p);

    /* ${VAR:-default} with VAR unset, and set */
    p = tu_policy(ctx, "realm: \"${KGT_UNSET:-fallback value}\"\n" HEAD PLANS);
    x = kg_policy_explain(p);
    ck_assert_ptr_nonnull(strstr(x, "realm: \"fallback value\""));
    free(x);
    kg_policy_free(p);
    p = tu_policy(ctx, "realm: \"${KGT_REALM:-fallback}\"\n" HEAD PLANS);
    x = kg_policy_explain(p);
    ck_assert_ptr_nonnull(strstr(x, "realm: \"from env\""));
    free(x);
    kg_policy_free(p);

    /* an empty variable counts as unset for :- */
    setenv("KGT_UNSET", "", 1);
    p = tu_policy(ctx, "realm: \"${KGT_UNSET:-dflt}\"\n" HEAD PLANS);
    x = kg_policy_explain(p);
    ck_assert_ptr_nonnull(strstr(x, "realm: \"dflt\""));
    free(x);
    kg_policy_free(p);
    unsetenv("KGT_UNSET");

    /* $${ is a literal ${ */
    p = tu_policy(ctx, "realm: \"cost $${KGT_REALM}\"\n" HEAD PLANS);
    x = kg_policy_explain(p);
    ck_assert_ptr_nonnull(strstr(x, "realm: \"cost ${KGT_REALM}\""));
    free(x);
    kg_policy_free(p);

    /* a path moved by the environment: the key file is found through it */
    p = tu_policy(ctx, HEAD PLANS);
    {
        kg_decision *d = tu_check_key(p, key);
        ck_assert_int_eq(kg_decision_allowed(d), 1);
        kg_decision_free(d);
    }
    kg_policy_free(p);
}
END_TEST

START_TEST(extends_inherits)
{
    kg_policy *p = tu_policy(ctx,
        HEAD "plans:\n"
        "  base:\n    priority: 3\n    account:\n"
        "      - {module: scripted, options: {result: fail, code: ip_not_allowed, message: from base}}\n"
        "  mid: {extends: base}\n"
        "  free: {extends: mid, priority: 7}\n");
    kg_decision *d = tu_check_key(p, key);
    char *x;
    /* free inherits base's account stage (through mid), keeps its priority */
    ck_assert_int_eq(kg_decision_status(d), 403);
    ck_assert_str_eq(kg_decision_message(d), "from base");
    ck_assert_int_eq(kg_decision_priority(d), 7);
    kg_decision_free(d);
    x = kg_policy_explain(p);
    ck_assert_ptr_nonnull(strstr(x, "plan free (extends mid): priority 7"));
    ck_assert_ptr_nonnull(strstr(x, "plan mid (extends base): priority 3"));
    free(x);
    ck_assert_uint_eq(kg_policy_plan_count(p), 3);
    ck_assert_str_eq(kg_policy_plan_name(p, 0), "base");
    ck_assert_str_eq(kg_policy_plan_name(p, 2), "free");
    kg_policy_free(p);
}
END_TEST

START_TEST(explain_mentions_each_stage)
{
    kg_policy *p = tu_policy(ctx,
        "credential:\n  - {module: bearer, control: optional}\n"
        "  - {module: header, control: optional}\n"
        "keystore:\n  - module: file\n    control: {ok: done, fail: die}\n"
        "    cache: {ttl: 5s}\n    options: {path: \"${KGT_KEYS}\"}\n"
        "plans:\n  free:\n    account:\n      - {module: scripted, control: requisite}\n"
        "  pro: {}\n");
    char *x = kg_policy_explain(p);
    ck_assert_ptr_nonnull(x);
    ck_assert_ptr_nonnull(strstr(x, "stage credential:"));
    ck_assert_ptr_nonnull(strstr(x, "stage keystore:"));
    ck_assert_ptr_nonnull(strstr(x, "plan free"));
    ck_assert_ptr_nonnull(strstr(x, "plan pro"));
    ck_assert_ptr_nonnull(strstr(x, "stage account:"));
    ck_assert_ptr_nonnull(strstr(x, "stage limit:"));
    ck_assert_ptr_nonnull(strstr(x, "bearer"));
    ck_assert_ptr_nonnull(strstr(x, "header"));
    ck_assert_ptr_nonnull(strstr(x, "scripted"));
    ck_assert_ptr_nonnull(strstr(x, "requisite"));
    ck_assert_ptr_nonnull(strstr(x, "explicit"));
    ck_assert_ptr_nonnull(strstr(x, "cache:"));
    ck_assert_ptr_nonnull(strstr(x, "(empty: passes)"));
    /* optional's compiled row: ok counts, the rest ignored */
    ck_assert_ptr_nonnull(strstr(x, "optional    ok       ignore   ignore   ignore"));
    /* the explicit keystore row: unnamed results as required */
    ck_assert_ptr_nonnull(strstr(x, "explicit    done     die      ignore   bad"));
    free(x);
    kg_policy_free(p);
}
END_TEST

START_TEST(load_file_missing)
{
    kg_policy *p = (kg_policy *)1;
    kg_diag d;
    char *path = tu_path(dir, "nope.yaml");
    ck_assert_int_eq(kg_policy_load_file(ctx, path, &p, &d), KG_ERR_IO);
    ck_assert_ptr_null(p);
    ck_assert_str_eq(d.file, path);
    ck_assert_ptr_nonnull(strstr(d.message, "cannot open the policy"));
    free(path);
}
END_TEST

START_TEST(load_file_relative_paths)
{
    /* A relative option path is taken from the policy file's folder. */
    char *path = tu_path(dir, "policy.yaml");
    kg_policy *p = NULL;
    kg_diag d;
    kg_decision *dec;
    tu_write(path, "credential: [{module: bearer}]\n"
                   "keystore: [{module: file, options: {path: keys.yaml}}]\n"
                   "plans: {free: {}}\n");
    ck_assert_int_eq(kg_policy_load_file(ctx, path, &p, &d), KG_OK);
    ck_assert_str_eq(kg_policy_source(p), path);
    dec = tu_check_key(p, key);
    ck_assert_int_eq(kg_decision_allowed(dec), 1);
    kg_decision_free(dec);
    kg_policy_free(p);

    /* and errors in a file name the file */
    tu_write(path, "credential: [{module: bearer}]\nbogus: 1\n");
    ck_assert_int_eq(kg_policy_load_file(ctx, path, &p, &d), KG_ERR_POLICY);
    ck_assert_str_eq(d.file, path);
    free(path);
}
END_TEST

/*
 * A secret kept in a file (kg_opts_get_secret_file, as password_file
 * options use it): its first line, the path taken from the policy's
 * folder; an empty or missing file is an error at the option's place.
 * (The anykey fixture reads its plan that way from `plan_file`.)
 */
START_TEST(secret_file_option)
{
    char *path = tu_path(dir, "policy.yaml"), *secret = tu_path(dir, "plan.txt");
    kg_policy *p = NULL;
    kg_diag d;
    kg_decision *dec;
    char k[KG_KEY_MAX];

    tu_write(path, "credential: [{module: bearer}]\n"
                   "keystore:\n"
                   "  - {module: anykey, options: {plan_file: plan.txt}}\n"
                   "plans: {free: {}, gold: {}}\n");
    tu_write(secret, "gold\nsecond line\n");
    ck_assert_int_eq(kg_policy_load_file(ctx, path, &p, &d), KG_OK);
    ck_assert_int_eq(kg_key_generate("whizo", k, KG_KEY_MAX), KG_OK);
    dec = tu_check_key(p, k);
    ck_assert_msg(kg_decision_allowed(dec), "%s", kg_decision_message(dec));
    ck_assert_str_eq(kg_decision_plan(dec), "gold");
    kg_decision_free(dec);
    kg_policy_free(p);

    tu_write(secret, "\n");
    ck_assert_int_eq(kg_policy_load_file(ctx, path, &p, &d), KG_ERR_POLICY);
    ck_assert_msg(strstr(d.message, "is empty") != NULL, "%s", d.message);
    ck_assert_uint_eq(d.line, 3);
    ck_assert_uint_eq(d.column, 43);

    unlink(secret);
    ck_assert_int_eq(kg_policy_load_file(ctx, path, &p, &d), KG_ERR_POLICY);
    ck_assert_msg(strstr(d.message, "cannot read") != NULL &&
                  strstr(d.message, "plan.txt") != NULL, "%s", d.message);
    free(secret);
    free(path);
}
END_TEST

START_TEST(load_file_with_nul)
{
    char *path = tu_path(dir, "nul.yaml");
    FILE *f = fopen(path, "w");
    kg_policy *p = NULL;
    kg_diag d;
    fwrite("credential: x\0y\n", 1, 17, f);
    fclose(f);
    ck_assert_int_eq(kg_policy_load_file(ctx, path, &p, &d), KG_ERR_POLICY);
    ck_assert_ptr_null(p);
    free(path);
}
END_TEST

START_TEST(bad_arguments)
{
    kg_policy *p = NULL;
    kg_diag d;
    ck_assert_int_eq(kg_policy_load_string(NULL, "x: 1", "n", &p, &d), KG_ERR_INVALID);
    ck_assert_int_eq(kg_policy_load_string(ctx, NULL, "n", &p, &d), KG_ERR_INVALID);
    ck_assert_int_eq(kg_policy_load_file(ctx, NULL, &p, &d), KG_ERR_INVALID);
    kg_policy_free(NULL);
    /* A NULL diag is allowed. */
    ck_assert_int_eq(kg_policy_load_string(ctx, "a: [", "n", &p, NULL), KG_ERR_POLICY);
}
END_TEST

/* What a plan enforces (issue 23 item 2: keygate key create took
 * settings nothing would read): the modules of its stages, inherited
 * ones included, and its limits' names, defaults included. */
/* A store with `list` and no `get` or `put` (the anykey fixture) lists
 * keys; reading one by id and writing say which op is missing, not
 * "read-only" for all three (issue 23 item 17). */
static int count_listed(const kg_record *r, void *ud)
{
    ck_assert_str_eq(kg_record_id(r), "k_listed");
    ++*(int *)ud;
    return 0;
}

START_TEST(keystore_ops_each_enable)
{
    kg_policy *p = tu_policy(ctx, "credential: [{module: bearer}]\n"
                                  "keystore: [{module: anykey, options: {plan: free}}]\n"
                                  "plans: {free: {}}\n");
    kg_record *r = NULL;
    kg_diag d;
    char newkey[KG_KEY_MAX];
    int n = 0;

    ck_assert_int_eq(kg_keys_list(p, count_listed, &n, &d), KG_OK);
    ck_assert_int_eq(n, 1);
    ck_assert_int_eq(kg_keys_get(p, "k_listed", &r, &d), KG_ERR_UNSUPPORTED);
    ck_assert_msg(strstr(d.message, "no store has `get`") != NULL, "%s", d.message);
    r = kg_record_new();
    kg_record_set_plan(r, "free");
    ck_assert_int_eq(kg_keys_create(p, r, newkey, sizeof(newkey), &d), KG_ERR_READONLY);
    ck_assert_msg(strstr(d.message, "no store has `put`") != NULL, "%s", d.message);
    kg_record_unref(r);
    kg_policy_free(p);
}
END_TEST

START_TEST(plan_queries)
{
    kg_policy *p = tu_policy(ctx,
        HEAD "plans:\n"
        "  free:\n    limit:\n"
        "      - {module: fixed_window, options: {name: hour, count: 5, window: 1h}}\n"
        "      - {module: concurrency, options: {count: 2}}\n"
        "  ent:\n    extends: free\n    account:\n"
        "      - {module: scope, options: {routes: {\"GET /x\": x:read}}}\n");
    ck_assert_int_eq(kg_policy_plan_has_module(p, "free", "scope"), 0);
    ck_assert_int_eq(kg_policy_plan_has_module(p, "ent", "scope"), 1);
    ck_assert_int_eq(kg_policy_plan_has_module(p, "ent", "fixed_window"), 1);
    ck_assert_int_eq(kg_policy_plan_has_module(p, "gold", "scope"), -1);
    ck_assert_uint_eq(kg_policy_plan_limit_count(p, "free"), 2);
    ck_assert_str_eq(kg_policy_plan_limit_name(p, "free", 0), "hour");
    /* a default name is the one the plugin uses */
    ck_assert_str_eq(kg_policy_plan_limit_name(p, "free", 1), "concurrency");
    ck_assert_ptr_null(kg_policy_plan_limit_name(p, "free", 2));
    /* inherited */
    ck_assert_uint_eq(kg_policy_plan_limit_count(p, "ent"), 2);
    ck_assert_str_eq(kg_policy_plan_limit_name(p, "ent", 0), "hour");
    ck_assert_uint_eq(kg_policy_plan_limit_count(p, "gold"), 0);
    ck_assert_ptr_null(kg_policy_plan_limit_name(p, "gold", 0));
    kg_policy_free(p);
}
END_TEST

/* Each limit line's size as its plugin read it (issues 19 and 21: the
 * admin API's /plans and the dashboard's chart draw it): defaults
 * included, window 0 where the plugin reads none, UNSUPPORTED for a
 * plugin that reads no count (the batchlim fixture), NOT_FOUND past the
 * end or for an unknown plan. */
START_TEST(plan_limit_sizes)
{
    kg_policy *p = tu_policy(ctx,
        HEAD "plans:\n"
        "  free:\n    limit:\n"
        "      - {module: fixed_window, options: {name: hour, count: 5, window: 1h}}\n"
        "      - {module: sliding_window, options: {count: 7, window: 30m}}\n"
        "      - {module: token_bucket, options: {count: 100, window: 1s, burst: 1000}}\n"
        "      - {module: concurrency, options: {count: 2, ttl: 1m}}\n"
        "      - {module: batchlim, options: {name: b}}\n"
        "  ent:\n    extends: free\n");
    /* Line by line: the answer, the count, the window.  The bucket gives
     * its refill rate, not its capacity; concurrency has no window (its
     * lease ttl is none); batchlim reads no count. */
    static const struct { kg_error e; int64_t count, window; } want[] = {
        { KG_OK, 5, 3600 }, { KG_OK, 7, 1800 }, { KG_OK, 100, 1 },
        { KG_OK, 2, 0 }, { KG_ERR_UNSUPPORTED, 0, 0 }, { KG_ERR_NOT_FOUND, 0, 0 },
    };
    int64_t count, window;
    size_t i;

    for (i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        count = window = -1;
        ck_assert_int_eq(kg_policy_plan_limit_size(p, "free", i, &count, &window),
                         want[i].e);
        ck_assert_int_eq(count, want[i].count);
        ck_assert_int_eq(window, want[i].window);
    }
    /* inherited; either output may be NULL */
    ck_assert_int_eq(kg_policy_plan_limit_size(p, "ent", 1, &count, NULL), KG_OK);
    ck_assert_int_eq(count, 7);
    ck_assert_int_eq(kg_policy_plan_limit_size(p, "ent", 0, NULL, &window), KG_OK);
    ck_assert_int_eq(window, 3600);
    ck_assert_int_eq(kg_policy_plan_limit_size(p, "gold", 0, &count, &window),
                     KG_ERR_NOT_FOUND);
    ck_assert_int_eq(kg_policy_plan_limit_size(NULL, "free", 0, &count, &window),
                     KG_ERR_NOT_FOUND);
    kg_policy_free(p);
}
END_TEST

/* A policy's plugin_path, read without loading it (issue 23 item 8:
 * keygate plugins ignored it): even when a plugin it names is missing. */
/* kg_policy_may_wait(): what an event-loop embedder (nginx's module)
 * must move to threads: nothing for stores in memory or on local disk
 * and limits in memory; a network store's lookups (KG_WAITS_KEYSTORE);
 * every check with a limit on Redis (KG_WAITS_ALWAYS), in any plan. */
START_TEST(policy_may_wait)
{
    kg_policy *p = tu_policy(ctx, HEAD "plans:\n  free:\n    limit:\n"
        "      - {module: fixed_window, options: {name: hour, count: 5, window: 1h}}\n"
        "      - {module: concurrency, options: {count: 2}}\n");
    ck_assert_int_eq(kg_policy_may_wait(p), 0);
    kg_policy_free(p);
    ck_assert_int_eq(kg_policy_may_wait(NULL), 0);
#ifdef HAVE_SQLITE
    p = tu_policyf(ctx, "credential:\n  - module: bearer\nkeystore:\n"
        "  - {module: sql, options: {driver: sqlite, path: \"%s/k.db\", "
        "auto_migrate: true}}\nplans:\n  free: {}\n", dir);
    ck_assert_int_eq(kg_policy_may_wait(p), 0);
    kg_policy_free(p);
#endif
#ifdef HAVE_LDAP
    /* no connection at load: the directory is asked at the first lookup */
    p = tu_policy(ctx, "credential:\n  - module: bearer\nkeystore:\n"
        "  - {module: ldap, options: {uris: [\"ldap://127.0.0.1:9\"], "
        "base_dn: \"ou=keys,dc=example,dc=com\"}}\nplans:\n  free: {}\n");
    ck_assert_int_eq(kg_policy_may_wait(p), KG_WAITS_KEYSTORE);
    kg_policy_free(p);
#endif
#ifdef HAVE_HIREDIS
    p = tu_policy(ctx, HEAD "plans:\n  free: {}\n  pro:\n    limit:\n"
        "      - {module: fixed_window, options: {name: hour, count: 5, window: 1h, "
        "backend: redis, redis: {endpoints: [\"127.0.0.1:9\"]}}}\n");
    ck_assert_int_eq(kg_policy_may_wait(p), KG_WAITS_ALWAYS);
    kg_policy_free(p);
#endif
}
END_TEST

START_TEST(read_plugin_path)
{
    char *path = tu_path(dir, "pp.yaml"), **dirs = NULL;
    size_t n = 9;
    kg_diag d;

    tu_write(path, "plugin_path: [/opt/a, \"${KGT_REALM}/b\"]\n"
                   "credential: [{module: nosuch}]\n");
    ck_assert_int_eq(kg_policy_read_plugin_path(path, &dirs, &n, &d), KG_OK);
    ck_assert_uint_eq(n, 2);
    ck_assert_str_eq(dirs[0], "/opt/a");
    ck_assert_str_eq(dirs[1], "from env/b");
    ck_assert_ptr_null(dirs[2]);
    free(dirs);
    tu_write(path, "plugin_path: /opt/one\n");
    ck_assert_int_eq(kg_policy_read_plugin_path(path, &dirs, &n, &d), KG_OK);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(dirs[0], "/opt/one");
    free(dirs);
    tu_write(path, "credential: []\n");
    ck_assert_int_eq(kg_policy_read_plugin_path(path, &dirs, &n, &d), KG_OK);
    ck_assert_uint_eq(n, 0);
    ck_assert_ptr_null(dirs[0]);
    free(dirs);
    tu_write(path, "plugin_path: {a: b}\n");
    ck_assert_int_eq(kg_policy_read_plugin_path(path, &dirs, &n, &d), KG_ERR_POLICY);
    ck_assert_ptr_null(dirs);
    ck_assert_uint_eq(d.line, 1);
    ck_assert_uint_eq(d.column, 14);
    tu_write(path, "plugin_path: [/a, [/b]]\n");
    ck_assert_int_eq(kg_policy_read_plugin_path(path, &dirs, &n, &d), KG_ERR_POLICY);
    ck_assert_ptr_null(dirs);
    ck_assert_int_eq(kg_policy_read_plugin_path("/nonexistent/p.yaml", &dirs, &n, &d),
                     KG_ERR_IO);
    ck_assert_ptr_nonnull(strstr(d.message, "cannot open"));
    free(path);
}
END_TEST

START_TEST(strerror_covers_every_code)
{
    int i;
    for (i = 0; i < KG_ERR__LAST; i++) {
        ck_assert_ptr_nonnull(kg_strerror((kg_error)i));
        ck_assert(kg_strerror((kg_error)i)[0] != '\0');
    }
}
END_TEST

static Suite *policy_suite(void)
{
    Suite *s = suite_create("policy");
    TCase *tc;

    tc = tcase_create("errors");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_loop_test(tc, error_paths, 0, (int)(sizeof(bads) / sizeof(bads[0])));
    suite_add_tcase(s, tc);

    tc = tcase_create("parsing");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, minimal_policy_loads);
    tcase_add_test(tc, sixteen_limits_load);
    tcase_add_test(tc, env_expansion);
    tcase_add_test(tc, extends_inherits);
    tcase_add_test(tc, explain_mentions_each_stage);
    tcase_add_test(tc, plan_queries);
    tcase_add_test(tc, plan_limit_sizes);
    tcase_add_test(tc, keystore_ops_each_enable);
    suite_add_tcase(s, tc);

    tc = tcase_create("files");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, load_file_missing);
    tcase_add_test(tc, secret_file_option);
    tcase_add_test(tc, load_file_relative_paths);
    tcase_add_test(tc, load_file_with_nul);
    tcase_add_test(tc, bad_arguments);
    tcase_add_test(tc, strerror_covers_every_code);
    tcase_add_test(tc, read_plugin_path);
    tcase_add_test(tc, policy_may_wait);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(policy_suite());
}
