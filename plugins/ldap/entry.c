/*
 * entry.c - between directory entries and key records: the search
 * filter (its value escaped per RFC 4515), an entry's attributes read
 * through the policy's attribute mapping, and the modifications that
 * write a record back.
 *
 * Values the directory holds in a shape keygate cannot read fail
 * closed: an unreadable status counts as revoked, an unreadable expiry
 * as expired.  An unreadable limit override is dropped (the plan's limit
 * applies), which never grants more than the plan.
 */
#define _GNU_SOURCE
#include "config.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ldapstore.h"

const char *const kg__ldap_attr_option[KG__LA_COUNT] = {
    [KG__LA_ID] = "id",
    [KG__LA_HASH] = "hash",
    [KG__LA_PLAN] = "plan",
    [KG__LA_PERMS] = "permissions",
    [KG__LA_CIDRS] = "allowed_cidrs",
    [KG__LA_STATUS] = "status",
    [KG__LA_EXPIRES] = "expires",
    [KG__LA_NAME] = "name",
    [KG__LA_PREFIX] = "prefix",
    [KG__LA_CREATED] = "created",
    [KG__LA_LAST_USED] = "last_used",
    [KG__LA_LIMITS] = "limits",
    [KG__LA_ACCOUNT] = "account",
    [KG__LA_REPLACED_BY] = "replaced_by",
    [KG__LA_REPLACES] = "replaces",
};

/* The shipped schema (conf/ldap/keygate.schema). */
const char *const kg__ldap_attr_default[KG__LA_COUNT] = {
    [KG__LA_ID] = "apiKeyId",
    [KG__LA_HASH] = "apiKeyHash",
    [KG__LA_PLAN] = "apiKeyPlan",
    [KG__LA_PERMS] = "apiKeyPermission",
    [KG__LA_CIDRS] = "apiKeyAllowedCidr",
    [KG__LA_STATUS] = "apiKeyStatus",
    [KG__LA_EXPIRES] = "apiKeyExpires",
    [KG__LA_NAME] = "apiKeyName",
    [KG__LA_PREFIX] = "apiKeyPrefix",
    [KG__LA_CREATED] = "apiKeyCreated",
    [KG__LA_LAST_USED] = "apiKeyLastUsed",
    [KG__LA_LIMITS] = "apiKeyLimit",
    [KG__LA_ACCOUNT] = "apiKeyAccount",
    [KG__LA_REPLACED_BY] = "apiKeyReplacedBy",
    [KG__LA_REPLACES] = "apiKeyReplaces",
};

/* ---- the filter -------------------------------------------------------- */

#define HASH_MARK "{hash}"

int kg__ldap_filter_check(const char *tmpl, char *err, size_t errlen)
{
    const char *p, *first = strstr(tmpl, HASH_MARK);
    int depth = 0;
    size_t n = strlen(tmpl);

    if (first == NULL || strstr(first + 1, HASH_MARK) != NULL) {
        snprintf(err, errlen, "the filter must hold {hash} exactly once, e.g. "
                 "(&(objectClass=apiKey)(apiKeyHash={hash}))");
        return -1;
    }
    if (n < 2 || tmpl[0] != '(' || tmpl[n - 1] != ')') {
        snprintf(err, errlen, "the filter must be in parentheses, e.g. "
                 "(&(objectClass=apiKey)(apiKeyHash={hash}))");
        return -1;
    }
    for (p = tmpl; *p; p++) {
        if (*p == '(')
            depth++;
        else if (*p == ')' && --depth < 0)
            break;
        else if (*p == '\\' && p[1] != '\0')
            p++;
        if (depth == 0 && p[1] != '\0')
            break;
    }
    if (depth != 0 || *p != '\0') {
        snprintf(err, errlen, "the filter's parentheses do not balance");
        return -1;
    }
    return 0;
}

char *kg__ldap_filter(const char *tmpl, const char *value, size_t len)
{
    struct berval in, out = { 0, NULL };
    const char *mark = strstr(tmpl, HASH_MARK);
    char *res;
    size_t pre;

    if (mark == NULL)
        return NULL;
    in.bv_val = (char *)value;
    in.bv_len = len;
    /* libldap's RFC 4515 escaping: '*', '(', ')', '\' and NUL (and any
     * other non-printable byte) become \XX, so a value is only ever a
     * value. */
    if (ldap_bv2escaped_filter_value(&in, &out) != 0)
        return NULL;
    pre = (size_t)(mark - tmpl);
    res = malloc(pre + out.bv_len + strlen(mark + strlen(HASH_MARK)) + 1);
    if (res != NULL) {
        memcpy(res, tmpl, pre);
        memcpy(res + pre, out.bv_val, out.bv_len);
        strcpy(res + pre + out.bv_len, mark + strlen(HASH_MARK));
    }
    ber_memfree(out.bv_val);
    return res;
}

