/*
 * load.c - reading the key file: the YAML document, each key record in
 * it (every error names the file, line and column), into a new table.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <yaml.h>

#include "filestore.h"

static const char *scalar(yaml_document_t *d, yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
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

#define BAD(n, ...) do { at->line = (unsigned)(n)->start_mark.line + 1; \
        at->column = (unsigned)(n)->start_mark.column + 1; \
        snprintf(err, errlen, "%s:%zu:%zu: ", path, \
        (n)->start_mark.line + 1, (n)->start_mark.column + 1); \
        snprintf(err + strlen(err), errlen - strlen(err), __VA_ARGS__); \
        goto fail; } while (0)

static kg_record *parse_entry(yaml_document_t *d, yaml_node_t *m,
                              const char *path, char *err, size_t errlen,
                              struct place *at)
{
    kg_record *r = kg_record_new();
    yaml_node_pair_t *p;
    int have_hash = 0;

    if (r == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (m->type != YAML_MAPPING_NODE)
        BAD(m, "a key record must be a mapping");
    for (p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = yaml_document_get_node(d, p->key);
        yaml_node_t *vn = yaml_document_get_node(d, p->value);
        const char *k = scalar(d, kn), *v = scalar(d, vn);
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
            yaml_node_item_t *it;
            if (vn->type == YAML_SCALAR_NODE && vn->data.scalar.length == 0)
                continue;
            if (vn->type != YAML_SEQUENCE_NODE)
                BAD(vn, "'%s' must be a list", k);
            for (it = vn->data.sequence.items.start; it < vn->data.sequence.items.top; it++) {
                yaml_node_t *in = yaml_document_get_node(d, *it);
                const char *iv = scalar(d, in);
                if (iv == NULL)
                    BAD(in, "items of '%s' must be strings", k);
                if (k[0] == 'p') kg_record_add_permission(r, iv);
                else kg_record_add_cidr(r, iv);
            }
        } else if (!strcmp(k, "limits")) {
            yaml_node_pair_t *lp;
            if (vn->type == YAML_SCALAR_NODE && vn->data.scalar.length == 0)
                continue;
            if (vn->type != YAML_MAPPING_NODE)
                BAD(vn, "limits must be a mapping of name: {count, window, burst}");
            for (lp = vn->data.mapping.pairs.start; lp < vn->data.mapping.pairs.top; lp++) {
                yaml_node_t *ln = yaml_document_get_node(d, lp->key);
                yaml_node_t *lv = yaml_document_get_node(d, lp->value);
                const char *lname = scalar(d, ln);
                long long c = -1, w = 0, b = 0;
                yaml_node_pair_t *q;
                if (lname == NULL || lv->type != YAML_MAPPING_NODE)
                    BAD(lv, "a limit must be name: {count: N, window: SECONDS}");
                for (q = lv->data.mapping.pairs.start; q < lv->data.mapping.pairs.top; q++) {
                    const char *qk = scalar(d, yaml_document_get_node(d, q->key));
                    yaml_node_t *qvn = yaml_document_get_node(d, q->value);
                    const char *qv = scalar(d, qvn);
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
                kg_record_add_limit(r, lname, c, w, b);
            }
        } else {
            BAD(kn, "unknown field '%s' in a key record", k);
        }
    }
    if (kg_record_id(r) == NULL || !have_hash || kg_record_plan(r) == NULL)
        BAD(m, "a key record needs at least id, hash and plan");
    return r;
fail:
    kg_record_unref(r);
    return NULL;
}

/* Read the file into a new table.  A missing file is an empty store if
 * `create` is set. */
struct table *kg__file_load(const char *path, int create, struct stat *st_r,
                               int *have_st_r, char *err, size_t errlen,
                               struct place *at)
{
    struct table *t = calloc(1, sizeof(*t));
    FILE *f;
    yaml_parser_t parser;
    yaml_document_t doc;
    yaml_node_t *root, *keys = NULL;
    yaml_node_item_t *it;
    int ok = 0;

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
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_file(&parser, f);
    if (!yaml_parser_load(&parser, &doc)) {
        at->line = (unsigned)parser.problem_mark.line + 1;
        at->column = (unsigned)parser.problem_mark.column + 1;
        snprintf(err, errlen, "%s:%zu:%zu: YAML error: %s", path,
                 parser.problem_mark.line + 1, parser.problem_mark.column + 1,
                 parser.problem ? parser.problem : "?");
        yaml_parser_delete(&parser);
        fclose(f);
        free(t);
        return NULL;
    }
    root = yaml_document_get_root_node(&doc);
    if (root == NULL) {
        ok = 1;  /* empty file: empty store */
        goto out;
    }
    if (root->type == YAML_MAPPING_NODE) {
        yaml_node_pair_t *p;
        for (p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
            const char *k = scalar(&doc, yaml_document_get_node(&doc, p->key));
            if (k && strcmp(k, "keys") == 0)
                keys = yaml_document_get_node(&doc, p->value);
            else {
                yaml_node_t *kn = yaml_document_get_node(&doc, p->key);
                at->line = (unsigned)kn->start_mark.line + 1;
                at->column = (unsigned)kn->start_mark.column + 1;
                snprintf(err, errlen, "%s:%zu:%zu: unknown top-level key '%s' "
                         "(a key file has only keys:)", path,
                         kn->start_mark.line + 1, kn->start_mark.column + 1,
                         k ? k : "?");
                goto out;
            }
        }
    }
    if (keys == NULL || (keys->type == YAML_SCALAR_NODE && keys->data.scalar.length == 0)) {
        if (root->type != YAML_MAPPING_NODE) {
            snprintf(err, errlen, "%s: a key file is a mapping with keys: [...]", path);
            goto out;
        }
        ok = 1;
        goto out;
    }
    if (keys->type != YAML_SEQUENCE_NODE) {
        at->line = (unsigned)keys->start_mark.line + 1;
        at->column = (unsigned)keys->start_mark.column + 1;
        snprintf(err, errlen, "%s:%zu:%zu: keys: must be a list of records",
                 path, keys->start_mark.line + 1, keys->start_mark.column + 1);
        goto out;
    }
    for (it = keys->data.sequence.items.start; it < keys->data.sequence.items.top; it++) {
        yaml_node_t *n = yaml_document_get_node(&doc, *it);
        kg_record *r = parse_entry(&doc, n, path, err, errlen, at);
        if (r == NULL)
            goto out;
        if (kg__file_table_find_id(t, kg_record_id(r)) != NULL) {
            at->line = (unsigned)n->start_mark.line + 1;
            at->column = (unsigned)n->start_mark.column + 1;
            snprintf(err, errlen, "%s:%zu:%zu: duplicate key id '%s'", path,
                     n->start_mark.line + 1, n->start_mark.column + 1,
                     kg_record_id(r));
            kg_record_unref(r);
            goto out;
        }
        if (kg__file_table_add(t, r) != 0) {
            kg_record_unref(r);
            snprintf(err, errlen, "out of memory");
            goto out;
        }
    }
    ok = 1;
out:
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    fclose(f);
    if (!ok) {
        kg__file_table_free(t);
        return NULL;
    }
    return t;
}
