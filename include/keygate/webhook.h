/*
 * webhook.h - signing the webhooks an API sends, and verifying them.
 *
 * A signer is an instance of a signer plugin (a scheme): `standard`
 * (Standard Webhooks: webhook-id, webhook-timestamp, webhook-signature,
 * v1 = HMAC-SHA256, v1a = Ed25519), `github` (X-Hub-Signature-256) and
 * `stripe` (Stripe-Signature).  The sender calls kg_webhook_sign() with
 * the message (id, timestamp, payload) and its secrets and gets the
 * headers to send; the receiver calls kg_webhook_verify() with the
 * headers it got, the payload bytes exactly as received, its secrets, a
 * tolerance and the current time, and gets KG_OK or a precise reason.
 *
 * Secrets are held in a kg_webhook_secrets list, newest first: during a
 * rotation the sender signs with every secret of the list (schemes that
 * carry several signatures) and the receiver accepts a signature made by
 * any of them.  Secrets are copied in and wiped when the list is freed.
 *
 * Signers may be created on their own (kg_webhook_signer_new) or come
 * from a policy's `signers:` section (kg_policy_signer_find), so that an
 * API signs with its policy's choice.
 */
#ifndef KEYGATE_WEBHOOK_H
#define KEYGATE_WEBHOOK_H

#include <keygate/keygate.h>
#include <keygate/plugin.h>

