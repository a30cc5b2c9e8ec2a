/*
 * keygated_json.c - JSON string literals into fixed buffers.
 *
 * The access log quotes what clients sent (paths, methods), which may be
 * any bytes: the output must stay one valid JSON line whatever comes in,
 * so control characters are escaped and invalid UTF-8 becomes U+FFFD.
 * Fixed buffers (not malloc) because this runs once per request.
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "keygated.h"

#include <keygate/modutil.h>

/* Append raw bytes if they fit whole (a JSON escape is never split). */
static int put(char *buf, size_t *len, size_t size, const char *s, size_t n)
{
    if (*len + n + 1 > size)
        return -1;
    memcpy(buf + *len, s, n);
    *len += n;
    buf[*len] = '\0';
    return 0;
}

size_t kgd_json_str(char *buf, size_t len, size_t size, const char *s,
                    size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;

    if (size == 0)
        return 0;
    /* Keep room for the closing quote whatever happens. */
    if (len + 3 > size)
        return len;
    put(buf, &len, size - 1, "\"", 1);
    while (i < n) {
        char esc[8];
        size_t k;
        const char *out = esc;
        size_t outn;

        if (p[i] == '"' || p[i] == '\\') {
            esc[0] = '\\';
            esc[1] = (char)p[i];
            outn = 2;
            k = 1;
        } else if (p[i] < 0x20 || p[i] == 0x7f) {
            outn = (size_t)snprintf(esc, sizeof(esc), "\\u%04x", p[i]);
            k = 1;
        } else if (p[i] < 0x80) {
            /* A run of bytes that need no escape, copied at once; as
             * much of it as fits (the same as byte by byte). */
            size_t room = size - 2 - len;
            k = 1;
            while (i + k < n && p[i + k] >= 0x20 && p[i + k] < 0x7f &&
                   p[i + k] != '"' && p[i + k] != '\\')
                k++;
            if (k > room)
                k = room;
            if (k == 0)
                break;
            out = (const char *)p + i;
            outn = k;
        } else if ((k = kg_modutil_utf8_len(p + i, n - i)) == 0) {
            out = "\\ufffd";
            outn = 6;
            k = 1;
        } else {
            out = (const char *)p + i;
            outn = k;
        }
        if (put(buf, &len, size - 1, out, outn) != 0)
            break;
        i += k;
    }
    buf[len++] = '"';
    buf[len] = '\0';
    return len;
}

size_t kgd_json_cstr(char *buf, size_t len, size_t size, const char *s)
{
    if (s == NULL) {
        if (put(buf, &len, size, "null", 4) != 0)
            return len;
        return len;
    }
    return kgd_json_str(buf, len, size, s, strlen(s));
}

size_t kgd_fmt_int(char out[24], long long v)
{
    char tmp[24];
    size_t i = sizeof(tmp), n;
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v
                                 : (unsigned long long)v;

    do {
        tmp[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (v < 0)
        tmp[--i] = '-';
    n = sizeof(tmp) - i;
    memcpy(out, tmp + i, n);
    out[n] = '\0';
    return n;
}

size_t kgd_appendf(char *buf, size_t len, size_t size, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (len + 1 >= size)
        return len;
    va_start(ap, fmt);
    n = vsnprintf(buf + len, size - len, fmt, ap);
    va_end(ap);
    if (n < 0)
        return len;
    if ((size_t)n >= size - len) {
        /* Truncated: keep what fit. */
        return size - 1;
    }
    return len + (size_t)n;
}
