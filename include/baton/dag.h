/* Task graphs: nodes 0..n-1, each with the list of its upstreams (what it
 * depends on). Cycle detection that names the cycle, a stable topological
 * order, and "is j a transitive upstream of i" queries. */
#ifndef BATON_DAG_H
#define BATON_DAG_H

#include <stddef.h>
#include <stdint.h>

#include "baton/err.h"

typedef struct bt_dag {
    size_t n;
    size_t *n_up;      /* n_up[i]: how many upstreams node i has */
    size_t **up;       /* up[i][k]: the k-th upstream of node i */
    uint64_t **reach;  /* lazily computed upstream closures (bitsets) */
    size_t n_reach;    /* how many of them are computed */
} bt_dag_t;

bt_err_t bt_dag_init(bt_dag_t *g, size_t n);
void bt_dag_free(bt_dag_t *g);
/* Records that `node` depends on `upstream`. Duplicates are harmless (and
 * not looked for: callers with user input dedupe in O(1) themselves). */
bt_err_t bt_dag_add_edge(bt_dag_t *g, size_t node, size_t upstream);

/* Topological order, upstreams first; among nodes that are ready at the same
 * time the lower index comes first, so the order is stable across loads.
 * BT_E_INVAL when the graph has a cycle (order is then unspecified). */
bt_err_t bt_dag_toposort(const bt_dag_t *g, size_t *order);

/* Calls `cb` once per cycle: one cycle per strongly connected component,
 * the shortest one through the component's lowest node. path[0] is that
 * node and path[len-1] == path[0]; each node depends on the next one, as
 * a user reads depends_on lists. Returns the number of cycles reported
 * (0: the graph is a DAG). */
typedef void (*bt_dag_cycle_cb)(const size_t *path, size_t len, void *arg);
size_t bt_dag_cycles(const bt_dag_t *g, bt_dag_cycle_cb cb, void *arg);

/* 1 when `up` is a transitive upstream of `node` (never of itself unless a
 * cycle passes through it), 0 when not, -1 when out of memory. */
int bt_dag_is_upstream(bt_dag_t *g, size_t node, size_t up);

/* Writes "a -> b -> c -> a" for a cycle, using names[i] for node i. */
void bt_dag_format_path(const size_t *path, size_t len, const char *const *names, char *buf,
                        size_t buflen);

#endif
