/*
 * check_request.c - the request object: what a front end hands kg_check()
 * and what plugins read back (header values byte for byte, NULs
 * included, found case-insensitively; wiped on reset); its method and
 * target (the path normalized, what servers read differently refused by
 * kg_check() unless the policy allows it, no target never taken for
 * "GET /"); and the key record's short strings, kept inside the record.
 */
#include "testutil.h"

#include <arpa/inet.h>
#include <netinet/in.h>

START_TEST(defaults_and_last_set_wins)
{
    kg_request *r;
    ck_assert_int_eq(kg_request_new(&r), KG_OK);
    /* Nothing set is no operation, not "GET /". */
    ck_assert_str_eq(kg_request_method(r), "");
    ck_assert_str_eq(kg_request_path(r), "");
    ck_assert_ptr_null(kg_request_target(r));
    ck_assert_int_eq(kg_request_target_kind(r), KG_TARGET_NONE);
    ck_assert_ptr_null(kg_request_client(r));
    ck_assert_int_eq(kg_request_header_count(r), 0);
    ck_assert_int_eq(kg_request_set_method(r, "POST"), KG_OK);
    ck_assert_int_eq(kg_request_set_method(r, "PUT"), KG_OK);
    ck_assert_int_eq(kg_request_set_path(r, "/v1/jobs"), KG_OK);
    ck_assert_int_eq(kg_request_set_client(r, "::1"), KG_OK);
    ck_assert_str_eq(kg_request_method(r), "PUT");
    ck_assert_str_eq(kg_request_path(r), "/v1/jobs");
    ck_assert_str_eq(kg_request_client(r), "::1");
    /* Only an address is a client (issue 23 item 14); a refused one
     * leaves the one set before. */
    ck_assert_int_eq(kg_request_set_client(r, "bogus"), KG_ERR_INVALID);
    ck_assert_int_eq(kg_request_set_client(r, "203.0.113.7/24"), KG_ERR_INVALID);
    ck_assert_int_eq(kg_request_set_client(r, "example.com"), KG_ERR_INVALID);
    ck_assert_int_eq(kg_request_set_client(r, ""), KG_ERR_INVALID);
    ck_assert_str_eq(kg_request_client(r), "::1");
    ck_assert_int_eq(kg_request_set_client(r, "203.0.113.7"), KG_OK);
    ck_assert_str_eq(kg_request_client(r), "203.0.113.7");
    ck_assert_int_eq(kg_request_set_client(r, "[2001:db8::1]"), KG_OK);
    ck_assert_int_eq(kg_request_set_path(r, NULL), KG_ERR_INVALID);
    ck_assert_int_eq(kg_request_add_header(r, NULL, "x"), KG_ERR_INVALID);
    ck_assert_int_eq(kg_request_add_header(NULL, "a", "x"), KG_ERR_INVALID);
    kg_request_free(r);
}
END_TEST

/* Many headers of growing size: the storage moves as it grows, and every
 * value must still read back exactly, NULs included. */
START_TEST(many_headers_read_back_exactly)
{
    kg_request *r;
    char name[32], *val = malloc(5000);
    size_t i, j, n;
    ck_assert_int_eq(kg_request_new(&r), KG_OK);
    ck_assert_int_eq(kg_request_set_method(r, "DELETE"), KG_OK);
    for (i = 0; i < 200; i++) {
        snprintf(name, sizeof(name), "X-H%zu", i % 50);
        n = i * 23 % 5000;
        for (j = 0; j < n; j++)
            val[j] = (char)((i + j) % 7 == 0 ? 0 : 'a' + (i + j) % 26);
        ck_assert_int_eq(kg_request_add_header_n(r, name, strlen(name), val, n), KG_OK);
    }
    ck_assert_int_eq(kg_request_header_count(r), 200);
    ck_assert_str_eq(kg_request_method(r), "DELETE");
    for (i = 0; i < 200; i++) {
        const char *nm, *v;
        size_t len;
        ck_assert_int_eq(kg_request_header_at(r, i, &nm, &v, &len), KG_OK);
        snprintf(name, sizeof(name), "X-H%zu", i % 50);
        ck_assert_str_eq(nm, name);
        ck_assert_uint_eq(len, i * 23 % 5000);
        for (j = 0; j < len; j++)
            ck_assert_int_eq(v[j], (char)((i + j) % 7 == 0 ? 0 : 'a' + (i + j) % 26));
        ck_assert_int_eq(v[len], 0);
        /* Header i is the (i / 50)-th of its name. */
        ck_assert_ptr_eq(kg_request_header_find(r, name, i / 50, NULL), v);
    }
    ck_assert_ptr_nonnull(kg_request_header_find(r, "x-h7", 3, &n));
    ck_assert_ptr_null(kg_request_header_find(r, "x-h7", 4, NULL));
    ck_assert_int_eq(kg_request_header_at(r, 200, NULL, NULL, NULL), KG_ERR_NOT_FOUND);
    free(val);
    kg_request_free(r);
}
END_TEST

