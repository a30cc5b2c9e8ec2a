/*
 * check_ldap.c - the ldap key store against real slapd servers, through
 * the public API (kg_policy_load_string + kg_check).  Started by
 * test_ldap.sh, which runs the servers and passes:
 *   KG_LDAP_A, KG_LDAP_B       ldap://127.0.0.1:PORT/ of two servers
 *   KG_LDAP_DEAD               a URI where nothing listens
 *   KG_LDAP_A_LDAPI            server A's ldapi:// socket
 *   KG_LDAP_A_LDAPS            server A's ldaps:// port
 *   KG_LDAP_CA, KG_LDAP_OTHER_CA  the CA that signed A's certificate, and one that did not
 *   KG_LDAP_CTL                a script: `$KG_LDAP_CTL stop|start|pause|resume|ensure a|b`
 * The clock is injected: cache expiry and failback never sleep.
 */
#include "../unit/accttest.h"  /* testutil.h, and the stores' shared account tests */

#include <pthread.h>
#include <time.h>

#include <ldap.h>

static tu_clock clk;
static void advance(int64_t s) { tu_clock_advance(&clk, s); }

static const char *A, *B, *DEAD, *A_LDAPI, *A_LDAPS, *CA, *OTHER_CA, *CTL;

/* Keys (plaintext: the test made them; the directory has their hashes). */
static char k_active[KG_KEY_MAX], k_revoked[KG_KEY_MAX], k_expired[KG_KEY_MAX],
    k_future[KG_KEY_MAX], k_disabled[KG_KEY_MAX], k_only_a[KG_KEY_MAX],
    k_only_b[KG_KEY_MAX], k_later[KG_KEY_MAX], k_unknown[KG_KEY_MAX],
    k_unknown2[KG_KEY_MAX];

static const char *env(const char *name)
{
    const char *v = getenv(name);
    if (v == NULL || *v == '\0') {
        fprintf(stderr, "check_ldap: %s is not set (run me from test_ldap.sh)\n", name);
        exit(99);
    }
    return v;
}

/* ---- directory contents -------------------------------------------------- */

static LDAPMod *mod(const char *type, const char **vals)
{
    LDAPMod *m = calloc(1, sizeof(*m));
    m->mod_op = LDAP_MOD_ADD;
    m->mod_type = (char *)type;
    m->mod_values = (char **)vals;
    return m;
}

/* Keys must be the same in both servers, so generate once, add twice. */
struct keydef {
    const char *id;
    char *key;
    const char *plan, *status, *expires;
    const char **perms, **cidrs;
    int where;  /* 1: A, 2: B, 3: both */
};

static void add_hashed(const char *uri, const struct keydef *k)
{
    LDAP *ld;
    struct berval pw = { 6, (char *)"secret" };
    int v3 = LDAP_VERSION3, rc;
    unsigned char h[KG_HASH_LEN];
    char hex[2 * KG_HASH_LEN + 1], dn[256];
    const char *oc[] = { "apiKey", NULL }, *idv[] = { k->id, NULL },
               *hv[] = { hex, NULL }, *pv[] = { k->plan, NULL },
               *sv[] = { k->status, NULL }, *ev[] = { k->expires, NULL },
               *nv[] = { "test key", NULL };
    LDAPMod *mods[12];
    size_t n = 0, i;

    kg_key_hash(k->key, strlen(k->key), h);
    kg_hash_to_hex(h, hex);
    mods[n++] = mod("objectClass", oc);
    mods[n++] = mod("apiKeyId", idv);
    mods[n++] = mod("apiKeyHash", hv);
    mods[n++] = mod("apiKeyPlan", pv);
    mods[n++] = mod("apiKeyName", nv);
    if (k->status)
        mods[n++] = mod("apiKeyStatus", sv);
    if (k->expires)
        mods[n++] = mod("apiKeyExpires", ev);
    if (k->perms)
        mods[n++] = mod("apiKeyPermission", k->perms);
    if (k->cidrs)
        mods[n++] = mod("apiKeyAllowedCidr", k->cidrs);
    mods[n] = NULL;
    snprintf(dn, sizeof(dn), "apiKeyId=%s,ou=apikeys,dc=example,dc=com", k->id);
    if (ldap_initialize(&ld, uri) != LDAP_SUCCESS)
        exit(99);
    ldap_set_option(ld, LDAP_OPT_PROTOCOL_VERSION, &v3);
    rc = ldap_sasl_bind_s(ld, "cn=admin,dc=example,dc=com", LDAP_SASL_SIMPLE, &pw,
                          NULL, NULL, NULL);
    if (rc == LDAP_SUCCESS)
        rc = ldap_add_ext_s(ld, dn, mods, NULL, NULL);
    if (rc != LDAP_SUCCESS) {
        fprintf(stderr, "check_ldap: add %s to %s: %s\n", dn, uri, ldap_err2string(rc));
        exit(99);
    }
    ldap_unbind_ext_s(ld, NULL, NULL);
    for (i = 0; i < n; i++)
        free(mods[i]);
}

static const char *PERMS[] = { "scrape:read", "jobs:write", NULL };
static const char *CIDRS[] = { "10.1.0.0/16", "2001:db8::/32", NULL };

