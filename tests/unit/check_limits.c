/*
 * check_limits.c - the limiter plugins and the ipacl/scope account
 * plugins, through the public API, with an injected clock (no sleeping).
 */
#include "testutil.h"

#include <pthread.h>

static tu_clock clk;
static char *dir;
static kg_context *ctx;
static kg_policy *pol;

static const char *POLICY =
    "credential:\n"
    "  - {module: bearer, control: required}\n"
    "keystore:\n"
    "  - module: file\n"
    "    options: {path: %s/keys.yaml}\n"
    "plans:\n"
    "  fixed:\n"
    "    limit:\n"
    "      - {module: fixed_window, control: requisite, options: {name: hour, count: 10, window: 1h}}\n"
    "      - {module: fixed_window, control: requisite, options: {name: day, count: 15, window: 1d}}\n"
    "  sliding:\n"
    "    limit:\n"
    "      - {module: sliding_window, control: requisite, options: {name: min, count: 10, window: 60s}}\n"
    "  bucket:\n"
    "    limit:\n"
    "      - {module: token_bucket, control: requisite, options: {name: burst, count: 1, window: 1s, burst: 5}}\n"
    "  conc:\n"
    "    lease_ttl: 30s\n"
    "    limit:\n"
    "      - {module: concurrency, control: requisite, options: {name: concurrency, count: 2}}\n"
    "  exact:\n"
    "    limit:\n"
    "      - {module: %s, control: requisite, options: {name: n, count: 1000, window: 1h}}\n"
    "  many:\n"
    "    lease_ttl: 60s\n"
    "    limit:\n"
    "      - {module: fixed_window, control: requisite, options: {name: l1, count: 9, window: 1h}}\n"
    "      - {module: sliding_window, control: requisite, options: {name: l2, count: 8, window: 1h}}\n"
    "      - {module: token_bucket, control: requisite, options: {name: l3, count: 7, window: 1h}}\n"
    "      - {module: fixed_window, control: requisite, options: {name: l4, count: 6, window: 1d}}\n"
    "      - {module: fixed_window, control: requisite, options: {name: l5-with-a-long-name_0123456789abcdefghijklmn, count: 5, window: 1h}}\n"
    "      - {module: concurrency, control: requisite, options: {name: l6, count: 3}}\n"
    "  guarded:\n"
    "    account:\n"
    "      - {module: ipacl, control: requisite, options: {allow: [10.0.0.0/8, '2001:db8::/32']}}\n"
    "      - module: scope\n"
    "        control: requisite\n"
    "        options:\n"
    "          unmapped: deny\n"
    "          routes:\n"
    "            'GET /v1/jobs/*': jobs:read\n"
    "            'POST /v1/jobs': jobs:write\n"
    "            '* /v1/crawl/**': crawl:read\n";

#pragma GCC diagnostic ignored "-Wformat-nonliteral"
static void load(const char *exact_module)
{
    pol = tu_policyf(ctx, POLICY, dir, exact_module);
}

static void set_time(int64_t s) { tu_clock_set(&clk, s); }

static void setup(void)
{
    dir = tu_tmpdir();
    ck_assert_int_eq(kg_context_new(&ctx), KG_OK);
    tu_clock_install(ctx, &clk);
    set_time(1800000000);   /* 2027-01-15T08:00:00Z: on the hour */
    load("fixed_window");
}

static void teardown(void)
{
    tu_teardown(dir, NULL, ctx, pol);
}

/* Create a key on `plan`; extra: permission/cidr/limit strings. */
static void new_key(const char *plan, char key[KG_KEY_MAX], const char *perm,
                    const char *cidr, const char *limit, int64_t count, int64_t window,
                    int64_t burst)
{
    kg_record *r = kg_record_new();
    kg_record_set_name(r, "t");
    kg_record_set_plan(r, plan);
    if (perm) kg_record_add_permission(r, perm);
    if (cidr) kg_record_add_cidr(r, cidr);
    if (limit) kg_record_add_limit(r, limit, count, window, burst);
    tu_keys_create(pol, r, key);
    kg_record_unref(r);
}

static kg_decision *check_req(const char *key, const char *method, const char *path,
                              const char *ip)
{
    return tu_check_bearer(pol, key, method, path, ip);
}

static kg_decision *check(const char *key)
{
    return check_req(key, "GET", "/", "192.0.2.1");
}

static const char *hdr(const kg_decision *d, const char *name)
{
    const char *v = kg_decision_header_value(d, name);
    return v ? v : "(none)";
}

/* ---- fixed window ------------------------------------------------------ */

