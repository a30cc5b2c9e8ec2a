/*
 * util.c - strings, growable buffers, diagnostics, durations and the
 * error and decision-code tables.
 */
#include "internal.h"

#include <keygate/modutil.h>

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>

const char *kg_strerror(kg_error err)
{
    /* A switch without default: the compiler flags a code with no text. */
    switch (err) {
    case KG_OK: return "success";
    case KG_ERR_NOMEM: return "out of memory";
    case KG_ERR_INVALID: return "invalid argument";
    case KG_ERR_IO: return "input/output error";
    case KG_ERR_POLICY: return "invalid policy";
    case KG_ERR_PLUGIN: return "plugin could not be loaded or configured";
    case KG_ERR_NOT_FOUND: return "not found";
    case KG_ERR_UNAVAILABLE: return "backend unavailable";
    case KG_ERR_READONLY: return "key store is read-only";
    case KG_ERR_EXISTS: return "already exists";
    case KG_ERR_UNSUPPORTED: return "operation not supported";
    case KG_ERR_VERIFY: return "verification failed";
    case KG_ERR_KEY_FORMAT: return "malformed key";
    case KG_ERR_WOULD_BLOCK: return "the check would wait on a backend";
    case KG_ERR__LAST: break;
    }
    return "unknown error";
}

const char *kg_code_name(kg_code code)
{
    switch (code) {
    case KG_CODE_NONE: return "";
    case KG_CODE_INVALID_REQUEST: return "invalid_request";
    case KG_CODE_UNAUTHORIZED: return "unauthorized";
    case KG_CODE_KEY_REVOKED: return "key_revoked";
    case KG_CODE_KEY_EXPIRED: return "key_expired";
    case KG_CODE_INSUFFICIENT_PERMISSIONS: return "insufficient_permissions";
    case KG_CODE_IP_NOT_ALLOWED: return "ip_not_allowed";
    case KG_CODE_RATE_LIMITED: return "rate_limited";
    case KG_CODE_ACCOUNT_SUSPENDED: return "account_suspended";
    case KG_CODE_AUTH_UNAVAILABLE: return "auth_unavailable";
    case KG_CODE__LAST: break;
    }
    return "unknown";
}

int kg_code_status(kg_code code)
{
    switch (code) {
    case KG_CODE_NONE: return 200;
    case KG_CODE_INVALID_REQUEST: return 400;
    case KG_CODE_UNAUTHORIZED:
    case KG_CODE_KEY_REVOKED:
    case KG_CODE_KEY_EXPIRED: return 401;
    case KG_CODE_INSUFFICIENT_PERMISSIONS:
    case KG_CODE_IP_NOT_ALLOWED: return 403;
    case KG_CODE_RATE_LIMITED: return 429;
    case KG_CODE_ACCOUNT_SUSPENDED: return 403;
    case KG_CODE_AUTH_UNAVAILABLE: return 503;
    case KG_CODE__LAST: break;
    }
    return 500;
}

const char *kg_version(void)
{
    return PACKAGE_VERSION;
}

const char *kg_plugin_kind_name(int kind)
{
    switch (kind) {
    case KG_PLUGIN_CREDENTIAL: return "credential";
    case KG_PLUGIN_KEYSTORE: return "keystore";
    case KG_PLUGIN_ACCOUNT: return "account";
    case KG_PLUGIN_LIMIT: return "limit";
    case KG_PLUGIN_SIGNER: return "signer";
    case KG_PLUGIN_USAGE: return "usage";
    case KG_PLUGIN_NOTIFIER: return "notifier";
    }
    return "unknown";
}

void kg__diag_clear(kg_diag *d)
{
    if (d == NULL)
        return;
    d->file[0] = '\0';
    d->line = d->column = 0;
    d->message[0] = '\0';
}

void kg__diag_vset(kg_diag *d, const char *file, unsigned line, unsigned col,
                   const char *fmt, va_list ap)
{
    if (d == NULL)
        return;
    snprintf(d->file, sizeof(d->file), "%s", file ? file : "");
    d->line = line;
    d->column = col;
    vsnprintf(d->message, sizeof(d->message), fmt, ap);
}

