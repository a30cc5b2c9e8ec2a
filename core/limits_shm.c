/*
 * limits_shm.c - the limiter state in a file shared by processes: the
 * same operations as the memory state (limits.c, leases.c) on the
 * file's fixed layout (limits_shm.h).  The file itself: limits_file.c.
 *
 * A shard's lock is a robust, process-shared mutex: a process killed
 * while holding it leaves it to the next locker with EOWNERDEAD, who
 * checks the shard (kg__shm_shard_repair: every link in range, no loop,
 * free lists and counts rebuilt) before marking the lock consistent.
 * A counter's words are plain 64-bit stores, so at worst the dead
 * process's last update of one entry is half done (one word of two):
 * never a broken chain, never a slot lost.
 *
 * Shared state gives up what the memory state does for speed at a
 * million keys (hints, homes, huge pages): a key's slot is found by its
 * bucket, under its shard's lock, every time.
 */
#include "limits_shm.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>


static struct shm_slot *slot(struct kg__shm *m, uint32_t idx)
{
    return &m->slots[idx - 1];
}

static struct shm_block *block(struct kg__shm *m, uint32_t idx)
{
    return &m->blocks[idx - 1];
}

static uint32_t *bucket(struct kg__shm *m, uint32_t shard, uint64_t h)
{
    return &m->buckets[(size_t)shard * m->h->buckets +
                       ((h >> 8) & (m->h->buckets - 1))];
}

/* Lock a shard; a lock whose holder died is taken over once the shard
 * has been checked.  -1 if the lock cannot be had. */
static int shard_lock(struct kg__shm *m, uint32_t i)
{
    int r = pthread_mutex_lock(&m->shards[i].lock);
    if (r == EOWNERDEAD) {
        kg__shm_shard_repair(m, i, 0);
        pthread_mutex_consistent(&m->shards[i].lock);
        kg_context_log_backend(m->ctx, "limits", "%s: a process stopped while "
                               "holding shard %u; the shard was checked and "
                               "kept", m->path, (unsigned)i);
        r = 0;
    }
    return r == 0 ? 0 : -1;
}

static void shard_unlock(struct kg__shm *m, uint32_t i)
{
    pthread_mutex_unlock(&m->shards[i].lock);
}

/* The index of a slot in its shard's range, or 0 if idx is not one. */
static int in_shard(struct kg__shm *m, uint32_t shard, uint32_t idx)
{
    uint32_t base = shard * m->h->slots;
    return idx > base && idx <= base + m->shards[shard].carved;
}

/* ---- lease storage: SHM_SLOT_LEASES in the slot, then blocks ---------- */

static struct shm_lease *lease_at(struct kg__shm *m, struct shm_slot *s,
                                  uint32_t i)
{
    uint32_t b;
    if (i < SHM_SLOT_LEASES)
        return &s->inl[i];
    i -= SHM_SLOT_LEASES;
    for (b = s->block; i >= SHM_BLOCK_LEASES; i -= SHM_BLOCK_LEASES)
        b = block(m, b)->next;
    return &block(m, b)->l[i];
}

static uint32_t blocks_for(uint32_t n)
{
    return n <= SHM_SLOT_LEASES ? 0 :
           (n - SHM_SLOT_LEASES + SHM_BLOCK_LEASES - 1) / SHM_BLOCK_LEASES;
}

/* Give back the blocks of a locked slot past the first `keep`. */
static void blocks_trim(struct kg__shm *m, uint32_t shard, struct shm_slot *s,
                        uint32_t keep)
{
    struct shm_shard *sh = &m->shards[shard];
    uint32_t *link = &s->block, b;
    while (keep > 0 && *link != 0) {
        link = &block(m, *link)->next;
        keep--;
    }
    while ((b = *link) != 0) {
        *link = block(m, b)->next;
        block(m, b)->next = sh->bfree;
        sh->bfree = b;
    }
}

static uint32_t block_alloc(struct kg__shm *m, uint32_t shard)
{
    struct shm_shard *sh = &m->shards[shard];
    uint32_t b = sh->bfree;
    if (b != 0) {
        sh->bfree = block(m, b)->next;
    } else if (sh->bcarved < m->h->blocks) {
        b = shard * m->h->blocks + ++sh->bcarved;
    } else {
        return 0;
    }
    block(m, b)->next = 0;
    return b;
}

/* Room for one more lease in a locked slot: 0, or -1 (no block left). */
static int lease_room(struct kg__shm *m, uint32_t shard, struct shm_slot *s)
{
    uint32_t need = blocks_for(s->nleases + 1), have = blocks_for(s->nleases);
    uint32_t *link = &s->block, b;
    if (need == have)
        return 0;
    while (*link != 0)
        link = &block(m, *link)->next;
    if ((b = block_alloc(m, shard)) == 0)
        return -1;
    *link = b;
    return 0;
}

