/*
 * cli_key_edit.c - the options of `keygate key ...` and what they do to
 * a key record: each sub-command takes only its own options (one it
 * does not use is refused, never ignored), lists are replaced or edited
 * item by item, and a setting that the key's plan would never enforce
 * is refused with the reason.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "cli_key.h"

enum {
    OPT_ADD_PERM = 0x100, OPT_REMOVE_PERM, OPT_ADD_IP, OPT_REMOVE_IP,
    OPT_CLEAR_PERMS, OPT_CLEAR_IPS, OPT_CLEAR_LIMITS
};

/* Which sub-commands take each option (by its getopt code). */
static const struct cli_takes takes[] = {
    { 'n', KEY_CREATE | KEY_UPDATE },
    { 'p', KEY_CREATE | KEY_UPDATE },
    { 'P', KEY_CREATE | KEY_UPDATE },
    { 'i', KEY_CREATE | KEY_UPDATE },
    { 'e', KEY_CREATE | KEY_UPDATE },
    { 'l', KEY_CREATE | KEY_UPDATE },
    { 'g', KEY_ROTATE },
    { 'a', KEY_CREATE },
    { OPT_ADD_PERM, KEY_UPDATE },
    { OPT_REMOVE_PERM, KEY_UPDATE },
    { OPT_ADD_IP, KEY_UPDATE },
    { OPT_REMOVE_IP, KEY_UPDATE },
    { OPT_CLEAR_PERMS, KEY_UPDATE },
    { OPT_CLEAR_IPS, KEY_UPDATE },
    { OPT_CLEAR_LIMITS, KEY_UPDATE },
};

static const char *sub_name(unsigned sub)
{
    switch (sub) {
    case KEY_CREATE: return "create";
    case KEY_UPDATE: return "update";
    case KEY_ROTATE: return "rotate";
    case KEY_LIST: return "list";
    case KEY_SHOW: return "show";
    default: return "revoke";
    }
}

int key_strs_push(struct key_strs *l, const char *v, const char *opt)
{
    if (l->n == KEY_MAX_ITEMS) {
        fprintf(stderr, "keygate: at most %d --%s\n", KEY_MAX_ITEMS, opt);
        return -1;
    }
    l->v[l->n++] = v;
    return 0;
}

/* --grace: 30s, 15m, 12h, 30d, 2w (or a bare number of seconds). */
static int parse_grace(const char *s, int64_t *v_r)
{
    return kg_duration_parse(s, v_r) == KG_OK && *v_r >= 0 ? 0 : -1;
}

int key_parse(struct cli *c, unsigned sub, int argc, char **argv,
              struct key_edit *e)
{
    static const struct option opts[] = {
        { "name", required_argument, NULL, 'n' },
        { "plan", required_argument, NULL, 'p' },
        { "permission", required_argument, NULL, 'P' },
        { "add-permission", required_argument, NULL, OPT_ADD_PERM },
        { "remove-permission", required_argument, NULL, OPT_REMOVE_PERM },
        { "allow-ip", required_argument, NULL, 'i' },
        { "add-allow-ip", required_argument, NULL, OPT_ADD_IP },
        { "remove-allow-ip", required_argument, NULL, OPT_REMOVE_IP },
        { "expires", required_argument, NULL, 'e' },
        { "limit", required_argument, NULL, 'l' },
        { "grace", required_argument, NULL, 'g' },
        { "account", required_argument, NULL, 'a' },
        { "clear-permissions", no_argument, NULL, OPT_CLEAR_PERMS },
        { "clear-ips", no_argument, NULL, OPT_CLEAR_IPS },
        { "clear-limits", no_argument, NULL, OPT_CLEAR_LIMITS },
        { "help", no_argument, NULL, 'h' },
        CLI_JSON_OPTIONS,
        { NULL, 0, NULL, 0 },
    };
    int ch, idx, rc = 0;

