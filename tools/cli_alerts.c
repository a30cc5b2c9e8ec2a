/*
 * cli_alerts.c - `keygate alerts`: the policy's rules and notifiers, the
 * outbox's history, a test alert to every notifier, a retry, and the
 * per-account settings (docs/alerts.md).  The outbox and the settings
 * are the policy's usage store's (kg_policy_outbox).
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <keygate/alerts.h>

#include "cli.h"

enum { OPT_STATE = 0x100, OPT_LIMIT, OPT_BEFORE, OPT_THRESHOLD, OPT_OFF,
       OPT_URL, OPT_SECRET_FILE, OPT_DELETE };

static void alerts_usage(FILE *f)
{
    fputs("usage: keygate alerts list [--json]\n"
          "       keygate alerts history [--state pending|sent|failed] [--limit 50]\n"
          "                              [--before ID] [--json]\n"
          "       keygate alerts test [RULE]\n"
          "       keygate alerts retry ID\n"
          "       keygate alerts override ACCOUNT RULE [--threshold N | --off]\n"
          "                              [--url URL --secret-file FILE]\n"
          "       keygate alerts override ACCOUNT RULE --delete\n"
          "       keygate alerts overrides [--json]\n"
          "list: the policy's rules (name, condition) and notifiers.\n"
          "history: the outbox, newest first: each alert to each notifier, its\n"
          "  state (pending, sent, failed), attempts, the receiver's last status\n"
          "  and error.  --before ID: older than that entry (paging).\n"
          "test: a sample alert (of RULE, or a generic one) to every notifier,\n"
          "  now; exit 1 if one did not take it.\n"
          "retry: send entry ID again at keygated's next round (a failed one\n"
          "  too).\n"
          "override: an account's own figure for a rule (--threshold: the quota\n"
          "  percentage, spike factor, denial count, or days for the key rules),\n"
          "  the rule off for it (--off), or its own receiver (--url, http:// or\n"
          "  https://, and --secret-file, the file its signing secret is read\n"
          "  from at each delivery); --delete removes the setting.\n"
          "overrides: every account's settings.\n"
          "history, retry and the settings need the policy's usage store.\n",
          f);
}

struct aopts {
    const char *state, *limit, *before, *threshold, *url, *secret_file;
    int off, del;
};

static int parse(struct cli *c, int argc, char **argv, struct aopts *o)
{
    static const struct option opts[] = {
        { "state", required_argument, NULL, OPT_STATE },
        { "limit", required_argument, NULL, OPT_LIMIT },
        { "before", required_argument, NULL, OPT_BEFORE },
        { "threshold", required_argument, NULL, OPT_THRESHOLD },
        { "off", no_argument, NULL, OPT_OFF },
        { "url", required_argument, NULL, OPT_URL },
        { "secret-file", required_argument, NULL, OPT_SECRET_FILE },
        { "delete", no_argument, NULL, OPT_DELETE },
        { "help", no_argument, NULL, 'h' },
        CLI_JSON_OPTIONS,
        { NULL, 0, NULL, 0 },
    };
    int ch, idx;

    memset(o, 0, sizeof(*o));
    optind = 0;
    while ((ch = getopt_long(argc, argv, "h", opts, &idx)) != -1) {
        if (cli_json_option(c, ch))
            continue;
        switch (ch) {
        case OPT_STATE: o->state = optarg; break;
        case OPT_LIMIT: o->limit = optarg; break;
        case OPT_BEFORE: o->before = optarg; break;
        case OPT_THRESHOLD: o->threshold = optarg; break;
        case OPT_OFF: o->off = 1; break;
        case OPT_URL: o->url = optarg; break;
        case OPT_SECRET_FILE: o->secret_file = optarg; break;
        case OPT_DELETE: o->del = 1; break;
        case 'h': alerts_usage(stdout); exit(EXIT_OK);
        default: alerts_usage(stderr); return -1;
        }
    }
    return optind;
}

/* The policy's outbox, or a message and NULL. */
static int outbox(kg_policy *p, const struct kg_outbox_ops **ops, void **store)
{
    kg_diag d;
    memset(&d, 0, sizeof(d));
    if (kg_policy_outbox(p, ops, store, &d) != KG_OK) {
        fprintf(stderr, "keygate: %s: the alerts' outbox and settings are "
                "kept in the policy's usage store (docs/alerts.md)\n",
                d.message[0] ? d.message : "no usage store");
        return -1;
    }
    return 0;
}

