/*
 * manage.c - the file keystore's management operations: get and list
 * (re-reading the file first), put (create or replace a record under
 * the write lock, then write the file and swap in the new table).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "filestore.h"

kg_error kg__file_get(void *inst, const char *id, kg_record **rec_r, kg_diag *diag)
{
    struct filestore *fs = inst;
    struct entry *e;
    kg_error rc = KG_ERR_NOT_FOUND;
    (void)diag;
    kg__file_refresh(fs);
    pthread_rwlock_rdlock(&fs->lock);
    if ((e = kg__file_table_find_id(fs->t, id)) != NULL) {
        *rec_r = kg_record_dup(e->rec);   /* checks share the store's */
        rc = *rec_r ? KG_OK : KG_ERR_NOMEM;
    }
    pthread_rwlock_unlock(&fs->lock);
    return rc;
}

kg_error kg__file_list(void *inst, kg_record_cb cb, void *ud, kg_diag *diag)
{
    struct filestore *fs = inst;
    size_t i;
    (void)diag;
    kg__file_refresh(fs);
    pthread_rwlock_rdlock(&fs->lock);
    for (i = 0; i < fs->t->n; i++) {
        kg_record *c = kg_record_dup(fs->t->all[i]->rec);
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

/* A change of the table read under the write lock: KG_OK to write it. */
typedef kg_error (*change_fn)(struct table *t, const void *arg, int flag,
                              kg_diag *diag);

/*
 * Make a change and write the file: under the lock file, to the file as
 * it is now (the table in memory, copied, if the file is the one it was
 * read from: every writer renames a new file into place, so a change is
 * a new inode; read again otherwise), so that a concurrent writer's
 * change stays; keys without an account get one of their own (the
 * migration, docs/policy.md "Accounts"); then written atomically and
 * swapped in.  Nothing is written if the change or the migration fails.
 */
static kg_error change(struct filestore *fs, change_fn fn, const void *arg,
                       int flag, kg_diag *diag)
{
    int lfd;
    struct table *t;
    struct stat st;
    int have_st = 0;
    char err[1024] = "";
    kg_error rc;
    kg_diag local;
    struct place at;
    unsigned long long seq;

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
    t = NULL;
    if (stat(fs->path, &st) == 0) {
        pthread_rwlock_rdlock(&fs->lock);
        if (!kg__file_changed(fs, &st))
            t = kg__file_table_copy(fs->t);
        pthread_rwlock_unlock(&fs->lock);
    }
    if (t == NULL)
        t = kg__file_load(fs->path, fs->create, &st, &have_st, err, sizeof(err), &at);
    if (t == NULL) {
        snprintf(diag->message, sizeof(diag->message), "%s (the file was not changed)", err);
        rc = KG_ERR_IO;
        goto out;
    }
    if ((rc = fn(t, arg, flag, diag)) != KG_OK)
        goto out;
    if (kg__file_acct_migrate(t, (int64_t)time(NULL)) != 0) {
        rc = KG_ERR_NOMEM;
        goto out;
    }
    /* Carry in-memory last_used into what is written. */
    pthread_rwlock_rdlock(&fs->lock);
    kg__file_table_carry_last_used(t, fs->t);
    pthread_rwlock_unlock(&fs->lock);
    rc = kg__file_write(fs->path, t, err, sizeof(err));
    if (rc != KG_OK) {
        snprintf(diag->message, sizeof(diag->message), "%s", err);
        goto out;
    }
    /* The table is the file as renamed into place: newer than what any
     * read that started before now can give. */
    seq = kg__file_read_seq(fs);
    if (stat(fs->path, &st) == 0)
        have_st = 1;
    kg__file_swap_table(fs, t, seq, &st, have_st);
    t = NULL;
out:
    kg__file_table_free(t);
    flock(lfd, LOCK_UN);
    close(lfd);
    return rc;
}

static kg_error put_key(struct table *t, const void *arg, int create, kg_diag *diag)
{
    const kg_record *r = arg;
    kg_record *copy;
    struct entry *e;
    const char *aid = kg_record_account_id(r);

    if (aid != NULL && kg__file_acct_find(t, aid) == NULL) {
        snprintf(diag->message, sizeof(diag->message), "account: no account with "
                 "id '%.160s'", aid);
        return KG_ERR_NOT_FOUND;
    }
    if ((copy = kg_record_dup(r)) == NULL)
        return KG_ERR_NOMEM;
    if ((e = kg__file_table_find_id(t, kg_record_id(r))) != NULL) {
        kg_record *was = e->rec;
        if (create) {
            snprintf(diag->message, sizeof(diag->message), "key id '%s' already exists",
                     kg_record_id(r));
            kg_record_unref(copy);
            return KG_ERR_EXISTS;
        }
        e->rec = copy;
        /* Both indexes again: the hash may have changed (rotation). */
        if (kg__file_table_reindex(t) != 0) {
            e->rec = was;
            kg_record_unref(copy);
            return KG_ERR_NOMEM;
        }
        kg_record_unref(was);
        return KG_OK;
    }
    if (!create) {
        snprintf(diag->message, sizeof(diag->message), "no key with id '%s'",
                 kg_record_id(r));
        kg_record_unref(copy);
        return KG_ERR_NOT_FOUND;
    }
    if (kg__file_table_add(t, copy) != 0) {
        kg_record_unref(copy);
        return KG_ERR_NOMEM;
    }
    return KG_OK;
}

kg_error kg__file_put(void *inst, const kg_record *r, int create, kg_diag *diag)
{
    return change(inst, put_key, r, create, diag);
}

/* ---- accounts -------------------------------------------------------- */

kg_error kg__file_account_get(void *inst, const char *id, kg_account **a_r,
                              kg_diag *diag)
{
    struct filestore *fs = inst;
    kg_account *a;
    kg_error rc = KG_ERR_NOT_FOUND;
    (void)diag;
    kg__file_refresh(fs);
    pthread_rwlock_rdlock(&fs->lock);
    if ((a = kg__file_acct_find(fs->t, id)) != NULL) {
        *a_r = kg_account_dup(a);   /* checks share the store's */
        rc = *a_r ? KG_OK : KG_ERR_NOMEM;
    }
    pthread_rwlock_unlock(&fs->lock);
    return rc;
}

kg_error kg__file_account_list(void *inst, kg_account_cb cb, void *ud,
                               kg_diag *diag)
{
    struct filestore *fs = inst;
    size_t i;
    (void)diag;
    kg__file_refresh(fs);
    pthread_rwlock_rdlock(&fs->lock);
    for (i = 0; i < fs->t->nacct; i++) {
        kg_account *c = kg_account_dup(fs->t->accts[i]);
        int stop;
        if (c == NULL) {
            pthread_rwlock_unlock(&fs->lock);
            return KG_ERR_NOMEM;
        }
        stop = cb(c, ud);
        kg_account_unref(c);
        if (stop)
            break;
    }
    pthread_rwlock_unlock(&fs->lock);
    return KG_OK;
}

static kg_error put_account(struct table *t, const void *arg, int create,
                            kg_diag *diag)
{
    const kg_account *a = arg;
    const char *x = kg_account_external_id(a);
    size_t pos = kg__file_acct_pos(t, kg_account_id(a)), i;
    kg_account *copy;
    int e;

    if (pos != (size_t)-1 && strcmp(kg_account_id(t->accts[pos]), kg_account_id(a)) != 0)
        pos = (size_t)-1;   /* found by another's external id */
    if (create && pos != (size_t)-1) {
        snprintf(diag->message, sizeof(diag->message), "id: account '%s' exists "
                 "already", kg_account_id(a));
        return KG_ERR_EXISTS;
    }
    if (!create && pos == (size_t)-1) {
        snprintf(diag->message, sizeof(diag->message), "id: no account with id "
                 "'%s'", kg_account_id(a));
        return KG_ERR_NOT_FOUND;
    }
    for (i = 0; i < t->nacct; i++) {
        const kg_account *o = t->accts[i];
        if (i == pos)
            continue;
        if ((x != NULL && ((kg_account_external_id(o) != NULL &&
                            strcmp(kg_account_external_id(o), x) == 0) ||
                           strcmp(kg_account_id(o), x) == 0)) ||
            (kg_account_external_id(o) != NULL &&
             strcmp(kg_account_external_id(o), kg_account_id(a)) == 0)) {
            snprintf(diag->message, sizeof(diag->message), "external_id: '%s' is "
                     "account %s's already", x ? x : kg_account_id(a),
                     kg_account_id(o));
            return KG_ERR_EXISTS;
        }
    }
    if ((copy = kg_account_dup(a)) == NULL)
        return KG_ERR_NOMEM;
    e = pos == (size_t)-1 ? kg__file_acct_add(t, copy)
                          : kg__file_acct_replace(t, pos, copy);
    kg_account_unref(copy);
    return e == 0 ? KG_OK : KG_ERR_NOMEM;
}

kg_error kg__file_account_put(void *inst, const kg_account *a, int create,
                              kg_diag *diag)
{
    return change(inst, put_account, a, create, diag);
}

static kg_error delete_account(struct table *t, const void *arg, int with_keys,
                               kg_diag *diag)
{
    const char *id = arg;
    size_t pos = kg__file_acct_pos(t, id), i, nkeys = 0;
    const char *aid;

    if (pos == (size_t)-1) {
        snprintf(diag->message, sizeof(diag->message), "account: no account "
                 "with id or external id '%.160s'", id);
        return KG_ERR_NOT_FOUND;
    }
    aid = kg_account_id(t->accts[pos]);
    for (i = 0; i < t->n; i++) {
        kg_record *r = t->all[i]->rec;
        if (kg_record_account_id(r) == NULL || strcmp(kg_record_account_id(r), aid) != 0 ||
            kg_record_status(r) == KG_STATUS_REVOKED)
            continue;
        nkeys++;
        if (with_keys)
            kg_record_set_status(r, KG_STATUS_REVOKED);
    }
    if (nkeys > 0 && !with_keys) {
        snprintf(diag->message, sizeof(diag->message), "account %s has %zu key%s "
                 "that %s not revoked: revoke them first, or delete with "
                 "--with-keys (which revokes them)", aid, nkeys,
                 nkeys == 1 ? "" : "s", nkeys == 1 ? "is" : "are");
        return KG_ERR_EXISTS;
    }
    kg__file_acct_remove(t, pos);
    return KG_OK;
}

kg_error kg__file_account_delete(void *inst, const char *id, int with_keys,
                                 kg_diag *diag)
{
    return change(inst, delete_account, id, with_keys, diag);
}
