/* cli_key.c - `keygate key create|list|show|update|revoke|rotate`. */
#include "config.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

static void key_usage(FILE *f)
{
    fputs("usage: keygate key create --name NAME --plan PLAN [--permission P]...\n"
          "                  [--allow-ip CIDR]... [--expires DURATION|DATE]\n"
          "                  [--limit NAME=COUNT/WINDOW[:BURST]]...\n"
          "       keygate key list\n"
          "       keygate key show ID\n"
          "       keygate key update ID [--name N] [--plan P] [--permission P]...\n"
          "                  [--allow-ip CIDR]... [--expires DURATION|DATE|never]\n"
          "                  [--limit ...]... [--clear-permissions] [--clear-ips] [--clear-limits]\n"
          "       keygate key revoke ID\n"
          "       keygate key rotate ID [--grace DURATION]\n"
          "DURATION: 30s, 15m, 12h, 30d, 2w.  DATE: 2026-12-31 or 2026-12-31T12:00:00Z.\n",
          f);
}

static void print_record(struct cli *c, const kg_record *r)
{
    size_t i;
    char t[32];
    if (c->json) {
        char *j = kg_record_to_json(r);
        printf("%s\n", j ? j : "{}");
        free(j);
        return;
    }
    printf("id:          %s\n", kg_record_id(r));
    printf("name:        %s\n", kg_record_name(r) ? kg_record_name(r) : "");
    printf("prefix:      %s...\n", kg_record_prefix(r) ? kg_record_prefix(r) : "");
    printf("plan:        %s\n", kg_record_plan(r));
    printf("status:      %s\n", kg_record_status(r) == KG_STATUS_REVOKED ? "revoked" : "active");
    printf("permissions:");
    for (i = 0; i < kg_record_permission_count(r); i++)
        printf(" %s", kg_record_permission(r, i));
    printf("\nallowed ips:");
    for (i = 0; i < kg_record_cidr_count(r); i++)
        printf(" %s", kg_record_cidr(r, i));
    printf("\nlimits:     ");
    for (i = 0; i < kg_record_limit_count(r); i++) {
        const char *n;
        int64_t cnt, w, b;
        kg_record_limit(r, i, &n, &cnt, &w, &b);
        printf(" %s=%lld/%llds", n, (long long)cnt, (long long)w);
        if (b)
            printf(":%lld", (long long)b);
    }
    cli_time(kg_record_created(r), t);
    printf("\ncreated:     %s\n", t);
    cli_time(kg_record_expires(r), t);
    printf("expires:     %s\n", kg_record_expires(r) ? t : "never");
    cli_time(kg_record_last_used(r), t);
    printf("last used:   %s\n", kg_record_last_used(r) ? t : "never");
}

/* Options shared by create and update. */
struct edit {
    const char *name, *plan, *expires;
    const char *perms[64], *ips[64], *limits[32];
    size_t nperms, nips, nlimits;
    int clear_perms, clear_ips, clear_limits;
    int64_t grace;
    int have_grace;
};

