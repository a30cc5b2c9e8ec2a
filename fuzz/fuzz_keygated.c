/*
 * fuzz_keygated.c - keygated's own request handling, linked from its
 * pure pieces (tools/keygated_origin.c, keygated_client.c,
 * keygated_json.c): the original method and target of a forwarded
 * request (every --origin mode), their normalization by libkeygate
 * (kg_request_set_target, as keygated calls it), the client address
 * behind trusted proxies, and the JSON escaping of the access log.
 *
 * Input: byte 0 the mode, the peer and the trusted proxies; byte 1 which
 * of the six strings are absent; then '\n'-separated: the request's
 * method, its raw URI, X-Original-Method, X-Original-URI,
 * X-Forwarded-Method, X-Forwarded-Uri, then X-Forwarded-For values.
 * Checked: the method and target chosen are among the strings given; a
 * path kg_request_set_target() accepts is normalized (starts with '/',
 * no empty, "." or ".." segment, no query, no control character) and
 * normalizing it again changes nothing; the client is the peer or one of the
 * X-Forwarded-For entries, a numeric address, and the peer itself when
 * the peer is not trusted; a JSON literal is valid JSON and valid UTF-8,
 * within its buffer.
 */
#include "fuzz.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keygated.h"

#define MAX_XFF 16

static const char *const peers[8] = {
    "127.0.0.1", "10.0.0.5", "192.0.2.1", "::1", "2001:db8::7", "172.16.0.1",
    "203.0.113.9", "fe80::1",
};
static const char *const trust_sets[4][3] = {
    { NULL }, { "127.0.0.1/32", "::1/128", NULL },
    { "10.0.0.0/8", "172.16.0.0/12", NULL }, { "0.0.0.0/0", "::/0", NULL },
};

/* One request, reset for every path checked. */
static kg_request *req;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_init();
    if (kg_request_new(&req) != KG_OK)
        abort();
    return 0;
}

static void check_path(const char *p)
{
    char again[8192];
    size_t i, n = strlen(p);

    if (n == 0 || p[0] != '/' || strpbrk(p, "?#") != NULL ||
        strstr(p, "//") != NULL || strstr(p, "/./") != NULL ||
        strstr(p, "/../") != NULL)
        abort();
    if ((n >= 2 && strcmp(p + n - 2, "/.") == 0) || (n >= 3 && strcmp(p + n - 3, "/..") == 0))
        abort();
    for (i = 0; i < n; i++)
        if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f)
            abort();
    if (n >= sizeof(again))
        return;
    memcpy(again, p, n + 1);
    kg_request_reset(req);
    if (kg_request_set_target(req, "GET", again) != KG_OK ||
        strcmp(kg_request_path(req), again) != 0) {
        fprintf(stderr, "fuzz_keygated: '%s' normalizes again to '%s'\n", again,
                kg_request_path(req));
        abort();
    }
}

/* The path of (method, target) as keygated would set it, checked. */
static void set_and_check(const char *method, const char *target)
{
    char path[8192];
    const char *pp;

    kg_request_reset(req);
    if (kg_request_set_target(req, method, target) != KG_OK)
        return;
    pp = kg_request_path(req);
    if (strlen(pp) >= sizeof(path))
        return;
    strcpy(path, pp);
    check_path(path);
}

static int one_of(const char *p, const struct kgd_origin_in *in)
{
    const char *s[] = { in->method, in->raw_uri, in->x_original_method,
                        in->x_original_uri, in->x_forwarded_method,
                        in->x_forwarded_uri };
    size_t i;
    for (i = 0; i < sizeof(s) / sizeof(s[0]); i++)
        if (s[i] != NULL && p >= s[i] && p <= s[i] + strlen(s[i]))
            return 1;
    return 0;
}

