/*
 * check_alerts - the alerts: and notifiers: sections and the rule
 * evaluator, with the fake clock: every rule fires once per condition
 * and window and clears; the spike baseline's arithmetic (a flat
 * account, a growing one, a true spike); per-account overrides; the
 * outbox's sender and its backoff (docs/alerts.md).
 */
#include "alertstest.h"

/* The policy of the issue's shape, with `rules` as its alerts: list. */
static kg_policy *policy(const char *rules)
{
    char *log = tu_path(dir, "alerts.jsonl");
    kg_policy *p = tu_policyf(ctx,
        "credential: [{module: bearer}]\n"
        "keystore: [{module: file, options: {path: %s}}]\n"
        "plans:\n"
        "  free:\n"
        "    limit: [{module: fixed_window, options: {name: hour, count: 10, window: 1h}}]\n"
        "notifiers:\n"
        "  ops:\n"
        "    module: webhook\n"
        "    options: {url: \"http://127.0.0.1:9/keygate\", secret_file: %s, scheme: standard, timeout: 2s}\n"
        "  log:\n"
        "    module: log\n"
        "    options: {path: %s}\n"
        "alerts:\n%s", keyfile, secret, log, rules);
    free(log);
    return p;
}

/* ---- the policy ------------------------------------------------------ */

START_TEST(test_issue_shape_loads)
{
    kg_policy *p = policy(
        "  - {name: quota-80, when: {quota: 80%}, notify: [ops]}\n"
        "  - {name: quota-100, when: {quota: 100%}, notify: [ops, log]}\n"
        "  - {name: spike, when: {spike: {factor: 5, over: 1h, baseline: 7d, min_requests: 100}}, notify: [ops]}\n"
        "  - {name: denials, when: {denied: {codes: [unauthorized, ip_not_allowed], count: 20, within: 5m}}, notify: [ops]}\n"
        "  - {name: new-ip, when: {new_client_network: {prefix: 24}}, notify: [ops]}\n"
        "  - {name: expiring, when: {key_expires_within: 7d}, notify: [ops]}\n"
        "  - {name: unused, when: {key_unused_for: 90d}, notify: [log]}\n");
    const char *kind;
    char desc[256];

    ck_assert_uint_eq(kg_policy_alert_count(p), 7);
    ck_assert_uint_eq(kg_policy_notifier_count(p), 2);
    ck_assert_str_eq(kg_policy_alert(p, 2, &kind, desc, sizeof(desc)), "spike");
    ck_assert_str_eq(kind, "spike");
    ck_assert_msg(strstr(desc, "3600s above 5 x") != NULL, "%s", desc);
    ck_assert_str_eq(kg_policy_alert(p, 3, &kind, desc, sizeof(desc)), "denials");
    ck_assert_msg(strstr(desc, "unauthorized, ip_not_allowed") != NULL, "%s", desc);
    kg_policy_free(p);
}
END_TEST

/* Each bad input: a policy error at its line and column. */
static void bad(const char *notifier_opts, const char *rules, const char *want)
{
    kg_diag d;
    char buf[2048], *yaml;
    yaml = tu_fmt("credential: [{module: bearer}]\n"
                  "keystore: [{module: file, options: {path: %s}}]\n"
                  "plans: {free: {}}\n"
                  "notifiers:\n"
                  "  ops:\n"
                  "    module: webhook\n"
                  "    options: %s\n"
                  "alerts:\n%s", keyfile, notifier_opts, rules);
    ck_assert_int_eq(tu_policy_error(ctx, yaml, &d), KG_ERR_POLICY);
    kg_diag_format(&d, buf, sizeof(buf));
    ck_assert_msg(strstr(buf, want) != NULL, "wanted '%s' in: %s", want, buf);
    free(yaml);
}

