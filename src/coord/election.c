/* Leader election, membership, the fence and stepping down (operator
 * requests are in control.c). See include/baton/coord.h for the layout and
 * docs/failover.md for the argument.
 *
 * Everything is asynchronous (libzookeeper_st has no synchronous calls):
 * each zoo_a* call carries a small request that remembers the session
 * generation it was issued in, so a completion that arrives after the
 * session was replaced is recognised and dropped. */
#include "baton/coord.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "baton/clock.h"
#include "baton/log.h"
#include "coord/coord_int.h"
#include "util/container.h"

static void co_verify_leadership(bt_coord_t *co);

const char *bt_role_name(bt_role_t role)
{
    static const char *names[] = {"starting", "standby", "claiming", "leading",
                                  "suspended", "stepping_down", "drained", "stopped"};
    return (unsigned)role < sizeof names / sizeof names[0] ? names[role] : "unknown";
}

/* ------------------------------------------------------------ helpers */

zreq_t *co_zreq(bt_coord_t *co)
{
    zreq_t *r = malloc(sizeof *r);
    if (r) {
        r->co = co;
        r->gen = co->gen;
    }
    return r;
}

/* A watcher's owner, or NULL for what is not a node event of the current
 * session. Watchers get the coordinator itself as context, never an
 * allocation: the C client calls every registered watcher on session
 * events too, and never calls them on close, so a per-watch allocation would
 * be freed twice or leaked. Session events are handled by co_on_session. */
bt_coord_t *co_watch_owner(zhandle_t *zh, int type, void *ctx)
{
    bt_coord_t *co = ctx;
    if (type == ZOO_SESSION_EVENT || !co->zk || zh != bt_zk_handle(co->zk))
        return NULL;
    return co;
}

/* Unpacks a completion's request; NULL when it belongs to an old session. */
bt_coord_t *co_zdone(const void *data)
{
    zreq_t *r = (zreq_t *)data;
    bt_coord_t *co = r->co;
    unsigned gen = r->gen;
    free(r);
    return co && gen == co->gen ? co : NULL;
}

static void co_publish_member(bt_coord_t *co);

void co_set_role(bt_coord_t *co, bt_role_t role)
{
    if (co->role == role)
        return;
    bt_info("coord: %s -> %s%s", bt_role_name(co->role), bt_role_name(role),
            role == BT_ROLE_LEADING ? " (dispatching)" : "");
    if (co->role == BT_ROLE_LEADING)
        co->last_stop_us = bt_now_us(); /* stopped dispatching (failover bench) */
    co->role = role;
    co->role_since_ms = bt_now_ms();
    if (role != BT_ROLE_LEADING && role != BT_ROLE_SUSPENDED && role != BT_ROLE_STEPPING_DOWN) {
        co->epoch = 0;
        co->fence_committed = 0;
        co->leader_since_us = 0;
    }
    co_publish_member(co);
    co_live_update(co);
    if (co->opts.on_role)
        co->opts.on_role(co, role, co->epoch, co->opts.arg);
}

void co_retry_later(bt_coord_t *co, double seconds)
{
    ev_timer_stop(co->loop, &co->retry);
    ev_timer_set(&co->retry, seconds, 0.);
    ev_timer_start(co->loop, &co->retry);
}

unsigned long long co_seq_of(const char *name)
{
    size_t n = strlen(name);
    return n >= 10 ? strtoull(name + n - 10, NULL, 10) : 0;
}

/* The zone inside a candidate name, into buf ("" if malformed). */
void co_candidate_zone(const char *name, char *buf, size_t len)
{
    const char *p = strchr(name + 2, '_');          /* before node */
    const char *z = p ? strchr(p + 1, '_') : NULL;  /* before zone */
    const char *e = z ? strchr(z + 1, '_') : NULL;  /* before seq */
    if (!e || (size_t)(e - z - 1) >= len) {
        buf[0] = '\0';
        return;
    }
    snprintf(buf, len, "%.*s", (int)(e - z - 1), z + 1);
}

static int co_cmp_seq(const void *a, const void *b)
{
    unsigned long long x = co_seq_of(*(char *const *)a), y = co_seq_of(*(char *const *)b);
    return x < y ? -1 : x > y;
}

/* The candidates in line order (a copy of the pointers, to free), or NULL. */
char **co_sorted_line(const struct String_vector *names)
{
    char **sorted = malloc(sizeof(char *) * (size_t)(names->count ? names->count : 1));
    if (!sorted)
        return NULL;
    memcpy(sorted, names->data, sizeof(char *) * (size_t)names->count);
    qsort(sorted, (size_t)names->count, sizeof *sorted, co_cmp_seq);
    return sorted;
}

/* Candidate names: c_<session>_<node>_<zone>_<seq>; node ids and zones
 * hold no '_' (checked in bt_coord_new). This one: is it <node>'s? */
int co_candidate_is(const char *name, const char *node)
{
    const char *p = strchr(name + 2, '_');
    size_t n = strlen(node);
    return p && !strncmp(p + 1, node, n) && p[1 + n] == '_';
}

/* ------------------------------------------------------------ membership */

static void on_member_set(int rc, const struct Stat *stat, const void *data)
{
    (void)stat;
    bt_coord_t *co = co_zdone(data);
    if (co && rc != ZOK)
        bt_debug("coord: membership update: %s", zerror(rc));
}

static char *co_member_json(bt_coord_t *co)
{
    json_t *o = json_pack("{s:s, s:s, s:s, s:s?, s:s, s:I, s:I}", "node", co->node, "zone",
                          co->zone, "version", co->version, "http", co->http, "state",
                          bt_role_name(co->role), "epoch", (json_int_t)co->epoch, "since_ms",
                          (json_int_t)co->role_since_ms);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return s;
}

static void co_publish_now(bt_coord_t *co)
{
    if (!co->setup_done || !bt_zk_connected(co->zk))
        return;
    char *js = co_member_json(co);
    zreq_t *r = co_zreq(co);
    if (js && r && zoo_aset(bt_zk_handle(co->zk), co->p_member, js, (int)strlen(js), -1,
                            on_member_set, r) == ZOK)
        r = NULL;
    free(r);
    free(js);
}

static void co_publish_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    co_publish_now(container_of(w, bt_coord_t, publish));
}

/* Membership is for operators (batonctl status), so its writes wait a
 * little and carry only the latest state. A failover passes through
 * stepping_down and claiming within milliseconds, and a session's requests
 * are served in order: written at once, each would put a ZooKeeper write
 * ahead of the handoff's delete or the claim's create. */
#define PUBLISH_DELAY_S 0.02
static void co_publish_member(bt_coord_t *co)
{
    if (!ev_is_active(&co->publish)) {
        ev_timer_set(&co->publish, PUBLISH_DELAY_S, 0.);
        ev_timer_start(co->loop, &co->publish);
    }
}

/* ------------------------------------------------------------ leading */

static void on_fence_acquired(bt_err_t err, const char *detail, void *arg);

static void co_fence(bt_coord_t *co, const char *reason)
{
    zreq_t *r;
    if (!bt_zk_known_good(co->zk)) {
        co_retry_later(co, 0.1);
        return;
    }
    if (!(r = co_zreq(co)))
        return;
    bt_err_t err = bt_store_fence_acquire(co->store, co->epoch, co->zone, reason,
                                          on_fence_acquired, r);
    co->claim_fence_inflight = err == BT_OK;
    if (err != BT_OK) {
        free(r);
        bt_warn("coord: fence write not sent (%s); retrying", bt_strerror(err));
        co_retry_later(co, 0.2);
    }
}

