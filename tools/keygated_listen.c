/*
 * keygated_listen.c - "ADDR:PORT" into a listening socket.
 *
 * keygated opens its sockets itself (rather than letting libmicrohttpd
 * bind) so that it can bind a privileged port before dropping to
 * --user, and so that each --listen may be IPv4 or IPv6.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "keygated.h"

int kgd_listen_parse(const char *spec, struct sockaddr_storage *ss,
                     socklen_t *len_r, char *err, size_t errlen)
{
    char host[256];
    const char *colon, *port_s;
    char *end;
    long port;
    struct addrinfo hints, *ai = NULL;
    int rc;

    memset(ss, 0, sizeof(*ss));
    if (spec[0] == '[') {
        const char *close = strchr(spec, ']');
        if (close == NULL || close[1] != ':') {
            snprintf(err, errlen, "'%s': expected [IPv6]:PORT", spec);
            return -1;
        }
        if ((size_t)(close - spec - 1) >= sizeof(host))
            goto bad;
        memcpy(host, spec + 1, (size_t)(close - spec - 1));
        host[close - spec - 1] = '\0';
        port_s = close + 2;
    } else {
        colon = strrchr(spec, ':');
        if (colon == NULL) {
            snprintf(err, errlen, "'%s': expected ADDR:PORT (e.g. "
                     "127.0.0.1:8080, [::1]:8080 or :8080)", spec);
            return -1;
        }
        if ((size_t)(colon - spec) >= sizeof(host))
            goto bad;
        memcpy(host, spec, (size_t)(colon - spec));
        host[colon - spec] = '\0';
        if (strchr(host, ':') != NULL) {
            snprintf(err, errlen, "'%s': write an IPv6 address in brackets, "
                     "[%s]:PORT", spec, host);
            return -1;
        }
        port_s = colon + 1;
    }
    errno = 0;
    port = strtol(port_s, &end, 10);
    if (*port_s == '\0' || *end != '\0' || errno || port < 0 || port > 65535) {
        snprintf(err, errlen, "'%s': the port must be a number from 0 to 65535",
                 spec);
        return -1;
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    rc = getaddrinfo(host[0] ? host : "0.0.0.0", port_s, &hints, &ai);
    if (rc != 0 || ai == NULL) {
        snprintf(err, errlen, "'%s': cannot resolve '%s': %s", spec, host,
                 gai_strerror(rc));
        if (ai)
            freeaddrinfo(ai);
        return -1;
    }
    memcpy(ss, ai->ai_addr, ai->ai_addrlen);
    *len_r = ai->ai_addrlen;
    freeaddrinfo(ai);
    return 0;
bad:
    snprintf(err, errlen, "'%s': the address is too long", spec);
    return -1;
}

int kgd_listen_open(const char *spec, unsigned backlog, char *err,
                    size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int fd, one = 1;

    if (kgd_listen_parse(spec, &ss, &len, err, errlen) != 0)
        return -1;
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "%s: socket: %s", spec, strerror(errno));
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&ss, len) != 0) {
        snprintf(err, errlen, "cannot listen on %s: %s%s", spec,
                 strerror(errno),
                 errno == EADDRINUSE ? " (another process has that port; "
                 "pick another with --listen)" :
                 errno == EACCES ? " (ports below 1024 need root; keygated "
                 "binds before it drops to --user)" : "");
        close(fd);
        return -1;
    }
    /* The kernel caps the queue at net.core.somaxconn (4096 by default
     * since Linux 5.4). */
    if (listen(fd, backlog > INT_MAX ? INT_MAX : (int)backlog) != 0) {
        snprintf(err, errlen, "%s: listen: %s", spec, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

void kgd_listen_name(int fd, char *out, size_t size)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    char addr[64];
    unsigned port = 0;

    out[0] = '\0';
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return;
    kgd_sockaddr_str((struct sockaddr *)&ss, addr, sizeof(addr));
    if (ss.ss_family == AF_INET)
        port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    else if (ss.ss_family == AF_INET6)
        port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    if (ss.ss_family == AF_INET6 && strchr(addr, ':') != NULL)
        snprintf(out, size, "[%s]:%u", addr, port);
    else
        snprintf(out, size, "%s:%u", addr, port);
}
