/*
 * plugin.h - the keygate plugin ABI.
 *
 * A plugin is a libtool module that exports exactly one symbol,
 * `<name>_LTX_keygate_plugin`, a `const kg_plugin` filled with designated
 * initializers:
 *
 *     static const struct kg_credential_ops ops = { .extract = my_extract };
 *     KG_PLUGIN_DEFINE(mycred) = {
 *         KG_PLUGIN_HEADER,
 *         .kind = KG_PLUGIN_CREDENTIAL,
 *         .name = "mycred",
 *         .description = "pulls the key out of X-My-Key",
 *         .create = my_create,
 *         .destroy = my_destroy,
 *         .credential = &ops,
 *     };
 *
 * The core checks abi_major (must equal KG_PLUGIN_ABI_MAJOR), abi_minor
 * (must not be newer than the core's), size and kind before it calls
 * anything.  Structures here only ever grow at their end.
 *
 * An instance is created per policy line (create() gets that line's
 * options) and must be safe to call from many threads at once.  Plugins
 * keep no global mutable state.
 */
#ifndef KEYGATE_PLUGIN_H
#define KEYGATE_PLUGIN_H

#include <keygate/keygate.h>
#include <keygate/audit.h>
#include <keygate/usage.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Everything declared in a public header is exported; the rest of
 * libkeygate is built with -fvisibility=hidden. */
#pragma GCC visibility push(default)

#define KG_PLUGIN_ABI_MAJOR 1
/* 1: struct kg_keystore_ops gained `migrate` and struct kg_limit_ops
 * gained `batch` (read only from plugins whose descriptor says
 * abi_minor >= 1).
 * 2: struct kg_keystore_ops gained `prefetch` (abi_minor >= 2).
 * 3: record tables (kg_record_table_*) and kg_record_touch(); no struct
 * changed.
 * 4: kg_call_lease_retry_after(), kg_call_lease_wanted(),
 * kg_opts_credential_hint(), kg_request_target(),
 * kg_request_target_kind(), kg_request_client_addr() and
 * kg_context_log_backend(); no struct changed.
 * 5: accounts: struct kg_keystore_ops gained account_get, account_list,
 * account_put and account_delete (abi_minor >= 5); records carry their
 * account (kg_record_set_account); kg_call_account(), kg_call_subject(),
 * kg_account_allowed_nets().
 * 6: usage stores: kg_plugin gained `usage` (struct kg_usage_ops, read
 * only from plugins with abi_minor >= 6 and a size that holds it), the
 * kind KG_PLUGIN_USAGE, kg_opts_section(); struct kg_keystore_ops gained
 * audit_append and audit_query (the audit log, keygate/audit.h;
 * abi_minor >= 6); records carry a rotation's link
 * (kg_record_set_replaced_by, kg_record_set_replaces);
 * kg_call_would_block() (a store that would wait on the network).
 * 7: struct kg_keystore_ops gained account_page and key_page (a page of
 * a list in one query; abi_minor >= 7).
 * 8: kg_opts_may_wait() (a line that waits on the network: an embedder
 * running checks on an event loop moves them to threads). */
#define KG_PLUGIN_ABI_MINOR 8

typedef enum kg_plugin_kind {
    KG_PLUGIN_CREDENTIAL = 1,
    KG_PLUGIN_KEYSTORE = 2,
    KG_PLUGIN_ACCOUNT = 3,
    KG_PLUGIN_LIMIT = 4,
    KG_PLUGIN_SIGNER = 5,
    /* A plugin that is only a usage store (ABI 1.6).  A plugin of any
     * kind may be one too: the policy's usage: section takes any plugin
     * whose descriptor sets `usage`. */
    KG_PLUGIN_USAGE = 6,
    KG_PLUGIN_NOTIFIER = 7   /* alert delivery (keygate/alerts.h) */
} kg_plugin_kind;

/* "credential", "keystore", ...; "unknown" for anything else. */
const char *kg_plugin_kind_name(int kind);

/* What a module answers for its part of a stage. */
typedef enum kg_result {
    KG_RESULT_OK = 0,          /* done its part */
    KG_RESULT_FAIL = 1,        /* a definite no */
    KG_RESULT_IGNORE = 2,      /* not mine */
    KG_RESULT_UNAVAILABLE = 3  /* could not answer (backend down) */
} kg_result;


/* ------------------------------------------------------------------ */
/* Options: the policy line's `options:` mapping                      */