static int positive(const char *s, int64_t *v_r)
{
    char *end;
    long long v;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < 1)
        return -1;
    *v_r = v;
    return 0;
}

/* ---- list ---------------------------------------------------------------- */

static int cmd_list(struct cli *c, kg_policy *p)
{
    size_t i;
    char desc[512];

    for (i = 0; i < kg_policy_alert_count(p); i++) {
        const char *kind, *name = kg_policy_alert(p, i, &kind, desc, sizeof(desc));
        if (c->json) {
            cli_list_item(c);
            printf("{\"rule\":");
            cli_json_str(stdout, name);
            printf(",\"kind\":");
            cli_json_str(stdout, kind);
            printf(",\"condition\":");
            cli_json_str(stdout, desc);
            printf("}");
        } else {
            printf("rule %-16s %-20s %s\n", name, kind, desc);
        }
    }
    for (i = 0; i < kg_policy_notifier_count(p); i++) {
        const char *mod, *name = kg_policy_notifier(p, i, &mod);
        if (c->json) {
            cli_list_item(c);
            printf("{\"notifier\":");
            cli_json_str(stdout, name);
            printf(",\"module\":");
            cli_json_str(stdout, mod);
            printf("}");
        } else {
            printf("notifier %-12s %s\n", name, mod);
        }
    }
    if (c->json)
        cli_list_end(c);
    return EXIT_OK;
}

/* ---- history ------------------------------------------------------------- */

static int print_entry(const kg_outbox_entry *e, void *ud)
{
    struct cli *c = ud;
    char t[32], nb[200];

    cli_time(e->created, t);
    if (c->json) {
        cli_list_item(c);
        printf("{\"id\":%lld,\"msg_id\":", (long long)e->id);
        cli_json_str(stdout, e->msg_id);
        printf(",\"created\":\"%s\",\"state\":\"%s\",\"attempts\":%d,"
               "\"last_status\":%d,\"notifier\":", t,
               kg_outbox_state_name(e->state), e->attempts, e->last_status);
        cli_json_str(stdout, e->notifier);
        printf(",\"rule\":");
        cli_json_str(stdout, e->rule);
        printf(",\"type\":");
        cli_json_str(stdout, e->type);
        printf(",\"account\":");
        cli_json_str(stdout, e->account_id);
        printf(",\"last_error\":");
        cli_json_str(stdout, e->last_error);
        printf(",\"payload\":%s}", e->payload);
    } else {
        printf("%-6lld %s %-7s %2d %3d %-10s %-14s %-13s %s%s%s\n",
               (long long)e->id, t, kg_outbox_state_name(e->state),
               e->attempts, e->last_status, e->notifier, e->rule,
               strcmp(e->type, "alert.cleared") == 0 ? "cleared" : "fired",
               e->account_id[0] ? e->account_id : "-",
               e->last_error[0] ? "  " : "",
               cli_printable(e->last_error, nb, sizeof(nb)));
    }
    return 0;
}

static int cmd_history(struct cli *c, kg_policy *p, const struct aopts *o)
{
    const struct kg_outbox_ops *ops;
    void *store;
    int64_t limit = 50, before = 0;
    int state = -1;
    kg_diag d;
    kg_error e;

    if (o->state != NULL) {
        for (state = 0; state < 3; state++)
            if (strcmp(o->state, kg_outbox_state_name(state)) == 0)
                break;
        if (state == 3)
            return cli_bad("--state must be pending, sent or failed, not '%s'",
                       o->state);
    }
    if (o->limit != NULL && positive(o->limit, &limit) != 0)
        return cli_bad("--limit must be a positive number");
    if (o->before != NULL && positive(o->before, &before) != 0)
        return cli_bad("--before must be an entry's id");
    if (outbox(p, &ops, &store) != 0)
        return EXIT_USAGE;
    if (!c->json)
        printf("%-6s %-20s %-7s %2s %3s %-10s %-14s %-13s %s\n", "ID", "CREATED",
               "STATE", "N", "HTTP", "NOTIFIER", "RULE", "TYPE", "ACCOUNT");
    memset(&d, 0, sizeof(d));
    e = ops->list(store, state, before, (size_t)limit, print_entry, c, &d);
    if (c->json)
        cli_list_end(c);
    if (e != KG_OK) {
        cli_print_diag("alerts history", e, &d);
        return EXIT_DENIED;
    }
    return EXIT_OK;
}

