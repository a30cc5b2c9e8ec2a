/*
 * keygated_defer.c - the lookup threads: a small pool that runs the
 * checks whose key store would wait on the network, off libmicrohttpd's
 * worker threads.
 *
 * A worker thread serves many connections in turn; a check that waits
 * there on a directory that stopped answering held up every other
 * connection of that worker, cached keys included, for up to a
 * search_timeout.  So a worker first checks without waiting
 * (kg_request_set_nowait): the cache and the in-memory or local stores
 * answer as always, and only a check that would ask a remote store comes
 * here, its connection suspended meanwhile (keygated_check.c).  A hung
 * backend then holds a lookup thread, and the requests queued behind it
 * wait at most as long as the store's own timeouts let a lookup take;
 * the workers keep serving (docs/keygated.md, "Threads, and a backend
 * that hangs").
 *
 * A plain FIFO under one mutex: a job is a check that waits on the
 * network, so the queue's cost (a lock, a signal) is nothing beside it.
 */
#include "config.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "keygated.h"

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct kgd_job *head, *tail;
    int stopping;
    pthread_t *threads;
    unsigned n;
} P = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, NULL, 0,
        NULL, 0 };
/* Read on every check by the worker threads: no lock. */
static atomic_int on;

static void *lookup_thread(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&P.mu);
    for (;;) {
        struct kgd_job *j;
        int cancelled;
        while (P.head == NULL && !P.stopping)
            pthread_cond_wait(&P.cv, &P.mu);
        if (P.head == NULL)
            break;   /* stopping, and nothing left */
        j = P.head;
        P.head = j->next;
        if (P.head == NULL)
            P.tail = NULL;
        cancelled = P.stopping;
        pthread_mutex_unlock(&P.mu);
        j->next = NULL;
        j->run(j, cancelled);
        pthread_mutex_lock(&P.mu);
    }
    pthread_mutex_unlock(&P.mu);
    return NULL;
}

int kgd_defer_start(unsigned n)
{
    unsigned i;

    if (n == 0)
        return 0;
    P.threads = calloc(n, sizeof(*P.threads));
    if (P.threads == NULL) {
        kgd_log_msg("out of memory for %u lookup threads", n);
        return -1;
    }
    P.stopping = 0;
    for (i = 0; i < n; i++) {
        if (pthread_create(&P.threads[i], NULL, lookup_thread, NULL) != 0) {
            kgd_log_msg("cannot start lookup thread %u of %u", i + 1, n);
            P.n = i;
            kgd_defer_stop();
            return -1;
        }
    }
    P.n = n;
    atomic_store(&on, 1);
    return 0;
}

int kgd_defer_on(void)
{
    return atomic_load_explicit(&on, memory_order_relaxed);
}

int kgd_defer_submit(struct kgd_job *job, void (*admitted)(void *arg),
                     void *arg)
{
    int ok;

    pthread_mutex_lock(&P.mu);
    ok = P.n > 0 && !P.stopping;
    if (ok) {
        admitted(arg);
        job->next = NULL;
        if (P.tail != NULL)
            P.tail->next = job;
        else
            P.head = job;
        P.tail = job;
        pthread_cond_signal(&P.cv);
    }
    pthread_mutex_unlock(&P.mu);
    return ok ? 0 : -1;
}

void kgd_defer_stop(void)
{
    unsigned i;

    atomic_store(&on, 0);
    pthread_mutex_lock(&P.mu);
    P.stopping = 1;
    pthread_cond_broadcast(&P.cv);
    pthread_mutex_unlock(&P.mu);
    for (i = 0; i < P.n; i++)
        pthread_join(P.threads[i], NULL);
    free(P.threads);
    P.threads = NULL;
    P.n = 0;
}
