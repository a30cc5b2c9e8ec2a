/*
 * github - signer plugin: GitHub-style webhook signatures.
 *
 *   X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>
 *
 * The secret's bytes, as given, are the HMAC key.  The header carries
 * one signature, so signing uses the newest secret only; verification
 * accepts a signature made by any secret of the list (rotation on the
 * receiving side) and compares in constant time.  There is no timestamp
 * in this scheme, so no tolerance: replays are the receiver's to catch
 * (by X-GitHub-Delivery, say).  The legacy SHA-1 X-Hub-Signature is not
 * accepted.
 *
 * Options: none.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "../sigutil/sigutil.h"

#define HEADER "X-Hub-Signature-256"

/* The raw body, keyed with secret i. */
static int body_hmac(const sigutil_signer *g, const kg_webhook_secrets *secrets,
                     size_t i, const void *payload, size_t plen,
                     unsigned char mac[SIGUTIL_MAC_LEN])
{
    const void *piece[1] = { payload };
    return sigutil_secret_hmac(g, secrets, i, piece, &plen, 1, mac);
}

static kg_error github_sign(void *inst, const kg_webhook_message *msg,
                            const kg_webhook_secrets *secrets,
                            kg_webhook_headers *out, kg_diag *diag)
{
    unsigned char mac[SIGUTIL_MAC_LEN];
    char value[7 + 2 * SIGUTIL_MAC_LEN + 1] = "sha256=";
    (void)diag;

    if (body_hmac(inst, secrets, 0, msg->payload, msg->payload_len, mac) != 0)
        return KG_ERR_NOMEM;
    kg_modutil_hex(mac, sizeof(mac), value + 7);
    OPENSSL_cleanse(mac, sizeof(mac));
    return kg_webhook_headers_add(out, HEADER, value);
}

static kg_error github_verify(void *inst, const kg_webhook_headers *h,
                              const void *payload, size_t payload_len,
                              const kg_webhook_secrets *secrets,
                              int64_t tolerance, int64_t now,
                              kg_webhook_status *st_r, kg_diag *diag)
{
    unsigned char want[SIGUTIL_MAC_LEN], mac[SIGUTIL_MAC_LEN];
    size_t count, i, n = kg_webhook_secrets_count(secrets);
    const char *v = kg_webhook_headers_get(h, HEADER, &count);
    char shown[48];
    int match = 0;
    (void)tolerance;
    (void)now;

    if (count == 0) {
        if (kg_webhook_headers_get(h, "X-Hub-Signature", NULL) != NULL)
            return sigutil_fail(diag, st_r, KG_WEBHOOK_MISSING_HEADER,
                                "missing header " HEADER " (the SHA-1 "
                                "X-Hub-Signature alone is not accepted)");
        return sigutil_fail(diag, st_r, KG_WEBHOOK_MISSING_HEADER,
                            "missing header " HEADER);
    }
    if (count > 1)
        return sigutil_fail(diag, st_r, KG_WEBHOOK_BAD_FORMAT, "header "
                            HEADER " appears %zu times (expected once)", count);
    if (strncmp(v, "sha256=", 7) != 0 ||
        sigutil_unhex(v + 7, strlen(v + 7), want, sizeof(want)) != 0)
        return sigutil_fail(diag, st_r, KG_WEBHOOK_BAD_FORMAT, HEADER " '%s' "
                            "is not sha256=<64 hex digits>",
                            sigutil_shown(v, strlen(v), shown));
    /* Every secret, without stopping at a match (constant time). */
    for (i = 0; i < n; i++) {
        if (body_hmac(inst, secrets, i, payload, payload_len, mac) != 0)
            return KG_ERR_NOMEM;
        match |= CRYPTO_memcmp(mac, want, sizeof(mac)) == 0;
    }
    OPENSSL_cleanse(mac, sizeof(mac));
    if (!match)
        return sigutil_fail(diag, st_r, KG_WEBHOOK_NO_MATCH, "no matching "
                            "signature: checked against %zu secret%s (wrong "
                            "secret, or the payload changed)", n,
                            n == 1 ? "" : "s");
    *st_r = KG_WEBHOOK_VALID;
    return KG_OK;
}

static const struct kg_signer_ops github_ops = {
    .signature_header = HEADER,
    .sign = github_sign,
    .verify = github_verify,
    .tolerance = NULL,
};

KG_PLUGIN_DEFINE(github) = {
    KG_PLUGIN_HEADER,
    .kind = KG_PLUGIN_SIGNER,
    .name = "github",
    .description = "GitHub-style signatures (X-Hub-Signature-256: sha256=<hex HMAC>)",
    .create = sigutil_create_untimed,
    .destroy = sigutil_destroy,
    .signer = &github_ops,
};
