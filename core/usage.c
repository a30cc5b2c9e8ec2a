/*
 * usage.c - metering: every decision of a policy with a usage: section
 * counted in the context per (account, key, minute, outcome), the
 * denials and a sample of the allowed decisions kept as events, and
 * kg_usage_flush() writing both to the store (docs/usage.md).
 *
 * The request path takes one uncontended spinlock: a thread counts in a
 * shard of its own (threads are dealt shards in turn), so two threads
 * never wait for each other unless there are more threads than shards;
 * the same bucket may then sit in several shards, and the flush adds
 * them up.  A bucket already counted costs a hash of a pointer and the
 * minute, a read of the table and an increment: no allocation, no I/O.
 * A new bucket (a new key, or a new minute) takes a reference to the
 * record, and now and then a larger table.
 *
 * What the store refuses stays pending and goes with the next flush;
 * the rows and events held (counted and pending) are bounded by the
 * section's max_pending: a new bucket or event past it is dropped as it
 * comes, and counted (rows_dropped, events_dropped).
 */
#include "internal.h"

#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NSHARDS 32
#define MIN_CELLS 64

/*
 * A counted bucket in a shard's table: (record, minute, code) and its
 * count; a count of 0 marks a free cell.  It is keyed by the decision's
 * record, of which it holds a reference (NULL: no key identified), not
 * by the record's ids: the request path compares a pointer instead of
 * hashing and comparing two strings, and the ids are read at the flush.
 * A key whose record is made anew (a cache refresh) gets a second
 * bucket, which the flush adds to the first (as it does a bucket counted
 * in two shards).  Open addressing, at most half full: a bucket already
 * counted is one cache line of the table, not a chain to walk.
 */
struct cell {
    const kg_record *rec;
    int64_t start;
    int64_t count;
    kg_code code;
};

/*
 * A shard's lock is a spinlock: the shard is its thread's own, so the
 * only other taker is the flush, which holds it for a pointer swap (and
 * threads past NSHARDS, which share).  One exchange to take, one store
 * to give back: half what a mutex costs, on every decision.
 */
struct shard {
    atomic_int lock;
    /* cells and cap are written under the lock, and read without it
     * only to prefetch (relaxed atomics: a stale value is harmless). */
    struct cell *cells;       /* NULL until the first bucket */
    size_t cap, n;            /* cap: a power of two; n <= cap / 2 */
    uint64_t seq;             /* allowed decisions seen: the sample's input */
} __attribute__((aligned(64)));

/* A row taken from the shards, waiting to be written. */
struct entry {
    const kg_record *rec;        /* referenced, or NULL */
    const char *account, *key;   /* the record's, or "" */
    int64_t start, count;
    kg_code code;
};

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
    struct entry *pending;
    size_t npending, cappending;
    struct evbuf pending_events;
    atomic_uint_least64_t flushes, flush_errors, rows_written, events_written,
        rows_dropped, events_dropped;
    atomic_int_least64_t last_flush_us;
};

kg_error kg__usage_new(struct kg__usage **u_r)
{
    struct kg__usage *u = NULL;
    size_t i;
    /* Aligned as its shards are, so that no two share a cache line
     * (calloc() promises 16 bytes). */
    if (posix_memalign((void **)&u, 64, sizeof(*u)) != 0)
        return KG_ERR_NOMEM;
    memset(u, 0, sizeof(*u));
    for (i = 0; i < NSHARDS; i++)
        atomic_init(&u->shards[i].lock, 0);
    pthread_mutex_init(&u->ev_lock, NULL);
    pthread_mutex_init(&u->flush_lock, NULL);
    *u_r = u;
    return KG_OK;
}

static void unref(const kg_record *rec)
{
    if (rec != NULL)
        kg_record_unref((kg_record *)rec);
}

static void cells_free(struct cell *c, size_t cap)
{
    size_t i;
    for (i = 0; i < cap; i++)
        if (c[i].count != 0)
            unref(c[i].rec);
    free(c);
}

static void evbuf_free(struct evbuf *b)
{
    free(b->v);
    free(b->text);
    memset(b, 0, sizeof(*b));
}

