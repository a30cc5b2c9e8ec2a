/*
 * cli_usage.c - `keygate usage`, `keygate usage top` and `keygate logs`:
 * what the policy's usage store holds (docs/usage.md).  The queries are
 * libkeygate's (usage.h); this file parses options, resolves the account
 * or key named, and prints tables or JSON.
 */
#include "config.h"

#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <keygate/usage.h>

#include "cli.h"

enum { OPT_SINCE = 0x100, OPT_UNTIL, OPT_BY, OPT_LIMIT, OPT_STATUS, OPT_CODE,
       OPT_FOLLOW, OPT_ACCOUNT, OPT_KEY };

static void usage_usage(FILE *f)
{
    fputs("usage: keygate usage [--account ID | --key ID] [--since 24h|7d|DATE]\n"
          "                     [--until 1h|DATE] [--by minute|hour|day] [--json]\n"
          "       keygate usage top [--by account|key] [--since 1h] [--until ...]\n"
          "                     [--limit 20] [--json]\n"
          "usage: decisions per bucket (allowed, denied by code) and a total, of\n"
          "  one account (its id or external id), one key, or everything.\n"
          "  --since: a duration back from now (90m, 24h, 7d) or a date\n"
          "  (2026-12-31 or 2026-12-31T10:00:00Z); default 24h.  --until: the\n"
          "  same, default now.  --by: the bucket, default hour.\n"
          "usage top: the heaviest accounts (or keys), allowed and denied, over\n"
          "  --since (default 1h); --limit rows (default 20).\n"
          "What keygated counted reaches the store at its next flush\n"
          "(the usage section's flush_interval).\n",
          f);
}

static void logs_usage(FILE *f)
{
    fputs("usage: keygate logs [--account ID] [--key ID] [--status 429|4xx]\n"
          "                    [--code CODE] [--since 1h|DATE] [--until ...]\n"
          "                    [--limit 100] [--follow] [--json|--jsonl]\n"
          "The events of the usage store, newest first: every denial and a\n"
          "  sample of the allowed decisions (the usage section's sample).\n"
          "  --status: one status (429) or a class (4xx, 5xx).  --code: a code\n"
          "  (rate_limited, unauthorized, ..., or allowed).  --follow: the\n"
          "  last --limit events oldest first, then new ones as keygated\n"
          "  flushes them, until interrupted.\n",
          f);
}

/* "24h" (back from now) or a date -> Unix seconds; -1 if neither. */
static int parse_when(const char *s, int64_t now, int64_t *t_r)
{
    int64_t d;
    if (kg_duration_parse(s, &d) == KG_OK) {
        *t_r = now - d;
        return 0;
    }
    return kg_time_parse(s, t_r) == KG_OK ? 0 : -1;
}

/* The options of one usage/logs command line. */
struct uopts {
    const char *account, *key, *since, *until, *by, *status, *code, *limit;
    int follow;
};

static int parse(struct cli *c, int argc, char **argv, struct uopts *o,
                 const char *allowed, void (*help)(FILE *))
{
    static const struct option opts[] = {
        { "account", required_argument, NULL, OPT_ACCOUNT },
        { "key", required_argument, NULL, OPT_KEY },
        { "since", required_argument, NULL, OPT_SINCE },
        { "until", required_argument, NULL, OPT_UNTIL },
        { "by", required_argument, NULL, OPT_BY },
        { "limit", required_argument, NULL, OPT_LIMIT },
        { "status", required_argument, NULL, OPT_STATUS },
        { "code", required_argument, NULL, OPT_CODE },
        { "follow", no_argument, NULL, OPT_FOLLOW },
        { "help", no_argument, NULL, 'h' },
        CLI_JSON_OPTIONS,
        { NULL, 0, NULL, 0 },
    };
    int ch, idx;

    optind = 0;
    while ((ch = getopt_long(argc, argv, "fh", opts, &idx)) != -1) {
        const char **dst = NULL;
        if (cli_json_option(c, ch))
            continue;
        if (ch == 'f')
            ch = OPT_FOLLOW;
        if (ch == 'h') {
            help(stdout);
            exit(EXIT_OK);
        }
        if (ch == '?' || ch == ':') {
            help(stderr);
            return -1;
        }
        /* Only the options this command takes. */
        {
            const struct option *op = opts;
            char tag[32];
            while (op->name != NULL && op->val != ch)
                op++;
            snprintf(tag, sizeof(tag), ",%s,", op->name ? op->name : "?");
            if (strstr(allowed, tag) == NULL) {
                fprintf(stderr, "keygate: %s does not take --%s\n", argv[0],
                        op->name ? op->name : "?");
                return -1;
            }
        }
        switch (ch) {
        case OPT_ACCOUNT: dst = &o->account; break;
        case OPT_KEY: dst = &o->key; break;
        case OPT_SINCE: dst = &o->since; break;
        case OPT_UNTIL: dst = &o->until; break;
        case OPT_BY: dst = &o->by; break;
        case OPT_LIMIT: dst = &o->limit; break;
        case OPT_STATUS: dst = &o->status; break;
        case OPT_CODE: dst = &o->code; break;
        case OPT_FOLLOW: o->follow = 1; break;
        }
        if (dst != NULL)
            *dst = optarg;
    }
    return optind;
}

