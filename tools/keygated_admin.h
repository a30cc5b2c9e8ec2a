/*
 * keygated_admin.h - keygated's admin listener: the /api/v1 management
 * API (docs/admin-api.md) and the dashboard's static files.  Its pieces:
 *
 *   keygated_admin.c           the listener's daemon, the request's body,
 *                              routing; the dashboard's static files
 *   keygated_admin_auth.c      who calls: a key checked by the policy,
 *                              operator or customer scope
 *   keygated_admin_reply.c     JSON answers, errors, ETags, cursors
 *   keygated_admin_body.c      a request body against its fields
 *   keygated_admin_accounts.c  /accounts
 *   keygated_admin_keys.c      /accounts/{id}/keys, /keys
 *   keygated_admin_usage.c     usage, events, top (the usage store)
 *   keygated_admin_alerts.c    an account's alert rules and recent alerts
 *   keygated_admin_overrides.c an account's own alert settings
 *   keygated_admin_webhook.c   its receiver's URL rules, its generated
 *                              signing secret
 *   keygated_admin_info.c      /plans, /me, /openapi.json, /audit
 *   keygated_admin_audit.c     every change (and refused change) into
 *                              the audit log
 *
 * JSON is jansson's (bodies parsed by it, answers built with it): a
 * body is one object, its fields checked against a list before anything
 * is written.
 */
#ifndef KEYGATE_KEYGATED_ADMIN_H
#define KEYGATE_KEYGATED_ADMIN_H

#include <jansson.h>

#include "keygated.h"

struct MHD_Connection;

/* A request body larger than this is refused (413). */
#define KGD_ADMIN_BODY_MAX (64 * 1024)
/* A list's page: ?limit= default and ceiling. */
#define KGD_ADMIN_PAGE_DEFAULT 50
#define KGD_ADMIN_PAGE_MAX 500

/* One admin request, from its route's handler's point of view. */
typedef struct kgd_admin_call {
    struct MHD_Connection *conn;
    const char *method;
    const char *url;
    json_t *body;              /* the parsed body (an object) or NULL */
    kg_policy *p;              /* the serving policy, held for the call */
    const kgd_conf *conf;
    /* the caller (kgd_admin_auth) */
    int operator;              /* 1: may do everything */
    char key_id[KG_ACCOUNT_ID_MAX + 1];
    char account_id[KG_ACCOUNT_ID_MAX + 1];   /* "" if none */
    char client[64];
    char actor[KG_ACCOUNT_ID_MAX + 8];        /* "key:<id>" */
} kgd_admin_call;

/* ---- keygated_admin_auth.c ------------------------------------------ */

/*
 * Authenticate the caller: the policy checks the request as a route
 * (its method and path: the caller's plan's limits apply, no lease is
 * taken), then the key's scope is read.  Returns 1 with c's caller
 * fields set, or 0 after answering (the decision's 401/403/429/503, or
 * 403 forbidden for a key with neither scope).
 */
int kgd_admin_auth(kgd_admin_call *c, int *ret_r);

/* 1 if the caller may see account `id` (an operator: any). */
int kgd_admin_may_see(const kgd_admin_call *c, const char *account_id);

/* ---- keygated_admin_reply.c ----------------------------------------- */

/* Answer `status` with `body` (stolen; NULL: no body) and, if etag is
 * not NULL, an ETag; every answer carries the security headers. */
int kgd_admin_json(kgd_admin_call *c, unsigned status, json_t *body,
                   const char *etag);
/* The same for a body already serialized (copied). */
int kgd_admin_raw(struct MHD_Connection *conn, unsigned status,
                  const char *type, const char *body, size_t len,
                  const struct kgd_hdr *extra, size_t nextra);
/* {"error":{"code","message","field"?}} (field may be NULL). */
int kgd_admin_error(kgd_admin_call *c, unsigned status, const char *code,
                    const char *message, const char *field);
/* An error of the library: its status and code (404 not_found, 409
 * conflict or read_only, 400 invalid_request, 503 unavailable, ...),
 * diag's message (or kg_strerror's) and `field` for a 400. */
int kgd_admin_kg_error(kgd_admin_call *c, kg_error e, const kg_diag *d,
                       const char *field);
