/*
 * accounts.c - the ldap store's accounts (docs/plugins.md "Accounts",
 * docs/ldap.md "Accounts"): entries of object class apiAccount under
 * accounts_dn (base_dn unless set), named apiAccountId=<id>, and the
 * key's apiKeyAccount naming one.
 *
 * A directory cannot join: a lookup that finds a key with an account
 * reads the account's entry in a second search on the same pool (the
 * core's record cache then keeps the two together).  A directory has no
 * transactions either: what SQL does in one, this does in an order that
 * leaves nothing wrong if it stops half-way (an account is checked for
 * clashes before it is written; deleting one with its keys revokes the
 * keys first, then removes the account).  Two writers racing on one
 * external id can both pass the check: the directory's uniqueness (the
 * unique overlay on apiAccountExternalId, docs/ldap.md) closes that.
 */
#define _GNU_SOURCE
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ldapstore.h"

#define ACCT_OC "apiAccount"

enum {
    AA_ID, AA_EXT, AA_NAME, AA_PLAN, AA_STATUS, AA_PERMS, AA_CIDRS, AA_LIMITS,
    AA_CREATED, AA_UPDATED, AA_META, AA_COUNT
};
/* The shipped schema's names (conf/ldap/keygate.schema); not remapped:
 * accounts are new, no existing directory has its own names for them. */
static char *acct_attr[AA_COUNT + 1] = {
    [AA_ID] = "apiAccountId", [AA_EXT] = "apiAccountExternalId",
    [AA_NAME] = "apiKeyName", [AA_PLAN] = "apiKeyPlan",
    [AA_STATUS] = "apiKeyStatus", [AA_PERMS] = "apiKeyPermission",
    [AA_CIDRS] = "apiKeyAllowedCidr", [AA_LIMITS] = "apiKeyLimit",
    [AA_CREATED] = "apiKeyCreated", [AA_UPDATED] = "apiAccountUpdated",
    [AA_META] = "apiAccountMetadata", [AA_COUNT] = NULL
};

/* ---- entry <-> account ------------------------------------------------- */

static kg_account *entry_account(LDAP *ld, LDAPMessage *e)
{
    kg_account *a = kg_account_new();
    char **v[AA_COUNT];
    size_t n[AA_COUNT], i;
    kg_error err = KG_OK;
    int64_t t;

    if (a == NULL)
        return NULL;
    for (i = 0; i < AA_COUNT; i++)
        v[i] = kg__ldap_values(ld, e, acct_attr[i], &n[i]);
    if (n[AA_ID] == 0 || n[AA_PLAN] == 0) {
        err = KG_ERR_INVALID;  /* not an account entry we can use */
        goto out;
    }
    err |= kg_account_set_id(a, v[AA_ID][0]);
    err |= kg_account_set_plan(a, v[AA_PLAN][0]);
    err |= kg_account_set_name(a, n[AA_NAME] ? v[AA_NAME][0] : v[AA_ID][0]);
    if (n[AA_EXT])
        err |= kg_account_set_external_id(a, v[AA_EXT][0]);
    if (n[AA_META])
        err |= kg_account_set_metadata(a, v[AA_META][0]);
    kg_account_set_status(a, n[AA_STATUS] && strcasecmp(v[AA_STATUS][0], "suspended") == 0
                                 ? KG_ACCOUNT_SUSPENDED : KG_ACCOUNT_ACTIVE);
    if (n[AA_CREATED] && kg__ldap_parse_time(v[AA_CREATED][0], &t) == 0)
        kg_account_set_created(a, t);
    if (n[AA_UPDATED] && kg__ldap_parse_time(v[AA_UPDATED][0], &t) == 0)
        kg_account_set_updated(a, t);
    for (i = 0; i < n[AA_PERMS]; i++)
        err |= kg_account_add_permission(a, v[AA_PERMS][i]);
    for (i = 0; i < n[AA_CIDRS]; i++)
        err |= kg_account_add_cidr(a, v[AA_CIDRS][i]);
    for (i = 0; i < n[AA_LIMITS]; i++) {
        char name[64];
        int64_t c, w, b;
        if (kg__ldap_parse_limit(v[AA_LIMITS][i], name, sizeof(name), &c, &w, &b) == 0)
            err |= kg_account_add_limit(a, name, c, w, b);
    }
out:
    for (i = 0; i < AA_COUNT; i++)
        kg__ldap_free_values(v[i]);
    if (err != KG_OK) {
        kg_account_unref(a);
        return NULL;
    }
    return a;
}

