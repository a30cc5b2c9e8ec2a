/*
 * fuzz_webhook.c - webhook verification, every scheme (the standard,
 * github and stripe signer plugins through core/webhook.c): received
 * headers and a payload from the input, verified
 *   - with known secrets (the seeds carry real signatures of them), and
 *     an extra secret of the input's choosing: no crash, a status that
 *     agrees with the result, a reason for every refusal;
 *   - with secrets made at start-up that the input cannot know: never
 *     valid (a forged or empty signature must not pass);
 * and the payload signed with the known secrets, then verified: valid.
 *
 * Input: byte 0 the scheme, byte 1 the tolerance, bytes 2-5 "now" (a
 * signed offset from 1700000000), then header lines ("Name: value",
 * '\n'-separated; a line "X-Fuzz-Secret: s" adds s to the known
 * secrets) up to an empty line, then the payload.
 */
#include "fuzz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <keygate/keygate.h>
#include <keygate/webhook.h>

#define BASE_TS 1700000000
#define NSCHEMES 3

static const char *const schemes[NSCHEMES] = { "standard", "github", "stripe" };
/* The vectors of tests/unit/check_webhook.c (Standard Webhooks' spec,
 * RFC 8032's first Ed25519 key, GitHub's documentation). */
static const char *const known[NSCHEMES][3] = {
    { "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
      "whsk_nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=",
      "whpk_11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=" },
    { "It's a Secret to Everybody", NULL, NULL },
    { "whsec_stripe_fuzz_secret", NULL, NULL },
};

static kg_context *ctx;
static kg_webhook_signer *signer[NSCHEMES];
static kg_webhook_secrets *unknown[NSCHEMES];
static const int64_t tolerances[4] = { KG_WEBHOOK_TOLERANCE_DEFAULT, 0, 1, 86400 * 365 };

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char v1[KG_WEBHOOK_SECRET_MAX], sk[KG_WEBHOOK_SECRET_MAX], pk[KG_WEBHOOK_SECRET_MAX];
    kg_diag d;
    int i;

    (void)argc;
    (void)argv;
    fz_init();
    if (kg_context_new(&ctx) != KG_OK)
        abort();
    if (kg_webhook_secret_generate(KG_WEBHOOK_SECRET_V1, v1, sizeof(v1), NULL, 0) != KG_OK ||
        kg_webhook_secret_generate(KG_WEBHOOK_SECRET_V1A, sk, sizeof(sk), pk, sizeof(pk)) != KG_OK)
        abort();
    for (i = 0; i < NSCHEMES; i++) {
        if (kg_webhook_signer_new(ctx, schemes[i], &signer[i], &d) != KG_OK) {
            fprintf(stderr, "fuzz_webhook: %s: %s\n", schemes[i], d.message);
            abort();
        }
        if (kg_webhook_secrets_new(&unknown[i]) != KG_OK ||
            kg_webhook_secrets_add(unknown[i], v1, strlen(v1)) != KG_OK)
            abort();
        if (i == 0 && (kg_webhook_secrets_add(unknown[i], sk, strlen(sk)) != KG_OK ||
                       kg_webhook_secrets_add(unknown[i], pk, strlen(pk)) != KG_OK))
            abort();
    }
    return 0;
}

