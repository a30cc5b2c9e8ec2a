/*
 * stripe - signer plugin: Stripe-style webhook signatures.
 *
 *   Stripe-Signature: t=<Unix seconds>,v1=<hex>[,v1=<hex>...]
 *
 * Each v1 is the hex HMAC-SHA256 of "<t>.<payload>" keyed with a
 * secret's bytes as given (Stripe's whsec_ strings are used whole).
 * Signing puts one v1 per secret of the list (rotation); verification
 * accepts any v1 made by any secret, in constant time, and refuses a t
 * more than `tolerance` from now on either side.  Other schemes in the
 * header (v0, ...) are ignored.
 *
 * Options: tolerance (duration, default 5m).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "../sigutil/sigutil.h"

#define HEADER "Stripe-Signature"

/* The signed content "<t>.<payload>", keyed with secret i. */
static int content_hmac(const sigutil_signer *s, const kg_webhook_secrets *secrets,
                        size_t i, const char *t, size_t tlen,
                        const void *payload, size_t plen,
                        unsigned char mac[SIGUTIL_MAC_LEN])
{
    const void *piece[3] = { t, ".", payload };
    size_t len[3] = { tlen, 1, plen };
    return sigutil_secret_hmac(s, secrets, i, piece, len, 3, mac);
}

static kg_error stripe_sign(void *inst, const kg_webhook_message *msg,
                            const kg_webhook_secrets *secrets,
                            kg_webhook_headers *out, kg_diag *diag)
{
    size_t i, n = kg_webhook_secrets_count(secrets), len;
    unsigned char mac[SIGUTIL_MAC_LEN];
    char t[24], *value;
    kg_error e = sigutil_check_sign_count(n, diag);

    if (e != KG_OK)
        return e;
    snprintf(t, sizeof(t), "%lld", (long long)msg->timestamp);
    value = malloc(2 + strlen(t) + n * (4 + 2 * SIGUTIL_MAC_LEN) + 1);
    if (value == NULL)
        return KG_ERR_NOMEM;
    len = (size_t)sprintf(value, "t=%s", t);
    for (i = 0; i < n; i++) {
        if (content_hmac(inst, secrets, i, t, strlen(t), msg->payload,
                         msg->payload_len, mac) != 0) {
            e = KG_ERR_NOMEM;
            break;
        }
        memcpy(value + len, ",v1=", 4);
        kg_modutil_hex(mac, sizeof(mac), value + len + 4);
        len += 4 + 2 * SIGUTIL_MAC_LEN;
    }
    OPENSSL_cleanse(mac, sizeof(mac));
    if (e == KG_OK)
        e = kg_webhook_headers_add(out, HEADER, value);
    free(value);
    return e;
}

