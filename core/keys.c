/*
 * keys.c - key management (create, update, rotate) through the policy's
 * writable key store.  The key itself exists only in the caller's
 * buffer: it is hashed here, and only the hash reaches the store.
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

/*
 * What each keystore op enables (docs/plugins.md "Key stores"): `put`
 * creating, updating, revoking and rotating keys; `get` reading one by
 * id (show, and the read before an update or rotation); `list` listing
 * them.  The store used is the first line whose plugin has the op.
 */
enum store_op { OP_PUT, OP_GET, OP_LIST };

static const kg__line *store_for(kg_policy *p, kg_diag *diag, enum store_op op)
{
    static const char *const why[] = {
        [OP_PUT] = "write keys (no store has `put`: they are read-only; "
                   "manage keys where they live)",
        [OP_GET] = "read a key by id (no store has `get`, which key show, "
                   "update, revoke and rotate need)",
        [OP_LIST] = "list keys (no store has `list`)",
    };
    size_t i;
    for (i = 0; i < p->keystore.n; i++) {
        const struct kg_keystore_ops *o = p->keystore.lines[i]->mod->plugin->keystore;
        if (op == OP_PUT ? o->put != NULL : op == OP_GET ? o->get != NULL
                                                         : o->list != NULL)
            return p->keystore.lines[i];
    }
    kg__diag_set(diag, p->source, 0, 0, "no keystore in this policy can %s", why[op]);
    return NULL;
}

/*
 * A name is shown on one line of `keygate key list`: refuse an empty
 * one, control characters (a newline would split the row, an escape
 * sequence would repaint the terminal) and more than KG_KEY_NAME_MAX
 * bytes.  NULL (no name) is allowed.
 */
kg_error kg__check_name(const char *field, const char *name, kg_diag *diag)
{
    const unsigned char *s = (const unsigned char *)name;
    if (name == NULL)
        return KG_OK;
    if (*s == '\0') {
        kg__diag_set(diag, NULL, 0, 0, "the %s is empty (give a few words "
                     "that say what it is for)", field);
        return KG_ERR_INVALID;
    }
    if (strlen(name) > KG_KEY_NAME_MAX) {
        kg__diag_set(diag, NULL, 0, 0, "the %s is longer than %d bytes", field,
                     KG_KEY_NAME_MAX);
        return KG_ERR_INVALID;
    }
    for (; *s; s++) {
        if (*s < 0x20 || *s == 0x7f) {
            kg__diag_set(diag, NULL, 0, 0, "the %s holds a control character "
                         "(0x%02x at byte %zu): names are one line of "
                         "printable text", field, *s,
                         (size_t)(s - (const unsigned char *)name));
            return KG_ERR_INVALID;
        }
    }
    return KG_OK;
}

kg_error kg__check_plan(kg_policy *p, const char *plan, kg_diag *diag)
{
    kg__buf b;
    size_t i;
    if (plan != NULL && kg__policy_plan(p, plan) != NULL)
        return KG_OK;
    kg__buf_init(&b);
    for (i = 0; i < p->nplans; i++) {
        if (i) kg__buf_adds(&b, ", ");
        kg__buf_adds(&b, p->plans[i].name);
    }
    kg__diag_set(diag, NULL, 0, 0, "unknown plan '%s' (this policy has: %s)",
                 plan ? plan : "", b.p ? b.p : "");
    kg__buf_free(&b);
    return KG_ERR_INVALID;
}

kg_error kg__check_nets_perms(char *const *cidrs, size_t ncidrs,
                              char *const *perms, size_t nperms, kg_diag *diag)
{
    size_t i;
    for (i = 0; i < ncidrs; i++) {
        kg_cidr c;
        if (kg_cidr_parse(cidrs[i], &c) != KG_OK) {
            kg__diag_set(diag, NULL, 0, 0, "'%s' is not an address or network "
                         "(e.g. 203.0.113.0/24 or 2001:db8::/32)", cidrs[i]);
            return KG_ERR_INVALID;
        }
    }
    for (i = 0; i < nperms; i++) {
        const char *s = perms[i];
        if (*s == '\0' || strpbrk(s, " \t\r\n,") != NULL) {
            kg__diag_set(diag, NULL, 0, 0, "'%s' is not a permission (e.g. "
                         "scrape:read, jobs:write or *)", s);
            return KG_ERR_INVALID;
        }
    }
    return KG_OK;
}

/*
 * A key of an account (a store that keeps accounts): the account
 * exists, the key's plan is the account's (filled in if the record
 * names none), its settings are within the account's ceiling and its
 * limit overrides are of lines counted per key.
 */
