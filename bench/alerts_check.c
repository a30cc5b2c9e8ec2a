/*
 * bench/alerts_check - kg_check() in process, with the seven
 * alert rules in the policy and without (docs/alerts.md): what the rules
 * add to the request path is the quota rules' watch of the limiters'
 * reports (core/alerts_quota.c); everything else runs in keygated's
 * alerts thread.  1,000 keys of a file store, an hour and a day fixed
 * window too large to deny, the same usage: section in both; the two
 * policies in turns (BENCH_ROUNDS, default 10, of 0.5 s each), CPU time
 * per check of the calling thread.  Prints each round and the median of
 * the ratios.  Not a test.
 *
 *   bench/alerts_check        (KEYGATE_PLUGIN_PATH: the plugins)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <keygate/keygate.h>
#include <keygate/plugin.h>

#define NKEYS 1000

static int64_t cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static const char base[] =
    "credential: [{module: bearer}]\n"
    "keystore: [{module: file, options: {path: %s/keys.yaml}}]\n"
    "plans:\n"
    "  free:\n"
    "    limit:\n"
    "      - {module: fixed_window, options: {name: hour, count: 1000000000, window: 1h}}\n"
    "      - {module: fixed_window, options: {name: day, count: 1000000000, window: 1d}}\n"
    "usage: {module: sql, options: {url: \"sqlite://%s/usage.db\"}}\n";
static const char rules[] =
    "notifiers: {log: {module: log, options: {path: /dev/null}}}\n"
    "alerts:\n"
    "  - {name: quota-80, when: {quota: 80%}, notify: [log]}\n"
    "  - {name: quota-100, when: {quota: 100%}, notify: [log]}\n"
    "  - {name: spike, when: {spike: {factor: 5, over: 1h, baseline: 7d, min_requests: 100}}, notify: [log]}\n"
    "  - {name: denials, when: {denied: {codes: [unauthorized], count: 20, within: 5m}}, notify: [log]}\n"
    "  - {name: new-ip, when: {new_client_network: {prefix: 24}}, notify: [log]}\n"
    "  - {name: expiring, when: {key_expires_within: 7d}, notify: [log]}\n"
    "  - {name: unused, when: {key_unused_for: 90d}, notify: [log]}\n";

static kg_request *reqs[NKEYS];

/* CPU ns per check over `secs` of checks. */
static double run(kg_policy *p, double secs)
{
    int64_t t0 = cpu_ns(), n = 0;
    while (cpu_ns() - t0 < (int64_t)(secs * 1e9)) {
        int i;
        for (i = 0; i < 1000; i++) {
            kg_decision *d = NULL;
            kg_check(p, reqs[(n + i) % NKEYS], &d);
            kg_decision_free(d);
        }
        n += 1000;
    }
    return (double)(cpu_ns() - t0) / (double)n;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(void)
{
    char dir[] = "/tmp/kg-bench-ac.XXXXXX", *yaml, path[300];
    kg_context *ctx;
    kg_policy *off = NULL, *on = NULL;
    kg_diag d;
    int rounds = getenv("BENCH_ROUNDS") ? atoi(getenv("BENCH_ROUNDS")) : 10, r, i;
    double ratio[64];
    FILE *f;

    if (mkdtemp(dir) == NULL || kg_context_new(&ctx) != KG_OK)
        return 1;
    snprintf(path, sizeof(path), "%s/keys.yaml", dir);
    f = fopen(path, "w");
    fputs("keys:\n", f);
    for (i = 0; i < NKEYS; i++) {
        char key[KG_KEY_MAX], hex[65], hdr[200];
        unsigned char h[KG_HASH_LEN];
        kg_key_generate("whizo", key, sizeof(key));
        kg_key_hash(key, strlen(key), h);
        kg_hash_to_hex(h, hex);
        fprintf(f, "  - {id: k_%04d, prefix: \"%.8s\", hash: %s, plan: free, "
                "status: active}\n", i, key, hex);
        kg_request_new(&reqs[i]);
        snprintf(hdr, sizeof(hdr), "Bearer %s", key);
        kg_request_add_header(reqs[i], "Authorization", hdr);
        kg_request_set_client(reqs[i], "198.51.100.7");
    }
    fclose(f);
    yaml = malloc(sizeof(base) + sizeof(rules) + 2 * sizeof(dir));
    sprintf(yaml, base, dir, dir);
    memset(&d, 0, sizeof(d));
    if (kg_policy_load_string(ctx, yaml, "off.yaml", &off, &d) != KG_OK) {
        fprintf(stderr, "off: %s\n", d.message);
        return 1;
    }
    strcat(yaml, rules);
    if (kg_policy_load_string(ctx, yaml, "on.yaml", &on, &d) != KG_OK) {
        fprintf(stderr, "on: %s\n", d.message);
        return 1;
    }
    run(off, 0.3);
    run(on, 0.3);
    if (rounds > 64)
        rounds = 64;
    printf("kg_check, %d keys, CPU ns per check of one thread\n", NKEYS);
    for (r = 0; r < rounds; r++) {
        double a, b;
        if (r % 2) {
            b = run(on, 0.5);
            a = run(off, 0.5);
        } else {
            a = run(off, 0.5);
            b = run(on, 0.5);
        }
        ratio[r] = b / a;
        printf("round %2d: off %7.0f ns  on %7.0f ns  on/off %.3f\n", r + 1, a, b,
               ratio[r]);
    }
    qsort(ratio, (size_t)rounds, sizeof(double), cmp);
    printf("median on/off: %.3f\n", ratio[rounds / 2]);
    kg_policy_free(on);
    kg_policy_free(off);
    kg_context_free(ctx);
    return 0;
}
