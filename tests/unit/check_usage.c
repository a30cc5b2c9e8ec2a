/*
 * check_usage - metering (core/usage.c, core/usage_policy.c): decisions
 * counted per (account, key, minute, code), the event sample, flushes
 * through a store, an outage and its catch-up, the bound and its drop
 * counters, and the usage: section's errors.  The store is the usagerec
 * fixture (tests/fixtures/usagerec.c: every batch appended to a file,
 * "down" while a flag file exists); time is the fake clock.
 */
#include "testutil.h"

#include <pthread.h>

static char *dir, *keyfile, *rec, *down;
static char key[KG_KEY_MAX];
static kg_context *ctx;
static kg_policy *pol;
static tu_clock clk;

/* A policy on the fixture store with the given extra usage: lines. */
static kg_policy *usage_policy(const char *extra)
{
    return tu_policyf(ctx,
                      "credential: [{module: bearer}]\n"
                      "keystore: [{module: file, options: {path: \"%s\"}}]\n"
                      "plans:\n"
                      "  free:\n"
                      "    limit: [{module: fixed_window, options: {name: minute, "
                      "count: 10, window: 1m}}]\n"
                      "usage:\n"
                      "  module: usagerec\n"
                      "  options: {path: \"%s\", down: \"%s\"}\n"
                      "%s",
                      keyfile, rec, down, extra ? extra : "");
}

static void setup(void)
{
    tu_setup(&dir, &keyfile, "free", key, &ctx);
    rec = tu_path(dir, "usage.rec");
    down = tu_path(dir, "down");
    tu_clock_install(ctx, &clk);
    tu_clock_set(&clk, 1800000000);   /* a minute boundary (30000000 min) */
    pol = NULL;
}

static void teardown(void)
{
    free(rec);
    free(down);
    tu_teardown(dir, keyfile, ctx, pol);
}

static void check_n(const char *k, int n)
{
    int i;
    for (i = 0; i < n; i++) {
        kg_request *r = k ? NULL : tu_request(NULL);
        kg_decision *d = k ? tu_check_key(pol, k) : tu_check(pol, r);
        kg_decision_free(d);
        kg_request_free(r);
    }
}

static kg_error flush(void)
{
    kg_diag d;
    memset(&d, 0, sizeof(d));
    return kg_usage_flush(pol, &d);
}

/* The sum of the counts the store got for (start or -1, key, code), and
 * the number of rows. */
static long long rows_sum(long long start, const char *k, const char *code,
                          int *nrows_r)
{
    FILE *f = fopen(rec, "r");
    char line[1024], a[256], kk[256], c[64];
    long long st, cnt, sum = 0;
    int span, n = 0;
    if (f == NULL) {
        if (nrows_r) *nrows_r = 0;
        return 0;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        if (sscanf(line, "row %lld %d %255s %255s %63s %lld", &st, &span, a,
                   kk, c, &cnt) != 6)
            continue;
        ck_assert_int_eq(span, 60);
        if ((start >= 0 && st != start) || strcmp(kk, k) || strcmp(c, code))
            continue;
        sum += cnt;
        n++;
    }
    fclose(f);
    if (nrows_r)
        *nrows_r = n;
    return sum;
}

/* Lines of the record file that start with `what` and contain `has`. */
static int lines(const char *what, const char *has)
{
    FILE *f = fopen(rec, "r");
    char line[1024];
    int n = 0;
    if (f == NULL)
        return 0;
    while (fgets(line, sizeof(line), f) != NULL)
        if (strncmp(line, what, strlen(what)) == 0 && (!has || strstr(line, has)))
            n++;
    fclose(f);
    return n;
}

/* ---- buckets ---------------------------------------------------------- */

START_TEST(test_minute_boundaries)
{
    pol = usage_policy(NULL);
    /* 3 at :00.000, 2 at :59.999 of the same minute, 4 at the next :00. */
    check_n(key, 3);
    tu_clock_advance_us(&clk, 59999999);
    check_n(key, 2);
    tu_clock_advance_us(&clk, 1);
    check_n(key, 4);
    ck_assert_int_eq(flush(), KG_OK);
    ck_assert_int_eq(rows_sum(1800000000, "k_test", "allowed", NULL), 5);
    ck_assert_int_eq(rows_sum(1800000060, "k_test", "allowed", NULL), 4);
    ck_assert_int_eq(lines("batch", NULL), 1);
}
END_TEST

