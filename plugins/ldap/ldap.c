/*
 * ldap - keystore plugin: key records as entries in an LDAP directory
 * (OpenLDAP's libldap).  See docs/ldap.md for the options and
 * conf/ldap/ for the schema.
 *
 * This file: the lookup and the descriptor.  options.c reads the
 * options, conn.c keeps the connections, entry.c maps entries to
 * records, manage.c writes them.
 *
 * A lookup searches base_dn for the key's SHA-256 (hex) with the filter
 * template; the value is escaped per RFC 4515 so that nothing a client
 * sends can change the filter.  Any failure to get an answer (no server,
 * a timeout, a bind refused, a base DN missing) is `unavailable`, never
 * `fail`: the core then serves what its cache holds and answers 503 for
 * the rest.  The store keeps no records itself; put `cache:` on the
 * policy line.
 *
 * Writes (keygate key create/update/revoke/rotate) need `writable: true`
 * and a bind that may write under base_dn; otherwise they fail with
 * KG_ERR_READONLY and say so.  last_used is not written on the request
 * path (touch is not implemented): a directory write per request would
 * cost more than the lookup, and replication makes it worse.
 */
#define _GNU_SOURCE
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ldapstore.h"
#include "../common/auditlog.h"

/* ---- searching ---------------------------------------------------------- */

/*
 * One search.  A connection that fails (conn.c, kg__ldap_failed) sends
 * the search on: after a pooled connection the server dropped (a
 * restart, an idle timeout), to a new connection; after a timeout (the
 * server hangs) or a new connection failing, to the next server.  No
 * server is tried twice, so one pass over them bounds the wait.
 * On KG__S_OK *res_r holds the result and *c_r the connection it came on
 * (entries are read through it): the caller frees the one and releases
 * the other.
 */
kg__ldap_sres kg__ldap_search(kg__ldap *l, const char *base, int scope,
                   const char *filter, LDAPControl **ctrls, int sizelimit,
                   kg__ldap_conn **c_r, LDAPMessage **res_r, int *rc_r,
                   char *err, size_t errlen)
{
    return kg__ldap_search_attrs(l, base, scope, filter, l->want, ctrls,
                                 sizelimit, c_r, res_r, rc_r, err, errlen);
}

kg__ldap_sres kg__ldap_search_attrs(kg__ldap *l, const char *base, int scope,
                   const char *filter, char **attrs, LDAPControl **ctrls,
                   int sizelimit, kg__ldap_conn **c_r, LDAPMessage **res_r,
                   int *rc_r, char *err, size_t errlen)
{
    kg__ldap_try t = { 0, 0 };

    *res_r = NULL;
    *c_r = NULL;
    for (;;) {
        struct timeval tv;
        kg__ldap_conn *c = kg__ldap_acquire(l, &t, err, errlen);
        int rc;

        if (c == NULL)
            return KG__S_DOWN;
        tv.tv_sec = l->search_timeout_ms / 1000;
        tv.tv_usec = (l->search_timeout_ms % 1000) * 1000;
        rc = ldap_search_ext_s(c->ld, base, scope, filter, attrs, 0, ctrls,
                               NULL, &tv, sizelimit, res_r);
        if (kg__ldap_conn_error(rc)) {
            char *diag = NULL;
            ldap_get_option(c->ld, LDAP_OPT_DIAGNOSTIC_MESSAGE, &diag);
            snprintf(err, errlen, "%s: search failed: %s%s%s", l->uris[c->uri],
                     ldap_err2string(rc), diag && *diag ? ": " : "",
                     diag ? diag : "");
            ldap_memfree(diag);
            kg__ldap_say(l, l->uris[c->uri], err);
            ldap_msgfree(*res_r);
            *res_r = NULL;
            kg__ldap_failed(l, &t, c, rc);
            continue;
        }
        *rc_r = rc;
        if (rc != LDAP_SUCCESS && rc != LDAP_SIZELIMIT_EXCEEDED &&
            rc != LDAP_REFERRAL) {
            snprintf(err, errlen, "%s: search under '%s' refused: %s",
                     l->uris[c->uri], base, ldap_err2string(rc));
            kg__ldap_say(l, l->uris[c->uri], err);
            kg__ldap_release(l, c, 1);
            ldap_msgfree(*res_r);
            *res_r = NULL;
            return KG__S_ERROR;
        }
        *c_r = c;
        return KG__S_OK;
    }
}

