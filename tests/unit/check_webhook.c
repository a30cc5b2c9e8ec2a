/*
 * check_webhook.c - webhook signers: the published test vectors, round
 * trips for every scheme, rotation, every failure reason, tampering,
 * tolerance edges, malformed headers, secrets and the policy's signers:.
 * Runs the real plugins from KEYGATE_PLUGIN_PATH.
 */
#include "config.h"

#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include <keygate/webhook.h>

#define SPEC_SECRET "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define SPEC_ID "msg_p5jXN8AQM9LWM0D4loKWxJek"
#define SPEC_TS 1614265330
#define SPEC_PAYLOAD "{\"test\": 2432232314}"
#define SPEC_SIG "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

#define GH_SECRET "It's a Secret to Everybody"
#define GH_SIG "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"

#define TS 1700000000

static kg_context *ctx;
static kg_webhook_signer *std_s, *gh_s, *st_s;
static kg_webhook_headers *hdr;

static void setup(void)
{
    kg_diag d;
    ck_assert_int_eq(kg_context_new(&ctx), KG_OK);
    ck_assert_msg(kg_webhook_signer_new(ctx, "standard", &std_s, &d) == KG_OK,
                  "%s", d.message);
    ck_assert_msg(kg_webhook_signer_new(ctx, "github", &gh_s, &d) == KG_OK,
                  "%s", d.message);
    ck_assert_msg(kg_webhook_signer_new(ctx, "stripe", &st_s, &d) == KG_OK,
                  "%s", d.message);
    ck_assert_int_eq(kg_webhook_headers_new(&hdr), KG_OK);
}

static void teardown(void)
{
    kg_webhook_headers_free(hdr);
    kg_webhook_signer_free(std_s);
    kg_webhook_signer_free(gh_s);
    kg_webhook_signer_free(st_s);
    kg_context_free(ctx);
}

/* A secrets list from up to four strings (NULL ends). */
static kg_webhook_secrets *secrets(const char *a, const char *b,
                                   const char *c, const char *d)
{
    const char *v[4] = { a, b, c, d };
    kg_webhook_secrets *s;
    int i;
    ck_assert_int_eq(kg_webhook_secrets_new(&s), KG_OK);
    for (i = 0; i < 4 && v[i] != NULL; i++)
        ck_assert_int_eq(kg_webhook_secrets_add(s, v[i], strlen(v[i])), KG_OK);
    return s;
}

static void sign(const kg_webhook_signer *s, const char *id, int64_t ts,
                 const void *payload, size_t len, kg_webhook_secrets *sec)
{
    kg_webhook_message m = { id, ts, payload, len };
    kg_diag d;
    kg_error e;
    kg_webhook_headers_reset(hdr);
    e = kg_webhook_sign(s, &m, sec, hdr, &d);
    ck_assert_msg(e == KG_OK, "sign: %s", d.message);
}

/* Verify hdr; returns the status, checks the error code agrees. */
static kg_webhook_status verify(const kg_webhook_signer *s, const void *payload,
                                size_t len, kg_webhook_secrets *sec,
                                int64_t tolerance, int64_t now)
{
    kg_webhook_status st = KG_WEBHOOK__LAST;
    kg_diag d;
    kg_error e = kg_webhook_verify(s, hdr, payload, len, sec, tolerance, now,
                                   &st, &d);
    if (st == KG_WEBHOOK_VALID)
        ck_assert_int_eq(e, KG_OK);
    else {
        ck_assert_int_eq(e, KG_ERR_VERIFY);
        ck_assert_msg(d.message[0] != '\0', "a failure without a reason");
    }
    return st;
}

/* Replace hdr by the given "Name: value" lines (NULL ends). */
static void set_headers(const char *const *lines)
{
    kg_webhook_headers_reset(hdr);
    for (; *lines != NULL; lines++)
        ck_assert_int_eq(kg_webhook_headers_add_line(hdr, *lines), KG_OK);
}

/* ---- vectors --------------------------------------------------------- */

START_TEST(test_spec_vector)
{
    kg_webhook_secrets *sec = secrets(SPEC_SECRET, NULL, NULL, NULL);
    sign(std_s, SPEC_ID, SPEC_TS, SPEC_PAYLOAD, strlen(SPEC_PAYLOAD), sec);
    ck_assert_str_eq(kg_webhook_headers_get(hdr, "webhook-id", NULL), SPEC_ID);
    ck_assert_str_eq(kg_webhook_headers_get(hdr, "webhook-timestamp", NULL),
                     "1614265330");
    ck_assert_str_eq(kg_webhook_headers_get(hdr, "webhook-signature", NULL),
                     SPEC_SIG);
    ck_assert_int_eq(verify(std_s, SPEC_PAYLOAD, strlen(SPEC_PAYLOAD), sec,
                            300, SPEC_TS), KG_WEBHOOK_VALID);
    /* The vector as a receiver gets it, headers written by hand. */
    {
        const char *h[] = { "Webhook-Id: " SPEC_ID,
                            "WEBHOOK-TIMESTAMP:1614265330 ",
                            "webhook-signature:   " SPEC_SIG, NULL };
        set_headers(h);
        ck_assert_int_eq(verify(std_s, SPEC_PAYLOAD, strlen(SPEC_PAYLOAD), sec,
                                300, SPEC_TS + 10), KG_WEBHOOK_VALID);
    }
    kg_webhook_secrets_free(sec);
}
END_TEST

START_TEST(test_github_vector)
{
    kg_webhook_secrets *sec = secrets(GH_SECRET, NULL, NULL, NULL);
    sign(gh_s, NULL, 0, "Hello, World!", 13, sec);
    ck_assert_uint_eq(kg_webhook_headers_count(hdr), 1);
    ck_assert_str_eq(kg_webhook_headers_get(hdr, "X-Hub-Signature-256", NULL),
                     GH_SIG);
    ck_assert_int_eq(verify(gh_s, "Hello, World!", 13, sec, 300, 1),
                     KG_WEBHOOK_VALID);
    ck_assert_int_eq(verify(gh_s, "Hello, World?", 13, sec, 300, 1),
                     KG_WEBHOOK_NO_MATCH);
    kg_webhook_secrets_free(sec);
}
END_TEST

/*
 * v1a with the RFC 8032 section 7.1 TEST 1 key over the spec vector's
 * content; the expected signature was computed with an independent
 * Ed25519 implementation (Python's cryptography).
 */
#define RFC_SK "whsk_nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A="
#define RFC_PK "whpk_11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
#define RFC_SIG "v1a,fldxM4gAKugP6nnt1hdz3sgGfZ6d99nzrMFnZOELIxbzEHoVmAb2ADpkJK7zgPePmPsle0zV9jSeGlHFG2NVAw=="

