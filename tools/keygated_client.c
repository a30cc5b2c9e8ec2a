/*
 * keygated_client.c - whose request is it: the TCP peer, or, when the
 * peer is one of our trusted proxies, the right-most untrusted address
 * of X-Forwarded-For.
 *
 * Each proxy appends the address it received the request from, so the
 * list reads "client, proxy1, proxy2" and only the entries appended by
 * proxies we trust are believable.  Walking from the right and stopping
 * at the first address we do not trust gives the client as the nearest
 * trusted proxy saw it; the left-most entry is whatever the client chose
 * to send and is never used on its own (the classic spoofing hole).
 */
#include "config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "keygated.h"

int kgd_addr_trusted(const char *addr, const kg_cidr *trusted,
                     size_t ntrusted)
{
    unsigned char a[16];

    if (kg_addr_parse(addr, a) != KG_OK)
        return 0;
    return kgd_addr_bin_trusted(a, trusted, ntrusted);
}

/*
 * One X-Forwarded-For entry into a bare numeric address (in out, and
 * in binary in a): trims blanks and accepts the "[v6]:port" and
 * "v4:port" forms some proxies write.  Returns 0 if it is an address.
 */
static int entry_addr(const char *s, size_t n, char *out, size_t size,
                      unsigned char a[16])
{
    const char *colon;

    while (n > 0 && (*s == ' ' || *s == '\t')) {
        s++;
        n--;
    }
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    if (n == 0 || n >= size)
        return -1;
    if (s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (close == NULL)
            return -1;
        n = (size_t)(close - s - 1);
        s++;
    } else if ((colon = memchr(s, ':', n)) != NULL &&
               memchr(colon + 1, ':', n - (size_t)(colon + 1 - s)) == NULL &&
               memchr(s, '.', n) != NULL) {
        /* One colon and a dot: IPv4 with a port. */
        n = (size_t)(colon - s);
    }
    if (n == 0 || n >= size)
        return -1;
    memcpy(out, s, n);
    out[n] = '\0';
    return kg_addr_parse(out, a) == KG_OK ? 0 : -1;
}

const char *kgd_client_hop(const unsigned char peer[16],
                           const char *const *xff, size_t nxff,
                           const kg_cidr *trusted, size_t ntrusted,
                           char *hop, size_t size)
{
    const char *cur = NULL;   /* NULL: the peer */
    char entry[64];
    unsigned char a[16];
    size_t h;

    if (size == 0 || !kgd_addr_bin_trusted(peer, trusted, ntrusted))
        return NULL;
    /* Walk every X-Forwarded-For value, the last header first, each
     * from its right end. */
    for (h = nxff; h > 0; h--) {
        const char *v = xff[h - 1];
        size_t end;

        if (v == NULL)
            continue;
        end = strlen(v);
        while (end > 0) {
            size_t start = end;
            while (start > 0 && v[start - 1] != ',')
                start--;
            if (end > start) {
                const char *e = v + start;
                size_t n = end - start;
                size_t k = 0;
                while (k < n && (e[k] == ' ' || e[k] == '\t'))
                    k++;
                if (k < n) {
                    if (entry_addr(e, n, entry, sizeof(entry), a) != 0)
                        return cur;   /* garbage: stop at the last trusted hop */
                    if (strlen(entry) >= size)
                        return cur;
                    memcpy(hop, entry, strlen(entry) + 1);
                    cur = hop;
                    if (!kgd_addr_bin_trusted(a, trusted, ntrusted))
                        return cur;
                }
            }
            end = start > 0 ? start - 1 : 0;
        }
    }
    return cur;
}

void kgd_client_address(const char *peer, const char *const *xff,
                        size_t nxff, const kg_cidr *trusted, size_t ntrusted,
                        char *out, size_t size)
{
    unsigned char a[16];
    char hop[64];
    const char *client = NULL;

    if (peer == NULL)
        peer = "";
    if (kg_addr_parse(peer, a) == KG_OK)
        client = kgd_client_hop(a, xff, nxff, trusted, ntrusted, hop, sizeof(hop));
    snprintf(out, size, "%s", client ? client : peer);
}

int kgd_sockaddr_bin(const struct sockaddr *sa, unsigned char out[16])
{
    if (sa->sa_family == AF_INET) {
        memset(out, 0, 10);
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        return 0;
    }
    if (sa->sa_family == AF_INET6) {
        memcpy(out, ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr, 16);
        return 0;
    }
    return -1;
}

int kgd_addr_bin_trusted(const unsigned char addr[16], const kg_cidr *trusted,
                         size_t ntrusted)
{
    size_t i;
    for (i = 0; i < ntrusted; i++)
        if (kg_cidr_contains(&trusted[i], addr))
            return 1;
    return 0;
}

void kgd_sockaddr_str(const struct sockaddr *sa, char *out, size_t size)
{
    char buf[INET6_ADDRSTRLEN];

    out[0] = '\0';
    if (sa == NULL)
        return;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        if (inet_ntop(AF_INET, &in->sin_addr, buf, sizeof(buf)) != NULL)
            snprintf(out, size, "%s", buf);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
            if (inet_ntop(AF_INET, &in6->sin6_addr.s6_addr[12], buf,
                          sizeof(buf)) != NULL)
                snprintf(out, size, "%s", buf);
        } else if (inet_ntop(AF_INET6, &in6->sin6_addr, buf, sizeof(buf)) != NULL) {
            snprintf(out, size, "%s", buf);
        }
    }
}
