/*
 * limits_file.c - the limiter state file: opened (created, checked,
 * started afresh or repaired) and closed.  The table inside it:
 * limits_shm.c; why it works so: docs/limits-state.md.
 *
 * Who opens it first and who closes it last is told by flock(): every
 * process holds a shared lock on it while it has it open, so a process
 * that gets the exclusive lock at open is alone with the file (any other
 * that had it open has stopped: the kernel drops a dead process's
 * flock), and one that gets it at close is the last.  Only those two
 * write the header.  The first decides what the file's state is worth:
 *
 * - other magic, layout version or size: refused, never read or written;
 * - header checksum wrong: torn (a power cut mid-write), started afresh;
 * - not closed cleanly, and the machine has rebooted since (boot id): the
 *   page cache was lost with pages half written back, so the body may be
 *   torn: started afresh;
 * - not closed cleanly on this boot: a process stopped (killed, crashed)
 *   but every page it wrote is in the page cache, so the state is right
 *   up to what a lock holder was doing: every shard is checked and kept;
 * - closed cleanly (every page synced before `clean` was set): kept.
 */
#include "limits_shm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <unistd.h>

#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>

#define MIN_SIZE ((uint64_t)1 << 20)
#define SLOT_COST (sizeof(struct shm_slot) + 2 * sizeof(uint32_t) + \
                   sizeof(struct shm_block) / 4)