START_TEST(test_codes_and_no_key)
{
    pol = usage_policy(NULL);
    check_n(key, 12);   /* 10 allowed, 2 rate_limited */
    check_n(NULL, 3);   /* no key: unauthorized, under no account or key */
    check_n("whizo_notakey", 1);
    ck_assert_int_eq(flush(), KG_OK);
    ck_assert_int_eq(rows_sum(-1, "k_test", "allowed", NULL), 10);
    ck_assert_int_eq(rows_sum(-1, "k_test", "rate_limited", NULL), 2);
    ck_assert_int_eq(rows_sum(-1, "-", "unauthorized", NULL), 4);
    /* Every denial is an event, with the key's id and display prefix and
     * never the key. */
    ck_assert_int_eq(lines("event", " 429 rate_limited"), 2);
    ck_assert_int_eq(lines("event", " 401 unauthorized"), 4);
    ck_assert_int_eq(lines("event", "k_test"), lines("event", "whizo_"));
    ck_assert_int_eq(lines("event", key), 0);
    ck_assert_int_eq(lines("event", " GET / "), lines("event", NULL));
    ck_assert_int_eq(lines("event", "192.0.2.10"), lines("event", NULL));
}
END_TEST

START_TEST(test_peek_not_counted)
{
    kg_request *r = tu_request_bearer(key, "GET", "/", "192.0.2.10");
    kg_decision *d = NULL;
    int n;
    pol = usage_policy(NULL);
    ck_assert_int_eq(kg_check_peek(pol, r, &d), KG_OK);
    kg_decision_free(d);
    kg_request_free(r);
    ck_assert_int_eq(flush(), KG_OK);
    ck_assert_int_eq(rows_sum(-1, "k_test", "allowed", &n), 0);
    ck_assert_int_eq(n, 0);
}
END_TEST

/* ---- the sample ------------------------------------------------------- */

/* Allowed events among n allowed decisions (one per minute, so that no
 * limit is hit) of a fresh context with this sample and seed. */
static int sampled(const char *sample, int seed, int n)
{
    char extra[128];
    int i;
    kg_policy_free(pol);
    kg_context_free(ctx);
    ck_assert_int_eq(kg_context_new(&ctx), KG_OK);
    tu_clock_install(ctx, &clk);
    unlink(rec);
    snprintf(extra, sizeof(extra), "  sample: %s\n  sample_seed: %d\n",
             sample, seed);
    pol = usage_policy(extra);
    for (i = 0; i < n; i++) {
        check_n(key, 1);
        tu_clock_advance(&clk, 60);
    }
    ck_assert_int_eq(flush(), KG_OK);
    ck_assert_int_eq(rows_sum(-1, "k_test", "allowed", NULL), n);
    return lines("event", " 200 allowed");
}

START_TEST(test_sample_seeded)
{
    int a = sampled("10%", 42, 1000), b = sampled("10%", 42, 1000);
    int c = sampled("10%", 7, 1000);
    /* The same seed samples the same decisions; about 10% of them. */
    ck_assert_int_eq(a, b);
    ck_assert_msg(a >= 70 && a <= 130, "10%% of 1000 sampled %d", a);
    ck_assert_msg(c >= 70 && c <= 130, "10%% of 1000 sampled %d", c);
    ck_assert_int_eq(sampled("0", 42, 200), 0);
    ck_assert_int_eq(sampled("100%", 42, 200), 200);
    /* The default is 1%. */
    kg_policy_free(pol);
    pol = NULL;
    {
        int i, n;
        unlink(rec);
        pol = usage_policy(NULL);
        for (i = 0; i < 3000; i++) {
            check_n(key, 1);
            tu_clock_advance(&clk, 60);
        }
        ck_assert_int_eq(flush(), KG_OK);
        n = lines("event", " 200 allowed");
        ck_assert_msg(n >= 12 && n <= 50, "1%% of 3000 sampled %d", n);
    }
}
END_TEST

/* ---- flushes ---------------------------------------------------------- */

START_TEST(test_counts_survive_reload)
{
    kg_policy *old;
    kg_usage_stats st;
    pol = usage_policy(NULL);
    check_n(key, 4);
    /* The counts are the context's: a policy loaded beside the first and
     * swapped in flushes what the first counted. */
    old = pol;
    pol = usage_policy(NULL);
    kg_policy_free(old);
    check_n(key, 3);
    ck_assert_int_eq(flush(), KG_OK);
    ck_assert_int_eq(rows_sum(-1, "k_test", "allowed", NULL), 7);
    kg_usage_stats_get(ctx, &st);
    ck_assert_int_eq(st.flushes, 1);
    ck_assert_int_eq(st.rows_written, 1);
    ck_assert_int_eq(st.pending_rows, 0);
    /* A flush with nothing counted writes nothing. */
    ck_assert_int_eq(flush(), KG_OK);
    ck_assert_int_eq(lines("batch", NULL), 1);
}
END_TEST

