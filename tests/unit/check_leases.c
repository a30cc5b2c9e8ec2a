/*
 * check_leases.c - concurrency leases of any size: a long key id (an
 * LDAP DN, an SQL id) and several concurrency limits make lease lists
 * far past the decision's inline 512 bytes; each lease must still be
 * handed out, released by kg_release(), and given back by the undo of a
 * denied check, exactly its own.  Key ids come from a key file, so that
 * a test picks their length; the clock is injected.
 */
#include "testutil.h"

static tu_clock clk;
static char *dir;
static kg_context *ctx;
static kg_policy *pol;
static char key[KG_KEY_MAX];

static const char *POLICY =
    "credential:\n"
    "  - {module: bearer, control: required}\n"
    "keystore:\n"
    "  - {module: file, options: {path: %s/keys.yaml}}\n"
    "plans:\n"
    "  conc:\n"
    "    limit:\n"
    "      - {module: concurrency, control: requisite, options: {name: conc, count: 2}}\n"
    "  three:\n"
    "    limit:\n"
    "      - {module: concurrency, control: requisite, options: {name: c1, count: 1}}\n"
    "      - {module: concurrency, control: requisite, options: {name: c2, count: 1}}\n"
    "      - {module: concurrency, control: requisite, options: {name: c3, count: 1}}\n"
    "  undo:\n"
    "    limit:\n"
    "      - {module: concurrency, control: requisite, options: {name: c1, count: 5}}\n"
    "      - {module: concurrency, control: requisite, options: {name: c2, count: 5}}\n"
    "      - {module: fixed_window, control: requisite, options: {name: hour, count: 1, window: 1h}}\n"
    "  mix:\n"
    "    account:\n"
    "      - {module: ipacl, control: requisite, options: {allow: [192.0.2.0/24]}}\n"
    "    limit:\n"
    "      - {module: fixed_window, control: requisite, options: {name: hour, count: 10, window: 1h}}\n"
    "      - {module: concurrency, control: requisite, options: {name: conc, count: 1}}\n"
    "  down:\n"
    "    account:\n"
    "      - {module: ipacl, control: requisite, options: {allow: [192.0.2.0/24]}}\n"
    "    limit:\n"
    "      - {module: batchlim, control: requisite, options: {name: a, group: g, verdict: down}}\n"
    "      - {module: batchlim, control: requisite, options: {name: b, group: g, verdict: down}}\n";

/* Key ids of these lengths, LDAP-DN-like (commas and all). */
static const size_t id_lens[] = { 40, 300, 2000 };

static char *dn_of_len(size_t len)
{
    static const char tail[] = ",ou=people,dc=example,dc=com";
    char *id = malloc(len + 1);
    size_t pad = len - 4 - (sizeof(tail) - 1);
    ck_assert(len >= 4 + sizeof(tail));
    memcpy(id, "uid=", 4);
    memset(id + 4, 'a', pad);
    memcpy(id + 4 + pad, tail, sizeof(tail));
    ck_assert_uint_eq(strlen(id), len);
    return id;
}

/* A key file of one key with this id (YAML text as given) on `plan`;
 * the policy loaded over it. */
static void key_with_id(const char *yaml_id, const char *plan)
{
    char *path = tu_path(dir, "keys.yaml"), *text;
    unsigned char h[KG_HASH_LEN];
    char hex[2 * KG_HASH_LEN + 1];

    ck_assert_int_eq(kg_key_generate("whizo", key, KG_KEY_MAX), KG_OK);
    kg_key_hash(key, strlen(key), h);
    kg_hash_to_hex(h, hex);
    text = tu_fmt("keys:\n  - id: %s\n    name: t\n    prefix: \"%.8s\"\n"
                  "    hash: %s\n    plan: %s\n    status: active\n",
                  yaml_id, key, hex, plan);
    tu_write(path, text);
    free(text);
    free(path);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    pol = tu_policyf(ctx, POLICY, dir);
#pragma GCC diagnostic pop
}

static void setup(void)
{
    dir = tu_tmpdir();
    ck_assert_int_eq(kg_context_new(&ctx), KG_OK);
    tu_clock_install(ctx, &clk);
    tu_clock_set(&clk, 1800000000);
    pol = NULL;
}

