/*
 * check_credential - the credential plugins: bearer (RFC 6750 section 2.1)
 * and header (X-API-Key or a configured name), alone and together, as
 * the shipped policy stacks them (both optional).
 */
#include "testutil.h"

#include <pthread.h>

static char *dir, *keyfile;
static char key[KG_KEY_MAX], key2[KG_KEY_MAX];
static kg_context *ctx;
static kg_policy *pol;

static void setup(void)
{
    char *rec2, *text, *t;
    tu_setup(&dir, &keyfile, "free", key, &ctx);
    /* a second valid key in the same store */
    ck_assert_int_eq(kg_key_generate("whizo", key2, sizeof(key2)), KG_OK);
    rec2 = tu_key_record("k_two", key2, "free", NULL);
    text = tu_read(keyfile);
    t = tu_fmt("%s%s", text, rec2);
    tu_write(keyfile, t);
    free(t);
    free(text);
    free(rec2);
    t = tu_fmt("realm: \"whizo API\"\n"
               "credential:\n"
               "  - {module: bearer, control: optional}\n"
               "  - {module: header, control: optional}\n"
               "keystore: [{module: file, options: {path: \"%s\"}}]\n"
               "plans: {free: {}}\n", keyfile);
    pol = tu_policy(ctx, t);
    free(t);
}

static void teardown(void)
{
    tu_teardown(dir, keyfile, ctx, pol);
}

/* Check a request given as up to three header lines. */
static kg_decision *check3(const kg_policy *p, const char *h1, const char *h2,
                           const char *h3)
{
    kg_request *r = tu_request(h1, h2, h3, NULL);
    kg_decision *d = tu_check(p, r);
    kg_request_free(r);
    return d;
}

static void expect(kg_decision *d, int status, kg_code code, const char *why)
{
    ck_assert_msg(kg_decision_status(d) == status && kg_decision_code(d) == code,
                  "%s: got %d %s (%s), expected %d %s", why, kg_decision_status(d),
                  kg_code_name(kg_decision_code(d)), kg_decision_message(d),
                  status, kg_code_name(code));
    kg_decision_free(d);
}

#define ALLOWED(d, why) expect((d), 200, KG_CODE_NONE, (why))
#define BAD_REQUEST(d, why) expect((d), 400, KG_CODE_INVALID_REQUEST, (why))
#define UNAUTH(d, why) expect((d), 401, KG_CODE_UNAUTHORIZED, (why))

/* ---- bearer ------------------------------------------------------------ */

START_TEST(bearer_scheme_case_insensitive)
{
    const char *schemes[] = { "Bearer", "bearer", "BEARER", "bEaReR" };
    size_t i;
    for (i = 0; i < 4; i++) {
        char *h = tu_fmt("Authorization: %s %s", schemes[i], key);
        kg_decision *d = check3(pol, h, NULL, NULL);
        ck_assert_str_eq(kg_decision_key_id(d), "k_test");
        ALLOWED(d, schemes[i]);
        free(h);
    }
    /* the header name is case-insensitive too */
    {
        char *h = tu_fmt("authorization: Bearer %s", key);
        ALLOWED(check3(pol, h, NULL, NULL), "lower-case header name");
        free(h);
    }
}
END_TEST

#pragma GCC diagnostic ignored "-Wformat-nonliteral"
START_TEST(bearer_malformed_is_400)
{
    struct { const char *fmt; const char *why; } cases[] = {
        { "Authorization: Bearer\t%s", "a tab instead of the space" },
        { "Authorization: Bearer", "no token" },
        { "Authorization: Bearer ", "an empty token" },
        { "Authorization: Bearer    ", "only spaces" },
        { "Authorization: Bearer %s extra", "two tokens" },
        { "Authorization: Bearer %s,x", "a comma" },
        { "Authorization: Bearer \"%s\"", "quoted" },
        { "Authorization: Bearer %s!", "a character outside b64token" },
        { "Authorization: Bearer =abc", "padding first" },
        { "Authorization: Bearer ab=cdefgh", "padding inside" },
        { "Authorization: Bearer abcde!fgh", "outside b64token, in the middle" },
    };
    size_t i;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *h = tu_fmt(cases[i].fmt, key);
        kg_decision *d = check3(pol, h, NULL, NULL);
        ck_assert_str_eq(kg_decision_decided_by(d), "credential:bearer");
        ck_assert_ptr_null(kg_decision_key_id(d));
        BAD_REQUEST(d, cases[i].why);
        free(h);
    }
}
END_TEST

