/*
 * scope - account plugin: the key must hold the permission that the
 * route needs.
 *
 * Options:
 *   routes:                       first match wins, in order, e.g.
 *     "POST /v1/jobs": jobs:write
 *     "GET /v1/jobs/STAR": jobs:read        (STAR written as the * glob)
 *   unmapped: deny | allow        routes no rule matches (default deny)
 *   (conf/keygate.yaml has a complete example)
 *
 * A rule is "METHOD PATH": METHOD is an HTTP method or *, PATH a pattern
 * where * matches within one segment and ** across segments; the query
 * string is not part of the match.
 *
 * The path is the request's normalized one (kg_request_set_target).  A
 * request that names no method and path fails (400 invalid_request); one
 * about the key itself (keygated's /whoami) passes.
 *
 * Key permissions: "jobs:read" exactly, "jobs:*" (every operation on
 * jobs), "*:read" (read anything: a read-only key) and "*" (everything).
 * Missing permission: 403 insufficient_permissions.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <keygate/plugin.h>

struct rule {
    char *method;   /* NULL: any */
    char *path;
    char *perm;
};

struct scope {
    struct rule *rules;
    size_t n;
    int allow_unmapped;
};

static void scope_destroy(void *inst)
{
    struct scope *s = inst;
    size_t i;
    if (s == NULL)
        return;
    for (i = 0; i < s->n; i++) {
        free(s->rules[i].method);
        free(s->rules[i].path);
        free(s->rules[i].perm);
    }
    free(s->rules);
    free(s);
}

static kg_error scope_create(kg_opts *o, void **inst_r)
{
    struct scope *s = calloc(1, sizeof(*s));
    kg_opts *routes;
    const char *unmapped;
    size_t i, n;
    kg_error e = KG_OK;

    if (s == NULL)
        return KG_ERR_NOMEM;
    if ((e = kg_opts_get_string(o, "unmapped", "deny", &unmapped)) != KG_OK)
        goto fail;
    if (strcmp(unmapped, "deny") == 0) {
        s->allow_unmapped = 0;
    } else if (strcmp(unmapped, "allow") == 0) {
        s->allow_unmapped = 1;
    } else {
        e = kg_opts_error(o, "unmapped", "unmapped must be deny or allow, not '%s'", unmapped);
        goto fail;
    }
    routes = kg_opts_child(o, "routes");
    n = routes ? kg_opts_key_count(routes) : 0;
    s->rules = calloc(n ? n : 1, sizeof(*s->rules));
    if (s->rules == NULL) {
        e = KG_ERR_NOMEM;
        goto fail;
    }
    for (i = 0; i < n; i++) {
        const char *k = kg_opts_key(routes, i), *perm, *sp;
        struct rule *r = &s->rules[s->n];
        if ((e = kg_opts_get_string(routes, k, NULL, &perm)) != KG_OK)
            goto fail;
        sp = strchr(k, ' ');
        if (sp == NULL || sp == k || sp[1] != '/') {
            e = kg_opts_error(routes, k, "route '%s' must be \"METHOD /path\" "
                              "(METHOD may be *)", k);
            goto fail;
        }
        if (perm == NULL || *perm == '\0') {
            e = kg_opts_error(routes, k, "route '%s' needs a permission", k);
            goto fail;
        }
        r->method = (sp - k == 1 && k[0] == '*') ? NULL : strndup(k, (size_t)(sp - k));
        r->path = strdup(sp + 1);
        r->perm = strdup(perm);
        s->n++;
        if ((r->method == NULL && !(sp - k == 1 && k[0] == '*')) || r->path == NULL ||
            r->perm == NULL) {
            e = KG_ERR_NOMEM;
            goto fail;
        }
    }
    *inst_r = s;
    return KG_OK;
fail:
    scope_destroy(s);
    return e;
}

/* Glob over a path: * within a segment, ** across segments. */
static int match(const char *pat, const char *p, const char *end)
{
    while (*pat) {
        if (pat[0] == '*' && pat[1] == '*') {
            pat += 2;
            for (;; p++) {
                if (match(pat, p, end))
                    return 1;
                if (p == end)
                    return 0;
            }
        }
        if (*pat == '*') {
            pat++;
            for (;; p++) {
                if (match(pat, p, end))
                    return 1;
                if (p == end || *p == '/')
                    return 0;
            }
        }
        if (p == end || *pat != *p)
            return 0;
        pat++;
        p++;
    }
    return p == end;
}

/* The account's ceiling (docs/policy.md "Accounts"): an account with
 * permissions grants only what one of them grants; one without, all. */
static int account_grants(const kg_account *a, const char *need)
{
    size_t j, n = a ? kg_account_permission_count(a) : 0;
    for (j = 0; j < n; j++)
        if (kg_permission_grants(kg_account_permission(a, j), need))
            return 1;
    return n == 0;
}

static kg_result scope_check(void *inst, kg_call *call)
{
    struct scope *s = inst;
    const kg_request *req = kg_call_request(call);
    const kg_record *rec = kg_call_record(call);
    const char *method = kg_request_method(req), *path = kg_request_path(req);
    const char *end = path + strcspn(path, "?#");
    char msg[256];
    size_t i, j;

    switch (kg_request_target_kind(req)) {
    case KG_TARGET_ROUTE:
        break;
    case KG_TARGET_KEY:
        /* Not an operation of the API (keygated's /whoami): no route,
         * nothing for the key's permissions to cover. */
        return KG_RESULT_OK;
    default:
        /* No operation named: never taken for "GET /". */
        kg_call_deny(call, KG_CODE_INVALID_REQUEST, "the request names no "
                     "method and path to check the key's permissions against");
        return KG_RESULT_FAIL;
    }
    for (i = 0; i < s->n; i++) {
        const struct rule *r = &s->rules[i];
        if (r->method != NULL && strcmp(r->method, method) != 0)
            continue;
        if (!match(r->path, path, end))
            continue;
        for (j = 0; rec && j < kg_record_permission_count(rec); j++) {
            if (!kg_permission_grants(kg_record_permission(rec, j), r->perm))
                continue;
            if (account_grants(kg_call_account(call), r->perm))
                return KG_RESULT_OK;
            snprintf(msg, sizeof(msg), "this key's account lacks the permission "
                     "%s needed for %s %.*s", r->perm, method,
                     (int)(end - path), path);
            kg_call_deny(call, KG_CODE_INSUFFICIENT_PERMISSIONS, msg);
            return KG_RESULT_FAIL;
        }
        snprintf(msg, sizeof(msg), "this key lacks the permission %s needed "
                 "for %s %.*s", r->perm, method, (int)(end - path), path);
        kg_call_deny(call, KG_CODE_INSUFFICIENT_PERMISSIONS, msg);
        return KG_RESULT_FAIL;
    }
    if (s->allow_unmapped)
        return KG_RESULT_OK;
    snprintf(msg, sizeof(msg), "%s %.*s is not an operation this key may use",
             method, (int)(end - path), path);
    kg_call_deny(call, KG_CODE_INSUFFICIENT_PERMISSIONS, msg);
    return KG_RESULT_FAIL;
}

static const struct kg_account_ops scope_ops = { .check = scope_check };

KG_PLUGIN_DEFINE(scope) = {
    KG_PLUGIN_HEADER,
    .kind = KG_PLUGIN_ACCOUNT,
    .name = "scope",
    .description = "the key's permissions against the permission each route needs",
    .create = scope_create,
    .destroy = scope_destroy,
    .account = &scope_ops,
};