START_TEST(test_outage_and_catch_up)
{
    kg_usage_stats st;
    kg_diag d;
    pol = usage_policy(NULL);
    check_n(key, 12);
    check_n(NULL, 1);
    tu_write(down, "");
    memset(&d, 0, sizeof(d));
    ck_assert_int_eq(kg_usage_flush(pol, &d), KG_ERR_UNAVAILABLE);
    ck_assert_str_eq(d.message, "usagerec: down");
    ck_assert_int_eq(lines("batch", NULL), 0);
    kg_usage_stats_get(ctx, &st);
    ck_assert_int_eq(st.flush_errors, 1);
    ck_assert_int_eq(st.pending_rows, 3);
    ck_assert_int_eq(st.pending_events, 3);
    /* Checks go on while the store is down: the same bucket, and the
     * next minute's. */
    check_n(NULL, 2);
    tu_clock_advance(&clk, 60);
    check_n(key, 1);
    ck_assert_int_eq(flush(), KG_ERR_UNAVAILABLE);
    unlink(down);
    ck_assert_int_eq(flush(), KG_OK);
    /* One batch with every count, each bucket once. */
    ck_assert_int_eq(lines("batch", NULL), 1);
    ck_assert_int_eq(rows_sum(1800000000, "k_test", "allowed", NULL), 10);
    ck_assert_int_eq(rows_sum(1800000000, "k_test", "rate_limited", NULL), 2);
    ck_assert_int_eq(rows_sum(1800000000, "-", "unauthorized", NULL), 3);
    ck_assert_int_eq(rows_sum(1800000060, "k_test", "allowed", NULL), 1);
    ck_assert_int_eq(lines("row", NULL), 4);
    ck_assert_int_eq(lines("event", "unauthorized"), 3);
    kg_usage_stats_get(ctx, &st);
    ck_assert_int_eq(st.flushes, 1);
    ck_assert_int_eq(st.flush_errors, 2);
    ck_assert_int_eq(st.rows_written, 4);
    ck_assert_int_eq(st.pending_rows, 0);
    ck_assert_int_eq(st.pending_events, 0);
    ck_assert_int_eq(st.rows_dropped, 0);
}
END_TEST

START_TEST(test_drops_past_max_pending)
{
    kg_usage_stats st;
    int i, n;
    pol = usage_policy("  max_pending: 3\n  sample: 0\n");
    tu_write(down, "");
    /* Five minutes of one key: five buckets, while the store is down. */
    for (i = 0; i < 5; i++) {
        check_n(key, 1);
        ck_assert_int_eq(flush(), KG_ERR_UNAVAILABLE);
        tu_clock_advance(&clk, 60);
    }
    kg_usage_stats_get(ctx, &st);
    ck_assert_int_eq(st.pending_rows, 3);
    ck_assert_int_eq(st.rows_dropped, 2);
    /* Past the bound a new bucket is dropped as it is counted. */
    check_n(key, 1);
    kg_usage_stats_get(ctx, &st);
    ck_assert_int_eq(st.rows_dropped, 3);
    /* Denials past the bound: their events are dropped and counted. */
    check_n(NULL, 4);
    kg_usage_stats_get(ctx, &st);
    ck_assert_int_eq(st.events_dropped, 1);
    unlink(down);
    ck_assert_int_eq(flush(), KG_OK);
    /* The first three minutes were kept, the later ones dropped as they
     * were counted. */
    ck_assert_int_eq(rows_sum(-1, "k_test", "allowed", &n), 3);
    ck_assert_int_eq(n, 3);
    ck_assert_int_eq(rows_sum(1800000000, "k_test", "allowed", NULL), 1);
    ck_assert_int_eq(rows_sum(1800000120, "k_test", "allowed", NULL), 1);
    ck_assert_int_eq(rows_sum(1800000180, "k_test", "allowed", NULL), 0);
    ck_assert_int_eq(lines("event", NULL), 3);
}
END_TEST

struct hammer { const char *key; int n; };

static void *hammer(void *arg)
{
    struct hammer *h = arg;
    check_n(h->key, h->n);
    return NULL;
}

START_TEST(test_threads_add_up)
{
    pthread_t t[4];
    struct hammer h = { NULL, 5000 };
    kg_usage_stats st;
    int i;
    pol = usage_policy("  sample: 0\n");
    h.key = key;
    for (i = 0; i < 4; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, hammer, &h), 0);
    /* Flushes while the threads count: nothing is lost between them. */
    for (i = 0; i < 20; i++)
        ck_assert_int_eq(flush(), KG_OK);
    for (i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    ck_assert_int_eq(flush(), KG_OK);
    ck_assert_int_eq(rows_sum(-1, "k_test", "allowed", NULL) +
                     rows_sum(-1, "k_test", "rate_limited", NULL), 20000);
    ck_assert_int_eq(rows_sum(-1, "k_test", "allowed", NULL), 10);
    kg_usage_stats_get(ctx, &st);
    ck_assert_int_eq(st.pending_rows, 0);
    ck_assert_int_eq(st.rows_dropped, 0);
}
END_TEST