START_TEST(bearer_lenient_spacing)
{
    char *h = tu_fmt("Authorization: Bearer   %s  ", key);
    ALLOWED(check3(pol, h, NULL, NULL), "extra spaces around the token");
    free(h);
}
END_TEST

START_TEST(bearer_other_schemes_ignored)
{
    char *h = tu_bearer(key);
    kg_decision *d;
    /* Basic alone: not ours, so no key at all */
    d = check3(pol, "Authorization: Basic dXNlcjpwYXNz", NULL, NULL);
    UNAUTH(d, "Basic only");
    /* a scheme that starts with "bearer" is another scheme */
    UNAUTH(check3(pol, "Authorization: Bearerx abc", NULL, NULL), "Bearerx");
    /* Basic beside a Bearer header: the Bearer one is used */
    ALLOWED(check3(pol, "Authorization: Basic dXNlcjpwYXNz", h, NULL), "Basic + Bearer");
    ALLOWED(check3(pol, h, "Authorization: Digest username=x", NULL), "Bearer + Digest");
    free(h);
}
END_TEST

START_TEST(bearer_twice_is_400)
{
    char *h1 = tu_bearer(key), *h2 = tu_bearer(key2);
    BAD_REQUEST(check3(pol, h1, h2, NULL), "two Bearer headers, different keys");
    BAD_REQUEST(check3(pol, h1, h1, NULL), "two Bearer headers, same key");
    free(h1);
    free(h2);
}
END_TEST

START_TEST(bearer_bad_checksum_is_401)
{
    char bad[KG_KEY_MAX], *h;
    kg_decision *d;
    snprintf(bad, sizeof(bad), "%s", key);
    bad[10] = bad[10] == 'A' ? 'B' : 'A';
    h = tu_bearer(bad);
    d = check3(pol, h, NULL, NULL);
    ck_assert_str_eq(kg_decision_decided_by(d), "core:keyfmt");
    UNAUTH(d, "a mistyped key");
    free(h);
    /* well-formed but unknown */
    ck_assert_int_eq(kg_key_generate("whizo", bad, sizeof(bad)), KG_OK);
    h = tu_bearer(bad);
    UNAUTH(check3(pol, h, NULL, NULL), "an unknown key");
    free(h);
    /* not even our format: "Bearer abc" */
    UNAUTH(check3(pol, "Authorization: Bearer abc.def", NULL, NULL), "a foreign token");
    UNAUTH(check3(pol, "Authorization: Bearer abcdefgh==", NULL, NULL),
           "a foreign token with padding");
    /* longer than any key: refused by the format, before it is hashed */
    {
        char big[4 * KG_KEY_MAX];
        memset(big, 'a', sizeof(big) - 1);
        big[sizeof(big) - 1] = '\0';
        h = tu_bearer(big);
        d = check3(pol, h, NULL, NULL);
        ck_assert_str_eq(kg_decision_decided_by(d), "core:keyfmt");
        UNAUTH(d, "an overlong token");
        free(h);
    }
}
END_TEST

/* ---- header --------------------------------------------------------------- */

START_TEST(header_default_name)
{
    char *h = tu_fmt("X-API-Key: %s", key), *l = tu_fmt("x-api-key: %s", key);
    char *sp = tu_fmt("X-API-Key:   %s  ", key);
    kg_decision *d = check3(pol, h, NULL, NULL);
    ck_assert_str_eq(kg_decision_key_id(d), "k_test");
    ALLOWED(d, "X-API-Key");
    ALLOWED(check3(pol, l, NULL, NULL), "x-api-key");
    ALLOWED(check3(pol, sp, NULL, NULL), "surrounding spaces trimmed");
    ALLOWED(check3(pol, h, h, NULL), "the same key twice");
    free(h);
    free(l);
    free(sp);
}
END_TEST

