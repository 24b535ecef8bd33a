/* batonctl failover | drain | undrain: requests through control znodes,
 * which only the leader (handoff) or the named node (drain) acts on. */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "baton/clock.h"
#include "cli/cli.h"
#include "cli/cluster_view.h"

/* The first node in the election line in `zone` that is not the leader. */
static const bt_view_node_t *first_in_zone(const bt_view_t *v, const char *zone)
{
    const bt_view_node_t *best = NULL;
    for (size_t i = 0; i < v->nnodes; i++) {
        const bt_view_node_t *n = &v->nodes[i];
        if (strcmp(n->zone, zone) || n->position < 0 || n->draining || !n->member ||
            !strcmp(n->node, v->leader))
            continue;
        if (!best || n->position < best->position)
            best = n;
    }
    return best;
}

/* Why `name` cannot take over, or NULL when it can. */
static const char *unfit(const bt_view_t *v, const char *name)
{
    const bt_view_node_t *n = bt_view_node(v, name);
    if (!n)
        return "no such node";
    if (!n->member)
        return "it is not connected";
    if (n->draining)
        return "it is draining";
    if (n->position < 0)
        return "it is not in the election";
    if (!strcmp(v->leader, name))
        return "it leads already";
    return NULL;
}

int bt_cmd_failover(bt_cli_t *cli, int argc, char **argv)
{
    static const struct option opts[] = {{"to", required_argument, NULL, 't'},
                                         {"to-zone", required_argument, NULL, 'z'},
                                         {"wait", required_argument, NULL, 'w'},
                                         {NULL, 0, NULL, 0}};
    const char *to = NULL, *zone = NULL;
    char to_buf[128];
    uint64_t wait_ms = 30000;
    int o, rc;
    char err[512];
    optind = 0;
    while ((o = getopt_long(argc, argv, "t:z:w:", opts, NULL)) != -1) {
        if (o == 't')
            to = optarg;
        else if (o == 'z')
            zone = optarg;
        else if (o == 'w' && bt_duration_parse(optarg, &wait_ms) == BT_OK)
            continue;
        else
            return BT_EXIT_USAGE;
    }
    if (optind != argc || (to && zone)) {
        fprintf(stderr, "usage: batonctl failover [--to NODE | --to-zone ZONE] [--wait DURATION]\n");
        return BT_EXIT_USAGE;
    }
    bt_zkc_t *z;
    PGconn *c;
    if ((rc = bt_cli_pg(cli, &c)) != BT_EXIT_OK)
        return rc;
    if ((rc = bt_cli_zk(cli, &z)) != BT_EXIT_OK) {
        PQfinish(c);
        return rc;
    }
    bt_view_t v;
    rc = BT_EXIT_FAILED;
    if (bt_view_load(z, &v, err, sizeof err)) {
        fprintf(stderr, "batonctl: %s\n", err);
        rc = BT_EXIT_UNREACHABLE;
        goto out_zk;
    }
    if (!v.leader[0]) {
        fprintf(stderr, "batonctl: no node leads now; nothing to hand off\n");
        goto out_view;
    }
    if (zone) {
        const bt_view_node_t *n = first_in_zone(&v, zone);
        if (!n) {
            fprintf(stderr, "batonctl: refusing: no healthy candidate in zone %s\n", zone);
            goto out_view;
        }
        /* a copy: the view is reloaded below */
        snprintf(to_buf, sizeof to_buf, "%s", n->node);
        to = to_buf;
    }
    const char *why = to ? unfit(&v, to) : NULL;
    if (why) {
        fprintf(stderr, "batonctl: refusing to hand off to %s: %s\n", to, why);
        goto out_view;
    }
    int64_t old_epoch = bt_view_fence_epoch(c, cli->cfg.cluster);
    char old[128];
    snprintf(old, sizeof old, "%s", v.leader);
    json_t *req = json_pack("{s:s?, s:s}", "to", to, "by", getenv("USER") ? getenv("USER") : "");
    char *js = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    int64_t t0 = bt_mono_ms();
    int zrc = bt_zkc_create(z, "control/handoff", js);
    free(js);
    if (zrc == ZNODEEXISTS) {
        fprintf(stderr, "batonctl: a handoff is already in progress\n");
        goto out_view;
    }
    if (zrc != ZOK) {
        fprintf(stderr, "batonctl: cannot write the handoff request: %s\n", zerror(zrc));
        rc = zrc == ZOPERATIONTIMEOUT ? BT_EXIT_TIMEOUT : BT_EXIT_FAILED;
        goto out_view;
    }
    /* progress on stderr in --json mode: stdout stays one JSON document */
    fprintf(cli->json ? stderr : stdout, "requested a handoff from %s%s%s\n", old,
            to ? " to " : "", to ? to : "");
    fflush(stdout);

    /* done when the fence holds a newer epoch (the new leader's first fenced
     * write) and the request is gone (it deletes it after that write) */
    bt_zkc_extend(z, (uint32_t)wait_ms + 2000);
    int64_t epoch = old_epoch;
    char *data = NULL;
    for (;;) {
        epoch = bt_view_fence_epoch(c, cli->cfg.cluster);
        int pending = bt_zkc_get(z, "control/handoff", &data, NULL) == ZOK;
        free(data);
        data = NULL;
        if (epoch > old_epoch && !pending)
            break;
        if (bt_mono_ms() - t0 > (int64_t)wait_ms) {
            fprintf(stderr, "batonctl: no new leader within %llu ms (request %s)\n",
                    (unsigned long long)wait_ms, pending ? "still pending" : "consumed");
            rc = BT_EXIT_TIMEOUT;
            goto out_view;
        }
        bt_zkc_pump(z, 5);
    }
    int64_t took = bt_mono_ms() - t0;
    bt_view_free(&v);
    bt_view_load(z, &v, err, sizeof err);
    if (to && strcmp(v.leader, to)) {
        fprintf(stderr, "batonctl: handed off, but to %s, not %s\n", v.leader, to);
        goto out_view;
    }
    if (cli->json) {
        bt_cli_print_json(json_pack("{s:s, s:s, s:s, s:I, s:I}", "previous", old, "leader",
                                    v.leader, "zone", v.leader_zone, "epoch", (json_int_t)epoch,
                                    "handoff_ms", (json_int_t)took));
    } else {
        printf("new leader %s (zone %s, epoch %lld) after %lld ms\n", v.leader,
               *v.leader_zone ? v.leader_zone : "-", (long long)epoch, (long long)took);
    }
    rc = BT_EXIT_OK;
out_view:
    bt_view_free(&v);
out_zk:
    bt_zkc_close(z);
    PQfinish(c);
    return rc;
}

