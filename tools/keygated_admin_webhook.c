/*
 * keygated_admin_webhook.c - an account's own alert receiver as the
 * admin API sets it (docs/admin-api.md "Alerts", docs/alerts.md
 * "Per-account rules"): which URLs it takes, and the signing secret
 * keygated generates for it.
 *
 * Why keygated generates the secret: an override names the FILE its
 * secret is read from at each delivery.  A path taken from an API
 * caller would let a customer have its alerts signed with any file
 * keygated can read (and learn, from the errors, which files exist), so
 * the API never takes one: it writes a new Standard Webhooks secret
 * (kg_webhook_secret_generate: "whsec_" and 32 bytes of OpenSSL's RNG)
 * into a file of its own, 0600, under the state folder, and answers it
 * once.  Files named by hand stay the CLI's (keygate alerts override
 * --secret-file), which needs a shell on the host.
 *
 * Why the URL rules: keygated posts to the URL from the host it runs on,
 * so a customer's URL could aim it at the operator's own network
 * (SSRF).  A customer key gets https:// only and no literal loopback,
 * private, link-local or multicast address, unless keygated runs with
 * --admin-webhook-insecure (tests, closed networks).  Host names are
 * not resolved here (a name may change what it resolves to at any
 * time): filter keygated's outgoing traffic for that.  The URL is parsed
 * by libcurl, the library that will send to it.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifdef HAVE_CURL
#include <curl/curl.h>
#endif
#include <keygate/webhook.h>

#include "keygated_admin.h"

/* Literal addresses a customer's receiver may not have. */
static const char *const private_nets[] = {
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8",
    "169.254.0.0/16", "172.16.0.0/12", "192.0.0.0/24", "192.168.0.0/16",
    "198.18.0.0/15", "224.0.0.0/3",
    "::/128", "::1/128", "fc00::/7", "fe80::/10", "ff00::/8",
};

/* 1 if host (an address literal, IPv6 in brackets, or a name) is a
 * loopback, private, link-local or multicast address, or localhost. */
static int host_private(const char *host)
{
    unsigned char a[16];
    char buf[64];
    size_t i, n = strlen(host);
    kg_cidr c;

    if (strcasecmp(host, "localhost") == 0 ||
        (n > 10 && strcasecmp(host + n - 10, ".localhost") == 0))
        return 1;
    if (host[0] == '[' && n > 2 && n - 2 < sizeof(buf)) {
        memcpy(buf, host + 1, n - 2);
        buf[n - 2] = '\0';
        buf[strcspn(buf, "%")] = '\0';   /* a zone id */
        host = buf;
    }
    if (kg_addr_parse(host, a) != KG_OK)
        return 0;
    for (i = 0; i < sizeof(private_nets) / sizeof(private_nets[0]); i++)
        if (kg_cidr_parse(private_nets[i], &c) == KG_OK &&
            kg_cidr_contains(&c, a))
            return 1;
    return 0;
}