/* The modifications that write a (add: a new entry; else replace every
 * field but the id). */
static LDAPMod **account_mods(const kg_account *a, int add)
{
    LDAPMod **mods = calloc(1, sizeof(*mods));
    size_t nm = 0, i, n;
    int op = add ? LDAP_MOD_ADD : LDAP_MOD_REPLACE, bad = 0;
    const char **list;
    char **lim;

    if (mods == NULL)
        return NULL;
    if (add) {
        bad |= kg__ldap_mod_one(&mods, &nm, op, "objectClass", ACCT_OC);
        bad |= kg__ldap_mod_one(&mods, &nm, op, acct_attr[AA_ID], kg_account_id(a));
    }
    bad |= kg__ldap_mod_one(&mods, &nm, op, acct_attr[AA_EXT], kg_account_external_id(a));
    bad |= kg__ldap_mod_one(&mods, &nm, op, acct_attr[AA_NAME], kg_account_name(a));
    bad |= kg__ldap_mod_one(&mods, &nm, op, acct_attr[AA_PLAN], kg_account_plan(a));
    bad |= kg__ldap_mod_one(&mods, &nm, op, acct_attr[AA_STATUS],
                   kg_account_status_name(kg_account_status_of(a)));
    bad |= kg__ldap_mod_time(&mods, &nm, op, acct_attr[AA_CREATED], kg_account_created(a));
    bad |= kg__ldap_mod_time(&mods, &nm, op, acct_attr[AA_UPDATED], kg_account_updated(a));
    bad |= kg__ldap_mod_one(&mods, &nm, op, acct_attr[AA_META], kg_account_metadata(a));
    n = kg_account_permission_count(a);
    if (n < kg_account_cidr_count(a))
        n = kg_account_cidr_count(a);
    list = calloc(n + 1, sizeof(*list));
    lim = calloc(kg_account_limit_count(a) + 1, sizeof(*lim));
    if (list == NULL || lim == NULL) {
        bad = 1;
        goto out;
    }
    for (i = 0; i < kg_account_permission_count(a); i++)
        list[i] = kg_account_permission(a, i);
    bad |= kg__ldap_mod(&mods, &nm, op, acct_attr[AA_PERMS], list, i);
    for (i = 0; i < kg_account_cidr_count(a); i++)
        list[i] = kg_account_cidr(a, i);
    bad |= kg__ldap_mod(&mods, &nm, op, acct_attr[AA_CIDRS], list, i);
    for (i = 0; i < kg_account_limit_count(a); i++) {
        const char *name;
        int64_t c, w, b;
        kg_account_limit(a, i, &name, &c, &w, &b);
        if ((lim[i] = kg__ldap_format_limit(name, c, w, b)) == NULL)
            bad = 1;
    }
    if (!bad)
        bad |= kg__ldap_mod(&mods, &nm, op, acct_attr[AA_LIMITS],
                            (const char *const *)lim, i);
out:
    for (i = 0; lim != NULL && lim[i] != NULL; i++)
        free(lim[i]);
    free(lim);
    free(list);
    if (bad) {
        kg__ldap_mods_free(mods);
        return NULL;
    }
    return mods;
}

/* ---- searching ---------------------------------------------------------- */

/* "(&(objectClass=apiAccount)(|(A=v)...))": attribute and value pairs
 * (NULL values left out), each value escaped. */
static char *acct_filter(const char *a1, const char *v1, const char *a2,
                         const char *v2, const char *a3, const char *v3)
{
    const char *at[3] = { a1, a2, a3 }, *val[3] = { v1, v2, v3 };
    char *terms = strdup(""), *f = NULL;
    int i;

    for (i = 0; i < 3 && terms != NULL; i++) {
        char *esc, *t;
        if (at[i] == NULL || val[i] == NULL)
            continue;
        if ((esc = kg__ldap_escape(val[i])) == NULL) {
            free(terms);
            return NULL;
        }
        t = kg_modutil_asprintf("%s(%s=%s)", terms, at[i], esc);
        free(esc);
        free(terms);
        terms = t;
    }
    if (terms != NULL)
        f = kg_modutil_asprintf("(&(objectClass=" ACCT_OC ")(|%s))", terms);
    free(terms);
    return f;
}

