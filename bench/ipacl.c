/*
 * bench/ipacl - what the ipacl account stage costs per check, for a key
 * restricted to 4 networks (the client in the last one, so every network
 * is tried).
 *
 * Two policies, the same but for the account stage (none / ipacl), run
 * in turns on one thread with the same key from a key file (the record
 * is cached after the first check); the difference of their ns per check
 * is ipacl's share.  Beside it, the matching step alone: the record's
 * networks matched against one address, with the strings parsed on each
 * call (ipacl before the record kept them parsed) and with the record's
 * parsed networks (kg_record_allowed_nets, ipacl now).
 *
 *   bench/ipacl [--seconds S]      (from the build folder: make run-bench-ipacl)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <keygate/keygate.h>
#include <keygate/plugin.h>

static double seconds = 0.5;

static const char *const NETS[4] = { "203.0.113.0/24", "2001:db8::/32", "198.51.100.0/24",
                               "10.0.0.0/8" };
static const char *CLIENT = "10.1.2.3";

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

#define POLICY                                                          \
    "credential:\n"                                                     \
    "  - {module: bearer, control: required}\n"                         \
    "keystore:\n"                                                       \
    "  - {module: file, control: required, options: {path: %s}}\n"      \
    "plans:\n"                                                          \
    "  pro:\n"                                                          \
    "%s"

static kg_policy *load(kg_context *ctx, const char *keys, const char *plan)
{
    char yaml[1024];
    kg_policy *p = NULL;
    kg_diag d;
    snprintf(yaml, sizeof(yaml), POLICY, keys, plan);
    if (kg_policy_load_string(ctx, yaml, "bench", &p, &d) != KG_OK) {
        fprintf(stderr, "bench/ipacl: policy: %s\n", d.message);
        exit(1);
    }
    return p;
}

/* ns per kg_check() over `seconds`; exits if a check is not allowed. */
static double per_check(const kg_policy *p, const char *key)
{
    kg_request *req;
    char auth[KG_KEY_MAX + 16];
    int64_t start = now_ns(), end = start + (int64_t)(seconds * 1e9), t;
    long n = 0;

    kg_request_new(&req);
    snprintf(auth, sizeof(auth), "Bearer %s", key);
    do {
        int k;
        for (k = 0; k < 256; k++) {
            kg_decision *d;
            kg_request_reset(req);
            kg_request_add_header(req, "Authorization", auth);
            kg_request_set_method(req, "GET");
            kg_request_set_path(req, "/v1/scrape");
            kg_request_set_client(req, CLIENT);
            if (kg_check(p, req, &d) != KG_OK || !kg_decision_allowed(d)) {
                fprintf(stderr, "bench/ipacl: the check was not allowed\n");
                exit(1);
            }
            kg_decision_free(d);
        }
        n += 256;
    } while ((t = now_ns()) < end);
    kg_request_free(req);
    return (double)(t - start) / (double)n;
}

/*
 * The match alone, for one record and one address, best of 5 x `seconds`:
 * parse_each parses the record's strings on every call (what ipacl did
 * before the record kept them parsed), else the parsed networks are used.
 */
static volatile int sink;

static double per_match(const kg_record *r, const unsigned char addr[16], int parse_each)
{
    double best = 1e18;
    int round;
    for (round = 0; round < 5; round++) {
        int64_t start = now_ns(), end = start + (int64_t)(seconds * 1e9), t;
        long n = 0;
        do {
            int k;
            for (k = 0; k < 1024; k++) {
                size_t i, nn = kg_record_cidr_count(r);
                int ok = 0;
                if (parse_each) {
                    for (i = 0; i < nn && !ok; i++) {
                        kg_cidr c;
                        if (kg_cidr_parse(kg_record_cidr(r, i), &c) == KG_OK &&
                            kg_cidr_contains(&c, addr))
                            ok = 1;
                    }
                } else {
                    const kg_cidr *nets = kg_record_allowed_nets(r, &nn);
                    for (i = 0; i < nn && !ok; i++)
                        ok = kg_cidr_contains(&nets[i], addr);
                }
                sink = ok;
            }
            n += 1024;
        } while ((t = now_ns()) < end);
        if ((double)(t - start) / (double)n < best)
            best = (double)(t - start) / (double)n;
    }
    return best;
}

int main(int argc, char **argv)
{
    char dir[] = "/tmp/kg-bench-ipacl-XXXXXX", keys[64], key[KG_KEY_MAX], hex[2 * KG_HASH_LEN + 1];
    unsigned char h[KG_HASH_LEN];
    double best_open = 1e18, best_acl = 1e18;
    kg_context *ctx;
    kg_policy *open, *acl;
    FILE *f;
    int i;

    if (argc == 3 && strcmp(argv[1], "--seconds") == 0)
        seconds = atof(argv[2]);
    if (mkdtemp(dir) == NULL)
        return 1;
    snprintf(keys, sizeof(keys), "%s/keys.yaml", dir);
    kg_key_generate("whizo", key, sizeof(key));
    kg_key_hash(key, strlen(key), h);
    kg_hash_to_hex(h, hex);
    f = fopen(keys, "w");
    if (f == NULL)
        return 1;
    fprintf(f, "keys:\n  - id: k_1\n    name: bench\n    prefix: \"%.8s\"\n    hash: %s\n"
            "    plan: pro\n    status: active\n    allowed_cidrs: [%s, '%s', %s, %s]\n",
            key, hex, NETS[0], NETS[1], NETS[2], NETS[3]);
    fclose(f);

    kg_context_new(&ctx);
    open = load(ctx, keys, "    account: []\n");
    acl = load(ctx, keys, "    account:\n      - {module: ipacl, control: requisite}\n");
    /* Turns, best of 5: the machine is shared, the minimum is the cost. */
    for (i = 0; i < 5; i++) {
        double a = per_check(open, key), b = per_check(acl, key);
        if (a < best_open) best_open = a;
        if (b < best_acl) best_acl = b;
    }
    printf("kg_check, no account stage     %8.1f ns/check\n", best_open);
    printf("kg_check, ipacl (key: 4 CIDRs) %8.1f ns/check\n", best_acl);
    printf("ipacl's share                  %8.1f ns/check\n", best_acl - best_open);

    {
        kg_record *r = kg_record_new();
        unsigned char addr[16];
        for (i = 0; i < 4; i++)
            kg_record_add_cidr(r, NETS[i]);
        kg_addr_parse(CLIENT, addr);
        printf("match, strings parsed per check %7.1f ns/check\n", per_match(r, addr, 1));
        printf("match, networks parsed once     %7.1f ns/check\n", per_match(r, addr, 0));
        kg_record_unref(r);
    }

    kg_policy_free(open);
    kg_policy_free(acl);
    kg_context_free(ctx);
    unlink(keys);
    rmdir(dir);
    return 0;
}
