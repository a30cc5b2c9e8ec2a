/*
 * accounts.c - account management (create, get, list, update, delete)
 * through the policy's first key store that keeps accounts, and the
 * checks a key's settings pass against its account's (its plan, its
 * ceiling): docs/policy.md "Accounts".
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

const kg__line *kg__account_store(kg_policy *p, kg_diag *diag)
{
    size_t i;
    for (i = 0; p != NULL && i < p->keystore.n; i++) {
        const kg__line *l = p->keystore.lines[i];
        const struct kg_keystore_ops *o = l->mod->plugin->keystore;
        if (l->mod->plugin->abi_minor >= 5 && o->account_get && o->account_list &&
            o->account_put && o->account_delete)
            return l;
    }
    kg__diag_set(diag, p ? p->source : NULL, 0, 0, "no keystore in this policy "
                 "keeps accounts (the file store does; docs/policy.md \"Accounts\")");
    return NULL;
}

int kg_permission_is_admin_api(const char *perm)
{
    return perm != NULL && (strcmp(perm, "admin") == 0 ||
                            strcmp(perm, "account:manage") == 0);
}

/* 1 if one of the n permissions needs a scope line to be enforced. */
static int needs_scope(char **perms, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        if (!kg_permission_is_admin_api(perms[i]))
            return 1;
    return 0;
}

int kg_permission_grants(const char *have, const char *need)
{
    const char *hc, *nc;
    if (have == NULL || need == NULL)
        return 0;
    if (strcmp(have, "*") == 0 || strcmp(have, need) == 0)
        return 1;
    hc = strchr(have, ':');
    nc = strchr(need, ':');
    if (hc == NULL || nc == NULL)
        return 0;
    /* "jobs:*" */
    if (strcmp(hc + 1, "*") == 0 && hc - have == nc - need &&
        strncmp(have, need, (size_t)(hc - have)) == 0)
        return 1;
    /* "*:read" */
    if (hc - have == 1 && have[0] == '*' && strcmp(hc + 1, nc + 1) == 0)
        return 1;
    return 0;
}

/* Is network c (a string) inside one of nets? */
static int net_within(const char *c, const kg_cidr *nets, size_t n)
{
    kg_cidr k;
    size_t i;
    if (kg_cidr_parse(c, &k) != KG_OK)
        return 0;
    for (i = 0; i < n; i++)
        if (nets[i].prefix <= k.prefix && kg_cidr_contains(&nets[i], k.addr))
            return 1;
    return 0;
}

kg_error kg__key_within_account(const kg_record *r, const kg_account *a,
                                kg_diag *diag)
{
    size_t i, j;
    for (i = 0; a->nperms > 0 && i < r->nperms; i++) {
        for (j = 0; j < a->nperms; j++)
            if (kg_permission_grants(a->perms[j], r->perms[i]))
                break;
        if (j == a->nperms) {
            kg__diag_set(diag, NULL, 0, 0, "permission: '%s' is outside the "
                         "permissions of account '%s' (its ceiling)",
                         r->perms[i], a->id);
            return KG_ERR_INVALID;
        }
    }
    for (i = 0; a->ncidrs > 0 && i < r->ncidrs; i++) {
        if (!net_within(r->cidrs[i], a->nets, a->nnets)) {
            kg__diag_set(diag, NULL, 0, 0, "allowed_cidrs: '%s' is outside the "
                         "networks of account '%s' (its ceiling)",
                         r->cidrs[i], a->id);
            return KG_ERR_INVALID;
        }
    }
    return KG_OK;
}

static kg_error check_id(const char *field, const char *s, kg_diag *diag)
{
    if (s != NULL && !kg__account_id_valid(s)) {
        kg__diag_set(diag, NULL, 0, 0, "%s: '%.160s' is not an account id (1 to "
                     "%d letters, digits and ._:@-)", field, s, KG_ACCOUNT_ID_MAX);
        return KG_ERR_INVALID;
    }
    return KG_OK;
}

