/*
 * check_audit - the audit log (core/audit.c, core/audit_changes.c) in
 * the file keystore's JSON-lines file (plugins/common/auditlog.c): the
 * scenario of audittest.h, what the core refuses, the changes of an
 * account, the file beside the key file (mode 0600) or where audit_file
 * says, a torn or foreign line skipped and a torn end closed, ids unique
 * under concurrent writers, and a store without an audit log.
 */
#include "config.h"

#include "audittest.h"

#include <sys/wait.h>

static char *dir, *keyfile;
static char key0[KG_KEY_MAX];
static kg_context *ctx;
static kg_policy *pol;
static tu_clock clk;

static void setup(void)
{
    tu_setup(&dir, &keyfile, "free", key0, &ctx);
    tu_clock_install(ctx, &clk);
    pol = tu_policyf(ctx, "credential: [{module: bearer}]\n"
                          "keystore: [{module: file, options: {path: \"%s\", refresh: 0}}]\n"
                          "plans: {free: {}, pro: {}}\n", keyfile);
}

static void teardown(void)
{
    tu_teardown(dir, keyfile, ctx, pol);
}

static char *audit_path(void)
{
    return tu_path(dir, "keys.audit.jsonl");
}

static char *dump_file(void *ud)
{
    (void)ud;
    char *p = audit_path(), *text = tu_read(p);
    free(p);
    return text;
}

START_TEST(create_rotate_revoke)
{
    at_scenario(pol, ctx, &clk, dump_file, NULL);
}
END_TEST

START_TEST(core_refusals)
{
    at_refusals(pol);
}
END_TEST

