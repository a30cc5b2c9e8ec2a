/*
 * keygated_admin_usage.c - usage, events and the heaviest users, read
 * from the policy's usage store (include/keygate/usage.h, docs/usage.md).
 *
 * Usage is answered as `keygate usage --json` prints it: a bucket per
 * minute, hour or day with the allowed count and the denied ones by
 * code, and their total.  A policy without a usage: section answers 501.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <microhttpd.h>
#include <keygate/usage.h>

#include "keygated_admin.h"

static const char *arg(kgd_admin_call *c, const char *name)
{
    return MHD_lookup_connection_value(c->conn, MHD_GET_ARGUMENT_KIND, name);
}

/* ---- buckets ----------------------------------------------------------- */

struct buckets {
    json_t *list, *cur, *total;
    int64_t cur_start;
    int oom;
};

/* Add count to obj's "allowed", or to its "denied"[code]. */
static void add_count(json_t *obj, kg_code code, int64_t count)
{
    json_t *denied = json_object_get(obj, "denied"), *v;
    const char *name;

    if (code == KG_CODE_NONE) {
        v = json_object_get(obj, "allowed");
        json_integer_set(v, json_integer_value(v) + count);
        return;
    }
    name = kg_usage_code_name(code);
    v = json_object_get(denied, name);
    if (v == NULL)
        json_object_set_new(denied, name, json_integer(count));
    else
        json_integer_set(v, json_integer_value(v) + count);
}

static int add_row(const kg_usage_row *r, void *ud)
{
    struct buckets *b = ud;

    if (b->cur == NULL || r->start != b->cur_start) {
        b->cur = json_pack("{s:o, s:I, s:{}}", "start", kgd_admin_time(r->start),
                           "allowed", (json_int_t)0, "denied");
        if (b->cur == NULL || json_array_append_new(b->list, b->cur) != 0) {
            b->oom = 1;
            return 1;
        }
        b->cur_start = r->start;
    }
    add_count(b->cur, r->code, r->count);
    add_count(b->total, r->code, r->count);
    return 0;
}

static int usage(kgd_admin_call *c, const char *account, const char *key)
{
    const char *by = arg(c, "by");
    kg_usage_query q;
    struct buckets b;
    json_t *out;
    kg_diag d;
    kg_error e;
    int64_t now = (int64_t)time(NULL);
    int ret = MHD_NO;

    memset(&q, 0, sizeof(q));
    memset(&b, 0, sizeof(b));
    memset(&d, 0, sizeof(d));
    if (by == NULL || strcmp(by, "hour") == 0)
        q.span = 3600, by = "hour";
    else if (strcmp(by, "minute") == 0)
        q.span = 60;
    else if (strcmp(by, "day") == 0)
        q.span = 86400;
    else
        return kgd_admin_error(c, 400, "invalid_request",
                               "by must be minute, hour or day", "by");
    if (kgd_admin_time_arg(c, "since", now - 86400, &q.since, &ret) != 0 ||
        kgd_admin_time_arg(c, "until", now + 1, &q.until, &ret) != 0)
        return ret;
    if (q.until <= q.since)
        return kgd_admin_error(c, 400, "invalid_request",
                               "until must come after since", "until");
    q.account_id = account;
    q.key_id = key;
    b.list = json_array();
    b.total = json_pack("{s:I, s:{}}", "allowed", (json_int_t)0, "denied");
    if (b.list == NULL || b.total == NULL)
        goto out;
    e = kg_usage_query_rows(c->p, &q, add_row, &b, &d);
    if (b.oom)
        goto out;
    if (e != KG_OK) {
        ret = kgd_admin_kg_error(c, e, &d, NULL);
        goto out;
    }
    out = json_pack("{s:s?, s:s?, s:s, s:o, s:o, s:O, s:O}", "account", account,
                    "key", key, "by", by, "since", kgd_admin_time(q.since),
                    "until", kgd_admin_time(q.until), "buckets", b.list,
                    "total", b.total);
    ret = out ? kgd_admin_json(c, 200, out, NULL) : MHD_NO;
out:
    json_decref(b.list);
    json_decref(b.total);
    return ret;
}

int kgd_admin_account_usage(kgd_admin_call *c, char *const *ids)
{
    int ret = MHD_NO;
    kg_account *a = kgd_admin_account_find(c, ids[0], &ret);

    if (a == NULL)
        return ret;
    ret = usage(c, kg_account_id(a), NULL);
    kg_account_unref(a);
    return ret;
}

int kgd_admin_key_usage(kgd_admin_call *c, char *const *ids)
{
    kg_record *r = NULL;
    kg_diag d;
    kg_error e;
    int ret;

    memset(&d, 0, sizeof(d));
    e = kg_keys_get(c->p, ids[0], &r, &d);
    if (e == KG_OK && !kgd_admin_may_see(c, kg_record_account_id(r)))
        e = KG_ERR_NOT_FOUND;
    if (e == KG_ERR_NOT_FOUND)
        ret = kgd_admin_error(c, 404, "not_found", "no such key", NULL);
    else if (e != KG_OK)
        ret = kgd_admin_kg_error(c, e, &d, NULL);
    else
        ret = usage(c, kg_record_account_id(r), kg_record_id(r));
    kg_record_unref(r);
    return ret;
}

/* ---- events ------------------------------------------------------------ */

