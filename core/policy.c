/*
 * policy.c - load a YAML policy into stages of plugin instances.
 *
 *   version: 1
 *   key_prefix: whizo
 *   realm: "whizo API"
 *   plugin_path: [dir, ...]
 *   paths: {semicolon: refuse, backslash: refuse, double_slash: refuse}
 *   credential: [line, ...]
 *   keystore:   [line, ...]
 *   plans:
 *     free:
 *       priority: 0
 *       lease_ttl: 5m
 *       extends: other-plan
 *       account: [line, ...]
 *       limit:   [line, ...]
 *
 * A line is {module: NAME, control: KEYWORD|{ok: A, fail: A, ignore: A,
 * unavailable: A}, options: {...}} (+ cache: {...} on keystore lines).
 * Every error names file:line:column.  Unknown keys are errors.  The
 * lines of a stage are loaded by policy_line.c.
 */
#include "internal.h"

#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_POLICY_BYTES (16 * 1024 * 1024)

kg_error kg__err_at(kg__pload *L, const kg__ynode *n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    kg__diag_vset(L->diag, L->file, n ? n->line : 0, n ? n->column : 0, fmt, ap);
    va_end(ap);
    return KG_ERR_POLICY;
}

/* Report the first key of `map` not marked used. */
kg_error kg__check_unknown(kg__pload *L, kg__ynode *map,
                           const char *where, const char *allowed)
{
    size_t i;
    for (i = 0; i + 1 < map->n; i += 2)
        if (!map->items[i]->used)
            return kg__err_at(L, map->items[i], "unknown key '%s' in %s "
                              "(expected one of: %s)", map->items[i]->value,
                              where, allowed);
    return KG_OK;
}

kg_error kg__want_scalar(kg__pload *L, kg__ynode *n, const char *what)
{
    if (n->type != KG__Y_SCALAR)
        return kg__err_at(L, n, "%s must be a single value", what);
    return KG_OK;
}

kg_error kg__parse_int(kg__pload *L, kg__ynode *n, const char *what,
                       long long lo, long long hi, long long *v_r)
{
    char *end;
    long long v;
    if (n->type != KG__Y_SCALAR)
        return kg__err_at(L, n, "%s must be a number", what);
    errno = 0;
    v = strtoll(n->value, &end, 10);
    if (errno || end == n->value || *end || v < lo || v > hi)
        return kg__err_at(L, n, "%s must be a number from %lld to %lld, not '%s'",
                          what, lo, hi, n->value);
    *v_r = v;
    return KG_OK;
}

static kg_error parse_plan(kg__pload *L, kg__ynode *key, kg__ynode *n,
                           kg__plan *plan)
{
    kg__ynode *v;
    kg_error e;
    long long pr = 0;

    plan->name = strdup(key->value);
    plan->line = key->line;
    plan->column = key->column;
    if (plan->name == NULL)
        return KG_ERR_NOMEM;
    if (n->type == KG__Y_SCALAR && n->value[0] == '\0')
        return KG_OK;
    if (n->type != KG__Y_MAP)
        return kg__err_at(L, n, "plan '%s' must be a mapping", key->value);
    if ((v = kg__ymap_get(n, "extends")) != NULL) {
        if ((e = kg__want_scalar(L, v, "extends")) != KG_OK)
            return e;
        plan->extends = strdup(v->value);
        if (plan->extends == NULL)
            return KG_ERR_NOMEM;
    }
    if ((v = kg__ymap_get(n, "priority")) != NULL) {
        if ((e = kg__parse_int(L, v, "priority", 0, 1000, &pr)) != KG_OK)
            return e;
        plan->priority = (int)pr;
        plan->has_priority = 1;
    }
    if ((v = kg__ymap_get(n, "lease_ttl")) != NULL) {
        if (v->type != KG__Y_SCALAR ||
            kg__parse_duration(v->value, &plan->lease_ttl) != 0 ||
            plan->lease_ttl < 1)
            return kg__err_at(L, v, "lease_ttl must be a duration such as 30s or 5m");
        plan->has_lease_ttl = 1;
    }
    if ((v = kg__ymap_get(n, "account")) != NULL) {
        plan->has_account = 1;
        if ((e = kg__parse_stack(L, v, "account", KG_PLUGIN_ACCOUNT,
                                 &plan->account)) != KG_OK)
            return e;
    }
    if ((v = kg__ymap_get(n, "limit")) != NULL) {
        plan->has_limit = 1;
        /* A decision reports each limit (RateLimit headers) in an array
         * of KG__MAX_LIMITS: a plan with more would drop some unseen. */
        if (v->type == KG__Y_SEQ && v->n > KG__MAX_LIMITS)
            return kg__err_at(L, v->items[KG__MAX_LIMITS], "plan '%s' has %zu "
                              "limit lines, more than the %d a decision can "
                              "report; merge or remove some", key->value, v->n,
                              KG__MAX_LIMITS);
        if ((e = kg__parse_stack(L, v, "limit", KG_PLUGIN_LIMIT,
                                 &plan->limit)) != KG_OK)
            return e;
    }
    return kg__check_unknown(L, n, "a plan",
                             "extends, priority, lease_ttl, account, limit");
}

