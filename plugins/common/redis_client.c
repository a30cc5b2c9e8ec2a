/*
 * redis_client.c - the connection side of the Redis limiter backend:
 * options, a connection pool per Redis node, failover across endpoints
 * or through Sentinel, Redis Cluster redirections (MOVED/ASK, with a
 * slot map learnt from them), reconnect with backoff, and the script
 * (loaded with SCRIPT LOAD, called with EVALSHA, reloaded on NOSCRIPT).
 *
 * hiredis contexts are blocking and not thread-safe: a thread takes one
 * from its node's pool for one exchange and gives it back.  The node
 * table and slot map change rarely (a new node, a redirection) and are
 * read under the client's mutex, held for a few instructions.
 */
#include "config.h"

#include "limitconf.h"
#include "redis.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>
#ifdef KG_REDIS_TLS
#include <hiredis/hiredis_ssl.h>
#endif
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "plugins/common/limits_lua.h"   /* LIMITS_LUA, generated from limits.lua */

#define MAX_NODES 64
#define MAX_ENDPOINTS 16
#define NSLOTS 16384
#define MAX_HOPS 8

/*
 * One request waiting on a pipe: its formatted command (RESP), how many
 * replies it expects (2 with a leading ASKING; the last is kept), and
 * what came back.  It lives on the requesting thread's stack.
 */
struct preq {
    const char *cmd;
    size_t len;
    int nreplies;
    redisReply *reply;
    int status;              /* 0 answered, PIPE_CONNECT, PIPE_IO */
    int eof;                 /* PIPE_IO: the server had closed the connection */
    char errstr[320];
    int done;
    pthread_cond_t cond;
    struct preq *next;
};
#define PIPE_CONNECT 1
#define PIPE_IO 2

/*
 * A connection shared by many threads by automatic pipelining: a thread
 * queues its request; whoever finds the pipe idle becomes its driver,
 * writes every queued request in one write, reads their replies in order
 * and hands each back.  Requests that arrive meanwhile queue for the next
 * round, whose first requester drives it.  Under load Redis reads many
 * commands per read(): fewer system calls on both sides than a
 * connection per thread.
 */
struct pipe {
    pthread_mutex_t lock;
    redisContext *rc;
    struct preq *head, *tail;
    int driving;
};

struct node {
    char host[256];
    int port;
    char *unix_path;
    struct pipe *pipes;
    size_t npipes;
    atomic_uint next_pipe;
};

struct kgr_client {
    kg_context *ctx;
    char *prefix;
    char *username;
    char *password;          /* wiped when freed */
    int64_t db;
    int64_t connect_ms, command_ms, backoff_min_ms, backoff_max_ms;
    size_t pool_size;
    size_t nendpoints;       /* nodes[0..nendpoints) are the endpoints */
    char *sentinels[MAX_ENDPOINTS];
    size_t nsentinels;
    char *sentinel_master;
#ifdef KG_REDIS_TLS
    redisSSLContext *ssl;
#endif
    char sha[41];
    char *batch_key;

    pthread_mutex_t lock;    /* nodes, nnodes, slots, primary */
    struct node *nodes[MAX_NODES];
    size_t nnodes;
    int16_t slots[NSLOTS];   /* node of a slot, -1: unknown (use primary) */
    int primary;             /* node index, -1: ask Sentinel */
    atomic_int_least64_t down_until_ms;
    atomic_int_least64_t backoff_ms;

