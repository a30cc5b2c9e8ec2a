/*
 * standard - signer plugin: Standard Webhooks (standardwebhooks.com).
 *
 *   webhook-id: msg_...
 *   webhook-timestamp: <Unix seconds>
 *   webhook-signature: v1,<base64 HMAC-SHA256> v1a,<base64 Ed25519> ...
 *
 * The signed content is "<id>.<timestamp>.<payload>".  Secrets:
 * whsec_<base64> (the HMAC key is the decoded bytes) signs and verifies
 * v1; whsk_<base64 Ed25519 seed> signs (and verifies) v1a; whpk_<base64
 * Ed25519 public key> verifies v1a.  Signing uses every secret of the
 * list (rotation: the receiver accepts any); verification accepts a
 * signature made by any secret, compares MACs in constant time and
 * refuses timestamps more than `tolerance` from now on either side.
 * Signature versions other than v1 and v1a are ignored (the spec's room
 * for new schemes).
 *
 * Options: tolerance (duration, default 5m).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "../sigutil/sigutil.h"

#define ED_KEY_LEN 32
#define ED_SIG_LEN 64
#define HMAC_KEY_MIN 24   /* the spec: at least 24 bytes ... */
#define HMAC_KEY_MAX 64   /* ... and at most 512 bits */
#define MAX_ID_LEN 256

/* A secret, decoded. */
enum kind { K_HMAC, K_SIGN, K_PUBLIC };
struct key {
    enum kind kind;
    unsigned char raw[HMAC_KEY_MAX + 3];
    size_t len;
    EVP_PKEY *pk;   /* K_SIGN, K_PUBLIC */
};

static void key_clear(struct key *k)
{
    OPENSSL_cleanse(k->raw, sizeof(k->raw));
    EVP_PKEY_free(k->pk);
    k->pk = NULL;
}

/*
 * Decode secret i.  for_signing: whpk_ is refused and whsec_ must have
 * the spec's length.  KG_ERR_INVALID with the reason in diag.
 */
static kg_error key_decode(const kg_webhook_secrets *secrets, size_t i,
                           int for_signing, struct key *k, kg_diag *diag)
{
    size_t len, plen;
    const char *sec = kg_webhook_secret(secrets, i, &len);
    const char *what;
    long got;

    memset(k, 0, sizeof(*k));
    if (len > 6 && strncmp(sec, "whsec_", 6) == 0) {
        k->kind = K_HMAC;
        plen = 6;
        what = "whsec_";
    } else if (len > 5 && strncmp(sec, "whsk_", 5) == 0) {
        k->kind = K_SIGN;
        plen = 5;
        what = "whsk_";
    } else if (len > 5 && strncmp(sec, "whpk_", 5) == 0) {
        k->kind = K_PUBLIC;
        plen = 5;
        what = "whpk_";
        if (for_signing) {
            snprintf(diag->message, sizeof(diag->message), "secret %zu is a "
                     "whpk_ public key: it verifies v1a signatures but cannot "
                     "sign (sign with the whsk_ secret key)", i + 1);
            return KG_ERR_INVALID;
        }
    } else {
        snprintf(diag->message, sizeof(diag->message), "secret %zu is not a "
                 "Standard Webhooks secret: expected whsec_<base64> (v1), "
                 "whsk_<base64> or whpk_<base64> (v1a); make one with "
                 "`keygate webhook secret new`", i + 1);
        return KG_ERR_INVALID;
    }
    if (len - plen > 4 * ((HMAC_KEY_MAX + 2) / 3)) {
        snprintf(diag->message, sizeof(diag->message), "secret %zu: too long "
                 "for a %s secret (at most %d bytes)", i + 1, what,
                 k->kind == K_HMAC ? HMAC_KEY_MAX : ED_KEY_LEN);
        return KG_ERR_INVALID;
    }
    got = sigutil_unb64(sec + plen, len - plen, k->raw, sizeof(k->raw));
    if (got < 0) {
        snprintf(diag->message, sizeof(diag->message), "secret %zu: what "
                 "follows %s is not valid base64", i + 1, what);
        return KG_ERR_INVALID;
    }
    k->len = (size_t)got;
    if (k->kind == K_HMAC) {
        if (k->len == 0 || k->len > HMAC_KEY_MAX ||
            (for_signing && k->len < HMAC_KEY_MIN)) {
            snprintf(diag->message, sizeof(diag->message), "secret %zu: a "
                     "whsec_ secret must hold %d to %d bytes, not %zu", i + 1,
                     HMAC_KEY_MIN, HMAC_KEY_MAX, k->len);
            key_clear(k);
            return KG_ERR_INVALID;
        }
        return KG_OK;
    }
    if (k->len != ED_KEY_LEN) {
        snprintf(diag->message, sizeof(diag->message), "secret %zu: a %s key "
                 "holds %d bytes, not %zu", i + 1, what, ED_KEY_LEN, k->len);
        key_clear(k);
        return KG_ERR_INVALID;
    }
    k->pk = k->kind == K_SIGN
        ? EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, k->raw, k->len)
        : EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, k->raw, k->len);
    if (k->pk == NULL) {
        snprintf(diag->message, sizeof(diag->message), "secret %zu: not a "
                 "usable Ed25519 key", i + 1);
        key_clear(k);
        return KG_ERR_INVALID;
    }
    return KG_OK;
}