/* ---- test, retry --------------------------------------------------------- */

static void test_cb(const char *notifier, kg_error e, int status,
                    const char *message, void *ud)
{
    (void)ud;
    if (e == KG_OK)
        printf("%s: delivered%s", notifier, status ? "" : "\n");
    else
        printf("%s: not delivered (%s)%s", notifier,
               message && message[0] ? message : kg_strerror(e),
               status ? "" : "\n");
    if (status)
        printf(" (HTTP %d)\n", status);
}

static int cmd_test(kg_policy *p, const char *rule)
{
    kg_diag d;
    kg_error e;
    memset(&d, 0, sizeof(d));
    e = kg_alerts_test(p, rule, test_cb, NULL, &d);
    if (e == KG_ERR_NOT_FOUND && d.message[0]) {
        cli_print_diag("alerts test", e, &d);
        return EXIT_USAGE;
    }
    return e == KG_OK ? EXIT_OK : EXIT_DENIED;
}

struct got {
    int found;
    int attempts;
};

static int got_cb(const kg_outbox_entry *e, void *ud)
{
    struct got *g = ud;
    g->found = 1;
    g->attempts = e->attempts;
    return 0;
}

static int cmd_retry(struct cli *c, kg_policy *p, const char *id_s)
{
    const struct kg_outbox_ops *ops;
    void *store;
    struct got g = { 0, 0 };
    int64_t id;
    kg_diag d;
    kg_error e;

    if (positive(id_s, &id) != 0)
        return cli_bad("retry: '%s' is not an entry's id (see keygate alerts "
                   "history)", id_s);
    if (outbox(p, &ops, &store) != 0)
        return EXIT_USAGE;
    memset(&d, 0, sizeof(d));
    if ((e = ops->get(store, id, got_cb, &g, &d)) == KG_OK)
        e = ops->mark(store, id, KG_OUTBOX_PENDING, g.attempts,
                      kg_context_now(c->ctx) / 1000000, 0,
                      "retried by hand", &d);
    if (e != KG_OK) {
        cli_print_diag("alerts retry", e, &d);
        return e == KG_ERR_NOT_FOUND ? EXIT_DENIED : EXIT_USAGE;
    }
    printf("entry %lld: pending, sent at keygated's next round\n",
           (long long)id);
    return EXIT_OK;
}

/* ---- per-account settings ------------------------------------------------- */

static int url_ok(const char *u)
{
    const char *rest = strncasecmp(u, "https://", 8) == 0 ? u + 8 :
                       strncasecmp(u, "http://", 7) == 0 ? u + 7 : NULL;
    return rest != NULL && rest[0] != '\0' && rest[0] != '/' &&
           strpbrk(u, " \t\r\n") == NULL;
}

static int cmd_override(kg_policy *p, const char *account, const char *rule,
                        const struct aopts *o)
{
    const struct kg_outbox_ops *ops;
    kg_alert_override ov;
    void *store;
    size_t i;
    kg_diag d;
    kg_error e;

    for (i = 0; i < kg_policy_alert_count(p); i++)
        if (strcmp(kg_policy_alert(p, i, NULL, NULL, 0), rule) == 0)
            break;
    if (i == kg_policy_alert_count(p))
        return cli_bad("override: the policy has no rule '%s' (see keygate "
                   "alerts list)", rule);
    if (account[0] == '\0')
        return cli_bad("override: an account id is needed");
    memset(&ov, 0, sizeof(ov));
    ov.account_id = account;
    ov.rule = rule;
    if (!o->del) {
        if (o->off && o->threshold)
            return cli_bad("override: --off or --threshold, not both");
        if (o->threshold != NULL) {
            char *end;
            ov.threshold = strtod(o->threshold, &end);
            if (end == o->threshold || *end || !(ov.threshold > 0) ||
                ov.threshold > 1e12)
                return cli_bad("--threshold must be a positive number");
        }
        if (o->off)
            ov.threshold = -1;
        if ((o->url == NULL) != (o->secret_file == NULL))
            return cli_bad("override: --url and --secret-file go together");
        if (o->url != NULL && !url_ok(o->url))
            return cli_bad("--url must be an http:// or https:// URL with a "
                       "host, not '%s'", o->url);
        if (o->secret_file != NULL && access(o->secret_file, R_OK) != 0)
            return cli_bad("--secret-file %s cannot be read: %s", o->secret_file,
                       strerror(errno));
        if (o->secret_file != NULL && o->secret_file[0] != '/')
            return cli_bad("--secret-file must be an absolute path (keygated "
                       "reads it)");
        if (ov.threshold == 0 && o->url == NULL)
            return cli_bad("override: give --threshold, --off, --url or --delete");
        ov.url = o->url;
        ov.secret_file = o->secret_file;
    }
    if (outbox(p, &ops, &store) != 0)
        return EXIT_USAGE;
    memset(&d, 0, sizeof(d));
    e = o->del ? ops->override_delete(store, account, rule, &d)
               : ops->override_put(store, &ov, &d);
    if (e != KG_OK) {
        cli_print_diag("alerts override", e, &d);
        return e == KG_ERR_NOT_FOUND ? EXIT_DENIED : EXIT_USAGE;
    }
    printf("%s %s: %s\n", account, rule, o->del ? "the rule's own settings" :
           "saved (keygated reads it at its next round)");
    return EXIT_OK;
}

