/*
 * loader.c - finds and loads plugins.  The only file that includes
 * <ltdl.h>.
 *
 * Search order: the policy's plugin_path, then KEYGATE_PLUGIN_PATH
 * (colon-separated), then the compiled-in directory.  In each directory
 * "<name>.la" is tried, then "<name>.so".  A module is loaded once per
 * file and stays resident until the context is freed; its descriptor
 * (<name>_LTX_keygate_plugin, which lt_dlsym finds when asked for
 * "keygate_plugin") is checked - ABI major and minor, size, kind - before
 * anything in it is called.
 */
#include "internal.h"
#include <keygate/alerts.h>

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <ltdl.h>

#ifndef KG_PLUGINDIR
#define KG_PLUGINDIR "/usr/local/lib/keygate/plugins"
#endif

struct loaded {
    kg__module mod;
    lt_dlhandle handle;
    struct loaded *next;
};

struct kg__loader {
    pthread_mutex_t lock;
    struct loaded *mods;
    int ltdl_ok;
};

kg_error kg__loader_new(struct kg__loader **l_r)
{
    struct kg__loader *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return KG_ERR_NOMEM;
    pthread_mutex_init(&l->lock, NULL);
    /* lt_dlinit is reference counted: one per context. */
    l->ltdl_ok = lt_dlinit() == 0;
    *l_r = l;
    return KG_OK;
}

void kg__loader_free(struct kg__loader *l)
{
    struct loaded *m, *next;
    if (l == NULL)
        return;
    for (m = l->mods; m != NULL; m = next) {
        next = m->next;
        if (m->handle)
            lt_dlclose(m->handle);
        free(m->mod.name);
        free(m->mod.path);
        free(m);
    }
    if (l->ltdl_ok)
        lt_dlexit();
    pthread_mutex_destroy(&l->lock);
    free(l);
}

static int file_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static int name_ok(const char *name)
{
    const char *p;
    if (name == NULL || *name == '\0' || strlen(name) > 64)
        return 0;
    for (p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || (*p >= 'A' && *p <= 'Z')))
            return 0;
    return 1;
}

/* The directories to search, in order; a NULL-terminated malloc()ed array. */
static char **search_dirs(char *const *dirs, size_t ndirs)
{
    const char *env = getenv("KEYGATE_PLUGIN_PATH");
    size_t n = ndirs + 2, k = 0, i;
    char **v, *envcopy = NULL, *tok, *save = NULL;

    if (env != NULL)
        for (i = 0; env[i]; i++)
            if (env[i] == ':')
                n++;
    v = calloc(n + 1, sizeof(*v));
    if (v == NULL)
        return NULL;
    for (i = 0; i < ndirs; i++)
        v[k++] = strdup(dirs[i]);
    if (env != NULL && (envcopy = strdup(env)) != NULL) {
        for (tok = strtok_r(envcopy, ":", &save); tok;
             tok = strtok_r(NULL, ":", &save))
            v[k++] = strdup(tok);
        free(envcopy);
    }
    v[k++] = strdup(KG_PLUGINDIR);
    return v;
}

static void free_dirs(char **v)
{
    size_t i;
    if (v == NULL)
        return;
    for (i = 0; v[i]; i++)
        free(v[i]);
    free(v);
}

const struct kg_usage_ops *kg__plugin_usage(const kg_plugin *p)
{
    /* Read only where the descriptor is recent and large enough to hold
     * the field: an older plugin's struct ends before it. */
    if (p->abi_minor < 6 ||
        p->size < offsetof(kg_plugin, usage) + sizeof(p->usage))
        return NULL;
    return p->usage;
}

/* The plugin's usage operations if all four are there, else NULL. */
static const struct kg_usage_ops *usage_ops(const kg_plugin *p)
{
    const struct kg_usage_ops *u = kg__plugin_usage(p);
    if (u == NULL || u->write == NULL || u->query == NULL ||
        u->top == NULL || u->events == NULL)
        return NULL;
    return u;
}

