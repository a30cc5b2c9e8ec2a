/*
 * load.c - reading the key file, one record at a time: libyaml's events
 * build a small tree of each record (struct ynode), which is turned into
 * a kg_record and freed before the next is read, so a load holds the
 * table and one record, not a document of the whole file (2.6 GB for a
 * million keys when it did).  Every error names the file, line and
 * column.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <yaml.h>

#include "filestore.h"

/* A record nests three deep (record, limits, a limit); a little room
 * past that for the error to be the record's, not the reader's. */
#define MAX_DEPTH 8

/* One node of a record, as the events gave it: a scalar (value, len), a
 * sequence (kids) or a mapping (kids: key, value, key, value...). */
struct ynode {
    yaml_node_type_t type;
    char *value;
    size_t len;
    yaml_mark_t mark;
    struct ynode **kids;
    size_t nkids, cap;
};

static void ynode_free(struct ynode *n)
{
    size_t i;
    if (n == NULL)
        return;
    for (i = 0; i < n->nkids; i++)
        ynode_free(n->kids[i]);
    free(n->kids);
    free(n->value);
    free(n);
}

struct reader {
    yaml_parser_t parser;
    const char *path;
    char *err;
    size_t errlen;
    struct place *at;
};

static void fail_at(struct reader *rd, yaml_mark_t m, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail_at(struct reader *rd, yaml_mark_t m, const char *fmt, ...)
{
    va_list ap;
    size_t n;
    rd->at->line = (unsigned)m.line + 1;
    rd->at->column = (unsigned)m.column + 1;
    snprintf(rd->err, rd->errlen, "%s:%zu:%zu: ", rd->path, m.line + 1, m.column + 1);
    n = strlen(rd->err);
    va_start(ap, fmt);
    vsnprintf(rd->err + n, rd->errlen - n, fmt, ap);
    va_end(ap);
}

/* The next event; 0 (the error set) if the YAML is bad. */
static int next_event(struct reader *rd, yaml_event_t *ev)
{
    if (yaml_parser_parse(&rd->parser, ev))
        return 1;
    fail_at(rd, rd->parser.problem_mark, "YAML error: %s",
            rd->parser.problem ? rd->parser.problem : "?");
    return 0;
}

static int add_kid(struct ynode *n, struct ynode *k)
{
    if (n->nkids == n->cap) {
        size_t nc = n->cap ? 2 * n->cap : 8;
        struct ynode **nk = realloc(n->kids, nc * sizeof(*nk));
        if (nk == NULL)
            return -1;
        n->kids = nk;
        n->cap = nc;
    }
    n->kids[n->nkids++] = k;
    return 0;
}

/* The node that event `ev` starts (ev is used up), read to its end;
 * NULL with the error set. */
static struct ynode *read_node(struct reader *rd, yaml_event_t *ev, int depth)
{
    struct ynode *n = calloc(1, sizeof(*n));
    yaml_event_type_t end;

    if (n == NULL) {
        yaml_event_delete(ev);
        snprintf(rd->err, rd->errlen, "out of memory");
        return NULL;
    }
    n->mark = ev->start_mark;
    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        n->type = YAML_SCALAR_NODE;
        n->len = ev->data.scalar.length;
        /* The event's buffer is the node's (nul-terminated by libyaml). */
        n->value = (char *)ev->data.scalar.value;
        ev->data.scalar.value = NULL;
        yaml_event_delete(ev);
        return n;
    case YAML_SEQUENCE_START_EVENT:
        n->type = YAML_SEQUENCE_NODE;
        end = YAML_SEQUENCE_END_EVENT;
        break;
    case YAML_MAPPING_START_EVENT:
        n->type = YAML_MAPPING_NODE;
        end = YAML_MAPPING_END_EVENT;
        break;
    case YAML_ALIAS_EVENT:
        fail_at(rd, ev->start_mark, "anchors and aliases are not used in a key file "
                "(write each record out in full)");
        goto fail;
    default:
        fail_at(rd, ev->start_mark, "unexpected YAML event");
        goto fail;
    }
    if (depth >= MAX_DEPTH) {
        fail_at(rd, ev->start_mark, "nested too deep for a key record");
        goto fail;
    }
    yaml_event_delete(ev);
    for (;;) {
        struct ynode *k;
        if (!next_event(rd, ev))
            goto fail_nodel;
        if (ev->type == end) {
            yaml_event_delete(ev);
            return n;
        }
        if ((k = read_node(rd, ev, depth + 1)) == NULL)
            goto fail_nodel;
        if (add_kid(n, k) != 0) {
            ynode_free(k);
            snprintf(rd->err, rd->errlen, "out of memory");
            goto fail_nodel;
        }
    }
fail:
    yaml_event_delete(ev);
fail_nodel:
    ynode_free(n);
    return NULL;
}

