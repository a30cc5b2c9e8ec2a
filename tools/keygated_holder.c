/*
 * keygated_holder.c - the policy keygated serves from, and its reload.
 *
 * A loaded kg_policy is immutable, so a reload builds a new one beside
 * it in the same kg_context (limiter state lives in the context, keyed
 * by key id and limit name, so nobody's counters reset) and swaps the
 * pointer (an atomic exchange; parsing, loading plugins and reading key
 * stores happen before it, beside the serving policy).
 *
 * A request takes the serving policy without a lock or a shared
 * counter: it names the policy in its thread's hazard slot (see
 * kgd_policy_get), and the old policy, once swapped out, waits on a list
 * until no slot names it.  The main thread empties that list
 * (kgd_holder_collect, on its 200 ms tick, after a reload and at
 * shutdown): freeing a policy is expensive (its key stores: 0.3 s for a
 * file of a million keys), and no request ever waits for it or sees a
 * policy freed under it.
 */
#include "config.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "keygated.h"

struct kgd_policy_ref {
    kg_policy *policy;
    struct kgd_policy_ref *next;   /* on the list of those let go of */
};

/*
 * A thread's hazard slot: the policy it is using, or NULL.  One cache
 * line each, so that a request writes only its own thread's line.
 */
/* --threads is 1..1024 per listener: every worker, and the main thread. */
#define MAX_SLOTS (KGD_MAX_LISTEN * 1024 + 8)
struct slot {
    _Atomic(kgd_policy_ref *) in_use;
    atomic_int taken;     /* the slot belongs to a live thread */
    unsigned depth;       /* nested kgd_policy_get()s (its thread's only) */
} __attribute__((aligned(64)));

static struct slot slots[MAX_SLOTS];
static atomic_uint nslots;   /* slots[0..nslots) may be in use */

static struct {
    _Atomic(kgd_policy_ref *) cur;
    kg_context *ctx;
    char *config;        /* NULL: the embedded default */
    pthread_mutex_t reload_lock;   /* one reload at a time */
    pthread_mutex_t lock;          /* the list below */
    kgd_policy_ref *dead;          /* let go of: to free when unused */
    pthread_key_t key;             /* gives a slot back at thread exit */
    int have_key;
    pthread_once_t once;
} H = { NULL, NULL, NULL, PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER,
        NULL, 0, 0, PTHREAD_ONCE_INIT };

static __thread struct slot *tl_slot;

static void slot_release(void *p)
{
    struct slot *s = p;
    atomic_store(&s->in_use, NULL);
    s->depth = 0;
    atomic_store(&s->taken, 0);
}

static void key_init(void)
{
    H.have_key = pthread_key_create(&H.key, slot_release) == 0;
}

/* This thread's slot (claimed on its first request: a free one, given
 * back by a thread that ended), or NULL when MAX_SLOTS live threads
 * hold them all. */
static struct slot *my_slot(void)
{
    unsigned i;

    if (tl_slot != NULL)
        return tl_slot;
    pthread_once(&H.once, key_init);
    for (i = 0; i < MAX_SLOTS; i++) {
        int expect = 0;
        unsigned n;
        if (!atomic_compare_exchange_strong(&slots[i].taken, &expect, 1))
            continue;
        /* Counted before the slot is first used, so that a collector
         * that could see it in use scans it. */
        n = atomic_load(&nslots);
        while (n <= i && !atomic_compare_exchange_weak(&nslots, &n, i + 1))
            ;
        tl_slot = &slots[i];
        if (H.have_key)
            pthread_setspecific(H.key, tl_slot);
        return tl_slot;
    }
    return NULL;
}

static kg_error load(kg_policy **p_r, kg_diag *diag)
{
    if (H.config != NULL)
        return kg_policy_load_file(H.ctx, H.config, p_r, diag);
    return kg_policy_load_string(H.ctx, kgd_default_policy,
                                 "<embedded conf/keygate.yaml>", p_r, diag);
}

static kgd_policy_ref *wrap(kg_policy *p)
{
    kgd_policy_ref *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->policy = p;
    return r;
}

int kgd_holder_init(kg_context *ctx, const char *config, kg_diag *diag)
{
    kgd_policy_ref *nr;
    kg_policy *p = NULL;
    kg_error e;

    H.ctx = ctx;
    free(H.config);
    H.config = config ? strdup(config) : NULL;
    if (config != NULL && H.config == NULL)
        return -1;
    e = load(&p, diag);
    if (e != KG_OK)
        return -1;
    nr = wrap(p);
    if (nr == NULL) {
        kg_policy_free(p);
        return -1;
    }
    atomic_store(&H.cur, nr);
    return 0;
}

