/* cli_key.h - what `keygate key` shares between its commands (cli_key.c)
 * and its options and record edits (cli_key_edit.c). */
#ifndef KEYGATE_CLI_KEY_H
#define KEYGATE_CLI_KEY_H

#include "cli.h"

/* The sub-commands, as bits: which of them takes an option. */
enum {
    KEY_CREATE = 1,
    KEY_UPDATE = 2,
    KEY_ROTATE = 4,
    KEY_LIST = 8,
    KEY_SHOW = 16,
    KEY_REVOKE = 32
};

#define KEY_MAX_ITEMS 64

struct key_strs {
    const char *v[KEY_MAX_ITEMS];
    size_t n;
};

/* Append v (the value of --opt) to l; -1 (said) past KEY_MAX_ITEMS. */
int key_strs_push(struct key_strs *l, const char *v, const char *opt);

/* An edit of a list of the record (permissions, allowed networks):
 * replace it (set, or clear), or add and remove items. */
struct key_list_edit {
    struct key_strs set, add, remove;
    int clear;
};

/* The options of one `keygate key ...` command line. */
struct key_edit {
    const char *name, *plan, *expires;
    const char *account;   /* create: --account, the account's id or external id */
    struct key_list_edit perms, ips;
    struct key_strs limits;
    int clear_limits;
    int64_t grace;
    int have_grace;
};

void key_usage(FILE *f);

/*
 * Parse the options of sub-command `sub` (a KEY_* bit) from argv[1..]
 * (argv[0] is the sub-command) into e; --json and --jsonl set c->json.
 * An option the sub-command does not take is refused, not ignored.
 * Returns the index of the first operand, or -1 (the reason printed).
 */
int key_parse(struct cli *c, unsigned sub, int argc, char **argv,
              struct key_edit *e);

/*
 * Apply e to r.  Lists given with --permission / --allow-ip replace the
 * record's list, and that is said on stderr with the list it was.
 * 0, or -1 with the reason printed (a bad limit or expiry, an item to
 * remove that the key does not have).
 */
int key_apply(struct cli *c, const struct key_edit *e, kg_record *r);

/* What key_enforced() looks at. */
enum { KEY_HAS_PERMS = 1, KEY_HAS_IPS = 2, KEY_HAS_LIMITS = 4, KEY_HAS_ALL = 7 };

/* What of the record e changes (KEY_HAS_ALL when it changes the plan). */
unsigned key_touched(const struct key_edit *e);

/*
 * Refuse (-1, the reason printed) a record whose permissions, allowed
 * networks or limit overrides (those of `what`) nothing in its plan
 * would enforce: no `scope` module, no `ipacl` module, no limit of that
 * name.  An unknown plan passes (kg_keys_create() names the plans).
 */
int key_enforced(kg_policy *p, const kg_record *r, unsigned what);
/* The same against `plan` (an account moving its keys to it). */
int key_enforced_on(kg_policy *p, const kg_record *r, const char *plan,
                    unsigned what);

#endif