START_TEST(fixed_counts_down_and_denies)
{
    char key[KG_KEY_MAX], want[64];
    int i;
    new_key("fixed", key, NULL, NULL, NULL, 0, 0, 0);
    for (i = 1; i <= 10; i++) {
        kg_decision *d = check(key);
        ck_assert_msg(kg_decision_allowed(d), "request %d denied", i);
        /* Allowed: the module whose ok made the last stage pass. */
        ck_assert_str_eq(kg_decision_decided_by(d), "limit:fixed_window");
        /* hour is nearest to exhaustion: 10 - i left of 10, day 15 - i of 15 */
        ck_assert_str_eq(hdr(d, "X-RateLimit-Limit"), "10");
        snprintf(want, sizeof(want), "%d", 10 - i);
        ck_assert_str_eq(hdr(d, "X-RateLimit-Remaining"), want);
        snprintf(want, sizeof(want), "%lld", 1800000000LL + 3600);
        ck_assert_str_eq(hdr(d, "X-RateLimit-Reset"), want);
        ck_assert_str_eq(hdr(d, "RateLimit-Policy"), "\"hour\";q=10;w=3600, \"day\";q=15;w=86400");
        snprintf(want, sizeof(want), "\"hour\";r=%d;t=3600, \"day\";r=%d;t=%d", 10 - i, 15 - i,
                 86400 - (int)(1800000000LL % 86400));
        ck_assert_str_eq(hdr(d, "RateLimit"), want);
        ck_assert_ptr_null(kg_decision_header_value(d, "Retry-After"));
        kg_decision_free(d);
    }
    set_time(1800000000 + 1234);
    {
        kg_decision *d = check(key);
        ck_assert(!kg_decision_allowed(d));
        ck_assert_int_eq(kg_decision_status(d), 429);
        ck_assert_int_eq(kg_decision_code(d), KG_CODE_RATE_LIMITED);
        ck_assert_str_eq(hdr(d, "Retry-After"), "2366");
        ck_assert_str_eq(hdr(d, "X-RateLimit-Remaining"), "0");
        ck_assert_str_eq(kg_decision_decided_by(d), "limit:fixed_window");
        ck_assert_ptr_nonnull(strstr(kg_decision_body(d), "\"code\":\"rate_limited\""));
        kg_decision_free(d);
    }
}
END_TEST

START_TEST(fixed_window_edge_resets)
{
    char key[KG_KEY_MAX];
    int i;
    kg_decision *d;
    new_key("fixed", key, NULL, NULL, NULL, 0, 0, 0);
    set_time(1800000000 + 3599);          /* last second of the hour */
    for (i = 0; i < 10; i++) {
        d = check(key);
        ck_assert(kg_decision_allowed(d));
        kg_decision_free(d);
    }
    d = check(key);
    ck_assert(!kg_decision_allowed(d));
    ck_assert_str_eq(hdr(d, "Retry-After"), "1");
    kg_decision_free(d);
    set_time(1800000000 + 3600);          /* the next hour: hour resets, day does not */
    for (i = 0; i < 5; i++) {
        d = check(key);
        ck_assert_msg(kg_decision_allowed(d), "request %d of the new hour denied", i);
        kg_decision_free(d);
    }
    d = check(key);                       /* day: 15 used */
    ck_assert(!kg_decision_allowed(d));
    ck_assert_ptr_nonnull(strstr(hdr(d, "RateLimit-Policy"), "\"day\""));
    ck_assert_str_eq(hdr(d, "X-RateLimit-Limit"), "15");
    kg_decision_free(d);
}
END_TEST

START_TEST(denied_request_consumes_nothing)
{
    /* The day limit denies after hour took one: hour must be given back. */
    char key[KG_KEY_MAX];
    int i;
    kg_decision *d;
    new_key("fixed", key, NULL, NULL, "day", 3, 86400, 0);
    for (i = 0; i < 3; i++) {
        d = check(key);
        ck_assert(kg_decision_allowed(d));
        kg_decision_free(d);
    }
    for (i = 0; i < 5; i++) {
        d = check(key);
        ck_assert(!kg_decision_allowed(d));
        kg_decision_free(d);
    }
    /* Peek: the hour counter still shows 3 used, not 8. */
    {
        kg_request *req = tu_request_bearer(key, NULL, NULL, NULL);
        int64_t lim, rem;
        const char *name;
        ck_assert_int_eq(kg_check_peek(pol, req, &d), KG_OK);
        ck_assert_int_eq(kg_decision_limit(d, 0, &name, &lim, &rem, NULL, NULL), KG_OK);
        ck_assert_str_eq(name, "hour");
        ck_assert_int_eq(lim, 10);
        ck_assert_int_eq(rem, 7);
        kg_decision_free(d);
        kg_request_free(req);
    }
}
END_TEST

