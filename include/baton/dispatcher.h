/* The dispatcher: the loop only the active leader runs.
 *
 * It keeps nothing a takeover needs outside PostgreSQL. On start (the node
 * began to lead, with `epoch`) it loads the workflows, the active runs and
 * the latest attempt of each of their tasks, then, turn after turn:
 *   - creates runs for due cron times (catchup, max_active_runs) and for
 *     operators' run requests (trigger, backfill);
 *   - decides each waiting task by its trigger rule; queues ready ones by
 *     pool slots, per-workflow concurrency and priority;
 *   - writes `submitting` (committed) before asking an operator to submit;
 *     after a takeover, asks the operator to look the run key up instead;
 *   - polls running work, enforces timeouts (cancel, then timed_out),
 *     retries with backoff, and finishes runs.
 * Every state change is one fenced write (store.h); the writes of one loop
 * turn go out pipelined in one transaction. A change is applied in memory
 * only once committed; an unknown outcome (connection loss, CAS conflict)
 * makes it reload from PostgreSQL, which is the takeover path again. A
 * fenced write makes the node step down (bt_coord_fenced).
 * Scheduling semantics are in docs/scheduling.md. */
#ifndef BATON_DISPATCHER_H
#define BATON_DISPATCHER_H

#include <ev.h>
#include <stdint.h>

#include "baton/coord.h"
#include "baton/err.h"
#include "baton/http.h"
#include "baton/operator.h"
#include "baton/store.h"

typedef struct bt_dispatcher bt_dispatcher_t;

typedef struct bt_dispatcher_opts {
    bt_store_t *store;
    bt_coord_t *coord;             /* may be NULL in benchmarks: always dispatch */
    bt_operator_t *const *ops;     /* the operators this build has */
    size_t nops;
    uint32_t default_pool_slots;   /* for a pool without a row; default 128 */
    uint32_t config_poll_ms;       /* how often to look for applied changes; 500 */
    /* Rule 4 (docs/failover.md): the longest a request that left a node
     * may take to take effect at a service, and the settle time after
     * which a second lookup must agree with a "not found" (list lag) */
    uint32_t transit_bound_ms;     /* default 10000 */
    uint32_t settle_ms;            /* default 5000 */
    /* A drain gives its calls this long, then cuts their side effects off
     * on `http` (when set) and records their outcomes as unknown */
    uint32_t drain_timeout_ms;     /* default 30000 */
    bt_http_t *http;               /* the operators' transport; may be NULL */
    /* The EMR orphan reaper (docs/operators.md, "Orphan reaper") */
    int reap;                      /* run it while leading */
    int reap_dry_run;              /* only say what it would terminate */
    uint64_t reap_after_ms;        /* grace after the run ended; default 15 min */
    uint64_t reap_interval_ms;     /* between scans; default 5 min */
} bt_dispatcher_opts_t;

bt_err_t bt_dispatcher_new(struct ev_loop *loop, const bt_dispatcher_opts_t *opts,
                           bt_dispatcher_t **out);
void bt_dispatcher_free(bt_dispatcher_t *d); /* accepts NULL */
/* The coordinator is created after the dispatcher (its role callback
 * starts it): set it before the loop runs. */
void bt_dispatcher_set_coord(bt_dispatcher_t *d, bt_coord_t *coord);

/* Begin dispatching under `epoch` (loads state first; the same epoch after
 * a pause resumes) / pause (a suspended leader: nothing new is issued, but
 * answers to calls in flight are still written under the fence) / stop at
 * once (nothing more is issued; calls in flight stay this epoch's: should
 * the same epoch start again, their answers are applied, else dropped). */
void bt_dispatcher_start(bt_dispatcher_t *d, uint64_t epoch);
void bt_dispatcher_pause(bt_dispatcher_t *d);
void bt_dispatcher_stop(bt_dispatcher_t *d);

/* A planned step-down: issue nothing new, wait for the side-effecting calls
 * in flight (at most drain_timeout_ms, then cut them off: see http.h), write
 * their outcomes, mark every task in `submitting` whose outcome is unknown
 * (outcome_unknown in its record), then call done(arg, clean) from the loop:
 * clean when every outcome is accounted for and every write committed. The
 * dispatcher stays drained (issuing nothing) until stopped or started. */
void bt_dispatcher_drain(bt_dispatcher_t *d, void (*done)(void *arg, int clean), void *arg);

typedef struct bt_dispatcher_stats {
    int active;                 /* started and loaded */
    uint64_t runs_created, transitions, submits, lookups, polls, reloads;
    uint64_t active_runs, active_tasks;
    uint64_t calls_in_flight;      /* operator calls now */
    uint64_t calls_in_flight_max;  /* the most there ever were at once */
    uint64_t calls_deferred;       /* times a call waited for a place */
    uint64_t side_effects_in_flight; /* submits, cancels, sweeps now: a handoff waits */
    uint64_t not_found_waits;      /* NOT_FOUNDs not believed yet (Rule 4) */
    uint64_t sweeps, duplicates_found, duplicates_cancelled;
    uint64_t drains, drains_unclean;
    /* committed moves of the task-run state machine, by [from][to] state
     * (src/sched/task_moves.c), and moves refused as not in its table */
    uint64_t moves[12][12];
    uint64_t illegal_moves;
    /* the EMR orphan reaper */
    uint64_t reap_scans, clusters_reaped, clusters_would_reap;
} bt_dispatcher_stats_t;
void bt_dispatcher_get_stats(const bt_dispatcher_t *d, bt_dispatcher_stats_t *out);

/* Benchmarks: called as each task run is queued, with two lags: from the
 * moment it became eligible (due, and its upstreams' final states
 * committed) and from the moment its last upstream finished (its final
 * state decided, before that write's commit). */
typedef void (*bt_dispatcher_lag_cb)(int64_t lag_ms, int64_t end_to_end_ms, void *arg);
void bt_dispatcher_on_queued(bt_dispatcher_t *d, bt_dispatcher_lag_cb cb, void *arg);

#endif
