/*
 * file - keystore plugin: key records in a YAML file.
 *
 * Options:
 *   path: keys.yaml    the key file (relative: from the policy's folder)
 *   refresh: 2s        how often a lookup may stat() the file and reload
 *                      it if it changed (0: only on reload/SIGHUP)
 *   create: true       a missing file is an empty store (written on the
 *                      first `keygate key create`)
 *
 * The file holds hashes only (SHA-256, hex), never keys.  Writes take an
 * exclusive lock (flock on "<path>.lock"), re-read the file, apply the
 * change, write a temporary file with mode 0600, fsync it, rename it over
 * the old one and fsync the folder: a crash leaves the old file or the
 * new one, never half of one, and two writers never lose each other's
 * change.  Lookups go through an index by hash (no scan).  last_used is
 * kept in memory and saved with the next write.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <yaml.h>

#include <keygate/plugin.h>

struct entry {
    kg_record *rec;
    _Atomic int64_t last_used;
    struct entry *next;       /* hash chain */
};

struct table {
    struct entry **buckets;
    size_t nbuckets;
    struct entry **all;       /* file order */
    size_t n;
};

struct filestore {
    char *path;
    char *lockpath;
    int64_t refresh_s;
    int create;
    pthread_rwlock_t lock;
    struct table *t;
    struct stat st;           /* of the file last loaded */
    int have_st;
    atomic_llong last_check;
    atomic_flag checking;
};

static void table_free(struct table *t)
{
    size_t i;
    if (t == NULL)
        return;
    for (i = 0; i < t->n; i++) {
        kg_record_unref(t->all[i]->rec);
        free(t->all[i]);
    }
    free(t->all);
    free(t->buckets);
    free(t);
}

static size_t bucket(const struct table *t, const unsigned char *h)
{
    uint64_t v;
    memcpy(&v, h, sizeof(v));
    return (size_t)(v & (t->nbuckets - 1));
}

/* ---- reading --------------------------------------------------------- */

static const char *scalar(yaml_document_t *d, yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

/* "" / null / ~ is "no time"; otherwise the core's time format. */
static int parse_time(const char *s, int64_t *t)
{
    if (s == NULL || *s == '\0' || strcmp(s, "null") == 0 || strcmp(s, "~") == 0) {
        *t = 0;
        return 0;
    }
    return kg_time_parse(s, t) == KG_OK ? 0 : -1;
}

/* Errors name the key file's line and column, in the message (for the
 * policy loader, which reports them at the policy's `path:` option) and
 * in *at (for reload, which fills a kg_diag). */
struct place {
    unsigned line, column;
};

#define BAD(n, ...) do { at->line = (unsigned)(n)->start_mark.line + 1; \
        at->column = (unsigned)(n)->start_mark.column + 1; \
        snprintf(err, errlen, "%s:%zu:%zu: ", path, \
        (n)->start_mark.line + 1, (n)->start_mark.column + 1); \
        snprintf(err + strlen(err), errlen - strlen(err), __VA_ARGS__); \
        goto fail; } while (0)

static kg_record *parse_entry(yaml_document_t *d, yaml_node_t *m,
                              const char *path, char *err, size_t errlen,
                              struct place *at)
{
    kg_record *r = kg_record_new();
    yaml_node_pair_t *p;
    int have_hash = 0;

