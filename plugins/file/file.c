/*
 * file - keystore plugin: key records in a YAML file.
 *
 * Options:
 *   path: keys.yaml    the key file (relative: from the policy's folder)
 *   refresh: 2s        how often a lookup may stat() the file; if it
 *                      changed, a thread reads it again while lookups
 *                      go on with the table they have (0: only on
 *                      reload/SIGHUP)
 *   create: true       a missing file is an empty store (written on the
 *                      first `keygate key create`)
 *   audit_file: PATH   the audit log, JSON lines (default: beside the key
 *                      file, keys.yaml -> keys.audit.jsonl; docs/audit.md)
 *
 * The file holds hashes only (SHA-256, hex), never keys.  Writes take an
 * exclusive lock (flock on "<path>.lock"), re-read the file, apply the
 * change, write a temporary file with mode 0600, fsync it, rename it over
 * the old one and fsync the folder: a crash leaves the old file or the
 * new one, never half of one, and two writers never lose each other's
 * change.  Lookups go to the record's place in a record table (one
 * cache miss; an index by hash if that table could not be made).
 * last_used is kept in the records (kg_record_touch) and saved with the
 * next write.  Accounts are an accounts: list beside keys: (accounts.c);
 * each record the store hands out carries its account.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "filestore.h"
#include "../common/auditlog.h"

/* ---- the plugin ------------------------------------------------------ */

static void file_destroy(void *inst)
{
    struct filestore *fs = inst;
    if (fs == NULL)
        return;
    if (fs->refresher_started)
        pthread_join(fs->refresher, NULL);
    kg__file_table_free(fs->t);
    pthread_rwlock_destroy(&fs->lock);
    free(fs->path);
    free(fs->lockpath);
    free(fs->auditpath);
    free(fs);
}

static kg_error file_create(kg_opts *opts, void **inst_r)
{
    struct filestore *fs = calloc(1, sizeof(*fs));
    const char *path, *audit;
    kg_error e;
    char err[1024];
    struct place at;

    if (fs == NULL)
        return KG_ERR_NOMEM;
    pthread_rwlock_init(&fs->lock, NULL);
    atomic_flag_clear(&fs->checking);
    if ((e = kg_opts_get_path(opts, "path", NULL, &path)) != KG_OK ||
        (e = kg_opts_get_duration(opts, "refresh", 2, &fs->refresh_s)) != KG_OK ||
        (e = kg_opts_get_bool(opts, "create", 1, &fs->create)) != KG_OK ||
        (e = kg_opts_get_path(opts, "audit_file", NULL, &audit)) != KG_OK)
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
    fs->auditpath = audit != NULL ? strdup(audit) : kg__auditlog_beside(path);
    if (fs->auditpath == NULL) {
        e = KG_ERR_NOMEM;
        goto fail;
    }
    fs->t = kg__file_load(fs->path, fs->create, &fs->st, &fs->have_st, err,
                      sizeof(err), &at);
    if (fs->t == NULL) {
        e = kg_opts_error(opts, "path", "%s", err);
        goto fail;
    }
    kg__file_table_seal(fs->t);
    *inst_r = fs;
    return KG_OK;
fail:
    file_destroy(fs);
    return e;
}

int kg__file_changed(const struct filestore *fs, const struct stat *st)
{
    return !fs->have_st || st->st_ino != fs->st.st_ino ||
           st->st_size != fs->st.st_size ||
           st->st_mtim.tv_sec != fs->st.st_mtim.tv_sec ||
           st->st_mtim.tv_nsec != fs->st.st_mtim.tv_nsec;
}

/* Before a management read (get, list): the file as it is now, read
 * again only if it changed since it was last read (or cannot be
 * stat()ed).  Reading it every time made kg_keys_get() parse the whole
 * file: a loop over a file's keys took n^2 record parses. */
void kg__file_refresh(struct filestore *fs)
{
    struct stat st;
    int again;
    pthread_rwlock_rdlock(&fs->lock);
    again = stat(fs->path, &st) != 0 || kg__file_changed(fs, &st);
    pthread_rwlock_unlock(&fs->lock);
    if (again)
        kg__file_reload(fs, NULL);
}

/* Swap in a freshly read table, carrying last_used over. */
unsigned long long kg__file_read_seq(struct filestore *fs)
{
    return atomic_fetch_add(&fs->load_seq, 1) + 1;
}

void kg__file_swap_table(struct filestore *fs, struct table *nt, unsigned long long seq,
                         const struct stat *st, int have_st)
{
    struct table *old;

    kg__file_table_seal(nt);
    pthread_rwlock_wrlock(&fs->lock);
    if (seq < fs->table_seq) {
        /* A later read is in place already: this one is out of date. */
        pthread_rwlock_unlock(&fs->lock);
        kg__file_table_free(nt);
        return;
    }
    old = fs->t;
    kg__file_table_carry_last_used(nt, old);
    fs->t = nt;
    fs->table_seq = seq;
    if (have_st)
        fs->st = *st;
    fs->have_st = have_st;
    pthread_rwlock_unlock(&fs->lock);
    kg__file_table_free(old);
}

