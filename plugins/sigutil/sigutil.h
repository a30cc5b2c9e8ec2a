/*
 * sigutil.h - what the signer plugins (standard, github, stripe) share:
 * the instance (create/destroy/tolerance), HMAC-SHA256 over several
 * pieces, strict hex and base64, timestamp parsing and the tolerance
 * check, and reasons for a failed verification.  Compiled into each of those plugins (not exported:
 * the plugins' only export is their descriptor).
 */
#ifndef KEYGATE_SIGUTIL_H
#define KEYGATE_SIGUTIL_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include <keygate/webhook.h>
#include <keygate/modutil.h>   /* kg_modutil_hex */

#define SIGUTIL_MAC_LEN 32          /* HMAC-SHA256 */
#define SIGUTIL_MAX_SIGNATURES 16   /* per header: more is malformed */

/* An HMAC-SHA256 context without a key, copied for each computation
 * (fetching the algorithm once per instance, not per message). */
EVP_MAC_CTX *sigutil_hmac_template(void);

/* HMAC-SHA256 of the concatenation of n pieces; 0 on success. */
int sigutil_hmac(EVP_MAC_CTX *tmpl, const void *key, size_t keylen,
                 const void *const *piece, const size_t *len, size_t n,
                 unsigned char out[SIGUTIL_MAC_LEN]);

/* Exactly 2 * outlen hex digits (either case); 0 on success. */
int sigutil_unhex(const char *s, size_t n, unsigned char *out, size_t outlen);

/* Base64 (padded) of n bytes into out (4 * ((n + 2) / 3) + 1). */
void sigutil_b64(const unsigned char *in, size_t n, char *out);
/*
 * Strict padded base64 of at most `cap` bytes (cap >= 3 * n / 4);
 * returns the decoded length or -1.
 */
long sigutil_unb64(const char *s, size_t n, unsigned char *out, size_t cap);

/* Unix seconds written as 1 to 18 digits; 0 on success. */
int sigutil_parse_time(const char *s, size_t n, int64_t *t_r);

/* A header value as it may be shown in a message: printable, cut short. */
const char *sigutil_shown(const char *s, size_t n, char out[48]);

/*
 * A signer that sends one signature per secret may be given at most
 * SIGUTIL_MAX_SIGNATURES secrets: a header with more is malformed to the
 * receiver (verify), so what was signed would never verify.  KG_OK, or
 * KG_ERR_INVALID with the reason in diag.
 */
kg_error sigutil_check_sign_count(size_t nsecrets, kg_diag *diag);

/* Set *st_r and the reason; returns KG_ERR_VERIFY. */
kg_error sigutil_fail(kg_diag *diag, kg_webhook_status *st_r,
                      kg_webhook_status st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* KG_OK if ts is within tolerance of now, else the failure. */
kg_error sigutil_check_time(int64_t ts, int64_t now, int64_t tolerance,
                            kg_webhook_status *st_r, kg_diag *diag);

/* The tolerance option (a duration, default 5m, 0 allowed). */
kg_error sigutil_opt_tolerance(kg_opts *opts, int64_t *tolerance_r);

/*
 * A signer instance: the HMAC-SHA256 template and the tolerance option.
 * Every HMAC signer has the same one, so the plugins' descriptors point
 * at these functions directly.
 */
typedef struct sigutil_signer {
    int64_t tolerance;
    EVP_MAC_CTX *hmac;
} sigutil_signer;

/* kg_plugin.create for schemes with a timestamp: reads `tolerance`. */
kg_error sigutil_create(kg_opts *opts, void **inst_r);
/* kg_plugin.create for schemes without one: no options at all. */
kg_error sigutil_create_untimed(kg_opts *opts, void **inst_r);
/* kg_plugin.destroy (accepts a half-built instance and NULL). */
void sigutil_destroy(void *inst);
/* kg_signer_ops.tolerance. */
int64_t sigutil_tolerance(void *inst);

/* HMAC-SHA256 of n pieces keyed with secret i's bytes as given; 0 on success. */
int sigutil_secret_hmac(const sigutil_signer *s, const kg_webhook_secrets *secrets,
                        size_t i, const void *const *piece, const size_t *len,
                        size_t n, unsigned char out[SIGUTIL_MAC_LEN]);

#endif
