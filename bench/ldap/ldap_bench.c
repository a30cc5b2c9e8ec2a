/*
 * bench/ldap/ldap_bench - uncached key lookups through the ldap store
 * against a local slapd (bench/ldap/run.sh starts it with N keys).
 *
 *   ldap_bench gen N KEYS_FILE LDIF_FILE
 *       make N keys: their plaintext (one a line) for the benchmark, and
 *       their entries (hashes only) for slapadd
 *   ldap_bench run URI KEYS_FILE [--seconds S] [--threads T] [--slapd-pid P]
 *       kg_check() with the header credential and the ldap store, no
 *       cache (every check is a directory search), for pool: 4 and
 *       pool: 0 (a connection and bind per lookup); prints lookups/s,
 *       p50, p90, p99 and max latency for each, and the CPU time per
 *       lookup of this process and (with --slapd-pid) of slapd
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <keygate/keygate.h>
#include <keygate/plugin.h>

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* CPU seconds used so far by this process, and by the slapd (its
 * /proc/PID/stat utime + stime; 0 if unknown).  On a busy machine wall
 * latency is mostly waiting for a CPU; CPU per lookup is what an idle
 * one would see. */
static double self_cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
           ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static long slapd_pid;

static double slapd_cpu(void)
{
    char path[64], buf[1024], *p;
    unsigned long ut = 0, st = 0;
    FILE *f;
    int i;

    if (slapd_pid <= 0)
        return 0;
    snprintf(path, sizeof(path), "/proc/%ld/stat", slapd_pid);
    if ((f = fopen(path, "r")) == NULL)
        return 0;
    if (fgets(buf, sizeof(buf), f) == NULL) {
        fclose(f);
        return 0;
    }
    fclose(f);
    p = strrchr(buf, ')');
    for (i = 0; p && i < 12; i++)  /* to field 14, utime */
        p = strchr(p + 1, ' ');
    if (p == NULL || sscanf(p, "%lu %lu", &ut, &st) != 2)
        return 0;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static int gen(long n, const char *keys_path, const char *ldif_path)
{
    FILE *k = fopen(keys_path, "w"), *l = fopen(ldif_path, "w");
    char key[KG_KEY_MAX], hex[2 * KG_HASH_LEN + 1];
    unsigned char h[KG_HASH_LEN];
    long i;

    if (k == NULL || l == NULL) {
        perror("ldap_bench gen");
        return 1;
    }
    for (i = 0; i < n; i++) {
        if (kg_key_generate("whizo", key, sizeof(key)) != KG_OK)
            return 1;
        kg_key_hash(key, strlen(key), h);
        kg_hash_to_hex(h, hex);
        fprintf(k, "%s\n", key);
        fprintf(l, "dn: apiKeyId=k_%08ld,ou=apikeys,dc=example,dc=com\n"
                   "objectClass: apiKey\napiKeyId: k_%08ld\napiKeyHash: %s\n"
                   "apiKeyPlan: pro\napiKeyStatus: active\napiKeyPrefix: %.8s\n"
                   "apiKeyPermission: scrape:read\napiKeyPermission: jobs:write\n"
                   "apiKeyAllowedCidr: 10.0.0.0/8\n\n", i, i, hex, key);
    }
    fclose(k);
    return fclose(l) != 0;
}

struct worker {
    const kg_policy *pol;
    char (*keys)[KG_KEY_MAX];
    size_t nkeys;
    unsigned seed;
    int64_t deadline;
    long checks, bad;
    int64_t *lat;
    size_t nlat, cap;
};

static void *run_worker(void *arg)
{
    struct worker *w = arg;
    kg_request *req;

    if (kg_request_new(&req) != KG_OK)
        return NULL;
    while (now_ns() < w->deadline) {
        size_t i = (size_t)rand_r(&w->seed) % w->nkeys;
        kg_decision *d = NULL;
        int64_t t0;

        kg_request_reset(req);
        kg_request_set_method(req, "GET");
        kg_request_set_path(req, "/v1/scrape");
        kg_request_set_client(req, "10.1.2.3");
        kg_request_add_header(req, "X-API-Key", w->keys[i]);
        t0 = now_ns();
        kg_check(w->pol, req, &d);
        if (w->nlat < w->cap)
            w->lat[w->nlat++] = now_ns() - t0;
        if (d == NULL || !kg_decision_allowed(d))
            w->bad++;
        kg_decision_free(d);
        w->checks++;
    }
    kg_request_free(req);
    return NULL;
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static int bench(kg_context *ctx, const char *uri, int pool, int threads,
                 double seconds, char (*keys)[KG_KEY_MAX], size_t nkeys)
{
    char yaml[2048];
    kg_policy *pol = NULL;
    kg_diag d;
    struct worker w[16];
    pthread_t th[16];
    int64_t *all, t0, el;
    double cpu0, cpu1, scpu0, scpu1;
    size_t nall = 0, i;
    long checks = 0, bad = 0;
    int t;

    snprintf(yaml, sizeof(yaml),
             "credential:\n"
             "  - {module: header, control: required}\n"
             "keystore:\n"
             "  - module: ldap\n"
             "    control: required\n"
             "    options:\n"
             "      uris: [%s]\n"
             "      bind_dn: cn=keygate,ou=services,dc=example,dc=com\n"
             "      bind_password: readpw\n"
             "      base_dn: ou=apikeys,dc=example,dc=com\n"
             "      scope: one\n"
             "      pool: %d\n"
             "plans:\n"
             "  pro:\n"
             "    priority: 2\n", uri, pool);
    if (kg_policy_load_string(ctx, yaml, "bench", &pol, &d) != KG_OK) {
        char buf[2048];
        fprintf(stderr, "ldap_bench: %s\n", kg_diag_format(&d, buf, sizeof(buf)));
        return 1;
    }
    for (t = 0; t < threads; t++) {
        memset(&w[t], 0, sizeof(w[t]));
        w[t].pol = pol;
        w[t].keys = keys;
        w[t].nkeys = nkeys;
        w[t].seed = 12345u + (unsigned)t * 7919u;
        w[t].cap = (size_t)(seconds * 200000) + 1000;
        w[t].lat = malloc(w[t].cap * sizeof(int64_t));
        if (w[t].lat == NULL)
            return 1;
    }
    cpu0 = self_cpu();
    scpu0 = slapd_cpu();
    t0 = now_ns();
    for (t = 0; t < threads; t++) {
        w[t].deadline = t0 + (int64_t)(seconds * 1e9);
        pthread_create(&th[t], NULL, run_worker, &w[t]);
    }
    for (t = 0; t < threads; t++)
        pthread_join(th[t], NULL);
    el = now_ns() - t0;
    cpu1 = self_cpu();
    scpu1 = slapd_cpu();
    for (t = 0; t < threads; t++) {
        checks += w[t].checks;
        bad += w[t].bad;
        nall += w[t].nlat;
    }
    all = malloc((nall + 1) * sizeof(int64_t));
    if (all == NULL)
        return 1;
    nall = 0;
    for (t = 0; t < threads; t++) {
        memcpy(all + nall, w[t].lat, w[t].nlat * sizeof(int64_t));
        nall += w[t].nlat;
        free(w[t].lat);
    }
    qsort(all, nall, sizeof(int64_t), cmp64);
    i = nall ? nall - 1 : 0;
    printf("pool %-2d threads %d: %6.0f lookups/s  p50 %6.3f  p90 %6.3f  "
           "p99 %6.3f  max %7.3f ms  (%ld lookups, %ld not allowed)\n",
           pool, threads, checks / (el / 1e9),
           nall ? all[nall / 2] / 1e6 : 0, nall ? all[(size_t)(nall * 0.90)] / 1e6 : 0,
           nall ? all[(size_t)(nall * 0.99)] / 1e6 : 0,
           nall ? all[i] / 1e6 : 0, checks, bad);
    if (checks > 0)
        printf("                    CPU per lookup: keygate %.0f us, slapd %.0f us\n",
               (cpu1 - cpu0) * 1e6 / checks,
               slapd_pid > 0 ? (scpu1 - scpu0) * 1e6 / checks : 0.0);
    fflush(stdout);
    free(all);
    kg_policy_free(pol);
    return bad != 0;
}

int main(int argc, char **argv)
{
    kg_context *ctx = NULL;
    char (*keys)[KG_KEY_MAX] = NULL;
    size_t nkeys = 0, cap = 0;
    double seconds = 5;
    int threads = 2, i, rc = 0;
    FILE *f;
    char line[256];

    if (argc == 5 && strcmp(argv[1], "gen") == 0)
        return gen(atol(argv[2]), argv[3], argv[4]);
    if (argc < 4 || strcmp(argv[1], "run") != 0) {
        fprintf(stderr, "usage: ldap_bench gen N KEYS LDIF | run URI KEYS "
                "[--seconds S] [--threads T]\n");
        return 2;
    }
    for (i = 4; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--seconds") == 0)
            seconds = atof(argv[i + 1]);
        else if (strcmp(argv[i], "--threads") == 0)
            threads = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--slapd-pid") == 0)
            slapd_pid = atol(argv[i + 1]);
    }
    if (threads < 1 || threads > 16)
        threads = 2;
    if ((f = fopen(argv[3], "r")) == NULL) {
        perror(argv[3]);
        return 2;
    }
    while (fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\n")] = '\0';
        if (strlen(line) >= KG_KEY_MAX)
            continue;  /* not a key */
        if (nkeys == cap) {
            cap = cap ? cap * 2 : 1024;
            keys = realloc(keys, cap * sizeof(*keys));
            if (keys == NULL)
                return 2;
        }
        memcpy(keys[nkeys++], line, strlen(line) + 1);
    }
    fclose(f);
    if (kg_context_new(&ctx) != KG_OK)
        return 2;
    printf("uncached lookups against %s, %zu keys, %.0fs per run\n", argv[2],
           nkeys, seconds);
    rc |= bench(ctx, argv[2], 4, 1, seconds, keys, nkeys);
    rc |= bench(ctx, argv[2], 4, threads, seconds, keys, nkeys);
    rc |= bench(ctx, argv[2], 0, 1, seconds, keys, nkeys);
    rc |= bench(ctx, argv[2], 0, threads, seconds, keys, nkeys);
    kg_context_free(ctx);
    free(keys);
    return rc;
}
