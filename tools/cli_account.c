/*
 * cli_account.c - `keygate account create|list|show|update|suspend|
 * resume|delete`: the accounts that own keys (docs/policy.md
 * "Accounts").  The library validates (plan, ids, ceiling, metadata) and
 * writes nothing on a refusal; this file parses options, names the
 * option behind a refusal it can tell, and prints.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "cli_key.h"

enum {
    ACCT_CREATE = 1, ACCT_UPDATE = 2, ACCT_LIST = 4, ACCT_SHOW = 8,
    ACCT_SUSPEND = 16, ACCT_RESUME = 32, ACCT_DELETE = 64
};

enum {
    OPT_EXTERNAL_ID = 0x100, OPT_METADATA, OPT_WITH_KEYS, OPT_CLEAR_PERMS,
    OPT_CLEAR_IPS, OPT_CLEAR_LIMITS, OPT_CLEAR_METADATA
};

/* The options of one `keygate account ...` command line. */
struct acct_edit {
    const char *name, *plan, *external_id, *metadata;
    struct key_strs perms, ips, limits;
    int clear_perms, clear_ips, clear_limits, clear_metadata, with_keys;
};

static void account_usage(FILE *f)
{
    fputs("usage: keygate account create --name NAME --plan PLAN [--external-id ID]\n"
          "                  [--limit NAME=COUNT/WINDOW[:BURST]]... [--allow-ip CIDR]...\n"
          "                  [--permission P]... [--metadata JSON]\n"
          "       keygate account list\n"
          "       keygate account show ID\n"
          "       keygate account update ID [--name N] [--plan P] [--external-id ID]\n"
          "                  [--limit ...]... [--allow-ip CIDR]... [--permission P]...\n"
          "                  [--metadata JSON] [--clear-limits] [--clear-ips]\n"
          "                  [--clear-permissions] [--clear-metadata]\n"
          "       keygate account suspend ID\n"
          "       keygate account resume ID\n"
          "       keygate account delete ID [--with-keys]\n"
          "ID: the account's id (acct_...) or its external id.\n"
          "Every command takes --json (one JSON document; account list: an array)\n"
          "or --jsonl (account list: an object a line).\n"
          "The account's plan is its keys' plan; its limits are counted for all\n"
          "  its keys together (a limit line with 'per: key': for each key).\n"
          "--allow-ip and --permission are a ceiling for its keys; in update they\n"
          "  REPLACE the account's list.  --limit overrides the plan's limit of\n"
          "  that name.  --metadata: one JSON object, at most 4096 bytes.\n"
          "suspend: every key of the account is refused (403 account_suspended)\n"
          "  until resume.  delete: refused while the account has keys, unless\n"
          "  --with-keys, which revokes them.\n",
          f);
}

static const struct cli_takes takes[] = {
    { 'n', ACCT_CREATE | ACCT_UPDATE },
    { 'p', ACCT_CREATE | ACCT_UPDATE },
    { 'P', ACCT_CREATE | ACCT_UPDATE },
    { 'i', ACCT_CREATE | ACCT_UPDATE },
    { 'l', ACCT_CREATE | ACCT_UPDATE },
    { OPT_EXTERNAL_ID, ACCT_CREATE | ACCT_UPDATE },
    { OPT_METADATA, ACCT_CREATE | ACCT_UPDATE },
    { OPT_CLEAR_PERMS, ACCT_UPDATE },
    { OPT_CLEAR_IPS, ACCT_UPDATE },
    { OPT_CLEAR_LIMITS, ACCT_UPDATE },
    { OPT_CLEAR_METADATA, ACCT_UPDATE },
    { OPT_WITH_KEYS, ACCT_DELETE },
};

static const struct {
    const char *name;
    unsigned sub;
    int operands;   /* the account id, or none */
} subs[] = {
    { "create", ACCT_CREATE, 0 }, { "list", ACCT_LIST, 0 },
    { "show", ACCT_SHOW, 1 }, { "update", ACCT_UPDATE, 1 },
    { "suspend", ACCT_SUSPEND, 1 }, { "resume", ACCT_RESUME, 1 },
    { "delete", ACCT_DELETE, 1 },
};
#define NSUBS (sizeof(subs) / sizeof(subs[0]))