START_TEST(override_replaces_plan_limit)
{
    char key[KG_KEY_MAX];
    int i;
    kg_decision *d;
    new_key("fixed", key, NULL, NULL, "hour", 2, 60, 0);
    for (i = 0; i < 2; i++) {
        d = check(key);
        ck_assert(kg_decision_allowed(d));
        ck_assert_str_eq(hdr(d, "X-RateLimit-Limit"), "2");
        kg_decision_free(d);
    }
    d = check(key);
    ck_assert(!kg_decision_allowed(d));
    ck_assert_str_eq(hdr(d, "RateLimit-Policy"), "\"hour\";q=2;w=60");
    ck_assert_str_eq(hdr(d, "Retry-After"), "60");
    kg_decision_free(d);
}
END_TEST

/* RateLimit-Policy is the same on every check of a plan (and kept by
 * the thread that rendered it): each check still gets its own, by plan
 * and by per-key override, on one thread, in any order. */
START_TEST(policy_header_follows_each_check)
{
    static const char *const A = "\"hour\";q=10;w=3600, \"day\";q=15;w=86400";
    static const char *const B = "\"hour\";q=2;w=60, \"day\";q=15;w=86400";
    static const char *const C = "\"hour\";q=10;w=60, \"day\";q=15;w=86400";
    char a[KG_KEY_MAX], b[KG_KEY_MAX], c[KG_KEY_MAX], m[KG_KEY_MAX];
    const char *keys[] = { a, b, a, c, a, m, c, b };
    const char *want[8];
    kg_decision *d;
    size_t i;

    new_key("fixed", a, NULL, NULL, NULL, 0, 0, 0);
    new_key("fixed", b, NULL, NULL, "hour", 2, 60, 0);
    new_key("fixed", c, NULL, NULL, "hour", 10, 60, 0);     /* A's but the window */
    new_key("many", m, NULL, NULL, NULL, 0, 0, 0);          /* 6 limits */
    for (i = 0; i < 8; i++)
        want[i] = keys[i] == a ? A : keys[i] == b ? B : keys[i] == c ? C : NULL;
    for (i = 0; i < 8; i++) {
        d = check(keys[i]);
        ck_assert_msg(kg_decision_allowed(d), "check %zu: %s", i, kg_decision_message(d));
        if (want[i] != NULL)
            ck_assert_str_eq(hdr(d, "RateLimit-Policy"), want[i]);
        else
            ck_assert_str_eq(hdr(d, "RateLimit-Policy"),
                             "\"l1\";q=9;w=3600, \"l2\";q=8;w=3600, \"l3\";q=7;w=3600, "
                             "\"l4\";q=6;w=86400, "
                             "\"l5-with-a-long-name_0123456789abcdefghijklmn\";q=5;w=3600, "
                             "\"l6\";q=3");
        kg_decision_free(d);
    }
}
END_TEST

START_TEST(reload_keeps_counters)
{
    char key[KG_KEY_MAX];
    int i;
    kg_decision *d;
    new_key("fixed", key, NULL, NULL, NULL, 0, 0, 0);
    for (i = 0; i < 6; i++) {
        d = check(key);
        kg_decision_free(d);
    }
    kg_policy_free(pol);
    load("fixed_window");
    d = check(key);
    ck_assert(kg_decision_allowed(d));
    ck_assert_str_eq(hdr(d, "X-RateLimit-Remaining"), "3");
    kg_decision_free(d);
}
END_TEST

/* ---- sliding window ------------------------------------------------------ */

START_TEST(sliding_no_double_burst_at_edge)
{
    char key[KG_KEY_MAX];
    int i, allowed = 0;
    kg_decision *d;
    new_key("sliding", key, NULL, NULL, NULL, 0, 0, 0);
    set_time(1800000000 + 50);            /* late in a 60 s window */
    for (i = 0; i < 10; i++) {
        d = check(key);
        ck_assert(kg_decision_allowed(d));
        kg_decision_free(d);
    }
    d = check(key);
    ck_assert(!kg_decision_allowed(d));
    kg_decision_free(d);
    /* 10 s later a new fixed window begins, but the sliding estimate still
     * counts 10 * 50/60 of the previous one: only 1 more fits. */
    set_time(1800000000 + 60);
    for (i = 0; i < 10; i++) {
        d = check(key);
        allowed += kg_decision_allowed(d);
        kg_decision_free(d);
    }
    ck_assert_int_eq(allowed, 0);        /* estimate = 10*60/60 = 10: full */
    set_time(1800000000 + 90);            /* half the previous window left: 5 */
    allowed = 0;
    for (i = 0; i < 10; i++) {
        d = check(key);
        allowed += kg_decision_allowed(d);
        if (!kg_decision_allowed(d))
            ck_assert_int_ge(atoi(hdr(d, "Retry-After")), 1);
        kg_decision_free(d);
    }
    ck_assert_int_eq(allowed, 5);
    set_time(1800000000 + 180);           /* two windows later: all 10 again */
    allowed = 0;
    for (i = 0; i < 12; i++) {
        d = check(key);
        allowed += kg_decision_allowed(d);
        kg_decision_free(d);
    }
    ck_assert_int_eq(allowed, 10);
}
END_TEST