START_TEST(header_malformed_is_400)
{
    char *two = tu_fmt("X-API-Key: %s %s", key, key2);
    char *ctl = tu_fmt("X-API-Key: %.10s\x01%s", key, key + 10);
    char *h1 = tu_fmt("X-API-Key: %s", key), *h2 = tu_fmt("X-API-Key: %s", key2);
    kg_request *r;
    kg_decision *d;

    BAD_REQUEST(check3(pol, "X-API-Key:", NULL, NULL), "empty");
    BAD_REQUEST(check3(pol, "X-API-Key:    ", NULL, NULL), "whitespace only");
    BAD_REQUEST(check3(pol, two, NULL, NULL), "two keys in one value");
    BAD_REQUEST(check3(pol, ctl, NULL, NULL), "a control character");
    BAD_REQUEST(check3(pol, h1, h2, NULL), "two headers, different keys");
    /* a NUL byte inside the value */
    ck_assert_int_eq(kg_request_new(&r), KG_OK);
    {
        char v[KG_KEY_MAX + 2];
        size_t n = strlen(key);
        memcpy(v, key, n);
        v[5] = '\0';
        ck_assert_int_eq(kg_request_add_header_n(r, "X-API-Key", 9, v, n), KG_OK);
    }
    d = tu_check(pol, r);
    ck_assert_str_eq(kg_decision_decided_by(d), "credential:header");
    BAD_REQUEST(d, "a NUL byte");
    kg_request_free(r);
    free(two);
    free(ctl);
    free(h1);
    free(h2);
}
END_TEST

START_TEST(header_configured_name)
{
    char *t = tu_fmt("credential: [{module: header, options: {name: X-Whizo-Token}}]\n"
                     "keystore: [{module: file, options: {path: \"%s\"}}]\n"
                     "plans: {free: {}}\n", keyfile);
    kg_policy *p = tu_policy(ctx, t);
    char *h = tu_fmt("X-Whizo-Token: %s", key), *def = tu_fmt("X-API-Key: %s", key);
    ALLOWED(check3(p, h, NULL, NULL), "configured name");
    UNAUTH(check3(p, def, NULL, NULL), "the default name is not read");
    kg_policy_free(p);
    free(t);
    free(h);
    free(def);
}
END_TEST

/* ---- both together -------------------------------------------------------- */

START_TEST(both_different_keys_is_400)
{
    char *b = tu_bearer(key), *x = tu_fmt("X-API-Key: %s", key2);
    kg_decision *d = check3(pol, b, x, NULL);
    ck_assert_ptr_nonnull(strstr(kg_decision_message(d), "two different"));
    ck_assert_ptr_null(kg_decision_key_id(d));
    /* the body says so too */
    ck_assert_ptr_nonnull(strstr(kg_decision_body(d), "\"invalid_request\""));
    BAD_REQUEST(d, "bearer and header with different keys");
    free(b);
    free(x);
}
END_TEST

START_TEST(both_same_key_is_fine)
{
    char *b = tu_bearer(key), *x = tu_fmt("X-API-Key: %s", key);
    kg_decision *d = check3(pol, b, x, NULL);
    ck_assert_str_eq(kg_decision_key_id(d), "k_test");
    ALLOWED(d, "bearer and header with the same key");
    free(b);
    free(x);
}
END_TEST

START_TEST(one_malformed_one_good_is_400)
{
    /* A malformed credential is not silently skipped for the other one. */
    char *x = tu_fmt("X-API-Key: %s", key);
    BAD_REQUEST(check3(pol, "Authorization: Bearer a b", x, NULL), "malformed bearer + header");
    free(x);
}
END_TEST

