/*
 * keygated_origin.c - the method and path of the request the gateway is
 * asking about, which is not the request keygated itself receives:
 *
 *   nginx auth_request       X-Original-Method, X-Original-URI
 *   Traefik / Caddy          X-Forwarded-Method, X-Forwarded-Uri
 *   Envoy ext_authz (HTTP)   the original method, path_prefix + path:
 *                            "/check" + "/v1/scrape?x=1"
 *
 * The path is what permission checks match routes against, so it is
 * normalized here the way the upstream will see it: "/v1/./a/../admin"
 * and "/v1/%61dmin" must not slip past a route rule that a plain string
 * compare would miss.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "keygated.h"

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int unreserved(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
           c == '~';
}

int kgd_path_normalize(const char *in, size_t len, char *out, size_t size)
{
    char dec[4096];
    size_t i, n = 0, o = 0;
    size_t seg;
    int slash = 1;   /* end the result with '/' */

    if (size < 2)
        return -1;
    /* The query and fragment are not part of the path. */
    for (i = 0; i < len; i++)
        if (in[i] == '?' || in[i] == '#')
            break;
    len = i;
    if (len == 0 || in[0] != '/')
        return -1;
    if (len >= sizeof(dec))
        return -1;
    /* Decode %XX of unreserved characters only: the upstream treats
     * %61 as 'a', but an encoded '/' or '?' keeps its meaning as data,
     * and an encoded NUL or control character is refused outright. */
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c < 0x20 || c == 0x7f)
            return -1;
        if (c == '%' && i + 2 < len &&
            hexval(in[i + 1]) >= 0 && hexval(in[i + 2]) >= 0) {
            int v = hexval(in[i + 1]) * 16 + hexval(in[i + 2]);
            if (v < 0x20 || v == 0x7f || v == '/' || v == '\\')
                return -1;
            /* A stray '%' kept as it is ("/100%") must not become an
             * escape with what is decoded after it: "%7%61" would be
             * checked as "%7a" and read as "z" by an upstream that
             * decodes once more (and normalizing twice would differ). */
            if (hexval(v) >= 0 &&
                ((n >= 1 && dec[n - 1] == '%') ||
                 (n >= 2 && dec[n - 2] == '%' && hexval(dec[n - 1]) >= 0)))
                return -1;
            if (unreserved(v)) {
                dec[n++] = (char)v;
                i += 2;
                continue;
            }
        }
        dec[n++] = (char)c;
    }
    /* Remove dot segments (RFC 3986 5.2.4) and merge repeated slashes,
     * segment by segment. */
    out[o++] = '/';
    i = 0;
    while (i < n) {
        while (i < n && dec[i] == '/')
            i++;
        seg = i;
        while (i < n && dec[i] != '/')
            i++;
        if (i == seg)
            break;
        if (i - seg == 1 && dec[seg] == '.') {
            slash = 1;
            continue;
        } else if (i - seg == 2 && dec[seg] == '.' && dec[seg + 1] == '.') {
            /* Up one: back to the slash before the last segment. */
            if (o > 1) {
                o--;                       /* the trailing '/' */
                while (o > 1 && out[o - 1] != '/')
                    o--;
            }
            slash = 1;
            continue;
        }
        if (o + (i - seg) + 2 > size)
            return -1;
        memcpy(out + o, dec + seg, i - seg);
        o += i - seg;
        out[o++] = '/';
        slash = i < n;
    }
    /* Keep a trailing slash only where the input had one. */
    if (o > 1 && !slash)
        o--;
    out[o] = '\0';
    return 0;
}

static int token_char(unsigned char c)
{
    /* RFC 9110 tchar */
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int set_method(const char *m, char *out, size_t size)
{
    size_t i, n = strlen(m);
    if (n == 0 || n >= size)
        return -1;
    for (i = 0; i < n; i++)
        if (!token_char((unsigned char)m[i]))
            return -1;
    memcpy(out, m, n + 1);
    return 0;
}

int kgd_origin(kgd_origin_mode mode, const struct kgd_origin_in *in,
               char *method, size_t msize, char *path, size_t psize)
{
    const char *m = NULL, *u = NULL;
    const char *uri = in->raw_uri;

    if (mode == KGD_ORIGIN_AUTO || mode == KGD_ORIGIN_NGINX) {
        m = in->x_original_method;
        u = in->x_original_uri;
    }
    if (mode == KGD_ORIGIN_AUTO || mode == KGD_ORIGIN_FORWARDED) {
        if (m == NULL)
            m = in->x_forwarded_method;
        if (u == NULL)
            u = in->x_forwarded_uri;
    }
    if (m == NULL || *m == '\0')
        m = in->method;
    if (set_method(m, method, msize) != 0)
        return -1;
    if (u != NULL && *u != '\0')
        return kgd_path_normalize(u, strlen(u), path, psize);
    /* Envoy's path_prefix: the original path follows /check. */
    if (uri != NULL && strncmp(uri, "/check", 6) == 0 &&
        (uri[6] == '/' || uri[6] == '\0' || uri[6] == '?')) {
        const char *rest = uri + 6;
        if (*rest == '/')
            return kgd_path_normalize(rest, strlen(rest), path, psize);
    }
    if (psize < 2)
        return -1;
    strcpy(path, "/");
    return 0;
}