    /* 0, not 1: glibc then starts afresh (main() parsed with "+", which
     * would otherwise stay in force and stop at the key id, so that
     * `key update ID --plan P` was a usage error). */
    optind = 0;
    while (rc == 0 &&
           (ch = getopt_long(argc, argv, "n:p:P:i:e:l:g:a:h", opts, &idx)) != -1) {
        if (cli_json_option(c, ch))
            continue;
        if (cli_option_taken(takes, sizeof(takes) / sizeof(takes[0]), opts, ch,
                             sub, "key", sub_name(sub)) != 0)
            return -1;
        switch (ch) {
        case 'n': e->name = optarg; break;
        case 'p': e->plan = optarg; break;
        case 'P': rc = key_strs_push(&e->perms.set, optarg, "permission"); break;
        case OPT_ADD_PERM: rc = key_strs_push(&e->perms.add, optarg, "add-permission"); break;
        case OPT_REMOVE_PERM: rc = key_strs_push(&e->perms.remove, optarg, "remove-permission"); break;
        case 'i': rc = key_strs_push(&e->ips.set, optarg, "allow-ip"); break;
        case OPT_ADD_IP: rc = key_strs_push(&e->ips.add, optarg, "add-allow-ip"); break;
        case OPT_REMOVE_IP: rc = key_strs_push(&e->ips.remove, optarg, "remove-allow-ip"); break;
        case 'e': e->expires = optarg; break;
        case 'a': e->account = optarg; break;
        case 'l': rc = key_strs_push(&e->limits, optarg, "limit"); break;
        case 'g':
            if (parse_grace(optarg, &e->grace) != 0) {
                fprintf(stderr, "keygate: --grace %s: expected a duration "
                        "(30s, 15m, 12h, 30d, 2w)\n", optarg);
                return -1;
            }
            e->have_grace = 1;
            break;
        case OPT_CLEAR_PERMS: e->perms.clear = 1; break;
        case OPT_CLEAR_IPS: e->ips.clear = 1; break;
        case OPT_CLEAR_LIMITS: e->clear_limits = 1; break;
        case 'h': key_usage(stdout); exit(EXIT_OK);
        default: key_usage(stderr); return -1;
        }
    }
    if (rc != 0)
        return -1;
    if ((e->perms.set.n || e->perms.clear) && (e->perms.add.n || e->perms.remove.n)) {
        fprintf(stderr, "keygate: --permission and --clear-permissions replace "
                "the whole list, --add-permission and --remove-permission "
                "change it: give one or the other\n");
        return -1;
    }
    if ((e->ips.set.n || e->ips.clear) && (e->ips.add.n || e->ips.remove.n)) {
        fprintf(stderr, "keygate: --allow-ip and --clear-ips replace the whole "
                "list, --add-allow-ip and --remove-allow-ip change it: give "
                "one or the other\n");
        return -1;
    }
    return optind;
}

/* A list of the record: permissions or allowed networks. */
struct list_ops {
    const char *what;     /* "permissions" */
    const char *opt;      /* "permission": --opt, --add-opt, --remove-opt */
    size_t (*count)(const kg_record *r);
    const char *(*at)(const kg_record *r, size_t i);
    void (*clear)(kg_record *r);
    kg_error (*add)(kg_record *r, const char *s);
};

static const struct list_ops perm_ops = {
    "permissions", "permission", kg_record_permission_count,
    kg_record_permission, kg_record_clear_permissions, kg_record_add_permission,
};
static const struct list_ops ip_ops = {
    "allowed networks", "allow-ip", kg_record_cidr_count, kg_record_cidr,
    kg_record_clear_cidrs, kg_record_add_cidr,
};

static int find(const char *const *v, size_t n, const char *s)
{
    size_t i;
    for (i = 0; i < n; i++)
        if (strcmp(v[i], s) == 0)
            return (int)i;
    return -1;
}

static void print_items(const char *const *v, size_t n)
{
    size_t i;
    if (n == 0)
        fputs(" (none)", stderr);
    for (i = 0; i < n; i++)
        fprintf(stderr, " %s", v[i]);
}

/* Apply one list edit; 0, or -1 with the reason printed. */
static int edit_list(kg_record *r, const struct list_ops *o,
                     const struct key_list_edit *le)
{
    size_t n0 = o->count(r), n = 0, i;
    int replace = le->clear || le->set.n > 0, rc = -1;
    char **old = calloc(n0 + 1, sizeof(*old));
    const char **res = calloc(n0 + le->set.n + le->add.n + 1, sizeof(*res));

    if (old == NULL || res == NULL)
        goto oom;
    /* Copies: clearing the record frees its strings. */
    for (i = 0; i < n0; i++)
        if ((old[i] = strdup(o->at(r, i))) == NULL)
            goto oom;
    if (!replace && le->add.n == 0 && le->remove.n == 0) {
        rc = 0;
        goto out;
    }
    for (i = 0; replace && i < le->set.n; i++)
        if (find(res, n, le->set.v[i]) < 0)
            res[n++] = le->set.v[i];
    for (i = 0; !replace && i < n0; i++)
        res[n++] = old[i];
    for (i = 0; i < le->remove.n; i++) {
        int at = find(res, n, le->remove.v[i]);
        if (at < 0) {
            fprintf(stderr, "keygate: --remove-%s %s: the key has no such "
                    "entry; its %s:", o->opt, le->remove.v[i], o->what);
            print_items((const char *const *)old, n0);
            fputc('\n', stderr);
            goto out;
        }
        memmove(&res[at], &res[at + 1], (n - (size_t)at - 1) * sizeof(*res));
        n--;
    }
    for (i = 0; i < le->add.n; i++)
        if (find(res, n, le->add.v[i]) < 0)
            res[n++] = le->add.v[i];
    o->clear(r);
    for (i = 0; i < n; i++)
        if (o->add(r, res[i]) != KG_OK)
            goto oom;
    if (replace && n0 > 0) {
        /* The surprise this says: the old list is gone, not added to. */
        fprintf(stderr, "keygate: the key's %s were %s; they were:", o->what,
                le->set.n ? "replaced" : "cleared");
        print_items((const char *const *)old, n0);
        fprintf(stderr, " (--add-%s and --remove-%s change one)\n", o->opt, o->opt);
    }
    rc = 0;
    goto out;
oom:
    fprintf(stderr, "keygate: out of memory\n");
out:
    for (i = 0; old != NULL && i < n0; i++)
        free(old[i]);
    free(old);
    free(res);
    return rc;
}

