/*
 * ngx_http_keygate_request.c - one request through keygate inside nginx:
 *
 *   access phase   the nginx request into a kg_request (method, target as
 *                  the client sent it, headers, $remote_addr), kg_check();
 *                  a denial is answered here (status, JSON body,
 *                  WWW-Authenticate, Retry-After, rate-limit headers); an
 *                  allowed request goes on with the client's X-Keygate-*
 *                  headers replaced by the decision's;
 *   header filter  the decision's rate-limit headers on whatever answers
 *                  an allowed request (the upstream, its errors, nginx's);
 *   log phase      the concurrency lease released: it runs for every
 *                  request, clients that hung up and upstream errors too.
 *
 * kg_check() runs in the worker: the memory limiter and the state file
 * never block.  A policy that may wait on the network (an LDAP or
 * PostgreSQL store, a Redis limit: kg_policy_may_wait) has the checks
 * that would wait run on nginx's thread pool, the request suspended
 * meanwhile (docs/nginx.md "Stores and limits that wait").
 */
#include "ngx_http_keygate.h"

static void ngx_http_keygate_cleanup(void *data);

/* Headers the upstream gets from the module, and no client may send. */
static const char  kg_upstream_prefix[] = "x-keygate-";
static const char  kg_cache_control[] = "Cache-Control";


ngx_http_keygate_state_t *
ngx_http_keygate_state(ngx_http_request_t *r)
{
    ngx_http_keygate_state_t  *st;
    ngx_pool_cleanup_t        *cln;

    r = r->main;
    st = ngx_http_get_module_ctx(r, ngx_http_keygate_module);
    if (st != NULL) {
        return st;
    }
    /* after an internal redirect: the cleanup still holds it */
    for (cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler == ngx_http_keygate_cleanup) {
            st = cln->data;
            ngx_http_set_ctx(r, st, ngx_http_keygate_module);
            return st;
        }
    }
    return NULL;
}

#if (NGX_THREADS)
/*
 * A lease kept in Redis is released on the pool, by its text (copied
 * with the task: the decision stays the request's, whose $keygate_*
 * the access log may still read); the task's memory is freed back on
 * the event loop.
 */
typedef struct {
    kg_context  *ctx;
    char         lease[1];      /* NUL-terminated, as long as it is */
} ngx_http_keygate_release_t;

static void
ngx_http_keygate_release_run(void *data, ngx_log_t *log)
{
    ngx_http_keygate_release_t  *rel = data;

    (void) log;
    (void) kg_release(rel->ctx, rel->lease);
}

static void
ngx_http_keygate_release_done(ngx_event_t *ev)
{
    ngx_free(ev->data);
}

/* 1 if the release went to the pool. */
static ngx_int_t
ngx_http_keygate_release_later(ngx_http_keygate_state_t *st)
{
    ngx_thread_task_t           *task;
    ngx_http_keygate_release_t  *rel;
    const char                  *lease;
    size_t                       len;

    if (!(st->kmcf->may_wait & KG_WAITS_ALWAYS) || st->kmcf->thread_pool == NULL
        || (lease = kg_decision_lease(st->decision)) == NULL)
    {
        return 0;
    }
    len = ngx_strlen(lease);
    task = ngx_calloc(sizeof(ngx_thread_task_t)
                      + sizeof(ngx_http_keygate_release_t) + len, ngx_cycle->log);
    if (task == NULL) {
        return 0;
    }
    rel = (ngx_http_keygate_release_t *) (task + 1);
    rel->ctx = st->kmcf->ctx;
    ngx_memcpy(rel->lease, lease, len + 1);
    task->ctx = rel;
    task->handler = ngx_http_keygate_release_run;
    task->event.data = task;
    task->event.handler = ngx_http_keygate_release_done;
    task->event.log = ngx_cycle->log;
    if (ngx_thread_task_post(st->kmcf->thread_pool, task) != NGX_OK) {
        ngx_free(task);
        return 0;
    }
    return 1;
}
#endif

