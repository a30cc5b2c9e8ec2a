/*
 * context.c - the process-wide handle: loaded plugins, the memory
 * limiter state, the clock and the operator's log (log.c).  Policies come and go; the context stays.
 */
#include "internal.h"
#include "alerts_int.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static int64_t clock_us(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t real_clock(void *unused)
{
    (void)unused;
    return clock_us(CLOCK_REALTIME);
}

kg_error kg_context_new(kg_context **ctx_r)
{
    kg_context *c;
    kg_error e;

    if (ctx_r == NULL)
        return KG_ERR_INVALID;
    *ctx_r = NULL;
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return KG_ERR_NOMEM;
    c->clock = real_clock;
    for (int i = 0; i < KG_STAT__LAST; i++)
        atomic_init(&c->stats[i], 0);
    pthread_rwlock_init(&c->rel_lock, NULL);
    kg__log_init(&c->log);
    if ((e = kg__loader_new(&c->loader)) != KG_OK ||
        (e = kg__limits_new(&c->limits)) != KG_OK ||
        (e = kg__usage_new(&c->usage)) != KG_OK ||
        (e = kg__quota_watch_new(c)) != KG_OK) {
        kg_context_free(c);
        return e;
    }
    *ctx_r = c;
    return KG_OK;
}

void kg_context_free(kg_context *c)
{
    if (c == NULL)
        return;
    kg__shm_close(kg__ctx_shm(c));
    kg__usage_free(c->usage);
    kg__limits_free(c->limits);
    kg__quota_watch_free(c);
    kg__loader_free(c->loader);
    pthread_rwlock_destroy(&c->rel_lock);
    kg__log_destroy(&c->log);
    free(c->releasers);
    free(c);
}

void kg_context_set_clock(kg_context *c, kg_clock_fn fn, void *userdata)
{
    c->clock = fn ? fn : real_clock;
    c->clock_userdata = fn ? userdata : NULL;
}

int64_t kg_context_now(const kg_context *c)
{
    return c->clock(c->clock_userdata);
}

int64_t kg__context_now_coarse(const kg_context *c)
{
    if (c->clock != real_clock)
        return c->clock(c->clock_userdata);
    /* The time of the kernel's last tick (a few ms old at most), read
     * from the vDSO's page without the TSC: enough for what is kept in
     * seconds. */
    return clock_us(CLOCK_REALTIME_COARSE);
}

void kg_context_set_limit_capacity(kg_context *c, size_t max)
{
    kg__limits_set_capacity(c->limits, max ? max : 1000000);
}

size_t kg_context_limit_entries(const kg_context *c)
{
    struct kg__shm *m = kg__ctx_shm(c);
    return m != NULL ? kg__shm_entries(m) : kg__limits_entries(c->limits);
}

kg_error kg_context_set_state_file(kg_context *c, const char *path,
                                   uint64_t size, kg_diag *diag)
{
    char err[512];
    kg_error e;

    kg__diag_clear(diag);
    if (c == NULL || path == NULL || *path == '\0')
        return KG_ERR_INVALID;
    e = kg__shm_attach(c, path, size ? size : (uint64_t)256 << 20, err, sizeof(err));
    if (e != KG_OK)
        kg__diag_set(diag, path, 0, 0, "%s", err);
    return e;
}

uint64_t kg_context_stat(const kg_context *c, kg_stat stat)
{
    if (c == NULL || (int)stat < 0 || stat >= KG_STAT__LAST)
        return 0;
    if (stat == KG_STAT_LIMIT_SLOTS_AT_HOME)
        return kg__limits_at_home(c->limits);
    return atomic_load(&((kg_context *)c)->stats[stat]);
}

/*
 * Releasers: a remote limiter backend (Redis) holds leases that the
 * memory state does not know; kg_release() asks them in turn.  The list
 * changes only when policies are loaded or freed, and is read on every
 * release, hence the rwlock.
 */
kg_error kg_context_add_releaser(kg_context *c, kg_lease_release_fn fn,
                                 void *userdata)
{
    struct kg__releaser *n;
    if (c == NULL || fn == NULL)
        return KG_ERR_INVALID;
    pthread_rwlock_wrlock(&c->rel_lock);
    n = realloc(c->releasers, (c->nreleasers + 1) * sizeof(*n));
    if (n == NULL) {
        pthread_rwlock_unlock(&c->rel_lock);
        return KG_ERR_NOMEM;
    }
    n[c->nreleasers].fn = fn;
    n[c->nreleasers].userdata = userdata;
    c->releasers = n;
    c->nreleasers++;
    pthread_rwlock_unlock(&c->rel_lock);
    return KG_OK;
}

void kg_context_remove_releaser(kg_context *c, kg_lease_release_fn fn,
                                void *userdata)
{
    size_t i;
    if (c == NULL)
        return;
    pthread_rwlock_wrlock(&c->rel_lock);
    for (i = 0; i < c->nreleasers; i++) {
        if (c->releasers[i].fn == fn && c->releasers[i].userdata == userdata) {
            memmove(&c->releasers[i], &c->releasers[i + 1],
                    (c->nreleasers - i - 1) * sizeof(c->releasers[0]));
            c->nreleasers--;
            break;
        }
    }
    pthread_rwlock_unlock(&c->rel_lock);
}

kg_error kg__releasers_call(kg_context *c, const char *key_id,
                            const char *limit, const char *lease)
{
    kg_error rc = KG_ERR_NOT_FOUND;
    size_t i;
    pthread_rwlock_rdlock(&c->rel_lock);
    for (i = 0; i < c->nreleasers && rc != KG_OK; i++)
        rc = c->releasers[i].fn(c->releasers[i].userdata, key_id, limit, lease) == KG_OK
                 ? KG_OK : KG_ERR_NOT_FOUND;
    pthread_rwlock_unlock(&c->rel_lock);
    return rc;
}