/* What a search for accounts found: up to two, their DNs. */
struct found {
    kg_account *a[2];
    char *dn[2];
    int n;
};

static void found_free(struct found *f)
{
    int i;
    for (i = 0; i < 2; i++) {
        kg_account_unref(f->a[i]);
        free(f->dn[i]);
    }
    memset(f, 0, sizeof(*f));
}

/* Search base for filter (on connection ld if given, else from the
 * pool): KG_OK with *f filled, or why not. */
static kg_error find(kg__ldap *l, LDAP *ld, const char *base,
                     const char *filter, struct found *f, kg_diag *diag)
{
    kg__ldap_conn *c = NULL;
    LDAPMessage *res = NULL, *e;
    char err[1024];
    int rc;
    kg_error ret = KG_OK;

    memset(f, 0, sizeof(*f));
    if (ld == NULL) {
        switch (kg__ldap_search_attrs(l, base, LDAP_SCOPE_SUBTREE, filter,
                                      acct_attr, NULL, 2, &c, &res, &rc, err,
                                      sizeof(err))) {
        case KG__S_OK:
            ld = c->ld;
            break;
        case KG__S_DOWN:
            return kg__ldap_down(diag, err);
        default:
            kg_diag_set(diag, "%s", err);
            return KG_ERR_IO;
        }
    } else {
        struct timeval tv;
        tv.tv_sec = l->search_timeout_ms / 1000;
        tv.tv_usec = (l->search_timeout_ms % 1000) * 1000;
        rc = ldap_search_ext_s(ld, base, LDAP_SCOPE_SUBTREE, filter,
                               acct_attr, 0, NULL, NULL, &tv, 2, &res);
        if (rc != LDAP_SUCCESS && rc != LDAP_SIZELIMIT_EXCEEDED) {
            ldap_msgfree(res);
            return kg__ldap_write_error(l, rc, "the directory", base, diag);
        }
    }
    for (e = ldap_first_entry(ld, res); e != NULL && f->n < 2; e = ldap_next_entry(ld, e)) {
        char *dn = ldap_get_dn(ld, e);
        f->a[f->n] = entry_account(ld, e);
        f->dn[f->n] = dn ? strdup(dn) : NULL;
        ldap_memfree(dn);
        if (f->a[f->n] == NULL || f->dn[f->n] == NULL) {
            kg_diag_set(diag, "account entry under '%s' cannot be read (no "
                        "apiAccountId or apiKeyPlan?)", base);
            ret = KG_ERR_IO;
            f->n++;
            break;
        }
        f->n++;
    }
    ldap_msgfree(res);
    if (c != NULL)
        kg__ldap_release(l, c, 1);
    if (ret != KG_OK)
        found_free(f);
    return ret;
}

/* By id, or else by external id (the id wins when both match). */
static kg_error find_account(kg__ldap *l, LDAP *ld, const char *id,
                             int by_external_too, struct found *f, kg_diag *diag)
{
    char *filter = acct_filter(acct_attr[AA_ID], id, acct_attr[AA_EXT],
                               by_external_too ? id : NULL, NULL, NULL);
    kg_error e;

    memset(f, 0, sizeof(*f));
    if (filter == NULL)
        return KG_ERR_NOMEM;
    e = find(l, ld, l->accounts_dn, filter, f, diag);
    free(filter);
    if (e == KG_OK && f->n == 2 && strcmp(kg_account_id(f->a[1]), id) == 0) {
        /* the id's own entry first */
        kg_account *ta = f->a[0];
        char *td = f->dn[0];
        f->a[0] = f->a[1];
        f->dn[0] = f->dn[1];
        f->a[1] = ta;
        f->dn[1] = td;
    }
    return e;
}

