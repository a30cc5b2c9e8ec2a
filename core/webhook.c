/*
 * webhook.c - webhook signers: an instance of a signer plugin, the sign
 * and verify entry points (argument checks and defaults; the scheme is
 * the plugin's), and the policy's signers: section.
 *
 *   signers:
 *     - standard                       # a scheme with default options
 *     - module: stripe                 # or a line with options
 *       options: {tolerance: 10m}
 *
 * The first signer is the policy's default; a scheme may appear once.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#include <keygate/webhook.h>

struct kg_webhook_signer {
    kg_context *ctx;
    const kg__module *mod;
    const struct kg_signer_ops *ops;
    void *inst;
    char *scheme;
};

struct kg__signers {
    kg_webhook_signer **v;
    size_t n;
};

/* Longest message id accepted (the spec gives none; ids are keys in
 * the receiver's idempotency store, so keep them sane). */
#define MAX_ID_LEN 256

void kg_webhook_signer_free(kg_webhook_signer *s)
{
    if (s == NULL)
        return;
    if (s->inst != NULL)
        s->mod->plugin->destroy(s->inst);
    free(s->scheme);
    free(s);
}

/*
 * Load plugin `scheme` and create an instance from `opts_map` (NULL: no
 * options).  Errors go to diag at (file, line, column).
 */
static kg_error signer_create(kg_context *ctx, const char *scheme,
                              char *const *dirs, size_t ndirs,
                              const char *file, const char *dir,
                              kg__ynode *opts_map, unsigned line,
                              unsigned column, kg_webhook_signer **s_r,
                              kg_diag *diag)
{
    kg_webhook_signer *s;
    kg_opts *opts = NULL;
    kg_error e;
    char err[1400];

    *s_r = NULL;
    s = calloc(1, sizeof(*s));
    if (s == NULL)
        return KG_ERR_NOMEM;
    s->ctx = ctx;
    s->scheme = kg__strdup(scheme);
    if (s->scheme == NULL) {
        e = KG_ERR_NOMEM;
        goto out;
    }
    e = kg__loader_get(ctx, scheme, KG_PLUGIN_SIGNER, dirs, ndirs, &s->mod,
                       err, sizeof(err));
    if (e != KG_OK) {
        kg__diag_set(diag, file, line, column, "%s", err);
        e = e == KG_ERR_NOMEM ? e : KG_ERR_PLUGIN;
        goto out;
    }
    s->ops = s->mod->plugin->signer;
    if (s->ops->sign == NULL || s->ops->verify == NULL ||
        s->ops->signature_header == NULL) {
        kg__diag_set(diag, file, line, column, "%s: the signer plugin '%s' "
                     "lacks sign, verify or signature_header", s->mod->path,
                     scheme);
        s->mod = NULL;
        e = KG_ERR_PLUGIN;
        goto out;
    }
    opts = kg__opts_new(ctx, file, dir, opts_map, scheme);
    if (opts == NULL) {
        e = KG_ERR_NOMEM;
        goto out;
    }
    kg__opts_set_section(opts, KG_PLUGIN_SIGNER);
    e = s->mod->plugin->create(opts, &s->inst);
    if (kg__opts_finish(opts, diag) != KG_OK) {
        e = KG_ERR_POLICY;
    } else if (e != KG_OK) {
        kg__diag_set(diag, file, line, column, "signer %s could not start: %s",
                     scheme, kg_strerror(e));
        e = e == KG_ERR_NOMEM ? e : KG_ERR_PLUGIN;
    }
out:
    kg__opts_free(opts);
    if (e != KG_OK) {
        if (s->mod == NULL)
            s->inst = NULL;
        kg_webhook_signer_free(s);
        return e;
    }
    *s_r = s;
    return KG_OK;
}

