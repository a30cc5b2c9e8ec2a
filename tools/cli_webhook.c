/*
 * cli_webhook.c - `keygate webhook secret new|sign|verify`.
 *
 * The payload is read from standard input and signed or verified byte
 * for byte (no newline added or stripped).  verify exits 0 if valid, 1
 * if not (with the reason), 2 on a usage error.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include <keygate/webhook.h>

#include "cli.h"

#define MAX_PAYLOAD (64 * 1024 * 1024)

/* The schemes tried, in order, when verify is not told which. */
static const char *const builtin_schemes[] = { "standard", "github", "stripe" };

static void webhook_usage(FILE *f)
{
    fputs(
"usage: keygate webhook secret new [--scheme v1|v1a]\n"
"         a new secret: v1 prints whsec_...; v1a prints the whsk_ secret key\n"
"         then the whpk_ public key, one per line\n"
"       keygate webhook sign [--scheme standard|github|stripe] --secret S\n"
"                            [--secret OLDER]... [--id ID] [--timestamp T] < payload\n"
"         prints the headers to send, one 'Name: value' per line (without\n"
"         --scheme: the first of the policy's signers:)\n"
"       keygate webhook verify --secret S [--secret OLD]... --header 'Name: value'...\n"
"                              [--tolerance SECONDS] [--scheme S] [--now T] < payload\n"
"         exit 0 valid, 1 invalid (the reason is printed), 2 usage error;\n"
"         the scheme is recognised by its signature header\n"
"Secrets are given newest first; --secret-file FILE reads them one per line\n"
"(kept out of the process list).  The payload is taken byte for byte.\n", f);
}

/* Read all of stdin; NULL (with a message) on error. */
static char *read_payload(size_t *len_r)
{
    size_t len = 0, cap = 0, n;
    char *buf = NULL, *nb;

    for (;;) {
        if (cap - len < 65536) {
            cap = cap ? 2 * cap : 65536 * 2;
            if (cap > MAX_PAYLOAD + 65536 * 2) {
                fprintf(stderr, "keygate: the payload is larger than %d bytes\n",
                        MAX_PAYLOAD);
                free(buf);
                return NULL;
            }
            nb = realloc(buf, cap);
            if (nb == NULL) {
                fprintf(stderr, "keygate: out of memory\n");
                free(buf);
                return NULL;
            }
            buf = nb;
        }
        n = fread(buf + len, 1, cap - len, stdin);
        len += n;
        if (n == 0)
            break;
    }
    if (ferror(stdin)) {
        fprintf(stderr, "keygate: cannot read the payload from standard "
                "input: %s\n", strerror(errno));
        free(buf);
        return NULL;
    }
    *len_r = len;
    return buf;
}

/*
 * Secrets from a file, one per line, newest first (keeps them out of the
 * process list).  Blank lines and lines starting with '#' are skipped.
 */
static int read_secret_file(const char *path, kg_webhook_secrets *sec)
{
    FILE *f = fopen(path, "r");
    char line[4096];
    int n = 0, rc = 0;

    if (f == NULL) {
        fprintf(stderr, "keygate: cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        size_t len = strlen(line);
        if (len == sizeof(line) - 1 && line[len - 1] != '\n') {
            fprintf(stderr, "keygate: %s: a line is longer than %zu bytes\n",
                    path, sizeof(line) - 2);
            rc = -1;
            break;
        }
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (len == 0 || line[0] == '#')
            continue;
        if (kg_webhook_secrets_add(sec, line, len) != KG_OK) {
            rc = -1;
            break;
        }
        n++;
    }
    OPENSSL_cleanse(line, sizeof(line));
    fclose(f);
    if (rc == 0 && n == 0) {
        fprintf(stderr, "keygate: %s holds no secret\n", path);
        rc = -1;
    }
    return rc;
}

/* Digits only (Unix seconds). */
static int parse_seconds(const char *s, int64_t *v_r)
{
    char *end;
    long long v;
    if (*s < '0' || *s > '9')
        return -1;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno || *end != '\0')
        return -1;
    *v_r = v;
    return 0;
}

