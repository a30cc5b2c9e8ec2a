/*
 * usage.c - metering: every decision of a policy with a usage: section
 * counted in the context per (account, key, minute, outcome), the
 * denials and a sample of the allowed decisions kept as events, and
 * kg_usage_flush() writing both to the store (docs/usage.md).
 *
 * The request path takes one uncontended lock: a thread counts in a
 * shard of its own (threads are dealt shards in turn), so two threads
 * never wait for each other unless there are more threads than shards;
 * the same bucket may then sit in several shards, and the flush adds
 * them up.  A bucket already counted costs a hash of a pointer and the
 * minute, a walk of a short chain and an increment: no allocation, no
 * I/O.  A new bucket (a new key, or a new minute) allocates one block.
 *
 * What the store refuses stays pending and goes with the next flush;
 * the rows and events held (counted and pending) are bounded by the
 * section's max_pending: a new bucket or event past it is dropped as it
 * comes, and counted (rows_dropped, events_dropped).
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NSHARDS 32
#define MIN_BUCKETS 64

/*
 * One counted bucket.  It is keyed by the decision's record, of which it
 * holds a reference (NULL: no key identified), not by the record's ids:
 * the request path then compares a pointer instead of hashing and
 * comparing two strings, and the ids are read at the flush.  A key whose
 * record is made anew (a cache refresh) gets a second bucket, which the
 * flush adds to the first (as it does a bucket counted in two shards).
 */
struct entry {
    struct entry *next;
    const kg_record *rec;
    int64_t start;
    int64_t count;
    kg_code code;
    const char *account, *key;   /* the record's, or "" */
};

struct shard {
    pthread_mutex_t lock;
    struct entry **buckets;   /* NULL until the first bucket */
    size_t nbuckets, n;
    uint64_t seq;             /* allowed decisions seen: the sample's input */
} __attribute__((aligned(64)));

/* Events: fixed parts in an array, strings in one growing arena (offsets
 * into it, as the arena moves when it grows). */
enum { EV_ACCOUNT, EV_KEY, EV_PREFIX, EV_CLIENT, EV_METHOD, EV_PATH, EV_BY,
       EV_NSTR };
struct ev {
    int64_t time_ms;
    int status;
    kg_code code;
    size_t off[EV_NSTR];
};
struct evbuf {
    struct ev *v;
    size_t n, cap;
    char *text;
    size_t len, tcap;
};

struct kg__usage {
    struct shard shards[NSHARDS];
    atomic_uint next_shard;
    /* Rows and events held (in the shards and pending), for the bound. */
    atomic_size_t live_rows, live_events;
    pthread_mutex_t ev_lock;
    struct evbuf events;
    /* Only one flush at a time; it alone touches what is pending. */
    pthread_mutex_t flush_lock;
    struct entry **pending;
    size_t npending;
    struct evbuf pending_events;
    atomic_uint_least64_t flushes, flush_errors, rows_written, events_written,
        rows_dropped, events_dropped;
    atomic_int_least64_t last_flush_us;
};

kg_error kg__usage_new(struct kg__usage **u_r)
{
    struct kg__usage *u = calloc(1, sizeof(*u));
    size_t i;
    if (u == NULL)
        return KG_ERR_NOMEM;
    for (i = 0; i < NSHARDS; i++)
        pthread_mutex_init(&u->shards[i].lock, NULL);
    pthread_mutex_init(&u->ev_lock, NULL);
    pthread_mutex_init(&u->flush_lock, NULL);
    *u_r = u;
    return KG_OK;
}

static void entry_free(struct entry *e)
{
    if (e->rec != NULL)
        kg_record_unref((kg_record *)e->rec);
    free(e);
}

static void evbuf_free(struct evbuf *b)
{
    free(b->v);
    free(b->text);
    memset(b, 0, sizeof(*b));
}