START_TEST(test_policy_errors)
{
    char *ok = tu_fmt("{url: \"https://ops.example/k\", secret_file: %s}", secret);
    char *missing = tu_fmt("{url: \"https://ops.example/k\", secret_file: %s/nope}", dir);

    bad(ok, "  - {name: q, when: {quota: 80%}, notify: [ops], severity: high}\n",
        "bad.yaml:9:50: unknown key 'severity' in a rule");
    bad(ok, "  - {name: q, when: {quota: 120%}, notify: [ops]}\n",
        "bad.yaml:9:29: quota 120% is not a percentage from 1% to 100%");
    bad(ok, "  - {name: s, when: {spike: {factor: 5, within: 1h}}, notify: [ops]}\n",
        "bad.yaml:9:41: unknown key 'within' in spike");
    bad(ok, "  - {name: s, when: {spike: {over: 7m}}, notify: [ops]}\n",
        "over must divide a day");
    bad(ok, "  - {name: d, when: {denied: {codes: [nope]}}, notify: [ops]}\n",
        "unknown denial code 'nope'");
    bad(ok, "  - {name: q, when: {quota: 80%}, notify: [pager]}\n",
        "bad.yaml:9:44: rule 'q' notifies 'pager', which is not in notifiers:");
    bad(ok, "  - {name: q, when: {quota: 80%, spike: {}}, notify: [ops]}\n",
        "when must be a mapping of one condition");
    bad("{url: \"ftp://ops.example/k\"}", "  - {name: q, when: {quota: 80%}, notify: [ops]}\n",
        "bad.yaml:7:20: webhook: url must be an http:// or https:// URL");
    bad(missing, "  - {name: q, when: {quota: 80%}, notify: [ops]}\n",
        "bad.yaml:7:");
    bad(missing, "  - {name: q, when: {quota: 80%}, notify: [ops]}\n",
        "cannot read");
    free(ok);
    free(missing);
}
END_TEST

/* ---- quota ----------------------------------------------------------- */

START_TEST(test_quota_fires_once_and_clears)
{
    kg_policy *p = policy("  - {name: quota-80, when: {quota: 80%}, notify: [ops]}\n"
                          "  - {name: quota-100, when: {quota: 100%}, notify: [ops, log]}\n");
    struct listing l;
    int i;

    /* 2026-01-01T00:00:00Z: the hour's window. */
    for (i = 0; i < 7; i++)
        kg_decision_free(tu_check_key(p, key));
    ck_assert_int_eq(kg_alerts_observe_quotas(al, ctx), KG_OK);
    ck_assert_uint_eq(run(p), 0);
    kg_decision_free(tu_check_key(p, key));    /* 8 of 10 */
    ck_assert_int_eq(kg_alerts_observe_quotas(al, ctx), KG_OK);
    ck_assert_uint_eq(run(p), 1);
    l = listing();
    ck_assert_msg(strstr(l.text, "alert.fired quota-80 ops k_test") != NULL, "%s", l.text);
    ck_assert_msg(strstr(l.text, "\"used\":8,\"of\":10,\"percent\":80.0") != NULL, "%s", l.text);
    /* 9 of 10: the same window, nothing new; 10 of 10: quota-100, to both. */
    kg_decision_free(tu_check_key(p, key));
    kg_alerts_observe_quotas(al, ctx);
    ck_assert_uint_eq(run(p), 0);
    kg_decision_free(tu_check_key(p, key));
    kg_decision_free(tu_check_key(p, key));    /* denied: still 10 */
    kg_alerts_observe_quotas(al, ctx);
    ck_assert_uint_eq(run(p), 2);
    ck_assert_uint_eq(run(p), 0);
    /* Once by the evaluator itself, not only by the outbox's unique ids. */
    {
        kg_alerts_stats st;
        kg_alerts_stats_get(al, &st);
        ck_assert_uint_eq(st.fired, 2);
    }
    /* A new window: both clear, once. */
    tu_clock_advance(&clk, 3600);
    kg_decision_free(tu_check_key(p, key));
    kg_alerts_observe_quotas(al, ctx);
    ck_assert_uint_eq(run(p), 3);
    l = listing();
    ck_assert_msg(strstr(l.text, "alert.cleared quota-80 ops k_test") != NULL, "%s", l.text);
    ck_assert_uint_eq(run(p), 0);
    /* ... and fires again in that window at 8. */
    for (i = 0; i < 7; i++)
        kg_decision_free(tu_check_key(p, key));
    kg_alerts_observe_quotas(al, ctx);
    ck_assert_uint_eq(run(p), 1);
    kg_policy_free(p);
}
END_TEST