/* ---- token bucket -------------------------------------------------------- */

START_TEST(bucket_burst_then_refill)
{
    char key[KG_KEY_MAX];
    int i;
    kg_decision *d;
    new_key("bucket", key, NULL, NULL, NULL, 0, 0, 0);
    for (i = 0; i < 5; i++) {            /* the burst */
        d = check(key);
        ck_assert(kg_decision_allowed(d));
        ck_assert_int_eq(atoi(hdr(d, "X-RateLimit-Remaining")), 4 - i);
        ck_assert_str_eq(hdr(d, "X-RateLimit-Limit"), "5");
        kg_decision_free(d);
    }
    d = check(key);
    ck_assert(!kg_decision_allowed(d));
    ck_assert_str_eq(hdr(d, "Retry-After"), "1");
    kg_decision_free(d);
    tu_clock_advance_us(&clk, 2500000);  /* 2.5 s: 2 tokens back */
    for (i = 0; i < 2; i++) {
        d = check(key);
        ck_assert(kg_decision_allowed(d));
        kg_decision_free(d);
    }
    d = check(key);
    ck_assert(!kg_decision_allowed(d));
    kg_decision_free(d);
    tu_clock_advance(&clk, 100);          /* long idle: capped at the burst */
    for (i = 0; i < 7; i++) {
        d = check(key);
        ck_assert_int_eq(kg_decision_allowed(d), i < 5);
        kg_decision_free(d);
    }
}
END_TEST

START_TEST(bucket_override_burst)
{
    char key[KG_KEY_MAX];
    int i, allowed = 0;
    kg_decision *d;
    new_key("bucket", key, NULL, NULL, "burst", 10, 1, 20);   /* enterprise: 20 at once */
    for (i = 0; i < 30; i++) {
        d = check(key);
        allowed += kg_decision_allowed(d);
        kg_decision_free(d);
    }
    ck_assert_int_eq(allowed, 20);
}
END_TEST

/* ---- concurrency --------------------------------------------------------- */

START_TEST(concurrency_leases)
{
    char key[KG_KEY_MAX], lease1[600];
    kg_decision *a, *b, *c;
    new_key("conc", key, NULL, NULL, NULL, 0, 0, 0);
    a = check(key);
    b = check(key);
    c = check(key);
    ck_assert(kg_decision_allowed(a));
    ck_assert(kg_decision_allowed(b));
    ck_assert(!kg_decision_allowed(c));
    ck_assert_int_eq(kg_decision_status(c), 429);
    ck_assert_ptr_nonnull(kg_decision_lease(a));
    ck_assert_ptr_null(kg_decision_lease(c));
    snprintf(lease1, sizeof(lease1), "%s", kg_decision_lease(a));
    ck_assert_str_ne(kg_decision_lease(a), kg_decision_lease(b));
    kg_decision_free(c);
    ck_assert_int_eq(kg_release(ctx, lease1), KG_OK);
    ck_assert_int_eq(kg_release(ctx, lease1), KG_ERR_NOT_FOUND);  /* once */
    ck_assert_int_eq(kg_release(ctx, "garbage"), KG_ERR_INVALID);
    c = check(key);
    ck_assert(kg_decision_allowed(c));
    kg_decision_free(c);
    c = check(key);
    ck_assert(!kg_decision_allowed(c));
    kg_decision_free(c);
    /* Nobody releases: after the plan's lease_ttl (30 s) the slots free up. */
    tu_clock_advance(&clk, 31);
    c = check(key);
    ck_assert(kg_decision_allowed(c));
    kg_decision_free(c);
    kg_decision_free(a);
    kg_decision_free(b);
}
END_TEST

/*
 * A release goes straight to the slot its lease id was recorded in (a
 * lease hint), but only if that slot is the key's the lease names: a
 * lease id spliced onto another key's name releases nothing.  A lease
 * whose hint is gone (the hint table replaced) is still found.
 */