static void co_lead(bt_coord_t *co);

static void on_fence_acquired(bt_err_t err, const char *detail, void *arg)
{
    ((zreq_t *)arg)->co->claim_fence_inflight = 0; /* whichever session sent it */
    bt_coord_t *co = co_zdone(arg);
    if (!co || co->role != BT_ROLE_CLAIMING)
        return;
    if (err == BT_OK) {
        co_lead(co);
        return;
    }
    if (err == BT_E_STALE_EPOCH) {
        /* ZooKeeper's zxid is below the recorded epoch: the ensemble was
         * rebuilt from scratch. Never lead with a smaller epoch. */
        bt_error("coord: PostgreSQL's fence holds an epoch newer than %" PRIu64
                 " from ZooKeeper (was the ensemble reset?); an operator must "
                 "reset the fence row. Leaving the election.",
                 co->epoch);
        co->pause_until_ms = bt_mono_ms() + 10000;
        co_step_down(co, "stale epoch", 0);
        return;
    }
    bt_warn("coord: fence write failed (%s%s%s); retrying", bt_strerror(err), detail ? ": " : "",
            detail ? detail : "");
    co_retry_later(co, 0.2);
}

static void on_heartbeat(bt_err_t err, const char *detail, void *arg)
{
    bt_coord_t *co = co_zdone(arg);
    if (!co)
        return;
    co->heartbeat_inflight = 0;
    if (err == BT_E_FENCED)
        bt_coord_fenced(co, "heartbeat");
    else if (err != BT_OK && err != BT_E_CANCELLED)
        bt_warn("coord: heartbeat: %s%s%s", bt_strerror(err), detail ? ": " : "", detail ? detail : "");
}

/* Every loop turn, before any I/O callback (EV_MAXPRI): a leader whose
 * session is no longer known good by the monotonic clock pauses now, not
 * at the next heartbeat. After a SIGSTOP, a frozen VM or a long GC every
 * watcher is due at once, and curl's would go on writing a request our
 * successor may already have looked for; the role change closes the gate
 * for side effects first (http.h), which cuts off any half-written one. */
static void co_pause_check_cb(struct ev_loop *loop, ev_check *w, int revents)
{
    bt_coord_t *co = container_of(w, bt_coord_t, pause_check);
    int64_t now = bt_mono_ms(), gap = co->last_turn_ms ? now - co->last_turn_ms : 0;
    (void)loop;
    (void)revents;
    co->last_turn_ms = now;
    if (co->role != BT_ROLE_LEADING)
        return;
    if (bt_zk_known_good(co->zk)) {
        co_live_check(co); /* and the liveness lock's lease */
        return;
    }
    bt_warn("coord: ZooKeeper not known good (last response %" PRId64 " ms ago, the loop "
            "stood still for %" PRId64 " ms): pausing",
            now - bt_zk_last_recv_ms(co->zk), gap);
    co_set_role(co, BT_ROLE_SUSPENDED);
}

/* Every heartbeat period while leading: the known-good rule, then a fenced
 * write. The known-good check runs even without a ZooKeeper event: a lost
 * connection may take seconds to be reported, and a resumed process must not
 * act on its stale belief. */
static void co_heartbeat_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    bt_coord_t *co = container_of(w, bt_coord_t, heartbeat);
    (void)loop;
    (void)revents;
    if (co->role == BT_ROLE_LEADING && !bt_zk_known_good(co->zk)) {
        bt_warn("coord: ZooKeeper not known good (last response %" PRId64 " ms ago): pausing",
                bt_mono_ms() - bt_zk_last_recv_ms(co->zk));
        co_set_role(co, BT_ROLE_SUSPENDED);
        return;
    }
    if (co->role == BT_ROLE_SUSPENDED && bt_zk_known_good(co->zk)) {
        co_verify_leadership(co); /* stale but never disconnected */
        return;
    }
    if (co->role != BT_ROLE_LEADING || co->heartbeat_inflight)
        return;
    if (++co->beats % 4 == 0)
        co_check_zone_preference(co);
    if (co->handoff.present && co->handoff.to[0] && bt_mono_ms() >= co->handoff.deadline_ms)
        co_handle_handoff(co); /* a --to handoff whose line never moved: refuse it */
    zreq_t *r = co_zreq(co);
    if (r && bt_store_leader_heartbeat(co->store, co->epoch, on_heartbeat, r) == BT_OK) {
        co->heartbeat_inflight = 1;
        return;
    }
    free(r);
}

/* ------------------------------------------------------------ claiming */

static void co_claim(bt_coord_t *co);

static void on_leader_watch(zhandle_t *zh, int type, int state, const char *path, void *ctx)
{
    bt_coord_t *co = co_watch_owner(zh, type, ctx);
    (void)state;
    (void)path;
    if (co && type == ZOO_DELETED_EVENT && co->role == BT_ROLE_STANDBY)
        co_check_position(co);
}

/* Our create of `leader` (or the look that followed it) is answered. A
 * step-down that was waiting for it deletes our nodes now; a leader
 * handles the handoff request it deferred (co_handle_handoff). */
static void co_leader_answered(bt_coord_t *co)
{
    co->leader_create_inflight = 0;
    if (co->delete_after_create) {
        co->delete_after_create = 0;
        co_delete_nodes(co);
        return;
    }
    if (co->role == BT_ROLE_LEADING && co->leader_mine == LEADER_OURS && co->handoff.present)
        co_handle_handoff(co);
}

static void co_create_leader(bt_coord_t *co);

/* `leader` exists. Ours (a create whose reply was lost), or another
 * session's, whose holder is not gone yet although its candidate is (or an
 * outsider's, without ACLs): then stop and wait for it, keeping our place.
 * Our fence bump, done already, refuses the holder's writes meanwhile. */
static void on_leader_exists(int rc, const struct Stat *stat, const void *data)
{
    bt_coord_t *co = co_zdone(data);
    if (!co)
        return;
    int ours = rc == ZOK && stat->ephemeralOwner == bt_zk_session_id(co->zk);
    if (rc == ZOK || rc == ZNONODE)
        co->leader_mine = ours ? LEADER_OURS : LEADER_NOT_OURS;
    if (ours)
        co->leader_czxid = stat->czxid;
    int claiming = co->role == BT_ROLE_CLAIMING, leading = co->role == BT_ROLE_LEADING;
    if (co->delete_after_create || (!claiming && !leading) || ours) {
        if (ours)
            bt_info("coord: found our own leader znode (reply was lost)");
        co_leader_answered(co);
        return;
    }
    co->leader_create_inflight = 0;
    if (rc == ZNONODE) { /* gone in between: create it again */
        co_create_leader(co);
        return;
    }
    if (rc != ZOK) {
        if (claiming)
            co_retry_later(co, 0.2);
        return; /* leading: the reconnect verifies (co_verify_leadership) */
    }
    bt_warn("coord: leader znode held by session 0x%llx: %s until it goes",
            (unsigned long long)stat->ephemeralOwner, leading ? "pausing" : "waiting");
    ev_timer_stop(co->loop, &co->heartbeat);
    co_set_role(co, BT_ROLE_STANDBY); /* the watch set above brings us back */
}