START_TEST(test_ed25519_vector)
{
    kg_webhook_secrets *sk = secrets(RFC_SK, NULL, NULL, NULL);
    kg_webhook_secrets *pk = secrets(RFC_PK, NULL, NULL, NULL);
    char pub[KG_WEBHOOK_SECRET_MAX];

    ck_assert_int_eq(kg_webhook_public_key(RFC_SK, pub, sizeof(pub)), KG_OK);
    ck_assert_str_eq(pub, RFC_PK);
    sign(std_s, SPEC_ID, SPEC_TS, SPEC_PAYLOAD, strlen(SPEC_PAYLOAD), sk);
    ck_assert_str_eq(kg_webhook_headers_get(hdr, "webhook-signature", NULL), RFC_SIG);
    ck_assert_int_eq(verify(std_s, SPEC_PAYLOAD, strlen(SPEC_PAYLOAD), pk, 300,
                            SPEC_TS), KG_WEBHOOK_VALID);
    kg_webhook_secrets_free(sk);
    kg_webhook_secrets_free(pk);
}
END_TEST

/* ---- round trips ----------------------------------------------------- */

static const char *payloads[] = { "", "x", "{\"a\":1}\n", "with\0nul", NULL };
static const size_t payload_len[] = { 0, 1, 8, 8 };

START_TEST(test_roundtrip_all)
{
    char v1[KG_WEBHOOK_SECRET_MAX], sk[KG_WEBHOOK_SECRET_MAX], pk[KG_WEBHOOK_SECRET_MAX];
    kg_webhook_secrets *sv1, *ssk, *spk;
    const kg_webhook_signer *all[3] = { std_s, gh_s, st_s };
    int i, j;

    ck_assert_int_eq(kg_webhook_secret_generate(KG_WEBHOOK_SECRET_V1, v1,
                                                sizeof(v1), NULL, 0), KG_OK);
    ck_assert_int_eq(kg_webhook_secret_generate(KG_WEBHOOK_SECRET_V1A, sk,
                                                sizeof(sk), pk, sizeof(pk)), KG_OK);
    sv1 = secrets(v1, NULL, NULL, NULL);
    ssk = secrets(sk, NULL, NULL, NULL);
    spk = secrets(pk, NULL, NULL, NULL);
    for (i = 0; payloads[i] != NULL; i++) {
        const char *p = payloads[i];
        size_t n = payload_len[i];
        for (j = 0; j < 3; j++) {
            sign(all[j], "msg_1", TS, p, n, sv1);
            ck_assert_int_eq(verify(all[j], p, n, sv1, 300, TS), KG_WEBHOOK_VALID);
            /* One byte more or less is another payload. */
            ck_assert_int_eq(verify(all[j], "y", 1, sv1, 300, TS),
                             n == 1 && p[0] == 'y' ? KG_WEBHOOK_VALID : KG_WEBHOOK_NO_MATCH);
        }
        /* v1a: signed with the secret key, verified with the public one. */
        sign(std_s, "msg_2", TS, p, n, ssk);
        ck_assert(strncmp(kg_webhook_headers_get(hdr, "webhook-signature", NULL),
                          "v1a,", 4) == 0);
        ck_assert_int_eq(verify(std_s, p, n, spk, 300, TS), KG_WEBHOOK_VALID);
        ck_assert_int_eq(verify(std_s, p, n, ssk, 300, TS), KG_WEBHOOK_VALID);
        ck_assert_int_eq(verify(std_s, "zz", 2, spk, 300, TS), KG_WEBHOOK_NO_MATCH);
    }
    /* Defaults: a generated id, the context's clock. */
    sign(std_s, NULL, 0, "p", 1, sv1);
    ck_assert(strncmp(kg_webhook_headers_get(hdr, "webhook-id", NULL), "msg_", 4) == 0);
    ck_assert_uint_eq(strlen(kg_webhook_headers_get(hdr, "webhook-id", NULL)),
                      KG_WEBHOOK_ID_LEN);
    ck_assert_int_eq(verify(std_s, "p", 1, sv1, KG_WEBHOOK_TOLERANCE_DEFAULT,
                            kg_context_now(ctx) / 1000000), KG_WEBHOOK_VALID);
    kg_webhook_secrets_free(sv1);
    kg_webhook_secrets_free(ssk);
    kg_webhook_secrets_free(spk);
}
END_TEST

/* A large payload, across schemes, byte-exact. */
START_TEST(test_roundtrip_large)
{
    size_t n = 1 << 20, i;
    unsigned char *p = malloc(n);
    kg_webhook_secrets *sec = secrets(SPEC_SECRET, NULL, NULL, NULL);
    ck_assert_ptr_nonnull(p);
    for (i = 0; i < n; i++)
        p[i] = (unsigned char)(i * 7);
    sign(std_s, "msg_big", TS, p, n, sec);
    ck_assert_int_eq(verify(std_s, p, n, sec, 300, TS), KG_WEBHOOK_VALID);
    p[n - 1] ^= 1;
    ck_assert_int_eq(verify(std_s, p, n, sec, 300, TS), KG_WEBHOOK_NO_MATCH);
    free(p);
    kg_webhook_secrets_free(sec);
}
END_TEST

/* ---- rotation -------------------------------------------------------- */

