/* batonctl status | nodes | leader. The --json shapes are documented in
 * docs/cli.md and are a stable interface: fields are added, never renamed. */
#include <arpa/inet.h>
#include <jansson.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/cluster_view.h"
#include "cli/queries.h"

static const char *paint(const char *state)
{
    if (!bt_cli_colour())
        return "";
    if (!strcmp(state, "leading"))
        return "\033[32m";
    if (!strcmp(state, "draining"))
        return "\033[33m";
    if (!strcmp(state, "disconnected"))
        return "\033[31m";
    return "";
}

static const char *unpaint(void)
{
    return bt_cli_colour() ? "\033[0m" : "";
}

static json_t *nodes_json(const bt_view_t *v)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < v->nnodes; i++) {
        const bt_view_node_t *n = &v->nodes[i];
        json_array_append_new(
            arr, json_pack("{s:s, s:s, s:s, s:s, s:s, s:i}", "node", n->node, "zone", n->zone,
                           "version", n->version, "state", bt_view_state(v, n), "admin", n->http,
                           "election_position", n->position));
    }
    return arr;
}

static void nodes_table(const bt_view_t *v)
{
    printf("%-16s %-12s %-9s %-14s %-10s %s\n", "NODE", "ZONE", "VERSION", "STATE", "IN LINE",
           "ADMIN");
    for (size_t i = 0; i < v->nnodes; i++) {
        const bt_view_node_t *n = &v->nodes[i];
        const char *st = bt_view_state(v, n);
        char pos[16];
        snprintf(pos, sizeof pos, n->position >= 0 ? "#%d" : "-", n->position + 1);
        printf("%-16s %-12s %-9s %s%-14s%s %-10s %s\n", n->node, *n->zone ? n->zone : "-",
               *n->version ? n->version : "-", paint(st), st, unpaint(), pos,
               *n->http ? n->http : "-");
    }
}

/* One ZooKeeper server's health: its `srvr` four-letter answer's mode when
 * four-letter words are allowed, else whether it accepts connections. */
static json_t *zk_server(const char *hostport, int timeout_ms)
{
    char host[256], buf[2048] = "", mode[32] = "";
    const char *colon = strrchr(hostport, ':');
    snprintf(host, sizeof host, "%.*s", colon ? (int)(colon - hostport) : (int)strlen(hostport),
             hostport);
    const char *port = colon ? colon + 1 : "2181";
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    int reachable = 0;
    if (getaddrinfo(host, port, &hints, &ai) == 0 && ai) {
        int fd = socket(ai->ai_family, ai->ai_socktype, 0);
        struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            reachable = 1;
            if (write(fd, "srvr", 4) == 4) {
                ssize_t n, off = 0;
                while (off < (ssize_t)sizeof buf - 1 &&
                       (n = read(fd, buf + off, sizeof buf - 1 - (size_t)off)) > 0)
                    off += n;
                buf[off] = '\0';
                const char *m = strstr(buf, "Mode: ");
                if (m)
                    sscanf(m + 6, "%31s", mode);
            }
        }
        if (fd >= 0)
            close(fd);
    }
    if (ai)
        freeaddrinfo(ai);
    return json_pack("{s:s, s:b, s:s}", "server", hostport, "reachable", reachable, "mode",
                     mode[0] ? mode : (reachable ? "unknown" : "down"));
}

static json_t *zk_health(const char *hosts)
{
    json_t *arr = json_array();
    char *copy = strdup(hosts), *save = NULL;
    for (char *h = strtok_r(copy, ",", &save); h; h = strtok_r(NULL, ",", &save))
        json_array_append_new(arr, zk_server(h, 1000));
    free(copy);
    return arr;
}

