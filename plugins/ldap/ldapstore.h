/*
 * ldapstore.h - what the files of the ldap keystore plugin share: the
 * instance, the connection pool (conn.c) and the mapping between
 * directory entries and key records (entry.c).  Nothing here is
 * exported: the plugin's only exported symbol is its descriptor.
 */
#ifndef KEYGATE_LDAPSTORE_H
#define KEYGATE_LDAPSTORE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <ldap.h>

#include <keygate/plugin.h>
#include <keygate/modutil.h>

/* Which attribute holds which field of a record ("" or NULL: none). */
enum {
    KG__LA_ID,
    KG__LA_HASH,
    KG__LA_PLAN,
    KG__LA_PERMS,
    KG__LA_CIDRS,
    KG__LA_STATUS,
    KG__LA_EXPIRES,
    KG__LA_NAME,
    KG__LA_PREFIX,
    KG__LA_CREATED,
    KG__LA_LAST_USED,
    KG__LA_LIMITS,
    KG__LA_ACCOUNT,   /* the id of the key's account (docs/ldap.md "Accounts") */
    KG__LA_REPLACED_BY,  /* a rotation's link (ABI 1.6) */
    KG__LA_REPLACES,
    KG__LA_COUNT
};

/* The option names under `attributes:` and the shipped schema's names. */
extern const char *const kg__ldap_attr_option[KG__LA_COUNT];
extern const char *const kg__ldap_attr_default[KG__LA_COUNT];

typedef enum { KG__TLS_NONE, KG__TLS_STARTTLS } kg__ldap_tls;

/* A pooled connection: bound, ready for a search. */
typedef struct kg__ldap_conn {
    LDAP *ld;
    size_t uri;          /* index into uris of the server it talks to */
    int64_t since_us;    /* when it was opened (the policy's clock) */
    int fresh;           /* opened by this acquire (not reused) */
} kg__ldap_conn;

typedef struct kg__ldap {
    kg_context *ctx;     /* for the (injectable) clock */

    /* servers, in order of preference */
    char **uris;
    size_t nuris;
    _Atomic int64_t *down_until_us;   /* per URI: skipped until then */
    int64_t retry_us;    /* how long a failed URI is skipped; also when a
                          * connection to a later URI is given up so the
                          * first ones are tried again */

    /* binding */
    char *bind_dn;
    char *bind_password; /* wiped on destroy; never logged */
    int sasl_external;

    /* TLS */
    kg__ldap_tls tls;
    char *ca_file;
    char *cert_file;
    char *key_file;
    int tls_verify;

    /* searching */
    char *base_dn;
    int scope;           /* LDAP_SCOPE_* */
    char *filter;        /* template with one {hash} */
    char *list_filter;   /* every key entry (list) */
    char *id_filter;     /* one key by id (get, update): {hash} is the id */
    int network_timeout_ms;
    int search_timeout_ms;
    int referrals;
    int writable;
    const char *attrs[KG__LA_COUNT];  /* into attr_store */
    char *attr_store[KG__LA_COUNT];
    char *object_class;
    char *rdn_attr;      /* new entries: <rdn_attr>=<id>,<base_dn> */
    char *accounts_dn;   /* where account entries are (accounts.c) */
    char **want;         /* the attribute list given to searches */

    /* the audit log: a JSON-lines file (audit_file), or NULL: none */
    char *audit_file;

    /* the pool: `pool_size` idle-or-busy connections at most; 0 means
     * no pool (a connection per lookup, for comparison) */
    size_t pool_size;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct kg__ldap_pconn **idle;
    size_t nidle;
    size_t busy;
    uint64_t generation;  /* bumped by reload: older connections close */
} kg__ldap;

/* ---- ldap.c --------------------------------------------------------- */

