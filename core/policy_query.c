/*
 * policy_query.c - what a policy's plans enforce, asked without running
 * a check (keygate key create refuses a permission, network or limit
 * override that nothing in the key's plan would read), and a policy
 * file's plugin_path, read without loading the policy (keygate plugins,
 * which must work when a plugin the policy names cannot be loaded).
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

static int stack_runs(const kg__stack *st, const char *module)
{
    size_t i;
    for (i = 0; i < st->n; i++)
        if (strcmp(st->lines[i]->mod->name, module) == 0)
            return 1;
    return 0;
}

/* The KG_WAITS_* bits of a stack's lines; a line of another stage than
 * the key store's waits on every check whatever it says. */
static int stack_waits(const kg__stack *st, int keystore)
{
    size_t i;
    int w = 0;
    for (i = 0; i < st->n; i++)
        if (st->lines[i]->may_wait)
            w |= keystore ? st->lines[i]->may_wait : KG_WAITS_ALWAYS;
    return w;
}

int kg_policy_may_wait(const kg_policy *p)
{
    size_t i;
    int w;

    if (p == NULL)
        return 0;
    w = stack_waits(&p->credential, 0) | stack_waits(&p->keystore, 1);
    for (i = 0; i < p->nplans; i++)
        w |= stack_waits(&p->plans[i].account, 0) |
             stack_waits(&p->plans[i].limit, 0);
    if (p->usage != NULL && p->usage->may_wait)
        w |= KG_WAITS_USAGE;
    return w;
}

int kg_policy_plan_has_module(const kg_policy *p, const char *plan,
                              const char *module)
{
    const kg__plan *pl = p && plan && module ? kg__policy_plan(p, plan) : NULL;
    if (pl == NULL)
        return -1;
    return stack_runs(&pl->account, module) || stack_runs(&pl->limit, module);
}

size_t kg_policy_plan_limit_count(const kg_policy *p, const char *plan)
{
    const kg__plan *pl = p && plan ? kg__policy_plan(p, plan) : NULL;
    return pl ? pl->limit.n : 0;
}

const char *kg_policy_plan_limit_name(const kg_policy *p, const char *plan,
                                      size_t i)
{
    const kg__plan *pl = p && plan ? kg__policy_plan(p, plan) : NULL;
    return pl && i < pl->limit.n ? pl->limit.lines[i]->limit_name : NULL;
}

int kg_policy_plan_limit_per_key(const kg_policy *p, const char *plan,
                                 size_t i)
{
    const kg__plan *pl = p && plan ? kg__policy_plan(p, plan) : NULL;
    return pl && i < pl->limit.n ? pl->limit.lines[i]->per_key : -1;
}

kg_error kg_policy_plan_limit_size(const kg_policy *p, const char *plan,
                                   size_t i, int64_t *count_r,
                                   int64_t *window_s_r)
{
    const kg__plan *pl = p && plan ? kg__policy_plan(p, plan) : NULL;
    const kg__line *l;

    if (count_r != NULL)
        *count_r = 0;
    if (window_s_r != NULL)
        *window_s_r = 0;
    if (pl == NULL || i >= pl->limit.n)
        return KG_ERR_NOT_FOUND;
    l = pl->limit.lines[i];
    if (!(l->limit_sized & KG__OPTS_COUNT))
        return KG_ERR_UNSUPPORTED;
    if (count_r != NULL)
        *count_r = l->limit_count;
    if (window_s_r != NULL && (l->limit_sized & KG__OPTS_WINDOW))
        *window_s_r = l->limit_window;
    return KG_OK;
}

/* dirs[0..n) as one block: the pointers, a NULL, then the strings. */
static char **one_block(char *const *dirs, size_t n)
{
    size_t i, size = (n + 1) * sizeof(char *);
    char **v, *s;
    for (i = 0; i < n; i++)
        size += strlen(dirs[i]) + 1;
    v = malloc(size);
    if (v == NULL)
        return NULL;
    s = (char *)(v + n + 1);
    for (i = 0; i < n; i++) {
        size_t len = strlen(dirs[i]) + 1;
        memcpy(s, dirs[i], len);
        v[i] = s;
        s += len;
    }
    v[n] = NULL;
    return v;
}

kg_error kg_policy_read_plugin_path(const char *path, char ***dirs_r,
                                    size_t *n_r, kg_diag *diag)
{
    char *text = NULL, **dirs = NULL;
    size_t len = 0, n = 0, i;
    kg__ynode *root = NULL, *v;
    kg__pload L;
    kg_error e;

    kg__diag_clear(diag);
    if (path == NULL || dirs_r == NULL || n_r == NULL)
        return KG_ERR_INVALID;
    *dirs_r = NULL;
    *n_r = 0;
    if ((e = kg__read_policy_file(path, &text, &len, diag)) != KG_OK)
        return e;
    root = kg__yaml_parse(text, len, path, diag);
    if (root == NULL) {
        e = KG_ERR_POLICY;
        goto out;
    }
    memset(&L, 0, sizeof(L));
    L.diag = diag;
    L.file = path;
    v = root->type == KG__Y_MAP ? kg__ymap_get(root, "plugin_path") : NULL;
    if (v != NULL && (e = kg__parse_plugin_path(&L, v, &dirs, &n)) != KG_OK)
        goto out;
    if ((*dirs_r = one_block(dirs, n)) == NULL) {
        e = KG_ERR_NOMEM;
        goto out;
    }
    *n_r = n;
out:
    for (i = 0; i < n; i++)
        free(dirs[i]);
    free(dirs);
    kg__yaml_free(root);
    free(text);
    return e;
}
