/*
 * request.c - what a front end knows of a request: method, target (and
 * its normalized path, target.c), client address and headers.  Header
 * values are kept byte for byte (they may hold NULs; the stages decide
 * what is malformed) and are wiped when the request is reset or freed,
 * since one of them carries the key.  A front end that holds the
 * headers itself for the whole check (keygated: libmicrohttpd's
 * connection memory) lends them instead (kg_request_add_header_ref):
 * nothing is copied, and they are the lender's to wipe.  The client
 * address is kept binary (v4-mapped IPv6, as kg_addr_parse gives it),
 * with its text form beside it for logs and messages.
 */
#include "internal.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Everything lives in one buffer reused across resets (offsets, not
 * pointers, since it may move while it grows): building a request costs
 * no allocation once the buffer has reached its size. */
struct kg__header {
    const char *nref, *vref;   /* lent (add_header_ref), or NULL: */
    size_t name;    /* offsets into mem */
    size_t value;
    size_t nlen;    /* the name's length: compared before the name */
    size_t vlen;
};

struct kg_request {
    char *mem;
    size_t used, cap;
    size_t method, path, target;   /* offset + 1; 0: not set */
    int has_client;       /* client_addr and client_str are set */
    int client_bin;       /* client_addr is an address (else unparsable) */
    /* client_str holds the text: set from a socket address, the text is
     * made when it is first read (most checks never read it). */
    int client_txt;
    unsigned char client_addr[16];
    char client_str[64];
    unsigned flags;       /* KG__TARGET_* of the path */
    int bad_method, bad_path;   /* the last one set was refused */
    int key_only;         /* kg_request_set_key_only() */
    int no_lease;         /* kg_request_set_no_lease() */
    int nowait;           /* kg_request_set_nowait() */
    struct kg__header *h;
    size_t nh;
    size_t hcap;
};

/* A buffer grown past this by one huge request is given back on reset. */
#define KEEP_BYTES 65536

kg_error kg_request_new(kg_request **req_r)
{
    kg_request *r;
    if (req_r == NULL)
        return KG_ERR_INVALID;
    r = calloc(1, sizeof(*r));
    if (r == NULL)
        return KG_ERR_NOMEM;
    *req_r = r;
    return KG_OK;
}

void kg_request_reset(kg_request *r)
{
    if (r == NULL)
        return;
    /* The buffer held the key (in a header value). */
    kg_wipe(r->mem, r->used);
    if (r->cap > KEEP_BYTES) {
        free(r->mem);
        r->mem = NULL;
        r->cap = 0;
    }
    r->used = 0;
    r->nh = 0;
    r->method = r->path = r->target = 0;
    r->has_client = r->client_bin = 0;
    r->flags = 0;
    r->bad_method = r->bad_path = r->key_only = 0;
    r->no_lease = 0;
    r->nowait = 0;
}

void kg_request_free(kg_request *r)
{
    if (r == NULL)
        return;
    kg_request_reset(r);
    free(r->mem);
    free(r->h);
    free(r);
}

/* Room for n bytes and a NUL at the end of the buffer (moved, wiped,
 * if it must grow); their offset, or (size_t)-1. */
static size_t reserve(kg_request *r, size_t n)
{
    size_t off = r->used;
    if (n >= (size_t)-1 / 2 || r->used + n + 1 < r->used)
        return (size_t)-1;
    if (r->used + n + 1 > r->cap) {
        size_t cap = r->cap ? r->cap : 256;
        char *m;
        while (cap < r->used + n + 1)
            cap *= 2;
        m = malloc(cap);
        if (m == NULL)
            return (size_t)-1;
        /* Not realloc: the old buffer holds a key and must be wiped. */
        if (r->mem != NULL) {
            memcpy(m, r->mem, r->used);
            kg_wipe(r->mem, r->used);
            free(r->mem);
        }
        r->mem = m;
        r->cap = cap;
    }
    r->used += n + 1;
    return off;
}

/* Copy n bytes and a NUL into the buffer; the offset, or (size_t)-1. */
static size_t put(kg_request *r, const char *s, size_t n)
{
    size_t off = reserve(r, n);
    if (off == (size_t)-1)
        return off;
    memcpy(r->mem + off, s, n);
    r->mem[off + n] = '\0';
    return off;
}

kg_error kg_request_set_method(kg_request *r, const char *m)
{
    size_t off;
    if (r == NULL || m == NULL)
        return KG_ERR_INVALID;
    r->key_only = 0;
    r->method = 0;
    /* A refused method leaves none set, and the request refused
     * (kg_check: 400), whatever the caller does with the error. */
    r->bad_method = !kg__method_valid(m);
    if (r->bad_method)
        return KG_ERR_INVALID;
    if ((off = put(r, m, strlen(m))) == (size_t)-1)
        return KG_ERR_NOMEM;
    r->method = off + 1;
    return KG_OK;
}

