/*
 * keygated - the keygate HTTP auth service.
 *
 * Order of start-up, and why:
 *   1. bind the listening sockets (a port below 1024 needs root),
 *   2. write the pid file, drop to --user, so that the policy, its key files and plugins are
 *      loaded with the rights every later SIGHUP reload will have,
 *   3. block the signals in every thread (the MHD workers inherit the
 *      mask) and wait for them here, in the main thread, with sigwait:
 *      a reload runs in ordinary code, never in a signal handler,
 *   4. start the MHD daemons.
 */
#include "config.h"

#include <errno.h>
#include <grp.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "keygated.h"

#define EXIT_CONFIG 2
/* Descriptors besides the connections: standard streams, listeners, each
 * worker's epoll and wake-up descriptors, the logs, the key stores'
 * files and their servers' connections. */
#define FD_RESERVE 128

static int drop_privileges(const char *user)
{
    struct passwd *pw;

    errno = 0;
    pw = getpwnam(user);
    if (pw == NULL) {
        kgd_log_msg("--user %s: no such user%s%s", user, errno ? ": " : "",
                    errno ? strerror(errno) : "");
        return -1;
    }
    if (getuid() != 0 && geteuid() != 0) {
        if (pw->pw_uid == geteuid())
            return 0;
        kgd_log_msg("--user %s: only root can change user", user);
        return -1;
    }
    if (initgroups(pw->pw_name, pw->pw_gid) != 0 || setgid(pw->pw_gid) != 0 ||
        setuid(pw->pw_uid) != 0) {
        kgd_log_msg("--user %s: cannot switch user: %s", user, strerror(errno));
        return -1;
    }
    if (pw->pw_uid != 0 && (setuid(0) == 0 || geteuid() == 0)) {
        kgd_log_msg("--user %s: root privileges could be regained; refusing to run",
                    user);
        return -1;
    }
    return 0;
}

/*
 * Make room for --max-connections on every listener, and for the
 * connections past it that are answered 503 (kgd_conn_hard_limit).  The
 * soft limit on open files is often 1024 (a login shell, a container):
 * past it accept() fails, and the connections beyond it waited
 * unanswered in the kernel's queue for as long as the others stayed
 * open.  The soft limit is raised as far as the hard limit allows (no
 * privilege needed); if that is not enough, the connection limit is
 * lowered to fit and said so, so that libmicrohttpd's own limit, not a
 * failing accept(), is what holds new connections back.
 */
static void fit_connections(kgd_conf *conf, size_t nlisten)
{
    struct rlimit rl;
    rlim_t need = (rlim_t)kgd_conn_hard_limit(conf->max_connections) * nlisten
                  + FD_RESERVE;
    unsigned room, fit;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= need)
        return;
    if (rl.rlim_max == RLIM_INFINITY || rl.rlim_max > need)
        rl.rlim_cur = need;
    else
        rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0 || getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur >= need)
        return;
    room = rl.rlim_cur > FD_RESERVE + nlisten
               ? (unsigned)((rl.rlim_cur - FD_RESERVE) / nlisten) : 1;
    /* The largest limit whose connections and overflow fit in room. */
    fit = room;
    while (fit > 1 && kgd_conn_hard_limit(fit) > room)
        fit = fit * 7 / 8 > 1 ? fit * 7 / 8 : 1;
    while (kgd_conn_hard_limit(fit + 1) <= room)
        fit++;
    kgd_log_msg("only %llu open files allowed (ulimit -n; LimitNOFILE=): "
                "serving at most %u connections per listener, not %u "
                "(and answering %u more with 503)",
                (unsigned long long)rl.rlim_cur, fit, conf->max_connections,
                kgd_conn_hard_limit(fit) - fit);
    conf->max_connections = fit;
}

