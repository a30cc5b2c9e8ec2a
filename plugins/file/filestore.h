/*
 * filestore.h - what the files of the file keystore plugin share: the
 * in-memory index of the key file (table.c), reading the key file
 * (load.c), writing it atomically (write.c) and the management
 * operations (manage.c); file.c holds the descriptor, the instance and
 * the lookups.  Nothing here is exported: the plugin's only exported
 * symbol is its descriptor.
 */
#ifndef KEYGATE_FILESTORE_H
#define KEYGATE_FILESTORE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>

#include <keygate/plugin.h>

/* A record's last_used is its own (kg_record_touch: no entry to find on
 * the check's path). */
struct entry {
    kg_record *rec;
    struct entry *next;       /* hash chain */
    struct entry *idnext;     /* key id chain */
};

/* Two indexes, by key hash (lookups) and by key id (management, and the
 * duplicate check of a load: a scan there made loading n keys take n^2/2
 * comparisons, an hour at a million), both of nbuckets buckets, grown
 * with the records (at most one per bucket on average). */
struct table {
    struct entry **buckets;
    struct entry **ids;
    size_t nbuckets;
    struct entry **all;       /* file order, room for nbuckets */
    size_t n;
    /* Once sealed: the records placed by hash (a lookup is one cache
     * miss, not three: bucket, entry, record), the entries' records
     * being the placed ones.  NULL: lookups go through the buckets. */
    kg_record_table *rt;
    /* The accounts (accounts.c), in file order, and an index by id
     * (open addressing: position + 1, 0 empty; anb a power of two). */
    kg_account **accts;
    size_t nacct, acap;
    size_t *aidx;
    size_t anb;
};

struct filestore {
    char *path;
    char *lockpath;
    char *auditpath;          /* the audit log, JSON lines (auditlog.h) */
    int64_t refresh_s;
    int create;
    pthread_rwlock_t lock;
    struct table *t;
    struct stat st;           /* of the file last loaded */
    int have_st;
    atomic_llong last_check;
    /* Set while a lookup looks at the file (file.c, maybe_refresh); the
     * refresher fields are only touched with it set, or on destroy. */
    atomic_flag checking;
    atomic_int refreshing;    /* the thread reading the file again runs */
    pthread_t refresher;
    int refresher_started;    /* not yet joined */
    /* Each read of the file takes a number before it starts; a table
     * replaces the one in place only if its read started later (a slow
     * refresh never undoes a reload or a write that read the file after
     * it). */
    atomic_ullong load_seq;
    unsigned long long table_seq; /* of fs->t; under the lock */
};

/* Errors name the key file's line and column, in the message (for the
 * policy loader, which reports them at the policy's `path:` option) and
 * in *at (for reload, which fills a kg_diag). */
struct place {
    unsigned line, column;
};

/* The bucket of a hash: its first 8 bytes (a SHA-256 is uniform). */
static inline size_t bucket(const struct table *t, const unsigned char *h)
{
    uint64_t v;
    memcpy(&v, h, sizeof(v));
    return (size_t)(v & (t->nbuckets - 1));
}

/* ---- table.c: the index by hash, in file order ------------------------ */

/* Accepts NULL; unrefs the records. */
void kg__file_table_free(struct table *t);
/* Append r (the table takes the reference).  -1: out of memory, r is
 * still the caller's. */
int kg__file_table_add(struct table *t, kg_record *r);
/* The entry of a key id, or NULL. */
struct entry *kg__file_table_find_id(const struct table *t, const char *id);
/* Rebuild both indexes (after a record was replaced: its hash may have
 * changed).  -1: out of memory, the table unchanged. */
int kg__file_table_reindex(struct table *t);
/* Each record of nt takes the later of its last_used and that of the
 * record of the same key id in old (which may be NULL). */
void kg__file_table_carry_last_used(struct table *nt, const struct table *old);
/* A table of copies of t's records (not sealed: to be changed and
 * written); NULL if out of memory. */