START_TEST(none_is_401_with_challenge)
{
    kg_decision *d = check3(pol, "Accept: */*", NULL, NULL);
    const char *www = kg_decision_header_value(d, "WWW-Authenticate");
    ck_assert_ptr_nonnull(www);
    ck_assert_str_eq(www, "Bearer realm=\"whizo API\"");
    ck_assert_ptr_nonnull(kg_decision_header_value(d, "www-authenticate"));
    ck_assert_ptr_nonnull(strstr(kg_decision_body(d), "{\"error\":{\"code\":\"unauthorized\""));
    ck_assert_str_eq(kg_code_name(kg_decision_code(d)), "unauthorized");
    ck_assert_ptr_null(kg_decision_key_id(d));
    UNAUTH(d, "no credential");
    /* an unknown key is 401 with the challenge too */
    {
        char other[KG_KEY_MAX], *h;
        ck_assert_int_eq(kg_key_generate("whizo", other, sizeof(other)), KG_OK);
        h = tu_bearer(other);
        d = check3(pol, h, NULL, NULL);
        ck_assert_ptr_nonnull(kg_decision_header_value(d, "WWW-Authenticate"));
        UNAUTH(d, "unknown key");
        free(h);
    }
}
END_TEST

/* Threads reading one decision's headers at once (the getters take it
 * const): each sees the same list, rendered once (issue 23 item 14). */
struct reader { const kg_decision *d; pthread_barrier_t *go; size_t n; const char *www; };

static void *read_headers(void *arg)
{
    struct reader *r = arg;
    pthread_barrier_wait(r->go);
    r->n = kg_decision_header_count(r->d);
    r->www = kg_decision_header_value(r->d, "WWW-Authenticate");
    return NULL;
}

START_TEST(headers_read_by_threads_at_once)
{
    enum { T = 8 };
    int round;
    for (round = 0; round < 200; round++) {
        kg_decision *d = check3(pol, "Accept: */*", NULL, NULL);
        pthread_t th[T];
        struct reader rd[T];
        pthread_barrier_t go;
        int i;
        pthread_barrier_init(&go, NULL, T);
        for (i = 0; i < T; i++) {
            rd[i].d = d;
            rd[i].go = &go;
            ck_assert_int_eq(pthread_create(&th[i], NULL, read_headers, &rd[i]), 0);
        }
        for (i = 0; i < T; i++)
            pthread_join(th[i], NULL);
        pthread_barrier_destroy(&go);
        for (i = 0; i < T; i++) {
            ck_assert_uint_eq(rd[i].n, 1);
            ck_assert_ptr_eq(rd[i].www, rd[0].www);
        }
        ck_assert_str_eq(rd[0].www, "Bearer realm=\"whizo API\"");
        ck_assert_uint_eq(kg_decision_header_count(d), 1);
        kg_decision_free(d);
    }
}
END_TEST

START_TEST(allowed_has_no_body)
{
    char *b = tu_bearer(key);
    kg_decision *d = check3(pol, b, NULL, NULL);
    ck_assert_str_eq(kg_decision_body(d), "");
    ck_assert_ptr_null(kg_decision_header_value(d, "WWW-Authenticate"));
    ck_assert(strncmp(kg_decision_key_prefix(d), key, 8) == 0);
    ALLOWED(d, "allowed");
    free(b);
}
END_TEST

static Suite *credential_suite(void)
{
    Suite *s = suite_create("credential");
    TCase *tc;

    tc = tcase_create("bearer");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, bearer_scheme_case_insensitive);
    tcase_add_test(tc, bearer_malformed_is_400);
    tcase_add_test(tc, bearer_lenient_spacing);
    tcase_add_test(tc, bearer_other_schemes_ignored);
    tcase_add_test(tc, bearer_twice_is_400);
    tcase_add_test(tc, bearer_bad_checksum_is_401);
    suite_add_tcase(s, tc);

    tc = tcase_create("header");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, header_default_name);
    tcase_add_test(tc, header_malformed_is_400);
    tcase_add_test(tc, header_configured_name);
    suite_add_tcase(s, tc);

    tc = tcase_create("both");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, both_different_keys_is_400);
    tcase_add_test(tc, both_same_key_is_fine);
    tcase_add_test(tc, one_malformed_one_good_is_400);
    tcase_add_test(tc, none_is_401_with_challenge);
    tcase_add_test(tc, allowed_has_no_body);
    tcase_add_test(tc, headers_read_by_threads_at_once);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(credential_suite());
}