    if (r == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (m->type != YAML_MAPPING_NODE)
        BAD(m, "a key record must be a mapping");
    for (p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = yaml_document_get_node(d, p->key);
        yaml_node_t *vn = yaml_document_get_node(d, p->value);
        const char *k = scalar(d, kn), *v = scalar(d, vn);
        if (k == NULL)
            BAD(kn, "record keys must be strings");
        if (!strcmp(k, "id") || !strcmp(k, "name") || !strcmp(k, "prefix") ||
            !strcmp(k, "plan") || !strcmp(k, "hash") || !strcmp(k, "status") ||
            !strcmp(k, "created") || !strcmp(k, "expires") ||
            !strcmp(k, "last_used")) {
            int64_t t;
            if (v == NULL)
                BAD(vn, "'%s' must be a single value", k);
            if (!strcmp(k, "id")) kg_record_set_id(r, v);
            else if (!strcmp(k, "name")) kg_record_set_name(r, v);
            else if (!strcmp(k, "prefix")) kg_record_set_prefix(r, v);
            else if (!strcmp(k, "plan")) kg_record_set_plan(r, v);
            else if (!strcmp(k, "hash")) {
                unsigned char h[KG_HASH_LEN];
                if (kg_hash_from_hex(v, h) != KG_OK)
                    BAD(vn, "hash must be 64 hex digits (SHA-256 of the key)");
                kg_record_set_hash(r, h);
                have_hash = 1;
            } else if (!strcmp(k, "status")) {
                if (!strcmp(v, "active")) kg_record_set_status(r, KG_STATUS_ACTIVE);
                else if (!strcmp(v, "revoked")) kg_record_set_status(r, KG_STATUS_REVOKED);
                else BAD(vn, "status must be active or revoked, not '%s'", v);
            } else {
                if (parse_time(v, &t) != 0)
                    BAD(vn, "'%s' must be a time such as 2026-12-31T00:00:00Z", k);
                if (!strcmp(k, "created")) kg_record_set_created(r, t);
                else if (!strcmp(k, "expires")) kg_record_set_expires(r, t);
                else kg_record_set_last_used(r, t);
            }
        } else if (!strcmp(k, "permissions") || !strcmp(k, "allowed_cidrs")) {
            yaml_node_item_t *it;
            if (vn->type == YAML_SCALAR_NODE && vn->data.scalar.length == 0)
                continue;
            if (vn->type != YAML_SEQUENCE_NODE)
                BAD(vn, "'%s' must be a list", k);
            for (it = vn->data.sequence.items.start; it < vn->data.sequence.items.top; it++) {
                yaml_node_t *in = yaml_document_get_node(d, *it);
                const char *iv = scalar(d, in);
                if (iv == NULL)
                    BAD(in, "items of '%s' must be strings", k);
                if (k[0] == 'p') kg_record_add_permission(r, iv);
                else kg_record_add_cidr(r, iv);
            }
        } else if (!strcmp(k, "limits")) {
            yaml_node_pair_t *lp;
            if (vn->type == YAML_SCALAR_NODE && vn->data.scalar.length == 0)
                continue;
            if (vn->type != YAML_MAPPING_NODE)
                BAD(vn, "limits must be a mapping of name: {count, window, burst}");
            for (lp = vn->data.mapping.pairs.start; lp < vn->data.mapping.pairs.top; lp++) {
                yaml_node_t *ln = yaml_document_get_node(d, lp->key);
                yaml_node_t *lv = yaml_document_get_node(d, lp->value);
                const char *lname = scalar(d, ln);
                long long c = -1, w = 0, b = 0;
                yaml_node_pair_t *q;
                if (lname == NULL || lv->type != YAML_MAPPING_NODE)
                    BAD(lv, "a limit must be name: {count: N, window: SECONDS}");
                for (q = lv->data.mapping.pairs.start; q < lv->data.mapping.pairs.top; q++) {
                    const char *qk = scalar(d, yaml_document_get_node(d, q->key));
                    yaml_node_t *qvn = yaml_document_get_node(d, q->value);
                    const char *qv = scalar(d, qvn);
                    char *end;
                    long long x;
                    if (qk == NULL || qv == NULL)
                        BAD(qvn, "limit fields must be numbers");
                    x = strtoll(qv, &end, 10);
                    if (*end || x < 0)
                        BAD(qvn, "limit %s must be a number >= 0", qk);
                    if (!strcmp(qk, "count")) c = x;
                    else if (!strcmp(qk, "window")) w = x;
                    else if (!strcmp(qk, "burst")) b = x;
                    else BAD(qvn, "unknown limit field '%s' (count, window, burst)", qk);
                }
                if (c < 0)
                    BAD(lv, "limit '%s' has no count", lname);
                kg_record_add_limit(r, lname, c, w, b);
            }
        } else {
            BAD(kn, "unknown field '%s' in a key record", k);
        }
    }
    if (kg_record_id(r) == NULL || !have_hash || kg_record_plan(r) == NULL)
        BAD(m, "a key record needs at least id, hash and plan");
    return r;
fail:
    kg_record_unref(r);
    return NULL;
}

static int table_add(struct table *t, kg_record *r)
{
    struct entry *e, **na;
    if (t->n == t->nbuckets) {
        size_t nb = t->nbuckets ? t->nbuckets * 2 : 64, i;
        struct entry **b = calloc(nb, sizeof(*b));
        if (b == NULL)
            return -1;
        free(t->buckets);
        t->buckets = b;
        t->nbuckets = nb;
        for (i = 0; i < t->n; i++) {
            size_t k = bucket(t, kg_record_hash(t->all[i]->rec));
            t->all[i]->next = b[k];
            b[k] = t->all[i];
        }
    }
    na = realloc(t->all, (t->n + 1) * sizeof(*na));
    if (na == NULL)
        return -1;
    t->all = na;
    e = calloc(1, sizeof(*e));
    if (e == NULL)
        return -1;
    e->rec = r;
    atomic_init(&e->last_used, kg_record_last_used(r));
    t->all[t->n++] = e;
    {
        size_t k = bucket(t, kg_record_hash(r));
        e->next = t->buckets[k];
        t->buckets[k] = e;
    }
    return 0;
}

/* Read the file into a new table.  A missing file is an empty store if
 * `create` is set. */
static struct table *load_file(const char *path, int create, struct stat *st_r,
                               int *have_st_r, char *err, size_t errlen,
                               struct place *at)
{
    struct table *t = calloc(1, sizeof(*t));
    FILE *f;
    yaml_parser_t parser;
    yaml_document_t doc;
    yaml_node_t *root, *keys = NULL;
    yaml_node_item_t *it;
    int ok = 0;

