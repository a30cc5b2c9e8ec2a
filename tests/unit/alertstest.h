/*
 * alertstest.h - what the evaluator's suites share (check_alerts: the
 * rules on fed counts; check_alerts_seed: the spike history seeded from
 * a usage store): the fixture (a key file, the fake clock, an outbox in
 * memory, an evaluator), a round of the rules, the outbox as text, and
 * the traffic profiles of the spike baseline's cases.
 */
#ifndef KEYGATE_ALERTSTEST_H
#define KEYGATE_ALERTSTEST_H

/* testutil.h first: it sets the feature macros. */
#include "testutil.h"

#include <keygate/alerts.h>

static char *dir, *keyfile, *secret;
static char key[KG_KEY_MAX];
static kg_context *ctx;
static tu_clock clk;
static kg_outbox_memory *box;
static kg_alerts *al;

static TU_UNUSED void at_setup(void)
{
    tu_setup(&dir, &keyfile, "free", key, &ctx);
    tu_clock_install(ctx, &clk);
    secret = tu_path(dir, "alerts.secret");
    tu_write(secret, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n");
    box = kg_outbox_memory_new();
    ck_assert_ptr_nonnull(box);
    ck_assert_int_eq(kg_alerts_new(&al), KG_OK);
}

static TU_UNUSED void at_teardown(void)
{
    kg_alerts_free(al);
    kg_outbox_memory_free(box);
    free(secret);
    tu_teardown(dir, keyfile, ctx, NULL);
}

/* One round of p's rules at the clock's time; the entries written. */
static TU_UNUSED size_t run(kg_policy *p)
{
    size_t n = 99;
    kg_diag d;
    ck_assert_int_eq(kg_alerts_run(al, p, kg_context_now(ctx) / 1000000,
                                   kg_outbox_memory_ops(), box, &n, &d), KG_OK);
    return n;
}

/* The outbox's entries, newest first, as "type rule notifier account"
 * lines with each payload after a tab. */
struct listing {
    char text[8192];
    size_t n;
};

static TU_UNUSED int list_cb(const kg_outbox_entry *e, void *ud)
{
    struct listing *l = ud;
    size_t len = strlen(l->text);
    snprintf(l->text + len, sizeof(l->text) - len, "%s %s %s %s\t%s\n",
             e->type, e->rule, e->notifier, e->account_id, e->payload);
    l->n++;
    return 0;
}

static TU_UNUSED struct listing listing(void)
{
    struct listing l;
    kg_diag d;
    memset(&l, 0, sizeof(l));
    ck_assert_int_eq(kg_outbox_memory_ops()->list(box, -1, 0, 1000, list_cb,
                                                  &l, &d), KG_OK);
    return l;
}

/* Requests per hour of a day (days back from today) of three accounts:
 * a flat one whose hour 0 is always 300 and its other hours 20; one
 * growing 30% every day (7 days ago 100, yesterday 100 * 1.3^6); a
 * steady one, 100 every hour. */
static TU_UNUSED int64_t flat(int day, int hour)
{
    (void)day;
    return hour == 0 ? 300 : 20;
}

static TU_UNUSED int64_t growing(int day, int hour)
{
    double v = 100;
    int i;
    (void)hour;
    for (i = 7; i > day; i--)
        v *= 1.3;
    return (int64_t)v;
}

static TU_UNUSED int64_t steady(int day, int hour)
{
    (void)day;
    (void)hour;
    return 100;
}

#endif