static void on_leader_created(int rc, const char *value, const struct Stat *stat, const void *data)
{
    bt_coord_t *co = co_zdone(data);
    (void)value;
    if (!co)
        return;
    int maybe = rc == ZCONNECTIONLOSS || rc == ZOPERATIONTIMEOUT; /* may have happened */
    co->leader_mine = rc == ZOK ? LEADER_OURS : maybe ? LEADER_UNKNOWN : LEADER_NOT_OURS;
    if (rc == ZOK) {
        co->leader_czxid = stat->czxid;
    } else if (rc == ZNODEEXISTS) {
        zreq_t *r = co_zreq(co);
        if (r && zoo_awexists(bt_zk_handle(co->zk), co->p_leader, on_leader_watch, co,
                              on_leader_exists, r) == ZOK)
            return; /* still in flight */
        free(r);
        if (co->role == BT_ROLE_CLAIMING)
            co_retry_later(co, 0.2);
    } else if (co->role == BT_ROLE_CLAIMING) {
        /* connection loss: the create may have happened; the reconnect
         * path re-runs the claim, which finds it (protection) */
        bt_warn("coord: creating leader znode: %s", zerror(rc));
        co_retry_later(co, 0.2);
    } else if (co->role == BT_ROLE_LEADING && bt_zk_connected(co->zk)) {
        bt_warn("coord: creating leader znode: %s", zerror(rc));
        co_leader_answered(co);
        co_step_down(co, "cannot create the leader znode", 1);
        return;
    }
    /* leading and disconnected: suspended, and the reconnect verifies */
    co_leader_answered(co);
}

/* The fence holds our epoch: lead. Not waiting for our `leader` create: we
 * are first in line, so every earlier leader's candidate is gone, and with
 * it its `leader` (both go in one transaction: our multi-delete, or the
 * session's expiry). The create is the lock against anything else; should
 * it fail, we stop and wait (on_leader_exists), and our fence bump has already
 * refused the holder's writes. Saves a ZooKeeper write on every failover,
 * the slowest leg (docs/failover.md). */
static void co_lead(bt_coord_t *co)
{
    co->fence_committed = 1;
    co->leader_since_us = bt_now_us();
    bt_info("coord: leading with epoch %" PRIu64, co->epoch);
    ev_timer_again(co->loop, &co->heartbeat);
    if (!bt_zk_connected(co->zk)) {
        /* the connection dropped while the fence was in flight: that
         * session event has passed, so start suspended; the reconnect
         * verifies `leader` and handles the request (on_resume_check) */
        co_set_role(co, BT_ROLE_SUSPENDED);
        return;
    }
    co_set_role(co, BT_ROLE_LEADING);
    co_clear_fulfilled_handoff(co);
}

static void co_create_leader(bt_coord_t *co)
{
    json_t *o = json_pack("{s:s, s:s, s:I}", "node", co->node, "zone", co->zone, "at_ms",
                          (json_int_t)bt_now_ms());
    char *js = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    zreq_t *r = co_zreq(co);
    if (js && r &&
        zoo_acreate2(bt_zk_handle(co->zk), co->p_leader, js, (int)strlen(js), bt_zk_acl(co->zk),
                     ZOO_EPHEMERAL, on_leader_created, r) == ZOK) {
        co->leader_mine = LEADER_UNKNOWN; /* until answered */
        co->leader_create_inflight = 1;
        r = NULL;
    } else if (co->role == BT_ROLE_CLAIMING) {
        co_retry_later(co, 0.2);
    }
    free(r);
    free(js);
}

/* First in line: create `leader` and write the fence, in parallel, and
 * lead once the fence has committed (co_lead). A fence bump that
 * turns out premature (someone else still holds `leader`) can only depose
 * that holder, which the fence makes safe. */
static void co_claim(bt_coord_t *co)
{
    if (co->leaving)
        return; /* shutting down: the next node claims */
    co_set_role(co, BT_ROLE_CLAIMING);
    co->epoch = (uint64_t)co->cand_czxid;
    if (!co->claim_fence_inflight)
        co_fence(co, co->handoff.present ? "handoff" : "election");
    if (!co->leader_create_inflight && co->leader_mine != LEADER_OURS)
        co_create_leader(co);
}

/* ------------------------------------------------------------ the line */

/* A standby whose predecessor is not first lists the line again when a
 * leader is created: the predecessor may be first now, and then its
 * deletion (the next failover) needs no listing (on_pred_watch). Off the
 * failover's critical path: the new leader has claimed by then. The watch
 * is usually set while the old leader's znode exists, so it fires first on
 * that deletion: set it again, to see the creation. */
static void co_watch_leader_for_line(bt_coord_t *co, int rearm);

static void on_line_leader_watch(zhandle_t *zh, int type, int state, const char *path,
                                 void *ctx)
{
    bt_coord_t *co = co_watch_owner(zh, type, ctx);
    (void)state;
    (void)path;
    if (!co || co->role != BT_ROLE_STANDBY || co->pred_first[0])
        return;
    if (type == ZOO_CREATED_EVENT)
        co_check_position(co);
    else if (type == ZOO_DELETED_EVENT)
        co_watch_leader_for_line(co, 1);
}

static void on_line_leader_set(int rc, const struct Stat *stat, const void *data)
{
    (void)stat;
    bt_coord_t *co = co_zdone(data);
    /* set again after a deletion and a new leader is there already */
    if (co && rc == ZOK && co->role == BT_ROLE_STANDBY && !co->pred_first[0])
        co_check_position(co);
}

static void on_line_leader_armed(int rc, const struct Stat *stat, const void *data)
{
    (void)rc;
    (void)stat;
    co_zdone(data);
}

static void co_watch_leader_for_line(bt_coord_t *co, int rearm)
{
    zreq_t *r = co_zreq(co);
    if (r && zoo_awexists(bt_zk_handle(co->zk), co->p_leader, on_line_leader_watch, co,
                          rearm ? on_line_leader_set : on_line_leader_armed, r) == ZOK)
        return;
    free(r);
}

/* Our predecessor is gone. If it was first in line we are first now:
 * sequence numbers only grow, so nobody can have joined ahead of us, and
 * listing the line again would cost the failover a round trip. Anything
 * unusual (a --to handoff pending, a requeue, a drain) takes the listing. */
static void on_pred_watch(zhandle_t *zh, int type, int state, const char *path, void *ctx)
{
    bt_coord_t *co = co_watch_owner(zh, type, ctx);
    (void)state;
    if (!co || type != ZOO_DELETED_EVENT || co->role != BT_ROLE_STANDBY)
        return;
    int first = path && co->pred_first[0] && !strcmp(path, co->pred_first);
    co->pred_first[0] = '\0';
    co_live_update(co);
    if (first && co->candidate[0] && !co->requeuing && !co->leaving && !co->drained &&
        !(co->handoff.present && co->handoff.to[0]) && bt_mono_ms() >= co->pause_until_ms) {
        co_claim(co);
        return;
    }
    co_check_position(co);
}

static void on_pred_exists(int rc, const struct Stat *stat, const void *data)
{
    bt_coord_t *co = co_zdone(data);
    (void)stat;
    if (co && rc == ZNONODE && co->role == BT_ROLE_STANDBY)
        co_check_position(co); /* gone between list and watch */
}

static void on_requeued(int rc, const void *data)
{
    bt_coord_t *co = co_zdone(data);
    if (!co)
        return;
    co->requeuing = 0;
    if (rc != ZOK && rc != ZNONODE)
        bt_warn("coord: leaving the line: %s", zerror(rc));
    co->candidate[0] = '\0';
    co_join(co);
}

