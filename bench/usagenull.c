/*
 * usagenull - a benchmark-only usage store: takes every batch and keeps
 * nothing, so that bench/check --metering measures what counting costs
 * a check, not what a database costs a flush (bench/sql measures that).
 */
#include <stdlib.h>

#include <keygate/plugin.h>

static kg_error n_create(kg_opts *o, void **inst_r)
{
    (void)o;
    *inst_r = calloc(1, 1);
    return *inst_r != NULL ? KG_OK : KG_ERR_NOMEM;
}

static void n_destroy(void *inst)
{
    free(inst);
}

static kg_error n_write(void *inst, const kg_usage_row *rows, size_t nrows,
                        const kg_usage_event *ev, size_t nev, int64_t now,
                        kg_diag *diag)
{
    (void)inst, (void)rows, (void)nrows, (void)ev, (void)nev, (void)now;
    (void)diag;
    return KG_OK;
}

static kg_error n_query(void *inst, const kg_usage_query *q,
                        kg_usage_row_cb cb, void *ud, kg_diag *diag)
{
    (void)inst, (void)q, (void)cb, (void)ud, (void)diag;
    return KG_OK;
}

static kg_error n_top(void *inst, int by_key, int64_t since, int64_t until,
                      size_t limit, kg_usage_top_cb cb, void *ud,
                      kg_diag *diag)
{
    (void)inst, (void)by_key, (void)since, (void)until, (void)limit;
    (void)cb, (void)ud, (void)diag;
    return KG_OK;
}

static kg_error n_events(void *inst, const kg_event_query *q,
                         kg_usage_event_cb cb, void *ud, kg_diag *diag)
{
    (void)inst, (void)q, (void)cb, (void)ud, (void)diag;
    return KG_OK;
}

static const struct kg_usage_ops ops = {
    .write = n_write, .query = n_query, .top = n_top, .events = n_events,
};

KG_PLUGIN_DEFINE(usagenull) = {
    KG_PLUGIN_HEADER,
    .kind = KG_PLUGIN_USAGE,
    .name = "usagenull",
    .description = "benchmark usage store: discards every batch",
    .create = n_create,
    .destroy = n_destroy,
    .usage = &ops,
};
