/*
 * cache.c - the record cache in front of a key store.
 *
 * Positive entries live `ttl`, negative ("no such key") entries
 * `negative_ttl`; an expired entry is kept (until evicted) so that a
 * record can be served while the store is unavailable ("stale while
 * unavailable", check.c); an expired negative entry never is.
 * Sharded by hash with a mutex per shard; each shard is bounded and
 * evicts its oldest insertion first.  The shards split max_entries
 * between them, so the total never exceeds it; a small cache has fewer
 * shards (one per 1024 entries, at most SHARDS), so that a cap of 2 holds
 * the 2 newest entries rather than one per shard.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#define SHARDS 64

struct centry {
    unsigned char hash[KG_HASH_LEN];
    kg_record *rec;          /* NULL: negative entry */
    int64_t expires_us;
    struct centry *hnext;    /* hash chain */
    struct centry *older, *newer;  /* insertion order */
};

struct cshard {
    pthread_mutex_t lock;
    struct centry **buckets;
    size_t nbuckets;
    size_t count;
    struct centry *oldest, *newest;
};

struct kg__cache {
    kg__cache_conf conf;
    size_t nshards;
    size_t per_shard;
    struct cshard shards[SHARDS];
};

kg__cache *kg__cache_new(const kg__cache_conf *conf)
{
    kg__cache *c = calloc(1, sizeof(*c));
    size_t i;
    if (c == NULL)
        return NULL;
    c->conf = *conf;
    if (c->conf.max_entries < 1)
        c->conf.max_entries = 1;
    c->nshards = c->conf.max_entries / 1024;
    if (c->nshards < 1)
        c->nshards = 1;
    if (c->nshards > SHARDS)
        c->nshards = SHARDS;
    c->per_shard = c->conf.max_entries / c->nshards;
    for (i = 0; i < SHARDS; i++) {
        struct cshard *s = &c->shards[i];
        pthread_mutex_init(&s->lock, NULL);
        s->nbuckets = 64;
        while (s->nbuckets < c->per_shard && s->nbuckets < (1u << 20))
            s->nbuckets <<= 1;
        s->buckets = calloc(s->nbuckets, sizeof(*s->buckets));
        if (s->buckets == NULL) {
            kg__cache_free(c);
            return NULL;
        }
    }
    return c;
}

static void unlink_entry(struct cshard *s, struct centry *e, size_t b)
{
    struct centry **pp;
    for (pp = &s->buckets[b]; *pp; pp = &(*pp)->hnext) {
        if (*pp == e) {
            *pp = e->hnext;
            break;
        }
    }
    if (e->older) e->older->newer = e->newer;
    else s->oldest = e->newer;
    if (e->newer) e->newer->older = e->older;
    else s->newest = e->older;
    s->count--;
    kg_record_unref(e->rec);
    free(e);
}

static size_t bucket_of(const struct cshard *s, const unsigned char *h)
{
    uint64_t v;
    memcpy(&v, h + 8, sizeof(v));
    return (size_t)(v & (s->nbuckets - 1));
}

void kg__cache_clear(kg__cache *c)
{
    size_t i;
    if (c == NULL)
        return;
    for (i = 0; i < SHARDS; i++) {
        struct cshard *s = &c->shards[i];
        pthread_mutex_lock(&s->lock);
        while (s->oldest)
            unlink_entry(s, s->oldest, bucket_of(s, s->oldest->hash));
        pthread_mutex_unlock(&s->lock);
    }
}

void kg__cache_free(kg__cache *c)
{
    size_t i;
    if (c == NULL)
        return;
    for (i = 0; i < SHARDS; i++) {
        struct cshard *s = &c->shards[i];
        if (s->buckets != NULL)
            while (s->oldest)
                unlink_entry(s, s->oldest, bucket_of(s, s->oldest->hash));
        free(s->buckets);
        pthread_mutex_destroy(&s->lock);
    }
    free(c);
}

/* No lock: a shard's bucket array is made with the cache and never
 * changes, and a prefetch of a bucket another thread is writing is only
 * a hint to the CPU. */
void kg__cache_prefetch(kg__cache *c, const unsigned char *hash)
{
    const struct cshard *s = &c->shards[hash[0] % c->nshards];
    __builtin_prefetch(&s->buckets[bucket_of(s, hash)]);
}

int kg__cache_get(kg__cache *c, const unsigned char *hash, int64_t now,
                  kg_record **rec_r, int *fresh_r)
{
    struct cshard *s = &c->shards[hash[0] % c->nshards];
    struct centry *e;
    int found = 0;

    pthread_mutex_lock(&s->lock);
    for (e = s->buckets[bucket_of(s, hash)]; e; e = e->hnext) {
        if (kg_hash_equal(e->hash, hash)) {
            *rec_r = kg_record_ref(e->rec);
            *fresh_r = now < e->expires_us;
            found = 1;
            break;
        }
    }
    pthread_mutex_unlock(&s->lock);
    return found;
}

void kg__cache_put(kg__cache *c, const unsigned char *hash, kg_record *rec,
                   int64_t now)
{
    struct cshard *s = &c->shards[hash[0] % c->nshards];
    size_t b = bucket_of(s, hash);
    struct centry *e;

    pthread_mutex_lock(&s->lock);
    for (e = s->buckets[b]; e; e = e->hnext)
        if (kg_hash_equal(e->hash, hash))
            break;
    if (e != NULL)
        unlink_entry(s, e, b);
    while (s->count >= c->per_shard && s->oldest)
        unlink_entry(s, s->oldest, bucket_of(s, s->oldest->hash));
    e = calloc(1, sizeof(*e));
    if (e != NULL) {
        memcpy(e->hash, hash, KG_HASH_LEN);
        e->rec = kg_record_ref(rec);
        e->expires_us = now + (rec ? c->conf.ttl_us : c->conf.negative_ttl_us);
        e->hnext = s->buckets[b];
        s->buckets[b] = e;
        e->older = s->newest;
        if (s->newest) s->newest->newer = e;
        else s->oldest = e;
        s->newest = e;
        s->count++;
    }
    pthread_mutex_unlock(&s->lock);
}

size_t kg__cache_size(kg__cache *c)
{
    size_t i, n = 0;
    for (i = 0; i < SHARDS; i++) {
        pthread_mutex_lock(&c->shards[i].lock);
        n += c->shards[i].count;
        pthread_mutex_unlock(&c->shards[i].lock);
    }
    return n;
}
