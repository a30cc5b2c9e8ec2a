/*
 * leases.c - concurrency leases in the memory limiter state: taken,
 * counted and released in their key's slot (limits.c), found again on
 * release through their lease hint (hints.c); a lease the memory state
 * does not hold goes to the remote backends' releasers.  Lease id text:
 * leaseid.c.
 */
#include "limits_int.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

/* Lease ids are drawn from OpenSSL's RNG a block at a time, per thread
 * (no lock; kg__thread): one RAND_bytes() per lease costs more than the
 * rest of a check, and a small block refilled often shows in the p99.
 * In a busy nginx worker a RAND_bytes() call costs 30-40 us whatever its
 * size (against 1.2-1.7 us for 4 KB in a loop): 2048 ids (16 KB) a call
 * make that 20 ns a lease. */

int kg__lease_random(uint64_t *id)
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

/* Drop the slot's expired leases; returns how many of the others are
 * of entry `idx` (as many leases as requests in flight, 64 with 64
 * connections: one pass for both). */
static int64_t reap_leases(struct kslot *s, int64_t now_us, uint32_t idx)
{
    uint32_t i = 0;
    int64_t held = 0;
    while (i < s->nleases) {
        if (s->leases[i].expires_us <= now_us) {
            s->leases[i] = s->leases[--s->nleases];
            continue;
        }
        held += s->leases[i].entry == idx;
        i++;
    }
    return held;
}

int kg__lease_format(struct kg__limits *l, const char *key_id,
                     const char *limit, char *out, size_t size)
{
    size_t klen = strlen(key_id), nlen = strlen(limit);
    uint64_t id;

    (void)l;
    if (size < KG_LEASE_SIZE(klen, nlen) || !kg__lease_random(&id))
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
    if (!kg__lease_random(id_r))
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
                      int64_t *in_use_r, kg__lpin *pin,
                      struct kg__lease_handle *h)
{
    struct kslot *s;
    int64_t held = 0;
    uint32_t idx;
    uint64_t id;
    int r = 0;

    *in_use_r = -1;
    s = kg__key_lock(l, key_id, now_us / 1000000, pin);
    if (s == NULL)
        return -1;
    if (kg__limits_entry(l, s, limit, ttl_s, 1, &idx) == NULL) {
        pthread_mutex_unlock(&kg__slot_shard(s)->lock);
        return -1;
    }
    held = reap_leases(s, now_us, idx);
    if (held < max) {
        r = lease_add(s, idx, now_us + ttl_s * 1000000, &id) == 0 ? 1 : -1;
        if (r == 1) {
            kg__lease_hint_set(l, id, s);
            if (h != NULL) {
                h->limits = l;
                h->slot = s;
                h->id = id;
            }
        }
        held += r == 1;
    }
    *in_use_r = r < 0 ? -1 : held;
    pthread_mutex_unlock(&kg__slot_shard(s)->lock);
    /* The text, once the slot is free for others: the id is this
     * call's alone. */
    if (r == 1)
        kg__lease_id_format(id, key_id, klen, limit, nlen, out);
    return r;
}

/*
 * The leases of (key, limit) held at now_us: how many, and the earliest
 * and the latest expiry among them (both 0 when none is held); in the
 * context's state file if it has one.
 */
static int64_t lease_span(kg_context *ctx, const char *key_id,
                          const char *limit, int64_t now_us,
                          int64_t *first_r, int64_t *last_r)
{
    struct kg__limits *l = ctx->limits;
    struct kg__shm *m = kg__ctx_shm(ctx);
    struct kslot *s;
    int64_t c = 0, first = 0, last = 0;
    uint32_t idx, i;

    if (m != NULL)
        return kg__shm_lease_span(m, key_id, limit, now_us, first_r, last_r);
    s = kg__limits_find(l, key_id, strlen(key_id), now_us / 1000000, 0, NULL);
    if (s != NULL) {
        if (kg__limits_entry(l, s, limit, 0, 0, &idx) != NULL) {
            reap_leases(s, now_us, idx);
            for (i = 0; i < s->nleases; i++) {
                int64_t x = s->leases[i].expires_us;
                if (s->leases[i].entry != idx)
                    continue;
                first = c == 0 || x < first ? x : first;
                last = c == 0 || x > last ? x : last;
                c++;
            }
        }
        pthread_mutex_unlock(&kg__slot_shard(s)->lock);
    }
    *first_r = first;
    *last_r = last;
    return c;
}

