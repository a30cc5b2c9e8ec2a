/*
 * check_keygated.c - the pure pieces of keygated: client address from
 * X-Forwarded-For, the original request of a forward-auth call (where
 * its method and target come from), JSON escaping for the access log,
 * --listen parsing, and the policy holder's rule that no request frees a
 * policy.
 */
#include "config.h"

#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../tools/keygated.h"

/* The trusted proxies of most tests: loopback and 10.0.0.0/8. */
static kg_cidr T[3];
static size_t NT;

static void setup_trusted(void)
{
    NT = 0;
    ck_assert_int_eq(kg_cidr_parse("127.0.0.0/8", &T[NT++]), KG_OK);
    ck_assert_int_eq(kg_cidr_parse("10.0.0.0/8", &T[NT++]), KG_OK);
    ck_assert_int_eq(kg_cidr_parse("fd00::/8", &T[NT++]), KG_OK);
}

static const char *client(const char *peer, const char *const *xff, size_t n)
{
    static char out[64];
    kgd_client_address(peer, xff, n, T, NT, out, sizeof(out));
    return out;
}

/* ---- client address --------------------------------------------------- */

START_TEST(untrusted_peer_is_the_client)
{
    const char *xff[] = { "1.2.3.4" };
    /* A client talking to us directly cannot claim another address. */
    ck_assert_str_eq(client("198.51.100.9", xff, 1), "198.51.100.9");
    ck_assert_str_eq(client("198.51.100.9", NULL, 0), "198.51.100.9");
}
END_TEST

START_TEST(trusted_peer_without_xff)
{
    ck_assert_str_eq(client("127.0.0.1", NULL, 0), "127.0.0.1");
}
END_TEST

START_TEST(rightmost_untrusted_wins)
{
    /* The client forged "6.6.6.6" at the left; nginx appended the real
     * address; 10.1.1.1 is our inner proxy. */
    const char *xff[] = { "6.6.6.6, 203.0.113.5, 10.1.1.1" };
    ck_assert_str_eq(client("127.0.0.1", xff, 1), "203.0.113.5");
}
END_TEST

START_TEST(several_headers_are_one_list)
{
    const char *xff[] = { "6.6.6.6", "203.0.113.5,10.1.1.1" };
    ck_assert_str_eq(client("10.9.9.9", xff, 2), "203.0.113.5");
    const char *xff2[] = { "203.0.113.5, 10.1.1.1", "" };
    ck_assert_str_eq(client("10.9.9.9", xff2, 2), "203.0.113.5");
}
END_TEST

START_TEST(all_trusted_gives_leftmost)
{
    const char *xff[] = { "10.0.0.2, 10.0.0.3" };
    ck_assert_str_eq(client("127.0.0.1", xff, 1), "10.0.0.2");
}
END_TEST

START_TEST(garbage_stops_at_last_trusted_hop)
{
    const char *xff[] = { "203.0.113.5, evil, 10.1.1.1" };
    ck_assert_str_eq(client("127.0.0.1", xff, 1), "10.1.1.1");
    const char *xff2[] = { "not-an-address" };
    ck_assert_str_eq(client("127.0.0.1", xff2, 1), "127.0.0.1");
}
END_TEST

START_TEST(ports_brackets_and_v6)
{
    const char *a[] = { "203.0.113.5:4711" };
    ck_assert_str_eq(client("127.0.0.1", a, 1), "203.0.113.5");
    const char *b[] = { "[2001:db8::7]:443, fd00::1" };
    ck_assert_str_eq(client("fd00::2", b, 1), "2001:db8::7");
    ck_assert_str_eq(client("::1", b, 1), "::1");
    const char *c[] = { " 2001:db8::8 ,\t" };
    ck_assert_str_eq(client("127.0.0.1", c, 1), "2001:db8::8");
    const char *d[] = { ",,203.0.113.6,," };
    ck_assert_str_eq(client("127.0.0.1", d, 1), "203.0.113.6");
}
END_TEST

START_TEST(no_trusted_proxies)
{
    const char *xff[] = { "203.0.113.5" };
    char out[64];
    kgd_client_address("127.0.0.1", xff, 1, T, 0, out, sizeof(out));
    ck_assert_str_eq(out, "127.0.0.1");
}
END_TEST