/* --since/--until into [*since_r, *until_r); EXIT_OK or EXIT_USAGE. */
static int parse_range(const struct uopts *o, const char *def_since,
                       int64_t now, int64_t *since_r, int64_t *until_r)
{
    *until_r = now;
    if (parse_when(o->since ? o->since : def_since, now, since_r) != 0)
        return cli_bad("--since '%s': expected a duration back from now (90m, "
                   "24h, 7d) or a date (2026-12-31, 2026-12-31T10:00:00Z)",
                   o->since);
    if (o->until != NULL && parse_when(o->until, now, until_r) != 0)
        return cli_bad("--until '%s': expected a duration back from now (1h) or "
                   "a date (2026-12-31, 2026-12-31T10:00:00Z)", o->until);
    if (*until_r <= *since_r)
        return cli_bad("%s: --until must be after --since", "usage");
    return EXIT_OK;
}

static int parse_limit(const char *s, size_t def, size_t *n_r)
{
    char *end;
    long v;
    if (s == NULL) {
        *n_r = def;
        return EXIT_OK;
    }
    v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < 1 || v > 100000)
        return cli_bad("--limit '%s': expected a number from 1 to 100000", s);
    *n_r = (size_t)v;
    return EXIT_OK;
}

/*
 * The account or key named: its id (an account's external id resolves
 * to its id) into *id_r (caller frees); EXIT_USAGE, said, if there is no
 * such one.
 */
static int resolve(kg_policy *p, const char *account, const char *key,
                   char **account_r, char **key_r)
{
    kg_diag d;
    kg_error e;
    memset(&d, 0, sizeof(d));
    *account_r = *key_r = NULL;
    if (account != NULL) {
        kg_account *a = NULL;
        e = kg_accounts_get(p, account, &a, &d);
        if (e == KG_ERR_NOT_FOUND)
            return cli_bad("no account '%s' (keygate account list)", account);
        if (e != KG_OK) {
            cli_print_diag("account", e, &d);
            return EXIT_USAGE;
        }
        *account_r = strdup(kg_account_id(a));
        kg_account_unref(a);
    }
    if (key != NULL) {
        kg_record *r = NULL;
        e = kg_keys_get(p, key, &r, &d);
        if (e == KG_ERR_NOT_FOUND)
            return cli_bad("no key '%s' (keygate key list)", key);
        if (e != KG_OK) {
            cli_print_diag("key", e, &d);
            return EXIT_USAGE;
        }
        *key_r = strdup(kg_record_id(r));
        kg_record_unref(r);
    }
    return EXIT_OK;
}

/* ---- keygate usage ------------------------------------------------------ */

struct bucket {
    int64_t start;
    int64_t allowed;
    int64_t denied[KG_CODE__LAST];
};

struct buckets {
    struct bucket *v;
    size_t n, cap;
    struct bucket total;
    int oom;
};