kg_error kg_webhook_signer_new(kg_context *ctx, const char *scheme,
                               kg_webhook_signer **s_r, kg_diag *diag)
{
    kg__diag_clear(diag);
    if (ctx == NULL || scheme == NULL || s_r == NULL)
        return KG_ERR_INVALID;
    return signer_create(ctx, scheme, NULL, 0, "", NULL, NULL, 0, 0, s_r,
                         diag);
}

const char *kg_webhook_signer_scheme(const kg_webhook_signer *s)
{
    return s ? s->scheme : NULL;
}

const char *kg_webhook_signer_header(const kg_webhook_signer *s)
{
    return s ? s->ops->signature_header : NULL;
}

int64_t kg_webhook_signer_tolerance(const kg_webhook_signer *s)
{
    if (s == NULL || s->ops->tolerance == NULL)
        return KG_WEBHOOK_TOLERANCE;
    return s->ops->tolerance(s->inst);
}

/* An id goes into the signed content between dots: printable, no dot. */
static int valid_id(const char *id)
{
    size_t i;
    for (i = 0; id[i]; i++) {
        unsigned char c = (unsigned char)id[i];
        if (c <= 0x20 || c >= 0x7f || c == '.' || c == ',')
            return 0;
    }
    return i > 0 && i <= MAX_ID_LEN;
}

kg_error kg_webhook_sign(const kg_webhook_signer *s,
                         const kg_webhook_message *msg,
                         const kg_webhook_secrets *secrets,
                         kg_webhook_headers *out, kg_diag *diag)
{
    kg_webhook_message m;
    char id[KG_WEBHOOK_ID_LEN + 1];
    kg_diag local;
    kg_error e;

    /* Plugins write their reason into diag->message: give them one. */
    if (diag == NULL)
        diag = &local;
    kg__diag_clear(diag);
    if (s == NULL || msg == NULL || out == NULL ||
        (msg->payload == NULL && msg->payload_len > 0))
        return KG_ERR_INVALID;
    if (kg_webhook_secrets_count(secrets) == 0) {
        kg__diag_set(diag, NULL, 0, 0, "no secret to sign with");
        return KG_ERR_INVALID;
    }
    m = *msg;
    if (m.payload == NULL)
        m.payload = "";
    if (m.id == NULL) {
        if ((e = kg_webhook_id_generate(id, sizeof(id))) != KG_OK)
            return e;
        m.id = id;
    } else if (!valid_id(m.id)) {
        kg__diag_set(diag, NULL, 0, 0, "message id must be 1 to %d printable "
                     "characters without blanks, dots or commas", MAX_ID_LEN);
        return KG_ERR_INVALID;
    }
    if (m.timestamp == 0)
        m.timestamp = kg_context_now(s->ctx) / 1000000;
    if (m.timestamp < 0) {
        kg__diag_set(diag, NULL, 0, 0, "timestamp must be Unix seconds, "
                     "not negative");
        return KG_ERR_INVALID;
    }
    return s->ops->sign(s->inst, &m, secrets, out, diag);
}

