/*
 * chase.c - referrals.  A directory may answer a search with a referral
 * (the base DN is at or under a referral object: result 10) or with
 * search continuation references beside its entries (a referral object
 * is inside the scope).  Either way it has not answered for that part
 * of the tree.
 *
 * libldap's own chasing (LDAP_OPT_REFERRALS) is not used: for a
 * synchronous search it hands every continuation reference to the
 * caller, followed or not, and one whose server is down leaves the
 * result "success, no entries", which would turn an outage into an
 * invalid key.  So references are followed here, where a failure is
 * known: with `referrals: true` each is searched on a new anonymous
 * connection; with `referrals: false`, or when no URL of a reference
 * answers, the answer is incomplete.  The caller decides: an entry
 * found is still found; none found in an incomplete answer is
 * `unavailable`, never "no such key".
 */
#define _GNU_SOURCE
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "ldapstore.h"

/* libldap's default referral hop limit (LDAP_OPT_REFHOPLIMIT). */
#define HOPS 5

static void take(kg__ldap *l, LDAP *ld, LDAPMessage *res, int rc,
                 const char *base, int scope, const char *filter, int hops,
                 kg__ldap_found *f);

static void incomplete(kg__ldap_found *f, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The first reason is kept: it names the referral nearest base_dn. */
static void incomplete(kg__ldap_found *f, const char *fmt, ...)
{
    va_list ap;
    if (!f->incomplete) {
        va_start(ap, fmt);
        vsnprintf(f->why, sizeof(f->why), fmt, ap);
        va_end(ap);
    }
    f->incomplete = 1;
}

/*
 * Search what url names.  0 if its server answered (what it found, and
 * what it refers to in turn, is in f); -1 with why.
 */
static int follow_url(kg__ldap *l, const char *url, int continuation,
                      const char *base, int scope, const char *filter,
                      int hops, kg__ldap_found *f, char *why, size_t whylen)
{
    LDAPURLDesc *lud = NULL;
    LDAPMessage *res = NULL;
    LDAP *ld = NULL;
    char server[300];
    struct timeval tv;
    int rc, ret = -1;

    if (ldap_url_parse(url, &lud) != LDAP_URL_SUCCESS) {
        snprintf(why, whylen, "'%s' is not an LDAP URL", url);
        return -1;
    }
    /* The URL's DN is where the rest of the tree is (RFC 4511 4.1.10).
     * A continuation reference carries the scope to use (4.5.3); a
     * referral result keeps ours.  Its filter, if any, is ignored: the
     * key's filter is never replaced by what a server sends. */
    if (lud->lud_dn != NULL && lud->lud_dn[0] != '\0')
        base = lud->lud_dn;
    if (continuation) {
        if (lud->lud_scope != LDAP_SCOPE_DEFAULT)
            scope = lud->lud_scope;
        else if (scope == LDAP_SCOPE_ONELEVEL)
            scope = LDAP_SCOPE_BASE;
    }
    /* libldap opens a server URI only: scheme, host and port. */
    if (lud->lud_host == NULL || lud->lud_host[0] == '\0' ||
        lud->lud_scheme == NULL) {
        snprintf(why, whylen, "referral %s names no server", url);
        goto out;
    }
    snprintf(server, sizeof(server), "%s://%s%s%s:%d/", lud->lud_scheme,
             strchr(lud->lud_host, ':') ? "[" : "", lud->lud_host,
             strchr(lud->lud_host, ':') ? "]" : "", lud->lud_port);
    ld = kg__ldap_open_referral(l, server, why, whylen);
    if (ld == NULL)
        goto out;
    tv.tv_sec = l->search_timeout_ms / 1000;
    tv.tv_usec = (l->search_timeout_ms % 1000) * 1000;
    rc = ldap_search_ext_s(ld, base, scope, filter, l->want, 0, NULL, NULL,
                           &tv, 2, &res);
    if (rc == LDAP_SUCCESS || rc == LDAP_SIZELIMIT_EXCEEDED || rc == LDAP_REFERRAL) {
        take(l, ld, res, rc, base, scope, filter, hops + 1, f);
        ret = 0;
    } else {
        snprintf(why, whylen, "referral %s: search under '%s' refused: %s",
                 url, base, ldap_err2string(rc));
        kg__ldap_say(l, server, why);
    }
out:
    ldap_msgfree(res);
    if (ld != NULL)
        ldap_unbind_ext_s(ld, NULL, NULL);
    ldap_free_urldesc(lud);
    return ret;
}

/* A referral or a continuation reference: its URLs are alternatives,
 * the first that answers is enough. */
static void follow(kg__ldap *l, char **refs, int continuation,
                   const char *base, int scope, const char *filter, int hops,
                   kg__ldap_found *f)
{
    char why[512] = "";
    size_t i;

    if (refs == NULL || refs[0] == NULL) {
        incomplete(f, "a referral under '%s' without a URL", base);
        return;
    }
    if (!l->referrals) {
        incomplete(f, "referral to %s not followed (referrals: false)", refs[0]);
        return;
    }
    if (hops >= HOPS) {
        incomplete(f, "referral to %s not followed: more than %d hops (a loop?)",
                   refs[0], HOPS);
        return;
    }
    if (f->n >= 2)
        return;  /* a copy already: the answer will not change */
    for (i = 0; refs[i] != NULL; i++)
        if (follow_url(l, refs[i], continuation, base, scope, filter, hops, f,
                       why, sizeof(why)) == 0)
            return;
    incomplete(f, "%s", why);
}

static void take(kg__ldap *l, LDAP *ld, LDAPMessage *res, int rc,
                 const char *base, int scope, const char *filter, int hops,
                 kg__ldap_found *f)
{
    LDAPMessage *m;

    if (rc == LDAP_SIZELIMIT_EXCEEDED)
        f->n = 2;
    for (m = ldap_first_message(ld, res); m != NULL; m = ldap_next_message(ld, m)) {
        char **refs = NULL;
        int err = 0;

        switch (ldap_msgtype(m)) {
        case LDAP_RES_SEARCH_ENTRY:
            if (f->n == 0) {
                f->rec = kg__ldap_entry_record(l, ld, m, f->why, sizeof(f->why));
                /* Its account, from the server that holds the key: beside
                 * it (under the same base) unless accounts_dn says where. */
                if (f->rec != NULL && kg_record_account_id(f->rec) != NULL &&
                    kg__ldap_attach_account(l, ld, strcmp(l->accounts_dn, l->base_dn)
                                                ? l->accounts_dn : base,
                                            f->rec) == KG__S_DOWN)
                    f->account_down = 1;
            }
            if (f->n < 2)
                f->n++;
            break;
        case LDAP_RES_SEARCH_REFERENCE:
            if (ldap_parse_reference(ld, m, &refs, NULL, 0) == LDAP_SUCCESS)
                follow(l, refs, 1, base, scope, filter, hops, f);
            else
                incomplete(f, "an unreadable continuation reference under '%s'", base);
            break;
        case LDAP_RES_SEARCH_RESULT:
            if (rc != LDAP_REFERRAL)
                break;
            if (ldap_parse_result(ld, m, &err, NULL, NULL, &refs, NULL, 0) == LDAP_SUCCESS)
                follow(l, refs, 0, base, scope, filter, hops, f);
            else
                incomplete(f, "an unreadable referral for '%s'", base);
            break;
        default:
            break;
        }
        ldap_memvfree((void **)refs);
    }
}

kg__ldap_sres kg__ldap_find(kg__ldap *l, const char *filter,
                            kg__ldap_found *f, char *err, size_t errlen)
{
    kg__ldap_conn *c = NULL;
    LDAPMessage *res = NULL;
    kg__ldap_sres s;
    int rc = 0;

    memset(f, 0, sizeof(*f));
    s = kg__ldap_search(l, l->base_dn, l->scope, filter, NULL, 2, &c, &res,
                        &rc, err, errlen);
    if (s != KG__S_OK)
        return s;
    take(l, c->ld, res, rc, l->base_dn, l->scope, filter, 0, f);
    ldap_msgfree(res);
    kg__ldap_release(l, c, 1);
    return KG__S_OK;
}
