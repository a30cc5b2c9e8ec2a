/*
 * decision.c - the outcome of a check and its HTTP rendering, the same
 * for every front end (keygated, the CLI, embedders):
 *
 *   status + code (docs/architecture.md's table), a JSON body for denials,
 *   WWW-Authenticate on 401, X-RateLimit-{Limit,Remaining,Reset} for the
 *   limit nearest exhaustion, the IETF RateLimit-Policy / RateLimit fields
 *   for every limit, and Retry-After on 429.
 *
 * Headers and body are rendered on first use, so a caller that only
 * wants allowed/denied pays for none of it, into storage the decision
 * owns (render below).
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <sched.h>
#include <string.h>
#include <strings.h>

/*
 * Each thread keeps the last KG__SPARES decisions it freed for its next
 * checks: a decision is 3 KB, past the sizes malloc serves from its
 * per-thread cache, and a front end frees one per request on the thread
 * that made it (nginx's module several in a row, as their requests end).
 * Not under AddressSanitizer, so that a use after kg_decision_free() is
 * still caught.
 */
#define KG__SPARE (!KG__SANITIZED)

kg_decision *kg__decision_new(void)
{
    kg_decision *d = NULL;
#if KG__SPARE
    kg__thread *t = kg__thread_get();
    if (t != NULL && t->nspare > 0)
        d = t->spare[--t->nspare];
#endif
    /* Not calloc: a check writes a few hundred bytes of the 3 KB; the
     * arrays are read only below their counts. */
    if (d == NULL)
        d = malloc(sizeof(*d));
    if (d != NULL) {
        memset(d, 0, offsetof(kg_decision, message));
        d->status = 200;
        d->denied_limit = -1;
        d->message[0] = d->decided_by[0] = d->realm[0] = '\0';
        d->lease = d->lease_inl;
        d->lease_cap = sizeof(d->lease_inl);
        d->lease_inl[0] = '\0';
    }
    return d;
}

void kg__decision_lease_forget(kg_decision *d, uint64_t id)
{
    int i;
    for (i = 0; i < d->nlh; i++) {
        if (d->lh[i].id == id) {
            d->lh[i] = d->lh[--d->nlh];
            return;
        }
    }
}

/* The slow path of kg__decision_lease_room(): a list of at least `need`
 * bytes on the heap; 0, or -1 if out of memory. */
static int lease_grow(kg_decision *d, size_t need)
{
    size_t cap = 2 * d->lease_cap;
    char *p;

    while (cap < need)
        cap *= 2;
    if (d->lease == d->lease_inl) {
        if ((p = malloc(cap)) != NULL)
            memcpy(p, d->lease, d->lease_len + 1);
    } else {
        p = realloc(d->lease, cap);
    }
    if (p == NULL)
        return -1;
    d->lease = p;
    d->lease_cap = cap;
    return 0;
}

char *kg__decision_lease_room(kg_decision *d, size_t len)
{
    size_t need = d->lease_len + len + 2;   /* a comma, a NUL */
    if (need > d->lease_cap && lease_grow(d, need) != 0)
        return NULL;
    return d->lease + d->lease_len + (d->lease_len > 0);
}

void kg__decision_lease_commit(kg_decision *d, size_t len)
{
    if (d->lease_len > 0)
        d->lease[d->lease_len++] = ',';
    d->lease_len += len;
    d->lease[d->lease_len] = '\0';
    d->nlease++;
}

void kg__decision_lease_remove(kg_decision *d, char *p, size_t len)
{
    char *end = d->lease + d->lease_len;
    if (p + len < end)
        len++;                  /* its comma: the next one moves up */
    else if (p > d->lease)
        p--, len++;             /* the last: the comma before it goes */
    memmove(p, p + len, (size_t)(end - (p + len)) + 1);
    d->lease_len -= len;
    d->nlease--;
}

void kg__decision_deny(kg_decision *d, kg_code code, const char *message,
                       const char *decided_by)
{
    d->code = code;
    d->status = kg_code_status(code);
    snprintf(d->message, sizeof(d->message), "%s", message ? message : "");
    if (decided_by != NULL)
        snprintf(d->decided_by, sizeof(d->decided_by), "%s", decided_by);
}