/* A JSON string literal: quotes, escapes, UTF-8, nothing raw below 0x20. */
static void check_json(const char *j, size_t n)
{
    size_t i = 1;

    if (n < 2 || j[0] != '"' || j[n - 1] != '"' || j[n] != '\0')
        abort();
    while (i < n - 1) {
        unsigned char c = (unsigned char)j[i];

        if (c == '\\') {
            if (i + 1 >= n - 1)
                abort();
            if (strchr("\"\\/bfnrt", j[i + 1]) != NULL && j[i + 1] != '\0') {
                i += 2;
            } else if (j[i + 1] == 'u' && i + 5 < n - 1 + 0 &&
                       strspn(j + i + 2, "0123456789abcdefABCDEF") >= 4) {
                i += 6;
            } else {
                abort();
            }
        } else if (c < 0x20 || c == '"') {
            abort();
        } else if (c < 0x80) {
            i++;
        } else {
            size_t need = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0, k;
            if (need == 0 || c > 0xf4 || i + need > n - 1)
                abort();
            for (k = 1; k < need; k++)
                if (((unsigned char)j[i + k] & 0xc0) != 0x80)
                    abort();
            i += need;
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text, *f[6 + MAX_XFF], *p;
    const char *xff[MAX_XFF];
    size_t nf = 0, nxff, i, ntrusted = 0;
    struct kgd_origin_in in;
    kg_cidr trusted[2];
    char client[128], json[512];
    const char *peer;
    int mode, absent;
    unsigned char a[16];

    if (size < 2)
        return -1;
    mode = data[0] & 3;
    peer = peers[(data[0] >> 2) & 7];
    for (i = 0; trust_sets[data[0] >> 5 & 3][i] != NULL; i++)
        if (kg_cidr_parse(trust_sets[data[0] >> 5 & 3][i], &trusted[ntrusted++]) != KG_OK)
            abort();
    absent = data[1];
    text = fz_strndup(data + 2, size - 2);
    for (p = text; p != NULL && nf < 6 + MAX_XFF; nf++) {
        f[nf] = p;
        p = strchr(p, '\n');
        if (p != NULL)
            *p++ = '\0';
    }
    for (i = nf; i < 6; i++)
        f[i] = "";

    /* The origin, in every mode (the request's own method is never absent). */
    memset(&in, 0, sizeof(in));
    in.method = f[0];
    in.raw_uri = absent & 1 ? NULL : f[1];
    in.x_original_method = absent & 2 ? NULL : f[2];
    in.x_original_uri = absent & 4 ? NULL : f[3];
    in.x_forwarded_method = absent & 8 ? NULL : f[4];
    in.x_forwarded_uri = absent & 16 ? NULL : f[5];
    if (in.raw_uri == NULL)
        in.raw_uri = "/check";
    {
        const char *m = NULL, *t = NULL;
        kgd_origin((kgd_origin_mode)mode, &in, &m, &t);
        if (m == NULL || !one_of(m, &in) || (t != NULL && !one_of(t, &in)))
            abort();
        if (t != NULL)
            set_and_check(m, t);
    }
    /* Normalization of each string on its own. */
    for (i = 0; i < 6 && i < nf; i++)
        set_and_check("GET", f[i]);

    /* The client address. */
    nxff = nf > 6 ? nf - 6 : 0;
    for (i = 0; i < nxff; i++)
        xff[i] = f[6 + i];
    kgd_client_address(peer, xff, nxff, trusted, ntrusted, client, sizeof(client));
    if (kg_addr_parse(client, a) != KG_OK) {
        fprintf(stderr, "fuzz_keygated: client '%s' is not an address\n", client);
        abort();
    }
    if (!kgd_addr_trusted(peer, trusted, ntrusted) && strcmp(client, peer) != 0)
        abort();
    if (strcmp(client, peer) != 0) {
        int found = 0;
        for (i = 0; i < nxff && !found; i++)
            found = strstr(xff[i], client) != NULL;
        if (!found) {
            /* the same address written otherwise (IPv4-mapped, zeros) */
            unsigned char b[16];
            for (i = 0; i < nxff && !found; i++)
                found = kg_addr_parse(xff[i], b) == KG_OK && memcmp(a, b, 16) == 0;
        }
        if (!found) {
            fprintf(stderr, "fuzz_keygated: client '%s' is neither the peer nor in X-Forwarded-For\n",
                    client);
            abort();
        }
    }

    /* JSON, into a buffer too small for some inputs. */
    for (i = 0; i < 6 && i < nf; i++) {
        size_t n = kgd_json_str(json, 0, sizeof(json), f[i], strlen(f[i]));
        if (n >= sizeof(json))
            abort();
        check_json(json, n);
        n = kgd_json_str(json, 0, 16, f[i], strlen(f[i]));
        if (n >= 16)
            abort();
        check_json(json, n);
    }
    /* The raw bytes, NULs and all. */
    {
        size_t n = kgd_json_str(json, 0, sizeof(json), (const char *)data, size);
        if (n >= sizeof(json))
            abort();
        check_json(json, n);
    }
    free(text);
    return 0;
}
