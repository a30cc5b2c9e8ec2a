/*
 * limits_shm.h - the limiter state in a file shared by processes: its
 * layout, shared by limits_file.c (opening, checking, creating and
 * closing the file) and limits_shm.c (the table: slots, entries, leases,
 * recovery after a process died holding a lock).  Why it is laid out so:
 * docs/limits-state.md.
 *
 * Everything in the file is found by index, never by pointer: each
 * process maps it at its own address.  The file is laid out once, from
 * its size, and never grows: a header page, the shards (each a robust,
 * process-shared mutex and its free lists), then per area one array
 * split evenly over the shards: buckets, slots, lease blocks.
 */
#ifndef KG_LIMITS_SHM_H
#define KG_LIMITS_SHM_H

#include "limits_int.h"

/* Bumped whenever anything below changes its meaning or place: a file
 * of another version is refused, never read. */
#define KG__SHM_VERSION 1
#define KG__SHM_MAGIC "KGLIMST"
#define SHM_HDR_SIZE 4096
#define SHM_ENTRIES 6       /* limits per key (Enterprise has four) */
#define SHM_KEY_MAX 88      /* longer key ids are stored as their SHA-256 */
#define SHM_SLOT_LEASES 9   /* leases in the slot; more in lease blocks */
#define SHM_BLOCK_LEASES 10

struct shm_lease {
    uint64_t id;
    int64_t expires_us;
    uint32_t entry;
    uint32_t pad;
};

/* One key's entries and leases; indices are 1-based (0: none). */
struct shm_slot {
    uint64_t hash;
    uint32_t next;          /* bucket chain, or the free list */
    uint32_t keylen;        /* 0: not in use */
    int64_t touched_s;
    int64_t idle_s;
    uint32_t nentries;
    uint32_t nleases;
    uint32_t block;         /* first lease block past the inline ones */
    uint32_t key_hashed;    /* key holds the SHA-256 of a long key id */
    char key[SHM_KEY_MAX];
    struct kg_slot e[SHM_ENTRIES];
    struct shm_lease inl[SHM_SLOT_LEASES];
};
_Static_assert(sizeof(struct shm_slot) == 1024, "a shared slot is 1 KiB");

struct shm_block {
    uint32_t next;
    uint32_t pad;
    struct shm_lease l[SHM_BLOCK_LEASES];
    char pad2[8];
};
_Static_assert(sizeof(struct shm_block) == 256, "a lease block is 256 bytes");

/* The lock must come first: kg_slot_unlock() unlocks an entry's shard
 * through the entry's tagged owner, a pointer to it. */
struct shm_shard {
    pthread_mutex_t lock;
    uint32_t free;          /* free slots (released ones) */
    uint32_t carved;        /* slots of the shard ever used */
    uint32_t bfree;         /* free lease blocks */
    uint32_t bcarved;
    uint32_t count;         /* slots in use */
    uint32_t entries;
    uint32_t hand;          /* next bucket the reaper looks at */
    uint32_t pad;
} __attribute__((aligned(64)));

struct shm_header {
    char magic[8];
    uint32_t version;
    uint32_t header_size;
    uint64_t size;
    /* The geometry, derived from the size; checked again on open. */
    uint32_t nshards, slot_size, block_size, shard_size;
    uint32_t slots, buckets, blocks;    /* per shard */
    uint32_t entries_per_slot, slot_words;
    uint64_t off_shards, off_buckets, off_slots, off_blocks;
    /* Written by the first process to open the file and the last to
     * close it (both under an exclusive flock): clean is 1 only once
     * every page was synced at the last close; boot is the boot's id, to
     * tell a crashed process (same boot: the page cache was never lost)
     * from a power cut (another boot, not clean: pages may be torn). */
    uint32_t clean;
    uint32_t pad;
    uint64_t generation;
    char boot[40];
    uint64_t checksum;      /* FNV-1a of every byte above */
};

struct kg__shm {
    char *base;
    size_t size;
    int fd;
    char *path;
    kg_context *ctx;        /* for its log */
    struct shm_header *h;
    struct shm_shard *shards;
    uint32_t *buckets;
    struct shm_slot *slots;
    struct shm_block *blocks;
};

/* limits_shm.c: rebuild a shard's free lists and counts from its bucket
 * chains, cutting any link that is out of range or loops (a process died
 * holding its lock, or the file was left by one); with `clear`, empty it. */
void kg__shm_shard_repair(struct kg__shm *m, uint32_t shard, int clear);

#endif