static int row_cb(const kg_usage_row *r, void *ud)
{
    struct buckets *b = ud;
    struct bucket *k;
    if (b->n == 0 || b->v[b->n - 1].start != r->start) {
        if (b->n == b->cap) {
            size_t cap = b->cap ? 2 * b->cap : 64;
            struct bucket *v = realloc(b->v, cap * sizeof(*v));
            if (v == NULL) {
                b->oom = 1;
                return 1;
            }
            b->v = v;
            b->cap = cap;
        }
        memset(&b->v[b->n], 0, sizeof(b->v[0]));
        b->v[b->n++].start = r->start;
    }
    k = &b->v[b->n - 1];
    if (r->code == KG_CODE_NONE) {
        k->allowed += r->count;
        b->total.allowed += r->count;
    } else if ((int)r->code > 0 && r->code < KG_CODE__LAST) {
        k->denied[r->code] += r->count;
        b->total.denied[r->code] += r->count;
    }
    return 0;
}

static int64_t denied_sum(const struct bucket *k)
{
    int64_t n = 0;
    int c;
    for (c = 1; c < KG_CODE__LAST; c++)
        n += k->denied[c];
    return n;
}

static void json_counts(const struct bucket *k)
{
    int c, first = 1;
    printf("\"allowed\":%lld,\"denied\":{", (long long)k->allowed);
    for (c = 1; c < KG_CODE__LAST; c++) {
        if (k->denied[c] == 0)
            continue;
        printf("%s\"%s\":%lld", first ? "" : ",", kg_code_name((kg_code)c),
               (long long)k->denied[c]);
        first = 0;
    }
    putchar('}');
}

static void text_counts(const char *label, const struct bucket *k)
{
    int c, first = 1;
    printf("%-22s %9lld %8lld", label, (long long)k->allowed,
           (long long)denied_sum(k));
    for (c = 1; c < KG_CODE__LAST; c++) {
        if (k->denied[c] == 0)
            continue;
        printf("%s%s %lld", first ? "  " : ", ", kg_code_name((kg_code)c),
               (long long)k->denied[c]);
        first = 0;
    }
    putchar('\n');
}

static int usage_buckets(struct cli *c, kg_policy *p, const struct uopts *o)
{
    static const struct { const char *name; int32_t span; } bys[] = {
        { "minute", 60 }, { "hour", 3600 }, { "day", 86400 },
    };
    const char *by = o->by ? o->by : "hour";
    kg_usage_query q;
    struct buckets b;
    char *account = NULL, *key = NULL, ts[32];
    int64_t now = kg_context_now(c->ctx) / 1000000;
    kg_diag d;
    kg_error e;
    size_t i;
    int rc;

    memset(&q, 0, sizeof(q));
    memset(&b, 0, sizeof(b));
    for (i = 0; i < sizeof(bys) / sizeof(bys[0]); i++)
        if (strcmp(by, bys[i].name) == 0)
            q.span = bys[i].span;
    if (q.span == 0)
        return cli_bad("--by '%s': expected minute, hour or day", by);
    if (o->account && o->key)
        return cli_bad("%s: give --account or --key, not both", "usage");
    if ((rc = parse_range(o, "24h", now, &q.since, &q.until)) != EXIT_OK)
        return rc;
    /* Whole buckets: from the start of the one --since falls in. */
    q.since -= ((q.since % q.span) + q.span) % q.span;
    if ((rc = resolve(p, o->account, o->key, &account, &key)) != EXIT_OK)
        goto out;
    q.account_id = account;
    q.key_id = key;
    memset(&d, 0, sizeof(d));
    e = kg_usage_query_rows(p, &q, row_cb, &b, &d);
    if (e == KG_OK && b.oom)
        e = KG_ERR_NOMEM;
    if (e != KG_OK) {
        cli_print_diag("usage", e, &d);
        rc = e == KG_ERR_UNSUPPORTED ? EXIT_USAGE : EXIT_DENIED;
        goto out;
    }
    if (c->json) {
        printf("{\"account\":");
        cli_json_str(stdout, account);
        printf(",\"key\":");
        cli_json_str(stdout, key);
        printf(",\"by\":\"%s\",\"buckets\":[", by);
        for (i = 0; i < b.n; i++) {
            cli_time(b.v[i].start, ts);
            printf("%s{\"start\":\"%s\",", i ? "," : "", ts);
            json_counts(&b.v[i]);
            putchar('}');
        }
        printf("],\"total\":{");
        json_counts(&b.total);
        printf("}}\n");
    } else {
        printf("%-22s %9s %8s\n", "START", "ALLOWED", "DENIED");
        for (i = 0; i < b.n; i++) {
            cli_time(b.v[i].start, ts);
            text_counts(ts, &b.v[i]);
        }
        text_counts("total", &b.total);
    }
out:
    free(b.v);
    free(account);
    free(key);
    return rc;
}

