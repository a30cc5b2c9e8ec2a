/*
 * keygated_admin_body.c - a request body against the fields its route
 * takes: an unknown field, a field of the wrong type or a required one
 * missing is a 400 that names the field, before anything is read from a
 * store or written (docs/admin-api.md, "Errors").
 */
#include "config.h"


#include <stdio.h>
#include <string.h>

#include "keygated_admin.h"

static const char *type_name(enum kgd_field_type t)
{
    switch (t) {
    case KGD_F_STRING: return "a string";
    case KGD_F_STRING_NULL: return "a string or null";
    case KGD_F_STRINGS: return "an array of strings";
    case KGD_F_OBJECT: return "an object";
    case KGD_F_LIMITS: return "an object of limits, each {\"count\": N, "
                              "\"window\": SECONDS, \"burst\": N}";
    }
    return "?";
}

/* A limit: {"count": N >= 1, "window": S >= 1, "burst": N >= 0?}. */
static int limit_ok(json_t *l)
{
    const char *k;
    json_t *v;
    if (!json_is_object(l) || !json_is_integer(json_object_get(l, "count")) ||
        !json_is_integer(json_object_get(l, "window")))
        return 0;
    json_object_foreach(l, k, v) {
        if (strcmp(k, "count") != 0 && strcmp(k, "window") != 0 &&
            strcmp(k, "burst") != 0)
            return 0;
        if (!json_is_integer(v) || json_integer_value(v) < 0)
            return 0;
    }
    return json_integer_value(json_object_get(l, "count")) >= 1 &&
           json_integer_value(json_object_get(l, "window")) >= 1;
}

static int type_ok(json_t *v, enum kgd_field_type t)
{
    size_t i;
    const char *k;
    json_t *e;

    switch (t) {
    case KGD_F_STRING:
        return json_is_string(v);
    case KGD_F_STRING_NULL:
        return json_is_string(v) || json_is_null(v);
    case KGD_F_STRINGS:
        if (!json_is_array(v))
            return 0;
        json_array_foreach(v, i, e) {
            if (!json_is_string(e))
                return 0;
        }
        return 1;
    case KGD_F_OBJECT:
        return json_is_object(v);
    case KGD_F_LIMITS:
        if (!json_is_object(v))
            return 0;
        json_object_foreach(v, k, e) {
            if (!limit_ok(e))
                return 0;
        }
        return 1;
    }
    return 0;
}

int kgd_admin_body(kgd_admin_call *c, const struct kgd_field *fields,
                   size_t n, int *ret_r)
{
    const char *k;
    json_t *v;
    char msg[512];
    size_t i;

    json_object_foreach(c->body, k, v) {
        for (i = 0; i < n && strcmp(fields[i].name, k) != 0; i++)
            ;
        if (i == n) {
            size_t len = 0;
            len += (size_t)snprintf(msg, sizeof(msg), "unknown field '%.64s' "
                                    "(this route takes:", k);
            for (i = 0; i < n && len < sizeof(msg); i++)
                len += (size_t)snprintf(msg + len, sizeof(msg) - len, " %s",
                                        fields[i].name);
            if (len < sizeof(msg))
                snprintf(msg + len, sizeof(msg) - len, ")");
            *ret_r = kgd_admin_error(c, 400, "invalid_request", msg, k);
            return -1;
        }
        if (!type_ok(v, fields[i].type)) {
            snprintf(msg, sizeof(msg), "%s must be %s", k,
                     type_name(fields[i].type));
            *ret_r = kgd_admin_error(c, 400, "invalid_request", msg, k);
            return -1;
        }
    }
    for (i = 0; i < n; i++) {
        if (fields[i].required && json_object_get(c->body, fields[i].name) == NULL) {
            snprintf(msg, sizeof(msg), "%s is required", fields[i].name);
            *ret_r = kgd_admin_error(c, 400, "invalid_request", msg,
                                     fields[i].name);
            return -1;
        }
    }
    return 0;
}

const char *kgd_admin_str(const kgd_admin_call *c, const char *name)
{
    return json_string_value(json_object_get(c->body, name));
}

int kgd_admin_has(const kgd_admin_call *c, const char *name)
{
    return json_object_get(c->body, name) != NULL;
}

/*
 * The field a refusal of the library is about: the library's message
 * names it in words ("permission 'x' is outside the account's ...",
 * "unknown plan ..."), so the first field the body has whose word the
 * message holds.  NULL if none: the 400 then names no field.
 */
const char *kgd_admin_field_of(const kgd_admin_call *c, const kg_diag *d)
{
    static const struct { const char *field, *word; } words[] = {
        { "permissions", "permission" }, { "allowed_cidrs", "network" },
        { "allowed_cidrs", "address" }, { "allowed_cidrs", "cidr" },
        { "limits", "limit" }, { "metadata", "metadata" },
        { "external_id", "external id" }, { "plan", "plan" },
        { "expires", "expir" }, { "name", "name" }, { "id", "id" },
    };
    size_t i;

    for (i = 0; d != NULL && i < sizeof(words) / sizeof(words[0]); i++) {
        if (kgd_admin_has(c, words[i].field) &&
            strcasestr(d->message, words[i].word) != NULL)
            return words[i].field;
    }
    return NULL;
}