static kg_error copy_stack(kg__stack *dst, const kg__stack *src)
{
    dst->stage = src->stage;
    dst->n = src->n;
    dst->lines = calloc(src->n ? src->n : 1, sizeof(*dst->lines));
    if (dst->lines == NULL)
        return KG_ERR_NOMEM;
    if (src->n)
        memcpy(dst->lines, src->lines, src->n * sizeof(*dst->lines));
    return KG_OK;
}

/* Resolve `extends:` chains: what a plan does not say comes from its parent. */
static kg_error resolve_extends(kg__pload *L, kg__ynode *plans)
{
    kg_policy *p = L->p;
    size_t i;

    for (i = 0; i < p->nplans; i++) {
        kg__plan *pl = &p->plans[i];
        const char *parent = pl->extends;
        size_t depth = 0;

        while (parent != NULL) {
            const kg__plan *pp = kg__policy_plan(p, parent);
            if (pp == NULL) {
                kg__ynode *pn = kg__ymap_get(plans, pl->name);
                kg__ynode *en = pn ? kg__ymap_key(pn, "extends") : NULL;
                return kg__err_at(L, en ? en : plans, "plan '%s' extends '%s', "
                                  "which is not defined", pl->name, parent);
            }
            if (++depth > p->nplans) {
                kg__ynode *pn = kg__ymap_key(plans, pl->name);
                return kg__err_at(L, pn, "plan '%s': extends: forms a cycle",
                                  pl->name);
            }
            if (!pl->has_account && pp->has_account) {
                if (copy_stack(&pl->account, &pp->account) != KG_OK)
                    return KG_ERR_NOMEM;
                pl->has_account = 2;
            }
            if (!pl->has_limit && pp->has_limit) {
                if (copy_stack(&pl->limit, &pp->limit) != KG_OK)
                    return KG_ERR_NOMEM;
                pl->has_limit = 2;
            }
            if (!pl->has_priority && pp->has_priority) {
                pl->priority = pp->priority;
                pl->has_priority = 2;
            }
            if (!pl->has_lease_ttl && pp->has_lease_ttl) {
                pl->lease_ttl = pp->lease_ttl;
                pl->has_lease_ttl = 2;
            }
            parent = pp->extends;
        }
    }
    /* Inherited flags were marked 2 so that a grandparent does not
     * override a parent; they are plain "has" from now on. */
    for (i = 0; i < p->nplans; i++) {
        const kg__stack *st = &p->plans[i].limit;
        size_t j;
        if (!p->plans[i].has_lease_ttl)
            p->plans[i].lease_ttl = 300;
        p->plans[i].account.stage = "account";
        p->plans[i].limit.stage = "limit";
        /* A limiter with no batch key keeps its state in the context. */
        for (j = 0; j < st->n; j++) {
            const kg_plugin *pl = st->lines[j]->mod->plugin;
            if (pl->abi_minor < 1 || pl->limit->batch_key == NULL ||
                pl->limit->batch_key(st->lines[j]->inst) == NULL)
                p->memory_limits = 1;
        }
    }
    return KG_OK;
}

