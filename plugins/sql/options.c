/*
 * options.c - the sql plugin's options: which driver (or a url that
 * says it and where), and the driver's own options (the others are
 * refused), the pool's and, for a key store, the write-behind's; a
 * password from a file.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sql.h"

/* "250ms", "2s", "1m" or a bare number of milliseconds
 * (kg_modutil_duration_ms: a bare number is milliseconds here, as it
 * always was for these options). */
static kg_error opt_ms(kg_opts *o, const char *key, int64_t def, int64_t *ms_r)
{
    const char *s;
    kg_error e = kg_opts_get_string(o, key, NULL, &s);

    *ms_r = def;
    if (e != KG_OK || s == NULL)
        return e;
    if (kg_modutil_duration_ms(s, 1, ms_r) != KG_OK)
        return kg_opts_error(o, key, "%s must be a time such as 250ms, 2s or 1m, "
                             "not '%s'", key, s);
    return KG_OK;
}

static const struct sql_driver *const drivers[] = {
#ifdef HAVE_SQLITE
    &sql_driver_sqlite,
#endif
#ifdef HAVE_PQ
    &sql_driver_postgresql,
#endif
    NULL
};

/* The option is given beside a url (which gave its value already). */
static int url_has(kg_opts *o, const char *key)
{
    return kg_opts_has(o, "url") && kg_opts_has(o, key);
}

int sql_is_pg(const struct sql_driver *d)
{
    return strcmp(d->name, "postgresql") == 0;
}

static kg_error dup_opt(kg_opts *o, const char *key, char **out)
{
    const char *v;
    kg_error e = kg_opts_get_string(o, key, NULL, &v);
    if (e != KG_OK || v == NULL)
        return e;
    *out = strdup(v);
    return *out ? KG_OK : KG_ERR_NOMEM;
}

/*
 * url: "sqlite:///ABSOLUTE/PATH" (path) or "postgresql://..." /
 * "postgres://..." (conninfo: libpq reads the URI itself): the driver's
 * name into *name_r, its path or conninfo into s->conf.
 */
static kg_error read_url(kg_opts *o, struct sqlstore *s, const char **name_r)
{
    const char *url;
    kg_error e = kg_opts_get_string(o, "url", NULL, &url);

    if (e != KG_OK || url == NULL)
        return e;
    if (kg_opts_has(o, "driver"))
        return kg_opts_error(o, "driver", "give url or driver, not both");
    if (strncmp(url, "sqlite:", 7) == 0) {
        *name_r = "sqlite";
        if (strncmp(url + 7, "///", 3) != 0 || url[10] == '\0')
            return kg_opts_error(o, "url", "a SQLite url is sqlite:///ABSOLUTE/PATH "
                                 "(for a path from the policy's folder: driver: "
                                 "sqlite, path: FILE), not '%s'", url);
        s->conf.path = strdup(url + 9);
        return s->conf.path ? KG_OK : KG_ERR_NOMEM;
    }
    if (strncmp(url, "postgresql://", 13) == 0 || strncmp(url, "postgres://", 11) == 0) {
        *name_r = "postgresql";
        s->conf.conninfo = strdup(url);
        return s->conf.conninfo ? KG_OK : KG_ERR_NOMEM;
    }
    return kg_opts_error(o, "url", "url must start with sqlite:/// or "
                         "postgresql://, not '%.40s'", url);
}

kg_error sql_pick_driver(kg_opts *o, struct sqlstore *s)
{
    const char *name = NULL;
    char built[64] = "";
    size_t i;
    kg_error e = read_url(o, s, &name);

    if (e == KG_OK && name == NULL)
        e = kg_opts_get_string(o, "driver", NULL, &name);
    if (e != KG_OK)
        return e;
    for (i = 0; drivers[i] != NULL; i++)
        snprintf(built + strlen(built), sizeof(built) - strlen(built), "%s%s",
                 i ? ", " : "", drivers[i]->name);
    if (name == NULL)
        return kg_opts_error(o, NULL, "option 'driver' is required, or a "
                             "'url' (built drivers: %s)", built);
    for (i = 0; drivers[i] != NULL; i++) {
        if (strcmp(drivers[i]->name, name) == 0) {
            s->conf.driver = drivers[i];
            return KG_OK;
        }
    }
    if (strcmp(name, "sqlite") == 0 || strcmp(name, "postgresql") == 0)
        return kg_opts_error(o, "driver", "the %s driver is not built into "
                             "this sql plugin (built: %s): rebuild keygate "
                             "with %s installed (./configure --with-%s)", name,
                             built[0] ? built : "none",
                             name[0] == 's' ? "libsqlite3-dev" : "libpq-dev",
                             name[0] == 's' ? "sqlite" : "pq");
    return kg_opts_error(o, "driver", "unknown driver '%s' (built drivers: %s)",
                         name, built);
}

