/*
 * manage.c - key management through the directory: get and list (any
 * bind that may read), put (create or replace an entry: only with
 * `writable: true` and a bind that may write under base_dn; otherwise
 * KG_ERR_READONLY and a message that says so).
 */
#define _GNU_SOURCE
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ldapstore.h"

#define LIST_PAGE 500


static kg_error down(kg_diag *diag, const char *err)
{
    kg_diag_set(diag, "the LDAP directory did not answer: %s", err);
    return KG_ERR_UNAVAILABLE;
}

kg_error kg__ldap_get(void *inst, const char *id, kg_record **rec_r,
                       kg_diag *diag)
{
    kg__ldap *l = inst;
    char err[1024], *filter;
    kg__ldap_found f;
    kg_error ret;

    if (l->attrs[KG__LA_ID] == NULL) {
        kg_diag_set(diag, "attributes: id is not mapped, so keys cannot be found by id");
        return KG_ERR_UNSUPPORTED;
    }
    filter = kg__ldap_filter(l->id_filter, id, strlen(id));
    if (filter == NULL)
        return KG_ERR_NOMEM;
    switch (kg__ldap_find(l, filter, &f, err, sizeof(err))) {
    case KG__S_OK:
        break;
    case KG__S_DOWN:
        ret = down(diag, err);
        goto out;
    default:
        kg_diag_set(diag, "%s", err);
        ret = KG_ERR_IO;
        goto out;
    }
    if (f.n == 0 && f.incomplete) {
        ret = down(diag, f.why);
    } else if (f.n == 0) {
        ret = KG_ERR_NOT_FOUND;
    } else if (f.n > 1) {
        kg_diag_set(diag, "several entries under '%s' have %s=%s: make ids unique",
                 l->base_dn, l->attrs[KG__LA_ID], id);
        ret = KG_ERR_INVALID;
    } else if (f.rec == NULL) {
        kg_diag_set(diag, "%s", f.why);
        ret = KG_ERR_INVALID;
    } else {
        *rec_r = f.rec;
        f.rec = NULL;
        ret = KG_OK;
    }
    kg_record_unref(f.rec);
out:
    free(filter);
    return ret;
}

/* Every key entry, a page at a time (RFC 2696) so that a directory's
 * size limit does not cut the list short. */
