/*
 * audittest.h - the audit log's scenario, run against every store that
 * keeps one (check_audit: the file store's JSON lines; check_sql_sqlite
 * and check_sql_postgres: keygate_audit): a create-rotate-revoke
 * sequence audited as the CLI and the admin API audit it gives three
 * records with the right before/after, newest first, and neither key
 * nor hash anywhere in what the store keeps; a refused change is kept
 * with its result; the filters and the cursor; the rotation's link kept
 * by the store.
 */
#ifndef KEYGATE_AUDITTEST_H
#define KEYGATE_AUDITTEST_H

#include <keygate/audit.h>

#include "testutil.h"

/* Everything the store keeps of its audit log, as text (malloc()ed). */
typedef char *(*at_dump_fn)(void *ud);

/* A record appended as a caller does after a change (actor cli:test). */
static TU_UNUSED void at_append(kg_policy *p, const char *action,
                                const char *target, const kg_record *before,
                                const kg_record *after, kg_error result)
{
    const kg_record *any = after ? after : before;
    char *changes = kg_audit_changes_records(before, after);
    kg_audit_record r;
    kg_diag d;
    kg_error e;

    memset(&r, 0, sizeof(r));
    memset(&d, 0, sizeof(d));
    r.actor = "cli:test";
    r.client = "127.0.0.1";
    r.action = action;
    r.target = target ? target : kg_record_id(any);
    r.account_id = any ? kg_record_account_id(any) : NULL;
    r.changes = changes;
    r.result = kg_audit_result(result);
    e = kg_audit_append(p, &r, &d);
    ck_assert_msg(e == KG_OK, "audit append %s: %s: %s", action, kg_strerror(e),
                  d.message);
    free(changes);
}

/* The records of q, copied out as their JSON (at most 16). */
struct at_list {
    size_t n;
    int64_t ids[16];
    char *json[16];
};

static TU_UNUSED int at_collect(const kg_audit_record *r, void *ud)
{
    struct at_list *l = ud;
    ck_assert_uint_lt(l->n, 16);
    l->ids[l->n] = r->id;
    l->json[l->n++] = kg_audit_record_to_json(r);
    return 0;
}

static TU_UNUSED void at_query(kg_policy *p, const kg_audit_query *q,
                               struct at_list *l)
{
    kg_diag d;
    kg_error e;
    memset(l, 0, sizeof(*l));
    memset(&d, 0, sizeof(d));
    e = kg_audit_query_run(p, q, at_collect, l, &d);
    ck_assert_msg(e == KG_OK, "audit query: %s: %s", kg_strerror(e), d.message);
}

static TU_UNUSED void at_free(struct at_list *l)
{
    size_t i;
    for (i = 0; i < l->n; i++)
        free(l->json[i]);
    l->n = 0;
}

/* json holds needle (a fragment of the record's JSON). */
#define AT_HAS(json, needle) \
    ck_assert_msg(strstr((json), (needle)) != NULL, "%s\n  lacks %s", (json), (needle))

/* The hash of a key, in hex. */
static TU_UNUSED void at_hash_hex(const char *key, char hex[2 * KG_HASH_LEN + 1])
{
    unsigned char h[KG_HASH_LEN];
    kg_key_hash(key, strlen(key), h);
    kg_hash_to_hex(h, hex);
}

/*
 * The scenario.  `clk` is the context's clock (advanced a second
 * between changes, so that --since has something to tell apart).
 */