kg__ldap_sres kg__ldap_attach_account(kg__ldap *l, LDAP *ld, const char *base,
                                      kg_record *rec)
{
    struct found f;
    kg_diag d;
    char *filter = acct_filter(acct_attr[AA_ID], kg_record_account_id(rec), NULL,
                               NULL, NULL, NULL);
    kg_error e;

    memset(&f, 0, sizeof(f));
    if (filter == NULL)
        return KG__S_DOWN;  /* out of memory: no answer, not "no account" */
    e = find(l, ld, base, filter, &f, &d);
    free(filter);
    if (e == KG_ERR_UNAVAILABLE)
        return KG__S_DOWN;
    if (e == KG_OK && f.n == 1 && kg_record_set_account(rec, f.a[0]) == KG_OK)
        kg_record_set_plan(rec, kg_account_plan(f.a[0]));
    found_free(&f);
    /* Not found, or two entries with one id: the record keeps the id
     * alone, which a check refuses (401). */
    return KG__S_OK;
}

/* ---- the ops ------------------------------------------------------------ */

kg_error kg__ldap_account_get(void *inst, const char *id, kg_account **a_r,
                              kg_diag *diag)
{
    struct found f;
    kg_error e = find_account(inst, NULL, id, 1, &f, diag);

    if (e != KG_OK)
        return e;
    if (f.n == 0) {
        kg_diag_set(diag, "account: no account with id or external id '%.160s'", id);
        e = KG_ERR_NOT_FOUND;
    } else {
        *a_r = f.a[0];
        f.a[0] = NULL;
    }
    found_free(&f);
    return e;
}

struct acct_listing {
    kg_account_cb cb;
    void *ud;
};

static int list_entry(kg__ldap *l, LDAP *ld, LDAPMessage *e, void *ud)
{
    struct acct_listing *al = ud;
    kg_account *a = entry_account(ld, e);
    int stop;
    (void)l;
    if (a == NULL)
        return 0;  /* not a usable account entry: not listed */
    stop = al->cb(a, al->ud);
    kg_account_unref(a);
    return stop;
}

kg_error kg__ldap_account_list(void *inst, kg_account_cb cb, void *ud,
                               kg_diag *diag)
{
    kg__ldap *l = inst;
    struct acct_listing al = { cb, ud };
    return kg__ldap_page(l, l->accounts_dn, LDAP_SCOPE_SUBTREE,
                         "(objectClass=" ACCT_OC ")", acct_attr, list_entry,
                         &al, diag);
}

struct put_args {
    const kg_account *a;
    int create;
};

static kg_error put_once(kg__ldap *l, kg__ldap_conn *c, void *ud,
                         int *conn_failed_r, kg_diag *diag)
{
    struct put_args *pa = ud;
    const kg_account *a = pa->a;
    const char *id = kg_account_id(a), *x = kg_account_external_id(a);
    struct found self, other;
    LDAPMod **mods = NULL;
    char *filter, *dn = NULL;
    kg_error e;
    int rc;

    *conn_failed_r = 0;
    memset(&other, 0, sizeof(other));
    if ((e = find_account(l, c->ld, id, 0, &self, diag)) != KG_OK)
        goto out;
    if (pa->create && self.n > 0) {
        kg_diag_set(diag, "id: account '%s' exists already", id);
        e = KG_ERR_EXISTS;
        goto out;
    }
    if (!pa->create && self.n == 0) {
        kg_diag_set(diag, "id: no account with id '%s'", id);
        e = KG_ERR_NOT_FOUND;
        goto out;
    }
    /* Another account whose id or external id is this one's id or
     * external id. */
    filter = acct_filter(acct_attr[AA_EXT], id, acct_attr[AA_ID], x,
                         acct_attr[AA_EXT], x);
    if (filter == NULL) {
        e = KG_ERR_NOMEM;
        goto out;
    }
    e = find(l, c->ld, l->accounts_dn, filter, &other, diag);
    free(filter);
    if (e != KG_OK)
        goto out;
    {
        int i;
        for (i = 0; i < other.n; i++) {
            if (strcmp(kg_account_id(other.a[i]), id) == 0)
                continue;
            kg_diag_set(diag, "external_id: '%s' is account %s's already",
                        x != NULL && (strcmp(kg_account_id(other.a[i]), x) == 0 ||
                                      (kg_account_external_id(other.a[i]) &&
                                       strcmp(kg_account_external_id(other.a[i]), x) == 0))
                            ? x : id,
                        kg_account_id(other.a[i]));
            e = KG_ERR_EXISTS;
            goto out;
        }
    }
    if ((mods = account_mods(a, pa->create)) == NULL) {
        e = KG_ERR_NOMEM;
        goto out;
    }
    if (pa->create) {
        if ((dn = kg__ldap_dn_under(acct_attr[AA_ID], id, l->accounts_dn)) == NULL) {
            e = KG_ERR_NOMEM;
            goto out;
        }
        rc = ldap_add_ext_s(c->ld, dn, mods, NULL, NULL);
    } else {
        rc = ldap_modify_ext_s(c->ld, self.dn[0], mods, NULL, NULL);
    }
    *conn_failed_r = kg__ldap_conn_error(rc);
    if (rc == LDAP_ALREADY_EXISTS) {
        kg_diag_set(diag, "id: account '%s' exists already", id);
        e = KG_ERR_EXISTS;
    } else if (rc != LDAP_SUCCESS) {
        e = kg__ldap_write_error(l, rc, l->uris[c->uri], dn ? dn : self.dn[0], diag);
    }
out:
    found_free(&self);
    found_free(&other);
    kg__ldap_mods_free(mods);
    free(dn);
    if (e == KG_ERR_UNAVAILABLE)
        *conn_failed_r = 1;
    return e;
}

