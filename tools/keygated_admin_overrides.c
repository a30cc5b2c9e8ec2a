/*
 * keygated_admin_overrides.c - an account's own alert settings
 * (kg_alert_override, docs/alerts.md "Per-account rules") over the admin
 * API (docs/admin-api.md "Alerts"):
 *
 *   GET    /accounts/{id}/alerts/overrides         the settings, an ETag
 *   PUT    /accounts/{id}/alerts/overrides         replace them
 *   DELETE /accounts/{id}/alerts/overrides         remove them
 *   POST   /accounts/{id}/alerts/overrides/secret  a new signing secret
 *
 * The store keeps one row per (account, rule): a figure (0: the rule's
 * own, -1: off), a URL and the file its secret is read from.  The API
 * shows and sets them per account: {"rules": {"quota-80": 90, "spike":
 * -1}, "webhook_url": "https://..."}, the URL then on the row of every
 * rule of the policy (one receiver for all the account's alerts).  The
 * secret of a URL set here is the one keygated generates (keygated_
 * admin_webhook.c says why): answered once, by the PUT that first
 * needs it and by POST .../secret, never by a GET.  A URL kept as it
 * was keeps its secret (one `keygate alerts override --secret-file`
 * set, too).
 *
 * The rows are written one by one: a store that fails half way answers
 * its error and may leave some written (a PUT again sets them all).
 */
#include "config.h"

#include <string.h>
#include <unistd.h>

#include <microhttpd.h>
#include <keygate/alerts.h>
#include <keygate/webhook.h>

#include "keygated_admin.h"

/* What every route reads first. */
struct ov {
    kg_account *a;
    const char *account_id;
    const struct kg_outbox_ops *ops;
    void *store;
    json_t *rows;     /* the account's rows: [{rule, threshold, url, file}] */
    char gen[4096];   /* the file of its generated secret */
};

static int collect(const kg_alert_override *o, void *ud)
{
    struct ov *x = ud;
    if (strcmp(o->account_id, x->account_id) != 0)
        return 0;
    return json_array_append_new(x->rows, json_pack(
        "{s:s, s:f, s:s, s:s}", "rule", o->rule, "threshold", o->threshold,
        "url", o->url ? o->url : "", "file",
        o->secret_file ? o->secret_file : "")) != 0;
}

/* Read the account's rows again into x->rows: 0, or -1 after answering. */
static int read_rows(kgd_admin_call *c, struct ov *x, int *ret_r)
{
    kg_diag d;
    kg_error e;

    memset(&d, 0, sizeof(d));
    json_decref(x->rows);
    if ((x->rows = json_array()) == NULL) {
        *ret_r = MHD_NO;
        return -1;
    }
    if ((e = x->ops->override_list(x->store, collect, x, &d)) != KG_OK) {
        *ret_r = kgd_admin_kg_error(c, e, &d, NULL);
        return -1;
    }
    return 0;
}

/* The account, the policy's rules and the store's rows: 0, or -1 after
 * answering (404 for an account the caller may not see, 501 without
 * rules or a store that keeps settings). */
static int begin(kgd_admin_call *c, const char *id, struct ov *x, int *ret_r)
{
    kg_diag d;
    kg_error e;

    memset(x, 0, sizeof(*x));
    memset(&d, 0, sizeof(d));
    if ((x->a = kgd_admin_account_find(c, id, ret_r)) == NULL ||
        !kgd_admin_have_alerts(c, ret_r))
        return -1;
    x->account_id = kg_account_id(x->a);
    if ((e = kg_policy_outbox(c->p, &x->ops, &x->store, &d)) != KG_OK ||
        x->ops->override_list == NULL) {
        *ret_r = kgd_admin_error(c, 501, "not_implemented", "the accounts' "
                                 "alert settings are kept in the usage store: "
                                 "the policy has none that keeps them "
                                 "(docs/usage.md)", NULL);
        return -1;
    }
    if (kgd_admin_secret_path(x->account_id, x->gen, sizeof(x->gen)) != 0) {
        *ret_r = kgd_admin_error(c, 500, "internal_error", "the state folder's "
                                 "path is too long", NULL);
        return -1;
    }
    return read_rows(c, x, ret_r);
}

static void end(struct ov *x)
{
    json_decref(x->rows);
    kg_account_unref(x->a);
}

/* A write's error of the store (or of the secret's file): answered and
 * audited as refused.  Returns the answer. */
