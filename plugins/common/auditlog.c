/*
 * auditlog.c - the audit log as a JSON-lines file (auditlog.h).
 *
 * A line is kg_audit_record_to_json() with "time_ms" after the id:
 *   {"id":7,"time_ms":1796000000123,"time":"...","actor":"cli:root",...}
 * Appends are serialised by flock(2) on the file itself (the id is the
 * last line's + 1) and made durable by fsync(2) before the lock is let
 * go: one fsync per change, and changes are rare (management, not
 * checks).  Lines are read back by libyaml (JSON is YAML's flow style);
 * "changes" is handed on as the bytes of the line that hold it, the
 * compact JSON object the core checked before it was written.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <yaml.h>

#include "auditlog.h"

char *kg__auditlog_beside(const char *path)
{
    size_t n = strlen(path);
    char *out = malloc(n + sizeof(".audit.jsonl"));

    if (out == NULL)
        return NULL;
    memcpy(out, path, n + 1);
    if (n > 5 && strcmp(path + n - 5, ".yaml") == 0)
        out[n - 5] = '\0';
    else if (n > 4 && strcmp(path + n - 4, ".yml") == 0)
        out[n - 4] = '\0';
    strcat(out, ".audit.jsonl");
    return out;
}

/* The id of a line of ours ({"id":N,...}), or -1. */
static long long line_id(const char *s, size_t n)
{
    static const char head[] = "{\"id\":";
    char *end;
    long long v;

    if (n < sizeof(head) || memcmp(s, head, sizeof(head) - 1) != 0)
        return -1;
    errno = 0;
    v = strtoll(s + sizeof(head) - 1, &end, 10);
    if (errno != 0 || end == s + sizeof(head) - 1 || *end != ',' || v < 1)
        return -1;
    return v;
}

/*
 * The file's whole contents (size *n_r; NULL and 0 for an empty file).
 * -1 with diag set if it cannot be read.
 */