/* ---- times ------------------------------------------------------------- */

static int digits(const char *s, int n, int *v)
{
    int i;
    *v = 0;
    for (i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return -1;
        *v = *v * 10 + (s[i] - '0');
    }
    return 0;
}

/* GeneralizedTime (RFC 4517 3.3.13): YYYYMMDDHH[MM[SS]][(.|,)frac](Z|+-HH[MM]). */
int kg__ldap_parse_time(const char *s, int64_t *t_r)
{
    struct tm tm;
    int y, mo, d, h, mi = 0, se = 0, oh = 0, om = 0, sign = 0;
    const char *p = s;
    time_t t;

    if (s == NULL || strlen(s) < 11)
        return -1;
    if (digits(p, 4, &y) || digits(p + 4, 2, &mo) || digits(p + 6, 2, &d) ||
        digits(p + 8, 2, &h))
        return -1;
    p += 10;
    if (isdigit((unsigned char)*p)) {
        if (digits(p, 2, &mi))
            return -1;
        p += 2;
        if (isdigit((unsigned char)*p)) {
            if (digits(p, 2, &se))
                return -1;
            p += 2;
        }
    }
    if (*p == '.' || *p == ',') {
        p++;
        if (!isdigit((unsigned char)*p))
            return -1;
        while (isdigit((unsigned char)*p))
            p++;  /* fractions of a second do not matter here */
    }
    if (*p == 'Z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        sign = *p == '+' ? 1 : -1;
        if (digits(p + 1, 2, &oh))
            return -1;
        p += 3;
        if (isdigit((unsigned char)*p)) {
            if (digits(p, 2, &om))
                return -1;
            p += 2;
        }
    } else {
        return -1;  /* a local time is ambiguous: refuse it */
    }
    if (*p != '\0' || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 ||
        mi > 59 || se > 60 || oh > 23 || om > 59)
        return -1;
    memset(&tm, 0, sizeof(tm));
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = se;
    t = timegm(&tm);
    *t_r = (int64_t)t - sign * (oh * 3600 + om * 60);
    return 0;
}

void kg__ldap_format_time(int64_t t, char out[20])
{
    struct tm tm;
    time_t tt = (time_t)t;
    gmtime_r(&tt, &tm);
    strftime(out, 20, "%Y%m%d%H%M%SZ", &tm);
}

/* ---- entry -> record --------------------------------------------------- */

char **kg__ldap_values(LDAP *ld, LDAPMessage *e, const char *attr, size_t *n_r)
{
    struct berval **v;
    char **out;
    size_t i, n, k = 0;

    *n_r = 0;
    v = ldap_get_values_len(ld, e, attr);
    if (v == NULL)
        return NULL;
    n = (size_t)ldap_count_values_len(v);
    out = calloc(n + 1, sizeof(*out));
    if (out != NULL) {
        for (i = 0; i < n; i++) {
            if (memchr(v[i]->bv_val, '\0', v[i]->bv_len) != NULL)
                continue;
            out[k] = strndup(v[i]->bv_val, v[i]->bv_len);
            if (out[k] == NULL)
                break;
            k++;
        }
    }
    ldap_value_free_len(v);
    *n_r = k;
    return out;
}

