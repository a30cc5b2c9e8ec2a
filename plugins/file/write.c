/*
 * write.c - writing the key file atomically: a temporary file with mode
 * 0600, fsync, rename over the old one, fsync of the folder, so that a
 * crash leaves the old file or the new one, never half of one.  What a
 * killed writer left behind (its "<file>.tmp.<pid>") goes at the next
 * write.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <yaml.h>

#include "filestore.h"

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

static int emit_list(yaml_emitter_t *em, const char *k, size_t n,
                     const char *(*item)(const void *, size_t), const void *o)
{
    yaml_event_t ev;
    size_t i;
    int ok = 1;
    if (n == 0)
        return 1;
    ok &= emit_scalar(em, k);
    yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1, YAML_FLOW_SEQUENCE_STYLE);
    ok &= yaml_emitter_emit(em, &ev);
    for (i = 0; i < n; i++)
        ok &= emit_scalar(em, item(o, i));
    yaml_sequence_end_event_initialize(&ev);
    ok &= yaml_emitter_emit(em, &ev);
    return ok;
}

static int emit_limits(yaml_emitter_t *em, size_t n,
                       kg_error (*get)(const void *, size_t, const char **,
                                       int64_t *, int64_t *, int64_t *),
                       const void *o)
{
    yaml_event_t ev;
    char num[32];
    size_t i;
    int ok = 1;
    if (n == 0)
        return 1;
    ok &= emit_scalar(em, "limits");
    yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE);
    ok &= yaml_emitter_emit(em, &ev);
    for (i = 0; i < n; i++) {
        const char *name;
        int64_t c, w, b;
        get(o, i, &name, &c, &w, &b);
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
    return ok;
}

static const char *rec_perm(const void *o, size_t i) { return kg_record_permission(o, i); }
static const char *rec_cidr(const void *o, size_t i) { return kg_record_cidr(o, i); }
static kg_error rec_limit(const void *o, size_t i, const char **n, int64_t *c,
                          int64_t *w, int64_t *b)
{
    return kg_record_limit(o, i, n, c, w, b);
}
static const char *acct_perm(const void *o, size_t i) { return kg_account_permission(o, i); }
static const char *acct_cidr(const void *o, size_t i) { return kg_account_cidr(o, i); }
static kg_error acct_limit(const void *o, size_t i, const char **n, int64_t *c,
                           int64_t *w, int64_t *b)
{
    return kg_account_limit(o, i, n, c, w, b);
}

static int emit_record(yaml_emitter_t *em, const kg_record *r, int64_t last_used)
{
    yaml_event_t ev;
    char hex[2 * KG_HASH_LEN + 1];
    int ok = 1;

    kg_hash_to_hex(kg_record_hash(r), hex);
    yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE);
    ok &= yaml_emitter_emit(em, &ev);
    ok &= emit_kv(em, "id", kg_record_id(r));
    if (kg_record_name(r)) ok &= emit_kv(em, "name", kg_record_name(r));
    if (kg_record_prefix(r)) ok &= emit_kv(em, "prefix", kg_record_prefix(r));
    ok &= emit_kv(em, "hash", hex);
    /* A key of an account has its account's plan.  One whose account
     * is not in the file (a hand edit: the key is refused until it is)
     * keeps the plan it had, so that a write loses nothing. */
    if (kg_record_account_id(r))
        ok &= emit_kv(em, "account", kg_record_account_id(r));
    if (!kg_record_account_id(r) || (!kg_record_account(r) && kg_record_plan(r)))
        ok &= emit_kv(em, "plan", kg_record_plan(r));
    ok &= emit_kv(em, "status", kg_record_status(r) == KG_STATUS_REVOKED ? "revoked" : "active");
    ok &= emit_list(em, "permissions", kg_record_permission_count(r), rec_perm, r);
    ok &= emit_list(em, "allowed_cidrs", kg_record_cidr_count(r), rec_cidr, r);
    ok &= emit_limits(em, kg_record_limit_count(r), rec_limit, r);
    ok &= emit_time(em, "created", kg_record_created(r));
    ok &= emit_time(em, "expires", kg_record_expires(r));
    ok &= emit_time(em, "last_used", last_used);
    if (kg_record_replaced_by(r)) ok &= emit_kv(em, "replaced_by", kg_record_replaced_by(r));
    if (kg_record_replaces(r)) ok &= emit_kv(em, "replaces", kg_record_replaces(r));
    yaml_mapping_end_event_initialize(&ev);
    ok &= yaml_emitter_emit(em, &ev);
    return ok;
}