/* "300", "300s", "5m", "1h". */
static int cmd_secret(struct cli *c, int argc, char **argv)
{
    static const struct option opts[] = {
        { "scheme", required_argument, NULL, 's' },
        { "help", no_argument, NULL, 'h' },
        CLI_JSON_OPTIONS,
        { NULL, 0, NULL, 0 },
    };
    char secret[KG_WEBHOOK_SECRET_MAX], pub[KG_WEBHOOK_SECRET_MAX];
    kg_webhook_secret_type type = KG_WEBHOOK_SECRET_V1;
    kg_error e;
    int ch;

    if (argc < 2 || strcmp(argv[1], "new") != 0) {
        webhook_usage(stderr);
        return EXIT_USAGE;
    }
    argc--;
    argv++;
    optind = 0;
    while ((ch = getopt_long(argc, argv, "s:h", opts, NULL)) != -1) {
        if (cli_json_option(c, ch))
            continue;
        switch (ch) {
        case 's':
            if (strcmp(optarg, "v1") == 0) {
                type = KG_WEBHOOK_SECRET_V1;
            } else if (strcmp(optarg, "v1a") == 0) {
                type = KG_WEBHOOK_SECRET_V1A;
            } else {
                fprintf(stderr, "keygate: --scheme is v1 (HMAC-SHA256, "
                        "whsec_) or v1a (Ed25519, whsk_/whpk_), not '%s'\n",
                        optarg);
                return EXIT_USAGE;
            }
            break;
        case 'h': webhook_usage(stdout); return EXIT_OK;
        default: webhook_usage(stderr); return EXIT_USAGE;
        }
    }
    if (optind < argc) {
        webhook_usage(stderr);
        return EXIT_USAGE;
    }
    e = kg_webhook_secret_generate(type, secret, sizeof(secret), pub, sizeof(pub));
    if (e != KG_OK) {
        fprintf(stderr, "keygate: cannot make a secret: %s\n", kg_strerror(e));
        return EXIT_DENIED;
    }
    if (c->json) {
        printf("{\"secret\":\"%s\"", secret);
        if (type == KG_WEBHOOK_SECRET_V1A)
            printf(",\"public\":\"%s\"", pub);
        printf("}\n");
    } else {
        printf("%s\n", secret);
        if (type == KG_WEBHOOK_SECRET_V1A)
            printf("%s\n", pub);
    }
    OPENSSL_cleanse(secret, sizeof(secret));
    return EXIT_OK;
}

struct args {
    const char *scheme;
    const char *id;
    int64_t timestamp;
    int64_t tolerance;
    int64_t now;
    int has_now;
    kg_webhook_secrets *secrets;
    kg_webhook_headers *headers;
};

/* Parse sign/verify options; returns -1 (usage printed) on error. */
static int parse_args(struct cli *c, int argc, char **argv, int verify,
                      struct args *a)
{
    static const struct option opts[] = {
        { "scheme", required_argument, NULL, 's' },
        { "secret", required_argument, NULL, 'k' },
        { "secret-file", required_argument, NULL, 'f' },
        { "id", required_argument, NULL, 'i' },
        { "timestamp", required_argument, NULL, 't' },
        { "header", required_argument, NULL, 'H' },
        { "tolerance", required_argument, NULL, 'T' },
        { "now", required_argument, NULL, 'n' },
        { "help", no_argument, NULL, 'h' },
        CLI_JSON_OPTIONS,
        { NULL, 0, NULL, 0 },
    };
    int ch;