static int refused(kgd_admin_call *c, const struct ov *x, const char *action,
                   json_t *before, kg_error e, const kg_diag *d)
{
    int ret = kgd_admin_kg_error(c, e, d, NULL);
    kgd_admin_audit(c, action, x->account_id, x->account_id, before, NULL,
                    kgd_admin_code_of(e));
    return ret;
}

/* What a write route holds at its end: the secret wiped, the rest
 * freed.  Returns ret. */
static int done(int ret, char *secret, json_t *before, json_t *after,
                struct ov *x)
{
    if (secret != NULL)
        kg_wipe(secret, KG_WEBHOOK_SECRET_MAX);
    json_decref(before);
    json_decref(after);
    end(x);
    return ret;
}

/* The first row's with a URL: its URL and secret file (NULL if none). */
static json_t *receiver_row(json_t *rows)
{
    json_t *r;
    size_t i;
    json_array_foreach(rows, i, r) {
        if (json_string_value(json_object_get(r, "url"))[0] != '\0')
            return r;
    }
    return NULL;
}

/*
 * The resource: {"account_id", "rules": {rule: figure}, "webhook_url",
 * "secret_source": "generated" | "file" | null}.  Never a secret, nor
 * the path of its file (a customer has no business with the host's
 * files).
 */
static json_t *resource(const struct ov *x)
{
    json_t *rules = json_object(), *r, *rec = receiver_row(x->rows);
    const char *file = rec ? json_string_value(json_object_get(rec, "file")) : NULL;
    size_t i;

    if (rules == NULL)
        return NULL;
    json_array_foreach(x->rows, i, r) {
        double t = json_real_value(json_object_get(r, "threshold"));
        if (t != 0)
            json_object_set_new(rules, json_string_value(json_object_get(r, "rule")),
                                t == (json_int_t)t ? json_integer((json_int_t)t)
                                                   : json_real(t));
    }
    return json_pack("{s:s, s:o, s:s?, s:s?}", "account_id", x->account_id,
                     "rules", rules, "webhook_url",
                     rec ? json_string_value(json_object_get(rec, "url")) : NULL,
                     "secret_source", file == NULL || file[0] == '\0' ? NULL :
                     strcmp(file, x->gen) == 0 ? "generated" : "file");
}

/* Answer the resource (not stolen; plus the secret, once, if not
 * NULL) with its ETag. */
static int answer(kgd_admin_call *c, json_t *res, const char *secret)
{
    char etag[24];
    json_t *body = json_deep_copy(res);

    kgd_admin_etag(res, NULL, etag);
    if (body != NULL && secret != NULL)
        json_object_set_new(body, "signing_secret", json_string(secret));
    return body ? kgd_admin_json(c, 200, body, etag) : MHD_NO;
}

int kgd_admin_overrides_get(kgd_admin_call *c, char *const *ids)
{
    json_t *res = NULL;
    struct ov x;
    int ret = MHD_NO;

    if (begin(c, ids[0], &x, &ret) == 0 && (res = resource(&x)) != NULL)
        ret = answer(c, res, NULL);
    json_decref(res);
    end(&x);
    return ret;
}

/* ---- PUT ------------------------------------------------------------------ */

/* The kind of the policy's rule `name`, or NULL if it has none. */
static const char *rule_kind(kgd_admin_call *c, const char *name)
{
    size_t i, n = kg_policy_alert_count(c->p);
    for (i = 0; i < n; i++) {
        const char *kind = NULL;
        if (strcmp(kg_policy_alert(c->p, i, &kind, NULL, 0), name) == 0)
            return kind;
    }
    return NULL;
}

/* NULL if v is a figure a rule of `kind` takes (or -1: off), else what
 * it takes. */
static const char *figure_wrong(const char *kind, json_t *v)
{
    double f = json_number_value(v);

    if (!json_is_number(v))
        return "a number (-1: the rule off for this account)";
    if (f == -1)
        return NULL;
    if (strcmp(kind, "quota") == 0)
        return f >= 1 && f <= 100 ? NULL : "a percentage from 1 to 100, or -1 (off)";
    if (strcmp(kind, "spike") == 0)
        return f > 1 && f <= 1e6 ? NULL : "a factor over 1 (at most 1000000), or -1 (off)";
    if (strcmp(kind, "denied") == 0)
        return json_is_integer(v) && f >= 1 && f <= 1e6 ? NULL :
               "a count of denials from 1 to 1000000, or -1 (off)";
    if (strcmp(kind, "key_expires_within") == 0 || strcmp(kind, "key_unused_for") == 0)
        return f >= 1 && f <= 3650 ? NULL : "days from 1 to 3650, or -1 (off)";
    return "-1 (off): this rule takes no figure";
}

