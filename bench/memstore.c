/*
 * memstore - a benchmark-only keystore: reads plaintext keys (one per
 * line) from `keys_file`, stores their SHA-256 in a hash table and
 * answers lookups from memory.  Lets bench/check measure the core with a
 * million keys without a million-record YAML file.
 *
 * Options: keys_file (path), plan (default pro).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <keygate/plugin.h>

struct memstore {
    kg_record **slots;
    size_t nslots;
};

static void ms_destroy(void *inst)
{
    struct memstore *m = inst;
    size_t i;
    if (m == NULL)
        return;
    for (i = 0; i < m->nslots; i++)
        kg_record_unref(m->slots[i]);
    free(m->slots);
    free(m);
}

static size_t slot_of(const struct memstore *m, const unsigned char *h)
{
    uint64_t v;
    memcpy(&v, h, 8);
    return (size_t)(v & (m->nslots - 1));
}

static kg_error ms_create(kg_opts *o, void **inst_r)
{
    struct memstore *m = calloc(1, sizeof(*m));
    const char *path, *plan;
    FILE *f;
    char line[128];
    size_t n = 0, id = 0;

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
    m->nslots = 1;
    while (m->nslots < 2 * n)
        m->nslots <<= 1;
    m->slots = calloc(m->nslots, sizeof(*m->slots));
    while (m->slots && fgets(line, sizeof(line), f)) {
        unsigned char h[KG_HASH_LEN];
        char idbuf[32];
        kg_record *r = kg_record_new();
        size_t len = strcspn(line, "\r\n"), s;
        kg_key_hash(line, len, h);
        snprintf(idbuf, sizeof(idbuf), "k_%zu", id++);
        kg_record_set_id(r, idbuf);
        kg_record_set_plan(r, plan);
        kg_record_set_hash(r, h);
        for (s = slot_of(m, h); m->slots[s]; s = (s + 1) & (m->nslots - 1))
            ;
        m->slots[s] = r;
    }
    fclose(f);
    *inst_r = m;
    return KG_OK;
}

static kg_result ms_lookup(void *inst, kg_call *call, const unsigned char hash[KG_HASH_LEN],
                           kg_record **rec_r)
{
    struct memstore *m = inst;
    size_t s;
    (void)call;
    for (s = slot_of(m, hash); m->slots[s]; s = (s + 1) & (m->nslots - 1)) {
        /* The probe compares the 8 bytes that index the table (they say
         * nothing the slot number does not) before the constant-time
         * compare of the whole hash. */
        if (memcmp(kg_record_hash(m->slots[s]), hash, 8) == 0 &&
            kg_hash_equal(kg_record_hash(m->slots[s]), hash)) {
            *rec_r = kg_record_ref(m->slots[s]);
            return KG_RESULT_OK;
        }
    }
    return KG_RESULT_FAIL;
}

static const struct kg_keystore_ops ms_ops = { .lookup = ms_lookup };

KG_PLUGIN_DEFINE(memstore) = {
    KG_PLUGIN_HEADER,
    .kind = KG_PLUGIN_KEYSTORE,
    .name = "memstore",
    .description = "benchmark only: keys from a plaintext file, in memory",
    .create = ms_create,
    .destroy = ms_destroy,
    .keystore = &ms_ops,
};
