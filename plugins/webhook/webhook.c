/*
 * webhook - notifier plugin: an alert as a signed HTTP POST (libcurl).
 *
 *   notifiers:
 *     ops:
 *       module: webhook
 *       options: {url: "https://ops.example/keygate",
 *                 secret_file: /etc/keygate/alerts.secret,
 *                 scheme: standard, timeout: 10s}
 *
 * The body is the alert's JSON as the core made it; the headers are the
 * signer plugin's of `scheme` (Standard Webhooks by default:
 * webhook-id, webhook-timestamp, webhook-signature), signed with the
 * secret of secret_file (whsec_... for standard), the message id the
 * same on every attempt.  2xx: delivered; 408, 429, 5xx, no answer:
 * again later; any other status: refused for good (docs/alerts.md).
 * Redirects are not followed (a receiver that moved answers 3xx, which
 * is retried until the operator fixes the URL).
 */
#include <keygate/alerts.h>
#include <keygate/modutil.h>

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct webhook {
    char *url;
    kg_webhook_signer *signer;
    kg_webhook_secrets *secrets;
    long timeout_ms;
    int curl_inited;
};

/* http:// or https:// and a host: what the policy and the CLI accept. */
static int url_ok(const char *u)
{
    const char *rest;
    if (strncasecmp(u, "https://", 8) == 0)
        rest = u + 8;
    else if (strncasecmp(u, "http://", 7) == 0)
        rest = u + 7;
    else
        return 0;
    return rest[0] != '\0' && rest[0] != '/' && strpbrk(u, " \t\r\n") == NULL;
}

static void destroy(void *p)
{
    struct webhook *w = p;
    if (w == NULL)
        return;
    kg_webhook_secrets_free(w->secrets);
    kg_webhook_signer_free(w->signer);
    if (w->curl_inited)
        curl_global_cleanup();
    free(w->url);
    free(w);
}

static kg_error create(kg_opts *o, void **inst_r)
{
    struct webhook *w = calloc(1, sizeof(*w));
    const char *url = NULL, *scheme = "standard";
    char *secret = NULL;
    int64_t timeout = 10;
    kg_diag diag;
    kg_error e;

    if (w == NULL)
        return KG_ERR_NOMEM;
    *inst_r = w;
    if ((e = kg_opts_get_string(o, "url", NULL, &url)) != KG_OK ||
        (e = kg_opts_get_string(o, "scheme", "standard", &scheme)) != KG_OK ||
        (e = kg_opts_get_duration(o, "timeout", 10, &timeout)) != KG_OK)
        return e;
    if (url == NULL)
        return kg_opts_error(o, NULL, "webhook needs url: (http:// or https://)");
    if (!url_ok(url))
        return kg_opts_error(o, "url", "url must be an http:// or https:// URL "
                             "with a host, not '%s'", url);
    if (timeout < 1 || timeout > 300)
        return kg_opts_error(o, "timeout", "timeout must be from 1s to 5m");
    w->timeout_ms = (long)timeout * 1000;
    if ((w->url = strdup(url)) == NULL)
        return KG_ERR_NOMEM;
    if ((e = kg_opts_get_secret_file(o, "secret_file", &secret)) != KG_OK)
        return e;
    if (secret == NULL)
        return kg_opts_error(o, NULL, "webhook needs secret_file: (the "
                             "signing secret, e.g. from keygate webhook "
                             "secret)");
    if ((e = kg_webhook_secrets_new(&w->secrets)) == KG_OK)
        e = kg_webhook_secrets_add(w->secrets, secret, strlen(secret));
    kg_modutil_wipe_free(secret);
    if (e != KG_OK)
        return e;
    memset(&diag, 0, sizeof(diag));
    if (kg_webhook_signer_new(kg_opts_context(o), scheme, &w->signer,
                              &diag) != KG_OK)
        return kg_opts_error(o, "scheme", "scheme '%s': %s", scheme,
                             diag.message);
    /* Thread-safe since curl 7.84, and done at policy load, in the
     * main thread, before the sender runs. */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return kg_opts_error(o, NULL, "libcurl could not start");
    w->curl_inited = 1;
    return KG_OK;
}