START_TEST(test_rotation)
{
    char newk[KG_WEBHOOK_SECRET_MAX], oldk[KG_WEBHOOK_SECRET_MAX],
         other[KG_WEBHOOK_SECRET_MAX];
    kg_webhook_secrets *both, *onlynew, *onlyold, *none;
    const char *sig;

    kg_webhook_secret_generate(KG_WEBHOOK_SECRET_V1, newk, sizeof(newk), NULL, 0);
    kg_webhook_secret_generate(KG_WEBHOOK_SECRET_V1, oldk, sizeof(oldk), NULL, 0);
    kg_webhook_secret_generate(KG_WEBHOOK_SECRET_V1, other, sizeof(other), NULL, 0);
    ck_assert_str_ne(newk, oldk);
    both = secrets(newk, oldk, NULL, NULL);
    onlynew = secrets(newk, NULL, NULL, NULL);
    onlyold = secrets(oldk, NULL, NULL, NULL);
    none = secrets(other, NULL, NULL, NULL);
    ck_assert_uint_eq(kg_webhook_secrets_count(both), 2);

    /* standard: the sender signs with both, newest first. */
    sign(std_s, "msg_r", TS, "body", 4, both);
    sig = kg_webhook_headers_get(hdr, "webhook-signature", NULL);
    ck_assert_ptr_nonnull(strchr(sig, ' '));
    ck_assert_int_eq(verify(std_s, "body", 4, onlynew, 300, TS), KG_WEBHOOK_VALID);
    ck_assert_int_eq(verify(std_s, "body", 4, onlyold, 300, TS), KG_WEBHOOK_VALID);
    ck_assert_int_eq(verify(std_s, "body", 4, none, 300, TS), KG_WEBHOOK_NO_MATCH);
    /* The receiver holds both while the sender moves over. */
    sign(std_s, "msg_r", TS, "body", 4, onlyold);
    ck_assert_int_eq(verify(std_s, "body", 4, both, 300, TS), KG_WEBHOOK_VALID);
    sign(std_s, "msg_r", TS, "body", 4, onlynew);
    ck_assert_int_eq(verify(std_s, "body", 4, both, 300, TS), KG_WEBHOOK_VALID);
    ck_assert_int_eq(verify(std_s, "body", 4, onlyold, 300, TS), KG_WEBHOOK_NO_MATCH);

    /* stripe: one v1 per secret. */
    sign(st_s, NULL, TS, "body", 4, both);
    sig = kg_webhook_headers_get(hdr, "Stripe-Signature", NULL);
    ck_assert_ptr_nonnull(strstr(strstr(sig, ",v1=") + 1, ",v1="));
    ck_assert_int_eq(verify(st_s, "body", 4, onlynew, 300, TS), KG_WEBHOOK_VALID);
    ck_assert_int_eq(verify(st_s, "body", 4, onlyold, 300, TS), KG_WEBHOOK_VALID);
    ck_assert_int_eq(verify(st_s, "body", 4, none, 300, TS), KG_WEBHOOK_NO_MATCH);

    /* github carries one signature: the newest secret's. */
    sign(gh_s, NULL, TS, "body", 4, both);
    ck_assert_int_eq(verify(gh_s, "body", 4, onlynew, 300, TS), KG_WEBHOOK_VALID);
    ck_assert_int_eq(verify(gh_s, "body", 4, onlyold, 300, TS), KG_WEBHOOK_NO_MATCH);
    sign(gh_s, NULL, TS, "body", 4, onlyold);
    ck_assert_int_eq(verify(gh_s, "body", 4, both, 300, TS), KG_WEBHOOK_VALID);

    kg_webhook_secrets_free(both);
    kg_webhook_secrets_free(onlynew);
    kg_webhook_secrets_free(onlyold);
    kg_webhook_secrets_free(none);
}
END_TEST

/* Rotating from HMAC to Ed25519: both signatures in one header. */
START_TEST(test_rotation_mixed)
{
    char sk[KG_WEBHOOK_SECRET_MAX], pk[KG_WEBHOOK_SECRET_MAX];
    kg_webhook_secrets *sender, *r_pub, *r_hmac;

    kg_webhook_secret_generate(KG_WEBHOOK_SECRET_V1A, sk, sizeof(sk), pk, sizeof(pk));
    sender = secrets(sk, SPEC_SECRET, NULL, NULL);
    r_pub = secrets(pk, NULL, NULL, NULL);
    r_hmac = secrets(SPEC_SECRET, NULL, NULL, NULL);
    sign(std_s, "msg_m", TS, "x", 1, sender);
    ck_assert_int_eq(verify(std_s, "x", 1, r_pub, 300, TS), KG_WEBHOOK_VALID);
    ck_assert_int_eq(verify(std_s, "x", 1, r_hmac, 300, TS), KG_WEBHOOK_VALID);
    kg_webhook_secrets_free(sender);
    kg_webhook_secrets_free(r_pub);
    kg_webhook_secrets_free(r_hmac);
}
END_TEST

/* ---- failure reasons ------------------------------------------------- */

START_TEST(test_missing_headers)
{
    kg_webhook_secrets *sec = secrets(SPEC_SECRET, NULL, NULL, NULL);
    static const char *const names[] = { "webhook-id", "webhook-timestamp",
                                         "webhook-signature" };
    int skip;

    for (skip = 0; skip < 3; skip++) {
        const char *lines[4];
        int i, n = 0;
        const char *vals[3] = { SPEC_ID, "1614265330", SPEC_SIG };
        char buf[3][128];
        for (i = 0; i < 3; i++) {
            if (i == skip)
                continue;
            snprintf(buf[i], sizeof(buf[i]), "%s: %s", names[i], vals[i]);
            lines[n++] = buf[i];
        }
        lines[n] = NULL;
        set_headers(lines);
        ck_assert_int_eq(verify(std_s, SPEC_PAYLOAD, strlen(SPEC_PAYLOAD), sec,
                                300, SPEC_TS), KG_WEBHOOK_MISSING_HEADER);
    }
    kg_webhook_headers_reset(hdr);
    ck_assert_int_eq(verify(gh_s, "", 0, sec, 300, SPEC_TS), KG_WEBHOOK_MISSING_HEADER);
    ck_assert_int_eq(verify(st_s, "", 0, sec, 300, SPEC_TS), KG_WEBHOOK_MISSING_HEADER);
    {
        const char *h[] = { "X-Hub-Signature: sha1=0123", NULL };
        kg_diag d;
        kg_webhook_status st;
        set_headers(h);
        ck_assert_int_eq(kg_webhook_verify(gh_s, hdr, "", 0, sec, 300, 1, &st, &d),
                         KG_ERR_VERIFY);
        ck_assert_int_eq(st, KG_WEBHOOK_MISSING_HEADER);
        ck_assert_ptr_nonnull(strstr(d.message, "SHA-1"));
    }
    kg_webhook_secrets_free(sec);
}
END_TEST

