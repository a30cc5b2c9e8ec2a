/*
 * policy_line.c - a stage of a policy: its module lines, each
 *
 *   {module: NAME, control: KEYWORD|{ok: A, fail: A, ignore: A,
 *    unavailable: A}, options: {...}, cache: {...}, per: account|key}
 *
 * loaded (the plugin found and its instance created with the options)
 * in the order of the list.
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void kg__line_free(kg__line *l)
{
    if (l == NULL)
        return;
    if (l->inst != NULL && l->mod != NULL)
        l->mod->plugin->destroy(l->inst);
    kg__cache_free(l->cache);
    free(l->label);
    free(l->control);
    free(l->limit_name);
    free(l->hint);
    free(l->scheme);
    free(l);
}

static kg_error parse_control(kg__pload *L, kg__ynode *n, kg__line *line)
{
    static const char *const rn[4] = { "ok", "fail", "ignore", "unavailable" };
    size_t i;
    kg__buf b;

    if (n == NULL) {
        kg__control_keyword("required", line->actions);
        line->control = strdup("required");
        return line->control ? KG_OK : KG_ERR_NOMEM;
    }
    if (n->type == KG__Y_SCALAR) {
        if (kg__control_keyword(n->value, line->actions) != 0)
            return kg__err_at(L, n, "unknown control '%s' (expected required, "
                              "requisite, sufficient, optional, or a mapping "
                              "{ok: ..., fail: ..., ignore: ..., unavailable: ...})",
                              n->value);
        line->control = strdup(n->value);
        return line->control ? KG_OK : KG_ERR_NOMEM;
    }
    if (n->type != KG__Y_MAP)
        return kg__err_at(L, n, "control must be a keyword or a mapping");
    /* Results not named act as with `required`. */
    kg__control_keyword("required", line->actions);
    for (i = 0; i < 4; i++) {
        kg__ynode *v = kg__ymap_get(n, rn[i]);
        if (v == NULL)
            continue;
        if (v->type != KG__Y_SCALAR || kg__action_parse(v->value, &line->actions[i]) != 0)
            return kg__err_at(L, v, "unknown action '%s' for result %s (expected "
                              "ok, done, bad, die, ignore, continue or reset)",
                              v->type == KG__Y_SCALAR ? v->value : "?", rn[i]);
    }
    if (kg__check_unknown(L, n, "control", "ok, fail, ignore, unavailable") != KG_OK)
        return KG_ERR_POLICY;
    kg__buf_init(&b);
    kg__buf_adds(&b, "{");
    for (i = 0; i < 4; i++)
        kg__buf_addf(&b, "%s%s: %s", i ? ", " : "", rn[i],
                     kg__action_name(line->actions[i]));
    kg__buf_adds(&b, "}");
    line->control = kg__buf_take(&b);
    return line->control ? KG_OK : KG_ERR_NOMEM;
}

static kg_error parse_cache(kg__pload *L, kg__ynode *n, kg__line *line)
{
    kg__cache_conf conf = { 5 * 1000000LL, 1 * 1000000LL, 100000 };
    static const char *const keys[] = { "ttl", "negative_ttl" };
    size_t i;
    kg__ynode *v;

    if (n->type != KG__Y_MAP)
        return kg__err_at(L, n, "cache must be a mapping {ttl: 5s, negative_ttl: 1s, max_entries: 100000}");
    for (i = 0; i < 2; i++) {
        int64_t s;
        v = kg__ymap_get(n, keys[i]);
        if (v == NULL)
            continue;
        if (v->type != KG__Y_SCALAR || kg__parse_duration(v->value, &s) != 0)
            return kg__err_at(L, v, "cache %s must be a duration such as 5s or 1m",
                              keys[i]);
        if (i == 0) conf.ttl_us = s * 1000000;
        else conf.negative_ttl_us = s * 1000000;
    }
    v = kg__ymap_get(n, "max_entries");
    if (v != NULL) {
        char *end;
        long long m;
        if (v->type != KG__Y_SCALAR)
            return kg__err_at(L, v, "cache max_entries must be a number");
        m = strtoll(v->value, &end, 10);
        if (*end != '\0' || m < 1)
            return kg__err_at(L, v, "cache max_entries must be a positive number");
        conf.max_entries = (size_t)m;
    }
    if (kg__check_unknown(L, n, "cache", "ttl, negative_ttl, max_entries") != KG_OK)
        return KG_ERR_POLICY;
    line->cache = kg__cache_new(&conf);
    return line->cache ? KG_OK : KG_ERR_NOMEM;
}

static kg_error add_line(kg_policy *p, kg__line *l)
{
    kg__line **nv = realloc(p->all, (p->nall + 1) * sizeof(*nv));
    if (nv == NULL)
        return KG_ERR_NOMEM;
    nv[p->nall++] = l;
    p->all = nv;
    return KG_OK;
}