START_TEST(test_quota_override)
{
    kg_policy *p = policy("  - {name: quota-80, when: {quota: 80%}, notify: [ops]}\n");
    kg_alert_override o = { "k_test", "quota-80", 90, "https://customer.example/hook",
                            NULL };
    struct listing l;
    int i;

    ck_assert_int_eq(kg_alerts_set_overrides(al, &o, 1), KG_OK);
    for (i = 0; i < 8; i++)
        kg_decision_free(tu_check_key(p, key));
    kg_alerts_observe_quotas(al, ctx);
    ck_assert_uint_eq(run(p), 0);     /* 80% < the account's 90% */
    kg_decision_free(tu_check_key(p, key));
    kg_alerts_observe_quotas(al, ctx);
    /* The operator's notifier and the account's own URL. */
    ck_assert_uint_eq(run(p), 2);
    l = listing();
    ck_assert_msg(strstr(l.text, "\"threshold\":90") != NULL, "%s", l.text);
    /* Off for the account: -1. */
    o.threshold = -1;
    ck_assert_int_eq(kg_alerts_set_overrides(al, &o, 1), KG_OK);
    tu_clock_advance(&clk, 3600);
    for (i = 0; i < 10; i++)
        kg_decision_free(tu_check_key(p, key));
    kg_alerts_observe_quotas(al, ctx);
    ck_assert_uint_eq(run(p), 0);
    kg_policy_free(p);
}
END_TEST

/* ---- spike ----------------------------------------------------------- */

/* `per_hour(day, hour)` requests in each hour of `days` days before the
 * clock, then `now_count` in the current hour so far. */
static void feed(int days, int64_t (*per_hour)(int day, int hour),
                 int64_t now_count)
{
    int64_t now = kg_context_now(ctx) / 1000000, h0 = now - now % 3600;
    int d, h;
    for (d = days; d >= 1; d--)
        for (h = 0; h < 24; h++) {
            int64_t t = h0 - (int64_t)d * 86400 + (int64_t)h * 3600;
            ck_assert_int_eq(kg_alerts_observe_count(al, "acct_a", "k_a", t,
                                                     KG_CODE_NONE,
                                                     per_hour(d, h)), KG_OK);
        }
    if (now_count)
        ck_assert_int_eq(kg_alerts_observe_count(al, "acct_a", "k_a", h0,
                                                 KG_CODE_NONE, now_count), KG_OK);
}

static const char *spike_rule =
    "  - {name: spike, when: {spike: {factor: 5, over: 1h, baseline: 7d, min_requests: 100}}, notify: [ops]}\n";

START_TEST(test_spike_flat_account_is_quiet)
{
    kg_policy *p = policy(spike_rule);
    /* Its 00:00 hour is always 300: 1200 is 4x, not 5x. */
    tu_clock_set(&clk, TU_EPOCH_S + 10 * 86400 + 1800);
    run(p);
    feed(7, flat, 1200);
    ck_assert_uint_eq(run(p), 0);
    /* 1501 > 5 x 300 (but its other hours' 20 would make it 75x). */
    feed(0, flat, 301);
    ck_assert_uint_eq(run(p), 1);
    ck_assert_msg(strstr(listing().text, "\"requests\":1501,\"baseline\":300.0") != NULL,
                  "%s", listing().text);
    kg_policy_free(p);
}
END_TEST