    optind = 0;
    while ((ch = getopt_long(argc, argv, "s:k:f:i:t:H:T:n:h", opts, NULL)) != -1) {
        if (cli_json_option(c, ch))
            continue;
        switch (ch) {
        case 's':
            a->scheme = optarg;
            break;
        case 'k':
            if (optarg[0] == '\0') {
                fprintf(stderr, "keygate: --secret is empty\n");
                return -1;
            }
            if (kg_webhook_secrets_add(a->secrets, optarg, strlen(optarg)) != KG_OK) {
                fprintf(stderr, "keygate: out of memory\n");
                return -1;
            }
            /* Do not leave the secret in the process's argument list. */
            OPENSSL_cleanse(optarg, strlen(optarg));
            break;
        case 'f':
            if (read_secret_file(optarg, a->secrets) != 0)
                return -1;
            break;
        case 'i':
            if (verify)
                goto usage;
            a->id = optarg;
            break;
        case 't':
            if (verify)
                goto usage;
            if (parse_seconds(optarg, &a->timestamp) != 0 || a->timestamp == 0) {
                fprintf(stderr, "keygate: --timestamp must be Unix seconds, "
                        "not '%s'\n", optarg);
                return -1;
            }
            break;
        case 'H':
            if (!verify)
                goto usage;
            if (kg_webhook_headers_add_line(a->headers, optarg) != KG_OK) {
                fprintf(stderr, "keygate: --header must be 'Name: value', "
                        "not '%s'\n", optarg);
                return -1;
            }
            break;
        case 'T':
            if (!verify)
                goto usage;
            /* The library's one duration reader (plugin and CLI alike). */
            if (kg_duration_parse(optarg, &a->tolerance) != KG_OK) {
                fprintf(stderr, "keygate: --tolerance must be seconds (or "
                        "30s, 5m, 1h), not '%s'\n", optarg);
                return -1;
            }
            break;
        case 'n':
            if (!verify)
                goto usage;
            if (parse_seconds(optarg, &a->now) != 0) {
                fprintf(stderr, "keygate: --now must be Unix seconds, not "
                        "'%s'\n", optarg);
                return -1;
            }
            a->has_now = 1;
            break;
        case 'h':
            webhook_usage(stdout);
            return 1;
        default:
            goto usage;
        }
    }
    if (optind < argc)
        goto usage;
    if (kg_webhook_secrets_count(a->secrets) == 0) {
        fprintf(stderr, "keygate: give the secret with --secret S or "
                "--secret-file FILE (newest first; repeat for older ones)\n");
        return -1;
    }
    if (verify && kg_webhook_headers_count(a->headers) == 0) {
        fprintf(stderr, "keygate: give the received headers with --header "
                "'Name: value'\n");
        return -1;
    }
    return 0;
usage:
    webhook_usage(stderr);
    return -1;
}

static int cmd_sign(struct cli *c, struct args *a)
{
    kg_webhook_message msg;
    kg_policy *p = NULL;
    kg_webhook_signer *s = NULL;
    kg_diag d;
    kg_error e;
    size_t i, len = 0;
    char *payload;
    int rc = EXIT_USAGE;

    if (a->scheme == NULL) {
        /* The policy's choice. */
        p = cli_load_policy(c, NULL);
        if (p == NULL) {
            fprintf(stderr, "keygate: give --scheme standard|github|stripe, "
                    "or a policy with a signers: section\n");
            return EXIT_USAGE;
        }
        if (kg_policy_signer_count(p) == 0) {
            fprintf(stderr, "keygate: %s has no signers: section; give "
                    "--scheme standard|github|stripe\n", kg_policy_source(p));
            kg_policy_free(p);
            return EXIT_USAGE;
        }
    } else if ((e = kg_webhook_signer_new(c->ctx, a->scheme, &s, &d)) != KG_OK) {
        cli_print_diag("unknown scheme", e, &d);
        fprintf(stderr, "keygate: the schemes are standard, github and stripe\n");
        return EXIT_USAGE;
    }
    payload = read_payload(&len);
    if (payload == NULL)
        goto out;
    memset(&msg, 0, sizeof(msg));
    msg.id = a->id;
    msg.timestamp = a->timestamp;
    msg.payload = payload;
    msg.payload_len = len;
    e = s ? kg_webhook_sign(s, &msg, a->secrets, a->headers, &d)
          : kg_policy_webhook_sign(p, NULL, &msg, a->secrets, a->headers, &d);
    free(payload);
    if (e != KG_OK) {
        cli_print_diag("cannot sign", e, &d);
        goto out;
    }
    if (c->json)
        putchar('{');
    for (i = 0; i < kg_webhook_headers_count(a->headers); i++) {
        const char *name, *value;
        kg_webhook_headers_at(a->headers, i, &name, &value);
        if (c->json) {
            printf("%s", i ? "," : "");
            cli_json_str(stdout, name);
            putchar(':');
            cli_json_str(stdout, value);
        } else {
            printf("%s: %s\n", name, value);
        }
    }
    if (c->json)
        printf("}\n");
    rc = EXIT_OK;
out:
    kg_webhook_signer_free(s);
    kg_policy_free(p);
    return rc;
}

