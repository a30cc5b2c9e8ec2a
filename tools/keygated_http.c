/*
 * keygated_http.c - libmicrohttpd: the daemons, request routing and the
 * small endpoints (/healthz, /metrics, /leases).
 *
 * One MHD daemon per listening socket, each with epoll and a pool of
 * worker threads (one per core by default): a check is CPU work of a
 * few microseconds, so more threads than cores only add switching.  A
 * check whose store would wait on the network goes to the lookup
 * threads, its connection suspended, so that a hung server never holds
 * up the other connections of a worker (keygated_defer.c;
 * docs/keygated.md, "Threads, and a backend that hangs").
 *
 * Limits on input: the request line and headers over --max-header-bytes
 * get 414 (a long request line) or 431 (keygated_head.c), the header count is
 * checked in keygated_check.c (431), and a body is read and dropped,
 * never stored.  An HTTP/1.1 request without Host gets 400 (MHD's strict
 * mode).
 *
 * Connections: libmicrohttpd accepts up to kgd_conn_hard_limit() per
 * listener and keygated counts them (notify_connection); one accepted
 * while --max-connections were already open is answered 503 with
 * Retry-After and closed, so that no connection the kernel completed
 * waits for a slot unanswered or is closed without a word.  Past the
 * hard limit libmicrohttpd stops accepting and new connections wait in
 * the kernel's queue, while the 503s free their slots in microseconds.
 *
 * Every request gets a context from the
 * URI-log callback (the only place MHD shows the raw request target,
 * query included, which Envoy's path_prefix needs): the connection's
 * (notify_connection), so that a request allocates nothing.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "keygated.h"

/*
 * Per connection, not per request: made when libmicrohttpd accepts the
 * connection, reused by each request on it (keep-alive), freed when it
 * closes.  The raw target is copied into it (libmicrohttpd unescapes
 * its own copy in place after the URI-log callback); its buffer only
 * grows.
 */
struct kgd_reqctx {
    char *raw_uri;
    size_t cap;
    int started;
    int active;        /* a request is in flight (counted in metrics) */
    int over;          /* accepted past --max-connections: 503, close */
    struct kgd_pending *pend;   /* its check on the lookup threads */
};

/* Seconds a connection accepted past --max-connections may stay idle. */
#define OVER_IDLE_S 2

/* A listener's open connections, against --max-connections. */
struct listener {
    atomic_uint open;
    unsigned max;
};

static struct {
    struct MHD_Daemon *d[KGD_MAX_LISTEN];
    struct listener l[KGD_MAX_LISTEN];
    size_t n;
    kgd_server srv;
} S;

/* A quarter more, and some for a small limit: enough that a burst past
 * the limit is answered at the rate 503s are written, not at the rate
 * served connections close. */
unsigned kgd_conn_hard_limit(unsigned max)
{
    return max + max / 4 + 16;
}

static void notify_connection(void *cls, struct MHD_Connection *conn,
                              void **socket_context,
                              enum MHD_ConnectionNotificationCode toe)
{
    struct listener *l = cls;
    struct kgd_reqctx *rc = *socket_context;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        unsigned n = atomic_fetch_add(&l->open, 1) + 1;
        rc = calloc(1, sizeof(struct kgd_reqctx));
        if (rc != NULL)
            rc->over = n > l->max;
        /* One past the limit that sends nothing gives its slot back
         * after OVER_IDLE_S, not --timeout: the overflow is for 503s. */
        if (n > l->max)
            MHD_set_connection_option(conn, MHD_CONNECTION_OPTION_TIMEOUT,
                                      (unsigned)OVER_IDLE_S);
        *socket_context = rc;
        return;
    }
    /* Every STARTED has its CLOSED, the one that failed to allocate too. */
    atomic_fetch_sub(&l->open, 1);
    if (rc != NULL) {
        kgd_pending_free(rc->pend);
        free(rc->raw_uri);
        free(rc);
        *socket_context = NULL;
    }
}

static void *uri_logger(void *cls, const char *uri, struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci;
    struct kgd_reqctx *rc;
    size_t n;
    (void)cls;

    ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    if (ci == NULL || (rc = ci->socket_context) == NULL)
        return NULL;   /* out of memory at accept: dispatch drops it */
    n = strlen(uri ? uri : "") + 1;
    if (n > rc->cap) {
        char *p = malloc(n);
        if (p == NULL)
            return NULL;
        free(rc->raw_uri);
        rc->raw_uri = p;
        rc->cap = n;
    }
    memcpy(rc->raw_uri, uri ? uri : "", n);
    rc->started = 0;
    rc->active = 1;
    kgd_metrics_inflight(1);
    return rc;
}

static void completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                      enum MHD_RequestTerminationCode toe)
{
    struct kgd_reqctx *rc = *con_cls;
    (void)cls;
    (void)conn;
    (void)toe;
    if (rc == NULL)
        return;
    *con_cls = NULL;
    if (rc->active) {
        rc->active = 0;
        kgd_metrics_inflight(-1);
    }
}