kg_error kg__file_reload(void *inst, kg_diag *diag)
{
    struct filestore *fs = inst;
    struct stat st;
    int have_st = 0;
    char err[1024], prefix[600];
    struct place at;
    unsigned long long seq = kg__file_read_seq(fs);
    struct table *nt = kg__file_load(fs->path, fs->create, &st, &have_st, err,
                                 sizeof(err), &at);

    /* An empty file (0 bytes) where keys were: a file being written in
     * place (an editor), not a store emptied on purpose (that is
     * `keys: []`).  The table stays. */
    if (nt != NULL && have_st && st.st_size == 0 && nt->n == 0) {
        size_t had;
        pthread_rwlock_rdlock(&fs->lock);
        had = fs->t->n;
        pthread_rwlock_unlock(&fs->lock);
        if (had > 0) {
            kg__file_table_free(nt);
            nt = NULL;
            at.line = at.column = 0;
            snprintf(err, sizeof(err), "%s: the key file is empty (0 bytes), taken for a "
                     "file being written: the %zu keys loaded stay (write `keys: []` to "
                     "empty the store)", fs->path, had);
        }
    }
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
    kg__file_swap_table(fs, nt, seq, &st, have_st);
    return KG_OK;
}

static void *refresh_thread(void *arg)
{
    struct filestore *fs = arg;
    kg__file_reload(fs, NULL);
    atomic_store(&fs->refreshing, 0);
    return NULL;
}

/*
 * Every `refresh` seconds a lookup stat()s the file; if it changed, a
 * thread reads it again and swaps the new table in, and the lookups go
 * on meanwhile with the table they have: the lookup that noticed does
 * not wait for the read (a second for a few hundred thousand keys).
 * One lookup at a time looks (`checking`, held only for that), and one
 * read at a time runs (`refreshing`, cleared by the thread when done;
 * the next look joins it).  Without a thread (none can be started), the
 * lookup reads the file itself, as before.
 */
static void maybe_refresh(struct filestore *fs, int64_t now_s)
{
    struct stat st;
    long long last = atomic_load(&fs->last_check);

    if (fs->refresh_s <= 0 || now_s - last < fs->refresh_s)
        return;
    if (atomic_flag_test_and_set(&fs->checking))
        return;  /* another thread is looking */
    atomic_store(&fs->last_check, now_s);
    if (fs->refresher_started) {
        if (atomic_load(&fs->refreshing))
            goto out;          /* the last read is still going: next time */
        pthread_join(fs->refresher, NULL);
        fs->refresher_started = 0;
    }
    if (stat(fs->path, &st) == 0 && kg__file_changed(fs, &st)) {
        sigset_t all, was;
        atomic_store(&fs->refreshing, 1);
        /* With every signal blocked: the caller's signals are its own. */
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &was);
        fs->refresher_started = pthread_create(&fs->refresher, NULL, refresh_thread, fs) == 0;
        pthread_sigmask(SIG_SETMASK, &was, NULL);
        if (!fs->refresher_started) {
            atomic_store(&fs->refreshing, 0);
            kg__file_reload(fs, NULL);
        }
    }
out:
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
    if (fs->t->rt != NULL) {
        *rec_r = kg_record_table_get(fs->t->rt, hash);
        r = *rec_r ? KG_RESULT_OK : KG_RESULT_FAIL;
    } else if (fs->t->nbuckets) {
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

/* The record is the store's own (or was, before a reload): its
 * last_used is raised in place, no lock, no search. */
static void file_touch(void *inst, const kg_record *rec, int64_t when)
{
    (void)inst;
    kg_record_touch(rec, when);
}

static kg_error file_audit_append(void *inst, const kg_audit_record *r,
                                  kg_diag *diag)
{
    return kg__auditlog_append(((struct filestore *)inst)->auditpath, r, diag);
}

static kg_error file_audit_query(void *inst, const kg_audit_query *q,
                                 kg_audit_cb cb, void *ud, kg_diag *diag)
{
    return kg__auditlog_query(((struct filestore *)inst)->auditpath, q, cb, ud, diag);
}

static const struct kg_keystore_ops file_ops = {
    .lookup = file_lookup,
    .get = kg__file_get,
    .list = kg__file_list,
    .put = kg__file_put,
    .reload = kg__file_reload,
    .touch = file_touch,
    .account_get = kg__file_account_get,
    .account_list = kg__file_account_list,
    .account_put = kg__file_account_put,
    .account_delete = kg__file_account_delete,
    .audit_append = file_audit_append,
    .audit_query = file_audit_query,
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
