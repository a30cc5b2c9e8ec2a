/*
 * keygated_log.c - the access log (one JSON object per decision) and the
 * service's own messages (stderr, for journald).
 *
 * Each access line is built in a stack buffer and written with a single
 * write(2): on a file opened O_APPEND, and on a pipe for lines up to
 * PIPE_BUF, concurrent lines never interleave, so no lock is needed on
 * the request path.  The line never holds the key: only the key id and
 * its 8-character display prefix.
 *
 * SIGHUP reopens the file (log rotation) by dup2()ing the new descriptor
 * over the old one, which is atomic for concurrent writers.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "keygated.h"

#define LINE_MAX_BYTES 4096   /* = PIPE_BUF on Linux */

static struct {
    int fd;          /* -1: off */
    char *path;      /* NULL: stdout */
} L = { -1, NULL };

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
    if (L.path != NULL && L.fd >= 0)
        close(L.fd);
    free(L.path);
    L.path = NULL;
    L.fd = -1;
}

static void now_iso(char out[64])
{
    struct timeval tv;
    struct tm tm;
    time_t t;

    gettimeofday(&tv, NULL);
    t = tv.tv_sec;
    gmtime_r(&t, &tm);
    snprintf(out, 64, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ",
             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
             tm.tm_min, tm.tm_sec, (long)(tv.tv_usec / 1000));
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
    n = kgd_appendf(line, n, cap, "{\"time\":\"%s\",\"endpoint\":\"%s\",\"key_id\":",
                    ts, a->endpoint);
    n = kgd_json_cstr(line, n, cap, kg_decision_key_id(d));
    n = kgd_appendf(line, n, cap, ",\"key_prefix\":");
    n = kgd_json_cstr(line, n, cap, kg_decision_key_prefix(d));
    n = kgd_appendf(line, n, cap, ",\"plan\":");
    n = kgd_json_cstr(line, n, cap, kg_decision_plan(d));
    n = kgd_appendf(line, n, cap, ",\"client\":");
    n = kgd_json_cstr(line, n, cap, a->client);
    n = kgd_appendf(line, n, cap, ",\"method\":");
    n = kgd_json_cstr(line, n, cap, a->method);
    n = kgd_appendf(line, n, cap, ",\"path\":");
    plen = a->path ? strlen(a->path) : 0;
    if (plen > 512)   /* escaped, at most 6 bytes each: fits the line */
        plen = 512;
    if (a->path)
        n = kgd_json_str(line, n, cap, a->path, plen);
    else
        n = kgd_appendf(line, n, cap, "null");
    n = kgd_appendf(line, n, cap, ",\"status\":%d,\"code\":\"%s\",\"decided_by\":",
                    kg_decision_status(d),
                    code == KG_CODE_NONE ? "ok" : kg_code_name(code));
    n = kgd_json_cstr(line, n, cap, kg_decision_decided_by(d));
    n = kgd_appendf(line, n, cap, ",\"us\":%lld}", (long long)a->micros);
    line[n++] = '\n';
    /* A short write to a full disk loses a log line, never a request. */
    if (write(L.fd, line, n) < 0) {
        /* nothing useful to do on the request path */
    }
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
