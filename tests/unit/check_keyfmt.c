/*
 * check_keyfmt - the key format (core/keyfmt.c): generation, the CRC32
 * base62 checksum, prefix rules, SHA-256 hashing, constant-time hash
 * comparison, hex, and the display prefix.
 */
#include "testutil.h"

#define RAND_PART(k, plen) ((k) + (plen) + 1)

static const char b62[] =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/* ---- generate -> validate ---------------------------------------------- */

START_TEST(generate_has_the_format)
{
    char k[KG_KEY_MAX];
    size_t i;
    ck_assert_int_eq(kg_key_generate("whizo", k, sizeof(k)), KG_OK);
    ck_assert_uint_eq(strlen(k), 5 + 1 + KG_KEY_RANDOM_LEN + KG_KEY_CHECKSUM_LEN);
    ck_assert(strncmp(k, "whizo_", 6) == 0);
    for (i = 6; k[i]; i++)
        ck_assert_msg(strchr(b62, k[i]) != NULL, "non-base62 '%c' in %s", k[i], k);
    ck_assert_int_eq(kg_key_validate(k, strlen(k)), KG_OK);
}
END_TEST

START_TEST(generate_default_prefix)
{
    char k[KG_KEY_MAX];
    ck_assert_int_eq(kg_key_generate(NULL, k, sizeof(k)), KG_OK);
    ck_assert(strncmp(k, "whizo_", 6) == 0);
}
END_TEST

START_TEST(generate_many_distinct_and_valid)
{
    /* 200 keys: all valid, all distinct (the RNG is really used). */
    static char keys[200][KG_KEY_MAX];
    int i, j;
    for (i = 0; i < 200; i++) {
        ck_assert_int_eq(kg_key_generate("t", keys[i], KG_KEY_MAX), KG_OK);
        ck_assert_int_eq(kg_key_validate(keys[i], strlen(keys[i])), KG_OK);
        for (j = 0; j < i; j++)
            ck_assert_str_ne(keys[i], keys[j]);
    }
}
END_TEST

START_TEST(generate_digits_cover_the_alphabet)
{
    /* Rejection sampling keeps digits uniform: over 100 keys (3200
     * digits, ~52 per symbol) every one of the 62 symbols appears. */
    int seen[128] = { 0 }, i, n = 0;
    size_t j;
    for (i = 0; i < 100; i++) {
        char k[KG_KEY_MAX];
        ck_assert_int_eq(kg_key_generate("x", k, sizeof(k)), KG_OK);
        for (j = 0; j < KG_KEY_RANDOM_LEN; j++)
            seen[(unsigned char)k[2 + j]]++;
    }
    for (i = 0; b62[i]; i++)
        n += seen[(unsigned char)b62[i]] > 0;
    ck_assert_int_eq(n, 62);
}
END_TEST

START_TEST(generate_buffer_too_small)
{
    char k[KG_KEY_MAX];
    size_t need = 5 + 1 + KG_KEY_RANDOM_LEN + KG_KEY_CHECKSUM_LEN + 1;
    ck_assert_int_eq(kg_key_generate("whizo", k, need - 1), KG_ERR_INVALID);
    ck_assert_int_eq(kg_key_generate("whizo", k, need), KG_OK);
    ck_assert_int_eq(kg_key_generate("whizo", NULL, need), KG_ERR_INVALID);
}
END_TEST

/* ---- the checksum catches every single-character change ------------- */

START_TEST(every_single_change_is_detected)
{
    char k[KG_KEY_MAX], m[KG_KEY_MAX];
    size_t len, i, j;
    ck_assert_int_eq(kg_key_generate("whizo", k, sizeof(k)), KG_OK);
    len = strlen(k);
    for (i = 0; i < len; i++) {
        if (k[i] == '_')
            continue;
        for (j = 0; b62[j]; j++) {
            if (b62[j] == k[i])
                continue;
            memcpy(m, k, len + 1);
            m[i] = b62[j];
            ck_assert_msg(kg_key_validate(m, len) == KG_ERR_KEY_FORMAT,
                          "change at %zu to '%c' not detected: %s", i, b62[j], m);
        }
    }
}
END_TEST

