/* cli_util.c - configuration lookup, errors and small formatters. */
#include "config.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

#ifndef KG_SYSCONFDIR
#define KG_SYSCONFDIR "/usr/local/etc/keygate"
#endif

const char *cli_config_path(struct cli *c)
{
    const char *env = getenv("KEYGATE_CONFIG");
    if (c->config != NULL)
        return c->config;
    if (env != NULL && *env != '\0')
        return env;
    return KG_SYSCONFDIR "/keygate.yaml";
}

int cli_wants_help(int argc, char **argv)
{
    int i;
    for (i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
            return 1;
    return 0;
}

int cli_json_option(struct cli *c, int ch)
{
    if (ch != CLI_OPT_JSON && ch != CLI_OPT_JSONL)
        return 0;
    c->json = ch == CLI_OPT_JSON ? CLI_JSON : CLI_JSONL;
    return 1;
}

int cli_option_taken(const struct cli_takes *takes, size_t n,
                     const struct option *opts, int ch, unsigned sub,
                     const char *cmd, const char *sub_name)
{
    size_t i;
    for (i = 0; i < n; i++) {
        if (takes[i].code == ch && !(takes[i].subs & sub)) {
            const struct option *o = opts;
            while (o->name != NULL && o->val != ch)
                o++;
            fprintf(stderr, "keygate: %s %s does not take --%s\n", cmd,
                    sub_name, o->name != NULL ? o->name : "?");
            return -1;
        }
    }
    return 0;
}

int cli_take_json(struct cli *c, int argc, char **argv)
{
    int i, n = 1;
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            while (i < argc)
                argv[n++] = argv[i++];
            break;
        }
        if (strcmp(argv[i], "--json") == 0)
            c->json = CLI_JSON;
        else if (strcmp(argv[i], "--jsonl") == 0)
            c->json = CLI_JSONL;
        else
            argv[n++] = argv[i];
    }
    argv[n] = NULL;
    return n;
}

void cli_list_item(struct cli *c)
{
    if (c->json == CLI_JSON)
        fputs(c->listed ? ",\n" : "[\n", stdout);
    else if (c->json == CLI_JSONL && c->listed)
        fputc('\n', stdout);
    c->listed++;
}

void cli_list_end(struct cli *c)
{
    if (c->json == CLI_JSON)
        fputs(c->listed ? "\n]\n" : "[]\n", stdout);
    else if (c->json == CLI_JSONL && c->listed)
        fputc('\n', stdout);
    c->listed = 0;
}

int cli_bad(const char *fmt, ...)
{
    va_list ap;
    fputs("keygate: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return EXIT_USAGE;
}

void cli_print_diag(const char *what, kg_error e, const kg_diag *d)
{
    char buf[2048];
    if (d != NULL && d->message[0] != '\0')
        fprintf(stderr, "keygate: %s: %s\n", what, kg_diag_format(d, buf, sizeof(buf)));
    else
        fprintf(stderr, "keygate: %s: %s\n", what, kg_strerror(e));
}

kg_policy *cli_load_policy(struct cli *c, const char *path)
{
    kg_policy *p = NULL;
    kg_diag d;
    kg_error e;

    if (path == NULL)
        path = cli_config_path(c);
    e = kg_policy_load_file(c->ctx, path, &p, &d);
    if (e != KG_OK) {
        char buf[2048];
        fprintf(stderr, "keygate: %s\n", kg_diag_format(&d, buf, sizeof(buf)));
        if (e == KG_ERR_IO && c->config == NULL && getenv("KEYGATE_CONFIG") == NULL)
            fprintf(stderr, "keygate: give the policy with --config FILE or "
                    "KEYGATE_CONFIG=FILE\n");
        return NULL;
    }
    return p;
}

void cli_json_str(FILE *f, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    if (s == NULL) {
        fputs("null", f);
        return;
    }
    fputc('"', f);
    for (; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

static int is_control(unsigned char ch)
{
    return ch < 0x20 || ch == 0x7f;
}

const char *cli_printable(const char *s, char *buf, size_t size)
{
    const unsigned char *p;
    size_t n = 0;
    if (s == NULL)
        return "";
    for (p = (const unsigned char *)s; *p && !is_control(*p); p++)
        ;
    if (*p == '\0')
        return s;
    for (p = (const unsigned char *)s; *p && n + 5 < size; p++) {
        if (is_control(*p))
            n += (size_t)snprintf(buf + n, size - n, "\\x%02x", *p);
        else
            buf[n++] = (char)*p;
    }
    buf[n] = '\0';
    return buf;
}

void cli_time(int64_t t, char out[32])
{
    struct tm tm;
    time_t tt = (time_t)t;
    if (t == 0) {
        strcpy(out, "-");
        return;
    }
    gmtime_r(&tt, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* "30d" (from now), "2026-12-31" or "2026-12-31T12:00:00Z", or "never". */
int cli_parse_expiry(const char *s, int64_t now, int64_t *t_r)
{
    struct tm tm;
    const char *end;
    int64_t d;

    if (strcmp(s, "never") == 0) {
        *t_r = 0;
        return 0;
    }
    if (kg_duration_parse(s, &d) == KG_OK) {
        *t_r = now + d;
        return 0;
    }
    memset(&tm, 0, sizeof(tm));
    end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (end == NULL) {
        memset(&tm, 0, sizeof(tm));
        end = strptime(s, "%Y-%m-%d", &tm);
    }
    if (end == NULL || (*end && strcmp(end, "Z") != 0))
        return -1;
    *t_r = (int64_t)timegm(&tm);
    return 0;
}

/* NAME=COUNT/WINDOW[:BURST], e.g. hour=100000/1h or burst=50/1s:500 */
int cli_parse_limit_spec(const char *s, struct cli_limit *l)
{
    char buf[128], *eq, *slash, *colon, *end;
    long long count, burst = 0;

    if (strlen(s) >= sizeof(buf))
        return -1;
    strcpy(buf, s);
    eq = strchr(buf, '=');
    if (eq == NULL || eq == buf)
        return -1;
    *eq++ = '\0';
    slash = strchr(eq, '/');
    if (slash == NULL)
        return -1;
    *slash++ = '\0';
    colon = strchr(slash, ':');
    if (colon != NULL) {
        *colon++ = '\0';
        burst = strtoll(colon, &end, 10);
        if (*end || burst < 0)
            return -1;
    }
    count = strtoll(eq, &end, 10);
    if (end == eq || *end || count < 0)
        return -1;
    if (kg_duration_parse(slash, &l->window) != KG_OK || l->window <= 0)
        return -1;
    strcpy(l->name, buf);
    l->count = count;
    l->burst = burst;
    return 0;
}

int cli_parse_limit(const char *s, kg_record *r)
{
    struct cli_limit l;
    if (cli_parse_limit_spec(s, &l) != 0)
        return -1;
    return kg_record_add_limit(r, l.name, l.count, l.window, l.burst) == KG_OK ? 0 : -1;
}
