/*
 * keygated_check.c - /check and /whoami: an HTTP request into a
 * kg_request, the policy's decision into an HTTP answer.
 *
 * /check (any method, any path below it) answers the gateway:
 *   allowed  200, the decision's rate-limit headers and, for the
 *            upstream, X-Keygate-Key-Id / -Account / -Plan / -Priority /
 *            -Lease;
 *   denied   the decision's status, JSON body and headers, plus
 *            X-Keygate-Status / -Code carrying the same in headers for
 *            nginx, whose auth_request drops the body and turns any
 *            status but 2xx/401/403 into 500 (the shipped snippet
 *            restores them from these headers), and X-Keygate-Error (the
 *            body again) when the request asks for it with
 *            X-Keygate-Want-Error (the nginx snippet does).
 * /whoami authenticates without consuming quota and answers the record.
 *
 * A check whose key store would wait on the network (LDAP, PostgreSQL,
 * the record not fresh in the cache) is not run on the worker thread,
 * which serves other connections too: the worker checks with
 * kg_request_set_nowait(), and on KG_ERR_WOULD_BLOCK suspends the
 * connection and hands the request to the lookup threads
 * (keygated_defer.c), which check and resume it; the worker answers it
 * when libmicrohttpd calls the handler again (kgd_pending_answer).
 *
 * Per request, nothing is allocated once a thread has served one: the
 * thread keeps its kg_request (reset, not rebuilt), the headers are lent
 * to it from libmicrohttpd's connection memory (which holds them for the
 * whole request), the client address goes in binary, the decision is
 * the thread's spare one and renders into its own storage, and the
 * answer is the thread's reused response (keygated_reply.c).  A
 * connection whose check went to the lookup threads keeps the pending
 * check it made (and its spare request) until it closes.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <microhttpd.h>

#include "keygated.h"

#define MAX_XFF 16

/* The headers that name the original request: each may come once. */
enum { H_ORIG_METHOD, H_ORIG_URI, H_FWD_METHOD, H_FWD_URI, H__N };
static const char *const origin_headers[H__N] = {
    "X-Original-Method", "X-Original-URI", "X-Forwarded-Method", "X-Forwarded-Uri"
};
/* Their lengths: a header of another length is not one of them. */
static const size_t origin_len[H__N] = {
    sizeof("X-Original-Method") - 1, sizeof("X-Original-URI") - 1,
    sizeof("X-Forwarded-Method") - 1, sizeof("X-Forwarded-Uri") - 1
};

struct collect {
    kg_request *req;
    unsigned count;
    int oom;
    int want_error;           /* X-Keygate-Want-Error came */
    const char *xff[MAX_XFF];
    size_t nxff;
    const char *origin[H__N];
    unsigned norigin[H__N];
    const char *bad_origin;   /* one of them came twice or holds a NUL */
};

/* Whether header `key` (`key_size` bytes) is `name` (a literal):
 * lengths first, so that most headers cost no strcasecmp. */
#define HEADER_IS(key, key_size, name) \
    ((key_size) == sizeof(name) - 1 && strcasecmp((key), (name)) == 0)

static enum MHD_Result collect_header(void *cls, enum MHD_ValueKind kind,
                                      const char *key, size_t key_size,
                                      const char *value, size_t value_size)
{
    struct collect *c = cls;
    size_t i;
    (void)kind;

    c->count++;
    if (value == NULL) {
        value = "";
        value_size = 0;
    }
    /* Lent, not copied: libmicrohttpd keeps the head (NUL-terminated
     * names and values) in the connection's memory until the request
     * completes, after the check. */
    if (kg_request_add_header_ref(c->req, key, value, value_size) != KG_OK)
        c->oom = 1;
    /* Two of a header that names the original request make it
     * ambiguous: which of them did the gateway mean, and which one did a
     * client add?  Refused, never first-wins; so is one with a NUL. */
    for (i = 0; i < H__N; i++) {
        if (key_size != origin_len[i] || strcasecmp(key, origin_headers[i]) != 0)
            continue;
        if (++c->norigin[i] > 1 || strlen(value) != value_size)
            c->bad_origin = origin_headers[i];
        c->origin[i] = value;
        return MHD_YES;
    }
    /* libmicrohttpd 0.9.75 ends a value at its first NUL (and gives that
     * length), so the credential plugins see what precedes it only
     * (docs/keygated.md, "Limits on input").  Should a value hold a NUL,
     * it is not an address list, and is ignored here. */
    if (HEADER_IS(key, key_size, "X-Forwarded-For")) {
        if (c->nxff < MAX_XFF && strlen(value) == value_size)
            c->xff[c->nxff++] = value;
    } else if (HEADER_IS(key, key_size, "X-Keygate-Want-Error")) {
        if (value_size > 0 && strlen(value) == value_size)
            c->want_error = 1;
    }
    return MHD_YES;
}

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/*
 * What keygated adds for the upstream on a decision that identified a
 * key: a header per line, from the decision's getters (a string, or an
 * integer sent only for a decision with a plan).  Adding one is a line.
 */