static uint64_t fnv(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = 1469598103934665603ULL;
    size_t i;
    for (i = 0; i < n; i++) {
        h ^= s[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static uint64_t header_sum(const struct shm_header *h)
{
    return fnv(h, offsetof(struct shm_header, checksum));
}

static uint64_t align64(uint64_t x)
{
    return (x + 63) & ~(uint64_t)63;
}

/* The geometry of a file of `size` bytes (all but the state fields). */
static void geometry(uint64_t size, struct shm_header *g)
{
    uint64_t per, slots, buckets;
    uint32_t n = 1;

    memset(g, 0, sizeof(*g));
    memcpy(g->magic, KG__SHM_MAGIC, sizeof(g->magic));
    g->version = KG__SHM_VERSION;
    g->header_size = SHM_HDR_SIZE;
    g->size = size;
    /* A shard per 256 KiB, at most 256 (as the memory state). */
    while (n < 256 && ((uint64_t)n * 2) * (256 << 10) <= size)
        n *= 2;
    g->nshards = n;
    g->slot_size = sizeof(struct shm_slot);
    g->block_size = sizeof(struct shm_block);
    g->shard_size = sizeof(struct shm_shard);
    g->entries_per_slot = SHM_ENTRIES;
    g->slot_words = KG_SLOT_WORDS;
    per = (size - SHM_HDR_SIZE - align64((uint64_t)n * sizeof(struct shm_shard)) - 256) / n;
    slots = per / SLOT_COST;
    if (slots > UINT32_MAX / 2 / n)
        slots = UINT32_MAX / 2 / n;
    /* A power of two of buckets, no fewer than the slots' half. */
    for (buckets = 1; buckets * 2 <= slots; buckets *= 2)
        ;
    g->slots = (uint32_t)slots;
    g->buckets = (uint32_t)buckets;
    g->blocks = (uint32_t)(slots / 4);
    g->off_shards = SHM_HDR_SIZE;
    g->off_buckets = g->off_shards + align64((uint64_t)n * sizeof(struct shm_shard));
    g->off_slots = align64(g->off_buckets + (uint64_t)n * buckets * sizeof(uint32_t));
    g->off_blocks = g->off_slots + (uint64_t)n * slots * sizeof(struct shm_slot);
}

/* The id of this boot ("" where the kernel does not say). */
static void boot_id(char out[40])
{
    FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");
    memset(out, 0, 40);
    if (f != NULL) {
        if (fgets(out, 40, f) == NULL)
            out[0] = '\0';
        out[strcspn(out, "\n")] = '\0';
        fclose(f);
    }
}

static void init_locks(struct kg__shm *m)
{
    pthread_mutexattr_t a;
    uint32_t i;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    for (i = 0; i < m->h->nshards; i++)
        pthread_mutex_init(&m->shards[i].lock, &a);
    pthread_mutexattr_destroy(&a);
}

static void place(struct kg__shm *m)
{
    m->h = (struct shm_header *)m->base;
    m->shards = (struct shm_shard *)(m->base + m->h->off_shards);
    m->buckets = (uint32_t *)(m->base + m->h->off_buckets);
    m->slots = (struct shm_slot *)(m->base + m->h->off_slots);
    m->blocks = (struct shm_block *)(m->base + m->h->off_blocks);
}

/* Say why the file is started afresh. */
static void say(kg_context *ctx, const char *path, const char *why)
{
    kg_context_log_backend(ctx, "limits", "%s: %s; started afresh", path, why);
}

/*
 * What the first opener makes of the header `h` read from the file:
 * 0 keep (after checking every shard if `*repair_r`), 1 start afresh
 * (the reason logged), -1 refused (err).
 */
static int judge(kg_context *ctx, const char *path, const struct shm_header *h,
                 const struct shm_header *want, const char *boot, int first,
                 int *repair_r, char *err, size_t errlen)
{
    *repair_r = 0;
    if (memcmp(h->magic, KG__SHM_MAGIC, sizeof(h->magic)) != 0) {
        snprintf(err, errlen, "%s is not a keygate limiter state file "
                 "(refused, left as it is)", path);
        return -1;
    }
    if (h->version != KG__SHM_VERSION) {
        snprintf(err, errlen, "%s holds limiter state of layout version %u; "
                 "this keygate reads version %u (refused, left as it is: "
                 "move it away to start afresh)", path, (unsigned)h->version,
                 (unsigned)KG__SHM_VERSION);
        return -1;
    }
    if (h->size != want->size) {
        snprintf(err, errlen, "%s was made for size %llu bytes, the policy says "
                 "%llu (refused, left as it is: give its size or another file)",
                 path, (unsigned long long)h->size,
                 (unsigned long long)want->size);
        return -1;
    }
    if (header_sum(h) != h->checksum) {
        if (!first) {
            snprintf(err, errlen, "%s: its header is damaged while other "
                     "processes use it (refused)", path);
            return -1;
        }
        say(ctx, path,
            "the header's checksum is wrong (torn by a power cut?)");
        return 1;
    }
    if (memcmp(&h->nshards, &want->nshards,
               offsetof(struct shm_header, clean) - offsetof(struct shm_header, nshards)) != 0) {
        snprintf(err, errlen, "%s: its layout differs from this keygate's "
                 "for the same version and size (refused)", path);
        return -1;
    }
    if (first && !h->clean) {
        if (boot[0] == '\0' || strncmp(h->boot, boot, sizeof(h->boot)) != 0) {
            say(ctx, path,
                "it was in use when the machine stopped (power cut?), so "
                "its pages may be torn");
            return 1;
        }
        *repair_r = 1;
    }
    return 0;
}

/*
 * A file root has just made goes to the owner of its folder: nginx's
 * master (root) loads the policy before its workers (another user) do,
 * and keygate's CLI run as root may be the first to name the file; the
 * processes that use it own the folder (docs/limits-state.md).
 */
static void give_to_folder_owner(int fd, const char *path)
{
    char dir[PATH_MAX], *slash;
    struct stat ds;

    if (geteuid() != 0 || snprintf(dir, sizeof(dir), "%s", path) >= (int)sizeof(dir))
        return;
    slash = strrchr(dir, '/');
    if (slash == NULL)
        snprintf(dir, sizeof(dir), ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    if (stat(dir, &ds) == 0 && ds.st_uid != 0 && fchown(fd, ds.st_uid, ds.st_gid) != 0)
        return;     /* left root's: the other processes will say so */
}

/* Unmap and close; with `mark`, mark the file clean if this is the
 * last process to have it open. */
static void release(struct kg__shm *m, int mark)
{
    if (m == NULL)
        return;
    if (m->base != NULL) {
        /* The last one: everything on disk, then marked clean. */
        if (mark && flock(m->fd, LOCK_EX | LOCK_NB) == 0) {
            char boot[40];
            boot_id(boot);
            msync(m->base, m->size, MS_SYNC);
            m->h->clean = 1;
            memcpy(m->h->boot, boot, sizeof(m->h->boot));
            m->h->checksum = header_sum(m->h);
            msync(m->base, SHM_HDR_SIZE, MS_SYNC);
        }
        munmap(m->base, m->size);
    }
    if (m->fd >= 0)
        close(m->fd);
    free(m->path);
    free(m);
}

void kg__shm_close(struct kg__shm *m)
{
    release(m, 1);
}

kg_error kg__shm_open(kg_context *ctx, const char *path, uint64_t size,
                      struct kg__shm **m_r, char *err, size_t errlen)
{
    struct kg__shm *m;
    struct shm_header want, h = {0};
    struct stat st;
    char boot[40];
    int first, fresh = 0, repair = 0, v;
    kg_error e = KG_ERR_INVALID;

    *m_r = NULL;
    if (size < MIN_SIZE || size > ((uint64_t)1 << 40) || size != (size_t)size) {
        snprintf(err, errlen, "the limiter state's size must be 1m to 1t");
        return KG_ERR_INVALID;
    }
    if ((m = calloc(1, sizeof(*m))) == NULL || (m->path = strdup(path)) == NULL) {
        free(m);
        snprintf(err, errlen, "out of memory");
        return KG_ERR_NOMEM;
    }
    m->ctx = ctx;
    m->size = (size_t)size;
    geometry(size, &want);
    boot_id(boot);
    if ((m->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0) {
        snprintf(err, errlen, "cannot open the limiter state %s: %s", path,
                 strerror(errno));
        e = KG_ERR_IO;
        goto fail;
    }
    first = flock(m->fd, LOCK_EX | LOCK_NB) == 0;
    if (!first && flock(m->fd, LOCK_SH) != 0)
        goto io;
    if (fstat(m->fd, &st) != 0)
        goto io;
    if (st.st_size == 0 && first) {
        fresh = 1;
    } else if ((uint64_t)st.st_size != size && st.st_size < SHM_HDR_SIZE) {
        snprintf(err, errlen, "%s is %lld bytes: not a keygate limiter state "
                 "file (refused, left as it is)", path, (long long)st.st_size);
        goto fail;
    } else {
        if (pread(m->fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h))
            goto io;
        v = judge(ctx, path, &h, &want, boot, first, &repair, err, errlen);
        if (v < 0)
            goto fail;
        if ((uint64_t)st.st_size != size) {
            snprintf(err, errlen, "%s is %lld bytes, its header says %llu "
                     "(refused)", path, (long long)st.st_size,
                     (unsigned long long)size);
            goto fail;
        }
        fresh = v == 1;
    }
    if (st.st_size == 0)
        give_to_folder_owner(m->fd, path);
    if (fresh) {
        /* Zeroes everywhere: no slot carved, every bucket empty. */
        if (ftruncate(m->fd, 0) != 0 || ftruncate(m->fd, (off_t)size) != 0)
            goto io;
        /* Blocks reserved now: a full disk later would be a SIGBUS. */
        if ((errno = posix_fallocate(m->fd, 0, (off_t)size)) != 0 &&
            errno != EOPNOTSUPP && errno != EINVAL)
            goto io;
    }
    m->base = mmap(NULL, m->size, PROT_READ | PROT_WRITE, MAP_SHARED, m->fd, 0);
    if (m->base == MAP_FAILED) {
        m->base = NULL;
        goto io;
    }
    if (first && fresh) {
        want.generation = h.generation;
        memcpy(m->base, &want, sizeof(want));
    }
    place(m);
    if (first) {
        init_locks(m);
        if (repair) {
            for (uint32_t i = 0; i < m->h->nshards; i++)
                kg__shm_shard_repair(m, i, 0);
            kg_context_log_backend(ctx, "limits", "%s: left open by a process "
                                   "that stopped; every shard checked and kept",
                                   path);
        }
        m->h->clean = 0;
        memcpy(m->h->boot, boot, sizeof(m->h->boot));
        m->h->generation++;
        m->h->checksum = header_sum(m->h);
        msync(m->base, SHM_HDR_SIZE, MS_SYNC);
        if (flock(m->fd, LOCK_SH) != 0)
            goto io;
    } else if (m->h->clean) {
        /* The last user closed it between this one's failed exclusive
         * lock and its shared one, marking it clean: mark it in use again
         * (no one can mark it clean while this shared lock is held), or
         * a power cut would leave a "clean" file torn. */
        m->h->clean = 0;
        m->h->checksum = header_sum(m->h);
        msync(m->base, SHM_HDR_SIZE, MS_SYNC);
    }
    *m_r = m;
    return KG_OK;
io:
    snprintf(err, errlen, "limiter state %s: %s", path, strerror(errno));
    e = KG_ERR_IO;
fail:
    release(m, 0);
    return e;
}

kg_error kg__shm_attach(kg_context *c, const char *path, uint64_t size,
                        char *err, size_t errlen)
{
    struct kg__shm *m = kg__ctx_shm(c), *none = NULL;
    char real[PATH_MAX];
    kg_error e;

    if (m != NULL) {
        /* The same file (by its resolved name) and size: nothing to do. */
        if (realpath(path, real) != NULL && strcmp(real, m->path) == 0 &&
            size == m->size)
            return KG_OK;
        snprintf(err, errlen, "this process keeps its limiter state in %s "
                 "(%llu bytes); it cannot move it to %s (%llu bytes) while it "
                 "runs: restart it", m->path, (unsigned long long)m->size,
                 path, (unsigned long long)size);
        return KG_ERR_EXISTS;
    }
    if ((e = kg__shm_open(c, path, size, &m, err, errlen)) != KG_OK)
        return e;
    if (realpath(path, real) != NULL) {
        char *r = strdup(real);
        if (r != NULL) {
            free(m->path);
            m->path = r;
        }
    }
    /* Two policies loaded at once in two threads: the first one wins. */
    if (!atomic_compare_exchange_strong(&c->shm, &none, m)) {
        kg__shm_close(m);
        return kg__shm_attach(c, path, size, err, errlen);
    }
    return KG_OK;
}
