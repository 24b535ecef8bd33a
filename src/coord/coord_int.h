/* The coordinator's insides, shared by its two files:
 *   election.c  the line, the claim, the fence, stepping down, the session;
 *   control.c   operator requests: planned handoff (to a node or a zone)
 *               and drain.
 * Not a public header: include/baton/coord.h is the contract. */
#ifndef BATON_COORD_INT_H
#define BATON_COORD_INT_H

#include <stddef.h>
#include <stdint.h>

#include "baton/coord.h"
#include "baton/pg.h"

#define PATH_MAX_LEN 512

/* What a node does with the liveness lock (liveness.c). */
enum { LIVE_NONE, LIVE_HOLD, LIVE_WATCH };

/* The leader process's liveness lock and its own PostgreSQL connection. */
typedef struct co_live {
    bt_pg_t *pg;
    int64_t key;               /* the advisory lock's: a hash of the cluster */
    int up;                    /* its connection is up */
    int held;                  /* we hold the lock */
    int seen_held;             /* a standby saw the leader hold it: a grant is a release */
    int recheck;               /* a wait timed out: try (and see who holds it) first */
    int64_t holder_session;    /* the ZooKeeper session its holder's name gave */
    int64_t named_session;     /* the session our backend's name carries */
    int64_t naming_session;    /* ... being set */
    int lost;                  /* leading, the lock may be another's: send nothing */
    int inflight;              /* a request in flight (its statement + 1) */
    int checking;              /* lost: asking ZooKeeper whose `leader` is */
    int closing;
    int64_t sent_ms;           /* monotonic: the last request's send */
    int64_t lease_from_ms;     /* the last answer's question was sent then */
    ev_timer retry, ping;
    char app_name[160];        /* batond-liveness:<node>, in pg_stat_activity */
    uint64_t fast_takeovers;   /* early claims made by this node */
    uint64_t taken_over_alive; /* times this node was taken over while alive */
} co_live_t;

/* The last planned-handoff request seen in control/handoff. */
typedef struct handoff_req {
    int present;
    int64_t czxid;
    char to[128];
    int64_t deadline_ms;  /* --to: give up waiting for the line to yield */
} handoff_req_t;

struct bt_coord {
    struct ev_loop *loop;
    bt_coord_opts_t opts;
    char *cluster, *node, *zone, *version, *http, *pref_zone;
    bt_zk_t *zk;
    bt_store_t *store;
    unsigned gen;              /* bumped on every new session */
    int64_t session;           /* the session our znodes belong to */
    bt_role_t role;
    int setup_done;            /* paths and membership exist in this session */
    int drained;
    int leaving;               /* shutting down: never rejoin */
    int requeuing;             /* deleting our candidate to rejoin at the back */
    int joining;               /* a join's listing or create is in flight: one at a time */
    int fence_committed;       /* this leadership's epoch is in the fence row */
    uint64_t epoch;
    int64_t leader_since_us;
    int64_t last_stop_us;      /* wall clock when we last stopped dispatching */
    int64_t role_since_ms;     /* wall clock when the role last changed */
    int64_t cand_czxid;        /* our candidate's czxid: the epoch if we lead */
    int64_t leader_czxid;      /* czxid of our `leader` znode: when we began */
    int leader_mine;           /* LEADER_NOT_OURS / _OURS / _UNKNOWN */
    int leader_create_inflight; /* create (or its exists check) unanswered */
    int delete_after_create;   /* stepping down: delete once it is answered */
    int claim_fence_inflight;
    int awaiting_calls;        /* a handoff waits for bt_coord_calls_drained */
    int release_clean;         /* ...which vouched for every outcome */
    int release_inflight;      /* the fence release write is unanswered */
    ev_check pause_check;      /* every loop turn: a leader paused past its lease stops */
    int64_t last_turn_ms;      /* monotonic, at the last turn (for the log) */
    char candidate[PATH_MAX_LEN];   /* our election znode, "" when none */
    char pred_first[PATH_MAX_LEN];  /* the predecessor we watch, when it was
                                     * first in line; "" otherwise */
    char early_pred[PATH_MAX_LEN];  /* a fast takeover deletes this candidate */
    char prefix[160];               /* c_<session>_<node>_ */
    char base[256], p_election[PATH_MAX_LEN], p_nodes[PATH_MAX_LEN];
    char p_control[PATH_MAX_LEN], p_drain_dir[PATH_MAX_LEN], p_drain[PATH_MAX_LEN];
    char p_handoff[PATH_MAX_LEN], p_leader[PATH_MAX_LEN], p_member[PATH_MAX_LEN];
    ev_timer heartbeat;        /* leader: fenced heartbeat + known-good check */
    ev_timer retry;            /* re-run the election after a transient error */
    ev_timer drain_wait;       /* shutdown: waiting for in-flight writes */
    ev_timer publish;          /* membership write, coalesced (co_publish_member) */
    int heartbeat_inflight;
    unsigned beats;
    void (*shutdown_done)(void *);
    void *shutdown_arg;
    int64_t shutdown_deadline_ms;
    int64_t pause_until_ms;    /* no rejoin before (after a stale epoch) */
    handoff_req_t handoff;
    co_live_t live;
};