static json_t *counts(PGconn *c, const char *sql, const char *cluster)
{
    json_t *o = json_object();
    const char *vals[1] = {cluster};
    PGresult *r = bt_cli_query(c, sql, 1, vals);
    for (int i = 0; r && i < PQntuples(r); i++)
        json_object_set_new(o, PQgetvalue(r, i, 0), json_integer(atoll(PQgetvalue(r, i, 1))));
    PQclear(r);
    return o;
}

static json_t *leader_changes(PGconn *c, const char *cluster, int limit)
{
    char lim[16];
    snprintf(lim, sizeof lim, "%d", limit);
    const char *vals[2] = {cluster, lim};
    json_t *arr = json_array();
    PGresult *r = bt_cli_query(c, BT_SQL_LEADER_CHANGES, 2, vals);
    for (int i = 0; r && i < PQntuples(r); i++)
        json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:I, s:s, s:s}", "at",
                                             PQgetvalue(r, i, 0), "node", PQgetvalue(r, i, 1),
                                             "zone", PQgetvalue(r, i, 2), "epoch",
                                             (json_int_t)atoll(PQgetvalue(r, i, 3)), "reason",
                                             PQgetvalue(r, i, 4), "previous_node",
                                             PQgetvalue(r, i, 5)));
    PQclear(r);
    return arr;
}

static json_t *leader_json(const bt_view_t *v, int64_t epoch)
{
    if (!v->leader[0])
        return json_null();
    return json_pack("{s:s, s:s, s:I, s:I}", "node", v->leader, "zone", v->leader_zone, "epoch",
                     (json_int_t)epoch, "since_ms", (json_int_t)v->leader_at_ms);
}

static void print_since(int64_t ms)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    char buf[40];
    gmtime_r(&t, &tm);
    strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    printf("%s", buf);
}

/* ZooKeeper is required; PostgreSQL is reported, not required. */
static int load(bt_cli_t *cli, bt_zkc_t **z, bt_view_t *v, PGconn **c)
{
    char err[512];
    int rc = bt_cli_zk(cli, z);
    if (rc != BT_EXIT_OK)
        return rc;
    if (bt_view_load(*z, v, err, sizeof err)) {
        fprintf(stderr, "batonctl: %s\n", err);
        bt_zkc_close(*z);
        return BT_EXIT_UNREACHABLE;
    }
    *c = NULL;
    if (cli->cfg.pg_conninfo) {
        *c = PQconnectdb(cli->cfg.pg_conninfo);
        if (PQstatus(*c) != CONNECTION_OK) {
            PQfinish(*c);
            *c = NULL;
        }
    }
    return BT_EXIT_OK;
}