/* The account's fields against the policy. */
static kg_error validate(kg_policy *p, const kg_account *a, kg_diag *diag)
{
    const kg__plan *pl;
    size_t i, j;
    kg_error e;

    if ((e = check_id("id", a->id, diag)) != KG_OK ||
        (e = check_id("external_id", a->external_id, diag)) != KG_OK)
        return e;
    if (a->name == NULL) {
        kg__diag_set(diag, NULL, 0, 0, "name: an account needs a name");
        return KG_ERR_INVALID;
    }
    if ((e = kg__check_name("name", a->name, diag)) != KG_OK)
        return e;
    if ((e = kg__check_plan(p, a->plan, diag)) != KG_OK)
        return e;
    if ((e = kg__check_nets_perms(a->cidrs, a->ncidrs, a->perms, a->nperms,
                                  diag)) != KG_OK)
        return e;
    pl = kg__policy_plan(p, a->plan);
    if (needs_scope(a->perms, a->nperms) &&
        kg_policy_plan_has_module(p, a->plan, "scope") != 1) {
        kg__diag_set(diag, NULL, 0, 0, "permission: plan '%s' does not check "
                     "permissions (no scope line), so they would never be "
                     "enforced", a->plan);
        return KG_ERR_INVALID;
    }
    if (a->ncidrs > 0 && kg_policy_plan_has_module(p, a->plan, "ipacl") != 1) {
        kg__diag_set(diag, NULL, 0, 0, "allowed_cidrs: plan '%s' does not check "
                     "the client's address (no ipacl line), so they would never "
                     "be enforced", a->plan);
        return KG_ERR_INVALID;
    }
    for (i = 0; i < a->nlimits; i++) {
        for (j = 0; j < pl->limit.n; j++)
            if (pl->limit.lines[j]->limit_name != NULL &&
                strcmp(pl->limit.lines[j]->limit_name, a->limits[i].name) == 0)
                break;
        if (j == pl->limit.n) {
            kg__diag_set(diag, NULL, 0, 0, "limit: plan '%s' has no limit named "
                         "'%s' (an override replaces the plan's limit of the "
                         "same name)", a->plan, a->limits[i].name);
            return KG_ERR_INVALID;
        }
    }
    if (a->metadata != NULL && strlen(a->metadata) > KG_ACCOUNT_METADATA_MAX) {
        kg__diag_set(diag, NULL, 0, 0, "metadata: longer than %d bytes",
                     KG_ACCOUNT_METADATA_MAX);
        return KG_ERR_INVALID;
    }
    return KG_OK;
}

kg_error kg__account_new_id(char out[32])
{
    unsigned char rnd[8];
    size_t i;
    if (RAND_bytes(rnd, sizeof(rnd)) != 1)
        return KG_ERR_IO;
    strcpy(out, KG_ACCOUNT_ID_PREFIX);
    for (i = 0; i < sizeof(rnd); i++)
        snprintf(out + 5 + 2 * i, 3, "%02x", rnd[i]);
    return KG_OK;
}

kg_error kg_accounts_create(kg_policy *p, kg_account *a, kg_diag *diag)
{
    const kg__line *l;
    char id[32];
    int64_t now;
    kg_error e;

    kg__diag_clear(diag);
    if (p == NULL || a == NULL)
        return KG_ERR_INVALID;
    if ((l = kg__account_store(p, diag)) == NULL)
        return KG_ERR_UNSUPPORTED;
    if (a->id == NULL) {
        if ((e = kg__account_new_id(id)) != KG_OK ||
            (e = kg_account_set_id(a, id)) != KG_OK)
            return e;
    }
    if ((e = validate(p, a, diag)) != KG_OK)
        return e;
    now = kg_context_now(p->ctx) / 1000000;
    if (a->created == 0)
        a->created = now;
    a->updated = now;
    return l->mod->plugin->keystore->account_put(l->inst, a, 1, diag);
}

kg_error kg_accounts_get(kg_policy *p, const char *id, kg_account **acct_r,
                         kg_diag *diag)
{
    const kg__line *l;
    kg_error e;
    kg__diag_clear(diag);
    if (p == NULL || id == NULL || acct_r == NULL)
        return KG_ERR_INVALID;
    *acct_r = NULL;
    if ((l = kg__account_store(p, diag)) == NULL)
        return KG_ERR_UNSUPPORTED;
    e = l->mod->plugin->keystore->account_get(l->inst, id, acct_r, diag);
    if (e == KG_ERR_NOT_FOUND && diag && diag->message[0] == '\0')
        kg__diag_set(diag, NULL, 0, 0, "account: no account with id or external "
                     "id '%.160s' (see `keygate account list`)", id);
    return e;
}

