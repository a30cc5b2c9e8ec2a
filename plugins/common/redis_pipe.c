/*
 * redis_pipe.c - Redis nodes and their connections: each node has
 * `pool_size` connections, each shared by many threads through automatic
 * pipelining (see struct pipe in redis_int.h); connecting does AUTH and
 * SELECT; a broken connection is closed and made again on next use.
 */
#include "config.h"

#include "limitconf.h"
#include "redis.h"
#include "redis_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <time.h>

static struct timeval tv_ms(int64_t ms)
{
    struct timeval tv;
    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    return tv;
}

int64_t kgr_mono_ms(void)
{
    return kg_modutil_mono_us() / 1000;
}


/* ---- nodes and their pools ------------------------------------------- */

int kgr_parse_hostport(const char *s, char *host, size_t hsize, int *port)
{
    const char *colon;
    size_t hl;
    char *end;
    long p;

    if (s[0] == '[') {               /* [::1]:6379 */
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':')
            return -1;
        hl = (size_t)(close - s - 1);
        s++;
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL)
            return -1;
        hl = (size_t)(colon - s);
    }
    if (hl == 0 || hl >= hsize)
        return -1;
    p = strtol(colon + 1, &end, 10);
    if (*end != '\0' || p < 1 || p > 65535)
        return -1;
    memcpy(host, s, hl);
    host[hl] = '\0';
    *port = (int)p;
    return 0;
}

void kgr_node_free(struct node *n)
{
    size_t i;
    if (n == NULL)
        return;
    for (i = 0; i < n->npipes; i++) {
        redisFree(n->pipes[i].rc);
        pthread_mutex_destroy(&n->pipes[i].lock);
    }
    free(n->pipes);
    free(n->unix_path);
    free(n);
}

struct node *kgr_node_new(struct kgr_client *c, const char *host, int port,
                             const char *unix_path)
{
    struct node *n = calloc(1, sizeof(*n));
    size_t i;
    if (n == NULL)
        return NULL;
    n->pipes = calloc(c->pool_size, sizeof(*n->pipes));
    if (n->pipes == NULL || (unix_path && (n->unix_path = strdup(unix_path)) == NULL)) {
        free(n->pipes);
        free(n);
        return NULL;
    }
    n->npipes = c->pool_size;
    for (i = 0; i < n->npipes; i++)
        pthread_mutex_init(&n->pipes[i].lock, NULL);
    atomic_init(&n->next_pipe, 0);
    snprintf(n->host, sizeof(n->host), "%s", host ? host : "");
    n->port = port;
    return n;
}

/* The index of node host:port, added if new; -1 if the table is full.
 * Call with c->lock held. */
static int node_index_locked(struct kgr_client *c, const char *host, int port)
{
    size_t i;
    for (i = 0; i < c->nnodes; i++)
        if (c->nodes[i]->port == port && c->nodes[i]->unix_path == NULL &&
            strcmp(c->nodes[i]->host, host) == 0)
            return (int)i;
    if (c->nnodes >= MAX_NODES || (c->nodes[c->nnodes] = kgr_node_new(c, host, port, NULL)) == NULL)
        return -1;
    return (int)c->nnodes++;
}

int kgr_node_index(struct kgr_client *c, const char *host, int port)
{
    int i;
    pthread_mutex_lock(&c->lock);
    i = node_index_locked(c, host, port);
    pthread_mutex_unlock(&c->lock);
    return i;
}

static int auth(struct kgr_client *c, redisContext *rc, char *err, size_t errlen)
{
    const char *argv[3];
    size_t lens[3];
    int argc = 0, ok;
    redisReply *r;

    if (c->password == NULL)
        return 0;
    argv[argc] = "AUTH"; lens[argc++] = 4;
    if (c->username) {
        argv[argc] = c->username; lens[argc++] = strlen(c->username);
    }
    argv[argc] = c->password; lens[argc++] = strlen(c->password);
    r = redisCommandArgv(rc, argc, argv, lens);
    ok = r != NULL && r->type != REDIS_REPLY_ERROR;
    if (!ok)
        snprintf(err, errlen, "Redis refused AUTH%s%s", r ? ": " : "",
                 r && r->str ? r->str : rc->errstr);
    freeReplyObject(r);
    return ok ? 0 : -1;
}

redisContext *kgr_dial(struct kgr_client *c, const char *host, int port,
                          const char *unix_path, char *err, size_t errlen)
{
    struct timeval tv = tv_ms(c->connect_ms);
    redisContext *rc = unix_path ? redisConnectUnixWithTimeout(unix_path, tv)
                                 : redisConnectWithTimeout(host, port, tv);
    if (rc == NULL || rc->err) {
        snprintf(err, errlen, "cannot connect to Redis at %s%s%d: %s",
                 unix_path ? unix_path : host, unix_path ? "" : ":",
                 unix_path ? 0 : port, rc ? rc->errstr : "out of memory");
        redisFree(rc);
        return NULL;
    }
#ifdef KG_REDIS_TLS
    if (c->ssl != NULL && redisInitiateSSLWithContext(rc, c->ssl) != REDIS_OK) {
        snprintf(err, errlen, "TLS with Redis at %s:%d failed: %s", host, port,
                 rc->errstr);
        redisFree(rc);
        return NULL;
    }
#endif
    redisSetTimeout(rc, tv_ms(c->command_ms));
    return rc;
}