/* Give up our place (for a --to handoff to a node behind us) and rejoin. */
static void co_requeue(bt_coord_t *co)
{
    zreq_t *r = co_zreq(co);
    bt_info("coord: yielding my place to %s", co->handoff.to);
    /* Two position checks in flight (a predecessor watch and the handoff
     * watch) must not both requeue: that would leave two candidates. */
    co->requeuing = 1;
    co->pred_first[0] = '\0';
    if (r && zoo_adelete(bt_zk_handle(co->zk), co->candidate, -1, on_requeued, r) == ZOK)
        return;
    co->requeuing = 0;
    free(r);
    co_retry_later(co, 0.2);
}

static void on_children(int rc, const struct String_vector *names, const struct Stat *stat,
                        const void *data)
{
    bt_coord_t *co = co_zdone(data);
    (void)stat;
    /* a listing answered after shutdown began must not start a claim: its
     * fence write would outlive us (freed before the store that answers it) */
    if (!co || co->requeuing || co->leaving || co->role == BT_ROLE_LEADING ||
        co->role == BT_ROLE_SUSPENDED || co->role == BT_ROLE_CLAIMING ||
        co->role == BT_ROLE_STEPPING_DOWN || co->role == BT_ROLE_STOPPED)
        return;
    co->pred_first[0] = '\0';
    if (rc != ZOK) {
        co_retry_later(co, 0.2);
        return;
    }
    char **sorted = co_sorted_line(names);
    if (!sorted)
        return;

    const char *mine = strrchr(co->candidate, '/');
    int me = -1, target = -1;
    for (int i = 0; i < names->count; i++) {
        if (mine && !strcmp(sorted[i], mine + 1))
            me = i;
        if (co->handoff.present && co->handoff.to[0] && target < 0 &&
            co_candidate_is(sorted[i], co->handoff.to))
            target = i;
    }
    if (me < 0) {
        /* our candidate is gone (deleted by an operator?): join again */
        free(sorted);
        co->candidate[0] = '\0';
        co_join(co);
        return;
    }
    if (target > me) { /* the handoff's target is behind us: let it pass */
        free(sorted);
        co_requeue(co);
        return;
    }
    co_set_role(co, BT_ROLE_STANDBY);
    if (me == 0) {
        free(sorted);
        co_claim(co);
        return;
    }
    /* watch only the one ahead of us: no herd on every change */
    char pred[PATH_MAX_LEN];
    int plen = snprintf(pred, sizeof pred, "%s/%s", co->p_election, sorted[me - 1]);
    free(sorted);
    if (plen >= (int)sizeof pred)
        return;
    if (me == 1)
        memcpy(co->pred_first, pred, (size_t)plen + 1);
    co_live_update(co); /* first standby: wait for the leader's liveness lock */
    if (me > 1)
        co_watch_leader_for_line(co, 0);
    zreq_t *r = co_zreq(co);
    if (r && zoo_awexists(bt_zk_handle(co->zk), pred, on_pred_watch, co, on_pred_exists, r) == ZOK)
        return;
    free(r);
    co_retry_later(co, 0.2);
}

void co_check_position(bt_coord_t *co)
{
    zreq_t *r = co_zreq(co);
    if (!co->candidate[0] || co->leaving || co->drained || co->requeuing) {
        free(r);
        return;
    }
    /* while a --to request is pending, a standby watches the whole line,
     * not just its predecessor: the target may join it (back from yielding
     * its place for an earlier handoff) behind us, and we must then yield */
    watcher_fn w = co->handoff.present && co->handoff.to[0] ? co_handoff_line_watch : NULL;
    if (r && zoo_awget_children2(bt_zk_handle(co->zk), co->p_election, w, co, on_children, r) ==
                 ZOK)
        return;
    free(r);
    co_retry_later(co, 0.2);
}

static void on_candidate_created(int rc, const char *value, const struct Stat *stat,
                                 const void *data)
{
    bt_coord_t *co = co_zdone(data);
    if (!co)
        return;
    co->joining = 0;
    if (rc != ZOK) {
        /* On connection loss the create may have happened; the next join
         * looks for our per-session prefix before creating again. */
        bt_warn("coord: creating candidate: %s", zerror(rc));
        co_retry_later(co, 0.2);
        return;
    }
    snprintf(co->candidate, sizeof co->candidate, "%s", value);
    co->cand_czxid = stat->czxid;
    bt_info("coord: candidate %s", co->candidate);
    co_check_position(co);
}

static void on_adopted_candidate(int rc, const struct Stat *stat, const void *data)
{
    bt_coord_t *co = co_zdone(data);
    if (!co)
        return;
    if (rc != ZOK) {
        co->candidate[0] = '\0';
        co_retry_later(co, 0.2);
        return;
    }
    co->cand_czxid = stat->czxid;
    co_check_position(co);
}

/* Protection against "create succeeded, reply lost": our candidate names
 * carry this session's id, so one that exists is found before creating. */
static void on_join_children(int rc, const struct String_vector *names, const struct Stat *stat,
                             const void *data)
{
    bt_coord_t *co = co_zdone(data);
    char path[PATH_MAX_LEN];
    (void)stat;
    if (!co)
        return;
    co->joining = 0;
    if (co->leaving || co->drained)
        return;
    if (rc != ZOK) {
        co_retry_later(co, 0.2);
        return;
    }
    for (int i = 0; i < names->count; i++) {
        if (!strncmp(names->data[i], co->prefix, strlen(co->prefix))) {
            if (snprintf(co->candidate, sizeof co->candidate, "%s/%s", co->p_election,
                         names->data[i]) >= (int)sizeof co->candidate)
                continue;
            bt_info("coord: found our candidate %s", co->candidate);
            zreq_t *a = co_zreq(co); /* its czxid is our epoch if we lead */
            if (a && zoo_aexists(bt_zk_handle(co->zk), co->candidate, 0, on_adopted_candidate, a) == ZOK)
                return;
            free(a);
            co->candidate[0] = '\0';
            co_retry_later(co, 0.2);
            return;
        }
    }
    zreq_t *r = NULL;
    if (snprintf(path, sizeof path, "%s/%s", co->p_election, co->prefix) >= (int)sizeof path)
        return; /* cannot happen: lengths are checked in bt_coord_new */
    r = co_zreq(co);
    if (r && zoo_acreate2(bt_zk_handle(co->zk), path, co->node, (int)strlen(co->node),
                          bt_zk_acl(co->zk), ZOO_EPHEMERAL_SEQUENTIAL, on_candidate_created,
                          r) == ZOK) {
        co->joining = 1;
        return;
    }
    free(r);
    co_retry_later(co, 0.2);
}

void co_join(bt_coord_t *co)
{
    if (co->leaving)
        return;
    if (bt_mono_ms() < co->pause_until_ms) {
        co_set_role(co, BT_ROLE_STANDBY);
        co_retry_later(co, (double)(co->pause_until_ms - bt_mono_ms()) / 1000.0);
        return;
    }
    if (co->drained) {
        co_set_role(co, BT_ROLE_DRAINED);
        return;
    }
    if (co->candidate[0]) {
        co_check_position(co);
        return;
    }
    co_set_role(co, BT_ROLE_STANDBY);
    if (co->joining)
        return; /* two joins (a rejoin and a reconnect) would both create */
    zreq_t *r = co_zreq(co);
    if (r && zoo_aget_children2(bt_zk_handle(co->zk), co->p_election, 0, on_join_children, r) ==
                 ZOK) {
        co->joining = 1;
        return;
    }
    free(r);
    co_retry_later(co, 0.2);
}