static void teardown(void)
{
    tu_teardown(dir, NULL, ctx, pol);
}

/* A check that must be admitted; its lease list, malloc()ed. */
static char *admitted(void)
{
    kg_decision *d = tu_check_key(pol, key);
    char *lease;
    ck_assert_msg(kg_decision_allowed(d), "%d %s", kg_decision_status(d),
                  kg_decision_message(d));
    ck_assert_ptr_nonnull(kg_decision_lease(d));
    lease = strdup(kg_decision_lease(d));
    kg_decision_free(d);
    return lease;
}

static void denied(int status)
{
    kg_decision *d = tu_check_key(pol, key);
    ck_assert_msg(kg_decision_status(d) == status, "%d, not %d: %s",
                  kg_decision_status(d), status, kg_decision_message(d));
    ck_assert_ptr_null(kg_decision_lease(d));
    kg_decision_free(d);
}

/* What kg_check_peek() says remains of limit `name`. */
static int64_t peek_remaining(const char *name)
{
    kg_request *r = tu_request_bearer(key, "GET", "/", "192.0.2.10");
    kg_decision *d = NULL;
    size_t i;
    int64_t rem = -1;
    ck_assert_int_eq(kg_check_peek(pol, r, &d), KG_OK);
    for (i = 0; i < kg_decision_limit_count(d); i++) {
        const char *nm;
        int64_t v;
        ck_assert_int_eq(kg_decision_limit(d, i, &nm, NULL, &v, NULL, NULL), KG_OK);
        if (strcmp(nm, name) == 0)
            rem = v;
    }
    kg_decision_free(d);
    kg_request_free(r);
    return rem;
}

/* A key id of 40, 300, 2000 bytes: a lease of its full length (the
 * format unchanged), held until kg_release() releases it, once. */
START_TEST(long_key_id_lease_releases)
{
    char *id = dn_of_len(id_lens[_i]), *a, *b;

    key_with_id(id, "conc");
    a = admitted();
    ck_assert_uint_eq(strlen(a), KG_LEASE_SIZE(id_lens[_i], 4) - 1);
    ck_assert_ptr_null(strchr(a, ','));
    b = admitted();
    ck_assert_str_ne(a, b);
    denied(429);                               /* two in flight */
    ck_assert_int_eq(kg_release(ctx, a), KG_OK);
    ck_assert_int_eq(kg_release(ctx, a), KG_ERR_NOT_FOUND);
    free(a);
    a = admitted();
    ck_assert_int_eq(kg_release(ctx, a), KG_OK);
    ck_assert_int_eq(kg_release(ctx, b), KG_OK);
    ck_assert_int_eq(peek_remaining("conc"), 2);
    free(a);
    free(b);
    free(id);
}
END_TEST

/* Three concurrency limits: the decision carries three leases (past the
 * inline list with the long ids), released together or one by one. */
START_TEST(three_concurrency_limits)
{
    char *id = dn_of_len(id_lens[_i]), *all, *one, *save = NULL;
    int n = 0;

    key_with_id(id, "three");
    all = admitted();
    denied(429);
    ck_assert_int_eq(kg_release(ctx, all), KG_OK);     /* the whole list */
    ck_assert_int_eq(peek_remaining("c1") + peek_remaining("c2") +
                     peek_remaining("c3"), 3);
    ck_assert_int_eq(kg_release(ctx, all), KG_ERR_NOT_FOUND);
    free(all);
    all = admitted();
    for (one = strtok_r(all, ",", &save); one; one = strtok_r(NULL, ",", &save)) {
        ck_assert_uint_eq(strlen(one), KG_LEASE_SIZE(id_lens[_i], 2) - 1);
        ck_assert_int_eq(kg_release(ctx, one), KG_OK);
        n++;
    }
    ck_assert_int_eq(n, 3);
    free(admitted());
    free(all);
    free(id);
}
END_TEST

/* A check that the fixed window denies after both concurrency limits
 * took a lease gives back exactly those two: the earlier check's leases
 * stay held (and release once). */