START_TEST(sockaddr_strings)
{
    struct sockaddr_in6 s6;
    struct sockaddr_in s4;
    char out[64];

    memset(&s4, 0, sizeof(s4));
    s4.sin_family = AF_INET;
    inet_pton(AF_INET, "192.0.2.1", &s4.sin_addr);
    kgd_sockaddr_str((struct sockaddr *)&s4, out, sizeof(out));
    ck_assert_str_eq(out, "192.0.2.1");
    memset(&s6, 0, sizeof(s6));
    s6.sin6_family = AF_INET6;
    inet_pton(AF_INET6, "::ffff:192.0.2.2", &s6.sin6_addr);
    kgd_sockaddr_str((struct sockaddr *)&s6, out, sizeof(out));
    ck_assert_str_eq(out, "192.0.2.2");
    inet_pton(AF_INET6, "2001:db8::1", &s6.sin6_addr);
    kgd_sockaddr_str((struct sockaddr *)&s6, out, sizeof(out));
    ck_assert_str_eq(out, "2001:db8::1");
}
END_TEST

/* ---- the original request --------------------------------------------- */
/* (The method and target are checked and normalized by the library:
 * tests/unit/check_request.c.) */

static const char *M, *P;

static void origin(kgd_origin_mode mode, struct kgd_origin_in *in)
{
    kgd_origin(mode, in, &M, &P);
}

START_TEST(origin_nginx_headers_first)
{
    struct kgd_origin_in in = { .method = "GET", .raw_uri = "/check",
        .x_original_method = "POST", .x_original_uri = "/v1/jobs?x=1",
        .x_forwarded_method = "DELETE", .x_forwarded_uri = "/v1/other" };
    origin(KGD_ORIGIN_AUTO, &in);
    ck_assert_str_eq(M, "POST");
    ck_assert_str_eq(P, "/v1/jobs?x=1");
    origin(KGD_ORIGIN_FORWARDED, &in);
    ck_assert_str_eq(M, "DELETE");
    ck_assert_str_eq(P, "/v1/other");
}
END_TEST

START_TEST(origin_forwarded_headers)
{
    struct kgd_origin_in in = { .method = "GET", .raw_uri = "/check",
        .x_forwarded_method = "PUT", .x_forwarded_uri = "/v1/a/../b" };
    origin(KGD_ORIGIN_AUTO, &in);
    ck_assert_str_eq(M, "PUT");
    ck_assert_str_eq(P, "/v1/a/../b");
    /* In nginx mode the Traefik/Caddy headers are not believed, and a
     * bare /check names no target (never "/"). */
    origin(KGD_ORIGIN_NGINX, &in);
    ck_assert_str_eq(M, "GET");
    ck_assert_ptr_null(P);
}
END_TEST

START_TEST(origin_envoy_path_prefix)
{
    struct kgd_origin_in in = { .method = "PATCH",
        .raw_uri = "/check/v1/scrape?url=https%3A%2F%2Fexample.com" };
    origin(KGD_ORIGIN_AUTO, &in);
    ck_assert_str_eq(M, "PATCH");
    ck_assert_str_eq(P, "/v1/scrape?url=https%3A%2F%2Fexample.com");
    in.raw_uri = "/check/";
    origin(KGD_ORIGIN_PATH, &in);
    ck_assert_str_eq(P, "/");
    in.raw_uri = "/check";
    origin(KGD_ORIGIN_PATH, &in);
    ck_assert_ptr_null(P);
    in.raw_uri = "/check?x=1";
    origin(KGD_ORIGIN_PATH, &in);
    ck_assert_ptr_null(P);
    /* Headers are ignored in path mode. */
    in.raw_uri = "/check/v1/x";
    in.x_original_uri = "/admin";
    origin(KGD_ORIGIN_PATH, &in);
    ck_assert_str_eq(P, "/v1/x");
}
END_TEST

START_TEST(origin_empty_headers_are_absent)
{
    struct kgd_origin_in in = { .method = "GET", .raw_uri = "/check/v1",
        .x_original_method = "", .x_original_uri = "" };
    origin(KGD_ORIGIN_AUTO, &in);
    ck_assert_str_eq(M, "GET");
    ck_assert_str_eq(P, "/v1");
}
END_TEST

/* ---- JSON escaping ----------------------------------------------------- */