kg_error kg__ldap_account_put(void *inst, const kg_account *a, int create,
                              kg_diag *diag)
{
    struct put_args pa = { a, create };
    return kg__ldap_write(inst, put_once, &pa, diag);
}

/* The DNs of the keys of account `id` that are not revoked (no status,
 * or `active`), at most max of them. */
static kg_error live_keys(kg__ldap *l, LDAP *ld, const char *id, char ***dns_r,
                          size_t *n_r, kg_diag *diag)
{
    char *noattrs[] = { LDAP_NO_ATTRS, NULL };
    char *esc = kg__ldap_escape(id), *filter = NULL;
    LDAPMessage *res = NULL, *e;
    struct timeval tv;
    size_t n = 0;
    char **dns = NULL;
    int rc;
    kg_error ret = KG_OK;

    *dns_r = NULL;
    *n_r = 0;
    if (esc != NULL)
        filter = kg_modutil_asprintf("(&(objectClass=%s)(%s=%s)(|(!(%s=*))(%s=active)))",
                                   l->object_class, l->attrs[KG__LA_ACCOUNT], esc,
                                   l->attrs[KG__LA_STATUS] ? l->attrs[KG__LA_STATUS] : "apiKeyStatus",
                                   l->attrs[KG__LA_STATUS] ? l->attrs[KG__LA_STATUS] : "apiKeyStatus");
    free(esc);
    if (filter == NULL)
        return KG_ERR_NOMEM;
    tv.tv_sec = l->search_timeout_ms / 1000;
    tv.tv_usec = (l->search_timeout_ms % 1000) * 1000;
    rc = ldap_search_ext_s(ld, l->base_dn, l->scope, filter, noattrs, 0, NULL,
                           NULL, &tv, 0, &res);
    free(filter);
    if (rc != LDAP_SUCCESS) {
        ldap_msgfree(res);
        return kg__ldap_write_error(l, rc, "the directory", l->base_dn, diag);
    }
    dns = calloc((size_t)ldap_count_entries(ld, res) + 1, sizeof(*dns));
    if (dns == NULL)
        ret = KG_ERR_NOMEM;
    for (e = ldap_first_entry(ld, res); e != NULL && dns != NULL; e = ldap_next_entry(ld, e)) {
        char *dn = ldap_get_dn(ld, e);
        if (dn == NULL || (dns[n] = strdup(dn)) == NULL)
            ret = KG_ERR_NOMEM;
        else
            n++;
        ldap_memfree(dn);
    }
    ldap_msgfree(res);
    *dns_r = dns;
    *n_r = n;
    return ret;
}

struct delete_args {
    const char *id;
    int with_keys;
};

