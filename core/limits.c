/*
 * limits.c - the memory limiter state of a context.
 *
 * One slot per key id holds every limit entry of that key (the words of
 * "hour", "day", ...) and its concurrency leases, so that one check of a
 * plan with three limits finds its key once, and one lease release finds
 * it once more.  The state is the context's, not the policy's, so a
 * reload never resets a counter.
 *
 * The table is sharded (a mutex per shard, so two keys rarely contend)
 * and bounded: a capacity in (key, limit) entries is split evenly over
 * the shards.  A new slot first reaps idle ones from the next buckets of
 * a sweeping hand; a full shard then evicts the least recently used of a
 * handful of sampled slots (as Redis does: an exact LRU list would write
 * two neighbouring slots, two cache misses at a million keys, on every
 * check).
 *
 * Slots have one size (512 bytes: a key id of up to 31 bytes inline) and
 * come from 2 MiB chunks the kernel may back with huge pages, kept on a
 * free list per shard: at a million keys the limiter state is half a
 * gigabyte, and a TLB miss on top of each cache miss doubles its cost.
 *
 * A slot is only ever read or written with its shard's lock held.  A
 * check pins its key's slot the first time a limiter locks it (pins > 0:
 * never evicted), so the limiters after the first lock it without a
 * search; the check unpins it when it ends (kg__limits_unpin).
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/mman.h>

#include <openssl/rand.h>

#define SHARDS 256
#define DEFAULT_CAPACITY 1000000
/* The shard is picked by the low bits of the hash; the bucket within it
 * by the bits above, or every key of a shard would share a bucket. */
#define BUCKET(h, n) ((size_t)((h) >> 8) & ((n) - 1))
/* Limit entries kept inside the slot; more go to a separate array.  Three
 * covers every shipped plan but Enterprise (which has four). */
#define INLINE_ENTRIES 3
#define INLINE_LEASES 2
#define NAME_MAX_LEN 47
/* Lease ids are drawn from OpenSSL's RNG a block at a time, per thread
 * (no lock; kg__thread): one RAND_bytes() per lease costs more than the
 * rest of a check, and a small block refilled often shows in the p99. */

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
    /* Set when the slot is first used and never changed: a slot stays
     * with its shard (its free list) for good.  Read without the lock by
     * key_lock() through a record's hint. */
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

#define CARVE 16                  /* slots a shard takes from a chunk at once */

/* Hints: key hash -> the key's slot as last seen (see key_lock), two
 * per entry of capacity (six per key of three limits).  The key's hash
 * picks a line of eight hints (one cache line); each hint is a slot's
 * address tagged with 25 other bits of the hash (in the bits a slot's
 * address leaves unused), which pick the key's hint within the line.  A
 * direct-mapped table lost 6% of the hints at a million keys to keys
 * sharing an entry, each such check then searching the slot's bucket
 * (two more cache misses); eight ways keep almost all of them. */
#define HINT_WAYS 8
#define HINT_LOW ((uintptr_t)sizeof(struct kslot) - 1)
#define HINT_TAG_MASK (((uintptr_t)0xffff << 48) | HINT_LOW)
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

static int lease_id(uint64_t *id)
{
    kg__thread *t = kg__thread_get();
    if (t == NULL)
        return 0;
    if (t->lease_pos >= KG__LEASE_IDS) {
        if (RAND_bytes((unsigned char *)t->lease_ids, sizeof(t->lease_ids)) != 1)
            return 0;
        t->lease_pos = 0;
    }
    *id = t->lease_ids[t->lease_pos];
    t->lease_ids[t->lease_pos++] = 0;
    return 1;
}