/* ------------------------------------------------------------ stepping down */

static void on_nodes_deleted(int rc, const void *data)
{
    bt_coord_t *co = co_zdone(data);
    if (!co)
        return;
    if (rc != ZOK && rc != ZNONODE)
        bt_warn("coord: deleting our znodes: %s (they go with the session)", zerror(rc));
    co->candidate[0] = '\0';
    co->leader_mine = LEADER_NOT_OURS;
    if (co->shutdown_done) {
        void (*done)(void *) = co->shutdown_done;
        co->shutdown_done = NULL;
        co_set_role(co, BT_ROLE_STOPPED);
        done(co->shutdown_arg);
        return;
    }
    co_set_role(co, co->drained ? BT_ROLE_DRAINED : BT_ROLE_STANDBY);
    if (!co->leaving)
        co_join(co);
}

/* Deletes `leader` (if ours) and our candidate in one transaction, so the
 * next node sees both go at once. */
void co_delete_nodes(bt_coord_t *co)
{
    zoo_op_t ops[2];
    int n = 0;
    if (co->leader_create_inflight && bt_zk_connected(co->zk)) {
        /* a session's requests are served in order, but "delete `leader`
         * if the create made it ours" cannot be said in one multi */
        co->delete_after_create = 1;
        return;
    }
    if (co->leader_mine != LEADER_NOT_OURS)
        zoo_delete_op_init(&ops[n++], co->p_leader, -1);
    if (co->candidate[0])
        zoo_delete_op_init(&ops[n++], co->candidate, -1);
    if (n == 0 || !bt_zk_connected(co->zk)) {
        /* nothing to delete, or no connection: the session's expiry
         * removes them; the next leader waits for that */
        zreq_t *r = co_zreq(co);
        on_nodes_deleted(ZOK, r);
        return;
    }
    /* zreq_t first: co_zdone() frees the whole request, results included,
     * which must live until the completion */
    multi_req_t *m = calloc(1, sizeof *m);
    if (!m) {
        on_nodes_deleted(ZCONNECTIONLOSS, co_zreq(co));
        return;
    }
    m->z.co = co;
    m->z.gen = co->gen;
    if (zoo_amulti(bt_zk_handle(co->zk), n, ops, m->results, on_nodes_deleted, m) != ZOK)
        on_nodes_deleted(ZCONNECTIONLOSS, m);
}

static void on_released(bt_err_t err, const char *detail, void *arg)
{
    ((zreq_t *)arg)->co->release_inflight = 0; /* whichever session sent it */
    bt_coord_t *co = co_zdone(arg);
    if (err == BT_OK)
        bt_info("coord: released epoch %" PRIu64 " cleanly: the successor trusts our records",
                co ? co->epoch : 0);
    else
        bt_warn("coord: recording the release: %s%s%s (the successor waits out the transit "
                "bound instead)",
                bt_strerror(err), detail ? ": " : "", detail ? detail : "");
    if (co && co->role == BT_ROLE_STEPPING_DOWN && ev_is_active(&co->drain_wait) &&
        co->shutdown_done) {
        ev_timer_stop(co->loop, &co->drain_wait);
        co_delete_nodes(co);
    }
}

/* Every write is in: say we released cleanly (when the calls vouched for
 * it), and delete our znodes. The release goes to PostgreSQL while the
 * delete goes to ZooKeeper: should the successor's fence bump come first,
 * it sees no release and only waits longer, so a handoff does not wait for
 * it. An exit does (it would cancel it), bounded by drain_wait. */
static void co_release_and_delete(bt_coord_t *co)
{
    if (co->release_clean) {
        co->release_clean = 0;
        zreq_t *r = co_zreq(co);
        if (r && bt_store_fence_release(co->store, co->epoch, on_released, r) == BT_OK) {
            co->release_inflight = 1;
            if (co->shutdown_done) {
                ev_timer_stop(co->loop, &co->drain_wait);
                ev_timer_set(&co->drain_wait, 2.0, 0.);
                ev_timer_start(co->loop, &co->drain_wait);
                return;
            }
        } else {
            free(r);
        }
    }
    co_delete_nodes(co);
}

/* The store has nothing in flight any more: hand over now. */
static void co_on_pg_idle(void *arg)
{
    bt_coord_t *co = arg;
    if (co->role != BT_ROLE_STEPPING_DOWN || !ev_is_active(&co->drain_wait))
        return;
    ev_timer_stop(co->loop, &co->drain_wait);
    co_release_and_delete(co);
}

/* The bound on waiting for in-flight writes (a stalled PostgreSQL must not
 * hold the handoff), or for the release of an exit: delete anyway. */
static void co_drain_wait_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    bt_coord_t *co = container_of(w, bt_coord_t, drain_wait);
    (void)loop;
    (void)revents;
    bt_store_when_idle(co->store, NULL, NULL);
    ev_timer_stop(co->loop, &co->drain_wait);
    co->release_clean = 0; /* a write never answered: nothing to vouch for */
    co_delete_nodes(co);
}

/* The calls are done (or there were none to wait for): let the writes in
 * flight finish, then hand over. */
static void co_after_calls(bt_coord_t *co)
{
    co->shutdown_deadline_ms = bt_mono_ms() + 2000;
    if (bt_store_pending(co->store) == 0) {
        co_release_and_delete(co); /* nothing in flight: hand over now */
        return;
    }
    /* delete as soon as the last in-flight write is answered (no polling:
     * every millisecond here is a millisecond without a dispatcher) */
    bt_store_when_idle(co->store, co_on_pg_idle, co);
    ev_timer_stop(co->loop, &co->drain_wait);
    ev_timer_set(&co->drain_wait, 2.0, 0.);
    ev_timer_start(co->loop, &co->drain_wait);
}

/* Whether we rejoin afterwards follows from the state: not when drained or
 * shutting down, later when paused; `rejoin` is for the log. A planned one
 * lets the node's remote calls finish first: a fence stops writes, not
 * calls, and a call answered after we let go would land after our
 * successor looked (docs/failover.md, Rule 4). */
static void on_taken_over_noted(bt_err_t err, const char *detail, void *arg)
{
    (void)detail;
    (void)arg;
    if (err != BT_OK && err != BT_E_CANCELLED)
        bt_warn("coord: recording the takeover: %s", bt_strerror(err));
}

/* Leaving after our liveness lock's connection broke, never regained: a
 * standby took over while we were alive (its claim fenced us, or deleted
 * our `leader`). A false takeover: counted, logged and recorded as an
 * event (unfenced: our epoch is not current any more). */
static void co_note_taken_over(bt_coord_t *co)
{
    char detail[160];
    co->live.taken_over_alive++;
    bt_warn("coord: taken over while alive (the liveness lock's connection broke and a "
            "standby claimed)");
    snprintf(detail, sizeof detail, "{\"node\": \"%s\", \"epoch\": %" PRIu64 "}", co->node,
             co->epoch);
    if (bt_store_event_note(co->store, co->epoch, "taken_over_alive", detail,
                            on_taken_over_noted, NULL) != BT_OK)
        bt_warn("coord: recording the takeover: cannot send it");
}

