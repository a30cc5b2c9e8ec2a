/*
 * ngx_http_keygate_module.c - keygate inside nginx: the directives, the
 * policy's life in the master and the workers, the phase handlers'
 * registration and the $keygate_* variables.  What a request goes
 * through is in ngx_http_keygate_request.c; docs/nginx.md says how to
 * use it.
 *
 * The policy is loaded in each worker (init_process), never in the
 * master before fork: libkeygate and its plugins start threads (the
 * limiter's, a store's refresher or pool keeper) and open connections
 * that a fork does not carry over.  The master loads it once at
 * configuration time only to refuse a bad policy with nginx's own error,
 * so that `nginx -t` says why and a failed `nginx -s reload` leaves the
 * old workers serving; it frees it at once.
 */
#include "ngx_http_keygate.h"

static ngx_int_t ngx_http_keygate_add_variables(ngx_conf_t *cf);
static void *ngx_http_keygate_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_keygate_init_main_conf(ngx_conf_t *cf, void *conf);
static char *ngx_http_keygate_init_thread_pool(ngx_conf_t *cf,
    ngx_http_keygate_main_conf_t *kmcf);
static char *ngx_http_keygate_thread_pool(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static void *ngx_http_keygate_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_keygate_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static ngx_int_t ngx_http_keygate_init(ngx_conf_t *cf);
static ngx_int_t ngx_http_keygate_init_process(ngx_cycle_t *cycle);
static void ngx_http_keygate_exit_process(ngx_cycle_t *cycle);

static ngx_command_t  ngx_http_keygate_commands[] = {

    { ngx_string("keygate_policy"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_keygate_main_conf_t, policy_path),
      NULL },

    { ngx_string("keygate_thread_pool"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_keygate_thread_pool,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("keygate"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_keygate_loc_conf_t, enable),
      NULL },

      ngx_null_command
};

static ngx_http_module_t  ngx_http_keygate_module_ctx = {
    ngx_http_keygate_add_variables,        /* preconfiguration */
    ngx_http_keygate_init,                 /* postconfiguration */
    ngx_http_keygate_create_main_conf,     /* create main configuration */
    ngx_http_keygate_init_main_conf,       /* init main configuration */
    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */
    ngx_http_keygate_create_loc_conf,      /* create location configuration */
    ngx_http_keygate_merge_loc_conf        /* merge location configuration */
};

ngx_module_t  ngx_http_keygate_module = {
    NGX_MODULE_V1,
    &ngx_http_keygate_module_ctx,          /* module context */
    ngx_http_keygate_commands,             /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_keygate_init_process,         /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_keygate_exit_process,         /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};

ngx_http_output_header_filter_pt  ngx_http_keygate_next_header_filter;


/* ---- variables ------------------------------------------------------ */

enum {
    KG_VAR_KEY_ID,
    KG_VAR_ACCOUNT,
    KG_VAR_PLAN,
    KG_VAR_PRIORITY,
    KG_VAR_LEASE,
    KG_VAR_CODE
};

/*
 * $keygate_*: what the decision says about the caller.  Not found (empty)
 * on a request the module did not check, and for a value the decision
 * does not have (no key identified; $keygate_account for a key whose
 * store keeps no accounts).  Never cached: a variable read before the
 * access phase must not hide the decision taken in it.
 */
static ngx_int_t
ngx_http_keygate_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_keygate_state_t  *st = ngx_http_keygate_state(r);
    const char                *s = NULL;
    u_char                    *p;

    v->not_found = 1;
    v->no_cacheable = 1;
    if (st == NULL || st->decision == NULL) {
        return NGX_OK;
    }

    switch (data) {
    case KG_VAR_KEY_ID:
        s = kg_decision_key_id(st->decision);
        break;
    case KG_VAR_PLAN:
        s = kg_decision_plan(st->decision);
        break;
    case KG_VAR_PRIORITY:
        if (kg_decision_plan(st->decision) == NULL) {
            return NGX_OK;
        }
        p = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
        if (p == NULL) {
            return NGX_ERROR;
        }
        v->len = ngx_sprintf(p, "%i",
                             (ngx_int_t) kg_decision_priority(st->decision))
                 - p;
        v->data = p;
        v->valid = 1;
        v->not_found = 0;
        return NGX_OK;
    case KG_VAR_LEASE:
        s = kg_decision_lease(st->decision);
        break;
    case KG_VAR_CODE:
        s = kg_code_name(kg_decision_code(st->decision));
        break;
    default:   /* KG_VAR_ACCOUNT */
        s = kg_decision_account_id(st->decision);
        break;
    }
    if (s == NULL || *s == '\0') {
        return NGX_OK;
    }
    v->data = (u_char *) s;
    v->len = ngx_strlen(s);
    v->valid = 1;
    v->not_found = 0;
    return NGX_OK;
}

static ngx_http_variable_t  ngx_http_keygate_vars[] = {
    { ngx_string("keygate_key_id"), NULL, ngx_http_keygate_variable,
      KG_VAR_KEY_ID, NGX_HTTP_VAR_NOCACHEABLE, 0 },
    { ngx_string("keygate_account"), NULL, ngx_http_keygate_variable,
      KG_VAR_ACCOUNT, NGX_HTTP_VAR_NOCACHEABLE, 0 },
    { ngx_string("keygate_plan"), NULL, ngx_http_keygate_variable,
      KG_VAR_PLAN, NGX_HTTP_VAR_NOCACHEABLE, 0 },
    { ngx_string("keygate_priority"), NULL, ngx_http_keygate_variable,
      KG_VAR_PRIORITY, NGX_HTTP_VAR_NOCACHEABLE, 0 },
    { ngx_string("keygate_lease"), NULL, ngx_http_keygate_variable,
      KG_VAR_LEASE, NGX_HTTP_VAR_NOCACHEABLE, 0 },
    { ngx_string("keygate_code"), NULL, ngx_http_keygate_variable,
      KG_VAR_CODE, NGX_HTTP_VAR_NOCACHEABLE, 0 },
      ngx_http_null_variable
};

static ngx_int_t
ngx_http_keygate_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_keygate_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }
        var->get_handler = v->get_handler;
        var->data = v->data;
    }
    return NGX_OK;
}


