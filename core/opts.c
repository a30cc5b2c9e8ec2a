/*
 * opts.c - a plugin's view of its policy line's `options:` mapping.
 * Every accessor marks what it read; kg__opts_finish() then reports the
 * first type error, or the first key nobody read, with its line and
 * column.
 */
#include "internal.h"

#include <ctype.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct kg_opts {
    kg_context *ctx;
    const char *file;
    const char *dir;
    const char *plugin;
    kg__ynode *map;      /* may be NULL: no options */
    kg_opts **children;
    size_t nchildren;
    char **paths;        /* resolved paths handed out */
    size_t npaths;
    kg_diag err;
    int failed;
    kg_opts *root;
    /* The value handed out for `name` (default included): a limiter's
     * name, which key records' overrides are matched against. */
    const char *name_read;
    /* The values handed out for `count` and `window` (defaults included)
     * and which of them were asked for (KG__OPTS_COUNT, _WINDOW): a
     * limiter's size, which the admin API shows with its plan. */
    int64_t count_read, window_read;
    int size_read;
    /* A credential plugin's kg_opts_credential_hint() (root only). */
    char hint[128];
    char scheme[32];
    int section;         /* kg_opts_section() (root only) */
    int may_wait;        /* kg_opts_may_wait(): KG_WAITS_* (root only) */
};

kg_opts *kg__opts_new(kg_context *ctx, const char *file, const char *dir,
                      kg__ynode *map, const char *plugin)
{
    kg_opts *o = calloc(1, sizeof(*o));
    if (o == NULL)
        return NULL;
    o->ctx = ctx;
    o->file = file;
    o->dir = dir;
    o->plugin = plugin;
    o->map = map;
    o->root = o;
    return o;
}

void kg__opts_free(kg_opts *o)
{
    size_t i;
    if (o == NULL)
        return;
    for (i = 0; i < o->nchildren; i++)
        kg__opts_free(o->children[i]);
    free(o->children);
    for (i = 0; i < o->npaths; i++)
        free(o->paths[i]);
    free(o->paths);
    free(o);
}

