/*
 * hints.c - a key's limiter slot without a search, and a lease's.
 *
 * A table indexed by the key's hash remembers each key's slot between
 * checks (kg__lpin.hint), so a check usually finds it without a bucket
 * walk, and can fetch it from memory while the key store looks the key
 * up (kg__limits_prefetch).  Lease hints do the same for a release.  A
 * hint is only ever a guess: the slot it names is checked under its
 * shard's lock (see kg__key_lock).
 *
 * Homes.  A hint costs a cache miss before the slot's own: at a million
 * keys, two in a row.  So each hint table comes with a region of slots
 * indexed by other bits of the hash, a quarter as many as the capacity
 * in entries (a key has one to three limits): the key's home.  A key's
 * new slot is placed there if no slot ever was (most keys: 64% at a
 * million keys and that capacity), and the check fetches the home at
 * once, beside the hint, so for those keys the slot is one miss away.
 * A home is only a place: the slot is still found through its hint or
 * its bucket, and a key whose home was taken gets a slot from the
 * chunks as before.  A home slot evicted is left vacant, never put on a
 * free list, and the next new key whose home it is takes it again, from
 * whichever shard: the slot then moves to that shard, with both shards'
 * locks held (slot_alloc).  Without that, homes were used up once each:
 * after the key set turned over, a quarter of the new keys had one
 * instead of two thirds.  A hinted slot's shard is read without a lock,
 * so kg__slot_lock() checks it again once it holds that shard's lock.
 *
 * The region is mapped on 4 KiB pages (MADV_NOHUGEPAGE, even where huge
 * pages are the system's default): keys land in it at random, and a
 * deployment of a thousand keys on huge pages would hold 2 MiB for each
 * of them.  Once a sixteenth of the homes are taken it is dense enough:
 * a home taken touches its 4 KiB page (eight homes), so by then about
 * 40% of the region's pages are in memory (1 - e^-0.5), and huge pages
 * cost at most 2.5 times that, where every slot read at 4 KiB was a TLB
 * miss besides its cache miss.  (Half, as this was first, is never
 * reached where keys share their account's slot: 100,000 accounts of
 * ten keys take a tenth of a million keys' homes, and their checks ran
 * 0.80-0.86x the speed of a million keys of their own, 0.89-0.95x with
 * the region on huge pages; bench/check, bench/ab.sh.)  The check that
 * took the home advises it for huge pages (after it has let go of every
 * lock, kg__limits_unpin) and starts a thread that collapses it into
 * them at once where the kernel can (MADV_COLLAPSE, Linux 6.1): 1.25 s
 * for the 512 MiB of a million keys on the project's VM, a stall no
 * request should take.  Without that thread, or that kernel, khugepaged
 * does it over minutes.
 */
#include "limits_int.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include <sys/mman.h>

#if defined(__linux__) && !defined(MADV_COLLAPSE)
#define MADV_COLLAPSE 25
#endif

/* Hints: key hash -> the key's slot as last seen (see kg__key_lock), two
 * per entry of capacity (six per key of three limits).  The key's hash
 * picks a line of eight hints (one cache line); each hint is a slot's
 * address tagged with 25 other bits of the hash (in the bits a slot's
 * address leaves unused), which pick the key's hint within the line.  A
 * direct-mapped table lost 6% of the hints at a million keys to keys
 * sharing an entry, each such check then searching the slot's bucket
 * (two more cache misses); eight ways keep almost all of them. */
#define HINT_WAYS 8
/* Homes taken, as a fraction of all (1/HOME_DENSE), from which the home
 * region is put on huge pages (see the top of this file). */
#define HOME_DENSE 16
#define HINT_LOW ((uintptr_t)sizeof(struct kslot) - 1)
#define HINT_TAG_MASK (((uintptr_t)0xffff << 48) | HINT_LOW)