int64_t kg__lease_count(kg_context *ctx, const char *key_id,
                        const char *limit, int64_t now_us)
{
    int64_t first, last;
    return lease_span(ctx, key_id, limit, now_us, &first, &last);
}

/* The rule of kg__lease_retry_after() (internal.h), in microseconds;
 * a youngest age below 0 (lease_ttl shortened by a reload) counts as 0. */
static int64_t retry_of(int64_t first_left_us, int64_t youngest_age_us)
{
    int64_t wait = youngest_age_us > 1000000 ? youngest_age_us : 1000000;
    if (first_left_us < wait)
        wait = first_left_us;
    wait = (wait + 999999) / 1000000;
    return wait > 1 ? wait : 1;
}

int64_t kg__lease_retry_after(kg_context *ctx, const char *key_id,
                              const char *limit, int64_t ttl_s, int64_t now_us)
{
    int64_t first, last;
    if (lease_span(ctx, key_id, limit, now_us, &first, &last) == 0)
        return 0;
    /* A lease expires ttl after it was taken: the latest expiry is the
     * youngest lease's. */
    return retry_of(first - now_us, ttl_s * 1000000 - (last - now_us));
}

/* Release lease `id` of (key, limit) from the memory state. */
static kg_error release_mem(struct kg__limits *l, uint64_t id, const char *key,
                            size_t klen, const char *limit, int64_t now_us)
{
    struct kslot *s;
    uint32_t idx, i;
    kg_error rc = KG_ERR_NOT_FOUND;

    if (l == NULL || (s = kg__lease_slot(l, id, key, klen, now_us / 1000000)) == NULL)
        return KG_ERR_NOT_FOUND;
    if (kg__limits_entry(l, s, limit, 0, 0, &idx) != NULL) {
        reap_leases(s, now_us, idx);
        for (i = 0; i < s->nleases; i++) {
            if (s->leases[i].id == id && s->leases[i].entry == idx) {
                s->leases[i] = s->leases[--s->nleases];
                rc = KG_OK;
                break;
            }
        }
    }
    pthread_mutex_unlock(&kg__slot_shard(s)->lock);
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

/* Release lease `id` (lease[0..len)) of (key_id, limit): the memory
 * state's, else a remote backend's. */
static kg_error release_id(kg_context *ctx, uint64_t id, const char *lease,
                           size_t len, const char *key_id, size_t klen,
                           const char *limit, int64_t now_us)
{
    struct kg__shm *m = kg__ctx_shm(ctx);
    kg_error e = m != NULL ? kg__shm_lease_release(m, id, key_id, klen, limit, now_us)
                           : release_mem(ctx->limits, id, key_id, klen, limit, now_us);
    if (e == KG_ERR_NOT_FOUND)
        e = release_remote(ctx, key_id, limit, lease, len);
    return e;
}

kg_error kg__lease_release_of(kg_context *ctx, const char *lease, size_t len,
                              const char *key_id, size_t klen,
                              const char *limit, int64_t now_us)
{
    uint64_t id;

    if (kg__lease_id_random(lease, len, &id) != 0)
        return KG_ERR_INVALID;
    return release_id(ctx, id, lease, len, key_id, klen, limit, now_us);
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
    e = release_id(ctx, id, lease, len, key, (size_t)(sep - key), sep + 1,
                   now_us);
out:
    if (key != buf)
        free(key);
    return e;
}

/*
 * Release each lease of the list lease[0..len) ("a,b") by its text, but
 * those whose id is among skip[0..nskip) (released already); `any`: one
 * was released before.  KG_OK if any was, KG_ERR_INVALID at the first
 * that is no lease id.
 */
static kg_error release_list(kg_context *ctx, const char *lease, size_t len,
                             const uint64_t *skip, int nskip, int any,
                             int64_t now_us)
{
    const char *p = lease, *end = lease + len, *comma;
    int nomem = 0;

    for (;; p = comma + 1) {
        uint64_t id;
        kg_error e;
        int i = nskip;

        if ((comma = memchr(p, ',', (size_t)(end - p))) == NULL)
            comma = end;
        /* the id decoded once, then looked for among those released */
        if (nskip > 0 && kg__lease_id_random(p, (size_t)(comma - p), &id) == 0)
            for (i = 0; i < nskip && id != skip[i]; i++)
                ;
        if (i == nskip) {
            e = release_one(ctx, p, (size_t)(comma - p), now_us);
            if (e == KG_ERR_INVALID)
                return e;
            any |= e == KG_OK;
            nomem |= e == KG_ERR_NOMEM;
        }
        if (comma == end)
            break;
    }
    return any ? KG_OK : nomem ? KG_ERR_NOMEM : KG_ERR_NOT_FOUND;
}

kg_error kg__lease_release_any(kg_context *ctx, const char *lease,
                               int64_t now_us)
{
    if (lease == NULL || *lease == '\0')
        return KG_ERR_INVALID;
    return release_list(ctx, lease, strlen(lease), NULL, 0, 0, now_us);
}

/*
 * Release the lease a handle names: 1 if its slot still held it, 0 if
 * not (expired and reaped; the slot evicted, even reused).  The slot's
 * memory is never given back, so it is safe to lock whatever key it
 * holds now; the lease's 64-bit random id is what says it is there.
 */
static int release_handle(const struct kg__lease_handle *h, int64_t now_us)
{
    struct kslot *s = h->slot;
    struct lshard *sh = kg__slot_lock(s);
    uint32_t i;
    int found = 0;

    for (i = 0; i < s->nleases; i++) {
        if (s->leases[i].id == h->id) {
            s->leases[i] = s->leases[--s->nleases];
            s->touched_s = now_us / 1000000;
            found = 1;
            break;
        }
    }
    pthread_mutex_unlock(&sh->lock);
    return found;
}

/*
 * kg_decision_release(): each lease of the list released by its handle
 * where the decision has one of this context's memory state and the
 * slot still holds it; any other (the state file's, a remote backend's,
 * one past KG__LEASE_HANDLES, one the handle missed) by its text, as
 * kg_release() does.
 */
kg_error kg__lease_release_decision(kg_context *ctx, kg_decision *d,
                                    int64_t now_us)
{
    uint64_t done[KG__LEASE_HANDLES];
    int i, n = 0;

    if (d->released || d->lease_len == 0)
        return KG_ERR_NOT_FOUND;
    d->released = 1;
    for (i = 0; i < d->nlh; i++)
        if (d->lh[i].limits == ctx->limits && ctx->limits != NULL &&
            release_handle(&d->lh[i], now_us))
            done[n++] = d->lh[i].id;
    /* Every lease released by its handle (the usual case: one
     * concurrency limit in memory): no text to read. */
    if (n == d->nlease)
        return KG_OK;
    return release_list(ctx, d->lease, d->lease_len, done, n, n > 0, now_us);
}

kg_error kg_decision_release(kg_context *ctx, kg_decision *d)
{
    if (ctx == NULL || d == NULL)
        return KG_ERR_INVALID;
    /* The time marks the slot as used (seconds), and reaps expired
     * leases on the text path: a tick's precision does. */
    return kg__lease_release_decision(ctx, d, kg__context_now_coarse(ctx));
}

kg_error kg_release(kg_context *ctx, const char *lease)
{
    if (ctx == NULL || lease == NULL)
        return KG_ERR_INVALID;
    return kg__lease_release_any(ctx, lease, kg_context_now(ctx));
}