static const char *scalar(const struct ynode *n)
{
    return n && n->type == YAML_SCALAR_NODE ? n->value : NULL;
}

/* "" / null / ~ is "no time"; otherwise the core's time format. */
static int parse_time(const char *s, int64_t *t)
{
    if (s == NULL || *s == '\0' || strcmp(s, "null") == 0 || strcmp(s, "~") == 0) {
        *t = 0;
        return 0;
    }
    return kg_time_parse(s, t) == KG_OK ? 0 : -1;
}

#define BAD(n, ...) do { fail_at(rd, (n)->mark, __VA_ARGS__); goto fail; } while (0)

/* What the lists and limits of a key record and of an account are added
 * to. */
static int rec_perm(void *o, const char *s) { return kg_record_add_permission(o, s) != KG_OK; }
static int rec_cidr(void *o, const char *s) { return kg_record_add_cidr(o, s) != KG_OK; }
static int rec_limit(void *o, const char *n, int64_t c, int64_t w, int64_t b)
{
    return kg_record_add_limit(o, n, c, w, b) != KG_OK;
}
static int acct_perm(void *o, const char *s) { return kg_account_add_permission(o, s) != KG_OK; }
static int acct_cidr(void *o, const char *s) { return kg_account_add_cidr(o, s) != KG_OK; }
static int acct_limit(void *o, const char *n, int64_t c, int64_t w, int64_t b)
{
    return kg_account_add_limit(o, n, c, w, b) != KG_OK;
}

/* A list of strings (or nothing) into obj; 0, or -1 with the error set. */
static int parse_list(struct reader *rd, const char *k, const struct ynode *vn,
                      void *obj, int (*add)(void *, const char *))
{
    size_t it;
    if (vn->type == YAML_SCALAR_NODE && vn->len == 0)
        return 0;
    if (vn->type != YAML_SEQUENCE_NODE)
        BAD(vn, "'%s' must be a list", k);
    for (it = 0; it < vn->nkids; it++) {
        const struct ynode *in = vn->kids[it];
        const char *iv = scalar(in);
        if (iv == NULL)
            BAD(in, "items of '%s' must be strings", k);
        if (add(obj, iv) != 0) {
            snprintf(rd->err, rd->errlen, "out of memory");
            return -1;
        }
    }
    return 0;
fail:
    return -1;
}

/* limits: {name: {count, window, burst}} (or nothing) into obj. */
static int parse_limits(struct reader *rd, const struct ynode *vn, void *obj,
                        int (*add)(void *, const char *, int64_t, int64_t, int64_t))
{
    size_t lp;
    if (vn->type == YAML_SCALAR_NODE && vn->len == 0)
        return 0;
    if (vn->type != YAML_MAPPING_NODE)
        BAD(vn, "limits must be a mapping of name: {count, window, burst}");
    for (lp = 0; lp + 1 < vn->nkids; lp += 2) {
        const struct ynode *ln = vn->kids[lp], *lv = vn->kids[lp + 1];
        const char *lname = scalar(ln);
        long long c = -1, w = 0, b = 0;
        size_t q;
        if (lname == NULL || lv->type != YAML_MAPPING_NODE)
            BAD(lv, "a limit must be name: {count: N, window: SECONDS}");
        for (q = 0; q + 1 < lv->nkids; q += 2) {
            const char *qk = scalar(lv->kids[q]);
            const struct ynode *qvn = lv->kids[q + 1];
            const char *qv = scalar(qvn);
            char *end;
            long long x;
            if (qk == NULL || qv == NULL)
                BAD(qvn, "limit fields must be numbers");
            x = strtoll(qv, &end, 10);
            if (*end || x < 0)
                BAD(qvn, "limit %s must be a number >= 0", qk);
            if (!strcmp(qk, "count")) c = x;
            else if (!strcmp(qk, "window")) w = x;
            else if (!strcmp(qk, "burst")) b = x;
            else BAD(qvn, "unknown limit field '%s' (count, window, burst)", qk);
        }
        if (c < 0)
            BAD(lv, "limit '%s' has no count", lname);
        if (add(obj, lname, c, w, b) != 0) {
            snprintf(rd->err, rd->errlen, "out of memory");
            return -1;
        }
    }
    return 0;
fail:
    return -1;
}