/* Release the lease once: from the log phase, or at the latest here;
 * by the decision, which remembers where its leases are (no parsing).
 * One kept in Redis waits on the network: on the pool. */
static void
ngx_http_keygate_release(ngx_http_keygate_state_t *st)
{
    if (st->released || st->decision == NULL) {
        return;
    }
    st->released = 1;
#if (NGX_THREADS)
    if (ngx_http_keygate_release_later(st)) {
        return;
    }
#endif
    if (st->kmcf->ctx != NULL) {
        (void) kg_decision_release(st->kmcf->ctx, st->decision);
    }
}

static void
ngx_http_keygate_cleanup(void *data)
{
    ngx_http_keygate_state_t  *st = data;

    ngx_http_keygate_release(st);
    kg_decision_free(st->decision);
    st->decision = NULL;
}

/* The next element of a header list (*part from the list's first part,
 * *i from 0), or NULL after the last. */
static ngx_table_elt_t *
ngx_http_keygate_next(ngx_list_part_t **part, ngx_uint_t *i)
{
    while (*i >= (*part)->nelts) {
        if ((*part)->next == NULL) {
            return NULL;
        }
        *part = (*part)->next;
        *i = 0;
    }
    return (ngx_table_elt_t *) (*part)->elts + (*i)++;
}

/* A NUL-terminated copy of an nginx string, from the request's pool. */
static char *
ngx_http_keygate_cstr(ngx_pool_t *pool, ngx_str_t *s)
{
    u_char  *p = ngx_pnalloc(pool, s->len + 1);

    if (p != NULL) {
        ngx_memcpy(p, s->data, s->len);
        p[s->len] = '\0';
    }
    return (char *) p;
}

/*
 * The request as libkeygate sees it.  The target is the client's own
 * (r->unparsed_uri, query included): libkeygate normalizes it and
 * refuses what upstreams would read differently, so that the module
 * and keygated judge one request the same way.  The client is
 * $remote_addr: the realip module's, where the operator configured it.
 */
static kg_error
ngx_http_keygate_build(ngx_http_request_t *r, kg_request *req)
{
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;
    ngx_uint_t        i;
    char             *method, *target;
    kg_error          e;

    kg_request_reset(req);
    method = ngx_http_keygate_cstr(r->pool, &r->method_name);
    target = ngx_http_keygate_cstr(r->pool, &r->unparsed_uri);
    if (method == NULL || target == NULL) {
        return KG_ERR_NOMEM;
    }
    /* KG_ERR_INVALID: kg_check() refuses the request (400) itself */
    e = kg_request_set_target(req, method, target);
    if (e == KG_ERR_NOMEM) {
        return e;
    }
    /* $remote_addr's address, in binary (the realip module replaces
     * both); a unix socket's is none: no client, and a network check
     * fails closed */
    (void) kg_request_set_client_addr(req, r->connection->sockaddr);

    part = &r->headers_in.headers.part;
    i = 0;
    while ((h = ngx_http_keygate_next(&part, &i)) != NULL) {
        e = kg_request_add_header_n(req, (const char *) h->key.data,
                                    h->key.len, (const char *) h->value.data,
                                    h->value.len);
        if (e != KG_OK) {
            return e;
        }
    }
    return KG_OK;
}

/*
 * A header's name as nginx keeps it: the name, its lower-case form and
 * the hash nginx gives a parsed request header (proxy_set_header finds
 * one by it), worked out once per worker for the few names the module
 * adds, not for every request.  The module's own X-Keygate-* request
 * headers are fixed; a decision's response headers are libkeygate's
 * static strings, each remembered by its address the first time it is
 * seen (docs/nginx.md "Speed").
 */
typedef struct {
    const char  *name;      /* libkeygate's string (its address is the key) */
    ngx_str_t    key;
    u_char      *lowcase;
    ngx_uint_t   hash;
} ngx_http_keygate_name_t;

enum {
    KG_HDR_KEY_ID,
    KG_HDR_ACCOUNT,
    KG_HDR_PLAN,
    KG_HDR_PRIORITY,
    KG_HDR_FIXED
};

