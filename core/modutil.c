/* modutil.c - the helpers of keygate/modutil.h, for plugins. */
#include "internal.h"

#include <keygate/modutil.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

kg_error kg_modutil_duration_ms(const char *s, int64_t default_unit_ms,
                                int64_t *ms_r)
{
    static const struct { const char *name; int64_t ms; } units[] = {
        { "ms", 1 }, { "s", 1000 }, { "m", 60000 }, { "h", 3600000 },
    };
    int64_t v = 0, unit = -1;
    size_t i;

    if (s == NULL || ms_r == NULL || default_unit_ms <= 0 ||
        *s < '0' || *s > '9')
        return KG_ERR_INVALID;
    for (; *s >= '0' && *s <= '9'; s++) {
        if (v > (INT64_MAX - (*s - '0')) / 10)
            return KG_ERR_INVALID;
        v = v * 10 + (*s - '0');
    }
    if (*s == '\0')
        unit = default_unit_ms;
    for (i = 0; unit < 0 && i < sizeof(units) / sizeof(units[0]); i++)
        if (strcmp(s, units[i].name) == 0)
            unit = units[i].ms;
    if (unit < 0 || v > INT64_MAX / unit)
        return KG_ERR_INVALID;
    *ms_r = v * unit;
    return KG_OK;
}

char *kg_modutil_asprintf(const char *fmt, ...)
{
    va_list ap;
    char *p;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || (p = malloc((size_t)n + 1)) == NULL)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

void kg_modutil_hex(const void *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    const unsigned char *p = in;
    size_t i;

    for (i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = '\0';
}

/* Strict (keygate/modutil.h): a lenient reader of the JSON would
 * decode an overlong '"' or '/' that the escaping never saw. */
size_t kg_modutil_utf8_len(const void *in, size_t n)
{
    const unsigned char *s = in;
    static const uint32_t min[5] = { 0, 0, 0x80, 0x800, 0x10000 };
    size_t need, i;
    uint32_t cp;

    if (n == 0)
        return 0;
    if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        need = 2;
        cp = s[0] & 0x1f;
    } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
        need = 3;
        cp = s[0] & 0x0f;
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        need = 4;
        cp = s[0] & 0x07;
    } else {
        return s[0] < 0x80;
    }
    if (n < need)
        return 0;
    for (i = 1; i < need; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min[need] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return need;
}

char *kg_modutil_json_string(const char *s, size_t len)
{
    kg__buf b;
    kg__buf_init(&b);
    kg__buf_json_strn(&b, s == NULL ? "" : s, s == NULL ? 0 : len);
    return kg__buf_take(&b);
}

int64_t kg_modutil_mono_us(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        return 0;
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void kg_modutil_wipe_free(char *secret)
{
    if (secret == NULL)
        return;
    kg_wipe(secret, strlen(secret));
    free(secret);
}
