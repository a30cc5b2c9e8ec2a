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


kg_error kg__ldap_down(kg_diag *diag, const char *err)
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
        ret = kg__ldap_down(diag, err);
        goto out;
    default:
        kg_diag_set(diag, "%s", err);
        ret = KG_ERR_IO;
        goto out;
    }
    if (f.n == 0 && f.incomplete) {
        ret = kg__ldap_down(diag, f.why);
    } else if (f.n == 0) {
        ret = KG_ERR_NOT_FOUND;
    } else if (f.n > 1) {
        kg_diag_set(diag, "several entries under '%s' have %s=%s: make ids unique",
                 l->base_dn, l->attrs[KG__LA_ID], id);
        ret = KG_ERR_INVALID;
    } else if (f.rec == NULL) {
        kg_diag_set(diag, "%s", f.why);
        ret = KG_ERR_INVALID;
    } else if (f.account_down) {
        ret = kg__ldap_down(diag, "the key's account could not be read");
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

/* Every entry under base matching filter, a page at a time (RFC 2696) so
 * that a directory's size limit does not cut the list short: cb(ld, e,
 * ud) for each until it returns non-zero. */
kg_error kg__ldap_page(kg__ldap *l, const char *base, int scope,
                       const char *filter, char **attrs, kg__ldap_entry_cb cb,
                       void *ud, kg_diag *diag)
{
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
            s = kg__ldap_search_attrs(l, base, scope, filter, attrs, ctrls, 0,
                                      &c, &res, &rc, err, sizeof(err));
            ldap_control_free(page);
            if (s == KG__S_OK && rc == LDAP_REFERRAL) {
                /* Listing follows no referral: say so, not "no keys". */
                snprintf(err, sizeof(err), "%s: '%s' is a referral: listing "
                         "does not follow referrals (list on the server it "
                         "names)", l->uris[c->uri], base);
                ldap_msgfree(res);
                kg__ldap_release(l, c, 1);
                c = NULL;
                ret = kg__ldap_down(diag, err);
                break;
            }
            if (s != KG__S_OK) {
                if (s == KG__S_DOWN) {
                    ret = kg__ldap_down(diag, err);
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
            rc = ldap_search_ext_s(c->ld, base, scope, filter, attrs, 0, ctrls,
                                   NULL, &tv, 0, &res);
            ldap_control_free(page);
            if (rc != LDAP_SUCCESS) {
                ldap_msgfree(res);
                conn_ok = !kg__ldap_conn_error(rc);
                snprintf(err, sizeof(err), "%s: listing under '%s': %s",
                         l->uris[c->uri], base, ldap_err2string(rc));
                if (!conn_ok) {
                    ret = kg__ldap_down(diag, err);
                } else {
                    kg_diag_set(diag, "%s", err);
                    ret = KG_ERR_IO;
                }
                break;
            }
        }
        ber_bvfree(cookie);
        cookie = NULL;
        for (e = ldap_first_entry(c->ld, res); e && !stop; e = ldap_next_entry(c->ld, e))
            stop = cb(l, c->ld, e, ud) != 0;
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

/* The accounts, read once for a key listing (two paged searches in all,
 * not one more per key), sorted by id. */
struct key_listing {
    kg_record_cb cb;
    void *ud;
    kg_account **accts;
    size_t n, cap;
    int nomem;
};

static int keep_account(const kg_account *a, void *ud)
{
    struct key_listing *k = ud;
    if (k->n == k->cap) {
        size_t cap = k->cap ? 2 * k->cap : 64;
        kg_account **na = realloc(k->accts, cap * sizeof(*na));
        if (na == NULL) {
            k->nomem = 1;
            return 1;
        }
        k->accts = na;
        k->cap = cap;
    }
    k->accts[k->n++] = kg_account_ref((kg_account *)a);
    return 0;
}

static int by_id(const void *x, const void *y)
{
    return strcmp(kg_account_id(*(kg_account *const *)x),
                  kg_account_id(*(kg_account *const *)y));
}

static int key_entry(kg__ldap *l, LDAP *ld, LDAPMessage *e, void *ud)
{
    struct key_listing *k = ud;
    char err[512];
    kg_record *r = kg__ldap_entry_record(l, ld, e, err, sizeof(err));
    int stop;

    if (r == NULL)
        return 0;  /* not a usable key entry: not listed */
    if (kg_record_account_id(r) != NULL && k->n > 0) {
        kg_account *key = kg_account_new(), **hit = NULL;
        if (key != NULL && kg_account_set_id(key, kg_record_account_id(r)) == KG_OK)
            hit = bsearch(&key, k->accts, k->n, sizeof(*k->accts), by_id);
        kg_account_unref(key);
        /* The plan is the account's (docs/plugins.md "Accounts"). */
        if (hit != NULL && kg_record_set_account(r, *hit) == KG_OK)
            kg_record_set_plan(r, kg_account_plan(*hit));
    }
    stop = k->cb(r, k->ud);
    kg_record_unref(r);
    return stop;
}

kg_error kg__ldap_list(void *inst, kg_record_cb cb, void *ud, kg_diag *diag)
{
    kg__ldap *l = inst;
    struct key_listing k = { cb, ud, NULL, 0, 0, 0 };
    kg_error e = KG_OK;
    size_t i;

    if (l->attrs[KG__LA_ACCOUNT] != NULL) {
        e = kg__ldap_account_list(l, keep_account, &k, diag);
        if (e == KG_OK && k.nomem)
            e = KG_ERR_NOMEM;
        if (e == KG_OK)
            qsort(k.accts, k.n, sizeof(*k.accts), by_id);
    }
    if (e == KG_OK)
        e = kg__ldap_page(l, l->base_dn, l->scope, l->list_filter, l->want,
                          key_entry, &k, diag);
    for (i = 0; i < k.n; i++)
        kg_account_unref(k.accts[i]);
    free(k.accts);
    return e;
}

kg_error kg__ldap_write_error(kg__ldap *l, int rc, const char *uri,
                              const char *dn, kg_diag *diag)
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
        *ret = kg__ldap_write_error(l, rc, "the directory", id, diag);
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

kg_error kg__ldap_write(kg__ldap *l, kg__ldap_write_fn fn, void *ud,
                        kg_diag *diag)
{
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
    /* A pooled connection the server dropped gets one retry on a new
     * one.  Not on the next server after a timeout, as a search is: the
     * write may have been done. */
    for (attempt = 0; attempt < 2; attempt++) {
        kg__ldap_conn *c = kg__ldap_acquire(l, &t, err, sizeof(err));
        int failed, fresh;
        if (c == NULL) {
            ret = kg__ldap_down(diag, err);
            break;
        }
        fresh = c->fresh;
        ret = fn(l, c, ud, &failed, diag);
        kg__ldap_release(l, c, !failed);
        if (!failed || fresh)
            break;
        t.fresh = 1;
    }
    return ret;
}

struct put_args {
    const kg_record *r;
    int create;
};

/* One add or modify on connection c.  A key without an account is given
 * one of its own first (docs/plugins.md "Accounts"), removed again if
 * the key cannot be written. */
static kg_error put_once(kg__ldap *l, kg__ldap_conn *c, void *ud,
                         int *conn_failed_r, kg_diag *diag)
{
    struct put_args *a = ud;
    const kg_record *r = a->r;
    kg_record *own = NULL;
    LDAPMod **mods = NULL;
    char *dn = NULL, acct[KG_ACCOUNT_ID_MAX + 1] = "";
    kg_error ret;
    int rc;

    *conn_failed_r = 0;
    if (kg_record_account_id(r) == NULL && l->attrs[KG__LA_ACCOUNT] != NULL) {
        ret = kg__ldap_account_of_its_own(l, c, r, acct, sizeof(acct),
                                          conn_failed_r, diag);
        if (ret != KG_OK)
            return ret;
        if ((own = kg_record_dup(r)) == NULL ||
            kg_record_set_account_id(own, acct) != KG_OK) {
            ret = KG_ERR_NOMEM;
            goto out;
        }
        /* The key's overrides moved to its account. */
        kg_record_clear_limits(own);
        r = own;
    }
    if ((mods = kg__ldap_record_mods(l, r, a->create)) == NULL) {
        ret = KG_ERR_NOMEM;
        goto out;
    }
    if (a->create) {
        if ((dn = kg__ldap_new_dn(l, kg_record_id(r))) == NULL) {
            ret = KG_ERR_NOMEM;
            goto out;
        }
        rc = ldap_add_ext_s(c->ld, dn, mods, NULL, NULL);
        if (rc == LDAP_ALREADY_EXISTS) {
            kg_diag_set(diag, "key id '%s' already exists (%s)", kg_record_id(r), dn);
            ret = KG_ERR_EXISTS;
            goto out;
        }
    } else {
        if ((dn = find_dn(l, c->ld, kg_record_id(r), &ret, diag)) == NULL) {
            *conn_failed_r = ret == KG_ERR_UNAVAILABLE;
            goto out;
        }
        rc = ldap_modify_ext_s(c->ld, dn, mods, NULL, NULL);
    }
    *conn_failed_r = kg__ldap_conn_error(rc);
    ret = rc == LDAP_SUCCESS ? KG_OK
                             : kg__ldap_write_error(l, rc, l->uris[c->uri], dn, diag);
out:
    if (ret != KG_OK && *acct != '\0' && !*conn_failed_r) {
        char *adn = kg__ldap_dn_under("apiAccountId", acct, l->accounts_dn);
        if (adn != NULL)
            ldap_delete_ext_s(c->ld, adn, NULL, NULL);
        free(adn);
    }
    kg__ldap_mods_free(mods);
    kg_record_unref(own);
    free(dn);
    return ret;
}

kg_error kg__ldap_put(void *inst, const kg_record *r, int create, kg_diag *diag)
{
    kg__ldap *l = inst;
    struct put_args a = { r, create };

    if (l->writable && l->attrs[KG__LA_ID] == NULL) {
        kg_diag_set(diag, "attributes: id is not mapped, so new entries cannot be named");
        return KG_ERR_UNSUPPORTED;
    }
    return kg__ldap_write(l, put_once, &a, diag);
}