kg_error kg__line_plugin(kg__pload *L, kg__ynode *mod, kg__ynode *v, int kind,
                         const kg__module **mod_r, kg_opts **opts_r)
{
    char err[1400];
    kg_error e = kg__loader_get(L->p->ctx, mod->value, kind, L->p->plugin_path,
                                L->p->nplugin_path, mod_r, err, sizeof(err));
    if (e != KG_OK) {
        kg__err_at(L, mod, "%s", err);
        return e == KG_ERR_NOMEM ? e : KG_ERR_PLUGIN;
    }
    if ((*opts_r = kg__opts_new(L->p->ctx, L->file, L->p->dir, v,
                                mod->value)) == NULL)
        return KG_ERR_NOMEM;
    kg__opts_set_section(*opts_r, kind);
    return KG_OK;
}

/* The line's hot fields (internal.h), once its instance is made: its
 * plugin's functions for the stage, as far as the plugin's ABI minor has
 * them. */
static void line_hot(kg__line *l, int kind)
{
    const kg_plugin *pl = l->mod->plugin;
    const kg__action *a = l->actions;

    switch (kind) {
    case KG_PLUGIN_CREDENTIAL:
        l->run.extract = pl->credential->extract;
        break;
    case KG_PLUGIN_KEYSTORE:
        l->run.lookup = pl->keystore->lookup;
        l->touch = pl->keystore->touch;
        l->prefetch = pl->abi_minor >= 2 ? pl->keystore->prefetch : NULL;
        break;
    case KG_PLUGIN_ACCOUNT:
        l->run.check = pl->account->check;
        break;
    case KG_PLUGIN_LIMIT:
        l->run.acquire = pl->limit->acquire;
        /* Lines one batch() can decide (check.c): a backend that
         * batches (batch_key(), asked once: plugin.h), required or
         * requisite control (ok continues, every other result fails
         * the stage). */
        if (pl->abi_minor >= 1 && pl->limit->batch_key && pl->limit->batch &&
            a[KG_RESULT_OK] == KG__ACT_OK &&
            (a[KG_RESULT_FAIL] == KG__ACT_BAD || a[KG_RESULT_FAIL] == KG__ACT_DIE) &&
            (a[KG_RESULT_UNAVAILABLE] == KG__ACT_BAD ||
             a[KG_RESULT_UNAVAILABLE] == KG__ACT_DIE))
            l->batch_key = pl->limit->batch_key(l->inst);
        break;
    default:
        break;
    }
}

