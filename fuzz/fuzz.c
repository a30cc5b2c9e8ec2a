/*
 * fuzz.c - the targets' shared set-up (fuzz.h).
 */
#include "fuzz.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <yaml.h>

static char dir[4096];
static int home = -1;

/* Remove the entries of path (one level of folders below it, which is
 * all a target can make: sqlite's journals, a file store's lock). */
static void clean(const char *path, int depth)
{
    DIR *d = opendir(path);
    struct dirent *e;
    char sub[4096 + 256];
    struct stat st;

    if (d == NULL)
        return;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
        if (lstat(sub, &st) == 0 && S_ISDIR(st.st_mode)) {
            if (depth < 4)
                clean(sub, depth + 1);
            rmdir(sub);
        } else {
            unlink(sub);
        }
    }
    closedir(d);
}

static void remove_dir(void)
{
    if (dir[0] != '\0') {
        clean(dir, 0);
        rmdir(dir);
    }
}

/* Folders of targets that died (a crash _Exit()s, the atexit handler
 * does not run): "keygate-fuzz.<pid>.XXXXXX" whose process is gone. */
static void remove_stale(const char *base)
{
    DIR *d = opendir(base);
    struct dirent *e;
    char path[4096 + 256];

    if (d == NULL)
        return;
    while ((e = readdir(d)) != NULL) {
        char *end;
        long pid;

        if (strncmp(e->d_name, "keygate-fuzz.", 13) != 0)
            continue;
        pid = strtol(e->d_name + 13, &end, 10);
        if (end == e->d_name + 13 || *end != '.' || pid <= 0 ||
            kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue;
        snprintf(path, sizeof(path), "%s/%s", base, e->d_name);
        clean(path, 0);
        rmdir(path);
    }
    closedir(d);
}

void fz_init(void)
{
    const char *tmp = getenv("TMPDIR");
    const char *plugins = getenv("KEYGATE_PLUGIN_PATH");
    char *keep = plugins ? strdup(plugins) : NULL;
    char state[sizeof(dir) + 1];

    if (dir[0] != '\0')
        return;
    /* Memory (no disk, an fsync costs nothing) unless TMPDIR says. */
    if (tmp == NULL || *tmp != '/')
        tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    remove_stale(tmp);
    snprintf(dir, sizeof(dir), "%s/keygate-fuzz.%ld.XXXXXX", tmp, (long)getpid());
    if (mkdtemp(dir) == NULL) {
        perror("fuzz: temporary folder");
        exit(1);
    }
    atexit(remove_dir);
    /* Nothing of the caller's environment reaches a policy's ${...}. */
    clearenv();
    snprintf(state, sizeof(state), "%s/", dir);
    if (setenv("KEYGATE_STATE_DIR", state, 1) != 0 ||
        setenv("KEYGATE_PLUGIN_PATH", keep ? keep : FUZZ_PLUGINDIR, 1) != 0) {
        perror("fuzz: setenv");
        exit(1);
    }
    free(keep);
}

void fz_enter(void)
{
    if ((home = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 || chdir(dir) != 0) {
        perror("fuzz: chdir");
        abort();
    }
}

void fz_leave(void)
{
    if (fchdir(home) != 0) {
        perror("fuzz: fchdir");
        abort();
    }
    close(home);
    home = -1;
}

const char *fz_dir(void)
{
    return dir;
}

void fz_dir_clean(void)
{
    clean(dir, 0);
}

char *fz_strndup(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);

    if (s == NULL)
        abort();
    memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

/* A '/' that is not right after ${KEYGATE_STATE_DIR}. */
static int has_slash(const char *v, size_t n)
{
    static const char allowed[] = "${KEYGATE_STATE_DIR}/";
    size_t i;

    for (i = 0; i < n; i++) {
        if (v[i] != '/')
            continue;
        if (i + 1 >= sizeof(allowed) - 1 &&
            memcmp(v + i + 2 - sizeof(allowed), allowed, sizeof(allowed) - 1) == 0)
            continue;
        return 1;
    }
    return 0;
}

/*
 * KEYGATE_STATE_DIR (the private folder, with a trailing '/') may only
 * start a value, in the form ${KEYGATE_STATE_DIR} followed by a name:
 * elsewhere, or written ${KEYGATE_STATE_DIR:-...}, it could make
 * "/tmp/keygate-fuzz.XXXXXXname", a file beside the folder; followed by
 * "..", the folder's parent.
 */
static int state_dir_misused(const char *v, size_t n)
{
    static const char var[] = "${KEYGATE_STATE_DIR}";
    static const char name[] = "KEYGATE_STATE_DIR";
    size_t i, rest = sizeof(var) - 1, count = 0;

    for (i = 0; i + sizeof(name) - 1 <= n; i++)
        if (memcmp(v + i, name, sizeof(name) - 1) == 0)
            count++;
    if (count == 0)
        return 0;
    if (count > 1 || n < rest || memcmp(v, var, rest) != 0)
        return 1;
    if (rest < n && v[rest] == '/')
        rest++;
    return n - rest >= 2 && v[rest] == '.' && v[rest + 1] == '.';
}

/* Backends on the network, and the one variable other than
 * KEYGATE_STATE_DIR that ${...} could expand into a path. */
static int denied(const char *v, size_t n)
{
    static const char *const words[] = { "ldap", "postgres", "redis",
                                         "KEYGATE_PLUGIN_PATH" };
    size_t i, k;

    for (k = 0; k < sizeof(words) / sizeof(words[0]); k++) {
        size_t m = strlen(words[k]);
        for (i = 0; i + m <= n; i++)
            if (strncasecmp(v + i, words[k], m) == 0)
                return 1;
    }
    return 0;
}

static int is_scalar(yaml_document_t *doc, int id, const char *s)
{
    yaml_node_t *n = yaml_document_get_node(doc, id);

    return n != NULL && n->type == YAML_SCALAR_NODE &&
           n->data.scalar.length == strlen(s) &&
           memcmp(n->data.scalar.value, s, strlen(s)) == 0;
}

/*
 * One document.  Scope's routes ("GET /v1/jobs/{id}": jobs:read) are the
 * one place a '/' is no path: a scalar may hold one if every use of it
 * is inside a mapping whose every use is as the value of `routes:`
 * (an alias of it elsewhere, say as a `path:`, counts as a use).
 */
static int doc_confined(yaml_document_t *doc)
{
    size_t nn = (size_t)(doc->nodes.top - doc->nodes.start), i;
    int *refs = calloc(nn + 1, sizeof(int)), *route_refs = calloc(nn + 1, sizeof(int));
    char *other = calloc(nn + 1, 1);
    int ok = 1;

    if (refs == NULL || route_refs == NULL || other == NULL)
        abort();
    for (i = 0; i < nn; i++) {
        yaml_node_t *n = doc->nodes.start + i;
        yaml_node_pair_t *pr;

        if (n->type != YAML_MAPPING_NODE)
            continue;
        for (pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top; pr++) {
            refs[pr->value]++;
            if (is_scalar(doc, pr->key, "routes"))
                route_refs[pr->value]++;
        }
    }
    other[1] = 1;                       /* the root */
    for (i = 0; i < nn; i++) {
        yaml_node_t *n = doc->nodes.start + i;
        yaml_node_item_t *it;
        yaml_node_pair_t *pr;
        int routes = refs[i + 1] > 0 && refs[i + 1] == route_refs[i + 1];

        if (n->type == YAML_SEQUENCE_NODE)
            for (it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++)
                other[*it] = 1;
        if (n->type == YAML_MAPPING_NODE && !routes)
            for (pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top; pr++)
                other[pr->key] = other[pr->value] = 1;
    }
    for (i = 0; i < nn; i++) {
        yaml_node_t *n = doc->nodes.start + i;
        const char *v = (const char *)n->data.scalar.value;

        if (n->type != YAML_SCALAR_NODE)
            continue;
        if (denied(v, n->data.scalar.length) ||
            state_dir_misused(v, n->data.scalar.length) ||
            (other[i + 1] && has_slash(v, n->data.scalar.length)))
            ok = 0;
    }
    free(refs);
    free(route_refs);
    free(other);
    return ok;
}

int fz_policy_confined(const char *yaml, size_t len)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    int ok = 1;

    if (!yaml_parser_initialize(&parser))
        abort();
    yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, len);
    while (ok) {
        if (!yaml_parser_load(&parser, &doc))
            break;                      /* keygate refuses it too */
        if (yaml_document_get_root_node(&doc) == NULL) {
            yaml_document_delete(&doc);
            break;
        }
        ok = doc_confined(&doc);
        yaml_document_delete(&doc);
    }
    yaml_parser_delete(&parser);
    return ok;
}
