/*
 * check_cache - the record cache in front of a key store (core/cache.c,
 * used by core/check.c), driven through a policy with
 * `cache: {ttl: 5s, negative_ttl: 1s}` on a `flaky` store (a test plugin
 * that knows one key and is switched down or "key gone" by flag files,
 * and counts lookups in a file), with the fake clock: no sleeping.
 */
#include "testutil.h"

static char *dir, *down, *gone, *count;
static char key[KG_KEY_MAX], hex[65];
static kg_context *ctx;
static kg_policy *pol;
static tu_clock clk;

/* more: further options of the store (", remote: true"). */
static kg_policy *make_policy_with(const char *cache, const char *more)
{
    char *t = tu_fmt("credential: [{module: bearer}]\n"
                     "keystore:\n"
                     "  - module: flaky\n"
                     "%s%s%s"
                     "    options: {hash: \"%s\", id: k_flaky, plan: free,\n"
                     "              down: \"%s\", gone: \"%s\", count: \"%s\"%s}\n"
                     "plans: {free: {}}\n",
                     cache ? "    cache: " : "", cache ? cache : "", cache ? "\n" : "",
                     hex, down, gone, count, more);
    kg_policy *p = tu_policy(ctx, t);
    free(t);
    return p;
}

static kg_policy *make_policy(const char *cache)
{
    return make_policy_with(cache, "");
}

static void setup(void)
{
    unsigned char h[KG_HASH_LEN];
    dir = tu_tmpdir();
    down = tu_path(dir, "down");
    gone = tu_path(dir, "gone");
    count = tu_path(dir, "count");
    ck_assert_int_eq(kg_key_generate("whizo", key, sizeof(key)), KG_OK);
    kg_key_hash(key, strlen(key), h);
    kg_hash_to_hex(h, hex);
    ck_assert_int_eq(kg_context_new(&ctx), KG_OK);
    tu_clock_install(ctx, &clk);
    pol = make_policy("{ttl: 5s, negative_ttl: 1s}");
}

static void teardown(void)
{
    kg_policy_free(pol);
    kg_context_free(ctx);
    tu_rmrf(dir);
    free(dir);
    free(down);
    free(gone);
    free(count);
}

/* How many times the store was asked so far. */
static long asked(void)
{
    struct stat st;
    return stat(count, &st) == 0 ? (long)st.st_size : 0;
}

static void flag(const char *path, int on)
{
    if (on)
        tu_write(path, "");
    else
        unlink(path);
}

static int status_of(const kg_policy *p, const char *k)
{
    kg_decision *d = tu_check_key(p, k);
    int s = kg_decision_status(d);
    kg_decision_free(d);
    return s;
}

/* ---- TTLs ------------------------------------------------------------- */

START_TEST(positive_ttl)
{
    ck_assert_int_eq(status_of(pol, key), 200);
    ck_assert_int_eq(asked(), 1);
    ck_assert_int_eq(status_of(pol, key), 200);
    ck_assert_int_eq(asked(), 1);          /* served from the cache */
    /* the store forgets the key: the cache still answers within 5s */
    flag(gone, 1);
    tu_clock_advance(&clk, 4);
    ck_assert_int_eq(status_of(pol, key), 200);
    ck_assert_int_eq(asked(), 1);
    /* at 5s the entry is stale: the store is asked and says no */
    tu_clock_advance(&clk, 1);
    ck_assert_int_eq(status_of(pol, key), 401);
    ck_assert_int_eq(asked(), 2);
}
END_TEST

START_TEST(negative_ttl)
{
    char other[KG_KEY_MAX];
    ck_assert_int_eq(kg_key_generate("whizo", other, sizeof(other)), KG_OK);
    ck_assert_int_eq(status_of(pol, other), 401);
    ck_assert_int_eq(asked(), 1);
    ck_assert_int_eq(status_of(pol, other), 401);
    ck_assert_int_eq(asked(), 1);          /* "no such key" cached */
    tu_clock_advance(&clk, 1);
    ck_assert_int_eq(status_of(pol, other), 401);
    ck_assert_int_eq(asked(), 2);

    /* a key that appears in the store is seen after negative_ttl */
    flag(gone, 1);
    ck_assert_int_eq(status_of(pol, key), 401);
    flag(gone, 0);
    ck_assert_int_eq(status_of(pol, key), 401);   /* still the cached no */
    tu_clock_advance(&clk, 1);
    ck_assert_int_eq(status_of(pol, key), 200);
}
END_TEST

START_TEST(malformed_keys_never_reach_the_store)
{
    char bad[KG_KEY_MAX];
    snprintf(bad, sizeof(bad), "%s", key);
    bad[8] = bad[8] == 'x' ? 'y' : 'x';
    ck_assert_int_eq(status_of(pol, bad), 401);
    ck_assert_int_eq(asked(), 0);
}
END_TEST

