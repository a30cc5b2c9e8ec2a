/*
 * yaml.c - turn a YAML document (parsed by libyaml) into a small tree
 * that remembers each node's line and column, expands ${ENV} and
 * ${ENV:-default} in scalars, and tracks which mapping keys were read so
 * that unknown keys can be reported instead of silently ignored.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#include <yaml.h>

/* Aliases can make a small file expand into a huge tree; refuse that. */
#define MAX_NODES 200000

struct build {
    yaml_document_t *doc;
    const char *file;
    kg_diag *diag;
    size_t count;
    int depth;
    int failed;
};

/*
 * Expand ${NAME} and ${NAME:-default}; "$${" is a literal "${".
 * Returns a malloc()ed string, or NULL with the diag set.
 */
static char *expand(const char *s, size_t len, size_t *len_r,
                    struct build *b, const yaml_node_t *node)
{
    kg__buf out;
    size_t i = 0;

    kg__buf_init(&out);
    while (i < len) {
        if (s[i] == '$' && i + 2 < len && s[i + 1] == '$' && s[i + 2] == '{') {
            kg__buf_add(&out, "${", 2);
            i += 3;
            continue;
        }
        if (s[i] == '$' && i + 1 < len && s[i + 1] == '{') {
            const char *end = memchr(s + i + 2, '}', len - i - 2);
            const char *name = s + i + 2, *def = NULL, *val;
            size_t nlen, dlen = 0;
            char nbuf[256];

            if (end == NULL) {
                kg__diag_set(b->diag, b->file, node->start_mark.line + 1,
                             node->start_mark.column + 1,
                             "unterminated ${ in value (write $${ for a literal ${)");
                goto fail;
            }
            nlen = (size_t)(end - name);
            {
                const char *colon = memchr(name, ':', nlen);
                if (colon != NULL && colon + 1 < end && colon[1] == '-') {
                    def = colon + 2;
                    dlen = (size_t)(end - def);
                    nlen = (size_t)(colon - name);
                }
            }
            if (nlen == 0 || nlen >= sizeof(nbuf)) {
                kg__diag_set(b->diag, b->file, node->start_mark.line + 1,
                             node->start_mark.column + 1,
                             "bad environment variable reference in value");
                goto fail;
            }
            memcpy(nbuf, name, nlen);
            nbuf[nlen] = '\0';
            val = getenv(nbuf);
            if (val != NULL && *val != '\0') {
                kg__buf_adds(&out, val);
            } else if (def != NULL) {
                kg__buf_add(&out, def, dlen);
            } else {
                kg__diag_set(b->diag, b->file, node->start_mark.line + 1,
                             node->start_mark.column + 1,
                             "environment variable %s is not set (set it, or "
                             "write ${%s:-default})", nbuf, nbuf);
                goto fail;
            }
            i = (size_t)(end - s) + 1;
            continue;
        }
        kg__buf_add(&out, s + i, 1);
        i++;
    }
    if (out.p == NULL)
        kg__buf_add(&out, "", 0);
    *len_r = out.len;
    return kg__buf_take(&out);
fail:
    kg__buf_free(&out);
    return NULL;
}