/* Check a descriptor; 0 if usable, else a reason in err. */
static int check_descriptor(const kg_plugin *p, const char *path, int kind,
                            char *err, size_t errlen)
{
    if (p->abi_major != KG_PLUGIN_ABI_MAJOR) {
        snprintf(err, errlen, "%s: plugin ABI %u.%u, expected %u.x: rebuild "
                 "the plugin against this keygate's <keygate/plugin.h>",
                 path, p->abi_major, p->abi_minor, KG_PLUGIN_ABI_MAJOR);
        return -1;
    }
    if (p->abi_minor > KG_PLUGIN_ABI_MINOR) {
        snprintf(err, errlen, "%s: plugin ABI %u.%u is newer than this "
                 "keygate's %u.%u: upgrade keygate", path, p->abi_major,
                 p->abi_minor, KG_PLUGIN_ABI_MAJOR, KG_PLUGIN_ABI_MINOR);
        return -1;
    }
    /* Every field up to `signer` exists since ABI 1.0. */
    if (p->size < offsetof(kg_plugin, signer) + sizeof(p->signer)) {
        snprintf(err, errlen, "%s: descriptor size %u is too small",
                 path, p->size);
        return -1;
    }
    if (p->kind < KG_PLUGIN_CREDENTIAL || p->kind > KG_PLUGIN_NOTIFIER ||
        (p->kind == KG_PLUGIN_USAGE && p->abi_minor < 6)) {
        snprintf(err, errlen, "%s: unknown plugin kind %d", path, p->kind);
        return -1;
    }
    /* The usage: section takes a plugin of any kind that is a usage
     * store too (the sql key store is one). */
    if (kind == KG_PLUGIN_USAGE && usage_ops(p) == NULL) {
        snprintf(err, errlen, "%s: plugin '%s' is a %s plugin and no usage "
                 "store (its descriptor sets no usage operations, ABI 1.6)",
                 path, p->name ? p->name : "?", kg_plugin_kind_name(p->kind));
        return -1;
    }
    if (kind != 0 && kind != KG_PLUGIN_USAGE && p->kind != kind) {
        snprintf(err, errlen, "%s: plugin '%s' is a %s plugin, expected a "
                 "%s plugin here", path, p->name ? p->name : "?",
                 kg_plugin_kind_name(p->kind), kg_plugin_kind_name(kind));
        return -1;
    }
    if (p->name == NULL || p->create == NULL || p->destroy == NULL ||
        (p->kind == KG_PLUGIN_CREDENTIAL && (p->credential == NULL || p->credential->extract == NULL)) ||
        (p->kind == KG_PLUGIN_KEYSTORE && (p->keystore == NULL || p->keystore->lookup == NULL)) ||
        (p->kind == KG_PLUGIN_ACCOUNT && (p->account == NULL || p->account->check == NULL)) ||
        (p->kind == KG_PLUGIN_LIMIT && (p->limit == NULL || p->limit->acquire == NULL)) ||
        (p->kind == KG_PLUGIN_SIGNER && p->signer == NULL) ||
        (p->kind == KG_PLUGIN_USAGE && usage_ops(p) == NULL) ||
        (p->kind == KG_PLUGIN_NOTIFIER &&
         (p->size < offsetof(kg_plugin, notifier) + sizeof(p->notifier) ||
          p->notifier == NULL || p->notifier->send == NULL))) {
        snprintf(err, errlen, "%s: descriptor lacks its name, create, "
                 "destroy or %s operations", path,
                 kg_plugin_kind_name(p->kind));
        return -1;
    }
    return 0;
}

/*
 * libltdl reports "file not found" for any dlopen() failure of a file it
 * found (it tries several names and keeps the last complaint), which hides
 * the real reason: a missing dependency ("libfoo.so.1: cannot open shared
 * object file") or an undefined symbol.  Ask the dynamic loader directly
 * for the object behind `path` (a .la names it in dlname=) and keep what
 * dlerror() says.  Returns 0 with the reason in why, -1 if it has none.
 */