static kg_error check_account(kg_policy *p, kg_record *r, kg_diag *diag)
{
    const kg__line *l = kg__account_store(p, NULL);
    const kg__plan *pl;
    kg_account *a = NULL;
    kg_error e;
    size_t i, j;

    if (r->account_id == NULL)
        return KG_OK;
    if (l == NULL) {
        kg__diag_set(diag, NULL, 0, 0, "account: this policy's key store keeps "
                     "no accounts");
        return KG_ERR_INVALID;
    }
    e = l->mod->plugin->keystore->account_get(l->inst, r->account_id, &a, diag);
    if (e == KG_ERR_NOT_FOUND) {
        kg__diag_set(diag, NULL, 0, 0, "account: no account with id '%.160s' "
                     "(see `keygate account list`)", r->account_id);
        return KG_ERR_INVALID;
    }
    if (e != KG_OK)
        return e;
    /* An external id names the account too: the key keeps its id. */
    if ((e = kg_record_set_account_id(r, a->id)) != KG_OK)
        goto out;
    if (r->plan != NULL && a->plan != NULL && strcmp(r->plan, a->plan) != 0) {
        kg__diag_set(diag, NULL, 0, 0, "plan: a key's plan is its account's "
                     "('%s' for account %s); change the account's plan with "
                     "`keygate account update %s --plan %s`", a->plan, a->id,
                     a->id, r->plan);
        e = KG_ERR_INVALID;
        goto out;
    }
    if ((e = kg_record_set_plan(r, a->plan)) != KG_OK)
        goto out;
    if (r->status != KG_STATUS_REVOKED &&
        (e = kg__key_within_account(r, a, diag)) != KG_OK)
        goto out;
    pl = kg__policy_plan(p, a->plan);
    for (i = 0; pl != NULL && i < r->nlimits; i++) {
        for (j = 0; j < pl->limit.n; j++) {
            const kg__line *ll = pl->limit.lines[j];
            if (ll->limit_name && strcmp(ll->limit_name, r->limits[i].name) == 0 &&
                !ll->per_key) {
                kg__diag_set(diag, NULL, 0, 0, "limit: '%s' of plan '%s' is "
                             "counted per account: override it on the account "
                             "(`keygate account update %s --limit ...`)",
                             r->limits[i].name, a->plan, a->id);
                e = KG_ERR_INVALID;
                goto out;
            }
        }
    }
out:
    kg_account_unref(a);
    return e;
}

/*
 * The record's fields against the policy.  Its name is checked unless it
 * is `kept_name` (the name the key already has: a key named before names
 * were checked can still be revoked, rotated and updated).
 */
static kg_error validate(kg_policy *p, kg_record *r, const char *kept_name,
                         kg_diag *diag)
{
    kg_error e;
    if ((e = check_account(p, r, diag)) != KG_OK)
        return e;
    if ((e = kg__check_plan(p, r->plan, diag)) != KG_OK)
        return e;
    if ((e = kg__check_nets_perms(r->cidrs, r->ncidrs, r->perms, r->nperms,
                                  diag)) != KG_OK)
        return e;
    if (kept_name == NULL || r->name == NULL || strcmp(kept_name, r->name) != 0)
        if ((e = kg__check_name("name", r->name, diag)) != KG_OK)
            return e;
    return KG_OK;
}

static kg_error new_id(char out[24])
{
    unsigned char rnd[8];
    size_t i;
    if (RAND_bytes(rnd, sizeof(rnd)) != 1)
        return KG_ERR_IO;
    strcpy(out, "k_");
    for (i = 0; i < sizeof(rnd); i++)
        snprintf(out + 2 + 2 * i, 3, "%02x", rnd[i]);
    return KG_OK;
}

/* kg_keys_create(), whose record may keep `kept_name` unchecked (a
 * rotation's new key has the old one's name). */
static kg_error create(kg_policy *p, kg_record *r, const char *kept_name,
                       char *key_out, size_t key_size, kg_diag *diag)
{
    const kg__line *l;
    char id[24], disp[KG_KEY_DISPLAY_LEN + 1];
    unsigned char hash[KG_HASH_LEN];
    kg_error e;

    kg__diag_clear(diag);
    if (p == NULL || r == NULL || key_out == NULL)
        return KG_ERR_INVALID;
    if ((l = store_for(p, diag, OP_PUT)) == NULL)
        return KG_ERR_READONLY;
    if ((e = validate(p, r, kept_name, diag)) != KG_OK)
        return e;
    if ((e = kg_key_generate(p->key_prefix, key_out, key_size)) != KG_OK)
        return e;
    kg_key_hash(key_out, strlen(key_out), hash);
    kg_record_set_hash(r, hash);
    kg_wipe(hash, sizeof(hash));
    memcpy(disp, key_out, KG_KEY_DISPLAY_LEN);
    disp[KG_KEY_DISPLAY_LEN] = '\0';
    if (r->id == NULL) {
        if ((e = new_id(id)) != KG_OK)
            goto fail;
        if ((e = kg_record_set_id(r, id)) != KG_OK)
            goto fail;
    }
    if ((e = kg_record_set_prefix(r, disp)) != KG_OK)
        goto fail;
    if (r->created == 0)
        r->created = kg_context_now(p->ctx) / 1000000;
    e = l->mod->plugin->keystore->put(l->inst, r, 1, diag);
    if (e != KG_OK)
        goto fail;
    return KG_OK;
fail:
    kg_wipe(key_out, key_size);
    return e;
}