typedef enum { KG__S_OK, KG__S_DOWN, KG__S_ERROR } kg__ldap_sres;
/*
 * A search on a pooled connection, retried once on a new one if a
 * pooled one turned out dead.  KG__S_OK: *res_r (caller frees) and *c_r
 * (caller releases) are set, *rc_r is LDAP_SUCCESS,
 * LDAP_SIZELIMIT_EXCEEDED or LDAP_REFERRAL (the result holds the
 * referral; continuation references may come with the entries: see
 * chase.c).  KG__S_DOWN: no server answered.  KG__S_ERROR: the server
 * refused (noSuchObject, insufficient access...).  err says why.
 */
kg__ldap_sres kg__ldap_search(kg__ldap *l, const char *base, int scope,
                              const char *filter, LDAPControl **ctrls,
                              int sizelimit, kg__ldap_conn **c_r,
                              LDAPMessage **res_r, int *rc_r, char *err,
                              size_t errlen);
/* The same, asking for `attrs` (NULL-terminated) instead of the keys'. */
kg__ldap_sres kg__ldap_search_attrs(kg__ldap *l, const char *base, int scope,
                                    const char *filter, char **attrs,
                                    LDAPControl **ctrls, int sizelimit,
                                    kg__ldap_conn **c_r, LDAPMessage **res_r,
                                    int *rc_r, char *err, size_t errlen);

/* ---- chase.c --------------------------------------------------------- */

/* What a search of base_dn found, referrals included. */
typedef struct kg__ldap_found {
    int n;              /* entries (counted up to 2: more is a copy) */
    kg_record *rec;     /* the first entry's record (the caller's), or NULL
                         * when it lacks a hash or a plan (why says so) */
    int incomplete;     /* a referral or continuation reference was not
                         * followed (referrals: false) or did not answer */
    int account_down;   /* the record's account could not be read */
    char why[512];
} kg__ldap_found;

/*
 * Search base_dn for filter and follow what the result refers to (with
 * `referrals: true`): each URL on a new connection of its own, anonymous
 * (the store's credentials are never sent to a server a directory
 * names), with TLS if the store uses TLS, our filter and attributes,
 * at most 5 hops.  KG__S_OK: *f says what was found; otherwise as
 * kg__ldap_search() and *f is empty.
 */
kg__ldap_sres kg__ldap_find(kg__ldap *l, const char *filter,
                            kg__ldap_found *f, char *err, size_t errlen);

/* ---- options.c ------------------------------------------------------ */

kg_error kg__ldap_create(kg_opts *o, void **inst_r);
void kg__ldap_destroy(void *inst);

/* ---- manage.c ------------------------------------------------------- */

kg_error kg__ldap_get(void *inst, const char *id, kg_record **rec_r,
                      kg_diag *diag);
kg_error kg__ldap_list(void *inst, kg_record_cb cb, void *ud, kg_diag *diag);
kg_error kg__ldap_put(void *inst, const kg_record *r, int create,
                      kg_diag *diag);
/* Called by kg__ldap_page() for each entry; non-zero stops. */
typedef int (*kg__ldap_entry_cb)(kg__ldap *l, LDAP *ld, LDAPMessage *e, void *ud);
kg_error kg__ldap_page(kg__ldap *l, const char *base, int scope,
                       const char *filter, char **attrs, kg__ldap_entry_cb cb,
                       void *ud, kg_diag *diag);
/* KG_ERR_UNAVAILABLE, the diag saying the directory did not answer. */
kg_error kg__ldap_down(kg_diag *diag, const char *err);
/* What a refused write (rc) of dn means, in the diag. */
kg_error kg__ldap_write_error(kg__ldap *l, int rc, const char *uri,
                              const char *dn, kg_diag *diag);
/* A write operation on connection c: sets *conn_failed_r when the
 * connection (not the request) failed. */
typedef kg_error (*kg__ldap_write_fn)(kg__ldap *l, kg__ldap_conn *c, void *ud,
                                      int *conn_failed_r, kg_diag *diag);
/* Run fn on a connection, once more on a new one if a pooled one turned
 * out dead (not on the next server: the write may have been done). */
kg_error kg__ldap_write(kg__ldap *l, kg__ldap_write_fn fn, void *ud,
                        kg_diag *diag);

/* ---- accounts.c ------------------------------------------------------ */