#ifdef __cplusplus
extern "C" {
#endif

#pragma GCC visibility push(default)

/* The tolerance of the spec (5 minutes), in seconds. */
#define KG_WEBHOOK_TOLERANCE 300
/* Pass as `tolerance` to use the signer's configured tolerance. */
#define KG_WEBHOOK_TOLERANCE_DEFAULT (-1)

/*
 * Why a verification failed.  Never renumber; only append before
 * KG_WEBHOOK__LAST.
 */
typedef enum kg_webhook_status {
    KG_WEBHOOK_VALID = 0,
    KG_WEBHOOK_MISSING_HEADER,   /* a header the scheme needs is absent */
    KG_WEBHOOK_BAD_FORMAT,       /* a header is present but malformed */
    KG_WEBHOOK_NO_MATCH,         /* no signature matches any secret */
    KG_WEBHOOK_TOO_OLD,          /* timestamp older than now - tolerance */
    KG_WEBHOOK_IN_FUTURE,        /* timestamp newer than now + tolerance */
    KG_WEBHOOK__LAST
} kg_webhook_status;

/* "valid", "missing_header", "bad_format", "no_matching_signature",
 * "timestamp_too_old", "timestamp_in_future". */
const char *kg_webhook_status_name(kg_webhook_status st);

/* ------------------------------------------------------------------ */
/* Secrets                                                             */

typedef struct kg_webhook_secrets kg_webhook_secrets;

kg_error kg_webhook_secrets_new(kg_webhook_secrets **s_r);
/* Wipes every secret, then frees.  Accepts NULL. */
void kg_webhook_secrets_free(kg_webhook_secrets *s);
/*
 * Append a secret (copied; len bytes, may not be 0).  The list is
 * ordered newest first: add the current secret, then the older ones.
 */
kg_error kg_webhook_secrets_add(kg_webhook_secrets *s, const char *secret,
                                size_t len);
size_t kg_webhook_secrets_count(const kg_webhook_secrets *s);
/* The i-th secret (NUL-terminated; *len_r gets its length), or NULL. */
const char *kg_webhook_secret(const kg_webhook_secrets *s, size_t i,
                              size_t *len_r);

/* What kg_webhook_secret_generate() makes. */
typedef enum kg_webhook_secret_type {
    KG_WEBHOOK_SECRET_V1 = 1,    /* "whsec_<base64 of 32 random bytes>" */
    KG_WEBHOOK_SECRET_V1A = 2    /* "whsk_<base64 Ed25519 seed>" + "whpk_<base64 public key>" */
} kg_webhook_secret_type;

/* Large enough for any generated secret or public key, with the NUL. */
#define KG_WEBHOOK_SECRET_MAX 128

/*
 * A new secret from OpenSSL's RNG into secret (size >=
 * KG_WEBHOOK_SECRET_MAX is always enough).  For V1A the public key goes
 * into public_out (may be NULL for V1).  The caller wipes the buffers.
 */
kg_error kg_webhook_secret_generate(kg_webhook_secret_type type,
                                    char *secret, size_t secret_size,
                                    char *public_out, size_t public_size);

/* The whpk_ public key of a whsk_ secret key. */
kg_error kg_webhook_public_key(const char *secret_key, char *public_out,
                               size_t public_size);

/* A new message id "msg_<27 base62>" (for Standard Webhooks). */
#define KG_WEBHOOK_ID_LEN 31
kg_error kg_webhook_id_generate(char *buf, size_t size);

/* ------------------------------------------------------------------ */
/* Headers (what sign() produces and verify() reads)                   */

typedef struct kg_webhook_headers kg_webhook_headers;

kg_error kg_webhook_headers_new(kg_webhook_headers **h_r);
void kg_webhook_headers_free(kg_webhook_headers *h);
void kg_webhook_headers_reset(kg_webhook_headers *h);
/* Name and value are copied; leading and trailing blanks of the value
 * are dropped (as an HTTP parser does). */
kg_error kg_webhook_headers_add(kg_webhook_headers *h, const char *name,
                                const char *value);
/* "Name: value".  KG_ERR_INVALID if there is no colon or no name. */
kg_error kg_webhook_headers_add_line(kg_webhook_headers *h, const char *line);
size_t kg_webhook_headers_count(const kg_webhook_headers *h);
kg_error kg_webhook_headers_at(const kg_webhook_headers *h, size_t i,
                               const char **name_r, const char **value_r);
/*
 * The value of header `name` (case-insensitive), or NULL.  *count_r (may
 * be NULL) gets how many headers have that name: a scheme refuses a
 * signature header that is present more than once.
 */
const char *kg_webhook_headers_get(const kg_webhook_headers *h,
                                   const char *name, size_t *count_r);

/* ------------------------------------------------------------------ */
/* Signing and verifying                                               */

typedef struct kg_webhook_message {
    /* The message id (Standard Webhooks); NULL: a new "msg_..." id.
     * May not contain '.' or blanks. */
    const char *id;
    /* Unix seconds; 0: now, by the context's clock. */
    int64_t timestamp;
    const void *payload;  /* signed byte for byte */
    size_t payload_len;
} kg_webhook_message;

typedef struct kg_webhook_signer kg_webhook_signer;

/*
 * A signer of scheme `scheme` (a signer plugin's name, found on
 * KEYGATE_PLUGIN_PATH and the compiled-in directory) with its default
 * options.  The signer keeps a reference to ctx; free it before ctx.
 */
kg_error kg_webhook_signer_new(kg_context *ctx, const char *scheme,
                               kg_webhook_signer **s_r, kg_diag *diag);
void kg_webhook_signer_free(kg_webhook_signer *s);
const char *kg_webhook_signer_scheme(const kg_webhook_signer *s);
/* The header carrying the signature ("webhook-signature", ...). */
const char *kg_webhook_signer_header(const kg_webhook_signer *s);
/* The tolerance from the signer's options (default 300 s). */
int64_t kg_webhook_signer_tolerance(const kg_webhook_signer *s);

/*
 * Sign a message with every secret of the list that the scheme carries
 * (github: only the newest) and append the headers to send to `out`.
 * KG_ERR_INVALID with a reason in diag for a message or a secret the
 * scheme cannot use.
 */
kg_error kg_webhook_sign(const kg_webhook_signer *s,
                         const kg_webhook_message *msg,
                         const kg_webhook_secrets *secrets,
                         kg_webhook_headers *out, kg_diag *diag);

/*
 * Verify a received webhook.  `tolerance` in seconds on both sides of
 * `now` (Unix seconds), or KG_WEBHOOK_TOLERANCE_DEFAULT.  Returns KG_OK
 * (status KG_WEBHOOK_VALID) if a signature matches a secret, else
 * KG_ERR_VERIFY with the reason in *status_r and a message in diag;
 * KG_ERR_INVALID (with diag) for a secret the scheme cannot use, a
 * negative `now` or a tolerance below KG_WEBHOOK_TOLERANCE_DEFAULT.  Every
 * comparison is constant-time.
 */
kg_error kg_webhook_verify(const kg_webhook_signer *s,
                           const kg_webhook_headers *h, const void *payload,
                           size_t payload_len,
                           const kg_webhook_secrets *secrets,
                           int64_t tolerance, int64_t now,
                           kg_webhook_status *status_r, kg_diag *diag);

/* ------------------------------------------------------------------ */
/* The policy's signers: section                                       */

size_t kg_policy_signer_count(const kg_policy *p);
const kg_webhook_signer *kg_policy_signer(const kg_policy *p, size_t i);
/* The signer of that scheme, or the policy's first one if scheme is
 * NULL; NULL if there is none. */
const kg_webhook_signer *kg_policy_signer_find(const kg_policy *p,
                                               const char *scheme);
/*
 * Sign with the policy's choice (`scheme` NULL: its first signer).
 * KG_ERR_NOT_FOUND (with diag) if the policy has no such signer.
 */
kg_error kg_policy_webhook_sign(const kg_policy *p, const char *scheme,
                                const kg_webhook_message *msg,
                                const kg_webhook_secrets *secrets,
                                kg_webhook_headers *out, kg_diag *diag);

/* ------------------------------------------------------------------ */
/* The signer plugin ABI                                               */

struct kg_signer_ops {
    /* The header that carries this scheme's signature; the core uses it
     * to recognise the scheme of a received webhook. */
    const char *signature_header;
    /*
     * Append the headers for msg to out.  msg->id and msg->timestamp
     * are always set (the core fills the defaults).  On KG_ERR_INVALID
     * put the reason in diag->message.
     */
    kg_error (*sign)(void *inst, const kg_webhook_message *msg,
                     const kg_webhook_secrets *secrets,
                     kg_webhook_headers *out, kg_diag *diag);
    /*
     * KG_OK with *status_r = KG_WEBHOOK_VALID, or KG_ERR_VERIFY with the
     * status and the reason in diag->message (never a secret).
     * `tolerance` is resolved (>= 0).
     */
    kg_error (*verify)(void *inst, const kg_webhook_headers *h,
                       const void *payload, size_t payload_len,
                       const kg_webhook_secrets *secrets, int64_t tolerance,
                       int64_t now, kg_webhook_status *status_r,
                       kg_diag *diag);
    /* The tolerance from the instance's options (seconds). */
    int64_t (*tolerance)(void *inst);
};

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif

#endif