/* An account from its node; NULL with the error set. */
static kg_account *parse_account(struct reader *rd, const struct ynode *m)
{
    kg_account *a = kg_account_new();
    size_t p;

    if (a == NULL) {
        snprintf(rd->err, rd->errlen, "out of memory");
        return NULL;
    }
    if (m->type != YAML_MAPPING_NODE)
        BAD(m, "an account must be a mapping");
    for (p = 0; p + 1 < m->nkids; p += 2) {
        const struct ynode *kn = m->kids[p], *vn = m->kids[p + 1];
        const char *k = scalar(kn), *v = scalar(vn);
        int64_t t;
        if (k == NULL)
            BAD(kn, "account keys must be strings");
        if (!strcmp(k, "permissions") || !strcmp(k, "allowed_cidrs")) {
            if (parse_list(rd, k, vn, a, k[0] == 'p' ? acct_perm : acct_cidr) != 0)
                goto fail;
            continue;
        }
        if (!strcmp(k, "limits")) {
            if (parse_limits(rd, vn, a, acct_limit) != 0)
                goto fail;
            continue;
        }
        if (v == NULL)
            BAD(vn, "'%s' must be a single value", k);
        if (!strcmp(k, "id")) kg_account_set_id(a, v);
        else if (!strcmp(k, "external_id")) kg_account_set_external_id(a, v);
        else if (!strcmp(k, "name")) kg_account_set_name(a, v);
        else if (!strcmp(k, "plan")) kg_account_set_plan(a, v);
        else if (!strcmp(k, "status")) {
            if (!strcmp(v, "active")) kg_account_set_status(a, KG_ACCOUNT_ACTIVE);
            else if (!strcmp(v, "suspended")) kg_account_set_status(a, KG_ACCOUNT_SUSPENDED);
            else BAD(vn, "status must be active or suspended, not '%s'", v);
        } else if (!strcmp(k, "metadata")) {
            if (vn->len > 0 && kg_account_set_metadata(a, v) != KG_OK)
                BAD(vn, "metadata must be a JSON object of at most %d bytes",
                    KG_ACCOUNT_METADATA_MAX);
        } else if (!strcmp(k, "created") || !strcmp(k, "updated")) {
            if (parse_time(v, &t) != 0)
                BAD(vn, "'%s' must be a time such as 2026-12-31T00:00:00Z", k);
            if (k[0] == 'c') kg_account_set_created(a, t);
            else kg_account_set_updated(a, t);
        } else {
            BAD(kn, "unknown field '%s' in an account", k);
        }
    }
    if (kg_account_id(a) == NULL || kg_account_plan(a) == NULL)
        BAD(m, "an account needs at least id and plan");
    return a;
fail:
    kg_account_unref(a);
    return NULL;
}

