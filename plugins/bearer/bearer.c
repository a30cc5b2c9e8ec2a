/*
 * bearer - credential plugin: "Authorization: Bearer <key>" (RFC 6750
 * section 2.1).
 *
 * The scheme is matched case-insensitively; exactly one token (b64token
 * characters) must follow one or more spaces; anything else under the
 * Bearer scheme is a malformed credential (400 invalid_request).
 * Authorization headers of other schemes (Basic, Digest...) are not ours:
 * ignore.  Two Authorization headers that both carry Bearer are
 * ambiguous (400).
 *
 * Options: none.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <keygate/plugin.h>

struct bearer {
    int unused;
};

static kg_error bearer_create(kg_opts *opts, void **inst_r)
{
    struct bearer *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return KG_ERR_NOMEM;
    /* What a 401 for no key says to send, and its challenge's scheme. */
    kg_opts_credential_hint(opts, "Authorization: Bearer <key>", "Bearer");
    *inst_r = b;
    return KG_OK;
}

static void bearer_destroy(void *inst)
{
    free(inst);
}

/* RFC 6750 b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
 * A table: the characters of a random key make range tests mispredict. */
static const unsigned char b64token[256] = {
    ['a' ... 'z'] = 1, ['A' ... 'Z'] = 1, ['0' ... '9'] = 1,   /* GNU C */
    ['-'] = 1, ['.'] = 1, ['_'] = 1, ['~'] = 1, ['+'] = 1, ['/'] = 1,
};

static int b64token_char(unsigned char c)
{
    return b64token[c];
}

/* Whether all n characters are b64token ones: four a step, no branch
 * on any of them (a key is some forty). */
static int all_b64token(const unsigned char *t, size_t n)
{
    unsigned ok = 1;
    size_t i;
    for (i = 0; i + 4 <= n; i += 4)
        ok &= b64token[t[i]] & b64token[t[i + 1]] & b64token[t[i + 2]] &
              b64token[t[i + 3]];
    for (; i < n; i++)
        ok &= b64token[t[i]];
    return ok;
}

static int valid_token(const char *t, size_t n)
{
    size_t i = 0;
    if (n > 0 && all_b64token((const unsigned char *)t, n))
        return 1;   /* no "=" padding: the usual key */
    while (i < n && b64token_char((unsigned char)t[i]))
        i++;
    if (i == 0)
        return 0;
    while (i < n && t[i] == '=')
        i++;
    return i == n;
}

static kg_result bearer_extract(void *inst, kg_call *call, const char **key_r,
                                size_t *len_r)
{
    const kg_request *req = kg_call_request(call);
    const char *found = NULL;
    size_t found_len = 0, nth, vlen;
    const char *v;
    (void)inst;

    for (nth = 0; (v = kg_request_header_find(req, "Authorization", nth, &vlen)) != NULL; nth++) {
        const char *tok;
        size_t i = 0, tlen;

        /* Optional leading whitespace is trimmed by HTTP parsers already;
         * be lenient with it here too. */
        while (i < vlen && (v[i] == ' ' || v[i] == '\t'))
            i++;
        if (vlen - i < 6 || strncasecmp(v + i, "bearer", 6) != 0 ||
            (vlen - i > 6 && v[i + 6] != ' ' && v[i + 6] != '\t'))
            continue;  /* another scheme: not ours */
        i += 6;
        if (i < vlen && v[i] == '\t') {
            kg_call_deny(call, KG_CODE_INVALID_REQUEST,
                         "malformed Authorization header: use one space "
                         "between Bearer and the key");
            return KG_RESULT_FAIL;
        }
        while (i < vlen && v[i] == ' ')
            i++;
        tok = v + i;
        tlen = vlen - i;
        while (tlen > 0 && (tok[tlen - 1] == ' ' || tok[tlen - 1] == '\t'))
            tlen--;
        if (tlen == 0) {
            kg_call_deny(call, KG_CODE_INVALID_REQUEST,
                         "malformed Authorization header: Bearer without a key");
            return KG_RESULT_FAIL;
        }
        if (!valid_token(tok, tlen)) {
            kg_call_deny(call, KG_CODE_INVALID_REQUEST,
                         "malformed Authorization header: expected "
                         "'Bearer <key>' with exactly one token");
            return KG_RESULT_FAIL;
        }
        if (found != NULL) {
            kg_call_deny(call, KG_CODE_INVALID_REQUEST,
                         "more than one Authorization: Bearer header");
            return KG_RESULT_FAIL;
        }
        found = tok;
        found_len = tlen;
    }
    if (found == NULL)
        return KG_RESULT_IGNORE;
    *key_r = found;
    *len_r = found_len;
    return KG_RESULT_OK;
}

static const struct kg_credential_ops bearer_ops = {
    .extract = bearer_extract,
};

KG_PLUGIN_DEFINE(bearer) = {
    KG_PLUGIN_HEADER,
    .kind = KG_PLUGIN_CREDENTIAL,
    .name = "bearer",
    .description = "API key from Authorization: Bearer (RFC 6750)",
    .create = bearer_create,
    .destroy = bearer_destroy,
    .credential = &bearer_ops,
};
