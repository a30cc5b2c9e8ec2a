/*
 * options.c - the ldap store's policy options, read into a kg__ldap
 * instance (see docs/ldap.md for what each means), and its destruction.
 * Nothing connects here: a directory that is down when the policy loads
 * is `unavailable` at the first lookup, like one that goes down later.
 * Only the TLS settings are tried (a CA file that cannot be read fails
 * the policy load, where the mistake is).
 */
#define _GNU_SOURCE
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ldapstore.h"

/* "500ms", "2s", "1m", or a bare number of seconds -> milliseconds
 * (kg_modutil_duration_ms: a bare number is seconds here, as it always
 * was for these timeouts), from 1ms to 1h. */
static kg_error opt_ms(kg_opts *o, const char *key, int def, int *ms_r)
{
    const char *s;
    int64_t v;
    kg_error e = kg_opts_get_string(o, key, NULL, &s);

    *ms_r = def;
    if (e != KG_OK || s == NULL)
        return e;
    if (kg_modutil_duration_ms(s, 1000, &v) != KG_OK || v <= 0 || v > 3600000)
        return kg_opts_error(o, key, "'%s' must be a duration from 1ms to 1h, "
                             "such as 500ms or 2s", key);
    *ms_r = (int)v;
    return KG_OK;
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

void kg__ldap_destroy(void *inst)
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
    kg_modutil_wipe_free(l->bind_password);
    free(l->ca_file);
    free(l->cert_file);
    free(l->key_file);
    free(l->base_dn);
    free(l->accounts_dn);
    free(l->filter);
    free(l->list_filter);
    free(l->id_filter);
    for (i = 0; i < KG__LA_COUNT; i++)
        free(l->attr_store[i]);
    free(l->object_class);
    free(l->want);
    free(l->audit_file);
    free(l);
}

kg_error kg__ldap_create(kg_opts *o, void **inst_r)
{
    kg__ldap *l = calloc(1, sizeof(*l));
    const char *s, *scope, *tls, *sasl;
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
    if (l->nuris > KG__LDAP_MAX_URIS) {
        e = kg_opts_error(o, "uris", "%zu URIs: at most %d (a lookup tries "
                          "each once)", l->nuris, KG__LDAP_MAX_URIS);
        l->nuris = 0;
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
        (e = kg_opts_get_string(o, "sasl", NULL, &sasl)) != KG_OK)
        goto fail;
    if (s != NULL && kg_opts_has(o, "bind_password_file")) {
        e = kg_opts_error(o, "bind_password_file", "give bind_password or "
                          "bind_password_file, not both");
        goto fail;
    }
    if (s != NULL && (pw = strdup(s)) == NULL) {
        e = KG_ERR_NOMEM;
        goto fail;
    }
    if (s == NULL &&
        (e = kg_opts_get_secret_file(o, "bind_password_file", &pw)) != KG_OK)
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
        (e = opt_path(o, "audit_file", &l->audit_file)) != KG_OK ||
        (e = parse_attrs(l, o)) != KG_OK)
        goto fail;
    if (l->base_dn == NULL) {
        e = kg_opts_error(o, NULL, "option 'base_dn' is required: where the "
                          "key entries are, e.g. ou=apikeys,dc=example,dc=com");
        goto fail;
    }
    if ((e = opt_str(o, "accounts_dn", l->base_dn, &l->accounts_dn)) != KG_OK)
        goto fail;
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
    l->list_filter = kg_modutil_asprintf("(objectClass=%s)", l->object_class);
    l->id_filter = l->attrs[KG__LA_ID] == NULL ? strdup("") :
        kg_modutil_asprintf("(&(objectClass=%s)(%s={hash}))", l->object_class,
                          l->attrs[KG__LA_ID]);
    if ((e = opt_str(o, "filter", NULL, &l->filter)) != KG_OK)
        goto fail;
    if (l->filter == NULL)
        l->filter = kg_modutil_asprintf("(&(objectClass=%s)(%s={hash}))",
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
     * `unavailable` at the first lookup, like one that goes down later.
     * A lookup waits on the directory (kg_call_would_block first). */
    kg_opts_may_wait(o, 0);
    *inst_r = l;
    return KG_OK;
fail:
    kg__ldap_destroy(l);
    return e;
}

