/*
 * cidr.c - IPv4/IPv6 networks.  IPv4 is held as v4-mapped IPv6
 * (::ffff:a.b.c.d) so that one comparison covers both families and a
 * v4-mapped client address matches an IPv4 allowlist.
 */
#include "internal.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

kg_error kg_addr_parse(const char *s, unsigned char out[16])
{
    struct in_addr a4;
    char buf[64];
    size_t n;

    if (s == NULL)
        return KG_ERR_INVALID;
    n = strlen(s);
    /* "[::1]" as some front ends write it. */
    if (n >= 2 && s[0] == '[' && s[n - 1] == ']' && n - 2 < sizeof(buf)) {
        memcpy(buf, s + 1, n - 2);
        buf[n - 2] = '\0';
        s = buf;
    }
    if (inet_pton(AF_INET, s, &a4) == 1) {
        memset(out, 0, 10);
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &a4, 4);
        return KG_OK;
    }
    if (inet_pton(AF_INET6, s, out) == 1)
        return KG_OK;
    return KG_ERR_INVALID;
}

kg_error kg_cidr_parse(const char *s, kg_cidr *out)
{
    char buf[80], *slash, *end;
    long pfx;
    int v4;
    struct in_addr a4;

    if (s == NULL || strlen(s) >= sizeof(buf))
        return KG_ERR_INVALID;
    strcpy(buf, s);
    slash = strchr(buf, '/');
    if (slash != NULL)
        *slash++ = '\0';
    v4 = inet_pton(AF_INET, buf, &a4) == 1;
    if (kg_addr_parse(buf, out->addr) != KG_OK)
        return KG_ERR_INVALID;
    if (slash == NULL) {
        out->prefix = 128;
    } else {
        if (*slash == '\0')
            return KG_ERR_INVALID;
        pfx = strtol(slash, &end, 10);
        if (*end != '\0' || pfx < 0 || pfx > (v4 ? 32 : 128))
            return KG_ERR_INVALID;
        out->prefix = (unsigned)(v4 ? pfx + 96 : pfx);
    }
    /* Clear host bits so that contains() is a plain masked compare. */
    {
        unsigned i;
        for (i = out->prefix; i < 128; i++)
            out->addr[i / 8] &= (unsigned char)~(0x80u >> (i % 8));
    }
    return KG_OK;
}

int kg_cidr_contains(const kg_cidr *c, const unsigned char addr[16])
{
    unsigned full = c->prefix / 8, rest = c->prefix % 8;
    if (memcmp(c->addr, addr, full) != 0)
        return 0;
    if (rest == 0)
        return 1;
    {
        unsigned char mask = (unsigned char)(0xff << (8 - rest));
        return (c->addr[full] & mask) == (addr[full] & mask);
    }
}
