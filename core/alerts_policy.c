/*
 * alerts_policy.c - the policy's `notifiers:` and `alerts:` sections
 * (docs/alerts.md):
 *
 *   notifiers:
 *     ops: {module: webhook, options: {url: ..., secret_file: ...}}
 *     log: {module: log}
 *   alerts:
 *     - {name: quota-80, when: {quota: 80%}, notify: [ops]}
 *
 * Every error names file:line:column; unknown keys are errors.
 */
#include "alerts_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const kind_names[] = {
    "quota", "spike", "denied", "new_client_network", "key_expires_within",
    "key_unused_for"
};

const char *kg__alert_kind_name(int kind)
{
    if (kind < 0 || kind > KG__AR_UNUSED)
        return "?";
    return kind_names[kind];
}

static void conf_free(kg__alerts_conf *c)
{
    size_t i;
    if (c == NULL)
        return;
    for (i = c->nn; i > 0; i--) {
        kg__notifier *n = &c->nv[i - 1];
        if (n->inst != NULL && n->mod != NULL)
            n->mod->plugin->destroy(n->inst);
        free(n->name);
    }
    free(c->nv);
    for (i = 0; i < c->nr; i++)
        free(c->rv[i].name);
    free(c->rv);
    free(c);
}

void kg__alerts_free(kg_policy *p)
{
    conf_free(p->alerts);
    p->alerts = NULL;
}

const kg__alerts_conf *kg__alerts_conf_of(const kg_policy *p)
{
    return p ? p->alerts : NULL;
}

/* The conf, made on first use (either section may come alone). */
static kg__alerts_conf *conf(kg_policy *p)
{
    if (p->alerts == NULL)
        p->alerts = calloc(1, sizeof(kg__alerts_conf));
    return p->alerts;
}

static kg_error parse_notifier(kg__pload *L, kg__ynode *key, kg__ynode *n,
                               kg__notifier *out)
{
    kg__ynode *mod, *v;
    kg_opts *opts;
    kg_error e;

    if ((out->name = strdup(key->value)) == NULL)
        return KG_ERR_NOMEM;
    if (n->type != KG__Y_MAP)
        return kg__err_at(L, n, "notifier '%s' must be a mapping {module: "
                          "webhook, options: {...}}", key->value);
    if ((mod = kg__ymap_get(n, "module")) == NULL)
        return kg__err_at(L, n, "notifier '%s' without 'module:'", key->value);
    if ((e = kg__want_scalar(L, mod, "module")) != KG_OK)
        return e;
    v = kg__ymap_get(n, "options");
    if (v != NULL && v->type != KG__Y_MAP &&
        !(v->type == KG__Y_SCALAR && v->value[0] == '\0'))
        return kg__err_at(L, v, "options must be a mapping");
    if (v != NULL && v->type != KG__Y_MAP)
        v = NULL;
    if ((e = kg__check_unknown(L, n, "a notifier", "module, options")) != KG_OK)
        return e;
    if ((e = kg__line_plugin(L, mod, v, KG_PLUGIN_NOTIFIER, &out->mod,
                             &opts)) != KG_OK)
        return e;
    e = out->mod->plugin->create(opts, &out->inst);
    if (kg__opts_finish(opts, L->diag) != KG_OK) {
        e = KG_ERR_POLICY;
    } else if (e != KG_OK) {
        kg__err_at(L, mod, "notifier %s could not start: %s", mod->value,
                   kg_strerror(e));
        e = e == KG_ERR_NOMEM ? e : KG_ERR_PLUGIN;
    }
    kg__opts_free(opts);
    return e;
}

kg_error kg__notifiers_load(kg__pload *L, kg__ynode *n)
{
    kg__alerts_conf *c;
    size_t i;
    kg_error e;

    if (n->type == KG__Y_SCALAR && n->value[0] == '\0')
        return KG_OK;
    if (n->type != KG__Y_MAP)
        return kg__err_at(L, n, "notifiers must be a mapping of names to "
                          "{module: ..., options: ...}");
    if ((c = conf(L->p)) == NULL ||
        (c->nv = calloc(n->n / 2 + 1, sizeof(*c->nv))) == NULL)
        return KG_ERR_NOMEM;
    for (i = 0; i + 1 < n->n; i += 2) {
        n->items[i]->used = 1;
        /* Counted first: a half-built notifier is destroyed with the conf. */
        if ((e = parse_notifier(L, n->items[i], n->items[i + 1],
                                &c->nv[c->nn++])) != KG_OK)
            return e;
    }
    return KG_OK;
}