static void lease_remove(struct kg__shm *m, uint32_t shard, struct shm_slot *s,
                         uint32_t i)
{
    *lease_at(m, s, i) = *lease_at(m, s, s->nleases - 1);
    s->nleases--;
    blocks_trim(m, shard, s, blocks_for(s->nleases));
}

static void reap_leases(struct kg__shm *m, uint32_t shard, struct shm_slot *s,
                        int64_t now_us)
{
    uint32_t i = 0;
    while (i < s->nleases) {
        if (lease_at(m, s, i)->expires_us <= now_us)
            lease_remove(m, shard, s, i);
        else
            i++;
    }
}

/* ---- slots ------------------------------------------------------------ */

static void slot_free(struct kg__shm *m, uint32_t shard, uint32_t idx)
{
    struct shm_shard *sh = &m->shards[shard];
    struct shm_slot *s = slot(m, idx);
    blocks_trim(m, shard, s, 0);
    sh->count--;
    sh->entries -= s->nentries;
    s->keylen = 0;
    s->nleases = 0;
    s->next = sh->free;
    sh->free = idx;
}

static int idle(const struct shm_slot *s, int64_t now_s)
{
    return s->touched_s + s->idle_s <= now_s && s->nleases == 0;
}

/* Unlink the slot at *link from its chain and free it. */
static void evict_at(struct kg__shm *m, uint32_t shard, uint32_t *link)
{
    uint32_t idx = *link;
    *link = slot(m, idx)->next;
    slot_free(m, shard, idx);
}

/*
 * A free slot of a locked shard: from its free list, else never used
 * ones, else the idle slots of the hand's next buckets are reaped, else
 * the least recently touched of a sample without leases is evicted.  0
 * if every slot holds leases.
 */
#define SAMPLE 8
static uint32_t slot_alloc(struct kg__shm *m, uint32_t shard, int64_t now_s)
{
    struct shm_shard *sh = &m->shards[shard];
    uint32_t nb = m->h->buckets, k, idx;
    uint32_t *base = &m->buckets[(size_t)shard * nb];

    for (k = 0; sh->free == 0 && sh->carved == m->h->slots && k <= nb; k++) {
        uint32_t *link = &base[sh->hand], *best = NULL;
        int seen = 0;
        while (*link != 0) {
            if (idle(slot(m, *link), now_s)) {
                evict_at(m, shard, link);
                continue;
            }
            link = &slot(m, *link)->next;
        }
        sh->hand = (sh->hand + 1) & (nb - 1);
        if (sh->free != 0 || k < 2)
            continue;
        /* Nothing idle near the hand: sampled LRU from it on. */
        for (uint32_t b = 0; b < nb && seen < SAMPLE; b++) {
            uint32_t *l = &base[(sh->hand + b) & (nb - 1)];
            for (; *l != 0 && seen < SAMPLE; l = &slot(m, *l)->next) {
                if (slot(m, *l)->nleases > 0)
                    continue;
                seen++;
                if (best == NULL || slot(m, *l)->touched_s < slot(m, *best)->touched_s)
                    best = l;
            }
        }
        if (best != NULL)
            evict_at(m, shard, best);
    }
    if ((idx = sh->free) != 0) {
        sh->free = slot(m, idx)->next;
        return idx;
    }
    if (sh->carved < m->h->slots)
        return shard * m->h->slots + ++sh->carved;
    return 0;
}

/* The stored form of a key id: itself, or its SHA-256 if long. */
struct skey {
    const char *p;
    size_t len;             /* of the key id */
    size_t stored;          /* bytes in the slot */
    unsigned char digest[KG_HASH_LEN];
};

static void skey_make(struct skey *k, const char *key, size_t klen)
{
    k->len = klen;
    if (klen <= SHM_KEY_MAX) {
        k->p = key;
        k->stored = klen;
    } else {
        kg_key_hash(key, klen, k->digest);
        k->p = (const char *)k->digest;
        k->stored = KG_HASH_LEN;
    }
}

/*
 * A key's slot (made if absent, with `create`), its shard locked and its
 * index in *shard_r; NULL with nothing locked if absent or if there is
 * no room.
 */
