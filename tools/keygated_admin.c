/*
 * keygated_admin.c - the admin listener: its own socket and daemon,
 * never the check listener's (docs/admin-api.md), the request's body,
 * and routing to the /api/v1 handlers; any other path is the
 * dashboard's (keygated_static.c).
 *
 * Where it may listen: plain HTTP only on a loopback address unless
 * --admin-insecure, since keys travel in its requests; TLS (--admin-cert,
 * --admin-key) through libmicrohttpd's GnuTLS anywhere.  The PEM files
 * are read before privileges are dropped (they are root's to read).
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <microhttpd.h>

#include "keygated_admin.h"
#include "keygated_static.h"

/* Per request: the body as it comes in. */
struct admin_req {
    char *body;
    size_t len;
    int too_large;
};

static struct {
    struct MHD_Daemon *d;
    const kgd_conf *conf;
    kg_context *ctx;
    char *cert, *key;     /* PEM, read at open */
    const char *listen;   /* what it listens on */
} A;

static char *read_file(const char *path, const char *what)
{
    FILE *f = fopen(path, "r");
    char *buf = NULL;
    long n;

    if (f == NULL) {
        kgd_log_msg("%s %s: %s", what, path, strerror(errno));
        return NULL;
    }
    if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || n > 1024 * 1024 ||
        fseek(f, 0, SEEK_SET) != 0 || (buf = malloc((size_t)n + 1)) == NULL ||
        fread(buf, 1, (size_t)n, f) != (size_t)n) {
        kgd_log_msg("%s %s: cannot read it (at most 1 MiB of PEM)", what, path);
        free(buf);
        fclose(f);
        return NULL;
    }
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* 1 if the address a socket is bound to is a loopback one. */
static int bound_to_loopback(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);

    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return 0;
    if (ss.ss_family == AF_INET)
        return (ntohl(((struct sockaddr_in *)&ss)->sin_addr.s_addr) >> 24) == 127;
    if (ss.ss_family == AF_INET6)
        return IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)&ss)->sin6_addr);
    return 0;
}

int kgd_admin_open(kgd_conf *conf, int *fd_r)
{
    char err[512], name[80];
    int fd = -1, tls;

    *fd_r = -1;
    if (conf->admin_listen == NULL)
        return 0;
    if ((conf->admin_cert == NULL) != (conf->admin_key == NULL)) {
        kgd_log_msg("--admin-cert and --admin-key come together (TLS needs both)");
        return -1;
    }
    tls = conf->admin_cert != NULL;
    if (tls && MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
        kgd_log_msg("--admin-cert: this libmicrohttpd was built without TLS");
        return -1;
    }
    if (tls && ((A.cert = read_file(conf->admin_cert, "--admin-cert")) == NULL ||
                (A.key = read_file(conf->admin_key, "--admin-key")) == NULL))
        return -1;
    fd = kgd_listen_open(conf->admin_listen, 64, err, sizeof(err));
    if (fd < 0) {
        kgd_log_msg("admin listener: %s", err);
        return -1;
    }
    kgd_listen_name(fd, name, sizeof(name));
    if (!tls && !conf->admin_insecure && !bound_to_loopback(fd)) {
        kgd_log_msg("admin listener %s: plain HTTP off a loopback address "
                    "would carry keys in clear; give --admin-cert and "
                    "--admin-key (TLS), or --admin-insecure", name);
        close(fd);
        return -1;
    }
    *fd_r = fd;
    return 0;
}

static void notify_completed(void *cls, struct MHD_Connection *conn,
                             void **con_cls, enum MHD_RequestTerminationCode toe)
{
    struct admin_req *r = *con_cls;
    (void)cls;
    (void)conn;
    (void)toe;
    if (r == NULL)
        return;
    /* a body may hold a key's settings, never a key: no wipe needed */
    free(r->body);
    free(r);
    *con_cls = NULL;
}

/* ---- routing ---------------------------------------------------------- */