typedef struct kg_opts kg_opts;

/*
 * Accessors mark the option as used; after create() returns, any option
 * the plugin did not read is reported as unknown (with its line and
 * column).  A value of the wrong type is reported at its place and the
 * accessor returns KG_ERR_POLICY with the default stored in *val_r.
 *
 * Every string an accessor gives (kg_opts_get_string, _get_path, list
 * items) belongs to the policy load and dies when create() returns:
 * copy what the instance keeps (strdup into its own struct).
 */
int kg_opts_has(kg_opts *o, const char *key);
/*
 * For a credential plugin, in create(): where a client puts the key this
 * line reads ("X-API-Key: <key>", "?api_key=<key>") and the HTTP
 * auth-scheme of the 401 challenge it answers ("Bearer"; NULL: none).
 * A 401 for no key then says "missing API key (send A or B)", from every
 * line that gave one, and WWW-Authenticate names the first line's scheme
 * ("APIKey" when no line names one).  KG_ERR_INVALID for an empty or
 * control-character hint of 128 bytes or more, or a scheme that is not
 * letters, digits and '-'.  (Since ABI minor 4.)
 */
kg_error kg_opts_credential_hint(kg_opts *o, const char *where,
                                 const char *scheme);
/*
 * In create(): this instance may wait on the network in a check (an LDAP
 * or PostgreSQL store, a limit kept in Redis) or, as a usage store, in a
 * flush, so that an embedder whose checks run on an event loop (nginx's
 * module) runs them on threads (kg_policy_may_wait()).  always 0: only a lookup that is not fresh in
 * the line's cache waits, and the plugin calls kg_call_would_block()
 * first (a key store); 1: it may wait on every check (a limit).  (Since
 * ABI minor 8.)
 */
void kg_opts_may_wait(kg_opts *o, int always);
kg_error kg_opts_get_string(kg_opts *o, const char *key, const char *def,
                            const char **val_r);
kg_error kg_opts_get_int(kg_opts *o, const char *key, int64_t def,
                         int64_t *val_r);
kg_error kg_opts_get_bool(kg_opts *o, const char *key, int def, int *val_r);
/* "90", "90s", "15m", "1h", "7d", "2w", "2y" (365 days a year) -> seconds. */
kg_error kg_opts_get_duration(kg_opts *o, const char *key, int64_t def,
                              int64_t *seconds_r);
/* A path; a relative one is taken from the policy file's directory.
 * The result is valid until create() returns. */
kg_error kg_opts_get_path(kg_opts *o, const char *key, const char *def,
                          const char **path_r);
/* A secret kept in a file (a password_file): the file named by the
 * option (a path as kg_opts_get_path takes it), its first line.  *secret_r
 * is NULL if the option is absent, else a copy the plugin owns (wipe it,
 * then free it); the buffer it was read through is wiped.  An unreadable
 * or empty file is reported at the option's place (KG_ERR_POLICY). */