kg_error kg_webhook_verify(const kg_webhook_signer *s,
                           const kg_webhook_headers *h, const void *payload,
                           size_t payload_len,
                           const kg_webhook_secrets *secrets,
                           int64_t tolerance, int64_t now,
                           kg_webhook_status *status_r, kg_diag *diag)
{
    kg_webhook_status st = KG_WEBHOOK_BAD_FORMAT;
    kg_diag local;
    kg_error e;

    if (diag == NULL)
        diag = &local;
    kg__diag_clear(diag);
    if (status_r != NULL)
        *status_r = KG_WEBHOOK_BAD_FORMAT;
    if (s == NULL || h == NULL || (payload == NULL && payload_len > 0))
        return KG_ERR_INVALID;
    /* As sign() does for its timestamp: say which value is wrong (a
     * caller passes them on from its own input, e.g. keygate's --now). */
    if (now < 0) {
        kg__diag_set(diag, NULL, 0, 0, "now must be Unix seconds, not negative");
        return KG_ERR_INVALID;
    }
    if (tolerance < KG_WEBHOOK_TOLERANCE_DEFAULT) {
        kg__diag_set(diag, NULL, 0, 0, "tolerance must be seconds (0 or more), "
                     "not %lld", (long long)tolerance);
        return KG_ERR_INVALID;
    }
    if (kg_webhook_secrets_count(secrets) == 0) {
        kg__diag_set(diag, NULL, 0, 0, "no secret to verify with");
        return KG_ERR_INVALID;
    }
    if (tolerance == KG_WEBHOOK_TOLERANCE_DEFAULT)
        tolerance = kg_webhook_signer_tolerance(s);
    e = s->ops->verify(s->inst, h, payload ? payload : "", payload_len,
                       secrets, tolerance, now, &st, diag);
    /* A plugin may not answer "valid" with an error or the reverse. */
    if (e == KG_OK && st != KG_WEBHOOK_VALID)
        e = KG_ERR_VERIFY;
    if (e != KG_OK && st == KG_WEBHOOK_VALID)
        st = KG_WEBHOOK_NO_MATCH;
    if (e == KG_ERR_VERIFY && diag->message[0] == '\0')
        kg__diag_set(diag, NULL, 0, 0, "%s", kg_webhook_status_name(st));
    if (status_r != NULL)
        *status_r = st;
    return e;
}

/* ---- the policy's signers: section ----------------------------------- */

static kg_error policy_err(kg_diag *diag, const char *file, const kg__ynode *n,
                           const char *msg)
{
    kg__diag_set(diag, file, n->line, n->column, "%s", msg);
    return KG_ERR_POLICY;
}

static kg_error parse_signer(kg_policy *p, struct kg__signers *ss,
                             kg__ynode *n, const char *file, kg_diag *diag)
{
    kg__ynode *mod = n, *opts = NULL;
    kg_webhook_signer *s;
    size_t i;
    kg_error e;

    if (n->type == KG__Y_MAP) {
        mod = kg__ymap_get(n, "module");
        if (mod == NULL)
            return policy_err(diag, file, n, "a signers: line needs "
                              "'module:' (standard, github or stripe)");
        opts = kg__ymap_get(n, "options");
        if (opts != NULL && opts->type != KG__Y_MAP) {
            if (opts->type == KG__Y_SCALAR && opts->value[0] == '\0')
                opts = NULL;
            else
                return policy_err(diag, file, opts, "options must be a mapping");
        }
        for (i = 0; i + 1 < n->n; i += 2)
            if (!n->items[i]->used) {
                kg__diag_set(diag, file, n->items[i]->line,
                             n->items[i]->column, "unknown key '%s' in a "
                             "signers: line (expected one of: module, "
                             "options)", n->items[i]->value);
                return KG_ERR_POLICY;
            }
    } else if (n->type != KG__Y_SCALAR) {
        return policy_err(diag, file, n, "a signers: line is a scheme name "
                          "or {module: NAME, options: {...}}");
    }
    if (mod->type != KG__Y_SCALAR || mod->value[0] == '\0')
        return policy_err(diag, file, mod, "module must be a scheme name such "
                          "as standard, github or stripe");
    for (i = 0; i < ss->n; i++)
        if (strcmp(ss->v[i]->scheme, mod->value) == 0) {
            kg__diag_set(diag, file, mod->line, mod->column, "signer '%s' is "
                         "listed twice (a scheme may appear once)", mod->value);
            return KG_ERR_POLICY;
        }
    e = signer_create(p->ctx, mod->value, p->plugin_path, p->nplugin_path,
                      file, p->dir, opts, mod->line, mod->column, &s, diag);
    if (e != KG_OK)
        return e;
    ss->v[ss->n++] = s;
    return KG_OK;
}

