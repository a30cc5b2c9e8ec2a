/*
 * keygate.h - the embedding API of libkeygate.
 *
 * A process creates one kg_context (it owns the loaded plugins, the
 * limiter state and the clock), loads a kg_policy into it (from a file or
 * a string), and for every request builds a kg_request, calls kg_check()
 * and reads the kg_decision.  A policy is immutable once loaded: it may be
 * used from any number of threads at once, and replaced by loading a new
 * one into the same context (limiter state is kept by the context, keyed
 * by key id and limit name, so a reload never resets a counter).
 *
 * Every handle is opaque; every *_free() accepts NULL.  Functions that can
 * fail return a kg_error (0 is success) and, where the failure has a
 * place (a policy file, line and column) or a reason worth showing, fill
 * the caller's kg_diag.
 */
#ifndef KEYGATE_KEYGATE_H
#define KEYGATE_KEYGATE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Everything declared in a public header is exported; the rest of
 * libkeygate is built with -fvisibility=hidden. */
#pragma GCC visibility push(default)

#define KG_VERSION_MAJOR 0
#define KG_VERSION_MINOR 1
#define KG_VERSION_PATCH 0

/*
 * Error codes.  Never remove or renumber one; only append before
 * KG_ERR__LAST (which is not an error, only a bound for tests).
 */
typedef enum kg_error {
    KG_OK = 0,
    KG_ERR_NOMEM,        /* out of memory */
    KG_ERR_INVALID,      /* invalid argument */
    KG_ERR_IO,           /* a file could not be read or written */
    KG_ERR_POLICY,       /* the policy is not valid (see the kg_diag) */
    KG_ERR_PLUGIN,       /* a plugin could not be loaded or refused its options */
    KG_ERR_NOT_FOUND,    /* no such key, plugin or entry */
    KG_ERR_UNAVAILABLE,  /* a backend needed for the answer is down */
    KG_ERR_READONLY,     /* the key store cannot be written */
    KG_ERR_EXISTS,       /* the entry already exists */
    KG_ERR_UNSUPPORTED,  /* the operation is not supported by this plugin */
    KG_ERR_VERIFY,       /* a signature did not verify */
    KG_ERR_KEY_FORMAT,   /* a presented key is malformed or its checksum is wrong */
    KG_ERR__LAST
} kg_error;

/* A static, human-readable message for an error code; never NULL. */
const char *kg_strerror(kg_error err);

/*
 * Where and why an operation failed.  `file` is empty and `line` and
 * `column` are 0 when the failure has no place in a file.  Lines and
 * columns are 1-based.
 */
typedef struct kg_diag {
    char file[512];
    unsigned line;
    unsigned column;
    char message[1024];
} kg_diag;

/* "file:line:column: message" (or just the message), into buf. */
const char *kg_diag_format(const kg_diag *diag, char *buf, size_t size);

/* The library's version, "MAJOR.MINOR.PATCH". */
const char *kg_version(void);

/* ------------------------------------------------------------------ */
/* Context                                                             */

typedef struct kg_context kg_context;

/*
 * A clock: returns the current time in microseconds since the Unix
 * epoch.  Tests inject their own so that limiters never need sleep().
 */
typedef int64_t (*kg_clock_fn)(void *userdata);

kg_error kg_context_new(kg_context **ctx_r);
void kg_context_free(kg_context *ctx);

/* Replace the clock (NULL restores the system's real-time clock). */
void kg_context_set_clock(kg_context *ctx, kg_clock_fn fn, void *userdata);
int64_t kg_context_now(const kg_context *ctx);

/*
 * Messages for the operator: why a backend failed (a certificate that
 * did not verify, a bind refused, a timeout, a connection refused), one
 * line each, without a newline, never holding a secret.  A plugin sends
 * them (kg_context_log_backend() in plugin.h) from the thread that met
 * the failure, at most one per backend per interval.  `fn` must be
 * thread-safe and must not call into libkeygate.  Without one (fn NULL,
 * the default) they go to stderr as "keygate: <message>".
 */
typedef void (*kg_log_fn)(void *userdata, const char *message);
void kg_context_set_log(kg_context *ctx, kg_log_fn fn, void *userdata);
/* At most one message per backend per `seconds` (on the context's
 * clock); 0 restores the default, 10 seconds. */
