/*
 * limits.c - the memory limiter state of a context.
 *
 * One entry ("slot") per (key id, limit name), so that a policy reload
 * never resets a counter.  The table is sharded (a mutex per shard, so
 * two keys rarely contend), bounded (a capacity split evenly over the
 * shards; the least recently used slot of a full shard is evicted, and
 * idle ones are reaped as new ones arrive), and each slot carries the
 * words its limiter algorithm needs plus, for concurrency limits, its
 * leases.
 *
 * A slot is only ever touched with its shard's lock held:
 * kg__limits_lock() returns it locked and kg_slot_unlock() releases it,
 * so an evictor (which holds the same lock) can never free a slot in use.
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#define SHARDS 256
#define DEFAULT_CAPACITY 1000000
/* The shard is picked by the low bits of the hash; the bucket within it
 * by the bits above, or every key of a shard would share a bucket. */
#define BUCKET(h, n) ((size_t)((h) >> 8) & ((n) - 1))

struct lease {
    uint64_t id;
    int64_t expires_us;
};

struct lshard;

struct kg_slot {
    int64_t words[KG_SLOT_WORDS];
    struct lshard *shard;
    uint64_t hash;
    int64_t touched_s;
    int64_t idle_s;
    struct lease *leases;
    size_t nleases, leasecap;
    struct kg_slot *hnext;
    struct kg_slot *older, *newer;  /* LRU: oldest is evicted first */
    char key[];                  /* "<key id>\x1f<limit name>" */
};

struct lshard {
    pthread_mutex_t lock;
    struct kg_slot **buckets;
    size_t nbuckets;
    size_t count;
    struct kg_slot *oldest, *newest;
};

struct kg__limits {
    atomic_size_t capacity;
    atomic_size_t entries;
    struct lshard shards[SHARDS];
    /* Lease ids come from OpenSSL's RNG, drawn a block at a time: one
     * RAND_bytes() per lease costs more than the rest of a check. */
    pthread_mutex_t rnd_lock;
    unsigned char rnd[4096];
    size_t rnd_pos;
};