static uint64_t fnv1a(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    size_t i;
    for (i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    return h ^ (h >> 29);
}

/*
 * (Re)size the hints for a capacity: a new table replaces the old, which
 * stays mapped (checks in flight may be reading it) until the state is
 * freed.  Advised for huge pages: a hint lookup should not cost a TLB
 * miss.  Out of memory: the old table (or none) stays.
 */
static void hints_resize(struct kg__limits *l, size_t capacity)
{
    struct hints *old = atomic_load(&l->hints), *t;
    size_t n = 1024, bytes;
    void *m;

    while (n < 2 * capacity && n < ((size_t)1 << 28))
        n *= 2;
    if (old != NULL && old->n == n)
        return;
    if ((t = calloc(1, sizeof(*t))) == NULL)
        return;
    bytes = (n + n / 8) * sizeof(*t->h);
    m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
        free(t);
        return;
    }
#ifdef MADV_HUGEPAGE
    (void)madvise(m, bytes, MADV_HUGEPAGE);
#endif
    t->h = m;
    t->n = n;
    t->lease = t->h + n;
    t->nlease = n / 8;
    t->older = old;
    atomic_store(&l->hints, t);
}

kg_error kg__limits_new(struct kg__limits **l_r)
{
    struct kg__limits *l;
    size_t i;
    if (posix_memalign((void **)&l, 64, sizeof(*l)) != 0)
        return KG_ERR_NOMEM;
    memset(l, 0, sizeof(*l));
    atomic_init(&l->capacity, DEFAULT_CAPACITY);
    atomic_init(&l->entries, 0);
    for (i = 0; i < SHARDS; i++)
        pthread_mutex_init(&l->shards[i].lock, NULL);
    pthread_mutex_init(&l->chunk_lock, NULL);
    hints_resize(l, DEFAULT_CAPACITY);
    *l_r = l;
    return KG_OK;
}

/* Under the shard lock: a slot from the shard's free list, refilled from
 * the current chunk a few at a time. */
static struct kslot *slot_alloc(struct kg__limits *l, struct lshard *sh)
{
    struct kslot *s;
    if (sh->free == NULL) {
        int k;
        pthread_mutex_lock(&l->chunk_lock);
        for (k = 0; k < CARVE; k++) {
            if (l->chunk == NULL || l->chunk_used + sizeof(*s) > KG__HP_CHUNK) {
                char *c;
                if (l->nchunks == l->chunkcap) {
                    size_t cap = l->chunkcap ? 2 * l->chunkcap : 16;
                    void **nc = realloc(l->chunks, cap * sizeof(*nc));
                    if (nc == NULL)
                        break;
                    l->chunks = nc;
                    l->chunkcap = cap;
                }
                if ((c = kg__hp_chunk_new()) == NULL)
                    break;
                l->chunks[l->nchunks++] = c;
                l->chunk = c;
                l->chunk_used = 0;
            }
            s = (struct kslot *)(l->chunk + l->chunk_used);
            l->chunk_used += sizeof(*s);
            s->hnext = sh->free;
            sh->free = s;
        }
        pthread_mutex_unlock(&l->chunk_lock);
        if (sh->free == NULL)
            return NULL;
    }
    s = sh->free;
    sh->free = s->hnext;
    return s;
}

static void slot_release(struct lshard *sh, struct kslot *s)
{
    s->keylen = 0;     /* dead: a record's stale hint no longer matches */
    if (s->leases != s->inl_leases)
        free(s->leases);
    free(s->more);
    if (s->key != s->keybuf)
        free(s->key);
    s->hnext = sh->free;
    sh->free = s;
}

void kg__limits_free(struct kg__limits *l)
{
    size_t i, b;
    if (l == NULL)
        return;
    for (i = 0; i < SHARDS; i++) {
        struct lshard *sh = &l->shards[i];
        for (b = 0; b < sh->nbuckets; b++) {
            struct kslot *s = sh->buckets[b], *next;
            for (; s; s = next) {
                next = s->hnext;
                slot_release(sh, s);
            }
        }
        free(sh->buckets);
        pthread_mutex_destroy(&sh->lock);
    }
    for (i = 0; i < l->nchunks; i++)
        kg__hp_chunk_free(l->chunks[i]);
    for (struct hints *t = atomic_load(&l->hints), *o; t != NULL; t = o) {
        o = t->older;
        munmap(t->h, (t->n + t->nlease) * sizeof(*t->h));
        free(t);
    }
    free(l->chunks);
    pthread_mutex_destroy(&l->chunk_lock);
    free(l);
}