const kg__plan *kg__policy_plan(const kg_policy *p, const char *name)
{
    size_t i;
    if (name == NULL)
        return NULL;
    for (i = 0; i < p->nplans; i++)
        if (strcmp(p->plans[i].name, name) == 0)
            return &p->plans[i];
    return NULL;
}

kg_error kg__parse_plugin_path(kg__pload *L, kg__ynode *v, char ***dirs_r,
                               size_t *n_r)
{
    char **dirs;
    size_t i, n = 0;
    kg_error e;

    if (v->type == KG__Y_SCALAR) {
        dirs = calloc(1, sizeof(char *));
        if (dirs == NULL || (dirs[0] = strdup(v->value)) == NULL) {
            free(dirs);
            return KG_ERR_NOMEM;
        }
        n = 1;
    } else if (v->type == KG__Y_SEQ) {
        dirs = calloc(v->n ? v->n : 1, sizeof(char *));
        if (dirs == NULL)
            return KG_ERR_NOMEM;
        for (i = 0; i < v->n; i++) {
            e = kg__want_scalar(L, v->items[i], "a plugin_path entry");
            if (e == KG_OK && (dirs[n] = strdup(v->items[i]->value)) == NULL)
                e = KG_ERR_NOMEM;
            if (e != KG_OK) {
                /* what was parsed stays the caller's, to free as a whole */
                *dirs_r = dirs;
                *n_r = n;
                return e;
            }
            n++;
        }
    } else {
        return kg__err_at(L, v, "plugin_path must be a directory or a list of them");
    }
    *dirs_r = dirs;
    *n_r = n;
    return KG_OK;
}