void kg__usage_free(struct kg__usage *u)
{
    size_t i;
    if (u == NULL)
        return;
    for (i = 0; i < NSHARDS; i++) {
        cells_free(u->shards[i].cells, u->shards[i].cap);
    }
    for (i = 0; i < u->npending; i++)
        unref(u->pending[i].rec);
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

/* A bucket's place: by record and minute (the codes of one key and
 * minute sit side by side, so that the place can be fetched before the
 * decision is known). */
static uint64_t bucket_hash(const kg_record *rec, int64_t start)
{
    return mix((uint64_t)(uintptr_t)rec ^ ((uint64_t)start << 20));
}

static void shard_lock(struct shard *s)
{
    while (atomic_exchange_explicit(&s->lock, 1, memory_order_acquire)) {
        while (atomic_load_explicit(&s->lock, memory_order_relaxed))
            sched_yield();
    }
}

static void shard_unlock(struct shard *s)
{
    atomic_store_explicit(&s->lock, 0, memory_order_release);
}

static void set_table(struct shard *s, struct cell *cells, size_t cap)
{
    __atomic_store_n(&s->cells, cells, __ATOMIC_RELAXED);
    __atomic_store_n(&s->cap, cap, __ATOMIC_RELAXED);
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

/* The free cell or the cell of (rec, start, code) in a table of cap. */
static struct cell *probe(struct cell *cells, size_t cap, const kg_record *rec,
                          int64_t start, kg_code code)
{
    size_t m = cap - 1, i = (size_t)bucket_hash(rec, start) & m;
    for (;; i = (i + 1) & m) {
        struct cell *c = &cells[i];
        if (c->count == 0 ||
            (c->rec == rec && c->start == start && c->code == code))
            return c;
    }
}

/* Give the shard a table of cap cells (cap >= 2 * its buckets) with its
 * buckets moved over; -1 if out of memory, the table as it was. */
static int shard_resize(struct shard *s, size_t cap)
{
    struct cell *c = calloc(cap, sizeof(*c));
    size_t i;
    if (c == NULL)
        return -1;
    for (i = 0; i < s->cap; i++)
        if (s->cells[i].count != 0)
            *probe(c, cap, s->cells[i].rec, s->cells[i].start,
                   s->cells[i].code) = s->cells[i];
    free(s->cells);
    set_table(s, c, cap);
    return 0;
}

/* Add one to the bucket in s (locked); 0, or -1 if it was dropped. */
static int shard_count(struct kg__usage *u, size_t max, struct shard *s,
                       const kg_record *rec, int64_t start, kg_code code)
{
    struct cell *c;

    if (s->cap > 0) {
        c = probe(s->cells, s->cap, rec, start, code);
        if (c->count != 0) {
            c->count++;
            return 0;
        }
    }
    /* A new bucket: within the bound, and a table with room for it. */
    if (atomic_fetch_add(&u->live_rows, 1) >= max)
        goto drop;
    if (2 * (s->n + 1) > s->cap &&
        shard_resize(s, s->cap ? 2 * s->cap : MIN_CELLS) != 0)
        goto drop;
    c = probe(s->cells, s->cap, rec, start, code);
    c->rec = rec != NULL ? kg_record_ref((kg_record *)rec) : NULL;
    c->start = start;
    c->code = code;
    c->count = 1;
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

/* The minute of now_us, in one division (a clock before 1970 is no
 * concern). */
static int64_t minute_of(int64_t now_us)
{
    return now_us >= 0 ? now_us / 60000000 * 60 : 0;
}

void *kg__usage_prefetch(const kg_policy *p, const kg_record *rec,
                         int64_t now_us)
{
    struct shard *s = my_shard(p->ctx->usage);
    struct cell *cells = __atomic_load_n(&s->cells, __ATOMIC_RELAXED);
    size_t cap = __atomic_load_n(&s->cap, __ATOMIC_RELAXED);
    if (cap > 0)
        __builtin_prefetch(&cells[bucket_hash(rec, minute_of(now_us)) &
                                  (cap - 1)], 1);
    return s;
}

void kg__usage_count(const kg_policy *p, const kg_request *req,
                     const kg_decision *d, int64_t now_us, void *shard)
{
    const kg__usage_conf *conf = p->usage;
    struct kg__usage *u = p->ctx->usage;
    const kg_record *r = d->record;
    struct shard *s = shard != NULL ? shard : my_shard(u);
    int sampled = d->code != KG_CODE_NONE;

    shard_lock(s);
    (void)shard_count(u, conf->max_pending, s, r, minute_of(now_us), d->code);
    if (!sampled && conf->sample_ppm > 0)
        sampled = mix(conf->seed + ++s->seq) % 1000000 < conf->sample_ppm;
    shard_unlock(s);
    if (sampled)
        event_add(u, conf->max_pending, req, d,
                  r != NULL && r->account_id != NULL ? r->account_id : "",
                  r != NULL && r->id != NULL ? r->id : "", now_us);
}

/* ---- flush ------------------------------------------------------------ */

static int entry_cmp(const void *a, const void *b)
{
    const struct entry *x = a, *y = b;
    int c;
    if (x->start != y->start)
        return x->start < y->start ? -1 : 1;
    if ((c = strcmp(x->account, y->account)) != 0)
        return c;
    if ((c = strcmp(x->key, y->key)) != 0)
        return c;
    return (int)x->code - (int)y->code;
}

/* Room in the pending list for n more; -1 if out of memory. */
static int pending_room(struct kg__usage *u, size_t n)
{
    size_t cap = u->cappending ? u->cappending : 256;
    struct entry *v;
    if (u->npending + n <= u->cappending)
        return 0;
    while (cap < u->npending + n)
        cap *= 2;
    if ((v = realloc(u->pending, cap * sizeof(*v))) == NULL)
        return -1;
    u->pending = v;
    u->cappending = cap;
    return 0;
}

/* The smallest table for n buckets at most half full. */
static size_t cells_for(size_t n)
{
    size_t cap = MIN_CELLS;
    while (cap < 2 * n)
        cap *= 2;
    return cap;
}

/*
 * Move every shard's buckets onto the end of the pending list, each
 * shard given a fresh table of the size it needed (the same keys are
 * likely to come back next minute).  The shard is locked only for the
 * swap; a shard whose buckets find no room (out of memory) keeps them
 * for the next flush.
 */
static void take_shards(struct kg__usage *u)
{
    size_t i, j, n;
    for (i = 0; i < NSHARDS; i++) {
        struct shard *s = &u->shards[i];
        struct cell *fresh, *old;
        size_t oldcap;
        shard_lock(s);
        n = s->n;
        shard_unlock(s);
        if (n == 0)
            continue;
        /* Room for what the shard may have gained meanwhile too. */
        if (pending_room(u, 2 * n + 64) != 0 ||
            (fresh = calloc(cells_for(n), sizeof(*fresh))) == NULL)
            continue;
        shard_lock(s);
        if (s->n > 2 * n + 64) {
            shard_unlock(s);
            free(fresh);
            continue;
        }
        old = s->cells;
        oldcap = s->cap;
        set_table(s, fresh, cells_for(n));
        s->n = 0;
        shard_unlock(s);
        for (j = 0; j < oldcap; j++) {
            const struct cell *c = &old[j];
            struct entry *e;
            if (c->count == 0)
                continue;
            e = &u->pending[u->npending++];
            e->rec = c->rec;
            e->account = c->rec != NULL && c->rec->account_id != NULL
                             ? c->rec->account_id : "";
            e->key = c->rec != NULL && c->rec->id != NULL ? c->rec->id : "";
            e->start = c->start;
            e->count = c->count;
            e->code = c->code;
        }
        free(old);
    }
}

/* Sort the pending rows and add up those of one bucket (shards that
 * counted the same bucket, a record made anew, a pending row and a new
 * one). */
static void pending_merge(struct kg__usage *u)
{
    size_t i, n = 0;
    if (u->npending == 0)
        return;
    qsort(u->pending, u->npending, sizeof(*u->pending), entry_cmp);
    for (i = 0; i < u->npending; i++) {
        if (n > 0 && entry_cmp(&u->pending[n - 1], &u->pending[i]) == 0) {
            u->pending[n - 1].count += u->pending[i].count;
            unref(u->pending[i].rec);
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
            unref(u->pending[i].rec);
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
        const struct entry *en = &u->pending[i];
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
        unref(u->pending[i].rec);
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