void kg__limits_set_capacity(struct kg__limits *l, size_t max)
{
    static pthread_mutex_t resize = PTHREAD_MUTEX_INITIALIZER;
    atomic_store(&l->capacity, max);
    pthread_mutex_lock(&resize);
    hints_resize(l, max);
    pthread_mutex_unlock(&resize);
}

size_t kg__limits_entries(struct kg__limits *l)
{
    return atomic_load(&l->entries);
}

/* Unlink *pp (a slot of bucket chain) and free it. */
static void evict_at(struct kg__limits *l, struct lshard *sh, struct kslot **pp)
{
    struct kslot *s = *pp;
    *pp = s->hnext;
    sh->count--;
    sh->entries -= s->nentries;
    atomic_fetch_sub(&l->entries, s->nentries);
    slot_release(sh, s);
}

static void evict(struct kg__limits *l, struct lshard *sh, struct kslot *s)
{
    struct kslot **pp = &sh->buckets[BUCKET(s->hash, sh->nbuckets)];
    while (*pp != s)
        pp = &(*pp)->hnext;
    evict_at(l, sh, pp);
}

static int grow(struct lshard *sh)
{
    size_t nb = sh->nbuckets ? sh->nbuckets * 2 : 16, i;
    struct kslot **b = calloc(nb, sizeof(*b));
    if (b == NULL)
        return -1;
    for (i = 0; i < sh->nbuckets; i++) {
        struct kslot *s = sh->buckets[i], *next;
        for (; s; s = next) {
            next = s->hnext;
            s->hnext = b[BUCKET(s->hash, nb)];
            b[BUCKET(s->hash, nb)] = s;
        }
    }
    free(sh->buckets);
    sh->buckets = b;
    sh->nbuckets = nb;
    sh->hand = 0;
    return 0;
}

static void reap_leases(struct kslot *s, int64_t now_us)
{
    uint32_t i = 0;
    while (i < s->nleases) {
        if (s->leases[i].expires_us <= now_us)
            s->leases[i] = s->leases[--s->nleases];
        else
            i++;
    }
}

static int idle(const struct kslot *s, int64_t now_s)
{
    return s->touched_s + s->idle_s <= now_s && s->nleases == 0 &&
           atomic_load(&s->pins) == 0;
}

/* Sampled LRU: the least recently touched unpinned slot among the first
 * SAMPLE found from the hand on; NULL if the shard has none. */
#define SAMPLE 8
static struct kslot *victim(struct lshard *sh)
{
    struct kslot *best = NULL, *s;
    size_t looked = 0, b;
    int seen = 0;
    for (b = 0; b < sh->nbuckets && seen < SAMPLE; b++, looked++) {
        size_t i = (sh->hand + b) & (sh->nbuckets - 1);
        for (s = sh->buckets[i]; s && seen < SAMPLE; s = s->hnext) {
            if (atomic_load(&s->pins) > 0)
                continue;
            seen++;
            if (best == NULL || s->touched_s < best->touched_s)
                best = s;
        }
    }
    sh->hand = (sh->hand + looked) & (sh->nbuckets ? sh->nbuckets - 1 : 0);
    return best;
}

/* Make room in a shard for one more slot: reap idle slots from the next
 * two buckets of the hand, then evict until under the cap. */
