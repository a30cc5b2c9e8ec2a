/*
 * ldap - keystore plugin: key records as entries in an LDAP directory
 * (OpenLDAP's libldap).  See docs/ldap.md for the options and
 * conf/ldap/ for the schema.
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

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ldapstore.h"

#define LIST_PAGE 500

static void set_diag(kg_diag *d, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void set_diag(kg_diag *d, const char *fmt, ...)
{
    va_list ap;
    if (d == NULL)
        return;
    d->file[0] = '\0';
    d->line = d->column = 0;
    va_start(ap, fmt);
    vsnprintf(d->message, sizeof(d->message), fmt, ap);
    va_end(ap);
}

/* ---- options ----------------------------------------------------------- */

/* "500ms", "2s", "1m", or a bare number of seconds -> milliseconds. */
static kg_error opt_ms(kg_opts *o, const char *key, int def, int *ms_r)
{
    const char *s;
    char *end;
    long long v;
    kg_error e = kg_opts_get_string(o, key, NULL, &s);

    *ms_r = def;
    if (e != KG_OK || s == NULL)
        return e;
    v = strtoll(s, &end, 10);
    if (end == s || v < 0)
        goto bad;
    if (strcmp(end, "ms") == 0)
        ;
    else if (*end == '\0' || strcmp(end, "s") == 0)
        v *= 1000;
    else if (strcmp(end, "m") == 0)
        v *= 60000;
    else
        goto bad;
    if (v <= 0 || v > 3600000)
        goto bad;
    *ms_r = (int)v;
    return KG_OK;
bad:
    return kg_opts_error(o, key, "'%s' must be a duration from 1ms to 1h, "
                         "such as 500ms or 2s", key);
}

/* A string option copied, NULL if absent. */
static kg_error opt_str(kg_opts *o, const char *key, const char *def, char **out)
{
    const char *s;
    kg_error e = kg_opts_get_string(o, key, def, &s);
    *out = NULL;
    if (e != KG_OK)
        return e;
    if (s != NULL && (*out = strdup(s)) == NULL)
        return KG_ERR_NOMEM;
    return KG_OK;
}

static kg_error opt_path(kg_opts *o, const char *key, char **out)
{
    const char *s;
    kg_error e = kg_opts_get_path(o, key, NULL, &s);
    *out = NULL;
    if (e != KG_OK)
        return e;
    if (s != NULL && (*out = strdup(s)) == NULL)
        return KG_ERR_NOMEM;
    return KG_OK;
}

/* The password file's first line; the buffer it was read into is wiped. */
static kg_error read_password(kg_opts *o, const char *path, char **out)
{
    FILE *f = fopen(path, "re");
    char buf[1024];
    size_t n;

    if (f == NULL)
        return kg_opts_error(o, "bind_password_file", "%s: cannot read the "
                             "bind password: %s", path, strerror(errno));
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    buf[strcspn(buf, "\r\n")] = '\0';
    *out = strdup(buf);
    kg_wipe(buf, sizeof(buf));
    return *out ? KG_OK : KG_ERR_NOMEM;
}

static kg_error parse_attrs(kg__ldap *l, kg_opts *o)
{
    kg_opts *m = kg_opts_child(o, "attributes");
    kg_error e;
    size_t i, k;

    for (i = 0; i < KG__LA_COUNT; i++) {
        const char *s = kg__ldap_attr_default[i];
        if (m != NULL && (e = kg_opts_get_string(m, kg__ldap_attr_option[i],
                                                 s, &s)) != KG_OK)
            return e;
        if (s != NULL && *s != '\0') {
            if ((l->attr_store[i] = strdup(s)) == NULL)
                return KG_ERR_NOMEM;
            l->attrs[i] = l->attr_store[i];
        }
    }
    if (l->attrs[KG__LA_HASH] == NULL || l->attrs[KG__LA_PLAN] == NULL)
        return kg_opts_error(m ? m : o, NULL, "attributes: hash and plan "
                             "must name an attribute");
    l->want = calloc(KG__LA_COUNT + 1, sizeof(*l->want));
    if (l->want == NULL)
        return KG_ERR_NOMEM;
    for (i = 0, k = 0; i < KG__LA_COUNT; i++)
        if (l->attrs[i] != NULL)
            l->want[k++] = (char *)l->attrs[i];
    return KG_OK;
}