/* 1 if every figure of the body's rules is one its rule takes; else 0
 * after a 400 naming the field rules. */
static int rules_ok(kgd_admin_call *c, json_t *rules, int *ret_r)
{
    const char *name, *kind, *want;
    char msg[256];
    json_t *v;

    json_object_foreach(rules, name, v) {
        if ((kind = rule_kind(c, name)) == NULL) {
            snprintf(msg, sizeof(msg), "rules: the policy has no rule '%.64s' "
                     "(see GET .../alerts/rules)", name);
            *ret_r = kgd_admin_error(c, 400, "invalid_request", msg, "rules");
            return 0;
        }
        if ((want = figure_wrong(kind, v)) != NULL) {
            snprintf(msg, sizeof(msg), "rules: %.64s (%s) takes %s", name,
                     kind, want);
            *ret_r = kgd_admin_error(c, 400, "invalid_request", msg, "rules");
            return 0;
        }
    }
    return 1;
}

/* Each rule's row as the body says; rows of rules the policy no longer
 * has removed.  KG_OK or the store's error. */
static kg_error write_rows(kgd_admin_call *c, struct ov *x, json_t *rules,
                           const char *url, const char *file, kg_diag *d)
{
    size_t i, n = kg_policy_alert_count(c->p);
    json_t *r;
    kg_error e = KG_OK;

    for (i = 0; i < n && e == KG_OK; i++) {
        kg_alert_override o;
        memset(&o, 0, sizeof(o));
        o.account_id = x->account_id;
        o.rule = kg_policy_alert(c->p, i, NULL, NULL, 0);
        o.threshold = json_number_value(json_object_get(rules, o.rule));
        o.url = url;
        o.secret_file = url ? file : NULL;
        if (o.threshold == 0 && url == NULL) {
            e = x->ops->override_delete(x->store, o.account_id, o.rule, d);
            if (e == KG_ERR_NOT_FOUND)
                e = KG_OK;
        } else {
            e = x->ops->override_put(x->store, &o, d);
        }
    }
    json_array_foreach(x->rows, i, r) {
        const char *rule = json_string_value(json_object_get(r, "rule"));
        if (e == KG_OK && rule_kind(c, rule) == NULL)
            e = x->ops->override_delete(x->store, x->account_id, rule, d);
    }
    return e;
}

int kgd_admin_overrides_put(kgd_admin_call *c, char *const *ids)
{
    static const struct kgd_field fields[] = {
        { "rules", KGD_F_OBJECT, 0 },
        { "webhook_url", KGD_F_STRING_NULL, 0 },
    };
    char secret[KG_WEBHOOK_SECRET_MAX] = "";
    const char *url, *file = NULL;
    json_t *before = NULL, *after = NULL, *rules, *rec;
    struct ov x;
    kg_diag d;
    kg_error e;
    int ret = MHD_NO, made = 0;

    memset(&d, 0, sizeof(d));
    if (begin(c, ids[0], &x, &ret) != 0)
        goto out;
    rules = json_object_get(c->body, "rules");
    url = kgd_admin_str(c, "webhook_url");
    if (kgd_admin_body(c, fields, 2, &ret) != 0 ||
        (rules != NULL && !rules_ok(c, rules, &ret)) ||
        (url != NULL && !kgd_admin_webhook_url_ok(c, url, &ret))) {
        kgd_admin_audit(c, "alerts.overrides.update", x.account_id,
                        x.account_id, NULL, NULL, "invalid_request");
        goto out;
    }
    if ((before = resource(&x)) == NULL)
        goto out;
    if (!kgd_admin_if_match(c, before, NULL, &ret)) {
        kgd_admin_audit(c, "alerts.overrides.update", x.account_id,
                        x.account_id, before, NULL, "precondition_failed");
        goto out;
    }
    /* The same URL keeps its secret; another gets the generated one,
     * made now if the account has none yet. */
    rec = receiver_row(x.rows);
    if (url != NULL && rec != NULL &&
        strcmp(json_string_value(json_object_get(rec, "url")), url) == 0 &&
        json_string_value(json_object_get(rec, "file"))[0] != '\0')
        file = json_string_value(json_object_get(rec, "file"));
    else if (url != NULL) {
        file = x.gen;
        if (access(x.gen, R_OK) != 0) {
            if ((e = kgd_admin_secret_new(x.gen, secret, &d)) != KG_OK) {
                ret = refused(c, &x, "alerts.overrides.update", before, e, &d);
                goto out;
            }
            made = 1;
        }
    }
    if ((e = write_rows(c, &x, rules, url, file, &d)) != KG_OK) {
        ret = refused(c, &x, "alerts.overrides.update", before, e, &d);
        goto out;
    }
    if (read_rows(c, &x, &ret) != 0 || (after = resource(&x)) == NULL)
        goto out;
    kgd_admin_audit(c, "alerts.overrides.update", x.account_id, x.account_id,
                    before, after, "ok");
    ret = answer(c, after, made ? secret : NULL);
out:
    return done(ret, secret, before, after, &x);
}