kg_error kg_keys_create(kg_policy *p, kg_record *r, char *key_out,
                        size_t key_size, kg_diag *diag)
{
    return create(p, r, NULL, key_out, key_size, diag);
}

kg_error kg_keys_get(kg_policy *p, const char *id, kg_record **rec_r,
                     kg_diag *diag)
{
    const kg__line *l;
    kg_error e;
    kg__diag_clear(diag);
    if ((l = store_for(p, diag, OP_GET)) == NULL)
        return KG_ERR_UNSUPPORTED;
    e = l->mod->plugin->keystore->get(l->inst, id, rec_r, diag);
    if (e == KG_ERR_NOT_FOUND && diag && diag->message[0] == '\0')
        kg__diag_set(diag, NULL, 0, 0, "no key with id '%s' (see `keygate key list`)", id);
    return e;
}

kg_error kg_keys_list(kg_policy *p, kg_record_cb cb, void *ud, kg_diag *diag)
{
    const kg__line *l;
    kg__diag_clear(diag);
    if ((l = store_for(p, diag, OP_LIST)) == NULL)
        return KG_ERR_UNSUPPORTED;
    return l->mod->plugin->keystore->list(l->inst, cb, ud, diag);
}

kg_error kg_keys_page(kg_policy *p, const char *account_id, const char *after,
                      size_t limit, kg_record_cb cb, void *ud, kg_diag *diag)
{
    const kg__line *l;
    kg__diag_clear(diag);
    if (p == NULL || account_id == NULL || cb == NULL || limit == 0)
        return KG_ERR_INVALID;
    if ((l = store_for(p, diag, OP_LIST)) == NULL)
        return KG_ERR_UNSUPPORTED;
    if (l->mod->plugin->abi_minor < 7 || l->mod->plugin->keystore->key_page == NULL)
        return KG_ERR_UNSUPPORTED;
    return l->mod->plugin->keystore->key_page(l->inst, account_id,
                                              after ? after : "", limit, cb, ud, diag);
}

void kg__clear_caches(kg_policy *p)
{
    size_t i;
    for (i = 0; i < p->keystore.n; i++)
        kg__cache_clear(p->keystore.lines[i]->cache);
}

kg_error kg_keys_update(kg_policy *p, const kg_record *r, kg_diag *diag)
{
    const kg__line *l;
    kg_record *w = NULL;
    kg_error e;
    kg__diag_clear(diag);
    if (p == NULL || r == NULL)
        return KG_ERR_INVALID;
    if ((l = store_for(p, diag, OP_PUT)) == NULL)
        return KG_ERR_READONLY;
    /* Stores find the record to replace by id. */
    if (r->id == NULL || r->id[0] == '\0') {
        kg__diag_set(diag, NULL, 0, 0, "the record to update has no id");
        return KG_ERR_INVALID;
    }
    /* A copy: validate() fills in the plan of the key's account. */
    if ((w = kg_record_dup(r)) == NULL)
        return KG_ERR_NOMEM;
    if ((e = validate(p, w, NULL, diag)) != KG_OK) {
        /* Refused for its name: pass if that is the stored one. */
        kg_record *old = NULL;
        kg_diag d2;
        int kept = e == KG_ERR_INVALID && w->name != NULL &&
                   kg_keys_get(p, w->id, &old, &d2) == KG_OK &&
                   old->name != NULL && strcmp(old->name, w->name) == 0;
        if (kept) {
            kg__diag_clear(diag);
            e = validate(p, w, old->name, diag);
        }
        kg_record_unref(old);
        if (e != KG_OK)
            goto out;
    }
    e = l->mod->plugin->keystore->put(l->inst, w, 0, diag);
    if (e == KG_OK)
        kg__clear_caches(p);
out:
    kg_record_unref(w);
    return e;
}

/* keygate.h.  The store's record with its status changed, through
 * kg_keys_update() (its validation, the caches cleared): the one way
 * the CLI and embedders revoke. */