START_TEST(json_escapes)
{
    char b[128];
    size_t n;

    n = kgd_json_cstr(b, 0, sizeof(b), "a\"b\\c\n\x01");
    ck_assert_str_eq(b, "\"a\\\"b\\\\c\\u000a\\u0001\"");
    ck_assert_uint_eq(n, strlen(b));
    n = kgd_json_cstr(b, 0, sizeof(b), NULL);
    ck_assert_str_eq(b, "null");
    /* Valid UTF-8 passes, invalid becomes U+FFFD. */
    kgd_json_cstr(b, 0, sizeof(b), "caf\xc3\xa9");
    ck_assert_str_eq(b, "\"caf\xc3\xa9\"");
    kgd_json_cstr(b, 0, sizeof(b), "x\xff\xc3y\xed\xa0\x80");
    ck_assert_str_eq(b, "\"x\\ufffd\\ufffdy\\ufffd\\ufffd\\ufffd\"");
    /* A NUL inside the bytes is escaped, not a terminator. */
    kgd_json_str(b, 0, sizeof(b), "a\0b", 3);
    ck_assert_str_eq(b, "\"a\\u0000b\"");
}
END_TEST

START_TEST(json_truncates_safely)
{
    char b[16];
    size_t n = kgd_json_cstr(b, 0, sizeof(b), "0123456789abcdefghijkl");
    ck_assert_uint_lt(n, sizeof(b));
    ck_assert_int_eq(b[0], '"');
    ck_assert_int_eq(b[n - 1], '"');
    ck_assert_uint_eq(strlen(b), n);
    /* As much as fits, to the byte (a run of plain bytes is copied at
     * once, and cut where the byte-by-byte copy stopped). */
    ck_assert_str_eq(b, "\"0123456789abc\"");
    /* An escape is never cut in half. */
    n = kgd_json_cstr(b, 0, sizeof(b), "abcdefghijk\n");
    ck_assert_ptr_null(strstr(b, "\\u00\""));
    ck_assert_int_eq(b[n - 1], '"');
}
END_TEST

/* ---- --listen ----------------------------------------------------------- */

START_TEST(listen_specs)
{
    struct sockaddr_storage ss;
    socklen_t len;
    char err[256];

    ck_assert_int_eq(kgd_listen_parse("127.0.0.1:8080", &ss, &len, err, sizeof(err)), 0);
    ck_assert_int_eq(ss.ss_family, AF_INET);
    ck_assert_int_eq(ntohs(((struct sockaddr_in *)&ss)->sin_port), 8080);
    ck_assert_int_eq(kgd_listen_parse("[::1]:9", &ss, &len, err, sizeof(err)), 0);
    ck_assert_int_eq(ss.ss_family, AF_INET6);
    ck_assert_int_eq(kgd_listen_parse(":8080", &ss, &len, err, sizeof(err)), 0);
    ck_assert_int_eq(ss.ss_family, AF_INET);
    ck_assert_int_eq(kgd_listen_parse("8080", &ss, &len, err, sizeof(err)), -1);
    ck_assert_ptr_nonnull(strstr(err, "ADDR:PORT"));
    ck_assert_int_eq(kgd_listen_parse("::1:8080", &ss, &len, err, sizeof(err)), -1);
    ck_assert_ptr_nonnull(strstr(err, "brackets"));
    ck_assert_int_eq(kgd_listen_parse("127.0.0.1:99999", &ss, &len, err, sizeof(err)), -1);
    ck_assert_int_eq(kgd_listen_parse("127.0.0.1:x", &ss, &len, err, sizeof(err)), -1);
}
END_TEST

/* ---- the policy holder ------------------------------------------------- */

/*
 * A reload swaps the policy; a request still using the old one (on
 * another thread, as keygated's workers are) must keep it: the collect
 * that follows a reload frees it only once no thread names it any more,
 * and the request that ends does not free it either (its key stores:
 * 0.3 s for a million keys): the main thread's next collect does.
 */
static pthread_barrier_t hold_b;
static kg_error worker_check;

static void *worker(void *arg)
{
    kgd_policy_ref *r = kgd_policy_get();     /* a request in flight */
    kg_request *req = NULL;
    kg_decision *d = NULL;
    (void)arg;
    pthread_barrier_wait(&hold_b);   /* holding it */
    pthread_barrier_wait(&hold_b);   /* the main thread reloaded, collected */
    /* Still the old policy, and still usable (ASan/valgrind: no use
     * after free). */
    kg_request_new(&req);
    kg_request_add_header(req, "Authorization", "Bearer x");
    worker_check = kg_check(kgd_policy_of(r), req, &d);
    kg_decision_free(d);
    kg_request_free(req);
    kgd_policy_put(r);               /* the request ends */
    return NULL;
}

