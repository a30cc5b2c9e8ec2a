/*
 * kg_hammer - a test and benchmark driver for limiter backends: loads a
 * policy into one context and runs kg_check() for API keys from many
 * threads at once, on commands read from standard input, so that a test
 * can stop and start a server between two rounds in the same process.
 *
 *   kg_hammer POLICY KEY...
 *   stdin:  check K N T [hold|nolease]   N checks of key number K (from
 *                                0) spread over T threads; leases are
 *                                released at once unless `hold`;
 *                                `nolease`: the requests ask for none
 *                                (kg_request_set_no_lease)
 *           bench K N T          the same, timing each check
 *           release              release every held lease
 *           oom SIZE             from now on every malloc() of exactly
 *                                SIZE bytes fails (0: none); answers
 *                                oom=SIZE, or oom=unsupported in a
 *                                sanitizer build (its malloc is its own)
 *           quit
 *   stdout: one line per command:
 *           allowed=A limited=L unavailable=U other=O backend_errors=E
 *           fail_open=F fail_local=C failed_allocs=M max_retry=R
 *           (R: the largest Retry-After of the round's 429s; bench adds: seconds=S per_second=R p50_us=X p99_us=Y)
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <keygate/keygate.h>

/* Allocations of fail_size bytes fail while it is not 0 (and are
 * counted): how the test reaches the out-of-memory paths of a Redis
 * batch.  Not in a sanitizer build, whose malloc must stay its own. */
static atomic_size_t fail_size;
static atomic_long failed_allocs;
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
#define HAMMER_OOM 1
extern void *__libc_malloc(size_t size);

__attribute__((visibility("default")))
void *malloc(size_t size)
{
    size_t f = atomic_load_explicit(&fail_size, memory_order_relaxed);
    if (f != 0 && size == f) {
        atomic_fetch_add(&failed_allocs, 1);
        errno = ENOMEM;
        return NULL;
    }
    return __libc_malloc(size);
}
#endif

struct round {
    kg_policy *policy;
    kg_context *ctx;
    const char *header;
    long n, next_index;
    int hold, bench, nolease;
    atomic_long next;
    atomic_long allowed, limited, unavailable, other, max_retry;
    int64_t *lat_us;
    pthread_mutex_t lock;
    char **leases;
    size_t nleases, leasecap;
};

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void keep_lease(struct round *r, const char *lease)
{
    pthread_mutex_lock(&r->lock);
    if (r->nleases == r->leasecap) {
        size_t cap = r->leasecap ? r->leasecap * 2 : 64;
        char **n = realloc(r->leases, cap * sizeof(*n));
        if (n == NULL) {
            pthread_mutex_unlock(&r->lock);
            return;
        }
        r->leases = n;
        r->leasecap = cap;
    }
    r->leases[r->nleases++] = strdup(lease);
    pthread_mutex_unlock(&r->lock);
}

/* The largest Retry-After seen in the round. */
static void note_retry(struct round *r, const kg_decision *d)
{
    const char *ra = kg_decision_header_value(d, "Retry-After");
    long v = ra ? strtol(ra, NULL, 10) : 0, m = atomic_load(&r->max_retry);
    while (v > m && !atomic_compare_exchange_weak(&r->max_retry, &m, v))
        ;
}

