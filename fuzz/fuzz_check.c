/*
 * fuzz_check.c - a request through kg_check() on the shipped policy
 * (conf/keygate.yaml, embedded as keygated embeds it) with its SQLite
 * store in the private folder, holding a key of each plan, a revoked, an
 * expired and a scoped, allowlisted Enterprise key.
 *
 * Input: bytes 0-3 the clock (seconds after a fixed start, so windows
 * roll and time may go back), then lines: "METHOD TARGET", the client
 * address, then "Name: value" headers up to the end.  "$K0" ... "$K6"
 * in a header value stand for the keys (so that the fuzzer presents real
 * ones).  Checked: kg_check answers every request with a decision whose
 * status, code, body and headers agree, and no part of a decision holds
 * a key (of the store, or any well-formed one presented) past its
 * 8-character display prefix.
 */
#define _GNU_SOURCE 1   /* memmem */
#include "fuzz.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <keygate/keygate.h>
#include <keygate/plugin.h>

#define NKEYS 7
#define START_US 1800000000000000LL

extern const char kgd_default_policy[];

static kg_context *ctx;
static kg_policy *policy;
static kg_request *req;
static char keys[NKEYS][KG_KEY_MAX];
static int64_t now_us = START_US;
/* The request's method, target and client, as given, letters and digits
 * only: what a decision may echo, with what it drops (control
 * characters) dropped.  A key's characters the client put there are not
 * a key keygate shows. */
static char given[2][8192];

static int64_t clock_fn(void *ud)
{
    (void)ud;
    return now_us;
}

static void make_key(int i, const char *plan, kg_key_status st, int64_t expires,
                     const char *const *perms, const char *const *cidrs, int limits)
{
    kg_record *r = kg_record_new();
    kg_diag d;

    if (r == NULL || kg_record_set_plan(r, plan) != KG_OK)
        abort();
    kg_record_set_status(r, st);
    kg_record_set_expires(r, expires);
    for (; perms && *perms; perms++)
        kg_record_add_permission(r, *perms);
    for (; cidrs && *cidrs; cidrs++)
        kg_record_add_cidr(r, *cidrs);
    if (limits) {
        kg_record_add_limit(r, "hour", 5, 3600, 0);
        kg_record_add_limit(r, "burst", 2, 1, 3);
    }
    if (kg_keys_create(policy, r, keys[i], sizeof(keys[i]), &d) != KG_OK) {
        fprintf(stderr, "fuzz_check: key %d: %s\n", i, d.message);
        abort();
    }
    kg_record_unref(r);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    static const char *const scoped[] = { "scrape:read", "jobs:*", NULL };
    static const char *const nets[] = { "10.0.0.0/8", "2001:db8::/32", "127.0.0.1/32", NULL };
    static const char *const all[] = { "*", NULL };
    kg_diag d;

    (void)argc;
    (void)argv;
    fz_init();
    if (kg_context_new(&ctx) != KG_OK || kg_request_new(&req) != KG_OK)
        abort();
    kg_context_set_clock(ctx, clock_fn, NULL);
    kg_context_set_limit_capacity(ctx, 10000);
    fz_enter();
    if (kg_policy_load_string(ctx, kgd_default_policy, "keygate.yaml", &policy, &d) != KG_OK) {
        fprintf(stderr, "fuzz_check: the shipped policy: %s\n", d.message);
        abort();
    }
    make_key(0, "free", KG_STATUS_ACTIVE, 0, NULL, NULL, 0);
    make_key(1, "starter", KG_STATUS_ACTIVE, 0, NULL, NULL, 0);
    make_key(2, "pro", KG_STATUS_ACTIVE, 0, NULL, nets, 0);
    make_key(3, "enterprise", KG_STATUS_ACTIVE, 0, scoped, nets, 1);
    make_key(4, "enterprise", KG_STATUS_ACTIVE, 0, all, NULL, 1);
    make_key(5, "free", KG_STATUS_REVOKED, 0, NULL, NULL, 0);
    make_key(6, "pro", KG_STATUS_ACTIVE, START_US / 1000000 + 3600, NULL, NULL, 0);
    fz_leave();
    return 0;
}