START_TEST(denied_check_undoes_its_own_leases)
{
    char *id = dn_of_len(id_lens[_i]), *first, *one, *save = NULL;

    key_with_id(id, "undo");
    first = admitted();
    denied(429);
    denied(429);
    ck_assert_int_eq(peek_remaining("c1"), 4);
    ck_assert_int_eq(peek_remaining("c2"), 4);
    for (one = strtok_r(first, ",", &save); one; one = strtok_r(NULL, ",", &save))
        ck_assert_int_eq(kg_release(ctx, one), KG_OK);
    ck_assert_int_eq(peek_remaining("c1"), 5);
    ck_assert_int_eq(peek_remaining("c2"), 5);
    free(first);
    free(id);
}
END_TEST

/* kg_decision_release(): a decision's leases released where it took
 * them, without their text: the first two of three by their handles
 * (the first even with its text spoilt), the third by its text; once
 * (the text then names none); the list unchanged; a lease that expired while the request ran is not found,
 * and the key's newer lease stays held. */
START_TEST(decision_releases_its_leases)
{
    char *id = dn_of_len(id_lens[_i]), *copy, *p, was;
    kg_decision *d, *d2;

    key_with_id(id, "three");
    d = tu_check_key(pol, key);
    ck_assert(kg_decision_allowed(d));
    copy = strdup(kg_decision_lease(d));
    denied(429);
    /* Where the handles are used, the text is not read: a lease whose
     * key part says another key is released all the same. */
    p = (char *)kg_decision_lease(d) + 17;
    was = *p;
    *p = was == 'a' ? 'b' : 'a';
    ck_assert_int_eq(kg_decision_release(ctx, d), KG_OK);
    ck_assert_int_eq(peek_remaining("c1"), 1);   /* by its handle */
    ck_assert_int_eq(peek_remaining("c2"), 1);
    ck_assert_int_eq(peek_remaining("c3"), 1);   /* by its text */
    *p = was;
    ck_assert_str_eq(kg_decision_lease(d), copy);
    ck_assert_int_eq(kg_decision_release(ctx, d), KG_ERR_NOT_FOUND);
    ck_assert_int_eq(kg_release(ctx, copy), KG_ERR_NOT_FOUND);
    ck_assert_int_eq(kg_decision_release(NULL, d), KG_ERR_INVALID);
    kg_decision_free(d);
    free(copy);

    /* Expired while held (the plan's lease_ttl, 5 minutes), reaped by a
     * newer check of the key: not found, and the newer lease held. */
    d = tu_check_key(pol, key);
    ck_assert(kg_decision_allowed(d));
    tu_clock_advance(&clk, 301);
    d2 = tu_check_key(pol, key);
    ck_assert(kg_decision_allowed(d2));
    ck_assert_int_eq(kg_decision_release(ctx, d), KG_ERR_NOT_FOUND);
    ck_assert_int_eq(peek_remaining("c1"), 0);
    ck_assert_int_eq(kg_decision_release(ctx, d2), KG_OK);
    ck_assert_int_eq(peek_remaining("c1") + peek_remaining("c2") +
                     peek_remaining("c3"), 3);
    kg_decision_free(d);
    kg_decision_free(d2);
    free(id);
}
END_TEST

/* A check the fixed window denies after two concurrency limits took
 * their leases gives them back (undo) and forgets their handles: the
 * earlier decision releases its own two, and the limits are whole. */
START_TEST(decision_release_after_undo)
{
    kg_decision *d;

    key_with_id("k_undo_handles", "undo");
    d = tu_check_key(pol, key);
    ck_assert(kg_decision_allowed(d));
    denied(429);
    ck_assert_int_eq(peek_remaining("c1"), 4);
    ck_assert_int_eq(kg_decision_release(ctx, d), KG_OK);
    ck_assert_int_eq(peek_remaining("c1"), 5);
    ck_assert_int_eq(peek_remaining("c2"), 5);
    kg_decision_free(d);
}
END_TEST

/* A key id holding 0x1f (the separator of key id and limit name in a
 * lease) still names its own lease: the limit is after the last one. */
