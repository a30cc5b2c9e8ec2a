/*
 * fuzz_keyfmt.c - the key format (core/keyfmt.c): kg_key_validate() on
 * any bytes, checked against the format of docs/keys.md written out
 * again here (prefix of 1-32 base62, '_', 32 base62, 6 base62 of the
 * CRC-32); the same bytes with their checksum made right must validate,
 * and then any one character changed must not; the bytes as a prefix for
 * kg_key_generate(); hex hashes both ways; the display prefix.
 */
#include "fuzz.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <zlib.h>

#include <keygate/keygate.h>
#include <keygate/plugin.h>

static const char b62[] =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

static int is_b62(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

/* The format, but for the checksum's value: where the checksum starts,
 * or 0. */
static size_t shape(const char *k, size_t n)
{
    const char *us = memchr(k, '_', n);
    size_t plen, i;

    if (us == NULL)
        return 0;
    plen = (size_t)(us - k);
    if (plen == 0 || plen > KG_KEY_PREFIX_MAX ||
        n != plen + 1 + KG_KEY_RANDOM_LEN + KG_KEY_CHECKSUM_LEN)
        return 0;
    for (i = 0; i < n; i++)
        if (i != plen && !is_b62(k[i]))
            return 0;
    return n - KG_KEY_CHECKSUM_LEN;
}

static void model_checksum(const char *k, size_t n, char out[KG_KEY_CHECKSUM_LEN])
{
    uint32_t crc = (uint32_t)crc32(0L, (const unsigned char *)k, (uInt)n);
    int i;

    for (i = KG_KEY_CHECKSUM_LEN - 1; i >= 0; i--) {
        out[i] = b62[crc % 62];
        crc /= 62;
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_init();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *k = (const char *)data;
    char *s = fz_strndup(data, size);
    size_t body = shape(k, size);
    char sum[KG_KEY_CHECKSUM_LEN];
    int valid = kg_key_validate(k, size) == KG_OK;
    char disp[KG_KEY_DISPLAY_LEN + 4], gen[KG_KEY_MAX + 8];
    unsigned char h[KG_HASH_LEN], h2[KG_HASH_LEN];
    char hex[2 * KG_HASH_LEN + 1];
    size_t i;

    if (body != 0)
        model_checksum(k, body, sum);
    if (valid != (body != 0 && memcmp(sum, k + body, KG_KEY_CHECKSUM_LEN) == 0))
        abort();
    if (body != 0) {
        /* The same key with the right checksum, then every change of one
         * character of it to another base62 character is refused (CRC-32
         * finds every one-byte error; 62^6 > 2^32 keeps it in 6 digits). */
        char *fixed = fz_strndup(data, size);

        memcpy(fixed + body, sum, KG_KEY_CHECKSUM_LEN);
        if (kg_key_validate(fixed, size) != KG_OK)
            abort();
        for (i = 0; i < size; i++) {
            char was = fixed[i];

            if (was == '_')
                continue;
            fixed[i] = b62[(strchr(b62, was) - b62 + 1 + data[i % size] % 61) % 62];
            if (fixed[i] != was && kg_key_validate(fixed, size) == KG_OK)
                abort();
            fixed[i] = was;
        }
        free(fixed);
    }

    /* The bytes (to a NUL) as a prefix: a key that validates, or refused. */
    if (kg_key_generate(s, gen, sizeof(gen)) == KG_OK) {
        size_t plen = strlen(s);
        if (plen == 0 || plen > KG_KEY_PREFIX_MAX ||
            strncmp(gen, s, plen) != 0 || gen[plen] != '_' ||
            kg_key_validate(gen, strlen(gen)) != KG_OK)
            abort();
        for (i = 0; i < plen; i++)
            if (!is_b62(s[i]))
                abort();
    }
    /* Too small a buffer is refused, not overrun. */
    if (kg_key_generate(s, gen, 8) == KG_OK)
        abort();

    kg_key_display(k, size, disp);
    for (i = 0; disp[i] != '\0'; i++)
        if ((unsigned char)disp[i] < 0x21 || (unsigned char)disp[i] >= 0x7f)
            abort();
    if (i > KG_KEY_DISPLAY_LEN + 3)
        abort();

    /* Hex: what parses prints back the same up to case. */
    if (kg_hash_from_hex(s, h) == KG_OK) {
        kg_hash_to_hex(h, hex);
        if (strlen(s) != 2 * KG_HASH_LEN || strcasecmp(hex, s) != 0)
            abort();
        if (kg_hash_from_hex(hex, h2) != KG_OK || memcmp(h, h2, sizeof(h)) != 0)
            abort();
    }
    kg_key_hash(k, size, h);
    free(s);
    return 0;
}