static const char *sub_name(unsigned sub)
{
    size_t s;
    for (s = 0; s < NSUBS; s++)
        if (subs[s].sub == sub)
            return subs[s].name;
    return "?";
}

/* Options of sub-command `sub` from argv[1..] into e; the index of the
 * first operand, or -1 (the reason printed).  One the sub-command does
 * not take is refused, never ignored. */
static int account_parse(struct cli *c, unsigned sub, int argc, char **argv,
                         struct acct_edit *e)
{
    static const struct option opts[] = {
        { "name", required_argument, NULL, 'n' },
        { "plan", required_argument, NULL, 'p' },
        { "permission", required_argument, NULL, 'P' },
        { "allow-ip", required_argument, NULL, 'i' },
        { "limit", required_argument, NULL, 'l' },
        { "external-id", required_argument, NULL, OPT_EXTERNAL_ID },
        { "metadata", required_argument, NULL, OPT_METADATA },
        { "clear-permissions", no_argument, NULL, OPT_CLEAR_PERMS },
        { "clear-ips", no_argument, NULL, OPT_CLEAR_IPS },
        { "clear-limits", no_argument, NULL, OPT_CLEAR_LIMITS },
        { "clear-metadata", no_argument, NULL, OPT_CLEAR_METADATA },
        { "with-keys", no_argument, NULL, OPT_WITH_KEYS },
        { "help", no_argument, NULL, 'h' },
        CLI_JSON_OPTIONS,
        { NULL, 0, NULL, 0 },
    };
    int ch, idx, rc = 0;

    optind = 0;   /* afresh, as key_parse() says */
    while (rc == 0 &&
           (ch = getopt_long(argc, argv, "n:p:P:i:l:h", opts, &idx)) != -1) {
        if (cli_json_option(c, ch))
            continue;
        if (cli_option_taken(takes, sizeof(takes) / sizeof(takes[0]), opts, ch,
                             sub, "account", sub_name(sub)) != 0)
            return -1;
        switch (ch) {
        case 'n': e->name = optarg; break;
        case 'p': e->plan = optarg; break;
        case 'P': rc = key_strs_push(&e->perms, optarg, "permission"); break;
        case 'i': rc = key_strs_push(&e->ips, optarg, "allow-ip"); break;
        case 'l': rc = key_strs_push(&e->limits, optarg, "limit"); break;
        case OPT_EXTERNAL_ID: e->external_id = optarg; break;
        case OPT_METADATA: e->metadata = optarg; break;
        case OPT_CLEAR_PERMS: e->clear_perms = 1; break;
        case OPT_CLEAR_IPS: e->clear_ips = 1; break;
        case OPT_CLEAR_LIMITS: e->clear_limits = 1; break;
        case OPT_CLEAR_METADATA: e->clear_metadata = 1; break;
        case OPT_WITH_KEYS: e->with_keys = 1; break;
        case 'h': account_usage(stdout); exit(EXIT_OK);
        default: account_usage(stderr); return -1;
        }
    }
    if (rc != 0)
        return -1;
    if (e->metadata && e->clear_metadata) {
        fprintf(stderr, "keygate: --metadata and --clear-metadata: give one\n");
        return -1;
    }
    return optind;
}