void kg__ldap_free_values(char **v)
{
    size_t i;
    for (i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

/* The values of a mapped attribute (none if it is not mapped). */
static char **values(const kg__ldap *l, LDAP *ld, LDAPMessage *e, int which,
                     size_t *n_r)
{
    *n_r = 0;
    return l->attrs[which] ? kg__ldap_values(ld, e, l->attrs[which], n_r) : NULL;
}

static const char *first(char **v, size_t n)
{
    return n > 0 ? v[0] : NULL;
}

int kg__ldap_parse_limit(const char *s, char *name, size_t namelen,
                         int64_t *count, int64_t *window, int64_t *burst)
{
    const char *eq = strchr(s, '=');
    char *end;
    long long c, w, b = 0, mul = 1;

    if (eq == NULL || eq == s || (size_t)(eq - s) >= namelen)
        return -1;
    memcpy(name, s, (size_t)(eq - s));
    name[eq - s] = '\0';
    c = strtoll(eq + 1, &end, 10);
    if (end == eq + 1 || *end != '/' || c < 0)
        return -1;
    w = strtoll(end + 1, &end, 10);
    if (w <= 0)
        return -1;
    switch (*end) {
    case 's': mul = 1; end++; break;
    case 'm': mul = 60; end++; break;
    case 'h': mul = 3600; end++; break;
    case 'd': mul = 86400; end++; break;
    case 'w': mul = 604800; end++; break;
    default: break;
    }
    if (*end == ':') {
        const char *bs = end + 1;
        b = strtoll(bs, &end, 10);
        if (end == bs || b < 0)
            return -1;
    }
    if (*end != '\0')
        return -1;
    *count = c;
    *window = w * mul;
    *burst = b;
    return 0;
}

kg_record *kg__ldap_entry_record(const kg__ldap *l, LDAP *ld, LDAPMessage *e,
                                 char *err, size_t errlen)
{
    kg_record *r = kg_record_new();
    char **v[KG__LA_COUNT];
    size_t n[KG__LA_COUNT], i;
    unsigned char hash[KG_HASH_LEN];
    const char *s;
    char *dn = NULL;
    int64_t t;
    int ok = 0;

    memset(v, 0, sizeof(v));
    if (r == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    for (i = 0; i < KG__LA_COUNT; i++)
        v[i] = values(l, ld, e, (int)i, &n[i]);
    dn = ldap_get_dn(ld, e);

    s = first(v[KG__LA_HASH], n[KG__LA_HASH]);
    if (s == NULL || kg_hash_from_hex(s, hash) != KG_OK) {
        snprintf(err, errlen, "entry '%s': %s is not 64 hex digits (the "
                 "SHA-256 of the key)", dn ? dn : "?", l->attrs[KG__LA_HASH]);
        goto out;
    }
    kg_record_set_hash(r, hash);
    s = first(v[KG__LA_PLAN], n[KG__LA_PLAN]);
    if (s == NULL) {
        snprintf(err, errlen, "entry '%s' has no %s", dn ? dn : "?",
                 l->attrs[KG__LA_PLAN] ? l->attrs[KG__LA_PLAN] : "plan");
        goto out;
    }
    if (kg_record_set_plan(r, s) != KG_OK)
        goto nomem;
    /* Without an id attribute the entry's DN names the key. */
    s = first(v[KG__LA_ID], n[KG__LA_ID]);
    if (kg_record_set_id(r, s ? s : dn ? dn : "?") != KG_OK)
        goto nomem;
    if ((s = first(v[KG__LA_NAME], n[KG__LA_NAME])) != NULL &&
        kg_record_set_name(r, s) != KG_OK)
        goto nomem;
    if ((s = first(v[KG__LA_PREFIX], n[KG__LA_PREFIX])) != NULL &&
        kg_record_set_prefix(r, s) != KG_OK)
        goto nomem;
    s = first(v[KG__LA_STATUS], n[KG__LA_STATUS]);
    kg_record_set_status(r, s == NULL || strcasecmp(s, "active") == 0
                                ? KG_STATUS_ACTIVE : KG_STATUS_REVOKED);
    if ((s = first(v[KG__LA_EXPIRES], n[KG__LA_EXPIRES])) != NULL)
        kg_record_set_expires(r, kg__ldap_parse_time(s, &t) == 0 && t > 0 ? t : 1);
    if ((s = first(v[KG__LA_CREATED], n[KG__LA_CREATED])) != NULL &&
        kg__ldap_parse_time(s, &t) == 0)
        kg_record_set_created(r, t);
    if ((s = first(v[KG__LA_LAST_USED], n[KG__LA_LAST_USED])) != NULL &&
        kg__ldap_parse_time(s, &t) == 0)
        kg_record_set_last_used(r, t);
    if ((s = first(v[KG__LA_ACCOUNT], n[KG__LA_ACCOUNT])) != NULL &&
        kg_record_set_account_id(r, s) != KG_OK)
        goto nomem;
    if ((s = first(v[KG__LA_REPLACED_BY], n[KG__LA_REPLACED_BY])) != NULL &&
        kg_record_set_replaced_by(r, s) != KG_OK)
        goto nomem;
    if ((s = first(v[KG__LA_REPLACES], n[KG__LA_REPLACES])) != NULL &&
        kg_record_set_replaces(r, s) != KG_OK)
        goto nomem;
    for (i = 0; i < n[KG__LA_PERMS]; i++)
        if (kg_record_add_permission(r, v[KG__LA_PERMS][i]) != KG_OK)
            goto nomem;
    for (i = 0; i < n[KG__LA_CIDRS]; i++)
        if (kg_record_add_cidr(r, v[KG__LA_CIDRS][i]) != KG_OK)
            goto nomem;
    for (i = 0; i < n[KG__LA_LIMITS]; i++) {
        char name[64];
        int64_t c, w, b;
        if (kg__ldap_parse_limit(v[KG__LA_LIMITS][i], name, sizeof(name), &c, &w, &b) == 0 &&
            kg_record_add_limit(r, name, c, w, b) != KG_OK)
            goto nomem;
    }
    ok = 1;
    goto out;
nomem:
    snprintf(err, errlen, "out of memory");
out:
    kg_wipe(hash, sizeof(hash));
    for (i = 0; i < KG__LA_COUNT; i++)
        kg__ldap_free_values(v[i]);
    ldap_memfree(dn);
    if (!ok) {
        kg_record_unref(r);
        return NULL;
    }
    return r;
}

/* ---- record -> modifications ------------------------------------------- */

void kg__ldap_mods_free(LDAPMod **mods)
{
    size_t i, j;
    for (i = 0; mods && mods[i]; i++) {
        for (j = 0; mods[i]->mod_values && mods[i]->mod_values[j]; j++)
            free(mods[i]->mod_values[j]);
        free(mods[i]->mod_values);
        free(mods[i]->mod_type);
        free(mods[i]);
    }
    free(mods);
}

int kg__ldap_mod(LDAPMod ***mods, size_t *nm, int op, const char *attr,
                 const char *const *vals, size_t n)
{
    LDAPMod *m, **nmods;
    size_t i;

    if (attr == NULL || (n == 0 && op != LDAP_MOD_REPLACE))
        return 0;
    nmods = realloc(*mods, (*nm + 2) * sizeof(*nmods));
    if (nmods == NULL)
        return -1;
    *mods = nmods;
    m = calloc(1, sizeof(*m));
    if (m == NULL)
        return -1;
    nmods[(*nm)++] = m;
    nmods[*nm] = NULL;
    m->mod_op = op;
    m->mod_type = strdup(attr);
    if (m->mod_type == NULL)
        return -1;
    if (n == 0)
        return 0;  /* replace with nothing: delete the attribute */
    m->mod_values = calloc(n + 1, sizeof(char *));
    if (m->mod_values == NULL)
        return -1;
    for (i = 0; i < n; i++)
        if ((m->mod_values[i] = strdup(vals[i])) == NULL)
            return -1;
    return 0;
}

int kg__ldap_mod_one(LDAPMod ***mods, size_t *nm, int op, const char *attr,
                     const char *val)
{
    return kg__ldap_mod(mods, nm, op, attr, &val, val != NULL ? 1 : 0);
}

int kg__ldap_mod_time(LDAPMod ***mods, size_t *nm, int op, const char *attr,
                      int64_t t)
{
    char buf[20];
    if (t == 0)
        return kg__ldap_mod_one(mods, nm, op, attr, NULL);
    kg__ldap_format_time(t, buf);
    return kg__ldap_mod_one(mods, nm, op, attr, buf);
}

LDAPMod **kg__ldap_record_mods(const kg__ldap *l, const kg_record *r, int add)
{
    LDAPMod **mods = calloc(1, sizeof(*mods));
    size_t nm = 0, i, n;
    int op = add ? LDAP_MOD_ADD : LDAP_MOD_REPLACE, bad = 0;
    char hex[2 * KG_HASH_LEN + 1];
    const char **list = NULL;

    if (mods == NULL)
        return NULL;
    kg_hash_to_hex(kg_record_hash(r), hex);
    if (add) {
        bad |= kg__ldap_mod_one(&mods, &nm, op, "objectClass", l->object_class);
        /* The naming attribute never changes on a replace. */
        bad |= kg__ldap_mod_one(&mods, &nm, op, l->attrs[KG__LA_ID], kg_record_id(r));
    }
    bad |= kg__ldap_mod_one(&mods, &nm, op, l->attrs[KG__LA_HASH], hex);
    bad |= kg__ldap_mod_one(&mods, &nm, op, l->attrs[KG__LA_PLAN], kg_record_plan(r));
    bad |= kg__ldap_mod_one(&mods, &nm, op, l->attrs[KG__LA_NAME], kg_record_name(r));
    bad |= kg__ldap_mod_one(&mods, &nm, op, l->attrs[KG__LA_PREFIX], kg_record_prefix(r));
    bad |= kg__ldap_mod_one(&mods, &nm, op, l->attrs[KG__LA_STATUS],
                   kg_record_status(r) == KG_STATUS_REVOKED ? "revoked" : "active");
    bad |= kg__ldap_mod_time(&mods, &nm, op, l->attrs[KG__LA_EXPIRES], kg_record_expires(r));
    bad |= kg__ldap_mod_time(&mods, &nm, op, l->attrs[KG__LA_CREATED], kg_record_created(r));
    bad |= kg__ldap_mod_time(&mods, &nm, op, l->attrs[KG__LA_LAST_USED], kg_record_last_used(r));
    bad |= kg__ldap_mod_one(&mods, &nm, op, l->attrs[KG__LA_ACCOUNT], kg_record_account_id(r));
    /* A rotation's link, only when there is one: a directory still on
     * the schema of before (no such attributes) keeps taking every other
     * write, and refuses only a rotation (docs/ldap.md). */
    if (kg_record_replaced_by(r) != NULL)
        bad |= kg__ldap_mod_one(&mods, &nm, op, l->attrs[KG__LA_REPLACED_BY],
                       kg_record_replaced_by(r));
    if (kg_record_replaces(r) != NULL)
        bad |= kg__ldap_mod_one(&mods, &nm, op, l->attrs[KG__LA_REPLACES],
                       kg_record_replaces(r));

    n = kg_record_permission_count(r);
    if (n < kg_record_cidr_count(r))
        n = kg_record_cidr_count(r);
    if (n < kg_record_limit_count(r))
        n = kg_record_limit_count(r);
    list = calloc(n + 1, sizeof(*list));
    if (list == NULL)
        goto fail;
    for (i = 0; i < kg_record_permission_count(r); i++)
        list[i] = kg_record_permission(r, i);
    bad |= kg__ldap_mod(&mods, &nm, op, l->attrs[KG__LA_PERMS], list, i);
    for (i = 0; i < kg_record_cidr_count(r); i++)
        list[i] = kg_record_cidr(r, i);
    bad |= kg__ldap_mod(&mods, &nm, op, l->attrs[KG__LA_CIDRS], list, i);
    {
        char **lim = calloc(kg_record_limit_count(r) + 1, sizeof(*lim));
        size_t k = kg_record_limit_count(r);
        if (lim == NULL)
            goto fail;
        for (i = 0; i < k; i++) {
            const char *name;
            int64_t c, w, b;
            kg_record_limit(r, i, &name, &c, &w, &b);
            if ((lim[i] = kg__ldap_format_limit(name, c, w, b)) == NULL)
                bad = 1;
        }
        if (!bad)
            bad |= kg__ldap_mod(&mods, &nm, op, l->attrs[KG__LA_LIMITS],
                           (const char *const *)lim, k);
        for (i = 0; i < k; i++)
            free(lim[i]);
        free(lim);
    }
    if (bad)
        goto fail;
    free(list);
    return mods;
fail:
    free(list);
    kg__ldap_mods_free(mods);
    return NULL;
}

char *kg__ldap_format_limit(const char *name, int64_t c, int64_t w, int64_t b)
{
    if (b > 0)
        return kg_modutil_asprintf("%s=%lld/%lld:%lld", name, (long long)c,
                                 (long long)w, (long long)b);
    return kg_modutil_asprintf("%s=%lld/%lld", name, (long long)c, (long long)w);
}

char *kg__ldap_escape(const char *value)
{
    struct berval in, out = { 0, NULL };
    char *res;

    in.bv_val = (char *)value;
    in.bv_len = strlen(value);
    if (ldap_bv2escaped_filter_value(&in, &out) != 0)
        return NULL;
    res = strndup(out.bv_val, out.bv_len);
    ber_memfree(out.bv_val);
    return res;
}

char *kg__ldap_new_dn(const kg__ldap *l, const char *id)
{
    return kg__ldap_dn_under(l->rdn_attr, id, l->base_dn);
}

/* RFC 4514 section 2.4: escape what would end or restructure the RDN. */
char *kg__ldap_dn_under(const char *rdn, const char *id, const char *base)
{
    size_t n = strlen(id), i, k = 0;
    char *out = malloc(strlen(rdn) + 1 + 3 * n + 1 + strlen(base) + 1);

    if (out == NULL)
        return NULL;
    k = (size_t)sprintf(out, "%s=", rdn);
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)id[i];
        if (strchr(",+\"\\<>;=", c) != NULL ||
            (i == 0 && (c == '#' || c == ' ')) || (i == n - 1 && c == ' ')) {
            out[k++] = '\\';
            out[k++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            k += (size_t)sprintf(out + k, "\\%02x", c);
        } else {
            out[k++] = (char)c;
        }
    }
    sprintf(out + k, ",%s", base);
    return out;
}