static kg_error parse_line(kg__pload *L, kg__ynode *n, const char *stage,
                           int kind, kg__line **line_r)
{
    kg__line *line;
    kg__ynode *mod, *v;
    kg_opts *opts = NULL;
    kg_error e;

    if (n->type == KG__Y_SCALAR) {
        return kg__err_at(L, n, "a %s line must be a mapping such as "
                          "{module: %s, control: required}", stage, n->value);
    }
    if (n->type != KG__Y_MAP)
        return kg__err_at(L, n, "a %s line must be a mapping {module: ..., "
                          "control: ..., options: ...}", stage);
    mod = kg__ymap_get(n, "module");
    if (mod == NULL)
        return kg__err_at(L, n, "%s line without 'module:'", stage);
    if ((e = kg__want_scalar(L, mod, "module")) != KG_OK)
        return e;
    line = calloc(1, sizeof(*line));
    if (line == NULL)
        return KG_ERR_NOMEM;
    line->line = mod->line;
    line->column = mod->column;
    if ((e = add_line(L->p, line)) != KG_OK) {
        kg__line_free(line);
        return e;
    }
    line->label = kg__asprintf("%s:%s", stage, mod->value);
    if (line->label == NULL)
        return KG_ERR_NOMEM;
    if ((e = parse_control(L, kg__ymap_get(n, "control"), line)) != KG_OK)
        return e;
    v = kg__ymap_get(n, "cache");
    if (v != NULL) {
        if (kind != KG_PLUGIN_KEYSTORE)
            return kg__err_at(L, kg__ymap_key(n, "cache"), "cache: is only "
                              "allowed on keystore lines");
        if ((e = parse_cache(L, v, line)) != KG_OK)
            return e;
    }
    v = kg__ymap_get(n, "per");
    if (v != NULL) {
        /* What a limit counts under (docs/policy.md "Accounts"). */
        if (kind != KG_PLUGIN_LIMIT)
            return kg__err_at(L, kg__ymap_key(n, "per"), "per: is only "
                              "allowed on limit lines");
        if ((e = kg__want_scalar(L, v, "per")) != KG_OK)
            return e;
        if (strcmp(v->value, "key") == 0)
            line->per_key = 1;
        else if (strcmp(v->value, "account") != 0)
            return kg__err_at(L, v, "per must be account (the default: the "
                              "account's keys share the limit) or key, not '%s'",
                              v->value);
    }
    v = kg__ymap_get(n, "options");
    if (v != NULL && v->type != KG__Y_MAP &&
        !(v->type == KG__Y_SCALAR && v->value[0] == '\0'))
        return kg__err_at(L, v, "options must be a mapping");
    if (v != NULL && v->type != KG__Y_MAP)
        v = NULL;
    if ((e = kg__check_unknown(L, n, "a module line",
                               "module, control, options, cache, per")) != KG_OK)
        return e;
    if ((e = kg__line_plugin(L, mod, v, kind, &line->mod, &opts)) != KG_OK)
        return e;
    e = line->mod->plugin->create(opts, &line->inst);
    if (e == KG_OK)
        line_hot(line, kind);
    if (e == KG_OK && kind == KG_PLUGIN_LIMIT && kg__opts_name(opts) != NULL &&
        (line->limit_name = strdup(kg__opts_name(opts))) == NULL)
        e = KG_ERR_NOMEM;
    if (kind == KG_PLUGIN_LIMIT)
        line->limit_sized = kg__opts_size(opts, &line->limit_count,
                                          &line->limit_window);
    line->may_wait = kg__opts_may_wait(opts);
    if (e == KG_OK && kind == KG_PLUGIN_CREDENTIAL &&
        ((kg__opts_hint(opts) != NULL &&
          (line->hint = strdup(kg__opts_hint(opts))) == NULL) ||
         (kg__opts_scheme(opts) != NULL &&
          (line->scheme = strdup(kg__opts_scheme(opts))) == NULL)))
        e = KG_ERR_NOMEM;
    if (kg__opts_finish(opts, L->diag) != KG_OK) {
        e = KG_ERR_POLICY;
    } else if (e == KG_OK && line->limit_name != NULL &&
               strlen(line->limit_name) > KG__LIMIT_NAME_MAX) {
        /* A decision reports a limit under a name of at most this many
         * bytes (RateLimit headers, /whoami): a longer one would be cut
         * and no longer match a key's override. */
        kg__ynode *nm = v ? kg__ymap_get(v, "name") : NULL;
        kg__err_at(L, nm ? nm : mod, "limit name '%.20s...' is %zu bytes; "
                   "at most %d", line->limit_name, strlen(line->limit_name),
                   KG__LIMIT_NAME_MAX);
        e = KG_ERR_POLICY;
    } else if (e != KG_OK) {
        kg__err_at(L, mod, "plugin %s could not start: %s", mod->value,
                   kg_strerror(e));
        e = e == KG_ERR_NOMEM ? e : KG_ERR_PLUGIN;
    }
    kg__opts_free(opts);
    if (e != KG_OK)
        return e;
    *line_r = line;
    return KG_OK;
}

kg_error kg__parse_stack(kg__pload *L, kg__ynode *n, const char *stage,
                         int kind, kg__stack *st)
{
    size_t i;
    kg_error e;

    st->stage = stage;
    if (n == NULL)
        return KG_OK;
    if (n->type == KG__Y_SCALAR && n->value[0] == '\0')
        return KG_OK;
    if (n->type != KG__Y_SEQ)
        return kg__err_at(L, n, "%s must be a list of module lines", stage);
    /* The chain engine keeps a stack's answers in arrays of this many. */
    if (n->n > KG__MAX_LINES)
        return kg__err_at(L, n->items[KG__MAX_LINES], "the %s stage has %zu "
                          "lines, more than the %d a stack can hold", stage,
                          n->n, KG__MAX_LINES);
    st->lines = calloc(n->n ? n->n : 1, sizeof(*st->lines));
    if (st->lines == NULL)
        return KG_ERR_NOMEM;
    for (i = 0; i < n->n; i++) {
        kg__line *line = NULL;
        if ((e = parse_line(L, n->items[i], stage, kind, &line)) != KG_OK)
            return e;
        st->lines[st->n++] = line;
    }
    return KG_OK;
}

kg_error kg__credential_hints(kg_policy *p)
{
    kg__buf b;
    size_t i, n = 0;

    kg__buf_init(&b);
    kg__buf_adds(&b, "missing API key");
    snprintf(p->auth_scheme, sizeof(p->auth_scheme), "APIKey");
    for (i = p->credential.n; i > 0; i--) {
        const kg__line *l = p->credential.lines[i - 1];
        if (l->scheme != NULL)   /* the first line's, walking back */
            snprintf(p->auth_scheme, sizeof(p->auth_scheme), "%s", l->scheme);
    }
    for (i = 0; i < p->credential.n; i++) {
        const kg__line *l = p->credential.lines[i];
        if (l->hint == NULL)
            continue;
        kg__buf_addf(&b, "%s%s", n++ ? " or " : " (send ", l->hint);
    }
    if (n > 0)
        kg__buf_adds(&b, ")");
    p->missing_key = kg__buf_take(&b);
    return p->missing_key != NULL ? KG_OK : KG_ERR_NOMEM;
}