/* The headers of one attempt, as "Name: value" lines for libcurl. */
static kg_error headers(struct webhook *w, const kg_notify_msg *m,
                        struct curl_slist **list_r, kg_diag *diag)
{
    const kg_webhook_secrets *sec = m->secrets ? m->secrets : w->secrets;
    kg_webhook_message msg = { m->id, m->timestamp, m->payload, m->payload_len };
    kg_webhook_headers *h = NULL;
    struct curl_slist *l = NULL, *nl;
    kg_error e;
    size_t i;

    *list_r = NULL;
    if ((e = kg_webhook_headers_new(&h)) != KG_OK)
        return e;
    if ((e = kg_webhook_sign(w->signer, &msg, sec, h, diag)) != KG_OK)
        goto out;
    l = curl_slist_append(NULL, "Content-Type: application/json");
    if (l == NULL || (nl = curl_slist_append(l, "User-Agent: keygate-alerts")) == NULL) {
        e = KG_ERR_NOMEM;
        goto out;
    }
    /* "Expect: 100-continue" would wait for the receiver before the body. */
    if ((nl = curl_slist_append(l, "Expect:")) == NULL) {
        e = KG_ERR_NOMEM;
        goto out;
    }
    for (i = 0; i < kg_webhook_headers_count(h); i++) {
        const char *name, *value;
        char line[2048];
        kg_webhook_headers_at(h, i, &name, &value);
        snprintf(line, sizeof(line), "%s: %s", name, value);
        if ((nl = curl_slist_append(l, line)) == NULL) {
            e = KG_ERR_NOMEM;
            goto out;
        }
    }
    *list_r = l;
    l = NULL;
out:
    curl_slist_free_all(l);
    kg_webhook_headers_free(h);
    return e;
}

static size_t discard(char *p, size_t size, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return size * n;
}

static kg_error send_alert(void *inst, const kg_notify_msg *m, int *status_r,
                           kg_diag *diag)
{
    struct webhook *w = inst;
    const char *url = m->url && m->url[0] ? m->url : w->url;
    struct curl_slist *hl = NULL;
    char errbuf[CURL_ERROR_SIZE];
    CURL *c = NULL;
    CURLcode rc;
    long code = 0;
    kg_error e;

    *status_r = 0;
    if (!url_ok(url)) {
        kg_diag_set(diag, "the URL is not http:// or https://");
        return KG_ERR_INVALID;
    }
    if ((e = headers(w, m, &hl, diag)) != KG_OK)
        return e == KG_ERR_NOMEM ? e : KG_ERR_INVALID;
    if ((c = curl_easy_init()) == NULL) {
        e = KG_ERR_NOMEM;
        goto out;
    }
    errbuf[0] = '\0';
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, m->payload);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)m->payload_len);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, w->timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, w->timeout_ms);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    rc = curl_easy_perform(c);
    if (rc != CURLE_OK) {
        /* Never the URL's query (it may carry a token): curl's reason. */
        kg_diag_set(diag, "%s", errbuf[0] ? errbuf : curl_easy_strerror(rc));
        e = KG_ERR_UNAVAILABLE;
        goto out;
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    *status_r = (int)code;
    if (code >= 200 && code < 300) {
        e = KG_OK;
    } else if (code >= 400 && code < 500 && code != 408 && code != 429) {
        kg_diag_set(diag, "the receiver refused the alert: HTTP %ld", code);
        e = KG_ERR_INVALID;
    } else {
        kg_diag_set(diag, "the receiver answered HTTP %ld", code);
        e = KG_ERR_UNAVAILABLE;
    }
out:
    curl_easy_cleanup(c);
    curl_slist_free_all(hl);
    return e;
}

static const struct kg_notifier_ops ops = { .send = send_alert };

KG_PLUGIN_DEFINE(webhook) = {
    KG_PLUGIN_HEADER,
    .kind = KG_PLUGIN_NOTIFIER,
    .name = "webhook",
    .description = "alerts as signed HTTP POSTs (libcurl)",
    .create = create,
    .destroy = destroy,
    .notifier = &ops,
};