START_TEST(lease_release_checks_the_key)
{
    char ka[KG_KEY_MAX], kb[KG_KEY_MAX], la[600], lb[600], forged[1200];
    kg_decision *a, *b, *d;

    new_key("conc", ka, NULL, NULL, NULL, 0, 0, 0);
    new_key("conc", kb, NULL, NULL, NULL, 0, 0, 0);
    a = check(ka);
    b = check(kb);
    ck_assert(kg_decision_allowed(a) && kg_decision_allowed(b));
    snprintf(la, sizeof(la), "%s", kg_decision_lease(a));
    snprintf(lb, sizeof(lb), "%s", kg_decision_lease(b));
    kg_decision_free(a);
    kg_decision_free(b);
    /* a's id, b's key id and limit. */
    snprintf(forged, sizeof(forged), "%.17s%s", la, lb + 17);
    ck_assert_str_ne(forged, la);
    ck_assert_str_ne(forged, lb);
    ck_assert_int_eq(kg_release(ctx, forged), KG_ERR_NOT_FOUND);
    /* a still holds its lease: one more is admitted, not two. */
    d = check(ka);
    ck_assert(kg_decision_allowed(d));
    kg_decision_free(d);
    d = check(ka);
    ck_assert(!kg_decision_allowed(d));
    kg_decision_free(d);
    ck_assert_int_eq(kg_release(ctx, la), KG_OK);
    /* New hint tables (another capacity): b's lease is found by search. */
    kg_context_set_limit_capacity(ctx, 50000);
    ck_assert_int_eq(kg_release(ctx, lb), KG_OK);
    ck_assert_int_eq(kg_release(ctx, lb), KG_ERR_NOT_FOUND);
    d = check(kb);
    ck_assert(kg_decision_allowed(d));
    kg_decision_free(d);
    d = check(kb);
    ck_assert(kg_decision_allowed(d));
    kg_decision_free(d);
}
END_TEST

/* ---- exactness under threads ------------------------------------------- */

struct hammer {
    const char *key;
    int tries;
    int admitted;
};

static void *hammer_fn(void *arg)
{
    struct hammer *h = arg;
    kg_request *req = tu_request_bearer(h->key, NULL, NULL, NULL);
    int i;
    for (i = 0; i < h->tries; i++) {
        kg_decision *d;
        if (kg_check(pol, req, &d) != KG_OK)
            continue;
        h->admitted += kg_decision_allowed(d);
        kg_decision_free(d);
    }
    kg_request_free(req);
    return NULL;
}

static int hammer(const char *key, int threads, int tries)
{
    pthread_t t[8];
    struct hammer h[8];
    int i, total = 0;
    for (i = 0; i < threads; i++) {
        h[i].key = key;
        h[i].tries = tries;
        h[i].admitted = 0;
        ck_assert_int_eq(pthread_create(&t[i], NULL, hammer_fn, &h[i]), 0);
    }
    for (i = 0; i < threads; i++) {
        pthread_join(t[i], NULL);
        total += h[i].admitted;
    }
    return total;
}

START_TEST(exact_under_threads)
{
    static const char *const mods[] = { "fixed_window", "sliding_window", "token_bucket" };
    char key[KG_KEY_MAX];
    kg_policy_free(pol);
    load(mods[_i]);
    new_key("exact", key, NULL, NULL, NULL, 0, 0, 0);
    /* 8 threads x 10,000 tries against a limit of 1,000: exactly 1,000.
     * (token bucket: burst = count = 1000 and the clock stands still.) */
    ck_assert_int_eq(hammer(key, 8, 10000), 1000);
}
END_TEST

START_TEST(concurrency_exact_under_threads)
{
    /* Leases are never released here: exactly `count` are ever granted. */
    char key[KG_KEY_MAX];
    new_key("conc", key, NULL, NULL, "concurrency", 1000, 0, 0);
    ck_assert_int_eq(hammer(key, 8, 10000), 1000);
}
END_TEST

/* ---- one key, many limits ------------------------------------------------ */

static int64_t remaining_of(const kg_decision *d, const char *name)
{
    size_t i, n = kg_decision_limit_count(d);
    for (i = 0; i < n; i++) {
        const char *nm;
        int64_t rem;
        ck_assert_int_eq(kg_decision_limit(d, i, &nm, NULL, &rem, NULL, NULL), KG_OK);
        if (strcmp(nm, name) == 0)
            return rem;
    }
    ck_abort_msg("no limit %s in the decision", name);
    return -1;
}

