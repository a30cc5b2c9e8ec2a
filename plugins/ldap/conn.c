/*
 * conn.c - connections to the directory: opening one (TLS, bind) on the
 * first URI that answers, and a small pool of bound connections shared
 * by the threads of a process.
 *
 * Failover: the URIs are tried in order.  One that fails to connect or
 * bind is skipped for `retry` (on the policy's clock) so that a dead
 * primary costs one connect attempt per retry interval, not one per
 * request; when every URI is marked down they are all tried anyway, so a
 * lone directory that comes back is used at once.  A connection to a
 * later URI is closed once it is `retry` old, so the first URIs are
 * returned to when they recover.
 *
 * Each LDAP handle is used by one thread at a time (libldap handles are
 * not meant to be shared for synchronous calls); the pool hands out
 * whole connections under a mutex and never holds it across network I/O.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ldapstore.h"

struct kg__ldap_pconn {
    kg__ldap_conn c;
    uint64_t gen;
};

int64_t kg__ldap_now_us(const kg__ldap *l)
{
    return kg_context_now(l->ctx);
}

int kg__ldap_conn_error(int rc)
{
    switch (rc) {
    case LDAP_SERVER_DOWN:
    case LDAP_TIMEOUT:
    case LDAP_CONNECT_ERROR:
    case LDAP_LOCAL_ERROR:
    case LDAP_ENCODING_ERROR:
    case LDAP_DECODING_ERROR:
    case LDAP_UNAVAILABLE:
    case LDAP_BUSY:
    case LDAP_OTHER:
    case LDAP_PROTOCOL_ERROR:
    case LDAP_TIMELIMIT_EXCEEDED:
        return 1;
    default:
        return 0;
    }
}

/* "uri: what (server's diagnostic)" into err. */
static void conn_err(LDAP *ld, const char *uri, const char *what, int rc,
                     char *err, size_t errlen)
{
    char *diag = NULL;
    if (ld != NULL)
        ldap_get_option(ld, LDAP_OPT_DIAGNOSTIC_MESSAGE, &diag);
    snprintf(err, errlen, "%s: %s: %s%s%s%s", uri, what, ldap_err2string(rc),
             diag && *diag ? " (" : "", diag && *diag ? diag : "",
             diag && *diag ? ")" : "");
    ldap_memfree(diag);
}

static void ms_to_tv(int ms, struct timeval *tv)
{
    tv->tv_sec = ms / 1000;
    tv->tv_usec = (ms % 1000) * 1000;
}

void kg__ldap_say(kg__ldap *l, const char *uri, const char *err)
{
    size_t n = strlen(uri);
    /* err names the URI first, as the CLI shows it; the log line names
     * the backend itself. */
    if (strncmp(err, uri, n) == 0 && err[n] == ':' && err[n + 1] == ' ')
        err += n + 2;
    kg_context_log_backend(l->ctx, uri, "%s", err);
}

/* TLS settings go on the handle, then a new TLS context is made from
 * them, so instances with different CAs never share one.  libldap says
 * only "failed" here (LDAP_OPT_ERROR), so the message names the step.
 * verify 0: the certificate is not checked (tlsdiag.c's look only). */
static int set_tls(kg__ldap *l, LDAP *ld, const char *uri, int verify,
                   char *err, size_t errlen)
{
    int req = l->tls_verify && verify ? LDAP_OPT_X_TLS_DEMAND
                                      : LDAP_OPT_X_TLS_NEVER;
    int min = LDAP_OPT_X_TLS_PROTOCOL_TLS1_2, zero = 0;
    const char *what = NULL;

    if (l->ca_file && ldap_set_option(ld, LDAP_OPT_X_TLS_CACERTFILE, l->ca_file) != LDAP_OPT_SUCCESS)
        what = "ca_file";
    else if (l->cert_file && ldap_set_option(ld, LDAP_OPT_X_TLS_CERTFILE, l->cert_file) != LDAP_OPT_SUCCESS)
        what = "cert_file";
    else if (l->key_file && ldap_set_option(ld, LDAP_OPT_X_TLS_KEYFILE, l->key_file) != LDAP_OPT_SUCCESS)
        what = "key_file";
    else if (ldap_set_option(ld, LDAP_OPT_X_TLS_REQUIRE_CERT, &req) != LDAP_OPT_SUCCESS ||
             ldap_set_option(ld, LDAP_OPT_X_TLS_PROTOCOL_MIN, &min) != LDAP_OPT_SUCCESS)
        what = "the TLS options";
    else if (ldap_set_option(ld, LDAP_OPT_X_TLS_NEWCTX, &zero) != LDAP_OPT_SUCCESS)
        what = "the TLS context";
    if (what == NULL)
        return 0;
    snprintf(err, errlen, "%s: cannot set up TLS: %s could not be used "
             "(ca_file%s%s%s%s%s: do they exist, are they readable PEM?)", uri, what,
             l->ca_file ? " " : "", l->ca_file ? l->ca_file : " not set",
             l->cert_file ? ", cert_file " : "", l->cert_file ? l->cert_file : "",
             l->key_file ? " and key_file" : "");
    return -1;
}