static int respond_text(struct MHD_Connection *conn, unsigned status,
                        const char *type, char *text, int owned)
{
    struct MHD_Response *r;
    int ret;

    r = MHD_create_response_from_buffer(strlen(text), text,
                                        owned ? MHD_RESPMEM_MUST_FREE
                                              : MHD_RESPMEM_PERSISTENT);
    if (r == NULL) {
        if (owned)
            free(text);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", type);
    MHD_add_response_header(r, "Cache-Control", "no-store");
    ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

static int respond_empty(struct MHD_Connection *conn, unsigned status)
{
    struct MHD_Response *r;
    int ret;

    r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (r == NULL)
        return MHD_NO;
    ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

static int method_is(const char *m, const char *want)
{
    return strcmp(m, want) == 0;
}

static int not_allowed(struct MHD_Connection *conn, const char *allow)
{
    struct MHD_Response *r;
    static const char body[] = "{\"error\":{\"code\":\"method_not_allowed\","
                               "\"message\":\"method not allowed here\"}}";
    int ret;

    r = MHD_create_response_from_buffer(sizeof(body) - 1, (void *)body,
                                        MHD_RESPMEM_PERSISTENT);
    if (r == NULL)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", "application/json");
    MHD_add_response_header(r, "Allow", allow);
    ret = MHD_queue_response(conn, MHD_HTTP_METHOD_NOT_ALLOWED, r);
    MHD_destroy_response(r);
    return ret;
}

static int handle_lease(struct MHD_Connection *conn, const char *method,
                        const char *id)
{
    kg_error e;

    if (!method_is(method, "DELETE"))
        return not_allowed(conn, "DELETE");
    e = kg_release(S.srv.ctx, id);
    kgd_metrics_lease_release(e == KG_OK);
    if (e == KG_OK)
        return respond_empty(conn, MHD_HTTP_NO_CONTENT);
    if (e == KG_ERR_NOT_FOUND)
        return kgd_respond_error(conn, 404, "lease_not_found",
                                 "no such lease (already released or expired)");
    return kgd_respond_error(conn, 400, "invalid_request",
                             "malformed lease id");
}

/*
 * A connection accepted past --max-connections: 503, and closed
 * (Connection: close) to give its slot back at once.
 */
static int over_limit(struct MHD_Connection *conn)
{
    static const char body[] = "{\"error\":{\"code\":\"auth_unavailable\","
                               "\"message\":\"keygated is at its connection "
                               "limit; try again shortly\"}}";
    struct MHD_Response *r;
    int ret;

    kgd_metrics_rejected(503);
    r = MHD_create_response_from_buffer(sizeof(body) - 1, (void *)body,
                                        MHD_RESPMEM_PERSISTENT);
    if (r == NULL)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", "application/json");
    MHD_add_response_header(r, "Cache-Control", "no-store");
    MHD_add_response_header(r, "Retry-After", "1");
    MHD_add_response_header(r, "Connection", "close");
    ret = MHD_queue_response(conn, MHD_HTTP_SERVICE_UNAVAILABLE, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result dispatch(void *cls, struct MHD_Connection *conn,
                                const char *url, const char *method,
                                const char *version, const char *upload_data,
                                size_t *upload_data_size, void **con_cls)
{
    struct kgd_reqctx *rc = *con_cls;
    (void)cls;
    (void)upload_data;

    if (rc == NULL)
        return MHD_NO;   /* out of memory in uri_logger: drop the connection */
    if (!rc->started) {
        /* Headers are in: a head too large is refused now; otherwise
         * wait for (and drop) any body before answering, so that the
         * connection can be kept alive. */
        int r, refused;
        rc->started = 1;
        if (rc->over)
            return over_limit(conn);
        r = kgd_head_refuse(conn, S.srv.conf, method,
                            rc->raw_uri ? rc->raw_uri : url, version, &refused);
        return refused ? (enum MHD_Result)r : MHD_YES;
    }
    if (*upload_data_size != 0) {
        *upload_data_size = 0;
        return MHD_YES;
    }
    /* Resumed by a lookup thread with its decision. */
    if (kgd_pending_ready(rc->pend))
        return kgd_pending_answer(conn, rc->pend);
    if (strcmp(url, "/check") == 0 || strncmp(url, "/check/", 7) == 0) {
        kgd_metrics_request(KGD_EP_CHECK);
        return kgd_handle_check(&S.srv, conn, url, method, rc->raw_uri, 0,
                                &rc->pend);
    }
    if (strcmp(url, "/whoami") == 0) {
        kgd_metrics_request(KGD_EP_WHOAMI);
        if (!method_is(method, "GET") && !method_is(method, "HEAD"))
            return not_allowed(conn, "GET, HEAD");
        return kgd_handle_check(&S.srv, conn, url, method, rc->raw_uri, 1,
                                &rc->pend);
    }
    if (strncmp(url, "/leases/", 8) == 0 && url[8] != '\0') {
        kgd_metrics_request(KGD_EP_LEASES);
        return handle_lease(conn, method, url + 8);
    }
    if (strcmp(url, "/healthz") == 0) {
        kgd_policy_ref *ref;
        kgd_metrics_request(KGD_EP_HEALTHZ);
        if (!method_is(method, "GET") && !method_is(method, "HEAD"))
            return not_allowed(conn, "GET, HEAD");
        ref = kgd_policy_get();
        if (ref == NULL)
            return respond_text(conn, 503, "text/plain", "shutting down\n", 0);
        kgd_policy_put(ref);
        return respond_text(conn, 200, "text/plain", "ok\n", 0);
    }
    if (strcmp(url, "/metrics") == 0) {
        char *text;
        kgd_metrics_request(KGD_EP_METRICS);
        if (!method_is(method, "GET") && !method_is(method, "HEAD"))
            return not_allowed(conn, "GET, HEAD");
        text = kgd_metrics_render(S.srv.ctx);
        if (text == NULL)
            return MHD_NO;
        return respond_text(conn, 200, "text/plain; version=0.0.4", text, 1);
    }
    kgd_metrics_request(KGD_EP_OTHER);
    return kgd_respond_error(conn, 404, "not_found",
                             "no such endpoint (try /check, /whoami, "
                             "/healthz, /metrics or DELETE /leases/<id>)");
}

void kgd_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char buf[1024];
    size_t n;
    (void)cls;
    vsnprintf(buf, sizeof(buf), fmt, ap);
    n = strlen(buf);
    while (n > 0 && buf[n - 1] == '\n')
        buf[--n] = '\0';
    kgd_log_msg("libmicrohttpd: %s", buf);
}

int kgd_http_start(const kgd_conf *conf, kg_context *ctx, const int *fds,
                   size_t nfds)
{
    unsigned threads = conf->threads;
    size_t i;

    S.srv.conf = conf;
    S.srv.ctx = ctx;
    if (threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n > 0 ? (unsigned)n : 1;
    }
    if (kgd_defer_start(conf->lookup_threads) != 0)
        return -1;
    for (i = 0; i < nfds && i < KGD_MAX_LISTEN; i++) {
        atomic_init(&S.l[i].open, 0);
        S.l[i].max = conf->max_connections;
        S.d[i] = MHD_start_daemon(
            MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG |
                (conf->lookup_threads > 0 ? MHD_ALLOW_SUSPEND_RESUME : 0),
            0, NULL, NULL, dispatch, NULL,
            MHD_OPTION_EXTERNAL_LOGGER, kgd_mhd_log, NULL,
            MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fds[i],
            MHD_OPTION_THREAD_POOL_SIZE, threads,
            MHD_OPTION_CONNECTION_LIMIT,
                kgd_conn_hard_limit(conf->max_connections),
            MHD_OPTION_CONNECTION_TIMEOUT, conf->timeout_s,
            MHD_OPTION_CONNECTION_MEMORY_LIMIT, kgd_head_pool(conf),
            MHD_OPTION_STRICT_FOR_CLIENT, 1,
            MHD_OPTION_NOTIFY_CONNECTION, notify_connection, &S.l[i],
            MHD_OPTION_URI_LOG_CALLBACK, uri_logger, NULL,
            MHD_OPTION_NOTIFY_COMPLETED, completed, NULL,
            MHD_OPTION_END);
        if (S.d[i] == NULL) {
            char name[80];
            kgd_listen_name(fds[i], name, sizeof(name));
            kgd_log_msg("cannot start the HTTP server on %s (libmicrohttpd "
                        "refused the options; see above)", name);
            kgd_http_stop(0);
            return -1;
        }
        S.n = i + 1;
    }
    return 0;
}

void kgd_http_stop(unsigned drain_s)
{
    size_t i;
    struct timespec ts = { 0, 20 * 1000 * 1000 };
    long waited_ms = 0;

    /* Stop accepting; finish what is in flight; then close. */
    for (i = 0; i < S.n; i++) {
        MHD_socket s = MHD_quiesce_daemon(S.d[i]);
        if (s != MHD_INVALID_SOCKET)
            close(s);
    }
    while (kgd_metrics_inflight_now() > 0 && waited_ms < (long)drain_s * 1000) {
        nanosleep(&ts, NULL);
        waited_ms += 20;
    }
    if (kgd_metrics_inflight_now() > 0)
        kgd_log_msg("%ld requests still in flight after %us; closing them",
                    kgd_metrics_inflight_now(), drain_s);
    /* libmicrohttpd must not be stopped with a connection suspended:
     * every check on the lookup threads ends (those not started yet
     * answer 503) and resumes its connection first. */
    kgd_defer_stop();
    for (i = 0; i < S.n; i++)
        MHD_stop_daemon(S.d[i]);
    S.n = 0;
}