static void ld_destroy(void *inst)
{
    kg__ldap *l = inst;
    size_t i;

    if (l == NULL)
        return;
    if (l->down_until_us != NULL)  /* the pool exists once this is set */
        kg__ldap_pool_free(l);
    for (i = 0; i < l->nuris; i++)
        free(l->uris[i]);
    free(l->uris);
    free((void *)l->down_until_us);
    free(l->bind_dn);
    if (l->bind_password != NULL) {
        kg_wipe(l->bind_password, strlen(l->bind_password));
        free(l->bind_password);
    }
    free(l->ca_file);
    free(l->cert_file);
    free(l->key_file);
    free(l->base_dn);
    free(l->filter);
    free(l->list_filter);
    free(l->id_filter);
    for (i = 0; i < KG__LA_COUNT; i++)
        free(l->attr_store[i]);
    free(l->object_class);
    free(l->want);
    free(l);
}

static kg_error ld_create(kg_opts *o, void **inst_r)
{
    kg__ldap *l = calloc(1, sizeof(*l));
    const char *s, *scope, *tls, *sasl, *pwfile;
    char *pw = NULL, err[512];
    int64_t pool, retry;
    size_t i;
    kg_error e;

    if (l == NULL)
        return KG_ERR_NOMEM;
    l->ctx = kg_opts_context(o);

    /* servers */
    l->nuris = kg_opts_list_size(o, "uris");
    if (l->nuris == 0) {
        e = kg_opts_error(o, NULL, "option 'uris' is required: the directory "
                          "servers in order, e.g. [ldap://ldap1.example.com/, "
                          "ldaps://ldap2.example.com/]");
        goto fail;
    }
    l->uris = calloc(l->nuris, sizeof(*l->uris));
    if (l->uris == NULL) {
        e = KG_ERR_NOMEM;
        goto fail;
    }
    for (i = 0; i < l->nuris; i++) {
        LDAPURLDesc *lud = NULL;
        s = kg_opts_list_item(o, "uris", i);
        if (s == NULL || ldap_url_parse(s, &lud) != LDAP_URL_SUCCESS) {
            e = kg_opts_error(o, "uris", "'%s' is not an LDAP URI (ldap://host:port/, "
                              "ldaps://host/ or ldapi://%%2Fpath%%2Fsocket)",
                              s ? s : "");
            goto fail;
        }
        ldap_free_urldesc(lud);
        if ((l->uris[i] = strdup(s)) == NULL) {
            e = KG_ERR_NOMEM;
            goto fail;
        }
    }

    /* binding: a DN and password, SASL EXTERNAL, or anonymous */
    if ((e = opt_str(o, "bind_dn", NULL, &l->bind_dn)) != KG_OK ||
        (e = kg_opts_get_string(o, "bind_password", NULL, &s)) != KG_OK ||
        (e = kg_opts_get_path(o, "bind_password_file", NULL, &pwfile)) != KG_OK ||
        (e = kg_opts_get_string(o, "sasl", NULL, &sasl)) != KG_OK)
        goto fail;
    if (s != NULL && pwfile != NULL) {
        e = kg_opts_error(o, "bind_password_file", "give bind_password or "
                          "bind_password_file, not both");
        goto fail;
    }
    if (s != NULL && (pw = strdup(s)) == NULL) {
        e = KG_ERR_NOMEM;
        goto fail;
    }
    if (pwfile != NULL && (e = read_password(o, pwfile, &pw)) != KG_OK)
        goto fail;
    l->bind_password = pw;
    if (sasl != NULL) {
        if (strcasecmp(sasl, "EXTERNAL") != 0) {
            e = kg_opts_error(o, "sasl", "only the SASL EXTERNAL mechanism is "
                              "supported (a TLS client certificate or ldapi://), "
                              "not '%s'", sasl);
            goto fail;
        }
        if (l->bind_dn != NULL || pw != NULL) {
            e = kg_opts_error(o, "sasl", "sasl: EXTERNAL takes the identity from "
                              "the connection: drop bind_dn and the password");
            goto fail;
        }
        l->sasl_external = 1;
    } else if (pw != NULL && l->bind_dn == NULL) {
        e = kg_opts_error(o, NULL, "a bind password needs bind_dn");
        goto fail;
    }

    /* TLS */
    if ((e = kg_opts_get_string(o, "tls", "none", &tls)) != KG_OK ||
        (e = opt_path(o, "ca_file", &l->ca_file)) != KG_OK ||
        (e = opt_path(o, "cert_file", &l->cert_file)) != KG_OK ||
        (e = opt_path(o, "key_file", &l->key_file)) != KG_OK ||
        (e = kg_opts_get_bool(o, "tls_verify", 1, &l->tls_verify)) != KG_OK)
        goto fail;
    if (strcmp(tls, "starttls") == 0) {
        l->tls = KG__TLS_STARTTLS;
    } else if (strcmp(tls, "ldaps") == 0 || strcmp(tls, "none") == 0) {
        l->tls = KG__TLS_NONE;
        for (i = 0; tls[0] == 'l' && i < l->nuris; i++) {
            if (strncasecmp(l->uris[i], "ldaps://", 8) != 0) {
                e = kg_opts_error(o, "tls", "tls: ldaps wants every URI to be "
                                  "ldaps://, and '%s' is not", l->uris[i]);
                goto fail;
            }
        }
    } else {
        e = kg_opts_error(o, "tls", "tls must be none, starttls or ldaps, not '%s'", tls);
        goto fail;
    }
    if ((l->cert_file == NULL) != (l->key_file == NULL)) {
        e = kg_opts_error(o, l->cert_file ? "cert_file" : "key_file",
                          "a client certificate needs both cert_file and key_file");
        goto fail;
    }

    /* searching */
    if ((e = opt_str(o, "base_dn", NULL, &l->base_dn)) != KG_OK ||
        (e = kg_opts_get_string(o, "scope", "sub", &scope)) != KG_OK ||
        (e = opt_str(o, "object_class", "apiKey", &l->object_class)) != KG_OK ||
        (e = opt_ms(o, "network_timeout", 2000, &l->network_timeout_ms)) != KG_OK ||
        (e = opt_ms(o, "search_timeout", 2000, &l->search_timeout_ms)) != KG_OK ||
        (e = kg_opts_get_int(o, "pool", 4, &pool)) != KG_OK ||
        (e = kg_opts_get_duration(o, "retry", 30, &retry)) != KG_OK ||
        (e = kg_opts_get_bool(o, "referrals", 0, &l->referrals)) != KG_OK ||
        (e = kg_opts_get_bool(o, "writable", 0, &l->writable)) != KG_OK ||
        (e = parse_attrs(l, o)) != KG_OK)
        goto fail;
    if (l->base_dn == NULL) {
        e = kg_opts_error(o, NULL, "option 'base_dn' is required: where the "
                          "key entries are, e.g. ou=apikeys,dc=example,dc=com");
        goto fail;
    }
    if (strcmp(scope, "sub") == 0) l->scope = LDAP_SCOPE_SUBTREE;
    else if (strcmp(scope, "one") == 0) l->scope = LDAP_SCOPE_ONELEVEL;
    else if (strcmp(scope, "base") == 0) l->scope = LDAP_SCOPE_BASE;
    else {
        e = kg_opts_error(o, "scope", "scope must be sub, one or base, not '%s'", scope);
        goto fail;
    }
    if (pool < 0 || pool > 1024) {
        e = kg_opts_error(o, "pool", "pool must be from 0 (a connection per "
                          "lookup) to 1024");
        goto fail;
    }
    l->pool_size = (size_t)pool;
    l->retry_us = retry * 1000000LL;
    l->list_filter = kg__ldap_asprintf("(objectClass=%s)", l->object_class);
    l->id_filter = l->attrs[KG__LA_ID] == NULL ? strdup("") :
        kg__ldap_asprintf("(&(objectClass=%s)(%s={hash}))", l->object_class,
                          l->attrs[KG__LA_ID]);
    if ((e = opt_str(o, "filter", NULL, &l->filter)) != KG_OK)
        goto fail;
    if (l->filter == NULL)
        l->filter = kg__ldap_asprintf("(&(objectClass=%s)(%s={hash}))",
                                      l->object_class, l->attrs[KG__LA_HASH]);
    if (l->list_filter == NULL || l->id_filter == NULL || l->filter == NULL) {
        e = KG_ERR_NOMEM;
        goto fail;
    }
    if (kg__ldap_filter_check(l->filter, err, sizeof(err)) != 0) {
        e = kg_opts_error(o, "filter", "%s", err);
        goto fail;
    }
    l->rdn_attr = (char *)l->attrs[KG__LA_ID];

    l->down_until_us = calloc(l->nuris, sizeof(*l->down_until_us));
    if (l->down_until_us == NULL) {
        e = KG_ERR_NOMEM;
        goto fail;
    }
    if (kg__ldap_pool_init(l) != 0) {
        e = KG_ERR_NOMEM;
        goto fail;
    }
    for (i = 0; i < l->nuris; i++)
        if (strncasecmp(l->uris[i], "ldaps://", 8) == 0)
            break;
    if ((l->tls == KG__TLS_STARTTLS || i < l->nuris) &&
        kg__ldap_tls_check(l, err, sizeof(err)) != 0) {
        e = kg_opts_error(o, l->ca_file ? "ca_file" : "tls", "%s", err);
        goto fail;
    }
    /* No connection now: a directory that is down at start-up is
     * `unavailable` at the first lookup, like one that goes down later. */
    *inst_r = l;
    return KG_OK;
fail:
    ld_destroy(l);
    return e;
}