int kg__ldap_tls_check(kg__ldap *l, char *err, size_t errlen)
{
    LDAP *ld = NULL;
    int rc;

    /* A handle that never connects: only its TLS context is built, so
     * that a missing or unreadable CA file fails the policy load, and
     * libldap's global TLS set-up happens here, in the loading thread. */
    if (ldap_initialize(&ld, l->uris[0]) != LDAP_SUCCESS) {
        snprintf(err, errlen, "%s: cannot make an LDAP handle", l->uris[0]);
        return -1;
    }
    rc = set_tls(l, ld, l->uris[0], 1, err, errlen);
    ldap_unbind_ext_s(ld, NULL, NULL);
    return rc;
}

/* A handle on uri with the store's timeouts (TLS not set up yet; tls:
 * it will be, by ldaps:// or StartTLS). */
static LDAP *new_handle(kg__ldap *l, const char *uri, int tls, char *err,
                        size_t errlen)
{
    LDAP *ld = NULL;
    int v3 = LDAP_VERSION3, rc;
    struct timeval nt, ot;

    rc = ldap_initialize(&ld, uri);
    if (rc != LDAP_SUCCESS) {
        conn_err(NULL, uri, "bad URI", rc, err, errlen);
        return NULL;
    }
    ms_to_tv(l->network_timeout_ms, &nt);
    ms_to_tv(l->search_timeout_ms, &ot);
    ldap_set_option(ld, LDAP_OPT_PROTOCOL_VERSION, &v3);
    /* Never libldap's chasing: it hands a continuation reference to the
     * caller whether it followed it or not, so a referred server that is
     * down would look like "no such key".  chase.c follows them. */
    ldap_set_option(ld, LDAP_OPT_REFERRALS, LDAP_OPT_OFF);
    ldap_set_option(ld, LDAP_OPT_NETWORK_TIMEOUT, &nt);
    /* Bounds every synchronous call (StartTLS, bind) on this handle. */
    ldap_set_option(ld, LDAP_OPT_TIMEOUT, &ot);
    /* libldap (2.5) bounds a TLS handshake by the network timeout only
     * when it connects asynchronously; otherwise it retries the
     * handshake on its non-blocking socket in a loop, at full CPU, for
     * as long as a server that hangs keeps the connection open
     * (tests/integration/test_ldap_hung.sh).  Asynchronous, it polls
     * with the network timeout between the handshake's steps. */
    if (tls)
        ldap_set_option(ld, LDAP_OPT_CONNECT_ASYNC, LDAP_OPT_ON);
    return ld;
}

/* Milliseconds on the monotonic clock. */
static int64_t mono_ms(void)
{
    return kg_modutil_mono_us() / 1000;
}

/*
 * Did the TLS handshake (not the network) fail?  StartTLS says "Connect
 * error"; on ldaps:// the first operation says "Can't contact LDAP
 * server" with the TLS layer's message as diagnostic, where a refused
 * or unreachable port leaves none.  Only a failure that came at once
 * counts: looking again at a server that is slow to answer would cost
 * another timeout.
 */
static int handshake_failed(kg__ldap *l, LDAP *ld, int starttls_step, int rc,
                            int64_t started_ms)
{
    char *diag = NULL;
    int yes;

    if (!l->tls_verify || mono_ms() - started_ms > l->network_timeout_ms / 2)
        return 0;
    if (starttls_step)
        return rc == LDAP_CONNECT_ERROR;
    if (rc != LDAP_SERVER_DOWN && rc != LDAP_CONNECT_ERROR)
        return 0;
    ldap_get_option(ld, LDAP_OPT_DIAGNOSTIC_MESSAGE, &diag);
    yes = diag != NULL && *diag != '\0';
    ldap_memfree(diag);
    return yes;
}

/*
 * After a handshake that failed: connect again without verifying, take
 * the certificate the server presents, close (nothing was sent on that
 * connection), and say what is wrong with it (tlsdiag.c) in err, after
 * "uri: TLS: ".  err is left alone if that cannot be found out.
 */