static void make_room(struct kg__limits *l, struct lshard *sh, int64_t now_s)
{
    size_t cap = atomic_load(&l->capacity) / SHARDS + 1;
    struct kslot *v;
    int k;

    for (k = 0; k < 2 && sh->nbuckets; k++) {
        struct kslot **pp = &sh->buckets[sh->hand];
        while (*pp) {
            if (idle(*pp, now_s))
                evict_at(l, sh, pp);
            else
                pp = &(*pp)->hnext;
        }
        sh->hand = (sh->hand + 1) & (sh->nbuckets - 1);
    }
    while (sh->entries >= cap && (v = victim(sh)) != NULL)
        evict(l, sh, v);
}

/* Find (or with `create`, make) a key's slot; returns it with the shard
 * locked, or NULL with nothing locked. */
static struct kslot *find(struct kg__limits *l, const char *key, size_t klen,
                          int64_t now_s, int create)
{
    uint64_t h = fnv1a(key, klen);
    struct lshard *sh = &l->shards[h % SHARDS];
    struct kslot *s;

    pthread_mutex_lock(&sh->lock);
    if (sh->nbuckets) {
        for (s = sh->buckets[BUCKET(h, sh->nbuckets)]; s; s = s->hnext) {
            if (s->hash == h && s->keylen == klen &&
                memcmp(s->key, key, klen) == 0) {
                s->touched_s = now_s;
                return s;
            }
        }
    }
    if (!create || klen > UINT32_MAX) {
        pthread_mutex_unlock(&sh->lock);
        return NULL;
    }
    make_room(l, sh, now_s);
    if (2 * sh->count >= sh->nbuckets && grow(sh) != 0) {
        pthread_mutex_unlock(&sh->lock);
        return NULL;
    }
    if ((s = slot_alloc(l, sh)) == NULL) {
        pthread_mutex_unlock(&sh->lock);
        return NULL;
    }
    /* Only the header is cleared (entries are, as they are added), and
     * not the shard: see struct kslot. */
    memset(&s->hnext, 0, offsetof(struct kslot, keybuf) - offsetof(struct kslot, hnext));
    if (s->shard == NULL)
        s->shard = sh;
    s->key = klen < KEY_INLINE ? s->keybuf : malloc(klen + 1);
    if (s->key == NULL) {
        s->key = s->keybuf;
        slot_release(sh, s);
        pthread_mutex_unlock(&sh->lock);
        return NULL;
    }
    memcpy(s->key, key, klen);
    s->key[klen] = '\0';
    s->keylen = (uint32_t)klen;
    s->hash = h;
    s->touched_s = now_s;
    s->leases = s->inl_leases;
    s->leasecap = INLINE_LEASES;
    s->hnext = sh->buckets[BUCKET(h, sh->nbuckets)];
    sh->buckets[BUCKET(h, sh->nbuckets)] = s;
    sh->count++;
    return s;
}

static struct kg_slot *entry_at(struct kslot *s, uint32_t i)
{
    return i < INLINE_ENTRIES ? &s->inl[i] : &s->more[i - INLINE_ENTRIES];
}

/* The entry of `name` in a locked slot, its index in *idx_r; with
 * `create` made zeroed if absent.  NULL if absent (or out of memory). */
static struct kg_slot *entry(struct kg__limits *l, struct kslot *s,
                             const char *name, int64_t idle_s, int create,
                             uint32_t *idx_r)
{
    size_t nlen = strlen(name);
    struct kg_slot *e;
    uint32_t i;

    for (i = 0; i < s->nentries; i++) {
        e = entry_at(s, i);
        if (e->name[0] == name[0] && strcmp(e->name, name) == 0)
            goto found;
    }
    if (!create || nlen > NAME_MAX_LEN)
        return NULL;
    if (i >= INLINE_ENTRIES && i - INLINE_ENTRIES >= s->morecap) {
        uint32_t cap = s->morecap ? 2 * s->morecap : 2;
        struct kg_slot *m = realloc(s->more, cap * sizeof(*m));
        if (m == NULL)
            return NULL;
        s->more = m;
        s->morecap = cap;
    }
    e = entry_at(s, i);
    memset(e, 0, sizeof(*e));
    memcpy(e->name, name, nlen + 1);
    e->owner = s;
    s->nentries++;
    s->shard->entries++;
    atomic_fetch_add(&l->entries, 1);
found:
    if (idle_s > e->idle_s)
        e->idle_s = idle_s;
    if (idle_s > s->idle_s)
        s->idle_s = idle_s;
    *idx_r = i;
    return e;
}