/* Apply e to a; 0, or -1 with the reason printed, naming the option. */
static int account_apply(const struct acct_edit *e, kg_account *a)
{
    kg_error err = KG_OK;
    size_t i;

    if (e->name) err |= kg_account_set_name(a, e->name);
    if (e->plan) err |= kg_account_set_plan(a, e->plan);
    if (e->external_id) err |= kg_account_set_external_id(a, e->external_id);
    if (err != KG_OK)
        goto oom;
    if (e->clear_metadata)
        kg_account_set_metadata(a, NULL);
    if (e->metadata && kg_account_set_metadata(a, e->metadata) != KG_OK) {
        fprintf(stderr, "keygate: --metadata: expected one JSON object of at "
                "most %d bytes, e.g. '{\"tier\":\"gold\"}'\n",
                KG_ACCOUNT_METADATA_MAX);
        return -1;
    }
    if (e->clear_perms || e->perms.n)
        kg_account_clear_permissions(a);
    for (i = 0; i < e->perms.n; i++)
        err |= kg_account_add_permission(a, e->perms.v[i]);
    if (e->clear_ips || e->ips.n)
        kg_account_clear_cidrs(a);
    /* A malformed network is kept, and refused by name when written. */
    for (i = 0; i < e->ips.n; i++)
        err |= kg_account_add_cidr(a, e->ips.v[i]);
    if (e->clear_limits)
        kg_account_clear_limits(a);
    for (i = 0; i < e->limits.n; i++) {
        struct cli_limit l;
        if (cli_parse_limit_spec(e->limits.v[i], &l) != 0) {
            fprintf(stderr, "keygate: --limit %s: expected NAME=COUNT/WINDOW[:BURST], "
                    "e.g. hour=100000/1h\n", e->limits.v[i]);
            return -1;
        }
        err |= kg_account_add_limit(a, l.name, l.count, l.window, l.burst);
    }
    if (err == KG_OK)
        return 0;
oom:
    fprintf(stderr, "keygate: out of memory\n");
    return -1;
}

static void print_json(const kg_account *a)
{
    char *j = kg_account_to_json(a);
    fputs(j ? j : "{}", stdout);
    free(j);
}

struct keys_of {
    const char *account_id;
    size_t n;
};

static int print_key_of(const kg_record *r, void *ud)
{
    struct keys_of *k = ud;
    const char *acct = kg_record_account_id(r);
    if (acct != NULL && strcmp(acct, k->account_id) == 0) {
        printf(" %s%s", kg_record_id(r),
               kg_record_status(r) == KG_STATUS_REVOKED ? " (revoked)" : "");
        k->n++;
    }
    return 0;
}

/* `show` in text: the account and its keys. */
static void print_account(struct cli *c, kg_policy *p, const kg_account *a)
{
    size_t i;
    char t[32], name[1024];
    struct keys_of k = { kg_account_id(a), 0 };
    kg_diag d;

    if (c->json) {
        print_json(a);
        putchar('\n');
        return;
    }
    printf("id:          %s\n", kg_account_id(a));
    printf("external id: %s\n", kg_account_external_id(a) ? kg_account_external_id(a) : "");
    printf("name:        %s\n", cli_printable(kg_account_name(a), name, sizeof(name)));
    printf("plan:        %s\n", kg_account_plan(a));
    printf("status:      %s\n", kg_account_status_name(kg_account_status_of(a)));
    printf("permissions:");
    for (i = 0; i < kg_account_permission_count(a); i++)
        printf(" %s", kg_account_permission(a, i));
    printf("\nallowed ips:");
    for (i = 0; i < kg_account_cidr_count(a); i++)
        printf(" %s", kg_account_cidr(a, i));
    printf("\nlimits:     ");
    for (i = 0; i < kg_account_limit_count(a); i++) {
        const char *n;
        int64_t cnt, w, b;
        kg_account_limit(a, i, &n, &cnt, &w, &b);
        printf(" %s=%lld/%llds", n, (long long)cnt, (long long)w);
        if (b)
            printf(":%lld", (long long)b);
    }
    printf("\nmetadata:    %s\n", kg_account_metadata(a) ? kg_account_metadata(a) : "");
    cli_time(kg_account_created(a), t);
    printf("created:     %s\n", t);
    cli_time(kg_account_updated(a), t);
    printf("updated:     %s\n", t);
    if (p == NULL)
        return;
    printf("keys:       ");
    if (kg_keys_list(p, print_key_of, &k, &d) != KG_OK)
        printf(" (%s)", d.message);
    printf("%s\n", k.n ? "" : " none");
}

/* Exit status for a refusal by the library: bad input (the diag names
 * the field) and a clash are usage errors, nothing was written. */
static int refused(const char *what, kg_error e, const kg_diag *d)
{
    cli_print_diag(what, e, d);
    return e == KG_ERR_NOT_FOUND || e == KG_ERR_IO ? EXIT_DENIED : EXIT_USAGE;
}