static void diagnose_tls(kg__ldap *l, const char *uri, int starttls,
                         char *err, size_t errlen)
{
    char tmp[512], why[768];
    struct berval cert = { 0, NULL };
    LDAPURLDesc *lud = NULL;
    LDAP *ld = new_handle(l, uri, 1, tmp, sizeof(tmp));
    int rc;

    if (ld == NULL || set_tls(l, ld, uri, 0, tmp, sizeof(tmp)) != 0)
        goto out;
    rc = starttls ? ldap_start_tls_s(ld, NULL, NULL) : ldap_connect(ld);
    if (rc != LDAP_SUCCESS ||
        ldap_get_option(ld, LDAP_OPT_X_TLS_PEERCERT, &cert) != LDAP_OPT_SUCCESS ||
        cert.bv_val == NULL || ldap_url_parse(uri, &lud) != LDAP_URL_SUCCESS)
        goto out;
    if (kg__ldap_cert_why(l, (const unsigned char *)cert.bv_val, cert.bv_len,
                          lud->lud_host, why, sizeof(why)) == 0)
        snprintf(err, errlen, "%s: TLS: %s", uri, why);
out:
    ldap_free_urldesc(lud);
    ber_memfree(cert.bv_val);
    if (ld != NULL)
        ldap_unbind_ext_s(ld, NULL, NULL);
}

/*
 * Open and secure a connection to uri (ldaps:// gets TLS, and StartTLS
 * is sent when `starttls`), bound as the store's bind when `bind`, else
 * anonymous.  NULL with err on failure; the failure is also logged
 * (kg_context_log_backend, once per URI per interval).
 */
static LDAP *open_uri(kg__ldap *l, const char *uri, int bind, int starttls,
                      char *err, size_t errlen)
{
    LDAP *ld;
    int rc = LDAP_SUCCESS, tls_step = 0;
    int ldaps = strncasecmp(uri, "ldaps://", 8) == 0;
    int64_t started = mono_ms();

    ld = new_handle(l, uri, ldaps || starttls, err, errlen);
    if (ld == NULL)
        goto fail;
    if ((ldaps || starttls) && set_tls(l, ld, uri, 1, err, errlen) != 0)
        goto fail;
    if (starttls && !ldaps) {
        rc = ldap_start_tls_s(ld, NULL, NULL);
        if (rc != LDAP_SUCCESS) {
            tls_step = 1;
            conn_err(ld, uri, "StartTLS failed", rc, err, errlen);
            goto fail;
        }
    }
    if (!bind) {
        rc = ldap_connect(ld);
        if (rc != LDAP_SUCCESS) {
            conn_err(ld, uri, "cannot connect", rc, err, errlen);
            goto fail;
        }
    } else if (l->sasl_external) {
        /* An empty initial response: "the identity the connection has".
         * Without one slapd answers saslBindInProgress. */
        struct berval none = { 0, (char *)"" };
        rc = ldap_sasl_bind_s(ld, NULL, "EXTERNAL", &none, NULL, NULL, NULL);
        if (rc != LDAP_SUCCESS) {
            conn_err(ld, uri, "SASL EXTERNAL bind failed", rc, err, errlen);
            goto fail;
        }
    } else if (l->bind_dn != NULL) {
        struct berval cred;
        cred.bv_val = l->bind_password ? l->bind_password : "";
        cred.bv_len = strlen(cred.bv_val);
        /* A DN with an empty password is an "unauthenticated bind"
         * (RFC 4513 5.1.2): anonymous in disguise.  Never send one. */
        if (cred.bv_len == 0) {
            snprintf(err, errlen, "%s: bind as '%s': the password is empty "
                     "(is the variable in bind_password set, or the "
                     "bind_password_file filled?)", uri, l->bind_dn);
            goto fail;
        }
        rc = ldap_sasl_bind_s(ld, l->bind_dn, LDAP_SASL_SIMPLE, &cred, NULL, NULL, NULL);
        if (rc != LDAP_SUCCESS) {
            /* The DN is not a secret; the password never appears. */
            char what[600];
            snprintf(what, sizeof(what), "bind as '%s' failed", l->bind_dn);
            conn_err(ld, uri, what, rc, err, errlen);
            goto fail;
        }
    } else {
        /* Anonymous: connect now, so that a dead server is found here
         * (and the next URI tried) rather than at the search. */
        rc = ldap_connect(ld);
        if (rc != LDAP_SUCCESS) {
            conn_err(ld, uri, "cannot connect", rc, err, errlen);
            goto fail;
        }
    }
    return ld;
fail:
    if (rc != LDAP_SUCCESS && (ldaps || tls_step) &&
        handshake_failed(l, ld, tls_step, rc, started))
        diagnose_tls(l, uri, tls_step, err, errlen);
    else if (rc != LDAP_SUCCESS && ldaps &&
             (mono_ms() - started) * 100 >= (int64_t)l->network_timeout_ms * 95) {
        /* libldap says "Can't contact LDAP server" for a handshake that
         * ran out of time: say which.  Its clock is not ours: it gave
         * up under 1000 ms of ours once (CI: a 1 s timeout, the request
         * answered after 1.0005 s), hence 95%. */
        size_t n = strlen(err);
        snprintf(err + n, errlen - n, " (no TLS handshake within "
                 "network_timeout, %d ms)", l->network_timeout_ms);
    }
    kg__ldap_say(l, uri, err);
    if (ld != NULL)
        ldap_unbind_ext_s(ld, NULL, NULL);
    return NULL;
}