kg_error kg__signers_load(kg_policy *p, kg__ynode *n, const char *file,
                          kg_diag *diag)
{
    struct kg__signers *ss;
    size_t i;
    kg_error e;

    if (n->type == KG__Y_SCALAR && n->value[0] == '\0')
        return KG_OK;
    if (n->type != KG__Y_SEQ)
        return policy_err(diag, file, n, "signers must be a list of schemes, "
                          "e.g. signers: [standard, github]");
    ss = calloc(1, sizeof(*ss));
    if (ss == NULL)
        return KG_ERR_NOMEM;
    ss->v = calloc(n->n ? n->n : 1, sizeof(*ss->v));
    if (ss->v == NULL) {
        free(ss);
        return KG_ERR_NOMEM;
    }
    /* Hang it on the policy first: a failure half-way is freed with it. */
    p->signers = ss;
    for (i = 0; i < n->n; i++)
        if ((e = parse_signer(p, ss, n->items[i], file, diag)) != KG_OK)
            return e;
    return KG_OK;
}

void kg__signers_free(kg_policy *p)
{
    struct kg__signers *ss = p->signers;
    size_t i;

    if (ss == NULL)
        return;
    for (i = ss->n; i > 0; i--)
        kg_webhook_signer_free(ss->v[i - 1]);
    free(ss->v);
    free(ss);
    p->signers = NULL;
}

void kg__signers_explain(const kg_policy *p, kg__buf *b)
{
    const struct kg__signers *ss = p->signers;
    size_t i;

    if (ss == NULL || ss->n == 0) {
        kg__buf_adds(b, "\nwebhook signers: none\n");
        return;
    }
    kg__buf_adds(b, "\nwebhook signers (the first is the default):\n");
    for (i = 0; i < ss->n; i++) {
        const kg_webhook_signer *s = ss->v[i];
        kg__buf_addf(b, "  %zu %-10s header %s", i + 1, s->scheme,
                     s->ops->signature_header);
        if (s->ops->tolerance != NULL)
            kg__buf_addf(b, ", tolerance %llds",
                         (long long)s->ops->tolerance(s->inst));
        kg__buf_adds(b, "\n");
    }
}

size_t kg_policy_signer_count(const kg_policy *p)
{
    const struct kg__signers *ss = p ? p->signers : NULL;
    return ss ? ss->n : 0;
}

const kg_webhook_signer *kg_policy_signer(const kg_policy *p, size_t i)
{
    const struct kg__signers *ss = p ? p->signers : NULL;
    return ss && i < ss->n ? ss->v[i] : NULL;
}

const kg_webhook_signer *kg_policy_signer_find(const kg_policy *p,
                                               const char *scheme)
{
    const struct kg__signers *ss = p ? p->signers : NULL;
    size_t i;

    if (ss == NULL || ss->n == 0)
        return NULL;
    if (scheme == NULL)
        return ss->v[0];
    for (i = 0; i < ss->n; i++)
        if (strcmp(ss->v[i]->scheme, scheme) == 0)
            return ss->v[i];
    return NULL;
}

kg_error kg_policy_webhook_sign(const kg_policy *p, const char *scheme,
                                const kg_webhook_message *msg,
                                const kg_webhook_secrets *secrets,
                                kg_webhook_headers *out, kg_diag *diag)
{
    const kg_webhook_signer *s;

    kg__diag_clear(diag);
    if (p == NULL)
        return KG_ERR_INVALID;
    s = kg_policy_signer_find(p, scheme);
    if (s == NULL) {
        if (scheme == NULL)
            kg__diag_set(diag, p->source, 0, 0, "the policy has no signers: "
                         "section (e.g. signers: [standard])");
        else
            kg__diag_set(diag, p->source, 0, 0, "the policy's signers: do "
                         "not include '%s'", scheme);
        return KG_ERR_NOT_FOUND;
    }
    return kg_webhook_sign(s, msg, secrets, out, diag);
}