START_TEST(test_tampering)
{
    kg_webhook_secrets *sec = secrets(SPEC_SECRET, NULL, NULL, NULL);
    const char *sig;
    char line[256];

    /* The spec vector with the id, then the timestamp, changed. */
    {
        const char *h[] = { "webhook-id: msg_p5jXN8AQM9LWM0D4loKWxJeK",
                            "webhook-timestamp: 1614265330",
                            "webhook-signature: " SPEC_SIG, NULL };
        set_headers(h);
        ck_assert_int_eq(verify(std_s, SPEC_PAYLOAD, strlen(SPEC_PAYLOAD), sec,
                                300, SPEC_TS), KG_WEBHOOK_NO_MATCH);
    }
    {
        const char *h[] = { "webhook-id: " SPEC_ID,
                            "webhook-timestamp: 1614265331",
                            "webhook-signature: " SPEC_SIG, NULL };
        set_headers(h);
        ck_assert_int_eq(verify(std_s, SPEC_PAYLOAD, strlen(SPEC_PAYLOAD), sec,
                                300, SPEC_TS), KG_WEBHOOK_NO_MATCH);
    }
    {
        const char *h[] = { "webhook-id: " SPEC_ID,
                            "webhook-timestamp: 1614265330",
                            "webhook-signature: v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ2OE=",
                            NULL };
        set_headers(h);
        ck_assert_int_eq(verify(std_s, SPEC_PAYLOAD, strlen(SPEC_PAYLOAD), sec,
                                300, SPEC_TS), KG_WEBHOOK_NO_MATCH);
    }
    ck_assert_int_eq(verify(std_s, "{\"test\": 2432232315}", strlen(SPEC_PAYLOAD),
                            sec, 300, SPEC_TS), KG_WEBHOOK_NO_MATCH);
    /* The payload with a newline added is another payload. */
    {
        const char *h[] = { "webhook-id: " SPEC_ID,
                            "webhook-timestamp: 1614265330",
                            "webhook-signature: " SPEC_SIG, NULL };
        set_headers(h);
        ck_assert_int_eq(verify(std_s, SPEC_PAYLOAD "\n", strlen(SPEC_PAYLOAD) + 1,
                                sec, 300, SPEC_TS), KG_WEBHOOK_NO_MATCH);
    }
    /* stripe: t changed, signature kept. */
    sign(st_s, NULL, TS, "body", 4, sec);
    sig = kg_webhook_headers_get(hdr, "Stripe-Signature", NULL);
    snprintf(line, sizeof(line), "Stripe-Signature: t=%d%s", TS + 1,
             strchr(sig, ','));
    {
        const char *h[] = { line, NULL };
        set_headers(h);
        ck_assert_int_eq(verify(st_s, "body", 4, sec, 300, TS), KG_WEBHOOK_NO_MATCH);
    }
    kg_webhook_secrets_free(sec);
}
END_TEST

START_TEST(test_tolerance_edges)
{
    kg_webhook_secrets *sec = secrets(SPEC_SECRET, NULL, NULL, NULL);
    const kg_webhook_signer *timed[2] = { std_s, st_s };
    int i;

    for (i = 0; i < 2; i++) {
        const kg_webhook_signer *s = timed[i];
        sign(s, "msg_t", TS, "b", 1, sec);
        ck_assert_int_eq(verify(s, "b", 1, sec, 300, TS), KG_WEBHOOK_VALID);
        ck_assert_int_eq(verify(s, "b", 1, sec, 300, TS + 300), KG_WEBHOOK_VALID);
        ck_assert_int_eq(verify(s, "b", 1, sec, 300, TS - 300), KG_WEBHOOK_VALID);
        ck_assert_int_eq(verify(s, "b", 1, sec, 300, TS + 301), KG_WEBHOOK_TOO_OLD);
        ck_assert_int_eq(verify(s, "b", 1, sec, 300, TS - 301), KG_WEBHOOK_IN_FUTURE);
        /* The default tolerance is the spec's 5 minutes. */
        ck_assert_int_eq(verify(s, "b", 1, sec, KG_WEBHOOK_TOLERANCE_DEFAULT,
                                TS + 300), KG_WEBHOOK_VALID);
        ck_assert_int_eq(verify(s, "b", 1, sec, KG_WEBHOOK_TOLERANCE_DEFAULT,
                                TS + 301), KG_WEBHOOK_TOO_OLD);
        /* Zero tolerance: only the very second. */
        ck_assert_int_eq(verify(s, "b", 1, sec, 0, TS), KG_WEBHOOK_VALID);
        ck_assert_int_eq(verify(s, "b", 1, sec, 0, TS + 1), KG_WEBHOOK_TOO_OLD);
        ck_assert_int_eq(verify(s, "b", 1, sec, 0, TS - 1), KG_WEBHOOK_IN_FUTURE);
        /* An old timestamp is reported before the signature is checked. */
        ck_assert_int_eq(verify(s, "tampered", 8, sec, 300, TS + 10000),
                         KG_WEBHOOK_TOO_OLD);
    }
    ck_assert_int_eq(kg_webhook_signer_tolerance(std_s), 300);
    kg_webhook_secrets_free(sec);
}
END_TEST

/* Malformed headers of every kind: bad_format, never a crash. */
struct bad {
    int scheme;   /* 0 standard, 1 github, 2 stripe */
    const char *line[4];
};

#define STDH "webhook-id: msg_1", "webhook-timestamp: 1700000000"
#define B64_32 "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
#define HEX64 "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"

static const struct bad bad_headers[] = {
    { 0, { STDH, "webhook-signature: v1" } },
    { 0, { STDH, "webhook-signature: v1," } },
    { 0, { STDH, "webhook-signature: ," B64_32 } },
    { 0, { STDH, "webhook-signature: " B64_32 } },
    { 0, { STDH, "webhook-signature: v1,!!!!" } },
    { 0, { STDH, "webhook-signature: v1,YWJj" } },
    { 0, { STDH, "webhook-signature: v1," B64_32 "=" } },
    { 0, { STDH, "webhook-signature: v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE" } },
    { 0, { STDH, "webhook-signature: v1,g0hM9SsE+OTPJTGt/tmI=tSyZlE3uFJELVlNIOLJ1OE=" } },
    { 0, { STDH, "webhook-signature: v1a," B64_32 } },
    /* Non-canonical base64: the same bytes as the spec's signature. */
    { 0, { STDH, "webhook-signature: v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OF=" } },
    { 0, { STDH, "webhook-signature: v1," B64_32 " garbage" } },
    { 0, { STDH, "webhook-signature:" } },
    { 0, { STDH, "webhook-signature:    " } },
    { 0, { "webhook-id: msg_1", "webhook-timestamp: 17e8", "webhook-signature: v1," B64_32 } },
    { 0, { "webhook-id: msg_1", "webhook-timestamp: -1700000000", "webhook-signature: v1," B64_32 } },
    { 0, { "webhook-id: msg_1", "webhook-timestamp: ", "webhook-signature: v1," B64_32 } },
    { 0, { "webhook-id: msg_1", "webhook-timestamp: 1700000000.5", "webhook-signature: v1," B64_32 } },
    { 0, { "webhook-id: msg_1", "webhook-timestamp: 99999999999999999999999", "webhook-signature: v1," B64_32 } },
    { 0, { "webhook-id: msg.1", "webhook-timestamp: 1700000000", "webhook-signature: v1," B64_32 } },
    { 0, { "webhook-id: ", "webhook-timestamp: 1700000000", "webhook-signature: v1," B64_32 } },
    { 0, { STDH, "webhook-signature: v1," B64_32, "webhook-signature: v1," B64_32 } },
    { 0, { "webhook-id: msg_1", "webhook-id: msg_2", "webhook-timestamp: 1700000000", "webhook-signature: v1," B64_32 } },
    { 1, { "X-Hub-Signature-256: " HEX64 } },
    { 1, { "X-Hub-Signature-256: sha1=" HEX64 } },
    { 1, { "X-Hub-Signature-256: sha256=" } },
    { 1, { "X-Hub-Signature-256: sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e1" } },
    { 1, { "X-Hub-Signature-256: sha256=" HEX64 "7" } },
    { 1, { "X-Hub-Signature-256: sha256=z57107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17" } },
    { 1, { "X-Hub-Signature-256: sha256=" HEX64, "x-hub-signature-256: sha256=" HEX64 } },
    { 2, { "Stripe-Signature: v1=" HEX64 } },
    { 2, { "Stripe-Signature: t=,v1=" HEX64 } },
    { 2, { "Stripe-Signature: t=abc,v1=" HEX64 } },
    { 2, { "Stripe-Signature: t=1700000000,t=1700000000,v1=" HEX64 } },
    { 2, { "Stripe-Signature: t=1700000000,v1" } },
    { 2, { "Stripe-Signature: t=1700000000,v1=" } },
    { 2, { "Stripe-Signature: t=1700000000,v1=abc" } },
    { 2, { "Stripe-Signature: t=1700000000,,v1=" HEX64 } },
    { 2, { "Stripe-Signature: garbage" } },
    { 2, { "Stripe-Signature: " } },
    { 2, { "Stripe-Signature: t=1700000000,v1=" HEX64, "Stripe-Signature: t=1700000000" } },
};