/* Reset empties the request and overwrites what it held (a header value
 * is an API key); the request is then reusable. */
START_TEST(reset_wipes_and_reuses)
{
    kg_request *r;
    const char *v;
    size_t len, i;
    char *big;

    ck_assert_int_eq(kg_request_new(&r), KG_OK);
    kg_request_add_header(r, "Authorization", "Bearer whizo_secretsecretsecret");
    v = kg_request_header_find(r, "authorization", 0, &len);
    ck_assert_ptr_nonnull(v);
    ck_assert_uint_eq(len, strlen("Bearer whizo_secretsecretsecret"));
    kg_request_reset(r);
    /* A small request's storage is kept for reuse, so this still points
     * into it: every byte of the old value must be gone. */
    for (i = 0; i < len; i++)
        ck_assert_int_eq(v[i], 0);
    ck_assert_int_eq(kg_request_header_count(r), 0);
    ck_assert_str_eq(kg_request_method(r), "");
    ck_assert_ptr_null(kg_request_header_find(r, "Authorization", 0, NULL));
    /* One huge request, then a small one. */
    big = malloc(1 << 20);
    memset(big, 'k', 1 << 20);
    ck_assert_int_eq(kg_request_add_header_n(r, "X-Big", 5, big, 1 << 20), KG_OK);
    ck_assert_ptr_nonnull(kg_request_header_find(r, "x-big", 0, &len));
    ck_assert_uint_eq(len, 1 << 20);
    kg_request_reset(r);
    ck_assert_int_eq(kg_request_add_header(r, "X-API-Key", "abc"), KG_OK);
    ck_assert_str_eq(kg_request_header_find(r, "x-api-key", 0, NULL), "abc");
    free(big);
    kg_request_free(r);
}
END_TEST

/* ---- method and target ------------------------------------------------ */

/* The path of a target as route checks see it, or "(refused)". */
static const char *norm(const char *target)
{
    static char out[32768];
    kg_request *r;
    ck_assert_int_eq(kg_request_new(&r), KG_OK);
    if (kg_request_set_target(r, "GET", target) != KG_OK) {
        /* Nothing of a refused target is left for a route check. */
        ck_assert_str_eq(kg_request_path(r), "");
        ck_assert_int_eq(kg_request_target_kind(r), KG_TARGET_NONE);
        snprintf(out, sizeof(out), "(refused)");
    } else {
        ck_assert_int_eq(kg_request_target_kind(r), KG_TARGET_ROUTE);
        ck_assert_str_eq(kg_request_target(r), target);
        snprintf(out, sizeof(out), "%s", kg_request_path(r));
    }
    kg_request_free(r);
    return out;
}

/* The client address, binary from a sockaddr or parsed once from text;
 * headers lent without a copy. */