static kg_error parse_policy(kg__pload *L, kg__ynode *root)
{
    kg_policy *p = L->p;
    kg__ynode *v;
    kg_error e;
    size_t i;

    if (root->type != KG__Y_MAP)
        return kg__err_at(L, root, "a policy must be a mapping with credential:, "
                          "keystore: and plans:");
    if ((v = kg__ymap_get(root, "version")) != NULL) {
        if (v->type != KG__Y_SCALAR || strcmp(v->value, "1") != 0)
            return kg__err_at(L, v, "unsupported policy version (this keygate "
                              "reads version 1)");
    }
    if ((v = kg__ymap_get(root, "key_prefix")) != NULL) {
        if ((e = kg__want_scalar(L, v, "key_prefix")) != KG_OK)
            return e;
        free(p->key_prefix);
        p->key_prefix = strdup(v->value);
        {
            char test[KG_KEY_MAX];
            if (kg_key_generate(v->value, test, sizeof(test)) != KG_OK)
                return kg__err_at(L, v, "key_prefix must be 1 to %d letters or "
                                  "digits", KG_KEY_PREFIX_MAX);
            kg_wipe(test, sizeof(test));
        }
    }
    if ((v = kg__ymap_get(root, "realm")) != NULL) {
        if ((e = kg__want_scalar(L, v, "realm")) != KG_OK)
            return e;
        if (strchr(v->value, '"') || strchr(v->value, '\\') ||
            strlen(v->value) > 100)
            return kg__err_at(L, v, "realm must be at most 100 characters, "
                              "without quotes or backslashes");
        free(p->realm);
        p->realm = strdup(v->value);
    }
    if ((v = kg__ymap_get(root, "admin_listen")) != NULL) {
        /* keygated's, checked by it (an address it can bind): the library
         * keeps the string (docs/admin-api.md). */
        if ((e = kg__want_scalar(L, v, "admin_listen")) != KG_OK)
            return e;
        free(p->admin_listen);
        if ((p->admin_listen = strdup(v->value)) == NULL)
            return KG_ERR_NOMEM;
    }
    if ((v = kg__ymap_get(root, "plugin_path")) != NULL &&
        (e = kg__parse_plugin_path(L, v, &p->plugin_path, &p->nplugin_path)) != KG_OK)
        return e;
    if (p->key_prefix == NULL || p->realm == NULL)
        return KG_ERR_NOMEM;
    if ((v = kg__ymap_get(root, "paths")) != NULL &&
        (e = kg__paths_load(L, v, &p->paths_allow)) != KG_OK)
        return e;
    v = kg__ymap_get(root, "credential");
    if (v == NULL)
        return kg__err_at(L, root, "the policy has no credential: stage (e.g. "
                          "- {module: bearer, control: optional})");
    if ((e = kg__parse_stack(L, v, "credential", KG_PLUGIN_CREDENTIAL,
                             &p->credential)) != KG_OK)
        return e;
    if (p->credential.n == 0)
        return kg__err_at(L, v, "the credential stage is empty");
    if (kg__credential_hints(p) != KG_OK)
        return KG_ERR_NOMEM;
    v = kg__ymap_get(root, "keystore");
    if (v == NULL)
        return kg__err_at(L, root, "the policy has no keystore: stage (e.g. "
                          "- {module: file, options: {path: keys.yaml}})");
    if ((e = kg__parse_stack(L, v, "keystore", KG_PLUGIN_KEYSTORE,
                             &p->keystore)) != KG_OK)
        return e;
    if (p->keystore.n == 0)
        return kg__err_at(L, v, "the keystore stage is empty");
    v = kg__ymap_get(root, "plans");
    if (v == NULL)
        return kg__err_at(L, root, "the policy has no plans: (e.g. plans: {free: {}})");
    if (v->type != KG__Y_MAP || v->n == 0)
        return kg__err_at(L, v, "plans must be a mapping of plan names to plans");
    p->plans = calloc(v->n / 2, sizeof(*p->plans));
    if (p->plans == NULL)
        return KG_ERR_NOMEM;
    for (i = 0; i + 1 < v->n; i += 2) {
        v->items[i]->used = 1;
        if ((e = parse_plan(L, v->items[i], v->items[i + 1],
                            &p->plans[p->nplans++])) != KG_OK)
            return e;
    }
    if ((e = resolve_extends(L, v)) != KG_OK)
        return e;
    if ((v = kg__ymap_get(root, "signers")) != NULL) {
        if ((e = kg__signers_load(p, v, L->file, L->diag)) != KG_OK)
            return e;
    }
    if ((v = kg__ymap_get(root, "limits")) != NULL &&
        (e = kg__limits_section(L, v)) != KG_OK)
        return e;
    if ((v = kg__ymap_get(root, "usage")) != NULL &&
        (e = kg__usage_section_load(L, v)) != KG_OK)
        return e;
    /* Notifiers first: the rules name them (docs/alerts.md). */
    if ((v = kg__ymap_get(root, "notifiers")) != NULL &&
        (e = kg__notifiers_load(L, v)) != KG_OK)
        return e;
    if ((v = kg__ymap_get(root, "alerts")) != NULL &&
        (e = kg__alerts_load(L, v)) != KG_OK)
        return e;
    return kg__check_unknown(L, root, "the policy",
                             "version, key_prefix, realm, plugin_path, paths, "
                             "credential, keystore, plans, signers, limits, "
                             "usage, notifiers, alerts, admin_listen");
}

void kg_policy_free(kg_policy *p)
{
    size_t i;
    if (p == NULL)
        return;
    kg__signers_free(p);
    kg__usage_section_free(p);
    kg__alerts_free(p);
    /* Lines are destroyed in reverse order of creation. */
    for (i = p->nall; i > 0; i--)
        kg__line_free(p->all[i - 1]);
    free(p->all);
    free(p->credential.lines);
    free(p->keystore.lines);
    for (i = 0; i < p->nplans; i++) {
        free(p->plans[i].name);
        free(p->plans[i].extends);
        free(p->plans[i].account.lines);
        free(p->plans[i].limit.lines);
    }
    free(p->plans);
    for (i = 0; i < p->nplugin_path; i++)
        free(p->plugin_path[i]);
    free(p->plugin_path);
    free(p->source);
    free(p->dir);
    free(p->key_prefix);
    free(p->admin_listen);
    free(p->realm);
    free(p->missing_key);
    free(p);
}