unsigned kgd_admin_status_of(kg_error e);
const char *kgd_admin_code_of(kg_error e);
/* The ETag of a resource's JSON ("\"" 16 hex digits "\""), from its
 * fields except `skip` (NULL: none): out holds 24 bytes. */
void kgd_admin_etag(json_t *resource, const char *skip, char out[24]);
/* A JSON object from the library's JSON text (freed); NULL if out of
 * memory or not an object. */
json_t *kgd_admin_parse(char *text);
/* ?limit= (default, 1..max) and ?cursor= (an opaque token: the last id
 * of the page before, or "" for the first).  0, or -1 after a 400. */
int kgd_admin_page(kgd_admin_call *c, size_t *limit_r, char *after,
                   size_t after_size, int *ret_r);
/* The items sorted by "id", the first `limit` of them (a new array;
 * NULL if out of memory); *more_r: whether more followed. */
json_t *kgd_admin_page_of(json_t *items, size_t limit, int *more_r);
json_t *kgd_admin_page_cut(json_t *items, size_t limit, int *more_r);
/* 1 if the request's If-Match (if any) is the ETag of `now` (without
 * its field `skip`); else 0 after a 412. */
int kgd_admin_if_match(kgd_admin_call *c, json_t *now, const char *skip,
                       int *ret_r);
/* {"items": items, "next_cursor": the token after last_id or null}. */
json_t *kgd_admin_list(json_t *items, const char *last_id, int more);
/* ISO 8601 UTC from Unix seconds. */
json_t *kgd_admin_time(int64_t unix_seconds);
/* ?name= as a time: a duration back from now ("7d"), a date or an ISO
 * time; absent: def.  0, or -1 after a 400 naming it. */
int kgd_admin_time_arg(kgd_admin_call *c, const char *name, int64_t def,
                       int64_t *t_r, int *ret_r);

/*
 * A page of a list read newest first by a numeric id (events, the audit
 * log): kgd_admin_idpage_start() reads ?limit= and ?cursor= (*before_r:
 * the id to read below, 0 for the newest) and asks the store for one
 * more than a page; kgd_admin_idpage_add() takes each item (j stolen),
 * 1 when the store should stop; kgd_admin_idpage_answer() answers the
 * page, next_cursor set when there was that one more.
 */
struct kgd_admin_idpage {
    json_t *items;
    size_t n, limit;
    int64_t last_id;
    int oom;
};
int kgd_admin_idpage_start(kgd_admin_call *c, struct kgd_admin_idpage *pg,
                           int64_t *before_r, size_t *ask_r, int *ret_r);
int kgd_admin_idpage_add(struct kgd_admin_idpage *pg, json_t *j, int64_t id);
int kgd_admin_idpage_answer(kgd_admin_call *c, struct kgd_admin_idpage *pg);

/* ---- keygated_admin_body.c ------------------------------------------ */

enum kgd_field_type {
    KGD_F_STRING,        /* a string */
    KGD_F_STRING_NULL,   /* a string or null (null: clear it) */
    KGD_F_STRINGS,       /* an array of strings */
    KGD_F_OBJECT,        /* an object (metadata) */
    KGD_F_LIMITS         /* {"name": {"count": N, "window": S, "burst": N}} */
};
struct kgd_field {
    const char *name;
    enum kgd_field_type type;
    int required;
};
/*
 * Check c->body against fields[0..n): an object holding only those
 * fields, each of its type, the required ones present.  No body counts
 * as {}.  0, or -1 after a 400 naming the field.
 */
int kgd_admin_body(kgd_admin_call *c, const struct kgd_field *fields,
                   size_t n, int *ret_r);
/* A string field's value, or NULL if absent or null. */
const char *kgd_admin_str(const kgd_admin_call *c, const char *name);
/* 1 if the body has the field (null included). */
int kgd_admin_has(const kgd_admin_call *c, const char *name);
/* Which of the body's fields a library refusal (its diag) is about, or
 * NULL. */
const char *kgd_admin_field_of(const kgd_admin_call *c, const kg_diag *d);

/* ---- keygated_admin_audit.c ----------------------------------------- */

/*
 * Write the audit record of a change the caller made or was refused:
 * action ("key.rotate"), target ("k_..."), the account it belongs to,
 * the resource before and after (either NULL; the fields that differ
 * go into the record's changes), result "ok" or the error's code.  A
 * failure to write it is logged, not answered (the change is made).
 */