/* verify() with its contract checked; the status. */
static kg_webhook_status verify(const kg_webhook_signer *s, const kg_webhook_headers *h,
                                const void *payload, size_t len,
                                const kg_webhook_secrets *sec, int64_t tol, int64_t now)
{
    kg_webhook_status st = KG_WEBHOOK__LAST;
    kg_diag d;
    kg_error e;

    memset(&d, 0, sizeof(d));
    e = kg_webhook_verify(s, h, payload, len, sec, tol, now, &st, &d);
    if (e == KG_OK && st != KG_WEBHOOK_VALID)
        abort();
    if (e == KG_ERR_VERIFY && (st == KG_WEBHOOK_VALID || st >= KG_WEBHOOK__LAST))
        abort();
    if (e != KG_OK && e != KG_ERR_VERIFY && e != KG_ERR_INVALID)
        abort();
    if (e != KG_OK && d.message[0] == '\0') {
        fprintf(stderr, "fuzz_webhook: %s: refused (%s, %s) without a reason\n",
                kg_webhook_signer_scheme(s), kg_strerror(e),
                e == KG_ERR_VERIFY ? kg_webhook_status_name(st) : "-");
        abort();
    }
    if (e == KG_ERR_VERIFY && kg_webhook_status_name(st) == NULL)
        abort();
    return e == KG_OK ? KG_WEBHOOK_VALID : st == KG_WEBHOOK__LAST ? KG_WEBHOOK_BAD_FORMAT : st;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int scheme;
    int64_t tol, now;
    int32_t delta;
    char *text, *line, *payload;
    size_t plen;
    kg_webhook_headers *h = NULL, *out = NULL;
    kg_webhook_secrets *sec = NULL, *ssec = NULL;
    const char *id = NULL;
    kg_webhook_message msg;
    kg_diag d;
    int i;

    if (size < 6)
        return -1;
    scheme = data[0] % NSCHEMES;
    tol = tolerances[data[1] % 4];
    memcpy(&delta, data + 2, sizeof(delta));
    now = BASE_TS + (int64_t)delta;
    text = fz_strndup(data + 6, size - 6);
    /* The payload is every byte after the blank line (NULs included). */
    payload = strstr(text, "\n\n");
    if (payload != NULL) {
        *payload = '\0';
        payload += 2;
        plen = size - 6 - (size_t)(payload - text);
    } else {
        payload = text + size - 6;
        plen = 0;
    }
    if (kg_webhook_headers_new(&h) != KG_OK || kg_webhook_headers_new(&out) != KG_OK ||
        kg_webhook_secrets_new(&sec) != KG_OK || kg_webhook_secrets_new(&ssec) != KG_OK)
        abort();
    /* Both lists hold the known secrets; whpk_ (a public key) only
     * verifies, so the signing list does without it. */
    for (i = 0; i < 3; i++)
        if (known[scheme][i] != NULL &&
            (kg_webhook_secrets_add(sec, known[scheme][i], strlen(known[scheme][i])) != KG_OK ||
             (strncmp(known[scheme][i], "whpk_", 5) != 0 &&
              kg_webhook_secrets_add(ssec, known[scheme][i], strlen(known[scheme][i])) != KG_OK)))
            abort();
    for (line = text; line != NULL && *line != '\0';) {
        char *nl = strchr(line, '\n');

        if (nl != NULL)
            *nl = '\0';
        if (strncmp(line, "X-Fuzz-Secret: ", 15) == 0) {
            if (line[15] != '\0') {
                kg_webhook_secrets_add(sec, line + 15, strlen(line + 15));
                kg_webhook_secrets_add(ssec, line + 15, strlen(line + 15));
            }
        } else {
            kg_webhook_headers_add_line(h, line);   /* a bad line is dropped */
        }
        line = nl ? nl + 1 : NULL;
    }

    verify(signer[scheme], h, payload, plen, sec, tol, now);
    if (verify(signer[scheme], h, payload, plen, unknown[scheme], tol, now) ==
        KG_WEBHOOK_VALID) {
        fprintf(stderr, "fuzz_webhook: %s: valid with a secret the input cannot know\n",
                schemes[scheme]);
        abort();
    }

    /* Signed, then verified: valid, and never with the unknown secrets. */
    if (scheme == 0) {
        size_t n;
        id = kg_webhook_headers_get(h, "webhook-id", &n);
    }
    memset(&msg, 0, sizeof(msg));
    msg.id = id;
    /* 0 would be the clock's now (not the input's); negative is refused. */
    msg.timestamp = now != 0 ? now : 1;
    now = msg.timestamp > 0 ? msg.timestamp : now;
    msg.payload = payload;
    msg.payload_len = plen;
    memset(&d, 0, sizeof(d));
    if (kg_webhook_sign(signer[scheme], &msg, ssec, out, &d) == KG_OK) {
        kg_webhook_status st = verify(signer[scheme], out, payload, plen, sec,
                                      KG_WEBHOOK_TOLERANCE_DEFAULT, now);
        if (st != KG_WEBHOOK_VALID) {
            const char *hn, *hv;
            size_t k;
            fprintf(stderr, "fuzz_webhook: %s: what was signed does not verify (%s)\n",
                    schemes[scheme], kg_webhook_status_name(st));
            for (k = 0; kg_webhook_headers_at(out, k, &hn, &hv) == KG_OK; k++)
                fprintf(stderr, "  %s: %s\n", hn, hv);
            for (k = 0; k < kg_webhook_secrets_count(ssec); k++)
                fprintf(stderr, "  secret %zu: %s\n", k, kg_webhook_secret(ssec, k, NULL));
            abort();
        }
        if (verify(signer[scheme], out, payload, plen, unknown[scheme],
                   KG_WEBHOOK_TOLERANCE_DEFAULT, now) == KG_WEBHOOK_VALID)
            abort();
    } else if (d.message[0] == '\0') {
        abort();
    }
    kg_webhook_headers_free(h);
    kg_webhook_headers_free(out);
    kg_webhook_secrets_free(sec);
    kg_webhook_secrets_free(ssec);
    free(text);
    return 0;
}