/* The account ops (docs/plugins.md "Accounts"). */
kg_error kg__ldap_account_get(void *inst, const char *id, kg_account **a_r,
                              kg_diag *diag);
kg_error kg__ldap_account_list(void *inst, kg_account_cb cb, void *ud,
                               kg_diag *diag);
kg_error kg__ldap_account_put(void *inst, const kg_account *a, int create,
                              kg_diag *diag);
kg_error kg__ldap_account_delete(void *inst, const char *id, int with_keys,
                                 kg_diag *diag);
/* Attach the account rec names (by id) to rec, and its plan, searched
 * under base on ld (the connection that found the key): KG__S_OK
 * (attached, or no such account: rec keeps the id alone and a check
 * refuses it), KG__S_DOWN (the directory did not answer). */
kg__ldap_sres kg__ldap_attach_account(kg__ldap *l, LDAP *ld, const char *base,
                                      kg_record *rec);
/* On connection c: the account of its own that a key written without
 * one gets (created; its id into id_out). */
kg_error kg__ldap_account_of_its_own(kg__ldap *l, kg__ldap_conn *c,
                                     const kg_record *r, char *id_out,
                                     size_t idlen, int *conn_failed_r,
                                     kg_diag *diag);

/* ---- conn.c ---------------------------------------------------------- */

int kg__ldap_pool_init(kg__ldap *l);
void kg__ldap_pool_free(kg__ldap *l);
/* The most URIs a store may list (a bit each in kg__ldap_try). */
#define KG__LDAP_MAX_URIS 32
/* What one operation (a search and its retries) has learnt about the
 * servers, so that it makes one pass over them.  Start at { 0, 0 }. */
typedef struct kg__ldap_try {
    uint32_t failed;     /* bit i: uris[i] failed, not tried again */
    int fresh;           /* the next connection is a new one, not pooled */
} kg__ldap_try;
/*
 * A bound connection for one operation, or NULL with why in err (the
 * directory is down or busy past the timeouts, or every URI is in
 * t->failed).  A pooled one is taken unless t->fresh, or it talks to a
 * URI in t->failed or marked down, or failback retires it; a new one is
 * opened on the first URI that answers (a URI that does not is added to
 * t->failed).  Give it back with kg__ldap_release() (`ok` = 0 closes it:
 * an error left it in doubt) or kg__ldap_failed().
 */
kg__ldap_conn *kg__ldap_acquire(kg__ldap *l, kg__ldap_try *t, char *err,
                                size_t errlen);
void kg__ldap_release(kg__ldap *l, kg__ldap_conn *c, int ok);
/*
 * c failed with rc (kg__ldap_conn_error(rc)): close it, and say in t
 * where the operation goes next.  A timeout (the server hangs) marks
 * its URI down for `retry`, so no other request takes a pooled
 * connection to it, and the next server is tried; a pooled connection
 * the server closed (a restart) closes the idle ones to that server too
 * and the retry opens a new one; a new one failing goes to the next
 * server.
 */
void kg__ldap_failed(kg__ldap *l, kg__ldap_try *t, kg__ldap_conn *c, int rc);
/* Build a TLS context from the options once (at create): 0, or -1 with
 * why in err (a CA or certificate file that cannot be used). */
int kg__ldap_tls_check(kg__ldap *l, char *err, size_t errlen);
/* An anonymous connection for a referral to uri (TLS: StartTLS when the
 * store uses it or is on ldaps:// only).  NULL with why in err. */
LDAP *kg__ldap_open_referral(kg__ldap *l, const char *uri, char *err,
                             size_t errlen);
/* Close every idle connection (reload). */
void kg__ldap_pool_flush(kg__ldap *l);
/* Log err (which names uri first) for the operator, at most once per
 * URI per interval (kg_context_log_backend). */
void kg__ldap_say(kg__ldap *l, const char *uri, const char *err);
/* 1 if rc means the connection (not the request) failed. */
int kg__ldap_conn_error(int rc);
int64_t kg__ldap_now_us(const kg__ldap *l);