/* value with $K0..$K6 replaced by the keys; malloc()ed, length in *n. */
static char *expand(const char *v, size_t len, size_t *n)
{
    char *out = malloc(len * KG_KEY_MAX + 1);
    size_t i, o = 0;

    if (out == NULL)
        abort();
    for (i = 0; i < len; i++) {
        if (v[i] == '$' && i + 2 < len + 0 && v[i + 1] == 'K' &&
            v[i + 2] >= '0' && v[i + 2] < '0' + NKEYS) {
            size_t k = strlen(keys[v[i + 2] - '0']);
            memcpy(out + o, keys[v[i + 2] - '0'], k);
            o += k;
            i += 2;
        } else {
            out[o++] = v[i];
        }
    }
    out[o] = '\0';
    *n = o;
    return out;
}

/*
 * s holds needle (n letters and digits), s read as letters and digits
 * only, JSON escapes (\u0012, \n) left out: the characters a decision
 * adds around an echoed path must not join a key's characters the
 * client put there into a key.
 */
static int holds_as(const char *s, const char *needle, size_t n, int decode)
{
    char *sq;
    size_t i, o = 0, len;
    int found;

    if (s == NULL || n == 0)
        return 0;
    len = strlen(s);
    if ((sq = malloc(len + 1)) == NULL)
        abort();
    for (i = 0; i < len; i++) {
        if (s[i] == '\\' && i + 1 < len) {
            i += s[i + 1] == 'u' ? 5 : 1;
            continue;
        }
        /* What the client sent, read as the core reads it: "%2e" is the
         * '.' the decision echoes, not the letters 2 and e. */
        if (decode && s[i] == '%' && i + 2 < len && isxdigit((unsigned char)s[i + 1]) &&
            isxdigit((unsigned char)s[i + 2])) {
            char hex[3] = { s[i + 1], s[i + 2], '\0' };
            char c = (char)strtol(hex, NULL, 16);
            if (isalnum((unsigned char)c))
                sq[o++] = c;
            i += 2;
            continue;
        }
        if (isalnum((unsigned char)s[i]))
            sq[o++] = s[i];
    }
    found = memmem(sq, o, needle, n) != NULL;
    free(sq);
    return found;
}

static int holds(const char *s, const char *needle, size_t n)
{
    return holds_as(s, needle, n, 0);
}

/* Nothing the decision shows may hold a key's part past its display
 * prefix (8 characters of the part after the prefix are enough to tell). */
static void no_secret(const kg_decision *d, const char *key, size_t len)
{
    const char *part, *name, *value;
    char *json;
    size_t i, n;

    if (len < KG_KEY_DISPLAY_LEN + 8)
        return;
    part = key + KG_KEY_DISPLAY_LEN;
    n = 8;
    if (holds(given[0], part, n) || holds(given[1], part, n) ||
        holds_as(given[0], part, n, 1) || holds_as(given[1], part, n, 1))
        return;
    /* The path the core echoes is the client's, normalized (decoded,
     * dot segments resolved), and so is the method ("GET /whoami is not
     * an operation this key may use": CI's fuzzer made a method of eight
     * characters of another key): key characters there came from the
     * client. */
    if (holds(kg_request_path(req), part, n) ||
        holds(kg_request_method(req), part, n))
        return;
    json = kg_decision_record_json(d);
    if (holds(kg_decision_message(d), part, n) || holds(kg_decision_body(d), part, n) ||
        holds(json, part, n) || holds(kg_decision_key_prefix(d), part, n) ||
        holds(kg_decision_key_id(d), part, n) || holds(kg_decision_key_name(d), part, n) ||
        holds(kg_decision_lease(d), part, n)) {
        fprintf(stderr, "fuzz_check: a decision shows the key '%.*s': message %s body %s record %s\n", (int)len, key, kg_decision_message(d), kg_decision_body(d), json ? json : "-");
        abort();
    }
    for (i = 0; i < kg_decision_header_count(d); i++) {
        if (kg_decision_header(d, i, &name, &value) != KG_OK)
            abort();
        if (holds(value, part, n) || holds(name, part, n)) {
            fprintf(stderr, "fuzz_check: header %s shows the key\n", name);
            abort();
        }
    }
    free(json);
}

