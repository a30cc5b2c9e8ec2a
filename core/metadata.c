/*
 * metadata.c - an account's metadata: one JSON object, read by libyaml
 * (JSON is YAML's flow style) and written again compactly, so that what
 * is stored, and spliced into a decision's JSON, is valid JSON whatever
 * the operator typed.  What YAML accepts and JSON does not is refused.
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#define MAX_DEPTH 16

/* A JSON number (RFC 8259), true, false or null. */
static int json_literal(const char *s)
{
    const char *p = s;
    if (!strcmp(s, "true") || !strcmp(s, "false") || !strcmp(s, "null"))
        return 1;
    if (*p == '-')
        p++;
    if (*p == '0')
        p++;
    else if (*p >= '1' && *p <= '9')
        while (*p >= '0' && *p <= '9')
            p++;
    else
        return 0;
    if (*p == '.') {
        p++;
        if (!(*p >= '0' && *p <= '9'))
            return 0;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-')
            p++;
        if (!(*p >= '0' && *p <= '9'))
            return 0;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    return *p == '\0';
}

int kg__json_object_canon(const char *json, size_t len, char **out_r,
                          char *err, size_t errlen)
{
    yaml_parser_t ps;
    yaml_event_t ev;
    kg__buf b;
    /* Per open collection: 1 for a mapping; and whether the next scalar
     * of a mapping is a key. */
    int is_map[MAX_DEPTH], next_key[MAX_DEPTH], count[MAX_DEPTH];
    int depth = 0, done = 0, rc = -1, have_doc = 0;

    *out_r = NULL;
    kg__buf_init(&b);
    yaml_parser_initialize(&ps);
    yaml_parser_set_input_string(&ps, (const unsigned char *)json, len);
    snprintf(err, errlen, "not a JSON object");
    while (!done) {
        if (!yaml_parser_parse(&ps, &ev)) {
            snprintf(err, errlen, "not JSON: %s at byte %zu",
                     ps.problem ? ps.problem : "syntax error", ps.problem_offset);
            goto out;
        }
        switch (ev.type) {
        case YAML_STREAM_START_EVENT:
        case YAML_DOCUMENT_END_EVENT:
            break;
        case YAML_DOCUMENT_START_EVENT:
            if (have_doc++) {
                snprintf(err, errlen, "more than one JSON value");
                goto fail_ev;
            }
            break;
        case YAML_STREAM_END_EVENT:
            done = 1;
            break;
        case YAML_ALIAS_EVENT:
            snprintf(err, errlen, "not JSON: an alias");
            goto fail_ev;
        case YAML_MAPPING_START_EVENT:
        case YAML_SEQUENCE_START_EVENT: {
            int map = ev.type == YAML_MAPPING_START_EVENT;
            if (ev.data.mapping_start.anchor || ev.data.mapping_start.tag ||
                (map ? ev.data.mapping_start.style != YAML_FLOW_MAPPING_STYLE
                     : ev.data.sequence_start.style != YAML_FLOW_SEQUENCE_STYLE)) {
                snprintf(err, errlen, "not JSON (YAML's block style, an anchor "
                         "or a tag)");
                goto fail_ev;
            }
            if (depth == 0 && (!map || b.len > 0)) {
                snprintf(err, errlen, "not a JSON object (metadata is {...})");
                goto fail_ev;
            }
            if (depth > 0 && is_map[depth - 1] && next_key[depth - 1]) {
                snprintf(err, errlen, "not JSON: a key that is not a string");
                goto fail_ev;
            }
            if (depth >= MAX_DEPTH) {
                snprintf(err, errlen, "nested deeper than %d", MAX_DEPTH);
                goto fail_ev;
            }
            if (depth > 0) {
                if (!is_map[depth - 1] && count[depth - 1]++ > 0)
                    kg__buf_adds(&b, ",");
                if (is_map[depth - 1])
                    next_key[depth - 1] = 1;
            }
            kg__buf_adds(&b, map ? "{" : "[");
            is_map[depth] = map;
            next_key[depth] = 1;
            count[depth] = 0;
            depth++;
            break;
        }
        case YAML_MAPPING_END_EVENT:
        case YAML_SEQUENCE_END_EVENT:
            depth--;
            kg__buf_adds(&b, is_map[depth] ? "}" : "]");
            break;
        case YAML_SCALAR_EVENT: {
            const char *v = (const char *)ev.data.scalar.value;
            int quoted = ev.data.scalar.style == YAML_DOUBLE_QUOTED_SCALAR_STYLE;
            int key;
            if (depth == 0) {
                snprintf(err, errlen, "not a JSON object (metadata is {...})");
                goto fail_ev;
            }
            key = is_map[depth - 1] && next_key[depth - 1];
            if (ev.data.scalar.anchor || ev.data.scalar.tag ||
                (!quoted && (key || ev.data.scalar.style != YAML_PLAIN_SCALAR_STYLE ||
                             !json_literal(v)))) {
                snprintf(err, errlen, "not JSON: '%.40s' (strings and keys are "
                         "in double quotes)", v);
                goto fail_ev;
            }
            if (is_map[depth - 1]) {
                if (key && count[depth - 1]++ > 0)
                    kg__buf_adds(&b, ",");
                next_key[depth - 1] = !key;
            } else if (count[depth - 1]++ > 0) {
                kg__buf_adds(&b, ",");
            }
            if (quoted)
                kg__buf_json_strn(&b, v, ev.data.scalar.length);
            else
                kg__buf_adds(&b, v);
            if (key)
                kg__buf_adds(&b, ":");
            break;
        }
        default:
            break;
        }
        yaml_event_delete(&ev);
    }
    if (b.len == 0 || depth != 0)
        goto out;
    if (b.len > KG_ACCOUNT_METADATA_MAX) {
        snprintf(err, errlen, "longer than %d bytes", KG_ACCOUNT_METADATA_MAX);
        goto out;
    }
    if ((*out_r = kg__buf_take(&b)) == NULL) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    rc = 0;
    goto out;
fail_ev:
    yaml_event_delete(&ev);
out:
    yaml_parser_delete(&ps);
    kg__buf_free(&b);
    return rc;
}
