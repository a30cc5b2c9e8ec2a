/*
 * cli_audit.c - the audit log from the command line: what `keygate key`
 * and `keygate account` write after each change they make or are refused
 * (actor "cli:<user name>"), and `keygate audit`, which reads it
 * (docs/audit.md).
 */
#include "config.h"

#include <getopt.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <keygate/audit.h>

#include "cli.h"

/* "cli:<user name>" of the effective user ("cli:uid:<n>" if it has no
 * name). */
static void actor(char out[160])
{
    struct passwd *pw = getpwuid(geteuid());
    if (pw != NULL && pw->pw_name != NULL)
        snprintf(out, 160, "cli:%s", pw->pw_name);
    else
        snprintf(out, 160, "cli:uid:%ld", (long)geteuid());
}

void cli_audit(kg_policy *p, const char *action, const char *target,
               const char *account_id, const char *changes, kg_error result)
{
    char who[160];
    kg_audit_record r;
    kg_diag d;
    kg_error e;

    actor(who);
    memset(&r, 0, sizeof(r));
    r.actor = who;
    r.action = action;
    r.target = target;
    r.account_id = account_id;
    r.changes = changes;
    r.result = kg_audit_result(result);
    e = kg_audit_append(p, &r, &d);
    /* A store without an audit log (a plugin of another ABI, the ldap
     * store without audit_file) is not an error: docs/audit.md. */
    if (e != KG_OK && e != KG_ERR_UNSUPPORTED)
        fprintf(stderr, "keygate: warning: %s %s was %s, but could not be "
                "audited: %s\n", action, target && *target ? target : "-",
                result == KG_OK ? "made" : "refused",
                d.message[0] ? d.message : kg_strerror(e));
}

void cli_audit_key(kg_policy *p, const char *action, const char *target,
                   const kg_record *before, const kg_record *after,
                   kg_error result)
{
    const kg_record *any = after != NULL ? after : before;
    char *changes = kg_audit_changes_records(before, after);
    if (target == NULL && any != NULL)
        target = kg_record_id(any);
    cli_audit(p, action, target, any ? kg_record_account_id(any) : NULL,
              changes, result);
    free(changes);
}

void cli_audit_account(kg_policy *p, const char *action, const char *target,
                       const kg_account *before, const kg_account *after,
                       kg_error result)
{
    const kg_account *any = after != NULL ? after : before;
    char *changes = kg_audit_changes_accounts(before, after);
    if (target == NULL && any != NULL)
        target = kg_account_id(any);
    cli_audit(p, action, target, target, changes, result);
    free(changes);
}

/* ---- keygate audit --------------------------------------------------- */

static void audit_usage(FILE *f)
{
    fputs("usage: keygate audit [--since DURATION|DATE] [--until DURATION|DATE]\n"
          "                     [--account ID] [--target ID] [--action A]\n"
          "                     [--limit N] [--before ID] [--json|--jsonl]\n"
          "The audit log of the policy's key store, newest first: every change\n"
          "made or refused by keygate key/account and the admin API.\n"
          "  --since, --until  from / before then: 24h, 7d (ago) or 2026-12-31\n"
          "                    or 2026-12-31T12:00:00Z\n"
          "  --account ID      the records of one account (its keys' too)\n"
          "  --target ID       the records of one key or account\n"
          "  --action A        key.create, key.update, key.rotate, key.revoke,\n"
          "                    account.create, account.update, account.suspend,\n"
          "                    account.resume, account.delete\n"
          "  --limit N         at most N records (default 100; 0: all)\n"
          "  --before ID       only records older than ID (the next page: the\n"
          "                    last id printed)\n"
          "Records never hold a key or a key's hash.\n", f);
}

/* DURATION (that long ago) or DATE, in Unix milliseconds; -1 if neither. */
static int64_t parse_when(const char *s, int64_t now_s)
{
    int64_t d, t;
    if (kg_duration_parse(s, &d) == KG_OK)
        return (now_s - d) * 1000;
    if (strcmp(s, "never") != 0 && cli_parse_expiry(s, 0, &t) == 0)
        return t * 1000;
    return -1;
}

