/*
 * keygated_log.c - the access log (one JSON object per decision) and the
 * service's own messages (stderr, for journald).
 *
 * Access lines are collected in a small buffer per worker thread and
 * written with one write(2) when the buffer is full (4 KB = PIPE_BUF, so
 * that writes to a pipe never interleave either) or when it is older
 * than 200 ms; the main thread also flushes every buffer every 200 ms
 * and at exit.  A write(2) per request would be a third of keygated's
 * system calls.  Each buffer holds whole lines, and a file is opened
 * O_APPEND, so lines never interleave; but two threads' buffers go out
 * in the order they fill, not line by line, so adjacent lines from
 * different threads may be out of time order by up to 200 ms.  Each line
 * therefore starts with "seq", a number counted across the process in
 * the order the lines were made: sort by it (docs/keygated.md, "Access
 * log").  The line never holds the key: only the key id and its
 * 8-character display prefix.
 *
 * SIGHUP reopens the file (log rotation) by dup2()ing the new descriptor
 * over the old one, which is atomic for concurrent writers.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "keygated.h"

#define LINE_MAX_BYTES 4096   /* = PIPE_BUF on Linux */
#define MAX_BUFFERS 512        /* worker threads */
#define FLUSH_AFTER_NS (200 * 1000000LL)

struct logbuf {
    pthread_mutex_t lock;
    size_t len;
    int64_t first_ns;         /* when the oldest line went in */
    char data[LINE_MAX_BYTES];
};

static struct {
    int fd;          /* -1: off */
    char *path;      /* NULL: stdout */
    pthread_mutex_t reg;
    struct logbuf *bufs[MAX_BUFFERS];
    size_t nbufs;
} L = { -1, NULL, PTHREAD_MUTEX_INITIALIZER, { NULL }, 0 };

static __thread struct logbuf *tl_buf;
static atomic_ullong seq;   /* the last line's number */

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Write a buffer out (its lock held). */
static void flush_locked(struct logbuf *b)
{
    if (b->len > 0 && L.fd >= 0) {
        /* A failed write loses log lines, never a request. */
        if (write(L.fd, b->data, b->len) < 0) {
            /* nothing useful to do here */
        }
    }
    b->len = 0;
}

static struct logbuf *my_buffer(void)
{
    struct logbuf *b = tl_buf;
    if (b != NULL)
        return b;
    pthread_mutex_lock(&L.reg);
    if (L.nbufs < MAX_BUFFERS && (b = calloc(1, sizeof(*b))) != NULL) {
        pthread_mutex_init(&b->lock, NULL);
        L.bufs[L.nbufs++] = b;
    }
    pthread_mutex_unlock(&L.reg);
    tl_buf = b;
    return b;
}

void kgd_log_flush(void)
{
    size_t i, n;
    pthread_mutex_lock(&L.reg);
    n = L.nbufs;
    pthread_mutex_unlock(&L.reg);
    for (i = 0; i < n; i++) {
        pthread_mutex_lock(&L.bufs[i]->lock);
        flush_locked(L.bufs[i]);
        pthread_mutex_unlock(&L.bufs[i]->lock);
    }
}

/* Append a literal (no printf on the request path). */
static size_t lit(char *buf, size_t len, size_t cap, const char *s, size_t n)
{
    if (len + n >= cap)
        return len;
    memcpy(buf + len, s, n);
    buf[len + n] = '\0';
    return len + n;
}
#define LIT(s) n = lit(line, n, cap, s, sizeof(s) - 1)

/* Append a decimal integer (no printf on the request path). */
static size_t num(char *buf, size_t len, size_t cap, long long v)
{
    char tmp[24];
    return lit(buf, len, cap, tmp, kgd_fmt_int(tmp, v));
}

static void emit(const char *line, size_t n)
{
    struct logbuf *b = my_buffer();
    int64_t now;

    if (b == NULL) {
        if (write(L.fd, line, n) < 0) {
            /* as above */
        }
        return;
    }
    now = mono_ns();
    pthread_mutex_lock(&b->lock);
    if (b->len + n > sizeof(b->data))
        flush_locked(b);
    if (b->len == 0)
        b->first_ns = now;
    memcpy(b->data + b->len, line, n);
    b->len += n;
    if (now - b->first_ns >= FLUSH_AFTER_NS)
        flush_locked(b);
    pthread_mutex_unlock(&b->lock);
}

int kgd_log_open(const char *target)
{
    int fd;

    if (target == NULL || strcmp(target, "off") == 0) {
        L.fd = -1;
        return 0;
    }
    if (strcmp(target, "-") == 0) {
        L.fd = STDOUT_FILENO;
        return 0;
    }
    fd = open(target, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0)
        return -1;
    L.path = strdup(target);
    if (L.path == NULL) {
        close(fd);
        errno = ENOMEM;
        return -1;
    }
    L.fd = fd;
    return 0;
}

