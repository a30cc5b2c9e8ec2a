/*
 * redis.c - the limiter side of the Redis backend: a batch of limit
 * lines (one line, or every line of a plan that shares a Redis) becomes
 * one EVALSHA of limits.lua; its answer becomes each line's result and
 * report.  When Redis cannot answer, each line does what its
 * on_backend_error says.
 */
#include "config.h"

#include "limitconf.h"
#include "redis.h"
#include "redis_int.h"   /* kgr_release_lease */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#define MAX_BATCH 16
#define ARGS_PER 6

const char *kgr_batch_key(void *inst)
{
    struct limitconf *lc = inst;
    return lc->redis ? kgr_client_batch_key(lc->redis) : NULL;
}

static const char *deny_message(int algo)
{
    switch (algo) {
    case LC_FIXED:
        return "rate limit exceeded: too many requests in this window; retry "
               "after the time in Retry-After";
    case LC_SLIDING:
        return "rate limit exceeded: too many requests in the last window; "
               "retry after the time in Retry-After";
    case LC_BUCKET:
        return "rate limit exceeded: the burst allowance is used up; retry "
               "after the time in Retry-After";
    default:
        return "too many requests in flight for this key; retry when one has "
               "finished";
    }
}

/*
 * Redis could not answer: each line's on_backend_error.  All-or-nothing
 * still holds: if any line ends not OK, the memory state the `local`
 * lines took is given back.
 */
static void backend_error(void *const *insts, size_t n, kg_call *call,
                          kg_result *res)
{
    int peek = kg_call_peek(call), any_allow = 0, any_local = 0, all_ok = 1;
    size_t i;

    kg_call_stat_add(call, KG_STAT_LIMIT_BACKEND_ERRORS, 1);
    for (i = 0; i < n; i++) {
        struct limitconf *lc = insts[i];
        switch (lc->on_error) {
        case LC_ERR_ALLOW:
            res[i] = KG_RESULT_OK;
            any_allow = 1;
            break;
        case LC_ERR_LOCAL:
            res[i] = lc->local(lc, call, peek ? 0 : 1);
            any_local = 1;
            break;
        default:
            res[i] = peek ? KG_RESULT_OK : KG_RESULT_UNAVAILABLE;
            break;
        }
        if (res[i] != KG_RESULT_OK)
            all_ok = 0;
    }
    if (peek)
        return;
    if (!all_ok) {
        for (i = 0; i < n; i++) {
            struct limitconf *lc = insts[i];
            if (lc->on_error == LC_ERR_LOCAL && res[i] == KG_RESULT_OK)
                lc->local(lc, call, -1);
        }
        return;
    }
    if (any_allow)
        kg_call_stat_add(call, KG_STAT_LIMIT_FAIL_OPEN, 1);
    if (any_local)
        kg_call_stat_add(call, KG_STAT_LIMIT_FAIL_LOCAL, 1);
}

static void report(struct limitconf *lc, kg_call *call, int64_t count,
                   int64_t window, int64_t burst, const long long *v)
{
    /* v: admitted, remaining, reset, retry after */
    switch (lc->algo) {
    case LC_BUCKET:
        kg_call_limit_report(call, lc->name, burst, v[1], v[2], window, v[3]);
        break;
    case LC_CONCURRENCY:
        kg_call_limit_report(call, lc->name, count, v[1],
                             kg_call_now(call) / 1000000, 0, v[3]);
        break;
    default:
        kg_call_limit_report(call, lc->name, count, v[1], v[2], window, v[3]);
        break;
    }
}

/*
 * The Redis keys and (concurrency, a lease wanted) lease ids of a batch, as
 * long as the key id needs: pointers into one block, `stack` if it fits,
 * else the heap (the caller frees it when it is not `stack`).  NULL if
 * out of memory.
 */
static char *batch_bufs(void *const *insts, size_t n, kg_call *call,
                        const char *id, char *stack, size_t stacksz,
                        char **keys, size_t *keysz, char **leases,
                        size_t *leasesz)
{
    struct limitconf *lead = insts[0];
    size_t i, total = 0, idlen = strlen(id);
    char *mem, *p;

    for (i = 0; i < n; i++) {
        struct limitconf *lc = insts[i];
        keysz[i] = kgr_key_size(lead->redis, id, lc->name);
        leasesz[i] = lc->algo == LC_CONCURRENCY && kg_call_lease_wanted(call)
                         ? KG_LEASE_SIZE(idlen, strlen(lc->name)) : 1;
        total += keysz[i] + leasesz[i];
    }
    if ((mem = total <= stacksz ? stack : malloc(total)) == NULL)
        return NULL;
    for (p = mem, i = 0; i < n; i++) {
        keys[i] = p;
        leases[i] = p + keysz[i];
        leases[i][0] = '\0';
        p += keysz[i] + leasesz[i];
    }
    return mem;
}