    at->line = at->column = 0;
    if (t == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    f = fopen(path, "r");
    if (f == NULL) {
        if (errno == ENOENT && create) {
            *have_st_r = 0;
            return t;
        }
        snprintf(err, errlen, "%s: cannot open the key file: %s", path, strerror(errno));
        free(t);
        return NULL;
    }
    if (fstat(fileno(f), st_r) == 0)
        *have_st_r = 1;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_file(&parser, f);
    if (!yaml_parser_load(&parser, &doc)) {
        at->line = (unsigned)parser.problem_mark.line + 1;
        at->column = (unsigned)parser.problem_mark.column + 1;
        snprintf(err, errlen, "%s:%zu:%zu: YAML error: %s", path,
                 parser.problem_mark.line + 1, parser.problem_mark.column + 1,
                 parser.problem ? parser.problem : "?");
        yaml_parser_delete(&parser);
        fclose(f);
        free(t);
        return NULL;
    }
    root = yaml_document_get_root_node(&doc);
    if (root == NULL) {
        ok = 1;  /* empty file: empty store */
        goto out;
    }
    if (root->type == YAML_MAPPING_NODE) {
        yaml_node_pair_t *p;
        for (p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
            const char *k = scalar(&doc, yaml_document_get_node(&doc, p->key));
            if (k && strcmp(k, "keys") == 0)
                keys = yaml_document_get_node(&doc, p->value);
            else {
                yaml_node_t *kn = yaml_document_get_node(&doc, p->key);
                at->line = (unsigned)kn->start_mark.line + 1;
                at->column = (unsigned)kn->start_mark.column + 1;
                snprintf(err, errlen, "%s:%zu:%zu: unknown top-level key '%s' "
                         "(a key file has only keys:)", path,
                         kn->start_mark.line + 1, kn->start_mark.column + 1,
                         k ? k : "?");
                goto out;
            }
        }
    }
    if (keys == NULL || (keys->type == YAML_SCALAR_NODE && keys->data.scalar.length == 0)) {
        if (root->type != YAML_MAPPING_NODE) {
            snprintf(err, errlen, "%s: a key file is a mapping with keys: [...]", path);
            goto out;
        }
        ok = 1;
        goto out;
    }
    if (keys->type != YAML_SEQUENCE_NODE) {
        at->line = (unsigned)keys->start_mark.line + 1;
        at->column = (unsigned)keys->start_mark.column + 1;
        snprintf(err, errlen, "%s:%zu:%zu: keys: must be a list of records",
                 path, keys->start_mark.line + 1, keys->start_mark.column + 1);
        goto out;
    }
    for (it = keys->data.sequence.items.start; it < keys->data.sequence.items.top; it++) {
        yaml_node_t *n = yaml_document_get_node(&doc, *it);
        kg_record *r = parse_entry(&doc, n, path, err, errlen, at);
        size_t i;
        if (r == NULL)
            goto out;
        for (i = 0; i < t->n; i++) {
            if (strcmp(kg_record_id(t->all[i]->rec), kg_record_id(r)) == 0) {
                at->line = (unsigned)n->start_mark.line + 1;
                at->column = (unsigned)n->start_mark.column + 1;
                snprintf(err, errlen, "%s:%zu:%zu: duplicate key id '%s'", path,
                         n->start_mark.line + 1, n->start_mark.column + 1,
                         kg_record_id(r));
                kg_record_unref(r);
                goto out;
            }
        }
        if (table_add(t, r) != 0) {
            kg_record_unref(r);
            snprintf(err, errlen, "out of memory");
            goto out;
        }
    }
    ok = 1;
out:
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    fclose(f);
    if (!ok) {
        table_free(t);
        return NULL;
    }
    return t;
}

/* ---- writing --------------------------------------------------------- */

static int emit_scalar(yaml_emitter_t *em, const char *s)
{
    yaml_event_t ev;
    yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)s, (int)strlen(s),
                                 1, 1, YAML_ANY_SCALAR_STYLE);
    return yaml_emitter_emit(em, &ev);
}

