/*
 * bench/check - kg_check() in process on the Pro stack: bearer +
 * in-memory store (bench/memstore) + hour and day fixed windows +
 * concurrency with release, with 1,000 and 1,000,000 keys, on 1 and 2
 * threads.  Prints checks/s, p50/p99 latency, limiter-state memory per
 * key, and beside them the cost of one SHA-256 of a key (the floor).
 *
 * The limits are set high enough that every check is admitted, so the
 * full allow path (every stage, a lease taken and released) is measured.
 *
 * With --state-file, the limiter state is kept in that file (made
 * afresh for each key count, 256 MiB: up to about 240,000 keys; see
 * docs/limits-state.md) instead of the process's memory.
 *
 *   bench/check [--seconds S] [--big N] [--state-file PATH]
 *   bench/check --metering [--turns N] [--seconds S]
 *
 * --metering: the same check with usage metering off and on (a policy
 * with a usage: section on a store that discards, bench/usagenull,
 * flushed every second by a thread of its own as keygated does), in
 * turns in one process, 1000 keys; prints both checks per CPU-second
 * and what metering costs (issue 18: at most 5%).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <keygate/keygate.h>
#include <keygate/plugin.h>
#include <keygate/usage.h>

static double seconds = 2.0;
static const char *state_file;      /* NULL: the memory state */
/* One thread's p50 and checks per CPU-second, for the 1k/1M summary. */
static double last_p50_us, last_p99_us, last_rate;
/* The last run's checks per CPU-second and per second, any thread count. */
static double run_cpu_rate, run_wall_rate;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* CPU time of the calling thread: checks per CPU-second is what "on one
 * core" means, and it does not count the time another process had the
 * core (the wall-clock figure beside it does). */
static int64_t cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* How much of the process is on transparent huge pages (kB). */
static long thp_kb(void)
{
    FILE *f = fopen("/proc/self/smaps_rollup", "r");
    char line[256];
    long kb = 0;
    while (f && fgets(line, sizeof(line), f))
        if (sscanf(line, "AnonHugePages: %ld kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb;
}

static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, rss = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
            rss = 0;
        fclose(f);
    }
    return rss * (sysconf(_SC_PAGESIZE) / 1024);
}

struct worker {
    const kg_policy *pol;
    kg_context *ctx;
    char (*keys)[KG_KEY_MAX];
    size_t nkeys;
    unsigned seed;
    int64_t deadline;
    long checks, denied;
    int64_t cpu;       /* thread CPU time, ns */
    int64_t *lat;      /* sampled latencies, ns */
    size_t nlat, caplat;
};