kg_error kg__ldap_list(void *inst, kg_record_cb cb, void *ud, kg_diag *diag)
{
    kg__ldap *l = inst;
    struct berval *cookie = NULL;
    kg__ldap_conn *c = NULL;
    char err[1024];
    kg_error ret = KG_OK;
    int stop = 0, conn_ok = 1;

    do {
        LDAPControl *page = NULL, *ctrls[2] = { NULL, NULL }, **rctrls = NULL, *pr;
        LDAPMessage *res = NULL, *e;
        int rc, perr = 0;
        ber_int_t total;

        if (c == NULL) {
            /* The first page: through search(), which copes with a
             * pooled connection that died.  The control is encoded on a
             * scratch handle since no connection is held yet. */
            LDAP *tmp = NULL;
            kg__ldap_sres s;
            if (ldap_initialize(&tmp, NULL) != LDAP_SUCCESS ||
                ldap_create_page_control(tmp, LIST_PAGE, NULL, 1, &page) != LDAP_SUCCESS) {
                if (tmp)
                    ldap_unbind_ext_s(tmp, NULL, NULL);
                ret = KG_ERR_NOMEM;
                break;
            }
            ldap_unbind_ext_s(tmp, NULL, NULL);
            ctrls[0] = page;
            s = kg__ldap_search(l, l->base_dn, l->scope, l->list_filter, ctrls, 0, &c,
                       &res, &rc, err, sizeof(err));
            ldap_control_free(page);
            if (s == KG__S_OK && rc == LDAP_REFERRAL) {
                /* Listing follows no referral: say so, not "no keys". */
                snprintf(err, sizeof(err), "%s: base_dn '%s' is a referral: key "
                         "list does not follow referrals (list on the server "
                         "it names)", l->uris[c->uri], l->base_dn);
                ldap_msgfree(res);
                kg__ldap_release(l, c, 1);
                c = NULL;
                ret = down(diag, err);
                break;
            }
            if (s != KG__S_OK) {
                if (s == KG__S_DOWN) {
                    ret = down(diag, err);
                } else {
                    kg_diag_set(diag, "%s", err);
                    ret = KG_ERR_IO;
                }
                break;
            }
        } else {
            struct timeval tv;
            tv.tv_sec = l->search_timeout_ms / 1000;
            tv.tv_usec = (l->search_timeout_ms % 1000) * 1000;
            if (ldap_create_page_control(c->ld, LIST_PAGE, cookie, 1, &page) != LDAP_SUCCESS) {
                ret = KG_ERR_NOMEM;
                break;
            }
            ctrls[0] = page;
            rc = ldap_search_ext_s(c->ld, l->base_dn, l->scope, l->list_filter,
                                   l->want, 0, ctrls, NULL, &tv, 0, &res);
            ldap_control_free(page);
            if (rc != LDAP_SUCCESS) {
                ldap_msgfree(res);
                conn_ok = !kg__ldap_conn_error(rc);
                snprintf(err, sizeof(err), "%s: listing under '%s': %s",
                         l->uris[c->uri], l->base_dn, ldap_err2string(rc));
                if (!conn_ok) {
                    ret = down(diag, err);
                } else {
                    kg_diag_set(diag, "%s", err);
                    ret = KG_ERR_IO;
                }
                break;
            }
        }
        ber_bvfree(cookie);
        cookie = NULL;
        for (e = ldap_first_entry(c->ld, res); e && !stop; e = ldap_next_entry(c->ld, e)) {
            kg_record *r = kg__ldap_entry_record(l, c->ld, e, err, sizeof(err));
            if (r == NULL)
                continue;  /* not a usable key entry: not listed */
            stop = cb(r, ud) != 0;
            kg_record_unref(r);
        }
        if (ldap_parse_result(c->ld, res, &perr, NULL, NULL, NULL, &rctrls, 0) == LDAP_SUCCESS &&
            (pr = ldap_control_find(LDAP_CONTROL_PAGEDRESULTS, rctrls, NULL)) != NULL) {
            struct berval ck = { 0, NULL };
            if (ldap_parse_pageresponse_control(c->ld, pr, &total, &ck) == LDAP_SUCCESS &&
                ck.bv_len > 0)
                cookie = ber_bvdup(&ck);
            ber_memfree(ck.bv_val);
        }
        ldap_controls_free(rctrls);
        ldap_msgfree(res);
    } while (cookie != NULL && !stop);
    ber_bvfree(cookie);
    kg__ldap_release(l, c, conn_ok);
    return ret;
}

static kg_error write_error(kg__ldap *l, int rc, const char *uri, const char *dn,
                            kg_diag *diag)
{
    switch (rc) {
    case LDAP_INSUFFICIENT_ACCESS:
    case LDAP_STRONG_AUTH_REQUIRED:
    case LDAP_UNWILLING_TO_PERFORM:
    case LDAP_CONFIDENTIALITY_REQUIRED:
        kg_diag_set(diag, "%s refused to write '%s' (%s): the bind %s%s%s has no "
                 "write access under %s, so this key store is read-only",
                 uri, dn, ldap_err2string(rc), l->bind_dn ? "as '" : "",
                 l->bind_dn ? l->bind_dn : "(anonymous)", l->bind_dn ? "'" : "",
                 l->base_dn);
        return KG_ERR_READONLY;
    case LDAP_NO_SUCH_OBJECT:
        kg_diag_set(diag, "%s: cannot write '%s': base_dn '%s' does not exist",
                 uri, dn, l->base_dn);
        return KG_ERR_IO;
    case LDAP_OBJECT_CLASS_VIOLATION:
    case LDAP_UNDEFINED_TYPE:
        kg_diag_set(diag, "%s: cannot write '%s' (%s): is the keygate schema "
                 "(conf/ldap/keygate.ldif) loaded, and do the attributes: "
                 "names match it?", uri, dn, ldap_err2string(rc));
        return KG_ERR_IO;
    default:
        kg_diag_set(diag, "%s: cannot write '%s': %s", uri, dn, ldap_err2string(rc));
        return kg__ldap_conn_error(rc) ? KG_ERR_UNAVAILABLE : KG_ERR_IO;
    }
}