/* "80%" or "80" -> 80; more than 100, or not a number: an error. */
static kg_error parse_percent(kg__pload *L, kg__ynode *v, double *pct_r)
{
    char *end;
    double d;

    if (v->type != KG__Y_SCALAR)
        return kg__err_at(L, v, "quota must be a percentage such as 80%%");
    d = strtod(v->value, &end);
    if (end == v->value || (*end != '\0' && strcmp(end, "%") != 0) ||
        !isfinite(d))
        return kg__err_at(L, v, "quota must be a percentage such as 80%%, "
                          "not '%s'", v->value);
    if (d <= 0 || d > 100)
        return kg__err_at(L, v, "quota %s is not a percentage from 1%% to "
                          "100%% (a limit is never used past its whole "
                          "window)", v->value);
    *pct_r = d;
    return KG_OK;
}

static kg_error parse_num(kg__pload *L, kg__ynode *v, const char *what,
                          double lo, double hi, double *d_r)
{
    char *end;
    double d;
    if (v->type != KG__Y_SCALAR)
        return kg__err_at(L, v, "%s must be a number", what);
    d = strtod(v->value, &end);
    if (end == v->value || *end != '\0' || !isfinite(d) || d < lo || d > hi)
        return kg__err_at(L, v, "%s must be a number from %g to %g, not '%s'",
                          what, lo, hi, v->value);
    *d_r = d;
    return KG_OK;
}

static kg_error parse_dur(kg__pload *L, kg__ynode *v, const char *what,
                          int64_t lo, int64_t hi, int64_t multiple,
                          int64_t *s_r)
{
    int64_t s;
    if (v->type != KG__Y_SCALAR || kg__parse_duration(v->value, &s) != 0)
        return kg__err_at(L, v, "%s must be a duration such as 5m, 1h or 7d",
                          what);
    if (s < lo || s > hi || s % multiple != 0)
        return kg__err_at(L, v, "%s must be from %llds to %llds, a multiple "
                          "of %llds, not '%s'", what, (long long)lo,
                          (long long)hi, (long long)multiple, v->value);
    *s_r = s;
    return KG_OK;
}

static kg_error parse_per(kg__pload *L, kg__ynode *m, kg__alert_rule *r)
{
    kg__ynode *v = kg__ymap_get(m, "per");
    if (v == NULL)
        return KG_OK;
    if (v->type == KG__Y_SCALAR && strcmp(v->value, "key") == 0)
        r->per_key = 1;
    else if (!(v->type == KG__Y_SCALAR && strcmp(v->value, "account") == 0))
        return kg__err_at(L, v, "per must be account (the default) or key");
    return KG_OK;
}

static kg_error parse_spike(kg__pload *L, kg__ynode *m, kg__alert_rule *r)
{
    kg__ynode *v;
    kg_error e;
    double d;

    if (m->type != KG__Y_MAP)
        return kg__err_at(L, m, "spike must be a mapping {factor: 5, over: 1h, "
                          "baseline: 7d, min_requests: 100}");
    r->threshold = 5;
    r->over = 3600;
    r->baseline_days = 7;
    r->min_requests = 100;
    if ((v = kg__ymap_get(m, "factor")) != NULL &&
        (e = parse_num(L, v, "factor", 1.1, 1e6, &r->threshold)) != KG_OK)
        return e;
    /* A period divides a day, so that "the same period of another day"
     * is a whole number of periods back (docs/alerts.md "spike"). */
    if ((v = kg__ymap_get(m, "over")) != NULL) {
        if ((e = parse_dur(L, v, "over", 60, 86400, 60, &r->over)) != KG_OK)
            return e;
        if (86400 % r->over != 0)
            return kg__err_at(L, v, "over must divide a day (5m, 10m, 15m, "
                              "30m, 1h, 2h, 3h, 4h, 6h, 12h, 1d), not '%s'",
                              v->value);
    }
    if ((v = kg__ymap_get(m, "baseline")) != NULL) {
        int64_t s;
        if ((e = parse_dur(L, v, "baseline", 86400, 28 * 86400, 86400,
                           &s)) != KG_OK)
            return e;
        r->baseline_days = s / 86400;
    }
    if ((v = kg__ymap_get(m, "min_requests")) != NULL) {
        if ((e = parse_num(L, v, "min_requests", 0, 1e12, &d)) != KG_OK)
            return e;
        r->min_requests = (int64_t)d;
    }
    if ((e = parse_per(L, m, r)) != KG_OK)
        return e;
    return kg__check_unknown(L, m, "spike",
                             "factor, over, baseline, min_requests, per");
}