/* A record from its node; NULL with the error set. */
static kg_record *parse_entry(struct reader *rd, const struct ynode *m)
{
    kg_record *r = kg_record_new();
    size_t p;
    int have_hash = 0;

    if (r == NULL) {
        snprintf(rd->err, rd->errlen, "out of memory");
        return NULL;
    }
    if (m->type != YAML_MAPPING_NODE)
        BAD(m, "a key record must be a mapping");
    for (p = 0; p + 1 < m->nkids; p += 2) {
        const struct ynode *kn = m->kids[p], *vn = m->kids[p + 1];
        const char *k = scalar(kn), *v = scalar(vn);
        if (k == NULL)
            BAD(kn, "record keys must be strings");
        if (!strcmp(k, "id") || !strcmp(k, "name") || !strcmp(k, "prefix") ||
            !strcmp(k, "plan") || !strcmp(k, "hash") || !strcmp(k, "status") ||
            !strcmp(k, "created") || !strcmp(k, "expires") ||
            !strcmp(k, "last_used")) {
            int64_t t;
            if (v == NULL)
                BAD(vn, "'%s' must be a single value", k);
            if (!strcmp(k, "id")) kg_record_set_id(r, v);
            else if (!strcmp(k, "name")) kg_record_set_name(r, v);
            else if (!strcmp(k, "prefix")) kg_record_set_prefix(r, v);
            else if (!strcmp(k, "plan")) kg_record_set_plan(r, v);
            else if (!strcmp(k, "hash")) {
                unsigned char h[KG_HASH_LEN];
                if (kg_hash_from_hex(v, h) != KG_OK)
                    BAD(vn, "hash must be 64 hex digits (SHA-256 of the key)");
                kg_record_set_hash(r, h);
                have_hash = 1;
            } else if (!strcmp(k, "status")) {
                if (!strcmp(v, "active")) kg_record_set_status(r, KG_STATUS_ACTIVE);
                else if (!strcmp(v, "revoked")) kg_record_set_status(r, KG_STATUS_REVOKED);
                else BAD(vn, "status must be active or revoked, not '%s'", v);
            } else {
                if (parse_time(v, &t) != 0)
                    BAD(vn, "'%s' must be a time such as 2026-12-31T00:00:00Z", k);
                if (!strcmp(k, "created")) kg_record_set_created(r, t);
                else if (!strcmp(k, "expires")) kg_record_set_expires(r, t);
                else kg_record_set_last_used(r, t);
            }
        } else if (!strcmp(k, "permissions") || !strcmp(k, "allowed_cidrs")) {
            if (parse_list(rd, k, vn, r, k[0] == 'p' ? rec_perm : rec_cidr) != 0)
                goto fail;
        } else if (!strcmp(k, "limits")) {
            if (parse_limits(rd, vn, r, rec_limit) != 0)
                goto fail;
        } else if (!strcmp(k, "account")) {
            if (v == NULL)
                BAD(vn, "'account' must be a single value");
            kg_record_set_account_id(r, v);
        } else if (!strcmp(k, "replaced_by") || !strcmp(k, "replaces")) {
            /* A rotation's link (plugin.h kg_record_set_replaced_by). */
            if (v == NULL)
                BAD(vn, "'%s' must be a single value (a key id)", k);
            if ((!strcmp(k, "replaced_by") ? kg_record_set_replaced_by(r, v)
                             : kg_record_set_replaces(r, v)) != KG_OK)
                BAD(vn, "out of memory");
        } else {
            BAD(kn, "unknown field '%s' in a key record", k);
        }
    }
    /* A key of an account takes its plan from it (accounts.c). */
    if (kg_record_id(r) == NULL || !have_hash ||
        (kg_record_plan(r) == NULL && kg_record_account_id(r) == NULL))
        BAD(m, "a key record needs at least id, hash and plan (or account)");
    return r;
fail:
    kg_record_unref(r);
    return NULL;
}

/* The records (or, with `accounts`, the accounts) of the sequence whose
 * start event was just read, each added to t as soon as it is read.  0
 * on success. */
static int read_records(struct reader *rd, struct table *t, int accounts)
{
    yaml_event_t ev;
    for (;;) {
        struct ynode *n;
        kg_record *r = NULL;
        kg_account *a = NULL;
        int ok;
        if (!next_event(rd, &ev))
            return -1;
        if (ev.type == YAML_SEQUENCE_END_EVENT) {
            yaml_event_delete(&ev);
            return 0;
        }
        if ((n = read_node(rd, &ev, 0)) == NULL)
            return -1;
        if (accounts) {
            a = parse_account(rd, n);
            ok = a != NULL;
            if (ok && kg__file_acct_find(t, kg_account_id(a)) != NULL) {
                fail_at(rd, n->mark, "duplicate account id '%s'", kg_account_id(a));
                ok = 0;
            } else if (ok && kg_account_external_id(a) != NULL &&
                       kg__file_acct_find(t, kg_account_external_id(a)) != NULL) {
                fail_at(rd, n->mark, "duplicate account external_id '%s'",
                        kg_account_external_id(a));
                ok = 0;
            } else if (ok && kg__file_acct_add(t, a) != 0) {
                snprintf(rd->err, rd->errlen, "out of memory");
                ok = 0;
            }
            kg_account_unref(a);
        } else {
            r = parse_entry(rd, n);
            ok = r != NULL;
            if (ok && kg__file_table_find_id(t, kg_record_id(r)) != NULL) {
                fail_at(rd, n->mark, "duplicate key id '%s'", kg_record_id(r));
                ok = 0;
            } else if (ok && kg__file_table_add(t, r) != 0) {
                snprintf(rd->err, rd->errlen, "out of memory");
                ok = 0;
            }
            if (!ok)
                kg_record_unref(r);
        }
        ynode_free(n);
        if (!ok)
            return -1;
    }
}