kg_error sql_read_options(kg_opts *o, struct sqlstore *s, int usage,
                          int *auto_r, int64_t *interval_r,
                          int64_t *max_pending_r)
{
    static const char *const pg_only[] = { "conninfo", "password",
        "password_file", "sslmode", "sslrootcert", "connect_timeout",
        "statement_timeout", NULL };
    static const char *const lite_only[] = { "path", "busy_timeout",
        "snapshot_idle", "mmap_size", NULL };
    struct sql_conf *c = &s->conf;
    int pg = sql_is_pg(c->driver);
    const char *const *other;
    kg_error e;
    size_t i;

    other = pg ? lite_only : pg_only;
    for (i = 0; other[i] != NULL; i++)
        if (kg_opts_has(o, other[i]))
            return kg_opts_error(o, other[i], "option '%s' is for the %s "
                                 "driver, not %s", other[i],
                                 pg ? "sqlite" : "postgresql", c->driver->name);
    if (url_has(o, pg ? "conninfo" : "path"))
        return kg_opts_error(o, pg ? "conninfo" : "path", "give url or %s, not "
                             "both", pg ? "conninfo" : "path");
    /* A usage store is written by one flush at a time, in the background:
     * it may wait longer, it needs few connections, it always migrates
     * (usage.c) and records no last use. */
    if ((e = opt_ms(o, "pool_wait", usage ? 2000 : 200, &c->pool_wait_ms)) != KG_OK ||
        (e = opt_ms(o, "reconnect_delay", 1000, &c->reconnect_delay_ms)) != KG_OK)
        return e;
    if (!usage &&
        ((e = kg_opts_get_bool(o, "auto_migrate", !pg, auto_r)) != KG_OK ||
         (e = kg_opts_get_duration(o, "last_used_interval", 60, interval_r)) != KG_OK ||
         (e = kg_opts_get_int(o, "last_used_max_pending", 100000, max_pending_r)) != KG_OK))
        return e;
    {
        int64_t n;
        if ((e = kg_opts_get_int(o, "pool_size", usage ? 2 : pg ? 8 : 4, &n)) != KG_OK)
            return e;
        if (n < 1 || n > 1000)
            return kg_opts_error(o, "pool_size", "pool_size must be 1..1000");
        c->pool_size = (int)n;
    }
    if (*max_pending_r < 1)
        return kg_opts_error(o, "last_used_max_pending", "must be at least 1");
    if (!pg) {
        const char *path;
        if ((e = kg_opts_get_path(o, "path", c->path, &path)) != KG_OK ||
            (e = opt_ms(o, "busy_timeout", 2000, &c->busy_timeout_ms)) != KG_OK ||
            (e = opt_ms(o, "snapshot_idle", 1000, &c->snapshot_idle_ms)) != KG_OK ||
            (e = kg_opts_get_int(o, "mmap_size", 1LL << 30, &c->mmap_size)) != KG_OK)
            return e;
        if (c->mmap_size < 0)
            return kg_opts_error(o, "mmap_size", "mmap_size must be a number "
                                 "of bytes (0: no memory map)");
        if (path == NULL)
            return kg_opts_error(o, NULL, "the sqlite driver needs 'path' (the "
                                 "database file, e.g. ${KEYGATE_STATE_DIR}/keys.db)");
        if (c->path == NULL && (c->path = strdup(path)) == NULL)
            return KG_ERR_NOMEM;
        return KG_OK;
    }
    if ((c->conninfo == NULL && (e = dup_opt(o, "conninfo", &c->conninfo)) != KG_OK) ||
        (e = dup_opt(o, "password", &c->password)) != KG_OK ||
        (e = dup_opt(o, "sslmode", &c->sslmode)) != KG_OK ||
        (e = kg_opts_get_duration(o, "connect_timeout", 2, &c->connect_timeout_s)) != KG_OK ||
        (e = opt_ms(o, "statement_timeout", usage ? 10000 : 500,
                    &c->statement_timeout_ms)) != KG_OK)
        return e;
    if (c->statement_timeout_ms < 1)
        return kg_opts_error(o, "statement_timeout", "statement_timeout must be "
                             "at least 1ms");
    if (c->conninfo == NULL)
        return kg_opts_error(o, NULL, "the postgresql driver needs 'conninfo' "
                             "(e.g. \"host=db1,db2 dbname=keygate user=keygate\")");
    if (kg_opts_has(o, "password_file")) {
        if (c->password != NULL)
            return kg_opts_error(o, "password_file", "give password or "
                                 "password_file, not both");
        if ((e = kg_opts_get_secret_file(o, "password_file", &c->password)) != KG_OK)
            return e;
    }
    if (kg_opts_has(o, "sslrootcert")) {
        const char *p;
        if ((e = kg_opts_get_path(o, "sslrootcert", NULL, &p)) != KG_OK)
            return e;
        if ((c->sslrootcert = strdup(p)) == NULL)
            return KG_ERR_NOMEM;
    }
    return KG_OK;
}