static int dl_reason(const char *path, char *why, size_t whylen)
{
    char obj[PATH_MAX + 16];
    size_t n = strlen(path);
    void *h;
    const char *e;

    snprintf(obj, sizeof(obj), "%s", path);
    if (n > 3 && strcmp(path + n - 3, ".la") == 0) {
        FILE *f = fopen(path, "r");
        char line[512], dlname[256] = "";
        const char *slash = strrchr(path, '/');
        int dirlen = slash ? (int)(slash - path) : 1;
        if (f == NULL)
            return -1;
        while (fgets(line, sizeof(line), f) != NULL)
            if (sscanf(line, "dlname='%255[^']'", dlname) == 1)
                break;
        fclose(f);
        if (dlname[0] == '\0')
            return -1;
        /* Uninstalled libtool modules live in .libs/ beside the .la. */
        snprintf(obj, sizeof(obj), "%.*s/.libs/%s", dirlen,
                 slash ? path : ".", dlname);
        if (!file_exists(obj))
            snprintf(obj, sizeof(obj), "%.*s/%s", dirlen, slash ? path : ".",
                     dlname);
    }
    h = dlopen(obj, RTLD_NOW | RTLD_LOCAL);
    if (h != NULL) {
        dlclose(h);
        return -1;
    }
    e = dlerror();
    if (e == NULL)
        return -1;
    snprintf(why, whylen, "%s", e);
    return 0;
}

/*
 * Open `path` (already known to exist).  On failure the reason names the
 * file and what the dynamic loader said, which for a missing dependency
 * is the library that could not be found.
 */
