/*
 * check_request.c - the request object: what a front end hands kg_check()
 * and what plugins read back (header values byte for byte, NULs
 * included, found case-insensitively; wiped on reset); and the key
 * record's short strings, kept inside the record.
 */
#include "testutil.h"

START_TEST(defaults_and_last_set_wins)
{
    kg_request *r;
    ck_assert_int_eq(kg_request_new(&r), KG_OK);
    ck_assert_str_eq(kg_request_method(r), "GET");
    ck_assert_str_eq(kg_request_path(r), "/");
    ck_assert_ptr_null(kg_request_client(r));
    ck_assert_int_eq(kg_request_header_count(r), 0);
    ck_assert_int_eq(kg_request_set_method(r, "POST"), KG_OK);
    ck_assert_int_eq(kg_request_set_method(r, "PUT"), KG_OK);
    ck_assert_int_eq(kg_request_set_path(r, "/v1/jobs"), KG_OK);
    ck_assert_int_eq(kg_request_set_client(r, "::1"), KG_OK);
    ck_assert_str_eq(kg_request_method(r), "PUT");
    ck_assert_str_eq(kg_request_path(r), "/v1/jobs");
    ck_assert_str_eq(kg_request_client(r), "::1");
    ck_assert_int_eq(kg_request_set_path(r, NULL), KG_ERR_INVALID);
    ck_assert_int_eq(kg_request_add_header(r, NULL, "x"), KG_ERR_INVALID);
    ck_assert_int_eq(kg_request_add_header(NULL, "a", "x"), KG_ERR_INVALID);
    kg_request_free(r);
}
END_TEST

/* Many headers of growing size: the storage moves as it grows, and every
 * value must still read back exactly, NULs included. */
START_TEST(many_headers_read_back_exactly)
{
    kg_request *r;
    char name[32], *val = malloc(5000);
    size_t i, j, n;
    ck_assert_int_eq(kg_request_new(&r), KG_OK);
    ck_assert_int_eq(kg_request_set_method(r, "DELETE"), KG_OK);
    for (i = 0; i < 200; i++) {
        snprintf(name, sizeof(name), "X-H%zu", i % 50);
        n = i * 23 % 5000;
        for (j = 0; j < n; j++)
            val[j] = (char)((i + j) % 7 == 0 ? 0 : 'a' + (i + j) % 26);
        ck_assert_int_eq(kg_request_add_header_n(r, name, strlen(name), val, n), KG_OK);
    }
    ck_assert_int_eq(kg_request_header_count(r), 200);
    ck_assert_str_eq(kg_request_method(r), "DELETE");
    for (i = 0; i < 200; i++) {
        const char *nm, *v;
        size_t len;
        ck_assert_int_eq(kg_request_header_at(r, i, &nm, &v, &len), KG_OK);
        snprintf(name, sizeof(name), "X-H%zu", i % 50);
        ck_assert_str_eq(nm, name);
        ck_assert_uint_eq(len, i * 23 % 5000);
        for (j = 0; j < len; j++)
            ck_assert_int_eq(v[j], (char)((i + j) % 7 == 0 ? 0 : 'a' + (i + j) % 26));
        ck_assert_int_eq(v[len], 0);
        /* Header i is the (i / 50)-th of its name. */
        ck_assert_ptr_eq(kg_request_header_find(r, name, i / 50, NULL), v);
    }
    ck_assert_ptr_nonnull(kg_request_header_find(r, "x-h7", 3, &n));
    ck_assert_ptr_null(kg_request_header_find(r, "x-h7", 4, NULL));
    ck_assert_int_eq(kg_request_header_at(r, 200, NULL, NULL, NULL), KG_ERR_NOT_FOUND);
    free(val);
    kg_request_free(r);
}
END_TEST

/* Reset empties the request and overwrites what it held (a header value
 * is an API key); the request is then reusable. */