static void co_leave(bt_coord_t *co, const char *reason, int rejoin, int planned)
{
    int led = co->role == BT_ROLE_LEADING || co->role == BT_ROLE_SUSPENDED;
    if (co->live.lost && (led || co->role == BT_ROLE_CLAIMING))
        co_note_taken_over(co);
    bt_info("coord: stepping down: %s%s", reason, rejoin ? "" : " (not rejoining now)");
    ev_timer_stop(co->loop, &co->heartbeat);
    co->release_clean = 0;
    co->awaiting_calls = planned && led && co->opts.drain_calls;
    co_set_role(co, BT_ROLE_STEPPING_DOWN); /* the owner starts draining */
    if (!co->awaiting_calls)
        co_after_calls(co);
}

void co_step_down(bt_coord_t *co, const char *reason, int rejoin)
{
    co_leave(co, reason, rejoin, 0);
}

void co_hand_off(bt_coord_t *co, const char *reason, int rejoin)
{
    co_leave(co, reason, rejoin, 1);
}

int bt_coord_handing_off(const bt_coord_t *co)
{
    return co->role == BT_ROLE_STEPPING_DOWN && co->awaiting_calls;
}

void bt_coord_calls_drained(bt_coord_t *co, int clean)
{
    if (!bt_coord_handing_off(co))
        return;
    co->awaiting_calls = 0;
    co->release_clean = clean;
    bt_info("coord: calls finished%s", clean ? ", every outcome accounted for" : "");
    co_after_calls(co);
}

void bt_coord_fenced(bt_coord_t *co, const char *what)
{
    if (co->role == BT_ROLE_STEPPING_DOWN && co->awaiting_calls) {
        /* handing off, and someone leads already: nothing to wait for */
        bt_warn("coord: %s was fenced while handing off", what);
        bt_coord_calls_drained(co, 0);
        return;
    }
    if (co->role != BT_ROLE_LEADING && co->role != BT_ROLE_SUSPENDED)
        return;
    bt_warn("coord: %s was fenced: a newer leader exists", what);
    co_step_down(co, "fenced", 1);
}

/* ------------------------------------------------------------ fast takeover */

/* Leading, the liveness lock's connection broke: a standby may be taking
 * over right now. Pause (the gate closes: nothing more is sent) until the
 * lock is ours again (co_live_regained) or another's (co_live_taken_over). */
void co_live_lost(bt_coord_t *co)
{
    if (co->role == BT_ROLE_LEADING)
        co_set_role(co, BT_ROLE_SUSPENDED);
}

void co_live_regained(bt_coord_t *co)
{
    co->live.lost = 0;
    bt_info("coord: the liveness lock is ours again");
    if (co->role == BT_ROLE_SUSPENDED && bt_zk_known_good(co->zk))
        co_verify_leadership(co); /* resumes if `leader` is still ours */
}

static void on_taken_over_check(int rc, const struct Stat *stat, const void *data)
{
    bt_coord_t *co = co_zdone(data);
    if (!co)
        return;
    co->live.checking = 0;
    if (!co->live.lost || (co->role != BT_ROLE_SUSPENDED && co->role != BT_ROLE_LEADING &&
                           co->role != BT_ROLE_CLAIMING))
        return;
    if (rc == ZOK && stat->ephemeralOwner == bt_zk_session_id(co->zk))
        return; /* still ours: liveness.c asks for the lock again */
    if (rc != ZOK && rc != ZNONODE)
        return; /* unknown: the next failed try asks again */
    co_step_down(co, "the liveness lock is another's", 1); /* co_leave counts it */
}

/* Suspended after losing the lock, we find it another's. A standby that
 * took it over deletes our `leader` first thing: gone (or another's), we
 * were taken over while alive: a false takeover. Say so, and step down;
 * the fence has refused our epoch's writes since the successor's bump. */
void co_live_taken_over(bt_coord_t *co)
{
    zreq_t *r;
    if (co->live.checking || !(r = co_zreq(co)))
        return;
    if (zoo_aexists(bt_zk_handle(co->zk), co->p_leader, 0, on_taken_over_check, r) != ZOK) {
        free(r);
        return;
    }
    co->live.checking = 1;
}

typedef struct early_req {
    zreq_t z;
    int step;
    char path[PATH_MAX_LEN];
} early_req_t;

static void on_early_deleted(int rc, const void *data);

/* Deletes the dead leader's `leader` znode (step 0) and its candidate
 * (step 1), then lists the line: first in it, we claim (co_claim). */
static void early_step(bt_coord_t *co, int step)
{
    early_req_t *r = calloc(1, sizeof *r);
    const char *path = step == 0 ? co->p_leader : co->early_pred;
    if (step > 1 || !r || !*path) {
        free(r);
        co_check_position(co);
        return;
    }
    r->z.co = co;
    r->z.gen = co->gen;
    r->step = step;
    if (zoo_adelete(bt_zk_handle(co->zk), path, -1, on_early_deleted, r) != ZOK) {
        free(r);
        co_check_position(co);
    }
}

static void on_early_deleted(int rc, const void *data)
{
    const early_req_t *r = data;
    int step = r->step;
    bt_coord_t *co = co_zdone(data); /* frees r */
    if (!co)
        return;
    if (rc != ZOK && rc != ZNONODE)
        bt_warn("coord: fast takeover: deleting the old leader's znode: %s", zerror(rc));
    early_step(co, step + 1);
}

static void on_early_leader(int rc, const struct Stat *stat, const void *data)
{
    bt_coord_t *co = co_zdone(data);
    if (!co)
        return;
    /* the znode must be the lock holder's: a release by anyone else (a
     * leader that handed off, a deposed one's backend) says nothing of
     * the leader now */
    char mark[24];
    const char *pred = strrchr(co->early_pred, '/');
    snprintf(mark, sizeof mark, "/c_%016llx_", (unsigned long long)co->live.holder_session);
    int theirs = rc == ZOK && stat->ephemeralOwner == co->live.holder_session &&
                 stat->ephemeralOwner != bt_zk_session_id(co->zk) && pred &&
                 !strncmp(pred, mark, strlen(mark));
    if (!theirs || co->role != BT_ROLE_STANDBY || !co->early_pred[0]) {
        /* gone already (a handoff), or not the holder's: the line decides */
        co->early_pred[0] = '\0';
        co_check_position(co);
        return;
    }
    co->live.fast_takeovers++;
    bt_warn("coord: the leader's process is gone (its liveness lock was released) while "
            "ZooKeeper keeps its session 0x%llx: taking over without waiting for it to expire",
            (unsigned long long)stat->ephemeralOwner);
    early_step(co, 0);
}

/* The first standby was granted the liveness lock it saw held. */
void co_take_over_early(bt_coord_t *co)
{
    zreq_t *r = co_zreq(co);
    snprintf(co->early_pred, sizeof co->early_pred, "%s", co->pred_first);
    if (!r || zoo_aexists(bt_zk_handle(co->zk), co->p_leader, 0, on_early_leader, r) != ZOK) {
        free(r);
        co_check_position(co);
    }
}

/* ------------------------------------------------------------ session setup */

static const char *setup_paths(bt_coord_t *co, int i)
{
    const char *list[] = {co->p_election, co->p_nodes, co->p_control, co->p_drain_dir};
    return i < 4 ? list[i] : NULL;
}

static void co_setup_step(bt_coord_t *co, int step);

typedef struct setup_req {
    zreq_t z;
    int step;
} setup_req_t;