static struct keydef KEYS[] = {
    { "k_active", k_active, "pro", "active", NULL, PERMS, CIDRS, 3 },
    { "k_revoked", k_revoked, "pro", "revoked", NULL, NULL, NULL, 3 },
    { "k_expired", k_expired, "pro", NULL, "20200101000000Z", NULL, NULL, 3 },
    { "k_future", k_future, "pro", "active", "20991231235959Z", PERMS, NULL, 3 },
    { "k_disabled", k_disabled, "pro", "disabled", NULL, NULL, NULL, 3 },
    { "k_only_a", k_only_a, "free", NULL, NULL, NULL, NULL, 1 },
    { "k_only_b", k_only_b, "free", NULL, NULL, NULL, NULL, 2 },
    { "k_later", k_later, "free", NULL, NULL, NULL, NULL, 3 },
};

static void populate(void)
{
    size_t i;
    for (i = 0; i < sizeof(KEYS) / sizeof(KEYS[0]); i++) {
        if (kg_key_generate("whizo", KEYS[i].key, KG_KEY_MAX) != KG_OK)
            exit(99);
        if (KEYS[i].where & 1)
            add_hashed(A, &KEYS[i]);
        if (KEYS[i].where & 2)
            add_hashed(B, &KEYS[i]);
    }
    /* Well-formed keys that no directory holds. */
    kg_key_generate("whizo", k_unknown, KG_KEY_MAX);
    kg_key_generate("whizo", k_unknown2, KG_KEY_MAX);
}

static void ctl(const char *verb, const char *server)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "%s %s %s", CTL, verb, server);
    ck_assert_msg(system(cmd) == 0, "%s failed", cmd);
}

/* ---- policies and checks ------------------------------------------------- */

static kg_context *ctx;

static void ctx_setup(void)
{
    ck_assert_int_eq(kg_context_new(&ctx), KG_OK);
    tu_clock_install(ctx, &clk);
    tu_clock_set(&clk, (int64_t)time(NULL));
}

static void ctx_teardown(void)
{
    kg_context_free(ctx);
}

/* The outage tests stop and pause the servers: each starts with both
 * running and answering, whatever a test that failed half-way left. */
static void outage_setup(void)
{
    ctl("ensure", "a");
    ctl("ensure", "b");
    ctx_setup();
}

/*
 * A policy with the ldap store on `uris` (a YAML flow list), the store's
 * `extra` options and `cache` (a flow mapping or ""), and a plan "pro"
 * whose account stage is ipacl + scope, so that the record's
 * permissions and networks reach it.
 */
static kg_policy *policy(const char *uris, const char *extra, const char *cache)
{
    return tu_policyf(ctx,
                      "credential:\n"
                      "  - {module: header, control: required, options: {name: X-API-Key}}\n"
                      "keystore:\n"
                      "  - module: ldap\n"
                      "    control: required\n"
                      "%s%s%s"
                      "    options:\n"
                      "      uris: %s\n"
                      "      base_dn: ou=apikeys,dc=example,dc=com\n"
                      "      network_timeout: 1s\n"
                      "      search_timeout: 1s\n"
                      "      retry: 10s\n"
                      "%s"
                      "plans:\n"
                      "  free:\n"
                      "    priority: 0\n"
                      "  pro:\n"
                      "    account:\n"
                      "      - module: ipacl\n"
                      "        control: requisite\n"
                      "      - module: scope\n"
                      "        control: requisite\n"
                      "        options:\n"
                      "          unmapped: deny\n"
                      "          routes:\n"
                      "            \"GET /v1/scrape\": scrape:read\n"
                      "            \"POST /v1/jobs\": jobs:write\n"
                      "            \"DELETE /v1/jobs/*\": jobs:admin\n",
                      *cache ? "    cache: " : "", cache, *cache ? "\n" : "", uris, extra);
}

#define READER \
    "      bind_dn: cn=keygate,ou=services,dc=example,dc=com\n" \
    "      bind_password: readpw\n"

static kg_decision *check_full(kg_policy *p, const char *key, size_t klen,
                               const char *ip, const char *method, const char *path)
{
    kg_request *req;
    kg_decision *d = NULL;

    ck_assert_int_eq(kg_request_new(&req), KG_OK);
    kg_request_set_method(req, method);
    kg_request_set_path(req, path);
    kg_request_set_client(req, ip);
    /* X-API-Key takes the value as it comes, so that every byte of an
     * injection string reaches the core. */
    kg_request_add_header_n(req, "X-API-Key", 9, key, klen);
    ck_assert_int_eq(kg_check(p, req, &d), KG_OK);
    kg_request_free(req);
    return d;
}

/* The decision's code for a GET /v1/scrape from 10.1.2.3. */
static kg_code code_of(kg_policy *p, const char *key)
{
    kg_decision *d = check_full(p, key, strlen(key), "10.1.2.3", "GET", "/v1/scrape");
    kg_code c = kg_decision_code(d);
    kg_decision_free(d);
    return c;
}