LDAP *kg__ldap_open_referral(kg__ldap *l, const char *uri, char *err,
                             size_t errlen)
{
    int tls = l->tls == KG__TLS_STARTTLS;
    size_t i;

    /* A store on ldaps:// only follows referrals with TLS too. */
    for (i = 0; !tls && i < l->nuris; i++)
        if (strncasecmp(l->uris[i], "ldaps://", 8) != 0)
            break;
    if (i == l->nuris)
        tls = 1;
    return open_uri(l, uri, 0, tls, err, errlen);
}

/*
 * Try the URIs in order, those not marked down first, then those that
 * were (a lone directory that comes back is used at once); never one in
 * *failed, and one that fails is added to it, so each is tried at most
 * once by an operation.  0 on success; else -1 with err (set by the
 * last URI tried, or saying that every one failed already).
 */
static int open_conn(kg__ldap *l, kg__ldap_conn *c, uint32_t *failed,
                     char *err, size_t errlen)
{
    int64_t now = kg__ldap_now_us(l);
    int pass, tried = 0;
    size_t i;

    for (pass = 0; pass < 2; pass++) {
        for (i = 0; i < l->nuris; i++) {
            int down = atomic_load(&l->down_until_us[i]) > now;
            LDAP *ld;
            if ((*failed >> i & 1) || (pass == 0 ? down : !down))
                continue;
            tried = 1;
            ld = open_uri(l, l->uris[i], 1, l->tls == KG__TLS_STARTTLS,
                          err, errlen);
            if (ld == NULL) {
                atomic_store(&l->down_until_us[i], now + l->retry_us);
                *failed |= (uint32_t)1 << i;
                continue;
            }
            atomic_store(&l->down_until_us[i], 0);
            c->ld = ld;
            c->uri = i;
            c->since_us = now;
            return 0;
        }
    }
    if (!tried)
        snprintf(err, errlen, "%s: every server failed this lookup once already",
                 l->uris[0]);
    return -1;
}

static void close_conn(kg__ldap_conn *c)
{
    if (c->ld != NULL)
        ldap_unbind_ext_s(c->ld, NULL, NULL);
    c->ld = NULL;
}

int kg__ldap_pool_init(kg__ldap *l)
{
    pthread_condattr_t ca;
    if (pthread_mutex_init(&l->mu, NULL) != 0)
        return -1;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    if (pthread_cond_init(&l->cv, &ca) != 0) {
        pthread_condattr_destroy(&ca);
        pthread_mutex_destroy(&l->mu);
        return -1;
    }
    pthread_condattr_destroy(&ca);
    if (l->pool_size > 0) {
        l->idle = calloc(l->pool_size, sizeof(*l->idle));
        if (l->idle == NULL)
            return -1;
    }
    return 0;
}

void kg__ldap_pool_flush(kg__ldap *l)
{
    struct kg__ldap_pconn *take[64];
    size_t n, i;

    do {
        pthread_mutex_lock(&l->mu);
        l->generation++;
        n = l->nidle < 64 ? l->nidle : 64;
        for (i = 0; i < n; i++)
            take[i] = l->idle[--l->nidle];
        pthread_mutex_unlock(&l->mu);
        for (i = 0; i < n; i++) {
            close_conn(&take[i]->c);
            free(take[i]);
        }
    } while (n == 64);
}

void kg__ldap_pool_free(kg__ldap *l)
{
    kg__ldap_pool_flush(l);
    free(l->idle);
    l->idle = NULL;
    pthread_cond_destroy(&l->cv);
    pthread_mutex_destroy(&l->mu);
}