/*
 * (Re)size the hints for a capacity: a new table replaces the old, which
 * stays mapped (checks in flight may be reading it) until the state is
 * freed.  Advised for huge pages: a hint lookup should not cost a TLB
 * miss.  Out of memory: the old table (or none) stays.
 */
void kg__hints_resize(struct kg__limits *l, size_t capacity)
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
    /* Homes; out of memory: none (every new slot from the chunks). */
    t->nhome = 1024;
    while (t->nhome < capacity / 4 && t->nhome < ((size_t)1 << 26))
        t->nhome *= 2;
    m = mmap(NULL, t->nhome * sizeof(struct kslot), PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    t->home = m == MAP_FAILED ? NULL : m;
    if (t->home != NULL)
        KG__LSAN_ROOT(t->home, t->nhome * sizeof(struct kslot));
#ifdef MADV_NOHUGEPAGE
    /* Sparse: 4 KiB pages even where huge pages are the system's default
     * (`always`), until half full. */
    if (t->home != NULL)
        (void)madvise(t->home, t->nhome * sizeof(struct kslot), MADV_NOHUGEPAGE);
#endif
    atomic_init(&t->home_taken, 0);
    atomic_init(&t->home_retaken, 0);
    atomic_store(&l->hints, t);
}

/* Every table the state has had: the current one and those it replaced. */
void kg__hints_free(struct kg__limits *l)
{
    for (struct hints *t = atomic_load(&l->hints), *o; t != NULL; t = o) {
        o = t->older;
        munmap(t->h, (t->n + t->nlease) * sizeof(*t->h));
        if (t->collapsing)
            pthread_join(t->collapser, NULL);
        if (t->home != NULL) {
            KG__LSAN_UNROOT(t->home, t->nhome * sizeof(struct kslot));
            munmap(t->home, t->nhome * sizeof(struct kslot));
        }
        free(t);
    }
}