/*
 * Hazard pointers: a thread announces the policy it is about to use in
 * its own slot, then checks that it is still the serving one (if a
 * reload swapped it in between, it tries again).  The collector frees a
 * let-go-of policy only when no slot names it, so once it has been
 * swapped out and every thread's slot has moved on, it is unused.  All
 * of it sequentially consistent: the announce is ordered before the
 * re-read, the swap before the collector's scan.  No lock, no shared
 * counter: a request writes only its own slot's cache line.
 */
kgd_policy_ref *kgd_policy_get(void)
{
    struct slot *s = my_slot();
    kgd_policy_ref *r;

    if (s == NULL)
        return NULL;   /* more live threads than slots: 503 */
    if (s->depth > 0) {
        s->depth++;
        return atomic_load(&s->in_use);
    }
    r = atomic_load(&H.cur);
    for (;;) {
        kgd_policy_ref *again;
        atomic_store(&s->in_use, r);
        again = atomic_load(&H.cur);
        if (again == r)
            break;
        r = again;
    }
    if (r == NULL) {
        atomic_store(&s->in_use, NULL);
        return NULL;
    }
    s->depth = 1;
    return r;
}

const kg_policy *kgd_policy_of(const kgd_policy_ref *r)
{
    return r->policy;
}

void kgd_policy_put(kgd_policy_ref *r)
{
    struct slot *s = tl_slot;
    if (r == NULL || s == NULL || s->depth == 0)
        return;
    if (--s->depth == 0)
        atomic_store(&s->in_use, NULL);
}

static int in_use(const kgd_policy_ref *r)
{
    unsigned i, n = atomic_load(&nslots);
    for (i = 0; i < n && i < MAX_SLOTS; i++)
        if (atomic_load(&slots[i].in_use) == r)
            return 1;
    return 0;
}

/* Let go of r (swapped out): it waits on the list for kgd_holder_collect. */
static void retire(kgd_policy_ref *r)
{
    if (r == NULL)
        return;
    pthread_mutex_lock(&H.lock);
    r->next = H.dead;
    H.dead = r;
    pthread_mutex_unlock(&H.lock);
}

void kgd_holder_collect(void)
{
    kgd_policy_ref *r, *next, *keep = NULL, *gone = NULL;

    pthread_mutex_lock(&H.lock);
    for (r = H.dead; r != NULL; r = next) {
        next = r->next;
        if (in_use(r)) {
            r->next = keep;
            keep = r;
        } else {
            r->next = gone;
            gone = r;
        }
    }
    H.dead = keep;
    pthread_mutex_unlock(&H.lock);
    /* Freed outside the lock (a key store of a million keys: 0.3 s). */
    for (r = gone; r != NULL; r = next) {
        next = r->next;
        kg_policy_free(r->policy);
        free(r);
    }
}

size_t kgd_holder_pending(void)
{
    size_t n = 0;
    kgd_policy_ref *r;
    pthread_mutex_lock(&H.lock);
    for (r = H.dead; r != NULL; r = r->next)
        n++;
    pthread_mutex_unlock(&H.lock);
    return n;
}

int kgd_holder_reload(kg_diag *diag)
{
    kg_policy *p = NULL;
    kgd_policy_ref *nr, *old;
    kg_error e;
    int rc = -1;

    pthread_mutex_lock(&H.reload_lock);
    e = load(&p, diag);
    if (e != KG_OK) {
        /* The old policy keeps serving; its key files may still have
         * changed (a key revoked by hand), so re-read them. */
        kgd_policy_ref *cur = kgd_policy_get();
        if (cur != NULL) {
            kg_diag d2;
            if (kg_policy_reload_stores(cur->policy, &d2) != KG_OK) {
                char buf[1500];
                kgd_log_msg("reloading the key stores of the serving policy "
                            "failed too: %s", kg_diag_format(&d2, buf, sizeof(buf)));
            }
            kgd_policy_put(cur);
        }
        goto out;
    }
    nr = wrap(p);
    if (nr == NULL) {
        kg_policy_free(p);
        snprintf(diag->message, sizeof(diag->message), "out of memory");
        goto out;
    }
    old = atomic_exchange(&H.cur, nr);
    /* What was counted so far goes to the old policy's usage store,
     * while it is still there (docs/usage.md). */
    if (old != NULL)
        kgd_usage_flush_policy(old->policy, "at reload");
    retire(old);
    rc = 0;
out:
    pthread_mutex_unlock(&H.reload_lock);
    return rc;
}

void kgd_holder_shutdown(void)
{
    kgd_policy_ref *cur = atomic_exchange(&H.cur, NULL);
    /* After the last request: every decision counted is written. */
    if (cur != NULL)
        kgd_usage_flush_policy(cur->policy, "at exit");
    retire(cur);
    kgd_holder_collect();
    free(H.config);
    H.config = NULL;
}

const char *kgd_holder_source(void)
{
    return H.config ? H.config : "<embedded conf/keygate.yaml>";
}
