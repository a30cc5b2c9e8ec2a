/*
 * check_rtable.c - record tables (kg_record_table_*): records placed by
 * key hash for in-memory key stores.  Every record placed is found with
 * all its fields and no other is; hashes that share a place are all
 * found (probing) and a missing one that shares it is not; a duplicate
 * or one record too many is refused and leaves the table as it was; a
 * record still referenced outlives the table (AddressSanitizer and
 * LeakSanitizer watch the heap parts); lookups from several threads.
 */
#include "testutil.h"

#include <pthread.h>

/* A hash whose first 8 bytes (the place) are `place` and the rest `n`. */
static void mkhash(unsigned char h[KG_HASH_LEN], uint64_t place, uint64_t n)
{
    size_t i;
    memset(h, 0, KG_HASH_LEN);
    memcpy(h, &place, sizeof(place));
    for (i = 8; i < KG_HASH_LEN; i += sizeof(n))
        memcpy(h + i, &n, sizeof(n));
}

/* A record of number n: a short id (inline) or, for odd n, a long one
 * (on the heap), a permission, a limit. */
static kg_record *mkrec(const unsigned char h[KG_HASH_LEN], size_t n)
{
    kg_record *r = kg_record_new();
    char id[96];
    ck_assert_ptr_nonnull(r);
    if (n % 2)
        snprintf(id, sizeof(id), "uid=user%zu,ou=people,dc=example,dc=com", n);
    else
        snprintf(id, sizeof(id), "k_%zu", n);
    ck_assert_int_eq(kg_record_set_id(r, id), KG_OK);
    ck_assert_int_eq(kg_record_set_plan(r, n % 3 ? "pro" : "enterprise-custom-plan"), KG_OK);
    ck_assert_int_eq(kg_record_add_permission(r, "scrape:read"), KG_OK);
    ck_assert_int_eq(kg_record_add_limit(r, "hour", (int64_t)n + 1, 3600, 0), KG_OK);
    kg_record_set_hash(r, h);
    kg_record_set_expires(r, (int64_t)n);
    return r;
}

static void assert_is(const kg_record *r, const unsigned char h[KG_HASH_LEN], size_t n)
{
    char id[96];
    const char *name;
    int64_t count, window, burst;
    if (n % 2)
        snprintf(id, sizeof(id), "uid=user%zu,ou=people,dc=example,dc=com", n);
    else
        snprintf(id, sizeof(id), "k_%zu", n);
    ck_assert_ptr_nonnull(r);
    ck_assert_str_eq(kg_record_id(r), id);
    ck_assert_str_eq(kg_record_plan(r), n % 3 ? "pro" : "enterprise-custom-plan");
    ck_assert(kg_hash_equal(kg_record_hash(r), h));
    ck_assert_int_eq(kg_record_expires(r), (int64_t)n);
    ck_assert_uint_eq(kg_record_permission_count(r), 1);
    ck_assert_str_eq(kg_record_permission(r, 0), "scrape:read");
    ck_assert_int_eq(kg_record_limit(r, 0, &name, &count, &window, &burst), KG_OK);
    ck_assert_str_eq(name, "hour");
    ck_assert_int_eq(count, (int64_t)n + 1);
}

/* Add record number n of hash h to t: `want` expected. */
static void add(kg_record_table *t, const unsigned char h[KG_HASH_LEN], size_t n,
                kg_error want)
{
    kg_record *r = mkrec(h, n);
    ck_assert_int_eq(kg_record_table_add(t, r), want);
    kg_record_unref(r);     /* the table has its own copy */
}

#define N 5000

START_TEST(every_record_is_found_and_no_other)
{
    kg_record_table *t;
    unsigned char h[KG_HASH_LEN];
    size_t i;

    ck_assert_int_eq(kg_record_table_new(N, &t), KG_OK);
    for (i = 0; i < N; i++) {
        kg_key_hash((const char *)&i, sizeof(i), h);
        add(t, h, i, KG_OK);
    }
    ck_assert_uint_eq(kg_record_table_count(t), N);
    for (i = 0; i < N; i++) {
        kg_record *r, *again;
        kg_key_hash((const char *)&i, sizeof(i), h);
        kg_record_table_prefetch(t, h);
        r = kg_record_table_get(t, h);
        assert_is(r, h, i);
        /* The record is the table's own: the same place each time. */
        again = kg_record_table_get(t, h);
        ck_assert_ptr_eq(r, again);
        kg_record_unref(again);
        kg_record_unref(r);
    }
    for (i = N; i < 3 * N; i++) {
        kg_key_hash((const char *)&i, sizeof(i), h);
        ck_assert_ptr_null(kg_record_table_get(t, h));
    }
    kg_record_table_free(t);
}
END_TEST

