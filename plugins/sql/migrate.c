/*
 * migrate.c - the schema versions this build knows (conf/sql/NNN_*.sql,
 * embedded at build time) and their application.  A version is one file
 * for every driver (NNN_name.sql) or a file per driver that needs one
 * (NNN_name.sqlite.sql): the logical schema is one, its storage may
 * differ.  A driver without a file for a version records the version
 * and changes nothing.
 *
 * keygate_schema holds one row per applied migration.  A migration runs
 * in one transaction with its row, under a lock that serialises
 * concurrent `keygate db migrate` runs (BEGIN IMMEDIATE on SQLite, an
 * advisory lock on PostgreSQL): a crash or an error leaves the schema
 * as it was.  A database whose version is newer than this build is
 * refused, never "migrated" down or written with an old idea of it.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "sql.h"

struct sql_migration {
    int version;
    const char *name;
    const char *driver;   /* NULL: every driver */
    const char *sql;
};

#include "plugins/sql/migrations.h"

#define NMIGRATIONS (sizeof(sql_migrations) / sizeof(sql_migrations[0]))

static const char create_schema_table[] =
    "CREATE TABLE IF NOT EXISTS keygate_schema ("
    " version INTEGER PRIMARY KEY,"
    " name TEXT NOT NULL,"
    " applied_at BIGINT NOT NULL)";
static const char insert_version[] =
    "INSERT INTO keygate_schema (version, name, applied_at) VALUES ($1, $2, $3)";

int sql_schema_latest(void)
{
    return sql_migrations[NMIGRATIONS - 1].version;
}

static int ignore_rows(void *ud, int n, const char *const *v)
{
    (void)ud; (void)n; (void)v;
    return 0;
}

kg_error sql_migrate(const struct sql_driver *drv, void *conn, int apply,
                     int *from_r, int *to_r, char *err, size_t errlen)
{
    int v = 0, rc;
    size_t i;
    char err2[256];

    /* The build itself must be sane: versions 1, 2, 3 ... in order, a
     * version given twice only as files for different drivers. */
    for (i = 0; i < NMIGRATIONS; i++) {
        const struct sql_migration *m = &sql_migrations[i], *prev = i ? m - 1 : NULL;
        int ok = prev == NULL ? m->version == 1 :
                 m->version == prev->version + 1 ||
                 (m->version == prev->version && m->driver != NULL &&
                  prev->driver != NULL && strcmp(m->driver, prev->driver) != 0);
        if (!ok) {
            snprintf(err, errlen, "this build's migrations are not numbered "
                     "1, 2, 3...: %s", m->name);
            return KG_ERR_INVALID;
        }
    }
    if ((rc = drv->script(conn, drv->begin_migration, err, errlen)) != SQL_OK)
        return SQL_UNAVAILABLE(rc) ? KG_ERR_UNAVAILABLE : KG_ERR_IO;
    if ((rc = drv->schema_version(conn, &v, err, errlen)) != SQL_OK)
        goto rollback;
    *from_r = *to_r = v;
    if (v > sql_schema_latest()) {
        snprintf(err, errlen, "the database schema is at version %d, newer "
                 "than this keygate knows (%d): upgrade keygate (it refuses "
                 "to write a schema it does not know)", v, sql_schema_latest());
        drv->script(conn, "ROLLBACK", err2, sizeof(err2));
        return KG_ERR_INVALID;
    }
    if (!apply || v == sql_schema_latest()) {
        drv->script(conn, "ROLLBACK", err2, sizeof(err2));
        return KG_OK;
    }
    if ((rc = drv->script(conn, create_schema_table, err, errlen)) != SQL_OK)
        goto rollback;
    for (i = 0; i < NMIGRATIONS; i++) {
        const struct sql_migration *m = &sql_migrations[i];
        char ver[16], now[24];
        const char *params[3] = { ver, m->name, now };
        char e[200];
        size_t j;

        /* one row per version: at its first file */
        if (m->version <= v || (i > 0 && m[-1].version == m->version))
            continue;
        snprintf(ver, sizeof(ver), "%d", m->version);
        snprintf(now, sizeof(now), "%lld", (long long)time(NULL));
        for (j = i; j < NMIGRATIONS && sql_migrations[j].version == m->version; j++) {
            const struct sql_migration *f = &sql_migrations[j];
            if (f->driver != NULL && strcmp(f->driver, drv->name) != 0)
                continue;
            if ((rc = drv->script(conn, f->sql, e, sizeof(e))) != SQL_OK) {
                snprintf(err, errlen, "migration %s: %s", f->name, e);
                goto rollback;
            }
        }
        rc = drv->exec(conn, insert_version, 3, params, ignore_rows, NULL,
                       NULL, err, errlen);
        if (rc != SQL_OK)
            goto rollback;
    }
    if ((rc = drv->script(conn, "COMMIT", err, errlen)) != SQL_OK)
        goto rollback;
    *to_r = sql_schema_latest();
    return KG_OK;
rollback:
    drv->script(conn, "ROLLBACK", err2, sizeof(err2));
    return SQL_UNAVAILABLE(rc) ? KG_ERR_UNAVAILABLE : KG_ERR_IO;
}