struct printer {
    struct cli *c;
    int64_t last_id;
    size_t n;
};

static int print_one(const kg_audit_record *r, void *ud)
{
    struct printer *pr = ud;
    char *j;

    pr->last_id = r->id;
    pr->n++;
    if (pr->c->json) {
        cli_list_item(pr->c);
        j = kg_audit_record_to_json(r);
        fputs(j != NULL ? j : "{}", stdout);
        free(j);
    } else {
        char t[32], line[1024];
        int64_t s = r->time_ms / 1000;
        cli_time(s, t);
        printf("%-6lld %-20s %-16s %-16s %-20s %-10s %s\n", (long long)r->id, t,
               cli_printable(r->actor, line, sizeof(line)), r->action,
               r->target && *r->target ? r->target : "-", r->result,
               r->changes ? r->changes : "{}");
    }
    return 0;
}

int cmd_audit(struct cli *c, int argc, char **argv)
{
    static const struct option opts[] = {
        { "since", required_argument, NULL, 's' },
        { "until", required_argument, NULL, 'u' },
        { "account", required_argument, NULL, 'a' },
        { "target", required_argument, NULL, 't' },
        { "action", required_argument, NULL, 'A' },
        { "limit", required_argument, NULL, 'n' },
        { "before", required_argument, NULL, 'b' },
        { "help", no_argument, NULL, 'h' },
        CLI_JSON_OPTIONS,
        { NULL, 0, NULL, 0 },
    };
    kg_audit_query q;
    struct printer pr = { c, 0, 0 };
    int64_t now = kg_context_now(c->ctx) / 1000000;
    kg_policy *p;
    kg_diag d;
    kg_error e;
    char *end;
    int ch, rc;

    if (cli_wants_help(argc, argv)) {
        audit_usage(stdout);
        return EXIT_OK;
    }
    memset(&q, 0, sizeof(q));
    q.limit = 100;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (cli_json_option(c, ch))
            continue;
        switch (ch) {
        case 's':
        case 'u': {
            int64_t t = parse_when(optarg, now);
            if (t < 0) {
                fprintf(stderr, "keygate: audit: --%s: '%s' is not a duration "
                        "(24h, 7d) or a date (2026-12-31)\n",
                        ch == 's' ? "since" : "until", optarg);
                return EXIT_USAGE;
            }
            *(ch == 's' ? &q.since_ms : &q.until_ms) = t;
            break;
        }
        case 'a': q.account_id = optarg; break;
        case 't': q.target = optarg; break;
        case 'A': q.action = optarg; break;
        case 'n':
        case 'b': {
            long long v = strtoll(optarg, &end, 10);
            if (*optarg == '\0' || *end != '\0' || v < 0) {
                fprintf(stderr, "keygate: audit: --%s: '%s' is not a number\n",
                        ch == 'n' ? "limit" : "before", optarg);
                return EXIT_USAGE;
            }
            if (ch == 'n')
                q.limit = (size_t)v;
            else
                q.before_id = v;
            break;
        }
        default:
            audit_usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (optind != argc) {
        audit_usage(stderr);
        return EXIT_USAGE;
    }
    p = cli_load_policy(c, NULL);
    if (p == NULL)
        return EXIT_USAGE;
    if (!c->json)
        printf("%-6s %-20s %-16s %-16s %-20s %-10s %s\n", "ID", "TIME", "ACTOR",
               "ACTION", "TARGET", "RESULT", "CHANGES");
    e = kg_audit_query_run(p, &q, print_one, &pr, &d);
    if (e != KG_OK) {
        cli_print_diag("audit", e, &d);
        rc = e == KG_ERR_UNSUPPORTED ? EXIT_USAGE : EXIT_DENIED;
        goto out;
    }
    cli_list_end(c);
    if (!c->json && q.limit > 0 && pr.n == q.limit)
        fprintf(stderr, "(at most %zu shown: the next page is --before %lld)\n",
                q.limit, (long long)pr.last_id);
    rc = EXIT_OK;
out:
    kg_policy_free(p);
    return rc;
}
