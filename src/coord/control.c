/* Operator requests, over ZooKeeper: planned handoff (control/handoff, to
 * anyone, to a node, or to the preferred zone) and drain
 * (control/drain/<node>). The leader acts on a handoff, a standby yields
 * its place for a --to one; see docs/failover.md, "Planned handoff and
 * drain". */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "baton/clock.h"
#include "baton/log.h"
#include "coord/coord_int.h"

static void on_handoff_deleted(int rc, const void *data)
{
    bt_coord_t *co = co_zdone(data);
    if (co && rc != ZOK && rc != ZNONODE)
        bt_warn("coord: cannot delete fulfilled handoff request: %s", zerror(rc));
}

static void co_delete_handoff(bt_coord_t *co)
{
    zreq_t *r = co_zreq(co);
    if (r && zoo_adelete(bt_zk_handle(co->zk), co->p_handoff, -1, on_handoff_deleted, r) == ZOK)
        r = NULL;
    free(r);
}

/* A request looked at before deleting it: the one we read, or a newer one. */
typedef struct handoff_check {
    zreq_t z; /* first: co_zdone() frees the whole request */
    int64_t czxid;
} handoff_check_t;

static void on_handoff_check(int rc, const struct Stat *stat, const void *data)
{
    int64_t czxid = ((const handoff_check_t *)data)->czxid;
    bt_coord_t *co = co_zdone(data);
    if (co && rc == ZOK && stat->czxid == czxid)
        co_delete_handoff(co);
}

/* A handoff request older than our leadership was what made us leader (or
 * was addressed to a leader before us): it is fulfilled; remove it so that
 * `batonctl failover --wait` sees the handoff complete. Only that request:
 * the operator may already have written the next one (a delete of whatever
 * is there would lose it), so the one we read is looked up first. Nobody
 * else deletes requests, so the one found is still there at the delete. */
void co_clear_fulfilled_handoff(bt_coord_t *co)
{
    int64_t czxid = co->handoff.present ? co->handoff.czxid : 0;
    memset(&co->handoff, 0, sizeof co->handoff);
    if (!czxid) { /* none read: a crash failover, or not read yet */
        co_delete_handoff(co);
        return;
    }
    handoff_check_t *r = calloc(1, sizeof *r);
    if (!r)
        return;
    r->z.co = co;
    r->z.gen = co->gen;
    r->czxid = czxid;
    if (zoo_aexists(bt_zk_handle(co->zk), co->p_handoff, 0, on_handoff_check, r) != ZOK)
        free(r);
}

static void on_zone_handoff_created(int rc, const char *value, const void *data)
{
    bt_coord_t *co = co_zdone(data);
    (void)value;
    if (co && rc != ZOK && rc != ZNODEEXISTS)
        bt_warn("coord: zone handoff request: %s", zerror(rc));
}

static void on_zone_candidates(int rc, const struct String_vector *names, const struct Stat *stat,
                               const void *data)
{
    bt_coord_t *co = co_zdone(data);
    char zone[128], js[300];
    (void)stat;
    if (!co || rc != ZOK || co->role != BT_ROLE_LEADING || co->handoff.present)
        return;
    char **sorted = co_sorted_line(names);
    if (!sorted)
        return;
    for (int i = 0; i < names->count; i++) {
        co_candidate_zone(sorted[i], zone, sizeof zone);
        if (strcmp(zone, co->pref_zone) || co_candidate_is(sorted[i], co->node))
            continue;
        /* the first healthy (in line = session alive) node there */
        const char *p = strchr(sorted[i] + 2, '_') + 1;
        const char *e = strchr(p, '_');
        snprintf(js, sizeof js, "{\"to\": \"%.*s\", \"reason\": \"preferred zone %s\"}",
                 (int)(e - p), p, co->pref_zone);
        bt_info("coord: leading outside the preferred zone %s: handing off to %.*s", co->pref_zone,
                (int)(e - p), p);
        zreq_t *r = co_zreq(co);
        if (r && zoo_acreate(bt_zk_handle(co->zk), co->p_handoff, js, (int)strlen(js),
                             bt_zk_acl(co->zk), 0, on_zone_handoff_created, r) == ZOK)
            r = NULL;
        free(r);
        break;
    }
    free(sorted);
}

/* Opt-in (election.zone_handoff): a leader outside the preferred zone hands
 * off when a node in that zone is in line. */
void co_check_zone_preference(bt_coord_t *co)
{
    if (!co->opts.zone_handoff || !co->pref_zone || !strcmp(co->zone, co->pref_zone))
        return;
    zreq_t *r = co_zreq(co);
    if (r && zoo_aget_children2(bt_zk_handle(co->zk), co->p_election, 0, on_zone_candidates, r) == ZOK)
        return;
    free(r);
}