kg_error kg_keys_revoke(kg_policy *p, const char *id, kg_diag *diag)
{
    kg_record *r = NULL, *w = NULL;
    kg_error e;
    kg__diag_clear(diag);
    if (p == NULL || id == NULL || id[0] == '\0') {
        kg__diag_set(diag, NULL, 0, 0, "no key id to revoke");
        return KG_ERR_INVALID;
    }
    if ((e = kg_keys_get(p, id, &r, diag)) != KG_OK)
        return e;
    /* A copy: a store may lend a record that checks share. */
    if (r->status != KG_STATUS_REVOKED) {
        if ((w = kg_record_dup(r)) == NULL) {
            e = KG_ERR_NOMEM;
            goto out;
        }
        w->status = KG_STATUS_REVOKED;
        e = kg_keys_update(p, w, diag);
    }
out:
    kg_record_unref(w);
    kg_record_unref(r);
    return e;
}

kg_error kg_keys_rotate(kg_policy *p, const char *id, int64_t grace,
                        char *key_out, size_t key_size, kg_record **new_r,
                        kg_diag *diag)
{
    kg_record *old = NULL, *nr = NULL;
    int64_t now = kg_context_now(p->ctx) / 1000000;
    kg_error e;

    if ((e = kg_keys_get(p, id, &old, diag)) != KG_OK)
        return e;
    if (old->status == KG_STATUS_REVOKED) {
        kg__diag_set(diag, NULL, 0, 0, "key '%s' is revoked: create a new key "
                     "instead", id);
        e = KG_ERR_INVALID;
        goto out;
    }
    nr = kg_record_dup(old);
    if (nr == NULL) {
        e = KG_ERR_NOMEM;
        goto out;
    }
    kg_record_set_id(nr, NULL);
    nr->created = 0;
    kg_record_set_last_used(nr, 0);
    /* The two keys name each other (docs/cli.md "Rotation"); the new
     * one is nobody's replaced key yet. */
    if (kg_record_set_replaced_by(nr, NULL) != KG_OK ||
        kg_record_set_replaces(nr, old->id) != KG_OK) {
        e = KG_ERR_NOMEM;
        goto out;
    }
    /* Create the new key first: if that fails the old one is untouched. */
    if ((e = create(p, nr, old->name, key_out, key_size, diag)) != KG_OK)
        goto out;
    if (grace <= 0)
        old->status = KG_STATUS_REVOKED;
    else if (old->expires == 0 || old->expires > now + grace)
        old->expires = now + grace;
    if ((e = kg_record_set_replaced_by(old, nr->id)) != KG_OK)
        goto out;
    if ((e = kg_keys_update(p, old, diag)) != KG_OK)
        goto out;
    if (new_r != NULL) {
        *new_r = nr;
        nr = NULL;
    }
out:
    kg_record_unref(old);
    kg_record_unref(nr);
    return e;
}

kg_error kg_policy_reload_stores(kg_policy *p, kg_diag *diag)
{
    size_t i;
    kg_error rc = KG_OK;
    kg__diag_clear(diag);
    for (i = 0; i < p->keystore.n; i++) {
        const kg__line *l = p->keystore.lines[i];
        if (l->mod->plugin->keystore->reload != NULL) {
            kg_error e = l->mod->plugin->keystore->reload(l->inst, diag);
            if (e != KG_OK && rc == KG_OK)
                rc = e;
        }
        kg__cache_clear(l->cache);
    }
    return rc;
}

kg_error kg_policy_migrate(kg_policy *p, int apply, int *from_r, int *to_r,
                           kg_diag *diag)
{
    size_t i;
    int from = 0, to = 0;
    kg_error e;

    kg__diag_clear(diag);
    if (p == NULL)
        return KG_ERR_INVALID;
    for (i = 0; i < p->keystore.n; i++) {
        const kg__line *l = p->keystore.lines[i];
        const struct kg_keystore_ops *o = l->mod->plugin->keystore;
        /* A plugin built against ABI 1.0 has a shorter table: `migrate`
         * exists only from 1.1 on. */
        if (l->mod->plugin->abi_minor < 1 || o->migrate == NULL)
            continue;
        e = o->migrate(l->inst, apply, &from, &to, diag);
        if (from_r) *from_r = from;
        if (to_r) *to_r = to;
        if (e == KG_OK && to != from)
            kg__cache_clear(l->cache);
        return e;
    }
    kg__diag_set(diag, p->source, 0, 0, "no keystore in this policy has a "
                 "schema to migrate (only the sql store has one)");
    return KG_ERR_UNSUPPORTED;
}