START_TEST(client_addr_and_lent_headers)
{
    kg_request *r;
    struct sockaddr_in in4;
    struct sockaddr_in6 in6;
    unsigned char a[16], want[16];
    static const char name[] = "Authorization", value[] = "Bearer x\0y";
    size_t len;

    ck_assert_int_eq(kg_request_new(&r), KG_OK);
    ck_assert_int_eq(kg_request_client_addr(r, a), KG_ERR_NOT_FOUND);
    memset(&in4, 0, sizeof(in4));
    in4.sin_family = AF_INET;
    inet_pton(AF_INET, "203.0.113.7", &in4.sin_addr);
    ck_assert_int_eq(kg_request_set_client_addr(r, (struct sockaddr *)&in4), KG_OK);
    ck_assert_str_eq(kg_request_client(r), "203.0.113.7");
    ck_assert_int_eq(kg_request_client_addr(r, a), KG_OK);
    ck_assert_int_eq(kg_addr_parse("203.0.113.7", want), KG_OK);
    ck_assert_mem_eq(a, want, 16);
    /* v4-mapped IPv6 is the IPv4 address */
    memset(&in6, 0, sizeof(in6));
    in6.sin6_family = AF_INET6;
    inet_pton(AF_INET6, "::ffff:198.51.100.1", &in6.sin6_addr);
    ck_assert_int_eq(kg_request_set_client_addr(r, (struct sockaddr *)&in6), KG_OK);
    ck_assert_str_eq(kg_request_client(r), "198.51.100.1");
    inet_pton(AF_INET6, "2001:db8::1", &in6.sin6_addr);
    ck_assert_int_eq(kg_request_set_client_addr(r, (struct sockaddr *)&in6), KG_OK);
    ck_assert_str_eq(kg_request_client(r), "2001:db8::1");
    ck_assert_int_eq(kg_request_client_addr(r, a), KG_OK);
    ck_assert_mem_eq(a, in6.sin6_addr.s6_addr, 16);
    /* the text of an address set in binary is made when read: never the
     * text of an address set before it */
    ck_assert_int_eq(kg_request_set_client(r, "192.0.2.9"), KG_OK);
    ck_assert_int_eq(kg_request_set_client_addr(r, (struct sockaddr *)&in4), KG_OK);
    ck_assert_int_eq(kg_request_set_client_addr(r, (struct sockaddr *)&in6), KG_OK);
    ck_assert_str_eq(kg_request_client(r), "2001:db8::1");
    ck_assert_str_eq(kg_request_client(r), "2001:db8::1");
    /* text that is no address: refused, the address set before kept */
    ck_assert_int_eq(kg_request_set_client(r, "nonsense"), KG_ERR_INVALID);
    ck_assert_str_eq(kg_request_client(r), "2001:db8::1");
    ck_assert_int_eq(kg_request_client_addr(r, a), KG_OK);
    /* lent: the very pointers come back, NULs and all */
    ck_assert_int_eq(kg_request_add_header_ref(r, name, value, sizeof(value) - 1), KG_OK);
    ck_assert_int_eq(kg_request_add_header(r, "X-API-Key", "k"), KG_OK);
    ck_assert_ptr_eq(kg_request_header_find(r, "authorization", 0, &len), value);
    ck_assert_uint_eq(len, sizeof(value) - 1);
    ck_assert_str_eq(kg_request_header_find(r, "x-api-key", 0, NULL), "k");
    kg_request_reset(r);
    ck_assert_uint_eq(kg_request_header_count(r), 0);
    ck_assert_ptr_null(kg_request_client(r));
    kg_request_free(r);
}
END_TEST