START_TEST(test_malformed)
{
    kg_webhook_secrets *sec = secrets(SPEC_SECRET, NULL, NULL, NULL);
    const kg_webhook_signer *all[3] = { std_s, gh_s, st_s };
    const struct bad *b = &bad_headers[_i];
    const char *lines[5];
    kg_webhook_status st;
    int i, n = 0;

    for (i = 0; i < 4 && b->line[i] != NULL; i++)
        lines[n++] = b->line[i];
    lines[n] = NULL;
    set_headers(lines);
    st = verify(all[b->scheme], "x", 1, sec, 300, TS);
    ck_assert_msg(st == KG_WEBHOOK_BAD_FORMAT, "case %d (%s): %s", _i,
                  b->line[n - 1], kg_webhook_status_name(st));
    kg_webhook_secrets_free(sec);
}
END_TEST

START_TEST(test_too_many_signatures)
{
    kg_webhook_secrets *sec = secrets(SPEC_SECRET, NULL, NULL, NULL);
    char line[2048];
    int i;
    size_t len = (size_t)snprintf(line, sizeof(line), "webhook-signature:");
    for (i = 0; i < 17; i++)
        len += (size_t)snprintf(line + len, sizeof(line) - len, " v1,%s", B64_32);
    {
        const char *h[] = { STDH, line, NULL };
        set_headers(h);
        ck_assert_int_eq(verify(std_s, "x", 1, sec, 300, TS), KG_WEBHOOK_BAD_FORMAT);
    }
    kg_webhook_secrets_free(sec);
}
END_TEST

/* A sender with more secrets than a receiver takes signatures is told so
 * (it signed headers its own verifier refused: fuzz_webhook, reproducer
 * fuzz/corpus/webhook/stripe_17_secrets); 16 sign and verify. */
START_TEST(test_too_many_secrets_to_sign)
{
    kg_webhook_signer *both[2] = { std_s, st_s };
    kg_webhook_message m = { "msg_1", TS, "x", 1 };
    int i, k;

    for (k = 0; k < 2; k++) {
        kg_webhook_secrets *sec = secrets(NULL, NULL, NULL, NULL);
        kg_diag d;
        for (i = 0; i < 17; i++)
            ck_assert_int_eq(kg_webhook_secrets_add(sec, SPEC_SECRET, strlen(SPEC_SECRET)), KG_OK);
        kg_webhook_headers_reset(hdr);
        d.message[0] = '\0';
        ck_assert_int_eq(kg_webhook_sign(both[k], &m, sec, hdr, &d), KG_ERR_INVALID);
        ck_assert_ptr_nonnull(strstr(d.message, "17 secrets"));
        ck_assert_uint_eq(kg_webhook_headers_count(hdr), 0);
        kg_webhook_secrets_free(sec);

        sec = secrets(NULL, NULL, NULL, NULL);
        for (i = 0; i < 16; i++)
            ck_assert_int_eq(kg_webhook_secrets_add(sec, SPEC_SECRET, strlen(SPEC_SECRET)), KG_OK);
        kg_webhook_headers_reset(hdr);
        ck_assert_int_eq(kg_webhook_sign(both[k], &m, sec, hdr, &d), KG_OK);
        ck_assert_int_eq(verify(both[k], "x", 1, sec, 300, TS), KG_WEBHOOK_VALID);
        kg_webhook_secrets_free(sec);
    }
}
END_TEST

/* Signatures of versions we do not know are skipped, not malformed. */
START_TEST(test_unknown_versions)
{
    kg_webhook_secrets *sec = secrets(SPEC_SECRET, NULL, NULL, NULL);
    {
        const char *h[] = { "webhook-id: " SPEC_ID, "webhook-timestamp: 1614265330",
                            "webhook-signature: v2,abc " SPEC_SIG, NULL };
        set_headers(h);
        ck_assert_int_eq(verify(std_s, SPEC_PAYLOAD, strlen(SPEC_PAYLOAD), sec,
                                300, SPEC_TS), KG_WEBHOOK_VALID);
    }
    {
        const char *h[] = { "webhook-id: " SPEC_ID, "webhook-timestamp: 1614265330",
                            "webhook-signature: v2,abc", NULL };
        set_headers(h);
        ck_assert_int_eq(verify(std_s, SPEC_PAYLOAD, strlen(SPEC_PAYLOAD), sec,
                                300, SPEC_TS), KG_WEBHOOK_NO_MATCH);
    }
    {
        const char *h[] = { "Stripe-Signature: t=1700000000,v0=" HEX64, NULL };
        set_headers(h);
        ck_assert_int_eq(verify(st_s, "x", 1, sec, 300, TS), KG_WEBHOOK_NO_MATCH);
    }
    kg_webhook_secrets_free(sec);
}
END_TEST

/* ---- secrets ---------------------------------------------------------- */