/* ---- configuration -------------------------------------------------- */

static void *
ngx_http_keygate_create_main_conf(ngx_conf_t *cf)
{
    /* ngx_pcalloc: policy_path empty, ctx, policy and req NULL */
    return ngx_pcalloc(cf->pool, sizeof(ngx_http_keygate_main_conf_t));
}

/*
 * A policy whose key store or limiter may wait on the network (LDAP,
 * PostgreSQL, Redis: kg_policy_may_wait) has its checks that would wait
 * run on nginx's thread pool (keygate_thread_pool, else the `default`
 * pool, which nginx makes with 32 threads), never on the event loop.  A
 * named pool is made sure of whatever the policy; an nginx built without
 * thread pools refuses such a policy.
 */
static char *
ngx_http_keygate_init_thread_pool(ngx_conf_t *cf,
    ngx_http_keygate_main_conf_t *kmcf)
{
#if (NGX_THREADS)
    if (!kmcf->may_wait || kmcf->thread_pool != NULL) {
        return NGX_CONF_OK;
    }
    kmcf->thread_pool = ngx_thread_pool_add(cf, NULL);     /* default */
    return kmcf->thread_pool != NULL ? NGX_CONF_OK : NGX_CONF_ERROR;
#else
    if (!kmcf->may_wait) {
        return NGX_CONF_OK;
    }
    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "keygate_policy \"%V\": its key store or a limit waits "
                       "on the network (ldap, sql on PostgreSQL, backend: "
                       "redis) and this nginx has no thread pools to wait "
                       "in (built without --with-threads); use a file or "
                       "SQLite store and limits in memory or a state file, "
                       "or keygated", &kmcf->policy_path);
    return NGX_CONF_ERROR;