/* "accounts/ * /keys": each "*" one path segment, an id, given to the
 * handler in order. */
static const struct route {
    const char *method;
    const char *pattern;
    kgd_admin_handler fn;
    int operator_only;
} routes[] = {
    { "GET", "accounts", kgd_admin_accounts_list, 0 },
    { "POST", "accounts", kgd_admin_accounts_create, 1 },
    { "GET", "accounts/*", kgd_admin_account_get, 0 },
    { "PATCH", "accounts/*", kgd_admin_account_patch, 1 },
    { "DELETE", "accounts/*", kgd_admin_account_delete, 1 },
    { "POST", "accounts/*/suspend", kgd_admin_account_suspend, 1 },
    { "POST", "accounts/*/resume", kgd_admin_account_resume, 1 },
    { "GET", "accounts/*/keys", kgd_admin_keys_list, 0 },
    { "POST", "accounts/*/keys", kgd_admin_keys_create, 0 },
    { "GET", "accounts/*/usage", kgd_admin_account_usage, 0 },
    { "GET", "accounts/*/events", kgd_admin_account_events, 0 },
    { "GET", "accounts/*/alerts", kgd_admin_alerts_list, 0 },
    { "GET", "accounts/*/alerts/rules", kgd_admin_alert_rules, 0 },
    { "GET", "accounts/*/alerts/overrides", kgd_admin_overrides_get, 0 },
    { "PUT", "accounts/*/alerts/overrides", kgd_admin_overrides_put, 0 },
    { "DELETE", "accounts/*/alerts/overrides", kgd_admin_overrides_delete, 0 },
    { "POST", "accounts/*/alerts/overrides/secret", kgd_admin_overrides_secret, 0 },
    { "GET", "keys/*", kgd_admin_key_get, 0 },
    { "PATCH", "keys/*", kgd_admin_key_patch, 0 },
    { "POST", "keys/*/rotate", kgd_admin_key_rotate, 0 },
    { "POST", "keys/*/revoke", kgd_admin_key_revoke, 0 },
    { "GET", "keys/*/usage", kgd_admin_key_usage, 0 },
    { "GET", "usage/top", kgd_admin_usage_top, 1 },
    { "GET", "audit", kgd_admin_audit_list, 0 },
    { "GET", "plans", kgd_admin_plans, 0 },
    { "GET", "me", kgd_admin_me, 0 },
};
#define NROUTES (sizeof(routes) / sizeof(routes[0]))
#define MAX_IDS 2

/* Match path (after /api/v1/) against a pattern; ids point into buf. */
static int match(const char *pattern, const char *path, char *buf,
                 size_t size, char **ids)
{
    size_t nids = 0, n;
    const char *p = pattern, *s = path;

    if (strlen(path) >= size)
        return 0;
    while (*p) {
        const char *pe = strchr(p, '/'), *se = strchr(s, '/');
        size_t pl = pe ? (size_t)(pe - p) : strlen(p);
        size_t sl = se ? (size_t)(se - s) : strlen(s);
        if (sl == 0)
            return 0;
        if (pl == 1 && *p == '*') {
            if (nids == MAX_IDS)
                return 0;
            n = (size_t)(s - path);
            memcpy(buf + n, s, sl);
            buf[n + sl] = '\0';
            ids[nids++] = buf + n;
        } else if (pl != sl || memcmp(p, s, pl) != 0) {
            return 0;
        }
        p += pl;
        s += sl;
        if ((*p == '/') != (*s == '/'))
            return 0;
        if (*p == '/') {
            p++;
            s++;
        }
    }
    return *s == '\0';
}

static int not_allowed(struct MHD_Connection *conn, const char *allow)
{
    static const char body[] = "{\"error\":{\"code\":\"method_not_allowed\","
                               "\"message\":\"method not allowed here\"}}";
    struct kgd_hdr h = { "Allow", allow };
    return kgd_admin_raw(conn, 405, "application/json", body,
                         sizeof(body) - 1, &h, 1);
}