static kg_error load(kg_context *ctx, const char *text, size_t len,
                     const char *name, const char *dir, kg_policy **policy_r,
                     kg_diag *diag)
{
    kg__pload L;
    kg_policy *p;
    kg__ynode *root;
    kg_error e;

    kg__diag_clear(diag);
    if (ctx == NULL || text == NULL || policy_r == NULL)
        return KG_ERR_INVALID;
    *policy_r = NULL;
    p = calloc(1, sizeof(*p));
    if (p == NULL)
        return KG_ERR_NOMEM;
    p->ctx = ctx;
    p->source = strdup(name);
    p->dir = dir ? strdup(dir) : NULL;
    p->key_prefix = strdup("whizo");
    p->realm = strdup("keygate");
    if (p->source == NULL || p->key_prefix == NULL || p->realm == NULL) {
        kg_policy_free(p);
        return KG_ERR_NOMEM;
    }
    root = kg__yaml_parse(text, len, name, diag);
    if (root == NULL) {
        kg_policy_free(p);
        return KG_ERR_POLICY;
    }
    L.p = p;
    L.diag = diag;
    L.file = p->source;
    e = parse_policy(&L, root);
    kg__yaml_free(root);
    if (e != KG_OK) {
        if (e == KG_ERR_NOMEM && diag && diag->message[0] == '\0')
            kg__diag_set(diag, name, 0, 0, "out of memory");
        kg_policy_free(p);
        return e;
    }
    *policy_r = p;
    return KG_OK;
}

kg_error kg_policy_load_string(kg_context *ctx, const char *yaml,
                               const char *name, kg_policy **policy_r,
                               kg_diag *diag)
{
    if (yaml == NULL)
        return KG_ERR_INVALID;
    return load(ctx, yaml, strlen(yaml), name ? name : "<string>", NULL,
                policy_r, diag);
}

kg_error kg__read_policy_file(const char *path, char **text_r, size_t *len_r,
                              kg_diag *diag)
{
    FILE *f;
    char *buf = NULL;
    size_t len = 0, cap = 0;

    f = fopen(path, "r");
    if (f == NULL) {
        kg__diag_set(diag, path, 0, 0, "cannot open the policy: %s",
                     strerror(errno));
        return KG_ERR_IO;
    }
    for (;;) {
        size_t n;
        if (len + 4096 + 1 > cap) {
            char *nb;
            cap = cap ? cap * 2 : 8192;
            nb = realloc(buf, cap);
            if (nb == NULL) {
                free(buf);
                fclose(f);
                return KG_ERR_NOMEM;
            }
            buf = nb;
        }
        n = fread(buf + len, 1, 4096, f);
        len += n;
        if (n < 4096)
            break;
        if (len > MAX_POLICY_BYTES) {
            free(buf);
            fclose(f);
            kg__diag_set(diag, path, 0, 0, "the policy is larger than %d bytes",
                         MAX_POLICY_BYTES);
            return KG_ERR_POLICY;
        }
    }
    if (ferror(f)) {
        kg__diag_set(diag, path, 0, 0, "cannot read the policy: %s",
                     strerror(errno));
        free(buf);
        fclose(f);
        return KG_ERR_IO;
    }
    fclose(f);
    buf[len] = '\0';
    if (memchr(buf, '\0', len) != NULL) {
        kg__diag_set(diag, path, 0, 0, "the policy contains a NUL byte");
        free(buf);
        return KG_ERR_POLICY;
    }
    *text_r = buf;
    *len_r = len;
    return KG_OK;
}

kg_error kg_policy_load_file(kg_context *ctx, const char *path,
                             kg_policy **policy_r, kg_diag *diag)
{
    char *buf = NULL, *dcopy = NULL;
    size_t len = 0;
    kg_error e;

    kg__diag_clear(diag);
    if (ctx == NULL || path == NULL || policy_r == NULL)
        return KG_ERR_INVALID;
    *policy_r = NULL;
    if ((e = kg__read_policy_file(path, &buf, &len, diag)) != KG_OK)
        return e;
    dcopy = strdup(path);
    if (dcopy == NULL) {
        free(buf);
        return KG_ERR_NOMEM;
    }
    e = load(ctx, buf, len, path, dirname(dcopy), policy_r, diag);
    free(dcopy);
    free(buf);
    return e;
}