static kg_error delete_once(kg__ldap *l, kg__ldap_conn *c, void *ud,
                            int *conn_failed_r, kg_diag *diag)
{
    struct delete_args *da = ud;
    struct found f;
    char **dns = NULL;
    size_t n = 0, i;
    kg_error e;
    int rc = LDAP_SUCCESS;

    *conn_failed_r = 0;
    if ((e = find_account(l, c->ld, da->id, 1, &f, diag)) != KG_OK)
        goto out;
    if (f.n == 0) {
        kg_diag_set(diag, "account: no account with id or external id '%.160s'", da->id);
        e = KG_ERR_NOT_FOUND;
        goto out;
    }
    if (l->attrs[KG__LA_ACCOUNT] != NULL &&
        (e = live_keys(l, c->ld, kg_account_id(f.a[0]), &dns, &n, diag)) != KG_OK)
        goto out;
    if (n > 0 && !da->with_keys) {
        kg_diag_set(diag, "account %s has %zu key%s that %s not revoked: revoke "
                    "them first, or delete with --with-keys (which revokes them)",
                    kg_account_id(f.a[0]), n, n == 1 ? "" : "s", n == 1 ? "is" : "are");
        e = KG_ERR_EXISTS;
        goto out;
    }
    /* The keys first (their account id kept, docs/plugins.md
     * "Accounts"): stopped half-way, what is left is an account with
     * fewer live keys, never a live key without its account. */
    for (i = 0; i < n && rc == LDAP_SUCCESS; i++) {
        LDAPMod **mods = NULL;
        size_t nm = 0;
        const char *revoked = "revoked";
        if (kg__ldap_mod(&mods, &nm, LDAP_MOD_REPLACE,
                         l->attrs[KG__LA_STATUS] ? l->attrs[KG__LA_STATUS] : "apiKeyStatus",
                         &revoked, 1) != 0) {
            kg__ldap_mods_free(mods);
            e = KG_ERR_NOMEM;
            goto out;
        }
        rc = ldap_modify_ext_s(c->ld, dns[i], mods, NULL, NULL);
        kg__ldap_mods_free(mods);
        if (rc != LDAP_SUCCESS)
            e = kg__ldap_write_error(l, rc, l->uris[c->uri], dns[i], diag);
    }
    if (e == KG_OK) {
        rc = ldap_delete_ext_s(c->ld, f.dn[0], NULL, NULL);
        if (rc != LDAP_SUCCESS)
            e = kg__ldap_write_error(l, rc, l->uris[c->uri], f.dn[0], diag);
    }
    *conn_failed_r = kg__ldap_conn_error(rc);
out:
    for (i = 0; dns != NULL && dns[i] != NULL; i++)
        free(dns[i]);
    free(dns);
    found_free(&f);
    if (e == KG_ERR_UNAVAILABLE)
        *conn_failed_r = 1;
    return e;
}

kg_error kg__ldap_account_delete(void *inst, const char *id, int with_keys,
                                 kg_diag *diag)
{
    struct delete_args da = { id, with_keys };
    return kg__ldap_write(inst, delete_once, &da, diag);
}

kg_error kg__ldap_account_of_its_own(kg__ldap *l, kg__ldap_conn *c,
                                     const kg_record *r, char *id_out,
                                     size_t idlen, int *conn_failed_r,
                                     kg_diag *diag)
{
    kg_account *a = NULL;
    unsigned n = 0;
    kg_error e;

    /* The first free id of "acct_<key>", "acct_<key>.1", ... */
    for (;;) {
        struct found f;
        kg_account_unref(a);
        if ((a = kg_account_for_key(r, n++, (int64_t)time(NULL))) == NULL)
            return KG_ERR_NOMEM;
        if ((e = find_account(l, c->ld, kg_account_id(a), 0, &f, diag)) != KG_OK) {
            kg_account_unref(a);
            *conn_failed_r = e == KG_ERR_UNAVAILABLE;
            return e;
        }
        if (f.n == 0)
            break;
        found_free(&f);
    }
    {
        struct put_args pa = { a, 1 };
        e = put_once(l, c, &pa, conn_failed_r, diag);
    }
    if (e == KG_OK)
        snprintf(id_out, idlen, "%s", kg_account_id(a));
    kg_account_unref(a);
    return e;
}
