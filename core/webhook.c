/*
 * webhook.c - the policy's signers: section and the webhook API.
 * (The signer plugin kind is being built; until then a policy that names
 * signers is refused rather than silently accepted.)
 */
#include "internal.h"

kg_error kg__signers_load(kg_policy *p, kg__ynode *n, const char *file,
                          kg_diag *diag)
{
    (void)p;
    kg__diag_set(diag, file, n->line, n->column,
                 "signers: is not supported by this build of keygate");
    return KG_ERR_POLICY;
}

void kg__signers_free(kg_policy *p)
{
    (void)p;
}