START_TEST(key_id_with_separator)
{
    char *a;
    key_with_id("\"k\\x1fconc\"", "conc");
    a = admitted();
    ck_assert_int_eq(kg_release(ctx, a), KG_OK);
    ck_assert_int_eq(kg_release(ctx, a), KG_ERR_NOT_FOUND);
    ck_assert_int_eq(peek_remaining("conc"), 2);
    free(a);
}
END_TEST

/* The Retry-After of a check denied now (a 429). */
static long retry_after(void)
{
    kg_decision *d = tu_check_key(pol, key);
    const char *ra = kg_decision_header_value(d, "Retry-After");
    long v;
    ck_assert_int_eq(kg_decision_status(d), 429);
    ck_assert_ptr_nonnull(ra);
    v = strtol(ra, NULL, 10);
    kg_decision_free(d);
    return v;
}

/* A full concurrency limit's Retry-After: 1 s while its leases are
 * fresh; then as long as the youngest lease has been held; never past
 * the earliest lease's expiry (the plan's lease_ttl, 5 minutes), when
 * the slot is free again.  (It said 1 for leases that had been lost 4
 * minutes before.) */
START_TEST(concurrency_retry_after)
{
    char *a, *b;

    key_with_id("k_retry", "conc");
    a = admitted();                             /* at t */
    tu_clock_advance_us(&clk, 300000);
    b = admitted();                             /* at t + 0.3 s */
    ck_assert_int_eq(retry_after(), 1);
    tu_clock_advance(&clk, 40);
    ck_assert_int_eq(retry_after(), 40);        /* b held for 40.0 s */
    tu_clock_advance_us(&clk, 500000);
    ck_assert_int_eq(retry_after(), 41);        /* 40.5 s, rounded up */
    ck_assert_int_eq(kg_release(ctx, b), KG_OK);
    free(b);
    tu_clock_advance(&clk, 100);                /* t + 140.8 s */
    b = admitted();
    tu_clock_advance(&clk, 20);
    ck_assert_int_eq(retry_after(), 20);        /* the youngest, b */
    tu_clock_advance(&clk, 130);                /* t + 290.8 s */
    ck_assert_int_eq(retry_after(), 10);        /* a expires at t + 300 */
    tu_clock_advance_us(&clk, 8900000);
    ck_assert_int_eq(retry_after(), 1);         /* 0.3 s left */
    tu_clock_advance_us(&clk, 300000);
    free(admitted());                           /* a expired */
    ck_assert_int_eq(kg_release(ctx, a), KG_ERR_NOT_FOUND);
    free(a);
    free(b);
}
END_TEST

/* kg_request_set_no_lease(): admitted holding no lease, even while the
 * limit is full, and told what the others hold; the leases of other
 * checks unchanged; kg_request_reset() asks for leases again. */
START_TEST(no_lease_request)
{
    kg_request *r;
    kg_decision *d = NULL;
    char *a, *b;
    int i;

    key_with_id("k_nolease", "conc");
    r = tu_request_bearer(key, "GET", "/", "192.0.2.10");
    ck_assert_int_eq(kg_request_set_no_lease(r, 1), KG_OK);
    for (i = 0; i < 5; i++) {
        ck_assert_int_eq(kg_check(pol, r, &d), KG_OK);
        ck_assert_msg(kg_decision_allowed(d), "%d %s", kg_decision_status(d),
                      kg_decision_message(d));
        ck_assert_ptr_null(kg_decision_lease(d));
        kg_decision_free(d);
        d = NULL;
    }
    ck_assert_int_eq(peek_remaining("conc"), 2);
    a = admitted();
    b = admitted();
    denied(429);
    /* The limit is full: a no-lease request still passes, and hears 0. */
    ck_assert_int_eq(kg_check(pol, r, &d), KG_OK);
    ck_assert(kg_decision_allowed(d));
    ck_assert_ptr_null(kg_decision_lease(d));
    ck_assert_str_eq(kg_decision_header_value(d, "RateLimit"), "\"conc\";r=0");
    kg_decision_free(d);
    d = NULL;
    ck_assert_int_eq(kg_release(ctx, a), KG_OK);
    ck_assert_int_eq(peek_remaining("conc"), 1);
    /* 0 asks for leases again. */
    ck_assert_int_eq(kg_request_set_no_lease(r, 0), KG_OK);
    ck_assert_int_eq(kg_check(pol, r, &d), KG_OK);
    ck_assert_ptr_nonnull(kg_decision_lease(d));
    ck_assert_int_eq(kg_release(ctx, kg_decision_lease(d)), KG_OK);
    kg_decision_free(d);
    ck_assert_int_eq(kg_request_set_no_lease(NULL, 1), KG_ERR_INVALID);
    ck_assert_int_eq(kg_release(ctx, b), KG_OK);
    free(a);
    free(b);
    kg_request_free(r);
}
END_TEST