static int emit_kv(yaml_emitter_t *em, const char *k, const char *v)
{
    return emit_scalar(em, k) && emit_scalar(em, v ? v : "");
}

static int emit_time(yaml_emitter_t *em, const char *k, int64_t t)
{
    char buf[32];
    if (t == 0)
        return 1;
    kg_time_format(t, buf);
    return emit_kv(em, k, buf);
}

static int emit_record(yaml_emitter_t *em, const kg_record *r, int64_t last_used)
{
    yaml_event_t ev;
    char hex[2 * KG_HASH_LEN + 1], num[32];
    size_t i;
    int ok = 1;

    kg_hash_to_hex(kg_record_hash(r), hex);
    yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE);
    ok &= yaml_emitter_emit(em, &ev);
    ok &= emit_kv(em, "id", kg_record_id(r));
    if (kg_record_name(r)) ok &= emit_kv(em, "name", kg_record_name(r));
    if (kg_record_prefix(r)) ok &= emit_kv(em, "prefix", kg_record_prefix(r));
    ok &= emit_kv(em, "hash", hex);
    ok &= emit_kv(em, "plan", kg_record_plan(r));
    ok &= emit_kv(em, "status", kg_record_status(r) == KG_STATUS_REVOKED ? "revoked" : "active");
    if (kg_record_permission_count(r)) {
        ok &= emit_scalar(em, "permissions");
        yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1, YAML_FLOW_SEQUENCE_STYLE);
        ok &= yaml_emitter_emit(em, &ev);
        for (i = 0; i < kg_record_permission_count(r); i++)
            ok &= emit_scalar(em, kg_record_permission(r, i));
        yaml_sequence_end_event_initialize(&ev);
        ok &= yaml_emitter_emit(em, &ev);
    }
    if (kg_record_cidr_count(r)) {
        ok &= emit_scalar(em, "allowed_cidrs");
        yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1, YAML_FLOW_SEQUENCE_STYLE);
        ok &= yaml_emitter_emit(em, &ev);
        for (i = 0; i < kg_record_cidr_count(r); i++)
            ok &= emit_scalar(em, kg_record_cidr(r, i));
        yaml_sequence_end_event_initialize(&ev);
        ok &= yaml_emitter_emit(em, &ev);
    }
    if (kg_record_limit_count(r)) {
        ok &= emit_scalar(em, "limits");
        yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE);
        ok &= yaml_emitter_emit(em, &ev);
        for (i = 0; i < kg_record_limit_count(r); i++) {
            const char *name;
            int64_t c, w, b;
            kg_record_limit(r, i, &name, &c, &w, &b);
            ok &= emit_scalar(em, name);
            yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_FLOW_MAPPING_STYLE);
            ok &= yaml_emitter_emit(em, &ev);
            snprintf(num, sizeof(num), "%lld", (long long)c);
            ok &= emit_kv(em, "count", num);
            snprintf(num, sizeof(num), "%lld", (long long)w);
            ok &= emit_kv(em, "window", num);
            if (b) {
                snprintf(num, sizeof(num), "%lld", (long long)b);
                ok &= emit_kv(em, "burst", num);
            }
            yaml_mapping_end_event_initialize(&ev);
            ok &= yaml_emitter_emit(em, &ev);
        }
        yaml_mapping_end_event_initialize(&ev);
        ok &= yaml_emitter_emit(em, &ev);
    }
    ok &= emit_time(em, "created", kg_record_created(r));
    ok &= emit_time(em, "expires", kg_record_expires(r));
    ok &= emit_time(em, "last_used", last_used);
    yaml_mapping_end_event_initialize(&ev);
    ok &= yaml_emitter_emit(em, &ev);
    return ok;
}

