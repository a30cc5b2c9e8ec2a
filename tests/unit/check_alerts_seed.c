/*
 * check_alerts_seed - the spike rules' history seeded from a real usage
 * store (SQLite in the test's folder; core/alerts_seed.c,
 * docs/alerts.md "spike"), with the fake clock: seven days of hour rows
 * of a flat account, a growing one and a steady one are in the store; a
 * fresh evaluator (a restarted keygated) seeds from it, and a true 5x
 * spike of the steady one fires once while the flat and the growing one
 * stay quiet.  Without the seeding nothing fires.
 */
#include "alertstest.h"

#include <sqlite3.h>

static char *db;

/* Day 10, 00:40: the current hour is the day's hour 0. */
#define NOW (TU_EPOCH_S + 10 * 86400 + 2400)
#define H0 (NOW - NOW % 3600)
/* Where keygated's feed of minute rows starts (ten minutes back). */
#define CUT (NOW - 600)

static void setup(void)
{
    at_setup();
    tu_clock_set(&clk, NOW);
    db = tu_path(dir, "usage.db");
}

static void teardown(void)
{
    free(db);
    at_teardown();
}

/* A policy with a usage store in the test's folder and `rules`. */
static kg_policy *policy(const char *rules)
{
    kg_policy *p = tu_policyf(ctx,
        "credential: [{module: bearer}]\n"
        "keystore: [{module: file, options: {path: %s}}]\n"
        "plans: {free: {}}\n"
        "usage: {module: sql, options: {url: \"sqlite://%s\"}}\n"
        "notifiers:\n"
        "  ops: {module: webhook, options: {url: \"http://127.0.0.1:9/k\", secret_file: %s, timeout: 1s}}\n"
        "alerts:\n%s", keyfile, db, secret, rules);
    return p;
}

static const char *spike_rule =
    "  - {name: spike, when: {spike: {factor: 5, over: 1h, baseline: 7d, min_requests: 100}}, notify: [ops]}\n";

/* ---- the store, written as the sql plugin writes it ------------------ */

static sqlite3 *raw;

static void add(const char *table, int64_t start, const char *acct,
                int64_t count)
{
    char *sql = tu_fmt("INSERT INTO %s (start, account_id, key_id, code, count)"
                       " VALUES (%lld, '%s', 'k_%s', 'allowed', %lld) ON "
                       "CONFLICT (start, account_id, key_id, code) DO UPDATE "
                       "SET count = count + excluded.count", table,
                       (long long)start, acct, acct, (long long)count);
    char *err = NULL;
    ck_assert_msg(sqlite3_exec(raw, sql, NULL, NULL, &err) == SQLITE_OK, "%s: %s",
                  sql, err);
    free(sql);
}

/* A minute's count: in its minute row and its hour row (the store adds
 * a row to every coarser table). */
static void minute(int64_t start, const char *acct, int64_t count)
{
    add("keygate_usage_minute", start, acct, count);
    add("keygate_usage_hour", start - start % 3600, acct, count);
}

/* `days` days of hour rows of the three accounts before the current
 * hour, and this hour's minutes before the feed's start: the flat one's
 * 1200 (4x its hour 0), the growing one's 627 (2.6x its mean), 300 of
 * the steady one. */