START_TEST(normalize_paths)
{
    ck_assert_str_eq(norm("/"), "/");
    ck_assert_str_eq(norm("/v1/scrape"), "/v1/scrape");
    ck_assert_str_eq(norm("/v1/scrape?url=x&api_key=secret"), "/v1/scrape");
    ck_assert_str_eq(norm("/v1/scrape#frag"), "/v1/scrape");
    ck_assert_str_eq(norm("/v1/scrape/"), "/v1/scrape/");
    ck_assert_str_eq(norm("//v1///scrape"), "/v1/scrape");
    ck_assert_str_eq(norm("/v1/./scrape"), "/v1/scrape");
    ck_assert_str_eq(norm("/v1/jobs/../admin"), "/v1/admin");
    ck_assert_str_eq(norm("/v1/scrape/../jobs/42"), "/v1/jobs/42");
    ck_assert_str_eq(norm("/../../etc"), "/etc");
    ck_assert_str_eq(norm("/a/b/.."), "/a/");
    ck_assert_str_eq(norm("/a/."), "/a/");
    ck_assert_str_eq(norm("/a/b/../"), "/a/");
    ck_assert_str_eq(norm("/.."), "/");
    /* Encoded dots and letters are what the upstream will decode. */
    ck_assert_str_eq(norm("/v1/jobs/%2e%2e/%61dmin"), "/v1/admin");
    ck_assert_str_eq(norm("/v1/%2E%2E"), "/");
    ck_assert_str_eq(norm("/v1/.%2e/x"), "/x");
    /* Reserved characters stay encoded, in upper case (RFC 3986 6.2.2.1). */
    ck_assert_str_eq(norm("/v1/a%3Fb"), "/v1/a%3Fb");
    ck_assert_str_eq(norm("/v1/a%3fb%2c"), "/v1/a%3Fb%2C");
    /* ';' on an ordinary segment is not ambiguous: it stays. */
    ck_assert_str_eq(norm("/v1/crawl;x/../jobs"), "/v1/jobs");
    ck_assert_str_eq(norm("/v1/admin;jsessionid=1"), "/v1/admin;jsessionid=1");
    {
        /* Longer than any buffer the old normalizer had. */
        char *big = malloc(20001);
        size_t i;
        big[0] = '/';
        for (i = 1; i < 20000; i++)
            big[i] = i % 100 == 0 ? '/' : 'a';
        big[20000] = '\0';
        ck_assert(strcmp(norm(big), big) == 0);
        free(big);
    }
}
END_TEST

START_TEST(normalize_refuses)
{
    ck_assert_str_eq(norm(""), "(refused)");
    ck_assert_str_eq(norm("v1/x"), "(refused)");
    ck_assert_str_eq(norm("*"), "(refused)");
    ck_assert_str_eq(norm("?x=/v1"), "(refused)");
    ck_assert_str_eq(norm("http://example.com/v1"), "(refused)");
    ck_assert_str_eq(norm("/v1/%2F/x"), "(refused)");
    ck_assert_str_eq(norm("/v1/%2f/x"), "(refused)");
    ck_assert_str_eq(norm("/v1/%00"), "(refused)");
    ck_assert_str_eq(norm("/v1/%1b"), "(refused)");
    ck_assert_str_eq(norm("/v1/%7F"), "(refused)");
    /* A '%' that starts no escape: "%%32e" is "%2e" after one decoding. */
    ck_assert_str_eq(norm("/v1/100%"), "(refused)");
    ck_assert_str_eq(norm("/v1/100%zz"), "(refused)");
    ck_assert_str_eq(norm("/v1/%4"), "(refused)");
    ck_assert_str_eq(norm("/v1/%%32e%%32e/x"), "(refused)");
    /* Found by fuzz_keygated: a stray '%' completed by a decoded hex
     * digit ("/v1/%7%61dmin" would be "/v1/%7admin", read as
     * "/v1/zdmin" by an upstream that decodes once more). */
    ck_assert_str_eq(norm("/v1/%7%61dmin"), "(refused)");
    ck_assert_str_eq(norm("/v1/\tx"), "(refused)");
    ck_assert_str_eq(norm("/v1/\x7f"), "(refused)");
}
END_TEST

