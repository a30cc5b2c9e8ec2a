/*
 * alerts_seed.c - the spike rules' history, seeded from the usage store
 * (docs/alerts.md "spike"), so that a restarted keygated (or a reload
 * that changed the spike rules, which starts their state afresh) has a
 * baseline at once instead of after `baseline` days.
 *
 * The store's rows before the point where the feed of minute rows
 * starts (`until`) are read in pages, newest first: the minutes of the
 * hour in progress, then one hour of hour rows per page, back over the
 * longest baseline.  Newest first keeps every baseline exact while the
 * seeding is under way: a subject's history starts at its oldest period
 * read so far (kg__alerts_add_count moves `first` back), and every
 * period after it has been read, so the days a baseline averages are
 * whole days.  A page is one query through the policy's usage store;
 * the caller (keygated's alerts thread) reads a few pages per round and
 * evaluates between them.
 */
#include "alerts_eval.h"

#include <keygate/usage.h>

#include <string.h>

/* Where the oldest period that a spike rule's baseline reads starts,
 * for a feed that starts at `until` (0: no spike rule). */
static int64_t seed_start(const kg__alerts_conf *c, int64_t until)
{
    int64_t from = 0;
    size_t i;
    for (i = 0; c != NULL && i < c->nr; i++) {
        const kg__alert_rule *r = &c->rv[i];
        int64_t f;
        if (r->kind != KG__AR_SPIKE)
            continue;   /* its `over` is 0 */
        f = until / r->over * r->over - r->baseline_days * 86400;
        if (from == 0 || f < from)
            from = f;
    }
    return from;
}

struct seed_run {
    kg_alerts *a;
    size_t rows;
    kg_error e;
};

/* The part of `count` that falls in the first x seconds of span, if the
 * count were spread evenly over it (without overflowing). */
static int64_t part(int64_t count, int64_t x, int64_t span)
{
    return count / span * x + count % span * x / span;
}

/*
 * One row into every spike rule: into the rule's period that holds it,
 * or, for an hour row and a rule whose periods are shorter than an hour
 * or straddle hours (5m, 90m), spread over the periods it overlaps in
 * proportion (the approximation docs/alerts.md describes: the store
 * does not say how the hour's requests fell within it).
 */
static int seed_row(const kg_usage_row *row, void *ud)
{
    struct seed_run *s = ud;
    const kg__alerts_conf *c = s->a->conf;
    int64_t end = row->start + row->span;
    size_t i;

    for (i = 0; i < c->nr && s->e == KG_OK; i++) {
        const kg__alert_rule *r = &c->rv[i];
        int64_t q;
        if (r->kind != KG__AR_SPIKE)
            continue;
        for (q = row->start / r->over; q * r->over < end && s->e == KG_OK; q++) {
            int64_t lo = q * r->over > row->start ? q * r->over : row->start;
            int64_t hi = (q + 1) * r->over < end ? (q + 1) * r->over : end;
            int64_t n = part(row->count, hi - row->start, row->span) -
                        part(row->count, lo - row->start, row->span);
            if (n > 0)
                s->e = kg__alerts_add_count(s->a, i, row->account_id,
                                            row->key_id, q, n, 1);
        }
    }
    s->rows++;
    return s->e != KG_OK;
}

kg_error kg_alerts_seed(kg_alerts *a, const kg_policy *p, int64_t until,
                        size_t pages, size_t *rows_r, int *done_r,
                        kg_diag *diag)
{
    struct seed_run s = { a, 0, KG_OK };
    kg_error e;

    kg__diag_clear(diag);
    *done_r = 0;
    if (rows_r != NULL)
        *rows_r = 0;
    if ((e = kg__alerts_bind(a, p)) != KG_OK)
        return e;
    if (a->seed_until == 0) {
        /* A new seeding: from the feed's start back over the longest
         * baseline, from the hour that holds its oldest period. */
        until -= until % 60;
        a->seed_until = until;
        a->seed_next = until;
        a->seed_from = seed_start(a->conf, until);
        a->seed_from = a->seed_from == 0 ? until   /* no spike rule */
                                         : a->seed_from - a->seed_from % 3600;
    }
    while (pages-- > 0 && a->seed_next > a->seed_from) {
        /* The hour in progress from its minute rows (its hour row holds
         * minutes the feed will read too), then whole hours. */
        int64_t hi = a->seed_next, lo = hi - hi % 3600;
        int32_t span = 60;
        size_t before = s.rows;
        kg_usage_query q;

        if (lo == hi) {
            lo = hi - 3600;
            span = 3600;
        }
        memset(&q, 0, sizeof(q));
        q.since = lo;
        q.until = hi;
        q.span = span;
        e = kg_usage_query_rows(p, &q, seed_row, &s, diag);
        if (e == KG_ERR_UNSUPPORTED) {
            /* No usage store: no history to seed (nor counts to feed). */
            kg__diag_clear(diag);
            a->seed_next = a->seed_from;
            e = KG_OK;
            break;
        }
        if (s.e != KG_OK) {
            e = s.e;
            break;
        }
        /* A store that did not answer: the page again next call.  One
         * that failed after giving rows keeps them (read again, they
         * would count twice). */
        if (e != KG_OK && s.rows == before)
            break;
        a->seed_next = lo;
        if (e != KG_OK)
            break;
    }
    if (rows_r != NULL)
        *rows_r = s.rows;
    *done_r = a->seed_next <= a->seed_from;
    return e;
}
