/*
 * keygated_head.c - a request's head (request line and headers) against
 * --max-header-bytes and against libmicrohttpd's per-connection memory.
 *
 * libmicrohttpd keeps a connection's head, its record of each header and
 * cookie, a copy of the Cookie header and the header block of the answer
 * in one pool of fixed size (kgd_head_pool).  Two ways a request could
 * be closed without an answer, both fixed here:
 *   - with the pool at --max-header-bytes alone, a head just under the
 *     limit (one 15,800-byte header) left no room to build the answer;
 *     the pool is now sized for a head at the limit, its records, its
 *     Cookie copy and an answer;
 *   - a head larger than the limit that still fits the pool, leaving
 *     less room than any answer needs (a band of some 170 bytes just
 *     below the pool's size): libmicrohttpd can build no answer there,
 *     so a fixed 431/414 is written to the socket here, before
 *     libmicrohttpd has written anything on it, and the connection is
 *     closed.  A head larger than the pool is refused by libmicrohttpd
 *     itself (414/431) after it freed its read buffer.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "keygated.h"

/* What libmicrohttpd takes from the pool per header, cookie or query
 * argument (struct MHD_HTTP_Header and its alignment), rounded up. */
#define POOL_PER_VALUE 64
/* Room for the header block of the largest answer keygated gives (a
 * denial with every rate-limit header and X-Keygate-Error), with margin. */
#define POOL_ANSWER 8192
/* Below this much room left, libmicrohttpd's answer may not fit. */
#define POOL_MIN_ROOM 1024

size_t kgd_head_pool(const kgd_conf *conf)
{
    /* The head, the Cookie header's copy (as large as the head, at most),
     * a record per header, the answer. */
    return 2 * conf->max_header_bytes +
           (size_t)conf->max_headers * POOL_PER_VALUE + POOL_ANSWER;
}

/* From above: what libmicrohttpd has taken from the pool for this head. */
static size_t pool_used(struct MHD_Connection *conn, size_t head)
{
    const char *cookie;
    size_t cookie_len = 0;
    int n;

    n = MHD_get_connection_values(conn, MHD_HEADER_KIND | MHD_COOKIE_KIND |
                                  MHD_GET_ARGUMENT_KIND, NULL, NULL);
    if (MHD_lookup_connection_value_n(conn, MHD_HEADER_KIND,
                                      MHD_HTTP_HEADER_COOKIE,
                                      strlen(MHD_HTTP_HEADER_COOKIE), &cookie,
                                      &cookie_len) != MHD_YES)
        cookie_len = 0;
    return head + (n > 0 ? (size_t)n : 0) * POOL_PER_VALUE + cookie_len + 1;
}

/* The fixed answer when the pool has no room left for one (see above). */
static int answer_without_room(struct MHD_Connection *conn, unsigned status,
                               const char *message)
{
    const union MHD_ConnectionInfo *ci;
    char body[256], buf[512];
    size_t blen, n;

    ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (ci == NULL)
        return MHD_NO;
    blen = kgd_error_body(body, sizeof(body), "invalid_request", message);
    n = (size_t)snprintf(buf, sizeof(buf),
                         "HTTP/1.1 %u %s\r\nConnection: close\r\n"
                         "Content-Type: application/json\r\n"
                         "Cache-Control: no-store\r\nContent-Length: %zu\r\n\r\n",
                         status, status == 414 ? "URI Too Long"
                                               : "Request Header Fields Too Large",
                         blen);
    if (n + blen < sizeof(buf)) {
        memcpy(buf + n, body, blen);
        /* A fresh connection's send buffer takes these few hundred bytes
         * at once; if not, the client sees the connection closed, as
         * libmicrohttpd would have left it. */
        if (send(ci->connect_fd, buf, n + blen, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
            /* the client is gone: nothing to answer */
        }
    }
    return MHD_NO;   /* libmicrohttpd closes the connection */
}

int kgd_head_refuse(struct MHD_Connection *conn, const kgd_conf *conf,
                    const char *method, const char *raw_uri,
                    const char *version, int *refused_r)
{
    const union MHD_ConnectionInfo *ci;
    size_t line, used, pool = kgd_head_pool(conf);
    unsigned status;
    const char *message;

    *refused_r = 0;
    ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
    if (ci == NULL)
        return MHD_YES;
    used = pool_used(conn, ci->header_size);
    if (ci->header_size <= conf->max_header_bytes &&
        used + POOL_MIN_ROOM <= pool)
        return MHD_YES;
    line = strlen(method) + 1 + strlen(raw_uri) + 1 + strlen(version) + 2;
    status = line > conf->max_header_bytes ? 414 : 431;
    message = status == 414 ? "the request line is too long"
                            : "the request headers are too large";
    *refused_r = 1;
    kgd_metrics_rejected((int)status);
    if (used + POOL_MIN_ROOM > pool)
        return answer_without_room(conn, status, message);
    return kgd_respond_error(conn, status, "invalid_request", message);
}