/* The DN of the entry whose id is `id`, or NULL (ret says why). */
static char *find_dn(kg__ldap *l, LDAP *ld, const char *id, kg_error *ret,
                     kg_diag *diag)
{
    char *filter = kg__ldap_filter(l->id_filter, id, strlen(id)), *dn = NULL, *d;
    char *noattrs[] = { LDAP_NO_ATTRS, NULL };
    LDAPMessage *res = NULL;
    struct timeval tv;
    int rc;

    *ret = KG_ERR_NOMEM;
    if (filter == NULL)
        return NULL;
    tv.tv_sec = l->search_timeout_ms / 1000;
    tv.tv_usec = (l->search_timeout_ms % 1000) * 1000;
    rc = ldap_search_ext_s(ld, l->base_dn, l->scope, filter, noattrs, 0, NULL,
                           NULL, &tv, 2, &res);
    free(filter);
    if (rc != LDAP_SUCCESS) {
        *ret = write_error(l, rc, "the directory", id, diag);
    } else if (ldap_count_entries(ld, res) != 1) {
        *ret = ldap_count_entries(ld, res) == 0 ? KG_ERR_NOT_FOUND : KG_ERR_INVALID;
        kg_diag_set(diag, ldap_count_entries(ld, res) == 0 ? "no key with id '%s'"
                 : "several entries have the id '%s': make ids unique", id);
    } else if ((d = ldap_get_dn(ld, ldap_first_entry(ld, res))) != NULL) {
        dn = strdup(d);
        ldap_memfree(d);
        *ret = dn ? KG_OK : KG_ERR_NOMEM;
    }
    ldap_msgfree(res);
    return dn;
}

/* One add or modify on connection c; *conn_failed_r says whether the
 * connection (not the request) failed. */
static kg_error put_once(kg__ldap *l, kg__ldap_conn *c, const kg_record *r,
                         int create, LDAPMod **mods, int *conn_failed_r,
                         kg_diag *diag)
{
    char *dn = NULL;
    kg_error ret;
    int rc;

    *conn_failed_r = 0;
    if (create) {
        if ((dn = kg__ldap_new_dn(l, kg_record_id(r))) == NULL)
            return KG_ERR_NOMEM;
        rc = ldap_add_ext_s(c->ld, dn, mods, NULL, NULL);
        if (rc == LDAP_ALREADY_EXISTS) {
            kg_diag_set(diag, "key id '%s' already exists (%s)", kg_record_id(r), dn);
            free(dn);
            return KG_ERR_EXISTS;
        }
    } else {
        if ((dn = find_dn(l, c->ld, kg_record_id(r), &ret, diag)) == NULL) {
            *conn_failed_r = ret == KG_ERR_UNAVAILABLE;
            return ret;
        }
        rc = ldap_modify_ext_s(c->ld, dn, mods, NULL, NULL);
    }
    *conn_failed_r = kg__ldap_conn_error(rc);
    ret = rc == LDAP_SUCCESS ? KG_OK : write_error(l, rc, l->uris[c->uri], dn, diag);
    free(dn);
    return ret;
}

kg_error kg__ldap_put(void *inst, const kg_record *r, int create, kg_diag *diag)
{
    kg__ldap *l = inst;
    LDAPMod **mods;
    char err[1024];
    kg_error ret = KG_ERR_UNAVAILABLE;
    kg__ldap_try t = { 0, 0 };
    int attempt;

    if (!l->writable) {
        kg_diag_set(diag, "the ldap key store is read-only: manage keys in the "
                 "directory, or set writable: true on the policy line with a "
                 "bind_dn that may write under %s", l->base_dn);
        return KG_ERR_READONLY;
    }
    if (l->attrs[KG__LA_ID] == NULL) {
        kg_diag_set(diag, "attributes: id is not mapped, so new entries cannot be named");
        return KG_ERR_UNSUPPORTED;
    }
    mods = kg__ldap_record_mods(l, r, create);
    if (mods == NULL)
        return KG_ERR_NOMEM;
    /* A pooled connection the server dropped gets one retry on a new
     * one.  Not on the next server after a timeout, as a search is: the
     * write may have been done. */
    for (attempt = 0; attempt < 2; attempt++) {
        kg__ldap_conn *c = kg__ldap_acquire(l, &t, err, sizeof(err));
        int failed, fresh;
        if (c == NULL) {
            ret = down(diag, err);
            break;
        }
        fresh = c->fresh;
        ret = put_once(l, c, r, create, mods, &failed, diag);
        kg__ldap_release(l, c, !failed);
        if (!failed || fresh)
            break;
        t.fresh = 1;
    }
    kg__ldap_mods_free(mods);
    return ret;
}

