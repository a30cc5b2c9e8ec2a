/*
 * ngx_http_keygate.h - what the two files of ngx_http_keygate_module
 * share: the module's configuration, the per-worker policy and the state
 * a request keeps between the phases (docs/nginx.md).
 */
#ifndef NGX_HTTP_KEYGATE_H
#define NGX_HTTP_KEYGATE_H

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <nginx.h>            /* nginx_version */
#if (NGX_THREADS)
#include <ngx_thread_pool.h>
#endif

#include <keygate/keygate.h>
#include <keygate/usage.h>

/*
 * http { }: the policy file (keygate_policy) and, in each worker, the
 * context and the policy loaded from it (NULL in the master, and in a
 * worker whose load failed: every checked request then gets 503).
 */
typedef struct {
    ngx_str_t    policy_path;
    ngx_str_t    thread_pool_name;   /* keygate_thread_pool; empty: default */
    kg_context  *ctx;
    kg_policy   *policy;
    kg_request  *req;        /* reused by every request of the worker */
    /* kg_policy_may_wait() of the worker's policy: KG_WAITS_* */
    int          may_wait;
#if (NGX_THREADS)
    /* where checks that may wait run (set when the policy may wait) */
    ngx_thread_pool_t  *thread_pool;
#endif
} ngx_http_keygate_main_conf_t;

/* keygate on|off (http, server, location). */
typedef struct {
    ngx_flag_t   enable;
} ngx_http_keygate_loc_conf_t;

/*
 * A request's state, made by the access handler and kept by a cleanup
 * of the request's pool: nginx clears module contexts on an internal
 * redirect (index, error_page), the pool's cleanups it keeps, so the
 * decision is taken once per request and its lease released once.
 */
/* A check on a thread of the pool: what the thread reads and writes. */
typedef struct {
    const kg_policy  *policy;
    kg_request       *req;          /* its own: the worker's is reused */
    kg_decision      *decision;
    kg_error          error;
} ngx_http_keygate_job_t;

typedef struct {
    ngx_http_keygate_main_conf_t  *kmcf;
    kg_decision                   *decision;   /* NULL: failed to check */
    ngx_http_keygate_job_t        *job;        /* a check on a thread */
    unsigned                       own_response:1; /* the module answered */
    unsigned                       released:1;
    unsigned                       waiting:1;  /* job running */
    unsigned                       ready:1;    /* job done, not yet read */
} ngx_http_keygate_state_t;

extern ngx_module_t  ngx_http_keygate_module;

/* The request's state (the main request's), or NULL if it has none. */
ngx_http_keygate_state_t *ngx_http_keygate_state(ngx_http_request_t *r);

ngx_int_t ngx_http_keygate_access_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_keygate_log_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_keygate_header_filter(ngx_http_request_t *r);
/* Set up the header names the module adds (once per worker). */
ngx_int_t ngx_http_keygate_names_init(ngx_pool_t *pool);

extern ngx_http_output_header_filter_pt  ngx_http_keygate_next_header_filter;

#endif
