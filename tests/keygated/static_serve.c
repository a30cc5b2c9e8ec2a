/*
 * static_serve.c - kgd_static_answer() alone on a loopback port, for
 * tests/keygated/test_static.sh: the dashboard's file serving (paths,
 * links, types, headers) tested without the admin listener around it.
 *
 *   static_serve ROOT    prints "listening on 127.0.0.1:PORT" on stderr,
 *                        serves GET and HEAD until SIGTERM (405 else)
 */
#include "config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <microhttpd.h>

#include "keygated_static.h"

static volatile sig_atomic_t stop;

static void on_term(int sig)
{
    (void)sig;
    stop = 1;
}

static enum MHD_Result answer(void *cls, struct MHD_Connection *c,
                              const char *url, const char *method,
                              const char *version, const char *upload,
                              size_t *upload_size, void **ptr)
{
    struct MHD_Response *r;
    enum MHD_Result ret;
    (void)version;
    (void)upload;
    (void)upload_size;
    (void)ptr;

    if (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0)
        return (enum MHD_Result)kgd_static_answer(c, cls, url);
    r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (r == NULL)
        return MHD_NO;
    MHD_add_response_header(r, "Allow", "GET, HEAD");
    ret = MHD_queue_response(c, MHD_HTTP_METHOD_NOT_ALLOWED, r);
    MHD_destroy_response(r);
    return ret;
}

int main(int argc, char **argv)
{
    struct sockaddr_in sa;
    struct MHD_Daemon *d;
    const union MHD_DaemonInfo *di;
    socklen_t len = sizeof(sa);

    if (argc != 2) {
        fprintf(stderr, "usage: static_serve ROOT\n");
        return 2;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL,
                         answer, argv[1], MHD_OPTION_SOCK_ADDR, &sa,
                         MHD_OPTION_END);
    if (d == NULL) {
        fprintf(stderr, "static_serve: cannot start\n");
        return 1;
    }
    di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_LISTEN_FD);
    if (di == NULL || getsockname(di->listen_fd, (struct sockaddr *)&sa, &len) != 0) {
        MHD_stop_daemon(d);
        return 1;
    }
    fprintf(stderr, "listening on 127.0.0.1:%u\n", (unsigned)ntohs(sa.sin_port));
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);
    while (!stop)
        pause();
    MHD_stop_daemon(d);
    return 0;
}
