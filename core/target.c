/*
 * target.c - a request's method and target as route checks see them
 * (docs/policy.md "Request targets").
 *
 * The path is normalized the way the upstream will read it (RFC 3986
 * section 6.2.2: percent-encodings in upper case, encoded unreserved
 * characters decoded, "." and ".." segments removed), and repeated
 * slashes are merged, so that "/v1/jobs/%2e%2e/admin" cannot slip past a
 * route rule that a plain string compare would miss.  What servers read
 * differently is flagged rather than guessed at, for kg_check() to
 * refuse unless the policy's `paths:` says how the upstream reads it:
 *
 *   ";" parameters on a ".", ".." or empty segment ("/v1/crawl/..;/admin":
 *       Tomcat, Jetty and Spring strip the parameters and go up);
 *   "\" or "%5C" anywhere (some servers take it for "/");
 *   ".." over an empty segment ("/v1/crawl//../admin": a server that
 *       merges slashes goes up one segment further than one that does not).
 *
 * The policy's `paths:` (kg__paths_load) allows each of them, for an
 * upstream that takes it as a plain character.
 */
#include "internal.h"

#include <string.h>

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

int kg__method_valid(const char *m)
{
    size_t i, n = strlen(m);
    if (n == 0 || n > KG__METHOD_MAX)
        return 0;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)m[i];
        /* RFC 9110 tchar */
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || strchr("!#$%&'*+-.^_`|~", c) != NULL))
            return 0;
    }
    return 1;
}

/* "." or ".." (n bytes at s): 1 or 2, else 0. */
static int dots(const char *s, size_t n)
{
    if (n == 1 && s[0] == '.')
        return 1;
    if (n == 2 && s[0] == '.' && s[1] == '.')
        return 2;
    return 0;
}

int kg__target_normalize(const char *in, size_t len, char *out,
                         unsigned *flags_r)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t i, o = 0, r, w;
    unsigned flags = 0;
    int dir = 0;   /* end with '/': the last segment was "." or ".." */

    /* The query and fragment are not part of the path. */
    for (i = 0; i < len; i++)
        if (in[i] == '?' || in[i] == '#')
            break;
    len = i;
    if (len == 0 || in[0] != '/')
        return -1;
    /* out holds "/seg/seg..." with empty segments kept (RFC 3986's
     * remove_dot_segments, 5.2.4), so that a ".." over an empty one can
     * be seen; slashes are merged at the end. */
    i = 1;
    for (;;) {
        size_t seg = o, name;
        size_t params = (size_t)-1;   /* where ";" starts, in out */
        int d;

        out[o++] = '/';
        while (i < len && in[i] != '/') {
            unsigned char c = (unsigned char)in[i];
            if (c < 0x20 || c == 0x7f)
                return -1;
            if (c == '%') {
                int v;
                /* A '%' that starts no escape is no URI (RFC 3986 2.1).
                 * Let through, "%%32e" would be "%2e" here, which is
                 * not the "%2e" that means "." and "." to an upstream
                 * that decodes twice: the path would not be one string
                 * with one meaning. */
                if (i + 2 >= len || hexval(in[i + 1]) < 0 || hexval(in[i + 2]) < 0)
                    return -1;
                v = hexval(in[i + 1]) * 16 + hexval(in[i + 2]);
                /* An encoded '/' is data to the upstream but a separator
                 * to some proxies; an encoded NUL or control character
                 * is no path at all. */
                if (v < 0x20 || v == 0x7f || v == '/')
                    return -1;
                i += 3;
                if (unreserved(v)) {
                    out[o++] = (char)v;
                    continue;
                }
                if (v == '\\')
                    flags |= KG__TARGET_BACKSLASH;
                if (v == ';' && params == (size_t)-1)
                    params = o;
                out[o++] = '%';
                out[o++] = hex[v >> 4];
                out[o++] = hex[v & 15];
                continue;
            }
            if (c == '\\')
                flags |= KG__TARGET_BACKSLASH;
            if (c == ';' && params == (size_t)-1)
                params = o;
            out[o++] = (char)c;
            i++;
        }
        /* The segment is out[seg + 1 .. o); its name ends at ";". */
        name = (params != (size_t)-1 ? params : o) - (seg + 1);
        if (params != (size_t)-1 && (name == 0 || dots(out + seg + 1, name)))
            flags |= KG__TARGET_SEMICOLON;
        d = dots(out + seg + 1, o - seg - 1);
        if (d != 0) {
            o = seg;
            if (d == 2 && o > 0) {
                /* Up one: drop the last segment ("/" alone if empty). */
                if (out[o - 1] == '/')
                    flags |= KG__TARGET_DOUBLE_SLASH;
                while (out[--o] != '/')
                    ;
            }
        }
        dir = d != 0;
        if (i >= len)
            break;
        i++;   /* the '/' */
    }
    if (o == 0 || dir)
        out[o++] = '/';
    /* Merge repeated slashes. */
    for (r = w = 0; r < o; r++)
        if (!(out[r] == '/' && w > 0 && out[w - 1] == '/'))
            out[w++] = out[r];
    out[w] = '\0';
    *flags_r = flags;
    return 0;
}

kg_error kg__paths_load(kg__pload *L, kg__ynode *map, unsigned *allow_r)
{
    static const struct { const char *key; unsigned bit; } keys[] = {
        { "semicolon", KG__TARGET_SEMICOLON },
        { "backslash", KG__TARGET_BACKSLASH },
        { "double_slash", KG__TARGET_DOUBLE_SLASH },
    };
    kg__ynode *v;
    kg_error e;
    size_t i;

    if (map->type != KG__Y_MAP)
        return kg__err_at(L, map, "paths must be a mapping (e.g. paths: "
                          "{semicolon: refuse, backslash: refuse})");
    for (i = 0; i < KG__ARRAY_LEN(keys); i++) {
        if ((v = kg__ymap_get(map, keys[i].key)) == NULL)
            continue;
        if ((e = kg__want_scalar(L, v, keys[i].key)) != KG_OK)
            return e;
        if (strcmp(v->value, "allow") == 0)
            *allow_r |= keys[i].bit;
        else if (strcmp(v->value, "refuse") != 0)
            return kg__err_at(L, v, "paths: %s must be refuse or allow, "
                              "not '%s'", keys[i].key, v->value);
    }
    return kg__check_unknown(L, map, "paths",
                             "semicolon, backslash, double_slash");
}

const char *kg__target_refusal(unsigned state)
{
    if (state & KG__TARGET_MALFORMED)
        return "the request's method or target is malformed";
    if (state & KG__TARGET_SEMICOLON)
        return "the path has ';' parameters on a '.', '..' or empty segment, "
               "which servers read differently (policy paths: semicolon)";
    if (state & KG__TARGET_BACKSLASH)
        return "the path holds a backslash, which some servers read as '/' "
               "(policy paths: backslash)";
    if (state & KG__TARGET_DOUBLE_SLASH)
        return "the path has '..' after an empty segment ('//..'), which "
               "servers read differently (policy paths: double_slash)";
    return NULL;
}