void kg_context_set_log_interval(kg_context *ctx, int64_t seconds);

/*
 * Bound the memory limiter state: at most `max_entries` (key, limit)
 * entries; idle ones are evicted first.  0 means the default (1,000,000).
 */
void kg_context_set_limit_capacity(kg_context *ctx, size_t max_entries);

/* Number of live limiter-state entries (for tests and metrics). */
size_t kg_context_limit_entries(const kg_context *ctx);

/* ------------------------------------------------------------------ */
/* Policy                                                              */

typedef struct kg_policy kg_policy;

/*
 * Load a policy.  On failure *policy_r is NULL, the error code says what
 * kind of failure it was and `diag` (may be NULL) says where and why.
 * The policy keeps a reference to ctx; free every policy before ctx.
 */
kg_error kg_policy_load_file(kg_context *ctx, const char *path,
                             kg_policy **policy_r, kg_diag *diag);
kg_error kg_policy_load_string(kg_context *ctx, const char *yaml,
                               const char *name, kg_policy **policy_r,
                               kg_diag *diag);
void kg_policy_free(kg_policy *policy);

/* The file (or name) the policy was loaded from. */
const char *kg_policy_source(const kg_policy *policy);

/*
 * Write a human-readable description of every stage's compiled control
 * table (what `keygate policy explain` prints).  Returns a malloc()ed
 * string the caller frees, or NULL on allocation failure.
 */
char *kg_policy_explain(const kg_policy *policy);

/* Names of the plans, in the order they appear in the policy. */
size_t kg_policy_plan_count(const kg_policy *policy);
const char *kg_policy_plan_name(const kg_policy *policy, size_t i);

/* ------------------------------------------------------------------ */
/* Requests                                                            */

typedef struct kg_request kg_request;

kg_error kg_request_new(kg_request **req_r);
void kg_request_free(kg_request *req);
/* Empty the request so that it can be reused for the next one. */
void kg_request_reset(kg_request *req);

/* Strings are copied. */
kg_error kg_request_set_method(kg_request *req, const char *method);
kg_error kg_request_set_path(kg_request *req, const char *path);
kg_error kg_request_set_client(kg_request *req, const char *address);
/* Values are taken as given, byte for byte (len may contain NULs). */
kg_error kg_request_add_header(kg_request *req, const char *name,
                               const char *value);
kg_error kg_request_add_header_n(kg_request *req, const char *name,
                                 size_t name_len, const char *value,
                                 size_t value_len);

/* ------------------------------------------------------------------ */
/* Decisions                                                           */

/* Why a request was denied; KG_CODE_NONE when it was allowed. */
typedef enum kg_code {
    KG_CODE_NONE = 0,
    KG_CODE_INVALID_REQUEST,          /* 400 */
    KG_CODE_UNAUTHORIZED,             /* 401 */
    KG_CODE_KEY_REVOKED,              /* 401 */
    KG_CODE_KEY_EXPIRED,              /* 401 */
    KG_CODE_INSUFFICIENT_PERMISSIONS, /* 403 */
    KG_CODE_IP_NOT_ALLOWED,           /* 403 */
    KG_CODE_RATE_LIMITED,             /* 429 */
    KG_CODE_AUTH_UNAVAILABLE,         /* 503 */
    KG_CODE__LAST
} kg_code;

/* "invalid_request", "unauthorized", ...; "" for KG_CODE_NONE. */
const char *kg_code_name(kg_code code);
/* The HTTP status of a code: 200 for KG_CODE_NONE. */
int kg_code_status(kg_code code);

typedef struct kg_decision kg_decision;

/*
 * Run the policy on a request.  Always produces a decision when it
 * returns KG_OK (a denial is a decision, not an error); returns an error
 * only for invalid arguments or allocation failure.  The decision is the
 * caller's, freed with kg_decision_free().
 */
kg_error kg_check(const kg_policy *policy, const kg_request *req,
                  kg_decision **decision_r);

/*
 * Authenticate without consuming quota: credential, keystore and the
 * account stage run; the limit stage only reports what remains.
 */
kg_error kg_check_peek(const kg_policy *policy, const kg_request *req,
                       kg_decision **decision_r);

void kg_decision_free(kg_decision *d);