/* ---- searching ---------------------------------------------------------- */

typedef enum { S_OK, S_DOWN, S_ERROR } sres;

/*
 * One search, retried once on a new connection when a pooled one turned
 * out to be dead (the server restarted, an idle timeout closed it).
 * On S_OK *res_r holds the result and *c_r the connection it came on
 * (entries are read through it): the caller frees the one and releases
 * the other.
 */
static sres search(kg__ldap *l, const char *base, int scope,
                   const char *filter, LDAPControl **ctrls, int sizelimit,
                   kg__ldap_conn **c_r, LDAPMessage **res_r, int *rc_r,
                   char *err, size_t errlen)
{
    int attempt;

    *res_r = NULL;
    *c_r = NULL;
    for (attempt = 0; attempt < 2; attempt++) {
        struct timeval tv;
        kg__ldap_conn *c = kg__ldap_acquire(l, err, errlen);
        int rc, fresh;

        if (c == NULL)
            return S_DOWN;
        fresh = c->fresh;
        tv.tv_sec = l->search_timeout_ms / 1000;
        tv.tv_usec = (l->search_timeout_ms % 1000) * 1000;
        rc = ldap_search_ext_s(c->ld, base, scope, filter, l->want, 0, ctrls,
                               NULL, &tv, sizelimit, res_r);
        if (kg__ldap_conn_error(rc)) {
            char *diag = NULL;
            ldap_get_option(c->ld, LDAP_OPT_DIAGNOSTIC_MESSAGE, &diag);
            snprintf(err, errlen, "%s: search failed: %s%s%s", l->uris[c->uri],
                     ldap_err2string(rc), diag && *diag ? ": " : "",
                     diag ? diag : "");
            ldap_memfree(diag);
            ldap_msgfree(*res_r);
            *res_r = NULL;
            kg__ldap_release(l, c, 0);
            if (fresh)
                return S_DOWN;
            continue;
        }
        *rc_r = rc;
        if (rc != LDAP_SUCCESS && rc != LDAP_SIZELIMIT_EXCEEDED) {
            snprintf(err, errlen, "%s: search under '%s' refused: %s",
                     l->uris[c->uri], base, ldap_err2string(rc));
            kg__ldap_release(l, c, 1);
            ldap_msgfree(*res_r);
            *res_r = NULL;
            return S_ERROR;
        }
        *c_r = c;
        return S_OK;
    }
    return S_DOWN;
}

