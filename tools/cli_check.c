/* cli_check.c - `keygate check`: run the policy on a request. */
#include "config.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void check_usage(FILE *f)
{
    fputs("usage: keygate check [--header 'Name: value']... [--ip ADDR]\n"
          "                     [--method M] [--path P] [--repeat N] [--peek]\n"
          "Runs the policy on the request and prints the decision, one line per\n"
          "repetition.  The path is a request target (a query may follow), read\n"
          "as keygated reads X-Original-URI (default: GET /).  Exit 0 if the\n"
          "(last) request was allowed, 1 if denied, 2 on a usage or policy error.\n", f);
}

static void print_decision(struct cli *c, const kg_decision *d, int n)
{
    size_t i, nh = kg_decision_header_count(d);
    const char *name, *value;

    if (c->json) {
        printf("{\"n\":%d,\"allowed\":%s,\"status\":%d,\"code\":", n,
               kg_decision_allowed(d) ? "true" : "false", kg_decision_status(d));
        cli_json_str(stdout, kg_decision_allowed(d) ? NULL : kg_code_name(kg_decision_code(d)));
        printf(",\"message\":");
        cli_json_str(stdout, kg_decision_message(d));
        printf(",\"key_id\":");
        cli_json_str(stdout, kg_decision_key_id(d));
        printf(",\"account\":");
        cli_json_str(stdout, kg_decision_account_id(d));
        printf(",\"account_external_id\":");
        cli_json_str(stdout, kg_decision_account_external_id(d));
        printf(",\"account_metadata\":%s", kg_decision_account_metadata(d)
                                                ? kg_decision_account_metadata(d) : "null");
        printf(",\"plan\":");
        cli_json_str(stdout, kg_decision_plan(d));
        printf(",\"priority\":%d,\"decided_by\":", kg_decision_priority(d));
        cli_json_str(stdout, kg_decision_decided_by(d));
        printf(",\"lease\":");
        cli_json_str(stdout, kg_decision_lease(d));
        printf(",\"headers\":{");
        for (i = 0; i < nh; i++) {
            kg_decision_header(d, i, &name, &value);
            printf("%s", i ? "," : "");
            cli_json_str(stdout, name);
            putchar(':');
            cli_json_str(stdout, value);
        }
        printf("}");
        if (!kg_decision_allowed(d))
            printf(",\"body\":%s", kg_decision_body(d));
        printf("}\n");
        return;
    }
    printf("%d %s %d %s", n, kg_decision_allowed(d) ? "allowed" : "denied",
           kg_decision_status(d),
           kg_decision_allowed(d) ? "ok" : kg_code_name(kg_decision_code(d)));
    if (kg_decision_key_id(d))
        printf(" key=%s", kg_decision_key_id(d));
    if (kg_decision_account_id(d))
        printf(" account=%s", kg_decision_account_id(d));
    if (kg_decision_plan(d))
        printf(" plan=%s priority=%d", kg_decision_plan(d), kg_decision_priority(d));
    printf(" by=%s", kg_decision_decided_by(d));
    for (i = 0; i < nh; i++) {
        kg_decision_header(d, i, &name, &value);
        printf(" | %s: %s", name, value);
    }
    if (!kg_decision_allowed(d))
        printf(" | %s", kg_decision_message(d));
    putchar('\n');
}

int cmd_check(struct cli *c, int argc, char **argv)
{
    static const struct option opts[] = {
        { "header", required_argument, NULL, 'H' },
        { "ip", required_argument, NULL, 'i' },
        { "method", required_argument, NULL, 'm' },
        { "path", required_argument, NULL, 'p' },
        { "repeat", required_argument, NULL, 'n' },
        { "peek", no_argument, NULL, 'k' },
        { "help", no_argument, NULL, 'h' },
        CLI_JSON_OPTIONS,
        { NULL, 0, NULL, 0 },
    };
    const char *headers[128];
    size_t nh = 0, i;
    const char *ip = NULL, *method = "GET", *path = "/";
    long repeat = 1;
    int ch, peek = 0, rc = EXIT_USAGE, n;
    kg_policy *p = NULL;
    kg_request *req = NULL;
    char *end;

    optind = 0;  /* a fresh getopt (see cli_key.c) */
    while ((ch = getopt_long(argc, argv, "H:i:m:p:n:kh", opts, NULL)) != -1) {
        if (cli_json_option(c, ch))
            continue;
        switch (ch) {
        case 'H':
            if (nh == 128 || strchr(optarg, ':') == NULL) {
                fprintf(stderr, "keygate: --header wants 'Name: value'\n");
                return EXIT_USAGE;
            }
            headers[nh++] = optarg;
            break;
        case 'i': ip = optarg; break;
        case 'm': method = optarg; break;
        case 'p': path = optarg; break;
        case 'n':
            repeat = strtol(optarg, &end, 10);
            if (*end || repeat < 1 || repeat > 10000000) {
                fprintf(stderr, "keygate: --repeat wants a number from 1 to 10000000\n");
                return EXIT_USAGE;
            }
            break;
        case 'k': peek = 1; break;
        case 'h': check_usage(stdout); return EXIT_OK;
        default: check_usage(stderr); return EXIT_USAGE;
        }
    }
    if (optind != argc) {
        check_usage(stderr);
        return EXIT_USAGE;
    }
    if (ip != NULL) {
        unsigned char a[16];
        if (kg_addr_parse(ip, a) != KG_OK) {
            fprintf(stderr, "keygate: --ip %s is not an IPv4 or IPv6 address\n", ip);
            return EXIT_USAGE;
        }
    }
    p = cli_load_policy(c, NULL);
    if (p == NULL)
        return EXIT_USAGE;
    if (kg_request_new(&req) != KG_OK)
        goto out;
    /* A method or path the library refuses is not a usage error: the
     * check answers 400 for it, as keygated does for the same target. */
    if (kg_request_set_target(req, method, path) == KG_ERR_NOMEM)
        goto out;
    if (ip)
        kg_request_set_client(req, ip);
    for (i = 0; i < nh; i++) {
        const char *colon = strchr(headers[i], ':');
        const char *v = colon + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        kg_request_add_header_n(req, headers[i], (size_t)(colon - headers[i]), v, strlen(v));
    }
    for (n = 1; n <= repeat; n++) {
        kg_decision *d = NULL;
        kg_error e = peek ? kg_check_peek(p, req, &d) : kg_check(p, req, &d);
        if (e != KG_OK) {
            fprintf(stderr, "keygate: check: %s\n", kg_strerror(e));
            rc = EXIT_USAGE;
            goto out;
        }
        print_decision(c, d, n);
        rc = kg_decision_allowed(d) ? EXIT_OK : EXIT_DENIED;
        /* The request is over once printed: end its concurrency lease,
         * as a front end does when the upstream answers. */
        if (kg_decision_lease(d) != NULL)
            kg_release(c->ctx, kg_decision_lease(d));
        kg_decision_free(d);
    }
out:
    /* What was checked is counted, as keygated's checks are (the
     * policy's usage: section, docs/usage.md); not for a peek. */
    if (p != NULL && !peek) {
        kg_diag d;
        kg_error e;
        memset(&d, 0, sizeof(d));
        e = kg_usage_flush(p, &d);
        if (e != KG_OK && e != KG_ERR_UNSUPPORTED)
            cli_print_diag("usage not recorded", e, &d);
    }
    kg_request_free(req);
    kg_policy_free(p);
    return rc;
}