static void on_setup_created(int rc, const char *value, const void *data)
{
    setup_req_t *s = (setup_req_t *)data;
    int step = s->step;
    bt_coord_t *co = s->z.co;
    unsigned gen = s->z.gen;
    (void)value;
    free(s);
    if (gen != co->gen)
        return;
    if (rc != ZOK && rc != ZNODEEXISTS) {
        bt_warn("coord: creating paths: %s", zerror(rc));
        co_retry_later(co, 0.5);
        return;
    }
    co_setup_step(co, step + 1);
}

static void on_member_created(int rc, const char *value, const void *data);
static void co_create_member(bt_coord_t *co);

/* Creates the base path component by component, then our paths, then the
 * membership node; then watches control and joins. */
static void co_setup_step(bt_coord_t *co, int step)
{
    char path[PATH_MAX_LEN];
    const char *target = NULL;
    /* steps 0..k-1: prefixes of base; then the fixed paths */
    int k = 0;
    for (const char *p = co->base + 1; (p = strchr(p, '/')); p++)
        k++;
    k++; /* base itself */
    if (step < k) {
        const char *p = co->base;
        for (int i = 0; i <= step; i++)
            p = strchr(p + 1, '/') ? strchr(p + 1, '/') : p + strlen(p);
        snprintf(path, sizeof path, "%.*s", (int)(p - co->base), co->base);
        target = path;
    } else {
        target = setup_paths(co, step - k);
    }
    if (!target) {
        co_create_member(co);
        return;
    }
    {
        setup_req_t *s = malloc(sizeof *s);
        if (!s)
            return;
        s->z.co = co;
        s->z.gen = co->gen;
        s->step = step;
        struct ACL_vector *acl = step < k - 1 ? bt_zk_shared_acl(co->zk) : bt_zk_acl(co->zk);
        if (zoo_acreate(bt_zk_handle(co->zk), target, "", 0, acl, 0, on_setup_created, s) != ZOK) {
            free(s);
            co_retry_later(co, 0.5);
        }
    }
}

static void co_create_member(bt_coord_t *co)
{
    char *js = co_member_json(co);
    zreq_t *r = co_zreq(co);
    if (js && r && zoo_acreate(bt_zk_handle(co->zk), co->p_member, js, (int)strlen(js),
                               bt_zk_acl(co->zk), ZOO_EPHEMERAL, on_member_created, r) == ZOK)
        r = NULL;
    else
        co_retry_later(co, 0.5);
    free(r);
    free(js);
}

static void on_stale_member_deleted(int rc, const void *data)
{
    bt_coord_t *co = co_zdone(data);
    (void)rc;
    if (co)
        co_create_member(co);
}

static void on_member_created(int rc, const char *value, const void *data)
{
    bt_coord_t *co = co_zdone(data);
    (void)value;
    if (!co)
        return;
    if (rc == ZNODEEXISTS) {
        /* left by our previous process whose session has not expired yet */
        bt_info("coord: replacing a stale membership node for %s", co->node);
        zreq_t *r = co_zreq(co);
        if (r && zoo_adelete(bt_zk_handle(co->zk), co->p_member, -1, on_stale_member_deleted, r) == ZOK)
            return;
        free(r);
        co_retry_later(co, 0.5);
        return;
    }
    if (rc != ZOK) {
        bt_warn("coord: creating membership node: %s", zerror(rc));
        co_retry_later(co, 0.5);
        return;
    }
    co->setup_done = 1;
    co_watch_handoff(co);
    /* the drain watch answers first; it calls co_join when not drained */
    co->drained = -1; /* unknown until the first answer */
    co_watch_drain(co);
}

static void co_retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    bt_coord_t *co = container_of(w, bt_coord_t, retry);
    (void)loop;
    (void)revents;
    if (!bt_zk_connected(co->zk) || co->leaving)
        return; /* the next CONNECTED event resumes */
    if (!co->setup_done)
        co_setup_step(co, 0);
    else if (co->role == BT_ROLE_CLAIMING)
        co_claim(co);
    else if (co->role == BT_ROLE_STANDBY || co->role == BT_ROLE_STARTING)
        co_join(co);
}

/* After a reconnect within the same session: are `leader` and our
 * candidate still ours? Then resume; else we lost them: step down. */
static void on_resume_check(int rc, const struct Stat *stat, const void *data)
{
    bt_coord_t *co = co_zdone(data);
    if (!co)
        return;
    if (rc == ZOK || rc == ZNONODE)
        co->leader_mine = rc == ZOK && stat->ephemeralOwner == bt_zk_session_id(co->zk)
                              ? LEADER_OURS
                              : LEADER_NOT_OURS;
    if (co->role != BT_ROLE_SUSPENDED)
        return;
    if (co->live.lost)
        return; /* the liveness lock first (co_live_regained verifies again) */
    if (co->leader_mine == LEADER_OURS && co->candidate[0] &&
        bt_zk_known_good(co->zk)) {
        bt_info("coord: same session, leader znode still ours: resuming");
        co->leader_czxid = stat->czxid;
        co_set_role(co, BT_ROLE_LEADING);
        co_handle_handoff(co); /* one that came while we were suspended */
        return;
    }
    co_step_down(co, "leader znode lost during suspension", 1);
}

static void co_verify_leadership(bt_coord_t *co)
{
    zreq_t *r = co_zreq(co);
    if (!r || zoo_aexists(bt_zk_handle(co->zk), co->p_leader, 0, on_resume_check, r) != ZOK) {
        free(r);
        co_step_down(co, "cannot verify leadership", 1);
    }
}

/* A new session: the old one's ephemerals are gone, and its unanswered
 * requests will never be answered to us (zdone drops them). */
static void co_forget_session(bt_coord_t *co)
{
    co->gen++;
    co->setup_done = 0;
    co->requeuing = 0;
    co->joining = 0;
    co->candidate[0] = '\0';
    co->leader_mine = LEADER_NOT_OURS;
    co->leader_create_inflight = 0;
    if (co->delete_after_create) { /* a step-down waiting for the create */
        co->delete_after_create = 0;
        /* nothing is left to delete. A shutdown completes now; anything
         * else rejoins through the new session's setup, not from here */
        if (co->shutdown_done)
            co_delete_nodes(co);
    }
}

static void co_on_session(bt_zk_t *zk, bt_zk_event_t ev, void *arg)
{
    bt_coord_t *co = arg;
    (void)zk;
    switch (ev) {
    case BT_ZK_SUSPENDED:
        if (co->role == BT_ROLE_LEADING)
            co_set_role(co, BT_ROLE_SUSPENDED);
        break;
    case BT_ZK_EXPIRED:
        /* Everything ephemeral is gone, and with it our leadership. */
        co_forget_session(co);
        ev_timer_stop(co->loop, &co->heartbeat);
        if (co->role != BT_ROLE_STOPPED)
            co_set_role(co, BT_ROLE_STARTING);
        break;
    case BT_ZK_CONNECTED: {
        int64_t sid = bt_zk_session_id(co->zk);
        if (sid != co->session) {
            co->session = sid;
            co_forget_session(co);
            snprintf(co->prefix, sizeof co->prefix, "c_%016llx_%s_%s_", (unsigned long long)sid,
                     co->node, co->zone);
            if (!co->leaving)
                co_setup_step(co, 0);
        } else if (co->role == BT_ROLE_SUSPENDED) {
            co_verify_leadership(co);
        } else if (co->role == BT_ROLE_CLAIMING) {
            co_claim(co); /* finds our own znode if the create went through */
        } else if (co->role == BT_ROLE_STANDBY && co->setup_done) {
            co_join(co);
        }
        break;
    }
    }
}