/* Keys issued by earlier builds (whose checksum was zlib's crc32()) stay
 * valid: the checksums below are Python's zlib.crc32 of the first 38 or
 * 37 characters, in base62, most significant digit first. */
START_TEST(known_checksums)
{
    static const char *const ok[] = {
        "whizo_0123456789ABCDEFGHIJKLMNOPQRSTUV25T8Mu",
        "acme_zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz4Jbez0",
    };
    size_t i;
    for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        ck_assert_msg(kg_key_validate(ok[i], strlen(ok[i])) == KG_OK,
                      "%s does not validate", ok[i]);
    ck_assert_int_eq(kg_key_validate("whizo_0123456789ABCDEFGHIJKLMNOPQRSTUV25T8Mv", 44),
                     KG_ERR_KEY_FORMAT);
}
END_TEST

START_TEST(adjacent_swaps_are_detected)
{
    char k[KG_KEY_MAX], m[KG_KEY_MAX];
    size_t len, i;
    ck_assert_int_eq(kg_key_generate("whizo", k, sizeof(k)), KG_OK);
    len = strlen(k);
    for (i = 6; i + 1 < len; i++) {
        if (k[i] == k[i + 1])
            continue;
        memcpy(m, k, len + 1);
        m[i] = k[i + 1];
        m[i + 1] = k[i];
        ck_assert_int_eq(kg_key_validate(m, len), KG_ERR_KEY_FORMAT);
    }
}
END_TEST

/* ---- malformed keys ---------------------------------------------------- */

START_TEST(wrong_length)
{
    char k[KG_KEY_MAX], m[KG_KEY_MAX + 2];
    size_t len;
    ck_assert_int_eq(kg_key_generate("whizo", k, sizeof(k)), KG_OK);
    len = strlen(k);
    ck_assert_int_eq(kg_key_validate(k, len - 1), KG_ERR_KEY_FORMAT);
    snprintf(m, sizeof(m), "%sA", k);
    ck_assert_int_eq(kg_key_validate(m, len + 1), KG_ERR_KEY_FORMAT);
    ck_assert_int_eq(kg_key_validate("", 0), KG_ERR_KEY_FORMAT);
    ck_assert_int_eq(kg_key_validate(NULL, 0), KG_ERR_KEY_FORMAT);
    ck_assert_int_eq(kg_key_validate("whizo_", 6), KG_ERR_KEY_FORMAT);
}
END_TEST

START_TEST(wrong_charset)
{
    char k[KG_KEY_MAX], m[KG_KEY_MAX];
    const char bad[] = "-+/=_.~ \t\n\x01\x80\xff";
    size_t len, i;
    ck_assert_int_eq(kg_key_generate("whizo", k, sizeof(k)), KG_OK);
    len = strlen(k);
    for (i = 0; i < sizeof(bad) - 1; i++) {
        memcpy(m, k, len + 1);
        m[10] = bad[i];
        ck_assert_int_eq(kg_key_validate(m, len), KG_ERR_KEY_FORMAT);
    }
    /* A NUL inside the given length is not a key either. */
    memcpy(m, k, len + 1);
    m[10] = '\0';
    ck_assert_int_eq(kg_key_validate(m, len), KG_ERR_KEY_FORMAT);
}
END_TEST