/*
 * Six limits on one key: the memory state keeps a key's first entries in
 * its slot and the rest beside it; each must count on its own, and the
 * lease of the sixth must release.
 */
START_TEST(many_limits_one_key)
{
    static const char *const names[] = {
        "l1", "l2", "l3", "l4", "l5-with-a-long-name_0123456789abcdefghijklmn", "l6"
    };
    static const int64_t counts[] = { 9, 8, 7, 6, 5, 3 };
    char key[KG_KEY_MAX], other[KG_KEY_MAX], leases[3][600];
    kg_decision *d;
    int i, j;

    new_key("many", key, NULL, NULL, NULL, 0, 0, 0);
    new_key("many", other, NULL, NULL, NULL, 0, 0, 0);
    for (i = 0; i < 3; i++) {
        d = check(key);
        ck_assert_msg(kg_decision_allowed(d), "request %d: %s", i, kg_decision_message(d));
        ck_assert_int_eq(kg_decision_limit_count(d), 6);
        for (j = 0; j < 6; j++)
            ck_assert_int_eq(remaining_of(d, names[j]), counts[j] - (i + 1));
        ck_assert_ptr_nonnull(kg_decision_lease(d));
        snprintf(leases[i], sizeof(leases[i]), "%s", kg_decision_lease(d));
        kg_decision_free(d);
    }
    /* Three leases held: the sixth limit denies, and gives back what the
     * five before it took. */
    d = check(key);
    ck_assert_int_eq(kg_decision_status(d), 429);
    ck_assert_int_eq(remaining_of(d, "l6"), 0);
    kg_decision_free(d);
    /* Another key is counted apart. */
    d = check(other);
    ck_assert(kg_decision_allowed(d));
    ck_assert_int_eq(remaining_of(d, "l1"), 8);
    ck_assert_int_eq(kg_release(ctx, kg_decision_lease(d)), KG_OK);
    kg_decision_free(d);
    ck_assert_int_eq(kg_release(ctx, leases[1]), KG_OK);
    ck_assert_int_eq(kg_release(ctx, leases[1]), KG_ERR_NOT_FOUND);
    d = check(key);
    ck_assert(kg_decision_allowed(d));
    /* The denied request took nothing: 4 admitted so far. */
    ck_assert_int_eq(remaining_of(d, "l5-with-a-long-name_0123456789abcdefghijklmn"), 1);
    ck_assert_int_eq(remaining_of(d, "l1"), 5);
    kg_decision_free(d);
    d = check(key);    /* l6: 3 held again */
    ck_assert_int_eq(kg_decision_status(d), 429);
    kg_decision_free(d);
    ck_assert_int_eq(kg_release(ctx, leases[0]), KG_OK);
    d = check(key);    /* l5 (count 5) is the one that runs out now */
    ck_assert(kg_decision_allowed(d));
    ck_assert_int_eq(remaining_of(d, "l5-with-a-long-name_0123456789abcdefghijklmn"), 0);
    ck_assert_int_eq(kg_release(ctx, kg_decision_lease(d)), KG_OK);
    kg_decision_free(d);
    d = check(key);
    ck_assert_int_eq(kg_decision_status(d), 429);
    ck_assert_str_eq(hdr(d, "X-RateLimit-Limit"), "5");
    kg_decision_free(d);
    /* Entries: 6 per key, 2 keys. */
    ck_assert_int_eq(kg_context_limit_entries(ctx), 12);
}
END_TEST

/* ---- account plugins ------------------------------------------------------ */

START_TEST(ipacl_plan_and_key)
{
    char key[KG_KEY_MAX], open_key[KG_KEY_MAX];
    kg_decision *d;
    new_key("guarded", key, "*", "10.1.0.0/16", NULL, 0, 0, 0);
    new_key("guarded", open_key, "*", NULL, NULL, 0, 0, 0);
    d = check_req(key, "GET", "/v1/jobs/7", "10.1.2.3");
    ck_assert(kg_decision_allowed(d));
    kg_decision_free(d);
    d = check_req(key, "GET", "/v1/jobs/7", "::ffff:10.1.2.3");   /* v4-mapped */
    ck_assert(kg_decision_allowed(d));
    kg_decision_free(d);
    d = check_req(key, "GET", "/v1/jobs/7", "10.2.0.1");          /* plan ok, key not */
    ck_assert_int_eq(kg_decision_status(d), 403);
    ck_assert_int_eq(kg_decision_code(d), KG_CODE_IP_NOT_ALLOWED);
    ck_assert_str_eq(kg_decision_decided_by(d), "account:ipacl");
    kg_decision_free(d);
    d = check_req(open_key, "GET", "/v1/jobs/7", "10.2.0.1");     /* key has no list */
    ck_assert(kg_decision_allowed(d));
    kg_decision_free(d);
    d = check_req(open_key, "GET", "/v1/jobs/7", "192.0.2.1");    /* outside the plan */
    ck_assert_int_eq(kg_decision_code(d), KG_CODE_IP_NOT_ALLOWED);
    kg_decision_free(d);
    d = check_req(open_key, "GET", "/v1/jobs/7", "2001:db8::5");
    ck_assert(kg_decision_allowed(d));
    kg_decision_free(d);
    d = check_req(open_key, "GET", "/v1/jobs/7", NULL);           /* unknown client */
    ck_assert_int_eq(kg_decision_code(d), KG_CODE_IP_NOT_ALLOWED);
    kg_decision_free(d);
}
END_TEST

