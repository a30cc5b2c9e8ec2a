/*
 * keygated.h - the pieces of keygated, the HTTP auth service, and what
 * they share.  Each piece lives in its own tools/keygated_*.c file:
 *
 *   keygated.c          main: options, sockets, privileges, signals
 *   keygated_conf.c     the service's settings (command line) and --help
 *   keygated_listen.c   "ADDR:PORT" -> a listening socket
 *   keygated_client.c   the client address (peer or X-Forwarded-For)
 *   keygated_origin.c   the original method and target of a forwarded request
 *   keygated_holder.c   the serving policy, refcounted, swapped on SIGHUP
 *   keygated_http.c     libmicrohttpd: daemons, request dispatch, responses
 *   keygated_check.c    /check and /whoami: request -> decision -> response
 *   keygated_defer.c    the threads that run checks which wait on a
 *                       backend, off the worker threads
 *   keygated_reply.c    what a worker thread reuses (its request, its
 *                       response for allowed checks); answers
 *   keygated_head.c     a request's head against --max-header-bytes and
 *                       libmicrohttpd's per-connection memory (414/431)
 *   keygated_metrics.c  counters and their Prometheus text
 *   keygated_log.c      the JSON access log and the service's own messages
 *   keygated_usage.c    the usage flusher thread (docs/usage.md)
 *   keygated_json.c     JSON string escaping for the log and /whoami
 *
 * The pure pieces (client, origin, json, listen parsing) take no
 * libmicrohttpd types so that the unit tests link them alone.
 */
#ifndef KEYGATE_KEYGATED_H
#define KEYGATE_KEYGATED_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include <keygate/keygate.h>
#include <keygate/plugin.h>

#define KGD_MAX_LISTEN 8
#define KGD_MAX_PROXIES 64

/* ---- keygated_conf.c ---------------------------------------------------- */

/* Where the original method and path come from (--origin). */
typedef enum kgd_origin_mode {
    KGD_ORIGIN_AUTO = 0,   /* X-Original-*, then X-Forwarded-*, then the path */
    KGD_ORIGIN_NGINX,      /* X-Original-Method / X-Original-URI only */
    KGD_ORIGIN_FORWARDED,  /* X-Forwarded-Method / X-Forwarded-Uri only */
    KGD_ORIGIN_PATH        /* the path after /check and the request's method */
} kgd_origin_mode;

typedef struct kgd_conf {
    const char *config;          /* NULL: the embedded default policy */
    const char *listen[KGD_MAX_LISTEN];
    size_t nlisten;
    const char *user;
    const char *pid_file;
    const char *access_log;      /* "-" stdout, "off", or a file */
    int check_config;
    unsigned threads;            /* 0: one per core */
    unsigned max_connections;
    unsigned timeout_s;          /* idle connection timeout */
    size_t max_header_bytes;     /* request line + headers */
    unsigned max_headers;        /* header count */
    unsigned drain_s;            /* SIGTERM: wait this long for in-flight */
    size_t limit_capacity;       /* limiter entries; 0: the library's default */
    unsigned lookup_threads;     /* keygated_defer.c's; 0: none */
    unsigned alerts_interval_s;  /* the alerts thread's period */
    kgd_origin_mode origin;
    kg_cidr proxies[KGD_MAX_PROXIES];
    size_t nproxies;
    /* The admin listener (docs/admin-api.md): off while admin_listen is
     * NULL (the policy's admin_listen: is used when none is given). */
    const char *admin_listen;
    const char *admin_cert, *admin_key;   /* PEM files: TLS */
    int admin_insecure;                   /* plain HTTP off loopback */
    int admin_webhook_insecure;           /* customers' receivers: any URL */
    const char *dashboard_dir;
} kgd_conf;

/*
 * Parse the command line into conf (defaults first).  Returns 0 to run,
 * 1 when it printed what was asked (--help, --version) and the process
 * should exit 0, -1 on a usage error (already printed).
 */
int kgd_conf_parse(kgd_conf *conf, int argc, char **argv);
void kgd_usage(FILE *f);

/* The policy keygated serves when no --config / KEYGATE_CONFIG is given:
 * conf/keygate.yaml, embedded at build time (keygated_default.c). */
extern const char kgd_default_policy[];

/* ---- keygated_listen.c -------------------------------------------------- */

/*
 * "127.0.0.1:8080", "[::1]:8080", "localhost:8080", ":8080" (every IPv4
 * address) into a socket address.  Returns 0, or -1 with why in err.
 */
int kgd_listen_parse(const char *spec, struct sockaddr_storage *ss,
                     socklen_t *len_r, char *err, size_t errlen);