/* A hint's tag: 25 bits of w, in the bits a slot's address leaves 0. */
static uintptr_t hint_tag(uint64_t w)
{
    return (uintptr_t)(w & HINT_LOW) | (uintptr_t)((w >> 9) & 0xffff) << 48;
}

static _Atomic(uintptr_t) *lease_hint(struct hints *t, uint64_t id)
{
    return &t->lease[id & (t->nlease - 1)];
}

/*
 * Where the hint of a key hash is, and a start on fetching the slot it
 * names: the lines a check of three limits reads.  Called right after
 * the key is hashed, before the key store runs.
 */
void kg__limits_prefetch(struct kg__limits *l, const unsigned char hash[KG_HASH_LEN],
                         kg__lpin *pin)
{
    struct hints *t;
    kg__thread *th;
    uint64_t v, w;
    if (l == NULL || (t = atomic_load_explicit(&l->hints, memory_order_acquire)) == NULL)
        return;
    memcpy(&v, hash + 8, sizeof(v));
    memcpy(&w, hash + 16, sizeof(w));
    pin->hint = &t->h[v & (t->n - 1) & ~(uint64_t)(HINT_WAYS - 1)];
    pin->tag = hint_tag(w);
    __builtin_prefetch(pin->hint);
    /* And the lease hint the check's lease (if its plan has a
     * concurrency limit) will be written to: its next lease id's. */
    if ((th = kg__thread_get()) != NULL && th->lease_pos < KG__LEASE_IDS)
        __builtin_prefetch(lease_hint(t, th->lease_ids[th->lease_pos]), 1);
}

/* The slot the key's hint names, or NULL. */
static struct kslot *hint_get(const kg__lpin *pin)
{
    int i;
    for (i = 0; i < HINT_WAYS; i++) {
        uintptr_t e = atomic_load_explicit(&pin->hint[i], memory_order_acquire);
        if (e != 0 && (e & HINT_TAG_MASK) == pin->tag)
            return (struct kslot *)(e & ~HINT_TAG_MASK);
    }
    return NULL;
}

/* Make s the key's hint: in place of its old one, else in a free way,
 * else in a way picked by the slot's address (as good as at random).
 * Two checks of keys of one line may race here: a hint lost is only a
 * search next time. */
static void hint_set(const kg__lpin *pin, struct kslot *s)
{
    uintptr_t a = (uintptr_t)s, e;
    int i, way = -1;
    if (a & HINT_TAG_MASK)
        return;            /* an address with no room for the tag */
    for (i = 0; i < HINT_WAYS; i++) {
        e = atomic_load_explicit(&pin->hint[i], memory_order_relaxed);
        if (e != 0 && (e & HINT_TAG_MASK) == pin->tag) {
            way = i;
            break;
        }
        if (e == 0 && way < 0)
            way = i;
    }
    if (way < 0)
        way = (int)((a / sizeof(struct kslot)) % HINT_WAYS);
    atomic_store_explicit(&pin->hint[way], a | pin->tag, memory_order_release);
}

/* Under s's lock: s holds the lease `id`. */
static void lease_hint_set(struct kg__limits *l, uint64_t id, struct kslot *s)
{
    struct hints *t = atomic_load_explicit(&l->hints, memory_order_acquire);
    uintptr_t a = (uintptr_t)s;
    if (t != NULL && !(a & HINT_TAG_MASK))
        atomic_store_explicit(lease_hint(t, id), a | hint_tag(id >> 32),
                              memory_order_release);
}