void kg_decision_free(kg_decision *d)
{
    if (d == NULL)
        return;
    if (d->hmem != NULL && d->hmem != d->htext)
        free(d->hmem);
    if (d->lease != d->lease_inl)
        free(d->lease);
    kg_record_unref(d->record);
#if KG__SPARE
    {
        kg__thread *t = kg__thread_get();
        if (t != NULL && t->nspare < KG__SPARES) {
            t->spare[t->nspare++] = d;
            return;
        }
    }
#endif
    free(d);
}

static const struct kg__limit_report *nearest(const kg_decision *d)
{
    const struct kg__limit_report *best = NULL;
    size_t i;

    if (d->denied_limit >= 0)
        return &d->limits[d->denied_limit];
    for (i = 0; i < d->nlimits; i++) {
        const struct kg__limit_report *r = &d->limits[i];
        /* X-RateLimit-* describe a rate; a concurrency limit (no window)
         * is only chosen when there is nothing else (or when it denied). */
        if (best != NULL && best->window > 0 && r->window == 0)
            continue;
        if (best != NULL && best->window == 0 && r->window > 0) {
            best = r;
            continue;
        }
        /* Compare remaining/limit without division: fewest left, relatively. */
        if (best == NULL ||
            r->remaining * (best->limit ? best->limit : 1) <
                best->remaining * (r->limit ? r->limit : 1))
            best = r;
    }
    return best;
}

/*
 * The headers a decision renders, in order: each writes its value at
 * the end of b and returns 1, or writes nothing and returns 0 when it
 * does not apply; `arg` tells apart the headers one function writes.
 * Adding a header is a line in `headers` below.
 */
static int www_authenticate(const kg_decision *d, kg__buf *b, int arg)
{
    (void)arg;
    if (d->status != 401)
        return 0;
    /* No credential at all: the challenge alone (RFC 6750 3.1); one
     * that was presented and refused: invalid_token.  Told by the
     * credential stage (no_key), not by the wording of the message. */
    kg__buf_adds(b, d->scheme[0] ? d->scheme : "Bearer");
    kg__buf_adds(b, " realm=\"");
    kg__buf_adds(b, d->realm);
    if (d->code == KG_CODE_UNAUTHORIZED && d->no_key)
        kg__buf_adds(b, "\"");
    else
        kg__buf_adds(b, "\", error=\"invalid_token\"");
    return 1;
}

enum { RL_LIMIT, RL_REMAINING, RL_RESET };

/* X-RateLimit-Limit, -Remaining, -Reset: the limit nearest exhaustion. */
static int x_ratelimit(const kg_decision *d, kg__buf *b, int arg)
{
    const struct kg__limit_report *n = d->nearest;
    if (n == NULL)
        return 0;
    kg__buf_addi(b, arg == RL_LIMIT ? n->limit
                    : arg == RL_REMAINING ? n->remaining : n->reset);
    return 1;
}

/* The thread's last RateLimit-Policy, if it was rendered from the same
 * limits as d's (names, quotas, windows): the value is the same on every
 * check of a plan, and comparing costs less than formatting. */
static kg__thread *policy_kept(const kg_decision *d)
{
    kg__thread *t = kg__thread_get();
    size_t i;

    if (t == NULL || t->policy.n != d->nlimits)
        return NULL;
    for (i = 0; i < d->nlimits; i++) {
        const struct kg__limit_report *r = &d->limits[i];
        if (r->limit != t->policy.l[i].limit ||
            r->window != t->policy.l[i].window ||
            strcmp(r->name, t->policy.l[i].name) != 0)
            return NULL;
    }
    return t;
}

static void policy_keep(const kg_decision *d, const char *text, size_t len)
{
    kg__thread *t = kg__thread_get();
    size_t i;

    if (t == NULL)
        return;
    t->policy.n = 0;
    if (d->nlimits > sizeof(t->policy.l) / sizeof(t->policy.l[0]) ||
        len >= sizeof(t->policy.text))
        return;
    for (i = 0; i < d->nlimits; i++) {
        _Static_assert(sizeof(t->policy.l[0].name) == sizeof(d->limits[0].name),
                       "names of the same size");
        memcpy(t->policy.l[i].name, d->limits[i].name,
               strlen(d->limits[i].name) + 1);
        t->policy.l[i].limit = d->limits[i].limit;
        t->policy.l[i].window = d->limits[i].window;
    }
    memcpy(t->policy.text, text, len);
    t->policy.len = len;
    t->policy.n = d->nlimits;
}

