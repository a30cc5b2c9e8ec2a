/*
 * keyfmt.c - the key format: "<prefix>_<32 base62 random><6 base62 CRC32>".
 *
 * The checksum lets a malformed or mistyped key be refused before any
 * store is asked, and lets secret scanners recognise a leaked key.  Keys
 * are stored only as SHA-256 hashes and compared in constant time.
 */
#include "internal.h"

#include <string.h>
#include <libdeflate.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

static const char b62[] =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/* 1 for the base62 characters.  A table, not three range tests: the
 * characters of a random key make those branches unpredictable, and this
 * runs over every key of every check. */
static const unsigned char b62_ok[256] = {
    ['0' ... '9'] = 1, ['A' ... 'Z'] = 1, ['a' ... 'z'] = 1,   /* GNU C */
};

static int b62_char(char c)
{
    return b62_ok[(unsigned char)c];
}

/* CRC-32 (the zlib/IEEE polynomial) of `n` bytes, as 6 base62 digits.
 * libdeflate's: 20 ns for a key where zlib's table loop takes 68
 * (docs/nginx.md), and the same value (fuzz_keyfmt checks it against
 * zlib's). */
static void checksum(const char *s, size_t n, char out[KG_KEY_CHECKSUM_LEN])
{
    uint32_t crc = libdeflate_crc32(0, s, n);
    int i;
    for (i = KG_KEY_CHECKSUM_LEN - 1; i >= 0; i--) {
        out[i] = b62[crc % 62];
        crc /= 62;
    }
}

static int prefix_ok(const char *p, size_t n)
{
    size_t i;
    if (n == 0 || n > KG_KEY_PREFIX_MAX)
        return 0;
    for (i = 0; i < n; i++) {
        if (!b62_char(p[i]))
            return 0;
    }
    return 1;
}

kg_error kg_key_generate(const char *prefix, char *buf, size_t size)
{
    unsigned char rnd[KG_KEY_RANDOM_LEN];
    size_t plen, i, pos;

    if (prefix == NULL)
        prefix = "whizo";
    plen = strlen(prefix);
    if (buf == NULL || !prefix_ok(prefix, plen))
        return KG_ERR_INVALID;
    if (size < plen + 1 + KG_KEY_RANDOM_LEN + KG_KEY_CHECKSUM_LEN + 1)
        return KG_ERR_INVALID;
    memcpy(buf, prefix, plen);
    buf[plen] = '_';
    pos = plen + 1;
    /*
     * Rejection sampling keeps every base62 digit uniform: bytes >= 248
     * (= 4 * 62) are drawn again instead of being folded by the modulo.
     */
    i = 0;
    while (i < KG_KEY_RANDOM_LEN) {
        size_t j;
        if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
            kg_wipe(buf, size);
            return KG_ERR_IO;
        }
        for (j = 0; j < sizeof(rnd) && i < KG_KEY_RANDOM_LEN; j++) {
            if (rnd[j] >= 248)
                continue;
            buf[pos + i++] = b62[rnd[j] % 62];
        }
    }
    kg_wipe(rnd, sizeof(rnd));
    pos += KG_KEY_RANDOM_LEN;
    checksum(buf, pos, buf + pos);
    buf[pos + KG_KEY_CHECKSUM_LEN] = '\0';
    return KG_OK;
}

kg_error kg_key_validate(const char *key, size_t len)
{
    const char *us;
    size_t plen, i;
    char sum[KG_KEY_CHECKSUM_LEN];

    if (key == NULL)
        return KG_ERR_KEY_FORMAT;
    us = memchr(key, '_', len);
    if (us == NULL)
        return KG_ERR_KEY_FORMAT;
    plen = (size_t)(us - key);
    if (!prefix_ok(key, plen))
        return KG_ERR_KEY_FORMAT;
    if (len != plen + 1 + KG_KEY_RANDOM_LEN + KG_KEY_CHECKSUM_LEN)
        return KG_ERR_KEY_FORMAT;
    {
        /* Four characters a step, no branch on any of them. */
        const unsigned char *k = (const unsigned char *)key;
        unsigned ok = 1;
        for (i = plen + 1; i + 4 <= len; i += 4)
            ok &= b62_ok[k[i]] & b62_ok[k[i + 1]] & b62_ok[k[i + 2]] &
                  b62_ok[k[i + 3]];
        for (; i < len; i++)
            ok &= b62_ok[k[i]];
        if (!ok)
            return KG_ERR_KEY_FORMAT;
    }
    checksum(key, len - KG_KEY_CHECKSUM_LEN, sum);
    if (memcmp(sum, key + len - KG_KEY_CHECKSUM_LEN, KG_KEY_CHECKSUM_LEN) != 0)
        return KG_ERR_KEY_FORMAT;
    return KG_OK;
}

