/*
 * table.c - the file keystore's in-memory index: the records in file
 * order, and a hash table by key hash for the lookups (no scan).
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>

#include "filestore.h"

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
    free(t);
}

int kg__file_table_add(struct table *t, kg_record *r)
{
    struct entry *e, **na;
    if (t->n == t->nbuckets) {
        size_t nb = t->nbuckets ? t->nbuckets * 2 : 64, i;
        struct entry **b = calloc(nb, sizeof(*b));
        if (b == NULL)
            return -1;
        free(t->buckets);
        t->buckets = b;
        t->nbuckets = nb;
        for (i = 0; i < t->n; i++) {
            size_t k = bucket(t, kg_record_hash(t->all[i]->rec));
            t->all[i]->next = b[k];
            b[k] = t->all[i];
        }
    }
    na = realloc(t->all, (t->n + 1) * sizeof(*na));
    if (na == NULL)
        return -1;
    t->all = na;
    e = calloc(1, sizeof(*e));
    if (e == NULL)
        return -1;
    e->rec = r;
    atomic_init(&e->last_used, kg_record_last_used(r));
    t->all[t->n++] = e;
    {
        size_t k = bucket(t, kg_record_hash(r));
        e->next = t->buckets[k];
        t->buckets[k] = e;
    }
    return 0;
}