/* The admin listener, in a keygated built with it (jansson). */
static int admin_open(kgd_conf *conf, int *fd_r)
{
#ifdef KGD_ADMIN
    return kgd_admin_open(conf, fd_r);
#else
    *fd_r = -1;
    if (conf->admin_listen == NULL)
        return 0;
    kgd_log_msg("admin listener %s: this keygated was built without the "
                "admin API (configure found no jansson: apt-get install "
                "libjansson-dev)", conf->admin_listen);
    return -1;
#endif
}

static int admin_start(const kgd_conf *conf, kg_context *ctx, int fd)
{
#ifdef KGD_ADMIN
    return kgd_admin_start(conf, ctx, fd);
#else
    (void)conf;
    (void)ctx;
    close(fd);
    return -1;
#endif
}

static void admin_stop(void)
{
#ifdef KGD_ADMIN
    kgd_admin_stop();
#endif
}

static int write_pid(const char *path)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        kgd_log_msg("--pid-file %s: %s", path, strerror(errno));
        return -1;
    }
    fprintf(f, "%ld\n", (long)getpid());
    if (fclose(f) != 0) {
        kgd_log_msg("--pid-file %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

static void print_diag(const char *what, const kg_diag *d)
{
    char buf[2048];
    kgd_log_msg("%s: %s", what, kg_diag_format(d, buf, sizeof(buf)));
}

static void backend_log(void *unused, const char *message)
{
    (void)unused;
    kgd_log_msg("%s", message);
}

static int check_config(const kgd_conf *conf)
{
    kg_context *ctx = NULL;
    kg_diag d;
    int rc = EXIT_CONFIG;

    if (kg_context_new(&ctx) != KG_OK)
        return EXIT_CONFIG;
    memset(&d, 0, sizeof(d));
    if (kgd_holder_init(ctx, conf->config, &d) != 0) {
        char buf[2048];
        fprintf(stderr, "keygated: %s\n", kg_diag_format(&d, buf, sizeof(buf)));
    } else {
        printf("keygated: policy %s is valid\n", kgd_holder_source());
        rc = 0;
    }
    kgd_holder_shutdown();
    kg_context_free(ctx);
    return rc;
}

int main(int argc, char **argv)
{
    kgd_conf conf;
    kg_context *ctx = NULL;
    kg_diag diag;
    int fds[KGD_MAX_LISTEN], admin_fd = -1, admin_started = 0;
    size_t nfds = 0, i;
    char *admin_from_policy = NULL;
    sigset_t set;
    int rc = EXIT_CONFIG, sig, pid_written = 0;
    char err[512];

    switch (kgd_conf_parse(&conf, argc, argv)) {
    case 1: return 0;
    case 0: break;
    default: return EXIT_CONFIG;
    }
    if (conf.check_config)
        return check_config(&conf);

    fit_connections(&conf, conf.nlisten);
    for (i = 0; i < conf.nlisten; i++) {
        int fd = kgd_listen_open(conf.listen[i],
                                 kgd_conn_hard_limit(conf.max_connections),
                                 err, sizeof(err));
        if (fd < 0) {
            kgd_log_msg("%s", err);
            goto out;
        }
        fds[nfds++] = fd;
    }
    /* Bound now, with the rights to bind a low port; one named only by
     * the policy's admin_listen: is bound once the policy is loaded. */
    if (admin_open(&conf, &admin_fd) != 0)
        goto out;
    if (kgd_log_open(conf.access_log) != 0) {
        kgd_log_msg("--access-log %s: %s", conf.access_log, strerror(errno));
        goto out;
    }
    /* The pid file is written while we may still write where root can
     * (/run); removing it at exit may then fail, which is harmless. */
    if (conf.pid_file != NULL) {
        if (write_pid(conf.pid_file) != 0)
            goto out;
        pid_written = 1;
    }
    if (conf.user != NULL && drop_privileges(conf.user) != 0)
        goto out;

    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    if (kg_context_new(&ctx) != KG_OK) {
        kgd_log_msg("out of memory");
        goto out;
    }
    kg_context_set_limit_capacity(ctx, conf.limit_capacity);
    /* Why a backend fails, once per backend per interval (core/log.c),
     * with the service's other messages. */
    kg_context_set_log(ctx, backend_log, NULL);
    memset(&diag, 0, sizeof(diag));
    if (kgd_holder_init(ctx, conf.config, &diag) != 0) {
        print_diag("cannot load the policy", &diag);
        goto out;
    }
    if (conf.admin_listen == NULL) {
        kgd_policy_ref *ref = kgd_policy_get();
        const char *al = kg_policy_admin_listen(kgd_policy_of(ref));
        if (al != NULL && (admin_from_policy = strdup(al)) == NULL) {
            kgd_policy_put(ref);
            goto out;
        }
        kgd_policy_put(ref);
        conf.admin_listen = admin_from_policy;
        if (admin_open(&conf, &admin_fd) != 0)
            goto out;
    }
    kgd_metrics_init();
    if (kgd_http_start(&conf, ctx, fds, nfds) != 0) {
        nfds = 0;   /* the daemons that started closed theirs */
        goto out;
    }
    if (kgd_usage_start(ctx) != 0) {
        kgd_log_msg("cannot start the usage flusher");
        kgd_http_stop(0);
        nfds = 0;
        goto out;
    }
    if (kgd_alerts_start(ctx, conf.alerts_interval_s) != 0) {
        kgd_log_msg("cannot start the alerts thread");
        kgd_usage_stop();
        kgd_http_stop(0);
        nfds = 0;
        goto out;
    }
    if (admin_fd >= 0) {
        int fd = admin_fd;
        admin_fd = -1;   /* the daemon's now, or closed */
        if (admin_start(&conf, ctx, fd) != 0) {
            kgd_alerts_stop();
            kgd_usage_stop();
            kgd_http_stop(0);
            nfds = 0;
            goto out;
        }
        admin_started = 1;
    }
    kgd_log_msg("keygate %s serving policy %s", kg_version(), kgd_holder_source());
    for (i = 0; i < nfds; i++) {
        char name[80];
        kgd_listen_name(fds[i], name, sizeof(name));
        kgd_log_msg("listening on %s", name);
    }

    for (;;) {
        /* Wake every 200 ms to flush the access log buffers. */
        struct timespec tick = { 0, 200 * 1000 * 1000 };
        sig = sigtimedwait(&set, NULL, &tick);
        if (sig < 0) {
            kgd_log_flush();
            kgd_holder_collect();
            continue;
        }
        if (sig == SIGHUP) {
            memset(&diag, 0, sizeof(diag));
            kgd_log_reopen();
            if (kgd_holder_reload(&diag) == 0) {
                kgd_metrics_reload(1);
                kgd_log_msg("reloaded policy %s", kgd_holder_source());
                kgd_holder_collect();
            } else {
                kgd_metrics_reload(0);
                print_diag("reload failed; the previous policy keeps serving",
                           &diag);
            }
        } else if (sig == SIGTERM || sig == SIGINT) {
            kgd_log_msg("%s: draining requests in flight (up to %us), then exiting",
                        sig == SIGTERM ? "SIGTERM" : "SIGINT", conf.drain_s);
            break;
        }
    }
    kgd_http_stop(conf.drain_s);
    if (admin_started)
        admin_stop();
    admin_started = 0;
    kgd_alerts_stop();
    /* The last flush is the holder's, after the flusher has stopped. */
    kgd_usage_stop();
    kgd_log_flush();
    nfds = 0;   /* closed by the daemons */
    rc = 0;
out:
    if (admin_started)
        admin_stop();
    if (admin_fd >= 0)
        close(admin_fd);
    free(admin_from_policy);
    kgd_holder_shutdown();
    kg_context_free(ctx);
    kgd_log_close();
    for (i = 0; i < nfds; i++)
        close(fds[i]);
    if (pid_written)
        unlink(conf.pid_file);
    return rc;
}