static void history(int days)
{
    int64_t (*const fn[3])(int, int) = { flat, growing, steady };
    static const char *const name[3] = { "flat", "growing", "steady" };
    int a, d, h;

    ck_assert_int_eq(sqlite3_open(db, &raw), SQLITE_OK);
    sqlite3_busy_timeout(raw, 5000);
    ck_assert_int_eq(sqlite3_exec(raw, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
    for (a = 0; a < 3; a++)
        for (d = days; d >= 1; d--)
            for (h = 0; h < 24; h++)
                add("keygate_usage_hour", H0 - (int64_t)d * 86400 +
                    (int64_t)h * 3600, name[a], fn[a](d, h));
    minute(H0 + 60, "flat", 1000);
    minute(H0 + 1200, "flat", 200);
    minute(H0 + 120, "growing", 627);
    minute(H0 + 600, "steady", 300);
    ck_assert_int_eq(sqlite3_exec(raw, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(raw);
}

/* ---- the evaluator ---------------------------------------------------- */

/* Seed until done, `pages` a call; the number of calls. */
static int seed(kg_policy *p, size_t pages, size_t *rows_r)
{
    int done = 0, calls = 0;
    size_t rows, total = 0;
    kg_diag d;
    while (!done) {
        ck_assert_msg(kg_alerts_seed(al, p, CUT, pages, &rows, &done, &d) == KG_OK,
                      "%s", d.message);
        total += rows;
        ck_assert_int_lt(++calls, 1000);
    }
    if (rows_r != NULL)
        *rows_r = total;
    return calls;
}

/* One alert written by this round, and `want` in the outbox. */
static void fires(kg_policy *p, const char *want)
{
    struct listing l;
    ck_assert_uint_eq(run(p), 1);
    l = listing();
    ck_assert_msg(strstr(l.text, want) != NULL, "%s", l.text);
}

/* What keygated's feed reads after the seeding: the minutes from CUT. */
static void live(const char *acct, int64_t count)
{
    char *k = tu_fmt("k_%s", acct);
    ck_assert_int_eq(kg_alerts_observe_count(al, acct, k, CUT + 60,
                                             KG_CODE_NONE, count), KG_OK);
    free(k);
}

START_TEST(test_seeded_spike_fires_once_flat_and_growing_quiet)
{
    kg_policy *p = policy(spike_rule);
    struct listing l;
    size_t rows;

    history(7);
    /* keygated started again: a fresh evaluator seeds from the store,
     * then feeds what the flusher writes from CUT on. */
    seed(p, 1000, &rows);
    /* 3 accounts x 168 hours (7 days back from H0 is the oldest whole
     * hour a baseline reads) and this hour's 4 minute rows. */
    ck_assert_uint_eq(rows, 3 * 168 + 4);
    live("steady", 201);
    live("flat", 10);
    fires(p, "\"requests\":501,\"baseline\":100.0,\"factor\":5,"
          "\"over\":3600,\"baseline_days\":7");
    l = listing();
    ck_assert_uint_eq(l.n, 1);
    ck_assert_msg(strstr(l.text, "alert.fired spike ops steady") != NULL, "%s", l.text);
    /* Once. */
    live("steady", 500);
    ck_assert_uint_eq(run(p), 0);
    /* The flat one past 5x its hour 0 (1210 + 291 > 1500) fires too:
     * its baseline is its own hour 0, 300, not its mean hour. */
    live("flat", 291);
    fires(p, "\"requests\":1501,\"baseline\":300.0");
    kg_policy_free(p);
}
END_TEST

START_TEST(test_without_seeding_nothing_fires)
{
    kg_policy *p = policy(spike_rule);

    history(7);
    /* The evaluator as it was before seeding: only what is fed. */
    ck_assert_uint_eq(run(p), 0);
    live("steady", 501);
    live("flat", 1501);
    ck_assert_uint_eq(run(p), 0);
    ck_assert_uint_eq(listing().n, 0);
    kg_policy_free(p);
}
END_TEST

/* Seeding page by page, evaluating between pages: the baseline is
 * exact over the days read so far (a day of the steady account's 100s,
 * not 100 over seven days). */
START_TEST(test_seeding_in_pages_is_exact_meanwhile)
{
    kg_policy *p = policy(spike_rule);
    size_t rows;
    int done = 0, i;
    kg_diag d;

    history(7);
    /* The hour in progress, then a day of hours. */
    for (i = 0; i < 25; i++) {
        ck_assert_int_eq(kg_alerts_seed(al, p, CUT, 1, &rows, &done, &d), KG_OK);
        ck_assert_int_eq(done, 0);
    }
    live("steady", 201);
    fires(p, "\"baseline\":100.0,\"factor\":5,\"over\":3600,\"baseline_days\":1");
    /* The rest: 169 pages in all (the hour in progress, 168 hours).
     * `until` is the first call's: a later one does not move it. */
    i = 25;
    while (!done) {
        ck_assert_int_eq(kg_alerts_seed(al, p, CUT + 3600, 1, &rows, &done, &d),
                         KG_OK);
        i++;
    }
    ck_assert_int_eq(i, 169);
    /* Done: a call reads nothing more. */
    ck_assert_int_eq(kg_alerts_seed(al, p, CUT, 10, &rows, &done, &d), KG_OK);
    ck_assert_int_eq(done, 1);
    ck_assert_uint_eq(rows, 0);
    kg_policy_free(p);
}
END_TEST

/* Shorter periods than an hour: older hours are spread evenly over
 * their quarters (docs/alerts.md: the approximation), the hour in
 * progress is read from its minutes. */
START_TEST(test_quarter_hours_from_hour_rows)
{
    kg_policy *p = policy(
        "  - {name: spike, when: {spike: {factor: 5, over: 15m, baseline: 2d, min_requests: 100}}, notify: [ops]}\n");

    history(7);
    seed(p, 1000, NULL);
    /* 00:30-00:45: the steady account's hours are 100, 25 a quarter;
     * 126 is more than 5x. */
    live("steady", 126);
    fires(p, "\"requests\":126,\"baseline\":25.0,\"factor\":5,\"over\":900,"
          "\"baseline_days\":2");
    kg_policy_free(p);
}
END_TEST

/* A reload that changes the spike rules starts their state afresh:
 * seeded again.  One that does not keeps it (nothing to read). */
START_TEST(test_reload_seeds_again)
{
    kg_policy *p = policy(spike_rule), *q;
    size_t rows;

    history(7);
    seed(p, 1000, &rows);
    ck_assert_uint_gt(rows, 0);
    q = policy(spike_rule);
    ck_assert_int_eq(seed(q, 1000, &rows), 1);
    ck_assert_uint_eq(rows, 0);
    kg_policy_free(q);
    q = policy("  - {name: spike, when: {spike: {factor: 4, over: 1h, baseline: 7d, min_requests: 100}}, notify: [ops]}\n");
    seed(q, 1000, &rows);
    ck_assert_uint_eq(rows, 3 * 168 + 4);
    live("steady", 101);
    fires(q, "\"requests\":401,\"baseline\":100.0,\"factor\":4");
    kg_policy_free(q);
    kg_policy_free(p);
}
END_TEST

/* A store that fails a page: the error is returned, the page read again
 * by the next call; once it answers, every row counts once. */
START_TEST(test_store_error_reads_the_page_again)
{
    kg_policy *p = policy(spike_rule);
    size_t rows, total = 0;
    int done = 0, i;
    kg_diag d;

    history(7);
    for (i = 0; i < 10; i++) {
        ck_assert_int_eq(kg_alerts_seed(al, p, CUT, 1, &rows, &done, &d), KG_OK);
        total += rows;
    }
    ck_assert_int_eq(sqlite3_open(db, &raw), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(raw, "ALTER TABLE keygate_usage_hour RENAME "
                                  "TO gone", NULL, NULL, NULL), SQLITE_OK);
    for (i = 0; i < 3; i++) {
        ck_assert_int_ne(kg_alerts_seed(al, p, CUT, 5, &rows, &done, &d), KG_OK);
        ck_assert_int_eq(done, 0);
        ck_assert_uint_eq(rows, 0);
        ck_assert_msg(d.message[0] != '\0', "no message");
    }
    ck_assert_int_eq(sqlite3_exec(raw, "ALTER TABLE gone RENAME TO "
                                  "keygate_usage_hour", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(raw);
    while (!done) {
        ck_assert_int_eq(kg_alerts_seed(al, p, CUT, 1000, &rows, &done, &d), KG_OK);
        total += rows;
    }
    ck_assert_uint_eq(total, 3 * 168 + 4);
    live("steady", 201);
    fires(p, "\"requests\":501,\"baseline\":100.0,\"factor\":5,"
          "\"over\":3600,\"baseline_days\":7");
    kg_policy_free(p);
}
END_TEST

/* per: key: the history is seeded per key, the alert names it. */
START_TEST(test_per_key)
{
    kg_policy *p = policy(
        "  - {name: spike, when: {spike: {factor: 5, over: 1h, baseline: 7d, min_requests: 100, per: key}}, notify: [ops]}\n");

    history(7);
    seed(p, 1000, NULL);
    live("steady", 201);
    fires(p, "\"key\":{\"id\":\"k_steady\"");
    ck_assert_msg(strstr(listing().text, "\"baseline\":100.0") != NULL, "%s",
                  listing().text);
    kg_policy_free(p);
}
END_TEST

/* Other rules beside the spike rule (whose `over` is 0) are passed
 * over (UBSan found the seeding dividing by theirs). */
START_TEST(test_other_rules_beside)
{
    kg_policy *p = policy(
        "  - {name: quota-80, when: {quota: 80%}, notify: [ops]}\n"
        "  - {name: denials, when: {denied: {codes: [unauthorized], count: 5, within: 5m}}, notify: [ops]}\n"
        "  - {name: expiring, when: {key_expires_within: 7d}, notify: [ops]}\n"
        "  - {name: spike, when: {spike: {factor: 5, over: 1h, baseline: 7d, min_requests: 100}}, notify: [ops]}\n");
    size_t rows;

    history(7);
    seed(p, 1000, &rows);
    ck_assert_uint_eq(rows, 3 * 168 + 4);
    live("steady", 201);
    fires(p, "\"requests\":501,\"baseline\":100.0,\"factor\":5,"
          "\"over\":3600,\"baseline_days\":7");
    kg_policy_free(p);
}
END_TEST

/* A policy without a usage store has nothing to seed from: done. */
START_TEST(test_no_store_is_done)
{
    kg_policy *p = tu_policyf(ctx,
        "credential: [{module: bearer}]\n"
        "keystore: [{module: file, options: {path: %s}}]\n"
        "plans: {free: {}}\n"
        "notifiers:\n"
        "  log: {module: log, options: {path: /dev/null}}\n"
        "alerts:\n"
        "  - {name: spike, when: {spike: {factor: 5}}, notify: [log]}\n", keyfile);
    size_t rows = 9;
    int done = 0;
    kg_diag d;
    ck_assert_int_eq(kg_alerts_seed(al, p, CUT, 1, &rows, &done, &d), KG_OK);
    ck_assert_int_eq(done, 1);
    ck_assert_uint_eq(rows, 0);
    kg_policy_free(p);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("alerts_seed");
    TCase *tc = tcase_create("seed");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_seeded_spike_fires_once_flat_and_growing_quiet);
    tcase_add_test(tc, test_without_seeding_nothing_fires);
    tcase_add_test(tc, test_seeding_in_pages_is_exact_meanwhile);
    tcase_add_test(tc, test_quarter_hours_from_hour_rows);
    tcase_add_test(tc, test_reload_seeds_again);
    tcase_add_test(tc, test_store_error_reads_the_page_again);
    tcase_add_test(tc, test_per_key);
    tcase_add_test(tc, test_other_rules_beside);
    tcase_add_test(tc, test_no_store_is_done);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(suite());
}
