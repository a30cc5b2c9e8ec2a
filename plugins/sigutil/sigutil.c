/* sigutil.c - helpers shared by the signer plugins (see sigutil.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/params.h>

#include "sigutil.h"

EVP_MAC_CTX *sigutil_hmac_template(void)
{
    OSSL_PARAM params[2];
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = NULL;

    if (mac == NULL)
        return NULL;
    ctx = EVP_MAC_CTX_new(mac);
    /* The context holds its own reference to the algorithm. */
    EVP_MAC_free(mac);
    if (ctx == NULL)
        return NULL;
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
                                                 (char *)"SHA256", 0);
    params[1] = OSSL_PARAM_construct_end();
    if (EVP_MAC_CTX_set_params(ctx, params) != 1) {
        EVP_MAC_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

int sigutil_hmac(EVP_MAC_CTX *tmpl, const void *key, size_t keylen,
                 const void *const *piece, const size_t *len, size_t n,
                 unsigned char out[SIGUTIL_MAC_LEN])
{
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_dup(tmpl);
    size_t outlen = 0, i;
    int rc = -1;

    if (ctx == NULL)
        return -1;
    if (EVP_MAC_init(ctx, key, keylen, NULL) != 1)
        goto out;
    for (i = 0; i < n; i++)
        if (len[i] > 0 && EVP_MAC_update(ctx, piece[i], len[i]) != 1)
            goto out;
    if (EVP_MAC_final(ctx, out, &outlen, SIGUTIL_MAC_LEN) != 1 ||
        outlen != SIGUTIL_MAC_LEN)
        goto out;
    rc = 0;
out:
    /* Frees (and cleanses) the keyed state. */
    EVP_MAC_CTX_free(ctx);
    return rc;
}


static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int sigutil_unhex(const char *s, size_t n, unsigned char *out, size_t outlen)
{
    size_t i;
    if (n != 2 * outlen)
        return -1;
    for (i = 0; i < outlen; i++) {
        int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return 0;
}

void sigutil_b64(const unsigned char *in, size_t n, char *out)
{
    EVP_EncodeBlock((unsigned char *)out, in, (int)n);
}

static int b64char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (c >= '0' && c <= '9') || c == '+' || c == '/';
}

long sigutil_unb64(const char *s, size_t n, unsigned char *out, size_t cap)
{
    size_t pad = 0, i;
    int got;

    /* EVP_DecodeBlock skips blanks and counts padding as data: check
     * the alphabet and the padding first, then subtract it. */
    if (n == 0 || n % 4 != 0 || n / 4 * 3 > cap || n > 1 << 20)
        return -1;
    if (s[n - 1] == '=')
        pad = s[n - 2] == '=' ? 2 : 1;
    for (i = 0; i < n - pad; i++)
        if (!b64char(s[i]))
            return -1;
    /* Canonical only: the bits a padded last character leaves over
     * must be zero, so that one signature has one spelling. */
    if (pad > 0) {
        const char *b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        int last = (int)(strchr(b64, s[n - pad - 1]) - b64);
        if ((pad == 1 && (last & 3) != 0) || (pad == 2 && (last & 15) != 0))
            return -1;
    }
    got = EVP_DecodeBlock(out, (const unsigned char *)s, (int)n);
    if (got < 0 || (size_t)got != n / 4 * 3)
        return -1;
    return (long)(got - (int)pad);
}

int sigutil_parse_time(const char *s, size_t n, int64_t *t_r)
{
    int64_t t = 0;
    size_t i;
    if (n == 0 || n > 18)
        return -1;
    for (i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        t = t * 10 + (s[i] - '0');
    }
    *t_r = t;
    return 0;
}

const char *sigutil_shown(const char *s, size_t n, char out[48])
{
    size_t i, max = n > 40 ? 40 : n;
    for (i = 0; i < max; i++) {
        unsigned char c = (unsigned char)s[i];
        out[i] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    if (n > max)
        memcpy(out + i, "...", 4);
    else
        out[i] = '\0';
    return out;
}

kg_error sigutil_check_sign_count(size_t nsecrets, kg_diag *diag)
{
    if (nsecrets <= SIGUTIL_MAX_SIGNATURES)
        return KG_OK;
    if (diag != NULL)
        snprintf(diag->message, sizeof(diag->message), "%zu secrets: one signature "
                 "each would make %zu, and a receiver refuses a header with more "
                 "than %d (keep the newest %d)", nsecrets, nsecrets,
                 SIGUTIL_MAX_SIGNATURES, SIGUTIL_MAX_SIGNATURES);
    return KG_ERR_INVALID;
}

kg_error sigutil_fail(kg_diag *diag, kg_webhook_status *st_r,
                      kg_webhook_status st, const char *fmt, ...)
{
    va_list ap;
    *st_r = st;
    if (diag != NULL) {
        va_start(ap, fmt);
        vsnprintf(diag->message, sizeof(diag->message), fmt, ap);
        va_end(ap);
    }
    return KG_ERR_VERIFY;
}

kg_error sigutil_check_time(int64_t ts, int64_t now, int64_t tolerance,
                            kg_webhook_status *st_r, kg_diag *diag)
{
    if (now - ts > tolerance)
        return sigutil_fail(diag, st_r, KG_WEBHOOK_TOO_OLD, "timestamp %lld "
                            "is %lld s before now, more than the tolerance "
                            "of %lld s (a replay, or a clock out of sync)",
                            (long long)ts, (long long)(now - ts),
                            (long long)tolerance);
    if (ts - now > tolerance)
        return sigutil_fail(diag, st_r, KG_WEBHOOK_IN_FUTURE, "timestamp %lld "
                            "is %lld s after now, more than the tolerance "
                            "of %lld s (check the sender's clock)",
                            (long long)ts, (long long)(ts - now),
                            (long long)tolerance);
    return KG_OK;
}

kg_error sigutil_opt_tolerance(kg_opts *opts, int64_t *tolerance_r)
{
    return kg_opts_get_duration(opts, "tolerance", KG_WEBHOOK_TOLERANCE,
                                tolerance_r);
}

/* Both creates leave *inst_r set on failure: the loader destroys it. */
static kg_error signer_new(kg_opts *opts, int timed, void **inst_r)
{
    sigutil_signer *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return KG_ERR_NOMEM;
    *inst_r = s;
    if (timed && sigutil_opt_tolerance(opts, &s->tolerance) != KG_OK)
        return KG_ERR_POLICY;
    s->hmac = sigutil_hmac_template();
    return s->hmac ? KG_OK : KG_ERR_NOMEM;
}

kg_error sigutil_create(kg_opts *opts, void **inst_r)
{
    return signer_new(opts, 1, inst_r);
}

kg_error sigutil_create_untimed(kg_opts *opts, void **inst_r)
{
    return signer_new(opts, 0, inst_r);
}

void sigutil_destroy(void *inst)
{
    sigutil_signer *s = inst;
    if (s == NULL)
        return;
    EVP_MAC_CTX_free(s->hmac);
    free(s);
}

int64_t sigutil_tolerance(void *inst)
{
    return ((sigutil_signer *)inst)->tolerance;
}

int sigutil_secret_hmac(const sigutil_signer *s, const kg_webhook_secrets *secrets,
                        size_t i, const void *const *piece, const size_t *len,
                        size_t n, unsigned char out[SIGUTIL_MAC_LEN])
{
    size_t klen;
    const char *key = kg_webhook_secret(secrets, i, &klen);
    return sigutil_hmac(s->hmac, key, klen, piece, len, n, out);
}
