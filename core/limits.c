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
#include "limits_int.h"

#include <stdlib.h>
#include <string.h>

#define DEFAULT_CAPACITY 1000000
/* The shard is picked by the low bits of the hash; the bucket within it
 * by the bits above, or every key of a shard would share a bucket. */
#define BUCKET(h, n) ((size_t)((h) >> 8) & ((n) - 1))

#define CARVE 16                  /* slots a shard takes from a chunk at once */

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
    kg__hints_resize(l, DEFAULT_CAPACITY);
    *l_r = l;
    return KG_OK;
}

/* Under the shard lock: a slot from the shard's free list, refilled from
 * the current chunk a few at a time. */
static struct kslot *slot_alloc(struct kg__limits *l, struct lshard *sh,
                                struct kg__home *home)
{
    struct kslot *s;
    /* The key's home, if no slot was ever made there (it becomes this
     * shard's), or if the one made there was evicted and is vacant: it
     * moves to this shard, with its old shard's lock held too (tried,
     * never waited for: two checks may want each other's), so that no
     * one holding that lock can be using it. */
    if (home != NULL && (s = home->slot) != NULL) {
        struct lshard *none = NULL, *o = __atomic_load_n(&s->shard, __ATOMIC_ACQUIRE);
        if (o == NULL && __atomic_compare_exchange_n(&s->shard, &none, sh, 0,
                                                     __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
            s->is_home = 1;
            home->taken = 1;
            return s;
        }
        if (o == sh && s->vacant) {
            s->vacant = 0;
            home->retaken = 1;
            return s;
        }
        if (o != NULL && o != sh && pthread_mutex_trylock(&o->lock) == 0) {
            int ok = __atomic_load_n(&s->shard, __ATOMIC_RELAXED) == o && s->vacant;
            if (ok) {
                s->vacant = 0;
                __atomic_store_n(&s->shard, sh, __ATOMIC_RELEASE);
            }
            pthread_mutex_unlock(&o->lock);
            if (ok) {
                home->retaken = 1;
                return s;
            }
        }
    }
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
    s->key = s->keybuf;
    if (s->is_home) {
        s->vacant = 1;      /* kept for a key whose home it is */
        return;
    }
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
    kg__hints_free(l);
    free(l->chunks);
    pthread_mutex_destroy(&l->chunk_lock);
    free(l);
}

void kg__limits_set_capacity(struct kg__limits *l, size_t max)
{
    static pthread_mutex_t resize = PTHREAD_MUTEX_INITIALIZER;
    atomic_store(&l->capacity, max);
    pthread_mutex_lock(&resize);
    kg__hints_resize(l, max);
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
struct kslot *kg__limits_find(struct kg__limits *l, const char *key,
                              size_t klen, int64_t now_s, int create,
                              struct kg__home *home)
{
    uint64_t h = kg__key_fnv(key, klen);
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
    if ((s = slot_alloc(l, sh, home)) == NULL) {
        pthread_mutex_unlock(&sh->lock);
        return NULL;
    }
    /* Only the header is cleared (entries are, as they are added), and
     * not the shard: see struct kslot. */
    memset(&s->hnext, 0, offsetof(struct kslot, keybuf) - offsetof(struct kslot, hnext));
    if (kg__slot_shard(s) == NULL)
        __atomic_store_n(&s->shard, sh, __ATOMIC_RELEASE);
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
struct kg_slot *kg__limits_entry(struct kg__limits *l, struct kslot *s,
                                 const char *name, int64_t idle_s, int create,
                                 uint32_t *idx_r)
{
    size_t nlen;
    struct kg_slot *e;
    uint32_t i;

    for (i = 0; i < s->nentries; i++) {
        e = entry_at(s, i);
        if (e->name[0] == name[0] && strcmp(e->name, name) == 0)
            goto found;
    }
    if (!create || (nlen = strlen(name)) > NAME_MAX_LEN)
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
    kg__slot_shard(s)->entries++;
    atomic_fetch_add(&l->entries, 1);
found:
    if (idle_s > e->idle_s)
        e->idle_s = idle_s;
    if (idle_s > s->idle_s)
        s->idle_s = idle_s;
    *idx_r = i;
    return e;
}

/* ---- the slot entries plugins lock (kg_call_slot_lock) ----------------- */

kg_slot *kg__limits_lock(struct kg__limits *l, const char *key_id,
                         const char *limit, int64_t now_s, int64_t idle_s,
                         kg__lpin *pin)
{
    struct kslot *s = kg__key_lock(l, key_id, now_s, pin);
    struct kg_slot *e;
    uint32_t idx;
    if (s == NULL)
        return NULL;
    e = kg__limits_entry(l, s, limit, idle_s, 1, &idx);
    if (e == NULL)
        pthread_mutex_unlock(&kg__slot_shard(s)->lock);
    return e;
}

int64_t *kg_slot_words(kg_slot *e)
{
    return e->words;
}

/* An entry of the state file (limits_shm.c) has its shard's lock as its
 * owner, tagged by bit 0 (a struct kslot is 64-byte aligned). */
void kg_slot_unlock(kg_slot *e)
{
    uintptr_t o;
    if (e == NULL)
        return;
    o = (uintptr_t)e->owner;
    if (__builtin_expect(o & 1, 0))
        pthread_mutex_unlock((pthread_mutex_t *)(o & ~(uintptr_t)1));
    else
        pthread_mutex_unlock(&kg__slot_shard(e->owner)->lock);
}
