/*
 * usage_policy.c - the policy's usage: section and the queries that go
 * through its store (docs/usage.md):
 *
 *   usage:
 *     module: sql                      # any plugin that is a usage store
 *     options: {url: "sqlite:///var/lib/keygate/usage.db"}
 *     flush_interval: 5s
 *     sample: 1%                       # allowed decisions kept as events
 *     sample_seed: 0                   # of that sample (reproducible)
 *     max_pending: 200000              # rows, and events, held at most
 *
 * The counting itself is usage.c's.
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_FLUSH_INTERVAL 5
#define DEFAULT_SAMPLE_PPM 10000        /* 1% */
#define DEFAULT_MAX_PENDING 200000

const char *kg_usage_code_name(kg_code code)
{
    if (code == KG_CODE_NONE || (int)code < 0 || code >= KG_CODE__LAST)
        return "allowed";
    return kg_code_name(code);
}

kg_error kg_usage_code_parse(const char *name, kg_code *code_r)
{
    int c;
    if (name == NULL || code_r == NULL)
        return KG_ERR_INVALID;
    for (c = 0; c < KG_CODE__LAST; c++) {
        if (strcmp(kg_usage_code_name((kg_code)c), name) == 0) {
            *code_r = (kg_code)c;
            return KG_OK;
        }
    }
    return KG_ERR_INVALID;
}

/* "1%", "0.5%", "100%", "0", or a fraction "0.01" -> parts per million. */
static int parse_sample(const char *s, uint32_t *ppm_r)
{
    char *end;
    double v;
    errno = 0;
    v = strtod(s, &end);
    if (errno || end == s)
        return -1;
    if (*end == '%' && end[1] == '\0')
        v /= 100.0;
    else if (*end != '\0')
        return -1;
    if (!(v >= 0.0 && v <= 1.0))
        return -1;
    *ppm_r = (uint32_t)(v * 1000000.0 + 0.5);
    return 0;
}

static kg_error parse_knobs(kg__pload *L, kg__ynode *n, kg__usage_conf *u)
{
    kg__ynode *v;
    long long x;
    kg_error e;

    if ((v = kg__ymap_get(n, "flush_interval")) != NULL) {
        if (v->type != KG__Y_SCALAR ||
            kg__parse_duration(v->value, &u->flush_interval) != 0 ||
            u->flush_interval < 1 || u->flush_interval > 3600)
            return kg__err_at(L, v, "usage flush_interval must be a duration "
                              "from 1s to 1h, such as 5s");
    }
    if ((v = kg__ymap_get(n, "sample")) != NULL) {
        if (v->type != KG__Y_SCALAR || parse_sample(v->value, &u->sample_ppm) != 0)
            return kg__err_at(L, v, "usage sample must be a share of the "
                              "allowed decisions from 0%% to 100%%, such as "
                              "1%% or 0.5%%");
    }
    if ((v = kg__ymap_get(n, "sample_seed")) != NULL) {
        if ((e = kg__parse_int(L, v, "usage sample_seed", 0, INT64_MAX, &x)) != KG_OK)
            return e;
        u->seed = (uint64_t)x;
    }
    if ((v = kg__ymap_get(n, "max_pending")) != NULL) {
        if ((e = kg__parse_int(L, v, "usage max_pending", 1, 100000000, &x)) != KG_OK)
            return e;
        u->max_pending = (size_t)x;
    }
    return KG_OK;
}

