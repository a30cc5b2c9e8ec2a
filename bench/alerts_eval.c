/*
 * bench/alerts_eval - what evaluating 100,000 accounts' alert rules
 * costs keygated's alerts thread per minute of traffic (docs/alerts.md):
 * the seven rules of the issue on (quota, spike, denied, new networks,
 * key rules over a file store of one key), each account's minute row
 * fed as the thread feeds them (one row per account per minute, a
 * denial row for one in ten, a client address for one in a hundred),
 * a quota figure per account, then the rounds of a minute at the
 * default --alerts-interval of 5 s (12 rounds).  Two days of history
 * are fed first so that the spike rule has baselines to compute.
 * Prints the process CPU time per simulated minute, fed + evaluated.
 *
 *   bench/alerts_eval [ACCOUNTS]      (KEYGATE_PLUGIN_PATH: the plugins)
 *
 * Not a test: the figure depends on the machine.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <keygate/alerts.h>

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static const char policy_fmt[] =
    "credential: [{module: bearer}]\n"
    "keystore: [{module: file, options: {path: %s}}]\n"
    "plans: {free: {}}\n"
    "notifiers: {log: {module: log, options: {path: /dev/null}}}\n"
    "alerts:\n"
    "  - {name: quota-80, when: {quota: 80%%}, notify: [log]}\n"
    "  - {name: quota-100, when: {quota: 100%%}, notify: [log]}\n"
    "  - {name: spike, when: {spike: {factor: 5, over: 1h, baseline: 7d, min_requests: 100}}, notify: [log]}\n"
    "  - {name: denials, when: {denied: {codes: [unauthorized, ip_not_allowed], count: 20, within: 5m}}, notify: [log]}\n"
    "  - {name: new-ip, when: {new_client_network: {prefix: 24}}, notify: [log]}\n"
    "  - {name: expiring, when: {key_expires_within: 7d}, notify: [log]}\n"
    "  - {name: unused, when: {key_unused_for: 90d}, notify: [log]}\n";

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 100000, i;
    char dir[] = "/tmp/kg-bench-alerts.XXXXXX", path[256], *yaml;
    kg_context *ctx = NULL;
    kg_policy *p = NULL;
    kg_alerts *al = NULL;
    kg_outbox_memory *box = kg_outbox_memory_new();
    const struct kg_outbox_ops *ops = kg_outbox_memory_ops();
    kg_diag d;
    int64_t t0 = 1767225600 + 10 * 86400, m, now;
    double c0, c_feed = 0, c_eval = 0;
    char (*ids)[32];
    size_t written = 0, w;
    FILE *f;
    int r;

    if (mkdtemp(dir) == NULL)
        return 1;
    snprintf(path, sizeof(path), "%s/keys.yaml", dir);
    f = fopen(path, "w");
    fputs("keys: []\n", f);
    fclose(f);
    yaml = malloc(strlen(policy_fmt) + 256);
    snprintf(yaml, strlen(policy_fmt) + 256, policy_fmt, path);
    memset(&d, 0, sizeof(d));
    if (kg_context_new(&ctx) != KG_OK ||
        kg_policy_load_string(ctx, yaml, "bench.yaml", &p, &d) != KG_OK ||
        kg_alerts_new(&al) != KG_OK) {
        fprintf(stderr, "bench/alerts_eval: %s\n", d.message);
        return 1;
    }
    ids = malloc(n * sizeof(*ids));
    for (i = 0; i < n; i++)
        snprintf(ids[i], sizeof(ids[i]), "acct_%016zx", i);
    kg_alerts_run(al, p, t0 - 2 * 86400, ops, box, NULL, &d);   /* bind */
    /* Two days of history, one row per account per hour. */
    for (m = t0 - 2 * 86400; m < t0; m += 3600)
        for (i = 0; i < n; i++)
            kg_alerts_observe_count(al, ids[i], "", m, KG_CODE_NONE, 40);
    /* One minute, 12 rounds: what the thread does per minute. */
    for (r = 0; r < 3; r++) {
        double feed = 0, eval = 0;
        int64_t minute = t0 + r * 60;
        c0 = cpu_now();
        for (i = 0; i < n; i++) {
            kg_alerts_observe_count(al, ids[i], "", minute, KG_CODE_NONE, 1);
            if (i % 10 == 0)
                kg_alerts_observe_count(al, ids[i], "", minute,
                                        KG_CODE_UNAUTHORIZED, 1);
            if (i % 100 == 0) {
                char addr[32];
                snprintf(addr, sizeof(addr), "10.%zu.%zu.7", (i >> 8) & 255,
                         i & 255);
                kg_alerts_observe_client(al, ids[i], "", "", minute, addr);
            }
            kg_alerts_observe_quota(al, ids[i], "hour", 1000, 300 + r,
                                    (minute / 3600 + 1) * 3600, 3600);
        }
        feed = cpu_now() - c0;
        c0 = cpu_now();
        for (now = minute; now < minute + 60; now += 5) {
            kg_alerts_run(al, p, now, ops, box, &w, &d);
            written += w;
        }
        eval = cpu_now() - c0;
        printf("minute %d: %zu accounts, feed %.3f s CPU, 12 rounds %.3f s CPU, "
               "total %.3f s CPU per minute\n", r + 1, n, feed, eval, feed + eval);
        c_feed += feed;
        c_eval += eval;
    }
    printf("mean over 3 minutes: %.3f s CPU per minute (feed %.3f, evaluate "
           "%.3f); %zu alerts written\n", (c_feed + c_eval) / 3, c_feed / 3,
           c_eval / 3, written);
    kg_alerts_free(al);
    kg_policy_free(p);
    kg_outbox_memory_free(box);
    kg_context_free(ctx);
    free(ids);
    free(yaml);
    unlink(path);
    rmdir(dir);
    return 0;
}