static int print_override(const kg_alert_override *o, void *ud)
{
    struct cli *c = ud;
    if (c->json) {
        cli_list_item(c);
        printf("{\"account\":");
        cli_json_str(stdout, o->account_id);
        printf(",\"rule\":");
        cli_json_str(stdout, o->rule);
        printf(",\"threshold\":%.17g,\"url\":", o->threshold);
        cli_json_str(stdout, o->url);
        printf(",\"secret_file\":");
        cli_json_str(stdout, o->secret_file);
        printf("}");
    } else {
        char th[40];
        if (o->threshold < 0)
            snprintf(th, sizeof(th), "off");
        else if (o->threshold > 0)
            snprintf(th, sizeof(th), "%g", o->threshold);
        else
            snprintf(th, sizeof(th), "-");
        printf("%-24s %-16s %-8s %s\n", o->account_id, o->rule, th,
               o->url[0] ? o->url : "-");
    }
    return 0;
}

static int cmd_overrides(struct cli *c, kg_policy *p)
{
    const struct kg_outbox_ops *ops;
    void *store;
    kg_diag d;
    kg_error e;

    if (outbox(p, &ops, &store) != 0)
        return EXIT_USAGE;
    memset(&d, 0, sizeof(d));
    e = ops->override_list(store, print_override, c, &d);
    if (c->json)
        cli_list_end(c);
    if (e != KG_OK) {
        cli_print_diag("alerts overrides", e, &d);
        return EXIT_DENIED;
    }
    return EXIT_OK;
}

int cmd_alerts(struct cli *c, int argc, char **argv)
{
    struct aopts o;
    const char *sub;
    kg_policy *p;
    int first, rc, n;

    if (cli_wants_help(argc, argv) || argc < 2) {
        alerts_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : EXIT_OK;
    }
    sub = argv[1];
    first = parse(c, argc - 1, argv + 1, &o);
    if (first < 0)
        return EXIT_USAGE;
    first += 1;   /* argv[first..argc): the subcommand's operands */
    n = argc - first;
    if (strcmp(sub, "list") && strcmp(sub, "history") && strcmp(sub, "test") &&
        strcmp(sub, "retry") && strcmp(sub, "override") &&
        strcmp(sub, "overrides"))
        return cli_bad("alerts: unknown command '%s' (see keygate alerts --help)",
                   sub);
    if ((!strcmp(sub, "retry") && n != 1) || (!strcmp(sub, "test") && n > 1) ||
        (!strcmp(sub, "override") && n != 2) ||
        ((!strcmp(sub, "list") || !strcmp(sub, "history") ||
          !strcmp(sub, "overrides")) && n != 0))
        return cli_bad("alerts %s: wrong arguments (see keygate alerts --help)",
                   sub);
    if ((p = cli_load_policy(c, cli_config_path(c))) == NULL)
        return EXIT_USAGE;
    if (!strcmp(sub, "list"))
        rc = cmd_list(c, p);
    else if (!strcmp(sub, "history"))
        rc = cmd_history(c, p, &o);
    else if (!strcmp(sub, "test"))
        rc = cmd_test(p, n ? argv[first] : NULL);
    else if (!strcmp(sub, "retry"))
        rc = cmd_retry(c, p, argv[first]);
    else if (!strcmp(sub, "override"))
        rc = cmd_override(p, argv[first], argv[first + 1], &o);
    else
        rc = cmd_overrides(c, p);
    kg_policy_free(p);
    return rc;
}