/* The headers of a denial say what remains after it: a 429 of the
 * in-flight limit took nothing of the hour (given back), so it says what
 * kg_check_peek() (/whoami) says; a 403 of an identified key carries the
 * rate-limit headers too, and takes nothing (issue 23 item 3). */
START_TEST(denial_headers_say_what_remains)
{
    kg_decision *d;
    char *a;

    key_with_id("k_mix", "mix");
    a = admitted();                                  /* hour: 9 left */
    d = tu_check_key(pol, key);
    ck_assert_int_eq(kg_decision_status(d), 429);
    ck_assert_str_eq(kg_decision_header_value(d, "RateLimit"),
                     "\"hour\";r=9;t=3600, \"conc\";r=0");
    ck_assert_str_eq(kg_decision_header_value(d, "X-RateLimit-Remaining"), "0");
    kg_decision_free(d);
    ck_assert_int_eq(peek_remaining("hour"), 9);
    ck_assert_int_eq(kg_release(ctx, a), KG_OK);
    free(a);

    d = tu_check_bearer(pol, key, "GET", "/", "198.51.100.1");
    ck_assert_int_eq(kg_decision_status(d), 403);
    ck_assert_ptr_nonnull(kg_decision_header_value(d, "RateLimit"));
    ck_assert_str_eq(kg_decision_header_value(d, "RateLimit"),
                     "\"hour\";r=9;t=3600, \"conc\";r=1");
    ck_assert_str_eq(kg_decision_header_value(d, "X-RateLimit-Remaining"), "9");
    ck_assert_ptr_null(kg_decision_header_value(d, "Retry-After"));
    ck_assert_ptr_null(kg_decision_lease(d));
    kg_decision_free(d);
    ck_assert_int_eq(peek_remaining("hour"), 9);
    ck_assert_int_eq(peek_remaining("conc"), 1);
}
END_TEST

/* The 403's peek at the limits cannot turn it into a 503 when a limiter
 * is down: no report, still the 403. */
START_TEST(denial_peek_with_limiter_down)
{
    kg_decision *d;

    key_with_id("k_down", "down");
    d = tu_check_bearer(pol, key, "GET", "/", "198.51.100.1");
    ck_assert_int_eq(kg_decision_status(d), 403);
    ck_assert_str_eq(kg_code_name(kg_decision_code(d)), "ip_not_allowed");
    ck_assert_str_eq(kg_decision_decided_by(d), "account:ipacl");
    kg_decision_free(d);
    d = tu_check_key(pol, key);                 /* allowed in: the limiter is down */
    ck_assert_int_eq(kg_decision_status(d), 503);
    kg_decision_free(d);
}
END_TEST

static Suite *leases_suite(void)
{
    Suite *s = suite_create("leases");
    TCase *tc = tcase_create("leases");
    int n = (int)(sizeof(id_lens) / sizeof(id_lens[0]));
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_loop_test(tc, long_key_id_lease_releases, 0, n);
    tcase_add_loop_test(tc, three_concurrency_limits, 0, n);
    tcase_add_loop_test(tc, denied_check_undoes_its_own_leases, 0, n);
    tcase_add_loop_test(tc, decision_releases_its_leases, 0, 3);
    tcase_add_test(tc, decision_release_after_undo);
    tcase_add_test(tc, key_id_with_separator);
    tcase_add_test(tc, concurrency_retry_after);
    tcase_add_test(tc, no_lease_request);
    tcase_add_test(tc, denial_headers_say_what_remains);
    tcase_add_test(tc, denial_peek_with_limiter_down);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(leases_suite());
}