static struct shm_slot *find(struct kg__shm *m, const char *key, size_t klen,
                             int64_t now_s, int create, uint32_t *shard_r)
{
    uint64_t h = kg__key_fnv(key, klen);
    uint32_t shard = (uint32_t)(h & (m->h->nshards - 1)), idx, *head;
    struct shm_slot *s;
    struct skey k;

    skey_make(&k, key, klen);
    if (klen > UINT32_MAX || shard_lock(m, shard) != 0)
        return NULL;
    head = bucket(m, shard, h);
    for (idx = *head; idx != 0 && in_shard(m, shard, idx); idx = s->next) {
        s = slot(m, idx);
        if (s->hash == h && s->keylen == klen &&
            memcmp(s->key, k.p, k.stored) == 0) {
            s->touched_s = now_s;
            *shard_r = shard;
            return s;
        }
    }
    if (!create || (idx = slot_alloc(m, shard, now_s)) == 0) {
        shard_unlock(m, shard);
        return NULL;
    }
    s = slot(m, idx);
    memset(s, 0, offsetof(struct shm_slot, e));
    memcpy(s->key, k.p, k.stored);
    s->key_hashed = k.stored != klen;
    s->keylen = (uint32_t)klen;
    s->hash = h;
    s->touched_s = now_s;
    /* The chain link last: the slot is whole before it can be found. */
    s->next = *head;
    *head = idx;
    m->shards[shard].count++;
    *shard_r = shard;
    return s;
}

/* The entry of `name` in a locked slot (made with `create`); NULL if
 * absent, or past SHM_ENTRIES. */
static struct kg_slot *entry(struct kg__shm *m, uint32_t shard,
                             struct shm_slot *s, const char *name,
                             int64_t idle_s, int create, uint32_t *idx_r)
{
    size_t nlen = strlen(name);
    struct kg_slot *e;
    uint32_t i;

    for (i = 0; i < s->nentries && i < SHM_ENTRIES; i++) {
        e = &s->e[i];
        if (e->name[0] == name[0] && strcmp(e->name, name) == 0)
            goto found;
    }
    if (!create || nlen > NAME_MAX_LEN || i >= SHM_ENTRIES)
        return NULL;
    e = &s->e[i];
    memset(e, 0, sizeof(*e));
    memcpy(e->name, name, nlen + 1);
    s->nentries++;
    m->shards[shard].entries++;
found:
    if (idle_s > e->idle_s)
        e->idle_s = idle_s;
    if (idle_s > s->idle_s)
        s->idle_s = idle_s;
    *idx_r = i;
    return e;
}

kg_slot *kg__shm_lock(struct kg__shm *m, const char *key_id, const char *limit,
                      int64_t now_s, int64_t idle_s)
{
    uint32_t shard, idx;
    struct shm_slot *s = find(m, key_id, strlen(key_id), now_s, 1, &shard);
    struct kg_slot *e;
    if (s == NULL)
        return NULL;
    if ((e = entry(m, shard, s, limit, idle_s, 1, &idx)) == NULL) {
        shard_unlock(m, shard);
        return NULL;
    }
    /* This process's address of the shard's lock, tagged (bit 0) for
     * kg_slot_unlock(); written under the lock, read by its holder. */
    e->owner = (struct kslot *)((uintptr_t)&m->shards[shard].lock | 1);
    return e;
}

int kg__shm_lease_acquire(struct kg__shm *m, const char *key_id, size_t klen,
                          const char *limit, size_t nlen, int64_t max,
                          int64_t ttl_s, int64_t now_us, char *out,
                          int64_t *in_use_r)
{
    uint32_t shard, idx, i;
    struct shm_slot *s;
    struct shm_lease *l;
    int64_t held = 0;
    uint64_t id;
    int r = 0;

    *in_use_r = -1;
    if ((s = find(m, key_id, klen, now_us / 1000000, 1, &shard)) == NULL)
        return -1;
    if (entry(m, shard, s, limit, ttl_s, 1, &idx) == NULL) {
        shard_unlock(m, shard);
        return -1;
    }
    reap_leases(m, shard, s, now_us);
    for (i = 0; i < s->nleases; i++)
        held += lease_at(m, s, i)->entry == idx;
    if (held < max) {
        r = -1;
        if (lease_room(m, shard, s) == 0 && kg__lease_random(&id)) {
            l = lease_at(m, s, s->nleases);
            l->id = id;
            l->expires_us = now_us + ttl_s * 1000000;
            l->entry = idx;
            s->nleases++;
            held++;
            r = 1;
        }
    }
    *in_use_r = r < 0 ? -1 : held;
    shard_unlock(m, shard);
    /* formatted once the shard is free for the other processes */
    if (r == 1)
        kg__lease_id_format(id, key_id, klen, limit, nlen, out);
    return r;
}