/* ---- keygate usage top -------------------------------------------------- */

static int top_cb(const char *account, const char *key, int64_t allowed,
                  int64_t denied, void *ud)
{
    struct cli *c = ud;
    char b1[256], b2[256];
    cli_list_item(c);
    if (c->json) {
        printf("{\"account\":");
        cli_json_str(stdout, account);
        printf(",\"key\":");
        cli_json_str(stdout, key && *key ? key : NULL);
        printf(",\"allowed\":%lld,\"denied\":%lld,\"total\":%lld}",
               (long long)allowed, (long long)denied,
               (long long)(allowed + denied));
    } else {
        printf("%-24s %-24s %9lld %8lld\n",
               *account ? cli_printable(account, b1, sizeof(b1)) : "-",
               key && *key ? cli_printable(key, b2, sizeof(b2)) : "-",
               (long long)allowed, (long long)denied);
    }
    return 0;
}

static int usage_top(struct cli *c, kg_policy *p, const struct uopts *o)
{
    int64_t now = kg_context_now(c->ctx) / 1000000, since, until;
    const char *by = o->by ? o->by : "account";
    size_t limit;
    kg_diag d;
    kg_error e;
    int rc;

    if (strcmp(by, "account") != 0 && strcmp(by, "key") != 0)
        return cli_bad("--by '%s': expected account or key", by);
    if ((rc = parse_range(o, "1h", now, &since, &until)) != EXIT_OK ||
        (rc = parse_limit(o->limit, 20, &limit)) != EXIT_OK)
        return rc;
    if (!c->json)
        printf("%-24s %-24s %9s %8s\n", "ACCOUNT", "KEY", "ALLOWED", "DENIED");
    memset(&d, 0, sizeof(d));
    e = kg_usage_top(p, strcmp(by, "key") == 0, since, until, limit, top_cb, c,
                     &d);
    cli_list_end(c);
    if (e != KG_OK) {
        cli_print_diag("usage top", e, &d);
        return e == KG_ERR_UNSUPPORTED ? EXIT_USAGE : EXIT_DENIED;
    }
    return EXIT_OK;
}

int cmd_usage(struct cli *c, int argc, char **argv)
{
    struct uopts o;
    kg_policy *p;
    int top = argc > 1 && strcmp(argv[1], "top") == 0, first, rc;

    if (cli_wants_help(argc, argv)) {
        usage_usage(stdout);
        return EXIT_OK;
    }
    memset(&o, 0, sizeof(o));
    if (top) {
        argc--;
        argv++;
    }
    first = parse(c, argc, argv, &o, top ? ",by,since,until,limit,"
                  : ",account,key,since,until,by,", usage_usage);
    if (first < 0)
        return EXIT_USAGE;
    if (first < argc)
        return cli_bad("usage: unexpected '%s' (see keygate usage --help)",
                   argv[first]);
    if ((p = cli_load_policy(c, cli_config_path(c))) == NULL)
        return EXIT_USAGE;
    rc = top ? usage_top(c, p, &o) : usage_buckets(c, p, &o);
    kg_policy_free(p);
    return rc;
}

/* ---- keygate logs ------------------------------------------------------- */

/* Milliseconds -> "2026-12-31T10:00:00.123Z". */
static void time_ms(int64_t ms, char out[40])
{
    char s[32];
    cli_time(ms / 1000, s);
    s[strlen(s) - 1] = '\0';   /* the Z */
    snprintf(out, 40, "%s.%03dZ", s, (int)(ms % 1000));
}

