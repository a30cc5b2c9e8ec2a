/*
 * audit.h - the audit log: one record per change made to accounts and
 * keys (create, update, rotate, revoke, suspend, resume, delete), and per
 * change refused, kept by the policy's key store (docs/audit.md).
 *
 * Who writes: the callers that change things on someone's behalf (the
 * `keygate` CLI, keygated's admin API), after the change was made or
 * refused: the library's kg_keys_* and kg_accounts_* do not audit by
 * themselves, since only the caller knows who asked and from where.
 * A record never holds a key or a key's hash: kg_audit_changes_records()
 * leaves the hash out, and kg_audit_append() refuses a record whose
 * strings hold something that looks like a key of this policy.
 */
#ifndef KEYGATE_AUDIT_H
#define KEYGATE_AUDIT_H

#include <stddef.h>
#include <stdint.h>

#include <keygate/keygate.h>

#ifdef __cplusplus
extern "C" {
#endif

#pragma GCC visibility push(default)

typedef struct kg_record kg_record;

/*
 * One audit record.  Strings are UTF-8; NULL reads as "".  Records
 * handed to a kg_audit_cb are lent for the call.
 */
typedef struct kg_audit_record {
    int64_t id;             /* store-assigned, increasing; the query cursor */
    int64_t time_ms;        /* Unix milliseconds; 0 on append: now */
    const char *actor_key_id, *actor_account_id;  /* the calling key; "" for the CLI */
    const char *actor;      /* "key:k_...", "cli:root" */
    const char *client;     /* the caller's address, or "" */
    const char *action;     /* "account.create", "key.rotate", ... */
    const char *target;     /* "acct_..." or "k_..."; "" for a create
                             * refused before it had an id */
    const char *account_id; /* the account the target belongs to, or "" */
    const char *changes;    /* a JSON object {"field":{"before":..,"after":..}}
                             * (NULL: {}); never a key or hash */
    const char *result;     /* "ok" or an error code ("not_found", ...) */
} kg_audit_record;

/*
 * Append a record to the audit log of the policy's first key store that
 * keeps one (KG_ERR_UNSUPPORTED, diag says so, if none).  time_ms 0 is
 * taken as now (the context's clock); the id is the store's.  Refused
 * (KG_ERR_INVALID, diag says why): no actor, action or result,
 * `changes` that is not one JSON object, or a string holding something
 * of a key's form (the policy's prefix, '_', 38 base62 characters).
 * KG_ERR_UNAVAILABLE / KG_ERR_IO if the store could not write it.
 */
kg_error kg_audit_append(kg_policy *p, const kg_audit_record *r, kg_diag *diag);

typedef struct kg_audit_query {
    const char *account_id, *target, *action;  /* NULL or "": any */
    int64_t since_ms, until_ms;   /* [since, until); 0: unbounded */
    int64_t before_id;            /* 0: newest; else only ids below it */
    size_t limit;                 /* 0: no limit */
} kg_audit_query;

/* A callback over audit records; return non-zero to stop. */
typedef int (*kg_audit_cb)(const kg_audit_record *r, void *userdata);

/*
 * The records that match q, newest first (by id), at most q->limit.  The
 * next page is the query again with before_id the last id seen.
 * KG_ERR_UNSUPPORTED if no key store keeps an audit log.
 */
kg_error kg_audit_query_run(kg_policy *p, const kg_audit_query *q,
                            kg_audit_cb cb, void *userdata, kg_diag *diag);

/*
 * The `changes` of a change from `before` to `after` (NULL: did not
 * exist; a create has no before, a delete no after): a JSON object with
 * a member {"before":..,"after":..} for each field whose value differs,
 * and nothing else.  Keys: id, name, prefix (the 8-character display
 * form), account, plan, status (stored: active or revoked),
 * permissions, allowed_cidrs, limits, created, expires, replaced_by,
 * replaces; never the hash, never last_used (touched by checks).
 * Accounts: id, external_id, name, plan, status, permissions,
 * allowed_cidrs, limits, metadata, created.  malloc()ed, the caller
 * frees; NULL if out of memory.
 */
char *kg_audit_changes_records(const kg_record *before, const kg_record *after);
char *kg_audit_changes_accounts(const kg_account *before,
                                const kg_account *after);

/*
 * The record as one JSON object (one line): {"id":..,"time":"ISO 8601
 * with milliseconds","actor":..,"actor_key_id":..,"actor_account_id":..,
 * "client":..,"action":..,"target":..,"account_id":..,"changes":{..},
 * "result":..}.  `changes` is spliced in as it is (the store keeps what
 * kg_audit_append() checked).  malloc()ed; NULL if out of memory.
 */
char *kg_audit_record_to_json(const kg_audit_record *r);

/* The result an audit record gives an outcome: "ok" for KG_OK, else a
 * short code: "invalid", "not_found", "conflict" (KG_ERR_EXISTS),
 * "read_only", "unavailable", "unsupported", "io_error", "no_memory",
 * "error".  A static string. */
const char *kg_audit_result(kg_error e);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif

#endif