static kg_error parse_denied(kg__pload *L, kg__ynode *m, kg__alert_rule *r)
{
    kg__ynode *v;
    kg_error e;
    size_t i;

    if (m->type != KG__Y_MAP)
        return kg__err_at(L, m, "denied must be a mapping {codes: [...], "
                          "count: 20, within: 5m}");
    r->threshold = 20;
    r->within = 300;
    if ((v = kg__ymap_get(m, "codes")) != NULL) {
        size_t n = v->type == KG__Y_SEQ ? v->n : 1;
        if (v->type == KG__Y_MAP || n > KG__AR_MAX_CODES)
            return kg__err_at(L, v, "codes must be a list of at most %d "
                              "denial codes", KG__AR_MAX_CODES);
        for (i = 0; i < n; i++) {
            kg__ynode *it = v->type == KG__Y_SEQ ? v->items[i] : v;
            int c, found = 0;
            if ((e = kg__want_scalar(L, it, "a code")) != KG_OK)
                return e;
            for (c = 1; c < KG_CODE__LAST && !found; c++)
                if (strcmp(kg_code_name((kg_code)c), it->value) == 0) {
                    r->codes[r->ncodes++] = (kg_code)c;
                    found = 1;
                }
            if (!found)
                return kg__err_at(L, it, "unknown denial code '%s' (expected "
                                  "unauthorized, key_revoked, key_expired, "
                                  "insufficient_permissions, ip_not_allowed, "
                                  "rate_limited, account_suspended, "
                                  "invalid_request, auth_unavailable)",
                                  it->value);
        }
    }
    if ((v = kg__ymap_get(m, "count")) != NULL &&
        (e = parse_num(L, v, "count", 1, 1e12, &r->threshold)) != KG_OK)
        return e;
    if ((v = kg__ymap_get(m, "within")) != NULL &&
        (e = parse_dur(L, v, "within", 60, 86400, 60, &r->within)) != KG_OK)
        return e;
    if ((e = parse_per(L, m, r)) != KG_OK)
        return e;
    return kg__check_unknown(L, m, "denied", "codes, count, within, per");
}

static kg_error parse_newnet(kg__pload *L, kg__ynode *m, kg__alert_rule *r)
{
    kg__ynode *v;
    kg_error e;
    double d;

    r->prefix4 = 24;
    r->prefix6 = 48;
    if (m->type == KG__Y_SCALAR && m->value[0] == '\0')
        return KG_OK;
    if (m->type != KG__Y_MAP)
        return kg__err_at(L, m, "new_client_network must be a mapping "
                          "{prefix: 24, prefix_v6: 48}");
    if ((v = kg__ymap_get(m, "prefix")) != NULL) {
        if ((e = parse_num(L, v, "prefix", 8, 32, &d)) != KG_OK)
            return e;
        r->prefix4 = (int)d;
    }
    if ((v = kg__ymap_get(m, "prefix_v6")) != NULL) {
        if ((e = parse_num(L, v, "prefix_v6", 16, 128, &d)) != KG_OK)
            return e;
        r->prefix6 = (int)d;
    }
    return kg__check_unknown(L, m, "new_client_network", "prefix, prefix_v6");
}