static void *worker(void *arg)
{
    struct round *r = arg;
    kg_request *req = NULL;
    long i;

    if (kg_request_new(&req) != KG_OK)
        return NULL;
    kg_request_set_method(req, "GET");
    kg_request_set_path(req, "/v1/scrape");
    kg_request_set_client(req, "127.0.0.1");
    kg_request_add_header(req, "Authorization", r->header);
    kg_request_set_no_lease(req, r->nolease);
    while ((i = atomic_fetch_add(&r->next, 1)) < r->n) {
        kg_decision *d = NULL;
        int64_t t0 = r->bench ? mono_us() : 0;
        if (kg_check(r->policy, req, &d) != KG_OK) {
            atomic_fetch_add(&r->other, 1);
            continue;
        }
        if (r->bench)
            r->lat_us[i] = mono_us() - t0;
        switch (kg_decision_status(d)) {
        case 200: atomic_fetch_add(&r->allowed, 1); break;
        case 429: atomic_fetch_add(&r->limited, 1); note_retry(r, d); break;
        case 503: atomic_fetch_add(&r->unavailable, 1); break;
        default: atomic_fetch_add(&r->other, 1); break;
        }
        if (kg_decision_lease(d) != NULL) {
            if (r->hold)
                keep_lease(r, kg_decision_lease(d));
            else
                kg_release(r->ctx, kg_decision_lease(d));
        }
        kg_decision_free(d);
    }
    kg_request_free(req);
    return NULL;
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static void run(struct round *r, long threads)
{
    pthread_t *t = calloc((size_t)threads, sizeof(*t));
    int64_t t0, t1;
    long i;

    atomic_store(&r->next, 0);
    atomic_store(&r->allowed, 0);
    atomic_store(&r->limited, 0);
    atomic_store(&r->unavailable, 0);
    atomic_store(&r->other, 0);
    atomic_store(&r->max_retry, 0);
    r->lat_us = r->bench ? calloc((size_t)r->n, sizeof(int64_t)) : NULL;
    t0 = mono_us();
    for (i = 0; i < threads; i++)
        pthread_create(&t[i], NULL, worker, r);
    for (i = 0; i < threads; i++)
        pthread_join(t[i], NULL);
    t1 = mono_us();
    printf("allowed=%ld limited=%ld unavailable=%ld other=%ld backend_errors=%llu "
           "fail_open=%llu fail_local=%llu failed_allocs=%ld max_retry=%ld",
           atomic_load(&r->allowed), atomic_load(&r->limited),
           atomic_load(&r->unavailable), atomic_load(&r->other),
           (unsigned long long)kg_context_stat(r->ctx, KG_STAT_LIMIT_BACKEND_ERRORS),
           (unsigned long long)kg_context_stat(r->ctx, KG_STAT_LIMIT_FAIL_OPEN),
           (unsigned long long)kg_context_stat(r->ctx, KG_STAT_LIMIT_FAIL_LOCAL),
           atomic_load(&failed_allocs), atomic_load(&r->max_retry));
    if (r->bench && r->n > 0) {
        double s = (double)(t1 - t0) / 1e6;
        qsort(r->lat_us, (size_t)r->n, sizeof(int64_t), cmp64);
        printf(" seconds=%.3f per_second=%.0f p50_us=%lld p99_us=%lld", s,
               (double)r->n / s, (long long)r->lat_us[r->n / 2],
               (long long)r->lat_us[(r->n * 99) / 100]);
    }
    printf("\n");
    fflush(stdout);
    free(r->lat_us);
    r->lat_us = NULL;
    free(t);
}

int main(int argc, char **argv)
{
    kg_context *ctx = NULL;
    kg_policy *policy = NULL;
    kg_diag diag;
    struct round r;
    char line[256], hdr[256];
    kg_error e;
    size_t i;

    if (argc < 3) {
        fprintf(stderr, "usage: kg_hammer POLICY KEY... < commands\n");
        return 2;
    }
    /* A Redis that goes away mid-write must not kill the process. */
    signal(SIGPIPE, SIG_IGN);
    memset(&diag, 0, sizeof(diag));
    if ((e = kg_context_new(&ctx)) != KG_OK ||
        (e = kg_policy_load_file(ctx, argv[1], &policy, &diag)) != KG_OK) {
        char buf[1600];
        fprintf(stderr, "kg_hammer: %s: %s\n", kg_strerror(e),
                kg_diag_format(&diag, buf, sizeof(buf)));
        kg_context_free(ctx);
        return 2;
    }
    memset(&r, 0, sizeof(r));
    r.policy = policy;
    r.ctx = ctx;
    pthread_mutex_init(&r.lock, NULL);
    while (fgets(line, sizeof(line), stdin) != NULL) {
        char cmd[16] = "", opt[16] = "";
        long k = 0, n = 0, threads = 1;
        if (sscanf(line, "%15s %ld %ld %ld %15s", cmd, &k, &n, &threads, opt) < 1)
            continue;
        if (strcmp(cmd, "quit") == 0)
            break;
        if (strcmp(cmd, "release") == 0) {
            long released = 0;
            for (i = 0; i < r.nleases; i++) {
                if (kg_release(ctx, r.leases[i]) == KG_OK)
                    released++;
                free(r.leases[i]);
            }
            r.nleases = 0;
            printf("released=%ld\n", released);
            fflush(stdout);
            continue;
        }
        if (strcmp(cmd, "oom") == 0) {
#ifdef HAMMER_OOM
            atomic_store(&fail_size, (size_t)(k > 0 ? k : 0));
            printf("oom=%ld\n", k > 0 ? k : 0);
#else
            printf("oom=unsupported\n");
#endif
            fflush(stdout);
            continue;
        }
        if ((strcmp(cmd, "check") != 0 && strcmp(cmd, "bench") != 0) || k < 0 ||
            k + 2 >= argc || n < 0 || threads < 1 || threads > 1024) {
            printf("error: bad command: %s", line);
            fflush(stdout);
            continue;
        }
        snprintf(hdr, sizeof(hdr), "Bearer %s", argv[2 + k]);
        r.header = hdr;
        r.n = n;
        r.hold = strcmp(opt, "hold") == 0;
        r.nolease = strcmp(opt, "nolease") == 0;
        r.bench = cmd[0] == 'b';
        run(&r, threads);
    }
    for (i = 0; i < r.nleases; i++)
        free(r.leases[i]);
    free(r.leases);
    kg_policy_free(policy);
    kg_context_free(ctx);
    return 0;
}