/* 16 names: the fixed four and libkeygate's seven response headers,
 * with room to spare; a name past them is set up per request. */
static ngx_http_keygate_name_t  ngx_http_keygate_names[16] = {
    { "X-Keygate-Key-Id", ngx_null_string, NULL, 0 },
    { "X-Keygate-Account", ngx_null_string, NULL, 0 },
    { "X-Keygate-Plan", ngx_null_string, NULL, 0 },
    { "X-Keygate-Priority", ngx_null_string, NULL, 0 },
};
static ngx_uint_t  ngx_http_keygate_nnames;
/* The k-th header of the last response and its set-up name. */
static const char               *ngx_http_keygate_seen[16];
static ngx_http_keygate_name_t  *ngx_http_keygate_seen_hn[16];
/* The first letters (lower case) of every name set up: an upstream's
 * header that begins with none of them is no header of the module's. */
static u_char      ngx_http_keygate_first[256];

/* Set up n (name filled in) from the pool; NGX_OK or NGX_ERROR. */
static ngx_int_t
ngx_http_keygate_name_init(ngx_pool_t *pool, ngx_http_keygate_name_t *n)
{
    size_t  len = ngx_strlen(n->name);

    n->lowcase = ngx_pnalloc(pool, len + 1);
    if (n->lowcase == NULL) {
        return NGX_ERROR;
    }
    n->key.data = (u_char *) n->name;
    n->key.len = len;
    n->hash = ngx_hash_strlow(n->lowcase, n->key.data, len);
    n->lowcase[len] = '\0';
    ngx_http_keygate_first[n->lowcase[0]] = 1;
    return NGX_OK;
}

ngx_int_t
ngx_http_keygate_names_init(ngx_pool_t *pool)
{
    ngx_uint_t  i;

    for (i = 0; i < KG_HDR_FIXED; i++) {
        if (ngx_http_keygate_name_init(pool, &ngx_http_keygate_names[i])
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }
    ngx_http_keygate_nnames = KG_HDR_FIXED;
    return NGX_OK;
}

/* The set-up form of a libkeygate header name (static: found by its
 * address), or NULL out of memory. */
static ngx_http_keygate_name_t *
ngx_http_keygate_name(ngx_http_request_t *r, const char *name)
{
    ngx_http_keygate_name_t  *n;
    ngx_uint_t                i;

    for (i = KG_HDR_FIXED; i < ngx_http_keygate_nnames; i++) {
        if (ngx_http_keygate_names[i].name == name) {
            return &ngx_http_keygate_names[i];
        }
    }
    if (ngx_http_keygate_nnames < sizeof(ngx_http_keygate_names)
                                  / sizeof(ngx_http_keygate_names[0]))
    {
        /* the cycle's pool: kept as long as the worker */
        n = &ngx_http_keygate_names[ngx_http_keygate_nnames];
        n->name = name;
        if (ngx_http_keygate_name_init(ngx_cycle->pool, n) != NGX_OK) {
            return NULL;
        }
        ngx_http_keygate_nnames++;
        return n;
    }
    n = ngx_palloc(r->pool, sizeof(*n));
    if (n == NULL) {
        return NULL;
    }
    n->name = name;
    return ngx_http_keygate_name_init(r->pool, n) == NGX_OK ? n : NULL;
}

/*
 * Append "name: value" to a header list.  Neither is copied: the name is
 * set up once (above), the value is the decision's, which lives as long
 * as the request (its pool's cleanup frees it), or the caller's from the
 * request's pool.
 */
static ngx_int_t
ngx_http_keygate_push(ngx_list_t *list, ngx_http_keygate_name_t *n,
    const char *value, size_t vlen)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(list);
    if (h == NULL) {
        return NGX_ERROR;
    }
    h->hash = n->hash;
    h->key = n->key;
    h->lowcase_key = n->lowcase;
    h->value.len = vlen;
    h->value.data = (u_char *) value;
#if (nginx_version >= 1023000)
    h->next = NULL;
#endif
    return NGX_OK;
}

