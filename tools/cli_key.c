/* cli_key.c - `keygate key create|list|show|update|revoke|rotate`. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <keygate/audit.h>

#include "cli_key.h"

void key_usage(FILE *f)
{
    fputs("usage: keygate key create --name NAME --account ID [--permission P]...\n"
          "                  [--allow-ip CIDR]... [--expires DURATION|DATE]\n"
          "                  [--limit NAME=COUNT/WINDOW[:BURST]]...\n"
          "       keygate key create --name NAME --plan PLAN ...  (a new account of\n"
          "                  its own on PLAN, said on stderr)\n"
          "       keygate key list\n"
          "       keygate key show ID\n"
          "       keygate key update ID [--name N] [--plan P] [--expires DURATION|DATE|never]\n"
          "                  [--permission P]... | [--add-permission P]... [--remove-permission P]...\n"
          "                  [--allow-ip CIDR]... | [--add-allow-ip CIDR]... [--remove-allow-ip CIDR]...\n"
          "                  [--limit ...]... [--clear-permissions] [--clear-ips] [--clear-limits]\n"
          "       keygate key revoke ID\n"
          "       keygate key rotate ID [--grace DURATION]\n"
          "Every command takes --json (one JSON document; key list: an array) or\n"
          "--jsonl (key list: an object a line), before or after its arguments.\n"
          "NAME: 1 to 128 bytes of one-line text.\n"
          "--account: the account's id or external id; the key takes its plan\n"
          "  (--plan is refused with it), and its permissions and networks must\n"
          "  lie within the account's (keygate account --help).\n"
          "update: --permission and --allow-ip REPLACE the key's whole list (the\n"
          "  old one is printed); --add-permission, --remove-permission,\n"
"  --add-allow-ip and --remove-allow-ip change one entry.\n"
          "--permission needs a plan that runs the scope module, --allow-ip one\n"
          "  that runs ipacl, --limit NAME=... one that has a limit NAME: a\n"
          "  setting the plan would not enforce is refused.\n"
          "STATUS: active, expired (its expiry has passed: checks answer\n"
          "  key_expired) or revoked.\n"
          "DURATION: 30s, 15m, 12h, 30d, 2w.  DATE: 2026-12-31 or 2026-12-31T12:00:00Z.\n",
          f);
}

/* The key's plan: its account's, if it has one; "-" if none. */
static const char *key_plan(const kg_record *r)
{
    const kg_account *a = kg_record_account(r);
    const char *plan = a != NULL ? kg_account_plan(a) : kg_record_plan(r);
    /* none: a revoked key of an account since deleted */
    return plan != NULL ? plan : "-";
}

/* What a check would make of the key now: active, expired, revoked or
 * rotating (replaced by a rotation, valid until its grace ends). */
static const char *key_status(struct cli *c, const kg_record *r)
{
    return kg_record_state(r, kg_context_now(c->ctx) / 1000000);
}

/* The record as JSON (no newline), its "status" what a check would make
 * of it now, with a rotation's replaced_by / replaces. */
static void print_json(struct cli *c, const kg_record *r)
{
    char *j = kg_record_to_json_at(r, kg_context_now(c->ctx) / 1000000);
    fputs(j != NULL ? j : "{}", stdout);
    free(j);
}