START_TEST(no_cache_asks_every_time)
{
    kg_policy *p = make_policy(NULL);
    ck_assert_int_eq(status_of(p, key), 200);
    ck_assert_int_eq(status_of(p, key), 200);
    ck_assert_int_eq(asked(), 2);
    kg_policy_free(p);
}
END_TEST

START_TEST(reload_clears_the_cache)
{
    kg_diag d;
    ck_assert_int_eq(status_of(pol, key), 200);
    flag(gone, 1);
    ck_assert_int_eq(status_of(pol, key), 200);
    ck_assert_int_eq(kg_policy_reload_stores(pol, &d), KG_OK);
    ck_assert_int_eq(status_of(pol, key), 401);
}
END_TEST

/* ---- unavailable ------------------------------------------------------- */

START_TEST(serve_stale_while_unavailable)
{
    kg_decision *d;
    ck_assert_int_eq(status_of(pol, key), 200);
    flag(down, 1);
    /* fresh: the store is not even asked */
    ck_assert_int_eq(status_of(pol, key), 200);
    ck_assert_int_eq(asked(), 1);
    /* stale, and the store is down: the stale record is served */
    tu_clock_advance(&clk, 60);
    d = tu_check_key(pol, key);
    ck_assert_int_eq(kg_decision_status(d), 200);
    ck_assert_str_eq(kg_decision_key_id(d), "k_flaky");
    kg_decision_free(d);
    ck_assert_int_eq(asked(), 2);          /* it was asked, and could not answer */
    /* back up: the store answers again (and says the key is gone) */
    flag(down, 0);
    flag(gone, 1);
    ck_assert_int_eq(status_of(pol, key), 401);
}
END_TEST

START_TEST(unknown_key_while_unavailable_is_503)
{
    char other[KG_KEY_MAX];
    kg_decision *d;
    ck_assert_int_eq(kg_key_generate("whizo", other, sizeof(other)), KG_OK);
    flag(down, 1);
    d = tu_check_key(pol, other);
    ck_assert_int_eq(kg_decision_status(d), 503);
    ck_assert_int_eq(kg_decision_code(d), KG_CODE_AUTH_UNAVAILABLE);
    ck_assert_str_eq(kg_decision_decided_by(d), "keystore:flaky");
    ck_assert_ptr_nonnull(strstr(kg_decision_body(d), "auth_unavailable"));
    kg_decision_free(d);
    /* nothing was cached for it: when the store is back it answers */
    flag(down, 0);
    ck_assert_int_eq(status_of(pol, other), 401);
    /* the known key, never seen before the outage: 503 too */
    flag(down, 1);
    ck_assert_int_eq(status_of(pol, key), 503);
    flag(down, 0);
    ck_assert_int_eq(status_of(pol, key), 200);
}
END_TEST

/* A "no such key" past negative_ttl is not served while the store is
 * down: the key may have been created since (issue 16 item 4). */
START_TEST(stale_negative_while_unavailable_is_503)
{
    char other[KG_KEY_MAX];
    kg_decision *d;
    int i;

    ck_assert_int_eq(kg_key_generate("whizo", other, sizeof(other)), KG_OK);
    ck_assert_int_eq(status_of(pol, other), 401);
    flag(gone, 1);
    ck_assert_int_eq(status_of(pol, key), 401);
    ck_assert_int_eq(asked(), 2);
    flag(down, 1);
    /* within negative_ttl the cached no still answers, store untouched */
    ck_assert_int_eq(status_of(pol, other), 401);
    ck_assert_int_eq(status_of(pol, key), 401);
    ck_assert_int_eq(asked(), 2);
    /* past it, for as long as the outage lasts: 503, never 401 */
    for (i = 0; i < 12; i++) {
        tu_clock_advance(&clk, 1);
        d = tu_check_key(pol, other);
        ck_assert_int_eq(kg_decision_status(d), 503);
        ck_assert_int_eq(kg_decision_code(d), KG_CODE_AUTH_UNAVAILABLE);
        ck_assert_str_eq(kg_decision_decided_by(d), "keystore:flaky");
        kg_decision_free(d);
        ck_assert_int_eq(status_of(pol, key), 503);
    }
    /* back up: the key created meanwhile is found, the other still no */
    flag(down, 0);
    flag(gone, 0);
    ck_assert_int_eq(status_of(pol, key), 200);
    ck_assert_int_eq(status_of(pol, other), 401);
}
END_TEST

/* ---- size ---------------------------------------------------------------- */