kg_error kg_accounts_list(kg_policy *p, kg_account_cb cb, void *ud,
                          kg_diag *diag)
{
    const kg__line *l;
    kg__diag_clear(diag);
    if (p == NULL || cb == NULL)
        return KG_ERR_INVALID;
    if ((l = kg__account_store(p, diag)) == NULL)
        return KG_ERR_UNSUPPORTED;
    return l->mod->plugin->keystore->account_list(l->inst, cb, ud, diag);
}

kg_error kg_accounts_page(kg_policy *p, const char *after, size_t limit,
                          kg_account_cb cb, void *ud, kg_diag *diag)
{
    const kg__line *l;
    kg__diag_clear(diag);
    if (p == NULL || cb == NULL || limit == 0)
        return KG_ERR_INVALID;
    if ((l = kg__account_store(p, diag)) == NULL)
        return KG_ERR_UNSUPPORTED;
    if (l->mod->plugin->abi_minor < 7 || l->mod->plugin->keystore->account_page == NULL)
        return KG_ERR_UNSUPPORTED;
    return l->mod->plugin->keystore->account_page(l->inst, after ? after : "",
                                                  limit, cb, ud, diag);
}

/* Every key of the account within its (new) ceiling. */
struct ceiling {
    const kg_account *a;
    kg_diag *diag;
    kg_error e;
};

static int key_in_ceiling(const kg_record *r, void *ud)
{
    struct ceiling *c = ud;
    if (r->account_id == NULL || strcmp(r->account_id, c->a->id) != 0 ||
        r->status == KG_STATUS_REVOKED)
        return 0;
    if ((c->e = kg__key_within_account(r, c->a, c->diag)) != KG_OK) {
        size_t n = strlen(c->diag->message);
        snprintf(c->diag->message + n, sizeof(c->diag->message) - n,
                 " (key '%s' has it: change the key first)", r->id);
        return 1;
    }
    return 0;
}

kg_error kg_accounts_update(kg_policy *p, kg_account *a, kg_diag *diag)
{
    const kg__line *l;
    kg_diag local;
    struct ceiling c;
    kg_error e;

    kg__diag_clear(diag);
    if (diag == NULL)
        diag = &local;
    if (p == NULL || a == NULL)
        return KG_ERR_INVALID;
    if ((l = kg__account_store(p, diag)) == NULL)
        return KG_ERR_UNSUPPORTED;
    if (a->id == NULL) {
        kg__diag_set(diag, NULL, 0, 0, "id: the account to update has no id");
        return KG_ERR_INVALID;
    }
    if ((e = validate(p, a, diag)) != KG_OK)
        return e;
    if (a->nperms > 0 || a->ncidrs > 0) {
        c.a = a;
        c.diag = diag;
        c.e = KG_OK;
        if ((e = kg_keys_list(p, key_in_ceiling, &c, diag)) != KG_OK)
            return e;
        if (c.e != KG_OK)
            return c.e;
    }
    a->updated = kg_context_now(p->ctx) / 1000000;
    e = l->mod->plugin->keystore->account_put(l->inst, a, 0, diag);
    if (e == KG_OK)
        kg__clear_caches(p);
    return e;
}

kg_error kg_accounts_delete(kg_policy *p, const char *id, int with_keys,
                            kg_diag *diag)
{
    const kg__line *l;
    kg_error e;
    kg__diag_clear(diag);
    if (p == NULL || id == NULL)
        return KG_ERR_INVALID;
    if ((l = kg__account_store(p, diag)) == NULL)
        return KG_ERR_UNSUPPORTED;
    e = l->mod->plugin->keystore->account_delete(l->inst, id, with_keys, diag);
    if (e == KG_OK)
        kg__clear_caches(p);
    return e;
}