START_TEST(test_spike_growing_account_is_quiet)
{
    kg_policy *p = policy(spike_rule);
    tu_clock_set(&clk, TU_EPOCH_S + 10 * 86400 + 600);
    run(p);
    /* The mean of 100 .. 482 is 245; today's 627 (30% more again) is
     * 2.6x: growth is not a spike. */
    feed(7, growing, 627);
    ck_assert_uint_eq(run(p), 0);
    ck_assert_uint_eq(listing().n, 0);
    kg_policy_free(p);
}
END_TEST

START_TEST(test_spike_fires_once_and_clears)
{
    kg_policy *p = policy(spike_rule);
    struct listing l;

    tu_clock_set(&clk, TU_EPOCH_S + 10 * 86400 + 600);
    run(p);
    feed(7, steady, 501);
    ck_assert_uint_eq(run(p), 1);
    l = listing();
    ck_assert_msg(strstr(l.text, "alert.fired spike ops acct_a") != NULL, "%s", l.text);
    ck_assert_msg(strstr(l.text, "\"requests\":501,\"baseline\":100.0,\"factor\":5,"
                          "\"over\":3600,\"baseline_days\":7") != NULL, "%s", l.text);
    /* More of it, and the next hour spiking too: still one alert. */
    feed(0, steady, 1000);
    ck_assert_uint_eq(run(p), 0);
    tu_clock_advance(&clk, 3600);
    feed(0, steady, 900);
    ck_assert_uint_eq(run(p), 0);
    /* An hour back to normal: over, said once. */
    tu_clock_advance(&clk, 3600);
    feed(0, steady, 90);
    ck_assert_uint_eq(run(p), 0);     /* the quiet hour is not over yet */
    tu_clock_advance(&clk, 3600);
    ck_assert_uint_eq(run(p), 1);
    ck_assert_msg(strstr(listing().text, "alert.cleared spike ops acct_a") != NULL,
                  "%s", listing().text);
    ck_assert_uint_eq(run(p), 0);
    kg_policy_free(p);
}
END_TEST

START_TEST(test_spike_needs_history_and_min_requests)
{
    kg_policy *p = policy(spike_rule);
    tu_clock_set(&clk, TU_EPOCH_S + 10 * 86400 + 600);
    run(p);
    /* A new account: no day behind it, no baseline, no alert. */
    feed(0, steady, 5000);
    ck_assert_uint_eq(run(p), 0);
    kg_policy_free(p);
    /* A tiny one: 2 a day, then 60 (30x) stays under min_requests. */
    kg_alerts_free(al);
    ck_assert_int_eq(kg_alerts_new(&al), KG_OK);
    p = policy(spike_rule);
    run(p);
    {
        int64_t now = kg_context_now(ctx) / 1000000, h0 = now - now % 3600;
        int d;
        for (d = 1; d <= 7; d++)
            kg_alerts_observe_count(al, "acct_a", "k_a", h0 - d * 86400,
                                    KG_CODE_NONE, 2);
        kg_alerts_observe_count(al, "acct_a", "k_a", h0, KG_CODE_NONE, 60);
    }
    ck_assert_uint_eq(run(p), 0);
    kg_policy_free(p);
}
END_TEST

/* ---- denied, new networks -------------------------------------------- */