#endif
}

/* keygate_thread_pool NAME: the pool, made sure of here, so that nginx's
 * "unknown thread pool" names this line. */
static char *
ngx_http_keygate_thread_pool(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_keygate_main_conf_t  *kmcf = conf;
    ngx_str_t                     *value = cf->args->elts;

    if (kmcf->thread_pool_name.len != 0) {
        return "is duplicate";
    }
    kmcf->thread_pool_name = value[1];
#if (NGX_THREADS)
    kmcf->thread_pool = ngx_thread_pool_add(cf, &value[1]);
    if (kmcf->thread_pool == NULL) {
        return NGX_CONF_ERROR;
    }
#endif
    return NGX_CONF_OK;
}

/*
 * Load the policy once in the master (or in `nginx -t`), and free it:
 * a policy that does not load fails the configuration with
 * "file:line:column: message", which a reload reports while the old
 * workers keep serving.  The path is relative to nginx's prefix.
 */
static char *
ngx_http_keygate_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_keygate_main_conf_t  *kmcf = conf;
    kg_context                    *ctx = NULL;
    kg_policy                     *policy = NULL;
    kg_diag                        diag;
    kg_error                       e;
    char                           msg[1600];

    if (kmcf->policy_path.len == 0) {
        return NGX_CONF_OK;
    }
    if (ngx_conf_full_name(cf->cycle, &kmcf->policy_path, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }
    /* `nginx -s reload` only reads the configuration to find the pid */
    if (ngx_process == NGX_PROCESS_SIGNALLER) {
        return NGX_CONF_OK;
    }

    e = kg_context_new(&ctx);
    if (e != KG_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "keygate: %s",
                           kg_strerror(e));
        return NGX_CONF_ERROR;
    }
    ngx_memzero(&diag, sizeof(diag));
    e = kg_policy_load_file(ctx, (const char *) kmcf->policy_path.data,
                            &policy, &diag);
    kmcf->may_wait = e == KG_OK ? kg_policy_may_wait(policy) : 0;
    kg_policy_free(policy);
    kg_context_free(ctx);
    if (e != KG_OK) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "keygate_policy \"%V\": %s: %s", &kmcf->policy_path,
                      kg_strerror(e), kg_diag_format(&diag, msg, sizeof(msg)));
        return NGX_CONF_ERROR;
    }
    return ngx_http_keygate_init_thread_pool(cf, kmcf);
}

static void *
ngx_http_keygate_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_keygate_loc_conf_t  *conf;

    conf = ngx_palloc(cf->pool, sizeof(ngx_http_keygate_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }
    conf->enable = NGX_CONF_UNSET;
    return conf;
}

static char *
ngx_http_keygate_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_keygate_loc_conf_t   *prev = parent;
    ngx_http_keygate_loc_conf_t   *conf = child;
    ngx_http_keygate_main_conf_t  *kmcf;

    ngx_conf_merge_value(conf->enable, prev->enable, 0);
    if (conf->enable) {
        kmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_keygate_module);
        if (kmcf->policy_path.len == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"keygate on\" needs \"keygate_policy\" "
                               "in the http block");
            return NGX_CONF_ERROR;
        }
    }
    return NGX_CONF_OK;
}

/* The access and log phase handlers, the header filter. */
static ngx_int_t
ngx_http_keygate_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_ACCESS_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }
    *h = ngx_http_keygate_access_handler;

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }
    *h = ngx_http_keygate_log_handler;

    ngx_http_keygate_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_keygate_header_filter;
    return NGX_OK;
}


/* ---- the worker's usage flush ---------------------------------------- */

/*
 * With a usage: section in the policy (docs/usage.md), a worker writes
 * what it counted every flush_interval, on nginx's timer, and at exit:
 * else its counts would only pile up to max_pending and be dropped.  A
 * store that refuses is logged once, until it takes them again.
 */