int64_t kg__shm_lease_span(struct kg__shm *m, const char *key_id,
                           const char *limit, int64_t now_us,
                           int64_t *first_r, int64_t *last_r)
{
    uint32_t shard, idx, i;
    struct shm_slot *s = find(m, key_id, strlen(key_id), now_us / 1000000, 0, &shard);
    int64_t c = 0, first = 0, last = 0;

    if (s != NULL) {
        if (entry(m, shard, s, limit, 0, 0, &idx) != NULL) {
            reap_leases(m, shard, s, now_us);
            for (i = 0; i < s->nleases; i++) {
                const struct shm_lease *l = lease_at(m, s, i);
                if (l->entry != idx)
                    continue;
                first = c == 0 || l->expires_us < first ? l->expires_us : first;
                last = c == 0 || l->expires_us > last ? l->expires_us : last;
                c++;
            }
        }
        shard_unlock(m, shard);
    }
    *first_r = first;
    *last_r = last;
    return c;
}

kg_error kg__shm_lease_release(struct kg__shm *m, uint64_t id, const char *key,
                               size_t klen, const char *limit, int64_t now_us)
{
    uint32_t shard, idx, i;
    struct shm_slot *s = find(m, key, klen, now_us / 1000000, 0, &shard);
    kg_error rc = KG_ERR_NOT_FOUND;

    if (s == NULL)
        return KG_ERR_NOT_FOUND;
    if (entry(m, shard, s, limit, 0, 0, &idx) != NULL) {
        reap_leases(m, shard, s, now_us);
        for (i = 0; i < s->nleases; i++) {
            const struct shm_lease *l = lease_at(m, s, i);
            if (l->id == id && l->entry == idx) {
                lease_remove(m, shard, s, i);
                rc = KG_OK;
                break;
            }
        }
    }
    shard_unlock(m, shard);
    return rc;
}

size_t kg__shm_entries(struct kg__shm *m)
{
    size_t n = 0;
    uint32_t i;
    for (i = 0; i < m->h->nshards; i++)
        n += __atomic_load_n(&m->shards[i].entries, __ATOMIC_RELAXED);
    return n;
}

/* ---- repair ----------------------------------------------------------- */

void kg__shm_shard_repair(struct kg__shm *m, uint32_t shard, int clear)
{
    struct shm_shard *sh = &m->shards[shard];
    uint32_t nb = m->h->buckets, S = m->h->slots, K = m->h->blocks;
    uint32_t sbase = shard * S, kbase = shard * K, b, j;
    uint32_t *base = &m->buckets[(size_t)shard * nb];
    unsigned char *seen = NULL, *bseen = NULL;

    if (sh->carved > S)
        sh->carved = S;
    if (sh->bcarved > K)
        sh->bcarved = K;
    if (!clear && ((seen = calloc(S + 1, 1)) == NULL ||
                   (bseen = calloc(K + 1, 1)) == NULL))
        clear = 1;      /* out of memory: what cannot be checked goes */
    sh->count = sh->entries = 0;
    for (b = 0; b < nb; b++) {
        uint32_t *link = &base[b];
        if (clear)
            *link = 0;
        while (*link != 0) {
            uint32_t idx = *link, nblk = 0, *bl;
            struct shm_slot *s;
            if (!in_shard(m, shard, idx) || seen[idx - sbase]) {
                *link = 0;
                break;
            }
            s = slot(m, idx);
            if (s->keylen == 0 || s->nentries > SHM_ENTRIES ||
                ((s->hash >> 8) & (nb - 1)) != b ||
                (s->hash & (m->h->nshards - 1)) != shard) {
                *link = 0;
                break;
            }
            seen[idx - sbase] = 1;
            for (bl = &s->block; *bl != 0; bl = &block(m, *bl)->next, nblk++) {
                uint32_t bi = *bl;
                if (bi <= kbase || bi > kbase + sh->bcarved || bseen[bi - kbase]) {
                    *bl = 0;
                    break;
                }
                bseen[bi - kbase] = 1;
            }
            if (s->nleases > SHM_SLOT_LEASES + nblk * SHM_BLOCK_LEASES)
                s->nleases = SHM_SLOT_LEASES + nblk * SHM_BLOCK_LEASES;
            for (j = 0; j < s->nleases; j++)
                if (lease_at(m, s, j)->entry >= s->nentries)
                    lease_at(m, s, j)->expires_us = 0;  /* reaped next */
            sh->count++;
            sh->entries += s->nentries;
            link = &s->next;
        }
    }
    if (clear)
        sh->carved = sh->bcarved = 0;
    sh->free = sh->bfree = 0;
    for (j = sh->carved; j > 0; j--) {
        if (!clear && seen[j])
            continue;
        slot(m, sbase + j)->keylen = 0;
        slot(m, sbase + j)->next = sh->free;
        sh->free = sbase + j;
    }
    for (j = sh->bcarved; j > 0; j--) {
        if (!clear && bseen[j])
            continue;
        block(m, kbase + j)->next = sh->bfree;
        sh->bfree = kbase + j;
    }
    sh->hand &= nb - 1;
    free(seen);
    free(bseen);
}