const char *kg_policy_source(const kg_policy *p)
{
    return p->source;
}

const char *kg_policy_admin_listen(const kg_policy *p)
{
    return p->admin_listen;
}

size_t kg_policy_plan_count(const kg_policy *p)
{
    return p->nplans;
}

const char *kg_policy_plan_name(const kg_policy *p, size_t i)
{
    return i < p->nplans ? p->plans[i].name : NULL;
}

static void explain_stack(kg__buf *b, const kg__stack *st, const char *indent)
{
    size_t i;
    if (st->n == 0) {
        kg__buf_addf(b, "%s(empty: passes)\n", indent);
        return;
    }
    kg__buf_addf(b, "%s%-3s %-22s %-11s %-8s %-8s %-8s %-11s\n", indent, "#",
                 "module", "control", "ok", "fail", "ignore", "unavailable");
    for (i = 0; i < st->n; i++) {
        const kg__line *l = st->lines[i];
        const char *colon = strchr(l->label, ':');
        kg__buf_addf(b, "%s%-3zu %-22s %-11s %-8s %-8s %-8s %-11s\n", indent,
                     i + 1, colon ? colon + 1 : l->label,
                     strchr(l->control, '{') ? "explicit" : l->control,
                     kg__action_name(l->actions[0]),
                     kg__action_name(l->actions[1]),
                     kg__action_name(l->actions[2]),
                     kg__action_name(l->actions[3]));
        if (l->cache)
            kg__buf_addf(b, "%s    cache: %zu entries now\n", indent,
                         kg__cache_size(l->cache));
    }
}

char *kg_policy_explain(const kg_policy *p)
{
    kg__buf b;
    size_t i;

    kg__buf_init(&b);
    kg__buf_addf(&b, "policy %s\n", p->source);
    kg__buf_addf(&b, "key prefix: %s_   realm: \"%s\"\n", p->key_prefix, p->realm);
    kg__buf_addf(&b, "request targets: ';' on a dot segment %s, '\\' %s, "
                 "'//..' %s (400 invalid_request when refused)\n",
                 p->paths_allow & KG__TARGET_SEMICOLON ? "allowed" : "refused",
                 p->paths_allow & KG__TARGET_BACKSLASH ? "allowed" : "refused",
                 p->paths_allow & KG__TARGET_DOUBLE_SLASH ? "allowed" : "refused");
    kg__buf_adds(&b, "\nactions: ok = counts as success; done = success, "
                 "stop the stage (unless an earlier module failed);\n"
                 "  bad = remember failure, go on; die = fail, stop; "
                 "ignore = no effect; reset = forget so far.\n"
                 "A stage in which no module counted (all ignore) fails.\n");
    kg__buf_adds(&b, "\nstage credential:\n");
    explain_stack(&b, &p->credential, "  ");
    kg__buf_adds(&b, "  then: checksum of the key verified before any store\n");
    kg__buf_adds(&b, "\nstage keystore:\n");
    explain_stack(&b, &p->keystore, "  ");
    kg__buf_adds(&b, "  then (core): revoked -> 401 key_revoked; expired -> 401 key_expired\n");
    for (i = 0; i < p->nplans; i++) {
        const kg__plan *pl = &p->plans[i];
        kg__buf_addf(&b, "\nplan %s", pl->name);
        if (pl->extends)
            kg__buf_addf(&b, " (extends %s)", pl->extends);
        kg__buf_addf(&b, ": priority %d, lease ttl %llds\n", pl->priority,
                     (long long)pl->lease_ttl);
        kg__buf_adds(&b, "  stage account:\n");
        explain_stack(&b, &pl->account, "    ");
        kg__buf_adds(&b, "  stage limit:\n");
        explain_stack(&b, &pl->limit, "    ");
    }
    kg__signers_explain(p, &b);
    return kg__buf_take(&b);
}