/* Beside the key file, 0600, one record a line. */
START_TEST(file_beside_keys_0600)
{
    char *p = audit_path(), *text;
    struct stat st;
    kg_record *r;
    char key[KG_KEY_MAX];
    size_t lines = 0;
    const char *s;

    tu_key_new(pol, "free", "one", key, &r);
    at_append(pol, "key.create", NULL, NULL, r, KG_OK);
    at_append(pol, "key.update", NULL, r, r, KG_OK);
    kg_record_unref(r);
    ck_assert_int_eq(stat(p, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0600);
    text = tu_read(p);
    for (s = text; *s; s++)
        lines += *s == '\n';
    ck_assert_uint_eq(lines, 2);
    ck_assert(strncmp(text, "{\"id\":1,\"time_ms\":", 18) == 0);
    ck_assert_ptr_nonnull(strstr(text, "\n{\"id\":2,"));
    free(text);
    free(p);
}
END_TEST

START_TEST(audit_file_option)
{
    char *other = tu_path(dir, "elsewhere.jsonl"), *p = audit_path();
    kg_policy *p2 = tu_policyf(ctx, "credential: [{module: bearer}]\n"
                                    "keystore: [{module: file, options: {path: \"%s\", "
                                    "audit_file: \"%s\"}}]\n"
                                    "plans: {free: {}}\n", keyfile, other);
    kg_record *r;
    char key[KG_KEY_MAX];
    struct stat st;

    tu_key_new(p2, "free", "one", key, &r);
    at_append(p2, "key.create", NULL, NULL, r, KG_OK);
    kg_record_unref(r);
    ck_assert_int_eq(stat(other, &st), 0);
    ck_assert_int_ne(stat(p, &st), 0);
    kg_policy_free(p2);
    free(other);
    free(p);
}
END_TEST

/* A crash can leave a last line without its end, and a hand can add a
 * line that is no record: both are skipped, and the next append starts
 * on a line of its own, with an id above every one in the file. */
START_TEST(torn_and_foreign_lines)
{
    char *p = audit_path(), *text;
    kg_audit_query q;
    struct at_list l;
    kg_record *r;
    char key[KG_KEY_MAX];

    tu_key_new(pol, "free", "one", key, &r);
    at_append(pol, "key.create", NULL, NULL, r, KG_OK);
    text = tu_read(p);
    {
        char *more = tu_fmt("%snot json at all\n{\"id\":7,\"time_ms\":1,\"act", text);
        FILE *f = fopen(p, "w");
        ck_assert_ptr_nonnull(f);
        fputs(more, f);
        fclose(f);
        free(more);
    }
    free(text);
    memset(&q, 0, sizeof(q));
    at_query(pol, &q, &l);
    ck_assert_uint_eq(l.n, 1);
    at_free(&l);
    at_append(pol, "key.update", NULL, r, r, KG_OK);
    kg_record_unref(r);
    at_query(pol, &q, &l);
    ck_assert_uint_eq(l.n, 2);
    /* above every id in the file, the torn line's too: never one twice */
    ck_assert_int_eq(l.ids[0], 8);
    AT_HAS(l.json[0], "key.update");
    at_free(&l);
    text = tu_read(p);
    ck_assert_ptr_nonnull(strstr(text, "\"act\n{\"id\":8,"));
    free(text);
    free(p);
}
END_TEST

/* Several processes appending at once: every record kept, each id once. */
START_TEST(concurrent_writers)
{
    enum { PROCS = 4, EACH = 25 };
    kg_audit_query q;
    struct at_list l;
    char *p, *text;
    int i, status, seen[PROCS * EACH + 1];
    const char *s;

    /* Nothing of the parent's heap is made before the forks: a child
     * leaves with _exit, and valgrind (make check-valgrind) would call
     * what it inherited lost. */
    for (i = 0; i < PROCS; i++) {
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            int j, bad = 0;
            for (j = 0; j < EACH; j++) {
                kg_audit_record r;
                kg_diag d;
                memset(&r, 0, sizeof(r));
                r.actor = "cli:test";
                r.action = "key.update";
                r.target = "k_x";
                r.result = "ok";
                bad |= kg_audit_append(pol, &r, &d) != KG_OK;
            }
            _exit(bad);
        }
    }
    for (i = 0; i < PROCS; i++) {
        ck_assert_int_gt(wait(&status), 0);
        ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    p = audit_path();
    memset(seen, 0, sizeof(seen));
    text = tu_read(p);
    for (s = text; s && *s; s = strchr(s, '\n') + 1) {
        long id = strtol(s + 6, NULL, 10);
        ck_assert(strncmp(s, "{\"id\":", 6) == 0);
        ck_assert(id >= 1 && id <= PROCS * EACH);
        ck_assert_int_eq(seen[id]++, 0);
    }
    for (i = 1; i <= PROCS * EACH; i++)
        ck_assert_int_eq(seen[i], 1);
    free(text);
    memset(&q, 0, sizeof(q));
    q.limit = 5;
    at_query(pol, &q, &l);
    ck_assert_uint_eq(l.n, 5);
    ck_assert_int_eq(l.ids[0], PROCS * EACH);
    at_free(&l);
    free(p);
}
END_TEST

/* The changes of an account: what differs, never an unchanged field. */
START_TEST(account_changes)
{
    kg_account *a = kg_account_new(), *b;
    char *c;

    kg_account_set_id(a, "acct_1");
    kg_account_set_name(a, "Acme");
    kg_account_set_plan(a, "free");
    kg_account_set_metadata(a, "{\"tier\":\"gold\"}");
    b = kg_account_dup(a);
    kg_account_set_status(b, KG_ACCOUNT_SUSPENDED);
    kg_account_set_updated(b, 1800000000);
    c = kg_audit_changes_accounts(a, b);
    ck_assert_str_eq(c, "{\"status\":{\"before\":\"active\",\"after\":\"suspended\"}}");
    free(c);
    kg_account_set_metadata(b, "{\"tier\":\"silver\"}");
    kg_account_add_permission(b, "jobs:read");
    c = kg_audit_changes_accounts(a, b);
    AT_HAS(c, "\"permissions\":{\"before\":[],\"after\":[\"jobs:read\"]}");
    AT_HAS(c, "\"metadata\":{\"before\":{\"tier\":\"gold\"},\"after\":{\"tier\":\"silver\"}}");
    ck_assert_ptr_null(strstr(c, "\"name\""));
    free(c);
    c = kg_audit_changes_accounts(a, NULL);   /* a delete */
    AT_HAS(c, "\"id\":{\"before\":\"acct_1\",\"after\":null}");
    free(c);
    c = kg_audit_changes_accounts(a, a);
    ck_assert_str_eq(c, "{}");
    free(c);
    kg_account_unref(a);
    kg_account_unref(b);
}
END_TEST

/* A key record's changes never show its hash, nor last_used. */
START_TEST(record_changes_no_hash)
{
    kg_record *a = kg_record_new(), *b;
    unsigned char h[KG_HASH_LEN];
    char hex[2 * KG_HASH_LEN + 1], *c;

    memset(h, 0xab, sizeof(h));
    kg_record_set_id(a, "k_1");
    kg_record_set_hash(a, h);
    b = kg_record_dup(a);
    memset(h, 0xcd, sizeof(h));
    kg_record_set_hash(b, h);
    kg_record_set_last_used(b, 1800000000);
    c = kg_audit_changes_records(a, b);
    ck_assert_str_eq(c, "{}");
    free(c);
    c = kg_audit_changes_records(NULL, b);
    kg_hash_to_hex(h, hex);
    ck_assert_ptr_null(strstr(c, hex));
    ck_assert_ptr_null(strstr(c, "hash"));
    ck_assert_ptr_null(strstr(c, "last_used"));
    free(c);
    kg_record_unref(a);
    kg_record_unref(b);
}
END_TEST

/* A record read back with changes that are not an object (a row edited
 * by hand) still gives JSON: the text as a string. */
START_TEST(record_json_of_bad_changes)
{
    kg_audit_record r;
    char *j;

    memset(&r, 0, sizeof(r));
    r.id = 3;
    r.time_ms = INT64_C(1796528617463);
    r.actor = "cli:x";
    r.changes = "{\"a\": 1, oops";
    j = kg_audit_record_to_json(&r);
    AT_HAS(j, "\"changes\":\"{\\\"a\\\": 1, oops\"");
    AT_HAS(j, "\"time\":\"2026-12-06T03:43:37.463Z\"");
    free(j);
    r.changes = "{ \"a\" : [1, 2] }";
    j = kg_audit_record_to_json(&r);
    AT_HAS(j, "\"changes\":{\"a\":[1,2]}");
    free(j);
}
END_TEST

START_TEST(result_codes)
{
    ck_assert_str_eq(kg_audit_result(KG_OK), "ok");
    ck_assert_str_eq(kg_audit_result(KG_ERR_NOT_FOUND), "not_found");
    ck_assert_str_eq(kg_audit_result(KG_ERR_EXISTS), "conflict");
    ck_assert_str_eq(kg_audit_result(KG_ERR_INVALID), "invalid");
    ck_assert_str_eq(kg_audit_result(KG_ERR_READONLY), "read_only");
    ck_assert_str_eq(kg_audit_result(KG_ERR_UNAVAILABLE), "unavailable");
}
END_TEST

/* A store without the audit ops (the flaky fixture, of ABI 1.5 or not
 * keeping a log): a clear error, for both calls. */
START_TEST(store_without_audit)
{
    char *down = tu_path(dir, "down"), *gone = tu_path(dir, "gone"),
         *count = tu_path(dir, "count");
    kg_policy *p2 = tu_policyf(ctx, "credential: [{module: bearer}]\n"
                                    "keystore: [{module: flaky, options: {hash: \"%064d\", "
                                    "id: k_flaky, plan: free, down: \"%s\", gone: \"%s\", "
                                    "count: \"%s\"}}]\n"
                                    "plans: {free: {}}\n", 0, down, gone, count);
    kg_audit_record r;
    kg_audit_query q;
    kg_diag d;

    memset(&r, 0, sizeof(r));
    r.actor = "cli:test";
    r.action = "key.update";
    r.result = "ok";
    ck_assert_int_eq(kg_audit_append(p2, &r, &d), KG_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(d.message, "audit log"));
    memset(&q, 0, sizeof(q));
    ck_assert_int_eq(kg_audit_query_run(p2, &q, at_collect, NULL, &d), KG_ERR_UNSUPPORTED);
    kg_policy_free(p2);
    free(down);
    free(gone);
    free(count);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("audit");
    TCase *tc = tcase_create("file store");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, create_rotate_revoke);
    tcase_add_test(tc, core_refusals);
    tcase_add_test(tc, file_beside_keys_0600);
    tcase_add_test(tc, audit_file_option);
    tcase_add_test(tc, torn_and_foreign_lines);
    tcase_add_test(tc, concurrent_writers);
    tcase_add_test(tc, store_without_audit);
    suite_add_tcase(s, tc);
    tc = tcase_create("changes");
    tcase_add_test(tc, account_changes);
    tcase_add_test(tc, record_changes_no_hash);
    tcase_add_test(tc, result_codes);
    tcase_add_test(tc, record_json_of_bad_changes);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