static int lease_id(struct kg__limits *l, uint64_t *id)
{
    int ok = 1;
    pthread_mutex_lock(&l->rnd_lock);
    if (l->rnd_pos + sizeof(*id) > sizeof(l->rnd)) {
        if (RAND_bytes(l->rnd, sizeof(l->rnd)) != 1)
            ok = 0;
        else
            l->rnd_pos = 0;
    }
    if (ok) {
        memcpy(id, l->rnd + l->rnd_pos, sizeof(*id));
        kg_wipe(l->rnd + l->rnd_pos, sizeof(*id));
        l->rnd_pos += sizeof(*id);
    }
    pthread_mutex_unlock(&l->rnd_lock);
    return ok;
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

kg_error kg__limits_new(struct kg__limits **l_r)
{
    struct kg__limits *l = calloc(1, sizeof(*l));
    size_t i;
    if (l == NULL)
        return KG_ERR_NOMEM;
    atomic_init(&l->capacity, DEFAULT_CAPACITY);
    atomic_init(&l->entries, 0);
    for (i = 0; i < SHARDS; i++)
        pthread_mutex_init(&l->shards[i].lock, NULL);
    pthread_mutex_init(&l->rnd_lock, NULL);
    l->rnd_pos = sizeof(l->rnd);
    *l_r = l;
    return KG_OK;
}

static void slot_free(struct kg_slot *s)
{
    free(s->leases);
    free(s);
}

void kg__limits_free(struct kg__limits *l)
{
    size_t i, b;
    if (l == NULL)
        return;
    for (i = 0; i < SHARDS; i++) {
        struct lshard *sh = &l->shards[i];
        for (b = 0; b < sh->nbuckets; b++) {
            struct kg_slot *s = sh->buckets[b], *next;
            for (; s; s = next) {
                next = s->hnext;
                slot_free(s);
            }
        }
        free(sh->buckets);
        pthread_mutex_destroy(&sh->lock);
    }
    pthread_mutex_destroy(&l->rnd_lock);
    kg_wipe(l->rnd, sizeof(l->rnd));
    free(l);
}

void kg__limits_set_capacity(struct kg__limits *l, size_t max)
{
    atomic_store(&l->capacity, max);
}

size_t kg__limits_entries(struct kg__limits *l)
{
    return atomic_load(&l->entries);
}

static void lru_unlink(struct lshard *sh, struct kg_slot *s)
{
    if (s->older) s->older->newer = s->newer;
    else sh->oldest = s->newer;
    if (s->newer) s->newer->older = s->older;
    else sh->newest = s->older;
    s->older = s->newer = NULL;
}

static void lru_push(struct lshard *sh, struct kg_slot *s)
{
    s->older = sh->newest;
    s->newer = NULL;
    if (sh->newest) sh->newest->newer = s;
    else sh->oldest = s;
    sh->newest = s;
}

static void evict(struct kg__limits *l, struct lshard *sh, struct kg_slot *s)
{
    struct kg_slot **pp = &sh->buckets[BUCKET(s->hash, sh->nbuckets)];
    for (; *pp; pp = &(*pp)->hnext) {
        if (*pp == s) {
            *pp = s->hnext;
            break;
        }
    }
    lru_unlink(sh, s);
    sh->count--;
    atomic_fetch_sub(&l->entries, 1);
    slot_free(s);
}

static int grow(struct lshard *sh)
{
    size_t nb = sh->nbuckets ? sh->nbuckets * 2 : 16, i;
    struct kg_slot **b = calloc(nb, sizeof(*b));
    if (b == NULL)
        return -1;
    for (i = 0; i < sh->nbuckets; i++) {
        struct kg_slot *s = sh->buckets[i], *next;
        for (; s; s = next) {
            next = s->hnext;
            s->hnext = b[BUCKET(s->hash, nb)];
            b[BUCKET(s->hash, nb)] = s;
        }
    }
    free(sh->buckets);
    sh->buckets = b;
    sh->nbuckets = nb;
    return 0;
}

static void reap_leases(struct kg_slot *s, int64_t now_us)
{
    size_t i = 0;
    while (i < s->nleases) {
        if (s->leases[i].expires_us <= now_us)
            s->leases[i] = s->leases[--s->nleases];
        else
            i++;
    }
}

/* Find (or with `create`, make) a slot; returns it with the shard locked,
 * or NULL with nothing locked. */
static struct kg_slot *find(struct kg__limits *l, const char *key, size_t klen,
                            int64_t now_s, int64_t idle_s, int create)
{
    uint64_t h = fnv1a(key, klen);
    struct lshard *sh = &l->shards[h % SHARDS];
    struct kg_slot *s;
    size_t cap;

    pthread_mutex_lock(&sh->lock);
    if (sh->nbuckets) {
        for (s = sh->buckets[BUCKET(h, sh->nbuckets)]; s; s = s->hnext) {
            if (s->hash == h && strcmp(s->key, key) == 0) {
                if (idle_s > s->idle_s)
                    s->idle_s = idle_s;
                /* Recency to the second is enough for eviction, and
                 * saves touching two neighbours' cache lines per check. */
                if (s->touched_s != now_s && sh->newest != s) {
                    lru_unlink(sh, s);
                    lru_push(sh, s);
                }
                s->touched_s = now_s;
                return s;
            }
        }
    }
    if (!create) {
        pthread_mutex_unlock(&sh->lock);
        return NULL;
    }
    /* Reap a couple of idle slots from the cold end, then enforce the cap. */
    for (int k = 0; k < 2 && sh->oldest; k++) {
        struct kg_slot *o = sh->oldest;
        if (o->touched_s + o->idle_s > now_s || o->nleases > 0)
            break;
        evict(l, sh, o);
    }
    cap = atomic_load(&l->capacity) / SHARDS + 1;
    while (sh->count >= cap && sh->oldest)
        evict(l, sh, sh->oldest);
    if (sh->count >= sh->nbuckets && grow(sh) != 0) {
        pthread_mutex_unlock(&sh->lock);
        return NULL;
    }
    s = calloc(1, sizeof(*s) + klen + 1);
    if (s == NULL) {
        pthread_mutex_unlock(&sh->lock);
        return NULL;
    }
    memcpy(s->key, key, klen + 1);
    s->hash = h;
    s->shard = sh;
    s->touched_s = now_s;
    s->idle_s = idle_s;
    s->hnext = sh->buckets[BUCKET(h, sh->nbuckets)];
    sh->buckets[BUCKET(h, sh->nbuckets)] = s;
    lru_push(sh, s);
    sh->count++;
    atomic_fetch_add(&l->entries, 1);
    return s;
}

static size_t make_key(char *buf, size_t size, const char *key_id,
                       const char *limit)
{
    size_t a = strlen(key_id), b = strlen(limit);
    if (a + b + 2 > size)
        return 0;
    memcpy(buf, key_id, a);
    buf[a] = '\x1f';
    memcpy(buf + a + 1, limit, b + 1);
    return a + 1 + b;
}

kg_slot *kg__limits_lock(struct kg__limits *l, const char *key_id,
                         const char *limit, int64_t now_s, int64_t idle_s)
{
    char key[512];
    size_t n = make_key(key, sizeof(key), key_id, limit);
    if (n == 0)
        return NULL;
    return find(l, key, n, now_s, idle_s, 1);
}

int64_t *kg_slot_words(kg_slot *s)
{
    return s->words;
}

void kg_slot_unlock(kg_slot *s)
{
    if (s != NULL)
        pthread_mutex_unlock(&s->shard->lock);
}

static void format_lease(uint64_t id, const char *key, size_t n, char *out,
                         size_t outlen)
{
    /* Callers checked outlen >= 18 + 2n.  No printf: this is on every
     * admitted check of a concurrency limit. */
    static const char hx[] = "0123456789abcdef";
    size_t i, o;
    (void)outlen;
    for (o = 0; o < 16; o++)
        out[o] = hx[(id >> (60 - 4 * o)) & 15];
    out[o++] = '.';
    for (i = 0; i < n; i++) {
        out[o++] = hx[(unsigned char)key[i] >> 4];
        out[o++] = hx[(unsigned char)key[i] & 15];
    }
    out[o] = '\0';
}

int kg__lease_format(struct kg__limits *l, const char *key_id,
                     const char *limit, char *out, size_t size)
{
    char key[512];
    size_t n = make_key(key, sizeof(key), key_id, limit);
    uint64_t id;
    if (n == 0 || size < 18 + 2 * n)
        return -1;
    if (!lease_id(l, &id))
        return -1;
    format_lease(id, key, n, out, size);
    return 0;
}

int kg__lease_acquire(struct kg__limits *l, const char *key_id,
                      const char *limit, int64_t max, int64_t ttl_s,
                      int64_t now_us, char *out, size_t outlen,
                      int64_t *in_use_r)
{
    char key[512];
    size_t n = make_key(key, sizeof(key), key_id, limit);
    struct kg_slot *s;
    uint64_t id;
    int ok = 0;

    if (n == 0 || outlen < 18 + 2 * n)
        return -1;
    s = find(l, key, n, now_us / 1000000, ttl_s, 1);
    if (s == NULL)
        return -1;
    reap_leases(s, now_us);
    if ((int64_t)s->nleases < max) {
        if (s->nleases == s->leasecap) {
            size_t cap = s->leasecap ? s->leasecap * 2 : 4;
            struct lease *nl = realloc(s->leases, cap * sizeof(*nl));
            if (nl == NULL)
                goto out;
            s->leases = nl;
            s->leasecap = cap;
        }
        if (!lease_id(l, &id))
            goto out;
        s->leases[s->nleases].id = id;
        s->leases[s->nleases].expires_us = now_us + ttl_s * 1000000;
        s->nleases++;
        format_lease(id, key, n, out, outlen);
        ok = 1;
    }
out:
    *in_use_r = (int64_t)s->nleases;
    kg_slot_unlock(s);
    return ok;
}

int64_t kg__lease_count(struct kg__limits *l, const char *key_id,
                        const char *limit, int64_t now_us)
{
    char key[512];
    size_t n = make_key(key, sizeof(key), key_id, limit);
    struct kg_slot *s;
    int64_t c;
    if (n == 0)
        return 0;
    s = find(l, key, n, now_us / 1000000, 0, 0);
    if (s == NULL)
        return 0;
    reap_leases(s, now_us);
    c = (int64_t)s->nleases;
    kg_slot_unlock(s);
    return c;
}

static int unhex(const char *p, size_t n, char *out)
{
    size_t i;
    for (i = 0; i < n; i += 2) {
        int hi, lo;
        char c = p[i], d = p[i + 1];
        hi = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        lo = d >= '0' && d <= '9' ? d - '0' : d >= 'a' && d <= 'f' ? d - 'a' + 10 : -1;
        if (hi < 0 || lo < 0)
            return -1;
        out[i / 2] = (char)(hi << 4 | lo);
    }
    return 0;
}

static kg_error release_one(struct kg__limits *l, const char *lease,
                            size_t len, int64_t now_us, char key[512])
{
    size_t klen, i;
    uint64_t id;
    struct kg_slot *s;
    kg_error rc = KG_ERR_NOT_FOUND;

    if (len < 18 || lease[16] != '.' || (len - 17) % 2 != 0 ||
        (len - 17) / 2 >= 512)
        return KG_ERR_INVALID;
    id = 0;
    for (i = 0; i < 16; i++) {
        char c = lease[i];
        int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (v < 0)
            return KG_ERR_INVALID;
        id = id << 4 | (uint64_t)v;
    }
    klen = (len - 17) / 2;
    key[0] = '\0';
    if (unhex(lease + 17, len - 17, key) != 0)
        return KG_ERR_INVALID;
    key[klen] = '\0';
    if (memchr(key, '\0', klen) != NULL)
        return KG_ERR_INVALID;
    s = l ? find(l, key, klen, now_us / 1000000, 0, 0) : NULL;
    if (s == NULL)
        return KG_ERR_NOT_FOUND;
    reap_leases(s, now_us);
    for (i = 0; i < s->nleases; i++) {
        if (s->leases[i].id == id) {
            s->leases[i] = s->leases[--s->nleases];
            rc = KG_OK;
            break;
        }
    }
    kg_slot_unlock(s);
    return rc;
}

kg_error kg__lease_release(struct kg__limits *l, const char *lease,
                           int64_t now_us)
{
    /* A decision with several concurrency limits carries "a,b". */
    kg_error rc = KG_ERR_NOT_FOUND, e;
    const char *p = lease, *comma;
    int any = 0;

    if (lease == NULL || *lease == '\0')
        return KG_ERR_INVALID;
    for (;;) {
        comma = strchr(p, ',');
        char key[512];
        e = release_one(l, p, comma ? (size_t)(comma - p) : strlen(p), now_us, key);
        if (e == KG_ERR_INVALID)
            return e;
        if (e == KG_OK)
            any = 1;
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    if (any)
        rc = KG_OK;
    return rc;
}

kg_error kg__lease_release_any(kg_context *ctx, const char *lease,
                               int64_t now_us)
{
    const char *p = lease, *comma;
    int any = 0;

    if (lease == NULL || *lease == '\0')
        return KG_ERR_INVALID;
    for (;;) {
        char key[512], one[300], *sep;
        size_t len;
        kg_error e;

        comma = strchr(p, ',');
        len = comma ? (size_t)(comma - p) : strlen(p);
        e = release_one(ctx->limits, p, len, now_us, key);
        if (e == KG_ERR_INVALID)
            return e;
        /* Not a memory lease: a remote backend's (same id format). */
        if (e == KG_ERR_NOT_FOUND && len < sizeof(one) &&
            (sep = strchr(key, '\x1f')) != NULL) {
            *sep = '\0';
            memcpy(one, p, len);
            one[len] = '\0';
            e = kg__releasers_call(ctx, key, sep + 1, one);
        }
        if (e == KG_OK)
            any = 1;
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    return any ? KG_OK : KG_ERR_NOT_FOUND;
}

kg_error kg_release(kg_context *ctx, const char *lease)
{
    if (ctx == NULL || lease == NULL)
        return KG_ERR_INVALID;
    return kg__lease_release_any(ctx, lease, kg_context_now(ctx));
}
