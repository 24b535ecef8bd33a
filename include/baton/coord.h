/* Coordination: leader election, membership, fencing epoch, step-down and
 * planned handoff, over one ZooKeeper session on the daemon's loop.
 *
 * ZooKeeper layout under <root>/<cluster>:
 *   election/c_<session>_<node>_<zone>_<seq>
 *                                      ephemeral-sequential candidates; each
 *                                      watches only its predecessor
 *   leader                             ephemeral: the active dispatcher
 *   nodes/<node>                       ephemeral membership (JSON)
 *   control/handoff                    a planned-handoff request (JSON, "to")
 *   control/drain/<node>               present while <node> is drained
 *
 * The epoch is the czxid of the leader's candidate znode. Candidates are
 * ordered by creation, i.e. by zxid, and a leader is always the first live
 * one, so successive leaders' epochs rise. A new leader creates `leader` and
 * stores its epoch in PostgreSQL's fence row in parallel, and dispatches once
 * the fence write has committed; should the create find `leader` held by
 * another session, it stops and waits for it. Every later write carries the
 * epoch (store.h).
 *
 * A node may dispatch (bt_coord_may_dispatch) only while it leads, its fence
 * write has committed, and its ZooKeeper session is known good (zk.h). The
 * timing argument and its limits are in docs/failover.md.
 */
#ifndef BATON_COORD_H
#define BATON_COORD_H

#include <ev.h>
#include <stdint.h>

#include "baton/err.h"
#include "baton/store.h"
#include "baton/zk.h"

typedef enum bt_role {
    BT_ROLE_STARTING = 0,  /* no session yet, or rebuilding after expiry */
    BT_ROLE_STANDBY,       /* a candidate, not the leader */
    BT_ROLE_CLAIMING,      /* first in line: creating `leader`, fencing */
    BT_ROLE_LEADING,       /* may dispatch */
    BT_ROLE_SUSPENDED,     /* leads, but ZooKeeper is not known good: paused */
    BT_ROLE_STEPPING_DOWN, /* handing off: no new work, nodes being deleted */
    BT_ROLE_DRAINED,       /* out of the election on request, still up */
    BT_ROLE_STOPPED,
} bt_role_t;

const char *bt_role_name(bt_role_t role);

typedef struct bt_coord bt_coord_t;

/* Called on every role change; `epoch` is the current leader epoch of this
 * node (0 when it does not lead). */
typedef void (*bt_coord_role_cb)(bt_coord_t *co, bt_role_t role, uint64_t epoch, void *arg);

typedef struct bt_coord_opts {
    const char *cluster;
    const char *node_id;
    const char *zone;
    const char *version;
    const char *http;               /* admin address, published in nodes/ */
    const char *zk_hosts;
    const char *zk_root;            /* default /baton */
    uint32_t zk_session_timeout_ms;
    const char *zk_auth;            /* "user:password" or NULL */
    const char *preferred_zone;     /* with zone_handoff */
    int zone_handoff;
    uint32_t heartbeat_ms;          /* leader's fenced heartbeat; default 500 */
    /* A planned step-down (handoff, drain, SIGTERM) waits for the owner's
     * bt_coord_calls_drained() before it deletes its znodes: the node's
     * side-effecting remote calls answered and their outcomes written under
     * its still-valid fence (docs/failover.md, Rule 4). While it waits,
     * bt_coord_handing_off() is true. */
    int drain_calls;
    /* Fast takeover (docs/failover.md): the leader holds a PostgreSQL
     * advisory lock on a connection of its own (pg_conninfo); the first
     * standby claims as soon as it is released, without waiting for the
     * session to expire. */
    int fast_takeover;
    const char *pg_conninfo;
    bt_store_t *store;              /* fenced writes; not owned */
    bt_coord_role_cb on_role;
    void *arg;
} bt_coord_opts_t;

bt_err_t bt_coord_new(struct ev_loop *loop, const bt_coord_opts_t *opts, bt_coord_t **out);
void bt_coord_free(bt_coord_t *co);   /* closes the session */

bt_role_t bt_coord_role(const bt_coord_t *co);
uint64_t bt_coord_epoch(const bt_coord_t *co);
int bt_coord_may_dispatch(const bt_coord_t *co);
bt_zk_t *bt_coord_zk(bt_coord_t *co);
/* Wall clock in µs (the failover bench subtracts them): when this
 * leadership began (0 if not leading), when we last stopped dispatching. */
int64_t bt_coord_leader_since_us(const bt_coord_t *co);
int64_t bt_coord_last_stop_us(const bt_coord_t *co);

/* A leader holding the liveness lock sends only within this long of its
 * lock's backend last answering; a successor that took over on the lock's
 * release must add it to its transit bound (docs/failover.md). */
#define BT_COORD_LIVE_LEASE_MS 2000

typedef struct bt_coord_stats {
    int liveness_held;             /* this node holds the liveness lock */
    int liveness_watching;         /* this node waits for it (first standby) */
    uint64_t fast_takeovers;       /* claims made on the lock's release */
    uint64_t taken_over_alive;     /* false takeovers of this node */
} bt_coord_stats_t;
void bt_coord_get_stats(const bt_coord_t *co, bt_coord_stats_t *out);

/* A fenced write failed: stop at once and leave the election; rejoin at
 * the back of the line. */
void bt_coord_fenced(bt_coord_t *co, const char *what);

/* Whether the current step-down is a planned one that waits for the calls
 * (with drain_calls): the role callback for BT_ROLE_STEPPING_DOWN asks it
 * to tell a handoff (finish the calls) from a forced step-down (stop). */
int bt_coord_handing_off(const bt_coord_t *co);
/* The calls are finished; `clean`: every outcome is written, and the ones
 * not known are marked as such. The step-down goes on; a clean one records
 * its release in the fence row (bt_store_fence_release). */
void bt_coord_calls_drained(bt_coord_t *co, int clean);

/* Graceful exit (SIGTERM): stop taking work, let in-flight calls and
 * writes finish (bounded), delete our znodes so the next node takes over at
 * once, then call `done`. */
void bt_coord_shutdown(bt_coord_t *co, void (*done)(void *arg), void *arg);

#endif