START_TEST(hashes_sharing_a_place_are_all_found)
{
    kg_record_table *t;
    unsigned char h[KG_HASH_LEN];
    size_t i;

    ck_assert_int_eq(kg_record_table_new(64, &t), KG_OK);
    /* 40 records on one place, and 10 on the place at the end of the
     * table (the 128 places: probing wraps around to the start). */
    for (i = 0; i < 50; i++) {
        mkhash(h, i < 40 ? 5 : 127, i + 1);
        add(t, h, i, KG_OK);
    }
    for (i = 0; i < 50; i++) {
        kg_record *r;
        mkhash(h, i < 40 ? 5 : 127, i + 1);
        r = kg_record_table_get(t, h);
        assert_is(r, h, i);
        kg_record_unref(r);
    }
    /* Same places, other hashes: not there. */
    mkhash(h, 5, 1000);
    ck_assert_ptr_null(kg_record_table_get(t, h));
    mkhash(h, 127, 1000);
    ck_assert_ptr_null(kg_record_table_get(t, h));
    kg_record_table_free(t);
}
END_TEST

START_TEST(duplicates_and_one_too_many_are_refused)
{
    kg_record_table *t;
    unsigned char h[KG_HASH_LEN];
    kg_record *r, *got;
    size_t i;

    ck_assert_int_eq(kg_record_table_new(3, &t), KG_OK);
    r = kg_record_new();
    for (i = 0; i < 3; i++) {
        mkhash(h, i, i + 1);
        add(t, h, i, KG_OK);
    }
    /* The same hash as record 1, another id: refused, 1 unchanged. */
    mkhash(h, 1, 2);
    add(t, h, 99, KG_ERR_EXISTS);
    got = kg_record_table_get(t, h);
    assert_is(got, h, 1);
    kg_record_unref(got);
    /* A fourth: past max_records. */
    mkhash(h, 3, 4);
    add(t, h, 3, KG_ERR_INVALID);
    ck_assert_ptr_null(kg_record_table_get(t, h));
    ck_assert_uint_eq(kg_record_table_count(t), 3);
    ck_assert_int_eq(kg_record_table_new(1, NULL), KG_ERR_INVALID);
    ck_assert_int_eq(kg_record_table_add(NULL, r), KG_ERR_INVALID);
    ck_assert_int_eq(kg_record_table_add(t, NULL), KG_ERR_INVALID);
    kg_record_unref(r);
    ck_assert_ptr_null(kg_record_table_get(NULL, h));
    kg_record_table_free(t);
    kg_record_table_free(NULL);
}
END_TEST

START_TEST(a_referenced_record_outlives_its_table)
{
    kg_record_table *t;
    unsigned char h[KG_HASH_LEN], h2[KG_HASH_LEN];
    kg_record *held, *held2, *dup;

    ck_assert_int_eq(kg_record_table_new(10, &t), KG_OK);
    mkhash(h, 1, 1);
    add(t, h, 1, KG_OK);     /* a long id: its heap part must go too */
    mkhash(h2, 2, 2);
    add(t, h2, 2, KG_OK);
    held = kg_record_table_get(t, h);
    held2 = kg_record_table_get(t, h2);
    /* A copy of a placed record is a record of its own. */
    dup = kg_record_dup(held);
    assert_is(dup, h, 1);
    kg_record_table_free(t);
    /* The store is gone (a reload, say); checks in flight still read. */
    assert_is(held, h, 1);
    assert_is(held2, h2, 2);
    kg_record_unref(held);
    assert_is(held2, h2, 2);
    kg_record_unref(held2);    /* the last: the table's memory goes */
    assert_is(dup, h, 1);
    kg_record_unref(dup);
}
END_TEST

struct reader {
    kg_record_table *t;
    long found;
};

static void *read_all(void *arg)
{
    struct reader *rd = arg;
    unsigned char h[KG_HASH_LEN];
    size_t i, round;
    for (round = 0; round < 20; round++)
        for (i = 0; i < N; i++) {
            kg_record *r;
            kg_key_hash((const char *)&i, sizeof(i), h);
            r = kg_record_table_get(rd->t, h);
            if (r != NULL && kg_hash_equal(kg_record_hash(r), h))
                rd->found++;
            kg_record_unref(r);
        }
    return NULL;
}

START_TEST(threads_look_up_together)
{
    kg_record_table *t;
    unsigned char h[KG_HASH_LEN];
    struct reader rd[4];
    pthread_t th[4];
    kg_record *r;
    size_t i;

    ck_assert_int_eq(kg_record_table_new(N, &t), KG_OK);
    for (i = 0; i < N; i++) {
        kg_key_hash((const char *)&i, sizeof(i), h);
        add(t, h, i, KG_OK);
    }
    for (i = 0; i < 4; i++) {
        rd[i].t = t;
        rd[i].found = 0;
        ck_assert_int_eq(pthread_create(&th[i], NULL, read_all, &rd[i]), 0);
    }
    for (i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        ck_assert_int_eq(rd[i].found, 20L * N);
    }
    /* A record taken after the readers is still good once the table is
     * freed (the readers' references were all given back: no leak). */
    i = 7;
    kg_key_hash((const char *)&i, sizeof(i), h);
    r = kg_record_table_get(t, h);
    kg_record_table_free(t);
    assert_is(r, h, 7);
    kg_record_unref(r);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("rtable");
    TCase *tc = tcase_create("rtable");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, every_record_is_found_and_no_other);
    tcase_add_test(tc, hashes_sharing_a_place_are_all_found);
    tcase_add_test(tc, duplicates_and_one_too_many_are_refused);
    tcase_add_test(tc, a_referenced_record_outlives_its_table);
    tcase_add_test(tc, threads_look_up_together);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
