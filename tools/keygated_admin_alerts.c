/*
 * keygated_admin_alerts.c - an account's alerts: the policy's rules as
 * they apply to it (with its own settings, kg_alert_override) and its
 * recent alerts from the outbox (include/keygate/alerts.h,
 * docs/alerts.md, docs/admin-api.md "Alerts").
 *
 * A policy without an alerts: section answers 501 not_implemented (the
 * dashboard then says alerts are not configured).  The outbox is not
 * indexed by account: the recent alerts are read newest first and those
 * of other accounts skipped, at most SCAN_MAX entries per request.
 */
#include "config.h"

#include <string.h>

#include <microhttpd.h>
#include <keygate/alerts.h>

#include "keygated_admin.h"

/* Outbox entries read per store call, and at most per request. */
#define SCAN_BATCH 200
#define SCAN_MAX 20000

int kgd_admin_have_alerts(kgd_admin_call *c, int *ret_r)
{
    if (kg_policy_alert_count(c->p) > 0)
        return 1;
    *ret_r = kgd_admin_error(c, 501, "not_implemented",
                             "alerts are not configured (the policy has no "
                             "alerts: section; see docs/alerts.md)", NULL);
    return 0;
}

/* ---- rules --------------------------------------------------------------- */

struct ov_find {
    const char *account_id;
    json_t *items;   /* the rules, by name */
};

/* Set a rule's threshold, enabled and webhook_url from the account's
 * override of it. */
static int apply_override(const kg_alert_override *o, void *ud)
{
    struct ov_find *f = ud;
    json_t *r;
    size_t i;

    if (strcmp(o->account_id, f->account_id) != 0)
        return 0;
    json_array_foreach(f->items, i, r) {
        if (strcmp(json_string_value(json_object_get(r, "name")), o->rule) != 0)
            continue;
        if (o->threshold < 0)
            json_object_set_new(r, "enabled", json_false());
        else if (o->threshold > 0)
            json_object_set_new(r, "threshold", json_real(o->threshold));
        if (o->url != NULL && o->url[0] != '\0')
            json_object_set_new(r, "webhook_url", json_string(o->url));
    }
    return 0;
}

int kgd_admin_alert_rules(kgd_admin_call *c, char *const *ids)
{
    const struct kg_outbox_ops *ops = NULL;
    void *store = NULL;
    struct ov_find f;
    kg_account *a = NULL;
    char cond[256];
    size_t i, n = kg_policy_alert_count(c->p);
    kg_diag d;
    kg_error e;
    int ret = MHD_NO;

    memset(&d, 0, sizeof(d));
    memset(&f, 0, sizeof(f));
    if ((a = kgd_admin_account_find(c, ids[0], &ret)) == NULL)
        return ret;
    if (!kgd_admin_have_alerts(c, &ret))
        goto out;
    f.account_id = kg_account_id(a);
    if ((f.items = json_array()) == NULL)
        goto out;
    for (i = 0; i < n; i++) {
        const char *kind = "", *name = kg_policy_alert(c->p, i, &kind, cond,
                                                       sizeof(cond));
        if (json_array_append_new(f.items, json_pack(
                "{s:s, s:s, s:s, s:b, s:n, s:n}", "name", name, "kind", kind,
                "condition", cond, "enabled", 1, "threshold",
                "webhook_url")) != 0)
            goto out;
    }
    /* The settings live in the usage store: without one there are none. */
    if (kg_policy_outbox(c->p, &ops, &store, &d) == KG_OK &&
        ops->override_list != NULL) {
        e = ops->override_list(store, apply_override, &f, &d);
        if (e != KG_OK) {
            ret = kgd_admin_kg_error(c, e, &d, NULL);
            goto out;
        }
    }
    ret = kgd_admin_json(c, 200, json_pack("{s:s, s:O}", "account_id",
                         f.account_id, "items", f.items), NULL);
out:
    json_decref(f.items);
    kg_account_unref(a);
    return ret;
}

/* ---- recent alerts ------------------------------------------------------- */

struct scan {
    const char *account_id;
    struct kgd_admin_idpage *pg;
    int64_t min_id;     /* the lowest id read: the next batch reads below */
    size_t read;        /* entries of this batch */
    int full;
};

/* "delivered", "pending", "failed" (the outbox says "sent"). */
static const char *state_name(int state)
{
    if (state == KG_OUTBOX_SENT)
        return "delivered";
    return kg_outbox_state_name(state) ? kg_outbox_state_name(state) : "pending";
}

static int add_alert(const kg_outbox_entry *e, void *ud)
{
    struct scan *s = ud;
    json_t *payload, *j;
    const char *msg;

    s->read++;
    if (s->min_id == 0 || e->id < s->min_id)
        s->min_id = e->id;
    if (strcmp(e->account_id ? e->account_id : "", s->account_id) != 0)
        return 0;
    /* The payload is the library's JSON; its message is what the
     * receiver was told. */
    payload = json_loads(e->payload ? e->payload : "", 0, NULL);
    msg = json_string_value(json_object_get(payload, "message"));
    j = json_pack("{s:I, s:o, s:s, s:s, s:s, s:s, s:i, s:i, s:s}",
                  "id", (json_int_t)e->id, "time", kgd_admin_time(e->created),
                  "rule", e->rule ? e->rule : "", "type", e->type ? e->type : "",
                  "notifier", e->notifier ? e->notifier : "",
                  "state", state_name(e->state), "attempts", e->attempts,
                  "last_status", e->last_status, "message", msg ? msg : "");
    json_decref(payload);
    if (kgd_admin_idpage_add(s->pg, j, e->id) != 0) {
        s->full = 1;
        return 1;
    }
    return 0;
}

int kgd_admin_alerts_list(kgd_admin_call *c, char *const *ids)
{
    const struct kg_outbox_ops *ops;
    void *store;
    struct kgd_admin_idpage pg;
    struct scan s;
    kg_account *a = NULL;
    int64_t before;
    size_t ask, scanned = 0;
    kg_diag d;
    kg_error e;
    int ret = MHD_NO;

    memset(&d, 0, sizeof(d));
    memset(&s, 0, sizeof(s));
    if (kgd_admin_idpage_start(c, &pg, &before, &ask, &ret) != 0)
        return ret;
    (void)ask;   /* filtered by account: read in batches instead */
    if ((a = kgd_admin_account_find(c, ids[0], &ret)) == NULL ||
        !kgd_admin_have_alerts(c, &ret))
        goto out;
    if ((e = kg_policy_outbox(c->p, &ops, &store, &d)) != KG_OK) {
        ret = kgd_admin_kg_error(c, e, &d, NULL);
        goto out;
    }
    s.account_id = kg_account_id(a);
    s.pg = &pg;
    while (!s.full && !pg.oom && scanned < SCAN_MAX) {
        s.read = 0;
        s.min_id = 0;
        e = ops->list(store, -1, before, SCAN_BATCH, add_alert, &s, &d);
        if (e != KG_OK && !s.full && !pg.oom) {
            ret = kgd_admin_kg_error(c, e, &d, NULL);
            goto out;
        }
        scanned += s.read;
        if (s.read < SCAN_BATCH || s.min_id <= 1)
            break;
        before = s.min_id;
    }
    ret = kgd_admin_idpage_answer(c, &pg);
out:
    json_decref(pg.items);
    kg_account_unref(a);
    return ret;
}