static TU_UNUSED void at_scenario(kg_policy *p, kg_context *ctx, tu_clock *clk, at_dump_fn dump,
                                  void *dump_ud)
{
    char key1[KG_KEY_MAX], key2[KG_KEY_MAX], hex[2 * KG_HASH_LEN + 1];
    char id1[64], id2[64], acct[128], frag[512], *all;
    kg_record *r1 = NULL, *before = NULL, *after = NULL, *r2 = NULL;
    kg_audit_query q;
    struct at_list l;
    int64_t t_rotate;
    kg_diag d;
    kg_error e;

    memset(&d, 0, sizeof(d));
    /* create */
    tu_key_new(p, "free", "audited", key1, &r1);
    snprintf(id1, sizeof(id1), "%s", kg_record_id(r1));
    kg_record_unref(r1);
    ck_assert_int_eq(kg_keys_get(p, id1, &r1, &d), KG_OK);
    snprintf(acct, sizeof(acct), "%s", kg_record_account_id(r1) ? kg_record_account_id(r1) : "");
    at_append(p, "key.create", NULL, NULL, r1, KG_OK);
    tu_clock_advance(clk, 1);
    /* rotate, with a grace: the old key stays, linked to the new one */
    t_rotate = kg_context_now(ctx) / 1000;
    before = r1;
    e = kg_keys_rotate(p, id1, 3600, key2, sizeof(key2), &r2, &d);
    ck_assert_msg(e == KG_OK, "rotate: %s", d.message);
    snprintf(id2, sizeof(id2), "%s", kg_record_id(r2));
    ck_assert_int_eq(kg_keys_get(p, id1, &after, &d), KG_OK);
    at_append(p, "key.rotate", id1, before, after, KG_OK);
    /* the link, as the store keeps it */
    ck_assert_str_eq(kg_record_replaced_by(after), id2);
    ck_assert_ptr_null(kg_record_replaces(after));
    ck_assert_str_eq(kg_record_state(after, kg_context_now(ctx) / 1000000),
                     "rotating");
    kg_record_unref(r2);
    ck_assert_int_eq(kg_keys_get(p, id2, &r2, &d), KG_OK);
    ck_assert_str_eq(kg_record_replaces(r2), id1);
    ck_assert_ptr_null(kg_record_replaced_by(r2));
    ck_assert_str_eq(kg_record_state(r2, kg_context_now(ctx) / 1000000),
                     "active");
    {
        char *j = kg_record_to_json_at(after, kg_context_now(ctx) / 1000000);
        snprintf(frag, sizeof(frag), "\"status\":\"rotating\",\"replaced_by\":\"%s\"", id2);
        AT_HAS(j, frag);
        free(j);
        j = kg_record_to_json(r2);
        snprintf(frag, sizeof(frag), "\"replaces\":\"%s\"", id1);
        AT_HAS(j, frag);
        free(j);
    }
    kg_record_unref(before);
    kg_record_unref(after);
    tu_clock_advance(clk, 1);
    /* revoke the new key */
    before = kg_record_dup(r2);
    kg_record_set_status(r2, KG_STATUS_REVOKED);
    ck_assert_int_eq(kg_keys_update(p, r2, &d), KG_OK);
    at_append(p, "key.revoke", NULL, before, r2, KG_OK);
    kg_record_unref(before);
    tu_clock_advance(clk, 1);
    /* a refused change: an update of a key that is not there */
    {
        kg_record *ghost = kg_record_dup(r2);
        kg_record_set_id(ghost, "k_0000000000000000");
        kg_record_set_name(ghost, "ghost");
        e = kg_keys_update(p, ghost, &d);
        ck_assert_int_eq(e, KG_ERR_NOT_FOUND);
        at_append(p, "key.update", NULL, r2, ghost, e);
        kg_record_unref(ghost);
    }
    kg_record_unref(r2);

    /* Four records, newest first; the three of the sequence with the
     * right before and after. */
    memset(&q, 0, sizeof(q));
    at_query(p, &q, &l);
    ck_assert_uint_eq(l.n, 4);
    ck_assert(l.ids[0] > l.ids[1] && l.ids[1] > l.ids[2] && l.ids[2] > l.ids[3]);
    AT_HAS(l.json[0], "\"action\":\"key.update\"");
    AT_HAS(l.json[0], "\"target\":\"k_0000000000000000\"");
    AT_HAS(l.json[0], "\"result\":\"not_found\"");
    AT_HAS(l.json[0], "\"name\":{\"before\":\"audited\",\"after\":\"ghost\"}");
    AT_HAS(l.json[1], "\"action\":\"key.revoke\"");
    snprintf(frag, sizeof(frag), "\"target\":\"%s\"", id2);
    AT_HAS(l.json[1], frag);
    AT_HAS(l.json[1], "\"changes\":{\"status\":{\"before\":\"active\",\"after\":\"revoked\"}}");
    AT_HAS(l.json[1], "\"result\":\"ok\"");
    AT_HAS(l.json[1], "\"actor\":\"cli:test\"");
    AT_HAS(l.json[1], "\"client\":\"127.0.0.1\"");
    AT_HAS(l.json[2], "\"action\":\"key.rotate\"");
    snprintf(frag, sizeof(frag), "\"replaced_by\":{\"before\":null,\"after\":\"%s\"}", id2);
    AT_HAS(l.json[2], frag);
    AT_HAS(l.json[2], "\"expires\":{\"before\":null,\"after\":\"");
    ck_assert_ptr_null(strstr(l.json[2], "\"status\""));   /* not revoked: a grace */
    ck_assert_ptr_null(strstr(l.json[2], "\"name\""));     /* unchanged: not there */
    AT_HAS(l.json[3], "\"action\":\"key.create\"");
    AT_HAS(l.json[3], "\"name\":{\"before\":null,\"after\":\"audited\"}");
    snprintf(frag, sizeof(frag), "\"account_id\":\"%s\"", acct);
    AT_HAS(l.json[3], frag);
    at_free(&l);

    /* Neither key nor its hash anywhere in what the store keeps. */
    all = dump(dump_ud);
    ck_assert_ptr_nonnull(all);
    ck_assert_ptr_nonnull(strstr(all, "key.rotate"));   /* the dump is the log */
    ck_assert_ptr_null(strstr(all, key1));
    ck_assert_ptr_null(strstr(all, key2));
    at_hash_hex(key1, hex);
    ck_assert_ptr_null(strstr(all, hex));
    at_hash_hex(key2, hex);
    ck_assert_ptr_null(strstr(all, hex));
    free(all);

    /* Filters. */
    memset(&q, 0, sizeof(q));
    q.target = id1;
    at_query(p, &q, &l);
    ck_assert_uint_eq(l.n, 2);   /* create, rotate */
    AT_HAS(l.json[0], "key.rotate");
    AT_HAS(l.json[1], "key.create");
    at_free(&l);
    memset(&q, 0, sizeof(q));
    q.action = "key.revoke";
    at_query(p, &q, &l);
    ck_assert_uint_eq(l.n, 1);
    at_free(&l);
    memset(&q, 0, sizeof(q));
    q.account_id = acct;
    at_query(p, &q, &l);
    ck_assert_uint_eq(l.n, 4);   /* the ghost was given the account too */
    at_free(&l);
    memset(&q, 0, sizeof(q));
    q.account_id = "acct_nobody";
    at_query(p, &q, &l);
    ck_assert_uint_eq(l.n, 0);
    memset(&q, 0, sizeof(q));
    q.since_ms = t_rotate;
    at_query(p, &q, &l);
    ck_assert_uint_eq(l.n, 3);   /* all but the create */
    at_free(&l);
    memset(&q, 0, sizeof(q));
    q.until_ms = t_rotate + 1;
    at_query(p, &q, &l);
    ck_assert_uint_eq(l.n, 2);   /* create, rotate */
    AT_HAS(l.json[0], "key.rotate");
    at_free(&l);

    /* The cursor: pages of 3 and then the rest, nothing twice. */
    memset(&q, 0, sizeof(q));
    q.limit = 3;
    at_query(p, &q, &l);
    ck_assert_uint_eq(l.n, 3);
    q.before_id = l.ids[2];
    at_free(&l);
    at_query(p, &q, &l);
    ck_assert_uint_eq(l.n, 1);
    AT_HAS(l.json[0], "key.create");
    q.before_id = l.ids[0];
    at_free(&l);
    at_query(p, &q, &l);
    ck_assert_uint_eq(l.n, 0);
}

