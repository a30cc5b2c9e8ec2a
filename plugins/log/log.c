/*
 * log - notifier plugin: an alert as one line of JSON.
 *
 *   notifiers:
 *     log: {module: log}                          # to keygated's stderr
 *     audit: {module: log, options: {path: /var/log/keygate/alerts.jsonl}}
 *
 * Each alert is the core's JSON payload on a line of its own, appended
 * (O_APPEND: lines of several processes do not interleave).  A file that
 * cannot be written is "again later": the outbox keeps the alert.
 */
#include <keygate/alerts.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

struct logn {
    char *path;   /* NULL: stderr */
};

static void destroy(void *p)
{
    struct logn *l = p;
    if (l == NULL)
        return;
    free(l->path);
    free(l);
}

static kg_error create(kg_opts *o, void **inst_r)
{
    struct logn *l = calloc(1, sizeof(*l));
    const char *path = NULL;
    kg_error e;

    if (l == NULL)
        return KG_ERR_NOMEM;
    *inst_r = l;
    if ((e = kg_opts_get_path(o, "path", NULL, &path)) != KG_OK)
        return e;
    if (path != NULL && (l->path = strdup(path)) == NULL)
        return KG_ERR_NOMEM;
    return KG_OK;
}

static kg_error send_alert(void *inst, const kg_notify_msg *m, int *status_r,
                           kg_diag *diag)
{
    struct logn *l = inst;
    struct iovec iov[2];
    ssize_t n;
    int fd = 2;

    *status_r = 0;
    if (l->path != NULL &&
        (fd = open(l->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640)) < 0) {
        kg_diag_set(diag, "cannot open %s: %s", l->path, strerror(errno));
        return KG_ERR_UNAVAILABLE;
    }
    iov[0].iov_base = (void *)m->payload;
    iov[0].iov_len = m->payload_len;
    iov[1].iov_base = (void *)"\n";
    iov[1].iov_len = 1;
    n = writev(fd, iov, 2);
    if (l->path != NULL)
        close(fd);
    if (n != (ssize_t)(m->payload_len + 1)) {
        kg_diag_set(diag, "cannot write the alert: %s",
                    n < 0 ? strerror(errno) : "short write");
        return KG_ERR_UNAVAILABLE;
    }
    return KG_OK;
}

static const struct kg_notifier_ops ops = { .send = send_alert };

KG_PLUGIN_DEFINE(log) = {
    KG_PLUGIN_HEADER,
    .kind = KG_PLUGIN_NOTIFIER,
    .name = "log",
    .description = "alerts as JSON lines (stderr or a file)",
    .create = create,
    .destroy = destroy,
    .notifier = &ops,
};