START_TEST(test_denied_fires_once_and_clears)
{
    kg_policy *p = policy("  - {name: denials, when: {denied: {codes: [unauthorized, ip_not_allowed], count: 20, within: 5m}}, notify: [ops]}\n");
    int64_t t = TU_EPOCH_S + 86400;
    int i;

    tu_clock_set(&clk, t);
    run(p);
    kg_alerts_observe_count(al, "acct_a", "k_a", t, KG_CODE_RATE_LIMITED, 100);
    for (i = 0; i < 4; i++)
        kg_alerts_observe_count(al, "acct_a", "k_a", t + i * 60,
                                KG_CODE_IP_NOT_ALLOWED, 4);
    tu_clock_set(&clk, t + 200);
    ck_assert_uint_eq(run(p), 0);      /* 16, and 429s do not count */
    kg_alerts_observe_count(al, "acct_a", "k_a", t + 180, KG_CODE_UNAUTHORIZED, 4);
    ck_assert_uint_eq(run(p), 1);
    kg_alerts_observe_count(al, "acct_a", "k_a", t + 180, KG_CODE_UNAUTHORIZED, 50);
    ck_assert_uint_eq(run(p), 0);
    ck_assert_msg(strstr(listing().text, "\"denials\":20,\"count\":20,\"within\":300") != NULL,
                  "%s", listing().text);
    /* A restarted evaluator fed the same minutes again (keygated reads
     * back at start) writes the same alert: nothing new. */
    {
        kg_alerts *again;
        size_t n = 9;
        ck_assert_int_eq(kg_alerts_new(&again), KG_OK);
        kg_alerts_run(again, p, t + 200, kg_outbox_memory_ops(), box, &n, NULL);
        for (i = 0; i < 4; i++)
            kg_alerts_observe_count(again, "acct_a", "k_a", t + i * 60,
                                    KG_CODE_IP_NOT_ALLOWED, 4);
        kg_alerts_observe_count(again, "acct_a", "k_a", t + 180,
                                KG_CODE_UNAUTHORIZED, 54);
        ck_assert_int_eq(kg_alerts_run(again, p, t + 240, kg_outbox_memory_ops(),
                                       box, &n, NULL), KG_OK);
        ck_assert_uint_eq(n, 0);
        kg_alerts_free(again);
    }
    /* Five quiet minutes later: cleared. */
    tu_clock_set(&clk, t + 180 + 300);
    ck_assert_uint_eq(run(p), 1);
    ck_assert_msg(strstr(listing().text, "alert.cleared denials") != NULL, "%s",
                  listing().text);
    kg_policy_free(p);
}
END_TEST

START_TEST(test_new_client_network)
{
    kg_policy *p = policy("  - {name: new-ip, when: {new_client_network: {prefix: 24}}, notify: [ops]}\n");
    int64_t t = TU_EPOCH_S;

    run(p);
    /* The first day's networks are learned. */
    kg_alerts_observe_client(al, "acct_a", "k_a", "whizo_ab", t, "192.0.2.10");
    kg_alerts_observe_client(al, "acct_a", "k_a", "whizo_ab", t + 3600, "198.51.100.7");
    ck_assert_uint_eq(run(p), 0);
    /* Known ones stay quiet; a new /24 fires once. */
    kg_alerts_observe_client(al, "acct_a", "k_a", "whizo_ab", t + 2 * 86400, "192.0.2.99");
    kg_alerts_observe_client(al, "acct_a", "k_a", "whizo_ab", t + 2 * 86400, "203.0.113.5");
    ck_assert_uint_eq(run(p), 1);
    kg_alerts_observe_client(al, "acct_a", "k_a", "whizo_ab", t + 2 * 86400, "203.0.113.77");
    ck_assert_uint_eq(run(p), 0);
    ck_assert_msg(strstr(listing().text, "\"network\":\"203.0.113.0/24\"") != NULL,
                  "%s", listing().text);
    ck_assert_msg(strstr(listing().text, "\"prefix\":\"whizo_ab\"") != NULL,
                  "%s", listing().text);
    kg_policy_free(p);
}
END_TEST

/* ---- key rules ------------------------------------------------------- */

