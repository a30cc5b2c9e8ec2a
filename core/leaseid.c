/*
 * leaseid.c - the text of a concurrency lease id:
 *
 *     <16 hex digits: a random id>.<hex of: key id, 0x1f, limit name>
 *
 * KG_LEASE_SIZE() bytes with its NUL, as long as the key id needs: key
 * ids may be long (an LDAP DN, an SQL id), so nothing here has a fixed
 * buffer.  No printf: a lease is formatted on every admitted check of a
 * concurrency limit and parsed on every release.
 */
#include "internal.h"

#include <string.h>

static const char hx[] = "0123456789abcdef";

/* Lowercase hex digit values + 1 (0: not a digit): a table, because
 * every release parses some sixty of them. */
static const unsigned char hexv[256] = {
    ['0'] = 1, ['1'] = 2, ['2'] = 3, ['3'] = 4, ['4'] = 5, ['5'] = 6,
    ['6'] = 7, ['7'] = 8, ['8'] = 9, ['9'] = 10, ['a'] = 11, ['b'] = 12,
    ['c'] = 13, ['d'] = 14, ['e'] = 15, ['f'] = 16,
};

static int hexval(char c)
{
    return (int)hexv[(unsigned char)c] - 1;
}

/* Each byte's two digits, one copy a byte: a lease id is formatted on
 * every admitted check of a concurrency limit, some forty bytes. */
#define HX(v) ((v) < 10 ? '0' + (v) : 'a' - 10 + (v))
#define HX1(n) HX((n) >> 4), HX((n) & 15)
#define HX4(n) HX1(n), HX1((n) + 1), HX1((n) + 2), HX1((n) + 3)
#define HX16(n) HX4(n), HX4((n) + 4), HX4((n) + 8), HX4((n) + 12)
#define HX64(n) HX16(n), HX16((n) + 16), HX16((n) + 32), HX16((n) + 48)
static const char hx2[512] = {
    HX64(0), HX64(64), HX64(128), HX64(192)
};

static char *hex_put(char *o, const char *s, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++, o += 2)
        memcpy(o, hx2 + 2 * (unsigned char)s[i], 2);
    return o;
}

void kg__lease_id_format(uint64_t id, const char *key, size_t klen,
                         const char *name, size_t nlen, char *out)
{
    int i;
    for (i = 0; i < 8; i++)
        memcpy(out + 2 * i, hx2 + 2 * ((id >> (56 - 8 * i)) & 0xff), 2);
    out[16] = '.';
    out = hex_put(out + 17, key, klen);
    memcpy(out, "1f", 2);
    out = hex_put(out + 2, name, nlen);
    *out = '\0';
}

int kg__lease_id_random(const char *lease, size_t len, uint64_t *id_r)
{
    uint64_t id = 0;
    size_t i;

    if (len < 18 || lease[16] != '.' || (len - 17) % 2 != 0)
        return -1;
    for (i = 0; i < 16; i++) {
        int v = hexval(lease[i]);
        if (v < 0)
            return -1;
        id = id << 4 | (uint64_t)v;
    }
    *id_r = id;
    return 0;
}

int kg__lease_id_key(const char *lease, size_t len, char *key)
{
    size_t klen = (len - 17) / 2, i;

    for (i = 0; i < klen; i++) {
        int hi = hexval(lease[17 + 2 * i]), lo = hexval(lease[18 + 2 * i]);
        if (hi < 0 || lo < 0 || (hi | lo) == 0)
            return -1;
        key[i] = (char)(hi << 4 | lo);
    }
    key[klen] = '\0';
    return 0;
}

/* The hex of s[0..n) at h (before end)?  Where it ends, or NULL. */
static const char *hex_eat(const char *h, const char *end, const char *s,
                           size_t n)
{
    size_t i;
    if ((size_t)(end - h) < 2 * n)
        return NULL;
    for (i = 0; i < n; i++, h += 2) {
        unsigned char c = (unsigned char)s[i];
        if (h[0] != hx[c >> 4] || h[1] != hx[c & 15])
            return NULL;
    }
    return h;
}

int kg__lease_id_names(const char *lease, size_t len, const char *key_id,
                       size_t klen, const char *limit)
{
    const char *end = lease + len, *h = lease + 17;

    if (len < 18 || lease[16] != '.')
        return 0;
    if ((h = hex_eat(h, end, key_id, klen)) == NULL ||
        (h = hex_eat(h, end, "\x1f", 1)) == NULL ||
        (h = hex_eat(h, end, limit, strlen(limit))) == NULL)
        return 0;
    return h == end;
}