int bt_cmd_status(bt_cli_t *cli, int argc, char **argv)
{
    bt_zkc_t *z;
    bt_view_t v;
    PGconn *c;
    (void)argv;
    if (argc != 1) {
        fprintf(stderr, "usage: batonctl [--json] status\n");
        return BT_EXIT_USAGE;
    }
    int rc = load(cli, &z, &v, &c);
    if (rc != BT_EXIT_OK)
        return rc;
    int64_t epoch = c ? bt_view_fence_epoch(c, cli->cfg.cluster) : -1;
    json_t *o = json_pack(
        "{s:s, s:o, s:o, s:{s:o}, s:{s:b, s:s}, s:b}", "cluster", cli->cfg.cluster, "leader",
        leader_json(&v, epoch), "nodes", nodes_json(&v), "zookeeper", "servers",
        zk_health(cli->cfg.zk_hosts), "postgres", "reachable", c != NULL, "server_version",
        c ? PQparameterStatus(c, "server_version") : "", "handoff_pending", v.handoff_pending);
    if (c) {
        json_object_set_new(o, "runs",
                            counts(c, BT_SQL_RUN_COUNT_BY_STATE, cli->cfg.cluster));
        json_object_set_new(o, "tasks",
                            counts(c, BT_SQL_TASK_COUNT_BY_STATE, cli->cfg.cluster));
        json_object_set_new(o, "leader_changes", leader_changes(c, cli->cfg.cluster, 5));
    }
    if (cli->json) {
        bt_cli_print_json(o);
    } else {
        printf("cluster   %s\n", cli->cfg.cluster);
        if (v.leader[0]) {
            printf("leader    %s (zone %s, epoch %lld, since ", v.leader,
                   *v.leader_zone ? v.leader_zone : "-", (long long)epoch);
            print_since(v.leader_at_ms);
            printf(")%s\n", v.handoff_pending ? "  [handoff requested]" : "");
        } else {
            printf("leader    NONE: no node is dispatching\n");
        }
        json_t *zs = json_object_get(json_object_get(o, "zookeeper"), "servers");
        size_t i;
        json_t *s;
        printf("zookeeper");
        json_array_foreach(zs, i, s)
        {
            printf(" %s=%s", json_string_value(json_object_get(s, "server")),
                   json_string_value(json_object_get(s, "mode")));
        }
        printf("\npostgres  %s\n\n", c ? "reachable" : "UNREACHABLE");
        nodes_table(&v);
        if (c) {
            const char *key;
            json_t *val;
            printf("\nruns     ");
            json_object_foreach(json_object_get(o, "runs"), key, val)
                printf(" %s=%lld", key, (long long)json_integer_value(val));
            printf("\ntasks    ");
            json_object_foreach(json_object_get(o, "tasks"), key, val)
                printf(" %s=%lld", key, (long long)json_integer_value(val));
            printf("\n\nrecent leader changes\n");
            json_array_foreach(json_object_get(o, "leader_changes"), i, s)
            {
                printf("  %s  %-14s epoch %-12lld %s (was %s)\n",
                       json_string_value(json_object_get(s, "at")),
                       json_string_value(json_object_get(s, "node")),
                       (long long)json_integer_value(json_object_get(s, "epoch")),
                       json_string_value(json_object_get(s, "reason")),
                       *json_string_value(json_object_get(s, "previous_node"))
                           ? json_string_value(json_object_get(s, "previous_node"))
                           : "-");
            }
        }
        json_decref(o);
    }
    if (c)
        PQfinish(c);
    bt_view_free(&v);
    bt_zkc_close(z);
    return BT_EXIT_OK;
}

int bt_cmd_nodes(bt_cli_t *cli, int argc, char **argv)
{
    bt_zkc_t *z;
    bt_view_t v;
    PGconn *c;
    (void)argv;
    if (argc != 1)
        return BT_EXIT_USAGE;
    int rc = load(cli, &z, &v, &c);
    if (rc != BT_EXIT_OK)
        return rc;
    if (cli->json)
        bt_cli_print_json(nodes_json(&v));
    else
        nodes_table(&v);
    if (c)
        PQfinish(c);
    bt_view_free(&v);
    bt_zkc_close(z);
    return BT_EXIT_OK;
}

int bt_cmd_leader(bt_cli_t *cli, int argc, char **argv)
{
    bt_zkc_t *z;
    bt_view_t v;
    PGconn *c;
    (void)argv;
    if (argc != 1)
        return BT_EXIT_USAGE;
    int rc = load(cli, &z, &v, &c);
    if (rc != BT_EXIT_OK)
        return rc;
    int64_t epoch = c ? bt_view_fence_epoch(c, cli->cfg.cluster) : -1;
    if (cli->json) {
        bt_cli_print_json(leader_json(&v, epoch));
    } else if (v.leader[0]) {
        printf("%s zone=%s epoch=%lld since=", v.leader, *v.leader_zone ? v.leader_zone : "-",
               (long long)epoch);
        print_since(v.leader_at_ms);
        printf("\n");
    } else {
        printf("none\n");
    }
    rc = v.leader[0] ? BT_EXIT_OK : BT_EXIT_FAILED;
    if (c)
        PQfinish(c);
    bt_view_free(&v);
    bt_zkc_close(z);
    return rc;
}