static kg_result ld_lookup(void *inst, kg_call *call,
                           const unsigned char hash[KG_HASH_LEN],
                           kg_record **rec_r)
{
    kg__ldap *l = inst;
    char hex[2 * KG_HASH_LEN + 1], err[1024];
    char *filter;
    kg__ldap_conn *c = NULL;
    LDAPMessage *res = NULL;
    kg_result r = KG_RESULT_UNAVAILABLE;
    int rc = 0;
    (void)call;

    kg_hash_to_hex(hash, hex);
    filter = kg__ldap_filter(l->filter, hex, strlen(hex));
    kg_wipe(hex, sizeof(hex));
    if (filter == NULL)
        return KG_RESULT_UNAVAILABLE;
    if (search(l, l->base_dn, l->scope, filter, NULL, 2, &c, &res, &rc, err,
               sizeof(err)) != S_OK)
        goto out;
    /* Two entries with one hash is a copy-and-paste in the directory:
     * refuse the key rather than guess which one rules. */
    if (rc == LDAP_SIZELIMIT_EXCEEDED || ldap_count_entries(c->ld, res) != 1) {
        r = KG_RESULT_FAIL;
        goto out;
    }
    *rec_r = kg__ldap_entry_record(l, c->ld, ldap_first_entry(c->ld, res),
                                   err, sizeof(err));
    r = *rec_r != NULL ? KG_RESULT_OK : KG_RESULT_FAIL;
out:
    ldap_msgfree(res);
    kg__ldap_release(l, c, 1);
    kg_wipe(filter, strlen(filter));
    free(filter);
    return r;
}

