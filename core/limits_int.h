/*
 * limits_int.h - what the memory limiter's files share: the state of a
 * context (struct kg__limits), its shards and slots, and the functions
 * one of them calls in another.  Included by limits.c (the table: shards,
 * slots, eviction, the slot entries plugins lock), hints.c (key and lease
 * hints: a key's slot without a search) and leases.c (concurrency
 * leases) only.  How the state is laid out and why: limits.c.
 */
#ifndef KG_LIMITS_INT_H
#define KG_LIMITS_INT_H

#include "internal.h"

#define SHARDS 256
/* Limit entries kept inside the slot; more go to a separate array.  Three
 * covers every shipped plan but Enterprise (which has four). */
#define INLINE_ENTRIES 3
#define INLINE_LEASES 2
#define NAME_MAX_LEN 47

/* A key id's hash: the shard by its low bits, the bucket by those above
 * (limits.c; the state file's table, limits_shm.c, the same way). */
static inline uint64_t kg__key_fnv(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    size_t i;
    for (i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    return h ^ (h >> 29);
}

struct lease {
    uint64_t id;
    int64_t expires_us;
    uint32_t entry;     /* index of the limit entry it belongs to */
};

struct kslot;

/* One (key, limit) entry: what kg_call_slot_lock() hands a plugin. */
struct kg_slot {
    int64_t words[KG_SLOT_WORDS];
    int64_t idle_s;
    struct kslot *owner;
    char name[NAME_MAX_LEN + 1];
};

struct lshard;

#define KEY_INLINE 32

struct kslot {
    /* Set when the slot is first used.  A slot of the chunks stays with
     * its shard (its free list) for good; a vacant home slot moves to the
     * shard of the key that takes it again (slot_alloc).  Read without the
     * lock by kg__key_lock() (hints.c) through a record's hint, and
     * compared-and-swapped by checks racing for a home: every access is
     * atomic (kg__slot_shard()). */
    struct lshard *shard;
    struct kslot *hnext;          /* bucket chain; free list when free */
    uint64_t hash;
    int64_t touched_s;
    int64_t idle_s;               /* the longest idle time of its entries */
    atomic_int pins;              /* checks holding it (never evicted) */
    uint32_t nentries;
    uint32_t morecap;
    uint32_t nleases, leasecap;
    uint32_t keylen;
    struct kg_slot *more;         /* entries past INLINE_ENTRIES */
    struct lease *leases;         /* inl_leases, or a heap array */
    char *key;                    /* the key id: keybuf, or the heap */
    char keybuf[KEY_INLINE];
    struct kg_slot inl[INLINE_ENTRIES];
    struct lease inl_leases[INLINE_LEASES];
    /* A slot of the home region (hints.c), set when first taken; such a
     * slot is never put on a free list: evicted, it is left `vacant`
     * (under its shard's lock) for the next key whose home it is. */
    uint32_t is_home;
    uint32_t vacant;
} __attribute__((aligned(64)));

_Static_assert(sizeof(struct kslot) == 512, "a slot is eight cache lines");

struct lshard {
    pthread_mutex_t lock;
    struct kslot **buckets;
    size_t nbuckets;
    size_t count;                 /* slots */
    size_t entries;               /* (key, limit) entries */
    size_t hand;                  /* next bucket the reaper looks at */
    struct kslot *free;           /* slots to reuse */
} __attribute__((aligned(64)));

/* A slot's shard (see struct kslot): relaxed where the shard's lock, held
 * or about to be taken and checked again, orders the rest. */
static inline struct lshard *kg__slot_shard(const struct kslot *s)
{
    return __atomic_load_n(&s->shard, __ATOMIC_RELAXED);
}

/* Hints: key hash -> the key's slot as last seen; lease id -> the slot
 * that holds the lease (see hints.c). */
struct hints {
    _Atomic(uintptr_t) *h;
    size_t n;                     /* a power of two */
    /* Lease hints, in the same mapping (h + n): a lease's random id ->
     * the slot that holds it, tagged like a key hint with 25 other bits
     * of the id; direct-mapped (a lost one costs a search).  A release
     * goes straight to its slot, which in the usual case (a request
     * ending soon after its check) is still in cache: the bucket walk it
     * replaces crossed other keys' slots, a cache miss each, in one
     * release in ten at a million keys. */
    _Atomic(uintptr_t) *lease;
    size_t nlease;                /* a power of two */
    struct hints *older;          /* replaced tables, freed with the state */
    /* Homes: slots placed by the key's hash (see hints.c), nhome of them
     * (a power of two), mapped with the table and unmapped with it. */
    struct kslot *home;
    size_t nhome;
    atomic_size_t home_taken;
    atomic_size_t home_retaken;   /* vacant homes taken again */
    /* The thread collapsing the region into huge pages, once dense;
     * joined when the state is freed. */
    pthread_t collapser;
    int collapsing;
};

/* A new slot's preferred place: taken if no slot was ever made there
 * (`taken` set) or if the slot made there was evicted (`retaken`). */
struct kg__home {
    struct kslot *slot;
    int taken, retaken;
};

struct kg__limits {
    atomic_size_t capacity;
    atomic_size_t entries;
    _Atomic(struct hints *) hints;   /* NULL: none (checks search) */
    struct lshard shards[SHARDS];
    /* The chunks slots are carved from (never given back before the
     * context is freed: the state is bounded by the capacity). */
    pthread_mutex_t chunk_lock;
    char *chunk;
    size_t chunk_used;
    void **chunks;
    size_t nchunks, chunkcap;
};

/* ---- limits.c: the table ------------------------------------------- */

/* Find (or with `create`, make) a key's slot; returns it with the shard
 * locked, or NULL with nothing locked. */
struct kslot *kg__limits_find(struct kg__limits *l, const char *key,
                              size_t klen, int64_t now_s, int create,
                              struct kg__home *home);
/* The entry of `name` in a locked slot, its index in *idx_r; with
 * `create` made zeroed if absent.  NULL if absent (or out of memory). */
struct kg_slot *kg__limits_entry(struct kg__limits *l, struct kslot *s,
                                 const char *name, int64_t idle_s, int create,
                                 uint32_t *idx_r);

/* ---- hints.c: key and lease hints ------------------------------------ */

/* (Re)size the hints for a capacity; out of memory: the old ones stay. */
void kg__hints_resize(struct kg__limits *l, size_t capacity);
/* Unmap every hint table the state has had. */
void kg__hints_free(struct kg__limits *l);
/* Lock the shard of a slot reached without a lock (a hint): returned. */
struct lshard *kg__slot_lock(struct kslot *s);
/* The key's slot, locked (pinned for the call if pin is not NULL). */
struct kslot *kg__key_lock(struct kg__limits *l, const char *key_id,
                           int64_t now_s, kg__lpin *pin);
/* Under s's lock: s holds the lease `id`. */
void kg__lease_hint_set(struct kg__limits *l, uint64_t id, struct kslot *s);
/* The slot of key id key[0..klen) for releasing lease `id`, locked. */
struct kslot *kg__lease_slot(struct kg__limits *l, uint64_t id,
                             const char *key, size_t klen, int64_t now_s);

#endif