int key_apply(struct cli *c, const struct key_edit *e, kg_record *r)
{
    size_t i;
    if (e->name) kg_record_set_name(r, e->name);
    if (e->plan) kg_record_set_plan(r, e->plan);
    if (edit_list(r, &perm_ops, &e->perms) != 0 ||
        edit_list(r, &ip_ops, &e->ips) != 0)
        return -1;
    if (e->clear_limits) kg_record_clear_limits(r);
    for (i = 0; i < e->limits.n; i++) {
        if (cli_parse_limit(e->limits.v[i], r) != 0) {
            fprintf(stderr, "keygate: --limit %s: expected NAME=COUNT/WINDOW[:BURST], "
                    "e.g. hour=100000/1h\n", e->limits.v[i]);
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

unsigned key_touched(const struct key_edit *e)
{
    unsigned w = 0;
    if (e->plan)
        return KEY_HAS_ALL;
    if (e->perms.set.n || e->perms.add.n)
        w |= KEY_HAS_PERMS;
    if (e->ips.set.n || e->ips.add.n)
        w |= KEY_HAS_IPS;
    if (e->limits.n)
        w |= KEY_HAS_LIMITS;
    return w;
}

/* The plans of p that run `module`, ", "-separated, into buf. */
static const char *plans_with(kg_policy *p, const char *module, char *buf,
                              size_t size)
{
    size_t i, n = 0;
    buf[0] = '\0';
    for (i = 0; i < kg_policy_plan_count(p); i++) {
        const char *pl = kg_policy_plan_name(p, i);
        if (kg_policy_plan_has_module(p, pl, module) == 1 && n + strlen(pl) + 3 < size)
            n += (size_t)snprintf(buf + n, size - n, "%s%s", n ? ", " : "", pl);
    }
    return n ? buf : "none";
}

static int module_enforces(kg_policy *p, const char *plan, const char *module,
                           const char *what, const char *opt, const char *clear)
{
    char plans[512];
    if (kg_policy_plan_has_module(p, plan, module) != 0)
        return 0;
    fprintf(stderr, "keygate: plan '%s' does not check %s (no line of its "
            "stages runs the %s module), so --%s would never be enforced; "
            "plans that do: %s (a key moving to plan '%s' drops them with "
            "--%s)\n", plan, what, module, opt,
            plans_with(p, module, plans, sizeof(plans)), plan, clear);
    return -1;
}

/* Is there a limit `name` in the plan?  1 yes, 0 no, -1 cannot tell (a
 * line whose plugin reads no name). */
static int plan_limit(kg_policy *p, const char *plan, const char *name)
{
    size_t i, n = kg_policy_plan_limit_count(p, plan);
    int unknown = 0;
    for (i = 0; i < n; i++) {
        const char *l = kg_policy_plan_limit_name(p, plan, i);
        if (l == NULL)
            unknown = 1;
        else if (strcmp(l, name) == 0)
            return 1;
    }
    return unknown ? -1 : 0;
}


int key_enforced(kg_policy *p, const kg_record *r, unsigned what)
{
    return key_enforced_on(p, r, kg_record_plan(r), what);
}

int key_enforced_on(kg_policy *p, const kg_record *r, const char *plan,
                    unsigned what)
{
    size_t i, j;

    /* -1: no such plan (any module name tells) */
    if (plan == NULL || kg_policy_plan_has_module(p, plan, "scope") < 0)
        return 0;
    /* The admin API's own permissions need no scope line. */
    for (i = 0; (what & KEY_HAS_PERMS) && i < kg_record_permission_count(r); i++) {
        if (kg_permission_is_admin_api(kg_record_permission(r, i)))
            continue;
        if (module_enforces(p, plan, "scope", "permissions", "permission",
                            "clear-permissions") != 0)
            return -1;
        break;
    }
    if ((what & KEY_HAS_IPS) && kg_record_cidr_count(r) > 0 &&
        module_enforces(p, plan, "ipacl", "the client's address", "allow-ip",
                        "clear-ips") != 0)
        return -1;
    for (i = 0; (what & KEY_HAS_LIMITS) && i < kg_record_limit_count(r); i++) {
        const char *name;
        int64_t cnt, w, b;
        size_t n = kg_policy_plan_limit_count(p, plan);
        kg_record_limit(r, i, &name, &cnt, &w, &b);
        if (plan_limit(p, plan, name) != 0)
            continue;
        fprintf(stderr, "keygate: plan '%s' has no limit named '%s', so "
                "--limit %s=... would never be enforced (an override replaces "
                "the plan's limit of the same name); its limits:", plan, name, name);
        for (j = 0; j < n; j++)
            fprintf(stderr, " %s", kg_policy_plan_limit_name(p, plan, j));
        fputs(n ? " (a key moving to this plan drops overrides with "
              "--clear-limits)\n" : " none\n", stderr);
        return -1;
    }
    return 0;
}
