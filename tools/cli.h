/* cli.h - shared helpers of the `keygate` command line. */
#ifndef KEYGATE_CLI_H
#define KEYGATE_CLI_H

#include <getopt.h>
#include <stdio.h>

#include <keygate/keygate.h>
#include <keygate/plugin.h>

/* Exit codes, the same for every command. */
#define EXIT_OK 0
#define EXIT_DENIED 1   /* check denied, verify failed, not found */
#define EXIT_USAGE 2    /* usage, policy or configuration error */

/* Output forms (struct cli's json). */
enum { CLI_TEXT = 0, CLI_JSON = 1, CLI_JSONL = 2 };

struct cli {
    const char *config;   /* NULL: KEYGATE_CONFIG, then the installed one */
    int json;             /* CLI_TEXT, CLI_JSON or CLI_JSONL */
    size_t listed;        /* items of the list being printed (cli_list_*) */
    kg_context *ctx;
};

/*
 * --json and --jsonl are taken wherever they stand, before the command
 * or among its options (`keygate key list --json`): every command's
 * option table ends with CLI_JSON_OPTIONS and hands what getopt_long()
 * returns to cli_json_option() first.
 */
#define CLI_OPT_JSON 0x4a01
#define CLI_OPT_JSONL 0x4a02
#define CLI_JSON_OPTIONS                                                   \
    { "json", no_argument, NULL, CLI_OPT_JSON },                           \
    { "jsonl", no_argument, NULL, CLI_OPT_JSONL }
/* 1 (and c->json set) if ch is CLI_OPT_JSON or CLI_OPT_JSONL, else 0. */
int cli_json_option(struct cli *c, int ch);
/* Which sub-commands (a bit each) take an option, by its getopt code. */
struct cli_takes {
    int code;
    unsigned subs;
};
/* 0 if sub-command `sub` takes option ch (or no line of takes[0..n)
 * names it); else -1, with "keygate CMD SUB does not take --NAME"
 * printed, NAME found in the getopt table opts. */
int cli_option_taken(const struct cli_takes *takes, size_t n,
                     const struct option *opts, int ch, unsigned sub,
                     const char *cmd, const char *sub_name);
/* For a command that takes no option with a value: take --json and
 * --jsonl out of argv[1..argc) (up to a "--"); returns the new argc. */
int cli_take_json(struct cli *c, int argc, char **argv);

/*
 * A list of items: cli_list_item() before each, cli_list_end() after the
 * last.  Under --json the items make one JSON array (an item a line),
 * under --jsonl an object a line (JSON Lines); in text nothing is added.
 * Items are printed without their newline.
 */
void cli_list_item(struct cli *c);
void cli_list_end(struct cli *c);

const char *cli_config_path(struct cli *c);
/* Whether a command's arguments (argv[1] on) ask for its usage: --help or
 * -h anywhere, answered before a policy is loaded or a FILE opened. */
int cli_wants_help(int argc, char **argv);
/* Load the policy or print why (file:line:column) and return NULL. */
kg_policy *cli_load_policy(struct cli *c, const char *path);
void cli_print_diag(const char *what, kg_error e, const kg_diag *d);
/* "keygate: <message>" on stderr; returns EXIT_USAGE. */
int cli_bad(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void cli_json_str(FILE *f, const char *s);
int cli_parse_expiry(const char *s, int64_t now, int64_t *t_r);
/* NAME=COUNT/WINDOW[:BURST] (hour=100000/1h:500): 0, or -1 if malformed. */
struct cli_limit {
    char name[128];
    int64_t count, window, burst;
};
int cli_parse_limit_spec(const char *s, struct cli_limit *l);
/* The same, added to r's limit overrides. */
int cli_parse_limit(const char *s, kg_record *r);
void cli_time(int64_t t, char out[32]);
/* s as one line of text: s itself, or a copy in buf with each control
 * character written \xNN (a name from a store that did not check it;
 * truncated to fit). */
const char *cli_printable(const char *s, char *buf, size_t size);

/*
 * The audit log (cli_audit.c): a record of a change made (result KG_OK)
 * or refused, by actor "cli:<user name>"; its changes from before to
 * after (NULL: did not exist), target and account from them unless
 * target is given.  A record that cannot be written is a warning on
 * stderr (the change stands); a store without an audit log, nothing.
 */
void cli_audit(kg_policy *p, const char *action, const char *target,
               const char *account_id, const char *changes, kg_error result);
void cli_audit_key(kg_policy *p, const char *action, const char *target,
                   const kg_record *before, const kg_record *after,
                   kg_error result);
void cli_audit_account(kg_policy *p, const char *action, const char *target,
                       const kg_account *before, const kg_account *after,
                       kg_error result);

int cmd_audit(struct cli *c, int argc, char **argv);
int cmd_key(struct cli *c, int argc, char **argv);
int cmd_account(struct cli *c, int argc, char **argv);
int cmd_check(struct cli *c, int argc, char **argv);
int cmd_policy(struct cli *c, int argc, char **argv);
int cmd_plugins(struct cli *c, int argc, char **argv);
int cmd_db(struct cli *c, int argc, char **argv);
int cmd_webhook(struct cli *c, int argc, char **argv);
int cmd_usage(struct cli *c, int argc, char **argv);
int cmd_alerts(struct cli *c, int argc, char **argv);
int cmd_logs(struct cli *c, int argc, char **argv);

#endif