struct table *kg__file_table_copy(const struct table *t);
/* Place the records in a record table, once the table is complete (no
 * add after); out of memory, the table stays as it was (still whole). */
void kg__file_table_seal(struct table *t);

/* ---- accounts.c: the accounts of the key file ------------------------- */

/* Append a (a reference is taken).  -1: out of memory. */
int kg__file_acct_add(struct table *t, kg_account *a);
/* The account of this id, or else of this external id; NULL if none. */
kg_account *kg__file_acct_find(const struct table *t, const char *id);
/* Its position in t->accts, or (size_t)-1. */
size_t kg__file_acct_pos(const struct table *t, const char *id);
/* Replace the account at pos (a reference is taken).  -1: out of memory. */
int kg__file_acct_replace(struct table *t, size_t pos, kg_account *a);
/* Remove the account at pos. */
void kg__file_acct_remove(struct table *t, size_t pos);
void kg__file_acct_free(struct table *t);
/* Copy src's accounts (shared references) into t.  -1: out of memory. */
int kg__file_acct_copy(struct table *t, const struct table *src);
/* Attach each key to its account (kg_record_set_account; its plan the
 * account's); a key whose account is not in the file keeps the id alone
 * (checks refuse it unless revoked).  Before the table is sealed. */
void kg__file_acct_attach(struct table *t);
/* Give every key without an account one of its own (docs/policy.md
 * "Accounts"), before a write.  -1: out of memory. */
int kg__file_acct_migrate(struct table *t, int64_t now);

/* ---- load.c ----------------------------------------------------------- */

/* Read the file into a new table.  A missing file is an empty store if
 * `create` is set.  NULL on error, with err and *at filled. */
struct table *kg__file_load(const char *path, int create, struct stat *st_r,
                            int *have_st_r, char *err, size_t errlen,
                            struct place *at);

/* ---- write.c ---------------------------------------------------------- */

/* Write the table to path atomically: temp file 0600, fsync, rename,
 * fsync of the folder.  Called with "<path>.lock" held (flock), which
 * lets it remove the temporary files of writers that were killed. */
kg_error kg__file_write(const char *path, struct table *t, char *err, size_t errlen);

/* ---- file.c ----------------------------------------------------------- */

/* Whether the file (as stat() sees it now) differs from the one the
 * table was read from: inode, size or mtime; or none was read. */
int kg__file_changed(const struct filestore *fs, const struct stat *st);
/* The number a read of the file takes before it starts (see load_seq). */
unsigned long long kg__file_read_seq(struct filestore *fs);
/* Swap in a freshly read table (taking it), carrying last_used over,
 * unless the table in place comes from a read that started later (then
 * nt is freed). */
void kg__file_swap_table(struct filestore *fs, struct table *nt, unsigned long long seq,
                         const struct stat *st, int have_st);
/* Re-read the key file; a bad file never replaces a good table. */
kg_error kg__file_reload(void *inst, kg_diag *diag);
/* Reload if the file changed since it was last read (see file.c). */
void kg__file_refresh(struct filestore *fs);

/* ---- manage.c: the keystore's management operations ------------------- */

kg_error kg__file_get(void *inst, const char *id, kg_record **rec_r, kg_diag *diag);
kg_error kg__file_list(void *inst, kg_record_cb cb, void *ud, kg_diag *diag);
kg_error kg__file_put(void *inst, const kg_record *r, int create, kg_diag *diag);
kg_error kg__file_account_get(void *inst, const char *id, kg_account **a_r,
                              kg_diag *diag);
kg_error kg__file_account_list(void *inst, kg_account_cb cb, void *ud,
                               kg_diag *diag);
kg_error kg__file_account_put(void *inst, const kg_account *a, int create,
                              kg_diag *diag);
kg_error kg__file_account_delete(void *inst, const char *id, int with_keys,
                                 kg_diag *diag);

#endif
