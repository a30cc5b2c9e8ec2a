/*
 * usage.h - the insides of the sql plugin's usage store (usage.c: the
 * instance and write(); usage_query.c: query(), top(), events()).  The
 * tables are conf/sql/004_usage.sql's; docs/sql.md "Usage" says how they
 * are written, rolled up and trimmed.
 */
#ifndef KEYGATE_SQL_USAGE_H
#define KEYGATE_SQL_USAGE_H

#include <keygate/usage.h>

#include "sql.h"

/* The bucket tables, finest first; a row is added to its own span's
 * table and to every coarser one. */
#define SQL_USAGE_NSPANS 3
struct sql_usage_span {
    int32_t span;
    const char *table;
};
extern const struct sql_usage_span sql_usage_spans[SQL_USAGE_NSPANS];

/* What retention trims (sql_usage.keep[]). */
enum { SQL_KEEP_MINUTE, SQL_KEEP_HOUR, SQL_KEEP_DAY, SQL_KEEP_EVENTS,
       SQL_KEEP_N };

/* Rows (events) per multi-row INSERT: 5 (11) parameters each, far below
 * SQLite's 32766 and PostgreSQL's 65535 bound parameters. */
#define SQL_USAGE_CHUNK 100
#define SQL_EVENT_CHUNK 40

struct sql_usage {
    int64_t keep[SQL_KEEP_N];  /* retention in seconds; 0: forever */
    pthread_mutex_t lock;      /* the two fields below */
    int ready;                 /* migrated and found writable */
    int64_t last_retention;    /* `now` of the last retention run; 0: none */
    /* The multi-row statements, built once: drivers key prepared
     * statements by the text's address, which must live as long as the
     * pool. */
    char *upsert_many[SQL_USAGE_NSPANS];
    char *events_many;
};

/* 48h, 90d, 2y (730 days), 7d. */
extern const int64_t sql_usage_keep_default[SQL_KEEP_N];

/*
 * Make s (its conf and pool ready) a usage store that keeps rows and
 * events `keep` seconds: its schema migrated and the store found
 * writable (sql_usage_create, from the options; the tests, directly).
 * *reached_r: a connection was made.  On error s->usage may be half
 * built: sql_destroy frees it.
 */
kg_error sql_usage_attach(struct sqlstore *s, const int64_t keep[SQL_KEEP_N],
                          int *reached_r, kg_diag *d);

/* The index in sql_usage_spans of a span; -1 if it is none of them. */
int sql_usage_span_index(int32_t span);
/* An SQL_* code as a kg_error, the message in d naming the usage store. */
kg_error sql_usage_error(int rc, kg_diag *d, const char *err);
/*
 * Make sure the store's schema is this build's and the store can be
 * written (once per instance: a PostgreSQL that was down at create() is
 * looked at by the first call that reaches it).  KG_OK, or the error
 * with the message in d.
 */
kg_error sql_usage_ensure(struct sqlstore *s, kg_diag *d);

kg_error sql_usage_query(void *inst, const kg_usage_query *q,
                         kg_usage_row_cb cb, void *ud, kg_diag *diag);
kg_error sql_usage_top(void *inst, int by_key, int64_t since, int64_t until,
                       size_t limit, kg_usage_top_cb cb, void *ud,
                       kg_diag *diag);
kg_error sql_usage_events(void *inst, const kg_event_query *q,
                          kg_usage_event_cb cb, void *ud, kg_diag *diag);

#endif