static kg__ynode *build(struct build *b, yaml_node_t *node)
{
    kg__ynode *n;

    if (node == NULL || b->failed)
        return NULL;
    if (++b->count > MAX_NODES || b->depth > 64) {
        kg__diag_set(b->diag, b->file, node->start_mark.line + 1,
                     node->start_mark.column + 1,
                     "document too large or too deeply nested (aliases?)");
        b->failed = 1;
        return NULL;
    }
    n = calloc(1, sizeof(*n));
    if (n == NULL) {
        kg__diag_set(b->diag, b->file, 0, 0, "out of memory");
        b->failed = 1;
        return NULL;
    }
    n->line = (unsigned)node->start_mark.line + 1;
    n->column = (unsigned)node->start_mark.column + 1;
    b->depth++;
    switch (node->type) {
    case YAML_SCALAR_NODE:
        n->type = KG__Y_SCALAR;
        n->quoted = node->data.scalar.style == YAML_SINGLE_QUOTED_SCALAR_STYLE ||
                    node->data.scalar.style == YAML_DOUBLE_QUOTED_SCALAR_STYLE;
        n->value = expand((const char *)node->data.scalar.value,
                          node->data.scalar.length, &n->len, b, node);
        if (n->value == NULL)
            b->failed = 1;
        break;
    case YAML_SEQUENCE_NODE: {
        yaml_node_item_t *it;
        size_t cnt = (size_t)(node->data.sequence.items.top -
                              node->data.sequence.items.start);
        n->type = KG__Y_SEQ;
        n->items = calloc(cnt ? cnt : 1, sizeof(*n->items));
        if (n->items == NULL) {
            b->failed = 1;
            break;
        }
        for (it = node->data.sequence.items.start;
             it < node->data.sequence.items.top && !b->failed; it++)
            n->items[n->n++] = build(b, yaml_document_get_node(b->doc, *it));
        break;
    }
    case YAML_MAPPING_NODE: {
        yaml_node_pair_t *p;
        size_t cnt = (size_t)(node->data.mapping.pairs.top -
                              node->data.mapping.pairs.start);
        n->type = KG__Y_MAP;
        n->items = calloc(cnt ? 2 * cnt : 1, sizeof(*n->items));
        if (n->items == NULL) {
            b->failed = 1;
            break;
        }
        for (p = node->data.mapping.pairs.start;
             p < node->data.mapping.pairs.top && !b->failed; p++) {
            kg__ynode *k = build(b, yaml_document_get_node(b->doc, p->key));
            kg__ynode *v;
            size_t j;
            if (k == NULL)
                break;
            n->items[n->n++] = k;
            /*
             * A key whose ${...} expansion failed has no value: the diag
             * is set, stop before anything compares it.
             */
            if (b->failed)
                break;
            if (k->type != KG__Y_SCALAR) {
                kg__diag_set(b->diag, b->file, k->line, k->column,
                             "mapping keys must be plain strings");
                b->failed = 1;
                break;
            }
            for (j = 0; j + 1 < n->n; j += 2) {
                if (strcmp(n->items[j]->value, k->value) == 0) {
                    kg__diag_set(b->diag, b->file, k->line, k->column,
                                 "duplicate key '%s' (first at line %u)",
                                 k->value, n->items[j]->line);
                    b->failed = 1;
                    break;
                }
            }
            v = build(b, yaml_document_get_node(b->doc, p->value));
            n->items[n->n++] = v;
        }
        break;
    }
    default:
        n->type = KG__Y_SCALAR;
        n->value = strdup("");
        break;
    }
    b->depth--;
    return n;
}

kg__ynode *kg__yaml_parse(const char *text, size_t len, const char *file,
                          kg_diag *diag)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    yaml_node_t *root;
    kg__ynode *tree = NULL;
    struct build b;

    if (!yaml_parser_initialize(&parser)) {
        kg__diag_set(diag, file, 0, 0, "out of memory");
        return NULL;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        const yaml_mark_t *m = parser.context ? &parser.context_mark
                                              : &parser.problem_mark;
        if (parser.problem_mark.line || parser.problem_mark.column)
            m = &parser.problem_mark;
        kg__diag_set(diag, file, (unsigned)m->line + 1, (unsigned)m->column + 1,
                     "YAML syntax error: %s%s%s",
                     parser.problem ? parser.problem : "unknown problem",
                     parser.context ? " " : "",
                     parser.context ? parser.context : "");
        yaml_parser_delete(&parser);
        return NULL;
    }
    root = yaml_document_get_root_node(&doc);
    if (root == NULL) {
        kg__diag_set(diag, file, 1, 1, "the document is empty");
    } else {
        memset(&b, 0, sizeof(b));
        b.doc = &doc;
        b.file = file;
        b.diag = diag;
        tree = build(&b, root);
        if (b.failed) {
            kg__yaml_free(tree);
            tree = NULL;
        }
    }
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return tree;
}

void kg__yaml_free(kg__ynode *n)
{
    size_t i;
    if (n == NULL)
        return;
    for (i = 0; i < n->n; i++)
        kg__yaml_free(n->items[i]);
    free(n->items);
    free(n->value);
    free(n);
}

kg__ynode *kg__ymap_key(kg__ynode *map, const char *key)
{
    size_t i;
    if (map == NULL || map->type != KG__Y_MAP)
        return NULL;
    for (i = 0; i + 1 < map->n; i += 2)
        if (strcmp(map->items[i]->value, key) == 0)
            return map->items[i];
    return NULL;
}

kg__ynode *kg__ymap_get(kg__ynode *map, const char *key)
{
    size_t i;
    if (map == NULL || map->type != KG__Y_MAP)
        return NULL;
    for (i = 0; i + 1 < map->n; i += 2) {
        if (strcmp(map->items[i]->value, key) == 0) {
            map->items[i]->used = 1;
            return map->items[i + 1];
        }
    }
    return NULL;
}