static int write_handler(void *data, unsigned char *buf, size_t size)
{
    return fwrite(buf, 1, size, (FILE *)data) == size;
}

/* Write the table to path atomically: temp file 0600, fsync, rename,
 * fsync of the folder. */
static kg_error write_file(const char *path, struct table *t, char *err, size_t errlen)
{
    char *tmp = NULL, *dir = NULL, *slash;
    int fd = -1, ok = 1;
    FILE *f = NULL;
    yaml_emitter_t em;
    yaml_event_t ev;
    size_t i;
    kg_error rc = KG_ERR_IO;

    tmp = malloc(strlen(path) + 32);
    if (tmp == NULL)
        return KG_ERR_NOMEM;
    sprintf(tmp, "%s.tmp.%ld", path, (long)getpid());
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "%s: cannot create: %s", tmp, strerror(errno));
        free(tmp);
        return KG_ERR_IO;
    }
    fchmod(fd, 0600);
    f = fdopen(fd, "w");
    if (f == NULL) {
        close(fd);
        unlink(tmp);
        free(tmp);
        return KG_ERR_IO;
    }
    fputs("# keygate key file: SHA-256 hashes of API keys, never the keys.\n"
          "# Written by `keygate key ...`; a hand edit takes effect on reload.\n", f);
    yaml_emitter_initialize(&em);
    yaml_emitter_set_output(&em, write_handler, f);
    yaml_emitter_set_unicode(&em, 1);
    yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING);
    ok &= yaml_emitter_emit(&em, &ev);
    yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1);
    ok &= yaml_emitter_emit(&em, &ev);
    yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE);
    ok &= yaml_emitter_emit(&em, &ev);
    ok &= emit_scalar(&em, "keys");
    yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1,
                                         t->n ? YAML_BLOCK_SEQUENCE_STYLE : YAML_FLOW_SEQUENCE_STYLE);
    ok &= yaml_emitter_emit(&em, &ev);
    for (i = 0; i < t->n && ok; i++)
        ok &= emit_record(&em, t->all[i]->rec, atomic_load(&t->all[i]->last_used));
    yaml_sequence_end_event_initialize(&ev);
    ok &= yaml_emitter_emit(&em, &ev);
    yaml_mapping_end_event_initialize(&ev);
    ok &= yaml_emitter_emit(&em, &ev);
    yaml_document_end_event_initialize(&ev, 1);
    ok &= yaml_emitter_emit(&em, &ev);
    yaml_stream_end_event_initialize(&ev);
    ok &= yaml_emitter_emit(&em, &ev);
    yaml_emitter_delete(&em);
    if (!ok || fflush(f) != 0 || fsync(fileno(f)) != 0) {
        snprintf(err, errlen, "%s: cannot write: %s", tmp, strerror(errno));
        fclose(f);
        unlink(tmp);
        goto out;
    }
    if (fclose(f) != 0) {
        snprintf(err, errlen, "%s: cannot write: %s", tmp, strerror(errno));
        unlink(tmp);
        goto out;
    }
    if (rename(tmp, path) != 0) {
        snprintf(err, errlen, "%s: cannot replace: %s", path, strerror(errno));
        unlink(tmp);
        goto out;
    }
    dir = strdup(path);
    if (dir != NULL) {
        int dfd;
        slash = strrchr(dir, '/');
        if (slash == NULL)
            strcpy(dir, ".");
        else if (slash == dir)
            slash[1] = '\0';
        else
            *slash = '\0';
        dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
    }
    rc = KG_OK;