/* ------------------------------------------------------------ control */


static void on_handoff_watch(zhandle_t *zh, int type, int state, const char *path, void *ctx)
{
    bt_coord_t *co = co_watch_owner(zh, type, ctx);
    (void)path;
    bt_debug("coord: handoff watch: type %d state %d", type, state);
    if (co)
        co_watch_handoff(co);
}

static void on_handoff_data(int rc, const char *value, int len, const struct Stat *stat,
                            const void *data)
{
    bt_coord_t *co = co_zdone(data);
    if (!co)
        return;
    memset(&co->handoff, 0, sizeof co->handoff);
    bt_debug("coord: handoff request: %s %.*s", zerror(rc), rc == ZOK ? len : 0, value ? value : "");
    if (rc == ZOK) {
        json_error_t jerr;
        json_t *o = value ? json_loadb(value, (size_t)len, 0, &jerr) : NULL;
        const char *to = o ? json_string_value(json_object_get(o, "to")) : NULL;
        co->handoff.present = 1;
        co->handoff.czxid = stat->czxid;
        co->handoff.deadline_ms = bt_mono_ms() + 10000;
        snprintf(co->handoff.to, sizeof co->handoff.to, "%s", to ? to : "");
        json_decref(o);
    }
    co_handle_handoff(co);
}

static void on_handoff_exists(int rc, const struct Stat *stat, const void *data)
{
    bt_coord_t *co = co_zdone(data);
    (void)stat;
    if (!co)
        return;
    if (rc == ZNONODE) {
        memset(&co->handoff, 0, sizeof co->handoff);
        return;
    }
    zreq_t *r = co_zreq(co);
    if (r && zoo_aget(bt_zk_handle(co->zk), co->p_handoff, 0, on_handoff_data, r) == ZOK)
        return;
    free(r);
}

/* An exists-watch, not a get-watch: ZooKeeper sets no watch on getData of a
 * node that does not exist, and the request usually does not exist yet. */
void co_watch_handoff(bt_coord_t *co)
{
    zreq_t *r = co_zreq(co);
    if (r && zoo_awexists(bt_zk_handle(co->zk), co->p_handoff, on_handoff_watch, co,
                               on_handoff_exists, r) == ZOK)
        return;
    free(r);
}

/* The line changed while a --to request is pending: the leader looks
 * whether the target is next, a standby whether it must yield. */
void co_handoff_line_watch(zhandle_t *zh, int type, int state, const char *path,
                                  void *ctx)
{
    bt_coord_t *co = co_watch_owner(zh, type, ctx);
    (void)state;
    (void)path;
    if (co && (co->role == BT_ROLE_LEADING || co->role == BT_ROLE_STANDBY) &&
        co->handoff.present && co->handoff.to[0])
        co_handle_handoff(co);
}

static void co_refuse_handoff(bt_coord_t *co, const char *why)
{
    bt_warn("coord: refusing handoff to %s: %s", co->handoff.to, why);
    co_clear_fulfilled_handoff(co);
}

/* The target is not in line. A live member may be between two places in it
 * (it yielded its place for the previous handoff and is creating its new
 * candidate): wait for it, until the deadline. Refuse a node that is not a
 * member (unknown or down) or is drained or stopping. */
static void on_handoff_member(int rc, const char *value, int len, const struct Stat *stat,
                              const void *data)
{
    bt_coord_t *co = co_zdone(data);
    (void)stat;
    if (!co || co->role != BT_ROLE_LEADING || !co->handoff.present || !co->handoff.to[0])
        return;
    json_error_t jerr;
    json_t *o = rc == ZOK && value ? json_loadb(value, (size_t)len, 0, &jerr) : NULL;
    const char *node = json_string_value(json_object_get(o, "node"));
    const char *state = json_string_value(json_object_get(o, "state"));
    int same = rc == ZNONODE || (node && !strcmp(node, co->handoff.to));
    int live = node && state && strcmp(state, "drained") && strcmp(state, "stopped");
    json_decref(o);
    if (!same)
        return; /* a newer request: handled on its own */
    if (live && bt_mono_ms() < co->handoff.deadline_ms) {
        bt_debug("coord: handoff to %s: a member, not yet in line", co->handoff.to);
        return; /* the line watch brings us back when it joins */
    }
    co_refuse_handoff(co, live ? "it did not join the line in time"
                               : "not a candidate (unknown, down or drained)");
}

static void co_lookup_handoff_member(bt_coord_t *co)
{
    char path[PATH_MAX_LEN];
    if (snprintf(path, sizeof path, "%s/%s", co->p_nodes, co->handoff.to) >= (int)sizeof path) {
        co_refuse_handoff(co, "not a node id");
        return;
    }
    zreq_t *r = co_zreq(co);
    if (r && zoo_aget(bt_zk_handle(co->zk), path, 0, on_handoff_member, r) == ZOK)
        return;
    free(r); /* no connection: the heartbeat retries at the deadline */
}

