/*
 * audit_changes.c - the `changes` of an audit record: the fields of a
 * key record or an account that differ between before and after, each
 * as {"before":..,"after":..} (keygate/audit.h).  Each field is written
 * as JSON on both sides and the texts compared, so that what is
 * compared is exactly what is shown.  Never the hash.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#include <keygate/audit.h>

/* Write one field of the object (a record or an account) as JSON. */
typedef void (*field_fn)(kg__buf *b, const void *o);

struct field {
    const char *name;
    field_fn put;
};

static void str_or_null(kg__buf *b, const char *s)
{
    kg__buf_json_str(b, s);   /* NULL: null */
}

static void time_or_null(kg__buf *b, int64_t t)
{
    char ts[32];
    if (t == 0) {
        kg__buf_adds(b, "null");
        return;
    }
    kg__format_time(t, ts);
    kg__buf_json_str(b, ts);
}

/* ---- key records ----------------------------------------------------- */

#define R(o) ((const kg_record *)(o))
static void r_id(kg__buf *b, const void *o) { str_or_null(b, R(o)->id); }
static void r_name(kg__buf *b, const void *o) { str_or_null(b, R(o)->name); }
static void r_prefix(kg__buf *b, const void *o) { str_or_null(b, R(o)->prefix); }
static void r_account(kg__buf *b, const void *o) { str_or_null(b, R(o)->account_id); }
static void r_plan(kg__buf *b, const void *o)
{
    str_or_null(b, R(o)->account ? R(o)->account->plan : R(o)->plan);
}
static void r_status(kg__buf *b, const void *o)
{
    kg__buf_json_str(b, R(o)->status == KG_STATUS_REVOKED ? "revoked" : "active");
}
static void r_perms(kg__buf *b, const void *o) { kg__json_strv(b, R(o)->perms, R(o)->nperms); }
static void r_cidrs(kg__buf *b, const void *o) { kg__json_strv(b, R(o)->cidrs, R(o)->ncidrs); }
static void r_limits(kg__buf *b, const void *o)
{
    kg__json_overrides(b, R(o)->limits, R(o)->nlimits);
}
static void r_created(kg__buf *b, const void *o) { time_or_null(b, R(o)->created); }
static void r_expires(kg__buf *b, const void *o) { time_or_null(b, R(o)->expires); }
static void r_replaced_by(kg__buf *b, const void *o) { str_or_null(b, R(o)->replaced_by); }
static void r_replaces(kg__buf *b, const void *o) { str_or_null(b, R(o)->replaces); }

static const struct field record_fields[] = {
    { "id", r_id }, { "name", r_name }, { "prefix", r_prefix },
    { "account", r_account }, { "plan", r_plan }, { "status", r_status },
    { "permissions", r_perms }, { "allowed_cidrs", r_cidrs },
    { "limits", r_limits }, { "created", r_created },
    { "expires", r_expires }, { "replaced_by", r_replaced_by },
    { "replaces", r_replaces },
};

/* ---- accounts -------------------------------------------------------- */

#define A(o) ((const kg_account *)(o))
static void a_id(kg__buf *b, const void *o) { str_or_null(b, A(o)->id); }
static void a_ext(kg__buf *b, const void *o) { str_or_null(b, A(o)->external_id); }
static void a_name(kg__buf *b, const void *o) { str_or_null(b, A(o)->name); }
static void a_plan(kg__buf *b, const void *o) { str_or_null(b, A(o)->plan); }
static void a_status(kg__buf *b, const void *o)
{
    kg__buf_json_str(b, kg_account_status_name(A(o)->status));
}
static void a_perms(kg__buf *b, const void *o) { kg__json_strv(b, A(o)->perms, A(o)->nperms); }
static void a_cidrs(kg__buf *b, const void *o) { kg__json_strv(b, A(o)->cidrs, A(o)->ncidrs); }
static void a_limits(kg__buf *b, const void *o)
{
    kg__json_overrides(b, A(o)->limits, A(o)->nlimits);
}
/* Kept as one canonical JSON object (account.c), spliced in as it is. */
static void a_metadata(kg__buf *b, const void *o)
{
    kg__buf_adds(b, A(o)->metadata != NULL ? A(o)->metadata : "null");
}
static void a_created(kg__buf *b, const void *o) { time_or_null(b, A(o)->created); }

static const struct field account_fields[] = {
    { "id", a_id }, { "external_id", a_ext }, { "name", a_name },
    { "plan", a_plan }, { "status", a_status }, { "permissions", a_perms },
    { "allowed_cidrs", a_cidrs }, { "limits", a_limits },
    { "metadata", a_metadata }, { "created", a_created },
};

/* ---- the diff -------------------------------------------------------- */

static char *diff(const struct field *fields, size_t n, const void *before,
                  const void *after)
{
    kg__buf out, x, y;
    size_t i;
    int first = 1;

    kg__buf_init(&out);
    kg__buf_init(&x);
    kg__buf_init(&y);
    kg__buf_adds(&out, "{");
    for (i = 0; i < n; i++) {
        x.len = y.len = 0;
        if (before != NULL)
            fields[i].put(&x, before);
        else
            kg__buf_adds(&x, "null");
        if (after != NULL)
            fields[i].put(&y, after);
        else
            kg__buf_adds(&y, "null");
        if (x.oom || y.oom) {
            out.oom = 1;
            break;
        }
        if (x.len == y.len && memcmp(x.p, y.p, x.len) == 0)
            continue;
        if (!first)
            kg__buf_adds(&out, ",");
        first = 0;
        kg__buf_json_str(&out, fields[i].name);
        kg__buf_adds(&out, ":{\"before\":");
        kg__buf_add(&out, x.p, x.len);
        kg__buf_adds(&out, ",\"after\":");
        kg__buf_add(&out, y.p, y.len);
        kg__buf_adds(&out, "}");
    }
    kg__buf_adds(&out, "}");
    kg__buf_free(&x);
    kg__buf_free(&y);
    return kg__buf_take(&out);
}

char *kg_audit_changes_records(const kg_record *before, const kg_record *after)
{
    return diff(record_fields, KG__ARRAY_LEN(record_fields), before, after);
}

char *kg_audit_changes_accounts(const kg_account *before, const kg_account *after)
{
    return diff(account_fields, KG__ARRAY_LEN(account_fields), before, after);
}