void kgd_admin_audit(kgd_admin_call *c, const char *action,
                     const char *target, const char *account_id,
                     json_t *before, json_t *after, const char *result);
/* {"field": {"before": ..., "after": ...}} for the fields that differ. */
json_t *kgd_admin_changes(json_t *before, json_t *after);

/* ---- the routes ----------------------------------------------------- */

typedef int (*kgd_admin_handler)(kgd_admin_call *c, char *const *ids);

int kgd_admin_accounts_list(kgd_admin_call *c, char *const *ids);
int kgd_admin_accounts_create(kgd_admin_call *c, char *const *ids);
int kgd_admin_account_get(kgd_admin_call *c, char *const *ids);
int kgd_admin_account_patch(kgd_admin_call *c, char *const *ids);
int kgd_admin_account_delete(kgd_admin_call *c, char *const *ids);
int kgd_admin_account_suspend(kgd_admin_call *c, char *const *ids);
int kgd_admin_account_resume(kgd_admin_call *c, char *const *ids);
/* The account (a new reference) if the caller may see it; else 0 after
 * answering 404 (also for an account the caller may not see). */
kg_account *kgd_admin_account_find(kgd_admin_call *c, const char *id,
                                   int *ret_r);

int kgd_admin_keys_list(kgd_admin_call *c, char *const *ids);
int kgd_admin_keys_create(kgd_admin_call *c, char *const *ids);
int kgd_admin_key_get(kgd_admin_call *c, char *const *ids);
int kgd_admin_key_patch(kgd_admin_call *c, char *const *ids);
int kgd_admin_key_rotate(kgd_admin_call *c, char *const *ids);
int kgd_admin_key_revoke(kgd_admin_call *c, char *const *ids);
/* The key record as the API shows it: kg_record_to_json() and its
 * status now (active, revoked, expired, rotating). */
json_t *kgd_admin_key_json(kgd_admin_call *c, const kg_record *r);

int kgd_admin_account_usage(kgd_admin_call *c, char *const *ids);
int kgd_admin_key_usage(kgd_admin_call *c, char *const *ids);
int kgd_admin_account_events(kgd_admin_call *c, char *const *ids);
int kgd_admin_usage_top(kgd_admin_call *c, char *const *ids);

int kgd_admin_alert_rules(kgd_admin_call *c, char *const *ids);
int kgd_admin_alerts_list(kgd_admin_call *c, char *const *ids);
/* 1 if the policy has alert rules; else 0 after a 501. */
int kgd_admin_have_alerts(kgd_admin_call *c, int *ret_r);

int kgd_admin_overrides_get(kgd_admin_call *c, char *const *ids);
int kgd_admin_overrides_put(kgd_admin_call *c, char *const *ids);
int kgd_admin_overrides_delete(kgd_admin_call *c, char *const *ids);
int kgd_admin_overrides_secret(kgd_admin_call *c, char *const *ids);

/* ---- keygated_admin_webhook.c --------------------------------------- */

/* Generated secrets live in this folder of the state folder
 * (${KEYGATE_STATE_DIR:-/var/lib/keygate}). */
#define KGD_ALERT_SECRET_DIR "alert-secrets"
/* 1 if the caller may give `url` as an account's receiver (https only
 * and no private address for a customer key, unless
 * --admin-webhook-insecure); else 0 after a 400 naming webhook_url. */
int kgd_admin_webhook_url_ok(kgd_admin_call *c, const char *url, int *ret_r);
/* The file of account_id's generated secret into out; -1 if it does
 * not fit. */
int kgd_admin_secret_path(const char *account_id, char *out, size_t size);
/* A new "whsec_" secret into `secret` and, atomically and 0600, into
 * the file `path` (its folder made 0700 if missing).  On error secret
 * is wiped and d says why.  The caller wipes secret after use. */
kg_error kgd_admin_secret_new(const char *path, char *secret, kg_diag *d);

int kgd_admin_plans(kgd_admin_call *c, char *const *ids);
int kgd_admin_me(kgd_admin_call *c, char *const *ids);
int kgd_admin_audit_list(kgd_admin_call *c, char *const *ids);
/* GET /api/v1/openapi.json: the document (no key needed). */
int kgd_admin_openapi(struct MHD_Connection *conn, const kgd_conf *conf);

#endif