/* ---- DELETE, the secret ---------------------------------------------------- */

int kgd_admin_overrides_delete(kgd_admin_call *c, char *const *ids)
{
    json_t *before = NULL, *r;
    struct ov x;
    size_t i;
    kg_diag d;
    kg_error e = KG_OK;
    int ret = MHD_NO;

    memset(&d, 0, sizeof(d));
    if (begin(c, ids[0], &x, &ret) != 0 || (before = resource(&x)) == NULL)
        goto out;
    if (!kgd_admin_if_match(c, before, NULL, &ret)) {
        kgd_admin_audit(c, "alerts.overrides.delete", x.account_id,
                        x.account_id, before, NULL, "precondition_failed");
        goto out;
    }
    /* The generated secret's file stays: alerts still pending for the
     * old receiver are signed with it, and a later URL takes it again. */
    json_array_foreach(x.rows, i, r) {
        if (e == KG_OK)
            e = x.ops->override_delete(x.store, x.account_id,
                                       json_string_value(json_object_get(r, "rule")), &d);
        if (e == KG_ERR_NOT_FOUND)   /* removed meanwhile */
            e = KG_OK;
    }
    if (e != KG_OK) {
        ret = refused(c, &x, "alerts.overrides.delete", before, e, &d);
        goto out;
    }
    kgd_admin_audit(c, "alerts.overrides.delete", x.account_id, x.account_id,
                    before, NULL, "ok");
    ret = kgd_admin_json(c, 204, NULL, NULL);
out:
    return done(ret, NULL, before, NULL, &x);
}

/*
 * A new generated secret, answered once: its file is replaced (the
 * sender reads it at each attempt, so the next alert is signed with
 * it), and a receiver whose secret was another file takes it.
 */
int kgd_admin_overrides_secret(kgd_admin_call *c, char *const *ids)
{
    char secret[KG_WEBHOOK_SECRET_MAX] = "";
    json_t *before = NULL, *after = NULL, *r;
    struct ov x;
    size_t i;
    kg_diag d;
    kg_error e;
    int ret = MHD_NO;

    memset(&d, 0, sizeof(d));
    if (begin(c, ids[0], &x, &ret) != 0 || (before = resource(&x)) == NULL)
        goto out;
    if (c->body != NULL && json_object_size(c->body) > 0) {
        ret = kgd_admin_error(c, 400, "invalid_request", "this route takes no "
                              "fields", json_object_iter_key(json_object_iter(c->body)));
        goto out;
    }
    e = kgd_admin_secret_new(x.gen, secret, &d);
    json_array_foreach(x.rows, i, r) {
        kg_alert_override o;
        const char *url = json_string_value(json_object_get(r, "url"));
        if (e != KG_OK || url[0] == '\0' ||
            strcmp(json_string_value(json_object_get(r, "file")), x.gen) == 0)
            continue;
        memset(&o, 0, sizeof(o));
        o.account_id = x.account_id;
        o.rule = json_string_value(json_object_get(r, "rule"));
        o.threshold = json_real_value(json_object_get(r, "threshold"));
        o.url = url;
        o.secret_file = x.gen;
        e = x.ops->override_put(x.store, &o, &d);
    }
    if (e != KG_OK) {
        ret = refused(c, &x, "alerts.secret.rotate", before, e, &d);
        goto out;
    }
    if (read_rows(c, &x, &ret) != 0 || (after = resource(&x)) == NULL)
        goto out;
    /* The record says a secret was made, never which. */
    json_object_set_new(after, "secret_rotated", json_true());
    kgd_admin_audit(c, "alerts.secret.rotate", x.account_id, x.account_id,
                    before, after, "ok");
    json_object_del(after, "secret_rotated");
    ret = answer(c, after, secret);
out:
    return done(ret, secret, before, after, &x);
}