static void check_decision(const kg_decision *d)
{
    kg_code c = kg_decision_code(d);
    int st = kg_decision_status(d);
    const char *body = kg_decision_body(d), *name, *value;
    int64_t lim, rem, reset, win;
    size_t i;

    if (c >= KG_CODE__LAST || st != kg_code_status(c) ||
        kg_decision_allowed(d) != (c == KG_CODE_NONE) || body == NULL)
        abort();
    if ((c == KG_CODE_NONE) != (body[0] == '\0'))
        abort();
    if (c != KG_CODE_NONE && strncmp(body, "{\"error\":{\"code\":\"", 18) != 0)
        abort();
    if (st == 401 && kg_decision_header_value(d, "WWW-Authenticate") == NULL)
        abort();
    if (st == 429 && kg_decision_header_value(d, "Retry-After") == NULL)
        abort();
    if (c != KG_CODE_NONE && kg_decision_lease(d) != NULL)
        abort();
    for (i = 0; i < kg_decision_header_count(d); i++)
        if (kg_decision_header(d, i, &name, &value) != KG_OK || name == NULL ||
            value == NULL || strpbrk(value, "\r\n") != NULL)
            abort();
    for (i = 0; i < kg_decision_limit_count(d); i++)
        if (kg_decision_limit(d, i, &name, &lim, &rem, &reset, &win) != KG_OK ||
            name == NULL)
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text, *line, *next;
    kg_decision *d = NULL;
    char *presented[64];
    size_t npresented = 0, plen[64], i;
    uint32_t t;
    int n = 0;

    if (size < 4)
        return -1;
    memcpy(&t, data, sizeof(t));
    now_us = START_US + (int64_t)(t % (1u << 26)) * 1000000;
    text = fz_strndup(data + 4, size - 4);
    given[0][0] = given[1][0] = '\0';
    kg_request_reset(req);
    for (line = text; line != NULL; line = next, n++) {
        char *colon;

        next = strchr(line, '\n');
        if (next != NULL)
            *next++ = '\0';
        if (n < 2) {
            size_t g = 0, k;
            for (k = 0; line[k] != '\0' && g + 1 < sizeof(given[n]); k++)
                if (isalnum((unsigned char)line[k]))
                    given[n][g++] = line[k];
            given[n][g] = '\0';
        }
        if (n == 0) {
            char *sp = strchr(line, ' ');
            if (sp != NULL) {
                *sp = '\0';
                kg_request_set_method(req, line);
                kg_request_set_path(req, sp + 1);
            } else if (*line != '\0') {
                kg_request_set_path(req, line);
            }
        } else if (n == 1) {
            if (*line != '\0')
                kg_request_set_client(req, line);
        } else if ((colon = strchr(line, ':')) != NULL) {
            size_t vlen;
            char *v = colon + 1;
            char *x;

            while (*v == ' ')
                v++;
            x = expand(v, strlen(v), &vlen);
            kg_request_add_header_n(req, line, (size_t)(colon - line), x, vlen);
            if (npresented < 64) {
                /* "Bearer <key>" or the key */
                const char *tok = strncasecmp(x, "Bearer ", 7) == 0 ? x + 7 : x;
                presented[npresented] = x;
                plen[npresented] = strlen(tok);
                memmove(x, tok, plen[npresented] + 1);
                npresented++;
            } else {
                free(x);
            }
        }
    }
    if (kg_check(policy, req, &d) != KG_OK || d == NULL)
        abort();
    check_decision(d);
    for (i = 0; i < NKEYS; i++)
        no_secret(d, keys[i], strlen(keys[i]));
    for (i = 0; i < npresented; i++) {
        /* A well-formed key (checksum and all) inside what was
         * presented: none of it past its display prefix may show. */
        const char *us = memchr(presented[i], '_', plen[i]), *ks = us;
        while (ks != NULL && ks > presented[i] && isalnum((unsigned char)ks[-1]))
            ks--;
        size_t run = 0;
        while (us != NULL && us + 1 + run < presented[i] + plen[i] &&
               isalnum((unsigned char)us[1 + run]))
            run++;
        if (ks != NULL && ks < us && run >= 16 &&
            kg_key_validate(ks, (size_t)(us + 1 + run - ks)) == KG_OK)
            no_secret(d, ks, (size_t)(us + 1 + run - ks));
        free(presented[i]);
    }
    if (kg_decision_lease(d) != NULL)
        kg_release(ctx, kg_decision_lease(d));
    kg_decision_free(d);
    free(text);
    return 0;
}