START_TEST(method_must_be_a_token)
{
    kg_request *r;
    ck_assert_int_eq(kg_request_new(&r), KG_OK);
    ck_assert_int_eq(kg_request_set_target(r, "GE T", "/v1"), KG_ERR_INVALID);
    ck_assert_int_eq(kg_request_target_kind(r), KG_TARGET_NONE);
    ck_assert_int_eq(kg_request_set_method(r, ""), KG_ERR_INVALID);
    ck_assert_int_eq(kg_request_set_method(r, "AVERYLONGMETHODNAMETHATDOESNOTFITATALL"),
                     KG_ERR_INVALID);
    ck_assert_str_eq(kg_request_method(r), "");
    ck_assert_int_eq(kg_request_set_method(r, "M-SEARCH"), KG_OK);
    ck_assert_str_eq(kg_request_method(r), "M-SEARCH");
    ck_assert_int_eq(kg_request_target_kind(r), KG_TARGET_ROUTE);
    /* The key itself: no method, no target; a route set again ends it. */
    ck_assert_int_eq(kg_request_set_key_only(r), KG_OK);
    ck_assert_int_eq(kg_request_target_kind(r), KG_TARGET_KEY);
    ck_assert_str_eq(kg_request_path(r), "");
    ck_assert_ptr_null(kg_request_target(r));
    ck_assert_int_eq(kg_request_set_target(r, "GET", "/v1/x?y=%2F"), KG_OK);
    ck_assert_int_eq(kg_request_target_kind(r), KG_TARGET_ROUTE);
    ck_assert_str_eq(kg_request_target(r), "/v1/x?y=%2F");
    ck_assert_str_eq(kg_request_path(r), "/v1/x");
    ck_assert_int_eq(kg_request_set_key_only(NULL), KG_ERR_INVALID);
    ck_assert_int_eq(kg_request_set_target(NULL, "GET", "/"), KG_ERR_INVALID);
    kg_request_free(r);
}
END_TEST

/* ---- what kg_check() makes of them ------------------------------------ */

static char *tdir, *tkeys;
static char tkey[KG_KEY_MAX];
static kg_context *tctx;

static void target_setup(void)
{
    tu_setup(&tdir, &tkeys, "scoped", tkey, &tctx);
    /* The key: crawl:read only. */
    {
        char *rec = tu_key_record("k_test", tkey, "scoped",
                                  "    permissions: [\"crawl:read\", \"jobs:read\"]\n");
        char *text = tu_fmt("keys:\n%s", rec);
        tu_write(tkeys, text);
        free(rec);
        free(text);
    }
}

static void target_teardown(void)
{
    tu_teardown(tdir, tkeys, tctx, NULL);
}

/* The shipped policy's route rules, and `paths:` as given. */
static kg_policy *target_policy(const char *paths)
{
    return tu_policyf(tctx,
        "%s\n"
        "credential: [{module: bearer, control: required}]\n"
        "keystore: [{module: file, control: required, options: {path: %s}}]\n"
        "plans:\n"
        "  scoped:\n"
        "    account:\n"
        "      - module: scope\n"
        "        control: requisite\n"
        "        options:\n"
        "          routes:\n"
        "            'GET /v1/jobs/*': jobs:read\n"
        "            'GET /v1/crawl/**': crawl:read\n"
        "            'GET /v1/admin': admin:read\n"
        "            'GET /admin': admin:read\n",
        paths, tkeys);
}

/* The status of `method target` with the key (NULL: not set), and its
 * code's name. */
static int status_of(const kg_policy *p, const char *method, const char *target,
                     const char **code_r)
{
    static char code[64];
    kg_decision *d = tu_check_bearer(p, tkey, method, target, NULL);
    int st = kg_decision_status(d);
    snprintf(code, sizeof(code), "%s", kg_code_name(kg_decision_code(d)));
    if (code_r)
        *code_r = code;
    kg_decision_free(d);
    return st;
}

/* issue 16 item 2: what Tomcat, Jetty or Spring would take for /v1/admin
 * or /admin, reached with a key that may only read crawls and jobs. */
static const char *const bypasses[] = {
    "/v1/crawl/..;/admin",
    "/v1/crawl/..%3b/admin",
    "/v1/crawl/..%3B/admin",
    "/v1/crawl/x/.;/../..;x/admin",
    "/v1/crawl/%2e%2e;/admin",
    "/v1/crawl/;x/../../admin",
    "/v1/crawl/x/..\\..\\admin",
    "/v1/jobs/..\\admin",
    "/v1/jobs/..%5cadmin",
    "/v1/jobs/..%5Cadmin",
    "/v1/crawl//../admin",
    NULL
};