/*
 * The slot of key id key[0..klen) for releasing lease `id`, locked (as
 * find() returns it): the one the lease's hint names if it is still this
 * key's (as key_lock checks a key hint), else found.  The hint is used
 * up: a lease is released once.
 */
static struct kslot *lease_slot(struct kg__limits *l, uint64_t id,
                                const char *key, size_t klen, int64_t now_s)
{
    struct hints *t = atomic_load_explicit(&l->hints, memory_order_acquire);
    _Atomic(uintptr_t) *e;
    uintptr_t v;
    struct kslot *s;

    if (t == NULL)
        return find(l, key, klen, now_s, 0);
    e = lease_hint(t, id);
    v = atomic_load_explicit(e, memory_order_acquire);
    if (v == 0 || (v & HINT_TAG_MASK) != hint_tag(id >> 32))
        return find(l, key, klen, now_s, 0);
    s = (struct kslot *)(v & ~HINT_TAG_MASK);
    pthread_mutex_lock(&s->shard->lock);
    if (klen > 0 && s->keylen == klen && memcmp(s->key, key, klen) == 0) {
        atomic_compare_exchange_strong(e, &v, 0);
        s->touched_s = now_s;
        return s;
    }
    pthread_mutex_unlock(&s->shard->lock);
    return find(l, key, klen, now_s, 0);
}

void kg__limits_prefetch_slot(const kg__lpin *pin)
{
    char *s;
    size_t off;
    if (pin->hint == NULL || (s = (char *)hint_get(pin)) == NULL)
        return;
    for (off = 0; off < sizeof(struct kslot); off += 64)
        __builtin_prefetch(s + off, 1);
}

/*
 * The key's slot, locked: the pinned one if the call has one; else the
 * one its hint names, if that is still this key's; else found (or made).
 * It is pinned for the call and becomes the hint.
 *
 * A hinted slot may have been evicted, even reused for another key (or
 * be another key's whose hash shares the hint): slot memory is never
 * given back and a slot never changes shard, so reading s->shard is safe,
 * and under that shard's lock the slot is this key's only if it is live
 * (keylen > 0) with the same key id.
 */
static struct kslot *key_lock(struct kg__limits *l, const char *key_id,
                              int64_t now_s, kg__lpin *pin)
{
    struct kslot *s = pin ? pin->slot : NULL;
    size_t klen;

    if (s != NULL) {
        pthread_mutex_lock(&s->shard->lock);
        s->touched_s = now_s;
        return s;
    }
    klen = strlen(key_id);
    if (pin != NULL && pin->hint != NULL && (s = hint_get(pin)) != NULL) {
        pthread_mutex_lock(&s->shard->lock);
        if (s->keylen == klen && klen > 0 && memcmp(s->key, key_id, klen) == 0) {
            s->touched_s = now_s;
            goto found;
        }
        pthread_mutex_unlock(&s->shard->lock);
    }
    s = find(l, key_id, klen, now_s, 1);
    if (s == NULL)
        return NULL;
    if (pin != NULL && pin->hint != NULL)
        hint_set(pin, s);
found:
    if (pin != NULL) {
        atomic_fetch_add(&s->pins, 1);
        pin->slot = s;
    }
    return s;
}

void kg__limits_unpin(kg__lpin *pin)
{
    if (pin->slot != NULL)
        atomic_fetch_sub(&pin->slot->pins, 1);
    pin->slot = NULL;
}

kg_slot *kg__limits_lock(struct kg__limits *l, const char *key_id,
                         const char *limit, int64_t now_s, int64_t idle_s,
                         kg__lpin *pin)
{
    struct kslot *s = key_lock(l, key_id, now_s, pin);
    struct kg_slot *e;
    uint32_t idx;
    if (s == NULL)
        return NULL;
    e = entry(l, s, limit, idle_s, 1, &idx);
    if (e == NULL)
        pthread_mutex_unlock(&s->shard->lock);
    return e;
}

