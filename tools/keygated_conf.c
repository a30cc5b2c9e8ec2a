/*
 * keygated_conf.c - keygated's own settings, all on the command line
 * (the policy file says who may do what; how the service listens is the
 * service manager's business: see conf/keygated.service, which passes
 * $KEYGATED_ARGS from /etc/default/keygated).
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keygated.h"

#ifndef KG_DASHBOARDDIR
#define KG_DASHBOARDDIR "/usr/local/share/keygate/dashboard"
#endif
#ifndef KG_SYSCONFDIR
#define KG_SYSCONFDIR "/usr/local/etc/keygate"
#endif

void kgd_usage(FILE *f)
{
    fputs(
"usage: keygated [--config FILE] [--listen ADDR:PORT]... [--user USER]\n"
"                [--pid-file FILE] [--check-config] [options]\n"
"\n"
"keygated answers forward-auth requests from a gateway (nginx auth_request,\n"
"Envoy ext_authz, Traefik forwardAuth, Caddy forward_auth) with the\n"
"decision of a keygate policy.\n"
"\n"
"Endpoints:\n"
"  ANY    /check, /check/<path>  decide; 200 allowed, else 400/401/403/429/503\n"
"                                with a JSON body.  The original request is\n"
"                                read from X-Original-Method/-URI (nginx),\n"
"                                X-Forwarded-Method/-Uri (Traefik, Caddy) or\n"
"                                the path after /check (Envoy path_prefix)\n"
"  GET    /whoami                the presented key's record and limits (no quota used)\n"
"  DELETE /leases/<id>           end a concurrency lease (X-Keygate-Lease)\n"
"  GET    /healthz, /metrics     liveness; Prometheus metrics\n"
"  (the admin API, /api/v1/..., only on --admin-listen's listener)\n"
"\n"
"Options:\n"
"  -c, --config FILE       the policy (default: $KEYGATE_CONFIG, else the\n"
"                          embedded conf/keygate.yaml; installed copy:\n"
"                          " KG_SYSCONFDIR "/keygate.yaml)\n"
"  -l, --listen ADDR:PORT  where to listen; repeatable (default 127.0.0.1:8080;\n"
"                          [::1]:8080 for IPv6, :8080 for every IPv4 address,\n"
"                          port 0 picks a free port and prints it)\n"
"  -u, --user USER         drop to USER (and its group) after binding\n"
"  -p, --pid-file FILE     write the process id to FILE\n"
"      --check-config      load the policy, report, exit (0 ok, 2 error)\n"
"  -t, --trusted-proxy CIDR\n"
"                          a peer allowed to say who the client is with\n"
"                          X-Forwarded-For (right-most untrusted entry wins);\n"
"                          repeatable; default 127.0.0.1 and ::1 (a\n"
"                          gateway on this host); 'none'\n"
"                          trusts no one (the TCP peer is the client)\n"
"  -a, --access-log FILE   JSON access log: a file, '-' for stdout (default),\n"
"                          or 'off'; reopened on SIGHUP\n"
"      --origin MODE       where the original request is read from: auto\n"
"                          (default: X-Original-*, then X-Forwarded-*, then\n"
"                          the path), nginx, forwarded, or path\n"
"      --threads N         worker threads per listener (default: one per core)\n"
"      --max-connections N served at once per listener (default 4096); one\n"
"                          past them gets 503\n"
"      --lookup-threads N  threads that run the checks whose key store would\n"
"                          wait on the network (LDAP, PostgreSQL; not cached),\n"
"                          so that they never hold up other requests (default\n"
"                          16; 0: on the worker threads)\n"
"      --timeout SECONDS   idle keep-alive timeout (default 60)\n"
"      --max-header-bytes N  request line + headers (default 16384; larger:\n"
"                          414 or 431)\n"
"      --max-headers N     header count (default 128; more: 431)\n"
"      --drain SECONDS     on SIGTERM, wait this long for requests in flight\n"
"                          (default 10)\n"
"      --limit-capacity N  memory limiter state: at most N (key, limit)\n"
"                          entries (512 bytes per key of up to three limits;\n"
"                          default 1000000); idle ones go first, then the\n"
"                          least recently used\n"
"      --admin-listen ADDR:PORT\n"
"                          open the admin API (/api/v1, docs/admin-api.md)\n"
"                          and the dashboard on a listener of its own (off\n"
"                          by default; also the policy's admin_listen:);\n"
"                          plain HTTP only on a loopback address\n"
"      --admin-cert FILE, --admin-key FILE\n"
"                          serve the admin listener over TLS (PEM files)\n"
"      --admin-insecure    allow plain HTTP on an admin listener that is\n"
"                          not on loopback (keys then travel in clear)\n"
"      --admin-webhook-insecure\n"
"                          let customer keys give their alert receivers\n"
"                          http:// and loopback or private addresses (tests,\n"
"                          closed networks; default: https:// to a public\n"
"                          address only)\n"
"      --dashboard-dir DIR the dashboard's files (default\n"
"                          " KG_DASHBOARDDIR ")\n"
"      --alerts-interval SECONDS  evaluate the policy's alert rules and send\n"
"                          what is due this often (default 5)\n"
"  -h, --help, -V, --version\n"
"\n"
"Signals: SIGHUP reloads the policy and key stores (a policy that does not\n"
"load leaves the old one serving and logs why; limiter state survives) and\n"
"reopens the access log.  SIGTERM/SIGINT stop accepting, drain and exit.\n"
"\n"
"Environment: KEYGATE_CONFIG (the policy), KEYGATE_STATE_DIR (used by the\n"
"default policy's key file), KEYGATE_PLUGIN_PATH (extra plugin folders).\n",
        f);
}

static int parse_uint(const char *opt, const char *s, unsigned lo,
                      unsigned long hi, unsigned long *v_r)
{
    char *end;
    unsigned long v;
    errno = 0;
    v = strtoul(s, &end, 10);
    if (*s == '\0' || *end != '\0' || errno || *s == '-' || v < lo || v > hi) {
        fprintf(stderr, "keygated: %s wants a number from %u to %lu, not '%s'\n",
                opt, lo, hi, s);
        return -1;
    }
    *v_r = v;
    return 0;
}

static int add_proxy(kgd_conf *c, const char *s, int *replaced)
{
    if (!*replaced) {
        c->nproxies = 0;
        *replaced = 1;
    }
    if (strcmp(s, "none") == 0)
        return 0;
    if (c->nproxies == KGD_MAX_PROXIES) {
        fprintf(stderr, "keygated: at most %d --trusted-proxy\n", KGD_MAX_PROXIES);
        return -1;
    }
    if (kg_cidr_parse(s, &c->proxies[c->nproxies]) != KG_OK) {
        fprintf(stderr, "keygated: --trusted-proxy '%s' is not an address or "
                "CIDR (e.g. 10.0.0.0/8, 192.0.2.7, fd00::/8)\n", s);
        return -1;
    }
    c->nproxies++;
    return 0;
}

int kgd_conf_parse(kgd_conf *c, int argc, char **argv)
{
    enum { O_CHECK = 256, O_ORIGIN, O_THREADS, O_MAXCONN, O_TIMEOUT,
           O_MAXHB, O_MAXH, O_DRAIN, O_LIMCAP, O_ADMIN, O_ADMIN_CERT,
           O_ADMIN_KEY, O_ADMIN_INSECURE, O_DASHBOARD, O_LOOKUP, O_ALERTS,
           O_ADMIN_WEBHOOK_INSECURE };
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' },
        { "listen", required_argument, NULL, 'l' },
        { "user", required_argument, NULL, 'u' },
        { "pid-file", required_argument, NULL, 'p' },
        { "check-config", no_argument, NULL, O_CHECK },
        { "trusted-proxy", required_argument, NULL, 't' },
        { "access-log", required_argument, NULL, 'a' },
        { "origin", required_argument, NULL, O_ORIGIN },
        { "threads", required_argument, NULL, O_THREADS },
        { "max-connections", required_argument, NULL, O_MAXCONN },
        { "timeout", required_argument, NULL, O_TIMEOUT },
        { "max-header-bytes", required_argument, NULL, O_MAXHB },
        { "max-headers", required_argument, NULL, O_MAXH },
        { "drain", required_argument, NULL, O_DRAIN },
        { "limit-capacity", required_argument, NULL, O_LIMCAP },
        { "admin-listen", required_argument, NULL, O_ADMIN },
        { "admin-cert", required_argument, NULL, O_ADMIN_CERT },
        { "admin-key", required_argument, NULL, O_ADMIN_KEY },
        { "admin-insecure", no_argument, NULL, O_ADMIN_INSECURE },
        { "admin-webhook-insecure", no_argument, NULL, O_ADMIN_WEBHOOK_INSECURE },
        { "dashboard-dir", required_argument, NULL, O_DASHBOARD },
        { "lookup-threads", required_argument, NULL, O_LOOKUP },
        { "alerts-interval", required_argument, NULL, O_ALERTS },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { NULL, 0, NULL, 0 },
    };
    const char *env = getenv("KEYGATE_CONFIG");
    int ch, replaced = 0;
    unsigned long v;

    memset(c, 0, sizeof(*c));
    c->access_log = "-";
    c->max_connections = 4096;
    c->timeout_s = 60;
    c->max_header_bytes = 16384;
    c->max_headers = 128;
    c->drain_s = 10;
    c->dashboard_dir = KG_DASHBOARDDIR;
    c->lookup_threads = 16;
    c->alerts_interval_s = 5;
    /* Only the addresses a gateway on this host connects from: trusting
     * all of 127.0.0.0/8 would let any local client that can pick its
     * source address (127.0.0.2, ...) say who it is in X-Forwarded-For
     * (docs/keygated.md, "The client address"). */
    kg_cidr_parse("127.0.0.1/32", &c->proxies[c->nproxies++]);
    kg_cidr_parse("::1/128", &c->proxies[c->nproxies++]);
    if (env != NULL && *env != '\0')
        c->config = env;

    while ((ch = getopt_long(argc, argv, "c:l:u:p:t:a:hV", opts, NULL)) != -1) {
        switch (ch) {
        case 'c': c->config = optarg; break;
        case 'l':
            if (c->nlisten == KGD_MAX_LISTEN) {
                fprintf(stderr, "keygated: at most %d --listen\n", KGD_MAX_LISTEN);
                return -1;
            }
            c->listen[c->nlisten++] = optarg;
            break;
        case 'u': c->user = optarg; break;
        case 'p': c->pid_file = optarg; break;
        case O_CHECK: c->check_config = 1; break;
        case 't':
            if (add_proxy(c, optarg, &replaced) != 0)
                return -1;
            break;
        case 'a': c->access_log = optarg; break;
        case O_ORIGIN:
            if (strcmp(optarg, "auto") == 0) c->origin = KGD_ORIGIN_AUTO;
            else if (strcmp(optarg, "nginx") == 0) c->origin = KGD_ORIGIN_NGINX;
            else if (strcmp(optarg, "forwarded") == 0) c->origin = KGD_ORIGIN_FORWARDED;
            else if (strcmp(optarg, "path") == 0) c->origin = KGD_ORIGIN_PATH;
            else {
                fprintf(stderr, "keygated: --origin wants auto, nginx, "
                        "forwarded or path, not '%s'\n", optarg);
                return -1;
            }
            break;
        case O_THREADS:
            if (parse_uint("--threads", optarg, 1, 1024, &v)) return -1;
            c->threads = (unsigned)v;
            break;
        case O_MAXCONN:
            if (parse_uint("--max-connections", optarg, 1, 1000000, &v)) return -1;
            c->max_connections = (unsigned)v;
            break;
        case O_TIMEOUT:
            if (parse_uint("--timeout", optarg, 1, 86400, &v)) return -1;
            c->timeout_s = (unsigned)v;
            break;
        case O_MAXHB:
            if (parse_uint("--max-header-bytes", optarg, 4096, 1048576, &v)) return -1;
            c->max_header_bytes = v;
            break;
        case O_MAXH:
            if (parse_uint("--max-headers", optarg, 8, 10000, &v)) return -1;
            c->max_headers = (unsigned)v;
            break;
        case O_DRAIN:
            if (parse_uint("--drain", optarg, 0, 3600, &v)) return -1;
            c->drain_s = (unsigned)v;
            break;
        case O_LIMCAP:
            if (parse_uint("--limit-capacity", optarg, 1000, 1000000000, &v)) return -1;
            c->limit_capacity = v;
            break;
        case O_ADMIN: c->admin_listen = optarg; break;
        case O_ADMIN_CERT: c->admin_cert = optarg; break;
        case O_ADMIN_KEY: c->admin_key = optarg; break;
        case O_ADMIN_INSECURE: c->admin_insecure = 1; break;
        case O_ADMIN_WEBHOOK_INSECURE: c->admin_webhook_insecure = 1; break;
        case O_DASHBOARD: c->dashboard_dir = optarg; break;
        case O_LOOKUP:
            if (parse_uint("--lookup-threads", optarg, 0, 1024, &v)) return -1;
            c->lookup_threads = (unsigned)v;
            break;
        case O_ALERTS:
            if (parse_uint("--alerts-interval", optarg, 1, 3600, &v)) return -1;
            c->alerts_interval_s = (unsigned)v;
            break;
        case 'h': kgd_usage(stdout); return 1;
        case 'V': printf("keygated %s\n", kg_version()); return 1;
        default:
            fputs("keygated: see keygated --help\n", stderr);
            return -1;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "keygated: unexpected argument '%s' (see keygated --help)\n",
                argv[optind]);
        return -1;
    }
    if (c->nlisten == 0)
        c->listen[c->nlisten++] = "127.0.0.1:8080";
    return 0;
}
