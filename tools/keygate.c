/*
 * keygate - the command line: keys, checks, policies, plugins.
 * All logic lives in libkeygate; this only parses arguments and prints.
 */
#include "config.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void usage(FILE *f)
{
    fputs(
"usage: keygate [--config FILE] [--json|--jsonl] COMMAND ...\n"
"\n"
"Accounts (own keys; their plan and limits are shared by their keys;\n"
"see keygate account --help):\n"
"  account create --name NAME --plan PLAN [--external-id ID] [--limit ...]...\n"
"             [--allow-ip CIDR]... [--permission P]... [--metadata JSON]\n"
"  account list | show ID | update ID ... | suspend ID | resume ID\n"
"  account delete ID [--with-keys]  (--with-keys revokes its keys)\n"
"\n"
"Keys (in the policy's key store):\n"
"  key create --name NAME --account ID [--permission P]... [--allow-ip CIDR]...\n"
"             [--expires DURATION|DATE] [--limit NAME=COUNT/WINDOW[:BURST]]...\n"
"                                 create a key; the key is printed once\n"
"  key create --name NAME --plan PLAN ...\n"
"                                 the same, in a new account of its own on PLAN\n"
"  key list                       list keys (display prefix only, never the key)\n"
"  key show ID                    one key's record\n"
"  key update ID [--name N] [--plan P] [--expires DURATION|DATE|never] [--limit ...]...\n"
"             [--permission P]... [--allow-ip CIDR]...   (these REPLACE the key's list)\n"
"             [--add-permission P]... [--remove-permission P]...\n"
"             [--add-allow-ip CIDR]... [--remove-allow-ip CIDR]...\n"
"             [--clear-permissions] [--clear-ips] [--clear-limits]\n"
"  key revoke ID                  revoke a key now\n"
"  key rotate ID [--grace DURATION]\n"
"                                 new key now; the old one works until the grace ends\n"
"\n"
"Audit log (every change made or refused; see keygate audit --help):\n"
"  audit [--since 24h|7d|DATE] [--until ...] [--account ID] [--target ID]\n"
"        [--action A] [--limit N] [--before ID]   newest first\n"
"\n"
"Checks:\n"
"  check [--header 'Name: value']... [--ip ADDR] [--method M] [--path P] [--repeat N]\n"
"                                 run the policy on a request; exit 0 allowed, 1 denied\n"
"\n"
"Usage and access logs (the policy's usage store; see keygate usage --help):\n"
"  usage [--account ID | --key ID] [--since 24h|7d|DATE] [--until ...]\n"
"        [--by minute|hour|day]   decisions per bucket: allowed, denied by code\n"
"  usage top [--by account|key] [--since 1h] [--limit 20]\n"
"                                 the heaviest accounts or keys\n"
"  logs [--account ID] [--key ID] [--status 429|4xx] [--code C] [--since ...]\n"
"       [--limit N] [--follow]    denials and sampled allowed requests, newest first\n"
"\n"
"Alerts (the policy's alerts: and notifiers:; see keygate alerts --help):\n"
"  alerts list                    the rules and notifiers\n"
"  alerts history [--state S]     the outbox: each alert, its state and attempts\n"
"  alerts test [RULE]             a sample alert to every notifier, now\n"
"  alerts retry ID                send an entry again\n"
"  alerts override ACCOUNT RULE [--threshold N|--off] [--url U --secret-file F]\n"
"                                 an account's own settings (--delete: none)\n"
"\n"
"Policy and plugins:\n"
"  policy check [FILE]            validate a policy (errors as file:line:column)\n"
"  policy explain [FILE]          print each stage's compiled control table\n"
"  plugins                        plugins on the search path, their kind and ABI\n"
"\n"
"Key store schema:\n"
"  db migrate                     bring the key store's schema up to date\n"
"  db status                      show its schema version\n"
"\n"
"Webhooks (see keygate webhook --help):\n"
"  webhook secret new [--scheme v1|v1a]    a new signing secret\n"
"  webhook sign --scheme S --secret K [--id ID] [--timestamp T] < payload\n"
"                                 print the signature headers\n"
"  webhook verify --secret K... --header 'Name: value'... [--tolerance 300] < payload\n"
"                                 exit 0 valid, 1 invalid (with the reason)\n"
"\n"
"Options:\n"
"  --config FILE   the policy (default: $KEYGATE_CONFIG, then " KG_SYSCONFDIR "/keygate.yaml)\n"
"  --json          machine-readable output: one JSON document (a list is an array)\n"
"  --jsonl         the same, a list as JSON Lines (an object a line)\n"
"                  (both are also taken after the command: keygate key list --json)\n"
"  --help, --version\n"
"\n"
"Exit status: 0 success/allowed, 1 denied/failed, 2 usage or policy error.\n",
        f);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        CLI_JSON_OPTIONS,
        { NULL, 0, NULL, 0 },
    };
    struct cli c;
    int ch, rc;
    const char *cmd;

    memset(&c, 0, sizeof(c));
    /* "+": stop at the command; its own options follow it. */
    while ((ch = getopt_long(argc, argv, "+c:hV", opts, NULL)) != -1) {
        if (cli_json_option(&c, ch))
            continue;
        switch (ch) {
        case 'c': c.config = optarg; break;
        case 'h': usage(stdout); return EXIT_OK;
        case 'V': printf("keygate %s\n", kg_version()); return EXIT_OK;
        default: usage(stderr); return EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return EXIT_USAGE;
    }
    cmd = argv[optind];
    if (strcmp(cmd, "help") == 0) {
        usage(stdout);
        return EXIT_OK;
    }
    if (kg_context_new(&c.ctx) != KG_OK) {
        fprintf(stderr, "keygate: out of memory\n");
        return EXIT_USAGE;
    }
    argc -= optind;
    argv += optind;
    optind = 0;  /* reset getopt for the subcommand */
    if (strcmp(cmd, "key") == 0 || strcmp(cmd, "keys") == 0)
        rc = cmd_key(&c, argc, argv);
    else if (strcmp(cmd, "account") == 0 || strcmp(cmd, "accounts") == 0)
        rc = cmd_account(&c, argc, argv);
    else if (strcmp(cmd, "check") == 0)
        rc = cmd_check(&c, argc, argv);
    else if (strcmp(cmd, "policy") == 0)
        rc = cmd_policy(&c, argc, argv);
    else if (strcmp(cmd, "plugins") == 0)
        rc = cmd_plugins(&c, argc, argv);
    else if (strcmp(cmd, "db") == 0)
        rc = cmd_db(&c, argc, argv);
    else if (strcmp(cmd, "webhook") == 0 || strcmp(cmd, "webhooks") == 0)
        rc = cmd_webhook(&c, argc, argv);
    else if (strcmp(cmd, "audit") == 0)
        rc = cmd_audit(&c, argc, argv);
    else if (strcmp(cmd, "usage") == 0)
        rc = cmd_usage(&c, argc, argv);
    else if (strcmp(cmd, "logs") == 0)
        rc = cmd_logs(&c, argc, argv);
    else if (strcmp(cmd, "alerts") == 0)
        rc = cmd_alerts(&c, argc, argv);
    else {
        fprintf(stderr, "keygate: unknown command '%s' (see keygate --help)\n", cmd);
        rc = EXIT_USAGE;
    }
    kg_context_free(c.ctx);
    return rc;
}