/* The signed content in one piece (Ed25519 signs a whole message). */
static unsigned char *content_join(const char *id, const char *ts,
                                   const void *payload, size_t plen,
                                   size_t *len_r)
{
    size_t il = strlen(id), tl = strlen(ts);
    unsigned char *buf;

    if (plen > SIZE_MAX - il - tl - 2)
        return NULL;
    buf = malloc(il + tl + 2 + plen + 1);
    if (buf == NULL)
        return NULL;
    memcpy(buf, id, il);
    buf[il] = '.';
    memcpy(buf + il + 1, ts, tl);
    buf[il + 1 + tl] = '.';
    if (plen)
        memcpy(buf + il + tl + 2, payload, plen);
    *len_r = il + tl + 2 + plen;
    return buf;
}

struct content {
    const char *id, *ts;
    const void *payload;
    size_t plen;
    unsigned char *joined;   /* made on first need */
    size_t jlen;
};

static int content_hmac(const sigutil_signer *s, struct content *c,
                        const struct key *k, unsigned char mac[SIGUTIL_MAC_LEN])
{
    const void *piece[5] = { c->id, ".", c->ts, ".", c->payload };
    size_t len[5] = { strlen(c->id), 1, strlen(c->ts), 1, c->plen };
    return sigutil_hmac(s->hmac, k->raw, k->len, piece, len, 5, mac);
}

static const unsigned char *content_whole(struct content *c, size_t *len_r)
{
    if (c->joined == NULL)
        c->joined = content_join(c->id, c->ts, c->payload, c->plen, &c->jlen);
    *len_r = c->jlen;
    return c->joined;
}