    /* The concurrency line whose leases kg_release() may ask about. */
    struct limitconf *releaser_of;
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct timeval tv_ms(int64_t ms)
{
    struct timeval tv;
    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    return tv;
}

/* CRC16-CCITT (XMODEM), as Redis Cluster hashes keys. */
unsigned kgr_slot(const char *s, size_t n)
{
    unsigned crc = 0;
    size_t i;
    int b;
    for (i = 0; i < n; i++) {
        crc ^= (unsigned)(unsigned char)s[i] << 8;
        for (b = 0; b < 8; b++)
            crc = (crc & 0x8000) ? ((crc << 1) ^ 0x1021) : (crc << 1);
        crc &= 0xffff;
    }
    return crc % NSLOTS;
}

int kgr_key(struct kgr_client *c, const char *key_id, const char *limit,
            int algo, char *out, size_t size, unsigned *slot_r)
{
    /* The key id is the hash tag: braces (and the escape character) in
     * it are escaped so that the tag cannot end early. */
    char tag[200];
    size_t t = 0, i;
    int n;
    for (i = 0; key_id[i]; i++) {
        char ch = key_id[i];
        if (t + 4 >= sizeof(tag))
            return -1;
        if (ch == '{' || ch == '}' || ch == '%') {
            snprintf(tag + t, 4, "%%%02x", (unsigned char)ch);
            t += 3;
        } else {
            tag[t++] = ch;
        }
    }
    tag[t] = '\0';
    n = snprintf(out, size, "%s:{%s}:%s:%c", c->prefix, tag, limit, algo);
    if (n < 0 || (size_t)n >= size)
        return -1;
    *slot_r = kgr_slot(tag, t);
    return 0;
}

const char *kgr_client_batch_key(struct kgr_client *c)
{
    return c->batch_key;
}

/* ---- nodes and their pools ------------------------------------------- */

static int parse_hostport(const char *s, char *host, size_t hsize, int *port)
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

static void node_free(struct node *n)
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

static struct node *node_new(struct kgr_client *c, const char *host, int port,
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
    if (c->nnodes >= MAX_NODES || (c->nodes[c->nnodes] = node_new(c, host, port, NULL)) == NULL)
        return -1;
    return (int)c->nnodes++;
}

static int node_index(struct kgr_client *c, const char *host, int port)
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

static redisContext *dial(struct kgr_client *c, const char *host, int port,
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
    redisContext *rc = dial(c, n->host, n->port, n->unix_path, err, errlen);
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
static redisReply *exchange(struct kgr_client *c, struct node *n,
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
static void node_reset(struct node *n)
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

/* ---- failover -------------------------------------------------------- */

/* Ask the sentinels where the master is; its node index or -1. */
static int sentinel_master(struct kgr_client *c, char *err, size_t errlen)
{
    size_t i;
    for (i = 0; i < c->nsentinels; i++) {
        char host[256];
        int port, idx;
        redisContext *rc;
        redisReply *r;

        if (parse_hostport(c->sentinels[i], host, sizeof(host), &port) != 0)
            continue;
        rc = dial(c, host, port, NULL, err, errlen);
        if (rc == NULL)
            continue;
        r = redisCommand(rc, "SENTINEL get-master-addr-by-name %s", c->sentinel_master);
        if (r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
            r->element[0]->type == REDIS_REPLY_STRING &&
            r->element[1]->type == REDIS_REPLY_STRING) {
            snprintf(host, sizeof(host), "%s", r->element[0]->str);
            port = atoi(r->element[1]->str);
            freeReplyObject(r);
            redisFree(rc);
            if ((idx = node_index(c, host, port)) >= 0)
                return idx;
            snprintf(err, errlen, "too many Redis nodes");
            return -1;
        }
        snprintf(err, errlen, "Sentinel %s does not know master '%s'",
                 c->sentinels[i], c->sentinel_master);
        freeReplyObject(r);
        redisFree(rc);
    }
    return -1;
}

/*
 * The node after `failed` to try, or -1: with Sentinel, the master it
 * names now; else the next endpoint (each tried once per request).
 */
static int failover(struct kgr_client *c, int failed, size_t tried, char *err,
                    size_t errlen)
{
    int next;
    if (c->nsentinels > 0) {
        if (tried > 1)
            return -1;
        next = sentinel_master(c, err, errlen);
        if (next < 0 || next == failed)
            return -1;
    } else {
        if (tried >= c->nendpoints || (size_t)failed >= c->nendpoints)
            return -1;
        next = (int)(((size_t)failed + 1) % c->nendpoints);
    }
    pthread_mutex_lock(&c->lock);
    if (c->primary == failed)
        c->primary = next;
    pthread_mutex_unlock(&c->lock);
    return next;
}

static void mark_down(struct kgr_client *c)
{
    int64_t b = atomic_load(&c->backoff_ms);
    b = b == 0 ? c->backoff_min_ms : b * 2;
    if (b > c->backoff_max_ms)
        b = c->backoff_max_ms;
    atomic_store(&c->backoff_ms, b);
    atomic_store(&c->down_until_ms, mono_ms() + b);
}

/* "MOVED 3999 127.0.0.1:6381" / "ASK ..." -> the node's index. */
static int redirect_target(struct kgr_client *c, const char *msg)
{
    const char *sp = strchr(msg, ' ');
    char host[256];
    int port;
    if (sp == NULL || (sp = strchr(sp + 1, ' ')) == NULL)
        return -1;
    if (parse_hostport(sp + 1, host, sizeof(host), &port) != 0)
        return -1;
    return node_index(c, host, port);
}

static int load_script(struct kgr_client *c, struct node *n, char *err,
                       size_t errlen)
{
    const char *argv[3] = {"SCRIPT", "LOAD", LIMITS_LUA};
    size_t lens[3] = {6, 4, strlen(LIMITS_LUA)};
    char *cmd = NULL;
    int len = redisFormatCommandArgv(&cmd, 3, argv, lens), status, eof, ok;
    redisReply *r;

    if (len < 0)
        return -1;
    r = exchange(c, n, cmd, (size_t)len, 1, &status, &eof, err, errlen);
    redisFreeCommand(cmd);
    ok = r != NULL && r->type == REDIS_REPLY_STRING && strcmp(r->str, c->sha) == 0;
    if (r != NULL && !ok)
        snprintf(err, errlen, "SCRIPT LOAD of the limits script failed%s%s",
                 r->type == REDIS_REPLY_ERROR ? ": " : "",
                 r->type == REDIS_REPLY_ERROR ? r->str : "");
    freeReplyObject(r);
    return ok ? 0 : -1;
}

redisReply *kgr_eval(struct kgr_client *c, unsigned slot, int argc,
                     const char **argv, size_t *lens, char *err,
                     size_t errlen)
{
    int idx, asking = 0, reconnected = 0, loaded = 0, len, alen;
    size_t hop, tried = 1;
    char *cmd = NULL, *acmd = NULL;
    redisReply *r = NULL;

    if (mono_ms() < atomic_load(&c->down_until_ms)) {
        snprintf(err, errlen, "Redis is unreachable; retrying after a backoff");
        return NULL;
    }
    argv[0] = "EVALSHA";
    lens[0] = 7;
    argv[1] = c->sha;
    lens[1] = 40;
    if ((len = redisFormatCommandArgv(&cmd, argc, argv, lens)) < 0) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_lock(&c->lock);
    idx = c->slots[slot] >= 0 ? c->slots[slot] : c->primary;
    pthread_mutex_unlock(&c->lock);
    if (idx < 0) {
        if ((idx = sentinel_master(c, err, errlen)) < 0) {
            mark_down(c);
            goto out;
        }
        pthread_mutex_lock(&c->lock);
        c->primary = idx;
        pthread_mutex_unlock(&c->lock);
    }

    for (hop = 0; hop < MAX_HOPS; hop++) {
        struct node *n = c->nodes[idx];
        int status = 0, eof = 0;

        if (asking) {
            /* ASKING and the command back to back on one connection. */
            char *a1 = NULL;
            int l1 = redisFormatCommand(&a1, "ASKING");
            free(acmd);
            acmd = l1 < 0 ? NULL : malloc((size_t)l1 + (size_t)len);
            if (acmd == NULL) {
                redisFreeCommand(a1);
                snprintf(err, errlen, "out of memory");
                goto out;
            }
            memcpy(acmd, a1, (size_t)l1);
            memcpy(acmd + l1, cmd, (size_t)len);
            alen = l1 + len;
            redisFreeCommand(a1);
            r = exchange(c, n, acmd, (size_t)alen, 2, &status, &eof, err, errlen);
            asking = 0;
        } else {
            r = exchange(c, n, cmd, (size_t)len, 1, &status, &eof, err, errlen);
        }
        if (r == NULL) {
            if (status == PIPE_CONNECT) {
                int next = failover(c, idx, tried++, err, errlen);
                if (next >= 0) {
                    idx = next;
                    continue;
                }
                mark_down(c);
                goto out;
            }
            node_reset(n);
            if (eof && !reconnected) {
                /* The command never ran: one retry on a new connection.
                 * A timeout is not retried (the script may have run). */
                reconnected = 1;
                continue;
            }
            goto out;
        }
        atomic_store(&c->backoff_ms, 0);
        if (r->type != REDIS_REPLY_ERROR)
            goto out;
        if (strncmp(r->str, "NOSCRIPT", 8) == 0 && !loaded) {
            /* A restarted or new node: load once, then call again. */
            freeReplyObject(r);
            r = NULL;
            loaded = 1;
            if (load_script(c, n, err, errlen) != 0)
                goto out;
            continue;
        }
        if (strncmp(r->str, "MOVED ", 6) == 0 || strncmp(r->str, "ASK ", 4) == 0) {
            int to = redirect_target(c, r->str);
            int moved = r->str[0] == 'M';
            freeReplyObject(r);
            r = NULL;
            if (to < 0) {
                snprintf(err, errlen, "cannot follow a Redis Cluster redirection");
                goto out;
            }
            if (moved) {
                pthread_mutex_lock(&c->lock);
                c->slots[slot] = (int16_t)to;
                pthread_mutex_unlock(&c->lock);
            } else {
                asking = 1;
            }
            idx = to;
            continue;
        }
        if (strncmp(r->str, "READONLY", 8) == 0 && tried <= c->nendpoints + 1) {
            /* A replica now (after a failover): find the master. */
            int next = failover(c, idx, tried++, err, errlen);
            freeReplyObject(r);
            r = NULL;
            if (next < 0)
                goto out;
            idx = next;
            continue;
        }
        snprintf(err, errlen, "Redis answered: %s", r->str);
        freeReplyObject(r);
        r = NULL;
        goto out;
    }
    snprintf(err, errlen, "too many Redis Cluster redirections");
out:
    redisFreeCommand(cmd);
    free(acmd);
    return r;
}

/* ---- options ----------------------------------------------------------- */

static char *read_secret_file(kg_opts *o, const char *path)
{
    FILE *f = fopen(path, "r");
    char buf[1024];
    size_t n;
    char *s;
    if (f == NULL) {
        kg_opts_error(o, "password_file", "cannot read %s: %s", path, strerror(errno));
        return NULL;
    }
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = '\0';
    s = n > 0 ? strdup(buf) : NULL;
    if (n == 0)
        kg_opts_error(o, "password_file", "%s is empty", path);
    OPENSSL_cleanse(buf, sizeof(buf));
    return s;
}

static kg_error get_ms(kg_opts *o, const char *key, int64_t def, int64_t min,
                       int64_t *v)
{
    kg_error e = kg_opts_get_int(o, key, def, v);
    if (e == KG_OK && *v < min)
        return kg_opts_error(o, key, "%s must be at least %lld", key, (long long)min);
    return e;
}

static kg_error add_endpoint(struct kgr_client *c, kg_opts *o, const char *key,
                             const char *ep)
{
    char host[256];
    int port;
    if (c->nnodes >= MAX_ENDPOINTS)
        return kg_opts_error(o, key, "at most %d endpoints", MAX_ENDPOINTS);
    if (strncmp(ep, "unix:", 5) == 0) {
        if ((c->nodes[c->nnodes] = node_new(c, "unix", 0, ep + 5)) == NULL)
            return KG_ERR_NOMEM;
    } else {
        if (parse_hostport(ep, host, sizeof(host), &port) != 0)
            return kg_opts_error(o, key, "'%s' is not host:port ([v6]:port, "
                                 "or unix:/path)", ep);
        if ((c->nodes[c->nnodes] = node_new(c, host, port, NULL)) == NULL)
            return KG_ERR_NOMEM;
    }
    c->nnodes++;
    return KG_OK;
}

static kg_error read_options(kg_opts *top, kg_opts *o, struct kgr_client *c,
                             char *keybuf, size_t keysize)
{
    const char *v, *pwfile = NULL;
    size_t i, n, k = 0;
    kg_opts *so, *tls;
    int64_t pool;
    kg_error e;

    if ((e = kg_opts_get_string(o, "prefix", "kg", &v)) != KG_OK)
        return e;
    if (*v == '\0' || strpbrk(v, "{} \t") != NULL)
        return kg_opts_error(o, "prefix", "the key prefix must be non-empty, "
                             "without braces or spaces");
    if ((c->prefix = strdup(v)) == NULL)
        return KG_ERR_NOMEM;
    n = kg_opts_list_size(o, "endpoints");
    for (i = 0; i < n; i++)
        if ((e = add_endpoint(c, o, "endpoints", kg_opts_list_item(o, "endpoints", i))) != KG_OK)
            return e;
    if ((so = kg_opts_child(o, "sentinel")) != NULL) {
        if (n > 0)
            return kg_opts_error(o, "sentinel", "give either endpoints or sentinel, not both");
        if ((e = kg_opts_get_string(so, "master", NULL, &v)) != KG_OK)
            return e;
        if (v == NULL || *v == '\0')
            return kg_opts_error(so, NULL, "sentinel needs master: the name Sentinel "
                                 "monitors (e.g. mymaster)");
        if ((c->sentinel_master = strdup(v)) == NULL)
            return KG_ERR_NOMEM;
        n = kg_opts_list_size(so, "endpoints");
        if (n == 0 || n > MAX_ENDPOINTS)
            return kg_opts_error(so, NULL, "sentinel needs endpoints: 1 to %d host:port",
                                 MAX_ENDPOINTS);
        for (i = 0; i < n; i++) {
            char host[256];
            int port;
            v = kg_opts_list_item(so, "endpoints", i);
            if (parse_hostport(v, host, sizeof(host), &port) != 0)
                return kg_opts_error(so, "endpoints", "'%s' is not host:port", v);
            if ((c->sentinels[i] = strdup(v)) == NULL)
                return KG_ERR_NOMEM;
            c->nsentinels++;
        }
    } else if (n == 0 && (e = add_endpoint(c, o, "endpoints", "127.0.0.1:6379")) != KG_OK) {
        return e;
    }
    c->nendpoints = c->nnodes;
    c->primary = c->nsentinels > 0 ? -1 : 0;
    if ((e = kg_opts_get_string(o, "username", NULL, &v)) != KG_OK)
        return e;
    if (v && *v && (c->username = strdup(v)) == NULL)
        return KG_ERR_NOMEM;
    if ((e = kg_opts_get_string(o, "password", NULL, &v)) != KG_OK ||
        (e = kg_opts_get_path(o, "password_file", NULL, &pwfile)) != KG_OK)
        return e;
    if (v && *v && pwfile)
        return kg_opts_error(o, "password_file", "give either password or "
                             "password_file, not both");
    if (v && *v && (c->password = strdup(v)) == NULL)
        return KG_ERR_NOMEM;
    if (pwfile && (c->password = read_secret_file(o, pwfile)) == NULL)
        return KG_ERR_POLICY;
    if (c->username && !c->password)
        return kg_opts_error(o, "username", "an ACL username needs a password "
                             "(password: ${REDIS_PASSWORD} or password_file:)");
    if ((e = kg_opts_get_int(o, "db", 0, &c->db)) != KG_OK)
        return e;
    if ((e = get_ms(o, "connect_timeout_ms", 500, 1, &c->connect_ms)) != KG_OK ||
        (e = get_ms(o, "command_timeout_ms", 500, 1, &c->command_ms)) != KG_OK ||
        (e = get_ms(o, "backoff_min_ms", 50, 1, &c->backoff_min_ms)) != KG_OK ||
        (e = get_ms(o, "backoff_max_ms", 2000, 1, &c->backoff_max_ms)) != KG_OK ||
        (e = get_ms(o, "pool_size", 4, 1, &pool)) != KG_OK)
        return e;
    if (pool > 256)
        return kg_opts_error(o, "pool_size", "pool_size must be at most 256");
    c->pool_size = (size_t)pool;
    tls = kg_opts_child(o, "tls");
#ifdef KG_REDIS_TLS
    if (tls != NULL) {
        const char *ca = NULL, *cert = NULL, *key = NULL, *sni = NULL;
        redisSSLContextError se = REDIS_SSL_CTX_NONE;
        if ((e = kg_opts_get_path(tls, "ca", NULL, &ca)) != KG_OK ||
            (e = kg_opts_get_path(tls, "cert", NULL, &cert)) != KG_OK ||
            (e = kg_opts_get_path(tls, "key", NULL, &key)) != KG_OK ||
            (e = kg_opts_get_string(tls, "server_name", NULL, &sni)) != KG_OK)
            return e;
        redisInitOpenSSL();
        c->ssl = redisCreateSSLContext(ca, NULL, cert, key, sni, &se);
        if (c->ssl == NULL)
            return kg_opts_error(o, "tls", "cannot set up TLS for Redis: %s",
                                 redisSSLContextGetError(se));
    }
#else
    if (tls != NULL)
        return kg_opts_error(o, "tls", "this keygate's hiredis has no TLS support "
                             "(hiredis_ssl); use a TLS tunnel or build against "
                             "hiredis >= 1.0 with SSL");
#endif
    /* Lines batch together only when they talk to the same Redis the
     * same way (the password is left out: it is a secret). */
    k = (size_t)snprintf(keybuf, keysize, "kgredis/1|%s|%s|%lld|%s|%s|",
                         c->prefix, c->sentinel_master ? c->sentinel_master : "",
                         (long long)c->db, c->username ? c->username : "",
                         tls ? "tls" : "");
    for (i = 0; i < c->nendpoints && k < keysize; i++)
        k += (size_t)snprintf(keybuf + k, keysize - k, "%s:%d,",
                              c->nodes[i]->unix_path ? c->nodes[i]->unix_path : c->nodes[i]->host,
                              c->nodes[i]->port);
    for (i = 0; i < c->nsentinels && k < keysize; i++)
        k += (size_t)snprintf(keybuf + k, keysize - k, "%s,", c->sentinels[i]);
    (void)top;
    return KG_OK;
}

static kg_error release_lease(void *ud, const char *key_id, const char *limit,
                              const char *lease);

kg_error kgr_client_new(kg_opts *top, struct limitconf *lc,
                        struct kgr_client **c_r)
{
    struct kgr_client *c = calloc(1, sizeof(*c));
    kg_opts *o = kg_opts_child(top, "redis");
    unsigned char md[20];
    unsigned mdlen = 0;
    char key[2048];
    size_t i;
    kg_error e;

    *c_r = NULL;
    if (c == NULL)
        return KG_ERR_NOMEM;
    pthread_mutex_init(&c->lock, NULL);
    for (i = 0; i < NSLOTS; i++)
        c->slots[i] = -1;
    atomic_init(&c->down_until_ms, 0);
    atomic_init(&c->backoff_ms, 0);
    c->ctx = kg_opts_context(top);
    c->pool_size = 4;
    if (o == NULL && kg_opts_has(top, "redis")) {
        e = kg_opts_error(top, "redis", "redis must be a mapping (endpoints: ...)");
        goto fail;
    }
    if (o == NULL) {
        /* No options: the local default, 127.0.0.1:6379. */
        c->prefix = strdup("kg");
        c->connect_ms = c->command_ms = 500;
        c->backoff_min_ms = 50;
        c->backoff_max_ms = 2000;
        if (c->prefix == NULL || (c->nodes[0] = node_new(c, "127.0.0.1", 6379, NULL)) == NULL) {
            e = KG_ERR_NOMEM;
            goto fail;
        }
        c->nnodes = c->nendpoints = 1;
        snprintf(key, sizeof(key), "kgredis/1|kg||0|||127.0.0.1:6379,");
    } else if ((e = read_options(top, o, c, key, sizeof(key))) != KG_OK) {
        goto fail;
    }
    if ((c->batch_key = strdup(key)) == NULL) {
        e = KG_ERR_NOMEM;
        goto fail;
    }
    if (EVP_Digest(LIMITS_LUA, strlen(LIMITS_LUA), md, &mdlen, EVP_sha1(), NULL) != 1) {
        e = KG_ERR_PLUGIN;
        goto fail;
    }
    for (i = 0; i < 20; i++)
        snprintf(c->sha + 2 * i, 3, "%02x", md[i]);
    if (lc->algo == LC_CONCURRENCY) {
        if ((e = kg_context_add_releaser(c->ctx, release_lease, lc)) != KG_OK)
            goto fail;
        c->releaser_of = lc;
    }
    *c_r = c;
    return KG_OK;
fail:
    kgr_client_free(c);
    return e;
}

void kgr_client_free(struct kgr_client *c)
{
    size_t i;
    if (c == NULL)
        return;
    if (c->releaser_of)
        kg_context_remove_releaser(c->ctx, release_lease, c->releaser_of);
    for (i = 0; i < c->nnodes; i++)
        node_free(c->nodes[i]);
    for (i = 0; i < c->nsentinels; i++)
        free(c->sentinels[i]);
    free(c->sentinel_master);
    free(c->prefix);
    free(c->username);
    if (c->password) {
        OPENSSL_cleanse(c->password, strlen(c->password));
        free(c->password);
    }
#ifdef KG_REDIS_TLS
    if (c->ssl)
        redisFreeSSLContext(c->ssl);
#endif
    free(c->batch_key);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

/* kg_release() of a lease this concurrency line took in Redis. */
static kg_error release_lease(void *ud, const char *key_id, const char *limit,
                              const char *lease)
{
    struct limitconf *lc = ud;
    struct kgr_client *c = lc->redis;
    const char *argv[11];
    size_t lens[11];
    char key[512], err[256];
    unsigned slot;
    redisReply *r;
    kg_error rc = KG_ERR_NOT_FOUND;
    int i;

    if (c == NULL || strcmp(limit, lc->name) != 0 ||
        kgr_key(c, key_id, limit, LC_CONCURRENCY, key, sizeof(key), &slot) != 0)
        return KG_ERR_NOT_FOUND;
    argv[2] = "1";
    argv[3] = key;
    argv[4] = "r";
    argv[5] = "c";
    argv[6] = argv[7] = argv[8] = argv[9] = "0";
    argv[10] = lease;
    for (i = 2; i < 11; i++)
        lens[i] = strlen(argv[i]);
    r = kgr_eval(c, slot, 11, argv, lens, err, sizeof(err));
    if (r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements >= 1 &&
        r->element[0]->type == REDIS_REPLY_INTEGER && r->element[0]->integer == 1)
        rc = KG_OK;
    freeReplyObject(r);
    return rc;
}