static const struct {
    const char *name;
    const char *(*str)(const kg_decision *d);
    int (*num)(const kg_decision *d);
} upstream_headers[] = {
    { "X-Keygate-Key-Id", kg_decision_key_id, NULL },
    /* The account's id only: its external id and metadata are in
     * /whoami, not headers the gateway snippets would have to clear
     * (docs/keygated.md "Headers"). */
    { "X-Keygate-Account", kg_decision_account_id, NULL },
    { "X-Keygate-Plan", kg_decision_plan, NULL },
    { "X-Keygate-Priority", NULL, kg_decision_priority },
    { "X-Keygate-Lease", kg_decision_lease, NULL },
};
#define N_UPSTREAM (sizeof(upstream_headers) / sizeof(upstream_headers[0]))

/* The answer's headers, pointing into the decision and into `nums`
 * (room for the integers), valid as long as both are. */
struct answer {
    struct kgd_hdr h[KGD_MAX_ANSWER_HEADERS];
    size_t n;
    char nums[N_UPSTREAM][24];
};

static void put(struct answer *a, const char *name, const char *value)
{
    if (value != NULL && *value != '\0' && a->n < KGD_MAX_ANSWER_HEADERS) {
        a->h[a->n].name = name;
        a->h[a->n].value = value;
        a->n++;
    }
}

/* The decision's own headers, then the upstream's. */
static void decision_headers(struct answer *a, const kg_decision *d)
{
    size_t i, n = kg_decision_header_count(d);

    for (i = 0; i < n; i++) {
        const char *name, *value;
        if (kg_decision_header(d, i, &name, &value) == KG_OK)
            put(a, name, value);
    }
    for (i = 0; i < N_UPSTREAM; i++) {
        if (upstream_headers[i].str != NULL) {
            put(a, upstream_headers[i].name, upstream_headers[i].str(d));
        } else if (kg_decision_plan(d) != NULL) {
            kgd_fmt_int(a->nums[i], upstream_headers[i].num(d));
            put(a, upstream_headers[i].name, a->nums[i]);
        }
    }
}

static int respond_denied(struct MHD_Connection *conn, const kg_decision *d,
                          int want_error)
{
    const char *body = kg_decision_body(d);
    struct answer a;
    char status[8];

    a.n = 0;
    put(&a, "Content-Type", "application/json");
    put(&a, "Cache-Control", "no-store");
    decision_headers(&a, d);
    snprintf(status, sizeof(status), "%d", kg_decision_status(d));
    put(&a, "X-Keygate-Status", status);
    put(&a, "X-Keygate-Code", kg_code_name(kg_decision_code(d)));
    if (want_error)
        put(&a, "X-Keygate-Error", body);
    return kgd_reply_fresh(conn, (unsigned)kg_decision_status(d), body,
                           strlen(body), a.h, a.n);
}

static int respond_allowed(struct MHD_Connection *conn, const kg_decision *d)
{
    struct answer a;

    a.n = 0;
    put(&a, "Cache-Control", "no-store");
    decision_headers(&a, d);
    return kgd_reply_reused(conn, MHD_HTTP_OK, a.h, a.n);
}

/* GET /whoami when the key is good: the record, its account (id,
 * external id, metadata; null if its store keeps none), its plan and
 * limits. */
