/*
 * keygated_origin.c - the method and target of the request the gateway
 * is asking about, which is not the request keygated itself receives:
 *
 *   nginx auth_request       X-Original-Method, X-Original-URI
 *   Traefik / Caddy          X-Forwarded-Method, X-Forwarded-Uri
 *   Envoy ext_authz (HTTP)   the original method, path_prefix + path:
 *                            "/check" + "/v1/scrape?x=1"
 *
 * Only where they come from is decided here.  The library checks and
 * normalizes them (kg_request_set_target), so that keygated, the command
 * line and an embedder decide the same target the same way.
 */
#include "config.h"

#include <string.h>

#include "keygated.h"

void kgd_origin(kgd_origin_mode mode, const struct kgd_origin_in *in,
                const char **method_r, const char **target_r)
{
    const char *m = NULL, *u = NULL;
    const char *uri = in->raw_uri;

    if (mode == KGD_ORIGIN_AUTO || mode == KGD_ORIGIN_NGINX) {
        m = in->x_original_method;
        u = in->x_original_uri;
    }
    if (mode == KGD_ORIGIN_AUTO || mode == KGD_ORIGIN_FORWARDED) {
        if (m == NULL || *m == '\0')
            m = in->x_forwarded_method;
        if (u == NULL || *u == '\0')
            u = in->x_forwarded_uri;
    }
    if (m == NULL || *m == '\0')
        m = in->method;
    *method_r = m;
    *target_r = NULL;
    if (u != NULL && *u != '\0') {
        *target_r = u;
        return;
    }
    /* Envoy's path_prefix: the original target follows /check. */
    if (uri != NULL && strncmp(uri, "/check/", 7) == 0)
        *target_r = uri + 6;
}