static ngx_event_t  ngx_http_keygate_flush_ev;
static ngx_uint_t   ngx_http_keygate_flush_failing;

/* A flush and what it said (a thread writes it, the event loop reads). */
typedef struct {
    kg_policy  *policy;
    kg_error    error;
    char        msg[1600];
} ngx_http_keygate_flush_t;

static void
ngx_http_keygate_flush_run(ngx_http_keygate_flush_t *f)
{
    kg_diag  diag;

    ngx_memzero(&diag, sizeof(diag));
    f->error = kg_usage_flush(f->policy, &diag);
    if (f->error != KG_OK) {
        kg_diag_format(&diag, f->msg, sizeof(f->msg));
    }
}

/* A store that refuses is logged once, until it takes the counts again. */
static void
ngx_http_keygate_flush_report(ngx_http_keygate_flush_t *f, ngx_log_t *log)
{
    kg_error  e = f->error;

    if (e != KG_OK && e != KG_ERR_UNSUPPORTED && !ngx_http_keygate_flush_failing) {
        ngx_log_error(NGX_LOG_WARN, log, 0, "keygate usage flush: %s: %s; "
                      "the counts are kept for the next one", kg_strerror(e),
                      f->msg);
    }
    ngx_http_keygate_flush_failing = (e != KG_OK && e != KG_ERR_UNSUPPORTED);
}

static void
ngx_http_keygate_flush(ngx_http_keygate_main_conf_t *kmcf, ngx_log_t *log)
{
    ngx_http_keygate_flush_t  f;

    f.policy = kmcf->policy;
    ngx_http_keygate_flush_run(&f);
    ngx_http_keygate_flush_report(&f, log);
}

static void
ngx_http_keygate_flush_rearm(ngx_http_keygate_main_conf_t *kmcf)
{
    if (!ngx_exiting && !ngx_quit) {
        ngx_add_timer(&ngx_http_keygate_flush_ev,
                      (ngx_msec_t) kg_usage_flush_interval(kmcf->policy) * 1000);
    }
}

#if (NGX_THREADS)
/* A usage store whose flush waits on the network (PostgreSQL) is
 * flushed on the thread pool, one flush at a time. */
static ngx_thread_task_t  *ngx_http_keygate_flush_task;

static void
ngx_http_keygate_flush_thread(void *data, ngx_log_t *log)
{
    (void) log;
    ngx_http_keygate_flush_run(data);
}

static void
ngx_http_keygate_flush_done(ngx_event_t *ev)
{
    ngx_http_keygate_main_conf_t  *kmcf = ngx_http_keygate_flush_ev.data;

    ngx_http_keygate_flush_report(ngx_http_keygate_flush_task->ctx, ev->log);
    ngx_http_keygate_flush_rearm(kmcf);
}
#endif

static void
ngx_http_keygate_flush_handler(ngx_event_t *ev)
{
    ngx_http_keygate_main_conf_t  *kmcf = ev->data;

#if (NGX_THREADS)
    if (ngx_http_keygate_flush_task != NULL) {
        ngx_http_keygate_flush_t  *f = ngx_http_keygate_flush_task->ctx;

        f->policy = kmcf->policy;
        if (ngx_thread_task_post(kmcf->thread_pool, ngx_http_keygate_flush_task)
            != NGX_OK)
        {
            /* the pool's queue is full (nginx logged it): the counts
             * wait for the next flush, not the event loop for this one */
            ngx_http_keygate_flush_rearm(kmcf);
        }
        return;                 /* rearmed when it is done */
    }
#endif
    ngx_http_keygate_flush(kmcf, ev->log);
    ngx_http_keygate_flush_rearm(kmcf);
}


/* ---- the worker's policy ------------------------------------------- */