/* RateLimit-Policy ("name";q=N;w=S, ...: arg 1) or RateLimit
 * ("name";r=N;t=S, ...: arg 0), every limit. */
static int ietf_list(const kg_decision *d, kg__buf *b, int policy)
{
    size_t i, start = b->len;
    kg__thread *t;

    if (d->nlimits == 0)
        return 0;
    if (policy && (t = policy_kept(d)) != NULL) {
        kg__buf_add(b, t->policy.text, t->policy.len);
        return 1;
    }
    for (i = 0; i < d->nlimits; i++) {
        const struct kg__limit_report *r = &d->limits[i];
        kg__buf_adds(b, i ? ", \"" : "\"");
        kg__buf_adds(b, r->name);
        kg__buf_adds(b, policy ? "\";q=" : "\";r=");
        kg__buf_addi(b, policy ? r->limit : r->remaining);
        if (r->window > 0) {
            kg__buf_adds(b, policy ? ";w=" : ";t=");
            kg__buf_addi(b, policy ? r->window : r->reset_in);
        }
    }
    if (policy && !b->oom)
        policy_keep(d, b->p + start, b->len - start);
    return 1;
}

static int retry_after(const kg_decision *d, kg__buf *b, int arg)
{
    int64_t ra = 1;
    (void)arg;
    if (d->code != KG_CODE_RATE_LIMITED)
        return 0;
    if (d->denied_limit >= 0 && d->limits[d->denied_limit].retry_after > 0)
        ra = d->limits[d->denied_limit].retry_after;
    kg__buf_addi(b, ra);
    return 1;
}

static const struct {
    const char *name;
    int (*value)(const kg_decision *d, kg__buf *b, int arg);
    int arg;
} headers[] = {
    { "WWW-Authenticate", www_authenticate, 0 },
    { "X-RateLimit-Limit", x_ratelimit, RL_LIMIT },
    { "X-RateLimit-Remaining", x_ratelimit, RL_REMAINING },
    { "X-RateLimit-Reset", x_ratelimit, RL_RESET },
    { "RateLimit-Policy", ietf_list, 1 },
    { "RateLimit", ietf_list, 0 },
    { "Retry-After", retry_after, 0 },
};

/*
 * Headers and body into the decision's own storage (htext; the heap
 * only past its 1 KB), integers without printf: no allocation for a
 * usual decision.  `essential`: only the headers a denial must never
 * lose (WWW-Authenticate, Retry-After), which always fit in htext: the
 * second pass when the first ran out of memory.  Returns 0, or -1 out of
 * memory (nothing kept).
 */
static int render_pass(kg_decision *d, int essential)
{
    kg__buf b;
    size_t i;

    d->nheaders = 0;
    d->body_off = 0;
    d->nearest = d->nlimits > 0 ? nearest(d) : NULL;   /* for 3 headers */
    kg__buf_init_inline(&b, d->htext, sizeof(d->htext));
    for (i = 0; i < sizeof(headers) / sizeof(headers[0]) &&
                d->nheaders < KG__MAX_HEADERS; i++) {
        size_t start = b.len;
        if (essential && headers[i].value != www_authenticate &&
            headers[i].value != retry_after)
            continue;
        if (!headers[i].value(d, &b, headers[i].arg))
            continue;
        kg__buf_add(&b, "", 1);   /* the value's NUL */
        d->hname[d->nheaders] = headers[i].name;
        d->hvoff[d->nheaders] = start;
        d->nheaders++;
    }
    if (d->code != KG_CODE_NONE && !essential) {
        d->body_off = b.len + 1;
        kg__buf_adds(&b, "{\"error\":{\"code\":");
        kg__buf_json_str(&b, kg_code_name(d->code));
        kg__buf_adds(&b, ",\"message\":");
        kg__buf_json_str(&b, d->message);
        kg__buf_adds(&b, "}}");
    }
    if (b.oom) {
        kg__buf_free(&b);
        d->nheaders = 0;
        d->body_off = 0;
        return -1;
    }
    d->hmem = b.p;
    return 0;
}

