/*
 * redis.h - the Redis backend of the limiter plugins (redis.c), compiled
 * into each limiter module when keygate is built with hiredis
 * (KG_REDIS): redis.c (the limiter side), redis_client.c (routing one
 * EVALSHA), redis_pipe.c (connections), redis_conf.c (options).  One
 * Lua script (limits.lua) holds every algorithm, so a plan's limits that
 * share a Redis are decided together in one EVALSHA:
 * the core hands consecutive lines with the same kgr_batch_key() to one
 * kgr_batch() call (plugin.h, struct kg_limit_ops).
 *
 * Options, under `redis:` of a limiter line (YAML anchors let every line
 * share one block):
 *   endpoints: [host:port, ...]   tried in order (failover); "unix:/path"
 *   sentinel: {master: NAME, endpoints: [host:port, ...]}
 *                                 ask Sentinel for the master instead
 *   username, password            ACL user / password (password may be
 *                                 ${ENV}); password_file: read from a file
 *   db: 0                         SELECT (not in a cluster)
 *   tls: {ca, cert, key, server_name}   when hiredis has TLS (hiredis_ssl)
 *   connect_timeout_ms: 500, command_timeout_ms: 500
 *   pool_size: 4                  connections per Redis node, each shared
 *                                 by many threads (automatic pipelining)
 *   backoff_min_ms: 50, backoff_max_ms: 2000
 *                                 after a failed connect, fail fast for
 *                                 this long (doubling up to the max)
 *   prefix: kg                    key names: <prefix>:{<key id>}:<limit>:<algo>
 * A Redis Cluster needs no option: MOVED and ASK replies are followed
 * and the slot map is learnt from them.
 */
#ifndef KEYGATE_PLUGINS_REDIS_H
#define KEYGATE_PLUGINS_REDIS_H

#include <keygate/plugin.h>
#include <keygate/modutil.h>

struct limitconf;
struct kgr_client;

/* Read the line's `redis:` options and make its (lazily connected)
 * client; registers the lease releaser of a concurrency line. */
kg_error kgr_client_new(kg_opts *o, struct limitconf *lc,
                        struct kgr_client **c_r);
void kgr_client_free(struct kgr_client *c);

/* The struct kg_limit_ops batch hooks. */
const char *kgr_batch_key(void *inst);
void kgr_batch(void *const *insts, size_t n, kg_call *call,
               kg_result *results);
/* Give back what an admitted batch took for this line. */
void kgr_undo(struct limitconf *lc, kg_call *call);

/* ---- between redis.c and redis_client.c (and redis_int.h) ----------- */

/* The Redis Cluster slot of a string (CRC16 mod 16384). */
unsigned kgr_slot(const char *s, size_t n);
/*
 * Run EVALSHA of the limits script: argv[0..1] are filled in here
 * ("EVALSHA", the script's SHA-1), the rest is the caller's.  Routes by
 * `slot`, follows MOVED/ASK, reloads the script on NOSCRIPT, reconnects
 * once on a connection the server closed, fails over to the next
 * endpoint.  Returns the reply (freeReplyObject() it) or NULL with a
 * reason in err.
 */
struct redisReply *kgr_eval(struct kgr_client *c, unsigned slot, int argc,
                            const char **argv, size_t *lens,
                            char *err, size_t errlen);
/* "<prefix>:{<escaped key id>}:<limit>:<algo>" and its slot; 0 on
 * success, -1 if `size` is less than kgr_key_size() (all it may need). */
size_t kgr_key_size(struct kgr_client *c, const char *key_id, const char *limit);
int kgr_key(struct kgr_client *c, const char *key_id, const char *limit,
            int algo, char *out, size_t size, unsigned *slot_r);
const char *kgr_client_batch_key(struct kgr_client *c);

#endif