void kg__usage_free(struct kg__usage *u)
{
    size_t i, j;
    if (u == NULL)
        return;
    for (i = 0; i < NSHARDS; i++) {
        struct shard *s = &u->shards[i];
        for (j = 0; j < s->nbuckets; j++) {
            struct entry *e = s->buckets[j], *next;
            for (; e != NULL; e = next) {
                next = e->next;
                entry_free(e);
            }
        }
        free(s->buckets);
        pthread_mutex_destroy(&s->lock);
    }
    for (i = 0; i < u->npending; i++)
        entry_free(u->pending[i]);
    free(u->pending);
    evbuf_free(&u->events);
    evbuf_free(&u->pending_events);
    pthread_mutex_destroy(&u->ev_lock);
    pthread_mutex_destroy(&u->flush_lock);
    free(u);
}

/* splitmix64's finalizer: a well-mixed 64-bit value of x. */
static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static uint64_t bucket_hash(const kg_record *rec, int64_t start,
                            kg_code code)
{
    return mix((uint64_t)(uintptr_t)rec ^ ((uint64_t)start << 20) ^
               (uint64_t)code);
}

static struct shard *my_shard(struct kg__usage *u)
{
    kg__thread *t = kg__thread_get();
    if (t == NULL)
        return &u->shards[0];
    if (t->usage_shard == 0)
        t->usage_shard = 1 + atomic_fetch_add(&u->next_shard, 1) % NSHARDS;
    return &u->shards[(t->usage_shard - 1) % NSHARDS];
}

/* Double the shard's table (or make its first); -1 if out of memory,
 * the table as it was. */
static int shard_grow(struct shard *s)
{
    size_t n = s->nbuckets ? 2 * s->nbuckets : MIN_BUCKETS, i;
    struct entry **b = calloc(n, sizeof(*b));
    if (b == NULL)
        return -1;
    for (i = 0; i < s->nbuckets; i++) {
        struct entry *e = s->buckets[i], *next;
        for (; e != NULL; e = next) {
            next = e->next;
            uint64_t h = bucket_hash(e->rec, e->start, e->code);
            e->next = b[h & (n - 1)];
            b[h & (n - 1)] = e;
        }
    }
    free(s->buckets);
    s->buckets = b;
    s->nbuckets = n;
    return 0;
}

/* Add one to the bucket in s (locked); 0, or -1 if it was dropped. */
static int shard_count(struct kg__usage *u, size_t max, struct shard *s,
                       const kg_record *rec, int64_t start, kg_code code)
{
    uint64_t h = bucket_hash(rec, start, code);
    struct entry *e;

    if (s->nbuckets) {
        for (e = s->buckets[h & (s->nbuckets - 1)]; e != NULL; e = e->next) {
            if (e->rec == rec && e->start == start && e->code == code) {
                e->count++;
                return 0;
            }
        }
    }
    /* A new bucket: within the bound, and a table with room for it. */
    if (atomic_fetch_add(&u->live_rows, 1) >= max)
        goto drop;
    if (s->n >= s->nbuckets && shard_grow(s) != 0)
        goto drop;
    if ((e = malloc(sizeof(*e))) == NULL)
        goto drop;
    e->rec = rec != NULL ? kg_record_ref((kg_record *)rec) : NULL;
    e->account = rec != NULL && rec->account_id != NULL ? rec->account_id : "";
    e->key = rec != NULL && rec->id != NULL ? rec->id : "";
    e->start = start;
    e->code = code;
    e->count = 1;
    e->next = s->buckets[h & (s->nbuckets - 1)];
    s->buckets[h & (s->nbuckets - 1)] = e;
    s->n++;
    return 0;
drop:
    atomic_fetch_sub(&u->live_rows, 1);
    atomic_fetch_add(&u->rows_dropped, 1);
    return -1;
}

/* Append s to b's arena; its offset, or (size_t)-1 if out of memory. */
static size_t ev_str(struct evbuf *b, const char *s)
{
    size_t n = strlen(s) + 1, off = b->len;
    if (b->len + n > b->tcap) {
        size_t cap = b->tcap ? b->tcap : 4096;
        char *t;
        while (cap < b->len + n)
            cap *= 2;
        if ((t = realloc(b->text, cap)) == NULL)
            return (size_t)-1;
        b->text = t;
        b->tcap = cap;
    }
    memcpy(b->text + off, s, n);
    b->len += n;
    return off;
}

