/*
 * rtable.c - record tables: a key store's records placed by key hash.
 *
 * A store that keeps an index by hash and, beside it, records of their
 * own reads two places per lookup: the index entry, then the record it
 * names.  At a million keys each is a cache miss, one after the other.
 * A record table keeps the records themselves in an open-addressed
 * table of 256-byte places (linear probing, at most half full), so a
 * lookup starts at the place the hash names and usually ends there: one
 * miss, which kg_record_table_prefetch() can start before the store is
 * asked.
 *
 * A placed record is referenced like any other.  The table holds one
 * reference to each; kg_record_table_free() drops those, and the memory
 * goes when the last record still referenced by a check in flight is
 * unreferenced too (struct kg_record_table.refs counts the records still
 * alive, and the store's own hold).
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#include <sys/mman.h>

struct kg_record_table {
    char *places;          /* nplaces records, KG__RECORD_CELL apart */
    size_t nplaces;        /* a power of two */
    size_t count, max;
    size_t bytes;          /* mapped */
    atomic_size_t refs;    /* the store's hold + records alive */
};

static size_t home(const kg_record_table *t, const unsigned char *hash)
{
    uint64_t v;
    memcpy(&v, hash, sizeof(v));
    return (size_t)v & (t->nplaces - 1);
}

static kg_record *place(const kg_record_table *t, size_t i)
{
    return (kg_record *)(void *)(t->places + i * KG__RECORD_CELL);
}

kg_error kg_record_table_new(size_t max_records, kg_record_table **t_r)
{
    kg_record_table *t;
    size_t n = 16;
    void *m;

    if (t_r == NULL)
        return KG_ERR_INVALID;
    *t_r = NULL;
    if (max_records > ((size_t)1 << 32))
        return KG_ERR_INVALID;
    while (n < 2 * max_records)
        n *= 2;
    if ((t = calloc(1, sizeof(*t))) == NULL)
        return KG_ERR_NOMEM;
    t->bytes = n * KG__RECORD_CELL;
    m = mmap(NULL, t->bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
        free(t);
        return KG_ERR_NOMEM;
    }
#ifdef MADV_HUGEPAGE
    /* At most half full and filled at random: every huge page of it is
     * used, and a record among a million costs no TLB miss. */
    (void)madvise(m, t->bytes, MADV_HUGEPAGE);
#endif
    KG__LSAN_ROOT(m, t->bytes);
    t->places = m;
    t->nplaces = n;
    t->max = max_records;
    atomic_init(&t->refs, 1);
    *t_r = t;
    return KG_OK;
}

kg_error kg_record_table_add(kg_record_table *t, const kg_record *r)
{
    size_t i;
    kg_record *c;

    if (t == NULL || r == NULL)
        return KG_ERR_INVALID;
    for (i = home(t, r->hash);; i = (i + 1) & (t->nplaces - 1)) {
        c = place(t, i);
        if (atomic_load_explicit(&c->refs, memory_order_relaxed) == 0)
            break;
        if (kg_hash_equal(c->hash, r->hash))
            return KG_ERR_EXISTS;
    }
    if (t->count >= t->max)
        return KG_ERR_INVALID;
    memset(c, 0, sizeof(*c));
    if (kg__record_copy_fields(c, r) != KG_OK) {
        kg__record_clear(c);
        memset(c, 0, sizeof(*c));
        return KG_ERR_NOMEM;
    }
    c->table = t;
    atomic_fetch_add(&t->refs, 1);
    atomic_store_explicit(&c->refs, 1, memory_order_release);
    t->count++;
    return KG_OK;
}

kg_record *kg_record_table_get(const kg_record_table *t,
                               const unsigned char hash[KG_HASH_LEN])
{
    size_t i;

    if (t == NULL || hash == NULL)
        return NULL;
    /* Never full (at most half): an empty place ends every search. */
    for (i = home(t, hash);; i = (i + 1) & (t->nplaces - 1)) {
        kg_record *c = place(t, i);
        if (atomic_load_explicit(&c->refs, memory_order_acquire) == 0)
            return NULL;
        if (kg_hash_equal(c->hash, hash))
            return kg_record_ref(c);
    }
}

void kg_record_table_prefetch(const kg_record_table *t,
                              const unsigned char hash[KG_HASH_LEN])
{
    const char *c;

    if (t == NULL)
        return;
    /* The lines a check reads of the record at the hash's place, and of
     * the next place, where a third of the records (those whose place
     * was taken) are: two, and the third for a key with an account (its
     * copies of the account's fields). */
    c = (const char *)place(t, home(t, hash));
    __builtin_prefetch(c);
    __builtin_prefetch(c + 64);
    __builtin_prefetch(c + 128);
    c = (const char *)place(t, (home(t, hash) + 1) & (t->nplaces - 1));
    __builtin_prefetch(c);
    __builtin_prefetch(c + 64);
    __builtin_prefetch(c + 128);
}

size_t kg_record_table_count(const kg_record_table *t)
{
    return t ? t->count : 0;
}

void kg__record_table_unref(kg_record_table *t)
{
    if (atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) != 1)
        return;
    KG__LSAN_UNROOT(t->places, t->bytes);
    munmap(t->places, t->bytes);
    free(t);
}

void kg_record_table_free(kg_record_table *t)
{
    size_t i;

    if (t == NULL)
        return;
    /* Each record loses the table's reference (and goes, unless a check
     * still holds it); then the store's hold on the table. */
    for (i = 0; i < t->nplaces; i++) {
        kg_record *c = place(t, i);
        if (atomic_load_explicit(&c->refs, memory_order_relaxed) != 0)
            kg_record_unref(c);
    }
    kg__record_table_unref(t);
}
