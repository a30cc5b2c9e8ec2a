/*
 * policy_limits.c - a policy's `limits:` section: where the context keeps
 * its limiter state.
 *
 *     limits: {state_file: /var/lib/keygate/limits.state, size: 256m}
 *
 * The first policy that names a file attaches it to the context (opened,
 * checked, created: limits_file.c); a later one must name the same file
 * and size, since a context cannot move its counts from one file to
 * another while it serves.  docs/limits-state.md.
 */
#include "internal.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_SIZE ((uint64_t)256 << 20)

/* "256m", "1g", "1048576": bytes, 0 if it is no size. */
static uint64_t parse_size(const char *s)
{
    char *end;
    unsigned long long v;
    int shift = 0;

    if (*s < '0' || *s > '9')
        return 0;
    v = strtoull(s, &end, 10);
    switch (*end) {
    case 'k': case 'K': shift = 10; end++; break;
    case 'm': case 'M': shift = 20; end++; break;
    case 'g': case 'G': shift = 30; end++; break;
    case 't': case 'T': shift = 40; end++; break;
    default: break;
    }
    if (*end != '\0' || v == 0 || v > (UINT64_MAX >> shift))
        return 0;
    return (uint64_t)v << shift;
}

kg_error kg__limits_section(kg__pload *L, kg__ynode *v)
{
    kg__ynode *f, *sz;
    uint64_t size = DEFAULT_SIZE;
    char path[PATH_MAX], err[512];
    const char *dir = L->p->dir;
    kg_error e;

    if (v->type != KG__Y_MAP)
        return kg__err_at(L, v, "limits must be a mapping (e.g. {state_file: "
                          "/var/lib/keygate/limits.state, size: 256m})");
    f = kg__ymap_get(v, "state_file");
    sz = kg__ymap_get(v, "size");
    if ((e = kg__check_unknown(L, v, "limits", "state_file, size")) != KG_OK)
        return e;
    if (sz != NULL) {
        if ((e = kg__want_scalar(L, sz, "limits.size")) != KG_OK)
            return e;
        if ((size = parse_size(sz->value)) == 0)
            return kg__err_at(L, sz, "limits.size must be a size in bytes, "
                              "with k, m, g or t (e.g. 256m)");
    }
    if (f == NULL)
        return sz == NULL ? KG_OK
                          : kg__err_at(L, sz, "limits.size without state_file");
    if ((e = kg__want_scalar(L, f, "limits.state_file")) != KG_OK)
        return e;
    if (f->value[0] == '\0')
        return kg__err_at(L, f, "limits.state_file is empty");
    /* Relative to the policy's folder, as the modules' paths are. */
    if (f->value[0] != '/' && dir != NULL)
        snprintf(path, sizeof(path), "%s/%s", dir, f->value);
    else
        snprintf(path, sizeof(path), "%s", f->value);
    e = kg__shm_attach(L->p->ctx, path, size, err, sizeof(err));
    if (e == KG_ERR_NOMEM)
        return e;
    if (e != KG_OK)
        return kg__err_at(L, f, "%s", err);
    return KG_OK;
}