static int add_event(const kg_usage_event *e, void *ud)
{
    char ts[40];

    kg_time_format(e->time_ms / 1000, ts);
    /* ISO time with milliseconds: "...T12:00:00.123Z" */
    if (strlen(ts) > 1 && ts[strlen(ts) - 1] == 'Z')
        snprintf(ts + strlen(ts) - 1, sizeof(ts) - strlen(ts) + 1, ".%03dZ",
                 (int)(e->time_ms % 1000));
    return kgd_admin_idpage_add(ud, json_pack(
        "{s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:i, s:s, s:s}",
        "id", (json_int_t)e->id, "time", ts,
        "key_id", e->key_id ? e->key_id : "",
        "key_prefix", e->key_prefix ? e->key_prefix : "",
        "client", e->client ? e->client : "",
        "method", e->method ? e->method : "",
        "path", e->path ? e->path : "", "status", e->status,
        "code", kg_usage_code_name(e->code),
        "decided_by", e->decided_by ? e->decided_by : ""), e->id);
}

int kgd_admin_account_events(kgd_admin_call *c, char *const *ids)
{
    const char *status = arg(c, "status"), *code = arg(c, "code");
    const char *key = arg(c, "key");
    kg_event_query q;
    struct kgd_admin_idpage pg;
    kg_account *a = NULL;
    int64_t since;
    kg_diag d;
    kg_error e;
    int ret = MHD_NO;

    memset(&q, 0, sizeof(q));
    memset(&d, 0, sizeof(d));
    if (kgd_admin_idpage_start(c, &pg, &q.before_id, &q.limit, &ret) != 0)
        return ret;
    if (status != NULL) {
        int n = 0;
        if (strlen(status) == 3 && status[1] == 'x' && status[2] == 'x' &&
            status[0] >= '1' && status[0] <= '5') {
            q.status_min = (status[0] - '0') * 100;
            q.status_max = q.status_min + 99;
        } else if (sscanf(status, "%3d", &n) == 1 && n >= 100 && n <= 599 &&
                   strlen(status) == 3) {
            q.status_min = q.status_max = n;
        } else {
            ret = kgd_admin_error(c, 400, "invalid_request", "status must be "
                                  "a status (429) or a class (4xx)", "status");
            goto out;
        }
    }
    q.any_code = 1;
    if (code != NULL) {
        if (kg_usage_code_parse(code, &q.code) != KG_OK) {
            ret = kgd_admin_error(c, 400, "invalid_request", "code must be a "
                                  "decision's code (rate_limited, "
                                  "key_revoked, ...) or allowed", "code");
            goto out;
        }
        q.any_code = 0;
    }
    if (key != NULL && *key == '\0') {
        ret = kgd_admin_error(c, 400, "invalid_request", "key must be a key "
                              "id", "key");
        goto out;
    }
    if (kgd_admin_time_arg(c, "since", 0, &since, &ret) != 0)
        goto out;
    q.since_ms = since * 1000;
    if ((a = kgd_admin_account_find(c, ids[0], &ret)) == NULL)
        goto out;
    /* The key filters within the account: a key of another account (or
     * none) finds no event, the same answer whoever asks, so ids cannot
     * be probed, and a deleted key's events are still found
     * (docs/admin-api.md "Resources"). */
    q.account_id = kg_account_id(a);
    q.key_id = key;
    e = kg_usage_events(c->p, &q, add_event, &pg, &d);
    if (e != KG_OK && !pg.oom)
        ret = kgd_admin_kg_error(c, e, &d, NULL);
    else
        ret = kgd_admin_idpage_answer(c, &pg);
out:
    json_decref(pg.items);
    kg_account_unref(a);
    return ret;
}

/* ---- top --------------------------------------------------------------- */

static int add_top(const char *account_id, const char *key_id, int64_t allowed,
                   int64_t denied, void *ud)
{
    json_t *items = ud;
    json_t *j = json_pack("{s:s, s:s?, s:I, s:I}", "account_id",
                          account_id ? account_id : "", "key_id",
                          key_id && *key_id ? key_id : NULL,
                          "allowed", (json_int_t)allowed,
                          "denied", (json_int_t)denied);
    return j == NULL || json_array_append_new(items, j) != 0;
}

int kgd_admin_usage_top(kgd_admin_call *c, char *const *ids)
{
    const char *by = arg(c, "by"), *l = arg(c, "limit");
    int64_t now = (int64_t)time(NULL), since, until;
    size_t limit = 10;
    json_t *items;
    kg_diag d;
    kg_error e;
    int ret = MHD_NO, by_key = 0;
    (void)ids;

    memset(&d, 0, sizeof(d));
    if (by != NULL && strcmp(by, "key") == 0)
        by_key = 1;
    else if (by != NULL && strcmp(by, "account") != 0)
        return kgd_admin_error(c, 400, "invalid_request",
                               "by must be account or key", "by");
    if (l != NULL) {
        char *end;
        unsigned long v = strtoul(l, &end, 10);
        if (*l == '\0' || *end != '\0' || *l == '-' || v < 1 || v > KGD_ADMIN_PAGE_MAX)
            return kgd_admin_error(c, 400, "invalid_request",
                                   "limit must be a number from 1 to 500", "limit");
        limit = v;
    }
    if (kgd_admin_time_arg(c, "since", now - 86400, &since, &ret) != 0 ||
        kgd_admin_time_arg(c, "until", now + 1, &until, &ret) != 0)
        return ret;
    if ((items = json_array()) == NULL)
        return MHD_NO;
    e = kg_usage_top(c->p, by_key, since, until, limit, add_top, items, &d);
    if (e != KG_OK) {
        json_decref(items);
        return kgd_admin_kg_error(c, e, &d, NULL);
    }
    return kgd_admin_json(c, 200, json_pack("{s:s, s:o, s:o, s:o}", "by",
                          by_key ? "key" : "account", "since",
                          kgd_admin_time(since), "until", kgd_admin_time(until),
                          "items", items), NULL);
}
