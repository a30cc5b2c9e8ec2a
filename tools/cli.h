/* cli.h - shared helpers of the `keygate` command line. */
#ifndef KEYGATE_CLI_H
#define KEYGATE_CLI_H

#include <stdio.h>

#include <keygate/keygate.h>
#include <keygate/plugin.h>

/* Exit codes, the same for every command. */
#define EXIT_OK 0
#define EXIT_DENIED 1   /* check denied, verify failed, not found */
#define EXIT_USAGE 2    /* usage, policy or configuration error */

struct cli {
    const char *config;   /* NULL: KEYGATE_CONFIG, then the installed one */
    int json;
    kg_context *ctx;
};

const char *cli_config_path(struct cli *c);
/* Whether a command's arguments (argv[1] on) ask for its usage: --help or
 * -h anywhere, answered before a policy is loaded or a FILE opened. */
int cli_wants_help(int argc, char **argv);
/* Load the policy or print why (file:line:column) and return NULL. */
kg_policy *cli_load_policy(struct cli *c, const char *path);
void cli_print_diag(const char *what, kg_error e, const kg_diag *d);
void cli_json_str(FILE *f, const char *s);
int cli_parse_expiry(const char *s, int64_t now, int64_t *t_r);
int cli_parse_limit(const char *s, kg_record *r);
void cli_time(int64_t t, char out[32]);

int cmd_key(struct cli *c, int argc, char **argv);
int cmd_check(struct cli *c, int argc, char **argv);
int cmd_policy(struct cli *c, int argc, char **argv);
int cmd_plugins(struct cli *c, int argc, char **argv);
int cmd_db(struct cli *c, int argc, char **argv);
int cmd_webhook(struct cli *c, int argc, char **argv);

#endif