/* Append an event to b; -1 if out of memory (b as it was). */
static int ev_add(struct evbuf *b, const struct ev *src, const char *const str[EV_NSTR])
{
    struct ev *e;
    size_t len0 = b->len, i;
    if (b->n == b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 256;
        struct ev *v = realloc(b->v, cap * sizeof(*v));
        if (v == NULL)
            return -1;
        b->v = v;
        b->cap = cap;
    }
    e = &b->v[b->n];
    *e = *src;
    for (i = 0; i < EV_NSTR; i++) {
        if ((e->off[i] = ev_str(b, str[i])) == (size_t)-1) {
            b->len = len0;
            return -1;
        }
    }
    b->n++;
    return 0;
}

static void event_add(struct kg__usage *u, size_t max, const kg_request *req,
                      const kg_decision *d, const char *account,
                      const char *key, int64_t now_us)
{
    const kg_record *r = d->record;
    const char *client = kg_request_client(req);
    const char *str[EV_NSTR];
    struct ev ev;
    int rc;

    if (atomic_fetch_add(&u->live_events, 1) >= max) {
        atomic_fetch_sub(&u->live_events, 1);
        atomic_fetch_add(&u->events_dropped, 1);
        return;
    }
    memset(&ev, 0, sizeof(ev));
    ev.time_ms = now_us / 1000;
    ev.status = d->status;
    ev.code = d->code;
    str[EV_ACCOUNT] = account;
    str[EV_KEY] = key;
    str[EV_PREFIX] = r != NULL && r->prefix != NULL ? r->prefix : "";
    str[EV_CLIENT] = client ? client : "";
    str[EV_METHOD] = kg_request_method(req);
    str[EV_PATH] = kg_request_path(req);
    str[EV_BY] = d->decided_by;
    pthread_mutex_lock(&u->ev_lock);
    rc = ev_add(&u->events, &ev, str);
    pthread_mutex_unlock(&u->ev_lock);
    if (rc != 0) {
        atomic_fetch_sub(&u->live_events, 1);
        atomic_fetch_add(&u->events_dropped, 1);
    }
}

void kg__usage_count(const kg_policy *p, const kg_request *req,
                     const kg_decision *d, int64_t now_us)
{
    const kg__usage_conf *conf = p->usage;
    struct kg__usage *u = p->ctx->usage;
    const kg_record *r = d->record;
    /* The minute, in one division (a clock before 1970 is no concern). */
    int64_t start = now_us >= 0 ? now_us / 60000000 * 60 : 0;
    struct shard *s = my_shard(u);
    int sampled = d->code != KG_CODE_NONE;

    pthread_mutex_lock(&s->lock);
    (void)shard_count(u, conf->max_pending, s, r, start, d->code);
    if (!sampled && conf->sample_ppm > 0)
        sampled = mix(conf->seed + ++s->seq) % 1000000 < conf->sample_ppm;
    pthread_mutex_unlock(&s->lock);
    if (sampled)
        event_add(u, conf->max_pending, req, d,
                  r != NULL && r->account_id != NULL ? r->account_id : "",
                  r != NULL && r->id != NULL ? r->id : "", now_us);
}

/* ---- flush ------------------------------------------------------------ */

static int entry_cmp(const void *a, const void *b)
{
    const struct entry *x = *(struct entry *const *)a;
    const struct entry *y = *(struct entry *const *)b;
    int c;
    if (x->start != y->start)
        return x->start < y->start ? -1 : 1;
    if ((c = strcmp(x->account, y->account)) != 0)
        return c;
    if ((c = strcmp(x->key, y->key)) != 0)
        return c;
    return (int)x->code - (int)y->code;
}