int64_t *kg_slot_words(kg_slot *e)
{
    return e->words;
}

void kg_slot_unlock(kg_slot *e)
{
    if (e != NULL)
        pthread_mutex_unlock(&e->owner->shard->lock);
}

/* ---- leases (their ids: leaseid.c) ------------------------------------ */

int kg__lease_format(struct kg__limits *l, const char *key_id,
                     const char *limit, char *out, size_t size)
{
    size_t klen = strlen(key_id), nlen = strlen(limit);
    uint64_t id;

    (void)l;
    if (size < KG_LEASE_SIZE(klen, nlen) || !lease_id(&id))
        return -1;
    kg__lease_id_format(id, key_id, klen, limit, nlen, out);
    return 0;
}

/* A new lease of entry idx in a locked slot; 0, or -1 if out of memory. */
static int lease_add(struct kslot *s, uint32_t idx, int64_t expires_us,
                     uint64_t *id_r)
{
    if (s->nleases == s->leasecap) {
        uint32_t cap = 2 * s->leasecap;
        struct lease *nl = malloc(cap * sizeof(*nl));
        if (nl == NULL)
            return -1;
        memcpy(nl, s->leases, s->nleases * sizeof(*nl));
        if (s->leases != s->inl_leases)
            free(s->leases);
        s->leases = nl;
        s->leasecap = cap;
    }
    if (!lease_id(id_r))
        return -1;
    s->leases[s->nleases].id = *id_r;
    s->leases[s->nleases].expires_us = expires_us;
    s->leases[s->nleases].entry = idx;
    s->nleases++;
    return 0;
}

int kg__lease_acquire(struct kg__limits *l, const char *key_id, size_t klen,
                      const char *limit, size_t nlen, int64_t max,
                      int64_t ttl_s, int64_t now_us, char *out,
                      int64_t *in_use_r, kg__lpin *pin)
{
    struct kslot *s;
    int64_t held = 0;
    uint32_t idx, i;
    uint64_t id;
    int r = 0;

    *in_use_r = -1;
    s = key_lock(l, key_id, now_us / 1000000, pin);
    if (s == NULL)
        return -1;
    if (entry(l, s, limit, ttl_s, 1, &idx) == NULL) {
        pthread_mutex_unlock(&s->shard->lock);
        return -1;
    }
    reap_leases(s, now_us);
    for (i = 0; i < s->nleases; i++)
        held += s->leases[i].entry == idx;
    if (held < max) {
        r = lease_add(s, idx, now_us + ttl_s * 1000000, &id) == 0 ? 1 : -1;
        if (r == 1) {
            lease_hint_set(l, id, s);
            kg__lease_id_format(id, key_id, klen, limit, nlen, out);
        }
        held += r == 1;
    }
    *in_use_r = r < 0 ? -1 : held;
    pthread_mutex_unlock(&s->shard->lock);
    return r;
}

int64_t kg__lease_count(struct kg__limits *l, const char *key_id,
                        const char *limit, int64_t now_us)
{
    struct kslot *s = find(l, key_id, strlen(key_id), now_us / 1000000, 0);
    struct kg_slot *e;
    int64_t c = 0;
    uint32_t idx, i;
    if (s == NULL)
        return 0;
    e = entry(l, s, limit, 0, 0, &idx);
    if (e != NULL) {
        reap_leases(s, now_us);
        for (i = 0; i < s->nleases; i++)
            c += s->leases[i].entry == idx;
    }
    pthread_mutex_unlock(&s->shard->lock);
    return c;
}