/* ---- management --------------------------------------------------------- */

static kg_error down(kg_diag *diag, const char *err)
{
    set_diag(diag, "the LDAP directory did not answer: %s", err);
    return KG_ERR_UNAVAILABLE;
}

static kg_error ld_get(void *inst, const char *id, kg_record **rec_r,
                       kg_diag *diag)
{
    kg__ldap *l = inst;
    char err[1024], *filter;
    kg__ldap_conn *c = NULL;
    LDAPMessage *res = NULL;
    int rc;
    kg_error ret;

    if (l->attrs[KG__LA_ID] == NULL) {
        set_diag(diag, "attributes: id is not mapped, so keys cannot be found by id");
        return KG_ERR_UNSUPPORTED;
    }
    filter = kg__ldap_filter(l->id_filter, id, strlen(id));
    if (filter == NULL)
        return KG_ERR_NOMEM;
    switch (search(l, l->base_dn, l->scope, filter, NULL, 2, &c, &res, &rc,
                   err, sizeof(err))) {
    case S_OK:
        break;
    case S_DOWN:
        ret = down(diag, err);
        goto out;
    default:
        set_diag(diag, "%s", err);
        ret = KG_ERR_IO;
        goto out;
    }
    if (ldap_count_entries(c->ld, res) == 0) {
        ret = KG_ERR_NOT_FOUND;
        goto out;
    }
    if (ldap_count_entries(c->ld, res) > 1) {
        set_diag(diag, "several entries under '%s' have %s=%s: make ids unique",
                 l->base_dn, l->attrs[KG__LA_ID], id);
        ret = KG_ERR_INVALID;
        goto out;
    }
    *rec_r = kg__ldap_entry_record(l, c->ld, ldap_first_entry(c->ld, res), err,
                                   sizeof(err));
    if (*rec_r == NULL) {
        set_diag(diag, "%s", err);
        ret = KG_ERR_INVALID;
        goto out;
    }
    ret = KG_OK;
out:
    ldap_msgfree(res);
    kg__ldap_release(l, c, 1);
    free(filter);
    return ret;
}

/* Every key entry, a page at a time (RFC 2696) so that a directory's
 * size limit does not cut the list short. */