START_TEST(test_key_rules)
{
    char *rec1, *rec2, *text;
    kg_policy *p;
    char k2[KG_KEY_MAX];

    ck_assert_int_eq(kg_key_generate("whizo", k2, sizeof(k2)), KG_OK);
    /* Expires on the 5th; last used on 2025-09-01. */
    rec1 = tu_key_record("k_exp", key, "free", "    expires: 2026-01-05\n");
    rec2 = tu_key_record("k_old", k2, "free", "    created: 2025-08-01\n"
                         "    last_used: 2025-09-01\n");
    text = tu_fmt("keys:\n%s%s", rec1, rec2);
    tu_write(keyfile, text);
    p = policy("  - {name: expiring, when: {key_expires_within: 7d}, notify: [ops]}\n"
               "  - {name: unused, when: {key_unused_for: 90d}, notify: [log]}\n");
    ck_assert_uint_eq(run(p), 2);
    ck_assert_msg(strstr(listing().text, "alert.fired expiring ops") != NULL, "%s", listing().text);
    ck_assert_msg(strstr(listing().text, "alert.fired unused log") != NULL, "%s", listing().text);
    /* Listed again later: nothing new. */
    kg_alerts_set_key_interval(al, 1);
    tu_clock_advance(&clk, 60);
    ck_assert_uint_eq(run(p), 0);
    /* Used again: unused clears. */
    free(rec2);
    free(text);
    rec2 = tu_key_record("k_old", k2, "free", "    created: 2025-08-01\n"
                         "    last_used: 2026-01-01\n");
    text = tu_fmt("keys:\n%s%s", rec1, rec2);
    tu_write(keyfile, text);
    kg_policy_free(p);
    p = policy("  - {name: expiring, when: {key_expires_within: 7d}, notify: [ops]}\n"
               "  - {name: unused, when: {key_unused_for: 90d}, notify: [log]}\n");
    tu_clock_advance(&clk, 60);
    ck_assert_uint_eq(run(p), 1);
    ck_assert_msg(strstr(listing().text, "alert.cleared unused log") != NULL, "%s", listing().text);
    free(rec1);
    free(rec2);
    free(text);
    kg_policy_free(p);
}
END_TEST

/* ---- delivery -------------------------------------------------------- */

START_TEST(test_backoff)
{
    ck_assert_int_eq(kg_outbox_backoff(1, 0), 15);
    ck_assert_int_eq(kg_outbox_backoff(1, 0.999), 29);
    ck_assert_int_eq(kg_outbox_backoff(2, 0), 30);
    ck_assert_int_eq(kg_outbox_backoff(8, 0), 1800);
    ck_assert_int_eq(kg_outbox_backoff(30, 0.5), 2700);
}
END_TEST

START_TEST(test_send_retries_and_delivers)
{
    kg_policy *p = policy("  - {name: quota-100, when: {quota: 100%}, notify: [ops, log]}\n");
    char *log = tu_path(dir, "alerts.jsonl"), *text;
    size_t sent, failed, i;
    kg_alerts_stats st;
    int64_t now;
    kg_diag d;

    for (i = 0; i < 10; i++)
        kg_decision_free(tu_check_key(p, key));
    kg_alerts_observe_quotas(al, ctx);
    ck_assert_uint_eq(run(p), 2);
    now = kg_context_now(ctx) / 1000000;
    /* The log notifier delivers; the webhook's receiver (port 9) is down. */
    ck_assert_int_eq(kg_alerts_send_due(al, p, now, kg_outbox_memory_ops(), box,
                                        0, &sent, &failed, &d), KG_OK);
    ck_assert_uint_eq(sent, 1);
    ck_assert_uint_eq(failed, 0);
    text = tu_read(log);
    ck_assert_msg(strstr(text, "\"type\":\"alert.fired\"") != NULL, "%s", text);
    free(text);
    /* Not due again before its backoff ... */
    ck_assert_int_eq(kg_alerts_send_due(al, p, now + 14, kg_outbox_memory_ops(),
                                        box, 0, &sent, &failed, &d), KG_OK);
    ck_assert_uint_eq(sent + failed, 0);
    kg_alerts_stats_get(al, &st);
    ck_assert_uint_eq(st.attempts, 2);
    ck_assert_uint_eq(st.failures, 1);
    /* ... and given up after two days of it. */
    for (i = 0; i < 60; i++) {
        now += 3600;
        ck_assert_int_eq(kg_alerts_send_due(al, p, now, kg_outbox_memory_ops(),
                                            box, 0, &sent, &failed, &d), KG_OK);
        if (failed)
            break;
    }
    ck_assert_uint_eq(failed, 1);
    ck_assert_msg(i > 20, "gave up after %zu hours", i);
    {
        int64_t depth = -1;
        kg_outbox_memory_ops()->depth(box, &depth, &d);
        ck_assert_int_eq(depth, 0);
    }
    free(log);
    kg_policy_free(p);
}
END_TEST