START_TEST(record_nets_parsed_once)
{
    kg_record *r = kg_record_new(), *c;
    const kg_cidr *nets;
    unsigned char a[16];
    size_t n = 99;

    nets = kg_record_allowed_nets(r, &n);
    ck_assert_uint_eq(n, 0);
    ck_assert_ptr_null(nets);
    ck_assert_int_eq(kg_record_add_cidr(r, "10.1.0.0/16"), KG_OK);
    ck_assert_int_eq(kg_record_add_cidr(r, "bogus/99"), KG_OK);  /* kept, not parsed */
    ck_assert_int_eq(kg_record_add_cidr(r, "2001:db8::/32"), KG_OK);
    ck_assert_uint_eq(kg_record_cidr_count(r), 3);
    ck_assert_str_eq(kg_record_cidr(r, 1), "bogus/99");
    nets = kg_record_allowed_nets(r, &n);
    ck_assert_uint_eq(n, 2);
    ck_assert_uint_eq(nets[0].prefix, 96 + 16);
    ck_assert_uint_eq(nets[1].prefix, 32);
    ck_assert_int_eq(kg_addr_parse("10.1.200.3", a), KG_OK);
    ck_assert(kg_cidr_contains(&nets[0], a));
    ck_assert(!kg_cidr_contains(&nets[1], a));
    ck_assert_int_eq(kg_addr_parse("2001:db8:7::1", a), KG_OK);
    ck_assert(kg_cidr_contains(&nets[1], a));
    /* a copy has its own parsed networks */
    c = kg_record_dup(r);
    ck_assert_ptr_nonnull(c);
    ck_assert_ptr_ne(kg_record_allowed_nets(c, &n), nets);
    ck_assert_uint_eq(n, 2);
    kg_record_clear_cidrs(r);
    ck_assert_ptr_null(kg_record_allowed_nets(r, &n));
    ck_assert_uint_eq(n, 0);
    ck_assert_uint_eq(kg_record_cidr_count(r), 0);
    ck_assert(kg_cidr_contains(&kg_record_allowed_nets(c, &n)[1], a));
    kg_record_unref(r);
    kg_record_unref(c);
}
END_TEST

START_TEST(ipacl_malformed_stored_network_fails_closed)
{
    char bad[KG_KEY_MAX], mixed[KG_KEY_MAX];
    kg_decision *d;
    char *r1, *r2, *text, *path = tu_path(dir, "keys.yaml");
    /* Written by hand: the key management API would refuse a bad network. */
    ck_assert_int_eq(kg_key_generate("whizo", bad, sizeof(bad)), KG_OK);
    ck_assert_int_eq(kg_key_generate("whizo", mixed, sizeof(mixed)), KG_OK);
    r1 = tu_key_record("k_bad", bad, "guarded", "    permissions: ['*']\n"
                       "    allowed_cidrs: ['10.1.0.0/33']\n");
    r2 = tu_key_record("k_mixed", mixed, "guarded", "    permissions: ['*']\n"
                       "    allowed_cidrs: [not-a-net, '10.1.0.0/16']\n");
    text = tu_fmt("keys:\n%s%s", r1, r2);
    tu_write(path, text);
    free(r1);
    free(r2);
    free(text);
    free(path);
    kg_policy_free(pol);
    load("fixed_window");
    d = check_req(bad, "GET", "/v1/jobs/7", "10.1.2.3");      /* matches nothing */
    ck_assert_int_eq(kg_decision_code(d), KG_CODE_IP_NOT_ALLOWED);
    ck_assert_str_eq(kg_decision_decided_by(d), "account:ipacl");
    kg_decision_free(d);
    d = check_req(mixed, "GET", "/v1/jobs/7", "10.1.2.3");    /* the good one matches */
    ck_assert(kg_decision_allowed(d));
    kg_decision_free(d);
    d = check_req(mixed, "GET", "/v1/jobs/7", "10.2.0.1");
    ck_assert_int_eq(kg_decision_code(d), KG_CODE_IP_NOT_ALLOWED);
    kg_decision_free(d);
}
END_TEST