#define ASSERT_CODE(p, key, want) do { \
        kg_decision *d_ = check_full((p), (key), strlen(key), "10.1.2.3", "GET", "/v1/scrape"); \
        ck_assert_msg(kg_decision_code(d_) == (want), "%s:%d: want %s, got %s (%s, by %s)", \
                      __FILE__, __LINE__, kg_code_name(want), \
                      kg_code_name(kg_decision_code(d_)), kg_decision_message(d_), \
                      kg_decision_decided_by(d_)); \
        kg_decision_free(d_); \
    } while (0)

/* ---- lookups ------------------------------------------------------------- */

static char uris_a[512], uris_b[512], uris_dead_a[512], uris_ab[512], uris_ldapi[512];

START_TEST(test_active)
{
    kg_policy *p = policy(uris_a, READER, "");
    kg_decision *d = check_full(p, k_active, strlen(k_active), "10.1.2.3", "GET", "/v1/scrape");
    ck_assert_msg(kg_decision_allowed(d), "%s", kg_decision_message(d));
    ck_assert_str_eq(kg_decision_key_id(d), "k_active");
    ck_assert_str_eq(kg_decision_plan(d), "pro");
    ck_assert_str_eq(kg_decision_key_name(d), "test key");
    kg_decision_free(d);
    ASSERT_CODE(p, k_future, KG_CODE_NONE);
    kg_policy_free(p);
}
END_TEST

START_TEST(test_revoked_expired)
{
    kg_policy *p = policy(uris_a, READER, "");
    ASSERT_CODE(p, k_revoked, KG_CODE_KEY_REVOKED);
    ASSERT_CODE(p, k_expired, KG_CODE_KEY_EXPIRED);
    /* A status keygate does not know fails closed. */
    ASSERT_CODE(p, k_disabled, KG_CODE_KEY_REVOKED);
    ASSERT_CODE(p, k_unknown, KG_CODE_UNAUTHORIZED);
    kg_policy_free(p);
}
END_TEST

START_TEST(test_multivalued)
{
    kg_policy *p = policy(uris_a, READER, "");
    kg_decision *d;
    char *json;

    d = check_full(p, k_active, strlen(k_active), "10.1.2.3", "GET", "/v1/scrape");
    json = kg_decision_record_json(d);
    ck_assert_ptr_nonnull(json);
    ck_assert_msg(strstr(json, "scrape:read") && strstr(json, "jobs:write") &&
                  strstr(json, "10.1.0.0/16") && strstr(json, "2001:db8::/32"), "%s", json);
    free(json);
    kg_decision_free(d);
    /* The second network and the second permission are honoured... */
    d = check_full(p, k_active, strlen(k_active), "2001:db8::7", "POST", "/v1/jobs");
    ck_assert_msg(kg_decision_allowed(d), "%s", kg_decision_message(d));
    kg_decision_free(d);
    /* ...and outside them the account stage says no. */
    d = check_full(p, k_active, strlen(k_active), "192.0.2.1", "GET", "/v1/scrape");
    ck_assert_int_eq(kg_decision_code(d), KG_CODE_IP_NOT_ALLOWED);
    kg_decision_free(d);
    d = check_full(p, k_active, strlen(k_active), "10.1.2.3", "DELETE", "/v1/jobs/1");
    ck_assert_int_eq(kg_decision_code(d), KG_CODE_INSUFFICIENT_PERMISSIONS);
    kg_decision_free(d);
    kg_policy_free(p);
}
END_TEST

START_TEST(test_injection)
{
    static const char *bad[] = { "*", "*)(objectClass=*", "whizo_*", "\\2a",
                                 "*)(|(apiKeyHash=*", ")(", NULL };
    kg_policy *p = policy(uris_a, READER, "");
    kg_decision *d;
    size_t i;

    for (i = 0; bad[i]; i++)
        ASSERT_CODE(p, bad[i], KG_CODE_UNAUTHORIZED);
    /* A NUL inside the presented key. */
    d = check_full(p, "whizo_\0*", 8, "10.1.2.3", "GET", "/v1/scrape");
    ck_assert_msg(kg_decision_code(d) == KG_CODE_UNAUTHORIZED ||
                  kg_decision_code(d) == KG_CODE_INVALID_REQUEST, "NUL: %s",
                  kg_code_name(kg_decision_code(d)));
    kg_decision_free(d);
    /* A well-formed unknown key is asked of the directory and refused by it. */
    d = check_full(p, k_unknown, strlen(k_unknown), "10.1.2.3", "GET", "/v1/scrape");
    ck_assert_int_eq(kg_decision_code(d), KG_CODE_UNAUTHORIZED);
    ck_assert_str_eq(kg_decision_decided_by(d), "keystore:ldap");
    kg_decision_free(d);
    kg_policy_free(p);
}
END_TEST

START_TEST(test_failover)
{
    kg_policy *p = policy(uris_dead_a, READER, "");
    ASSERT_CODE(p, k_active, KG_CODE_NONE);
    ASSERT_CODE(p, k_unknown, KG_CODE_UNAUTHORIZED);
    kg_policy_free(p);
    /* Nothing answers: unavailable, never "invalid key". */
    {
        char u[512];
        snprintf(u, sizeof(u), "[%s, %s]", DEAD, DEAD);
        p = policy(u, READER, "");
        ASSERT_CODE(p, k_active, KG_CODE_AUTH_UNAVAILABLE);
        ASSERT_CODE(p, k_unknown, KG_CODE_AUTH_UNAVAILABLE);
        kg_policy_free(p);
    }
}
END_TEST