static int api(struct MHD_Connection *conn, const char *url,
               const char *method, struct admin_req *r)
{
    const char *path = url + strlen("/api/v1/");
    char buf[512], allow[64] = "";
    char *ids[MAX_IDS] = { NULL, NULL };
    const struct route *rt = NULL;
    kgd_admin_call c;
    kgd_policy_ref *ref = NULL;
    json_error_t jerr;
    size_t i;
    int ret = MHD_NO;

    if (strcmp(path, "openapi.json") == 0) {
        if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
            return not_allowed(conn, "GET, HEAD");
        return kgd_admin_openapi(conn, A.conf);
    }
    for (i = 0; i < NROUTES; i++) {
        if (!match(routes[i].pattern, path, buf, sizeof(buf), ids))
            continue;
        if (strcmp(routes[i].method, method) == 0) {
            rt = &routes[i];
            break;
        }
        if (strlen(allow) + 10 < sizeof(allow))
            snprintf(allow + strlen(allow), sizeof(allow) - strlen(allow),
                     "%s%s", allow[0] ? ", " : "", routes[i].method);
    }
    memset(&c, 0, sizeof(c));
    c.conn = conn;
    c.method = method;
    c.url = url;
    c.conf = A.conf;
    if (rt == NULL && allow[0] == '\0') {
        return kgd_admin_error(&c, 404, "not_found",
                               "no such route (see /api/v1/openapi.json)",
                               NULL);
    }
    if (r->too_large) {
        char msg[96];
        snprintf(msg, sizeof(msg), "the request body is larger than %d bytes",
                 KGD_ADMIN_BODY_MAX);
        return kgd_admin_error(&c, 413, "payload_too_large", msg, NULL);
    }
    ref = kgd_policy_get();
    if (ref == NULL)
        return kgd_admin_error(&c, 503, "unavailable",
                               "keygated is shutting down", NULL);
    /* Management goes through the policy's stores, which the library
     * takes a non-const policy for; the policy itself is not changed. */
    c.p = (kg_policy *)kgd_policy_of(ref);
    if (!kgd_admin_auth(&c, &ret))
        goto out;
    if (rt == NULL) {
        ret = not_allowed(conn, allow);
        goto out;
    }
    if (rt->operator_only && !c.operator) {
        ret = kgd_admin_error(&c, 403, "forbidden",
                              "this needs an operator key (permission admin "
                              "on the admin plan)", NULL);
        goto out;
    }
    if (r->len > 0) {
        c.body = json_loadb(r->body, r->len, JSON_REJECT_DUPLICATES, &jerr);
        if (c.body == NULL) {
            char msg[256];
            snprintf(msg, sizeof(msg), "malformed JSON at byte %d: %s",
                     jerr.position, jerr.text);
            ret = kgd_admin_error(&c, 400, "invalid_request", msg, NULL);
            goto out;
        }
        if (!json_is_object(c.body)) {
            ret = kgd_admin_error(&c, 400, "invalid_request",
                                  "the body must be a JSON object", NULL);
            goto out;
        }
    }
    ret = rt->fn(&c, ids);
out:
    json_decref(c.body);
    kgd_policy_put(ref);
    return ret;
}