/* ---- the durable outbox (the sql plugin's usage store, SQLite) -------- */

/* The usage store: SQLite in the test's folder, or the PostgreSQL of
 * tests/integration/test_postgres.sh when it sets
 * KG_TEST_PG_ALERTS_CONNINFO (a database of its own). */
static char *usage_opts(const char *db)
{
    const char *pg = getenv("KG_TEST_PG_ALERTS_CONNINFO");
    if (pg != NULL)
        return tu_fmt("{driver: postgresql, conninfo: '%s', password: '%s', "
                      "sslmode: disable}", pg, getenv("KG_TEST_PG_PASSWORD"));
    return tu_fmt("{url: \"sqlite://%s\"}", db);
}

static kg_policy *sql_policy(const char *db)
{
    char *log = tu_path(dir, "alerts.jsonl"), *uo = usage_opts(db);
    kg_policy *p = tu_policyf(ctx,
        "credential: [{module: bearer}]\n"
        "keystore: [{module: file, options: {path: %s}}]\n"
        "plans:\n"
        "  free:\n"
        "    limit: [{module: fixed_window, options: {name: hour, count: 10, window: 1h}}]\n"
        "usage: {module: sql, options: %s}\n"
        "notifiers:\n"
        "  ops: {module: webhook, options: {url: \"http://127.0.0.1:9/k\", secret_file: %s, timeout: 1s}}\n"
        "  log: {module: log, options: {path: %s}}\n"
        "alerts:\n"
        "  - {name: quota-80, when: {quota: 80%%}, notify: [ops, log]}\n",
        keyfile, uo, secret, log);
    free(log);
    free(uo);
    return p;
}

static int count_cb(const kg_outbox_entry *e, void *ud)
{
    struct listing *l = ud;
    size_t len = strlen(l->text);
    snprintf(l->text + len, sizeof(l->text) - len, "%s %s %s %d %d\n",
             e->notifier, e->msg_id, kg_outbox_state_name(e->state),
             e->attempts, e->last_status);
    l->n++;
    return 0;
}

static int ov_text(const kg_alert_override *o, void *ud)
{
    struct listing *l = ud;
    size_t len = strlen(l->text);
    snprintf(l->text + len, sizeof(l->text) - len, "%s %s %g %s %s\n",
             o->account_id, o->rule, o->threshold, o->url, o->secret_file);
    l->n++;
    return 0;
}

