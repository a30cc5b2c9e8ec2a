/*
 * redis_int.h - what the files of the Redis backend share (redis_pipe.c,
 * redis_client.c, redis_conf.c); nothing outside plugins/common/ uses it.
 */
#ifndef KEYGATE_PLUGINS_REDIS_INT_H
#define KEYGATE_PLUGINS_REDIS_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include <hiredis/hiredis.h>
#ifdef KG_REDIS_TLS
#include <hiredis/hiredis_ssl.h>
#endif

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

/* redis_pipe.c: nodes and their pipelined connections */
int64_t kgr_mono_ms(void);
int kgr_parse_hostport(const char *s, char *host, size_t hsize, int *port);
struct node *kgr_node_new(struct kgr_client *c, const char *host, int port,
                          const char *unix_path);
void kgr_node_free(struct node *n);
/* The index of node host:port, added if new; -1 if the table is full. */
int kgr_node_index(struct kgr_client *c, const char *host, int port);
/* A connection (with TLS if configured, and the command timeout). */
redisContext *kgr_dial(struct kgr_client *c, const char *host, int port,
                       const char *unix_path, char *err, size_t errlen);
redisReply *kgr_exchange(struct kgr_client *c, struct node *n,
                         const char *cmd, size_t len, int nreplies,
                         int *status_r, int *eof_r, char *err, size_t errlen);
void kgr_node_reset(struct node *n);

/* redis_conf.c */
kg_error kgr_release_lease(void *ud, const char *key_id, const char *limit,
                           const char *lease);

#endif