void kg__diag_set(kg_diag *d, const char *file, unsigned line, unsigned col,
                  const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    kg__diag_vset(d, file, line, col, fmt, ap);
    va_end(ap);
}

const char *kg_diag_format(const kg_diag *d, char *buf, size_t size)
{
    if (buf == NULL || size == 0)
        return "";
    if (d == NULL) {
        buf[0] = '\0';
    } else if (d->file[0] != '\0' && d->line > 0) {
        snprintf(buf, size, "%s:%u:%u: %s", d->file, d->line, d->column,
                 d->message);
    } else if (d->file[0] != '\0') {
        snprintf(buf, size, "%s: %s", d->file, d->message);
    } else {
        snprintf(buf, size, "%s", d->message);
    }
    return buf;
}

kg_error kg__str_set(char **dst, const char *s)
{
    char *p = NULL;
    if (s != NULL && (p = strdup(s)) == NULL)
        return KG_ERR_NOMEM;
    free(*dst);
    *dst = p;
    return KG_OK;
}

kg_error kg__str_set_inline(char **dst, char *buf, size_t size, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (s == NULL || n >= size) {
        char *old = *dst == buf ? NULL : *dst, *p = NULL;
        if (s != NULL && (p = strdup(s)) == NULL)
            return KG_ERR_NOMEM;
        free(old);
        *dst = p;
        return KG_OK;
    }
    if (*dst != buf)
        free(*dst);
    memmove(buf, s, n + 1);
    *dst = buf;
    return KG_OK;
}

char *kg__strdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

char *kg__strndup(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p == NULL)
        return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *kg__asprintf(const char *fmt, ...)
{
    va_list ap;
    char *p = NULL;
    va_start(ap, fmt);
    if (vasprintf(&p, fmt, ap) < 0)
        p = NULL;
    va_end(ap);
    return p;
}

