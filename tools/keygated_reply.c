/*
 * keygated_reply.c - what each worker thread keeps for the next request
 * (its kg_request, its response), and an allowed /check's answer from a
 * libmicrohttpd response object the thread keeps and reuses.
 *
 * libmicrohttpd (0.9.75 to 1.0) copies every header it is given: three
 * allocations each (its entry, the name, the value), and an allowed
 * /check has ten, where the check itself allocates nothing.  It has no
 * call that takes a header without a copy.  So each thread keeps one
 * response with an empty body and edits it: a header whose value is
 * the same as in the thread's last answer (Cache-Control, the key's id,
 * plan and priority, RateLimit-Policy, X-RateLimit-Limit and -Reset for
 * a run of requests with the same key) costs nothing; one that changed
 * (X-RateLimit-Remaining, RateLimit, the lease) is deleted and added.
 *
 * Why editing a response already queued on earlier connections is safe:
 * libmicrohttpd writes a response's headers into the connection's own
 * buffer in the same call that ran the handler (connection.c,
 * MHD_CONNECTION_FULL_REQ_RECEIVED then MHD_CONNECTION_START_REPLY:
 * build_header_response) and does not read that list again for a
 * response without a body callback; a connection is served by one
 * thread; and the thread's next handler call comes after that.  The
 * response's reference count keeps it alive for connections still
 * sending.  tests/keygated/test_allocs.sh checks it under load:
 * every answer's lease id must be its own.  A denial (its body differs
 * each time) and everything else gets a fresh response.
 */
#include "config.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <microhttpd.h>

#include "keygated.h"

#define MAX_HDRS 32

static pthread_key_t key;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static int have_key;

/* At thread exit. */
static void worker_free(void *p)
{
    struct kgd_worker *w = p;
    kg_request_free(w->req);
    if (w->allowed != NULL)
        MHD_destroy_response(w->allowed);
    free(w);
}

static void key_init(void)
{
    have_key = pthread_key_create(&key, worker_free) == 0;
}

struct kgd_worker *kgd_worker(void)
{
    struct kgd_worker *w;

    pthread_once(&once, key_init);
    if (!have_key)
        return NULL;
    if ((w = pthread_getspecific(key)) != NULL)
        return w;
    if ((w = calloc(1, sizeof(*w))) == NULL)
        return NULL;
    if (kg_request_new(&w->req) != KG_OK || pthread_setspecific(key, w) != 0) {
        kg_request_free(w->req);
        free(w);
        return NULL;
    }
    return w;
}

/* This thread's response (made on first use), or NULL. */
static struct MHD_Response *thread_response(struct kgd_worker *w)
{
    if (w->allowed == NULL)
        w->allowed = MHD_create_response_from_buffer(0, (void *)"",
                                                     MHD_RESPMEM_PERSISTENT);
    return w->allowed;
}

struct current {
    const char *name[MAX_HDRS], *value[MAX_HDRS];
    size_t n;
};

static enum MHD_Result collect(void *cls, enum MHD_ValueKind kind,
                               const char *name, const char *value)
{
    struct current *c = cls;
    (void)kind;
    if (c->n == MAX_HDRS)
        return MHD_NO;
    c->name[c->n] = name;
    c->value[c->n] = value;
    c->n++;
    return MHD_YES;
}

/* Make r's headers exactly h[0..n): keep the same, delete the changed
 * or gone, add the changed or new.  0, or -1 (r is then unusable). */
static int sync_headers(struct MHD_Response *r, const struct kgd_hdr *h,
                        size_t n)
{
    struct current cur;
    unsigned char keep[MAX_HDRS] = { 0 }, have[MAX_HDRS] = { 0 };
    size_t i, j, next;

    if (n > MAX_HDRS)
        return -1;
    cur.n = 0;
    MHD_get_response_headers(r, collect, &cur);
    /* Each looked for from just after the last one found: the headers
     * kept are listed in the order they were given, so the first tried
     * is mostly the one (one comparison a header kept, not half the
     * list's). */
    for (i = 0, next = 0; i < cur.n; i++) {
        size_t t;
        for (t = 0; t < n; t++) {
            j = (next + t) % n;
            if (!have[j] && strcasecmp(cur.name[i], h[j].name) == 0 &&
                strcmp(cur.value[i], h[j].value) == 0) {
                keep[i] = have[j] = 1;
                next = j + 1;
                break;
            }
        }
    }
    /* Deleting frees libmicrohttpd's copies: cur is not read after. */
    for (i = 0; i < cur.n; i++)
        if (!keep[i] && MHD_del_response_header(r, cur.name[i], cur.value[i]) != MHD_YES)
            return -1;
    for (j = 0; j < n; j++)
        if (!have[j] && MHD_add_response_header(r, h[j].name, h[j].value) != MHD_YES)
            return -1;
    return 0;
}

int kgd_reply_reused(struct MHD_Connection *conn, unsigned status,
                     const struct kgd_hdr *h, size_t n)
{
    struct kgd_worker *w = kgd_worker();
    struct MHD_Response *r = w != NULL ? thread_response(w) : NULL;

    if (r != NULL && sync_headers(r, h, n) == 0)
        return MHD_queue_response(conn, status, r);
    if (r != NULL) {
        /* Half edited (out of memory): start afresh next time. */
        w->allowed = NULL;
        MHD_destroy_response(r);
    }
    return kgd_reply_fresh(conn, status, NULL, 0, h, n);
}

int kgd_reply_fresh(struct MHD_Connection *conn, unsigned status,
                    const char *body, size_t len, const struct kgd_hdr *h,
                    size_t n)
{
    struct MHD_Response *r;
    size_t i;
    int ret;

    r = MHD_create_response_from_buffer(len, (void *)(body ? body : ""),
                                        len ? MHD_RESPMEM_MUST_COPY
                                            : MHD_RESPMEM_PERSISTENT);
    if (r == NULL)
        return MHD_NO;
    for (i = 0; i < n; i++)
        MHD_add_response_header(r, h[i].name, h[i].value);
    ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}