START_TEST(ambiguous_targets_are_refused)
{
    kg_policy *p = target_policy("");
    const char *code;
    size_t i;

    for (i = 0; bypasses[i] != NULL; i++) {
        int st = status_of(p, "GET", bypasses[i], &code);
        ck_assert_msg(st == 400 && strcmp(code, "invalid_request") == 0,
                      "%s: %d %s", bypasses[i], st, code);
    }
    /* What is not ambiguous still passes, or is denied by its route. */
    ck_assert_int_eq(status_of(p, "GET", "/v1/crawl/a/b", NULL), 200);
    ck_assert_int_eq(status_of(p, "GET", "/v1/crawl/a;b/c", NULL), 200);
    ck_assert_int_eq(status_of(p, "GET", "/v1/crawl/../admin", &code), 403);
    ck_assert_int_eq(status_of(p, "GET", "/v1/scrape/../jobs/42", NULL), 200);
    /* A malformed method or target: 400, whatever the caller did with
     * the error. */
    ck_assert_int_eq(status_of(p, "GE T", "/v1/jobs/1", &code), 400);
    ck_assert_str_eq(code, "invalid_request");
    ck_assert_int_eq(status_of(p, "GET", "/v1/jobs/%00", &code), 400);
    ck_assert_int_eq(status_of(p, "GET", "v1/jobs/1", &code), 400);
    kg_policy_free(p);
}
END_TEST

/* The policy opts in, for an upstream that takes ';' and '\' as plain
 * characters: then "..;" is an ordinary segment, under /v1/crawl. */
START_TEST(policy_paths_allow_them)
{
    kg_policy *p = target_policy("paths: {semicolon: allow}");
    char *ex;
    ck_assert_int_eq(status_of(p, "GET", "/v1/crawl/..;/admin", NULL), 200);
    ck_assert_int_eq(status_of(p, "GET", "/v1/jobs/..\\admin", NULL), 400);
    kg_policy_free(p);
    p = target_policy("paths: {semicolon: refuse, backslash: allow, double_slash: allow}");
    ck_assert_int_eq(status_of(p, "GET", "/v1/crawl/..;/admin", NULL), 400);
    ck_assert_int_eq(status_of(p, "GET", "/v1/jobs/..\\admin", NULL), 200);
    ck_assert_int_eq(status_of(p, "GET", "/v1/crawl/x//../y", NULL), 200);
    ex = kg_policy_explain(p);
    ck_assert_ptr_nonnull(strstr(ex, "';' on a dot segment refused, '\\' allowed, '//..' allowed"));
    free(ex);
    kg_policy_free(p);
}
END_TEST

START_TEST(policy_paths_errors)
{
    kg_diag d;
    char *yaml = tu_fmt("paths: {semicolon: maybe}\ncredential: [{module: bearer}]\n"
                        "keystore: [{module: file, options: {path: %s}}]\nplans: {a: {}}\n",
                        tkeys);
    ck_assert_int_eq(tu_policy_error(tctx, yaml, &d), KG_ERR_POLICY);
    ck_assert_uint_eq(d.line, 1);
    ck_assert_ptr_nonnull(strstr(d.message, "semicolon must be refuse or allow"));
    free(yaml);
    yaml = tu_fmt("paths: {colon: allow}\ncredential: [{module: bearer}]\n"
                  "keystore: [{module: file, options: {path: %s}}]\nplans: {a: {}}\n", tkeys);
    ck_assert_int_eq(tu_policy_error(tctx, yaml, &d), KG_ERR_POLICY);
    ck_assert_ptr_nonnull(strstr(d.message, "unknown key 'colon' in paths"));
    free(yaml);
}
END_TEST

/* issue 16 item 3: no method or path set is not "GET /" (a route "GET /"
 * would take it), and the key itself (/whoami) is no route to refuse. */
