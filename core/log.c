/*
 * log.c - messages for the operator: why a backend failed, passed to the
 * embedder's log function (kg_context_set_log) or to stderr.
 *
 * A backend that is down fails every request; its reason is said once
 * per interval, not once per request, so that an outage under load does
 * not flood the log.  The state is a small table per context, by backend
 * name, under a mutex: only failing requests come here.  When the table
 * is full the backend that spoke longest ago gives up its place (it may
 * then speak again sooner, never later).
 */
#include "internal.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_INTERVAL_US (10 * 1000000LL)

void kg__log_init(struct kg__log *l)
{
    memset(l, 0, sizeof(*l));
    pthread_mutex_init(&l->lock, NULL);
    l->interval_us = DEFAULT_INTERVAL_US;
}

void kg__log_destroy(struct kg__log *l)
{
    pthread_mutex_destroy(&l->lock);
}

void kg_context_set_log(kg_context *c, kg_log_fn fn, void *userdata)
{
    if (c == NULL)
        return;
    pthread_mutex_lock(&c->log.lock);
    c->log.fn = fn;
    c->log.userdata = fn ? userdata : NULL;
    pthread_mutex_unlock(&c->log.lock);
}

void kg_context_set_log_interval(kg_context *c, int64_t seconds)
{
    if (c == NULL)
        return;
    pthread_mutex_lock(&c->log.lock);
    c->log.interval_us = seconds > 0 ? seconds * 1000000 : DEFAULT_INTERVAL_US;
    pthread_mutex_unlock(&c->log.lock);
}

/*
 * May `backend` speak at `now`?  Returns 1 and the count held back
 * since it last spoke (*held_r), or 0 (and counts this one).  The lock
 * is held.
 */
static int may_speak(struct kg__log *l, const char *backend, int64_t now,
                     uint64_t *held_r)
{
    struct kg__logslot *s = NULL;
    size_t i, oldest = 0;

    for (i = 0; i < l->n; i++) {
        if (strncmp(l->slot[i].name, backend, sizeof(s->name) - 1) == 0) {
            s = &l->slot[i];
            break;
        }
        if (l->slot[i].last_us < l->slot[oldest].last_us)
            oldest = i;
    }
    if (s == NULL) {
        s = &l->slot[l->n < KG__LOG_BACKENDS ? l->n++ : oldest];
        snprintf(s->name, sizeof(s->name), "%s", backend);
        s->held = 0;
    } else if (now - s->last_us < l->interval_us && now >= s->last_us) {
        /* (A clock set back never silences a backend for good.) */
        s->held++;
        return 0;
    }
    *held_r = s->held;
    s->held = 0;
    s->last_us = now;
    return 1;
}

void kg_context_log_backend(kg_context *c, const char *backend,
                            const char *fmt, ...)
{
    char line[1280];
    uint64_t held = 0;
    int64_t now, interval;
    kg_log_fn fn;
    void *ud;
    va_list ap;
    size_t n, i;
    int ok;

    if (c == NULL || backend == NULL || fmt == NULL)
        return;
    now = kg_context_now(c);
    pthread_mutex_lock(&c->log.lock);
    ok = may_speak(&c->log, backend, now, &held);
    fn = c->log.fn;
    ud = c->log.userdata;
    interval = c->log.interval_us;
    pthread_mutex_unlock(&c->log.lock);
    if (!ok)
        return;

    n = (size_t)snprintf(line, sizeof(line), "%s: ", backend);
    if (n >= sizeof(line))
        n = sizeof(line) - 1;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof(line) - n, fmt, ap);
    va_end(ap);
    n = strlen(line);
    if (held > 0)
        snprintf(line + n, sizeof(line) - n, " (and %llu more in the last "
                 "%lld s)", (unsigned long long)held,
                 (long long)(interval / 1000000));
    /* One line: what a server put in its diagnostic cannot start another. */
    for (i = 0; line[i] != '\0'; i++)
        if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
            line[i] = ' ';
    if (fn != NULL) {
        fn(ud, line);
    } else {
        char out[1300];
        int m = snprintf(out, sizeof(out), "keygate: %s\n", line);
        if (m > 0 && write(STDERR_FILENO, out, (size_t)m < sizeof(out) ? (size_t)m
                                                          : sizeof(out) - 1) < 0) {
            /* stderr gone: nowhere else to say it */
        }
    }
}
