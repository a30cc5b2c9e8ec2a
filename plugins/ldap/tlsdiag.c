/*
 * tlsdiag.c - why a directory's certificate was refused.
 *
 * libldap built with GnuTLS (Debian's) says only "Connect error
 * ((unknown error code))" for a StartTLS whose certificate does not
 * verify, and "Can't contact LDAP server" for an ldaps:// URI, the same
 * as for a server that is down.  conn.c then takes the certificate the
 * server presents on a connection that does not verify it and on which
 * nothing is sent (no bind, no search), and this file verifies it with
 * OpenSSL against the store's ca_file (or the system's CAs) and the
 * URI's host, as libldap would have: the answer names the problem.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include "ldapstore.h"

/* "CN=ldap1,O=Example" into out (RFC 2253, one line). */
static void name_of(const X509_NAME *n, char *out, size_t size)
{
    BIO *b = BIO_new(BIO_s_mem());
    int len;
    out[0] = '\0';
    if (b == NULL)
        return;
    if (X509_NAME_print_ex(b, n, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) >= 0 &&
        (len = BIO_read(b, out, (int)size - 1)) > 0)
        out[len] = '\0';
    BIO_free(b);
}

int kg__ldap_cert_why(const kg__ldap *l, const unsigned char *der, size_t len,
                      const char *host, char *why, size_t whylen)
{
    const unsigned char *p = der;
    X509 *cert = d2i_X509(NULL, &p, (long)len);
    X509_STORE *store = NULL;
    X509_STORE_CTX *vc = NULL;
    X509_VERIFY_PARAM *vp;
    char subject[256], issuer[256];
    int ret = -1, loaded;

    if (cert == NULL || (store = X509_STORE_new()) == NULL ||
        (vc = X509_STORE_CTX_new()) == NULL)
        goto out;
    loaded = l->ca_file ? X509_STORE_load_file(store, l->ca_file)
                        : X509_STORE_set_default_paths(store);
    if (loaded != 1 || X509_STORE_CTX_init(vc, store, cert, NULL) != 1)
        goto out;
    vp = X509_STORE_CTX_get0_param(vc);
    if (host != NULL && *host != '\0' &&
        X509_VERIFY_PARAM_set1_ip_asc(vp, host) != 1 &&
        X509_VERIFY_PARAM_set1_host(vp, host, 0) != 1)
        goto out;
    name_of(X509_get_subject_name(cert), subject, sizeof(subject));
    name_of(X509_get_issuer_name(cert), issuer, sizeof(issuer));
    if (X509_verify_cert(vc) == 1) {
        snprintf(why, whylen, "the TLS handshake failed, though the server's "
                 "certificate ('%s', issued by '%s') verifies against %s%s",
                 subject, issuer, l->ca_file ? "ca_file " : "the system's CAs",
                 l->ca_file ? l->ca_file : "");
    } else {
        snprintf(why, whylen, "the server's certificate did not verify against "
                 "%s%s: %s (it is '%s', issued by '%s')",
                 l->ca_file ? "ca_file " : "the system's CAs",
                 l->ca_file ? l->ca_file : "",
                 X509_verify_cert_error_string(X509_STORE_CTX_get_error(vc)),
                 subject, issuer);
    }
    ret = 0;
out:
    X509_STORE_CTX_free(vc);
    X509_STORE_free(store);
    X509_free(cert);
    return ret;
}