static kg_error parse_when(kg__pload *L, kg__ynode *w, kg__alert_rule *r)
{
    kg__ynode *k, *v;
    size_t i;

    if (w->type != KG__Y_MAP || w->n != 2)
        return kg__err_at(L, w, "when must be a mapping of one condition: "
                          "quota, spike, denied, new_client_network, "
                          "key_expires_within or key_unused_for");
    k = w->items[0];
    v = w->items[1];
    k->used = 1;
    for (i = 0; i <= KG__AR_UNUSED; i++)
        if (strcmp(k->value, kind_names[i]) == 0)
            break;
    r->kind = (int)i;
    switch (i) {
    case KG__AR_QUOTA:
        return parse_percent(L, v, &r->threshold);
    case KG__AR_SPIKE:
        return parse_spike(L, v, r);
    case KG__AR_DENIED:
        return parse_denied(L, v, r);
    case KG__AR_NEWNET:
        return parse_newnet(L, v, r);
    case KG__AR_EXPIRES:
        return parse_dur(L, v, k->value, 3600, 366 * 86400, 1, &r->duration);
    case KG__AR_UNUSED:
        return parse_dur(L, v, k->value, 86400, 3660 * 86400, 1,
                         &r->duration);
    default:
        return kg__err_at(L, k, "unknown condition '%s' (expected quota, "
                          "spike, denied, new_client_network, "
                          "key_expires_within or key_unused_for)", k->value);
    }
}

static kg_error parse_rule(kg__pload *L, kg__alerts_conf *c, kg__ynode *n,
                           kg__alert_rule *r)
{
    kg__ynode *v;
    kg_error e;
    size_t i, j;

    if (n->type != KG__Y_MAP)
        return kg__err_at(L, n, "a rule must be a mapping {name: ..., when: "
                          "{...}, notify: [...]}");
    if ((v = kg__ymap_get(n, "name")) == NULL)
        return kg__err_at(L, n, "a rule without 'name:'");
    if ((e = kg__want_scalar(L, v, "name")) != KG_OK)
        return e;
    if (v->value[0] == '\0' || strlen(v->value) > 64 ||
        strspn(v->value, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
               "0123456789-_.") != strlen(v->value))
        return kg__err_at(L, v, "a rule name is 1 to 64 letters, digits, "
                          "'-', '_' or '.'");
    if (kg__alerts_rule(c, v->value) != NULL)
        return kg__err_at(L, v, "a rule named '%s' is defined above",
                          v->value);
    if ((r->name = strdup(v->value)) == NULL)
        return KG_ERR_NOMEM;
    if ((v = kg__ymap_get(n, "when")) == NULL)
        return kg__err_at(L, n, "rule '%s' without 'when:'", r->name);
    if ((e = parse_when(L, v, r)) != KG_OK)
        return e;
    if (r->kind == KG__AR_QUOTA) {
        if (!c->quota || r->threshold < c->quota_min)
            c->quota_min = r->threshold;
        c->quota = 1;
    }
    if ((v = kg__ymap_get(n, "notify")) == NULL)
        return kg__err_at(L, n, "rule '%s' without 'notify:' (a list of "
                          "notifiers)", r->name);
    if (v->type == KG__Y_MAP || (v->type == KG__Y_SEQ &&
                                 (v->n == 0 || v->n > KG__AR_MAX_NOTIFY)))
        return kg__err_at(L, v, "notify must be a list of 1 to %d notifiers",
                          KG__AR_MAX_NOTIFY);
    for (i = 0; i < (v->type == KG__Y_SEQ ? v->n : 1); i++) {
        kg__ynode *it = v->type == KG__Y_SEQ ? v->items[i] : v;
        if ((e = kg__want_scalar(L, it, "a notifier")) != KG_OK)
            return e;
        for (j = 0; j < c->nn; j++)
            if (strcmp(c->nv[j].name, it->value) == 0)
                break;
        if (j == c->nn)
            return kg__err_at(L, it, "rule '%s' notifies '%s', which is not "
                              "in notifiers:", r->name, it->value);
        r->notify[r->nnotify++] = j;
    }
    return kg__check_unknown(L, n, "a rule", "name, when, notify");
}

kg_error kg__alerts_load(kg__pload *L, kg__ynode *n)
{
    kg__alerts_conf *c;
    size_t i;
    kg_error e;

    if (n->type == KG__Y_SCALAR && n->value[0] == '\0')
        return KG_OK;
    if (n->type != KG__Y_SEQ)
        return kg__err_at(L, n, "alerts must be a list of rules {name: ..., "
                          "when: {...}, notify: [...]}");
    if ((c = conf(L->p)) == NULL ||
        (c->rv = calloc(n->n + 1, sizeof(*c->rv))) == NULL)
        return KG_ERR_NOMEM;
    for (i = 0; i < n->n; i++)
        if ((e = parse_rule(L, c, n->items[i], &c->rv[c->nr++])) != KG_OK)
            return e;
    return KG_OK;
}