static int account_create(struct cli *c, kg_policy *p, const struct acct_edit *e)
{
    kg_account *a;
    kg_diag d;
    kg_error err;
    int rc = EXIT_USAGE;

    if (e->name == NULL || e->plan == NULL) {
        fprintf(stderr, "keygate: account create needs --name and --plan\n");
        return EXIT_USAGE;
    }
    a = kg_account_new();
    if (a == NULL || account_apply(e, a) != 0)
        goto out;
    err = kg_accounts_create(p, a, &d);
    cli_audit_account(p, "account.create", kg_account_id(a) ? NULL : "", NULL,
                      a, err);
    if (err != KG_OK) {
        rc = refused("account create", err, &d);
        goto out;
    }
    if (c->json) {
        print_json(a);
        putchar('\n');
    } else {
        printf("%s\n", kg_account_id(a));
        fprintf(stderr, "created account %s on plan %s; its keys: keygate key "
                "create --account %s --name NAME\n", kg_account_id(a),
                kg_account_plan(a), kg_account_id(a));
    }
    rc = EXIT_OK;
out:
    kg_account_unref(a);
    return rc;
}

static int list_cb(const kg_account *a, void *ud)
{
    struct cli *c = ud;
    char name[1024];
    if (c->json) {
        cli_list_item(c);
        print_json(a);
        return 0;
    }
    printf("%-24s %-12s %-10s %-24s %s\n", kg_account_id(a), kg_account_plan(a),
           kg_account_status_name(kg_account_status_of(a)),
           kg_account_external_id(a) ? kg_account_external_id(a) : "-",
           cli_printable(kg_account_name(a), name, sizeof(name)));
    return 0;
}

static int account_list(struct cli *c, kg_policy *p)
{
    kg_diag d;
    kg_error e;
    if (!c->json)
        printf("%-24s %-12s %-10s %-24s %s\n", "ID", "PLAN", "STATUS",
               "EXTERNAL ID", "NAME");
    e = kg_accounts_list(p, list_cb, c, &d);
    if (e != KG_OK)
        return refused("account list", e, &d);
    cli_list_end(c);
    return EXIT_OK;
}

/*
 * An account moving to another plan takes its keys along: refused (-1,
 * the reason printed) when a live key of it carries a setting the new
 * plan would not enforce (issue 23 item 2: never accepted and ignored).
 */
struct plan_move {
    kg_policy *p;
    const char *account, *plan;
    int refused;
};

static int key_fits_plan(const kg_record *r, void *userdata)
{
    struct plan_move *m = userdata;
    const char *acct = kg_record_account_id(r);

    if (m->refused || acct == NULL || strcmp(acct, m->account) != 0 ||
        kg_record_status(r) == KG_STATUS_REVOKED)
        return 0;
    if (key_enforced_on(m->p, r, m->plan, KEY_HAS_ALL) != 0) {
        fprintf(stderr, "keygate: account update: key %s (%s...) of account %s "
                "carries that setting: change the key first (keygate key update "
                "%s), then move the account\n", kg_record_id(r), kg_record_prefix(r),
                m->account, kg_record_id(r));
        m->refused = 1;
    }
    return 0;
}

