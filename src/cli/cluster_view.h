/* batonctl's view of a cluster, from ZooKeeper (cluster_view.c). */
#ifndef BATON_CLI_CLUSTER_VIEW_H
#define BATON_CLI_CLUSTER_VIEW_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

#include "cli/zkc.h"

typedef struct bt_view_node {
    char node[128], zone[64], version[32], http[128], role[32];
    int member;    /* has a live membership znode */
    int draining;  /* control/drain/<node> exists */
    int position;  /* place in the election line (0 = first), -1 when not in it */
} bt_view_node_t;

typedef struct bt_view {
    bt_view_node_t *nodes;
    size_t nnodes;
    char leader[128], leader_zone[64];
    int64_t leader_at_ms, leader_czxid;
    int handoff_pending;
} bt_view_t;

/* Reads members, drains, the election line and the leader. -1 with err. */
int bt_view_load(bt_zkc_t *z, bt_view_t *v, char *err, size_t errlen);
void bt_view_free(bt_view_t *v);
/* "leading", "standby", "draining" or "disconnected". */
const char *bt_view_state(const bt_view_t *v, const bt_view_node_t *n);
const bt_view_node_t *bt_view_node(const bt_view_t *v, const char *name);
/* The fence row's epoch, or -1. */
int64_t bt_view_fence_epoch(PGconn *c, const char *cluster);

#endif