static int emit_account(yaml_emitter_t *em, const kg_account *a)
{
    yaml_event_t ev;
    int ok = 1;

    yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE);
    ok &= yaml_emitter_emit(em, &ev);
    ok &= emit_kv(em, "id", kg_account_id(a));
    if (kg_account_external_id(a))
        ok &= emit_kv(em, "external_id", kg_account_external_id(a));
    if (kg_account_name(a)) ok &= emit_kv(em, "name", kg_account_name(a));
    ok &= emit_kv(em, "plan", kg_account_plan(a));
    ok &= emit_kv(em, "status", kg_account_status_name(kg_account_status_of(a)));
    ok &= emit_list(em, "permissions", kg_account_permission_count(a), acct_perm, a);
    ok &= emit_list(em, "allowed_cidrs", kg_account_cidr_count(a), acct_cidr, a);
    ok &= emit_limits(em, kg_account_limit_count(a), acct_limit, a);
    if (kg_account_metadata(a)) {
        /* Quoted: a JSON object is also a YAML mapping, read back as one. */
        ok &= emit_scalar(em, "metadata");
        yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)kg_account_metadata(a),
                                     (int)strlen(kg_account_metadata(a)), 1, 1,
                                     YAML_SINGLE_QUOTED_SCALAR_STYLE);
        ok &= yaml_emitter_emit(em, &ev);
    }
    ok &= emit_time(em, "created", kg_account_created(a));
    ok &= emit_time(em, "updated", kg_account_updated(a));
    yaml_mapping_end_event_initialize(&ev);
    ok &= yaml_emitter_emit(em, &ev);
    return ok;
}

static int write_handler(void *data, unsigned char *buf, size_t size)
{
    return fwrite(buf, 1, size, (FILE *)data) == size;
}

/*
 * Remove the "<path>.tmp.<pid>" files of writers that died before their
 * rename (kill -9 of `keygate key create`).  Only called with the
 * store's lock file held: every writer holds it from before it creates
 * its temporary file until after it renamed or removed it, so a live
 * writer has no temporary file now, whatever its pid, and each one here
 * is stale.  Best effort: a file that cannot be removed stays.
 */
static void remove_stale_tmp(const char *path)
{
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    size_t blen = strlen(base);
    char *dir = slash ? strndup(path, (size_t)(slash - path) + 1) : strdup(".");
    DIR *d = NULL;
    struct dirent *de;
    int dfd;

    if (dir == NULL || (d = opendir(dir)) == NULL)
        goto out;
    dfd = dirfd(d);
    while ((de = readdir(d)) != NULL) {
        const char *p = de->d_name;
        if (strncmp(p, base, blen) != 0 || strncmp(p + blen, ".tmp.", 5) != 0)
            continue;
        p += blen + 5;
        if (*p == '\0' || strspn(p, "0123456789") != strlen(p))
            continue;
        unlinkat(dfd, de->d_name, 0);
    }
out:
    if (d != NULL)
        closedir(d);
    free(dir);
}

/* Write the table to path atomically: temp file 0600, fsync, rename,
 * fsync of the folder.  The caller holds the store's lock file (see
 * remove_stale_tmp). */
kg_error kg__file_write(const char *path, struct table *t, char *err, size_t errlen)
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
    remove_stale_tmp(path);
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
    if (t->nacct > 0) {
        ok &= emit_scalar(&em, "accounts");
        yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_SEQUENCE_STYLE);
        ok &= yaml_emitter_emit(&em, &ev);
        for (i = 0; i < t->nacct && ok; i++)
            ok &= emit_account(&em, t->accts[i]);
        yaml_sequence_end_event_initialize(&ev);
        ok &= yaml_emitter_emit(&em, &ev);
    }
    ok &= emit_scalar(&em, "keys");
    yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1,
                                         t->n ? YAML_BLOCK_SEQUENCE_STYLE : YAML_FLOW_SEQUENCE_STYLE);
    ok &= yaml_emitter_emit(&em, &ev);
    for (i = 0; i < t->n && ok; i++)
        ok &= emit_record(&em, t->all[i]->rec, kg_record_last_used(t->all[i]->rec));
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