int kg_decision_allowed(const kg_decision *d);
int kg_decision_status(const kg_decision *d);
kg_code kg_decision_code(const kg_decision *d);
const char *kg_decision_message(const kg_decision *d);
/* NULL when no key was identified. */
const char *kg_decision_key_id(const kg_decision *d);
const char *kg_decision_key_prefix(const kg_decision *d);
const char *kg_decision_key_name(const kg_decision *d);
const char *kg_decision_plan(const kg_decision *d);
int kg_decision_priority(const kg_decision *d);
/* "stage:module" of the module whose answer decided, e.g. "limit:fixed_window". */
const char *kg_decision_decided_by(const kg_decision *d);
/* The concurrency lease to release when the request ends; NULL if none. */
const char *kg_decision_lease(const kg_decision *d);

/*
 * The response headers to send (WWW-Authenticate, X-RateLimit-*,
 * RateLimit, RateLimit-Policy, Retry-After).  Index from 0.
 */
size_t kg_decision_header_count(const kg_decision *d);
kg_error kg_decision_header(const kg_decision *d, size_t i,
                            const char **name_r, const char **value_r);
/* The value of a named header (case-insensitive), or NULL. */
const char *kg_decision_header_value(const kg_decision *d, const char *name);

/* The JSON body of a denial ({"error":{"code":...,"message":...}}); "" when allowed. */
const char *kg_decision_body(const kg_decision *d);

/* Per-limit view of the decision (for /whoami and the CLI). */
size_t kg_decision_limit_count(const kg_decision *d);
kg_error kg_decision_limit(const kg_decision *d, size_t i, const char **name_r,
                           int64_t *limit_r, int64_t *remaining_r,
                           int64_t *reset_r, int64_t *window_r);

/* The key record behind the decision, as a JSON object (never the hash). */
char *kg_decision_record_json(const kg_decision *d);

/* ------------------------------------------------------------------ */
/* Plugins on the search path (what `keygate plugins` lists)          */

typedef struct kg_plugin_info {
    const char *name;
    const char *path;
    const char *kind;         /* NULL if it could not be loaded */
    unsigned abi_major, abi_minor;
    const char *description;
    const char *error;        /* why it cannot be loaded, else NULL */
} kg_plugin_info;

typedef void (*kg_plugin_scan_cb)(const kg_plugin_info *info, void *userdata);

/*
 * Load every plugin found in `dirs`, then KEYGATE_PLUGIN_PATH, then the
 * compiled-in directory (first of a name wins) and report each.
 */
kg_error kg_plugin_scan(kg_context *ctx, char *const *dirs, size_t ndirs,
                        kg_plugin_scan_cb cb, void *userdata);
/* The compiled-in plugin directory. */
const char *kg_plugin_default_dir(void);

/* End a concurrency lease early (or a comma-separated list of them, as
 * kg_decision_lease() gives it).  KG_ERR_NOT_FOUND if unknown or expired,
 * KG_ERR_NOMEM if out of memory. */
kg_error kg_release(kg_context *ctx, const char *lease);

/*
 * Counters of a context, for metrics.  Never renumbered, only appended.
 */
typedef enum kg_stat {
    /* a limiter's backend (Redis) could not answer */
    KG_STAT_LIMIT_BACKEND_ERRORS = 0,
    /* ... and the limit admitted the request anyway (on_backend_error: allow) */
    KG_STAT_LIMIT_FAIL_OPEN,
    /* ... and the limit was decided by the memory state (on_backend_error: local) */
    KG_STAT_LIMIT_FAIL_LOCAL,
    /* key-store lookups answered by a fresh cache entry (lines with cache:) */
    KG_STAT_CACHE_HITS,
    /* ... that went to the store (no entry, or an expired one) */
    KG_STAT_CACHE_MISSES,
    /* ... answered by a stale entry because the store could not answer */
    KG_STAT_CACHE_STALE,
    /* memory limiter slots made at their key's home (placed by the key's
     * hash: a check of that key waits for one cache miss, not two) */
    KG_STAT_LIMIT_SLOTS_AT_HOME,
    KG_STAT__LAST
} kg_stat;

/* The counter's value since the context was made (0 for an unknown one). */
uint64_t kg_context_stat(const kg_context *ctx, kg_stat stat);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif

#endif
