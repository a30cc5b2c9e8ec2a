/*
 * memstore - a benchmark-only keystore: reads plaintext keys (one per
 * line) from `keys_file`, keeps records of their SHA-256 in a record
 * table (kg_record_table_new: placed by hash) and answers lookups from
 * memory.  Lets bench/check measure the core with a million keys
 * without a million-record YAML file.
 *
 * Options: keys_file (path), plan (default pro).  KG_BENCH_ACCOUNTS=N in
 * the environment puts the keys in N accounts (key i in account i mod N,
 * attached to its record as a store that keeps accounts does), so that
 * the limits count per account; an older build ignores it, so that
 * bench/ab.sh can compare the two with one command line.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <keygate/plugin.h>

/* The records in a record table (placed by key hash): a lookup reads
 * the record's place and, for a third of the keys, the next one, both
 * asked for by prefetch() before the lookup, instead of an index entry
 * and then the record it points to (two cache misses in a row at a
 * million keys). */
struct memstore {
    kg_record_table *table;
};

static void ms_destroy(void *inst)
{
    struct memstore *m = inst;
    if (m == NULL)
        return;
    kg_record_table_free(m->table);
    free(m);
}

static kg_error ms_create(kg_opts *o, void **inst_r)
{
    struct memstore *m = calloc(1, sizeof(*m));
    const char *path, *plan;
    FILE *f;
    char line[128];
    size_t n = 0, id = 0, nacct = 0, i;
    kg_account **accts = NULL;
    const char *env = getenv("KG_BENCH_ACCOUNTS");
    kg_error e = KG_OK;

    if (m == NULL)
        return KG_ERR_NOMEM;
    kg_opts_get_path(o, "keys_file", NULL, &path);
    kg_opts_get_string(o, "plan", "pro", &plan);
    if (path == NULL || (f = fopen(path, "r")) == NULL) {
        ms_destroy(m);
        return kg_opts_error(o, "keys_file", "cannot read the keys file");
    }
    while (fgets(line, sizeof(line), f))
        n++;
    rewind(f);
    if ((e = kg_record_table_new(n, &m->table)) != KG_OK) {
        fclose(f);
        ms_destroy(m);
        return e;
    }
    if (env != NULL && (nacct = strtoul(env, NULL, 10)) > 0) {
        if ((accts = calloc(nacct, sizeof(*accts))) == NULL)
            e = KG_ERR_NOMEM;
        for (i = 0; e == KG_OK && i < nacct; i++) {
            char aid[32];
            snprintf(aid, sizeof(aid), "acct_%zu", i);
            if ((accts[i] = kg_account_new()) == NULL ||
                kg_account_set_id(accts[i], aid) != KG_OK ||
                kg_account_set_name(accts[i], aid) != KG_OK ||
                kg_account_set_plan(accts[i], plan) != KG_OK)
                e = KG_ERR_NOMEM;
        }
    }
    while (e == KG_OK && fgets(line, sizeof(line), f)) {
        unsigned char h[KG_HASH_LEN];
        char idbuf[32];
        kg_record *r = kg_record_new();
        if (r == NULL) {
            e = KG_ERR_NOMEM;
            break;
        }
        kg_key_hash(line, strcspn(line, "\r\n"), h);
        snprintf(idbuf, sizeof(idbuf), "k_%zu", id++);
        kg_record_set_id(r, idbuf);
        kg_record_set_plan(r, plan);
        kg_record_set_hash(r, h);
        if (nacct > 0)
            e = kg_record_set_account(r, accts[(id - 1) % nacct]);
        if (e == KG_OK)
            e = kg_record_table_add(m->table, r);
        kg_record_unref(r);
    }
    fclose(f);
    for (i = 0; accts != NULL && i < nacct; i++)
        kg_account_unref(accts[i]);  /* the records hold theirs */
    free(accts);
    if (e != KG_OK) {
        ms_destroy(m);
        return e;
    }
    *inst_r = m;
    return KG_OK;
}

static kg_result ms_lookup(void *inst, kg_call *call, const unsigned char hash[KG_HASH_LEN],
                           kg_record **rec_r)
{
    struct memstore *m = inst;
    (void)call;
    *rec_r = kg_record_table_get(m->table, hash);
    return *rec_r ? KG_RESULT_OK : KG_RESULT_FAIL;
}

static void ms_prefetch(void *inst, const unsigned char hash[KG_HASH_LEN])
{
    struct memstore *m = inst;
    kg_record_table_prefetch(m->table, hash);
}

static const struct kg_keystore_ops ms_ops = { .lookup = ms_lookup,
                                               .prefetch = ms_prefetch };

KG_PLUGIN_DEFINE(memstore) = {
    KG_PLUGIN_HEADER,
    .kind = KG_PLUGIN_KEYSTORE,
    .name = "memstore",
    .description = "benchmark only: keys from a plaintext file, in memory",
    .create = ms_create,
    .destroy = ms_destroy,
    .keystore = &ms_ops,
};