static kg_error fail_at(kg_opts *o, const kg__ynode *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static kg_error fail_at(kg_opts *o, const kg__ynode *n, const char *fmt, ...)
{
    kg_opts *root = o->root;
    va_list ap;
    if (root->failed)
        return KG_ERR_POLICY;
    root->failed = 1;
    va_start(ap, fmt);
    kg__diag_vset(&root->err, o->file, n ? n->line : 0, n ? n->column : 0,
                  fmt, ap);
    va_end(ap);
    return KG_ERR_POLICY;
}

static kg__ynode *get(kg_opts *o, const char *key)
{
    return o->map ? kg__ymap_get(o->map, key) : NULL;
}

int kg_opts_has(kg_opts *o, const char *key)
{
    return o->map && kg__ymap_key(o->map, key) != NULL;
}

static kg__ynode *scalar(kg_opts *o, const char *key, kg_error *e)
{
    kg__ynode *n = get(o, key);
    *e = KG_OK;
    if (n == NULL)
        return NULL;
    if (n->type != KG__Y_SCALAR) {
        *e = fail_at(o, n, "option '%s' of %s must be a single value", key,
                     o->plugin);
        return NULL;
    }
    return n;
}

kg_error kg_opts_get_string(kg_opts *o, const char *key, const char *def,
                            const char **val_r)
{
    kg_error e;
    kg__ynode *n = scalar(o, key, &e);
    *val_r = n ? n->value : def;
    if (o == o->root && strcmp(key, "name") == 0)
        o->name_read = *val_r;
    return e;
}

const char *kg__opts_name(const kg_opts *o)
{
    return o->name_read;
}

int kg__opts_size(const kg_opts *o, int64_t *count_r, int64_t *window_r)
{
    *count_r = o->count_read;
    *window_r = o->window_read;
    return o->size_read;
}

kg_error kg_opts_credential_hint(kg_opts *o, const char *where,
                                 const char *scheme)
{
    size_t i;
    if (o == NULL || where == NULL || *where == '\0' ||
        strlen(where) >= sizeof(o->root->hint))
        return KG_ERR_INVALID;
    if (scheme != NULL) {
        /* An HTTP auth-scheme is a token; kept to letters, digits, '-'. */
        if (*scheme == '\0' || strlen(scheme) >= sizeof(o->root->scheme))
            return KG_ERR_INVALID;
        for (i = 0; scheme[i]; i++)
            if (!isalnum((unsigned char)scheme[i]) && scheme[i] != '-')
                return KG_ERR_INVALID;
    }
    for (i = 0; where[i]; i++)
        if ((unsigned char)where[i] < 0x20 || where[i] == 0x7f)
            return KG_ERR_INVALID;
    snprintf(o->root->hint, sizeof(o->root->hint), "%s", where);
    snprintf(o->root->scheme, sizeof(o->root->scheme), "%s", scheme ? scheme : "");
    return KG_OK;
}

void kg_opts_may_wait(kg_opts *o, int always)
{
    if (o != NULL)
        o->root->may_wait |= always ? KG_WAITS_ALWAYS : KG_WAITS_KEYSTORE;
}

int kg__opts_may_wait(const kg_opts *o)
{
    return o->root->may_wait;
}

const char *kg__opts_hint(const kg_opts *o)
{
    return o->hint[0] ? o->hint : NULL;
}

const char *kg__opts_scheme(const kg_opts *o)
{
    return o->scheme[0] ? o->scheme : NULL;
}

kg_error kg_opts_get_int(kg_opts *o, const char *key, int64_t def,
                         int64_t *val_r)
{
    kg_error e;
    kg__ynode *n = scalar(o, key, &e);
    char *end;
    long long v;

    *val_r = def;
    if (o == o->root && strcmp(key, "count") == 0 && e == KG_OK) {
        o->count_read = def;
        o->size_read |= KG__OPTS_COUNT;
    }
    if (n == NULL)
        return e;
    errno = 0;
    v = strtoll(n->value, &end, 10);
    if (errno != 0 || end == n->value || *end != '\0')
        return fail_at(o, n, "option '%s' of %s must be an integer, not '%s'",
                       key, o->plugin, n->value);
    *val_r = (int64_t)v;
    if (o == o->root && strcmp(key, "count") == 0)
        o->count_read = *val_r;
    return KG_OK;
}

kg_error kg_opts_get_bool(kg_opts *o, const char *key, int def, int *val_r)
{
    kg_error e;
    kg__ynode *n = scalar(o, key, &e);

    *val_r = def;
    if (n == NULL)
        return e;
    if (!strcmp(n->value, "true") || !strcmp(n->value, "yes") ||
        !strcmp(n->value, "on")) {
        *val_r = 1;
    } else if (!strcmp(n->value, "false") || !strcmp(n->value, "no") ||
               !strcmp(n->value, "off")) {
        *val_r = 0;
    } else {
        return fail_at(o, n, "option '%s' of %s must be true or false, not '%s'",
                       key, o->plugin, n->value);
    }
    return KG_OK;
}

kg_error kg_opts_get_duration(kg_opts *o, const char *key, int64_t def,
                              int64_t *seconds_r)
{
    kg_error e;
    kg__ynode *n = scalar(o, key, &e);

    *seconds_r = def;
    if (n != NULL && kg__parse_duration(n->value, seconds_r) != 0) {
        *seconds_r = def;
        return fail_at(o, n, "option '%s' of %s must be a duration such as "
                       "30s, 15m, 1h or 1d, not '%s'", key, o->plugin,
                       n->value);
    }
    if (o == o->root && strcmp(key, "window") == 0 && e == KG_OK) {
        o->window_read = *seconds_r;
        o->size_read |= KG__OPTS_WINDOW;
    }
    return e;
}

kg_error kg_opts_get_path(kg_opts *o, const char *key, const char *def,
                          const char **path_r)
{
    const char *v;
    kg_error e = kg_opts_get_string(o, key, def, &v);
    char *p, **np;

    *path_r = v;
    if (e != KG_OK || v == NULL || v[0] == '/' || o->dir == NULL)
        return e;
    p = kg__asprintf("%s/%s", o->dir, v);
    np = p ? realloc(o->root->paths, (o->root->npaths + 1) * sizeof(*np)) : NULL;
    if (np == NULL) {
        free(p);
        return KG_ERR_NOMEM;
    }
    np[o->root->npaths++] = p;
    o->root->paths = np;
    *path_r = p;
    return KG_OK;
}

kg_error kg_opts_get_secret_file(kg_opts *o, const char *key, char **secret_r)
{
    const char *path;
    char buf[1024];
    size_t n;
    FILE *f;
    kg_error e = kg_opts_get_path(o, key, NULL, &path);

    *secret_r = NULL;
    if (e != KG_OK || path == NULL)
        return e;
    if ((f = fopen(path, "re")) == NULL)
        return kg_opts_error(o, key, "cannot read %s: %s", path, strerror(errno));
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    buf[strcspn(buf, "\r\n")] = '\0';
    if (buf[0] == '\0')
        e = kg_opts_error(o, key, "%s is empty: it should hold the secret on "
                          "its first line", path);
    else if ((*secret_r = strdup(buf)) == NULL)
        e = KG_ERR_NOMEM;
    kg_wipe(buf, sizeof(buf));
    return e;
}

size_t kg_opts_list_size(kg_opts *o, const char *key)
{
    kg__ynode *n = get(o, key);
    size_t i;
    if (n == NULL)
        return 0;
    if (n->type == KG__Y_SCALAR)
        return 1;
    if (n->type == KG__Y_MAP) {
        fail_at(o, n, "option '%s' of %s must be a list of values", key,
                o->plugin);
        return 0;
    }
    for (i = 0; i < n->n; i++) {
        if (n->items[i]->type != KG__Y_SCALAR) {
            fail_at(o, n->items[i], "items of option '%s' of %s must be "
                    "single values", key, o->plugin);
            return 0;
        }
    }
    return n->n;
}

const char *kg_opts_list_item(kg_opts *o, const char *key, size_t i)
{
    kg__ynode *n = get(o, key);
    if (n == NULL)
        return NULL;
    if (n->type == KG__Y_SCALAR)
        return i == 0 ? n->value : NULL;
    if (n->type != KG__Y_SEQ || i >= n->n ||
        n->items[i]->type != KG__Y_SCALAR)
        return NULL;
    return n->items[i]->value;
}

kg_opts *kg_opts_child(kg_opts *o, const char *key)
{
    kg__ynode *n = get(o, key);
    kg_opts *c, **nc;
    if (n == NULL)
        return NULL;
    if (n->type != KG__Y_MAP) {
        fail_at(o, n, "option '%s' of %s must be a mapping", key, o->plugin);
        return NULL;
    }
    c = kg__opts_new(o->ctx, o->file, o->dir, n, o->plugin);
    nc = c ? realloc(o->root->children,
                     (o->root->nchildren + 1) * sizeof(*nc)) : NULL;
    if (nc == NULL) {
        free(c);
        return NULL;
    }
    c->root = o->root;
    nc[o->root->nchildren++] = c;
    o->root->children = nc;
    return c;
}

size_t kg_opts_key_count(kg_opts *o)
{
    return o->map ? o->map->n / 2 : 0;
}

const char *kg_opts_key(kg_opts *o, size_t i)
{
    if (o->map == NULL || 2 * i >= o->map->n)
        return NULL;
    return o->map->items[2 * i]->value;
}

kg_error kg_opts_error(kg_opts *o, const char *key, const char *fmt, ...)
{
    kg_opts *root = o->root;
    kg__ynode *n = NULL;
    va_list ap;
    char msg[768];

    if (key != NULL && o->map != NULL) {
        n = kg__ymap_key(o->map, key);
        if (n != NULL) {
            kg__ynode *v = kg__ymap_get(o->map, key);
            if (v != NULL)
                n = v;
        }
    }
    if (n == NULL)
        n = o->map;
    if (root->failed)
        return KG_ERR_POLICY;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return fail_at(o, n, "%s: %s", o->plugin, msg);
}

kg_context *kg_opts_context(kg_opts *o)
{
    return o->ctx;
}

int kg_opts_section(kg_opts *o)
{
    return o->root->section;
}

void kg__opts_set_section(kg_opts *o, int kind)
{
    o->root->section = kind;
}

static kg_error check_unused(kg_opts *o, kg__ynode *map)
{
    size_t i;
    if (map == NULL || map->type != KG__Y_MAP)
        return KG_OK;
    for (i = 0; i + 1 < map->n; i += 2) {
        if (!map->items[i]->used)
            return fail_at(o, map->items[i], "unknown option '%s' for "
                           "plugin %s", map->items[i]->value, o->plugin);
    }
    return KG_OK;
}

kg_error kg__opts_finish(kg_opts *o, kg_diag *diag)
{
    size_t i;
    if (!o->failed) {
        check_unused(o, o->map);
        for (i = 0; i < o->nchildren && !o->failed; i++)
            check_unused(o, o->children[i]->map);
    }
    if (o->failed) {
        if (diag)
            *diag = o->err;
        return KG_ERR_POLICY;
    }
    return KG_OK;
}
