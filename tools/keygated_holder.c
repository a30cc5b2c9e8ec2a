/*
 * keygated_holder.c - the policy keygated serves from, and its reload.
 *
 * A loaded kg_policy is immutable, so a reload builds a new one beside
 * it in the same kg_context (limiter state lives in the context, keyed
 * by key id and limit name, so nobody's counters reset) and swaps the
 * pointer.  Each request holds a reference on the policy it started
 * with; the old policy is freed by whoever drops the last reference, so
 * a request never sees a policy freed under it and none is dropped.
 *
 * The swap itself is a pointer exchange under a mutex held for a few
 * instructions; the expensive part (parsing, loading plugins, reading
 * key stores) happens outside it.
 *
 * Freeing an old policy is expensive too (its key stores: 0.3 s for a
 * file of a million keys), and the last reference is often a request's:
 * so the policy goes to a list that the main thread empties
 * (kgd_holder_collect, on its 200 ms tick, after a reload and at
 * shutdown), and no request waits for it.
 */
#include "config.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "keygated.h"

struct kgd_policy_ref {
    kg_policy *policy;
    atomic_long refs;
    struct kgd_policy_ref *next;   /* on the list of those to free */
};

static struct {
    pthread_mutex_t lock;
    kgd_policy_ref *cur;
    kg_context *ctx;
    char *config;        /* NULL: the embedded default */
    pthread_mutex_t reload_lock;   /* one reload at a time */
    kgd_policy_ref *dead;          /* no reference left: to free (under lock) */
} H = { PTHREAD_MUTEX_INITIALIZER, NULL, NULL, NULL, PTHREAD_MUTEX_INITIALIZER, NULL };

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
    atomic_init(&r->refs, 1);   /* the holder's own reference */
    return r;
}

int kgd_holder_init(kg_context *ctx, const char *config, kg_diag *diag)
{
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
    H.cur = wrap(p);
    if (H.cur == NULL) {
        kg_policy_free(p);
        return -1;
    }
    return 0;
}

kgd_policy_ref *kgd_policy_get(void)
{
    kgd_policy_ref *r;
    pthread_mutex_lock(&H.lock);
    r = H.cur;
    if (r != NULL)
        atomic_fetch_add_explicit(&r->refs, 1, memory_order_relaxed);
    pthread_mutex_unlock(&H.lock);
    return r;
}

const kg_policy *kgd_policy_of(const kgd_policy_ref *r)
{
    return r->policy;
}

void kgd_policy_put(kgd_policy_ref *r)
{
    if (r == NULL)
        return;
    if (atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) == 1) {
        pthread_mutex_lock(&H.lock);
        r->next = H.dead;
        H.dead = r;
        pthread_mutex_unlock(&H.lock);
    }
}

void kgd_holder_collect(void)
{
    kgd_policy_ref *r, *next;
    pthread_mutex_lock(&H.lock);
    r = H.dead;
    H.dead = NULL;
    pthread_mutex_unlock(&H.lock);
    for (; r != NULL; r = next) {
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
    pthread_mutex_lock(&H.lock);
    old = H.cur;
    H.cur = nr;
    pthread_mutex_unlock(&H.lock);
    kgd_policy_put(old);
    rc = 0;
out:
    pthread_mutex_unlock(&H.reload_lock);
    return rc;
}

void kgd_holder_shutdown(void)
{
    kgd_policy_ref *old;
    pthread_mutex_lock(&H.lock);
    old = H.cur;
    H.cur = NULL;
    pthread_mutex_unlock(&H.lock);
    kgd_policy_put(old);
    kgd_holder_collect();
    free(H.config);
    H.config = NULL;
}

const char *kgd_holder_source(void)
{
    return H.config ? H.config : "<embedded conf/keygate.yaml>";
}