/* Move every shard's buckets onto the end of the pending list, their
 * tables left empty; a shard whose buckets find no room (out of memory)
 * keeps them for the next flush. */
static void take_shards(struct kg__usage *u)
{
    size_t i, j;
    for (i = 0; i < NSHARDS; i++) {
        struct shard *s = &u->shards[i];
        struct entry **v;
        pthread_mutex_lock(&s->lock);
        v = s->n == 0 ? u->pending
                      : realloc(u->pending, (u->npending + s->n) * sizeof(*v));
        if (v != NULL) {
            u->pending = v;
            for (j = 0; j < s->nbuckets; j++) {
                struct entry *e = s->buckets[j], *next;
                for (; e != NULL; e = next) {
                    next = e->next;
                    e->next = NULL;
                    u->pending[u->npending++] = e;
                }
                s->buckets[j] = NULL;
            }
            s->n = 0;
        }
        pthread_mutex_unlock(&s->lock);
    }
}

/* Sort the pending rows and add up those of one bucket (shards that
 * counted the same bucket, a pending row and a new one). */
static void pending_merge(struct kg__usage *u)
{
    size_t i, n = 0;
    if (u->npending == 0)
        return;
    qsort(u->pending, u->npending, sizeof(*u->pending), entry_cmp);
    for (i = 0; i < u->npending; i++) {
        if (n > 0 && entry_cmp(&u->pending[n - 1], &u->pending[i]) == 0) {
            u->pending[n - 1]->count += u->pending[i]->count;
            entry_free(u->pending[i]);
            atomic_fetch_sub(&u->live_rows, 1);
        } else {
            u->pending[n++] = u->pending[i];
        }
    }
    u->npending = n;
}

/* Append the live events to the pending ones; -1 if out of memory (both
 * as they were). */
static int take_events(struct kg__usage *u)
{
    struct evbuf *p = &u->pending_events, *b;
    int rc = 0;
    size_t i;
    const char *str[EV_NSTR];
    pthread_mutex_lock(&u->ev_lock);
    b = &u->events;
    if (p->n == 0) {
        /* The common case: hand the buffer over whole. */
        struct evbuf t = *p;
        *p = *b;
        *b = t;
        b->n = 0;
        b->len = 0;
    } else {
        size_t n0 = p->n, len0 = p->len, k;
        for (i = 0; i < b->n && rc == 0; i++) {
            for (k = 0; k < EV_NSTR; k++)
                str[k] = b->text + b->v[i].off[k];
            rc = ev_add(p, &b->v[i], str);
        }
        if (rc != 0) {
            p->n = n0;
            p->len = len0;
        } else {
            b->n = 0;
            b->len = 0;
        }
    }
    pthread_mutex_unlock(&u->ev_lock);
    return rc;
}

/* Past max (a policy with a smaller max_pending was swapped in): drop
 * the newest pending rows and events, as counting past the bound does;
 * counted. */
static void pending_bound(struct kg__usage *u, size_t max)
{
    struct evbuf *p = &u->pending_events;
    size_t i, k;
    if (u->npending > max) {
        k = u->npending - max;
        for (i = max; i < u->npending; i++)
            entry_free(u->pending[i]);
        u->npending = max;
        atomic_fetch_sub(&u->live_rows, k);
        atomic_fetch_add(&u->rows_dropped, k);
    }
    if (p->n > max) {
        /* Their strings stay in the arena until the batch is written. */
        k = p->n - max;
        p->n = max;
        atomic_fetch_sub(&u->live_events, k);
        atomic_fetch_add(&u->events_dropped, k);
    }
}

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Write what is pending through conf's store; the batch is kept unless
 * written. */
