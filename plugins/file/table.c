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
    kg_record_table_free(t->rt);
    kg__file_acct_free(t);
    free(t);
}

int kg__file_table_add(struct table *t, kg_record *r)
{
    struct entry *e;
    if (t->rt != NULL)
        return -1;      /* sealed: lookups would not see it */
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
        if (o != NULL)
            kg_record_touch(nt->all[i]->rec, kg_record_last_used(o->rec));
    }
}

void kg__file_table_seal(struct table *t)
{
    kg_record_table *rt;
    kg_record **placed;
    size_t i;

    if (t->rt != NULL)
        return;
    /* The records placed carry their accounts (a check reads both). */
    kg__file_acct_attach(t);
    if (kg_record_table_new(t->n, &rt) != KG_OK)
        return;
    placed = malloc((t->n ? t->n : 1) * sizeof(*placed));
    for (i = 0; placed != NULL && i < t->n; i++) {
        if (kg_record_table_add(rt, t->all[i]->rec) != KG_OK)
            break;
        placed[i] = kg_record_table_get(rt, kg_record_hash(t->all[i]->rec));
    }
    if (placed == NULL || i < t->n) {
        /* Out of memory, or two records of one hash: the buckets
         * serve (the later record, as before tables were sealed). */
        while (placed != NULL && i-- > 0)
            kg_record_unref(placed[i]);
        free(placed);
        kg_record_table_free(rt);
        return;
    }
    for (i = 0; i < t->n; i++) {
        kg_record_unref(t->all[i]->rec);
        t->all[i]->rec = placed[i];
    }
    free(placed);
    t->rt = rt;
}

struct table *kg__file_table_copy(const struct table *t)
{
    struct table *c = calloc(1, sizeof(*c));
    size_t i;
    if (c != NULL && kg__file_acct_copy(c, t) != 0) {
        kg__file_table_free(c);
        return NULL;
    }
    for (i = 0; c != NULL && i < t->n; i++) {
        kg_record *r = kg_record_dup(t->all[i]->rec);
        if (r == NULL || kg__file_table_add(c, r) != 0) {
            kg_record_unref(r);
            kg__file_table_free(c);
            return NULL;
        }
    }
    return c;
}