START_TEST(test_bind_refused)
{
    kg_policy *p = policy(uris_a, "      bind_dn: cn=keygate,ou=services,dc=example,dc=com\n"
                                  "      bind_password: wrong\n", "");
    ASSERT_CODE(p, k_active, KG_CODE_AUTH_UNAVAILABLE);
    kg_policy_free(p);
    /* An empty password (an unset variable) is never sent: it would be
     * an unauthenticated bind, which is anonymous in disguise. */
    p = policy(uris_a, "      bind_dn: cn=keygate,ou=services,dc=example,dc=com\n"
                       "      bind_password: ${KG_LDAP_SURELY_UNSET:-}\n", "");
    ASSERT_CODE(p, k_active, KG_CODE_AUTH_UNAVAILABLE);
    kg_policy_free(p);
    /* Anonymous may not see the base DN (the ACL): slapd says
     * noSuchObject, which is a directory that cannot answer, not an
     * unknown key. */
    p = policy(uris_a, "", "");
    ASSERT_CODE(p, k_active, KG_CODE_AUTH_UNAVAILABLE);
    kg_policy_free(p);
}
END_TEST

START_TEST(test_starttls)
{
    char extra[1024];
    kg_policy *p;

    snprintf(extra, sizeof(extra), READER "      tls: starttls\n      ca_file: %s\n", CA);
    p = policy(uris_a, extra, "");
    ASSERT_CODE(p, k_active, KG_CODE_NONE);
    kg_policy_free(p);
    /* The certificate is checked: a CA that did not sign it is refused. */
    snprintf(extra, sizeof(extra), READER "      tls: starttls\n      ca_file: %s\n", OTHER_CA);
    p = policy(uris_a, extra, "");
    ASSERT_CODE(p, k_active, KG_CODE_AUTH_UNAVAILABLE);
    kg_policy_free(p);
    /* Server B has no certificate: StartTLS fails, nothing in clear. */
    snprintf(extra, sizeof(extra), READER "      tls: starttls\n      ca_file: %s\n", CA);
    p = policy(uris_b, extra, "");
    ASSERT_CODE(p, k_active, KG_CODE_AUTH_UNAVAILABLE);
    kg_policy_free(p);
}
END_TEST

START_TEST(test_ldaps)
{
    char extra[1024], u[512];
    kg_policy *p;

    snprintf(u, sizeof(u), "[%s]", A_LDAPS);
    snprintf(extra, sizeof(extra), READER "      tls: ldaps\n      ca_file: %s\n", CA);
    p = policy(u, extra, "");
    ASSERT_CODE(p, k_active, KG_CODE_NONE);
    kg_policy_free(p);
    snprintf(extra, sizeof(extra), READER "      ca_file: %s\n", OTHER_CA);
    p = policy(u, extra, "");
    ASSERT_CODE(p, k_active, KG_CODE_AUTH_UNAVAILABLE);
    kg_policy_free(p);
}
END_TEST

START_TEST(test_filter_template)
{
    /* A filter of the policy's own: only pro keys are keys here. */
    kg_policy *p = policy(uris_a, READER "      filter: \"(&(objectClass=apiKey)"
                          "(apiKeyHash={hash})(apiKeyPlan=pro))\"\n      scope: one\n", "");
    ASSERT_CODE(p, k_active, KG_CODE_NONE);
    ASSERT_CODE(p, k_only_a, KG_CODE_UNAUTHORIZED);  /* a free key */
    kg_policy_free(p);
}
END_TEST

START_TEST(test_sasl_external)
{
    kg_policy *p = policy(uris_ldapi, "      sasl: EXTERNAL\n", "");
    ASSERT_CODE(p, k_active, KG_CODE_NONE);
    kg_policy_free(p);
}
END_TEST

START_TEST(test_bad_options)
{
    static const char *bad[] = {
        "      filter: (apiKeyHash=x)\n",
        "      scope: deep\n",
        "      tls: maybe\n",
        "      sasl: GSSAPI\n",
        "      bind_password: x\n",
        "      pool: -1\n",
        "      search_timeout: soon\n",
        "      attributes: {hash: \"\"}\n",
        "      attributes: {colour: apiKeyColour}\n",
        "      tls: starttls\n      ca_file: /nonexistent/keygate-ca.pem\n",
        "      tls: ldaps\n",
        NULL,
    };
    size_t i;
    char yaml[2048];

    for (i = 0; bad[i]; i++) {
        kg_policy *p = NULL;
        kg_diag d;
        snprintf(yaml, sizeof(yaml),
                 "credential:\n  - {module: header, control: required}\n"
                 "keystore:\n  - module: ldap\n    control: required\n    options:\n"
                 "      uris: %s\n      base_dn: ou=apikeys,dc=example,dc=com\n%s"
                 "plans:\n  free:\n    priority: 0\n", uris_a, bad[i]);
        ck_assert_msg(kg_policy_load_string(ctx, yaml, "bad", &p, &d) != KG_OK,
                      "accepted: %s", bad[i]);
        ck_assert_msg(d.line > 0 && d.message[0], "no place or message for %s", bad[i]);
    }
}
END_TEST