static struct loaded *open_module(struct kg__loader *l, const char *name,
                                  const char *path, char *err, size_t errlen)
{
    struct loaded *m;
    lt_dlhandle h;
    const kg_plugin *p;
    char real[PATH_MAX];

    if (realpath(path, real) == NULL)
        snprintf(real, sizeof(real), "%s", path);
    for (m = l->mods; m != NULL; m = m->next)
        if (strcmp(m->mod.path, real) == 0)
            return m;
    if (!l->ltdl_ok) {
        snprintf(err, errlen, "the module loader (libltdl) failed to start");
        return NULL;
    }
    h = lt_dlopen(real);
    if (h == NULL) {
        const char *why = lt_dlerror();
        char dlwhy[1024];
        if (dl_reason(real, dlwhy, sizeof(dlwhy)) == 0)
            why = dlwhy;
        snprintf(err, errlen, "%s: cannot be loaded: %s (a library it depends "
                 "on may be missing or too old: check `ldd %s`)",
                 real, why ? why : "unknown reason", real);
        return NULL;
    }
    p = lt_dlsym(h, "keygate_plugin");
    if (p == NULL) {
        snprintf(err, errlen, "%s: not a keygate plugin: it does not export "
                 "%s_LTX_keygate_plugin", real, name);
        lt_dlclose(h);
        return NULL;
    }
    m = calloc(1, sizeof(*m));
    if (m == NULL || (m->mod.name = strdup(name)) == NULL ||
        (m->mod.path = strdup(real)) == NULL) {
        if (m) {
            free(m->mod.name);
            free(m);
        }
        lt_dlclose(h);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    m->handle = h;
    m->mod.plugin = p;
    m->next = l->mods;
    l->mods = m;
    return m;
}

static char *find_file(char **dirs, const char *name)
{
    size_t i;
    static const char *const ext[] = { ".la", ".so" };
    for (i = 0; dirs[i]; i++) {
        size_t e;
        for (e = 0; e < KG__ARRAY_LEN(ext); e++) {
            char *p = kg__asprintf("%s/%s%s", dirs[i], name, ext[e]);
            if (p != NULL && file_exists(p))
                return p;
            free(p);
        }
    }
    return NULL;
}

kg_error kg__loader_get(kg_context *ctx, const char *name, int kind,
                        char *const *dirs, size_t ndirs,
                        const kg__module **mod_r, char *err, size_t errlen)
{
    struct kg__loader *l = ctx->loader;
    char **sd = NULL, *path = NULL;
    struct loaded *m = NULL;
    kg_error rc = KG_ERR_PLUGIN;

    if (!name_ok(name)) {
        snprintf(err, errlen, "'%s' is not a valid plugin name (letters, "
                 "digits and _)", name ? name : "");
        return KG_ERR_PLUGIN;
    }
    pthread_mutex_lock(&l->lock);
    sd = search_dirs(dirs, ndirs);
    if (sd == NULL) {
        snprintf(err, errlen, "out of memory");
        rc = KG_ERR_NOMEM;
        goto out;
    }
    path = find_file(sd, name);
    if (path == NULL) {
        kg__buf b;
        size_t i;
        kg__buf_init(&b);
        for (i = 0; sd[i]; i++) {
            if (i) kg__buf_adds(&b, ", ");
            kg__buf_adds(&b, sd[i]);
        }
        snprintf(err, errlen, "plugin '%s' not found (no %s.la or %s.so in: "
                 "%s); set plugin_path in the policy or KEYGATE_PLUGIN_PATH",
                 name, name, name, b.p ? b.p : "");
        kg__buf_free(&b);
        rc = KG_ERR_NOT_FOUND;
        goto out;
    }
    m = open_module(l, name, path, err, errlen);
    if (m == NULL)
        goto out;
    if (check_descriptor(m->mod.plugin, m->mod.path, kind, err, errlen) != 0)
        goto out;
    *mod_r = &m->mod;
    rc = KG_OK;
out:
    pthread_mutex_unlock(&l->lock);
    free(path);
    free_dirs(sd);
    return rc;
}

kg_error kg_plugin_scan(kg_context *ctx, char *const *dirs, size_t ndirs,
                        kg_plugin_scan_cb cb, void *userdata)
{
    char **sd;
    size_t i;
    kg__buf seen;

    if (ctx == NULL || cb == NULL)
        return KG_ERR_INVALID;
    sd = search_dirs(dirs, ndirs);
    if (sd == NULL)
        return KG_ERR_NOMEM;
    kg__buf_init(&seen);
    kg__buf_adds(&seen, "/");
    for (i = 0; sd[i]; i++) {
        DIR *d = opendir(sd[i]);
        struct dirent *de;
        if (d == NULL)
            continue;
        while ((de = readdir(d)) != NULL) {
            size_t n = strlen(de->d_name);
            char name[80], tag[84], err[1024];
            const kg__module *mod = NULL;
            kg_error e;
            kg_plugin_info info;

            if (n > 3 && n - 3 < sizeof(name) &&
                (strcmp(de->d_name + n - 3, ".la") == 0 ||
                 strcmp(de->d_name + n - 3, ".so") == 0)) {
                memcpy(name, de->d_name, n - 3);
                name[n - 3] = '\0';
            } else {
                continue;
            }
            snprintf(tag, sizeof(tag), "/%s/", name);
            if (!name_ok(name) || (seen.p && strstr(seen.p, tag)))
                continue;
            kg__buf_adds(&seen, name);
            kg__buf_adds(&seen, "/");
            err[0] = '\0';
            {
                char *one = sd[i];
                e = kg__loader_get(ctx, name, 0, &one, 1, &mod, err,
                                   sizeof(err));
            }
            memset(&info, 0, sizeof(info));
            info.name = name;
            info.path = mod ? mod->path : sd[i];
            if (e == KG_OK) {
                info.kind = kg_plugin_kind_name(mod->plugin->kind);
                info.abi_major = mod->plugin->abi_major;
                info.abi_minor = mod->plugin->abi_minor;
                info.description = mod->plugin->description;
            } else {
                info.error = err;
            }
            cb(&info, userdata);
        }
        closedir(d);
    }
    kg__buf_free(&seen);
    free_dirs(sd);
    return KG_OK;
}

const char *kg_plugin_default_dir(void)
{
    return KG_PLUGINDIR;
}