static void print_event(struct cli *c, const kg_usage_event *e)
{
    char t[40], b[6][512];
    time_ms(e->time_ms, t);
    if (c->json) {
        /* "" is null for the ids (no key identified), a string else. */
        const struct { const char *name, *value; int nullable; } f[] = {
            { "account", e->account_id, 1 }, { "key_id", e->key_id, 1 },
            { "key_prefix", e->key_prefix, 1 }, { "client", e->client, 0 },
            { "method", e->method, 0 }, { "path", e->path, 0 },
        };
        size_t i;
        printf("{\"id\":%lld,\"time\":\"%s\"", (long long)e->id, t);
        for (i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
            printf(",\"%s\":", f[i].name);
            cli_json_str(stdout, f[i].nullable && !*f[i].value ? NULL : f[i].value);
        }
        printf(",\"status\":%d,\"code\":\"%s\",\"decided_by\":", e->status,
               kg_usage_code_name(e->code));
        cli_json_str(stdout, e->decided_by);
        putchar('}');
    } else {
        printf("%s %d %-24s %-22s %-12s %-15s %s %s (%s)\n", t, e->status,
               kg_usage_code_name(e->code),
               *e->account_id ? cli_printable(e->account_id, b[0], sizeof(b[0])) : "-",
               *e->key_prefix ? cli_printable(e->key_prefix, b[1], sizeof(b[1]))
                              : *e->key_id ? cli_printable(e->key_id, b[1], sizeof(b[1])) : "-",
               *e->client ? cli_printable(e->client, b[2], sizeof(b[2])) : "-",
               cli_printable(e->method, b[3], sizeof(b[3])),
               cli_printable(e->path, b[4], sizeof(b[4])),
               cli_printable(e->decided_by, b[5], sizeof(b[5])));
    }
}

/* Events as they come (newest first), copied for printing later. */
struct evlist {
    kg_usage_event *v;
    char **strs;
    size_t n, cap;
    int oom;
};

static int ev_keep(const kg_usage_event *e, void *ud)
{
    struct evlist *l = ud;
    kg_usage_event *k;
    char **s;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        kg_usage_event *v = realloc(l->v, cap * sizeof(*v));
        char **ss = v ? realloc(l->strs, cap * 7 * sizeof(*ss)) : NULL;
        if (v) l->v = v;
        if (ss) l->strs = ss;
        if (v == NULL || ss == NULL) {
            l->oom = 1;
            return 1;
        }
        l->cap = cap;
    }
    k = &l->v[l->n];
    s = &l->strs[l->n * 7];
    *k = *e;
    s[0] = strdup(e->account_id ? e->account_id : "");
    s[1] = strdup(e->key_id ? e->key_id : "");
    s[2] = strdup(e->key_prefix ? e->key_prefix : "");
    s[3] = strdup(e->client ? e->client : "");
    s[4] = strdup(e->method ? e->method : "");
    s[5] = strdup(e->path ? e->path : "");
    s[6] = strdup(e->decided_by ? e->decided_by : "");
    l->n++;
    for (int i = 0; i < 7; i++)
        if (s[i] == NULL)
            l->oom = 1;
    k->account_id = s[0] ? s[0] : "";
    k->key_id = s[1] ? s[1] : "";
    k->key_prefix = s[2] ? s[2] : "";
    k->client = s[3] ? s[3] : "";
    k->method = s[4] ? s[4] : "";
    k->path = s[5] ? s[5] : "";
    k->decided_by = s[6] ? s[6] : "";
    return l->oom;
}

static void ev_clear(struct evlist *l)
{
    size_t i;
    for (i = 0; i < l->n * 7; i++)
        free(l->strs[i]);
    l->n = 0;
}

static volatile sig_atomic_t stop;
static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static int logs_query(kg_policy *p, kg_event_query *q, struct evlist *l)
{
    kg_diag d;
    kg_error e;
    memset(&d, 0, sizeof(d));
    e = kg_usage_events(p, q, ev_keep, l, &d);
    if (e == KG_OK && l->oom)
        e = KG_ERR_NOMEM;
    if (e != KG_OK) {
        cli_print_diag("logs", e, &d);
        return e == KG_ERR_UNSUPPORTED ? EXIT_USAGE : EXIT_DENIED;
    }
    return EXIT_OK;
}