START_TEST(a_request_never_frees_a_policy)
{
    char dir[] = "/tmp/kgd-holder-XXXXXX", path[256];
    kg_context *ctx;
    kg_diag d;
    kgd_policy_ref *r;
    pthread_t t;
    FILE *f;

    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/policy.yaml", dir);
    f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("credential: [{module: bearer}]\n"
          "keystore: [{module: file, options: {path: keys.yaml}}]\n"
          "plans: {free: {}}\n", f);
    ck_assert_int_eq(fclose(f), 0);
    ck_assert_int_eq(kg_context_new(&ctx), KG_OK);
    memset(&d, 0, sizeof(d));
    ck_assert_msg(kgd_holder_init(ctx, path, &d) == 0, "%s", d.message);

    ck_assert_int_eq(pthread_barrier_init(&hold_b, NULL, 2), 0);
    ck_assert_int_eq(pthread_create(&t, NULL, worker, NULL), 0);
    pthread_barrier_wait(&hold_b);
    ck_assert_int_eq(kgd_holder_reload(&d), 0);
    ck_assert_uint_eq(kgd_holder_pending(), 1);   /* swapped out, waiting */
    kgd_holder_collect();                 /* the main thread, after the reload */
    ck_assert_uint_eq(kgd_holder_pending(), 1);   /* the request still uses it */
    r = kgd_policy_get();                 /* a new request: the new policy */
    ck_assert_ptr_nonnull(r);
    kgd_policy_put(r);
    pthread_barrier_wait(&hold_b);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
    ck_assert_int_eq(worker_check, KG_OK);
    ck_assert_uint_eq(kgd_holder_pending(), 1);   /* not freed by the request */
    kgd_holder_collect();
    ck_assert_uint_eq(kgd_holder_pending(), 0);
    pthread_barrier_destroy(&hold_b);

    /* A reload with no request in flight: the old policy waits too, for
     * the collect that follows every reload. */
    ck_assert_int_eq(kgd_holder_reload(&d), 0);
    ck_assert_uint_eq(kgd_holder_pending(), 1);
    kgd_holder_shutdown();                /* collects all */
    ck_assert_uint_eq(kgd_holder_pending(), 0);
    kg_context_free(ctx);
    unlink(path);
    snprintf(path, sizeof(path), "%s/keys.yaml", dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/keys.yaml.lock", dir);
    unlink(path);
    ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

static Suite *keygated_suite(void)
{
    Suite *s = suite_create("keygated");
    TCase *tc;

    tc = tcase_create("client address");
    tcase_add_checked_fixture(tc, setup_trusted, NULL);
    tcase_add_test(tc, untrusted_peer_is_the_client);
    tcase_add_test(tc, trusted_peer_without_xff);
    tcase_add_test(tc, rightmost_untrusted_wins);
    tcase_add_test(tc, several_headers_are_one_list);
    tcase_add_test(tc, all_trusted_gives_leftmost);
    tcase_add_test(tc, garbage_stops_at_last_trusted_hop);
    tcase_add_test(tc, ports_brackets_and_v6);
    tcase_add_test(tc, no_trusted_proxies);
    tcase_add_test(tc, sockaddr_strings);
    suite_add_tcase(s, tc);

    tc = tcase_create("origin");
    tcase_add_test(tc, origin_nginx_headers_first);
    tcase_add_test(tc, origin_forwarded_headers);
    tcase_add_test(tc, origin_envoy_path_prefix);
    tcase_add_test(tc, origin_empty_headers_are_absent);
    suite_add_tcase(s, tc);

    tc = tcase_create("json");
    tcase_add_test(tc, json_escapes);
    tcase_add_test(tc, json_truncates_safely);
    suite_add_tcase(s, tc);

    tc = tcase_create("listen");
    tcase_add_test(tc, listen_specs);
    suite_add_tcase(s, tc);

    tc = tcase_create("holder");
    tcase_add_test(tc, a_request_never_frees_a_policy);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(keygated_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