void kgd_log_reopen(void)
{
    int fd;

    if (L.path == NULL || L.fd < 0)
        return;
    fd = open(L.path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0) {
        kgd_log_msg("cannot reopen the access log %s: %s (still writing "
                    "to the old file)", L.path, strerror(errno));
        return;
    }
    if (dup2(fd, L.fd) < 0)
        kgd_log_msg("cannot reopen the access log %s: %s", L.path,
                    strerror(errno));
    close(fd);
}

void kgd_log_close(void)
{
    size_t i;

    kgd_log_flush();
    for (i = 0; i < L.nbufs; i++) {
        pthread_mutex_destroy(&L.bufs[i]->lock);
        free(L.bufs[i]);
        L.bufs[i] = NULL;
    }
    L.nbufs = 0;
    if (L.path != NULL && L.fd >= 0)
        close(L.fd);
    free(L.path);
    L.path = NULL;
    L.fd = -1;
}

static void now_iso(char out[64])
{
    /* The date part changes once a second: format it once per thread. */
    static __thread time_t last_sec = (time_t)-1;
    static __thread char prefix[64];
    struct timeval tv;
    struct tm tm;
    unsigned ms;

    gettimeofday(&tv, NULL);
    if (tv.tv_sec != last_sec) {
        time_t t = tv.tv_sec;
        gmtime_r(&t, &tm);
        snprintf(prefix, sizeof(prefix), "%04d-%02d-%02dT%02d:%02d:%02d.",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                 tm.tm_min, tm.tm_sec);
        last_sec = tv.tv_sec;
    }
    ms = (unsigned)(tv.tv_usec / 1000);
    memcpy(out, prefix, 20);
    out[20] = (char)('0' + ms / 100);
    out[21] = (char)('0' + ms / 10 % 10);
    out[22] = (char)('0' + ms % 10);
    out[23] = 'Z';
    out[24] = '\0';
}

void kgd_log_access(const struct kgd_access *a)
{
    char line[LINE_MAX_BYTES], ts[64];
    /* The path is cut so that the line stays one atomic write. */
    const size_t cap = sizeof(line) - 1;   /* room for the newline */
    size_t n = 0, plen;
    const kg_decision *d = a->d;
    kg_code code;

    if (L.fd < 0)
        return;
    now_iso(ts);
    code = kg_decision_code(d);
    LIT("{\"seq\":");
    n = num(line, n, cap, (long long)(atomic_fetch_add_explicit(&seq, 1, memory_order_relaxed) + 1));
    LIT(",\"time\":\"");
    n = lit(line, n, cap, ts, strlen(ts));
    LIT("\",\"endpoint\":\"");
    n = lit(line, n, cap, a->endpoint, strlen(a->endpoint));
    LIT("\",\"key_id\":");
    n = kgd_json_cstr(line, n, cap, kg_decision_key_id(d));
    LIT(",\"account\":");
    n = kgd_json_cstr(line, n, cap, kg_decision_account_id(d));
    LIT(",\"key_prefix\":");
    n = kgd_json_cstr(line, n, cap, kg_decision_key_prefix(d));
    LIT(",\"plan\":");
    n = kgd_json_cstr(line, n, cap, kg_decision_plan(d));
    LIT(",\"client\":");
    n = kgd_json_cstr(line, n, cap, a->client);
    LIT(",\"method\":");
    n = kgd_json_cstr(line, n, cap, a->method);
    LIT(",\"path\":");
    plen = a->path ? strlen(a->path) : 0;
    if (plen > 512)   /* escaped, at most 6 bytes each: fits the line */
        plen = 512;
    if (a->path)
        n = kgd_json_str(line, n, cap, a->path, plen);
    else
        LIT("null");
    LIT(",\"status\":");
    n = num(line, n, cap, kg_decision_status(d));
    LIT(",\"code\":\"");
    {
        const char *cn = code == KG_CODE_NONE ? "ok" : kg_code_name(code);
        n = lit(line, n, cap, cn, strlen(cn));
    }
    LIT("\",\"decided_by\":");
    n = kgd_json_cstr(line, n, cap, kg_decision_decided_by(d));
    LIT(",\"us\":");
    n = num(line, n, cap, (long long)a->micros);
    LIT("}");
    line[n++] = '\n';
    emit(line, n);
}

void kgd_log_msg(const char *fmt, ...)
{
    char buf[2048], ts[64];
    va_list ap;
    int n;

    now_iso(ts);
    n = snprintf(buf, sizeof(buf), "%s keygated: ", ts);
    va_start(ap, fmt);
    vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    n = (int)strlen(buf);
    buf[n++] = '\n';
    if (write(STDERR_FILENO, buf, (size_t)n) < 0) {
        /* stderr gone: nowhere else to say it */
    }
}