/*
 * Load the policy in this worker.  A failure (the file changed since the
 * master read it) is logged and leaves the worker answering 503
 * auth_unavailable to every request it should check: fail closed,
 * without a respawn loop.
 */
static ngx_int_t
ngx_http_keygate_init_process(ngx_cycle_t *cycle)
{
    ngx_http_keygate_main_conf_t  *kmcf;
    kg_diag                        diag;
    kg_error                       e;
    char                           msg[1600];

    kmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_keygate_module);
    if (kmcf == NULL || kmcf->policy_path.len == 0) {
        return NGX_OK;
    }
    if (ngx_http_keygate_names_init(cycle->pool) != NGX_OK) {
        return NGX_ERROR;
    }
    ngx_memzero(&diag, sizeof(diag));
    e = kg_context_new(&kmcf->ctx);
    if (e == KG_OK) {
        e = kg_request_new(&kmcf->req);
    }
    if (e == KG_OK) {
        e = kg_policy_load_file(kmcf->ctx,
                                (const char *) kmcf->policy_path.data,
                                &kmcf->policy, &diag);
    }
    if (e == KG_OK) {
        kmcf->may_wait = kg_policy_may_wait(kmcf->policy);
#if (NGX_THREADS)
        if (kmcf->may_wait && kmcf->thread_pool == NULL)
#else
        if (kmcf->may_wait)
#endif
        {
            /* the file changed since the master read it */
            ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                          "keygate_policy \"%V\": it now waits on the "
                          "network and nginx has no thread pool for it: "
                          "reload nginx; this worker answers 503 to every "
                          "checked request", &kmcf->policy_path);
            kg_policy_free(kmcf->policy);
            kmcf->policy = NULL;
        }
    }
    if (e != KG_OK) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "keygate_policy \"%V\": %s: %s; this worker answers "
                      "503 to every checked request", &kmcf->policy_path,
                      kg_strerror(e), kg_diag_format(&diag, msg, sizeof(msg)));
        kmcf->policy = NULL;
    } else if (kmcf->policy == NULL) {
        /* logged above */
    } else if (kg_usage_flush_interval(kmcf->policy) > 0) {
        ngx_http_keygate_flush_ev.handler = ngx_http_keygate_flush_handler;
        ngx_http_keygate_flush_ev.data = kmcf;
        ngx_http_keygate_flush_ev.log = cycle->log;
        /* A pending flush does not hold up a graceful shutdown: the exit
         * flushes anyway. */
        ngx_http_keygate_flush_ev.cancelable = 1;
#if (NGX_THREADS)
        if ((kmcf->may_wait & KG_WAITS_USAGE) && kmcf->thread_pool != NULL) {
            ngx_http_keygate_flush_task = ngx_thread_task_alloc(cycle->pool,
                sizeof(ngx_http_keygate_flush_t));
            if (ngx_http_keygate_flush_task == NULL) {
                return NGX_ERROR;
            }
            ngx_http_keygate_flush_task->handler = ngx_http_keygate_flush_thread;
            ngx_http_keygate_flush_task->event.handler = ngx_http_keygate_flush_done;
            ngx_http_keygate_flush_task->event.data = kmcf;
            ngx_http_keygate_flush_task->event.log = cycle->log;
        }
#endif
        ngx_add_timer(&ngx_http_keygate_flush_ev,
                      (ngx_msec_t) kg_usage_flush_interval(kmcf->policy) * 1000);
    }
    return NGX_OK;
}

static void
ngx_http_keygate_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_keygate_main_conf_t  *kmcf;

    kmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_keygate_module);
    if (kmcf == NULL) {
        return;
    }
    if (kmcf->policy != NULL) {
        ngx_http_keygate_flush(kmcf, cycle->log);
    }
    kg_policy_free(kmcf->policy);
    kg_request_free(kmcf->req);
    kg_context_free(kmcf->ctx);
    kmcf->policy = NULL;
    kmcf->req = NULL;
    kmcf->ctx = NULL;
}