kg_error kg__usage_section_load(kg__pload *L, kg__ynode *n)
{
    kg__usage_conf *u;
    kg__ynode *mod, *v;
    kg_opts *opts = NULL;
    kg_error e;
    char err[1400];

    if (n->type != KG__Y_MAP)
        return kg__err_at(L, n, "usage must be a mapping {module: sql, "
                          "options: {...}, flush_interval: 5s, sample: 1%%}");
    mod = kg__ymap_get(n, "module");
    if (mod == NULL)
        return kg__err_at(L, n, "usage: without 'module:' (the usage store, "
                          "such as sql)");
    if ((e = kg__want_scalar(L, mod, "module")) != KG_OK)
        return e;
    u = calloc(1, sizeof(*u));
    if (u == NULL)
        return KG_ERR_NOMEM;
    L->p->usage = u;   /* kg_policy_free frees it, also half-built */
    u->flush_interval = DEFAULT_FLUSH_INTERVAL;
    u->sample_ppm = DEFAULT_SAMPLE_PPM;
    u->max_pending = DEFAULT_MAX_PENDING;
    if ((e = parse_knobs(L, n, u)) != KG_OK)
        return e;
    v = kg__ymap_get(n, "options");
    if (v != NULL && v->type != KG__Y_MAP &&
        !(v->type == KG__Y_SCALAR && v->value[0] == '\0'))
        return kg__err_at(L, v, "usage options must be a mapping");
    if (v != NULL && v->type != KG__Y_MAP)
        v = NULL;
    if ((e = kg__check_unknown(L, n, "usage", "module, options, "
                               "flush_interval, sample, sample_seed, "
                               "max_pending")) != KG_OK)
        return e;
    e = kg__loader_get(L->p->ctx, mod->value, KG_PLUGIN_USAGE,
                       L->p->plugin_path, L->p->nplugin_path, &u->mod, err,
                       sizeof(err));
    if (e != KG_OK) {
        u->mod = NULL;
        kg__err_at(L, mod, "%s", err);
        return e == KG_ERR_NOMEM ? e : KG_ERR_PLUGIN;
    }
    u->ops = kg__plugin_usage(u->mod->plugin);
    opts = kg__opts_new(L->p->ctx, L->file, L->p->dir, v, mod->value);
    if (opts == NULL)
        return KG_ERR_NOMEM;
    kg__opts_set_section(opts, KG_PLUGIN_USAGE);
    e = u->mod->plugin->create(opts, &u->inst);
    u->may_wait = kg__opts_may_wait(opts) != 0;
    if (kg__opts_finish(opts, L->diag) != KG_OK) {
        e = KG_ERR_POLICY;
    } else if (e != KG_OK) {
        kg__err_at(L, mod, "usage store %s could not start: %s", mod->value,
                   kg_strerror(e));
        e = e == KG_ERR_NOMEM ? e : KG_ERR_PLUGIN;
    }
    kg__opts_free(opts);
    return e;
}

void kg__usage_section_free(kg_policy *p)
{
    kg__usage_conf *u = p->usage;
    if (u == NULL)
        return;
    if (u->inst != NULL && u->mod != NULL)
        u->mod->plugin->destroy(u->inst);
    free(u);
    p->usage = NULL;
}

int64_t kg_usage_flush_interval(const kg_policy *p)
{
    return p != NULL && p->usage != NULL ? p->usage->flush_interval : 0;
}

/* The policy's usage section, or NULL with the diag saying there is none. */
static const kg__usage_conf *section(const kg_policy *p, kg_diag *diag)
{
    kg__diag_clear(diag);
    if (p != NULL && p->usage != NULL)
        return p->usage;
    if (p != NULL)
        kg__diag_set(diag, p->source, 0, 0, "the policy has no usage: section "
                     "(docs/usage.md)");
    return NULL;
}

kg_error kg_usage_query_rows(const kg_policy *p, const kg_usage_query *q,
                             kg_usage_row_cb cb, void *ud, kg_diag *diag)
{
    const kg__usage_conf *u;
    if (p == NULL || q == NULL || cb == NULL)
        return KG_ERR_INVALID;
    if ((u = section(p, diag)) == NULL)
        return KG_ERR_UNSUPPORTED;
    if (q->span != 60 && q->span != 3600 && q->span != 86400)
        return KG_ERR_INVALID;
    return u->ops->query(u->inst, q, cb, ud, diag);
}

kg_error kg_usage_top(const kg_policy *p, int by_key, int64_t since,
                      int64_t until, size_t limit, kg_usage_top_cb cb,
                      void *ud, kg_diag *diag)
{
    const kg__usage_conf *u;
    if (p == NULL || cb == NULL)
        return KG_ERR_INVALID;
    if ((u = section(p, diag)) == NULL)
        return KG_ERR_UNSUPPORTED;
    return u->ops->top(u->inst, by_key != 0, since, until, limit, cb, ud,
                       diag);
}

kg_error kg_usage_events(const kg_policy *p, const kg_event_query *q,
                         kg_usage_event_cb cb, void *ud, kg_diag *diag)
{
    const kg__usage_conf *u;
    if (p == NULL || q == NULL || cb == NULL)
        return KG_ERR_INVALID;
    if ((u = section(p, diag)) == NULL)
        return KG_ERR_UNSUPPORTED;
    return u->ops->events(u->inst, q, cb, ud, diag);
}

/* For usage.c's flush: the section, or NULL and the diag. */
const kg__usage_conf *kg__usage_section(const kg_policy *p, kg_diag *diag)
{
    return section(p, diag);
}