/* The document: a mapping of keys:, a list of records, and accounts:, a
 * list of accounts (either may be empty or absent); an empty file is an
 * empty store.  0 on success. */
static int read_document(struct reader *rd, struct table *t)
{
    yaml_event_t ev;
    int have[2] = { 0, 0 }, which;

    /* Stream start, then a document or the end of an empty stream. */
    if (!next_event(rd, &ev))
        return -1;
    yaml_event_delete(&ev);
    if (!next_event(rd, &ev))
        return -1;
    if (ev.type == YAML_STREAM_END_EVENT) {
        yaml_event_delete(&ev);
        return 0;
    }
    yaml_event_delete(&ev);            /* document start */
    if (!next_event(rd, &ev))
        return -1;
    if (ev.type != YAML_MAPPING_START_EVENT) {
        int empty = ev.type == YAML_SCALAR_EVENT && ev.data.scalar.length == 0;
        yaml_event_delete(&ev);
        if (empty)
            return 0;                   /* a document of nothing */
        snprintf(rd->err, rd->errlen, "%s: a key file is a mapping with keys: [...]",
                 rd->path);
        return -1;
    }
    yaml_event_delete(&ev);
    for (;;) {
        const char *k;
        if (!next_event(rd, &ev))
            return -1;
        if (ev.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&ev);
            return 0;                   /* what follows the document is not read */
        }
        k = ev.type == YAML_SCALAR_EVENT ? (const char *)ev.data.scalar.value : NULL;
        if (k == NULL || (strcmp(k, "keys") != 0 && strcmp(k, "accounts") != 0)) {
            fail_at(rd, ev.start_mark, "unknown top-level key '%s' (a key file has "
                    "only accounts: and keys:)", k ? k : "?");
            yaml_event_delete(&ev);
            return -1;
        }
        which = k[0] == 'a';
        if (have[which]) {
            fail_at(rd, ev.start_mark, "%s: is given twice (one list)", k);
            yaml_event_delete(&ev);
            return -1;
        }
        have[which] = 1;
        yaml_event_delete(&ev);
        if (!next_event(rd, &ev))
            return -1;
        if (ev.type == YAML_SEQUENCE_START_EVENT) {
            yaml_event_delete(&ev);
            if (read_records(rd, t, which) != 0)
                return -1;
        } else if (ev.type == YAML_SCALAR_EVENT && ev.data.scalar.length == 0) {
            yaml_event_delete(&ev);     /* keys: (nothing) */
        } else {
            fail_at(rd, ev.start_mark, "%s must be a list", which ? "accounts:" : "keys:");
            yaml_event_delete(&ev);
            return -1;
        }
    }
}

/* Read the file into a new table.  A missing file is an empty store if
 * `create` is set. */
struct table *kg__file_load(const char *path, int create, struct stat *st_r,
                               int *have_st_r, char *err, size_t errlen,
                               struct place *at)
{
    struct table *t = calloc(1, sizeof(*t));
    struct reader rd = { .path = path, .err = err, .errlen = errlen, .at = at };
    FILE *f;
    int rc;

    at->line = at->column = 0;
    if (t == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    f = fopen(path, "r");
    if (f == NULL) {
        if (errno == ENOENT && create) {
            *have_st_r = 0;
            return t;
        }
        snprintf(err, errlen, "%s: cannot open the key file: %s", path, strerror(errno));
        free(t);
        return NULL;
    }
    if (fstat(fileno(f), st_r) == 0)
        *have_st_r = 1;
    yaml_parser_initialize(&rd.parser);
    yaml_parser_set_input_file(&rd.parser, f);
    rc = read_document(&rd, t);
    yaml_parser_delete(&rd.parser);
    fclose(f);
    if (rc != 0) {
        kg__file_table_free(t);
        return NULL;
    }
    return t;
}
