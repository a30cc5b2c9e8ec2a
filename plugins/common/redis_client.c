/*
 * redis_client.c - one EVALSHA of the limits script, wherever it has to
 * go: the node of the key's slot (Redis Cluster: MOVED and ASK followed,
 * the slot map learnt from them), the next endpoint or Sentinel's master
 * when a node cannot be reached (then a backoff during which calls fail
 * fast), SCRIPT LOAD on NOSCRIPT, one retry on a connection the server
 * had closed.  The node table and slot map change rarely and are read
 * under the client's mutex, held for a few instructions.
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

#include "plugins/common/limits_lua.h"   /* LIMITS_LUA, generated from limits.lua */

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

size_t kgr_key_size(struct kgr_client *c, const char *key_id, const char *limit)
{
    /* Each byte of the key id escaped at worst to three; ":{", "}:",
     * ":", the algorithm and the NUL. */
    return strlen(c->prefix) + 3 * strlen(key_id) + strlen(limit) + 7;
}

int kgr_key(struct kgr_client *c, const char *key_id, const char *limit,
            int algo, char *out, size_t size, unsigned *slot_r)
{
    static const char hx[] = "0123456789abcdef";
    size_t p = strlen(c->prefix), n = strlen(limit), t, i;

    if (size < kgr_key_size(c, key_id, limit))
        return -1;
    memcpy(out, c->prefix, p);
    memcpy(out + p, ":{", 2);
    /* The key id is the hash tag: braces (and the escape character) in
     * it are escaped so that the tag cannot end early. */
    for (t = p + 2, i = 0; key_id[i]; i++) {
        unsigned char ch = (unsigned char)key_id[i];
        if (ch == '{' || ch == '}' || ch == '%') {
            out[t++] = '%';
            out[t++] = hx[ch >> 4];
            out[t++] = hx[ch & 15];
        } else {
            out[t++] = (char)ch;
        }
    }
    *slot_r = kgr_slot(out + p + 2, t - p - 2);
    memcpy(out + t, "}:", 2);
    memcpy(out + t + 2, limit, n);
    t += 2 + n;
    out[t++] = ':';
    out[t++] = (char)algo;
    out[t] = '\0';
    return 0;
}

const char *kgr_client_batch_key(struct kgr_client *c)
{
    return c->batch_key;
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

        if (kgr_parse_hostport(c->sentinels[i], host, sizeof(host), &port) != 0)
            continue;
        rc = kgr_dial(c, host, port, NULL, err, errlen);
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
            if ((idx = kgr_node_index(c, host, port)) >= 0)
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
    atomic_store(&c->down_until_ms, kgr_mono_ms() + b);
}

/* "MOVED 3999 127.0.0.1:6381" / "ASK ..." -> the node's index. */
static int redirect_target(struct kgr_client *c, const char *msg)
{
    const char *sp = strchr(msg, ' ');
    char host[256];
    int port;
    if (sp == NULL || (sp = strchr(sp + 1, ' ')) == NULL)
        return -1;
    if (kgr_parse_hostport(sp + 1, host, sizeof(host), &port) != 0)
        return -1;
    return kgr_node_index(c, host, port);
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
    r = kgr_exchange(c, n, cmd, (size_t)len, 1, &status, &eof, err, errlen);
    redisFreeCommand(cmd);
    ok = r != NULL && r->type == REDIS_REPLY_STRING && strcmp(r->str, c->sha) == 0;
    if (r != NULL && !ok)
        snprintf(err, errlen, "SCRIPT LOAD of the limits script failed%s%s",
                 r->type == REDIS_REPLY_ERROR ? ": " : "",
                 r->type == REDIS_REPLY_ERROR ? r->str : "");
    freeReplyObject(r);
    return ok ? 0 : -1;
}

/* Why Redis failed, for the operator (once per interval, core/log.c),
 * under the name of the first endpoint (or Sentinel) configured. */
static void say(struct kgr_client *c, const char *err)
{
    char name[300];
    if (c->nendpoints > 0 && c->nodes[0]->unix_path != NULL)
        snprintf(name, sizeof(name), "redis %s", c->nodes[0]->unix_path);
    else if (c->nendpoints > 0)
        snprintf(name, sizeof(name), "redis %s:%d", c->nodes[0]->host,
                 c->nodes[0]->port);
    else
        snprintf(name, sizeof(name), "redis sentinel %s",
                 c->nsentinels > 0 ? c->sentinels[0] : "");
    kg_context_log_backend(c->ctx, name, "%s", err);
}

redisReply *kgr_eval(struct kgr_client *c, unsigned slot, int argc,
                     const char **argv, size_t *lens, char *err,
                     size_t errlen)
{
    int idx, asking = 0, reconnected = 0, loaded = 0, len, alen;
    size_t hop, tried = 1;
    char *cmd = NULL, *acmd = NULL;
    redisReply *r = NULL;

    if (kgr_mono_ms() < atomic_load(&c->down_until_ms)) {
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
            r = kgr_exchange(c, n, acmd, (size_t)alen, 2, &status, &eof, err, errlen);
            asking = 0;
        } else {
            r = kgr_exchange(c, n, cmd, (size_t)len, 1, &status, &eof, err, errlen);
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
            kgr_node_reset(n);
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
    if (r == NULL)
        say(c, err);
    redisFreeCommand(cmd);
    free(acmd);
    return r;
}
