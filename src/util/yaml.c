/* libyaml events -> bt_ynode_t tree. */
#include "baton/yaml.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#define BT_YAML_MAX_DEPTH 64

typedef struct yctx {
    yaml_parser_t parser;
    const char *name;
    char *err;
    size_t errlen;
    int depth;
} yctx_t;

static void yerr(yctx_t *y, size_t line, size_t col, const char *what)
{
    if (y->err && y->errlen)
        snprintf(y->err, y->errlen, "%s:%zu:%zu: %s", y->name, line, col, what);
}

void bt_ynode_free(bt_ynode_t *n)
{
    if (!n)
        return;
    for (size_t i = 0; i < n->n; i++) {
        if (n->keys)
            free(n->keys[i]);
        bt_ynode_free(n->items[i]);
    }
    free(n->keys);
    free(n->key_lines);
    free(n->items);
    free(n->value);
    free(n);
}

static int push_item(bt_ynode_t *parent, char *key, size_t key_line, bt_ynode_t *child)
{
    size_t cap = parent->n + 1;
    bt_ynode_t **items = realloc(parent->items, cap * sizeof *items);
    if (!items)
        return -1;
    parent->items = items;
    if (parent->kind == BT_YNODE_MAP) {
        char **keys = realloc(parent->keys, cap * sizeof *keys);
        if (!keys)
            return -1;
        parent->keys = keys;
        size_t *lines = realloc(parent->key_lines, cap * sizeof *lines);
        if (!lines)
            return -1;
        parent->key_lines = lines;
        keys[parent->n] = key;
        lines[parent->n] = key_line;
    }
    items[parent->n++] = child;
    return 0;
}

static bt_ynode_t *parse_node(yctx_t *y, yaml_event_t *ev);

/* Parses the children of a MAP or SEQ until its end event. */
static int parse_children(yctx_t *y, bt_ynode_t *node)
{
    yaml_event_t ev;
    for (;;) {
        if (!yaml_parser_parse(&y->parser, &ev)) {
            yerr(y, y->parser.problem_mark.line + 1, y->parser.problem_mark.column + 1,
                 y->parser.problem ? y->parser.problem : "syntax error");
            return -1;
        }
        if (ev.type == YAML_MAPPING_END_EVENT || ev.type == YAML_SEQUENCE_END_EVENT) {
            yaml_event_delete(&ev);
            return 0;
        }
        if (node->kind == BT_YNODE_SEQ) {
            bt_ynode_t *child = parse_node(y, &ev);
            if (!child || push_item(node, NULL, 0, child) < 0) {
                bt_ynode_free(child);
                return -1;
            }
            continue;
        }
        /* MAP: a scalar key, then a value */
        if (ev.type != YAML_SCALAR_EVENT) {
            yerr(y, ev.start_mark.line + 1, ev.start_mark.column + 1,
                 "mapping keys must be plain strings");
            yaml_event_delete(&ev);
            return -1;
        }
        size_t kline = ev.start_mark.line + 1, kcol = ev.start_mark.column + 1;
        char *key = strdup((const char *)ev.data.scalar.value);
        yaml_event_delete(&ev);
        if (!key)
            return -1;
        if (bt_ynode_get(node, key)) {
            char msg[300];
            snprintf(msg, sizeof msg, "duplicate key '%s'", key);
            yerr(y, kline, kcol, msg);
            free(key);
            return -1;
        }
        if (!yaml_parser_parse(&y->parser, &ev)) {
            yerr(y, y->parser.problem_mark.line + 1, y->parser.problem_mark.column + 1,
                 y->parser.problem ? y->parser.problem : "syntax error");
            free(key);
            return -1;
        }
        bt_ynode_t *child = parse_node(y, &ev);
        if (!child || push_item(node, key, kline, child) < 0) {
            free(key);
            bt_ynode_free(child);
            return -1;
        }
    }
}

