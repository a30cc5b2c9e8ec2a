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
 * wants allowed/denied pays for none of it.
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/*
 * Each thread keeps the last decision it freed for its next check: a
 * decision is 3 KB, past the sizes malloc serves from its per-thread
 * cache, and a front end frees one per request on the thread that made
 * it.  Not under AddressSanitizer, so that a use after
 * kg_decision_free() is still caught.
 */
#define KG__SPARE (!KG__SANITIZED)

kg_decision *kg__decision_new(void)
{
    kg_decision *d = NULL;
#if KG__SPARE
    kg__thread *t = kg__thread_get();
    if (t != NULL) {
        d = t->spare;
        t->spare = NULL;
    }
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
    size_t i;
    if (d == NULL)
        return;
    for (i = 0; i < d->nheaders; i++)
        free(d->hvalue[i]);
    free(d->body);
    if (d->lease != d->lease_inl)
        free(d->lease);
    kg_record_unref(d->record);
#if KG__SPARE
    {
        kg__thread *t = kg__thread_get();
        if (t != NULL && t->spare == NULL) {
            t->spare = d;
            return;
        }
    }
#endif
    free(d);
}

static void add_header(kg_decision *d, const char *name, char *value)
{
    if (value == NULL || d->nheaders >= KG__MAX_HEADERS) {
        free(value);
        return;
    }
    d->hname[d->nheaders] = name;
    d->hvalue[d->nheaders] = value;
    d->nheaders++;
}

/* v in decimal, malloc()ed; NULL out of memory. */
static char *num(int64_t v)
{
    kg__buf b;

    kg__buf_init(&b);
    kg__buf_addi(&b, v);
    return kg__buf_take(&b);
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

static void render(kg_decision *d)
{
    kg__buf b;
    size_t i;

    if (d->rendered)
        return;
    d->rendered = 1;
    if (d->status == 401) {
        if (d->code == KG_CODE_UNAUTHORIZED && d->record == NULL &&
            strstr(d->message, "missing") != NULL)
            add_header(d, "WWW-Authenticate",
                       kg__asprintf("Bearer realm=\"%s\"", d->realm));
        else
            add_header(d, "WWW-Authenticate",
                       kg__asprintf("Bearer realm=\"%s\", error=\"invalid_token\"",
                                    d->realm));
    }
    if (d->nlimits > 0) {
        const struct kg__limit_report *n = nearest(d);
        add_header(d, "X-RateLimit-Limit", num(n->limit));
        add_header(d, "X-RateLimit-Remaining", num(n->remaining));
        add_header(d, "X-RateLimit-Reset", num(n->reset));
        /* "name";q=LIMIT;w=WINDOW, ... and "name";r=LEFT;t=RESET_IN, ... */
        kg__buf_init(&b);
        for (i = 0; i < d->nlimits; i++) {
            const struct kg__limit_report *r = &d->limits[i];
            kg__buf_adds(&b, i ? ", \"" : "\"");
            kg__buf_adds(&b, r->name);
            kg__buf_adds(&b, "\";q=");
            kg__buf_addi(&b, r->limit);
            if (r->window > 0) {
                kg__buf_adds(&b, ";w=");
                kg__buf_addi(&b, r->window);
            }
        }
        add_header(d, "RateLimit-Policy", kg__buf_take(&b));
        kg__buf_init(&b);
        for (i = 0; i < d->nlimits; i++) {
            const struct kg__limit_report *r = &d->limits[i];
            kg__buf_adds(&b, i ? ", \"" : "\"");
            kg__buf_adds(&b, r->name);
            kg__buf_adds(&b, "\";r=");
            kg__buf_addi(&b, r->remaining);
            if (r->window > 0) {
                kg__buf_adds(&b, ";t=");
                kg__buf_addi(&b, r->reset_in);
            }
        }
        add_header(d, "RateLimit", kg__buf_take(&b));
    }
    if (d->code == KG_CODE_RATE_LIMITED) {
        int64_t ra = 1;
        if (d->denied_limit >= 0 && d->limits[d->denied_limit].retry_after > 0)
            ra = d->limits[d->denied_limit].retry_after;
        add_header(d, "Retry-After", num(ra));
    }
    if (d->code != KG_CODE_NONE) {
        kg__buf_init(&b);
        kg__buf_adds(&b, "{\"error\":{\"code\":");
        kg__buf_json_str(&b, kg_code_name(d->code));
        kg__buf_adds(&b, ",\"message\":");
        kg__buf_json_str(&b, d->message);
        kg__buf_adds(&b, "}}");
        d->body = kg__buf_take(&b);
    }
}

int kg_decision_allowed(const kg_decision *d) { return d->code == KG_CODE_NONE; }
int kg_decision_status(const kg_decision *d) { return d->status; }
kg_code kg_decision_code(const kg_decision *d) { return d->code; }
const char *kg_decision_message(const kg_decision *d) { return d->message; }
const char *kg_decision_key_id(const kg_decision *d) { return d->record ? d->record->id : NULL; }
const char *kg_decision_key_prefix(const kg_decision *d) { return d->record ? d->record->prefix : NULL; }
const char *kg_decision_key_name(const kg_decision *d) { return d->record ? d->record->name : NULL; }
const char *kg_decision_plan(const kg_decision *d) { return d->plan; }
int kg_decision_priority(const kg_decision *d) { return d->priority; }
const char *kg_decision_decided_by(const kg_decision *d) { return d->decided_by; }
const char *kg_decision_lease(const kg_decision *d) { return d->lease_len ? d->lease : NULL; }

size_t kg_decision_header_count(const kg_decision *d)
{
    render((kg_decision *)d);
    return d->nheaders;
}

kg_error kg_decision_header(const kg_decision *d, size_t i,
                            const char **name_r, const char **value_r)
{
    render((kg_decision *)d);
    if (i >= d->nheaders)
        return KG_ERR_NOT_FOUND;
    *name_r = d->hname[i];
    *value_r = d->hvalue[i];
    return KG_OK;
}

const char *kg_decision_header_value(const kg_decision *d, const char *name)
{
    size_t i;
    render((kg_decision *)d);
    for (i = 0; i < d->nheaders; i++)
        if (strcasecmp(d->hname[i], name) == 0)
            return d->hvalue[i];
    return NULL;
}

const char *kg_decision_body(const kg_decision *d)
{
    render((kg_decision *)d);
    return d->body ? d->body : "";
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