/* What the core refuses, whatever the store: nothing written. */
static TU_UNUSED void at_refusals(kg_policy *p)
{
    char key[KG_KEY_MAX], *changes;
    kg_audit_record r;
    kg_audit_query q;
    struct at_list l;
    kg_diag d;

    memset(&r, 0, sizeof(r));
    r.actor = "cli:test";
    r.action = "key.update";
    r.target = "k_1";
    r.result = "ok";
    r.changes = "{\"name\": oops}";
    ck_assert_int_eq(kg_audit_append(p, &r, &d), KG_ERR_INVALID);
    r.changes = "[1]";
    ck_assert_int_eq(kg_audit_append(p, &r, &d), KG_ERR_INVALID);
    /* a key, anywhere in the record */
    ck_assert_int_eq(kg_key_generate("whizo", key, sizeof(key)), KG_OK);
    changes = tu_fmt("{\"name\":{\"before\":null,\"after\":\"x %s y\"}}", key);
    r.changes = changes;
    ck_assert_int_eq(kg_audit_append(p, &r, &d), KG_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(d.message, "holds an API key"));
    free(changes);
    r.changes = NULL;
    r.client = key;
    ck_assert_int_eq(kg_audit_append(p, &r, &d), KG_ERR_INVALID);
    r.client = NULL;
    r.actor = NULL;
    ck_assert_int_eq(kg_audit_append(p, &r, &d), KG_ERR_INVALID);
    memset(&q, 0, sizeof(q));
    at_query(p, &q, &l);
    ck_assert_uint_eq(l.n, 0);
    /* changes given pretty-printed are kept compact, on one line */
    r.actor = "cli:test";
    r.changes = "{\n  \"name\": {\"before\": \"a\",\n \"after\": \"b\"}\n}";
    ck_assert_int_eq(kg_audit_append(p, &r, &d), KG_OK);
    at_query(p, &q, &l);
    ck_assert_uint_eq(l.n, 1);
    AT_HAS(l.json[0], "\"changes\":{\"name\":{\"before\":\"a\",\"after\":\"b\"}}");
    at_free(&l);
}

#endif