static kg_result ld_lookup(void *inst, kg_call *call,
                           const unsigned char hash[KG_HASH_LEN],
                           kg_record **rec_r)
{
    kg__ldap *l = inst;
    char hex[2 * KG_HASH_LEN + 1], err[1024];
    char *filter;
    kg__ldap_found f;
    kg_result r = KG_RESULT_UNAVAILABLE;

    /* Every lookup is a search on the network (the core's cache is in
     * front): a check that may not wait (keygated's HTTP threads) hands
     * it on to a thread that may (docs/keygated.md). */
    if (kg_call_would_block(call))
        return KG_RESULT_UNAVAILABLE;
    kg_hash_to_hex(hash, hex);
    filter = kg__ldap_filter(l->filter, hex, strlen(hex));
    kg_wipe(hex, sizeof(hex));
    if (filter == NULL)
        return KG_RESULT_UNAVAILABLE;
    if (kg__ldap_find(l, filter, &f, err, sizeof(err)) != KG__S_OK)
        goto out;
    if (f.n == 1 && f.rec != NULL) {
        /* Found: a copy behind a referral not followed is not looked for.
         * Its account is read with it (accounts.c). */
        if (f.account_down) {
            r = KG_RESULT_UNAVAILABLE;
        } else {
            *rec_r = f.rec;
            f.rec = NULL;
            r = KG_RESULT_OK;
        }
    } else if (f.n == 0 && f.incomplete) {
        /* Part of the tree did not answer (a referral not followed, or
         * its server down): the key may be there, so not "unknown". */
        r = KG_RESULT_UNAVAILABLE;
    } else {
        /* None; or two entries with one hash, a copy-and-paste in the
         * directory: refuse the key rather than guess which one rules;
         * or an entry without a hash or plan. */
        r = KG_RESULT_FAIL;
    }
    kg_record_unref(f.rec);
out:
    kg_wipe(filter, strlen(filter));
    free(filter);
    return r;
}

static kg_error ld_reload(void *inst, kg_diag *diag)
{
    (void)diag;
    /* New connections pick up a renewed CA or certificate. */
    kg__ldap_pool_flush(inst);
    return KG_OK;
}

/*
 * The audit log: a directory is no place for a log (every record an
 * entry, replicated), so it is a JSON-lines file of this host, named by
 * audit_file (docs/audit.md); without it, none, said clearly.
 */
static kg_error no_audit_file(kg_diag *diag)
{
    kg_diag_set(diag, "the ldap store keeps no audit log unless its "
                "audit_file option names a file (docs/audit.md)");
    return KG_ERR_UNSUPPORTED;
}

static kg_error ld_audit_append(void *inst, const kg_audit_record *r,
                                kg_diag *diag)
{
    kg__ldap *l = inst;
    return l->audit_file == NULL ? no_audit_file(diag)
                                 : kg__auditlog_append(l->audit_file, r, diag);
}

static kg_error ld_audit_query(void *inst, const kg_audit_query *q,
                               kg_audit_cb cb, void *ud, kg_diag *diag)
{
    kg__ldap *l = inst;
    return l->audit_file == NULL ? no_audit_file(diag)
                                 : kg__auditlog_query(l->audit_file, q, cb, ud, diag);
}

static const struct kg_keystore_ops ld_ops = {
    .lookup = ld_lookup,
    .get = kg__ldap_get,
    .list = kg__ldap_list,
    .put = kg__ldap_put,
    .reload = ld_reload,
    .touch = NULL,  /* see the comment at the top */
    .account_get = kg__ldap_account_get,
    .account_list = kg__ldap_account_list,
    .account_put = kg__ldap_account_put,
    .account_delete = kg__ldap_account_delete,
    .audit_append = ld_audit_append,
    .audit_query = ld_audit_query,
};

KG_PLUGIN_DEFINE(ldap) = {
    KG_PLUGIN_HEADER,
    .kind = KG_PLUGIN_KEYSTORE,
    .name = "ldap",
    .description = "key records (hashes only) in an LDAP directory: "
                   "failover, TLS, pooled connections",
    .create = kg__ldap_create,
    .destroy = kg__ldap_destroy,
    .keystore = &ld_ops,
};