out:
    free(dir);
    free(tmp);
    return rc;
}

/* ---- the plugin ------------------------------------------------------ */

static void file_destroy(void *inst)
{
    struct filestore *fs = inst;
    if (fs == NULL)
        return;
    table_free(fs->t);
    pthread_rwlock_destroy(&fs->lock);
    free(fs->path);
    free(fs->lockpath);
    free(fs);
}

static kg_error file_create(kg_opts *opts, void **inst_r)
{
    struct filestore *fs = calloc(1, sizeof(*fs));
    const char *path;
    kg_error e;
    char err[1024];
    struct place at;

    if (fs == NULL)
        return KG_ERR_NOMEM;
    pthread_rwlock_init(&fs->lock, NULL);
    atomic_flag_clear(&fs->checking);
    if ((e = kg_opts_get_path(opts, "path", NULL, &path)) != KG_OK ||
        (e = kg_opts_get_duration(opts, "refresh", 2, &fs->refresh_s)) != KG_OK ||
        (e = kg_opts_get_bool(opts, "create", 1, &fs->create)) != KG_OK)
        goto fail;
    if (path == NULL) {
        e = kg_opts_error(opts, NULL, "option 'path' (the key file) is required");
        goto fail;
    }
    fs->path = strdup(path);
    fs->lockpath = malloc(strlen(path) + 6);
    if (fs->path == NULL || fs->lockpath == NULL) {
        e = KG_ERR_NOMEM;
        goto fail;
    }
    sprintf(fs->lockpath, "%s.lock", path);
    fs->t = load_file(fs->path, fs->create, &fs->st, &fs->have_st, err,
                      sizeof(err), &at);
    if (fs->t == NULL) {
        e = kg_opts_error(opts, "path", "%s", err);
        goto fail;
    }
    *inst_r = fs;
    return KG_OK;
fail:
    file_destroy(fs);
    return e;
}

static int changed(struct filestore *fs, const struct stat *st)
{
    return !fs->have_st || st->st_ino != fs->st.st_ino ||
           st->st_size != fs->st.st_size ||
           st->st_mtim.tv_sec != fs->st.st_mtim.tv_sec ||
           st->st_mtim.tv_nsec != fs->st.st_mtim.tv_nsec;
}

/* Swap in a freshly read table, carrying last_used over. */
static void swap_table(struct filestore *fs, struct table *nt,
                       const struct stat *st, int have_st)
{
    struct table *old;
    size_t i, j;

    pthread_rwlock_wrlock(&fs->lock);
    old = fs->t;
    for (i = 0; i < nt->n; i++) {
        for (j = 0; old && j < old->n; j++) {
            if (strcmp(kg_record_id(nt->all[i]->rec), kg_record_id(old->all[j]->rec)) == 0) {
                int64_t a = atomic_load(&old->all[j]->last_used);
                if (a > atomic_load(&nt->all[i]->last_used))
                    atomic_store(&nt->all[i]->last_used, a);
                break;
            }
        }
    }
    fs->t = nt;
    if (have_st)
        fs->st = *st;
    fs->have_st = have_st;
    pthread_rwlock_unlock(&fs->lock);
    table_free(old);
}

static kg_error file_reload(void *inst, kg_diag *diag)
{
    struct filestore *fs = inst;
    struct stat st;
    int have_st = 0;
    char err[1024], prefix[600];
    struct place at;
    struct table *nt = load_file(fs->path, fs->create, &st, &have_st, err,
                                 sizeof(err), &at);

    if (nt == NULL) {
        /* A bad file never replaces a good table.  The diag names the key
         * file and the place in it; the message without that prefix. */
        if (diag) {
            const char *msg = err;
            size_t n;
            snprintf(diag->file, sizeof(diag->file), "%s", fs->path);
            diag->line = at.line;
            diag->column = at.column;
            n = (size_t)snprintf(prefix, sizeof(prefix), "%s:%u:%u: ",
                                 fs->path, at.line, at.column);
            if (at.line > 0 && strncmp(err, prefix, n) == 0)
                msg = err + n;
            else if (strncmp(err, fs->path, strlen(fs->path)) == 0 &&
                     strncmp(err + strlen(fs->path), ": ", 2) == 0)
                msg = err + strlen(fs->path) + 2;
            snprintf(diag->message, sizeof(diag->message), "%s", msg);
        }
        return KG_ERR_IO;
    }
    swap_table(fs, nt, &st, have_st);
    return KG_OK;
}