static int set_drain(bt_cli_t *cli, int argc, char **argv, int on)
{
    bt_zkc_t *z;
    bt_view_t v;
    char err[512], rel[300];
    int rc;
    if (argc != 2) {
        fprintf(stderr, "usage: batonctl %s NODE\n", on ? "drain" : "undrain");
        return BT_EXIT_USAGE;
    }
    if ((rc = bt_cli_zk(cli, &z)) != BT_EXIT_OK)
        return rc;
    rc = BT_EXIT_FAILED;
    if (bt_view_load(z, &v, err, sizeof err)) {
        fprintf(stderr, "batonctl: %s\n", err);
        bt_zkc_close(z);
        return BT_EXIT_UNREACHABLE;
    }
    const bt_view_node_t *n = bt_view_node(&v, argv[1]);
    snprintf(rel, sizeof rel, "control/drain/%s", argv[1]);
    if (!n) {
        fprintf(stderr, "batonctl: no node '%s'\n", argv[1]);
    } else if (on) {
        int leads = !strcmp(v.leader, argv[1]);
        int zrc = bt_zkc_create(z, "control/drain", NULL);
        zrc = bt_zkc_create(z, rel, "");
        if (zrc == ZOK || zrc == ZNODEEXISTS) {
            printf("drained %s%s\n", argv[1],
                   leads ? ": it led, so it hands off to the next in line" : "");
            rc = BT_EXIT_OK;
        } else {
            fprintf(stderr, "batonctl: cannot drain %s: %s\n", argv[1], zerror(zrc));
        }
    } else {
        int zrc = bt_zkc_delete(z, rel);
        if (zrc == ZOK || zrc == ZNONODE) {
            printf("%s may rejoin the election%s\n", argv[1],
                   zrc == ZNONODE ? " (it was not drained)" : "");
            rc = BT_EXIT_OK;
        } else {
            fprintf(stderr, "batonctl: cannot undrain %s: %s\n", argv[1], zerror(zrc));
        }
    }
    bt_view_free(&v);
    bt_zkc_close(z);
    return rc;
}

int bt_cmd_drain(bt_cli_t *cli, int argc, char **argv)
{
    return set_drain(cli, argc, argv, 1);
}

int bt_cmd_undrain(bt_cli_t *cli, int argc, char **argv)
{
    return set_drain(cli, argc, argv, 0);
}
