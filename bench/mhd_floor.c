/*
 * bench/mhd_floor.c - the floor under keygated's /check: libmicrohttpd
 * alone, with keygated's daemon options (epoll, a pool of one worker
 * thread per core, keep-alive, the same connection limit, timeout,
 * memory pool and strict mode), answering every request 200 "ok\n"
 * from one response made at start, doing nothing else.  bench/http runs
 * it beside nginx `return 200` and keygated, so that what keygated
 * costs above libmicrohttpd itself can be told apart from what
 * libmicrohttpd costs above nginx.
 *
 *   bench/mhd_floor [--turbo] [--pool BYTES]
 *
 * Listens on 127.0.0.1, a free port, and says which on stderr as
 * keygated does ("listening on 127.0.0.1:PORT"); runs until SIGTERM or
 * SIGINT.  --turbo adds MHD_USE_TURBO; --pool sets the connection's
 * memory pool (libmicrohttpd zeroes all of it between two requests of a
 * connection; keygated's at its default --max-header-bytes is the
 * default here).  Not a test.
 */
#include "config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

static struct MHD_Response *ok;

static enum MHD_Result answer(void *cls, struct MHD_Connection *conn,
                              const char *url, const char *method,
                              const char *version, const char *upload_data,
                              size_t *upload_data_size, void **con_cls)
{
    (void)cls;
    (void)url;
    (void)method;
    (void)version;
    (void)upload_data;
    /* The first call is the head alone, as keygated's; a body is dropped. */
    if (*con_cls == NULL) {
        *con_cls = (void *)1;
        return MHD_YES;
    }
    if (*upload_data_size != 0) {
        *upload_data_size = 0;
        return MHD_YES;
    }
    return MHD_queue_response(conn, MHD_HTTP_OK, ok);
}

int main(int argc, char **argv)
{
    struct sockaddr_in a;
    socklen_t alen = sizeof(a);
    struct MHD_Daemon *d;
    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ITC |
                     MHD_USE_ERROR_LOG;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    sigset_t set;
    size_t pool = 2 * 16384 + 128 * 64 + 8192;
    int fd, one = 1, sig, i;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--turbo") == 0)
            flags |= MHD_USE_TURBO;
        else if (strcmp(argv[i], "--pool") == 0 && i + 1 < argc)
            pool = strtoul(argv[++i], NULL, 10);
    }
    /* Blocked before the workers start, so that they inherit it and
     * sigwait below takes the signal. */
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigprocmask(SIG_BLOCK, &set, NULL);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(fd, 4096) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &alen) != 0) {
        perror("mhd_floor: listen");
        return 1;
    }
    ok = MHD_create_response_from_buffer(3, (void *)"ok\n", MHD_RESPMEM_PERSISTENT);
    if (ok == NULL)
        return 1;
    MHD_add_response_header(ok, "Content-Type", "text/plain");
    /* keygated's defaults: 4096 connections, 60 s, a 16 KiB head's pool
     * (tools/keygated_head.c kgd_head_pool). */
    d = MHD_start_daemon(flags, 0, NULL, NULL, answer, NULL,
                         MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
                         MHD_OPTION_THREAD_POOL_SIZE,
                         (unsigned)(ncpu > 0 ? ncpu : 1),
                         MHD_OPTION_CONNECTION_LIMIT, 4096u,
                         MHD_OPTION_CONNECTION_TIMEOUT, 60u,
                         MHD_OPTION_CONNECTION_MEMORY_LIMIT, pool,
                         MHD_OPTION_STRICT_FOR_CLIENT, 1,
                         MHD_OPTION_END);
    if (d == NULL) {
        fprintf(stderr, "mhd_floor: libmicrohttpd refused the options\n");
        return 1;
    }
    fprintf(stderr, "mhd_floor: listening on 127.0.0.1:%u\n",
            (unsigned)ntohs(a.sin_port));
    sigwait(&set, &sig);
    MHD_stop_daemon(d);
    MHD_destroy_response(ok);
    return 0;
}