/* The same for a NUL-terminated value. */
static ngx_int_t
ngx_http_keygate_push_s(ngx_list_t *list, ngx_http_keygate_name_t *n,
    const char *value)
{
    return ngx_http_keygate_push(list, n, value, ngx_strlen(value));
}

/*
 * Take every header named X-Keygate-* out of r->headers_in without moving
 * any element: nginx keeps pointers to parsed headers (headers_in.host,
 * .user_agent, ...), so a part holding one is split around it instead.
 * Then the list is made what ngx_list_t promises its readers again:
 * only the first part may be empty (every loop over a list reads the
 * first element of a next part unchecked), and the last part has room
 * for what ngx_list_push() writes there: a part made by a split has no
 * room past its end, so `nalloc` is set to its size and the next push
 * starts a part of its own.
 */
static ngx_int_t
ngx_http_keygate_strip(ngx_http_request_t *r)
{
    ngx_list_t       *list = &r->headers_in.headers;
    ngx_list_part_t  *part, *tail, *prev;
    ngx_table_elt_t  *h;
    ngx_uint_t        i, cut = 0;

    for (part = &list->part; part != NULL; part = part->next) {
        h = part->elts;
        for (i = 0; i < part->nelts; i++) {
            if (h[i].key.len < sizeof(kg_upstream_prefix) - 1
                || ngx_strncasecmp(h[i].key.data, (u_char *) kg_upstream_prefix,
                                   sizeof(kg_upstream_prefix) - 1) != 0)
            {
                continue;
            }
            /* part keeps h[0..i), a new part after it h[i+1..] */
            if (i + 1 < part->nelts) {
                tail = ngx_palloc(r->pool, sizeof(ngx_list_part_t));
                if (tail == NULL) {
                    return NGX_ERROR;
                }
                tail->elts = &h[i + 1];
                tail->nelts = part->nelts - i - 1;
                tail->next = part->next;
                part->next = tail;
            }
            part->nelts = i;
            cut = 1;
            break;      /* the loop goes on with the new part */
        }
    }
    if (!cut) {
        return NGX_OK;
    }

    prev = &list->part;
    for (part = prev->next; part != NULL; part = part->next) {
        if (part->nelts == 0) {
            prev->next = part->next;
        } else {
            prev = part;
        }
    }
    list->last = prev;
    if (prev != &list->part) {
        list->nalloc = prev->nelts;
    }
    return NGX_OK;
}

/*
 * The upstream learns who called from the module only: every client
 * header named X-Keygate-* is taken out, then the decision's added (none
 * for d NULL: a location with keygate off).
 */
static ngx_int_t
ngx_http_keygate_upstream_headers(ngx_http_request_t *r, const kg_decision *d)
{
    ngx_list_t  *list = &r->headers_in.headers;
    u_char      *prio;
    size_t       plen;
    int          pv;
    const char  *v;

    if (ngx_http_keygate_strip(r) != NGX_OK) {
        return NGX_ERROR;
    }
    if (d == NULL) {
        return NGX_OK;
    }
    v = kg_decision_key_id(d);
    if (v != NULL
        && ngx_http_keygate_push_s(list, &ngx_http_keygate_names[KG_HDR_KEY_ID],
                                   v) != NGX_OK)
    {
        return NGX_ERROR;
    }
    v = kg_decision_account_id(d);
    if (v != NULL
        && ngx_http_keygate_push_s(list,
               &ngx_http_keygate_names[KG_HDR_ACCOUNT], v) != NGX_OK)
    {
        return NGX_ERROR;
    }
    v = kg_decision_plan(d);
    if (v != NULL) {
        pv = kg_decision_priority(d);
        if (pv >= 0 && pv <= 9) {
            /* a plan's priority is nearly always one digit: no printing */
            prio = (u_char *) &"0123456789"[pv];
            plen = 1;
        } else {
            prio = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
            if (prio == NULL) {
                return NGX_ERROR;
            }
            plen = ngx_sprintf(prio, "%i", (ngx_int_t) pv) - prio;
        }
        if (ngx_http_keygate_push_s(list,
                &ngx_http_keygate_names[KG_HDR_PLAN], v) != NGX_OK
            || ngx_http_keygate_push(list,
                   &ngx_http_keygate_names[KG_HDR_PRIORITY], (char *) prio,
                   plen) != NGX_OK)
        {
            return NGX_ERROR;
        }
    }
    /* No X-Keygate-Lease: the log phase releases the lease, so an
     * upstream has nothing to do with it ($keygate_lease for one that
     * wants it: docs/nginx.md "Variables"). */
    return NGX_OK;
}

