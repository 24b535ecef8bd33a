/* A YAML document as a tree that remembers where every node came from, so
 * that every error can name file, line, column and field. Built on libyaml's
 * event parser. Anchors and aliases are refused: our files never need them,
 * and they are how "billion laughs" documents blow up a parser's memory. */
#ifndef BATON_YAML_H
#define BATON_YAML_H

#include <stddef.h>

#include "baton/err.h"

typedef enum bt_ynode_kind {
    BT_YNODE_SCALAR,
    BT_YNODE_MAP,
    BT_YNODE_SEQ,
} bt_ynode_kind_t;

typedef struct bt_ynode bt_ynode_t;
struct bt_ynode {
    bt_ynode_kind_t kind;
    size_t line, col;       /* 1-based position of the node's start */
    char *value;            /* SCALAR: its text; else NULL */
    int plain;              /* SCALAR: 1 when unquoted (so "null" is null) */
    size_t n;               /* MAP: pairs; SEQ: items */
    char **keys;            /* MAP: the keys, in file order */
    size_t *key_lines;      /* MAP: the line of each key */
    bt_ynode_t **items;     /* MAP: values; SEQ: items */
};

/* Parses the first document of a file or buffer. On failure, err receives
 * "FILE:LINE:COL: reason". `name` is what messages call the buffer. */
bt_err_t bt_yaml_load_file(const char *path, bt_ynode_t **out, char *err, size_t errlen);
bt_err_t bt_yaml_load_string(const char *name, const char *text, size_t len,
                             bt_ynode_t **out, char *err, size_t errlen);
void bt_ynode_free(bt_ynode_t *node); /* accepts NULL */

/* The value of `key` in a MAP, or NULL. */
const bt_ynode_t *bt_ynode_get(const bt_ynode_t *map, const char *key);

/* 1 when a plain scalar reads as YAML null (~, null, empty). */
int bt_ynode_is_null(const bt_ynode_t *node);

#endif