static int respond_whoami(struct MHD_Connection *conn, const kg_decision *d)
{
    char *rec = kg_decision_record_json(d);
    const char *acct = kg_decision_account_id(d);
    const char *ext = kg_decision_account_external_id(d);
    const char *meta = kg_decision_account_metadata(d);
    size_t cap, len = 0, i, n = kg_decision_limit_count(d);
    char *buf;
    struct MHD_Response *r;
    int ret;

    if (rec == NULL)
        return MHD_NO;
    cap = strlen(rec) + 256 + n * 256;
    if (acct != NULL)   /* escaped, at most 6 bytes a byte */
        cap += 64 + 6 * (strlen(acct) + strlen(ext ? ext : "")) +
               (meta ? strlen(meta) : 0);
    buf = malloc(cap);
    if (buf == NULL) {
        free(rec);
        return MHD_NO;
    }
    buf[0] = '\0';
    len = kgd_appendf(buf, len, cap, "{\"key\":%s,\"account\":", rec);
    if (acct != NULL) {
        /* metadata: a JSON object, kept compact by the library */
        len = kgd_appendf(buf, len, cap, "{\"id\":");
        len = kgd_json_cstr(buf, len, cap, acct);
        len = kgd_appendf(buf, len, cap, ",\"external_id\":");
        len = kgd_json_cstr(buf, len, cap, ext);
        len = kgd_appendf(buf, len, cap, ",\"metadata\":%s}", meta ? meta : "null");
    } else {
        len = kgd_appendf(buf, len, cap, "null");
    }
    len = kgd_appendf(buf, len, cap, ",\"plan\":");
    len = kgd_json_cstr(buf, len, cap, kg_decision_plan(d));
    len = kgd_appendf(buf, len, cap, ",\"priority\":%d,\"limits\":[",
                      kg_decision_priority(d));
    for (i = 0; i < n; i++) {
        const char *name;
        int64_t limit, remaining, reset, window;
        if (kg_decision_limit(d, i, &name, &limit, &remaining, &reset,
                              &window) != KG_OK)
            continue;
        len = kgd_appendf(buf, len, cap, "%s{\"name\":", i ? "," : "");
        len = kgd_json_cstr(buf, len, cap, name);
        len = kgd_appendf(buf, len, cap, ",\"limit\":%lld,\"remaining\":%lld,"
                          "\"reset\":%lld,\"window\":%lld}", (long long)limit,
                          (long long)remaining, (long long)reset,
                          (long long)window);
    }
    len = kgd_appendf(buf, len, cap, "]}\n");
    free(rec);
    r = MHD_create_response_from_buffer(len, buf, MHD_RESPMEM_MUST_FREE);
    if (r == NULL) {
        free(buf);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", "application/json");
    MHD_add_response_header(r, "Cache-Control", "no-store");
    for (i = 0; i < kg_decision_header_count(d); i++) {
        const char *name, *value;
        if (kg_decision_header(d, i, &name, &value) == KG_OK)
            MHD_add_response_header(r, name, value);
    }
    ret = MHD_queue_response(conn, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return ret;
}

size_t kgd_error_body(char *buf, size_t size, const char *code,
                      const char *message)
{
    size_t n = 0;

    n = kgd_appendf(buf, n, size, "{\"error\":{\"code\":");
    n = kgd_json_cstr(buf, n, size, code);
    n = kgd_appendf(buf, n, size, ",\"message\":");
    n = kgd_json_cstr(buf, n, size, message);
    return kgd_appendf(buf, n, size, "}}");
}

int kgd_respond_error(struct MHD_Connection *conn, unsigned status,
                      const char *code, const char *message)
{
    char body[512];
    size_t n = kgd_error_body(body, sizeof(body), code, message);
    struct MHD_Response *r;
    int ret;

    r = MHD_create_response_from_buffer(n, body, MHD_RESPMEM_MUST_COPY);
    if (r == NULL)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", "application/json");
    MHD_add_response_header(r, "Cache-Control", "no-store");
    ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

/* The client: the TCP peer, in binary, unless it is a trusted proxy
 * that sent X-Forwarded-For (then keygated_client.c walks the list). */
static kg_error set_client(const kgd_conf *conf, struct MHD_Connection *conn,
                           const struct collect *c)
{
    const union MHD_ConnectionInfo *ci;
    unsigned char peer[16];
    char hop[64];
    const char *client;

    ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (ci == NULL || ci->client_addr == NULL ||
        kgd_sockaddr_bin(ci->client_addr, peer) != 0)
        return KG_OK;   /* no address: ipacl fails closed */
    /* The peer stays binary; only an X-Forwarded-For entry is text. */
    client = c->nxff == 0 ? NULL
                          : kgd_client_hop(peer, c->xff, c->nxff, conf->proxies,
                                           conf->nproxies, hop, sizeof(hop));
    return client != NULL ? kg_request_set_client(c->req, client)
                          : kg_request_set_client_addr(c->req, ci->client_addr);
}

/* What the answer to a check needs besides its decision. */
struct finish {
    int whoami, want_error;
    const char *method;   /* the request's own (/whoami's log line) */
    int64_t t0;
};

/* Log and count the decision, and answer it. */
static int answer(struct MHD_Connection *conn, const kg_request *req,
                  const kg_decision *d, const struct finish *f)
{
    struct kgd_access a;
    int64_t us = now_us() - f->t0;

    a.endpoint = f->whoami ? "whoami" : "check";
    a.client = kg_request_client(req);
    /* The normalized path (a query may hold secrets); null for none, or
     * for one refused as malformed. */
    a.method = f->whoami ? f->method : kg_request_method(req);
    a.path = f->whoami ? "/whoami" : kg_request_path(req);
    if (*a.method == '\0')
        a.method = NULL;
    if (*a.path == '\0')
        a.path = NULL;
    a.d = d;
    a.micros = us;
    kgd_metrics_decision(d, us);
    kgd_log_access(&a);
    if (!kg_decision_allowed(d))
        return respond_denied(conn, d, f->want_error);
    if (f->whoami)
        return respond_whoami(conn, d);
    return respond_allowed(conn, d);
}

/* The check, with a reference on the serving policy: KG_ERR_UNAVAILABLE
 * (no decision) when keygated is shutting down. */
static kg_error run_check(kg_request *req, int whoami, kg_decision **d_r)
{
    kgd_policy_ref *ref = kgd_policy_get();
    kg_error e;

    *d_r = NULL;
    if (ref == NULL)
        return KG_ERR_UNAVAILABLE;
    e = whoami ? kg_check_peek(kgd_policy_of(ref), req, d_r)
               : kg_check(kgd_policy_of(ref), req, d_r);
    kgd_policy_put(ref);
    return e;
}

static int shutting_down(struct MHD_Connection *conn)
{
    return kgd_respond_error(conn, 503, "auth_unavailable",
                             "keygated is shutting down");
}

/* ---- checks on the lookup threads ---------------------------------------- */

struct kgd_pending {
    struct kgd_job job;             /* first: the lookup threads' */
    struct MHD_Connection *conn;
    kg_request *req;                /* swapped with the worker's */
    kg_decision *d;
    kg_error e;
    struct finish f;
    int ready;                      /* checked; read after the resume */
};

/* On a lookup thread.  The resume (under libmicrohttpd's lock, which
 * the worker takes before it calls the handler again) publishes d, e
 * and ready to the worker. */
static void pending_run(struct kgd_job *job, int cancelled)
{
    struct kgd_pending *p = (struct kgd_pending *)job;

    p->d = NULL;
    if (cancelled) {
        p->e = KG_ERR_UNAVAILABLE;
    } else {
        kg_request_set_nowait(p->req, 0);
        p->e = run_check(p->req, p->f.whoami, &p->d);
    }
    p->ready = 1;
    MHD_resume_connection(p->conn);
}

void kgd_pending_free(struct kgd_pending *p)
{
    if (p == NULL)
        return;
    kg_decision_free(p->d);
    kg_request_free(p->req);
    free(p);
}

int kgd_pending_ready(const struct kgd_pending *p)
{
    return p != NULL && p->ready;
}

int kgd_pending_answer(struct MHD_Connection *conn, struct kgd_pending *p)
{
    int ret = MHD_NO;

    p->ready = 0;
    if (p->e == KG_ERR_UNAVAILABLE)
        ret = shutting_down(conn);
    else if (p->e == KG_OK)
        ret = answer(conn, p->req, p->d, &p->f);
    kg_decision_free(p->d);
    p->d = NULL;
    /* Drop the lent headers now: the connection's memory is reused. */
    kg_request_reset(p->req);
    return ret;
}

static void suspend(void *conn)
{
    MHD_suspend_connection(conn);
}

/*
 * Hand the worker's filled request to the lookup threads (swapped with
 * the connection's spare one, so that neither is copied), the connection
 * suspended before a lookup thread can resume it.  -1 if that cannot be
 * done (out of memory, stopping): the caller checks here.
 */
static int defer(struct MHD_Connection *conn, struct kgd_worker *w,
                 struct kgd_pending **pend_r, const struct finish *f)
{
    struct kgd_pending *p = *pend_r;
    kg_request *spare;

    if (p == NULL) {
        if ((p = calloc(1, sizeof(*p))) == NULL)
            return -1;
        if (kg_request_new(&p->req) != KG_OK) {
            free(p);
            return -1;
        }
        p->job.run = pending_run;
        *pend_r = p;
    }
    p->conn = conn;
    p->f = *f;
    p->ready = 0;
    spare = p->req;
    p->req = w->req;
    w->req = spare;
    if (kgd_defer_submit(&p->job, suspend, conn) == 0)
        return 0;
    /* Stopping: take the request back and check here. */
    w->req = p->req;
    p->req = spare;
    return -1;
}

int kgd_handle_check(const kgd_server *srv, struct MHD_Connection *conn,
                     const char *url, const char *method,
                     const char *raw_uri, int whoami,
                     struct kgd_pending **pend_r)
{
    const kgd_conf *conf = srv->conf;
    struct kgd_worker *w;
    struct collect c;
    struct finish f;
    kg_decision *d = NULL;
    kg_error e;
    int ret = MHD_NO;

    f.t0 = now_us();
    memset(&c, 0, sizeof(c));
    if ((w = kgd_worker()) == NULL)
        return MHD_NO;
    c.req = w->req;
    kg_request_reset(c.req);
    MHD_get_connection_values_n(conn, MHD_HEADER_KIND, collect_header, &c);
    if (c.oom)
        goto out;
    if (c.count > conf->max_headers) {
        kgd_metrics_rejected(431);
        ret = kgd_respond_error(conn, 431, "invalid_request",
                                "too many request headers");
        goto out;
    }
    if (c.bad_origin != NULL) {
        char msg[128];
        snprintf(msg, sizeof(msg), "%s must come once, without NUL bytes",
                 c.bad_origin);
        kgd_metrics_rejected(400);
        ret = kgd_respond_error(conn, 400, "invalid_request", msg);
        goto out;
    }
    if (whoami) {
        e = kg_request_set_key_only(c.req);
    } else {
        struct kgd_origin_in oi;
        const char *om, *ot;
        memset(&oi, 0, sizeof(oi));
        oi.method = method;
        oi.raw_uri = raw_uri ? raw_uri : url;
        oi.x_original_method = c.origin[H_ORIG_METHOD];
        oi.x_original_uri = c.origin[H_ORIG_URI];
        oi.x_forwarded_method = c.origin[H_FWD_METHOD];
        oi.x_forwarded_uri = c.origin[H_FWD_URI];
        kgd_origin(conf->origin, &oi, &om, &ot);
        /* A bad method or target (KG_ERR_INVALID) is refused by the
         * check itself, as the command line and an embedder see it;
         * without a target (a bare /check) only the method is set, and
         * a route check fails closed. */
        e = ot != NULL ? kg_request_set_target(c.req, om, ot)
                       : kg_request_set_method(c.req, om);
    }
    if (e == KG_ERR_NOMEM)
        goto out;
    if (!whoami) {
        /* /check?lease=none: limits by rate only, no lease to release
         * (docs/keygated.md, "/check and leases"). */
        const char *lease = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND,
                                                        "lease");
        if (lease != NULL && strcmp(lease, "none") != 0) {
            kgd_metrics_rejected(400);
            ret = kgd_respond_error(conn, 400, "invalid_request",
                                    "lease may only be 'none' (/check?lease=none)");
            goto out;
        }
        if (lease != NULL && kg_request_set_no_lease(c.req, 1) != KG_OK)
            goto out;
    }
    if (set_client(conf, conn, &c) == KG_ERR_NOMEM)
        goto out;

    f.whoami = whoami;
    f.want_error = c.want_error;
    f.method = method;
    /* Never wait here while lookup threads can (see the top). */
    if (kgd_defer_on())
        kg_request_set_nowait(c.req, 1);
    e = run_check(c.req, whoami, &d);
    if (e == KG_ERR_WOULD_BLOCK) {
        if (defer(conn, w, pend_r, &f) == 0)
            return MHD_YES;   /* answered when resumed */
        kg_request_set_nowait(c.req, 0);
        e = run_check(c.req, whoami, &d);
    }
    if (e == KG_ERR_UNAVAILABLE)
        ret = shutting_down(conn);
    else if (e == KG_OK)
        ret = answer(conn, c.req, d, &f);
out:
    kg_decision_free(d);
    /* Drop the lent headers now: the connection's memory is reused. */
    kg_request_reset(c.req);
    return ret;
}