static void maybe_refresh(struct filestore *fs, int64_t now_s)
{
    struct stat st;
    long long last = atomic_load(&fs->last_check);

    if (fs->refresh_s <= 0 || now_s - last < fs->refresh_s)
        return;
    if (atomic_flag_test_and_set(&fs->checking))
        return;  /* another thread is looking */
    atomic_store(&fs->last_check, now_s);
    if (stat(fs->path, &st) == 0 && changed(fs, &st))
        file_reload(fs, NULL);
    atomic_flag_clear(&fs->checking);
}

static kg_result file_lookup(void *inst, kg_call *call,
                             const unsigned char hash[KG_HASH_LEN],
                             kg_record **rec_r)
{
    struct filestore *fs = inst;
    struct entry *e;
    kg_result r = KG_RESULT_FAIL;

    maybe_refresh(fs, kg_call_now(call) / 1000000);
    pthread_rwlock_rdlock(&fs->lock);
    if (fs->t->nbuckets) {
        for (e = fs->t->buckets[bucket(fs->t, hash)]; e; e = e->next) {
            if (kg_hash_equal(kg_record_hash(e->rec), hash)) {
                *rec_r = kg_record_ref(e->rec);
                r = KG_RESULT_OK;
                break;
            }
        }
    }
    pthread_rwlock_unlock(&fs->lock);
    return r;
}

static void file_touch(void *inst, const kg_record *rec, int64_t when)
{
    struct filestore *fs = inst;
    struct entry *e;
    const unsigned char *hash = kg_record_hash(rec);

    pthread_rwlock_rdlock(&fs->lock);
    if (fs->t->nbuckets) {
        for (e = fs->t->buckets[bucket(fs->t, hash)]; e; e = e->next) {
            if (e->rec == rec) {
                if (atomic_load_explicit(&e->last_used, memory_order_relaxed) < when)
                    atomic_store_explicit(&e->last_used, when, memory_order_relaxed);
                break;
            }
        }
    }
    pthread_rwlock_unlock(&fs->lock);
}

static kg_record *with_last_used(struct entry *e)
{
    kg_record *c = kg_record_dup(e->rec);
    if (c != NULL)
        kg_record_set_last_used(c, atomic_load(&e->last_used));
    return c;
}

static kg_error file_get(void *inst, const char *id, kg_record **rec_r, kg_diag *diag)
{
    struct filestore *fs = inst;
    size_t i;
    kg_error rc = KG_ERR_NOT_FOUND;
    (void)diag;
    file_reload(fs, NULL);
    pthread_rwlock_rdlock(&fs->lock);
    for (i = 0; i < fs->t->n; i++) {
        if (strcmp(kg_record_id(fs->t->all[i]->rec), id) == 0) {
            *rec_r = with_last_used(fs->t->all[i]);
            rc = *rec_r ? KG_OK : KG_ERR_NOMEM;
            break;
        }
    }
    pthread_rwlock_unlock(&fs->lock);
    return rc;
}

static kg_error file_list(void *inst, kg_record_cb cb, void *ud, kg_diag *diag)
{
    struct filestore *fs = inst;
    size_t i;
    (void)diag;
    file_reload(fs, NULL);
    pthread_rwlock_rdlock(&fs->lock);
    for (i = 0; i < fs->t->n; i++) {
        kg_record *c = with_last_used(fs->t->all[i]);
        if (c == NULL) {
            pthread_rwlock_unlock(&fs->lock);
            return KG_ERR_NOMEM;
        }
        if (cb(c, ud) != 0) {
            kg_record_unref(c);
            break;
        }
        kg_record_unref(c);
    }
    pthread_rwlock_unlock(&fs->lock);
    return KG_OK;
}