static void print_record(struct cli *c, const kg_record *r)
{
    size_t i;
    char t[32], name[1024];
    if (c->json) {
        print_json(c, r);
        putchar('\n');
        return;
    }
    printf("id:          %s\n", kg_record_id(r));
    printf("name:        %s\n", cli_printable(kg_record_name(r), name, sizeof(name)));
    printf("prefix:      %s...\n", kg_record_prefix(r) ? kg_record_prefix(r) : "");
    printf("account:     %s\n", kg_record_account_id(r) ? kg_record_account_id(r) : "");
    printf("plan:        %s\n", key_plan(r));
    printf("status:      %s\n", key_status(c, r));
    if (kg_record_replaced_by(r))
        printf("replaced by: %s\n", kg_record_replaced_by(r));
    if (kg_record_replaces(r))
        printf("replaces:    %s\n", kg_record_replaces(r));
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

/* Refuse --plan for a key of an account, pointing at the account. */
static void plan_is_accounts(const char *sub, const char *opt, const char *id,
                             const char *acct_plan, const char *plan)
{
    fprintf(stderr, "keygate: key %s: %s: a key is on its account's plan; "
            "account %s is on plan '%s' (to change it: keygate account update "
            "%s --plan %s)\n", sub, opt, id, acct_plan ? acct_plan : "-", id, plan);
}

/*
 * --account: the key joins that account and takes its plan (r's plan
 * set to it, so that key_enforced() reads the right plan).  --plan with
 * --account is refused, pointing at the account.  0, or the exit status
 * with the reason printed.
 */
static int key_account(kg_policy *p, const struct key_edit *e, kg_record *r)
{
    kg_account *a = NULL;
    kg_diag d;
    kg_error err = kg_accounts_get(p, e->account, &a, &d);
    int rc = EXIT_USAGE;

    if (err != KG_OK) {
        fprintf(stderr, "keygate: key create: --account %s: %s\n", e->account,
                err == KG_ERR_NOT_FOUND ? "no such account (keygate account list)"
                                        : d.message[0] ? d.message : kg_strerror(err));
        return EXIT_USAGE;
    }
    if (e->plan != NULL) {
        plan_is_accounts("create", "--plan with --account", kg_account_id(a),
                         kg_account_plan(a), e->plan);
        goto out;
    }
    if (kg_record_set_account_id(r, kg_account_id(a)) != KG_OK ||
        kg_record_set_plan(r, kg_account_plan(a)) != KG_OK) {
        fprintf(stderr, "keygate: out of memory\n");
        goto out;
    }
    rc = EXIT_OK;
out:
    kg_account_unref(a);
    return rc;
}

static int key_create(struct cli *c, kg_policy *p, const struct key_edit *e)
{
    kg_record *r, *stored = NULL;
    char key[KG_KEY_MAX];
    const char *acct;
    kg_diag d;
    kg_error err;
    int rc = EXIT_USAGE;

    if (e->name == NULL || (e->plan == NULL && e->account == NULL)) {
        fprintf(stderr, "keygate: key create needs --name and --plan PLAN (the "
                "key then gets an account of its own) or --name and --account ID\n");
        return EXIT_USAGE;
    }
    r = kg_record_new();
    if (r == NULL || key_apply(c, e, r) != 0)
        goto out;
    if (e->account != NULL && (rc = key_account(p, e, r)) != EXIT_OK)
        goto out;
    rc = EXIT_USAGE;
    if (key_enforced(p, r, KEY_HAS_ALL) != 0)
        goto out;
    err = kg_keys_create(p, r, key, sizeof(key), &d);
    if (err != KG_OK) {
        /* what was asked for; the id only if the record got one */
        cli_audit_key(p, "key.create", kg_record_id(r) ? NULL : "", NULL, r, err);
        cli_print_diag("key create", err, &d);
        rc = err == KG_ERR_INVALID ? EXIT_USAGE : EXIT_DENIED;
        goto out;
    }
    /* The account a store made for a key created without one is on the
     * stored record (plugin.h kg_keys_create). */
    if (kg_keys_get(p, kg_record_id(r), &stored, &d) != KG_OK)
        stored = kg_record_ref(r);
    acct = kg_record_account_id(stored);
    /* The account of its own the store made for the key is a change too. */
    if (e->account == NULL && acct != NULL) {
        kg_account *a = NULL;
        if (kg_accounts_get(p, acct, &a, &d) == KG_OK)
            cli_audit_account(p, "account.create", NULL, NULL, a, KG_OK);
        kg_account_unref(a);
    }
    cli_audit_key(p, "key.create", NULL, NULL, stored, KG_OK);
    if (c->json) {
        char *j = kg_record_to_json(stored);
        /* {"id":...,"key":...,...record} */
        printf("{\"key\":\"%s\",%s\n", key, j ? j + 1 : "}");
        free(j);
    } else {
        printf("%s\n", key);
        fprintf(stderr, "created key %s (%s...) on plan %s.\n"
                "The key is shown only this once: store it now.\n",
                kg_record_id(r), kg_record_prefix(r), key_plan(stored));
    }
    if (e->account == NULL && acct != NULL)
        fprintf(stderr, "created account %s for it, on plan %s (no --account "
                "given); more keys join it with --account %s\n", acct,
                key_plan(stored), acct);
    kg_wipe(key, sizeof(key));
    rc = EXIT_OK;
out:
    kg_record_unref(stored);
    kg_record_unref(r);
    return rc;
}

static int list_cb(const kg_record *r, void *ud)
{
    struct cli *c = ud;
    char t[32], lu[32], name[1024];
    if (c->json) {
        cli_list_item(c);
        print_json(c, r);
        return 0;
    }
    cli_time(kg_record_expires(r), t);
    cli_time(kg_record_last_used(r), lu);
    printf("%-20s %-12s %-12s %-8s %-21s %-21s %-21s %s", kg_record_id(r),
           kg_record_prefix(r) ? kg_record_prefix(r) : "", key_plan(r),
           key_status(c, r), kg_record_expires(r) ? t : "never",
           kg_record_last_used(r) ? lu : "never",
           kg_record_account_id(r) ? kg_record_account_id(r) : "-",
           cli_printable(kg_record_name(r), name, sizeof(name)));
    /* A rotation's two keys name each other. */
    if (kg_record_replaced_by(r))
        printf(" (replaced by %s)", kg_record_replaced_by(r));
    if (kg_record_replaces(r))
        printf(" (replaces %s)", kg_record_replaces(r));
    putchar('\n');
    return 0;
}

static int key_list(struct cli *c, kg_policy *p)
{
    kg_diag d;
    kg_error e;
    if (!c->json)
        printf("%-20s %-12s %-12s %-8s %-21s %-21s %-21s %s\n", "ID", "PREFIX",
               "PLAN", "STATUS", "EXPIRES", "LAST USED", "ACCOUNT", "NAME");
    e = kg_keys_list(p, list_cb, c, &d);
    if (e != KG_OK) {
        cli_print_diag("key list", e, &d);
        return EXIT_DENIED;
    }
    cli_list_end(c);
    return EXIT_OK;
}

/* The key to show or change (`action`: the audit record's action of a
 * change refused because the key cannot be read; NULL for show). */
static int with_record(kg_policy *p, const char *id, const char *action,
                       kg_record **r_r)
{
    kg_diag d;
    kg_error e = kg_keys_get(p, id, r_r, &d);
    if (e != KG_OK) {
        if (action != NULL)
            cli_audit(p, action, id, NULL, NULL, e);
        cli_print_diag("key", e, &d);
        return e == KG_ERR_NOT_FOUND ? EXIT_DENIED : EXIT_USAGE;
    }
    return EXIT_OK;
}

/* The library revokes (kg_keys_revoke); the audit entry gets the
 * record as it was and with the status it now has. */
static int key_revoke(struct cli *c, kg_policy *p, kg_record *r)
{
    kg_record *before = kg_record_dup(r);
    kg_diag d;
    kg_error e;
    e = before == NULL ? KG_ERR_NOMEM : kg_keys_revoke(p, kg_record_id(r), &d);
    kg_record_set_status(r, KG_STATUS_REVOKED);
    if (before != NULL)
        cli_audit_key(p, "key.revoke", NULL, before, r, e);
    kg_record_unref(before);
    if (e != KG_OK) {
        cli_print_diag("key revoke", e, &d);
        return EXIT_DENIED;
    }
    if (c->json)
        printf("{\"id\":\"%s\",\"status\":\"revoked\"}\n", kg_record_id(r));
    else
        printf("revoked %s (%s...)\n", kg_record_id(r), kg_record_prefix(r));
    return EXIT_OK;
}

static int key_update(struct cli *c, kg_policy *p, const struct key_edit *e,
                      kg_record *r)
{
    kg_record *before = NULL;
    kg_diag d;
    kg_error err;
    int rc = EXIT_USAGE;
    /* Before key_enforced(), which would hold the key against a plan
     * it cannot move to. */
    if (e->plan != NULL && kg_record_account_id(r) != NULL) {
        plan_is_accounts("update", "--plan", kg_record_account_id(r),
                         kg_record_account(r) ? kg_account_plan(kg_record_account(r)) : NULL,
                         e->plan);
        cli_audit(p, "key.update", kg_record_id(r), kg_record_account_id(r),
                  NULL, KG_ERR_INVALID);
        return EXIT_USAGE;
    }
    /* Only what this update sets is held against the plan: a key
     * renamed keeps what it had. */
    if ((before = kg_record_dup(r)) == NULL) {
        fprintf(stderr, "keygate: out of memory\n");
        return EXIT_USAGE;
    }
    if (key_apply(c, e, r) != 0)
        goto out;
    /* A setting the plan would not enforce is a refused change. */
    if (key_enforced(p, r, key_touched(e)) != 0) {
        cli_audit_key(p, "key.update", NULL, before, r, KG_ERR_INVALID);
        goto out;
    }
    err = kg_keys_update(p, r, &d);
    cli_audit_key(p, "key.update", NULL, before, r, err);
    if (err != KG_OK) {
        cli_print_diag("key update", err, &d);
        rc = err == KG_ERR_INVALID ? EXIT_USAGE : EXIT_DENIED;
        goto out;
    }
    print_record(c, r);
    rc = EXIT_OK;
out:
    kg_record_unref(before);
    return rc;
}

static int key_rotate(struct cli *c, kg_policy *p, const struct key_edit *e,
                      const char *id)
{
    char key[KG_KEY_MAX];
    kg_record *nr = NULL, *before = NULL, *after = NULL;
    kg_diag d, d2;
    kg_error err;

    /* The audit record is the old key's change (its expiry or status,
     * and replaced_by: the new key's id). */
    (void)kg_keys_get(p, id, &before, &d2);
    err = kg_keys_rotate(p, id, e->have_grace ? e->grace : 0, key, sizeof(key),
                         &nr, &d);
    if (err == KG_OK && kg_keys_get(p, id, &after, &d2) != KG_OK)
        after = NULL;
    cli_audit_key(p, "key.rotate", id, before, err == KG_OK ? after : before, err);
    kg_record_unref(before);
    kg_record_unref(after);
    if (err != KG_OK) {
        cli_print_diag("key rotate", err, &d);
        return err == KG_ERR_NOT_FOUND ? EXIT_DENIED : EXIT_USAGE;
    }
    if (c->json) {
        /* The new key's record names the key it replaces ("replaces"). */
        char *j = kg_record_to_json_at(nr, kg_context_now(c->ctx) / 1000000);
        printf("{\"key\":\"%s\",%s\n", key, j ? j + 1 : "}");
        free(j);
    } else {
        printf("%s\n", key);
        fprintf(stderr, "new key %s (%s...) replaces %s, which %s.\n"
                "The key is shown only this once: store it now.\n",
                kg_record_id(nr), kg_record_prefix(nr), id,
                e->have_grace && e->grace > 0 ? "stays valid until the grace ends"
                                              : "is revoked");
    }
    kg_wipe(key, sizeof(key));
    kg_record_unref(nr);
    return EXIT_OK;
}

int cmd_key(struct cli *c, int argc, char **argv)
{
    static const struct {
        const char *name;
        unsigned sub;
        int operands;   /* the key id, or none */
    } subs[] = {
        { "create", KEY_CREATE, 0 }, { "list", KEY_LIST, 0 },
        { "show", KEY_SHOW, 1 }, { "update", KEY_UPDATE, 1 },
        { "revoke", KEY_REVOKE, 1 }, { "rotate", KEY_ROTATE, 1 },
    };
    struct key_edit e;
    kg_policy *p;
    kg_record *r = NULL;
    size_t s;
    int first, rc = EXIT_USAGE;

    /* Help needs no policy: answer it before loading one. */
    if (cli_wants_help(argc, argv)) {
        key_usage(stdout);
        return EXIT_OK;
    }
    if (argc < 2) {
        key_usage(stderr);
        return EXIT_USAGE;
    }
    for (s = 0; s < sizeof(subs) / sizeof(subs[0]); s++)
        if (strcmp(argv[1], subs[s].name) == 0)
            break;
    if (s == sizeof(subs) / sizeof(subs[0])) {
        fprintf(stderr, "keygate: unknown key command '%s'\n", argv[1]);
        key_usage(stderr);
        return EXIT_USAGE;
    }
    memset(&e, 0, sizeof(e));
    first = key_parse(c, subs[s].sub, argc - 1, argv + 1, &e);
    if (first < 0)
        return EXIT_USAGE;
    if (argc - 1 - first != subs[s].operands) {
        key_usage(stderr);
        return EXIT_USAGE;
    }
    p = cli_load_policy(c, NULL);
    if (p == NULL)
        return EXIT_USAGE;
    switch (subs[s].sub) {
    case KEY_CREATE: rc = key_create(c, p, &e); break;
    case KEY_LIST: rc = key_list(c, p); break;
    case KEY_ROTATE: rc = key_rotate(c, p, &e, argv[1 + first]); break;
    default:
        if ((rc = with_record(p, argv[1 + first],
                              subs[s].sub == KEY_SHOW ? NULL
                              : subs[s].sub == KEY_REVOKE ? "key.revoke"
                                                          : "key.update",
                              &r)) != EXIT_OK)
            break;
        if (subs[s].sub == KEY_SHOW)
            print_record(c, r);
        else if (subs[s].sub == KEY_REVOKE)
            rc = key_revoke(c, p, r);
        else
            rc = key_update(c, p, &e, r);
        break;
    }
    kg_record_unref(r);
    kg_policy_free(p);
    return rc;
}