/* Whether the `leader` znode on the server is ours. Unknown while our create
 * is unanswered, or when its reply was lost with the connection. */
enum { LEADER_NOT_OURS, LEADER_OURS, LEADER_UNKNOWN };

typedef struct zreq {
    bt_coord_t *co;
    unsigned gen;
} zreq_t;

typedef struct multi_req {
    zreq_t z;
    zoo_op_result_t results[2];
} multi_req_t;

/* election.c: requests, watchers and candidate names */
zreq_t *co_zreq(bt_coord_t *co);   /* a request of the current session */
bt_coord_t *co_zdone(const void *data); /* frees it; NULL if the session is old */
bt_coord_t *co_watch_owner(zhandle_t *zh, int type, void *ctx); /* NULL: not ours */
unsigned long long co_seq_of(const char *name);
void co_candidate_zone(const char *name, char *buf, size_t len);
char **co_sorted_line(const struct String_vector *names); /* to free; NULL */
int co_candidate_is(const char *name, const char *node);

/* election.c: the state machine */
void co_set_role(bt_coord_t *co, bt_role_t role);
void co_retry_later(bt_coord_t *co, double seconds);
void co_join(bt_coord_t *co);
void co_check_position(bt_coord_t *co);   /* list the line; claim or watch */
void co_step_down(bt_coord_t *co, const char *reason, int rejoin);
/* A planned step-down (handoff, drain, shutdown): the same, but the node's
 * remote calls finish first (bt_coord_calls_drained), and a clean end is
 * recorded in the fence row for the successor. */
void co_hand_off(bt_coord_t *co, const char *reason, int rejoin);
void co_delete_nodes(bt_coord_t *co);     /* `leader` (if ours) and candidate */

/* liveness.c: fast takeover (coordination.fast_takeover) */
bt_err_t co_live_start(bt_coord_t *co);
void co_live_free(bt_coord_t *co);
void co_live_update(bt_coord_t *co);      /* the role or the line changed */
int co_live_may_send(const bt_coord_t *co);
void co_live_check(bt_coord_t *co);       /* leading: a lapsed lease pauses us */
/* election.c, called by liveness.c */
void co_live_lost(bt_coord_t *co);        /* leading, the lock's connection broke */
void co_live_regained(bt_coord_t *co);    /* ... and the lock is ours again */
void co_live_taken_over(bt_coord_t *co);  /* ... and another holds it: is `leader` ours? */
void co_take_over_early(bt_coord_t *co);  /* standby: the leader's process is gone */

/* control.c */
void co_watch_handoff(bt_coord_t *co);
void co_handle_handoff(bt_coord_t *co);   /* act on co->handoff for our role */
void co_clear_fulfilled_handoff(bt_coord_t *co);
void co_handoff_line_watch(zhandle_t *zh, int type, int state, const char *path, void *ctx);
void co_watch_drain(bt_coord_t *co);
void co_check_zone_preference(bt_coord_t *co);

#endif