/* Builds the node that starts with `ev` (and consumes `ev`). */
static bt_ynode_t *parse_node(yctx_t *y, yaml_event_t *ev)
{
    bt_ynode_t *n = calloc(1, sizeof *n);
    if (!n) {
        yaml_event_delete(ev);
        yerr(y, 0, 0, "out of memory");
        return NULL;
    }
    n->line = ev->start_mark.line + 1;
    n->col = ev->start_mark.column + 1;
    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        if (ev->data.scalar.anchor) {
            yerr(y, n->line, n->col, "anchors and aliases are not supported");
            goto fail;
        }
        n->kind = BT_YNODE_SCALAR;
        n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
        if (!(n->value = strdup((const char *)ev->data.scalar.value)))
            goto fail;
        yaml_event_delete(ev);
        return n;
    case YAML_MAPPING_START_EVENT:
    case YAML_SEQUENCE_START_EVENT:
        if ((ev->type == YAML_MAPPING_START_EVENT && ev->data.mapping_start.anchor) ||
            (ev->type == YAML_SEQUENCE_START_EVENT && ev->data.sequence_start.anchor)) {
            yerr(y, n->line, n->col, "anchors and aliases are not supported");
            goto fail;
        }
        n->kind = ev->type == YAML_MAPPING_START_EVENT ? BT_YNODE_MAP : BT_YNODE_SEQ;
        yaml_event_delete(ev);
        if (++y->depth > BT_YAML_MAX_DEPTH) {
            yerr(y, n->line, n->col, "nested too deeply");
            bt_ynode_free(n);
            return NULL;
        }
        if (parse_children(y, n) < 0) {
            bt_ynode_free(n);
            return NULL;
        }
        y->depth--;
        return n;
    case YAML_ALIAS_EVENT:
        yerr(y, n->line, n->col, "anchors and aliases are not supported");
        goto fail;
    default:
        yerr(y, n->line, n->col, "unexpected YAML event");
        goto fail;
    }
fail:
    yaml_event_delete(ev);
    bt_ynode_free(n);
    return NULL;
}

static bt_err_t load(yctx_t *y, bt_ynode_t **out)
{
    yaml_event_t ev;
    *out = NULL;
    /* STREAM-START, DOCUMENT-START, root node */
    for (;;) {
        if (!yaml_parser_parse(&y->parser, &ev)) {
            yerr(y, y->parser.problem_mark.line + 1, y->parser.problem_mark.column + 1,
                 y->parser.problem ? y->parser.problem : "syntax error");
            return BT_E_PARSE;
        }
        if (ev.type == YAML_STREAM_START_EVENT || ev.type == YAML_DOCUMENT_START_EVENT) {
            yaml_event_delete(&ev);
            continue;
        }
        if (ev.type == YAML_STREAM_END_EVENT) {
            yaml_event_delete(&ev);
            yerr(y, 1, 1, "the file is empty");
            return BT_E_PARSE;
        }
        break;
    }
    if (!(*out = parse_node(y, &ev)))
        return BT_E_PARSE;
    return BT_OK;
}

bt_err_t bt_yaml_load_string(const char *name, const char *text, size_t len,
                             bt_ynode_t **out, char *err, size_t errlen)
{
    yctx_t y = {.name = name, .err = err, .errlen = errlen};
    if (!yaml_parser_initialize(&y.parser))
        return BT_E_NOMEM;
    yaml_parser_set_input_string(&y.parser, (const unsigned char *)text, len);
    bt_err_t rc = load(&y, out);
    yaml_parser_delete(&y.parser);
    return rc;
}

bt_err_t bt_yaml_load_file(const char *path, bt_ynode_t **out, char *err, size_t errlen)
{
    yctx_t y = {.name = path, .err = err, .errlen = errlen};
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (err && errlen)
            snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return BT_E_IO;
    }
    if (!yaml_parser_initialize(&y.parser)) {
        fclose(f);
        return BT_E_NOMEM;
    }
    yaml_parser_set_input_file(&y.parser, f);
    bt_err_t rc = load(&y, out);
    yaml_parser_delete(&y.parser);
    fclose(f);
    return rc;
}

const bt_ynode_t *bt_ynode_get(const bt_ynode_t *map, const char *key)
{
    if (!map || map->kind != BT_YNODE_MAP)
        return NULL;
    for (size_t i = 0; i < map->n; i++)
        if (!strcmp(map->keys[i], key))
            return map->items[i];
    return NULL;
}

int bt_ynode_is_null(const bt_ynode_t *n)
{
    return n && n->kind == BT_YNODE_SCALAR && n->plain &&
           (!*n->value || !strcmp(n->value, "~") || !strcmp(n->value, "null"));
}