void kg__strlcpy(char *dst, const char *src, size_t size)
{
    size_t n = strlen(src);
    if (size == 0)
        return;
    if (n >= size)
        n = size - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

int kg__strcaseeq(const char *a, const char *b)
{
    return strcasecmp(a, b) == 0;
}

void kg__free_secret(char *s)
{
    if (s == NULL)
        return;
    OPENSSL_cleanse(s, strlen(s));
    free(s);
}

void kg__buf_init(kg__buf *b)
{
    b->p = NULL;
    b->len = b->cap = 0;
    b->oom = 0;
    b->inl = NULL;
}

void kg__buf_init_inline(kg__buf *b, char *mem, size_t cap)
{
    kg__buf_init(b);
    b->p = b->inl = mem;
    b->cap = cap;
    mem[0] = '\0';
}

void kg__buf_free(kg__buf *b)
{
    if (b->p != b->inl)
        free(b->p);
    kg__buf_init(b);
}

static int buf_grow(kg__buf *b, size_t extra)
{
    size_t want;
    char *p;

    if (b->oom)
        return -1;
    if (b->len + extra + 1 <= b->cap)
        return 0;
    want = b->cap ? b->cap * 2 : 128;
    while (want < b->len + extra + 1)
        want *= 2;
    if (b->p != NULL && b->p == b->inl) {
        /* Out of the caller's storage, onto the heap. */
        if ((p = malloc(want)) != NULL)
            memcpy(p, b->p, b->len + 1);
    } else {
        p = realloc(b->p, want);
    }
    if (p == NULL) {
        b->oom = 1;
        return -1;
    }
    b->p = p;
    b->cap = want;
    return 0;
}

void kg__buf_add_grow(kg__buf *b, const char *s, size_t n)
{
    if (buf_grow(b, n) < 0)
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

/* "00" to "99": two digits a division. */
static const char digits2[201] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

/* The eight digits of r (< 10^8) ending at end: two halves of four, each
 * two pairs, in 32-bit arithmetic with no chain of divisions. */
static void fmt_8(char *end, uint32_t r)
{
    uint32_t hi = r / 10000, lo = r % 10000;
    memcpy(end - 2, digits2 + (lo % 100) * 2, 2);
    memcpy(end - 4, digits2 + (lo / 100) * 2, 2);
    memcpy(end - 6, digits2 + (hi % 100) * 2, 2);
    memcpy(end - 8, digits2 + (hi / 100) * 2, 2);
}

/* How many digits u has (1 for 0): its bit length gives the count to
 * within one (1233 / 4096 is just under log10(2)), a table the rest. */
static unsigned ndigits(uint64_t u)
{
    static const uint64_t pow10[20] = {
        1ULL, 10ULL, 100ULL, 1000ULL, 10000ULL, 100000ULL, 1000000ULL,
        10000000ULL, 100000000ULL, 1000000000ULL, 10000000000ULL,
        100000000000ULL, 1000000000000ULL, 10000000000000ULL,
        100000000000000ULL, 1000000000000000ULL, 10000000000000000ULL,
        100000000000000000ULL, 1000000000000000000ULL,
        10000000000000000000ULL,
    };
    unsigned t = ((unsigned)(64 - __builtin_clzll(u | 1)) * 1233) >> 12;
    return t + ((u | 1) >= pow10[t]);
}

size_t kg__fmt_i64(char out[21], int64_t v)
{
    /* Through the unsigned form, so that INT64_MIN negates. */
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    size_t len = (v < 0) + ndigits(u);
    char *end = out + len;
    uint32_t w;

    /* Written in place from the end, its length known first: no copy.
     * Eight digits a 64-bit division (a limit of 10^12, a Unix time and
     * its window are rendered in every allowed request's headers). */
    if (v < 0)
        out[0] = '-';
    *end = '\0';
    while (u >= 100000000) {
        uint64_t q = u / 100000000;
        fmt_8(end, (uint32_t)(u - q * 100000000));
        end -= 8;
        u = q;
    }
    w = (uint32_t)u;
    while (w >= 100) {
        end -= 2;
        memcpy(end, digits2 + (w % 100) * 2, 2);
        w /= 100;
    }
    if (w >= 10)
        memcpy(end - 2, digits2 + w * 2, 2);
    else
        end[-1] = (char)('0' + w);
    return len;
}

void kg__buf_addi(kg__buf *b, int64_t v)
{
    char num[21];

    /* In place where any integer fits (its NUL is the buffer's). */
    if (b->len + sizeof(num) <= b->cap && !b->oom) {
        b->len += kg__fmt_i64(b->p + b->len, v);
        return;
    }
    kg__buf_add(b, num, kg__fmt_i64(num, v));
}

void kg__buf_addf(kg__buf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || buf_grow(b, (size_t)n) < 0)
        return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void kg__buf_json_strn(kg__buf *b, const char *s, size_t n)
{
    size_t i;
    char esc[8];

    kg__buf_add(b, "\"", 1);
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': kg__buf_add(b, "\\\"", 2); break;
        case '\\': kg__buf_add(b, "\\\\", 2); break;
        case '\n': kg__buf_add(b, "\\n", 2); break;
        case '\r': kg__buf_add(b, "\\r", 2); break;
        case '\t': kg__buf_add(b, "\\t", 2); break;
        default:
            /* Control bytes and bytes >= 0x80 that are not part of valid
             * UTF-8 are escaped so that the output is always valid JSON. */
            if (c < 0x20 || c == 0x7f) {
                snprintf(esc, sizeof(esc), "\\u%04x", c);
                kg__buf_add(b, esc, 6);
            } else if (c >= 0x80) {
                size_t k = kg_modutil_utf8_len(s + i, n - i);
                if (k > 0) {
                    kg__buf_add(b, s + i, k);
                    i += k - 1;
                } else {
                    kg__buf_add(b, "\\ufffd", 6);
                }
            } else {
                kg__buf_add(b, (const char *)&s[i], 1);
            }
        }
    }
    kg__buf_add(b, "\"", 1);
}

void kg__buf_json_str(kg__buf *b, const char *s)
{
    if (s == NULL) {
        kg__buf_adds(b, "null");
        return;
    }
    kg__buf_json_strn(b, s, strlen(s));
}

