/*
 * check_modutil - keygate/modutil.h, the helpers plugins used to copy
 * (issue 23 item 12): the cases where the copies disagreed (a bare
 * number: seconds in ldap, milliseconds in sql; overlong UTF-8: copied
 * by the core's JSON escaper, replaced by keygated's) and the edges.
 */
#include "testutil.h"

#include <keygate/modutil.h>

#include <time.h>

/* ---- duration ---------------------------------------------------------- */

static int64_t dur(const char *s, int64_t unit)
{
    int64_t v = -42;
    if (kg_modutil_duration_ms(s, unit, &v) != KG_OK)
        ck_assert_int_eq(v, -42);   /* untouched on error */
    return v;
}

START_TEST(duration_bare_number_is_the_callers_unit)
{
    ck_assert_int_eq(dur("5", 1000), 5000);   /* ldap: seconds */
    ck_assert_int_eq(dur("5", 1), 5);         /* sql: milliseconds */
    ck_assert_int_eq(dur("0", 1000), 0);
}
END_TEST

START_TEST(duration_units)
{
    ck_assert_int_eq(dur("250ms", 1000), 250);
    ck_assert_int_eq(dur("2s", 1), 2000);
    ck_assert_int_eq(dur("1m", 1), 60000);
    ck_assert_int_eq(dur("1h", 1), 3600000);
    ck_assert_int_eq(dur("007s", 1), 7000);
}
END_TEST

START_TEST(duration_refuses)
{
    static const char *const bad[] = {
        "", "ms", "-1", "+1", " 1", "1 ", "1 s", "1.5s", "1sx", "1d", "1S",
        "1e3", "0x10", "9223372036854775808", "9223372036854775807s",
        "2562047788015216h",
    };
    size_t i;
    int64_t v = -42;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(kg_modutil_duration_ms(bad[i], 1, &v) == KG_ERR_INVALID &&
                      v == -42, "'%s' accepted", bad[i]);
    ck_assert_int_eq(kg_modutil_duration_ms(NULL, 1, &v), KG_ERR_INVALID);
    ck_assert_int_eq(kg_modutil_duration_ms("1", 0, &v), KG_ERR_INVALID);
    ck_assert_int_eq(dur("9223372036854775807", 1), INT64_MAX);
}
END_TEST

/* ---- asprintf, hex ------------------------------------------------------ */

START_TEST(asprintf_formats_any_length)
{
    char big[5000], *s;
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    s = kg_modutil_asprintf("%s=%lld", "limit", -7LL);
    ck_assert_str_eq(s, "limit=-7");
    free(s);
    s = kg_modutil_asprintf("<%s>", big);
    ck_assert_uint_eq(strlen(s), sizeof(big) + 1);
    ck_assert_int_eq(s[0], '<');
    ck_assert_int_eq(s[sizeof(big)], '>');
    free(s);
    s = kg_modutil_asprintf("%s", "");
    ck_assert_str_eq(s, "");
    free(s);
}
END_TEST

START_TEST(hex_lower_case)
{
    static const unsigned char in[] = { 0x00, 0xff, 0x10, 0xab, 0x09 };
    char out[2 * sizeof(in) + 1];
    kg_modutil_hex(in, sizeof(in), out);
    ck_assert_str_eq(out, "00ff10ab09");
    kg_modutil_hex(in, 0, out);
    ck_assert_str_eq(out, "");
}
END_TEST

/* ---- JSON ------------------------------------------------------------- */

static void json_is(const char *in, size_t len, const char *want)
{
    char *s = kg_modutil_json_string(in, len);
    ck_assert_ptr_nonnull(s);
    ck_assert_str_eq(s, want);
    free(s);
}

START_TEST(json_escapes)
{
    json_is("a\"b\\c\n\r\t", 8, "\"a\\\"b\\\\c\\n\\r\\t\"");
    json_is("\x01\x1f\x7f", 3, "\"\\u0001\\u001f\\u007f\"");
    json_is("a\0b", 3, "\"a\\u0000b\"");   /* the length, not the NUL */
    json_is("", 0, "\"\"");
    json_is(NULL, 5, "\"\"");
}
END_TEST

START_TEST(json_copies_well_formed_utf8)
{
    json_is("caf\xc3\xa9", 5, "\"caf\xc3\xa9\"");
    json_is("\xe2\x82\xac", 3, "\"\xe2\x82\xac\"");            /* U+20AC */
    json_is("\xf4\x8f\xbf\xbf", 4, "\"\xf4\x8f\xbf\xbf\"");    /* U+10FFFF */
}
END_TEST

