/*
 * embed.c - libkeygate in a C program, start to end (docs/embedding.md):
 * load a policy, make a key in its key store, check a request with it,
 * read the decision and its headers, release the concurrency lease,
 * revoke the key, see the next check refused and the key listed as
 * revoked.
 *
 *   cc -o embed embed.c $(pkg-config --cflags --libs keygate)
 *   ./embed POLICY PLAN
 *
 * Exit status: 0 when every step did what the comments say, 1 otherwise.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* keygate.h is all an embedder includes: checks, decisions, records,
 * accounts and keys (plugin.h is for plugins). */
#include <keygate/keygate.h>

/* Print a decision: status, code, key, and every header to send. */
static void show(const char *what, const kg_decision *d)
{
    size_t i, n = kg_decision_header_count(d);

    printf("%s: %d %s key=%s plan=%s by=%s\n", what, kg_decision_status(d),
           kg_decision_allowed(d) ? "allowed" : kg_code_name(kg_decision_code(d)),
           kg_decision_key_id(d) ? kg_decision_key_id(d) : "-",
           kg_decision_plan(d) ? kg_decision_plan(d) : "-",
           kg_decision_decided_by(d));
    for (i = 0; i < n; i++) {
        const char *name, *value;
        if (kg_decision_header(d, i, &name, &value) == KG_OK)
            printf("  %s: %s\n", name, value);
    }
    if (!kg_decision_allowed(d))
        printf("  body: %s\n", kg_decision_body(d));
}

/* One check of `key` (NULL: none) for GET /v1/jobs from 192.0.2.10. */
static kg_decision *check(const kg_policy *p, const char *key)
{
    kg_request *req = NULL;
    kg_decision *d = NULL;
    char auth[KG_KEY_MAX + 16];

    if (kg_request_new(&req) != KG_OK)
        return NULL;
    kg_request_set_target(req, "GET", "/v1/jobs");
    kg_request_set_client(req, "192.0.2.10");
    if (key != NULL) {
        snprintf(auth, sizeof(auth), "Bearer %s", key);
        kg_request_add_header(req, "Authorization", auth);
    }
    if (kg_check(p, req, &d) != KG_OK)
        d = NULL;
    kg_request_free(req);   /* the decision does not need the request */
    return d;
}

/* kg_keys_list()'s callback: the status of the key `id` (0 not seen,
 * 1 active, 2 revoked). */
struct found {
    const char *id;
    int status;
};

static int find_key(const kg_record *r, void *userdata)
{
    struct found *f = userdata;
    if (strcmp(kg_record_id(r), f->id) != 0)
        return 0;
    f->status = kg_record_status(r) == KG_STATUS_REVOKED ? 2 : 1;
    return 1;
}

int main(int argc, char **argv)
{
    kg_context *ctx = NULL;
    kg_policy *pol = NULL;
    kg_record *rec = NULL;
    struct found f = { NULL, 0 };
    kg_decision *d = NULL;
    kg_diag diag;
    char key[KG_KEY_MAX], buf[1200], id[256];
    int ok = 0;

    if (argc != 3) {
        fprintf(stderr, "usage: %s POLICY PLAN\n", argv[0]);
        return 2;
    }
    printf("libkeygate %s\n", kg_version());

    /* 1. A context (plugins, limiter state, clock), a policy in it. */
    if (kg_context_new(&ctx) != KG_OK)
        goto out;
    if (kg_policy_load_file(ctx, argv[1], &pol, &diag) != KG_OK) {
        fprintf(stderr, "%s\n", kg_diag_format(&diag, buf, sizeof(buf)));
        goto out;
    }

    /* 2. A key on PLAN, in the policy's first writable key store: the
     * key is written into `key` once; the store keeps its hash. */
    if ((rec = kg_record_new()) == NULL ||
        kg_record_set_name(rec, "embed example") != KG_OK ||
        kg_record_set_plan(rec, argv[2]) != KG_OK)
        goto out;
    if (kg_keys_create(pol, rec, key, sizeof(key), &diag) != KG_OK) {
        fprintf(stderr, "key create: %s\n", kg_diag_format(&diag, buf, sizeof(buf)));
        goto out;
    }
    snprintf(id, sizeof(id), "%s", kg_record_id(rec));
    printf("created %s (%.8s...)\n", id, key);

    /* 3. A request with it: allowed, with its rate-limit headers and,
     * on a plan with a concurrency limit, a lease to release when the
     * request is done. */
    if ((d = check(pol, key)) == NULL)
        goto out;
    show("check", d);
    if (!kg_decision_allowed(d))
        goto out;
    if (kg_decision_lease(d) != NULL) {
        if (kg_decision_release(ctx, d) != KG_OK)
            goto out;
        printf("released lease %s\n", kg_decision_lease(d));
    }
    kg_decision_free(d);

    /* 4. No key: 401 with WWW-Authenticate. */
    if ((d = check(pol, NULL)) == NULL)
        goto out;
    show("no key", d);
    if (kg_decision_status(d) != 401 ||
        kg_decision_header_value(d, "WWW-Authenticate") == NULL)
        goto out;
    kg_decision_free(d);

    /* 5. Revoke: the record stays in the store, with status revoked. */
    if (kg_keys_revoke(pol, id, &diag) != KG_OK) {
        fprintf(stderr, "revoke: %s\n", kg_diag_format(&diag, buf, sizeof(buf)));
        goto out;
    }
    if ((d = check(pol, key)) == NULL)
        goto out;
    show("revoked", d);
    if (kg_decision_code(d) != KG_CODE_KEY_REVOKED)
        goto out;

    /* 6. The store's list has the key, revoked. */
    f.id = id;
    if (kg_keys_list(pol, find_key, &f, &diag) != KG_OK) {
        fprintf(stderr, "list: %s\n", kg_diag_format(&diag, buf, sizeof(buf)));
        goto out;
    }
    printf("listed %s: %s\n", id, f.status == 2 ? "revoked"
                                : f.status == 1 ? "active" : "missing");
    if (f.status != 2)
        goto out;
    ok = 1;
out:
    kg_decision_free(d);
    kg_record_unref(rec);
    /* Every policy before its context. */
    kg_policy_free(pol);
    kg_context_free(ctx);
    printf("%s\n", ok ? "embed: ok" : "embed: FAILED");
    return ok ? 0 : 1;
}