START_TEST(scope_permissions)
{
    char ro[KG_KEY_MAX], jobs[KG_KEY_MAX], all[KG_KEY_MAX];
    kg_decision *d;
    new_key("guarded", ro, "*:read", NULL, NULL, 0, 0, 0);
    new_key("guarded", jobs, "jobs:*", NULL, NULL, 0, 0, 0);
    new_key("guarded", all, "*", NULL, NULL, 0, 0, 0);
    d = check_req(ro, "GET", "/v1/jobs/42?x=1", "10.0.0.1");
    ck_assert(kg_decision_allowed(d));
    kg_decision_free(d);
    d = check_req(ro, "POST", "/v1/jobs", "10.0.0.1");            /* read-only key writes */
    ck_assert_int_eq(kg_decision_status(d), 403);
    ck_assert_int_eq(kg_decision_code(d), KG_CODE_INSUFFICIENT_PERMISSIONS);
    ck_assert_ptr_nonnull(strstr(kg_decision_message(d), "jobs:write"));
    kg_decision_free(d);
    d = check_req(jobs, "POST", "/v1/jobs", "10.0.0.1");
    ck_assert(kg_decision_allowed(d));
    kg_decision_free(d);
    d = check_req(jobs, "GET", "/v1/crawl/a/b/c", "10.0.0.1");    /* ** across segments */
    ck_assert_int_eq(kg_decision_code(d), KG_CODE_INSUFFICIENT_PERMISSIONS);
    kg_decision_free(d);
    d = check_req(ro, "DELETE", "/v1/crawl/a/b", "10.0.0.1");
    ck_assert(kg_decision_allowed(d));   /* any method on /v1/crawl/... needs crawl:read */
    kg_decision_free(d);
    d = check_req(all, "GET", "/v1/jobs/1/logs", "10.0.0.1");     /* * is one segment: unmapped */
    ck_assert_int_eq(kg_decision_code(d), KG_CODE_INSUFFICIENT_PERMISSIONS);
    kg_decision_free(d);
}
END_TEST

START_TEST(limit_state_is_bounded)
{
    char key[KG_KEY_MAX];
    kg_decision *d;
    int i;
    kg_context_set_limit_capacity(ctx, 256);   /* 1 entry per shard */
    for (i = 0; i < 40; i++) {
        new_key("fixed", key, NULL, NULL, NULL, 0, 0, 0);
        d = check(key);
        ck_assert(kg_decision_allowed(d));
        kg_decision_free(d);
    }
    ck_assert_int_le(kg_context_limit_entries(ctx), 2 * 256);
    ck_assert_int_ge(kg_context_limit_entries(ctx), 2);
}
END_TEST

static Suite *limits_suite(void)
{
    Suite *s = suite_create("limits");
    TCase *tc;

    tc = tcase_create("fixed_window");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, fixed_counts_down_and_denies);
    tcase_add_test(tc, fixed_window_edge_resets);
    tcase_add_test(tc, denied_request_consumes_nothing);
    tcase_add_test(tc, override_replaces_plan_limit);
    tcase_add_test(tc, policy_header_follows_each_check);
    tcase_add_test(tc, reload_keeps_counters);
    suite_add_tcase(s, tc);

    tc = tcase_create("sliding_window");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, sliding_no_double_burst_at_edge);
    suite_add_tcase(s, tc);

    tc = tcase_create("token_bucket");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, bucket_burst_then_refill);
    tcase_add_test(tc, bucket_override_burst);
    suite_add_tcase(s, tc);

    tc = tcase_create("concurrency");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, concurrency_leases);
    tcase_add_test(tc, lease_release_checks_the_key);
    suite_add_tcase(s, tc);

    tc = tcase_create("exactness");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, exact_under_threads, 0, 3);
    tcase_add_test(tc, concurrency_exact_under_threads);
    tcase_add_test(tc, many_limits_one_key);
    suite_add_tcase(s, tc);

    tc = tcase_create("account");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, ipacl_plan_and_key);
    tcase_add_test(tc, record_nets_parsed_once);
    tcase_add_test(tc, ipacl_malformed_stored_network_fails_closed);
    tcase_add_test(tc, scope_permissions);
    tcase_add_test(tc, limit_state_is_bounded);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(limits_suite());
}
