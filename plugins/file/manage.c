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

kg_error kg__file_put(void *inst, const kg_record *r, int create, kg_diag *diag)
{
    struct filestore *fs = inst;
    int lfd;
    struct table *t;
    struct stat st;
    int have_st = 0;
    char err[1024] = "";
    kg_record *copy = NULL;
    struct entry *e;
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
    /* The file as it is now, under the lock, so that a concurrent
     * writer's change stays: the table in memory, copied, if the file is
     * the one it was read from (every writer renames a new file into
     * place: a change is a new inode); read again otherwise.  At a
     * million keys the copy takes a tenth of the read. */
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
    copy = kg_record_dup(r);
    if (copy == NULL) {
        rc = KG_ERR_NOMEM;
        goto out;
    }
    if ((e = kg__file_table_find_id(t, kg_record_id(r))) != NULL) {
        kg_record *was = e->rec;
        if (create) {
            snprintf(diag->message, sizeof(diag->message), "key id '%s' already exists",
                     kg_record_id(r));
            rc = KG_ERR_EXISTS;
            goto out;
        }
        e->rec = copy;
        /* Both indexes again: the hash may have changed (rotation). */
        if (kg__file_table_reindex(t) != 0) {
            e->rec = was;
            rc = KG_ERR_NOMEM;
            goto out;
        }
        kg_record_unref(was);
        copy = NULL;
    } else {
        if (!create) {
            snprintf(diag->message, sizeof(diag->message), "no key with id '%s'",
                     kg_record_id(r));
            rc = KG_ERR_NOT_FOUND;
            goto out;
        }
        if (kg__file_table_add(t, copy) != 0) {
            rc = KG_ERR_NOMEM;
            goto out;
        }
        copy = NULL;
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
    kg_record_unref(copy);
    kg__file_table_free(t);
    flock(lfd, LOCK_UN);
    close(lfd);
    return rc;
}