START_TEST(test_secret_generate)
{
    char a[KG_WEBHOOK_SECRET_MAX], b[KG_WEBHOOK_SECRET_MAX], pk[KG_WEBHOOK_SECRET_MAX],
         pk2[KG_WEBHOOK_SECRET_MAX], small[10];
    unsigned char raw[64];

    ck_assert_int_eq(kg_webhook_secret_generate(KG_WEBHOOK_SECRET_V1, a, sizeof(a), NULL, 0), KG_OK);
    ck_assert_int_eq(kg_webhook_secret_generate(KG_WEBHOOK_SECRET_V1, b, sizeof(b), NULL, 0), KG_OK);
    ck_assert(strncmp(a, "whsec_", 6) == 0);
    ck_assert_uint_eq(strlen(a), 6 + 44);
    ck_assert_str_ne(a, b);
    ck_assert_int_eq(EVP_DecodeBlock(raw, (unsigned char *)a + 6, 44), 33);
    ck_assert_int_eq(kg_webhook_secret_generate(KG_WEBHOOK_SECRET_V1A, a, sizeof(a), pk, sizeof(pk)), KG_OK);
    ck_assert(strncmp(a, "whsk_", 5) == 0);
    ck_assert(strncmp(pk, "whpk_", 5) == 0);
    ck_assert_uint_eq(strlen(a), 5 + 44);
    ck_assert_uint_eq(strlen(pk), 5 + 44);
    ck_assert_int_eq(kg_webhook_public_key(a, pk2, sizeof(pk2)), KG_OK);
    ck_assert_str_eq(pk, pk2);
    ck_assert_int_eq(kg_webhook_public_key(pk, pk2, sizeof(pk2)), KG_ERR_INVALID);
    ck_assert_int_eq(kg_webhook_secret_generate(KG_WEBHOOK_SECRET_V1, small, sizeof(small), NULL, 0), KG_ERR_INVALID);
    ck_assert_int_eq(kg_webhook_secret_generate(KG_WEBHOOK_SECRET_V1A, a, sizeof(a), NULL, 0), KG_ERR_INVALID);
    ck_assert_int_eq(kg_webhook_secret_generate(7, a, sizeof(a), pk, sizeof(pk)), KG_ERR_INVALID);
}
END_TEST

START_TEST(test_secret_errors)
{
    static const char *const bad_sign[] = {
        "plainsecret", "whsec_", "whsec_!!!!", "whsec_YWJj" /* 3 bytes: too short to sign */,
        "whsk_YWJj", "whpk_Vgs008F6/hbSTKFOiP45QPh0N3CVJLT2MEvgMDLU5u0=",
        /* 66 bytes: over the spec's 64 */
        "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", NULL };
    kg_webhook_message m = { "msg_1", TS, "x", 1 };
    kg_diag d;
    int i;

    for (i = 0; bad_sign[i] != NULL; i++) {
        kg_webhook_secrets *sec = secrets(bad_sign[i], NULL, NULL, NULL);
        kg_webhook_headers_reset(hdr);
        ck_assert_int_eq(kg_webhook_sign(std_s, &m, sec, hdr, &d), KG_ERR_INVALID);
        ck_assert_msg(d.message[0] != '\0', "no reason for %s", bad_sign[i]);
        ck_assert_uint_eq(kg_webhook_headers_count(hdr), 0);
        kg_webhook_secrets_free(sec);
    }
    /* A verifier with an unusable secret is told so, not "no match". */
    {
        kg_webhook_secrets *sec = secrets("nope", NULL, NULL, NULL);
        const char *h[] = { "webhook-id: " SPEC_ID, "webhook-timestamp: 1614265330",
                            "webhook-signature: " SPEC_SIG, NULL };
        kg_webhook_status st;
        set_headers(h);
        ck_assert_int_eq(kg_webhook_verify(std_s, hdr, SPEC_PAYLOAD, strlen(SPEC_PAYLOAD),
                                           sec, 300, SPEC_TS, &st, &d), KG_ERR_INVALID);
        ck_assert_ptr_nonnull(strstr(d.message, "whsec_"));
        kg_webhook_secrets_free(sec);
    }
    /* No secrets, bad ids, bad arguments. */
    {
        kg_webhook_secrets *none = secrets(NULL, NULL, NULL, NULL);
        kg_webhook_secrets *sec = secrets(SPEC_SECRET, NULL, NULL, NULL);
        kg_webhook_status st;
        ck_assert_int_eq(kg_webhook_sign(std_s, &m, none, hdr, &d), KG_ERR_INVALID);
        ck_assert_int_eq(kg_webhook_verify(std_s, hdr, "", 0, none, 300, 1, &st, &d),
                         KG_ERR_INVALID);
        m.id = "msg.1";
        ck_assert_int_eq(kg_webhook_sign(std_s, &m, sec, hdr, &d), KG_ERR_INVALID);
        m.id = "msg 1";
        ck_assert_int_eq(kg_webhook_sign(std_s, &m, sec, hdr, &d), KG_ERR_INVALID);
        m.id = "msg_1";
        m.timestamp = -5;
        ck_assert_int_eq(kg_webhook_sign(std_s, &m, sec, hdr, &d), KG_ERR_INVALID);
        ck_assert_int_eq(kg_webhook_sign(NULL, &m, sec, hdr, &d), KG_ERR_INVALID);
        ck_assert_int_eq(kg_webhook_verify(std_s, hdr, NULL, 5, sec, 300, 1, &st, NULL),
                         KG_ERR_INVALID);
        ck_assert_int_eq(kg_webhook_secrets_add(sec, "", 0), KG_ERR_INVALID);
        /* A negative now or tolerance says which (fuzz_webhook found the
         * refusal without a reason; its reproducer is in
         * fuzz/corpus/webhook/negative_now). */
        d.message[0] = '\0';
        ck_assert_int_eq(kg_webhook_verify(gh_s, hdr, "", 0, sec, 300, -1, &st, &d),
                         KG_ERR_INVALID);
        ck_assert_ptr_nonnull(strstr(d.message, "now"));
        d.message[0] = '\0';
        ck_assert_int_eq(kg_webhook_verify(std_s, hdr, "", 0, sec, -2, 1, &st, &d),
                         KG_ERR_INVALID);
        ck_assert_ptr_nonnull(strstr(d.message, "tolerance"));
        kg_webhook_secrets_free(none);
        kg_webhook_secrets_free(sec);
    }
    kg_webhook_secrets_free(NULL);
}
END_TEST