START_TEST(prefix_rules)
{
    char k[KG_KEY_MAX], m[2 * KG_KEY_MAX];
    char longp[KG_KEY_PREFIX_MAX + 2];

    /* Letters and digits, 1 to KG_KEY_PREFIX_MAX of them. */
    ck_assert_int_eq(kg_key_generate("a", k, sizeof(k)), KG_OK);
    ck_assert_int_eq(kg_key_validate(k, strlen(k)), KG_OK);
    ck_assert_int_eq(kg_key_generate("Ab9", k, sizeof(k)), KG_OK);
    ck_assert_int_eq(kg_key_validate(k, strlen(k)), KG_OK);
    memset(longp, 'p', KG_KEY_PREFIX_MAX);
    longp[KG_KEY_PREFIX_MAX] = '\0';
    ck_assert_int_eq(kg_key_generate(longp, k, sizeof(k)), KG_OK);
    ck_assert_int_eq(kg_key_validate(k, strlen(k)), KG_OK);
    longp[KG_KEY_PREFIX_MAX] = 'p';
    longp[KG_KEY_PREFIX_MAX + 1] = '\0';
    ck_assert_int_eq(kg_key_generate(longp, m, sizeof(m)), KG_ERR_INVALID);

    ck_assert_int_eq(kg_key_generate("", k, sizeof(k)), KG_ERR_INVALID);
    ck_assert_int_eq(kg_key_generate("who_zo", k, sizeof(k)), KG_ERR_INVALID);
    ck_assert_int_eq(kg_key_generate("wh-zo", k, sizeof(k)), KG_ERR_INVALID);
    ck_assert_int_eq(kg_key_generate("wh zo", k, sizeof(k)), KG_ERR_INVALID);

    /* The prefix is under the checksum: changing it is detected. */
    ck_assert_int_eq(kg_key_generate("whizo", k, sizeof(k)), KG_OK);
    snprintf(m, sizeof(m), "whizp%s", k + 5);
    ck_assert_int_eq(kg_key_validate(m, strlen(m)), KG_ERR_KEY_FORMAT);
    /* No prefix at all, or no separator. */
    ck_assert_int_eq(kg_key_validate(k + 5, strlen(k + 5)), KG_ERR_KEY_FORMAT);
    ck_assert_int_eq(kg_key_validate(k + 6, strlen(k + 6)), KG_ERR_KEY_FORMAT);
}
END_TEST

/* ---- hashing --------------------------------------------------------- */