static kg_error write_pending(struct kg__usage *u, const kg__usage_conf *conf,
                              int64_t now, kg_diag *diag)
{
    struct evbuf *p = &u->pending_events;
    kg_usage_row *rows = NULL;
    kg_usage_event *evs = NULL;
    size_t i, nr = u->npending, ne = p->n;
    int64_t t0;
    kg_error e;

    rows = calloc(nr ? nr : 1, sizeof(*rows));
    evs = calloc(ne ? ne : 1, sizeof(*evs));
    if (rows == NULL || evs == NULL) {
        e = KG_ERR_NOMEM;
        goto out;
    }
    for (i = 0; i < nr; i++) {
        const struct entry *en = u->pending[i];
        rows[i].start = en->start;
        rows[i].span = 60;
        rows[i].account_id = en->account;
        rows[i].key_id = en->key;
        rows[i].code = en->code;
        rows[i].count = en->count;
    }
    for (i = 0; i < ne; i++) {
        const struct ev *v = &p->v[i];
        evs[i].time_ms = v->time_ms;
        evs[i].status = v->status;
        evs[i].code = v->code;
        evs[i].account_id = p->text + v->off[EV_ACCOUNT];
        evs[i].key_id = p->text + v->off[EV_KEY];
        evs[i].key_prefix = p->text + v->off[EV_PREFIX];
        evs[i].client = p->text + v->off[EV_CLIENT];
        evs[i].method = p->text + v->off[EV_METHOD];
        evs[i].path = p->text + v->off[EV_PATH];
        evs[i].decided_by = p->text + v->off[EV_BY];
    }
    t0 = mono_us();
    e = conf->ops->write(conf->inst, rows, nr, evs, ne, now, diag);
    atomic_store(&u->last_flush_us, mono_us() - t0);
    if (e != KG_OK)
        goto out;
    for (i = 0; i < nr; i++)
        entry_free(u->pending[i]);
    u->npending = 0;
    p->n = 0;
    p->len = 0;
    atomic_fetch_sub(&u->live_rows, nr);
    atomic_fetch_sub(&u->live_events, ne);
    atomic_fetch_add(&u->rows_written, nr);
    atomic_fetch_add(&u->events_written, ne);
out:
    free(rows);
    free(evs);
    return e;
}

kg_error kg_usage_flush(const kg_policy *p, kg_diag *diag)
{
    const kg__usage_conf *conf;
    struct kg__usage *u;
    kg_error e;

    if (p == NULL)
        return KG_ERR_INVALID;
    if ((conf = kg__usage_section(p, diag)) == NULL)
        return KG_ERR_UNSUPPORTED;
    u = p->ctx->usage;
    pthread_mutex_lock(&u->flush_lock);
    if (take_events(u) != 0) {
        e = KG_ERR_NOMEM;
        kg__diag_set(diag, NULL, 0, 0, "usage flush: out of memory");
        goto fail;
    }
    take_shards(u);
    pending_merge(u);
    e = KG_OK;
    if (u->npending > 0 || u->pending_events.n > 0)
        e = write_pending(u, conf, kg_context_now(p->ctx) / 1000000, diag);
    if (e != KG_OK)
        goto fail;
    atomic_fetch_add(&u->flushes, 1);
    pthread_mutex_unlock(&u->flush_lock);
    return KG_OK;
fail:
    pending_bound(u, conf->max_pending);
    atomic_fetch_add(&u->flush_errors, 1);
    pthread_mutex_unlock(&u->flush_lock);
    return e;
}

void kg_usage_stats_get(const kg_context *ctx, kg_usage_stats *out)
{
    struct kg__usage *u;
    if (out == NULL)
        return;
    memset(out, 0, sizeof(*out));
    if (ctx == NULL || (u = ctx->usage) == NULL)
        return;
    out->flushes = atomic_load(&u->flushes);
    out->flush_errors = atomic_load(&u->flush_errors);
    out->rows_written = atomic_load(&u->rows_written);
    out->events_written = atomic_load(&u->events_written);
    out->rows_dropped = atomic_load(&u->rows_dropped);
    out->events_dropped = atomic_load(&u->events_dropped);
    out->pending_rows = atomic_load(&u->live_rows);
    out->pending_events = atomic_load(&u->live_events);
    out->last_flush_us = atomic_load(&u->last_flush_us);
}