static kg_error standard_sign(void *inst, const kg_webhook_message *msg,
                              const kg_webhook_secrets *secrets,
                              kg_webhook_headers *out, kg_diag *diag)
{
    const sigutil_signer *s = inst;
    struct content c;
    char ts[24];
    size_t i, n = kg_webhook_secrets_count(secrets);
    char *sigs = NULL;
    size_t sigs_len = 0;
    kg_error e = KG_OK;
    EVP_MD_CTX *md = NULL;

    if ((e = sigutil_check_sign_count(n, diag)) != KG_OK)
        return e;
    snprintf(ts, sizeof(ts), "%lld", (long long)msg->timestamp);
    memset(&c, 0, sizeof(c));
    c.id = msg->id;
    c.ts = ts;
    c.payload = msg->payload;
    c.plen = msg->payload_len;
    /* "v1a," + 88 base64 + a space, per secret */
    sigs = malloc(n * 96 + 1);
    if (sigs == NULL)
        return KG_ERR_NOMEM;
    for (i = 0; i < n && e == KG_OK; i++) {
        struct key k;
        unsigned char raw[ED_SIG_LEN];
        size_t rlen = sizeof(raw), wlen;
        const unsigned char *whole;

        if ((e = key_decode(secrets, i, 1, &k, diag)) != KG_OK)
            break;
        if (sigs_len > 0)
            sigs[sigs_len++] = ' ';
        if (k.kind == K_HMAC) {
            if (content_hmac(s, &c, &k, raw) != 0)
                e = KG_ERR_NOMEM;
            rlen = SIGUTIL_MAC_LEN;
            memcpy(sigs + sigs_len, "v1,", 3);
            sigs_len += 3;
        } else {
            whole = content_whole(&c, &wlen);
            if (md == NULL)
                md = EVP_MD_CTX_new();
            else
                EVP_MD_CTX_reset(md);
            if (whole == NULL || md == NULL ||
                EVP_DigestSignInit(md, NULL, NULL, NULL, k.pk) != 1 ||
                EVP_DigestSign(md, raw, &rlen, whole, wlen) != 1 ||
                rlen != ED_SIG_LEN)
                e = KG_ERR_NOMEM;
            memcpy(sigs + sigs_len, "v1a,", 4);
            sigs_len += 4;
        }
        key_clear(&k);
        if (e == KG_OK) {
            sigutil_b64(raw, rlen, sigs + sigs_len);
            sigs_len += strlen(sigs + sigs_len);
        }
    }
    sigs[sigs_len] = '\0';
    if (e == KG_OK)
        e = kg_webhook_headers_add(out, "webhook-id", msg->id);
    if (e == KG_OK)
        e = kg_webhook_headers_add(out, "webhook-timestamp", ts);
    if (e == KG_OK)
        e = kg_webhook_headers_add(out, "webhook-signature", sigs);
    EVP_MD_CTX_free(md);
    free(c.joined);
    free(sigs);
    return e;
}

/* A required header: present exactly once. */
static kg_error need(const kg_webhook_headers *h, const char *name,
                     const char **v_r, kg_webhook_status *st_r, kg_diag *diag)
{
    size_t count;
    *v_r = kg_webhook_headers_get(h, name, &count);
    if (count == 0)
        return sigutil_fail(diag, st_r, KG_WEBHOOK_MISSING_HEADER,
                            "missing header %s", name);
    if (count > 1)
        return sigutil_fail(diag, st_r, KG_WEBHOOK_BAD_FORMAT,
                            "header %s appears %zu times (expected once)",
                            name, count);
    return KG_OK;
}

struct sig {
    int v1a;
    unsigned char raw[ED_SIG_LEN + 2];
};