/* ---- the section and the queries --------------------------------------- */

static int row_cb(const kg_usage_row *r, void *ud)
{
    *(long long *)ud += r->count;
    return 0;
}

START_TEST(test_queries_forward)
{
    kg_usage_query q = { NULL, "k_test", 1800000000, 1800000060, 60 };
    long long sum = 0;
    kg_diag d;
    pol = usage_policy(NULL);
    check_n(key, 3);
    ck_assert_int_eq(flush(), KG_OK);
    memset(&d, 0, sizeof(d));
    ck_assert_int_eq(kg_usage_query_rows(pol, &q, row_cb, &sum, &d), KG_OK);
    ck_assert_int_eq(sum, 3);
    ck_assert_int_eq(kg_usage_flush_interval(pol), 5);
    q.span = 61;
    ck_assert_int_eq(kg_usage_query_rows(pol, &q, row_cb, &sum, &d),
                     KG_ERR_INVALID);
}
END_TEST

START_TEST(test_no_section)
{
    kg_usage_query q = { NULL, NULL, 0, 1, 60 };
    kg_event_query eq;
    long long sum = 0;
    kg_diag d;
    pol = tu_policyf(ctx, "credential: [{module: bearer}]\n"
                     "keystore: [{module: file, options: {path: \"%s\"}}]\n"
                     "plans: {free: {}}\n", keyfile);
    memset(&eq, 0, sizeof(eq));
    memset(&d, 0, sizeof(d));
    check_n(key, 1);
    ck_assert_int_eq(kg_usage_flush(pol, &d), KG_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(d.message, "no usage: section"));
    ck_assert_int_eq(kg_usage_query_rows(pol, &q, row_cb, &sum, &d),
                     KG_ERR_UNSUPPORTED);
    ck_assert_int_eq(kg_usage_events(pol, &eq, NULL, NULL, &d), KG_ERR_INVALID);
    ck_assert_int_eq(kg_usage_flush_interval(pol), 0);
}
END_TEST

/* A usage section that must not load: its error, file:line:column. */
static void section_error(const char *usage, const char *where,
                          const char *what)
{
    kg_diag d;
    char buf[2048], *y;
    y = tu_fmt("credential: [{module: bearer}]\n"
               "keystore: [{module: file, options: {path: \"%s\"}}]\n"
               "plans: {free: {}}\n"
               "usage:\n%s", keyfile, usage);
    tu_policy_error(ctx, y, &d);
    kg_diag_format(&d, buf, sizeof(buf));
    ck_assert_msg(strstr(buf, where) != NULL && strstr(buf, what) != NULL,
                  "expected %s ... %s, got: %s", where, what, buf);
    free(y);
}

START_TEST(test_section_errors)
{
    char *u;
    section_error("  module: usagerec\n  options: {path: x}\n  flush: 5s\n",
                  "bad.yaml:7:3", "unknown key 'flush' in usage");
    section_error("  module: usagerec\n  options: {path: x}\n  sample: lots\n",
                  "bad.yaml:7:11", "usage sample must be");
    section_error("  module: usagerec\n  options: {path: x}\n  sample: 101%\n",
                  "bad.yaml:7:11", "usage sample must be");
    section_error("  module: usagerec\n  options: {path: x}\n  flush_interval: 0s\n",
                  "bad.yaml:7:19", "flush_interval");
    section_error("  module: usagerec\n  options: {path: x}\n  max_pending: 0\n",
                  "bad.yaml:7:16", "max_pending");
    section_error("  options: {path: x}\n", "bad.yaml:5:3", "without 'module:'");
    /* A plugin that is no usage store. */
    section_error("  module: bearer\n", "bad.yaml:5:11", "no usage store");
    /* A store that cannot be written: refused at load, at its option. */
    u = tu_fmt("  module: usagerec\n  options: {path: \"%s/nodir/usage.rec\"}\n",
               dir);
    section_error(u, "bad.yaml:6:", "cannot write");
    free(u);
}
END_TEST

static Suite *usage_suite(void)
{
    Suite *s = suite_create("usage");
    TCase *tc = tcase_create("buckets");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_minute_boundaries);
    tcase_add_test(tc, test_codes_and_no_key);
    tcase_add_test(tc, test_peek_not_counted);
    suite_add_tcase(s, tc);
    tc = tcase_create("sample");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_sample_seeded);
    suite_add_tcase(s, tc);
    tc = tcase_create("flush");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_counts_survive_reload);
    tcase_add_test(tc, test_outage_and_catch_up);
    tcase_add_test(tc, test_drops_past_max_pending);
    tcase_add_test(tc, test_threads_add_up);
    suite_add_tcase(s, tc);
    tc = tcase_create("section");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_queries_forward);
    tcase_add_test(tc, test_no_section);
    tcase_add_test(tc, test_section_errors);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(usage_suite());
}