START_TEST(no_target_fails_closed_key_only_passes)
{
    kg_policy *p = tu_policyf(tctx,
        "credential: [{module: bearer, control: required}]\n"
        "keystore: [{module: file, control: required, options: {path: %s}}]\n"
        "plans:\n"
        "  scoped:\n"
        "    account:\n"
        "      - {module: scope, control: requisite, options: {routes: {'GET /': crawl:read}}}\n",
        tkeys);
    const char *code;
    kg_request *r;
    kg_decision *d;

    ck_assert_int_eq(status_of(p, "GET", "/", NULL), 200);
    ck_assert_int_eq(status_of(p, NULL, NULL, &code), 400);
    ck_assert_str_eq(code, "invalid_request");
    /* A path alone, or a method alone, names no operation either. */
    ck_assert_int_eq(status_of(p, NULL, "/", NULL), 400);
    ck_assert_int_eq(status_of(p, "GET", NULL, NULL), 400);
    /* The key itself: allowed, though no route maps it (unmapped: deny). */
    r = tu_request_bearer(tkey, "GET", "/", NULL);
    kg_request_set_key_only(r);
    d = tu_check(p, r);
    ck_assert_int_eq(kg_decision_status(d), 200);
    kg_decision_free(d);
    kg_request_free(r);
    kg_policy_free(p);
}
END_TEST

/* Short ids and plans live in the record, long ones on the heap; a
 * setter may switch between the two, be given NULL, or its own value. */
START_TEST(record_strings_short_and_long)
{
    static const char *const ids[] = {
        "k_0123456789abcdef", "a-very-long-key-id-from-an-ldap-directory-0001",
        "k_short", "", "another-long-one-that-does-not-fit-inline-at-all", "x"
    };
    kg_record *r = kg_record_new(), *c;
    char own[64];
    size_t i;

    ck_assert_ptr_nonnull(r);
    for (i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        ck_assert_int_eq(kg_record_set_id(r, ids[i]), KG_OK);
        ck_assert_int_eq(kg_record_set_plan(r, ids[(i + 1) % 6]), KG_OK);
        ck_assert_str_eq(kg_record_id(r), ids[i]);
        ck_assert_str_eq(kg_record_plan(r), ids[(i + 1) % 6]);
        /* Set from its own value (same pointer). */
        ck_assert_int_eq(kg_record_set_id(r, kg_record_id(r)), KG_OK);
        ck_assert_str_eq(kg_record_id(r), ids[i]);
        c = kg_record_dup(r);
        ck_assert_ptr_nonnull(c);
        ck_assert_str_eq(kg_record_id(c), ids[i]);
        ck_assert_str_eq(kg_record_plan(c), ids[(i + 1) % 6]);
        kg_record_unref(c);
    }
    snprintf(own, sizeof(own), "%s", kg_record_plan(r));
    ck_assert_int_eq(kg_record_set_id(r, NULL), KG_OK);
    ck_assert_ptr_null(kg_record_id(r));
    ck_assert_int_eq(kg_record_set_id(r, "k_again"), KG_OK);
    ck_assert_str_eq(kg_record_id(r), "k_again");
    ck_assert_str_eq(kg_record_plan(r), own);
    kg_record_unref(r);
}
END_TEST

static Suite *request_suite(void)
{
    Suite *s = suite_create("request");
    TCase *tc = tcase_create("request");
    tcase_add_test(tc, defaults_and_last_set_wins);
    tcase_add_test(tc, many_headers_read_back_exactly);
    tcase_add_test(tc, reset_wipes_and_reuses);
    tcase_add_test(tc, client_addr_and_lent_headers);
    suite_add_tcase(s, tc);
    tc = tcase_create("target");
    tcase_add_test(tc, normalize_paths);
    tcase_add_test(tc, normalize_refuses);
    tcase_add_test(tc, method_must_be_a_token);
    suite_add_tcase(s, tc);
    tc = tcase_create("check");
    tcase_add_checked_fixture(tc, target_setup, target_teardown);
    tcase_add_test(tc, ambiguous_targets_are_refused);
    tcase_add_test(tc, policy_paths_allow_them);
    tcase_add_test(tc, policy_paths_errors);
    tcase_add_test(tc, no_target_fails_closed_key_only_passes);
    suite_add_tcase(s, tc);
    tc = tcase_create("record");
    tcase_add_test(tc, record_strings_short_and_long);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(request_suite());
}