/*
 * Hand out the leases the script took.  If one cannot be (out of
 * memory), give back everything the batch took, in Redis (and the leases
 * handed out so far with them), and answer unavailable: a lease is never
 * held that the caller was not given.
 */
static void batch_leases(void *const *insts, size_t n, kg_call *call,
                         char **leases, kg_result *res)
{
    const char *id = kg_call_subject(call);
    size_t i, added;

    for (added = 0; added < n; added++)
        if (leases[added][0] != '\0' && kg_call_lease_add(call, leases[added]) != KG_OK)
            break;
    if (added == n)
        return;
    for (i = 0; i < n; i++) {
        struct limitconf *lc = insts[i];
        if (lc->algo != LC_CONCURRENCY)
            kgr_undo(lc, call);
        else if (i < added)
            kg_call_lease_undo(call, lc->name);
        else
            kgr_release_lease(lc, id, lc->name, leases[i]);
        res[i] = KG_RESULT_UNAVAILABLE;
    }
}

static void batch_eval(void *const *insts, size_t n, kg_call *call,
                       kg_result *res, unsigned slot, char **keys,
                       char **leases, const size_t *leasesz)
{
    struct limitconf *lead = insts[0];
    int peek = kg_call_peek(call), all_ok = 1;
    const char *argv[4 + MAX_BATCH * (1 + ARGS_PER)];
    size_t lens[4 + MAX_BATCH * (1 + ARGS_PER)];
    char nums[MAX_BATCH][4][24], algos[MAX_BATCH][2], nkeys[8], err[256];
    int64_t eff[MAX_BATCH][3];
    long long vals[MAX_BATCH][4];
    size_t i, argc, first_fail = n;
    redisReply *r;

    argc = 2;
    snprintf(nkeys, sizeof(nkeys), "%zu", n);
    argv[argc++] = nkeys;
    for (i = 0; i < n; i++)
        argv[argc++] = keys[i];
    argv[argc++] = peek ? "p" : "a";
    for (i = 0; i < n; i++) {
        struct limitconf *lc = insts[i];
        int64_t ttl = lc->ttl > 0 ? lc->ttl : kg_call_lease_ttl(call);
        limitconf_effective(lc, call, &eff[i][0], &eff[i][1], &eff[i][2]);
        algos[i][0] = (char)lc->algo;
        algos[i][1] = '\0';
        argv[argc++] = algos[i];
        snprintf(nums[i][0], sizeof(nums[i][0]), "%lld", (long long)eff[i][0]);
        snprintf(nums[i][1], sizeof(nums[i][1]), "%lld",
                 (long long)(eff[i][1] > 0 ? eff[i][1] : 1));
        snprintf(nums[i][2], sizeof(nums[i][2]), "%lld", (long long)eff[i][2]);
        snprintf(nums[i][3], sizeof(nums[i][3]), "%lld", (long long)ttl);
        argv[argc++] = nums[i][0];
        argv[argc++] = nums[i][1];
        argv[argc++] = nums[i][2];
        argv[argc++] = nums[i][3];
        if (leasesz[i] > 1 &&
            kg_call_lease_new(call, lc->name, leases[i], leasesz[i]) != KG_OK)
            return;
        argv[argc++] = leases[i];
    }
    for (i = 2; i < argc; i++)
        lens[i] = strlen(argv[i]);

    r = kgr_eval(lead->redis, slot, (int)argc, argv, lens, err, sizeof(err));
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 4 * n) {
        freeReplyObject(r);
        backend_error(insts, n, call, res);
        return;
    }
    for (i = 0; i < 4 * n; i++) {
        if (r->element[i]->type != REDIS_REPLY_INTEGER) {
            freeReplyObject(r);
            backend_error(insts, n, call, res);
            return;
        }
        vals[i / 4][i % 4] = r->element[i]->integer;
    }
    freeReplyObject(r);

    for (i = 0; i < n; i++) {
        res[i] = peek || vals[i][0] ? KG_RESULT_OK : KG_RESULT_FAIL;
        if (res[i] != KG_RESULT_OK) {
            all_ok = 0;
            if (first_fail == n)
                first_fail = i;
        }
    }
    /* The leases are held (the script took them all): hand out their ids. */
    if (all_ok && !peek) {
        batch_leases(insts, n, call, leases, res);
        if (res[0] == KG_RESULT_UNAVAILABLE)
            return;
    }
    /* Reports, the line that decided last (run_limit() reads it there). */
    for (i = 0; i < n; i++)
        if (i != first_fail)
            report(insts[i], call, eff[i][0], eff[i][1], eff[i][2], vals[i]);
    if (first_fail < n) {
        struct limitconf *lc = insts[first_fail];
        report(lc, call, eff[first_fail][0], eff[first_fail][1], eff[first_fail][2],
               vals[first_fail]);
        kg_call_deny(call, KG_CODE_RATE_LIMITED, deny_message(lc->algo));
    }
}

