/*
 * accounts.c - the accounts of the key file (its accounts: list): kept
 * in file order with an index by id, attached to their keys before a
 * table is used, and given to keys that have none before a write (the
 * migration of a file written before accounts: docs/policy.md
 * "Accounts").
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "filestore.h"

static size_t id_hash(const char *id)
{
    uint64_t h = 1469598103934665603ULL;   /* FNV-1a */
    for (; *id; id++) {
        h ^= (unsigned char)*id;
        h *= 1099511628211ULL;
    }
    return (size_t)(h ^ (h >> 29));
}

/* The index over the accounts, at least twice their number. */
static int reindex(struct table *t)
{
    size_t nb = 64, i;
    size_t *ix;
    while (nb < 2 * t->nacct + 2)
        nb *= 2;
    if ((ix = calloc(nb, sizeof(*ix))) == NULL)
        return -1;
    for (i = 0; i < t->nacct; i++) {
        size_t k = id_hash(kg_account_id(t->accts[i])) & (nb - 1);
        while (ix[k] != 0)
            k = (k + 1) & (nb - 1);
        ix[k] = i + 1;
    }
    free(t->aidx);
    t->aidx = ix;
    t->anb = nb;
    return 0;
}

size_t kg__file_acct_pos(const struct table *t, const char *id)
{
    size_t k, i;
    if (t == NULL || id == NULL || t->anb == 0)
        return (size_t)-1;
    for (k = id_hash(id) & (t->anb - 1); t->aidx[k] != 0; k = (k + 1) & (t->anb - 1))
        if (strcmp(kg_account_id(t->accts[t->aidx[k] - 1]), id) == 0)
            return t->aidx[k] - 1;
    /* An external id: management only, a scan. */
    for (i = 0; i < t->nacct; i++) {
        const char *x = kg_account_external_id(t->accts[i]);
        if (x != NULL && strcmp(x, id) == 0)
            return i;
    }
    return (size_t)-1;
}

kg_account *kg__file_acct_find(const struct table *t, const char *id)
{
    size_t pos = kg__file_acct_pos(t, id);
    return pos == (size_t)-1 ? NULL : t->accts[pos];
}

int kg__file_acct_add(struct table *t, kg_account *a)
{
    size_t k;
    if (t->nacct == t->acap) {
        size_t cap = t->acap ? 2 * t->acap : 16;
        kg_account **na = realloc(t->accts, cap * sizeof(*na));
        if (na == NULL)
            return -1;
        t->accts = na;
        t->acap = cap;
    }
    t->accts[t->nacct++] = kg_account_ref(a);
    if (2 * t->nacct + 2 > t->anb) {
        /* Grown: every account placed again, this one with them. */
        if (reindex(t) != 0) {
            kg_account_unref(t->accts[--t->nacct]);
            return -1;
        }
        return 0;
    }
    for (k = id_hash(kg_account_id(a)) & (t->anb - 1); t->aidx[k] != 0;
         k = (k + 1) & (t->anb - 1))
        ;
    t->aidx[k] = t->nacct;
    return 0;
}

int kg__file_acct_replace(struct table *t, size_t pos, kg_account *a)
{
    kg_account *was = t->accts[pos];
    t->accts[pos] = kg_account_ref(a);
    if (reindex(t) != 0) {
        t->accts[pos] = was;
        kg_account_unref(a);
        return -1;
    }
    kg_account_unref(was);
    return 0;
}

void kg__file_acct_remove(struct table *t, size_t pos)
{
    kg_account_unref(t->accts[pos]);
    memmove(t->accts + pos, t->accts + pos + 1,
            (t->nacct - pos - 1) * sizeof(*t->accts));
    t->nacct--;
    if (reindex(t) != 0) {
        /* Out of memory: the index is dropped, finds fall to the scan
         * by external id only; the write that follows rebuilds it. */
        free(t->aidx);
        t->aidx = NULL;
        t->anb = 0;
    }
}

void kg__file_acct_free(struct table *t)
{
    size_t i;
    for (i = 0; i < t->nacct; i++)
        kg_account_unref(t->accts[i]);
    free(t->accts);
    free(t->aidx);
}

int kg__file_acct_copy(struct table *t, const struct table *src)
{
    size_t i;
    for (i = 0; i < src->nacct; i++)
        if (kg__file_acct_add(t, src->accts[i]) != 0)
            return -1;
    return 0;
}

void kg__file_acct_attach(struct table *t)
{
    size_t i;
    for (i = 0; i < t->n; i++) {
        kg_record *r = t->all[i]->rec;
        const char *aid = kg_record_account_id(r);
        kg_account *a;
        if (aid == NULL)
            continue;
        /* By id only: a key names its account by id. */
        a = kg__file_acct_find(t, aid);
        if (a == NULL || strcmp(kg_account_id(a), aid) != 0) {
            kg_record_set_account_id(r, aid);     /* drops a stale one */
            continue;
        }
        if (kg_record_set_account(r, a) == KG_OK)
            kg_record_set_plan(r, kg_account_plan(a));
    }
}

int kg__file_acct_migrate(struct table *t, int64_t now)
{
    size_t i;
    for (i = 0; i < t->n; i++) {
        kg_record *r = t->all[i]->rec;
        kg_account *a = NULL;
        unsigned n = 0;

        if (kg_record_account_id(r) != NULL)
            continue;
        /* The account's id is the same in every store that migrates
         * (docs/plugins.md "Accounts"); a suffix if taken. */
        do {
            kg_account_unref(a);
            if ((a = kg_account_for_key(r, n++, now)) == NULL)
                return -1;
        } while (kg__file_acct_find(t, kg_account_id(a)) != NULL);
        if (kg__file_acct_add(t, a) != 0 || kg_record_set_account(r, a) != KG_OK) {
            kg_account_unref(a);
            return -1;
        }
        kg_account_unref(a);
        kg_record_clear_limits(r);
    }
    return 0;
}