static redisContext *node_connect(struct kgr_client *c, struct node *n,
                                  char *err, size_t errlen)
{
    redisContext *rc = kgr_dial(c, n->host, n->port, n->unix_path, err, errlen);
    redisReply *r;

    if (rc == NULL)
        return NULL;
    if (auth(c, rc, err, errlen) != 0)
        goto fail;
    if (c->db != 0) {
        r = redisCommand(rc, "SELECT %lld", (long long)c->db);
        if (r == NULL || r->type == REDIS_REPLY_ERROR) {
            snprintf(err, errlen, "Redis refused SELECT %lld: %s", (long long)c->db,
                     r && r->str ? r->str : rc->errstr);
            freeReplyObject(r);
            goto fail;
        }
        freeReplyObject(r);
    }
    return rc;
fail:
    redisFree(rc);
    return NULL;
}

/* Run one round on pipe p: called and returns with p->lock held. */
static void drive(struct kgr_client *c, struct node *n, struct pipe *p)
{
    struct preq *batch = p->head, *q, *next;
    char err[320] = "";
    int status = 0, eof = 0, wdone = 0, k;

    p->head = p->tail = NULL;
    p->driving = 1;
    pthread_mutex_unlock(&p->lock);

    if (p->rc == NULL && (p->rc = node_connect(c, n, err, sizeof(err))) == NULL)
        status = PIPE_CONNECT;
    for (q = batch; status == 0 && q; q = q->next)
        if (redisAppendFormattedCommand(p->rc, q->cmd, q->len) != REDIS_OK)
            status = PIPE_IO;
    if (status == 0) {
        /* A write to a connection the server closed raises SIGPIPE,
         * which would kill the embedding process: block it for the
         * write and take a pending one away (a library must not change
         * the process's signal dispositions). */
        sigset_t pipe_set, old;
        int was_pending;
        sigemptyset(&pipe_set);
        sigaddset(&pipe_set, SIGPIPE);
        pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
        {
            sigset_t pend;
            sigpending(&pend);
            was_pending = sigismember(&pend, SIGPIPE);
        }
        while (status == 0 && !wdone)
            if (redisBufferWrite(p->rc, &wdone) != REDIS_OK)
                status = PIPE_IO;
        if (status != 0 && errno == EPIPE && !was_pending) {
            struct timespec zero = {0, 0};
            sigtimedwait(&pipe_set, NULL, &zero);
        }
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
    for (q = batch; q; q = q->next) {
        for (k = 0; status == 0 && k < q->nreplies; k++) {
            redisReply *r = NULL;
            if (redisGetReply(p->rc, (void **)&r) != REDIS_OK) {
                status = PIPE_IO;
                break;
            }
            if (k + 1 < q->nreplies)
                freeReplyObject(r);
            else
                q->reply = r;
        }
        if (status == PIPE_IO && err[0] == '\0') {
            /* A connection the server closed (it restarted) fails on
             * its first use, before anything ran. */
            eof = p->rc->err == REDIS_ERR_EOF ||
                  (p->rc->err == REDIS_ERR_IO && (errno == ECONNRESET || errno == EPIPE));
            snprintf(err, sizeof(err), "Redis at %.100s:%d: %.150s", n->host, n->port,
                     p->rc->errstr);
        }
        if (q->reply == NULL) {
            q->status = status ? status : PIPE_IO;
            q->eof = eof;
            snprintf(q->errstr, sizeof(q->errstr), "%s", err);
        }
    }
    if (status != 0 && p->rc != NULL) {
        redisFree(p->rc);
        p->rc = NULL;
    }

    pthread_mutex_lock(&p->lock);
    for (q = batch; q; q = next) {
        next = q->next;   /* q may be gone once it is done and we unlock */
        q->done = 1;
        pthread_cond_signal(&q->cond);
    }
    p->driving = 0;
    if (p->head != NULL)
        pthread_cond_signal(&p->head->cond);   /* it drives the next round */
}

/*
 * Send a formatted command on one of node n's pipes and wait for its
 * reply.  NULL on failure: *status_r says whether the connection could
 * not be made (PIPE_CONNECT) or broke (PIPE_IO, *eof_r if closed by the
 * server), the reason is in err.
 */
redisReply *kgr_exchange(struct kgr_client *c, struct node *n,
                            const char *cmd, size_t len, int nreplies,
                            int *status_r, int *eof_r, char *err, size_t errlen)
{
    struct pipe *p = &n->pipes[atomic_fetch_add(&n->next_pipe, 1) % n->npipes];
    struct preq rq;

    memset(&rq, 0, sizeof(rq));
    rq.cmd = cmd;
    rq.len = len;
    rq.nreplies = nreplies;
    pthread_cond_init(&rq.cond, NULL);
    pthread_mutex_lock(&p->lock);
    if (p->tail)
        p->tail->next = &rq;
    else
        p->head = &rq;
    p->tail = &rq;
    while (!rq.done) {
        if (!p->driving && p->head != NULL)
            drive(c, n, p);
        else
            pthread_cond_wait(&rq.cond, &p->lock);
    }
    pthread_mutex_unlock(&p->lock);
    pthread_cond_destroy(&rq.cond);
    *status_r = rq.status;
    *eof_r = rq.eof;
    if (rq.reply == NULL)
        snprintf(err, errlen, "%s", rq.errstr[0] ? rq.errstr : "Redis did not answer");
    return rq.reply;
}

/* Close every connection of a node (after a failure they are all dead). */
void kgr_node_reset(struct node *n)
{
    size_t i;
    for (i = 0; i < n->npipes; i++) {
        struct pipe *p = &n->pipes[i];
        pthread_mutex_lock(&p->lock);
        if (!p->driving && p->rc != NULL) {
            redisFree(p->rc);
            p->rc = NULL;
        }
        pthread_mutex_unlock(&p->lock);
    }
}
