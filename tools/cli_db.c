/* cli_db.c - `keygate db migrate|status`: the key store's schema. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void db_usage(FILE *f)
{
    fputs("usage: keygate db migrate     bring the key store's schema up to date\n"
          "       keygate db status      show the schema version, change nothing\n"
          "The store is the policy's first keystore with a schema (the sql store).\n"
          "A database whose schema is newer than this keygate is refused.\n", f);
}

int cmd_db(struct cli *c, int argc, char **argv)
{
    kg_policy *p;
    kg_diag d;
    kg_error e;
    int apply, from = 0, to = 0, rc;

    if (cli_wants_help(argc, argv)) {   /* db --help, db migrate --help */
        db_usage(stdout);
        return EXIT_OK;
    }
    argc = cli_take_json(c, argc, argv);
    if (argc != 2 || (strcmp(argv[1], "migrate") && strcmp(argv[1], "status"))) {
        db_usage(stderr);
        return EXIT_USAGE;
    }
    apply = strcmp(argv[1], "migrate") == 0;
    p = cli_load_policy(c, NULL);
    if (p == NULL)
        return EXIT_USAGE;
    e = kg_policy_migrate(p, apply, &from, &to, &d);
    if (e != KG_OK) {
        cli_print_diag(apply ? "db migrate" : "db status", e, &d);
        rc = e == KG_ERR_UNSUPPORTED ? EXIT_USAGE : EXIT_DENIED;
        goto out;
    }
    if (c->json)
        printf("{\"from\":%d,\"to\":%d,\"migrated\":%s}\n", from, to,
               to != from ? "true" : "false");
    else if (!apply)
        printf("schema version %d\n", from);
    else if (to == from)
        printf("schema version %d: up to date\n", to);
    else
        printf("migrated the schema from version %d to %d\n", from, to);
    rc = EXIT_OK;
out:
    kg_policy_free(p);
    return rc;
}