/*
 * A bound, listening, non-blocking socket, or -1 with why in err.  The
 * kernel queues up to `backlog` connections not yet accepted (capped by
 * net.core.somaxconn): keygated passes kgd_conn_hard_limit(), so that
 * as many clients as it will answer at once can connect at once (with
 * 1024, 2,000 simultaneous connects overflowed the queue; the
 * overflow's SYNs were dropped and retried a second or more later).
 */
int kgd_listen_open(const char *spec, unsigned backlog, char *err,
                    size_t errlen);
/* The "ADDR:PORT" a socket is bound to (for messages and tests). */
void kgd_listen_name(int fd, char *out, size_t size);

/* ---- keygated_client.c -------------------------------------------------- */

/*
 * The client address of a request that came from `peer` (a numeric
 * address) with the given X-Forwarded-For values (all of them, in
 * order; may be none).  If the peer is not a trusted proxy, it is the
 * client.  Otherwise the list is walked from the right, skipping trusted
 * proxies: the first untrusted address is the client (the left-most
 * entries are the client's to forge).  An entry that is not an address
 * stops the walk at the last trusted hop.  Writes a numeric address to
 * out (at least 64 bytes).
 */
void kgd_client_address(const char *peer, const char *const *xff,
                        size_t nxff, const kg_cidr *trusted, size_t ntrusted,
                        char *out, size_t size);
/* The same walk from the peer in binary, without formatting it: NULL
 * when the client is the peer itself, else the X-Forwarded-For entry
 * that is (a bare numeric address, written in hop, `size` >= 64). */
const char *kgd_client_hop(const unsigned char peer[16],
                           const char *const *xff, size_t nxff,
                           const kg_cidr *trusted, size_t ntrusted,
                           char *hop, size_t size);
int kgd_addr_trusted(const char *addr, const kg_cidr *trusted,
                     size_t ntrusted);
/* A sockaddr into a numeric address (IPv4-mapped IPv6 shown as IPv4). */
void kgd_sockaddr_str(const struct sockaddr *sa, char *out, size_t size);
/* A sockaddr into kg_cidr's binary form (IPv4 as v4-mapped); 0, or -1
 * for a family that is not IP. */
int kgd_sockaddr_bin(const struct sockaddr *sa, unsigned char out[16]);
int kgd_addr_bin_trusted(const unsigned char addr[16], const kg_cidr *trusted,
                         size_t ntrusted);

/* ---- keygated_origin.c -------------------------------------------------- */

/*
 * The original request of a forward-auth call: which method and target
 * the gateway asks about.  raw_uri is the request's own target
 * ("/check/v1/scrape?x=1"); a header value is NULL when absent, and an
 * empty one counts as absent.  *method_r and *target_r point into `in`
 * (*target_r is NULL when there is none: a bare /check).  They are not
 * checked here: kg_request_set_target() checks and normalizes them.
 */
struct kgd_origin_in {
    const char *method;           /* the request's method */
    const char *raw_uri;          /* its target, with the query */
    const char *x_original_method, *x_original_uri;
    const char *x_forwarded_method, *x_forwarded_uri;
};
void kgd_origin(kgd_origin_mode mode, const struct kgd_origin_in *in,
                const char **method_r, const char **target_r);

/* ---- keygated_json.c ---------------------------------------------------- */

/*
 * Append s (n bytes) as a JSON string literal (quotes included) to
 * buf/len/size, escaping quotes, backslashes and control characters and
 * replacing invalid UTF-8 with U+FFFD.  Truncates (never overflows) at
 * size; returns the new length.
 */
size_t kgd_json_str(char *buf, size_t len, size_t size, const char *s,
                    size_t n);
/* Same as kgd_json_str for a NUL-terminated string; NULL gives null. */
size_t kgd_json_cstr(char *buf, size_t len, size_t size, const char *s);
/* v in decimal into out, NUL-terminated (no printf on the request
 * path); returns its length (at most 20). */
