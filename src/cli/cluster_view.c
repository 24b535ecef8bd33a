/* What batonctl knows about the cluster: ZooKeeper's view (leader,
 * members, election line, drains) joined with PostgreSQL's (fence epoch,
 * leadership history). Shared by status, nodes, leader, failover, drain. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cluster_view.h"
#include "cli/queries.h"

static int cmp_seq(const void *a, const void *b)
{
    const char *x = *(char *const *)a, *y = *(char *const *)b;
    const char *sx = strrchr(x, '_'), *sy = strrchr(y, '_');
    return strcmp(sx ? sx : x, sy ? sy : y);
}

static bt_view_node_t *find_node(bt_view_t *v, const char *name)
{
    for (size_t i = 0; i < v->nnodes; i++)
        if (!strcmp(v->nodes[i].node, name))
            return &v->nodes[i];
    return NULL;
}

static bt_view_node_t *add_node(bt_view_t *v, const char *name)
{
    bt_view_node_t *n = find_node(v, name);
    if (n)
        return n;
    bt_view_node_t *arr = realloc(v->nodes, (v->nnodes + 1) * sizeof *arr);
    if (!arr)
        return NULL;
    v->nodes = arr;
    n = &v->nodes[v->nnodes++];
    memset(n, 0, sizeof *n);
    snprintf(n->node, sizeof n->node, "%s", name);
    n->position = -1;
    return n;
}

static void copy_str(char *dst, size_t len, json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    snprintf(dst, len, "%s", s ? s : "");
}

int bt_view_load(bt_zkc_t *z, bt_view_t *v, char *err, size_t errlen)
{
    char **names = NULL, *data = NULL;
    int count = 0, rc;
    memset(v, 0, sizeof *v);

    /* members */
    rc = bt_zkc_children(z, "nodes", &names, &count);
    if (rc != ZOK && rc != ZNONODE) {
        snprintf(err, errlen, "ZooKeeper: listing nodes: %s", zerror(rc));
        return -1;
    }
    for (int i = 0; i < count; i++) {
        char rel[600];
        snprintf(rel, sizeof rel, "nodes/%s", names[i]);
        bt_view_node_t *n = add_node(v, names[i]);
        if (!n || bt_zkc_get(z, rel, &data, NULL) != ZOK)
            continue;
        json_t *o = json_loads(data, 0, NULL);
        n->member = 1;
        copy_str(n->zone, sizeof n->zone, o, "zone");
        copy_str(n->version, sizeof n->version, o, "version");
        copy_str(n->http, sizeof n->http, o, "http");
        copy_str(n->role, sizeof n->role, o, "state");
        json_decref(o);
        free(data);
        data = NULL;
    }
    bt_zkc_free_names(names, count);

    /* drains: a drained node may be down; it is listed all the same */
    names = NULL;
    count = 0;
    if (bt_zkc_children(z, "control/drain", &names, &count) == ZOK)
        for (int i = 0; i < count; i++) {
            bt_view_node_t *n = add_node(v, names[i]);
            if (n)
                n->draining = 1;
        }
    bt_zkc_free_names(names, count);

    /* the line, in order */
    names = NULL;
    count = 0;
    if (bt_zkc_children(z, "election", &names, &count) == ZOK && count > 0) {
        qsort(names, (size_t)count, sizeof *names, cmp_seq);
        for (int i = 0; i < count; i++)
            for (size_t k = 0; k < v->nnodes; k++) {
                char needle[160];
                snprintf(needle, sizeof needle, "_%s_", v->nodes[k].node);
                /* c_<16 hex session>_<node>_<zone>_<seq> */
                if (strlen(names[i]) > 18 && !strncmp(names[i] + 18, needle, strlen(needle)) &&
                    v->nodes[k].position < 0)
                    v->nodes[k].position = i;
            }
    }
    bt_zkc_free_names(names, count);

    /* the leader */
    if (bt_zkc_get(z, "leader", &data, &v->leader_czxid) == ZOK && data) {
        json_t *o = json_loads(data, 0, NULL);
        copy_str(v->leader, sizeof v->leader, o, "node");
        copy_str(v->leader_zone, sizeof v->leader_zone, o, "zone");
        v->leader_at_ms = json_integer_value(json_object_get(o, "at_ms"));
        json_decref(o);
    }
    free(data);
    data = NULL;
    v->handoff_pending = bt_zkc_get(z, "control/handoff", &data, NULL) == ZOK;
    free(data);
    return 0;
}

void bt_view_free(bt_view_t *v)
{
    free(v->nodes);
    memset(v, 0, sizeof *v);
}

const char *bt_view_state(const bt_view_t *v, const bt_view_node_t *n)
{
    if (!n->member)
        return "disconnected";
    if (n->draining)
        return "draining";
    if (v->leader[0] && !strcmp(v->leader, n->node))
        return "leading";
    return "standby";
}

const bt_view_node_t *bt_view_node(const bt_view_t *v, const char *name)
{
    for (size_t i = 0; i < v->nnodes; i++)
        if (!strcmp(v->nodes[i].node, name))
            return &v->nodes[i];
    return NULL;
}

int64_t bt_view_fence_epoch(PGconn *c, const char *cluster)
{
    const char *vals[1] = {cluster};
    PGresult *r = PQexecParams(c, BT_SQL_FENCE_EPOCH, 1, NULL, vals, NULL, NULL, 0);
    int64_t e = -1;
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
        e = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return e;
}
