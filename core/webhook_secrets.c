/*
 * webhook_secrets.c - webhook secrets: the rotation list (newest first,
 * wiped on free) and the generation of new secrets and message ids from
 * OpenSSL's RNG, in the Standard Webhooks serialisations: whsec_ (HMAC
 * key), whsk_ (Ed25519 seed) and whpk_ (Ed25519 public key), each the
 * base64 of the raw bytes.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <keygate/webhook.h>

#define V1_SECRET_BYTES 32  /* the spec asks for 24 to 64 */
#define ED25519_LEN 32

struct secret {
    char *s;
    size_t len;
};

struct kg_webhook_secrets {
    struct secret *v;
    size_t n;
};

const char *kg_webhook_status_name(kg_webhook_status st)
{
    switch (st) {
    case KG_WEBHOOK_VALID: return "valid";
    case KG_WEBHOOK_MISSING_HEADER: return "missing_header";
    case KG_WEBHOOK_BAD_FORMAT: return "bad_format";
    case KG_WEBHOOK_NO_MATCH: return "no_matching_signature";
    case KG_WEBHOOK_TOO_OLD: return "timestamp_too_old";
    case KG_WEBHOOK_IN_FUTURE: return "timestamp_in_future";
    case KG_WEBHOOK__LAST: break;
    }
    return "unknown";
}

kg_error kg_webhook_secrets_new(kg_webhook_secrets **s_r)
{
    if (s_r == NULL)
        return KG_ERR_INVALID;
    *s_r = calloc(1, sizeof(**s_r));
    return *s_r ? KG_OK : KG_ERR_NOMEM;
}

void kg_webhook_secrets_free(kg_webhook_secrets *s)
{
    size_t i;
    if (s == NULL)
        return;
    for (i = 0; i < s->n; i++) {
        OPENSSL_cleanse(s->v[i].s, s->v[i].len);
        free(s->v[i].s);
    }
    free(s->v);
    free(s);
}

kg_error kg_webhook_secrets_add(kg_webhook_secrets *s, const char *secret,
                                size_t len)
{
    struct secret *nv;
    char *copy;

    if (s == NULL || secret == NULL || len == 0)
        return KG_ERR_INVALID;
    copy = malloc(len + 1);
    if (copy == NULL)
        return KG_ERR_NOMEM;
    nv = realloc(s->v, (s->n + 1) * sizeof(*nv));
    if (nv == NULL) {
        free(copy);
        return KG_ERR_NOMEM;
    }
    memcpy(copy, secret, len);
    copy[len] = '\0';
    s->v = nv;
    s->v[s->n].s = copy;
    s->v[s->n].len = len;
    s->n++;
    return KG_OK;
}

size_t kg_webhook_secrets_count(const kg_webhook_secrets *s)
{
    return s ? s->n : 0;
}

const char *kg_webhook_secret(const kg_webhook_secrets *s, size_t i,
                              size_t *len_r)
{
    if (s == NULL || i >= s->n)
        return NULL;
    if (len_r != NULL)
        *len_r = s->v[i].len;
    return s->v[i].s;
}

/* prefix + base64(raw) into out; KG_ERR_INVALID if it does not fit. */
static kg_error encode(const char *prefix, const unsigned char *raw,
                       size_t n, char *out, size_t size)
{
    size_t plen = strlen(prefix);
    size_t need = plen + 4 * ((n + 2) / 3) + 1;

    if (out == NULL || size < need)
        return KG_ERR_INVALID;
    memcpy(out, prefix, plen);
    EVP_EncodeBlock((unsigned char *)out + plen, raw, (int)n);
    return KG_OK;
}

static kg_error ed25519_public(EVP_PKEY *pk, char *out, size_t size)
{
    unsigned char pub[ED25519_LEN];
    size_t len = sizeof(pub);

    if (EVP_PKEY_get_raw_public_key(pk, pub, &len) != 1 || len != ED25519_LEN)
        return KG_ERR_INVALID;
    return encode("whpk_", pub, len, out, size);
}

kg_error kg_webhook_secret_generate(kg_webhook_secret_type type,
                                    char *secret, size_t secret_size,
                                    char *public_out, size_t public_size)
{
    unsigned char raw[V1_SECRET_BYTES];
    size_t len = ED25519_LEN;
    EVP_PKEY *pk = NULL;
    kg_error e = KG_ERR_INVALID;

    if (type == KG_WEBHOOK_SECRET_V1) {
        if (RAND_bytes(raw, sizeof(raw)) != 1) {
            e = KG_ERR_IO;
            goto out;
        }
        e = encode("whsec_", raw, sizeof(raw), secret, secret_size);
        goto out;
    }
    if (type != KG_WEBHOOK_SECRET_V1A || public_out == NULL)
        goto out;
    /* The seed is the secret key (as RFC 8032 and the spec's reference
     * libraries hold it); the public key is derived from it. */
    pk = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    if (pk == NULL) {
        e = KG_ERR_IO;
        goto out;
    }
    if (EVP_PKEY_get_raw_private_key(pk, raw, &len) != 1 || len != ED25519_LEN)
        goto out;
    if ((e = encode("whsk_", raw, len, secret, secret_size)) != KG_OK)
        goto out;
    e = ed25519_public(pk, public_out, public_size);
out:
    OPENSSL_cleanse(raw, sizeof(raw));
    EVP_PKEY_free(pk);
    if (e != KG_OK && secret != NULL && secret_size > 0)
        OPENSSL_cleanse(secret, secret_size);
    return e;
}

kg_error kg_webhook_public_key(const char *secret_key, char *public_out,
                               size_t public_size)
{
    unsigned char raw[ED25519_LEN + 3];
    char b64[64];
    size_t blen;
    EVP_PKEY *pk = NULL;
    kg_error e = KG_ERR_INVALID;

    if (secret_key == NULL || strncmp(secret_key, "whsk_", 5) != 0)
        return KG_ERR_INVALID;
    blen = strlen(secret_key + 5);
    /* 32 bytes are exactly 44 base64 characters ending in one '='. */
    if (blen != 44)
        return KG_ERR_INVALID;
    memcpy(b64, secret_key + 5, blen);
    if (EVP_DecodeBlock(raw, (unsigned char *)b64, (int)blen) != 33 ||
        b64[43] != '=' || b64[42] == '=')
        goto out;
    pk = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, raw, ED25519_LEN);
    if (pk == NULL)
        goto out;
    e = ed25519_public(pk, public_out, public_size);
out:
    OPENSSL_cleanse(raw, sizeof(raw));
    OPENSSL_cleanse(b64, sizeof(b64));
    EVP_PKEY_free(pk);
    return e;
}

kg_error kg_webhook_id_generate(char *buf, size_t size)
{
    static const char b62[] =
        "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    unsigned char rnd[48];
    size_t i = 0, j;

    if (buf == NULL || size < KG_WEBHOOK_ID_LEN + 1)
        return KG_ERR_INVALID;
    memcpy(buf, "msg_", 4);
    while (i < KG_WEBHOOK_ID_LEN - 4) {
        if (RAND_bytes(rnd, sizeof(rnd)) != 1)
            return KG_ERR_IO;
        /* Rejection sampling keeps the digits uniform. */
        for (j = 0; j < sizeof(rnd) && i < KG_WEBHOOK_ID_LEN - 4; j++)
            if (rnd[j] < 248)
                buf[4 + i++] = b62[rnd[j] % 62];
    }
    buf[KG_WEBHOOK_ID_LEN] = '\0';
    return KG_OK;
}