static kg_error stripe_verify(void *inst, const kg_webhook_headers *h,
                              const void *payload, size_t payload_len,
                              const kg_webhook_secrets *secrets,
                              int64_t tolerance, int64_t now,
                              kg_webhook_status *st_r, kg_diag *diag)
{
    unsigned char sig[SIGUTIL_MAX_SIGNATURES][SIGUTIL_MAC_LEN];
    unsigned char mac[SIGUTIL_MAC_LEN];
    size_t count, nsig = 0, nth = 0, pos = 0, i, j;
    size_t nsec = kg_webhook_secrets_count(secrets);
    const char *v = kg_webhook_headers_get(h, HEADER, &count);
    const char *t = NULL;
    size_t tlen = 0;
    int64_t ts = 0;
    int match = 0;
    char shown[48];
    kg_error e;

    if (count == 0)
        return sigutil_fail(diag, st_r, KG_WEBHOOK_MISSING_HEADER,
                            "missing header " HEADER);
    if (count > 1)
        return sigutil_fail(diag, st_r, KG_WEBHOOK_BAD_FORMAT, "header "
                            HEADER " appears %zu times (expected once)", count);
    /* Items "key=value" separated by commas, blanks around them allowed. */
    for (;;) {
        size_t start, end, eq;
        while (v[pos] == ' ' || v[pos] == '\t')
            pos++;
        if (v[pos] == '\0')
            break;
        start = pos;
        while (v[pos] != '\0' && v[pos] != ',')
            pos++;
        end = pos;
        while (end > start && (v[end - 1] == ' ' || v[end - 1] == '\t'))
            end--;
        if (v[pos] == ',')
            pos++;
        nth++;
        for (eq = start; eq < end && v[eq] != '='; eq++)
            ;
        if (eq == end || eq == start || eq + 1 == end)
            return sigutil_fail(diag, st_r, KG_WEBHOOK_BAD_FORMAT, HEADER
                                ": item %zu '%s' is not key=value", nth,
                                sigutil_shown(v + start, end - start, shown));
        if (eq - start == 1 && v[start] == 't') {
            if (t != NULL)
                return sigutil_fail(diag, st_r, KG_WEBHOOK_BAD_FORMAT, HEADER
                                    " has more than one t=");
            t = v + eq + 1;
            tlen = end - eq - 1;
            if (sigutil_parse_time(t, tlen, &ts) != 0)
                return sigutil_fail(diag, st_r, KG_WEBHOOK_BAD_FORMAT, HEADER
                                    ": t='%s' is not Unix seconds",
                                    sigutil_shown(t, tlen, shown));
        } else if (eq - start == 2 && memcmp(v + start, "v1", 2) == 0) {
            if (nsig == SIGUTIL_MAX_SIGNATURES)
                return sigutil_fail(diag, st_r, KG_WEBHOOK_BAD_FORMAT, HEADER
                                    " carries more than %d v1 signatures",
                                    SIGUTIL_MAX_SIGNATURES);
            if (sigutil_unhex(v + eq + 1, end - eq - 1, sig[nsig],
                              SIGUTIL_MAC_LEN) != 0)
                return sigutil_fail(diag, st_r, KG_WEBHOOK_BAD_FORMAT, HEADER
                                    ": item %zu is not v1=<64 hex digits>",
                                    nth);
            nsig++;
        }
        /* Any other key (v0, a future scheme) is not ours. */
    }
    if (t == NULL)
        return sigutil_fail(diag, st_r, KG_WEBHOOK_BAD_FORMAT, HEADER
                            " has no t=<timestamp>");
    if ((e = sigutil_check_time(ts, now, tolerance, st_r, diag)) != KG_OK)
        return e;
    if (nsig == 0)
        return sigutil_fail(diag, st_r, KG_WEBHOOK_NO_MATCH, HEADER
                            " has no v1= signature");
    /* Every secret against every signature, no early exit. */
    for (i = 0; i < nsec; i++) {
        if (content_hmac(inst, secrets, i, t, tlen, payload, payload_len,
                         mac) != 0)
            return KG_ERR_NOMEM;
        for (j = 0; j < nsig; j++)
            match |= CRYPTO_memcmp(mac, sig[j], SIGUTIL_MAC_LEN) == 0;
    }
    OPENSSL_cleanse(mac, sizeof(mac));
    if (!match)
        return sigutil_fail(diag, st_r, KG_WEBHOOK_NO_MATCH, "no matching "
                            "signature: %zu signature%s checked against %zu "
                            "secret%s (wrong secret, or t or the payload "
                            "changed)", nsig, nsig == 1 ? "" : "s", nsec,
                            nsec == 1 ? "" : "s");
    *st_r = KG_WEBHOOK_VALID;
    return KG_OK;
}

static const struct kg_signer_ops stripe_ops = {
    .signature_header = HEADER,
    .sign = stripe_sign,
    .verify = stripe_verify,
    .tolerance = sigutil_tolerance,
};

KG_PLUGIN_DEFINE(stripe) = {
    KG_PLUGIN_HEADER,
    .kind = KG_PLUGIN_SIGNER,
    .name = "stripe",
    .description = "Stripe-style signatures (Stripe-Signature: t=...,v1=<hex HMAC>)",
    .create = sigutil_create,
    .destroy = sigutil_destroy,
    .signer = &stripe_ops,
};