/*
 * Rendered on first use, once: the getters take a const decision and
 * may be called from several threads at once, so one thread renders
 * (0 -> 1) while the others wait for it (2), and all read the same
 * result.
 */
static void render(const kg_decision *cd)
{
    kg_decision *d = (kg_decision *)cd;
    int expect = 0;

    if (__atomic_load_n(&d->rendered, __ATOMIC_ACQUIRE) == 2)
        return;
    if (__atomic_compare_exchange_n(&d->rendered, &expect, 1, 0,
                                    __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
        if (render_pass(d, 0) != 0)
            (void)render_pass(d, 1);
        __atomic_store_n(&d->rendered, 2, __ATOMIC_RELEASE);
        return;
    }
    while (__atomic_load_n(&d->rendered, __ATOMIC_ACQUIRE) != 2)
        sched_yield();
}

int kg_decision_allowed(const kg_decision *d) { return d->code == KG_CODE_NONE; }
int kg_decision_status(const kg_decision *d) { return d->status; }
kg_code kg_decision_code(const kg_decision *d) { return d->code; }
const char *kg_decision_message(const kg_decision *d) { return d->message; }
const char *kg_decision_key_id(const kg_decision *d) { return d->record ? d->record->id : NULL; }
const char *kg_decision_account_id(const kg_decision *d)
{
    return d->record ? d->record->account_id : NULL;
}
const char *kg_decision_account_external_id(const kg_decision *d)
{
    return d->record && d->record->account ? d->record->account->external_id : NULL;
}
const char *kg_decision_account_metadata(const kg_decision *d)
{
    return d->record && d->record->account ? d->record->account->metadata : NULL;
}
const char *kg_decision_key_prefix(const kg_decision *d) { return d->record ? d->record->prefix : NULL; }
const char *kg_decision_key_name(const kg_decision *d) { return d->record ? d->record->name : NULL; }
const char *kg_decision_plan(const kg_decision *d) { return d->plan; }
int kg_decision_priority(const kg_decision *d) { return d->priority; }
const char *kg_decision_decided_by(const kg_decision *d) { return d->decided_by; }
const char *kg_decision_lease(const kg_decision *d) { return d->lease_len ? d->lease : NULL; }

size_t kg_decision_header_count(const kg_decision *d)
{
    render(d);
    return d->nheaders;
}

kg_error kg_decision_header(const kg_decision *d, size_t i,
                            const char **name_r, const char **value_r)
{
    render(d);
    if (i >= d->nheaders)
        return KG_ERR_NOT_FOUND;
    *name_r = d->hname[i];
    *value_r = d->hmem + d->hvoff[i];
    return KG_OK;
}

const char *kg_decision_header_value(const kg_decision *d, const char *name)
{
    size_t i;
    render(d);
    for (i = 0; i < d->nheaders; i++)
        if (strcasecmp(d->hname[i], name) == 0)
            return d->hmem + d->hvoff[i];
    return NULL;
}

const char *kg_decision_body(const kg_decision *d)
{
    render(d);
    return d->body_off ? d->hmem + d->body_off - 1 : "";
}

size_t kg_decision_limit_count(const kg_decision *d)
{
    return d->nlimits;
}

kg_error kg_decision_limit(const kg_decision *d, size_t i, const char **name_r,
                           int64_t *limit_r, int64_t *remaining_r,
                           int64_t *reset_r, int64_t *window_r)
{
    if (i >= d->nlimits)
        return KG_ERR_NOT_FOUND;
    if (name_r) *name_r = d->limits[i].name;
    if (limit_r) *limit_r = d->limits[i].limit;
    if (remaining_r) *remaining_r = d->limits[i].remaining;
    if (reset_r) *reset_r = d->limits[i].reset;
    if (window_r) *window_r = d->limits[i].window;
    return KG_OK;
}

char *kg_decision_record_json(const kg_decision *d)
{
    return d->record ? kg_record_to_json(d->record) : NULL;
}