/* A --to handoff: step down only once the target is next in line, i.e.
 * every candidate that was ahead of it has yielded. Stepping down earlier
 * would race them: one that had not yet read the request would claim. */
static void on_handoff_targets(int rc, const struct String_vector *names,
                               const struct Stat *stat, const void *data)
{
    bt_coord_t *co = co_zdone(data);
    (void)stat;
    if (!co || co->role != BT_ROLE_LEADING || !co->handoff.present)
        return;
    const char *mine = strrchr(co->candidate, '/');
    unsigned long long target = 0;
    int found = 0, ahead = 0;
    for (int i = 0; rc == ZOK && i < names->count; i++)
        if (co_candidate_is(names->data[i], co->handoff.to)) {
            target = co_seq_of(names->data[i]);
            found = 1;
        }
    for (int i = 0; found && i < names->count; i++)
        if (co_seq_of(names->data[i]) < target && !(mine && !strcmp(names->data[i], mine + 1)))
            ahead++;
    if (found && ahead == 0) {
        bt_info("coord: planned handoff requested to %s", co->handoff.to);
        co_hand_off(co, "planned handoff", 1);
        return;
    }
    if (!found && rc == ZOK) {
        co_lookup_handoff_member(co);
        return;
    }
    if (found && bt_mono_ms() < co->handoff.deadline_ms) {
        bt_debug("coord: handoff to %s: %d candidate(s) still ahead of it", co->handoff.to,
                 ahead);
        return; /* the line watch brings us back when they yield */
    }
    if (found)
        co_refuse_handoff(co, "the candidates ahead of it did not yield in time");
}

void co_handle_handoff(bt_coord_t *co)
{
    if (!co->handoff.present)
        return;
    if (co->role == BT_ROLE_LEADING) {
        /* Not the epoch: our candidate may be older than the request that
         * made us leader. Our `leader` znode is always younger; until its
         * create is answered, wait (co_leader_answered comes back). */
        if (co->leader_mine != LEADER_OURS)
            return;
        if (co->handoff.czxid < co->leader_czxid) {
            co_clear_fulfilled_handoff(co); /* it made us leader */
            return;
        }
        if (co->handoff.to[0] && !strcmp(co->handoff.to, co->node)) {
            co_clear_fulfilled_handoff(co); /* "hand to me": I lead already */
            return;
        }
        if (co->handoff.to[0]) {
            /* only to a node that is in line, and only once it is next:
             * watch the line until then */
            zreq_t *r = co_zreq(co);
            if (r && zoo_awget_children2(bt_zk_handle(co->zk), co->p_election,
                                         co_handoff_line_watch, co, on_handoff_targets,
                                         r) == ZOK)
                return;
            free(r);
            return;
        }
        bt_info("coord: planned handoff requested");
        co_hand_off(co, "planned handoff", 1);
        return;
    }
    if (co->role == BT_ROLE_STANDBY && co->handoff.to[0])
        co_check_position(co); /* yields if the target is behind us */
}

static void on_drain_watch(zhandle_t *zh, int type, int state, const char *path, void *ctx);

static void on_drain_exists(int rc, const struct Stat *stat, const void *data)
{
    bt_coord_t *co = co_zdone(data);
    (void)stat;
    if (!co || (rc != ZOK && rc != ZNONODE))
        return;
    int drained = (rc == ZOK), was_drained = co->drained;
    if (drained == co->drained && co->setup_done)
        return;
    co->drained = drained;
    if (drained) {
        bt_info("coord: drained: leaving the election");
        if (co->role == BT_ROLE_LEADING || co->role == BT_ROLE_SUSPENDED)
            co_hand_off(co, "drain", 0);
        else if (co->candidate[0])
            co_delete_nodes(co);
        else
            co_set_role(co, BT_ROLE_DRAINED);
    } else if (co->setup_done) {
        if (was_drained == 1)
            bt_info("coord: undrained: rejoining the election");
        co_join(co);
    }
}

void co_watch_drain(bt_coord_t *co)
{
    zreq_t *r = co_zreq(co);
    if (r && zoo_awexists(bt_zk_handle(co->zk), co->p_drain, on_drain_watch, co,
                               on_drain_exists, r) == ZOK)
        return;
    free(r);
}

static void on_drain_watch(zhandle_t *zh, int type, int state, const char *path, void *ctx)
{
    bt_coord_t *co = co_watch_owner(zh, type, ctx);
    (void)state;
    (void)path;
    if (co)
        co_watch_drain(co);
}