static kg_error parse_signatures(const char *v, struct sig *sig, size_t *n_r,
                                 size_t *skipped_r, kg_webhook_status *st_r,
                                 kg_diag *diag)
{
    size_t n = 0, pos = 0, nth = 0;
    char shown[48];

    *skipped_r = 0;
    for (;;) {
        size_t start, end, comma;
        long got;

        while (v[pos] == ' ')
            pos++;
        if (v[pos] == '\0')
            break;
        start = pos;
        while (v[pos] != '\0' && v[pos] != ' ')
            pos++;
        end = pos;
        nth++;
        for (comma = start; comma < end && v[comma] != ','; comma++)
            ;
        if (comma == end || comma == start || comma + 1 == end)
            return sigutil_fail(diag, st_r, KG_WEBHOOK_BAD_FORMAT,
                                "webhook-signature: entry %zu '%s' is not "
                                "<version>,<base64>", nth,
                                sigutil_shown(v + start, end - start, shown));
        if (nth > SIGUTIL_MAX_SIGNATURES)
            return sigutil_fail(diag, st_r, KG_WEBHOOK_BAD_FORMAT,
                                "webhook-signature carries more than %d "
                                "signatures", SIGUTIL_MAX_SIGNATURES);
        if (comma - start == 2 && memcmp(v + start, "v1", 2) == 0) {
            sig[n].v1a = 0;
            got = sigutil_unb64(v + comma + 1, end - comma - 1, sig[n].raw,
                                sizeof(sig[n].raw));
            if (got != SIGUTIL_MAC_LEN)
                return sigutil_fail(diag, st_r, KG_WEBHOOK_BAD_FORMAT,
                                    "webhook-signature: entry %zu is not v1,"
                                    "<base64 of 32 bytes>", nth);
            n++;
        } else if (comma - start == 3 && memcmp(v + start, "v1a", 3) == 0) {
            sig[n].v1a = 1;
            got = sigutil_unb64(v + comma + 1, end - comma - 1, sig[n].raw,
                                sizeof(sig[n].raw));
            if (got != ED_SIG_LEN)
                return sigutil_fail(diag, st_r, KG_WEBHOOK_BAD_FORMAT,
                                    "webhook-signature: entry %zu is not v1a,"
                                    "<base64 of 64 bytes>", nth);
            n++;
        } else {
            (*skipped_r)++;   /* a version we do not know: not ours */
        }
    }
    if (nth == 0)
        return sigutil_fail(diag, st_r, KG_WEBHOOK_BAD_FORMAT,
                            "webhook-signature is empty");
    *n_r = n;
    return KG_OK;
}

static int valid_id(const char *id)
{
    size_t i;
    for (i = 0; id[i]; i++) {
        unsigned char c = (unsigned char)id[i];
        /* A dot would make "<id>.<timestamp>." ambiguous. */
        if (c <= 0x20 || c >= 0x7f || c == '.')
            return 0;
    }
    return i > 0 && i <= MAX_ID_LEN;
}

