/*
 * table.c - the file keystore's in-memory index: the records in file
 * order, a hash table by key hash for the lookups and one by key id for
 * the management operations and loads (no scan).
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>

#include "filestore.h"

static size_t id_bucket(const struct table *t, const char *id)
{
    uint64_t h = 1469598103934665603ULL;   /* FNV-1a */
    for (; *id; id++) {
        h ^= (unsigned char)*id;
        h *= 1099511628211ULL;
    }
    return (size_t)(h ^ (h >> 29)) & (t->nbuckets - 1);
}

static void link_entry(struct table *t, struct entry *e)
{
    size_t k = bucket(t, kg_record_hash(e->rec));
    e->next = t->buckets[k];
    t->buckets[k] = e;
    k = id_bucket(t, kg_record_id(e->rec));
    e->idnext = t->ids[k];
    t->ids[k] = e;
}

/* Indexes of nb buckets over the entries; -1 if out of memory (nothing
 * changed). */
static int index_all(struct table *t, size_t nb)
{
    struct entry **b = calloc(nb, sizeof(*b)), **ids = calloc(nb, sizeof(*ids));
    size_t i;
    if (b == NULL || ids == NULL) {
        free(b);
        free(ids);
        return -1;
    }
    free(t->buckets);
    free(t->ids);
    t->buckets = b;
    t->ids = ids;
    t->nbuckets = nb;
    for (i = 0; i < t->n; i++)
        link_entry(t, t->all[i]);
    return 0;
}

void kg__file_table_free(struct table *t)
{
    size_t i;
    if (t == NULL)
        return;
    for (i = 0; i < t->n; i++) {
        kg_record_unref(t->all[i]->rec);
        free(t->all[i]);
    }
    free(t->all);
    free(t->buckets);
    free(t->ids);
    free(t);
}

int kg__file_table_add(struct table *t, kg_record *r)
{
    struct entry *e;
    if (t->n == t->nbuckets) {
        size_t nb = t->nbuckets ? t->nbuckets * 2 : 64;
        struct entry **na = realloc(t->all, nb * sizeof(*na));
        if (na == NULL)
            return -1;
        t->all = na;
        if (index_all(t, nb) != 0)
            return -1;
    }
    e = calloc(1, sizeof(*e));
    if (e == NULL)
        return -1;
    e->rec = r;
    atomic_init(&e->last_used, kg_record_last_used(r));
    t->all[t->n++] = e;
    link_entry(t, e);
    return 0;
}

struct entry *kg__file_table_find_id(const struct table *t, const char *id)
{
    struct entry *e;
    if (t == NULL || t->nbuckets == 0 || id == NULL)
        return NULL;
    for (e = t->ids[id_bucket(t, id)]; e; e = e->idnext)
        if (strcmp(kg_record_id(e->rec), id) == 0)
            return e;
    return NULL;
}

int kg__file_table_reindex(struct table *t)
{
    return t->nbuckets ? index_all(t, t->nbuckets) : 0;
}

void kg__file_table_carry_last_used(struct table *nt, const struct table *old)
{
    size_t i;
    for (i = 0; i < nt->n; i++) {
        struct entry *o = kg__file_table_find_id(old, kg_record_id(nt->all[i]->rec));
        int64_t a;
        if (o == NULL)
            continue;
        a = atomic_load(&o->last_used);
        if (a > atomic_load(&nt->all[i]->last_used))
            atomic_store(&nt->all[i]->last_used, a);
    }
}