START_TEST(reset_wipes_and_reuses)
{
    kg_request *r;
    const char *v;
    size_t len, i;
    char *big;

    ck_assert_int_eq(kg_request_new(&r), KG_OK);
    kg_request_add_header(r, "Authorization", "Bearer whizo_secretsecretsecret");
    v = kg_request_header_find(r, "authorization", 0, &len);
    ck_assert_ptr_nonnull(v);
    ck_assert_uint_eq(len, strlen("Bearer whizo_secretsecretsecret"));
    kg_request_reset(r);
    /* A small request's storage is kept for reuse, so this still points
     * into it: every byte of the old value must be gone. */
    for (i = 0; i < len; i++)
        ck_assert_int_eq(v[i], 0);
    ck_assert_int_eq(kg_request_header_count(r), 0);
    ck_assert_str_eq(kg_request_method(r), "GET");
    ck_assert_ptr_null(kg_request_header_find(r, "Authorization", 0, NULL));
    /* One huge request, then a small one. */
    big = malloc(1 << 20);
    memset(big, 'k', 1 << 20);
    ck_assert_int_eq(kg_request_add_header_n(r, "X-Big", 5, big, 1 << 20), KG_OK);
    ck_assert_ptr_nonnull(kg_request_header_find(r, "x-big", 0, &len));
    ck_assert_uint_eq(len, 1 << 20);
    kg_request_reset(r);
    ck_assert_int_eq(kg_request_add_header(r, "X-API-Key", "abc"), KG_OK);
    ck_assert_str_eq(kg_request_header_find(r, "x-api-key", 0, NULL), "abc");
    free(big);
    kg_request_free(r);
}
END_TEST

/* Short ids and plans live in the record, long ones on the heap; a
 * setter may switch between the two, be given NULL, or its own value. */
START_TEST(record_strings_short_and_long)
{
    static const char *const ids[] = {
        "k_0123456789abcdef", "a-very-long-key-id-from-an-ldap-directory-0001",
        "k_short", "", "another-long-one-that-does-not-fit-inline-at-all", "x"
    };
    kg_record *r = kg_record_new(), *c;
    char own[64];
    size_t i;

    ck_assert_ptr_nonnull(r);
    for (i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        ck_assert_int_eq(kg_record_set_id(r, ids[i]), KG_OK);
        ck_assert_int_eq(kg_record_set_plan(r, ids[(i + 1) % 6]), KG_OK);
        ck_assert_str_eq(kg_record_id(r), ids[i]);
        ck_assert_str_eq(kg_record_plan(r), ids[(i + 1) % 6]);
        /* Set from its own value (same pointer). */
        ck_assert_int_eq(kg_record_set_id(r, kg_record_id(r)), KG_OK);
        ck_assert_str_eq(kg_record_id(r), ids[i]);
        c = kg_record_dup(r);
        ck_assert_ptr_nonnull(c);
        ck_assert_str_eq(kg_record_id(c), ids[i]);
        ck_assert_str_eq(kg_record_plan(c), ids[(i + 1) % 6]);
        kg_record_unref(c);
    }
    snprintf(own, sizeof(own), "%s", kg_record_plan(r));
    ck_assert_int_eq(kg_record_set_id(r, NULL), KG_OK);
    ck_assert_ptr_null(kg_record_id(r));
    ck_assert_int_eq(kg_record_set_id(r, "k_again"), KG_OK);
    ck_assert_str_eq(kg_record_id(r), "k_again");
    ck_assert_str_eq(kg_record_plan(r), own);
    kg_record_unref(r);
}
END_TEST

static Suite *request_suite(void)
{
    Suite *s = suite_create("request");
    TCase *tc = tcase_create("request");
    tcase_add_test(tc, defaults_and_last_set_wins);
    tcase_add_test(tc, many_headers_read_back_exactly);
    tcase_add_test(tc, reset_wipes_and_reuses);
    suite_add_tcase(s, tc);
    tc = tcase_create("record");
    tcase_add_test(tc, record_strings_short_and_long);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(request_suite());
}