uint64_t kg__limits_at_home(struct kg__limits *l)
{
    uint64_t n = 0;
    struct hints *t;
    if (l == NULL)
        return 0;
    for (t = atomic_load(&l->hints); t != NULL; t = t->older)
        n += atomic_load(&t->home_taken) + atomic_load(&t->home_retaken);
    return n;
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
    if (t->home != NULL) {
        size_t off;
        memcpy(&v, hash + 24, sizeof(v));
        pin->home = &t->home[v & (t->nhome - 1)];
        pin->home_of = t;
        for (off = 0; off < sizeof(struct kslot); off += 64)
            __builtin_prefetch((char *)pin->home + off, 1);
    }
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

/*
 * Lock the shard of a slot found through a hint, without holding any
 * lock: the shard it belongs to when the lock is got (returned, locked).
 * A slot's shard changes only when a vacant home is taken by a key of
 * another shard, with the old shard's lock held; so once the shard read
 * is locked and still the slot's, it stays the slot's until unlocked.
 */
struct lshard *kg__slot_lock(struct kslot *s)
{
    for (;;) {
        struct lshard *sh = __atomic_load_n(&s->shard, __ATOMIC_ACQUIRE);
        pthread_mutex_lock(&sh->lock);
        if (__atomic_load_n(&s->shard, __ATOMIC_RELAXED) == sh)
            return sh;
        pthread_mutex_unlock(&sh->lock);
    }
}

/* Under s's lock: s holds the lease `id`. */
void kg__lease_hint_set(struct kg__limits *l, uint64_t id, struct kslot *s)
{
    struct hints *t = atomic_load_explicit(&l->hints, memory_order_acquire);
    uintptr_t a = (uintptr_t)s;
    if (t != NULL && !(a & HINT_TAG_MASK))
        atomic_store_explicit(lease_hint(t, id), a | hint_tag(id >> 32),
                              memory_order_release);
}

/*
 * The slot of key id key[0..klen) for releasing lease `id`, locked (as
 * kg__limits_find() returns it): the one the lease's hint names if it is
 * still this key's (as kg__key_lock checks a key hint), else found.  The
 * hint is used up: a lease is released once.
 */
struct kslot *kg__lease_slot(struct kg__limits *l, uint64_t id,
                             const char *key, size_t klen, int64_t now_s)
{
    struct hints *t = atomic_load_explicit(&l->hints, memory_order_acquire);
    _Atomic(uintptr_t) *e;
    uintptr_t v;
    struct kslot *s;
    struct lshard *sh;

    if (t == NULL)
        return kg__limits_find(l, key, klen, now_s, 0, NULL);
    e = lease_hint(t, id);
    v = atomic_load_explicit(e, memory_order_acquire);
    if (v == 0 || (v & HINT_TAG_MASK) != hint_tag(id >> 32))
        return kg__limits_find(l, key, klen, now_s, 0, NULL);
    s = (struct kslot *)(v & ~HINT_TAG_MASK);
    sh = kg__slot_lock(s);
    if (klen > 0 && s->keylen == klen && memcmp(s->key, key, klen) == 0) {
        atomic_compare_exchange_strong(e, &v, 0);
        s->touched_s = now_s;
        return s;
    }
    pthread_mutex_unlock(&sh->lock);
    return kg__limits_find(l, key, klen, now_s, 0, NULL);
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
 * given back, so reading s->shard is safe (kg__slot_lock locks the shard
 * the slot is in), and under that shard's lock the slot is this key's
 * only if it is live (keylen > 0) with the same key id.
 */
struct kslot *kg__key_lock(struct kg__limits *l, const char *key_id,
                           int64_t now_s, kg__lpin *pin)
{
    struct kslot *s = pin ? pin->slot : NULL;
    size_t klen;

    if (s != NULL) {
        pthread_mutex_lock(&kg__slot_shard(s)->lock);
        s->touched_s = now_s;
        return s;
    }
    klen = strlen(key_id);
    if (pin != NULL && pin->hint != NULL && (s = hint_get(pin)) != NULL) {
        struct lshard *sh = kg__slot_lock(s);
        if (s->keylen == klen && klen > 0 && memcmp(s->key, key_id, klen) == 0) {
            s->touched_s = now_s;
            goto found;
        }
        pthread_mutex_unlock(&sh->lock);
    }
    {
        struct kg__home home = { pin ? pin->home : NULL, 0, 0 };
        s = kg__limits_find(l, key_id, klen, now_s, 1, &home);
        if (home.taken && atomic_fetch_add(&pin->home_of->home_taken, 1) + 1 ==
                              pin->home_of->nhome / HOME_DENSE)
            pin->home_dense = 1;
        if (home.retaken)
            atomic_fetch_add(&pin->home_of->home_retaken, 1);
    }
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

static void *collapse_homes(void *arg)
{
    struct hints *t = arg;
#ifdef MADV_COLLAPSE
    (void)madvise(t->home, t->nhome * sizeof(struct kslot), MADV_COLLAPSE);
#else
    (void)t;
#endif
    return NULL;
}

void kg__limits_unpin(kg__lpin *pin)
{
    if (pin->slot != NULL)
        atomic_fetch_sub(&pin->slot->pins, 1);
    pin->slot = NULL;
    if (pin->home_dense) {
        /* The homes are dense (see the top of this file): this
         * check is the only one to get here for this region. */
        struct hints *t = pin->home_of;
        sigset_t all, was;
        pin->home_dense = 0;
#ifdef MADV_HUGEPAGE
        (void)madvise(t->home, t->nhome * sizeof(struct kslot), MADV_HUGEPAGE);
#endif
        /* With every signal blocked: the caller's signals are its own. */
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &was);
        t->collapsing = pthread_create(&t->collapser, NULL, collapse_homes, t) == 0;
        pthread_sigmask(SIG_SETMASK, &was, NULL);
    }
}