START_TEST(size_cap)
{
    /* max_entries 2: a third key evicts the oldest entry */
    kg_policy *p;
    char a[KG_KEY_MAX], b[KG_KEY_MAX], c[KG_KEY_MAX];
    long n;
    int i;
    char *x;

    kg_policy_free(pol);
    pol = NULL;
    p = make_policy("{ttl: 1h, negative_ttl: 1h, max_entries: 2}");
    ck_assert_int_eq(kg_key_generate("whizo", a, sizeof(a)), KG_OK);
    ck_assert_int_eq(kg_key_generate("whizo", b, sizeof(b)), KG_OK);
    ck_assert_int_eq(kg_key_generate("whizo", c, sizeof(c)), KG_OK);
    ck_assert_int_eq(status_of(p, a), 401);
    ck_assert_int_eq(status_of(p, b), 401);
    n = asked();
    ck_assert_int_eq(status_of(p, a), 401);
    ck_assert_int_eq(status_of(p, b), 401);
    ck_assert_int_eq(asked(), n);          /* both cached */
    ck_assert_int_eq(status_of(p, c), 401); /* evicts a, the oldest */
    n = asked();
    ck_assert_int_eq(status_of(p, a), 401);
    ck_assert_int_eq(asked(), n + 1);      /* a was gone from the cache */

    /* many keys: the cache never holds more than its cap */
    for (i = 0; i < 200; i++) {
        char k[KG_KEY_MAX];
        ck_assert_int_eq(kg_key_generate("whizo", k, sizeof(k)), KG_OK);
        ck_assert_int_eq(status_of(p, k), 401);
    }
    x = kg_policy_explain(p);
    ck_assert_msg(strstr(x, "cache: 2 entries now") != NULL, "%s", x);
    free(x);
    kg_policy_free(p);
}
END_TEST

/* ---- checks that may not wait (kg_request_set_nowait) ----------------- */

static kg_error nowait_check(const kg_policy *p, const char *k, kg_decision **d_r)
{
    kg_request *r = tu_request_bearer(k, "GET", "/", "192.0.2.10");
    kg_error e;
    ck_assert_int_eq(kg_request_set_nowait(r, 1), KG_OK);
    e = kg_check(p, r, d_r);
    kg_request_free(r);
    return e;
}

/* keygated's first try on its HTTP threads (issue 16 item 7): a store
 * that would wait on the network is not asked, and the check says so
 * with no decision and nothing counted; the cache answers what it
 * holds fresh; a store that does not wait answers as always. */
START_TEST(nowait_never_asks_a_remote_store)
{
    kg_policy *p = make_policy_with("{ttl: 5s, negative_ttl: 1s}", ", remote: true");
    kg_decision *d = NULL;

    ck_assert_int_eq(nowait_check(p, key, &d), KG_ERR_WOULD_BLOCK);
    ck_assert_ptr_null(d);
    ck_assert_int_eq(asked(), 0);
    ck_assert_uint_eq(kg_context_stat(ctx, KG_STAT_CACHE_MISSES), 0);
    /* asked again where it may wait: the store answers, once */
    ck_assert_int_eq(status_of(p, key), 200);
    ck_assert_int_eq(asked(), 1);
    ck_assert_uint_eq(kg_context_stat(ctx, KG_STAT_CACHE_MISSES), 1);
    /* fresh in the cache: answered without the store */
    ck_assert_int_eq(nowait_check(p, key, &d), KG_OK);
    ck_assert_int_eq(kg_decision_status(d), 200);
    kg_decision_free(d);
    d = NULL;
    ck_assert_int_eq(asked(), 1);
    /* stale: the store would be asked, so not here */
    tu_clock_advance(&clk, 5);
    ck_assert_int_eq(nowait_check(p, key, &d), KG_ERR_WOULD_BLOCK);
    ck_assert_ptr_null(d);
    ck_assert_int_eq(asked(), 1);
    /* decided before any store: answered */
    ck_assert_int_eq(nowait_check(p, "whizo_nope", &d), KG_OK);
    ck_assert_int_eq(kg_decision_status(d), 401);
    kg_decision_free(d);
    d = NULL;
    /* the same store, not remote: asked even by a check that may not wait */
    tu_clock_advance(&clk, 5);
    ck_assert_int_eq(nowait_check(pol, key, &d), KG_OK);
    ck_assert_int_eq(kg_decision_status(d), 200);
    kg_decision_free(d);
    ck_assert_int_eq(asked(), 2);
    kg_policy_free(p);
}
END_TEST

static Suite *cache_suite(void)
{
    Suite *s = suite_create("cache");
    TCase *tc;

    tc = tcase_create("ttl");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, positive_ttl);
    tcase_add_test(tc, negative_ttl);
    tcase_add_test(tc, malformed_keys_never_reach_the_store);
    tcase_add_test(tc, no_cache_asks_every_time);
    tcase_add_test(tc, reload_clears_the_cache);
    suite_add_tcase(s, tc);

    tc = tcase_create("unavailable");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, serve_stale_while_unavailable);
    tcase_add_test(tc, unknown_key_while_unavailable_is_503);
    tcase_add_test(tc, stale_negative_while_unavailable_is_503);
    suite_add_tcase(s, tc);

    tc = tcase_create("nowait");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, nowait_never_asks_a_remote_store);
    suite_add_tcase(s, tc);

    tc = tcase_create("size");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, size_cap);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(cache_suite());
}