/* Release lease `id` of (key, limit) from the memory state. */
static kg_error release_mem(struct kg__limits *l, uint64_t id, const char *key,
                            size_t klen, const char *limit, int64_t now_us)
{
    struct kslot *s;
    uint32_t idx, i;
    kg_error rc = KG_ERR_NOT_FOUND;

    if (l == NULL || (s = lease_slot(l, id, key, klen, now_us / 1000000)) == NULL)
        return KG_ERR_NOT_FOUND;
    if (entry(l, s, limit, 0, 0, &idx) != NULL) {
        reap_leases(s, now_us);
        for (i = 0; i < s->nleases; i++) {
            if (s->leases[i].id == id && s->leases[i].entry == idx) {
                s->leases[i] = s->leases[--s->nleases];
                rc = KG_OK;
                break;
            }
        }
    }
    pthread_mutex_unlock(&s->shard->lock);
    return rc;
}

/* Not a memory lease: a remote backend's (same id format).  Releasers
 * take the lease NUL-terminated: a copy, on the heap if it is long. */
static kg_error release_remote(kg_context *ctx, const char *key_id,
                               const char *limit, const char *lease, size_t len)
{
    char buf[320], *one = len < sizeof(buf) ? buf : malloc(len + 1);
    kg_error e;

    if (one == NULL)
        return KG_ERR_NOMEM;
    memcpy(one, lease, len);
    one[len] = '\0';
    e = kg__releasers_call(ctx, key_id, limit, one);
    if (one != buf)
        free(one);
    return e;
}

kg_error kg__lease_release_of(kg_context *ctx, const char *lease, size_t len,
                              const char *key_id, size_t klen,
                              const char *limit, int64_t now_us)
{
    uint64_t id;
    kg_error e;

    if (kg__lease_id_random(lease, len, &id) != 0)
        return KG_ERR_INVALID;
    e = release_mem(ctx->limits, id, key_id, klen, limit, now_us);
    if (e == KG_ERR_NOT_FOUND)
        e = release_remote(ctx, key_id, limit, lease, len);
    return e;
}

/*
 * Release one lease (lease[0..len), no comma) of any key: its key part
 * "<key id>\x1f<limit>" decoded on the stack, or on the heap if the key
 * id is long, and split at its last 0x1f (a limit name has none; a key
 * id might).
 */
static kg_error release_one(kg_context *ctx, const char *lease, size_t len,
                            int64_t now_us)
{
    char buf[256], *key, *sep;
    size_t klen;
    uint64_t id;
    kg_error e = KG_ERR_INVALID;

    if (kg__lease_id_random(lease, len, &id) != 0)
        return KG_ERR_INVALID;
    klen = (len - 17) / 2;
    if ((key = klen < sizeof(buf) ? buf : malloc(klen + 1)) == NULL)
        return KG_ERR_NOMEM;
    if (kg__lease_id_key(lease, len, key) != 0)
        goto out;
    e = KG_ERR_NOT_FOUND;
    if ((sep = memrchr(key, '\x1f', klen)) == NULL)
        goto out;
    *sep = '\0';
    e = kg__lease_release_of(ctx, lease, len, key, (size_t)(sep - key),
                             sep + 1, now_us);
out:
    if (key != buf)
        free(key);
    return e;
}

kg_error kg__lease_release_any(kg_context *ctx, const char *lease,
                               int64_t now_us)
{
    const char *p = lease, *comma;
    int any = 0, nomem = 0;

    if (lease == NULL || *lease == '\0')
        return KG_ERR_INVALID;
    for (;; p = comma + 1) {
        size_t len;
        kg_error e;

        comma = strchr(p, ',');
        len = comma ? (size_t)(comma - p) : strlen(p);
        e = release_one(ctx, p, len, now_us);
        if (e == KG_ERR_INVALID)
            return e;
        any |= e == KG_OK;
        nomem |= e == KG_ERR_NOMEM;
        if (comma == NULL)
            break;
    }
    return any ? KG_OK : nomem ? KG_ERR_NOMEM : KG_ERR_NOT_FOUND;
}

kg_error kg_release(kg_context *ctx, const char *lease)
{
    if (ctx == NULL || lease == NULL)
        return KG_ERR_INVALID;
    return kg__lease_release_any(ctx, lease, kg_context_now(ctx));
}