const kg__alert_rule *kg__alerts_rule(const kg__alerts_conf *c,
                                      const char *name)
{
    size_t i;
    for (i = 0; c != NULL && i < c->nr; i++)
        if (c->rv[i].name != NULL && strcmp(c->rv[i].name, name) == 0)
            return &c->rv[i];
    return NULL;
}

const kg__notifier *kg__alerts_notifier(const kg__alerts_conf *c,
                                        const char *name)
{
    size_t i;
    for (i = 0; c != NULL && i < c->nn; i++)
        if (strcmp(c->nv[i].name, name) == 0)
            return &c->nv[i];
    return NULL;
}

kg_error kg_policy_outbox(const kg_policy *p, const struct kg_outbox_ops **ops_r,
                          void **store_r, kg_diag *diag)
{
    const kg__usage_conf *u = kg__usage_section(p, diag);

    *ops_r = NULL;
    *store_r = NULL;
    if (u == NULL)
        return KG_ERR_UNSUPPORTED;
    if (u->ops->outbox == NULL) {
        kg_diag_set(diag, "the usage store (%s) keeps no alert outbox",
                    u->mod->name);
        return KG_ERR_UNSUPPORTED;
    }
    *ops_r = u->ops->outbox;
    *store_r = u->inst;
    return KG_OK;
}

size_t kg_policy_alert_count(const kg_policy *p)
{
    const kg__alerts_conf *c = kg__alerts_conf_of(p);
    return c ? c->nr : 0;
}

/* The condition as the policy would write it. */
static void describe(const kg__alert_rule *r, char *buf, size_t size)
{
    size_t i, n;
    switch (r->kind) {
    case KG__AR_QUOTA:
        snprintf(buf, size, "any limit of an account at %g%% of its window",
                 r->threshold);
        break;
    case KG__AR_SPIKE:
        snprintf(buf, size, "an %s's requests over %llds above %g x the mean "
                 "of the same period over %lld days (at least %lld requests)",
                 r->per_key ? "key" : "account", (long long)r->over,
                 r->threshold, (long long)r->baseline_days,
                 (long long)r->min_requests);
        break;
    case KG__AR_DENIED:
        n = (size_t)snprintf(buf, size, "%g denials within %llds of an %s (",
                             r->threshold, (long long)r->within,
                             r->per_key ? "key" : "account");
        for (i = 0; i < r->ncodes && n < size; i++)
            n += (size_t)snprintf(buf + n, size - n, "%s%s", i ? ", " : "",
                                  kg_code_name(r->codes[i]));
        if (n < size)
            snprintf(buf + n, size - n, "%s)", r->ncodes ? "" : "any code");
        break;
    case KG__AR_NEWNET:
        snprintf(buf, size, "a client network not seen before (/%d, IPv6 "
                 "/%d)", r->prefix4, r->prefix6);
        break;
    case KG__AR_EXPIRES:
        snprintf(buf, size, "a key expires within %llds",
                 (long long)r->duration);
        break;
    default:
        snprintf(buf, size, "a key unused for %llds", (long long)r->duration);
        break;
    }
}

const char *kg_policy_alert(const kg_policy *p, size_t i, const char **kind_r,
                            char *buf, size_t size)
{
    const kg__alerts_conf *c = kg__alerts_conf_of(p);
    if (c == NULL || i >= c->nr)
        return NULL;
    if (kind_r != NULL)
        *kind_r = kg__alert_kind_name(c->rv[i].kind);
    if (buf != NULL && size > 0)
        describe(&c->rv[i], buf, size);
    return c->rv[i].name;
}

size_t kg_policy_notifier_count(const kg_policy *p)
{
    const kg__alerts_conf *c = kg__alerts_conf_of(p);
    return c ? c->nn : 0;
}

const char *kg_policy_notifier(const kg_policy *p, size_t i,
                               const char **module_r)
{
    const kg__alerts_conf *c = kg__alerts_conf_of(p);
    if (c == NULL || i >= c->nn)
        return NULL;
    if (module_r != NULL)
        *module_r = c->nv[i].mod ? c->nv[i].mod->name : "?";
    return c->nv[i].name;
}