kg_error kg_request_set_path(kg_request *r, const char *target)
{
    size_t len, raw, norm;
    unsigned flags = 0;

    if (r == NULL || target == NULL)
        return KG_ERR_INVALID;
    r->key_only = 0;
    r->path = r->target = 0;
    r->flags = 0;
    r->bad_path = 0;
    len = strlen(target);
    /* The raw target first (by offset: the buffer may move), then the
     * path normalized from that copy. */
    if ((raw = put(r, target, len)) == (size_t)-1 ||
        (norm = reserve(r, len + 1)) == (size_t)-1)
        return KG_ERR_NOMEM;
    if (kg__target_normalize(r->mem + raw, len, r->mem + norm, &flags) != 0) {
        r->bad_path = 1;
        return KG_ERR_INVALID;
    }
    r->target = raw + 1;
    r->path = norm + 1;
    r->flags = flags;
    return KG_OK;
}

kg_error kg_request_set_target(kg_request *r, const char *method,
                               const char *target)
{
    kg_error a = kg_request_set_method(r, method);
    kg_error b = kg_request_set_path(r, target);
    if (a == KG_ERR_NOMEM || b == KG_ERR_NOMEM)
        return KG_ERR_NOMEM;
    return a != KG_OK ? a : b;
}

kg_error kg_request_set_key_only(kg_request *r)
{
    if (r == NULL)
        return KG_ERR_INVALID;
    r->method = r->path = r->target = 0;
    r->flags = 0;
    r->bad_method = r->bad_path = 0;
    r->key_only = 1;
    return KG_OK;
}

kg_error kg_request_set_no_lease(kg_request *r, int no_lease)
{
    if (r == NULL)
        return KG_ERR_INVALID;
    r->no_lease = no_lease != 0;
    return KG_OK;
}

int kg__request_no_lease(const kg_request *r)
{
    return r->no_lease;
}

kg_error kg_request_set_nowait(kg_request *r, int nowait)
{
    if (r == NULL)
        return KG_ERR_INVALID;
    r->nowait = nowait != 0;
    return KG_OK;
}

int kg__request_nowait(const kg_request *r)
{
    return r->nowait;
}

kg_error kg_request_set_client(kg_request *r, const char *c)
{
    unsigned char addr[16];
    if (r == NULL || c == NULL)
        return KG_ERR_INVALID;
    /* An address the ipacl stage could not read would fail every
     * allowlist later, far from the caller's mistake: refused here, and
     * the request keeps no client (or the one set before).  Kept as
     * given, for messages, and parsed once here rather than by each
     * stage. */
    if (kg_addr_parse(c, addr) != KG_OK)
        return KG_ERR_INVALID;
    kg__strlcpy(r->client_str, c, sizeof(r->client_str));
    memcpy(r->client_addr, addr, sizeof(addr));
    r->client_bin = 1;
    r->client_txt = 1;
    r->has_client = 1;
    return KG_OK;
}

kg_error kg_request_set_client_addr(kg_request *r, const struct sockaddr *sa)
{
    const unsigned char *a4 = NULL;

    if (r == NULL || sa == NULL)
        return KG_ERR_INVALID;
    if (sa->sa_family == AF_INET) {
        a4 = (const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr;
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr))
            a4 = in6->sin6_addr.s6_addr + 12;
        else
            memcpy(r->client_addr, in6->sin6_addr.s6_addr, 16);
    } else {
        return KG_ERR_INVALID;
    }
    if (a4 != NULL) {
        memset(r->client_addr, 0, 10);
        r->client_addr[10] = r->client_addr[11] = 0xff;
        memcpy(r->client_addr + 12, a4, 4);
    }
    r->client_bin = 1;
    r->client_txt = 0;   /* kg_request_client() writes it */
    r->has_client = 1;
    return KG_OK;
}

kg_error kg_request_client_addr(const kg_request *r, unsigned char addr_r[16])
{
    if (r == NULL || !r->has_client)
        return KG_ERR_NOT_FOUND;
    if (!r->client_bin)
        return KG_ERR_INVALID;
    memcpy(addr_r, r->client_addr, 16);
    return KG_OK;
}

unsigned kg__request_target_state(const kg_request *r)
{
    if (r->bad_method || r->bad_path)
        return KG__TARGET_MALFORMED;
    return r->flags;
}