static int parse_edit(int argc, char **argv, struct edit *e, int *first_arg)
{
    static const struct option opts[] = {
        { "name", required_argument, NULL, 'n' },
        { "plan", required_argument, NULL, 'p' },
        { "permission", required_argument, NULL, 'P' },
        { "allow-ip", required_argument, NULL, 'i' },
        { "expires", required_argument, NULL, 'e' },
        { "limit", required_argument, NULL, 'l' },
        { "grace", required_argument, NULL, 'g' },
        { "clear-permissions", no_argument, NULL, 1 },
        { "clear-ips", no_argument, NULL, 2 },
        { "clear-limits", no_argument, NULL, 3 },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int ch;
    /* 0, not 1: glibc then starts afresh (main() parsed with "+", which
     * would otherwise stay in force and stop at the key id, so that
     * `key update ID --plan P` was a usage error). */
    optind = 0;
    while ((ch = getopt_long(argc, argv, "n:p:P:i:e:l:g:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'n': e->name = optarg; break;
        case 'p': e->plan = optarg; break;
        case 'P':
            if (e->nperms == 64) return -1;
            e->perms[e->nperms++] = optarg;
            break;
        case 'i':
            if (e->nips == 64) return -1;
            e->ips[e->nips++] = optarg;
            break;
        case 'e': e->expires = optarg; break;
        case 'l':
            if (e->nlimits == 32) return -1;
            e->limits[e->nlimits++] = optarg;
            break;
        case 'g': {
            char *end;
            long long v = strtoll(optarg, &end, 10);
            int64_t mul = 1;
            if (end == optarg || v < 0) return -1;
            if (*end == 's') mul = 1;
            else if (*end == 'm') mul = 60;
            else if (*end == 'h') mul = 3600;
            else if (*end == 'd') mul = 86400;
            else if (*end == 'w') mul = 604800;
            else if (*end) return -1;
            if (*end && end[1]) return -1;
            e->grace = v * mul;
            e->have_grace = 1;
            break;
        }
        case 1: e->clear_perms = 1; break;
        case 2: e->clear_ips = 1; break;
        case 3: e->clear_limits = 1; break;
        case 'h': key_usage(stdout); exit(EXIT_OK);
        default: return -1;
        }
    }
    *first_arg = optind;
    return 0;
}

static int apply_edit(struct cli *c, const struct edit *e, kg_record *r)
{
    size_t i;
    if (e->name) kg_record_set_name(r, e->name);
    if (e->plan) kg_record_set_plan(r, e->plan);
    if (e->clear_perms || e->nperms) kg_record_clear_permissions(r);
    for (i = 0; i < e->nperms; i++)
        kg_record_add_permission(r, e->perms[i]);
    if (e->clear_ips || e->nips) kg_record_clear_cidrs(r);
    for (i = 0; i < e->nips; i++)
        kg_record_add_cidr(r, e->ips[i]);
    if (e->clear_limits) kg_record_clear_limits(r);
    for (i = 0; i < e->nlimits; i++) {
        if (cli_parse_limit(e->limits[i], r) != 0) {
            fprintf(stderr, "keygate: --limit %s: expected NAME=COUNT/WINDOW[:BURST], "
                    "e.g. hour=100000/1h\n", e->limits[i]);
            return -1;
        }
    }
    if (e->expires) {
        int64_t t;
        if (cli_parse_expiry(e->expires, kg_context_now(c->ctx) / 1000000, &t) != 0) {
            fprintf(stderr, "keygate: --expires %s: expected a duration (30d) or a "
                    "date (2026-12-31)\n", e->expires);
            return -1;
        }
        kg_record_set_expires(r, t);
    }
    return 0;
}

static int key_create(struct cli *c, kg_policy *p, int argc, char **argv)
{
    struct edit e;
    kg_record *r;
    char key[KG_KEY_MAX];
    kg_diag d;
    kg_error err;
    int first, rc = EXIT_USAGE;

    memset(&e, 0, sizeof(e));
    if (parse_edit(argc, argv, &e, &first) != 0 || first != argc) {
        key_usage(stderr);
        return EXIT_USAGE;
    }
    if (e.name == NULL || e.plan == NULL) {
        fprintf(stderr, "keygate: key create needs --name and --plan\n");
        return EXIT_USAGE;
    }
    r = kg_record_new();
    if (r == NULL || apply_edit(c, &e, r) != 0)
        goto out;
    err = kg_keys_create(p, r, key, sizeof(key), &d);
    if (err != KG_OK) {
        cli_print_diag("key create", err, &d);
        rc = err == KG_ERR_INVALID ? EXIT_USAGE : EXIT_DENIED;
        goto out;
    }
    if (c->json) {
        char *j = kg_record_to_json(r);
        /* {"id":...,"key":...,...record} */
        printf("{\"key\":\"%s\",%s\n", key, j ? j + 1 : "}");
        free(j);
    } else {
        printf("%s\n", key);
        fprintf(stderr, "created key %s (%s...) on plan %s.\n"
                "The key is shown only this once: store it now.\n",
                kg_record_id(r), kg_record_prefix(r), kg_record_plan(r));
    }
    kg_wipe(key, sizeof(key));
    rc = EXIT_OK;
out:
    kg_record_unref(r);
    return rc;
}

static int list_cb(const kg_record *r, void *ud)
{
    struct cli *c = ud;
    char t[32], lu[32];
    if (c->json) {
        char *j = kg_record_to_json(r);
        printf("%s\n", j ? j : "{}");
        free(j);
        return 0;
    }
    cli_time(kg_record_expires(r), t);
    cli_time(kg_record_last_used(r), lu);
    printf("%-20s %-12s %-12s %-8s %-21s %-21s %s\n", kg_record_id(r),
           kg_record_prefix(r) ? kg_record_prefix(r) : "", kg_record_plan(r),
           kg_record_status(r) == KG_STATUS_REVOKED ? "revoked" : "active",
           kg_record_expires(r) ? t : "never", kg_record_last_used(r) ? lu : "never",
           kg_record_name(r) ? kg_record_name(r) : "");
    return 0;
}

static int with_record(struct cli *c, kg_policy *p, const char *id, kg_record **r_r)
{
    kg_diag d;
    kg_error e = kg_keys_get(p, id, r_r, &d);
    (void)c;
    if (e != KG_OK) {
        cli_print_diag("key", e, &d);
        return e == KG_ERR_NOT_FOUND ? EXIT_DENIED : EXIT_USAGE;
    }
    return EXIT_OK;
}

int cmd_key(struct cli *c, int argc, char **argv)
{
    kg_policy *p;
    const char *sub;
    int rc = EXIT_USAGE;
    kg_record *r = NULL;
    kg_diag d;
    kg_error e;

    /* Help needs no policy: answer it before loading one. */
    if (cli_wants_help(argc, argv)) {
        key_usage(stdout);
        return EXIT_OK;
    }
    if (argc < 2) {
        key_usage(stderr);
        return EXIT_USAGE;
    }
    sub = argv[1];
    if (strcmp(sub, "create") && strcmp(sub, "list") && strcmp(sub, "show") &&
        strcmp(sub, "update") && strcmp(sub, "revoke") && strcmp(sub, "rotate")) {
        fprintf(stderr, "keygate: unknown key command '%s'\n", sub);
        key_usage(stderr);
        return EXIT_USAGE;
    }
    p = cli_load_policy(c, NULL);
    if (p == NULL)
        return EXIT_USAGE;
    argc--;
    argv++;
    if (!strcmp(sub, "create")) {
        rc = key_create(c, p, argc, argv);
    } else if (!strcmp(sub, "list")) {
        if (!c->json)
            printf("%-20s %-12s %-12s %-8s %-21s %-21s %s\n", "ID", "PREFIX", "PLAN",
                   "STATUS", "EXPIRES", "LAST USED", "NAME");
        e = kg_keys_list(p, list_cb, c, &d);
        rc = e == KG_OK ? EXIT_OK : EXIT_DENIED;
        if (e != KG_OK)
            cli_print_diag("key list", e, &d);
    } else if (argc != 2 && strcmp(sub, "update") && strcmp(sub, "rotate")) {
        key_usage(stderr);
    } else if (!strcmp(sub, "show")) {
        if ((rc = with_record(c, p, argv[1], &r)) == EXIT_OK)
            print_record(c, r);
    } else if (!strcmp(sub, "revoke")) {
        if ((rc = with_record(c, p, argv[1], &r)) == EXIT_OK) {
            kg_record_set_status(r, KG_STATUS_REVOKED);
            e = kg_keys_update(p, r, &d);
            if (e != KG_OK) {
                cli_print_diag("key revoke", e, &d);
                rc = EXIT_DENIED;
            } else if (c->json) {
                printf("{\"id\":\"%s\",\"status\":\"revoked\"}\n", kg_record_id(r));
            } else {
                printf("revoked %s (%s...)\n", kg_record_id(r), kg_record_prefix(r));
            }
        }
    } else {
        struct edit ed;
        int first;
        memset(&ed, 0, sizeof(ed));
        if (parse_edit(argc, argv, &ed, &first) != 0 || first != argc - 1) {
            key_usage(stderr);
            goto out;
        }
        if (!strcmp(sub, "update")) {
            if ((rc = with_record(c, p, argv[first], &r)) != EXIT_OK)
                goto out;
            if (apply_edit(c, &ed, r) != 0) {
                rc = EXIT_USAGE;
                goto out;
            }
            e = kg_keys_update(p, r, &d);
            if (e != KG_OK) {
                cli_print_diag("key update", e, &d);
                rc = e == KG_ERR_INVALID ? EXIT_USAGE : EXIT_DENIED;
                goto out;
            }
            print_record(c, r);
            rc = EXIT_OK;
        } else {
            char key[KG_KEY_MAX];
            kg_record *nr = NULL;
            e = kg_keys_rotate(p, argv[first], ed.have_grace ? ed.grace : 0,
                               key, sizeof(key), &nr, &d);
            if (e != KG_OK) {
                cli_print_diag("key rotate", e, &d);
                rc = e == KG_ERR_NOT_FOUND ? EXIT_DENIED : EXIT_USAGE;
                goto out;
            }
            if (c->json) {
                char *j = kg_record_to_json(nr);
                printf("{\"key\":\"%s\",\"replaces\":\"%s\",%s\n", key, argv[first],
                       j ? j + 1 : "}");
                free(j);
            } else {
                printf("%s\n", key);
                fprintf(stderr, "new key %s (%s...) replaces %s, which %s.\n"
                        "The key is shown only this once: store it now.\n",
                        kg_record_id(nr), kg_record_prefix(nr), argv[first],
                        ed.have_grace && ed.grace > 0 ? "stays valid until the grace ends"
                                                      : "is revoked");
            }
            kg_wipe(key, sizeof(key));
            kg_record_unref(nr);
            rc = EXIT_OK;
        }
    }
out:
    kg_record_unref(r);
    kg_policy_free(p);
    return rc;
}
