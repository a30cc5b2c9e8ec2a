/*
 * check_cells.c - the huge-page cell allocator records live in
 * (core/cells.c, linked in directly: it is internal).  Cells must be
 * distinct, aligned and never overlap, whatever the order of allocations
 * and frees, from many threads; emptied chunks must go back to the
 * kernel but one.  Under AddressSanitizer the allocator steps aside for
 * malloc, and only the accounting is checked.
 */
#include "testutil.h"

#include "../../core/internal.h"

#define CELL 256
#define CHUNK ((size_t)2 << 20)
/* More than three chunks' worth. */
#define MANY (3 * (CHUNK / CELL) + 100)

static void fill(void *p, size_t tag)
{
    memset(p, (int)(tag * 31 % 251) + 1, CELL);
    memcpy(p, &tag, sizeof(tag));
}

static int intact(const void *p, size_t tag)
{
    const unsigned char *b = p;
    size_t t, i;
    memcpy(&t, p, sizeof(t));
    if (t != tag)
        return 0;
    for (i = sizeof(t); i < CELL; i++)
        if (b[i] != (unsigned char)(tag * 31 % 251 + 1))
            return 0;
    return 1;
}

START_TEST(cells_are_aligned_distinct_and_given_back)
{
    kg__cells c = KG__CELLS_INIT(CELL);
    void **v = calloc(MANY, sizeof(*v));
    size_t i, used, chunks;

    for (i = 0; i < MANY; i++) {
        v[i] = kg__cells_alloc(&c);
        ck_assert_ptr_nonnull(v[i]);
        ck_assert_uint_eq((uintptr_t)v[i] % CELL, 0);
        fill(v[i], i);
    }
    /* Writing every cell left every other one as it was: no overlap. */
    for (i = 0; i < MANY; i++)
        ck_assert_msg(intact(v[i], i), "cell %zu was overwritten", i);
    kg__cells_stats(&c, &used, &chunks);
    ck_assert_uint_eq(used, MANY);
    if (!KG__SANITIZED) {
        ck_assert_uint_eq(chunks, 4);
        /* The cells of one chunk share its 2 MiB aligned range. */
        ck_assert_ptr_eq((void *)((uintptr_t)v[0] & ~(uintptr_t)(CHUNK - 1)),
                         (void *)((uintptr_t)v[CHUNK / CELL - 2] & ~(uintptr_t)(CHUNK - 1)));
    }
    for (i = 0; i < MANY; i++)
        kg__cells_free(&c, v[i]);
    kg__cells_stats(&c, &used, &chunks);
    ck_assert_uint_eq(used, 0);
    if (!KG__SANITIZED) {
        /* All empty: one kept for reuse, the other three unmapped. */
        ck_assert_uint_eq(chunks, 1);
        v[0] = kg__cells_alloc(&c);
        kg__cells_stats(&c, &used, &chunks);
        ck_assert_uint_eq(chunks, 1);
        ck_assert_uint_eq(used, 1);
        kg__cells_free(&c, v[0]);
    }
    free(v);
}
END_TEST

/* Frees in a scattered order, allocations in between: a freed cell is
 * handed out again, never a live one. */
START_TEST(scattered_frees_never_hand_out_a_live_cell)
{
    kg__cells c = KG__CELLS_INIT(CELL);
    enum { N = 20000 };
    void **v = calloc(N, sizeof(*v));
    size_t *tag = calloc(N, sizeof(*tag));
    unsigned seed = 42;
    size_t round, i, used, live = 0, next_tag = 1;

    for (round = 0; round < 200000; round++) {
        i = (size_t)rand_r(&seed) % N;
        if (v[i] == NULL) {
            v[i] = kg__cells_alloc(&c);
            ck_assert_ptr_nonnull(v[i]);
            tag[i] = next_tag++;
            fill(v[i], tag[i]);
            live++;
        } else {
            ck_assert_msg(intact(v[i], tag[i]), "live cell %zu overwritten", i);
            kg__cells_free(&c, v[i]);
            v[i] = NULL;
            live--;
        }
    }
    kg__cells_stats(&c, &used, NULL);
    ck_assert_uint_eq(used, live);
    for (i = 0; i < N; i++) {
        if (v[i] != NULL) {
            ck_assert_msg(intact(v[i], tag[i]), "live cell %zu overwritten", i);
            kg__cells_free(&c, v[i]);
        }
    }
    kg__cells_stats(&c, &used, NULL);
    ck_assert_uint_eq(used, 0);
    free(v);
    free(tag);
}
END_TEST

struct hammer {
    kg__cells *c;
    unsigned seed;
    int bad;
};

static void *hammer(void *arg)
{
    struct hammer *h = arg;
    void *mine[512] = { 0 };
    size_t tags[512];
    size_t k, i;
    for (k = 0; k < 100000; k++) {
        i = (size_t)rand_r(&h->seed) % 512;
        if (mine[i] == NULL) {
            if ((mine[i] = kg__cells_alloc(h->c)) == NULL) {
                h->bad = 1;
                break;
            }
            tags[i] = k * 8 + (h->seed & 7);
            fill(mine[i], tags[i]);
        } else {
            if (!intact(mine[i], tags[i]))
                h->bad = 1;
            kg__cells_free(h->c, mine[i]);
            mine[i] = NULL;
        }
    }
    for (i = 0; i < 512; i++) {
        if (mine[i] != NULL && !intact(mine[i], tags[i]))
            h->bad = 1;
        kg__cells_free(h->c, mine[i]);
    }
    return NULL;
}

/* Four threads allocating and freeing at once: no cell handed to two of
 * them (each checks its cells' contents), and the count ends at zero. */
START_TEST(threads_share_the_cells_safely)
{
    kg__cells c = KG__CELLS_INIT(CELL);
    pthread_t t[4];
    struct hammer h[4];
    size_t i, used;
    for (i = 0; i < 4; i++) {
        h[i].c = &c;
        h[i].seed = (unsigned)(i + 1);
        h[i].bad = 0;
        ck_assert_int_eq(pthread_create(&t[i], NULL, hammer, &h[i]), 0);
    }
    for (i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        ck_assert_msg(!h[i].bad, "thread %zu saw a cell overwritten", i);
    }
    kg__cells_stats(&c, &used, NULL);
    ck_assert_uint_eq(used, 0);
}
END_TEST

/* Records come from the cells: aligned to 128, so that their hot half
 * is one aligned pair of lines, and usable after neighbours are freed. */
START_TEST(records_live_in_cells)
{
    size_t i;
    kg_record *r[300];
    for (i = 0; i < 300; i++) {
        char id[32];
        r[i] = kg_record_new();
        ck_assert_ptr_nonnull(r[i]);
        ck_assert_uint_eq((uintptr_t)r[i] % 128, 0);
        snprintf(id, sizeof(id), "k_%zu", i);
        ck_assert_int_eq(kg_record_set_id(r[i], id), KG_OK);
    }
    for (i = 0; i < 300; i += 2)
        kg_record_unref(r[i]);
    for (i = 1; i < 300; i += 2) {
        char id[32];
        snprintf(id, sizeof(id), "k_%zu", i);
        ck_assert_str_eq(kg_record_id(r[i]), id);
        kg_record_unref(r[i]);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("cells");
    TCase *tc = tcase_create("cells");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, cells_are_aligned_distinct_and_given_back);
    tcase_add_test(tc, scattered_frees_never_hand_out_a_live_cell);
    tcase_add_test(tc, threads_share_the_cells_safely);
    tcase_add_test(tc, records_live_in_cells);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