struct par {
    kg_policy *p;
    int ok;
};

static void *hammer(void *arg)
{
    struct par *t = arg;
    int i;
    for (i = 0; i < 40; i++) {
        const char *k = (i % 3 == 0) ? k_unknown : (i % 3 == 1) ? k_active : k_future;
        kg_code want = (i % 3 == 0) ? KG_CODE_UNAUTHORIZED : KG_CODE_NONE;
        if (code_of(t->p, k) == want)
            __atomic_add_fetch(&t->ok, 1, __ATOMIC_SEQ_CST);
    }
    return NULL;
}

START_TEST(test_pool_threads)
{
    pthread_t th[8];
    struct par t;
    int i;

    t.p = policy(uris_a, READER "      pool: 3\n", "");
    t.ok = 0;
    for (i = 0; i < 8; i++)
        pthread_create(&th[i], NULL, hammer, &t);
    for (i = 0; i < 8; i++)
        pthread_join(th[i], NULL);
    ck_assert_int_eq(t.ok, 8 * 40);
    kg_policy_free(t.p);
    /* Without a pool: a connection per lookup, same answers. */
    t.p = policy(uris_a, READER "      pool: 0\n", "");
    t.ok = 0;
    for (i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, hammer, &t);
    for (i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    ck_assert_int_eq(t.ok, 4 * 40);
    kg_policy_free(t.p);
}
END_TEST

/* ---- the directory goes away and comes back ------------------------------ */

START_TEST(test_outage)
{
    kg_policy *p = policy(uris_a, READER, "{ttl: 5s, negative_ttl: 1s}");

    ASSERT_CODE(p, k_active, KG_CODE_NONE);
    ASSERT_CODE(p, k_revoked, KG_CODE_KEY_REVOKED);
    ASSERT_CODE(p, k_unknown, KG_CODE_UNAUTHORIZED);
    advance(10);  /* every cached answer is stale now */
    ctl("stop", "a");
    /* Known keys: the stale records serve (revoked stays revoked). */
    ASSERT_CODE(p, k_active, KG_CODE_NONE);
    ASSERT_CODE(p, k_revoked, KG_CODE_KEY_REVOKED);
    /* Keys the cache never saw: 503, never "invalid key". */
    ASSERT_CODE(p, k_later, KG_CODE_AUTH_UNAVAILABLE);
    ASSERT_CODE(p, k_unknown2, KG_CODE_AUTH_UNAVAILABLE);
    /* A "no such key" past negative_ttl: 503 too (issue 16 item 4). */
    ASSERT_CODE(p, k_unknown, KG_CODE_AUTH_UNAVAILABLE);
    ctl("start", "a");
    /* Recovery without a restart or a reload. */
    ASSERT_CODE(p, k_later, KG_CODE_NONE);
    ASSERT_CODE(p, k_unknown2, KG_CODE_UNAUTHORIZED);
    kg_policy_free(p);
}
END_TEST

/* Issue 16 item 4: a key refused as unknown, then created in the
 * directory, while both servers go down: once negative_ttl has passed
 * the answer is 503, never the cached 401. */
START_TEST(test_outage_new_key)
{
    kg_policy *p = policy(uris_ab, READER, "{ttl: 5s, negative_ttl: 1s}");
    char k_new[KG_KEY_MAX];
    struct keydef def = { "k_new_in_outage", k_new, "free", NULL, NULL,
                          NULL, NULL, 3 };

    ck_assert_int_eq(kg_key_generate("whizo", k_new, sizeof(k_new)), KG_OK);
    ASSERT_CODE(p, k_new, KG_CODE_UNAUTHORIZED);
    add_hashed(A, &def);
    add_hashed(B, &def);
    ASSERT_CODE(p, k_new, KG_CODE_UNAUTHORIZED);   /* within negative_ttl */
    ctl("stop", "a");
    ctl("stop", "b");
    ASSERT_CODE(p, k_new, KG_CODE_UNAUTHORIZED);   /* still within it */
    advance(2);
    ASSERT_CODE(p, k_new, KG_CODE_AUTH_UNAVAILABLE);
    advance(10);
    ASSERT_CODE(p, k_new, KG_CODE_AUTH_UNAVAILABLE);
    ctl("start", "a");
    ctl("start", "b");
    ASSERT_CODE(p, k_new, KG_CODE_NONE);
    kg_policy_free(p);
}
END_TEST

START_TEST(test_failback)
{
    kg_policy *p = policy(uris_ab, READER, "");

    /* k_only_a exists on A only, k_only_b on B only: they show which
     * server answered. */
    ASSERT_CODE(p, k_only_a, KG_CODE_NONE);
    ctl("stop", "a");
    ASSERT_CODE(p, k_only_b, KG_CODE_NONE);
    ASSERT_CODE(p, k_only_a, KG_CODE_UNAUTHORIZED);
    ASSERT_CODE(p, k_active, KG_CODE_NONE);
    ctl("start", "a");
    /* Within `retry` the store stays on B... */
    advance(5);
    ASSERT_CODE(p, k_only_b, KG_CODE_NONE);
    /* ...then returns to A, the first URI. */
    advance(6);
    ASSERT_CODE(p, k_only_a, KG_CODE_NONE);
    ASSERT_CODE(p, k_only_b, KG_CODE_UNAUTHORIZED);
    kg_policy_free(p);
}
END_TEST

START_TEST(test_hung_server)
{
    /* B accepts connections (the kernel does) but never answers: the
     * timeouts bound the wait and the answer is 503. */
    kg_policy *p = policy(uris_b, READER, "");  /* search_timeout: 1s */
    time_t t0;

    ASSERT_CODE(p, k_only_b, KG_CODE_NONE);  /* a pooled connection exists */
    ctl("pause", "b");
    t0 = time(NULL);
    ASSERT_CODE(p, k_only_b, KG_CODE_AUTH_UNAVAILABLE);
    ASSERT_CODE(p, k_later, KG_CODE_AUTH_UNAVAILABLE);
    /* Each lookup: the search timeout on the pooled connection, or the
     * bind timeout on a new one (1 s here); B is not tried twice. */
    ck_assert_int_le(time(NULL) - t0, 6);
    ctl("resume", "b");
    ASSERT_CODE(p, k_only_b, KG_CODE_NONE);
    kg_policy_free(p);
}
END_TEST

/* ---- the pool after a restart or a hang (issue 16 item 7) ------------- */

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Fill the pool: 8 threads checking at once leave its 4 connections idle. */
static void fill_pool(kg_policy *p)
{
    pthread_t th[8];
    struct par t = { p, 0 };
    int i;
    for (i = 0; i < 8; i++)
        pthread_create(&th[i], NULL, hammer, &t);
    for (i = 0; i < 8; i++)
        pthread_join(th[i], NULL);
    ck_assert_int_eq(t.ok, 8 * 40);
}

START_TEST(test_restart_pool)
{
    /* Every pooled connection died with the server: the retry takes a
     * new connection, not the next dead one. */
    kg_policy *p = policy(uris_a, READER, "");
    fill_pool(p);
    ctl("stop", "a");
    ctl("start", "a");
    ASSERT_CODE(p, k_active, KG_CODE_NONE);
    ASSERT_CODE(p, k_active, KG_CODE_NONE);
    ASSERT_CODE(p, k_future, KG_CODE_NONE);
    kg_policy_free(p);
}
END_TEST

/* One check of key from its own thread, timed: `light load`. */
struct timed {
    kg_policy *p;
    const char *key;
    kg_code code;
    double took;
};

static void *timed_check(void *arg)
{
    struct timed *t = arg;
    double t0 = mono_s();
    t->code = code_of(t->p, t->key);
    t->took = mono_s() - t0;
    return NULL;
}

START_TEST(test_hung_primary)
{
    /* A hangs, B is up.  Four requests at once take the four pooled
     * connections to A: each meets A's silence for search_timeout (1 s)
     * and goes on to B; none is a 503.  Then A is marked down and the
     * next requests never wait for it. */
    kg_policy *p = policy(uris_ab, READER, "");
    const char *keys[4] = { k_active, k_future, k_only_b, k_active };
    struct timed t[4];
    pthread_t th[4];
    double t0, took;
    int i;

    fill_pool(p);
    ctl("pause", "a");
    for (i = 0; i < 4; i++) {
        t[i] = (struct timed){ p, keys[i], KG_CODE_INVALID_REQUEST, 0 };
        pthread_create(&th[i], NULL, timed_check, &t[i]);
    }
    for (i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    for (i = 0; i < 4; i++) {
        fprintf(stderr, "check_ldap: A hung, B up: request %d: %s in %.2f s\n",
                i, t[i].code == KG_CODE_NONE ? "allowed" : kg_code_name(t[i].code),
                t[i].took);
        ck_assert_msg(t[i].code == KG_CODE_NONE, "request %d: %s after %.2f s",
                      i, kg_code_name(t[i].code), t[i].took);
        ck_assert_msg(t[i].took < 1.8, "request %d took %.2f s", i, t[i].took);
    }
    for (i = 0; i < 3; i++) {
        t0 = mono_s();
        ASSERT_CODE(p, keys[i], KG_CODE_NONE);
        took = mono_s() - t0;
        /* Less than one search_timeout: nobody waited for A again. */
        ck_assert_msg(took < 0.9, "a later request took %.2f s", took);
    }
    ctl("resume", "a");
    kg_policy_free(p);
}
END_TEST

START_TEST(test_both_hung)
{
    /* Both hang: one pass over the servers (A's pooled connection times
     * out, then the bind to B) bounds the 503 at 2 x search_timeout; it
     * took 4 x when each URI was tried twice. */
    kg_policy *p = policy(uris_ab, READER, "");
    double t0, took;
    ASSERT_CODE(p, k_active, KG_CODE_NONE);
    ctl("pause", "a");
    ctl("pause", "b");
    t0 = mono_s();
    ASSERT_CODE(p, k_active, KG_CODE_AUTH_UNAVAILABLE);
    took = mono_s() - t0;
    ctl("resume", "a");
    ctl("resume", "b");
    fprintf(stderr, "check_ldap: both hung: the first 503 in %.2f s "
            "(search_timeout 1 s)\n", took);
    ck_assert_msg(took < 2.9, "the 503 took %.2f s", took);
    ck_assert_msg(took > 1.9, "the 503 took %.2f s: did both servers hang?", took);
    kg_policy_free(p);
}
END_TEST

/* ---- accounts (docs/ldap.md "Accounts") ------------------------------------ */

/*
 * sqltest.h's account policy on the ldap store of server A, writable
 * (cn=keygate-rw), no cache: free counts `hour` (10) per account and
 * `ci` per key, applying the account's ceiling; pro counts `hour` (200).
 */
static kg_policy *acct_policy(void)
{
    char *line = tu_fmt("  - module: ldap\n"
                        "    options:\n"
                        "      uris: %s\n"
                        "      base_dn: ou=apikeys,dc=example,dc=com\n"
                        "      bind_dn: cn=keygate-rw,ou=services,dc=example,dc=com\n"
                        "      bind_password: writepw\n"
                        "      writable: true\n"
                        "      search_timeout: 2s\n", uris_a);
    kg_policy *p = test_acct_policy_on(ctx, line);
    free(line);
    return p;
}

/* The model, as the file and sql stores keep it: create, get by id and by
 * external id, clashes named by field and nothing written, update (the
 * keys follow the plan), delete refused while keys live, with_keys
 * revoking them (their account id kept). */
START_TEST(test_accounts_model)
{
    kg_policy *p = acct_policy();
    test_accounts_crud(p, "ldap");
    kg_policy_free(p);
}
END_TEST

/* Three keys share the account's 10 an hour; suspension is read with
 * the key (a second search, no cache here) and resume restores. */
START_TEST(test_accounts_quota_and_suspension)
{
    kg_policy *p = acct_policy();
    test_accounts_shared_quota(p);
    kg_policy_free(p);
}
END_TEST

/* A key created without an account gets one of its own (an apiAccount
 * entry, its limit override moved there); an entry written before
 * accounts (no apiKeyAccount) still checks, as its own account. */
START_TEST(test_accounts_own_and_old)
{
    kg_policy *p = acct_policy();
    kg_record *r = kg_record_new(), *got = NULL;
    kg_account *a = NULL;
    char key[KG_KEY_MAX], want[KG_ACCOUNT_ID_MAX + 8], aid[160];
    const char *name;
    int64_t c, w, b;
    kg_diag d;

    kg_record_set_plan(r, "free");
    kg_record_set_name(r, "solo");
    kg_record_add_limit(r, "hour", 3, 3600, 0);
    tu_keys_create(p, r, key);
    memset(&d, 0, sizeof(d));
    ck_assert_msg(kg_keys_get(p, kg_record_id(r), &got, &d) == KG_OK, "%s", d.message);
    snprintf(want, sizeof(want), "acct_%s", kg_record_id(r) + 2);
    ck_assert_str_eq(kg_record_account_id(got), want);
    ck_assert_int_eq(kg_record_limit_count(got), 0);
    ck_assert_msg(kg_accounts_get(p, want, &a, &d) == KG_OK, "%s", d.message);
    ck_assert_str_eq(kg_account_plan(a), "free");
    ck_assert_str_eq(kg_account_name(a), "solo");
    ck_assert_int_eq(kg_account_limit_count(a), 1);
    kg_account_limit(a, 0, &name, &c, &w, &b);
    ck_assert_str_eq(name, "hour");
    ck_assert_int_eq(c, 3);
    /* the override counts for the account: 3, then 429 */
    ck_assert_int_eq(test_check_account(p, key, aid, sizeof(aid)), KG_CODE_NONE);
    ck_assert_str_eq(aid, want);
    ck_assert_int_eq(test_check_account(p, key, NULL, 0), KG_CODE_NONE);
    ck_assert_int_eq(test_check_account(p, key, NULL, 0), KG_CODE_NONE);
    ck_assert_int_eq(test_check_account(p, key, NULL, 0), KG_CODE_RATE_LIMITED);
    kg_account_unref(a);
    kg_record_unref(got);
    kg_record_unref(r);
    kg_policy_free(p);

    /* k_only_a was added without apiKeyAccount: still checks */
    p = policy(uris_a, READER, "");
    ASSERT_CODE(p, k_only_a, KG_CODE_NONE);
    kg_policy_free(p);
}
END_TEST

/* Remove an entry as the directory's administrator (behind keygate). */
static void raw_delete(const char *uri, const char *dn)
{
    LDAP *ld;
    struct berval pw = { 6, (char *)"secret" };
    int v3 = LDAP_VERSION3, rc;

    ck_assert_int_eq(ldap_initialize(&ld, uri), LDAP_SUCCESS);
    ldap_set_option(ld, LDAP_OPT_PROTOCOL_VERSION, &v3);
    rc = ldap_sasl_bind_s(ld, "cn=admin,dc=example,dc=com", LDAP_SASL_SIMPLE, &pw,
                          NULL, NULL, NULL);
    if (rc == LDAP_SUCCESS)
        rc = ldap_delete_ext_s(ld, dn, NULL, NULL);
    ck_assert_msg(rc == LDAP_SUCCESS, "delete %s: %s", dn, ldap_err2string(rc));
    ldap_unbind_ext_s(ld, NULL, NULL);
}

/* A key whose apiKeyAccount names no entry (removed behind keygate's
 * back) is refused (401), not treated as an account of its own; with
 * --with-keys through keygate, the key is revoked (its account id kept). */
START_TEST(test_accounts_dangling)
{
    kg_policy *p = acct_policy();
    kg_account *a = test_account_new(p, "Gone soon", "free", NULL);
    kg_account *b = test_account_new(p, "Goes properly", "free", NULL);
    kg_record *r, *rb, *got = NULL;
    kg_decision *dec;
    char key[KG_KEY_MAX], kb[KG_KEY_MAX], dn[256];
    kg_diag d;

    r = test_key_for(p, a, key);
    rb = test_key_for(p, b, kb);
    ck_assert_int_eq(test_check_account(p, key, NULL, 0), KG_CODE_NONE);
    snprintf(dn, sizeof(dn), "apiAccountId=%s,ou=apikeys,dc=example,dc=com",
             kg_account_id(a));
    raw_delete(A, dn);
    dec = tu_check_bearer(p, key, "GET", "/v1/scrape", "127.0.0.1");
    ck_assert_int_eq(kg_decision_status(dec), 401);
    ck_assert_int_eq(kg_decision_code(dec), KG_CODE_UNAUTHORIZED);
    ck_assert_msg(strstr(kg_decision_message(dec), "account") != NULL, "%s",
                  kg_decision_message(dec));
    kg_decision_free(dec);

    memset(&d, 0, sizeof(d));
    ck_assert_msg(kg_accounts_delete(p, kg_account_id(b), 1, &d) == KG_OK, "%s", d.message);
    ck_assert_int_eq(test_check_account(p, kb, NULL, 0), KG_CODE_KEY_REVOKED);
    ck_assert_int_eq(kg_keys_get(p, kg_record_id(rb), &got, &d), KG_OK);
    ck_assert_str_eq(kg_record_account_id(got), kg_account_id(b));
    kg_record_unref(got);
    kg_record_unref(r);
    kg_record_unref(rb);
    kg_account_unref(a);
    kg_account_unref(b);
    kg_policy_free(p);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("ldap");
    TCase *t = tcase_create("lookup");
    tcase_add_checked_fixture(t, ctx_setup, ctx_teardown);
    tcase_set_timeout(t, 60);
    tcase_add_test(t, test_active);
    tcase_add_test(t, test_revoked_expired);
    tcase_add_test(t, test_multivalued);
    tcase_add_test(t, test_injection);
    tcase_add_test(t, test_failover);
    tcase_add_test(t, test_bind_refused);
    tcase_add_test(t, test_starttls);
    tcase_add_test(t, test_sasl_external);
    tcase_add_test(t, test_ldaps);
    tcase_add_test(t, test_filter_template);
    tcase_add_test(t, test_bad_options);
    tcase_add_test(t, test_pool_threads);
    tcase_add_test(t, test_accounts_model);
    tcase_add_test(t, test_accounts_quota_and_suspension);
    tcase_add_test(t, test_accounts_own_and_old);
    tcase_add_test(t, test_accounts_dangling);
    suite_add_tcase(s, t);
    /* Last: these stop and start the servers. */
    t = tcase_create("outage");
    tcase_add_checked_fixture(t, outage_setup, ctx_teardown);
    tcase_set_timeout(t, 60);
    tcase_add_test(t, test_outage);
    tcase_add_test(t, test_outage_new_key);
    tcase_add_test(t, test_failback);
    tcase_add_test(t, test_hung_server);
    tcase_add_test(t, test_restart_pool);
    tcase_add_test(t, test_hung_primary);
    tcase_add_test(t, test_both_hung);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    A = env("KG_LDAP_A");
    B = env("KG_LDAP_B");
    DEAD = env("KG_LDAP_DEAD");
    A_LDAPI = env("KG_LDAP_A_LDAPI");
    A_LDAPS = env("KG_LDAP_A_LDAPS");
    CA = env("KG_LDAP_CA");
    OTHER_CA = env("KG_LDAP_OTHER_CA");
    CTL = env("KG_LDAP_CTL");
    snprintf(uris_a, sizeof(uris_a), "[%s]", A);
    snprintf(uris_b, sizeof(uris_b), "[%s]", B);
    snprintf(uris_dead_a, sizeof(uris_dead_a), "[%s, %s]", DEAD, A);
    snprintf(uris_ab, sizeof(uris_ab), "[%s, %s]", A, B);
    snprintf(uris_ldapi, sizeof(uris_ldapi), "[\"%s\"]", A_LDAPI);
    populate();
    return tu_run(suite());
}