START_TEST(test_headers_api)
{
    const char *name, *value;
    size_t count;

    kg_webhook_headers_reset(hdr);
    ck_assert_int_eq(kg_webhook_headers_add_line(hdr, "no colon"), KG_ERR_INVALID);
    ck_assert_int_eq(kg_webhook_headers_add_line(hdr, ": empty name"), KG_ERR_INVALID);
    ck_assert_int_eq(kg_webhook_headers_add_line(hdr, "Bad Name: x"), KG_ERR_INVALID);
    ck_assert_int_eq(kg_webhook_headers_add_line(hdr, "A:  spaced value \t"), KG_OK);
    ck_assert_int_eq(kg_webhook_headers_add_line(hdr, "a: second"), KG_OK);
    ck_assert_int_eq(kg_webhook_headers_add(hdr, "B", "v:with:colons"), KG_OK);
    ck_assert_uint_eq(kg_webhook_headers_count(hdr), 3);
    ck_assert_str_eq(kg_webhook_headers_get(hdr, "a", &count), "spaced value");
    ck_assert_uint_eq(count, 2);
    ck_assert_ptr_null(kg_webhook_headers_get(hdr, "c", &count));
    ck_assert_uint_eq(count, 0);
    ck_assert_int_eq(kg_webhook_headers_at(hdr, 2, &name, &value), KG_OK);
    ck_assert_str_eq(name, "B");
    ck_assert_str_eq(value, "v:with:colons");
    ck_assert_int_eq(kg_webhook_headers_at(hdr, 3, &name, &value), KG_ERR_NOT_FOUND);
    /* A line break in a value would forge a header: refused. */
    ck_assert_int_eq(kg_webhook_headers_add(hdr, "C", "a\r\nX-Evil: 1"), KG_ERR_INVALID);
    ck_assert_int_eq(kg_webhook_headers_add(hdr, "C", "a\nb"), KG_ERR_INVALID);
    ck_assert_uint_eq(kg_webhook_headers_count(hdr), 3);
    ck_assert_str_eq(kg_webhook_status_name(KG_WEBHOOK_NO_MATCH), "no_matching_signature");
    ck_assert_str_eq(kg_webhook_status_name(KG_WEBHOOK_IN_FUTURE), "timestamp_in_future");
}
END_TEST

START_TEST(test_unknown_scheme)
{
    kg_webhook_signer *s = NULL;
    kg_diag d;
    ck_assert_int_eq(kg_webhook_signer_new(ctx, "nosuchscheme", &s, &d), KG_ERR_PLUGIN);
    ck_assert_ptr_null(s);
    ck_assert(d.message[0] != '\0');
    /* A plugin of another kind is not a signer. */
    ck_assert_int_eq(kg_webhook_signer_new(ctx, "bearer", &s, &d), KG_ERR_PLUGIN);
    ck_assert_ptr_nonnull(strstr(d.message, "signer"));
    ck_assert_str_eq(kg_webhook_signer_header(std_s), "webhook-signature");
    ck_assert_str_eq(kg_webhook_signer_header(gh_s), "X-Hub-Signature-256");
    ck_assert_str_eq(kg_webhook_signer_header(st_s), "Stripe-Signature");
    ck_assert_str_eq(kg_webhook_signer_scheme(st_s), "stripe");
}
END_TEST

/* ---- the policy's signers: -------------------------------------------- */

static char tmpdir[64];

static kg_error load(const char *signers, kg_policy **p_r, kg_diag *d)
{
    char yaml[2048];
    snprintf(yaml, sizeof(yaml),
             "credential:\n"
             "  - {module: bearer}\n"
             "keystore:\n"
             "  - {module: file, options: {path: %s/keys.yaml}}\n"
             "plans:\n"
             "  free: {}\n"
             "%s", tmpdir, signers);
    return kg_policy_load_string(ctx, yaml, "test.yaml", p_r, d);
}

static void policy_setup(void)
{
    setup();
    strcpy(tmpdir, "/tmp/kgwhXXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void policy_teardown(void)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/keys.yaml", tmpdir);
    unlink(path);
    rmdir(tmpdir);
    teardown();
}

START_TEST(test_policy_signers)
{
    kg_policy *p = NULL;
    kg_diag d;
    kg_webhook_secrets *sec = secrets(SPEC_SECRET, NULL, NULL, NULL);
    kg_webhook_message m = { SPEC_ID, SPEC_TS, SPEC_PAYLOAD, strlen(SPEC_PAYLOAD) };
    const kg_webhook_signer *s;

    ck_assert_msg(load("signers:\n"
                       "  - standard\n"
                       "  - module: stripe\n"
                       "    options: {tolerance: 10m}\n", &p, &d) == KG_OK,
                  "%s:%u:%u: %s", d.file, d.line, d.column, d.message);
    ck_assert_uint_eq(kg_policy_signer_count(p), 2);
    ck_assert_str_eq(kg_webhook_signer_scheme(kg_policy_signer(p, 0)), "standard");
    ck_assert_ptr_null(kg_policy_signer(p, 2));
    ck_assert_ptr_null(kg_policy_signer_find(p, "github"));
    s = kg_policy_signer_find(p, "stripe");
    ck_assert_ptr_nonnull(s);
    ck_assert_int_eq(kg_webhook_signer_tolerance(s), 600);
    ck_assert_int_eq(kg_webhook_signer_tolerance(kg_policy_signer_find(p, NULL)), 300);
    /* The policy's choice: its first signer. */
    kg_webhook_headers_reset(hdr);
    ck_assert_int_eq(kg_policy_webhook_sign(p, NULL, &m, sec, hdr, &d), KG_OK);
    ck_assert_str_eq(kg_webhook_headers_get(hdr, "webhook-signature", NULL), SPEC_SIG);
    kg_webhook_headers_reset(hdr);
    ck_assert_int_eq(kg_policy_webhook_sign(p, "stripe", &m, sec, hdr, &d), KG_OK);
    ck_assert_int_eq(verify(s, SPEC_PAYLOAD, strlen(SPEC_PAYLOAD), sec,
                            KG_WEBHOOK_TOLERANCE_DEFAULT, SPEC_TS + 600), KG_WEBHOOK_VALID);
    ck_assert_int_eq(verify(s, SPEC_PAYLOAD, strlen(SPEC_PAYLOAD), sec,
                            KG_WEBHOOK_TOLERANCE_DEFAULT, SPEC_TS + 601), KG_WEBHOOK_TOO_OLD);
    ck_assert_int_eq(kg_policy_webhook_sign(p, "github", &m, sec, hdr, &d), KG_ERR_NOT_FOUND);
    ck_assert_ptr_nonnull(strstr(d.message, "github"));
    {
        char *x = kg_policy_explain(p);
        ck_assert_ptr_nonnull(x);
        ck_assert_ptr_nonnull(strstr(x, "stripe     header Stripe-Signature, tolerance 600s"));
        free(x);
    }
    kg_policy_free(p);

    /* No signers: section. */
    ck_assert_int_eq(load("", &p, &d), KG_OK);
    ck_assert_uint_eq(kg_policy_signer_count(p), 0);
    ck_assert_int_eq(kg_policy_webhook_sign(p, NULL, &m, sec, hdr, &d), KG_ERR_NOT_FOUND);
    ck_assert_ptr_nonnull(strstr(d.message, "signers"));
    kg_policy_free(p);
    kg_webhook_secrets_free(sec);
}
END_TEST