static kg_error file_put(void *inst, const kg_record *r, int create, kg_diag *diag)
{
    struct filestore *fs = inst;
    int lfd;
    struct table *t;
    struct stat st;
    int have_st = 0;
    char err[1024] = "";
    kg_record *copy = NULL;
    size_t i;
    kg_error rc;
    kg_diag local;
    struct place at;

    /* The caller may not want the details; the messages still go somewhere. */
    if (diag == NULL)
        diag = &local;
    lfd = open(fs->lockpath, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lfd < 0 || flock(lfd, LOCK_EX) != 0) {
        snprintf(diag->message, sizeof(diag->message), "%s: cannot lock: %s",
                 fs->lockpath, strerror(errno));
        if (lfd >= 0)
            close(lfd);
        return KG_ERR_IO;
    }
    /* Re-read under the lock so that a concurrent writer's change stays. */
    t = load_file(fs->path, fs->create, &st, &have_st, err, sizeof(err), &at);
    if (t == NULL) {
        snprintf(diag->message, sizeof(diag->message), "%s (the file was not changed)", err);
        rc = KG_ERR_IO;
        goto out;
    }
    copy = kg_record_dup(r);
    if (copy == NULL) {
        rc = KG_ERR_NOMEM;
        goto out;
    }
    for (i = 0; i < t->n; i++) {
        if (strcmp(kg_record_id(t->all[i]->rec), kg_record_id(r)) == 0)
            break;
    }
    if (i < t->n) {
        if (create) {
            snprintf(diag->message, sizeof(diag->message), "key id '%s' already exists",
                     kg_record_id(r));
            rc = KG_ERR_EXISTS;
            goto out;
        }
        kg_record_unref(t->all[i]->rec);
        t->all[i]->rec = copy;
        atomic_store(&t->all[i]->last_used, kg_record_last_used(copy));
        copy = NULL;
        /* Rebuild the hash index: the hash may have changed (rotation). */
        {
            size_t n = t->n, k;
            struct entry **all = t->all;
            t->all = NULL;
            t->n = 0;
            free(t->buckets);
            t->buckets = NULL;
            t->nbuckets = 0;
            for (k = 0; k < n; k++) {
                kg_record *rr = all[k]->rec;
                int64_t lu = atomic_load(&all[k]->last_used);
                free(all[k]);
                if (table_add(t, rr) != 0) {
                    kg_record_unref(rr);
                    free(all);
                    rc = KG_ERR_NOMEM;
                    goto out;
                }
                atomic_store(&t->all[t->n - 1]->last_used, lu);
            }
            free(all);
        }
    } else {
        if (!create) {
            snprintf(diag->message, sizeof(diag->message), "no key with id '%s'",
                     kg_record_id(r));
            rc = KG_ERR_NOT_FOUND;
            goto out;
        }
        if (table_add(t, copy) != 0) {
            rc = KG_ERR_NOMEM;
            goto out;
        }
        copy = NULL;
    }
    /* Carry in-memory last_used into what is written. */
    pthread_rwlock_rdlock(&fs->lock);
    for (i = 0; i < t->n; i++) {
        size_t j;
        for (j = 0; j < fs->t->n; j++) {
            if (strcmp(kg_record_id(t->all[i]->rec), kg_record_id(fs->t->all[j]->rec)) == 0) {
                int64_t a = atomic_load(&fs->t->all[j]->last_used);
                if (a > atomic_load(&t->all[i]->last_used))
                    atomic_store(&t->all[i]->last_used, a);
            }
        }
    }
    pthread_rwlock_unlock(&fs->lock);
    rc = write_file(fs->path, t, err, sizeof(err));
    if (rc != KG_OK) {
        snprintf(diag->message, sizeof(diag->message), "%s", err);
        goto out;
    }
    if (stat(fs->path, &st) == 0)
        have_st = 1;
    swap_table(fs, t, &st, have_st);
    t = NULL;
out:
    kg_record_unref(copy);
    table_free(t);
    flock(lfd, LOCK_UN);
    close(lfd);
    return rc;
}

static const struct kg_keystore_ops file_ops = {
    .lookup = file_lookup,
    .get = file_get,
    .list = file_list,
    .put = file_put,
    .reload = file_reload,
    .touch = file_touch,
};

KG_PLUGIN_DEFINE(file) = {
    KG_PLUGIN_HEADER,
    .kind = KG_PLUGIN_KEYSTORE,
    .name = "file",
    .description = "key records (hashes only) in a YAML file, written atomically",
    .create = file_create,
    .destroy = file_destroy,
    .keystore = &file_ops,
};