/* ------------------------------------------------------------ public */

static int node_id_ok(const char *s)
{
    if (!s || !*s || strlen(s) > 100)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '-' || *s == '.'))
            return 0;
    return 1;
}

bt_err_t bt_coord_new(struct ev_loop *loop, const bt_coord_opts_t *opts, bt_coord_t **out)
{
    bt_coord_t *co;
    bt_err_t err;
    if (!loop || !opts || !opts->cluster || !opts->zk_hosts || !opts->store || !out)
        return BT_E_INVAL;
    if (!node_id_ok(opts->node_id)) {
        bt_error("coord: node id '%s' must be 1-100 of [A-Za-z0-9.-]", opts->node_id ? opts->node_id : "");
        return BT_E_CONFIG;
    }
    if ((opts->zone && *opts->zone && !node_id_ok(opts->zone)) ||
        (opts->preferred_zone && *opts->preferred_zone && !node_id_ok(opts->preferred_zone))) {
        bt_error("coord: zone names must be 1-100 of [A-Za-z0-9.-]");
        return BT_E_CONFIG;
    }
    if (!(co = calloc(1, sizeof *co)))
        return BT_E_NOMEM;
    co->loop = loop;
    co->opts = *opts;
    co->store = opts->store;
    co->cluster = strdup(opts->cluster);
    co->node = strdup(opts->node_id);
    co->zone = strdup(opts->zone ? opts->zone : "");
    co->version = strdup(opts->version ? opts->version : BATON_VERSION);
    co->http = opts->http ? strdup(opts->http) : NULL;
    co->pref_zone = opts->preferred_zone && *opts->preferred_zone ? strdup(opts->preferred_zone) : NULL;
    const char *root = opts->zk_root ? opts->zk_root : "/baton";
    if (strlen(root) + strlen(co->cluster) + 2 > sizeof co->base) {
        bt_error("coord: zookeeper root and cluster name are too long");
        bt_coord_free(co);
        return BT_E_CONFIG;
    }
    if (snprintf(co->base, sizeof co->base, "%s/%s", strcmp(root, "/") ? root : "",
                 co->cluster) >= (int)sizeof co->base) {
        bt_coord_free(co);
        return BT_E_CONFIG;
    }
    snprintf(co->p_election, sizeof co->p_election, "%s/election", co->base);
    snprintf(co->p_nodes, sizeof co->p_nodes, "%s/nodes", co->base);
    snprintf(co->p_control, sizeof co->p_control, "%s/control", co->base);
    snprintf(co->p_drain_dir, sizeof co->p_drain_dir, "%s/control/drain", co->base);
    snprintf(co->p_drain, sizeof co->p_drain, "%s/control/drain/%s", co->base, co->node);
    snprintf(co->p_handoff, sizeof co->p_handoff, "%s/control/handoff", co->base);
    snprintf(co->p_leader, sizeof co->p_leader, "%s/leader", co->base);
    snprintf(co->p_member, sizeof co->p_member, "%s/nodes/%s", co->base, co->node);
    double hb = (opts->heartbeat_ms ? opts->heartbeat_ms : 500) / 1000.0;
    ev_init(&co->heartbeat, co_heartbeat_cb);
    co->heartbeat.repeat = hb;
    /* After a pause (SIGSTOP, a stalled VM) every watcher is due at once;
     * the known-good check must run before ZooKeeper's own callbacks, which
     * may refresh last_recv_ms from a buffered reply, or any dispatcher
     * callback: the pause is noticed on our clock, not by luck of order. */
    ev_set_priority(&co->heartbeat, EV_MAXPRI);
    ev_init(&co->retry, co_retry_cb);
    ev_init(&co->drain_wait, co_drain_wait_cb);
    ev_init(&co->publish, co_publish_cb);
    ev_check_init(&co->pause_check, co_pause_check_cb);
    ev_set_priority(&co->pause_check, EV_MAXPRI);
    ev_check_start(loop, &co->pause_check);

    bt_zk_opts_t zo = {.hosts = opts->zk_hosts,
                       .session_timeout_ms = opts->zk_session_timeout_ms,
                       .digest_auth = opts->zk_auth,
                       .cb = co_on_session,
                       .arg = co};
    if ((err = co_live_start(co)) != BT_OK || (err = bt_zk_new(loop, &zo, &co->zk)) != BT_OK) {
        bt_coord_free(co);
        return err;
    }
    *out = co;
    return BT_OK;
}

void bt_coord_free(bt_coord_t *co)
{
    if (!co)
        return;
    co->gen++; /* completions delivered by zookeeper_close are stale */
    ev_timer_stop(co->loop, &co->heartbeat);
    ev_timer_stop(co->loop, &co->retry);
    ev_timer_stop(co->loop, &co->drain_wait);
    ev_timer_stop(co->loop, &co->publish);
    ev_check_stop(co->loop, &co->pause_check);
    co_live_free(co);
    if (co->store)
        bt_store_when_idle(co->store, NULL, NULL);
    bt_zk_free(co->zk);
    free(co->cluster);
    free(co->node);
    free(co->zone);
    free(co->version);
    free(co->http);
    free(co->pref_zone);
    free(co);
}

bt_role_t bt_coord_role(const bt_coord_t *co)
{
    return co->role;
}

uint64_t bt_coord_epoch(const bt_coord_t *co)
{
    return co->role == BT_ROLE_LEADING || co->role == BT_ROLE_SUSPENDED ? co->epoch : 0;
}

int bt_coord_may_dispatch(const bt_coord_t *co)
{
    return co->role == BT_ROLE_LEADING && co->fence_committed && bt_zk_known_good(co->zk) &&
           co_live_may_send(co);
}

void bt_coord_get_stats(const bt_coord_t *co, bt_coord_stats_t *out)
{
    *out = (bt_coord_stats_t){.liveness_held = co->live.held,
                              .liveness_watching = co->live.seen_held && !co->live.held,
                              .fast_takeovers = co->live.fast_takeovers,
                              .taken_over_alive = co->live.taken_over_alive};
}

bt_zk_t *bt_coord_zk(bt_coord_t *co)
{
    return co->zk;
}

int64_t bt_coord_leader_since_us(const bt_coord_t *co)
{
    return co->leader_since_us;
}

int64_t bt_coord_last_stop_us(const bt_coord_t *co)
{
    return co->last_stop_us;
}

void bt_coord_shutdown(bt_coord_t *co, void (*done)(void *arg), void *arg)
{
    co->shutdown_done = done;
    co->shutdown_arg = arg;
    co->leaving = 1;
    ev_timer_stop(co->loop, &co->retry);
    if (co->role == BT_ROLE_STEPPING_DOWN)
        return; /* a step-down under way ends in on_nodes_deleted, which calls done */
    /* a standby may still have a claim's fence write in flight (it went
     * back to waiting for an old `leader` znode): wait for it too, or its
     * answer would come after we are freed */
    if (co->role == BT_ROLE_LEADING || co->role == BT_ROLE_SUSPENDED) {
        co_hand_off(co, "shutdown", 0);
    } else if (co->role == BT_ROLE_CLAIMING ||
               (co->store && bt_store_pending(co->store) > 0)) {
        co_step_down(co, "shutdown", 0);
    } else {
        co_delete_nodes(co);
    }
}