START_TEST(test_sql_outbox_survives_a_restart)
{
    char *db = tu_path(dir, "usage.db");
    const struct kg_outbox_ops *ops;
    void *store;
    kg_policy *p = sql_policy(db);
    struct listing before, after;
    size_t n, sent, failed;
    int64_t now = TU_EPOCH_S, depth;
    kg_diag d;
    int i;

    ck_assert_int_eq(kg_policy_outbox(p, &ops, &store, &d), KG_OK);
    for (i = 0; i < 8; i++)
        kg_decision_free(tu_check_key(p, key));
    ck_assert_int_eq(kg_alerts_run(al, p, now, ops, store, &n, &d), KG_OK);
    ck_assert_uint_eq(n, 2);
    memset(&before, 0, sizeof(before));
    ck_assert_int_eq(ops->list(store, -1, 0, 10, count_cb, &before, &d), KG_OK);
    ck_assert_uint_eq(before.n, 2);
    /* A restart: the evaluator forgets, the store does not.  The same
     * alert is written under the same ids: nothing new. */
    kg_policy_free(p);
    kg_alerts_free(al);
    ck_assert_int_eq(kg_alerts_new(&al), KG_OK);
    p = sql_policy(db);
    ck_assert_int_eq(kg_policy_outbox(p, &ops, &store, &d), KG_OK);
    kg_decision_free(tu_check_key(p, key));
    ck_assert_int_eq(kg_alerts_run(al, p, now + 5, ops, store, &n, &d), KG_OK);
    ck_assert_uint_eq(n, 0);
    ck_assert_int_eq(ops->depth(store, &depth, &d), KG_OK);
    ck_assert_int_eq(depth, 2);
    /* The sender resumes: log delivered, the webhook's receiver down. */
    ck_assert_int_eq(kg_alerts_send_due(al, p, now + 5, ops, store, 0, &sent,
                                        &failed, &d), KG_OK);
    ck_assert_uint_eq(sent, 1);
    memset(&after, 0, sizeof(after));
    ck_assert_int_eq(ops->list(store, -1, 0, 10, count_cb, &after, &d), KG_OK);
    ck_assert_msg(strstr(after.text, "log ") != NULL && strstr(after.text, " sent 1 0") != NULL,
                  "%s", after.text);
    ck_assert_msg(strstr(after.text, " pending 1 0") != NULL, "%s", after.text);
    ck_assert_int_eq(ops->depth(store, &depth, &d), KG_OK);
    ck_assert_int_eq(depth, 1);
    /* Its retry waits for its backoff. */
    ck_assert_int_eq(kg_alerts_send_due(al, p, now + 10, ops, store, 0, &sent,
                                        &failed, &d), KG_OK);
    ck_assert_uint_eq(sent + failed, 0);
    /* Per-account settings in the same store: put replaces, delete. */
    {
        kg_alert_override o = { "acct_a", "quota-80", 90, "https://c.example/h",
                                "/etc/keygate/a.secret" };
        struct listing ol;
        ck_assert_int_eq(ops->override_put(store, &o, &d), KG_OK);
        o.threshold = 95;
        ck_assert_int_eq(ops->override_put(store, &o, &d), KG_OK);
        memset(&ol, 0, sizeof(ol));
        ck_assert_int_eq(ops->override_list(store, ov_text, &ol, &d), KG_OK);
        ck_assert_str_eq(ol.text, "acct_a quota-80 95 https://c.example/h "
                         "/etc/keygate/a.secret\n");
        ck_assert_int_eq(kg_alerts_load_overrides(al, ops, store, &d), KG_OK);
        ck_assert_int_eq(ops->override_delete(store, "acct_a", "quota-80", &d), KG_OK);
        ck_assert_int_eq(ops->override_delete(store, "acct_a", "quota-80", &d),
                         KG_ERR_NOT_FOUND);
    }
    kg_policy_free(p);
    free(db);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("alerts");
    TCase *tc = tcase_create("policy");
    tcase_add_checked_fixture(tc, at_setup, at_teardown);
    tcase_add_test(tc, test_issue_shape_loads);
    tcase_add_test(tc, test_policy_errors);
    suite_add_tcase(s, tc);
    tc = tcase_create("rules");
    tcase_add_checked_fixture(tc, at_setup, at_teardown);
    tcase_add_test(tc, test_quota_fires_once_and_clears);
    tcase_add_test(tc, test_quota_override);
    tcase_add_test(tc, test_spike_flat_account_is_quiet);
    tcase_add_test(tc, test_spike_growing_account_is_quiet);
    tcase_add_test(tc, test_spike_fires_once_and_clears);
    tcase_add_test(tc, test_spike_needs_history_and_min_requests);
    tcase_add_test(tc, test_denied_fires_once_and_clears);
    tcase_add_test(tc, test_new_client_network);
    tcase_add_test(tc, test_key_rules);
    suite_add_tcase(s, tc);
    tc = tcase_create("delivery");
    tcase_add_checked_fixture(tc, at_setup, at_teardown);
    tcase_add_test(tc, test_backoff);
    tcase_add_test(tc, test_send_retries_and_delivers);
    tcase_add_test(tc, test_sql_outbox_survives_a_restart);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(suite());
}