static void *run(void *arg)
{
    struct worker *w = arg;
    kg_request *req;
    char auth[KG_KEY_MAX + 16];
    int64_t cpu0 = cpu_ns();
    size_t next = (size_t)rand_r(&w->seed) % w->nkeys;
    memcpy(auth, "Bearer ", 7);
    kg_request_new(&req);
    while (1) {
        int k;
        for (k = 0; k < 64; k++) {
            size_t i = next;
            kg_decision *d;
            int64_t t0 = 0;
            /* One check in 16 is timed, picked at random: a fixed stride
             * would alias with periodic work (a lease-id refill every
             * 512 checks is always or never timed). */
            int sample = (rand_r(&w->seed) & 15) == 0 && w->nlat < w->caplat;
            size_t klen = strlen(w->keys[i]);
            kg_request_reset(req);
            /* What a front end has in hand: the header, fresh from the
             * socket (so in cache; the next key is fetched ahead). */
            memcpy(auth + 7, w->keys[i], klen + 1);
            next = (size_t)rand_r(&w->seed) % w->nkeys;
            __builtin_prefetch(w->keys[next]);
            if (sample)
                t0 = now_ns();
            kg_request_add_header_n(req, "Authorization", 13, auth, 7 + klen);
            kg_request_set_method(req, "GET");
            kg_request_set_path(req, "/v1/scrape");
            kg_check(w->pol, req, &d);
            if (kg_decision_lease(d))
                kg_release(w->ctx, kg_decision_lease(d));
            if (!kg_decision_allowed(d))
                w->denied++;
            kg_decision_free(d);
            if (sample)
                w->lat[w->nlat++] = now_ns() - t0;
            w->checks++;
        }
        if (now_ns() > w->deadline)
            break;
    }
    w->cpu = cpu_ns() - cpu0;
    kg_request_free(req);
    return NULL;
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static void measure(const char *label, const kg_policy *pol, kg_context *ctx,
                    char (*keys)[KG_KEY_MAX], size_t nkeys, int threads)
{
    pthread_t t[8];
    struct worker w[8];
    int64_t start, *all;
    size_t nall = 0, i;
    long total = 0, denied = 0;
    int64_t cpu = 0;
    double el;

    memset(w, 0, sizeof(w));
    start = now_ns();
    for (i = 0; i < (size_t)threads; i++) {
        w[i].pol = pol;
        w[i].ctx = ctx;
        w[i].keys = keys;
        w[i].nkeys = nkeys;
        w[i].seed = (unsigned)(i * 7919 + 1);
        w[i].deadline = start + (int64_t)(seconds * 1e9);
        w[i].caplat = 4000000;
        w[i].lat = malloc(w[i].caplat * sizeof(int64_t));
        pthread_create(&t[i], NULL, run, &w[i]);
    }
    for (i = 0; i < (size_t)threads; i++) {
        pthread_join(t[i], NULL);
        total += w[i].checks;
        denied += w[i].denied;
        cpu += w[i].cpu;
        nall += w[i].nlat;
    }
    el = (double)(now_ns() - start) / 1e9;
    all = malloc((nall ? nall : 1) * sizeof(*all));
    nall = 0;
    for (i = 0; i < (size_t)threads; i++) {
        memcpy(all + nall, w[i].lat, w[i].nlat * sizeof(int64_t));
        nall += w[i].nlat;
        free(w[i].lat);
    }
    qsort(all, nall, sizeof(*all), cmp64);
    run_cpu_rate = cpu ? total / (cpu / 1e9) : 0;
    run_wall_rate = total / el;
    if (threads == 1) {
        last_p50_us = nall ? all[nall / 2] / 1000.0 : 0;
        last_p99_us = nall ? all[nall * 99 / 100] / 1000.0 : 0;
        last_rate = cpu ? total / (cpu / 1e9) : 0;
    }
    printf("%-24s %d thread%s %9.0f checks/s (%9.0f per CPU-s)  p50 %5.2f us  "
           "p99 %5.2f us  p99.9 %6.2f us%s\n",
           label, threads, threads > 1 ? "s" : " ", total / el,
           cpu ? total / (cpu / 1e9) : 0,
           nall ? all[nall / 2] / 1000.0 : 0, nall ? all[nall * 99 / 100] / 1000.0 : 0,
           nall ? all[nall * 999 / 1000] / 1000.0 : 0,
           denied ? " DENIED SOME" : "");
    free(all);
}

static const char *POLICY =
    "credential:\n"
    "  - {module: bearer, control: required}\n"
    "keystore:\n"
    "  - {module: memstore, control: required, options: {keys_file: %s}}\n"
    "plans:\n"
    "  pro:\n"
    "    limit:\n"
    "      - {module: fixed_window, control: requisite, options: {name: hour, count: 1000000000000, window: 1h}}\n"
    "      - {module: fixed_window, control: requisite, options: {name: day, count: 1000000000000, window: 1d}}\n"
    "      - {module: concurrency, control: requisite, options: {name: concurrency, count: 10}}\n";

/*
 * The other floor: one dependent load from memory, a random walk over a
 * buffer of `bytes` (on huge pages where the kernel gives them, as the
 * limiter state is).  A check at a million keys waits for at least one
 * such load: the record at its place in the store's record table and
 * the key's limiter slot at its home are fetched side by side; for a
 * key whose slot is not at its home (a third of them), the hint and
 * then the slot make two in a row.  So this says how far the 1M-key
 * figure can come down to the 1k-key one on this machine.
 */
static double load_ns(size_t bytes)
{
    size_t n = bytes / 64, i;
    size_t *perm;
    char *m;
    void *p;
    long steps = 2000000, k;
    int64_t t0;
    double r;

    m = mmap(NULL, n * 64, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED || (perm = malloc(n * sizeof(*perm))) == NULL)
        return 0;
#ifdef MADV_HUGEPAGE
    madvise(m, n * 64, MADV_HUGEPAGE);
#endif
    for (i = 0; i < n; i++)
        perm[i] = i;
    srand(7);
    for (i = n - 1; i > 0; i--) {
        size_t j = ((size_t)rand() * ((size_t)RAND_MAX + 1) + (size_t)rand()) % (i + 1), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    for (i = 0; i < n; i++)
        *(void **)(m + perm[i] * 64) = m + perm[(i + 1) % n] * 64;
    p = m + perm[0] * 64;
    t0 = now_ns();
    for (k = 0; k < steps; k++)
        p = *(void *volatile *)p;
    r = (double)(now_ns() - t0) / steps;
    free(perm);
    munmap(m, n * 64);
    return p ? r : 0;
}

/* nkeys new keys into keys[] and the file f (closed) at path, and the
 * bench's policy on that file into yaml. */
static void new_keys(char (*keys)[KG_KEY_MAX], size_t nkeys, FILE *f,
                     const char *path, char *yaml, size_t size)
{
    size_t i;
    for (i = 0; i < nkeys; i++) {
        kg_key_generate("whizo", keys[i], KG_KEY_MAX);
        fprintf(f, "%s\n", keys[i]);
    }
    fclose(f);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    snprintf(yaml, size, POLICY, path);   /* POLICY: one %s */
#pragma GCC diagnostic pop
}

static int one_size(size_t nkeys, double *floor_ns, double p50_r[3])
{
    /* The bench's own key list: on huge pages, so that fetching the next
     * key ahead is not dropped for a TLB miss (a front end has the key in
     * a fresh network buffer). */
    char (*keys)[KG_KEY_MAX] = mmap(NULL, nkeys * KG_KEY_MAX, PROT_READ | PROT_WRITE,
                                    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char path[] = "/tmp/kg-bench-XXXXXX", yaml[2048], label[64];
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "w");
    kg_context *ctx;
    kg_policy *pol;
    kg_diag d;
    size_t i;
    long rss0, rss1;
    int64_t t0;

    if ((void *)keys == MAP_FAILED)
        return 1;
#ifdef MADV_HUGEPAGE
    madvise(keys, nkeys * KG_KEY_MAX, MADV_HUGEPAGE);
#endif
    new_keys(keys, nkeys, f, path, yaml, sizeof(yaml));
    kg_context_new(&ctx);
    kg_context_set_limit_capacity(ctx, 4 * nkeys + 1024);
    if (state_file != NULL) {
        unlink(state_file);
        if (kg_context_set_state_file(ctx, state_file, (uint64_t)256 << 20, &d) != KG_OK) {
            fprintf(stderr, "bench: state file: %s\n", d.message);
            return 1;
        }
    }
    if (kg_policy_load_string(ctx, yaml, "bench", &pol, &d) != KG_OK) {
        fprintf(stderr, "bench: policy: %s\n", d.message);
        return 1;
    }
    unlink(path);
    if (floor_ns != NULL && *floor_ns == 0) {
        unsigned char h[KG_HASH_LEN];
        long n = 0;
        t0 = now_ns();
        for (n = 0; n < 2000000; n++)
            kg_key_hash(keys[n % nkeys], strlen(keys[0]), h);
        *floor_ns = (double)(now_ns() - t0) / n;
    }
    /* Touch every key once so that the limiter state is fully populated,
     * and measure what that state costs. */
    rss0 = rss_kb();
    {
        kg_request *req;
        char auth[KG_KEY_MAX + 16];
        kg_request_new(&req);
        for (i = 0; i < nkeys; i++) {
            kg_decision *dd;
            kg_request_reset(req);
            snprintf(auth, sizeof(auth), "Bearer %s", keys[i]);
            kg_request_add_header(req, "Authorization", auth);
            kg_check(pol, req, &dd);
            if (kg_decision_lease(dd))
                kg_release(ctx, kg_decision_lease(dd));
            kg_decision_free(dd);
        }
        kg_request_free(req);
    }
    rss1 = rss_kb();
    /* Once half its homes are taken, the limiter has a thread collapse
     * them into huge pages (core/hints.c): a one-time event of a second
     * or more, during which checks touching the pages being collapsed
     * wait.  The steady state is measured after it: wait until the
     * process's huge pages stop growing (at most 20 s). */
    {
        long was = -1, now = thp_kb();
        int64_t w0 = now_ns();
        while (now != was && now_ns() - w0 < 20000000000LL) {
            struct timespec ts = { 0, 200000000 };
            nanosleep(&ts, NULL);
            was = now;
            now = thp_kb();
        }
        if (now_ns() - w0 > 500000000LL)
            printf("(waited %.1f s for the huge-page collapse to settle)\n",
                   (double)(now_ns() - w0) / 1e9);
    }
    printf("%zu keys: limiter state %zu entries, %.0f bytes per key (3 limits), "
           "%.0f%% of the keys' slots at their home; "
           "process RSS %ld MiB, %ld MiB on huge pages\n",
           nkeys, kg_context_limit_entries(ctx),
           nkeys ? (double)(rss1 - rss0) * 1024 / nkeys : 0,
           nkeys ? 100.0 * (double)kg_context_stat(ctx, KG_STAT_LIMIT_SLOTS_AT_HOME) / (double)nkeys : 0,
           rss1 / 1024, thp_kb() / 1024);
    snprintf(label, sizeof(label), "kg_check, %zu keys", nkeys);
    measure(label, pol, ctx, keys, nkeys, 1);
    if (p50_r != NULL) {
        p50_r[0] = last_p50_us;
        p50_r[1] = last_rate;
        p50_r[2] = last_p99_us;
    }
    measure(label, pol, ctx, keys, nkeys, 2);
    kg_policy_free(pol);
    kg_context_free(ctx);
    for (i = 0; i < nkeys; i++)
        kg_wipe(keys[i], KG_KEY_MAX);
    munmap(keys, nkeys * KG_KEY_MAX);
    return 0;
}

/* ---- --metering: off and on, in turns ------------------------------- */

struct flusher {
    const kg_policy *pol;
    volatile int stop;
};

static void *flush_loop(void *arg)
{
    struct flusher *f = arg;
    while (!f->stop) {
        struct timespec ts = { 0, 100000000 };
        int i;
        for (i = 0; i < 10 && !f->stop; i++)
            nanosleep(&ts, NULL);
        kg_usage_flush(f->pol, NULL);
    }
    return NULL;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_d);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static int metering(size_t nkeys, int turns)
{
    char (*keys)[KG_KEY_MAX] = calloc(nkeys, KG_KEY_MAX);
    char path[] = "/tmp/kg-bench-XXXXXX", yaml[2048], on_yaml[2400];
    int fd = mkstemp(path), t, th;
    FILE *f = fdopen(fd, "w");
    kg_context *ctx;
    kg_policy *off, *on;
    kg_diag d;
    double cpu[2][2][64], wall[2][2][64];
    struct flusher fl;
    pthread_t ft;
    kg_usage_stats st;

    if (keys == NULL || f == NULL || turns < 1 || turns > 64)
        return 1;
    new_keys(keys, nkeys, f, path, yaml, sizeof(yaml));
    snprintf(on_yaml, sizeof(on_yaml), "%susage: {module: usagenull, "
             "flush_interval: 1s, sample: 1%%}\n", yaml);
    kg_context_new(&ctx);
    kg_context_set_limit_capacity(ctx, 4 * nkeys + 1024);
    if (kg_policy_load_string(ctx, yaml, "bench", &off, &d) != KG_OK ||
        kg_policy_load_string(ctx, on_yaml, "bench-usage", &on, &d) != KG_OK) {
        fprintf(stderr, "bench: policy: %s\n", d.message);
        return 1;
    }
    unlink(path);
    fl.pol = on;
    fl.stop = 0;
    pthread_create(&ft, NULL, flush_loop, &fl);
    printf("bench/check --metering: %zu keys, %d turns of %.1f s each, "
           "metering off and on in turns (usage store: usagenull, flushed "
           "every 1 s)\n", nkeys, turns, seconds);
    for (t = 0; t < turns; t++) {
        for (th = 1; th <= 2; th++) {
            /* Alternate which goes first, so that drift cancels. */
            int k;
            for (k = 0; k < 2; k++) {
                int which = (t + k) % 2;   /* 0 off, 1 on */
                measure(which ? "metering on" : "metering off",
                        which ? on : off, ctx, keys, nkeys, th);
                cpu[which][th - 1][t] = run_cpu_rate;
                wall[which][th - 1][t] = run_wall_rate;
            }
        }
    }
    fl.stop = 1;
    pthread_join(ft, NULL);
    kg_usage_flush(on, NULL);
    kg_usage_stats_get(ctx, &st);
    for (th = 1; th <= 2; th++) {
        double c0 = median(cpu[0][th - 1], turns), c1 = median(cpu[1][th - 1], turns);
        double w0 = median(wall[0][th - 1], turns), w1 = median(wall[1][th - 1], turns);
        printf("%d thread%s, medians of %d turns: off %.0f, on %.0f checks per CPU-s "
               "(metering costs %.1f%%); off %.0f, on %.0f checks/s (%.1f%%)\n",
               th, th > 1 ? "s" : "", turns, c0, c1, 100.0 * (1 - c1 / c0), w0, w1,
               100.0 * (1 - w1 / w0));
    }
    printf("flushes %llu, rows written %llu, events written %llu, dropped %llu\n",
           (unsigned long long)st.flushes, (unsigned long long)st.rows_written,
           (unsigned long long)st.events_written,
           (unsigned long long)(st.rows_dropped + st.events_dropped));
    kg_policy_free(on);
    kg_policy_free(off);
    kg_context_free(ctx);
    free(keys);
    return 0;
}

int main(int argc, char **argv)
{
    double floor_ns = 0, small[3] = { 0, 0, 0 }, large[3] = { 0, 0, 0 }, load;
    size_t big = 1000000;
    int i, meter = 0, turns = 5;
    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
            seconds = atof(argv[++i]);
        else if (!strcmp(argv[i], "--metering"))
            meter = 1;
        else if (!strcmp(argv[i], "--turns") && i + 1 < argc)
            turns = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--big") && i + 1 < argc)
            big = (size_t)atol(argv[++i]);
        else if (!strcmp(argv[i], "--state-file") && i + 1 < argc)
            state_file = argv[++i];
        else {
            fprintf(stderr, "usage: bench/check [--seconds S] [--big N] "
                    "[--state-file PATH]\n"
                    "       bench/check --metering [--turns N] [--seconds S]\n");
            return 2;
        }
    }
    if (meter)
        return metering(1000, turns);
    printf("bench/check: kg_check in process, Pro stack (bearer + memory store + "
           "hour + day + concurrency with release), %.1f s per run, %ld cores%s%s\n",
           seconds, sysconf(_SC_NPROCESSORS_ONLN),
           state_file ? "; limiter state in the file " : "",
           state_file ? state_file : "");
    if (one_size(1000, &floor_ns, small) != 0 || one_size(big, NULL, large) != 0)
        return 1;
    load = load_ns((size_t)512 << 20);
    printf("floor: one SHA-256 of a key (kg_key_hash): %.0f ns = %.0f hashes/s on one core\n",
           floor_ns, 1e9 / floor_ns);
    printf("floor: one dependent memory load, random over 512 MiB: %.0f ns "
           "(a check at %zu keys waits for one, or two in a row)\n", load, big);
    /* The record at its place, the slot at its home: one load, side by
     * side; two in a row for a key whose slot is elsewhere. */
    if (small[0] > 0 && small[1] > 0)
        printf("%zu keys vs 1000, one thread: p50 %.2fx, checks per CPU-s %.2fx slower; "
               "the same check plus 1 memory load would be %.2fx, plus 2 %.2fx\n", big,
               large[0] / small[0], small[1] / large[1],
               (small[0] + load / 1000.0) / small[0],
               (small[0] + 2 * load / 1000.0) / small[0]);
    /* The goals, as measured by this run (one thread). */
    if (small[0] > 0 && large[0] > 0)
        printf("goals (1 thread): >= 1,000,000 checks per CPU-s: %s (%.0f); "
               "p99 <= 2 us: %s at 1000 keys (%.2f), %s at %zu (%.2f); "
               "%zu keys within 1.5x of 1000: %s (p50 %.2fx)\n",
               small[1] >= 1e6 ? "met" : "missed", small[1],
               small[2] <= 2.0 ? "met" : "missed", small[2],
               large[2] <= 2.0 ? "met" : "missed", big, large[2], big,
               large[0] / small[0] <= 1.5 ? "met" : "missed", large[0] / small[0]);
    return 0;
}