/* ---- tlsdiag.c -------------------------------------------------------- */

/*
 * Why the certificate (DER) a server at `host` presented is refused:
 * verified with OpenSSL against l's ca_file (or the system's CAs) and
 * host, the reason and the certificate's subject and issuer into why.
 * 0, or -1 when that cannot be found out (why untouched).
 */
int kg__ldap_cert_why(const kg__ldap *l, const unsigned char *der, size_t len,
                      const char *host, char *why, size_t whylen);

/* ---- entry.c --------------------------------------------------------- */

/*
 * The filter for `value` in `tmpl` (every "{hash}" replaced by value,
 * escaped per RFC 4515: '*', '(', ')', '\' and NUL become \2A, \28, \29,
 * \5C, \00).  malloc()ed, NULL on allocation failure.
 */
char *kg__ldap_filter(const char *tmpl, const char *value, size_t len);
/* 0 if tmpl holds exactly one "{hash}" and is a parenthesised filter. */
int kg__ldap_filter_check(const char *tmpl, char *err, size_t errlen);
/*
 * A key record from a search result entry.  NULL on allocation failure
 * or when the entry lacks a hash or a plan (err says which).
 */
kg_record *kg__ldap_entry_record(const kg__ldap *l, LDAP *ld,
                                 LDAPMessage *e, char *err, size_t errlen);
/* "20261231235959Z" (GeneralizedTime) <-> Unix seconds. */
int kg__ldap_parse_time(const char *s, int64_t *t_r);
void kg__ldap_format_time(int64_t t, char out[20]);
/*
 * The modifications that make an entry hold r: for an add (mod_op
 * LDAP_MOD_ADD, object class included, empty fields left out) or a
 * replace (LDAP_MOD_REPLACE, empty fields deleted).  Free with
 * kg__ldap_mods_free().  NULL on allocation failure.
 */
LDAPMod **kg__ldap_record_mods(const kg__ldap *l, const kg_record *r, int add);
void kg__ldap_mods_free(LDAPMod **mods);
/* vasprintf() that returns NULL on failure. */
/* The DN of a new entry for id: <rdn_attr>=<id escaped per RFC 4514>,<base>. */
char *kg__ldap_new_dn(const kg__ldap *l, const char *id);
/* The same under another base, named attr=value. */
char *kg__ldap_dn_under(const char *attr, const char *value, const char *base);
/* The values of attribute `attr` of entry e as C strings (values holding
 * a NUL are skipped), *n_r of them, NULL-terminated; free with
 * kg__ldap_free_values().  NULL when there are none. */
char **kg__ldap_values(LDAP *ld, LDAPMessage *e, const char *attr, size_t *n_r);
void kg__ldap_free_values(char **v);
/* "name=count/window[:burst]" (window in seconds, or with s/m/h/d/w):
 * 0, or -1 if it is not that. */
int kg__ldap_parse_limit(const char *s, char *name, size_t namelen,
                         int64_t *count, int64_t *window, int64_t *burst);
/* The inverse ("hour=10/3600:5"), malloc()ed; NULL when out of memory. */
char *kg__ldap_format_limit(const char *name, int64_t count, int64_t window,
                            int64_t burst);
/* Append one modification of attr (n values, copied; a replace with none
 * deletes the attribute): 0, or -1 when out of memory.  *mods stays
 * NULL-terminated. */
int kg__ldap_mod(LDAPMod ***mods, size_t *nm, int op, const char *attr,
                 const char *const *vals, size_t n);
/* One value (NULL: none; a replace with none deletes the attribute), or
 * a time as GeneralizedTime (0: none): as kg__ldap_mod(). */
int kg__ldap_mod_one(LDAPMod ***mods, size_t *nm, int op, const char *attr,
                     const char *val);
int kg__ldap_mod_time(LDAPMod ***mods, size_t *nm, int op, const char *attr,
                      int64_t t);
/* RFC 4515-escaped value for a filter, malloc()ed (NULL: no memory). */
char *kg__ldap_escape(const char *value);

#endif