/* Each byte of an ill-formed sequence is one U+FFFD.  The core's escaper
 * copied overlong 3- and 4-byte forms, surrogates and F4 90+ (past
 * U+10FFFF) as they were; keygated's replaced them: strict wins. */
START_TEST(json_replaces_ill_formed_utf8)
{
    json_is("\xc0\xaf", 2, "\"\\ufffd\\ufffd\"");                 /* overlong '/' */
    json_is("\xe0\x80\xaf", 3, "\"\\ufffd\\ufffd\\ufffd\"");      /* overlong '/' */
    json_is("\xf0\x80\x80\xa2", 4, "\"\\ufffd\\ufffd\\ufffd\\ufffd\""); /* overlong '"' */
    json_is("\xed\xa0\x80", 3, "\"\\ufffd\\ufffd\\ufffd\"");      /* surrogate */
    json_is("\xf4\x90\x80\x80", 4, "\"\\ufffd\\ufffd\\ufffd\\ufffd\""); /* > U+10FFFF */
    json_is("\xe2\x82", 2, "\"\\ufffd\\ufffd\"");                 /* truncated */
    json_is("\x80x", 2, "\"\\ufffdx\"");                          /* stray */
    json_is("\xff", 1, "\"\\ufffd\"");
}
END_TEST

START_TEST(utf8_len_is_the_escapers_rule)
{
    ck_assert_uint_eq(kg_modutil_utf8_len("a", 1), 1);
    ck_assert_uint_eq(kg_modutil_utf8_len("\xc3\xa9", 2), 2);
    ck_assert_uint_eq(kg_modutil_utf8_len("\xe2\x82\xac!", 4), 3);
    ck_assert_uint_eq(kg_modutil_utf8_len("\xf4\x8f\xbf\xbf", 4), 4);
    ck_assert_uint_eq(kg_modutil_utf8_len("\xe2\x82\xac", 2), 0);  /* n */
    ck_assert_uint_eq(kg_modutil_utf8_len("\xe0\x80\xaf", 3), 0);
    ck_assert_uint_eq(kg_modutil_utf8_len("\xed\xa0\x80", 3), 0);
    ck_assert_uint_eq(kg_modutil_utf8_len("\xf4\x90\x80\x80", 4), 0);
    ck_assert_uint_eq(kg_modutil_utf8_len("\xc1\xbf", 2), 0);
    ck_assert_uint_eq(kg_modutil_utf8_len("a", 0), 0);
}
END_TEST

/* ---- clock, wipe -------------------------------------------------------- */

START_TEST(mono_us_counts_microseconds)
{
    struct timespec ts = { 0, 20 * 1000 * 1000 };
    int64_t a = kg_modutil_mono_us(), b;
    ck_assert_int_gt(a, 0);
    nanosleep(&ts, NULL);
    b = kg_modutil_mono_us();
    ck_assert_int_ge(b - a, 20000);
    /* not the wall clock (whose microseconds since 1970 are > 1.7e15) */
    ck_assert_int_lt(a, (int64_t)time(NULL) * 1000000 - 1000000);
}
END_TEST

START_TEST(wipe_free_takes_null_and_secrets)
{
    kg_modutil_wipe_free(NULL);
    kg_modutil_wipe_free(strdup("hunter2"));   /* ASan: freed, once */
    kg_modutil_wipe_free(strdup(""));
}
END_TEST

static Suite *modutil_suite(void)
{
    Suite *s = suite_create("modutil");
    TCase *tc = tcase_create("helpers");
    tcase_add_test(tc, duration_bare_number_is_the_callers_unit);
    tcase_add_test(tc, duration_units);
    tcase_add_test(tc, duration_refuses);
    tcase_add_test(tc, asprintf_formats_any_length);
    tcase_add_test(tc, hex_lower_case);
    tcase_add_test(tc, json_escapes);
    tcase_add_test(tc, json_copies_well_formed_utf8);
    tcase_add_test(tc, json_replaces_ill_formed_utf8);
    tcase_add_test(tc, utf8_len_is_the_escapers_rule);
    tcase_add_test(tc, mono_us_counts_microseconds);
    tcase_add_test(tc, wipe_free_takes_null_and_secrets);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(modutil_suite());
}