void kgr_batch(void *const *insts, size_t n, kg_call *call, kg_result *res)
{
    /* The account's id, or the key's (`per: key`): what the line counts
     * under (docs/policy.md "Accounts"), and the Cluster hash tag. */
    const char *id = kg_call_subject(call);
    char stack[4096], *mem, *keys[MAX_BATCH], *leases[MAX_BATCH];
    size_t keysz[MAX_BATCH], leasesz[MAX_BATCH], i;
    unsigned slot = 0, s;

    for (i = 0; i < n; i++)
        res[i] = KG_RESULT_UNAVAILABLE;
    if (id == NULL || n == 0 || n > MAX_BATCH)
        return;
    for (i = 0; i < n; i++)
        if (((struct limitconf *)insts[i])->magic != LIMITCONF_MAGIC)
            return;
    mem = batch_bufs(insts, n, call, id, stack, sizeof(stack), keys, keysz,
                     leases, leasesz);
    if (mem == NULL)
        return;
    for (i = 0; i < n; i++) {
        struct limitconf *lc = insts[i];
        kgr_key(((struct limitconf *)insts[0])->redis, id, lc->name, lc->algo,
                keys[i], keysz[i], &s);
        if (i > 0 && s != slot)
            goto out;   /* cannot happen: one key id, one hash tag */
        slot = s;
    }
    batch_eval(insts, n, call, res, slot, keys, leases, leasesz);
out:
    if (mem != stack)
        free(mem);
}

void kgr_undo(struct limitconf *lc, kg_call *call)
{
    const kg_record *rec = kg_call_record(call);
    const char *argv[11];
    size_t lens[11], size;
    char buf[300], *key, num[4][24], algo[2], err[256];
    int64_t count, window, burst;
    unsigned slot;
    redisReply *r;
    int i;

    if (lc->algo == LC_CONCURRENCY) {
        /* The lease is in the decision: the core finds it and asks this
         * backend's releaser (or the memory state, for a local one). */
        kg_call_lease_undo(call, lc->name);
        return;
    }
    if (rec == NULL || kg_call_subject(call) == NULL)
        return;
    size = kgr_key_size(lc->redis, kg_call_subject(call), lc->name);
    if ((key = size <= sizeof(buf) ? buf : malloc(size)) == NULL)
        return;
    kgr_key(lc->redis, kg_call_subject(call), lc->name, lc->algo, key, size, &slot);
    limitconf_effective(lc, call, &count, &window, &burst);
    algo[0] = (char)lc->algo;
    algo[1] = '\0';
    snprintf(num[0], sizeof(num[0]), "%lld", (long long)count);
    snprintf(num[1], sizeof(num[1]), "%lld", (long long)(window > 0 ? window : 1));
    snprintf(num[2], sizeof(num[2]), "%lld", (long long)burst);
    snprintf(num[3], sizeof(num[3]), "0");
    argv[2] = "1";
    argv[3] = key;
    argv[4] = "u";
    argv[5] = algo;
    argv[6] = num[0];
    argv[7] = num[1];
    argv[8] = num[2];
    argv[9] = num[3];
    argv[10] = "";
    for (i = 2; i < 11; i++)
        lens[i] = strlen(argv[i]);
    r = kgr_eval(lc->redis, slot, 11, argv, lens, err, sizeof(err));
    if (r == NULL && lc->on_error == LC_ERR_LOCAL)
        lc->local(lc, call, -1);
    freeReplyObject(r);
    if (key != buf)
        free(key);
}