char *kg__buf_take(kg__buf *b)
{
    char *p;
    if (b->oom) {
        kg__buf_free(b);
        return NULL;
    }
    if (b->p == NULL) {
        p = strdup("");
    } else {
        p = b->p;
    }
    kg__buf_init(b);
    return p;
}

int kg__parse_duration(const char *s, int64_t *seconds_r)
{
    char *end;
    long long v;
    int64_t mul = 1;

    if (s == NULL || !isdigit((unsigned char)*s))
        return -1;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || v < 0)
        return -1;
    if (*end != '\0') {
        if (end[1] != '\0')
            return -1;
        switch (*end) {
        case 's': mul = 1; break;
        case 'm': mul = 60; break;
        case 'h': mul = 3600; break;
        case 'd': mul = 86400; break;
        case 'w': mul = 7 * 86400; break;
        case 'y': mul = 365 * 86400; break;   /* retention: {day: 2y} */
        default: return -1;
        }
    }
    if (v > INT64_MAX / mul)
        return -1;
    *seconds_r = (int64_t)v * mul;
    return 0;
}

int kg__parse_time(const char *s, int64_t *unix_r)
{
    struct tm tm;
    const char *end;

    memset(&tm, 0, sizeof(tm));
    end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (end == NULL) {
        memset(&tm, 0, sizeof(tm));
        end = strptime(s, "%Y-%m-%d", &tm);
    }
    if (end == NULL)
        return -1;
    if (*end == 'Z')
        end++;
    if (*end != '\0')
        return -1;
    *unix_r = (int64_t)timegm(&tm);
    return 0;
}

void kg__format_time(int64_t t, char out[32])
{
    struct tm tm;
    time_t tt = (time_t)t;
    gmtime_r(&tt, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void kg_diag_set(kg_diag *d, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    kg__diag_vset(d, NULL, 0, 0, fmt, ap);
    va_end(ap);
}

kg_error kg_duration_parse(const char *s, int64_t *seconds_r)
{
    return kg__parse_duration(s, seconds_r) == 0 ? KG_OK : KG_ERR_INVALID;
}

kg_error kg_time_parse(const char *s, int64_t *unix_r)
{
    return s != NULL && kg__parse_time(s, unix_r) == 0 ? KG_OK : KG_ERR_INVALID;
}

void kg_time_format(int64_t t, char out[32])
{
    kg__format_time(t, out);
}

/* ---- per-thread state ------------------------------------------------ */

/* Initial-exec: one load, where the default model for a library that
 * nginx loads with dlopen() costs a call to __tls_get_addr() per use
 * (five a check).  It needs 8 bytes of the static TLS that the C
 * library keeps for libraries loaded late (glibc keeps 512 bytes for
 * them by default). */
static __thread kg__thread *tls_thread __attribute__((tls_model("initial-exec")));
static pthread_key_t thread_key;
static pthread_once_t thread_once = PTHREAD_ONCE_INIT;

static void thread_free(void *p)
{
    kg__thread *t = p;
    while (t->nspare > 0)
        free(t->spare[--t->nspare]);
    kg_wipe(t->lease_ids, sizeof(t->lease_ids));
    free(t);
}

static void thread_init(void)
{
    (void)pthread_key_create(&thread_key, thread_free);
}

kg__thread *kg__thread_get(void)
{
    kg__thread *t = tls_thread;
    if (t == NULL) {
        pthread_once(&thread_once, thread_init);
        if ((t = calloc(1, sizeof(*t))) == NULL)
            return NULL;
        t->lease_pos = KG__LEASE_IDS;
        /* The key's destructor frees it when the thread exits. */
        pthread_setspecific(thread_key, t);
        tls_thread = t;
    }
    return t;
}

int kg__grow(void *v, size_t *cap, size_t n, size_t size, size_t first)
{
    void **vp = v;
    size_t ncap;
    void *nv;

    if (n < *cap)
        return 0;
    ncap = *cap ? *cap * 2 : first;
    if (ncap < *cap || (nv = realloc(*vp, ncap * size)) == NULL)
        return -1;
    *vp = nv;
    *cap = ncap;
    return 0;
}