static int read_all(int fd, const char *path, char **buf_r, size_t *n_r,
                    kg_diag *diag)
{
    struct stat st;
    char *buf = NULL;
    size_t got = 0;

    *buf_r = NULL;
    *n_r = 0;
    if (fstat(fd, &st) != 0) {
        kg_diag_set(diag, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (st.st_size == 0)
        return 0;
    if ((buf = malloc((size_t)st.st_size + 1)) == NULL) {
        kg_diag_set(diag, "%s: out of memory reading the audit log", path);
        return -1;
    }
    while (got < (size_t)st.st_size) {
        ssize_t r = pread(fd, buf + got, (size_t)st.st_size - got, (off_t)got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            kg_diag_set(diag, "%s: cannot read: %s", path, strerror(errno));
            free(buf);
            return -1;
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    buf[got] = '\0';
    *buf_r = buf;
    *n_r = got;
    return 0;
}

/* The id of the last line that has one (0: none), reading back from the
 * end in blocks; *torn_r is 1 if the file does not end with a newline. */
static int last_id(int fd, const char *path, long long *id_r, int *torn_r,
                   kg_diag *diag)
{
    struct stat st;
    size_t want = 4096;

    *id_r = 0;
    *torn_r = 0;
    if (fstat(fd, &st) != 0) {
        kg_diag_set(diag, "%s: %s", path, strerror(errno));
        return -1;
    }
    while (st.st_size > 0) {
        size_t n = want < (size_t)st.st_size ? want : (size_t)st.st_size;
        off_t from = st.st_size - (off_t)n;
        char *buf = malloc(n + 1), *end;
        ssize_t r;

        if (buf == NULL) {
            kg_diag_set(diag, "%s: out of memory", path);
            return -1;
        }
        r = pread(fd, buf, n, from);
        if (r != (ssize_t)n) {
            kg_diag_set(diag, "%s: cannot read: %s", path,
                        r < 0 ? strerror(errno) : "short read");
            free(buf);
            return -1;
        }
        buf[n] = '\0';
        *torn_r = buf[n - 1] != '\n';
        /* Lines from the last: a line is whole if a newline (or the
         * start of the file) comes before it. */
        end = buf + n;
        while (end > buf) {
            char *start = end;
            long long id;
            while (start > buf && start[-1] != '\n')
                start--;
            if (start == buf && from > 0)
                break;   /* may be cut: read more */
            if ((id = line_id(start, (size_t)(end - start))) > 0) {
                *id_r = id;
                free(buf);
                return 0;
            }
            end = start > buf ? start - 1 : buf;
        }
        free(buf);
        if (from == 0)
            break;
        want *= 4;
    }
    return 0;
}

static int write_all(int fd, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, s, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

kg_error kg__auditlog_append(const char *path, const kg_audit_record *r,
                             kg_diag *diag)
{
    kg_audit_record w = *r;
    char *json = NULL, *line = NULL, *comma;
    long long id;
    int fd, torn, locked = 0;
    size_t n;
    kg_error e = KG_ERR_IO;

    fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        kg_diag_set(diag, "%s: cannot open the audit log: %s", path, strerror(errno));
        return KG_ERR_IO;
    }
    if (flock(fd, LOCK_EX) != 0) {
        kg_diag_set(diag, "%s: cannot lock: %s", path, strerror(errno));
        goto out;
    }
    locked = 1;
    if (last_id(fd, path, &id, &torn, diag) != 0)
        goto out;
    w.id = id + 1;
    if ((json = kg_audit_record_to_json(&w)) == NULL ||
        (comma = strchr(json, ',')) == NULL) {
        e = KG_ERR_NOMEM;
        goto out;
    }
    n = strlen(json) + 64;
    if ((line = malloc(n)) == NULL) {
        e = KG_ERR_NOMEM;
        goto out;
    }
    /* One write(2) of the whole line: with O_APPEND, readers (which
     * take no lock) see a line whole or not yet. */
    n = (size_t)snprintf(line, n, "%s%.*s\"time_ms\":%lld,%s\n", torn ? "\n" : "",
                         (int)(comma - json + 1), json, (long long)w.time_ms,
                         comma + 1);
    if (write_all(fd, line, n) != 0 || fsync(fd) != 0) {
        kg_diag_set(diag, "%s: cannot write the audit log: %s", path, strerror(errno));
        goto out;
    }
    e = KG_OK;
out:
    if (locked)
        flock(fd, LOCK_UN);
    close(fd);
    free(json);
    free(line);
    return e;
}

/* ---- reading -------------------------------------------------------- */

enum { F_ACTOR_KEY, F_ACTOR_ACCT, F_ACTOR, F_CLIENT, F_ACTION, F_TARGET,
       F_ACCOUNT, F_RESULT, F_N };
static const char *const field_names[F_N] = {
    "actor_key_id", "actor_account_id", "actor", "client", "action",
    "target", "account_id", "result",
};

struct parsed {
    long long id, time_ms;
    char *s[F_N];
    char *changes;
};

static void parsed_free(struct parsed *p)
{
    size_t i;
    for (i = 0; i < F_N; i++)
        free(p->s[i]);
    free(p->changes);
    memset(p, 0, sizeof(*p));
}

/* One line into p: 0, or -1 if it is not a record of ours. */
static int parse_line(const char *s, size_t n, struct parsed *p)
{
    yaml_parser_t ps;
    yaml_event_t ev;
    char key[32] = "";
    int depth = 0, done = 0, ok = 0, want_key = 1, have_time = 0;
    size_t chg_start = 0;

    memset(p, 0, sizeof(*p));
    yaml_parser_initialize(&ps);
    yaml_parser_set_input_string(&ps, (const unsigned char *)s, n);
    while (!done) {
        if (!yaml_parser_parse(&ps, &ev))
            goto out;
        switch (ev.type) {
        case YAML_STREAM_END_EVENT:
            done = 1;
            break;
        case YAML_MAPPING_START_EVENT:
        case YAML_SEQUENCE_START_EVENT:
            if (depth == 1 && !want_key && strcmp(key, "changes") == 0 &&
                ev.type == YAML_MAPPING_START_EVENT)
                chg_start = ev.start_mark.index;
            depth++;
            break;
        case YAML_MAPPING_END_EVENT:
        case YAML_SEQUENCE_END_EVENT:
            depth--;
            if (depth == 1) {
                if (strcmp(key, "changes") == 0 && ev.type == YAML_MAPPING_END_EVENT &&
                    ev.end_mark.index > chg_start && p->changes == NULL)
                    p->changes = strndup(s + chg_start, ev.end_mark.index - chg_start);
                want_key = 1;
            }
            break;
        case YAML_SCALAR_EVENT: {
            const char *v = (const char *)ev.data.scalar.value;
            size_t i;
            if (depth != 1)
                break;
            if (want_key) {
                snprintf(key, sizeof(key), "%s", v);
                want_key = 0;
                break;
            }
            want_key = 1;
            if (strcmp(key, "id") == 0)
                p->id = strtoll(v, NULL, 10);
            else if (strcmp(key, "time_ms") == 0) {
                p->time_ms = strtoll(v, NULL, 10);
                have_time = 1;
            }
            for (i = 0; i < F_N; i++)
                if (strcmp(key, field_names[i]) == 0 && p->s[i] == NULL &&
                    (p->s[i] = strdup(v)) == NULL)
                    goto out_ev;
            break;
        }
        default:
            break;
        }
        yaml_event_delete(&ev);
    }
    ok = p->id > 0 && have_time;
    goto out;
out_ev:
    yaml_event_delete(&ev);
out:
    yaml_parser_delete(&ps);
    if (!ok)
        parsed_free(p);
    return ok ? 0 : -1;
}

static int matches(const char *want, const char *have)
{
    return want == NULL || want[0] == '\0' ||
           (have != NULL && strcmp(want, have) == 0);
}

kg_error kg__auditlog_query(const char *path, const kg_audit_query *q,
                            kg_audit_cb cb, void *ud, kg_diag *diag)
{
    char *buf = NULL, *end;
    size_t n = 0, sent = 0;
    int fd;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return KG_OK;   /* nothing audited yet */
        kg_diag_set(diag, "%s: cannot open the audit log: %s", path, strerror(errno));
        return KG_ERR_IO;
    }
    if (read_all(fd, path, &buf, &n, diag) != 0) {
        close(fd);
        return KG_ERR_IO;
    }
    close(fd);
    /* Newest first: the lines from the last whole one back. */
    end = buf != NULL ? buf + n : NULL;
    while (end != NULL && end > buf) {
        char *start;
        struct parsed p;
        long long id;
        int stop;

        if (end[-1] != '\n') {
            /* a line still being written, or torn: skip it */
            while (end > buf && end[-1] != '\n')
                end--;
            continue;
        }
        end--;
        start = end;
        while (start > buf && start[-1] != '\n')
            start--;
        id = line_id(start, (size_t)(end - start));
        if (id <= 0 || (q->before_id > 0 && id >= q->before_id)) {
            end = start;
            continue;
        }
        if (parse_line(start, (size_t)(end - start), &p) != 0) {
            end = start;
            continue;
        }
        end = start;
        if (!matches(q->account_id, p.s[F_ACCOUNT]) ||
            !matches(q->target, p.s[F_TARGET]) ||
            !matches(q->action, p.s[F_ACTION]) ||
            (q->since_ms != 0 && p.time_ms < q->since_ms) ||
            (q->until_ms != 0 && p.time_ms >= q->until_ms)) {
            parsed_free(&p);
            continue;
        }
        {
            kg_audit_record r = {
                .id = p.id, .time_ms = p.time_ms,
                .actor_key_id = p.s[F_ACTOR_KEY], .actor_account_id = p.s[F_ACTOR_ACCT],
                .actor = p.s[F_ACTOR], .client = p.s[F_CLIENT],
                .action = p.s[F_ACTION], .target = p.s[F_TARGET],
                .account_id = p.s[F_ACCOUNT], .changes = p.changes,
                .result = p.s[F_RESULT],
            };
            stop = cb(&r, ud);
        }
        parsed_free(&p);
        if (stop || (q->limit > 0 && ++sent >= q->limit))
            break;
    }
    free(buf);
    return KG_OK;
}
