/*
 * bench/webhook - webhook signatures and verifications per second, per
 * scheme, for 1 KiB and 64 KiB payloads, beside OpenSSL's raw
 * HMAC-SHA256 (HMAC() one-shot on the same bytes with the same key
 * length): the floor an HMAC scheme cannot beat.  The goal is an HMAC
 * scheme within 1.3x of the raw HMAC time at 64 KiB.
 *
 *   make run-bench-webhook   (or: KEYGATE_PLUGIN_PATH=plugins bench/webhook [seconds])
 *
 * On a shared machine the load comes and goes, so the raw HMAC is timed
 * again beside every scheme, interleaved with it (raw, sign, verify, 5
 * rounds of `seconds` each, default 0.2), and each figure is the best
 * of its rounds.  Single-threaded.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <keygate/webhook.h>

static double run_seconds = 0.2;
#define ROUNDS 5

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef int (*op_fn)(void *arg);

/* Operations per second in one timed run. */
static double rate(op_fn fn, void *arg)
{
    double t0 = now_s(), t;
    long n = 0;
    do {
        int i;
        for (i = 0; i < 16; i++)
            if (fn(arg) != 0) {
                fprintf(stderr, "bench: operation failed\n");
                exit(1);
            }
        n += 16;
        t = now_s() - t0;
    } while (t < run_seconds);
    return n / t;
}

static void best(double *b, double v)
{
    if (v > *b)
        *b = v;
}

struct job {
    const kg_webhook_signer *s;
    kg_webhook_secrets *sec;
    kg_webhook_secrets *vsec;    /* what the receiver holds */
    kg_webhook_headers *out;     /* sign writes here */
    kg_webhook_headers *in;      /* verify reads this */
    unsigned char *payload;
    size_t len;
    unsigned char key[32];
};

static int raw_hmac(void *arg)
{
    struct job *j = arg;
    unsigned char mac[32];
    unsigned int len = 0;
    return HMAC(EVP_sha256(), j->key, sizeof(j->key), j->payload, j->len,
                mac, &len) == NULL || len != 32;
}

static int do_sign(void *arg)
{
    struct job *j = arg;
    kg_webhook_message m = { "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", 1700000000,
                             j->payload, j->len };
    kg_webhook_headers_reset(j->out);
    return kg_webhook_sign(j->s, &m, j->sec, j->out, NULL) != KG_OK;
}

static int do_verify(void *arg)
{
    struct job *j = arg;
    kg_webhook_status st;
    return kg_webhook_verify(j->s, j->in, j->payload, j->len, j->vsec, 300,
                             1700000000, &st, NULL) != KG_OK;
}

int main(int argc, char **argv)
{
    static const size_t sizes[] = { 1024, 65536 };
    struct {
        const char *label, *scheme;
        int v1a;
    } schemes[] = {
        { "standard v1 (HMAC)", "standard", 0 },
        { "standard v1a (Ed25519)", "standard", 1 },
        { "github", "github", 0 },
        { "stripe", "stripe", 0 },
    };
    char v1[KG_WEBHOOK_SECRET_MAX], sk[KG_WEBHOOK_SECRET_MAX], pk[KG_WEBHOOK_SECRET_MAX];
    kg_context *ctx;
    size_t si, k;
    int fails = 0;

    if (argc > 1)
        run_seconds = atof(argv[1]) > 0 ? atof(argv[1]) : run_seconds;
    if (kg_context_new(&ctx) != KG_OK ||
        kg_webhook_secret_generate(KG_WEBHOOK_SECRET_V1, v1, sizeof(v1), NULL, 0) != KG_OK ||
        kg_webhook_secret_generate(KG_WEBHOOK_SECRET_V1A, sk, sizeof(sk), pk, sizeof(pk)) != KG_OK) {
        fprintf(stderr, "bench: setup failed\n");
        return 1;
    }
    printf("keygate %s webhook benchmark (%s), best of %d x %.1fs, one thread\n",
           kg_version(), OpenSSL_version(OPENSSL_VERSION), ROUNDS, run_seconds);
    printf("%-24s %7s %12s %12s %12s %9s %9s\n", "scheme", "payload",
           "raw HMAC/s", "sign/s", "verify/s", "sign/raw", "ver/raw");
    for (si = 0; si < sizeof(sizes) / sizeof(*sizes); si++) {
        struct job j;

        memset(&j, 0, sizeof(j));
        j.len = sizes[si];
        j.payload = malloc(j.len);
        for (k = 0; k < j.len; k++)
            j.payload[k] = (unsigned char)('a' + k % 26);
        memset(j.key, 7, sizeof(j.key));
        for (k = 0; k < sizeof(schemes) / sizeof(*schemes); k++) {
            kg_webhook_signer *s;
            kg_diag d;
            double raw = 0, sr = 0, vr = 0;
            int r;
            if (kg_webhook_signer_new(ctx, schemes[k].scheme, &s, &d) != KG_OK) {
                fprintf(stderr, "bench: %s: %s\n", schemes[k].scheme, d.message);
                return 1;
            }
            j.s = s;
            kg_webhook_secrets_new(&j.sec);
            kg_webhook_secrets_new(&j.vsec);
            kg_webhook_secrets_add(j.sec, schemes[k].v1a ? sk : v1,
                                   strlen(schemes[k].v1a ? sk : v1));
            kg_webhook_secrets_add(j.vsec, schemes[k].v1a ? pk : v1,
                                   strlen(schemes[k].v1a ? pk : v1));
            kg_webhook_headers_new(&j.out);
            kg_webhook_headers_new(&j.in);
            if (do_sign(&j) != 0) {
                fprintf(stderr, "bench: %s: cannot sign\n", schemes[k].label);
                return 1;
            }
            /* The receiver gets what the sender sent. */
            for (size_t h = 0; h < kg_webhook_headers_count(j.out); h++) {
                const char *n, *v;
                kg_webhook_headers_at(j.out, h, &n, &v);
                kg_webhook_headers_add(j.in, n, v);
            }
            if (do_verify(&j) != 0) {
                fprintf(stderr, "bench: %s: does not verify\n", schemes[k].label);
                return 1;
            }
            for (r = 0; r < ROUNDS; r++) {
                best(&raw, rate(raw_hmac, &j));
                best(&sr, rate(do_sign, &j));
                best(&vr, rate(do_verify, &j));
            }
            /* Time per operation relative to the raw HMAC's. */
            printf("%-24s %6zuK %12.0f %12.0f %12.0f %8.2fx %8.2fx\n",
                   schemes[k].label, j.len / 1024, raw, sr, vr, raw / sr,
                   raw / vr);
            if (!schemes[k].v1a && j.len == 65536 && (raw / sr > 1.3 || raw / vr > 1.3))
                fails++;
            kg_webhook_headers_free(j.out);
            kg_webhook_headers_free(j.in);
            kg_webhook_secrets_free(j.sec);
            kg_webhook_secrets_free(j.vsec);
            kg_webhook_signer_free(s);
        }
        free(j.payload);
    }
    printf("goal (HMAC schemes within 1.3x of raw HMAC at 64 KiB): %s\n",
           fails ? "MISSED" : "met");
    kg_context_free(ctx);
    return 0;
}