static kg_error ld_list(void *inst, kg_record_cb cb, void *ud, kg_diag *diag)
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
            sres s;
            if (ldap_initialize(&tmp, NULL) != LDAP_SUCCESS ||
                ldap_create_page_control(tmp, LIST_PAGE, NULL, 1, &page) != LDAP_SUCCESS) {
                if (tmp)
                    ldap_unbind_ext_s(tmp, NULL, NULL);
                ret = KG_ERR_NOMEM;
                break;
            }
            ldap_unbind_ext_s(tmp, NULL, NULL);
            ctrls[0] = page;
            s = search(l, l->base_dn, l->scope, l->list_filter, ctrls, 0, &c,
                       &res, &rc, err, sizeof(err));
            ldap_control_free(page);
            if (s != S_OK) {
                if (s == S_DOWN) {
                    ret = down(diag, err);
                } else {
                    set_diag(diag, "%s", err);
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
                    set_diag(diag, "%s", err);
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
        set_diag(diag, "%s refused to write '%s' (%s): the bind %s%s%s has no "
                 "write access under %s, so this key store is read-only",
                 uri, dn, ldap_err2string(rc), l->bind_dn ? "as '" : "",
                 l->bind_dn ? l->bind_dn : "(anonymous)", l->bind_dn ? "'" : "",
                 l->base_dn);
        return KG_ERR_READONLY;
    case LDAP_NO_SUCH_OBJECT:
        set_diag(diag, "%s: cannot write '%s': base_dn '%s' does not exist",
                 uri, dn, l->base_dn);
        return KG_ERR_IO;
    case LDAP_OBJECT_CLASS_VIOLATION:
    case LDAP_UNDEFINED_TYPE:
        set_diag(diag, "%s: cannot write '%s' (%s): is the keygate schema "
                 "(conf/ldap/keygate.ldif) loaded, and do the attributes: "
                 "names match it?", uri, dn, ldap_err2string(rc));
        return KG_ERR_IO;
    default:
        set_diag(diag, "%s: cannot write '%s': %s", uri, dn, ldap_err2string(rc));
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
        set_diag(diag, ldap_count_entries(ld, res) == 0 ? "no key with id '%s'"
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
            set_diag(diag, "key id '%s' already exists (%s)", kg_record_id(r), dn);
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

static kg_error ld_put(void *inst, const kg_record *r, int create, kg_diag *diag)
{
    kg__ldap *l = inst;
    LDAPMod **mods;
    char err[1024];
    kg_error ret = KG_ERR_UNAVAILABLE;
    int attempt;

    if (!l->writable) {
        set_diag(diag, "the ldap key store is read-only: manage keys in the "
                 "directory, or set writable: true on the policy line with a "
                 "bind_dn that may write under %s", l->base_dn);
        return KG_ERR_READONLY;
    }
    if (l->attrs[KG__LA_ID] == NULL) {
        set_diag(diag, "attributes: id is not mapped, so new entries cannot be named");
        return KG_ERR_UNSUPPORTED;
    }
    mods = kg__ldap_record_mods(l, r, create);
    if (mods == NULL)
        return KG_ERR_NOMEM;
    /* Like a search: a pooled connection the server dropped gets one
     * retry on a new one. */
    for (attempt = 0; attempt < 2; attempt++) {
        kg__ldap_conn *c = kg__ldap_acquire(l, err, sizeof(err));
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
    }
    kg__ldap_mods_free(mods);
    return ret;
}

static kg_error ld_reload(void *inst, kg_diag *diag)
{
    (void)diag;
    /* New connections pick up a renewed CA or certificate. */
    kg__ldap_pool_flush(inst);
    return KG_OK;
}

static const struct kg_keystore_ops ld_ops = {
    .lookup = ld_lookup,
    .get = ld_get,
    .list = ld_list,
    .put = ld_put,
    .reload = ld_reload,
    .touch = NULL,  /* see the comment at the top */
};

KG_PLUGIN_DEFINE(ldap) = {
    KG_PLUGIN_HEADER,
    .kind = KG_PLUGIN_KEYSTORE,
    .name = "ldap",
    .description = "key records (hashes only) in an LDAP directory: "
                   "failover, TLS, pooled connections",
    .create = ld_create,
    .destroy = ld_destroy,
    .keystore = &ld_ops,
};