kg__ldap_conn *kg__ldap_acquire(kg__ldap *l, kg__ldap_try *t, char *err,
                                size_t errlen)
{
    struct kg__ldap_pconn *pc = NULL;
    struct timespec deadline;
    uint64_t gen;

    pthread_mutex_lock(&l->mu);
    if (l->pool_size > 0) {
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        deadline.tv_sec += l->search_timeout_ms / 1000;
        deadline.tv_nsec += (long)(l->search_timeout_ms % 1000) * 1000000L;
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
        /* All connections busy: wait for one, as long as a search may take. */
        while (l->nidle == 0 && l->busy >= l->pool_size) {
            if (pthread_cond_timedwait(&l->cv, &l->mu, &deadline) == ETIMEDOUT) {
                pthread_mutex_unlock(&l->mu);
                snprintf(err, errlen, "all %zu pooled connections stayed busy "
                         "for %d ms (raise pool or search_timeout)",
                         l->pool_size, l->search_timeout_ms);
                kg_context_log_backend(l->ctx, l->uris[0], "%s", err);
                return NULL;
            }
        }
        if (l->nidle > 0)
            pc = l->idle[--l->nidle];
    }
    l->busy++;
    gen = l->generation;
    pthread_mutex_unlock(&l->mu);

    if (pc == NULL) {
        pc = calloc(1, sizeof(*pc));
        if (pc == NULL) {
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
        pc->gen = gen;
    }
    /* Fail back: a connection to a later URI lives at most `retry`.  One
     * to a server marked down since (it hung under another request) is
     * not used: the next server is. */
    if (pc->c.ld != NULL) {
        int64_t now = kg__ldap_now_us(l);
        if (t->fresh || (t->failed >> pc->c.uri & 1) ||
            atomic_load(&l->down_until_us[pc->c.uri]) > now ||
            (pc->c.uri > 0 && now - pc->c.since_us >= l->retry_us))
            close_conn(&pc->c);
    }
    pc->c.fresh = 0;
    if (pc->c.ld == NULL) {
        if (open_conn(l, &pc->c, &t->failed, err, errlen) != 0)
            goto fail;
        pc->gen = gen;
        pc->c.fresh = 1;
    }
    return &pc->c;
fail:
    free(pc);
    pthread_mutex_lock(&l->mu);
    l->busy--;
    pthread_cond_signal(&l->cv);
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

void kg__ldap_release(kg__ldap *l, kg__ldap_conn *c, int ok)
{
    struct kg__ldap_pconn *pc = (struct kg__ldap_pconn *)c;  /* first member */
    int keep;

    if (c == NULL)
        return;
    pthread_mutex_lock(&l->mu);
    keep = ok && l->pool_size > 0 && pc->gen == l->generation &&
           l->nidle < l->pool_size;
    if (keep)
        l->idle[l->nidle++] = pc;
    l->busy--;
    pthread_cond_signal(&l->cv);
    pthread_mutex_unlock(&l->mu);
    if (!keep) {
        close_conn(c);
        free(pc);
    }
}

/* Close the idle connections to uri (its server closed one of them). */
static void drop_idle(kg__ldap *l, size_t uri)
{
    struct kg__ldap_pconn *take[64];
    size_t n = 0, i, kept = 0;

    pthread_mutex_lock(&l->mu);
    for (i = 0; i < l->nidle; i++) {
        if (l->idle[i]->c.uri == uri && n < 64)
            take[n++] = l->idle[i];
        else
            l->idle[kept++] = l->idle[i];
    }
    l->nidle = kept;
    pthread_mutex_unlock(&l->mu);
    for (i = 0; i < n; i++) {
        close_conn(&take[i]->c);
        free(take[i]);
    }
}

void kg__ldap_failed(kg__ldap *l, kg__ldap_try *t, kg__ldap_conn *c, int rc)
{
    size_t uri = c->uri;
    int fresh = c->fresh;

    kg__ldap_release(l, c, 0);
    if (rc == LDAP_TIMEOUT || fresh) {
        /* It hangs, or a connection just opened to it failed at once:
         * the server, not the connection.  Other requests keep off it
         * for `retry`; this one goes on to the next server. */
        atomic_store(&l->down_until_us[uri], kg__ldap_now_us(l) + l->retry_us);
        t->failed |= (uint32_t)1 << uri;
    } else {
        /* A pooled connection the server closed (a restart, an idle
         * timeout): the others to it were opened before, so they are
         * most likely closed too.  The retry opens a new connection,
         * to this server if it answers again. */
        drop_idle(l, uri);
    }
    t->fresh = 1;
}