static enum MHD_Result dispatch(void *cls, struct MHD_Connection *conn,
                                const char *url, const char *method,
                                const char *version, const char *upload_data,
                                size_t *upload_data_size, void **con_cls)
{
    struct admin_req *r = *con_cls;
    (void)cls;
    (void)version;

    if (r == NULL) {
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                     "Content-Length");
        if ((r = calloc(1, sizeof(*r))) == NULL)
            return MHD_NO;
        *con_cls = r;
        /* A body announced too large is refused before it is read. */
        if (cl != NULL && strtoull(cl, NULL, 10) > KGD_ADMIN_BODY_MAX) {
            char body[160];
            size_t n = kgd_error_body(body, sizeof(body), "payload_too_large",
                                      "the request body is larger than 65536 bytes");
            return (enum MHD_Result)kgd_admin_raw(conn, 413, "application/json",
                                                  body, n, NULL, 0);
        }
        return MHD_YES;
    }
    if (*upload_data_size != 0) {
        /* Kept up to the cap; the rest is read and dropped, so that the
         * 413 goes out on a connection still in step. */
        if (!r->too_large && r->len + *upload_data_size > KGD_ADMIN_BODY_MAX) {
            r->too_large = 1;
            free(r->body);
            r->body = NULL;
            r->len = 0;
        }
        if (!r->too_large) {
            char *p = realloc(r->body, r->len + *upload_data_size);
            if (p == NULL)
                return MHD_NO;
            memcpy(p + r->len, upload_data, *upload_data_size);
            r->body = p;
            r->len += *upload_data_size;
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (strncmp(url, "/api/v1/", 8) == 0)
        return (enum MHD_Result)api(conn, url, method, r);
    if (strcmp(url, "/api") == 0 || strncmp(url, "/api/", 5) == 0) {
        static const char body[] = "{\"error\":{\"code\":\"not_found\","
            "\"message\":\"no such route (the API is under /api/v1/)\"}}";
        return (enum MHD_Result)kgd_admin_raw(conn, 404, "application/json",
                                              body, sizeof(body) - 1, NULL, 0);
    }
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return (enum MHD_Result)not_allowed(conn, "GET, HEAD");
    return (enum MHD_Result)kgd_static_answer(conn, A.conf->dashboard_dir, url);
}

int kgd_admin_start(const kgd_conf *conf, kg_context *ctx, int fd)
{
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
                     MHD_USE_ERROR_LOG;
    char name[80];
    struct MHD_OptionItem tls[] = {
        { MHD_OPTION_HTTPS_MEM_CERT, 0, A.cert },
        { MHD_OPTION_HTTPS_MEM_KEY, 0, A.key },
        { MHD_OPTION_END, 0, NULL },
    };

    A.conf = conf;
    A.ctx = ctx;
    kgd_listen_name(fd, name, sizeof(name));
    if (A.cert != NULL)
        flags |= MHD_USE_TLS;
    /* A thread per connection: a management call may wait on a store
     * for as long as its timeouts allow, and must hold up no other. */
    A.d = MHD_start_daemon(flags, 0, NULL, NULL, dispatch, NULL,
                           MHD_OPTION_EXTERNAL_LOGGER, kgd_mhd_log, NULL,
                           MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
                           MHD_OPTION_CONNECTION_LIMIT, 64,
                           MHD_OPTION_CONNECTION_TIMEOUT, conf->timeout_s,
                           MHD_OPTION_STRICT_FOR_CLIENT, 1,
                           MHD_OPTION_NOTIFY_COMPLETED, notify_completed, NULL,
                           /* the certificate and key, with TLS */
                           MHD_OPTION_ARRAY, A.cert != NULL ? tls : tls + 2,
                           MHD_OPTION_END);
    if (A.key != NULL) {
        kg_wipe(A.key, strlen(A.key));
        free(A.key);
        A.key = NULL;
    }
    free(A.cert);
    A.cert = NULL;
    if (A.d == NULL) {
        kgd_log_msg("cannot start the admin listener on %s (libmicrohttpd "
                    "refused it; see above)", name);
        close(fd);
        return -1;
    }
    kgd_log_msg("admin API listener on %s (%s)", name,
                flags & MHD_USE_TLS ? "https, TLS" :
                bound_to_loopback(fd) ? "plain http, loopback only"
                                      : "plain http, --admin-insecure: keys "
                                        "travel in clear");
    return 0;
}

void kgd_admin_stop(void)
{
    if (A.d != NULL)
        MHD_stop_daemon(A.d);
    A.d = NULL;
}