START_TEST(sha256_known_vectors)
{
    unsigned char h[KG_HASH_LEN];
    char hex[2 * KG_HASH_LEN + 1];
    /* FIPS 180-2, appendix B.1 */
    kg_key_hash("abc", 3, h);
    kg_hash_to_hex(h, hex);
    ck_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    kg_key_hash("", 0, h);
    kg_hash_to_hex(h, hex);
    ck_assert_str_eq(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}
END_TEST

START_TEST(hash_equal_constant_time_api)
{
    unsigned char a[KG_HASH_LEN], b[KG_HASH_LEN];
    size_t i;
    kg_key_hash("one", 3, a);
    memcpy(b, a, sizeof(a));
    ck_assert_int_eq(kg_hash_equal(a, b), 1);
    /* A difference in any byte, first or last, is seen. */
    for (i = 0; i < KG_HASH_LEN; i++) {
        b[i] ^= 0x01;
        ck_assert_int_eq(kg_hash_equal(a, b), 0);
        b[i] ^= 0x01;
    }
    kg_key_hash("two", 3, b);
    ck_assert_int_eq(kg_hash_equal(a, b), 0);
}
END_TEST

START_TEST(hex_round_trip)
{
    unsigned char h[KG_HASH_LEN], back[KG_HASH_LEN];
    char hex[2 * KG_HASH_LEN + 1], upper[2 * KG_HASH_LEN + 1];
    size_t i;
    kg_key_hash("round trip", 10, h);
    kg_hash_to_hex(h, hex);
    ck_assert_uint_eq(strlen(hex), 64);
    ck_assert_int_eq(kg_hash_from_hex(hex, back), KG_OK);
    ck_assert(memcmp(h, back, KG_HASH_LEN) == 0);
    for (i = 0; i < 64; i++)
        upper[i] = (char)(hex[i] >= 'a' ? hex[i] - 32 : hex[i]);
    upper[64] = '\0';
    ck_assert_int_eq(kg_hash_from_hex(upper, back), KG_OK);
    ck_assert(memcmp(h, back, KG_HASH_LEN) == 0);

    ck_assert_int_eq(kg_hash_from_hex(NULL, back), KG_ERR_INVALID);
    ck_assert_int_eq(kg_hash_from_hex("abcd", back), KG_ERR_INVALID);
    hex[63] = '\0';
    ck_assert_int_eq(kg_hash_from_hex(hex, back), KG_ERR_INVALID);
    kg_hash_to_hex(h, hex);
    hex[10] = 'g';
    ck_assert_int_eq(kg_hash_from_hex(hex, back), KG_ERR_INVALID);
}
END_TEST

/* ---- display --------------------------------------------------------- */

START_TEST(display_shows_at_most_eight)
{
    char k[KG_KEY_MAX], out[KG_KEY_DISPLAY_LEN + 4];
    ck_assert_int_eq(kg_key_generate("whizo", k, sizeof(k)), KG_OK);
    memset(out, 'Z', sizeof(out));
    kg_key_display(k, strlen(k), out);
    ck_assert_uint_eq(strlen(out), KG_KEY_DISPLAY_LEN + 3);
    ck_assert(strncmp(out, k, KG_KEY_DISPLAY_LEN) == 0);
    ck_assert_str_eq(out + KG_KEY_DISPLAY_LEN, "...");
    /* Nothing past the 8th character leaks. */
    ck_assert(strstr(out, k + KG_KEY_DISPLAY_LEN) == NULL);

    kg_key_display("abc", 3, out);
    ck_assert_str_eq(out, "abc...");
    kg_key_display("", 0, out);
    ck_assert_str_eq(out, "...");
    /* Control bytes are not echoed into logs. */
    kg_key_display("a\nb\x1b[c", 6, out);
    ck_assert_str_eq(out, "a?b?[c...");
}
END_TEST

START_TEST(wipe_clears)
{
    char buf[32];
    size_t i;
    memset(buf, 'k', sizeof(buf));
    kg_wipe(buf, sizeof(buf));
    for (i = 0; i < sizeof(buf); i++)
        ck_assert_int_eq(buf[i], 0);
    kg_wipe(NULL, 10);  /* must not crash */
}
END_TEST

static Suite *keyfmt_suite(void)
{
    Suite *s = suite_create("keyfmt");
    TCase *tc;

    tc = tcase_create("generate");
    tcase_add_test(tc, generate_has_the_format);
    tcase_add_test(tc, generate_default_prefix);
    tcase_add_test(tc, generate_many_distinct_and_valid);
    tcase_add_test(tc, generate_digits_cover_the_alphabet);
    tcase_add_test(tc, generate_buffer_too_small);
    suite_add_tcase(s, tc);

    tc = tcase_create("checksum");
    tcase_add_test(tc, every_single_change_is_detected);
    tcase_add_test(tc, known_checksums);
    tcase_add_test(tc, adjacent_swaps_are_detected);
    suite_add_tcase(s, tc);

    tc = tcase_create("malformed");
    tcase_add_test(tc, wrong_length);
    tcase_add_test(tc, wrong_charset);
    tcase_add_test(tc, prefix_rules);
    suite_add_tcase(s, tc);

    tc = tcase_create("hash");
    tcase_add_test(tc, sha256_known_vectors);
    tcase_add_test(tc, hash_equal_constant_time_api);
    tcase_add_test(tc, hex_round_trip);
    suite_add_tcase(s, tc);

    tc = tcase_create("display");
    tcase_add_test(tc, display_shows_at_most_eight);
    tcase_add_test(tc, wipe_clears);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(keyfmt_suite());
}
