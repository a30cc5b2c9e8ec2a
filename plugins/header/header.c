/*
 * header - credential plugin: the key in a request header of its own,
 * X-API-Key by default.
 *
 * Options:
 *   name: X-API-Key    the header to read (case-insensitive)
 *
 * The value is the key, surrounding spaces trimmed; an empty value, a
 * value with inner whitespace or control bytes, or the header given
 * twice with different values is malformed (400 invalid_request).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <keygate/plugin.h>

struct header {
    char *name;
};

static void header_destroy(void *inst)
{
    struct header *h = inst;
    if (h == NULL)
        return;
    free(h->name);
    free(h);
}

static kg_error header_create(kg_opts *opts, void **inst_r)
{
    struct header *h = calloc(1, sizeof(*h));
    const char *name;
    kg_error e;
    size_t i;

    if (h == NULL)
        return KG_ERR_NOMEM;
    e = kg_opts_get_string(opts, "name", "X-API-Key", &name);
    if (e != KG_OK)
        goto fail;
    for (i = 0; name[i]; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '-' || c == '_')) {
            e = kg_opts_error(opts, "name", "'%s' is not a valid header name",
                              name);
            goto fail;
        }
    }
    if (i == 0) {
        e = kg_opts_error(opts, "name", "the header name is empty");
        goto fail;
    }
    h->name = strdup(name);
    if (h->name == NULL) {
        e = KG_ERR_NOMEM;
        goto fail;
    }
    /* What a 401 for no key says to send (no auth scheme of its own). */
    {
        char hint[96];
        snprintf(hint, sizeof(hint), "%s: <key>", name);
        kg_opts_credential_hint(opts, hint, NULL);
    }
    *inst_r = h;
    return KG_OK;
fail:
    header_destroy(h);
    return e;
}

static kg_result header_extract(void *inst, kg_call *call, const char **key_r,
                                size_t *len_r)
{
    struct header *h = inst;
    const kg_request *req = kg_call_request(call);
    const char *found = NULL, *v;
    size_t found_len = 0, nth, vlen;

    for (nth = 0; (v = kg_request_header_find(req, h->name, nth, &vlen)) != NULL; nth++) {
        size_t i;
        while (vlen > 0 && (*v == ' ' || *v == '\t')) {
            v++;
            vlen--;
        }
        while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
            vlen--;
        if (vlen == 0) {
            kg_call_deny(call, KG_CODE_INVALID_REQUEST,
                         "empty API key header");
            return KG_RESULT_FAIL;
        }
        for (i = 0; i < vlen; i++) {
            unsigned char c = (unsigned char)v[i];
            if (c <= 0x20 || c >= 0x7f) {
                kg_call_deny(call, KG_CODE_INVALID_REQUEST,
                             "malformed API key header: one key, without "
                             "spaces or control characters");
                return KG_RESULT_FAIL;
            }
        }
        if (found != NULL && (vlen != found_len || memcmp(v, found, vlen) != 0)) {
            kg_call_deny(call, KG_CODE_INVALID_REQUEST,
                         "the API key header is given twice with different keys");
            return KG_RESULT_FAIL;
        }
        found = v;
        found_len = vlen;
    }
    if (found == NULL)
        return KG_RESULT_IGNORE;
    *key_r = found;
    *len_r = found_len;
    return KG_RESULT_OK;
}

static const struct kg_credential_ops header_ops = {
    .extract = header_extract,
};

KG_PLUGIN_DEFINE(header) = {
    KG_PLUGIN_HEADER,
    .kind = KG_PLUGIN_CREDENTIAL,
    .name = "header",
    .description = "API key from a header of its own (X-API-Key by default)",
    .create = header_create,
    .destroy = header_destroy,
    .credential = &header_ops,
};
