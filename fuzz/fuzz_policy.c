/*
 * fuzz_policy.c - the policy loader: kg_policy_load_string() on any
 * text, then what `keygate policy explain` prints of a policy that
 * loaded.  Plugins load from the build's plugins folder; a policy that
 * could write outside the target's private folder or reach the network
 * is skipped (fz_policy_confined).
 */
#include "fuzz.h"

#include <stdlib.h>
#include <string.h>

#include <keygate/keygate.h>

static kg_context *ctx;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_init();
    if (kg_context_new(&ctx) != KG_OK)
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *yaml = fz_strndup(data, size);
    kg_policy *p = NULL;
    kg_diag diag;
    char line[2048];
    kg_error e;

    if (!fz_policy_confined(yaml, strlen(yaml))) {
        free(yaml);
        return -1;                  /* not worth keeping in the corpus */
    }
    memset(&diag, 0, sizeof(diag));
    fz_enter();
    e = kg_policy_load_string(ctx, yaml, "fuzz.yaml", &p, &diag);
    if (e == KG_OK) {
        char *text = kg_policy_explain(p);
        size_t i, n = kg_policy_plan_count(p);

        /* explain returns NULL only when out of memory */
        if (text == NULL || text[0] == '\0')
            abort();
        free(text);
        for (i = 0; i < n; i++)
            if (kg_policy_plan_name(p, i) == NULL)
                abort();
        kg_policy_free(p);
    } else {
        /* A refused policy says why. */
        if (p != NULL || diag.message[0] == '\0')
            abort();
        kg_diag_format(&diag, line, sizeof(line));
        if (strlen(kg_strerror(e)) == 0)
            abort();
    }
    fz_leave();
    fz_dir_clean();
    free(yaml);
    return 0;
}