/* suspend, resume, update: the account changed and written back. */
static int account_write(struct cli *c, kg_policy *p, unsigned sub,
                         const struct acct_edit *e, kg_account *a)
{
    char what[32], action[32];
    kg_account *before = kg_account_dup(a);
    kg_diag d;
    kg_error err;
    int rc = EXIT_USAGE;

    snprintf(what, sizeof(what), "account %s", sub_name(sub));
    snprintf(action, sizeof(action), "account.%s", sub_name(sub));
    if (before == NULL) {
        fprintf(stderr, "keygate: out of memory\n");
        return EXIT_USAGE;
    }
    if (sub == ACCT_SUSPEND || sub == ACCT_RESUME)
        kg_account_set_status(a, sub == ACCT_SUSPEND ? KG_ACCOUNT_SUSPENDED
                                                     : KG_ACCOUNT_ACTIVE);
    else if (account_apply(e, a) != 0)
        goto out;
    if (sub == ACCT_UPDATE && e->plan != NULL) {
        struct plan_move m = { p, kg_account_id(a), e->plan, 0 };
        /* A store that cannot list keys leaves the check to its writes. */
        (void)kg_keys_list(p, key_fits_plan, &m, &d);
        if (m.refused) {
            cli_audit_account(p, action, NULL, before, a, KG_ERR_INVALID);
            goto out;
        }
    }
    err = kg_accounts_update(p, a, &d);
    cli_audit_account(p, action, NULL, before, a, err);
    if (err != KG_OK) {
        rc = refused(what, err, &d);
        goto out;
    }
    if (sub == ACCT_UPDATE)
        print_account(c, NULL, a);
    else if (c->json)
        printf("{\"id\":\"%s\",\"status\":\"%s\"}\n", kg_account_id(a),
               kg_account_status_name(kg_account_status_of(a)));
    else
        printf("%s %s: its keys %s\n", sub == ACCT_SUSPEND ? "suspended" : "resumed",
               kg_account_id(a), sub == ACCT_SUSPEND
                   ? "are refused (403 account_suspended) until resume"
                   : "work again");
    rc = EXIT_OK;
out:
    kg_account_unref(before);
    return rc;
}

static int account_delete(struct cli *c, kg_policy *p, const struct acct_edit *e,
                          const kg_account *a)
{
    kg_diag d;
    kg_error err = kg_accounts_delete(p, kg_account_id(a), e->with_keys, &d);
    cli_audit_account(p, "account.delete", NULL, a, err == KG_OK ? NULL : a, err);
    /* The refusal for keys names --with-keys (core/accounts.c). */
    if (err != KG_OK)
        return refused("account delete", err, &d);
    if (c->json)
        printf("{\"id\":\"%s\",\"deleted\":true}\n", kg_account_id(a));
    else
        printf("deleted %s%s\n", kg_account_id(a),
               e->with_keys ? "; its keys are revoked" : "");
    return EXIT_OK;
}

int cmd_account(struct cli *c, int argc, char **argv)
{
    struct acct_edit e;
    kg_policy *p;
    kg_account *a = NULL;
    kg_diag d;
    kg_error err;
    size_t s;
    int first, rc = EXIT_USAGE;

    if (cli_wants_help(argc, argv)) {
        account_usage(stdout);
        return EXIT_OK;
    }
    if (argc < 2) {
        account_usage(stderr);
        return EXIT_USAGE;
    }
    for (s = 0; s < NSUBS; s++)
        if (strcmp(argv[1], subs[s].name) == 0)
            break;
    if (s == NSUBS) {
        fprintf(stderr, "keygate: unknown account command '%s'\n", argv[1]);
        account_usage(stderr);
        return EXIT_USAGE;
    }
    memset(&e, 0, sizeof(e));
    first = account_parse(c, subs[s].sub, argc - 1, argv + 1, &e);
    if (first < 0)
        return EXIT_USAGE;
    if (argc - 1 - first != subs[s].operands) {
        account_usage(stderr);
        return EXIT_USAGE;
    }
    p = cli_load_policy(c, NULL);
    if (p == NULL)
        return EXIT_USAGE;
    switch (subs[s].sub) {
    case ACCT_CREATE: rc = account_create(c, p, &e); break;
    case ACCT_LIST: rc = account_list(c, p); break;
    default:
        err = kg_accounts_get(p, argv[1 + first], &a, &d);
        if (err != KG_OK) {
            char what[32];
            snprintf(what, sizeof(what), "account %s", subs[s].name);
            if (subs[s].sub != ACCT_SHOW) {
                snprintf(what, sizeof(what), "account.%s", subs[s].name);
                cli_audit(p, what, argv[1 + first], NULL, NULL, err);
                snprintf(what, sizeof(what), "account %s", subs[s].name);
            }
            rc = refused(what, err, &d);
            break;
        }
        if (subs[s].sub == ACCT_SHOW) {
            print_account(c, p, a);
            rc = EXIT_OK;
        } else if (subs[s].sub == ACCT_DELETE) {
            rc = account_delete(c, p, &e, a);
        } else {
            rc = account_write(c, p, subs[s].sub, &e, a);
        }
        break;
    }
    kg_account_unref(a);
    kg_policy_free(p);
    return rc;
}
