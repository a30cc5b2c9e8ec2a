/*
 * redis_conf.c - a limiter line's `redis:` options (redis.h lists them),
 * the client made from them, and the lease releaser of a Redis
 * concurrency line.
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

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "plugins/common/limits_lua.h"   /* LIMITS_LUA, generated from limits.lua */

/* ---- options ----------------------------------------------------------- */

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
        if ((c->nodes[c->nnodes] = kgr_node_new(c, "unix", 0, ep + 5)) == NULL)
            return KG_ERR_NOMEM;
    } else {
        if (kgr_parse_hostport(ep, host, sizeof(host), &port) != 0)
            return kg_opts_error(o, key, "'%s' is not host:port ([v6]:port, "
                                 "or unix:/path)", ep);
        if ((c->nodes[c->nnodes] = kgr_node_new(c, host, port, NULL)) == NULL)
            return KG_ERR_NOMEM;
    }
    c->nnodes++;
    return KG_OK;
}

static kg_error read_options(kg_opts *top, kg_opts *o, struct kgr_client *c,
                             char *keybuf, size_t keysize)
{
    const char *v;
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
            if (kgr_parse_hostport(v, host, sizeof(host), &port) != 0)
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
    if ((e = kg_opts_get_string(o, "password", NULL, &v)) != KG_OK)
        return e;
    if (v && *v && kg_opts_has(o, "password_file"))
        return kg_opts_error(o, "password_file", "give either password or "
                             "password_file, not both");
    if (v && *v && (c->password = strdup(v)) == NULL)
        return KG_ERR_NOMEM;
    if (!(v && *v) &&
        (e = kg_opts_get_secret_file(o, "password_file", &c->password)) != KG_OK)
        return e;
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

kg_error kgr_release_lease(void *ud, const char *key_id, const char *limit,
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
        if (c->prefix == NULL || (c->nodes[0] = kgr_node_new(c, "127.0.0.1", 6379, NULL)) == NULL) {
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
        if ((e = kg_context_add_releaser(c->ctx, kgr_release_lease, lc)) != KG_OK)
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
        kg_context_remove_releaser(c->ctx, kgr_release_lease, c->releaser_of);
    for (i = 0; i < c->nnodes; i++)
        kgr_node_free(c->nodes[i]);
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
kg_error kgr_release_lease(void *ud, const char *key_id, const char *limit,
                              const char *lease)
{
    struct limitconf *lc = ud;
    struct kgr_client *c = lc->redis;
    const char *argv[11];
    size_t lens[11], size;
    char buf[300], *key, err[256];
    unsigned slot;
    redisReply *r;
    kg_error rc = KG_ERR_NOT_FOUND;
    int i;

    if (c == NULL || strcmp(limit, lc->name) != 0)
        return KG_ERR_NOT_FOUND;
    size = kgr_key_size(c, key_id, limit);
    if ((key = size <= sizeof(buf) ? buf : malloc(size)) == NULL)
        return KG_ERR_NOMEM;
    kgr_key(c, key_id, limit, LC_CONCURRENCY, key, size, &slot);
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
    if (key != buf)
        free(key);
    return rc;
}