static void print_invalid(struct cli *c, kg_webhook_status st, const char *msg)
{
    if (c->json) {
        printf("{\"valid\":false,\"reason\":\"%s\",\"message\":",
               kg_webhook_status_name(st));
        cli_json_str(stdout, msg);
        printf("}\n");
    } else {
        printf("invalid: %s: %s\n", kg_webhook_status_name(st), msg);
    }
}

static int cmd_verify(struct cli *c, struct args *a)
{
    kg_webhook_signer *s = NULL;
    kg_webhook_status st;
    kg_diag d;
    kg_error e;
    size_t i, len = 0;
    char *payload = NULL;
    int rc = EXIT_USAGE;

    if (a->scheme != NULL) {
        if ((e = kg_webhook_signer_new(c->ctx, a->scheme, &s, &d)) != KG_OK) {
            cli_print_diag("unknown scheme", e, &d);
            return EXIT_USAGE;
        }
    } else {
        /* The scheme whose signature header came with the webhook. */
        for (i = 0; i < sizeof(builtin_schemes) / sizeof(*builtin_schemes) && s == NULL; i++) {
            if ((e = kg_webhook_signer_new(c->ctx, builtin_schemes[i], &s, &d)) != KG_OK) {
                cli_print_diag("cannot load a signer", e, &d);
                return EXIT_USAGE;
            }
            if (kg_webhook_headers_get(a->headers, kg_webhook_signer_header(s), NULL) == NULL) {
                kg_webhook_signer_free(s);
                s = NULL;
            }
        }
        if (s == NULL) {
            print_invalid(c, KG_WEBHOOK_MISSING_HEADER, "no signature header "
                          "(expected one of webhook-signature, "
                          "X-Hub-Signature-256, Stripe-Signature)");
            return EXIT_DENIED;
        }
    }
    payload = read_payload(&len);
    if (payload == NULL)
        goto out;
    if (!a->has_now)
        a->now = (int64_t)time(NULL);
    e = kg_webhook_verify(s, a->headers, payload, len, a->secrets,
                          a->tolerance, a->now, &st, &d);
    if (e == KG_OK) {
        if (c->json)
            printf("{\"valid\":true,\"scheme\":\"%s\"}\n",
                   kg_webhook_signer_scheme(s));
        else
            printf("valid (%s)\n", kg_webhook_signer_scheme(s));
        rc = EXIT_OK;
    } else if (e == KG_ERR_VERIFY) {
        print_invalid(c, st, d.message);
        rc = EXIT_DENIED;
    } else {
        /* A secret the scheme cannot use: the caller's mistake. */
        cli_print_diag("cannot verify", e, &d);
        rc = EXIT_USAGE;
    }
out:
    free(payload);
    kg_webhook_signer_free(s);
    return rc;
}

int cmd_webhook(struct cli *c, int argc, char **argv)
{
    struct args a;
    int rc, verify;

    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        webhook_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : EXIT_OK;
    }
    if (strcmp(argv[1], "secret") == 0)
        return cmd_secret(c, argc - 1, argv + 1);
    if (strcmp(argv[1], "sign") && strcmp(argv[1], "verify")) {
        fprintf(stderr, "keygate: unknown webhook command '%s'\n", argv[1]);
        webhook_usage(stderr);
        return EXIT_USAGE;
    }
    verify = strcmp(argv[1], "verify") == 0;
    memset(&a, 0, sizeof(a));
    a.tolerance = KG_WEBHOOK_TOLERANCE_DEFAULT;
    if (kg_webhook_secrets_new(&a.secrets) != KG_OK ||
        kg_webhook_headers_new(&a.headers) != KG_OK) {
        fprintf(stderr, "keygate: out of memory\n");
        rc = EXIT_USAGE;
        goto out;
    }
    rc = parse_args(c, argc - 1, argv + 1, verify, &a);
    if (rc != 0) {
        rc = rc > 0 ? EXIT_OK : EXIT_USAGE;
        goto out;
    }
    rc = verify ? cmd_verify(c, &a) : cmd_sign(c, &a);
out:
    kg_webhook_secrets_free(a.secrets);
    kg_webhook_headers_free(a.headers);
    return rc;
}