size_t kgd_fmt_int(char out[24], long long v);
size_t kgd_appendf(char *buf, size_t len, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* ---- keygated_holder.c -------------------------------------------------- */

typedef struct kgd_policy_ref kgd_policy_ref;

/* Load the first policy (conf->config or the embedded one). */
int kgd_holder_init(kg_context *ctx, const char *config, kg_diag *diag);
/* A reference on the serving policy; give it back with kgd_policy_put. */
kgd_policy_ref *kgd_policy_get(void);
const kg_policy *kgd_policy_of(const kgd_policy_ref *ref);
void kgd_policy_put(kgd_policy_ref *ref);
/* Free the policies no one holds any more (the main thread's job: a
 * request dropping the last reference only puts the policy on a list). */
void kgd_holder_collect(void);
/* How many wait on that list. */
size_t kgd_holder_pending(void);
/*
 * SIGHUP: load the policy again beside the serving one and swap it in;
 * in-flight requests finish on the old one, which goes to be freed by
 * kgd_holder_collect() once the last of them ends.  On failure the old policy keeps serving (its key stores are
 * re-read) and diag says why.  Returns 0 if the new policy serves.
 */
int kgd_holder_reload(kg_diag *diag);
/* Drop the serving policy and free every policy let go of (at exit,
 * after the last request). */
void kgd_holder_shutdown(void);
const char *kgd_holder_source(void);

/* ---- keygated_alerts.c -------------------------------------------------- */

/* Start the thread that evaluates the serving policy's alert rules and
 * sends what is due every `interval` seconds (docs/alerts.md); 0 or -1. */
int kgd_alerts_start(kg_context *ctx, unsigned interval);
/* Stop it (waits for a round under way). */
void kgd_alerts_stop(void);
/* For /metrics: delivery attempts and failed ones, alerts fired and
 * cleared, and the outbox's pending entries (-1: unknown). */
void kgd_alerts_metrics(uint64_t *attempts, uint64_t *failures,
                        uint64_t *fired, uint64_t *cleared, int64_t *depth);

/* ---- keygated_usage.c --------------------------------------------------- */

/* Start the thread that flushes the usage counts every flush_interval
 * of the serving policy; 0 or -1. */
int kgd_usage_start(kg_context *ctx);
/* Stop it (waits for a flush under way). */
void kgd_usage_stop(void);
/* Flush into p's usage store now (nothing without a usage section); a
 * failure is logged once until a flush succeeds again, and drops past
 * max_pending as they grow.  `when` says which ("at reload"). */
void kgd_usage_flush_policy(const kg_policy *p, const char *when);

/* ---- keygated_metrics.c ------------------------------------------------- */

enum kgd_endpoint {
    KGD_EP_CHECK, KGD_EP_WHOAMI, KGD_EP_LEASES, KGD_EP_HEALTHZ,
    KGD_EP_METRICS, KGD_EP_OTHER, KGD_EP__LAST
};

void kgd_metrics_init(void);
void kgd_metrics_request(enum kgd_endpoint ep);
void kgd_metrics_decision(const kg_decision *d, int64_t micros);
void kgd_metrics_reload(int ok);
void kgd_metrics_lease_release(int ok);
void kgd_metrics_rejected(int status);  /* 400/414/431 before a decision */
void kgd_metrics_inflight(int delta);
long kgd_metrics_inflight_now(void);
/* The Prometheus text exposition (malloc()ed; NULL on allocation failure). */
char *kgd_metrics_render(const kg_context *ctx);

/* ---- keygated_log.c ----------------------------------------------------- */

/* "-" (stdout), "off", or a file opened for appending.  0 or -1 (errno). */
int kgd_log_open(const char *target);
/* Reopen the file (SIGHUP; for log rotation). */
void kgd_log_reopen(void);
/* Write out the buffered access lines (every 200 ms, and at exit). */
void kgd_log_flush(void);
void kgd_log_close(void);
struct kgd_access {
    const char *endpoint;    /* "check", "whoami" */
    const char *client;
    const char *method;
    const char *path;
    const kg_decision *d;
    int64_t micros;
};
void kgd_log_access(const struct kgd_access *a);
/* A line for the operator on stderr (journald), with the time. */
void kgd_log_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- keygated_http.c ---------------------------------------------------- */

/*
 * The connections libmicrohttpd accepts on a listener whose limit is
 * `max` (--max-connections): those past max get 503 and are closed, so
 * that a connection the kernel completed is answered rather than left
 * waiting for a slot (docs/keygated.md, "Connections").
 */
unsigned kgd_conn_hard_limit(unsigned max);
/* Start one daemon per socket; 0 or -1 (logged). */
int kgd_http_start(const kgd_conf *conf, kg_context *ctx, const int *fds,
                   size_t nfds);
/* Stop accepting, wait up to conf->drain_s for in-flight requests, stop. */
void kgd_http_stop(unsigned drain_s);
/* libmicrohttpd's messages into keygated's log (its external logger). */
void kgd_mhd_log(void *cls, const char *fmt, va_list ap);

/* ---- keygated_admin.c --------------------------------------------------- */

/*
 * The admin listener: conf->admin_listen (or the policy's admin_listen:)
 * bound and its TLS files read, before privileges are dropped.  0 with
 * *fd_r = -1 when there is none; -1 when it cannot run (logged).
 */
int kgd_admin_open(kgd_conf *conf, int *fd_r);
/* Start its daemon on fd; 0 or -1 (logged; fd closed). */
int kgd_admin_start(const kgd_conf *conf, kg_context *ctx, int fd);
void kgd_admin_stop(void);

/* ---- keygated_head.c ---------------------------------------------------- */

struct MHD_Connection;
/* The per-connection memory libmicrohttpd is given (its pool). */
size_t kgd_head_pool(const kgd_conf *conf);
/*
 * Called once the request's head is in.  A head over --max-header-bytes,
 * or one that left libmicrohttpd too little room to build an answer, is
 * answered 414 (a long request line) or 431 and *refused_r set; the
 * result is then dispatch's.  Otherwise *refused_r is 0.
 */
int kgd_head_refuse(struct MHD_Connection *conn, const kgd_conf *conf,
                    const char *method, const char *raw_uri,
                    const char *version, int *refused_r);

/* ---- keygated_reply.c --------------------------------------------------- */

struct kgd_hdr {
    const char *name, *value;
};
/* What a worker thread keeps from one request to the next: made on its
 * first request, freed when it exits. */
struct kgd_worker {
    kg_request *req;                /* reset for each check */
    struct MHD_Response *allowed;   /* kgd_reply_reused's */
};
/* This thread's, or NULL if out of memory. */
struct kgd_worker *kgd_worker(void);
#define KGD_MAX_ANSWER_HEADERS 24
/*
 * Queue `status` with headers h[0..n) and an empty body on this
 * thread's reused response (an allowed /check's answer); falls back to
 * a fresh one if that cannot be edited.  The strings need only last the
 * call.  Returns what MHD_queue_response returns.
 */
int kgd_reply_reused(struct MHD_Connection *conn, unsigned status,
                     const struct kgd_hdr *h, size_t n);
/* The same on a response of its own, with a body (copied). */
int kgd_reply_fresh(struct MHD_Connection *conn, unsigned status,
                    const char *body, size_t len, const struct kgd_hdr *h,
                    size_t n);

/* ---- keygated_defer.c --------------------------------------------------- */

/*
 * Work for the lookup threads: run() is called once, on one of them;
 * `cancelled` is 1 when keygated stops before the job started (run()
 * must still finish it, without waiting on anything).
 */
struct kgd_job {
    struct kgd_job *next;
    void (*run)(struct kgd_job *job, int cancelled);
};
/* Start n threads; 0 on success (n 0: nothing to start), -1 (logged). */
int kgd_defer_start(unsigned n);
/* 1 if started with threads. */
int kgd_defer_on(void);
/* Queue a job (FIFO).  0, or -1 if stopping or not started.  Once the
 * job is sure to run, and before any thread can run it, admitted(arg) is
 * called (under the queue's lock: it must not take long). */
int kgd_defer_submit(struct kgd_job *job, void (*admitted)(void *arg),
                     void *arg);
/* Run what is queued cancelled, wait for the jobs running, join. */
void kgd_defer_stop(void);

/* ---- keygated_check.c --------------------------------------------------- */

struct kgd_reqctx;
/* The shared state the handlers read. */
typedef struct kgd_server {
    const kgd_conf *conf;
    kg_context *ctx;
} kgd_server;

/*
 * A connection's check that went to the lookup threads (its store would
 * have waited on the network): made on the first one, reused, freed
 * with the connection.  While it runs, the connection is suspended.
 */
struct kgd_pending;
void kgd_pending_free(struct kgd_pending *p);
/* 1 when the connection was resumed with its decision to answer. */
int kgd_pending_ready(const struct kgd_pending *p);
/* Answer it (on the connection's worker thread, after the resume). */
int kgd_pending_answer(struct MHD_Connection *conn, struct kgd_pending *p);

/* The JSON error body {"error":{"code":...,"message":...}} into buf
 * (truncated at size); returns its length. */
size_t kgd_error_body(char *buf, size_t size, const char *code,
                      const char *message);
/* A JSON error answer {"error":{"code":...,"message":...}}. */
int kgd_respond_error(struct MHD_Connection *conn, unsigned status,
                      const char *code, const char *message);
/*
 * /check or /whoami.  A check whose store would wait on the network is
 * handed to the lookup threads (when they run): the connection is
 * suspended, *pend_r (the connection's, made if NULL) holds the check,
 * and MHD_YES is returned with no answer queued; libmicrohttpd calls the
 * handler again once it is resumed, which answers with
 * kgd_pending_answer().
 */
int kgd_handle_check(const kgd_server *srv, struct MHD_Connection *conn,
                     const char *url, const char *method,
                     const char *raw_uri, int whoami,
                     struct kgd_pending **pend_r);

#endif