static int logs_follow(struct cli *c, kg_policy *p, kg_event_query *q,
                       struct evlist *l)
{
    int64_t last_id = 0, last_ms = q->since_ms;
    size_t i;
    int rc;

    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    /* The last --limit, oldest first; then what comes after them. */
    for (;;) {
        if ((rc = logs_query(p, q, l)) != EXIT_OK)
            return rc;
        for (i = l->n; i > 0; i--) {
            const kg_usage_event *e = &l->v[i - 1];
            if (e->id <= last_id)
                continue;
            print_event(c, e);
            if (c->json)
                putchar('\n');
            last_id = e->id;
            if (e->time_ms > last_ms)
                last_ms = e->time_ms;
        }
        fflush(stdout);
        ev_clear(l);
        for (i = 0; i < 10 && !stop; i++)
            usleep(100000);
        if (stop)
            return EXIT_OK;
        /* Events are written at flushes, in time order per flush but not
         * across instances: look back a minute, skip what was printed. */
        q->since_ms = last_ms > 60000 ? last_ms - 60000 : 0;
        q->limit = 0;
    }
}

int cmd_logs(struct cli *c, int argc, char **argv)
{
    struct uopts o;
    struct evlist l;
    kg_event_query q;
    kg_policy *p = NULL;
    char *account = NULL, *key = NULL;
    int64_t now = kg_context_now(c->ctx) / 1000000, since, until;
    size_t i;
    int first, rc;

    if (cli_wants_help(argc, argv)) {
        logs_usage(stdout);
        return EXIT_OK;
    }
    memset(&o, 0, sizeof(o));
    memset(&q, 0, sizeof(q));
    memset(&l, 0, sizeof(l));
    first = parse(c, argc, argv, &o, ",account,key,status,code,since,until,"
                  "limit,follow,", logs_usage);
    if (first < 0)
        return EXIT_USAGE;
    if (first < argc)
        return cli_bad("logs: unexpected '%s' (see keygate logs --help)",
                   argv[first]);
    q.any_code = 1;
    if (o.code != NULL) {
        if (kg_usage_code_parse(o.code, &q.code) != KG_OK)
            return cli_bad("--code '%s': expected allowed, invalid_request, "
                       "unauthorized, key_revoked, key_expired, "
                       "insufficient_permissions, ip_not_allowed, "
                       "account_suspended, rate_limited or auth_unavailable",
                       o.code);
        q.any_code = 0;
    }
    if (o.status != NULL) {
        const char *s = o.status;
        if (strlen(s) == 3 && s[0] >= '1' && s[0] <= '5' &&
            strcmp(s + 1, "xx") == 0) {
            q.status_min = (s[0] - '0') * 100;
            q.status_max = q.status_min + 99;
        } else if (strlen(s) == 3 && strspn(s, "0123456789") == 3 &&
                   s[0] >= '1' && s[0] <= '5') {
            q.status_min = q.status_max = atoi(s);
        } else {
            return cli_bad("--status '%s': expected a status (429) or a class "
                       "(4xx)", s);
        }
    }
    if (o.since != NULL || o.until != NULL) {
        if ((rc = parse_range(&o, o.since ? o.since : "7d", now, &since,
                              &until)) != EXIT_OK)
            return rc;
        q.since_ms = since * 1000;
        q.until_ms = o.until ? until * 1000 : 0;
    }
    if ((rc = parse_limit(o.limit, 100, &q.limit)) != EXIT_OK)
        return rc;
    if ((p = cli_load_policy(c, cli_config_path(c))) == NULL)
        return EXIT_USAGE;
    if ((rc = resolve(p, o.account, o.key, &account, &key)) != EXIT_OK)
        goto out;
    q.account_id = account;
    q.key_id = key;
    if (o.follow) {
        rc = logs_follow(c, p, &q, &l);
        goto out;
    }
    if ((rc = logs_query(p, &q, &l)) != EXIT_OK)
        goto out;
    if (c->json == CLI_JSON) {
        printf("{\"items\":[");
        for (i = 0; i < l.n; i++) {
            if (i)
                putchar(',');
            print_event(c, &l.v[i]);
        }
        printf("],\"next_cursor\":");
        if (q.limit > 0 && l.n == q.limit)
            printf("\"%lld\"}\n", (long long)l.v[l.n - 1].id);
        else
            printf("null}\n");
    } else {
        for (i = 0; i < l.n; i++) {
            print_event(c, &l.v[i]);
            if (c->json)
                putchar('\n');
        }
    }
out:
    ev_clear(&l);
    free(l.v);
    free(l.strs);
    free(account);
    free(key);
    kg_policy_free(p);
    return rc;
}
