/*
 * check_util.c - the string helpers every rendered header and JSON
 * document goes through (core/util.c, linked in directly: internal):
 * kg__fmt_i64 against printf over the whole int64 range, and kg__buf's
 * inline appends at and across the edge of the caller's storage.
 */
#include "testutil.h"

#include <inttypes.h>

#include "../../core/internal.h"

static void same_as_printf(int64_t v)
{
    char got[21], want[32];
    size_t n = kg__fmt_i64(got, v);
    snprintf(want, sizeof(want), "%" PRId64, v);
    ck_assert_str_eq(got, want);
    ck_assert_uint_eq(n, strlen(want));
}

START_TEST(fmt_i64_writes_what_printf_does)
{
    static const int64_t edge[] = {
        0, 1, 9, 10, 11, 99, 100, 101, 999, 1000, 9999, 10000, 65535,
        1000000000000LL, 999999999999999999LL, 1000000000000000000LL,
        INT64_MAX, INT64_MAX - 1, INT64_MIN, INT64_MIN + 1, -1, -9, -10,
        -99, -100, -101, 4294967295LL, 4294967296LL,
    };
    uint64_t x = 0x9E3779B97F4A7C15ULL;
    size_t i;
    int64_t p;

    for (i = 0; i < sizeof(edge) / sizeof(edge[0]); i++)
        same_as_printf(edge[i]);
    /* every power of ten and its neighbours, both signs */
    for (p = 1; p <= INT64_MAX / 10; p *= 10) {
        same_as_printf(p - 1); same_as_printf(p); same_as_printf(p + 1);
        same_as_printf(-p + 1); same_as_printf(-p); same_as_printf(-p - 1);
    }
    /* and 200,000 values of every length (xorshift; a million took three
     * minutes under valgrind in CI) */
    for (i = 0; i < 100000; i++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        same_as_printf((int64_t)(x >> (x & 63)));
        same_as_printf((int64_t)x);
    }
}
END_TEST

START_TEST(buf_appends_across_its_inline_storage)
{
    char mem[16], want[200];
    kg__buf b;
    size_t n, i;

    /* Every length from empty to past the storage, in pieces of 1..7:
     * the inline path up to cap - 1 bytes and the NUL, then the heap. */
    for (n = 1; n <= 7; n++) {
        kg__buf_init_inline(&b, mem, sizeof(mem));
        want[0] = '\0';
        for (i = 0; i < 20; i++) {
            char piece[8];
            memset(piece, 'a' + (int)(i % 26), n);
            piece[n] = '\0';
            kg__buf_adds(&b, piece);
            strcat(want, piece);
            ck_assert_uint_eq(b.len, strlen(want));
            ck_assert_str_eq(b.p, want);
            ck_assert(b.len < sizeof(mem) ? b.p == mem : b.p != mem);
        }
        kg__buf_addi(&b, -42);
        strcat(want, "-42");
        ck_assert_str_eq(b.p, want);
        ck_assert_int_eq(b.oom, 0);
        kg__buf_free(&b);
    }
    /* exactly full: 15 bytes and the NUL stay inline, one more moves */
    kg__buf_init_inline(&b, mem, sizeof(mem));
    kg__buf_add(&b, "0123456789abcde", 15);
    ck_assert(b.p == mem);
    kg__buf_add(&b, "f", 1);
    ck_assert(b.p != mem);
    ck_assert_str_eq(b.p, "0123456789abcdef");
    kg__buf_free(&b);
    /* integers at every fill of a 32-byte storage: in place where 21
     * bytes fit, through the copy where they do not */
    for (n = 0; n <= 40; n++) {
        char big[32];
        kg__buf_init_inline(&b, big, sizeof(big));
        memset(want, 'z', n);
        want[n] = '\0';
        kg__buf_add(&b, want, n);
        kg__buf_addi(&b, INT64_MIN);
        kg__buf_addi(&b, 7);
        strcat(want, "-92233720368547758087");
        ck_assert_str_eq(b.p, want);
        ck_assert_uint_eq(b.len, strlen(want));
        kg__buf_free(&b);
    }
    /* a heap buffer from nothing */
    kg__buf_init(&b);
    kg__buf_adds(&b, "x");
    ck_assert_str_eq(b.p, "x");
    kg__buf_free(&b);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("util");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, fmt_i64_writes_what_printf_does);
    tcase_add_test(tc, buf_appends_across_its_inline_storage);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
