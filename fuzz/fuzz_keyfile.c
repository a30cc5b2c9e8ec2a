/*
 * fuzz_keyfile.c - the file keystore's reader (plugins/file/load.c,
 * linked in with the table and the writer): the input as a key file in
 * the private folder, read into a table; a table that was read is
 * sealed and every record found by its hash as a lookup would, then
 * written out (write.c) and read again: the same records, field for
 * field (kg_record_to_json), in the same order.
 */
#include "fuzz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <keygate/keygate.h>
#include <keygate/plugin.h>

#include "filestore.h"

static char *in_path, *out_path;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_init();
    in_path = malloc(strlen(fz_dir()) + 32);
    out_path = malloc(strlen(fz_dir()) + 32);
    if (in_path == NULL || out_path == NULL)
        abort();
    sprintf(in_path, "%s/keys.yaml", fz_dir());
    sprintf(out_path, "%s/written.yaml", fz_dir());
    return 0;
}

static struct table *load(const char *path, char *err, size_t errlen)
{
    struct stat st;
    int have_st = 0;
    struct place at;

    err[0] = '\0';
    return kg__file_load(path, 0, &st, &have_st, err, errlen, &at);
}

/* Every record found by its hash, as file.c's lookup finds it. */
static void lookups(const struct table *t)
{
    size_t i;

    for (i = 0; i < t->n; i++) {
        const unsigned char *h = kg_record_hash(t->all[i]->rec);
        kg_record *r = NULL;
        struct entry *e;

        if (t->rt != NULL) {
            r = kg_record_table_get(t->rt, h);
        } else {
            for (e = t->buckets[bucket(t, h)]; e; e = e->next)
                if (kg_hash_equal(kg_record_hash(e->rec), h)) {
                    r = kg_record_ref(e->rec);
                    break;
                }
        }
        if (r == NULL || !kg_hash_equal(kg_record_hash(r), h))
            abort();
        kg_record_unref(r);
        if (kg__file_table_find_id(t, kg_record_id(t->all[i]->rec)) == NULL)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FILE *f = fopen(in_path, "w");
    struct table *t, *t2;
    char err[1024];
    size_t i;

    if (f == NULL || fwrite(data, 1, size, f) != size || fclose(f) != 0)
        abort();
    t = load(in_path, err, sizeof(err));
    if (t == NULL) {
        if (err[0] == '\0')
            abort();                    /* a refusal says why */
        goto out;
    }
    if (kg__file_write(out_path, t, err, sizeof(err)) != KG_OK) {
        fprintf(stderr, "write: %s\n", err);
        abort();
    }
    t2 = load(out_path, err, sizeof(err));
    if (t2 == NULL) {
        fprintf(stderr, "what was written does not read back: %s\n", err);
        abort();
    }
    if (t2->n != t->n)
        abort();
    for (i = 0; i < t->n; i++) {
        char *a = kg_record_to_json(t->all[i]->rec);
        char *b = kg_record_to_json(t2->all[i]->rec);

        if (a == NULL || b == NULL || strcmp(a, b) != 0) {
            fprintf(stderr, "record %zu differs after a write:\n  %s\n  %s\n", i, a, b);
            abort();
        }
        free(a);
        free(b);
    }
    kg__file_table_seal(t);
    lookups(t);
    lookups(t2);
    kg__file_table_free(t2);
    kg__file_table_free(t);
out:
    fz_dir_clean();
    return 0;
}