/*
 * Hashing is on every check's path.  Where OpenSSL still has SHA-256's
 * own functions (deprecated since 3.0, kept through 3.x: configure
 * checks), they hash a 45-byte key in about half the time EVP takes
 * (55 against 95 ns on the reference VM): EVP's provider dispatch costs
 * more than the one block.  Otherwise the implementation is fetched
 * once per process (an immutable handle) and each thread keeps its own
 * digest context: OpenSSL 3's implicit fetch and a context allocation
 * per call cost more than the hash itself.
 */
#ifdef HAVE_SHA256_INIT
#include <openssl/sha.h>

/* Deprecated, not going: the functions are here on purpose (above). */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
void kg_key_hash(const char *key, size_t len, unsigned char out[KG_HASH_LEN])
{
    SHA256_CTX c;

    /* They return 1; a zeroed hash matches no stored key.  The context
     * keeps no part of the key: SHA256_Final() cleanses the block it
     * buffered, and what is left is the digest. */
    if (!(SHA256_Init(&c) && SHA256_Update(&c, key, len) && SHA256_Final(out, &c)))
        memset(out, 0, KG_HASH_LEN);
}
#pragma GCC diagnostic pop
#else
static pthread_once_t sha_once = PTHREAD_ONCE_INIT;
static EVP_MD *sha256_md;
static pthread_key_t sha_ctx_key;

static void sha_ctx_free(void *p)
{
    EVP_MD_CTX_free(p);
}

static void sha_init(void)
{
    sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (pthread_key_create(&sha_ctx_key, sha_ctx_free) != 0)
        sha256_md = NULL;
}

void kg_key_hash(const char *key, size_t len, unsigned char out[KG_HASH_LEN])
{
    EVP_MD_CTX *c;
    unsigned int n = KG_HASH_LEN;

    pthread_once(&sha_once, sha_init);
    if (sha256_md == NULL)
        goto slow;
    c = pthread_getspecific(sha_ctx_key);
    if (c == NULL) {
        c = EVP_MD_CTX_new();
        if (c == NULL || pthread_setspecific(sha_ctx_key, c) != 0) {
            EVP_MD_CTX_free(c);
            goto slow;
        }
    }
    if (EVP_DigestInit_ex2(c, sha256_md, NULL) == 1 &&
        EVP_DigestUpdate(c, key, len) == 1 &&
        EVP_DigestFinal_ex(c, out, &n) == 1)
        return;
slow:
    /* Cannot fail for SHA-256 short of memory exhaustion, in which case
     * the output is zeroed and so matches no stored key. */
    if (EVP_Digest(key, len, out, &n, EVP_sha256(), NULL) != 1)
        memset(out, 0, KG_HASH_LEN);
}
#endif

int kg_hash_equal(const unsigned char *a, const unsigned char *b)
{
    return CRYPTO_memcmp(a, b, KG_HASH_LEN) == 0;
}

void kg_hash_to_hex(const unsigned char hash[KG_HASH_LEN],
                    char out[2 * KG_HASH_LEN + 1])
{
    static const char hx[] = "0123456789abcdef";
    size_t i;
    for (i = 0; i < KG_HASH_LEN; i++) {
        out[2 * i] = hx[hash[i] >> 4];
        out[2 * i + 1] = hx[hash[i] & 15];
    }
    out[2 * KG_HASH_LEN] = '\0';
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

kg_error kg_hash_from_hex(const char *hex, unsigned char out[KG_HASH_LEN])
{
    size_t i;
    if (hex == NULL || strlen(hex) != 2 * KG_HASH_LEN)
        return KG_ERR_INVALID;
    for (i = 0; i < KG_HASH_LEN; i++) {
        int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return KG_ERR_INVALID;
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return KG_OK;
}

void kg_key_display(const char *key, size_t len, char out[KG_KEY_DISPLAY_LEN + 4])
{
    size_t n = len < KG_KEY_DISPLAY_LEN ? len : KG_KEY_DISPLAY_LEN;
    size_t i;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)key[i];
        out[i] = (c >= 0x21 && c < 0x7f) ? (char)c : '?';
    }
    memcpy(out + n, "...", 4);
}

void kg_wipe(void *p, size_t len)
{
    if (p != NULL && len > 0)
        OPENSSL_cleanse(p, len);
}