int kgd_admin_webhook_url_ok(kgd_admin_call *c, const char *url, int *ret_r)
{
    const char *why = NULL;
    int strict = !c->operator && !c->conf->admin_webhook_insecure;
#ifdef HAVE_CURL
    char *scheme = NULL, *host = NULL, *user = NULL, *password = NULL;
    CURLU *u = NULL;
    size_t i;

    for (i = 0; url[i] != '\0'; i++)
        if ((unsigned char)url[i] <= 0x20 || url[i] == 0x7f)
            why = "webhook_url may not hold spaces or control characters";
    if (why == NULL && i > 2048)
        why = "webhook_url is longer than 2048 characters";
    if (why == NULL && ((u = curl_url()) == NULL ||
                        curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
                        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
                        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK))
        why = "webhook_url is not a URL with a host";
    if (why == NULL && strcmp(scheme, "https") != 0 && strcmp(scheme, "http") != 0)
        why = "webhook_url must be an https:// (or, for an operator, http://) URL";
    if (why == NULL &&
        (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK ||
         curl_url_get(u, CURLUPART_PASSWORD, &password, 0) == CURLUE_OK))
        why = "webhook_url may not hold a user or password (it is shown by "
              "GET and kept in the audit log): put a token in its path";
    if (why == NULL && strict && strcmp(scheme, "https") != 0)
        why = "webhook_url must be https:// (keygated takes http:// from a "
              "customer key only with --admin-webhook-insecure)";
    if (why == NULL && strict && host_private(host))
        why = "webhook_url may not be a loopback, private, link-local or "
              "multicast address (keygated takes them from a customer key "
              "only with --admin-webhook-insecure)";
    curl_free(scheme);
    curl_free(host);
    curl_free(user);
    curl_free(password);
    curl_url_cleanup(u);
#else
    (void)url;
    (void)strict;
    (void)host_private;
    why = "this keygated was built without libcurl: it has no webhook "
          "notifier to send to an account's own receiver";
#endif
    if (why == NULL)
        return 1;
    *ret_r = kgd_admin_error(c, 400, "invalid_request", why, "webhook_url");
    return 0;
}

int kgd_admin_secret_path(const char *account_id, char *out, size_t size)
{
    const char *state = getenv("KEYGATE_STATE_DIR");
    int n;

    if (state == NULL || state[0] == '\0')
        state = "/var/lib/keygate";
    /* An account id is letters, digits and ._:@- (no '/'), so the name
     * stays in the folder. */
    if (strchr(account_id, '/') != NULL || account_id[0] == '\0')
        return -1;
    n = snprintf(out, size, "%s/" KGD_ALERT_SECRET_DIR "/%s.secret", state,
                 account_id);
    return n > 0 && (size_t)n < size ? 0 : -1;
}

kg_error kgd_admin_secret_new(const char *path, char *secret, kg_diag *d)
{
    char dir[4096], tmp[4200];
    const char *slash = strrchr(path, '/');
    size_t len, off = 0;
    ssize_t w;
    kg_error e;
    int fd;

    if (slash == NULL || (size_t)(slash - path) >= sizeof(dir)) {
        kg_diag_set(d, "no folder for the account's secret");
        return KG_ERR_INVALID;
    }
    memcpy(dir, path, (size_t)(slash - path));
    dir[slash - path] = '\0';
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        kg_diag_set(d, "cannot make %s: %s", dir, strerror(errno));
        return KG_ERR_IO;
    }
    if ((e = kg_webhook_secret_generate(KG_WEBHOOK_SECRET_V1, secret,
                                        KG_WEBHOOK_SECRET_MAX, NULL, 0)) != KG_OK) {
        kg_diag_set(d, "cannot generate a secret (OpenSSL's RNG)");
        return e;
    }
    /* Written beside it and renamed over it: the sender reads either
     * the old secret or the new one, never half of one. */
    snprintf(tmp, sizeof(tmp), "%s.XXXXXX", path);
    if ((fd = mkstemp(tmp)) < 0) {
        kg_diag_set(d, "cannot write in %s: %s", dir, strerror(errno));
        e = KG_ERR_IO;
        goto out;
    }
    len = strlen(secret);
    secret[len] = '\n';
    while (off < len + 1 && (w = write(fd, secret + off, len + 1 - off)) > 0)
        off += (size_t)w;
    secret[len] = '\0';
    if (off != len + 1 || fchmod(fd, 0600) != 0 || fsync(fd) != 0) {
        kg_diag_set(d, "cannot write %s: %s", tmp, strerror(errno));
        close(fd);
        e = KG_ERR_IO;
    } else if (close(fd) != 0 || rename(tmp, path) != 0) {
        kg_diag_set(d, "cannot write %s: %s", path, strerror(errno));
        e = KG_ERR_IO;
    }
    if (e != KG_OK)
        unlink(tmp);
out:
    if (e != KG_OK)
        kg_wipe(secret, KG_WEBHOOK_SECRET_MAX);
    return e;
}