kg_error kg_opts_get_secret_file(kg_opts *o, const char *key, char **secret_r);
/* A sequence of scalars (a single scalar counts as a list of one). */
size_t kg_opts_list_size(kg_opts *o, const char *key);
const char *kg_opts_list_item(kg_opts *o, const char *key, size_t i);
/* A nested mapping, or NULL. */
kg_opts *kg_opts_child(kg_opts *o, const char *key);
/* The keys of this mapping, in order (for free-form maps). */
size_t kg_opts_key_count(kg_opts *o);
const char *kg_opts_key(kg_opts *o, size_t i);
/* Report an error at the place of `key` (or of the mapping if NULL). */
kg_error kg_opts_error(kg_opts *o, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The context the policy is being loaded into. */
kg_context *kg_opts_context(kg_opts *o);
/* What the options are for (ABI 1.6): the kind of the stage whose line
 * they are (KG_PLUGIN_KEYSTORE, ...), or KG_PLUGIN_USAGE for the usage:
 * section; a plugin that serves several (sql: a key store and a usage
 * store) reads the options of that role. */
int kg_opts_section(kg_opts *o);

/* ------------------------------------------------------------------ */
/* Key records as a key store fills them; the rest of kg_record (what  */
/* an embedder reads, and sets for kg_keys_*) is in keygate.h          */

kg_error kg_record_set_id(kg_record *r, const char *id);
void kg_record_set_hash(kg_record *r, const unsigned char hash[KG_HASH_LEN]);
void kg_record_set_last_used(kg_record *r, int64_t unix_seconds);
/* Raise last_used to `unix_seconds` (if it is earlier), atomically: for
 * a key store's `touch`, on a record that checks share (ABI 1.3). */
void kg_record_touch(const kg_record *r, int64_t unix_seconds);
/* The record's account (keygate.h, "The key's account"). */
kg_error kg_record_set_account(kg_record *r, kg_account *a);
/* A rotation's link (keygate.h, kg_record_replaced_by). */
kg_error kg_record_set_replaced_by(kg_record *r, const char *key_id);
kg_error kg_record_set_replaces(kg_record *r, const char *key_id);

/*
 * Record tables (plugin ABI 1.3): for a key store
 * that holds all its keys in memory.  The records themselves are placed
 * by key hash, so a lookup reads one place in memory instead of an
 * index entry and then the record it points to: at a million keys, one
 * cache miss instead of two in a row.  Fill the table before the store
 * is used (add is not thread safe); get and prefetch are, from any
 * thread.
 */
typedef struct kg_record_table kg_record_table;
/* A table for at most max_records records (it takes 512 bytes per
 * record: 256 per place, at most half of them used). */
kg_error kg_record_table_new(size_t max_records, kg_record_table **t_r);
/* Place a copy of r (by its hash).  KG_ERR_EXISTS: a record of that hash
 * is there; KG_ERR_INVALID: the table has max_records already. */
kg_error kg_record_table_add(kg_record_table *t, const kg_record *r);
/* The record of the hash, referenced (kg_record_unref() when done), or
 * NULL.  Hashes are compared in constant time. */
kg_record *kg_record_table_get(const kg_record_table *t,
                               const unsigned char hash[KG_HASH_LEN]);
/* Start fetching what get() will read: a keystore's `prefetch` op. */
void kg_record_table_prefetch(const kg_record_table *t,
                              const unsigned char hash[KG_HASH_LEN]);
size_t kg_record_table_count(const kg_record_table *t);
/* Drop the table.  A record a caller still references stays valid until
 * its last kg_record_unref(); the memory goes with the last of them. */
void kg_record_table_free(kg_record_table *t);

/* ------------------------------------------------------------------ */
/* One check in progress                                              */

typedef struct kg_call kg_call;

const kg_request *kg_call_request(kg_call *call);
/* The key record (keystore stage onwards), else NULL. */
const kg_record *kg_call_record(kg_call *call);
const char *kg_call_plan(kg_call *call);
kg_context *kg_call_context(kg_call *call);
/* Microseconds since the epoch, from the context's clock. */
int64_t kg_call_now(kg_call *call);
/* 1 when the check must not consume quota (kg_check_peek). */
int kg_call_peek(kg_call *call);
/* 0 when the check takes no concurrency lease: a peek, or a request
 * whose caller asked for none (kg_request_set_no_lease(), keygated's
 * /check?lease=none).  A limiter that keeps leases outside the core
 * takes none then, and admits.  (Since ABI minor 4.) */
int kg_call_lease_wanted(kg_call *call);
/* Why this module answers fail: the decision's code and message. */
void kg_call_deny(kg_call *call, kg_code code, const char *message);
/* The key's account (ABI 1.5), or NULL if its store keeps none.  An
 * account check applies the account's ceiling as well as the key's
 * settings: ipacl wants the client in the key's networks and in the
 * account's, scope the operation granted by both. */
const kg_account *kg_call_account(kg_call *call);
/*
 * What the running limit line counts under (ABI 1.5): the account's id,
 * or the key's for a line with `per: key` or a key without an account.
 * The memory state (kg_call_slot_lock, leases) is keyed by it; a
 * limiter that keeps its state elsewhere (Redis) keys it the same way.
 * NULL outside the limit stage or without a record.
 */
const char *kg_call_subject(kg_call *call);

/*
 * The limit the key has for `name`: on a line counted per account, the
 * account's override if it has one; on a line counted per key (or for a
 * key without an account), the key record's; else the given plan
 * defaults are left as they are.  Returns 1 if an override was applied.
 */
int kg_call_limit(kg_call *call, const char *name, int64_t *count,
                  int64_t *window_seconds, int64_t *burst);

/* A limiter tells the core where a limit stands, for the headers. */
void kg_call_limit_report(kg_call *call, const char *name, int64_t limit,
                          int64_t remaining, int64_t reset_unix,
                          int64_t window_seconds, int64_t retry_after);

/*
 * Limiter state: an entry per (subject, limit name) in the context, so a
 * policy reload never resets it; the subject is the account's id or the
 * key's (kg_call_subject).  kg_call_slot_lock() returns the entry for
 * the call's subject (created zeroed on first use) locked; the plugin
 * reads and writes its KG_SLOT_WORDS words and unlocks it.  Entries not
 * touched for `idle_seconds` may be evicted.
 */
#define KG_SLOT_WORDS 6
typedef struct kg_slot kg_slot;
kg_slot *kg_call_slot_lock(kg_call *call, const char *limit_name,
                           int64_t idle_seconds);
int64_t *kg_slot_words(kg_slot *slot);
void kg_slot_unlock(kg_slot *slot);

/*
 * Concurrency leases.  kg_call_lease_acquire() takes one of `max` slots
 * of (key, limit) for `ttl_seconds`, hands the decision a lease id and
 * returns 1; returns 0 if all `max` are held (expired leases are reaped
 * first).  *in_use_r gets the number held after the call, or -1 if the
 * lease could not be taken or handed out for want of memory (nothing is
 * held then): answer KG_RESULT_UNAVAILABLE.  On a request that asked for
 * no lease (kg_call_lease_wanted() is 0) it takes none and returns 1
 * with *in_use_r the number others hold: such a request is limited by
 * rate only.
 */
int kg_call_lease_acquire(kg_call *call, const char *limit_name, int64_t max,
                          int64_t ttl_seconds, int64_t *in_use_r);
/* Undo this call's lease (a later limit denied the request). */
void kg_call_lease_undo(kg_call *call, const char *limit_name);
/* How many leases of (call's key, limit) are held now. */
int64_t kg_call_lease_count(kg_call *call, const char *limit_name);
/*
 * Seconds a request denied by the full limit should wait (its
 * Retry-After): as long as the youngest lease of (call's key, limit) has
 * been held, at least 1, and never past the earliest lease's expiry;
 * ttl_seconds as given to kg_call_lease_acquire().  0 when none is held.
 * (Since ABI minor 4.)
 */
int64_t kg_call_lease_retry_after(kg_call *call, const char *limit_name,
                                  int64_t ttl_seconds);

/*
 * Leases kept outside the core (a Redis backend).  kg_call_lease_new()
 * makes a lease id of (call's key, limit) in the core's format ("<16 hex
 * random>.<hex of key id, 0x1f, limit name>") without taking anything;
 * kg_call_lease_add() puts an id into the decision once it is held.
 * kg_release() and kg_call_lease_undo() first try the memory state, then
 * every registered releaser (in the order registered) until one answers
 * KG_OK; a releaser answers KG_ERR_NOT_FOUND for a lease it does not hold.
 * Register from create() (kg_opts_context()), unregister in destroy().
 */
kg_error kg_call_lease_new(kg_call *call, const char *limit_name, char *out,
                           size_t size);
/* The bytes of a lease id (with its NUL) of a key id and limit name of
 * these lengths: the size kg_call_lease_new() needs. */
#define KG_LEASE_SIZE(id_len, limit_len) \
    (18 + 2 * ((size_t)(id_len) + 1 + (size_t)(limit_len)))
kg_error kg_call_lease_add(kg_call *call, const char *lease);
typedef kg_error (*kg_lease_release_fn)(void *userdata, const char *key_id,
                                        const char *limit_name,
                                        const char *lease);
kg_error kg_context_add_releaser(kg_context *ctx, kg_lease_release_fn fn,
                                 void *userdata);
void kg_context_remove_releaser(kg_context *ctx, kg_lease_release_fn fn,
                                void *userdata);

/* The plan's lease_ttl in seconds (default 300), for remote leases. */
int64_t kg_call_lease_ttl(kg_call *call);

/* Count an event in the context's statistics (kg_context_stat()). */
void kg_call_stat_add(kg_call *call, kg_stat stat, uint64_t n);

/*
 * For a keystore whose lookup waits on the network (a directory, a
 * database server): ask this before any network call.  0: go ahead.
 * 1: the caller asked for a check that does not wait
 * (kg_request_set_nowait): return at once, with any result and no
 * record, having changed nothing; the core ignores that result and the
 * check is run again, on a thread that may wait.  A store in memory or
 * on local disk never calls it.
 */
int kg_call_would_block(kg_call *call);

/*
 * Tell the operator why a backend failed (kg_context_set_log): the line
 * is "<backend>: <message>", `backend` naming the server (a URI, a
 * host:port; never a secret).  At most one line per backend name per
 * interval (kg_context_set_log_interval) is passed on: the first at
 * once, then the next failure once the interval has passed, saying how
 * many were held back meanwhile.  One held back costs a short lock and
 * no formatting.  Line breaks and control characters in the message
 * (a server's diagnostic) become spaces.  Safe from any thread.
 */
void kg_context_log_backend(kg_context *ctx, const char *backend,
                            const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ------------------------------------------------------------------ */
/* Stage operations, one table per kind                                */

struct kg_credential_ops {
    /*
     * Find the key in the request.  OK: *key_r and *len_r point at it (inside
     * the request, valid for the call).  IGNORE: no credential of this
     * kind.  FAIL: present but malformed (call kg_call_deny with
     * KG_CODE_INVALID_REQUEST or KG_CODE_UNAUTHORIZED).
     */
    kg_result (*extract)(void *inst, kg_call *call, const char **key_r,
                         size_t *len_r);
};

struct kg_keystore_ops {
    /*
     * Resolve a key hash.  OK: *rec_r is a new reference.  FAIL or
     * IGNORE: not here.  UNAVAILABLE: the store could not answer.
     * The record may be shared (the cache, other threads' checks hold
     * references to it): once handed out it is read-only, for the store
     * and for every later stage; a store that changes a key makes a new
     * record.
     */
    kg_result (*lookup)(void *inst, kg_call *call,
                        const unsigned char hash[KG_HASH_LEN],
                        kg_record **rec_r);
    /* Management (all optional: NULL means unsupported). */
    kg_error (*get)(void *inst, const char *id, kg_record **rec_r,
                    kg_diag *diag);
    kg_error (*list)(void *inst, kg_record_cb cb, void *userdata,
                     kg_diag *diag);
    /* Insert (create=1, KG_ERR_EXISTS if the id exists) or replace. */
    kg_error (*put)(void *inst, const kg_record *r, int create, kg_diag *diag);
    /* Re-read the backing data (SIGHUP). */
    kg_error (*reload)(void *inst, kg_diag *diag);
    /* The record (as returned by lookup) was used at `when` (Unix
     * seconds); may be written behind.  Called on the request path:
     * must not block. */
    void (*touch)(void *inst, const kg_record *rec, int64_t when);
    /*
     * Bring the store's schema up to date (`keygate db migrate`); optional.
     * apply=0 only reports.  *from_r and *to_r get the schema version
     * before and after.  KG_ERR_INVALID (diag says why) if the store's
     * schema is newer than the plugin knows: it must never write it.
     */
    kg_error (*migrate)(void *inst, int apply, int *from_r, int *to_r,
                        kg_diag *diag);

    /* ---- ABI 1.2: read only from plugins with abi_minor >= 2 ---- */

    /*
     * Optional: start fetching from memory what lookup(hash) will read
     * first (__builtin_prefetch), and return.  The core calls it as soon
     * as the key is hashed, before the limiter's own prefetch and the
     * lookup, so that at a million keys the store's cache miss and the
     * limiter's overlap instead of following each other.  It must not
     * block, take a lock another thread may hold long, write, or read
     * memory that another thread may free meanwhile; it has no result.
     */
    void (*prefetch)(void *inst, const unsigned char hash[KG_HASH_LEN]);

    /* ---- ABI 1.5: accounts, read only from plugins with abi_minor >= 5 ---- */

    /*
     * A store that keeps accounts (docs/plugins.md "Accounts") sets all
     * four, and its lookup() returns records that carry their account
     * (kg_record_set_account), in one lookup (a join, or accounts held
     * in memory): a check asks the store once.  It stores a key's
     * account id with the key (put), and a key written without one is
     * given an account of its own ("acct_" + the key id after "k_"; its
     * plan, its limit overrides moved to the account), as an existing
     * store's keys are when it is migrated.
     *
     * account_get: by id or by external id (a new reference), else
     * KG_ERR_NOT_FOUND.  account_list: every account, in a stable order.
     * account_put: insert (create=1: KG_ERR_EXISTS if the id, or the
     * external id, is another account's) or replace (KG_ERR_NOT_FOUND if
     * there is no such id; KG_ERR_EXISTS if the new external id is
     * another's); the diag names the field.  account_delete: remove the
     * account; while keys of it exist KG_ERR_EXISTS, unless with_keys:
     * then they are revoked in the same write (all or nothing).
     */
    kg_error (*account_get)(void *inst, const char *id, kg_account **acct_r,
                            kg_diag *diag);
    kg_error (*account_list)(void *inst, kg_account_cb cb, void *userdata,
                             kg_diag *diag);
    kg_error (*account_put)(void *inst, const kg_account *a, int create,
                            kg_diag *diag);
    kg_error (*account_delete)(void *inst, const char *id, int with_keys,
                               kg_diag *diag);

    /* ---- ABI 1.6: the audit log, read only from plugins with abi_minor >= 6 ---- */

    /*
     * Optional, both or neither (docs/audit.md).  audit_append: keep r
     * (checked by the core, time_ms set) under the next id, above every
     * id kept before, durably before it returns (an audit record that a
     * crash loses was never written).  audit_query: the records that
     * match q (keygate/audit.h), newest first, at most q->limit, each
     * lent to cb for the call; stop when cb returns non-zero.
     */
    kg_error (*audit_append)(void *inst, const kg_audit_record *r,
                             kg_diag *diag);
    kg_error (*audit_query)(void *inst, const kg_audit_query *q,
                            kg_audit_cb cb, void *userdata, kg_diag *diag);

    /* ---- ABI 1.7: pages, read only from plugins with abi_minor >= 7 ---- */

    /*
     * Optional, each on its own: one page of a list read in one query
     * (a keyset) instead of the whole list.  account_page: the accounts
     * whose id comes after `after` ("": from the first), in id order, at
     * most `limit`; key_page: the same for the keys of the account
     * `account_id`.  Each is lent to cb for the call; stop when cb
     * returns non-zero.  The order is the store's own comparison of ids
     * (byte order on SQLite, the column's collation on PostgreSQL), the
     * same for `after` as for the order, so that pages neither skip nor
     * repeat.  Without them kg_accounts_page() and kg_keys_page() answer
     * KG_ERR_UNSUPPORTED and a caller reads the whole list.
     */
    kg_error (*account_page)(void *inst, const char *after, size_t limit,
                             kg_account_cb cb, void *userdata, kg_diag *diag);
    kg_error (*key_page)(void *inst, const char *account_id, const char *after,
                         size_t limit, kg_record_cb cb, void *userdata,
                         kg_diag *diag);
};

struct kg_account_ops {
    kg_result (*check)(void *inst, kg_call *call);
};

struct kg_limit_ops {
    /* Increment-then-compare: admit (OK) or deny (FAIL, nothing consumed). */
    kg_result (*acquire)(void *inst, kg_call *call);
    /* Give back what acquire() took (a later limiter denied). */
    void (*undo)(void *inst, kg_call *call);
    /* Report the state without consuming (kg_check_peek); may be NULL. */
    void (*peek)(void *inst, kg_call *call);

    /* ---- ABI 1.1: read only from plugins with abi_minor >= 1 ---- */

    /*
     * Optional batching, for limiters whose state is remote (Redis): one
     * round trip decides several lines.  batch_key() names the backend
     * and protocol (NULL: this instance does not batch); it is asked
     * once, when the policy is loaded, and the string must live as long
     * as the instance.  Consecutive
     * lines of a limit stack whose batch_key() strings are equal and
     * whose control is `required` or `requisite` are handed together, in
     * order, to the first line's batch(), which fills results[i] for
     * insts[i] and is all-or-nothing: unless every result is OK, nothing
     * was consumed.  It calls kg_call_limit_report() for each line (the
     * first line that is not OK last) and kg_call_deny() for that line.
     * A line that gets OK from a batch may later get undo().
     */
    const char *(*batch_key)(void *inst);
    void (*batch)(void *const *insts, size_t n, kg_call *call,
                  kg_result *results);
};

struct kg_signer_ops;  /* see keygate/webhook.h */
struct kg_notifier_ops;  /* see keygate/alerts.h */
struct kg_outbox_ops;    /* see keygate/alerts.h */

/*
 * A usage store (ABI 1.6; docs/usage.md).  Its instance is created from
 * the usage: section's options (kg_opts_section() says KG_PLUGIN_USAGE)
 * and create() fails, at the option's place, if the store cannot be
 * written: an unwritable store is a policy error at load, never a
 * surprise at the first flush.  All four operations are required; each
 * may be called from any thread, never two write()s at once for one
 * context.
 */
struct kg_usage_ops {
    /*
     * Add the rows' counts (minute rows: span 60) to what the store
     * holds and insert the events, all in one transaction; roll up and
     * apply retention as the store sees fit (not on every call if that
     * is costly).  `now` is the context's clock, in Unix seconds.
     * KG_ERR_UNAVAILABLE: nothing written, the core keeps the batch and
     * retries at the next flush.  Rows and events (and their strings)
     * are the core's, valid for the call.
     */
    kg_error (*write)(void *inst, const kg_usage_row *rows, size_t nrows,
                      const kg_usage_event *events, size_t nevents,
                      int64_t now, kg_diag *diag);
    /* The queries of usage.h, with their contracts. */
    kg_error (*query)(void *inst, const kg_usage_query *q,
                      kg_usage_row_cb cb, void *ud, kg_diag *diag);
    kg_error (*top)(void *inst, int by_key, int64_t since, int64_t until,
                    size_t limit, kg_usage_top_cb cb, void *ud,
                    kg_diag *diag);
    kg_error (*events)(void *inst, const kg_event_query *q,
                       kg_usage_event_cb cb, void *ud, kg_diag *diag);
    /* The alerts' durable outbox (keygate/alerts.h), in the same store:
     * NULL if the store keeps none (alerts are then kept in memory). */
    const struct kg_outbox_ops *outbox;
};

typedef struct kg_plugin {
    uint16_t abi_major;
    uint16_t abi_minor;
    uint32_t size;  /* sizeof(kg_plugin) as the plugin was compiled */
    int kind;       /* kg_plugin_kind */
    const char *name;
    const char *description;
    /* Build an instance from the policy line's options. */
    kg_error (*create)(kg_opts *opts, void **inst_r);
    /* Free an instance (accepts a half-built one). */
    void (*destroy)(void *inst);
    const struct kg_credential_ops *credential;
    const struct kg_keystore_ops *keystore;
    const struct kg_account_ops *account;
    const struct kg_limit_ops *limit;
    const struct kg_signer_ops *signer;
    /* ---- ABI 1.6 ---- */
    /* A usage store (any kind may set it; required of KG_PLUGIN_USAGE). */
    const struct kg_usage_ops *usage;
    /* Kind KG_PLUGIN_NOTIFIER (keygate/alerts.h): read only from a
     * descriptor whose size includes it. */
    const struct kg_notifier_ops *notifier;
} kg_plugin;

#define KG_PLUGIN_HEADER                                                   \
    .abi_major = KG_PLUGIN_ABI_MAJOR, .abi_minor = KG_PLUGIN_ABI_MINOR,    \
    .size = sizeof(kg_plugin)

/* Exported as <name>_LTX_keygate_plugin (libtool's symbol prefix). */
#define KG_PLUGIN_DEFINE(name)                                             \
    __attribute__((visibility("default"))) extern const kg_plugin          \
        name##_LTX_keygate_plugin;                                         \
    const kg_plugin name##_LTX_keygate_plugin

/* ------------------------------------------------------------------ */
/* Key records: parsed forms                                           */

/*
 * The record's allowed networks (kg_record_add_cidr), parsed when they
 * were added, in order, *n_r of them; owned by the record, valid while a
 * reference is held.  Strings that are not networks have no entry here:
 * a record with kg_record_cidr_count() > 0 and no entries allows no
 * address.
 */
const kg_cidr *kg_record_allowed_nets(const kg_record *r, size_t *n_r);
/*
 * The account of its own that a store which keeps accounts gives a key
 * written without one (docs/plugins.md "Accounts"), the same in every
 * store: id "acct_" + the key id after "k_" (with ".n" appended when
 * n > 0: the store counts n up while the id is taken), named after the
 * key (its id if it has no name), on the key's plan, created with the
 * key (else `now`), updated `now`, the key's limit overrides copied to
 * it (the store then drops them from the key: they are counted per
 * account).  A new reference, or NULL when out of memory.
 */
kg_account *kg_account_for_key(const kg_record *r, unsigned n, int64_t now);
/* An account's allowed networks, parsed the same way (ABI 1.5). */
const kg_cidr *kg_account_allowed_nets(const kg_account *a, size_t *n_r);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif

#endif
