/*
 * ipacl - account plugin: the client address must be inside the key's
 * allowed CIDRs (from the key record) and inside the plan's (options).
 * IPv4 and IPv6; a v4-mapped IPv6 client matches IPv4 networks.
 *
 * Options:
 *   allow: [CIDR, ...]   the plan's networks (none: only the key's apply)
 *
 * The client address is what the caller gives (kg_request_set_client);
 * deciding whether to trust X-Forwarded-For is the front end's job.
 * A key or plan with no networks does not restrict.  Outside: 403
 * ip_not_allowed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <keygate/plugin.h>

struct ipacl {
    kg_cidr *allow;
    size_t nallow;
};

static void ipacl_destroy(void *inst)
{
    struct ipacl *a = inst;
    if (a == NULL)
        return;
    free(a->allow);
    free(a);
}

static kg_error ipacl_create(kg_opts *o, void **inst_r)
{
    struct ipacl *a = calloc(1, sizeof(*a));
    size_t i, n;
    kg_error e = KG_OK;

    if (a == NULL)
        return KG_ERR_NOMEM;
    n = kg_opts_list_size(o, "allow");
    if (n > 0) {
        a->allow = calloc(n, sizeof(*a->allow));
        if (a->allow == NULL) {
            e = KG_ERR_NOMEM;
            goto fail;
        }
    }
    for (i = 0; i < n; i++) {
        const char *s = kg_opts_list_item(o, "allow", i);
        if (s == NULL || kg_cidr_parse(s, &a->allow[i]) != KG_OK) {
            e = kg_opts_error(o, "allow", "'%s' is not an address or network "
                              "(e.g. 203.0.113.0/24 or 2001:db8::/32)", s ? s : "");
            goto fail;
        }
        a->nallow++;
    }
    *inst_r = a;
    return KG_OK;
fail:
    ipacl_destroy(a);
    return e;
}

static int in_any(const kg_cidr *v, size_t n, const unsigned char addr[16])
{
    size_t i;
    for (i = 0; i < n; i++)
        if (kg_cidr_contains(&v[i], addr))
            return 1;
    return 0;
}

static kg_result ipacl_check(void *inst, kg_call *call)
{
    struct ipacl *a = inst;
    const kg_record *r = kg_call_record(call);
    const kg_account *acct = kg_call_account(call);
    size_t nkey = r ? kg_record_cidr_count(r) : 0, nnets = 0;
    size_t nacct = acct ? kg_account_cidr_count(acct) : 0;
    const kg_cidr *nets;
    unsigned char addr[16];
    char msg[200];
    /* The address's text only for a message (most checks never need it;
     * kg_request_client() makes it on first use). */
    const kg_request *req = kg_call_request(call);

    if (nkey == 0 && nacct == 0 && a->nallow == 0)
        return KG_RESULT_OK;
    if (kg_request_client_addr(req, addr) != KG_OK) {
        kg_call_deny(call, KG_CODE_IP_NOT_ALLOWED, "this key is restricted to "
                     "some networks and the client address is unknown");
        return KG_RESULT_FAIL;
    }
    if (a->nallow > 0 && !in_any(a->allow, a->nallow, addr)) {
        snprintf(msg, sizeof(msg), "client address %s is not allowed for this plan",
                 kg_request_client(req));
        kg_call_deny(call, KG_CODE_IP_NOT_ALLOWED, msg);
        return KG_RESULT_FAIL;
    }
    /* The account's networks are a ceiling for its keys' (docs/policy.md
     * "Accounts"): the client must be in both. */
    if (nacct > 0) {
        nets = kg_account_allowed_nets(acct, &nnets);
        if (!in_any(nets, nnets, addr)) {
            snprintf(msg, sizeof(msg), "client address %s is not in the "
                     "allowlist of this key's account", kg_request_client(req));
            kg_call_deny(call, KG_CODE_IP_NOT_ALLOWED, msg);
            return KG_RESULT_FAIL;
        }
    }
    if (nkey == 0)
        return KG_RESULT_OK;
    /*
     * The record's networks were parsed when the store built it; a
     * malformed stored network has no parsed form, so a key whose
     * networks are all malformed allows nothing (fail closed).
     */
    nets = kg_record_allowed_nets(r, &nnets);
    if (!in_any(nets, nnets, addr)) {
        snprintf(msg, sizeof(msg), "client address %s is not in this key's allowlist",
                 kg_request_client(req));
        kg_call_deny(call, KG_CODE_IP_NOT_ALLOWED, msg);
        return KG_RESULT_FAIL;
    }
    return KG_RESULT_OK;
}

static const struct kg_account_ops ipacl_ops = { .check = ipacl_check };

KG_PLUGIN_DEFINE(ipacl) = {
    KG_PLUGIN_HEADER,
    .kind = KG_PLUGIN_ACCOUNT,
    .name = "ipacl",
    .description = "client address must be in the key's, its account's and the plan's allowed networks",
    .create = ipacl_create,
    .destroy = ipacl_destroy,
    .account = &ipacl_ops,
};