static kg_error standard_verify(void *inst, const kg_webhook_headers *h,
                                const void *payload, size_t payload_len,
                                const kg_webhook_secrets *secrets,
                                int64_t tolerance, int64_t now,
                                kg_webhook_status *st_r, kg_diag *diag)
{
    const sigutil_signer *s = inst;
    struct sig sig[SIGUTIL_MAX_SIGNATURES];
    const char *id, *tsv, *sigv;
    size_t nsig = 0, skipped, i, j, nsec = kg_webhook_secrets_count(secrets);
    size_t nv1 = 0, nhmac = 0, ned = 0;
    int64_t ts;
    int match = 0;
    char shown[48];
    struct content c;
    EVP_MD_CTX *md = NULL;
    kg_error e;

    if ((e = need(h, "webhook-id", &id, st_r, diag)) != KG_OK ||
        (e = need(h, "webhook-timestamp", &tsv, st_r, diag)) != KG_OK ||
        (e = need(h, "webhook-signature", &sigv, st_r, diag)) != KG_OK)
        return e;
    if (!valid_id(id))
        return sigutil_fail(diag, st_r, KG_WEBHOOK_BAD_FORMAT, "webhook-id "
                            "'%s' must be 1 to %d printable characters "
                            "without blanks or dots",
                            sigutil_shown(id, strlen(id), shown), MAX_ID_LEN);
    if (sigutil_parse_time(tsv, strlen(tsv), &ts) != 0)
        return sigutil_fail(diag, st_r, KG_WEBHOOK_BAD_FORMAT,
                            "webhook-timestamp '%s' is not Unix seconds",
                            sigutil_shown(tsv, strlen(tsv), shown));
    if ((e = parse_signatures(sigv, sig, &nsig, &skipped, st_r, diag)) != KG_OK)
        return e;
    if ((e = sigutil_check_time(ts, now, tolerance, st_r, diag)) != KG_OK)
        return e;
    if (nsig == 0)
        return sigutil_fail(diag, st_r, KG_WEBHOOK_NO_MATCH,
                            "webhook-signature has no v1 or v1a signature "
                            "(%zu of another version)", skipped);
    memset(&c, 0, sizeof(c));
    c.id = id;
    c.ts = tsv;
    c.payload = payload;
    c.plen = payload_len;
    for (j = 0; j < nsig; j++)
        nv1 += !sig[j].v1a;
    /*
     * Every secret against every signature of its kind, without
     * stopping at a match: the time taken does not depend on which
     * secret or signature matched.
     */
    for (i = 0; i < nsec; i++) {
        struct key k;
        unsigned char mac[SIGUTIL_MAC_LEN];

        if ((e = key_decode(secrets, i, 0, &k, diag)) != KG_OK)
            goto out;
        if (k.kind == K_HMAC) {
            nhmac++;
            if (nv1 > 0) {
                if (content_hmac(s, &c, &k, mac) != 0) {
                    key_clear(&k);
                    e = KG_ERR_NOMEM;
                    goto out;
                }
                for (j = 0; j < nsig; j++)
                    if (!sig[j].v1a)
                        match |= CRYPTO_memcmp(mac, sig[j].raw,
                                               SIGUTIL_MAC_LEN) == 0;
                OPENSSL_cleanse(mac, sizeof(mac));
            }
        } else {
            size_t wlen;
            const unsigned char *whole;
            ned++;
            for (j = 0; j < nsig; j++) {
                if (!sig[j].v1a)
                    continue;
                whole = content_whole(&c, &wlen);
                if (md == NULL)
                    md = EVP_MD_CTX_new();
                else
                    EVP_MD_CTX_reset(md);
                if (whole == NULL || md == NULL ||
                    EVP_DigestVerifyInit(md, NULL, NULL, NULL, k.pk) != 1) {
                    key_clear(&k);
                    e = KG_ERR_NOMEM;
                    goto out;
                }
                match |= EVP_DigestVerify(md, sig[j].raw, ED_SIG_LEN, whole,
                                          wlen) == 1;
            }
        }
        key_clear(&k);
    }
    if (match) {
        *st_r = KG_WEBHOOK_VALID;
        e = KG_OK;
    } else if (nv1 > 0 && nhmac == 0 && ned > 0 && nv1 == nsig) {
        e = sigutil_fail(diag, st_r, KG_WEBHOOK_NO_MATCH, "no matching "
                         "signature: the webhook carries v1 (HMAC) signatures "
                         "but only whsk_/whpk_ keys were given");
    } else if (nv1 == 0 && ned == 0) {
        e = sigutil_fail(diag, st_r, KG_WEBHOOK_NO_MATCH, "no matching "
                         "signature: the webhook carries v1a (Ed25519) "
                         "signatures but only whsec_ secrets were given");
    } else {
        e = sigutil_fail(diag, st_r, KG_WEBHOOK_NO_MATCH, "no matching "
                         "signature: %zu signature%s checked against %zu "
                         "secret%s (wrong secret, or the id, timestamp or "
                         "payload changed)", nsig, nsig == 1 ? "" : "s",
                         nsec, nsec == 1 ? "" : "s");
    }
out:
    EVP_MD_CTX_free(md);
    free(c.joined);
    OPENSSL_cleanse(sig, sizeof(sig));
    return e;
}

static const struct kg_signer_ops standard_ops = {
    .signature_header = "webhook-signature",
    .sign = standard_sign,
    .verify = standard_verify,
    .tolerance = sigutil_tolerance,
};

KG_PLUGIN_DEFINE(standard) = {
    KG_PLUGIN_HEADER,
    .kind = KG_PLUGIN_SIGNER,
    .name = "standard",
    .description = "Standard Webhooks signatures (v1 HMAC-SHA256, v1a Ed25519)",
    .create = sigutil_create,
    .destroy = sigutil_destroy,
    .signer = &standard_ops,
};