/*
 * Answer the request with a JSON body: a denial (d's status, body and
 * headers), or 503 when there is no decision.  Returns what the output
 * filter returned, for ngx_http_finalize_request().
 */
static ngx_int_t
ngx_http_keygate_answer(ngx_http_request_t *r, ngx_uint_t status,
    const char *body, const kg_decision *d)
{
    ngx_int_t    rc;
    ngx_buf_t   *b;
    ngx_chain_t  out;
    size_t       i, n, len = ngx_strlen(body);
    const char  *name, *value;
    ngx_http_keygate_name_t  *hn;

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }
    r->headers_out.status = status;
    r->headers_out.content_length_n = len;
    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;
    if (ngx_http_keygate_push_s(&r->headers_out.headers,
                                ngx_http_keygate_name(r, kg_cache_control),
                                "no-store") != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    n = d != NULL ? kg_decision_header_count(d) : 0;
    for (i = 0; i < n; i++) {
        if (kg_decision_header(d, i, &name, &value) != KG_OK) {
            continue;
        }
        hn = ngx_http_keygate_name(r, name);
        if (hn == NULL
            || ngx_http_keygate_push_s(&r->headers_out.headers, hn, value)
               != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    rc = ngx_http_send_header(r);
    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }
    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    b->last = ngx_cpymem(b->pos, body, len);
    b->last_buf = 1;
    b->last_in_chain = 1;
    out.buf = b;
    out.next = NULL;
    return ngx_http_output_filter(r, &out);
}

/* ---- checks that wait, on nginx's thread pool ------------------------ */

#if (NGX_THREADS)

/* On a thread of the pool: the check, which may wait on the network. */
static void
ngx_http_keygate_job_run(void *data, ngx_log_t *log)
{
    ngx_http_keygate_job_t  *job = data;

    (void) log;
    job->error = kg_check(job->policy, job->req, &job->decision);
}

/* Back on the event loop: the decision for the access phase, which runs
 * again (the handler below picks it up). */
static void
ngx_http_keygate_job_done(ngx_event_t *ev)
{
    ngx_http_request_t        *r = ev->data;
    ngx_connection_t          *c = r->connection;
    ngx_http_keygate_state_t  *st = ngx_http_keygate_state(r);

    ngx_http_set_log_request(c->log, r);
    r->main->blocked--;
    r->aio = 0;
    if (st != NULL && st->job != NULL) {
        st->decision = st->job->error == KG_OK ? st->job->decision : NULL;
        kg_request_free(st->job->req);
        st->job->req = NULL;
        st->job = NULL;
        st->waiting = 0;
        st->ready = 1;
    }
    r->write_event_handler(r);
    ngx_http_run_posted_requests(c);
}

/*
 * Run this request's check on the pool: its own kg_request (the worker's
 * is the next request's), the request suspended (blocked: nginx neither
 * finalizes nor frees it meanwhile) until the job is done.  NGX_AGAIN,
 * or NGX_ERROR if it could not be posted.
 */
static ngx_int_t
ngx_http_keygate_defer(ngx_http_request_t *r, ngx_http_keygate_state_t *st)
{
    ngx_http_keygate_main_conf_t  *kmcf = st->kmcf;
    ngx_http_keygate_job_t        *job;
    ngx_thread_task_t             *task;

    task = ngx_thread_task_alloc(r->pool, sizeof(ngx_http_keygate_job_t));
    if (task == NULL) {
        return NGX_ERROR;
    }
    job = task->ctx;
    job->policy = kmcf->policy;
    job->decision = NULL;
    job->error = KG_OK;
    if (kg_request_new(&job->req) != KG_OK) {
        return NGX_ERROR;
    }
    if (ngx_http_keygate_build(r, job->req) != KG_OK) {
        kg_request_free(job->req);
        return NGX_ERROR;
    }
    task->handler = ngx_http_keygate_job_run;
    task->event.data = r;
    task->event.handler = ngx_http_keygate_job_done;
    if (ngx_thread_task_post(kmcf->thread_pool, task) != NGX_OK) {
        /* the pool's queue is full (logged by nginx) */
        kg_request_free(job->req);
        return NGX_ERROR;
    }
    st->job = job;
    st->waiting = 1;
    r->main->blocked++;
    r->aio = 1;
    return NGX_AGAIN;
}

#endif

/* The answer when no check could be made (no policy, no thread). */
static ngx_int_t
ngx_http_keygate_unavailable(ngx_http_request_t *r,
    ngx_http_keygate_state_t *st, const char *why)
{
    char       body[160];
    ngx_int_t  rc;

    ngx_snprintf((u_char *) body, sizeof(body) - 1,
                 "{\"error\":{\"code\":\"auth_unavailable\",\"message\":"
                 "\"%s\"}}%Z", why);
    st->own_response = 1;
    rc = ngx_http_keygate_answer(r, NGX_HTTP_SERVICE_UNAVAILABLE, body, NULL);
    ngx_http_finalize_request(r, rc);
    return NGX_DONE;
}

ngx_int_t
ngx_http_keygate_access_handler(ngx_http_request_t *r)
{
    ngx_http_keygate_loc_conf_t   *klcf;
    ngx_http_keygate_main_conf_t  *kmcf;
    ngx_http_keygate_state_t      *st;
    ngx_pool_cleanup_t            *cln;
    kg_decision                   *d = NULL;
    kg_error                       e;
    ngx_int_t                      rc;

    if (r != r->main) {
        return NGX_DECLINED;
    }
    st = ngx_http_keygate_state(r);
    if (st != NULL) {
        if (st->waiting) {          /* its check runs on the pool */
            return NGX_AGAIN;
        }
        if (!st->ready) {
            /* checked already, before an internal redirect: once */
            return NGX_DECLINED;
        }
        st->ready = 0;
        if (st->decision == NULL) {
            return ngx_http_keygate_unavailable(r, st,
                       "the key store or the limiter failed");
        }
        d = st->decision;
        goto decided;
    }
    kmcf = ngx_http_get_module_main_conf(r, ngx_http_keygate_module);
    klcf = ngx_http_get_module_loc_conf(r, ngx_http_keygate_module);
    if (!klcf->enable) {
        /* Where nginx runs keygate, an upstream trusts X-Keygate-*
         * headers: no client's reach it, on a public location either. */
        if (kmcf->policy_path.len != 0
            && ngx_http_keygate_upstream_headers(r, NULL) != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
        return NGX_DECLINED;
    }

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_http_keygate_state_t));
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    st = cln->data;
    ngx_memzero(st, sizeof(*st));
    st->kmcf = kmcf;
    cln->handler = ngx_http_keygate_cleanup;
    ngx_http_set_ctx(r, st, ngx_http_keygate_module);

    if (kmcf->policy == NULL) {
        return ngx_http_keygate_unavailable(r, st,
                   "the keygate policy is not loaded");
    }
#if (NGX_THREADS)
    /* a limit that waits on every check: straight to the pool */
    if (kmcf->may_wait & KG_WAITS_ALWAYS) {
        return ngx_http_keygate_defer(r, st) == NGX_AGAIN
               ? NGX_AGAIN
               : ngx_http_keygate_unavailable(r, st,
                     "no thread free to run the check");
    }
#endif
    if (ngx_http_keygate_build(r, kmcf->req) != KG_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    /* a store that would wait says so, and the check goes to the pool */
    if (kmcf->may_wait) {
        (void) kg_request_set_nowait(kmcf->req, 1);
    }
    e = kg_check(kmcf->policy, kmcf->req, &d);
#if (NGX_THREADS)
    if (e == KG_ERR_WOULD_BLOCK) {
        return ngx_http_keygate_defer(r, st) == NGX_AGAIN
               ? NGX_AGAIN
               : ngx_http_keygate_unavailable(r, st,
                     "no thread free to run the check");
    }
#endif
    if (e != KG_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    st->decision = d;

decided:
    if (!kg_decision_allowed(d)) {
        st->own_response = 1;
        rc = ngx_http_keygate_answer(r, (ngx_uint_t) kg_decision_status(d),
                                     kg_decision_body(d), d);
        ngx_http_finalize_request(r, rc);
        return NGX_DONE;
    }
    if (ngx_http_keygate_upstream_headers(r, d) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    return NGX_OK;
}

/*
 * The decision's headers on the answer to an allowed request, whoever
 * makes it; same-named headers of the upstream's are dropped (hash 0),
 * so that the client reads each once, and the module's: one pass over
 * the upstream's headers, the names compared only where the first
 * letter is one of a name the module has set up (no memory to clear
 * per request).
 */
ngx_int_t
ngx_http_keygate_header_filter(ngx_http_request_t *r)
{
    ngx_http_keygate_state_t  *st;
    ngx_http_keygate_name_t   *hn[16];   /* libkeygate gives at most 16 */
    ngx_list_part_t           *part;
    ngx_table_elt_t           *h;
    ngx_uint_t                 i;
    size_t                     k, n;
    const char                *name, *value[16];

    if (r != r->main) {
        return ngx_http_keygate_next_header_filter(r);
    }
    st = ngx_http_keygate_state(r);
    if (st == NULL || st->own_response || st->decision == NULL) {
        return ngx_http_keygate_next_header_filter(r);
    }

    n = kg_decision_header_count(st->decision);
    if (n > sizeof(hn) / sizeof(hn[0])) {
        n = sizeof(hn) / sizeof(hn[0]);
    }
    for (k = 0; k < n; k++) {
        hn[k] = NULL;
        if (kg_decision_header(st->decision, k, &name, &value[k]) != KG_OK) {
            continue;
        }
        /* the k-th header is nearly always the name it was last time */
        if (ngx_http_keygate_seen[k] == name) {
            hn[k] = ngx_http_keygate_seen_hn[k];
            continue;
        }
        if ((hn[k] = ngx_http_keygate_name(r, name)) == NULL) {
            return NGX_ERROR;
        }
        if (hn[k] >= ngx_http_keygate_names
            && hn[k] < ngx_http_keygate_names + sizeof(ngx_http_keygate_names)
                                              / sizeof(ngx_http_keygate_names[0]))
        {
            /* set up for the worker's life, not from the request's pool */
            ngx_http_keygate_seen[k] = name;
            ngx_http_keygate_seen_hn[k] = hn[k];
        }
    }
    part = &r->headers_out.headers.part;
    i = 0;
    while ((h = ngx_http_keygate_next(&part, &i)) != NULL) {
        if (h->hash == 0 || h->key.len == 0) {
            continue;
        }
        if (!ngx_http_keygate_first[ngx_tolower(h->key.data[0])]) {
            continue;
        }
        for (k = 0; k < n; k++) {
            if (hn[k] != NULL && h->key.len == hn[k]->key.len
                && ngx_strncasecmp(h->key.data, hn[k]->lowcase, h->key.len)
                   == 0)
            {
                h->hash = 0;
                break;
            }
        }
    }
    for (k = 0; k < n; k++) {
        if (hn[k] != NULL
            && ngx_http_keygate_push_s(&r->headers_out.headers, hn[k],
                                       value[k]) != NGX_OK)
        {
            return NGX_ERROR;
        }
    }
    return ngx_http_keygate_next_header_filter(r);
}

/* Every request reaches the log phase, finished or not: end its lease. */
ngx_int_t
ngx_http_keygate_log_handler(ngx_http_request_t *r)
{
    ngx_http_keygate_state_t  *st = ngx_http_keygate_state(r);

    if (st != NULL) {
        ngx_http_keygate_release(st);
    }
    return NGX_OK;
}