struct policy_err {
    const char *yaml;
    kg_error err;
    unsigned line, column;
    const char *needle;
};

static const struct policy_err policy_errs[] = {
    { "signers: standard\n", KG_ERR_POLICY, 7, 10, "list" },
    { "signers:\n  - nosuch\n", KG_ERR_PLUGIN, 8, 5, "nosuch" },
    { "signers:\n  - bearer\n", KG_ERR_PLUGIN, 8, 5, "signer" },
    { "signers:\n  - standard\n  - github\n  - standard\n", KG_ERR_POLICY, 10, 5, "twice" },
    { "signers:\n  - {module: stripe, options: {tolerance: soon}}\n", KG_ERR_POLICY, 8, 43, "tolerance" },
    { "signers:\n  - {module: stripe, options: {colour: red}}\n", KG_ERR_POLICY, 8, 32, "colour" },
    { "signers:\n  - {module: stripe, extra: 1}\n", KG_ERR_POLICY, 8, 22, "extra" },
    { "signers:\n  - {options: {}}\n", KG_ERR_POLICY, 8, 5, "module" },
    { "signers:\n  - [a, b]\n", KG_ERR_POLICY, 8, 5, "scheme" },
    { "signers:\n  - {module: stripe, options: [1]}\n", KG_ERR_POLICY, 8, 31, "mapping" },
};

START_TEST(test_policy_errors)
{
    const struct policy_err *c = &policy_errs[_i];
    kg_policy *p = NULL;
    kg_diag d;
    kg_error e = load(c->yaml, &p, &d);

    ck_assert_ptr_null(p);
    ck_assert_msg(e == c->err, "case %d: %s (%s)", _i, kg_strerror(e), d.message);
    ck_assert_str_eq(d.file, "test.yaml");
    ck_assert_msg(d.line == c->line && d.column == c->column,
                  "case %d: at %u:%u, expected %u:%u (%s)", _i, d.line,
                  d.column, c->line, c->column, d.message);
    ck_assert_msg(strstr(d.message, c->needle) != NULL, "case %d: %s", _i, d.message);
}
END_TEST

/* One signer, many threads: every result right, nothing shared broken. */
struct worker {
    const kg_webhook_signer *s;
    kg_webhook_secrets *sec;
    int ok;
};

static void *work(void *arg)
{
    struct worker *w = arg;
    kg_webhook_headers *h = NULL;
    char payload[64];
    int i;

    if (kg_webhook_headers_new(&h) != KG_OK)
        return NULL;
    for (i = 0; i < 300; i++) {
        kg_webhook_message m = { "msg_thr", TS + i, payload, 0 };
        kg_webhook_status st;
        m.payload_len = (size_t)snprintf(payload, sizeof(payload), "n=%d", i);
        kg_webhook_headers_reset(h);
        if (kg_webhook_sign(w->s, &m, w->sec, h, NULL) != KG_OK ||
            kg_webhook_verify(w->s, h, payload, m.payload_len, w->sec, 0,
                              TS + i, &st, NULL) != KG_OK ||
            kg_webhook_verify(w->s, h, "x", 1, w->sec, 0, TS + i, &st,
                              NULL) != KG_ERR_VERIFY)
            break;
        w->ok++;
    }
    kg_webhook_headers_free(h);
    return NULL;
}

START_TEST(test_threads)
{
    const kg_webhook_signer *all[3] = { std_s, gh_s, st_s };
    /* Two secrets every scheme can use (rotation on every call). */
    kg_webhook_secrets *sec = secrets("whsec_Zj+vMIXUApyfeVNMCICyezCrVJJEEvyEASJ0INOWjA0=",
                                      SPEC_SECRET, NULL, NULL);
    pthread_t t[6];
    struct worker w[6];
    int i;

    for (i = 0; i < 6; i++) {
        w[i].s = all[i % 3];
        w[i].sec = sec;
        w[i].ok = 0;
        ck_assert_int_eq(pthread_create(&t[i], NULL, work, &w[i]), 0);
    }
    for (i = 0; i < 6; i++) {
        pthread_join(t[i], NULL);
        ck_assert_int_eq(w[i].ok, 300);
    }
    kg_webhook_secrets_free(sec);
}
END_TEST

static Suite *webhook_suite(void)
{
    Suite *s = suite_create("webhook");
    TCase *tc;

    tc = tcase_create("vectors");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_spec_vector);
    tcase_add_test(tc, test_github_vector);
    tcase_add_test(tc, test_ed25519_vector);
    suite_add_tcase(s, tc);

    tc = tcase_create("roundtrip");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_roundtrip_all);
    tcase_add_test(tc, test_roundtrip_large);
    tcase_add_test(tc, test_rotation);
    tcase_add_test(tc, test_rotation_mixed);
    tcase_add_test(tc, test_threads);
    suite_add_tcase(s, tc);

    tc = tcase_create("failures");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_missing_headers);
    tcase_add_test(tc, test_tampering);
    tcase_add_test(tc, test_tolerance_edges);
    tcase_add_loop_test(tc, test_malformed, 0,
                        (int)(sizeof(bad_headers) / sizeof(bad_headers[0])));
    tcase_add_test(tc, test_too_many_signatures);
    tcase_add_test(tc, test_too_many_secrets_to_sign);
    tcase_add_test(tc, test_unknown_versions);
    suite_add_tcase(s, tc);

    tc = tcase_create("secrets");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_secret_generate);
    tcase_add_test(tc, test_secret_errors);
    tcase_add_test(tc, test_headers_api);
    tcase_add_test(tc, test_unknown_scheme);
    suite_add_tcase(s, tc);

    tc = tcase_create("policy");
    tcase_add_checked_fixture(tc, policy_setup, policy_teardown);
    tcase_add_test(tc, test_policy_signers);
    tcase_add_loop_test(tc, test_policy_errors, 0,
                        (int)(sizeof(policy_errs) / sizeof(policy_errs[0])));
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(webhook_suite());
    int failed;
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