/* The next header's slot, or NULL if out of memory. */
static struct kg__header *header_slot(kg_request *r)
{
    if (r->nh == r->hcap) {
        size_t cap = r->hcap ? r->hcap * 2 : 16;
        struct kg__header *nh = realloc(r->h, cap * sizeof(*nh));
        if (nh == NULL)
            return NULL;
        r->h = nh;
        r->hcap = cap;
    }
    return &r->h[r->nh];
}

kg_error kg_request_add_header_n(kg_request *r, const char *name,
                                 size_t name_len, const char *value,
                                 size_t value_len)
{
    struct kg__header *h;
    size_t n, v;

    if (r == NULL || name == NULL || value == NULL)
        return KG_ERR_INVALID;
    if ((h = header_slot(r)) == NULL)
        return KG_ERR_NOMEM;
    if ((n = put(r, name, name_len)) == (size_t)-1 ||
        (v = put(r, value, value_len)) == (size_t)-1)
        return KG_ERR_NOMEM;
    h->nref = h->vref = NULL;
    h->name = n;
    h->value = v;
    h->nlen = name_len;
    h->vlen = value_len;
    r->nh++;
    return KG_OK;
}

kg_error kg_request_add_header_ref(kg_request *r, const char *name,
                                   const char *value, size_t value_len)
{
    struct kg__header *h;

    if (r == NULL || name == NULL || value == NULL)
        return KG_ERR_INVALID;
    if ((h = header_slot(r)) == NULL)
        return KG_ERR_NOMEM;
    h->nref = name;
    h->vref = value;
    h->name = h->value = 0;
    h->nlen = strlen(name);
    h->vlen = value_len;
    r->nh++;
    return KG_OK;
}

kg_error kg_request_add_header(kg_request *r, const char *name,
                               const char *value)
{
    if (name == NULL || value == NULL)
        return KG_ERR_INVALID;
    return kg_request_add_header_n(r, name, strlen(name), value,
                                   strlen(value));
}

/* Not set: "", which is no method and no path, so that no rule takes a
 * request that names no operation for "GET /". */
const char *kg_request_method(const kg_request *r) { return r->method ? r->mem + r->method - 1 : ""; }
const char *kg_request_path(const kg_request *r) { return r->path ? r->mem + r->path - 1 : ""; }
const char *kg_request_target(const kg_request *r) { return r->target ? r->mem + r->target - 1 : NULL; }

kg_target_kind kg_request_target_kind(const kg_request *r)
{
    if (r->key_only)
        return KG_TARGET_KEY;
    return r->method && r->path ? KG_TARGET_ROUTE : KG_TARGET_NONE;
}
const char *kg_request_client(const kg_request *r)
{
    kg_request *w = (kg_request *)r;   /* one thread's at a time */

    if (!r->has_client)
        return NULL;
    if (!r->client_txt) {
        /* a v4-mapped address shown as IPv4, as kg_addr_parse reads it */
        static const unsigned char v4mapped[12] = {
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff
        };
        if (memcmp(r->client_addr, v4mapped, sizeof(v4mapped)) == 0)
            inet_ntop(AF_INET, r->client_addr + 12, w->client_str,
                      sizeof(w->client_str));
        else
            inet_ntop(AF_INET6, r->client_addr, w->client_str,
                      sizeof(w->client_str));
        w->client_txt = 1;
    }
    return r->client_str;
}
size_t kg_request_header_count(const kg_request *r) { return r->nh; }

static const char *hname(const kg_request *r, const struct kg__header *h)
{
    return h->nref != NULL ? h->nref : r->mem + h->name;
}

static const char *hvalue(const kg_request *r, const struct kg__header *h)
{
    return h->vref != NULL ? h->vref : r->mem + h->value;
}

kg_error kg_request_header_at(const kg_request *r, size_t i,
                              const char **name_r, const char **value_r,
                              size_t *len_r)
{
    if (i >= r->nh)
        return KG_ERR_NOT_FOUND;
    if (name_r) *name_r = hname(r, &r->h[i]);
    if (value_r) *value_r = hvalue(r, &r->h[i]);
    if (len_r) *len_r = r->h[i].vlen;
    return KG_OK;
}

const char *kg_request_header_find(const kg_request *r, const char *name,
                                   size_t nth, size_t *len_r)
{
    size_t i, nlen = strlen(name);
    for (i = 0; i < r->nh; i++) {
        if (r->h[i].nlen == nlen && strcasecmp(hname(r, &r->h[i]), name) == 0 &&
            nth-- == 0) {
            if (len_r)
                *len_r = r->h[i].vlen;
            return hvalue(r, &r->h[i]);
        }
    }
    return NULL;
}
