/* The PostgreSQL store: schema migrations and fenced writes.
 *
 * Fencing contract. Every write on the dispatch path carries the writer's
 * leader epoch and is one round trip that succeeds only while that epoch is
 * the cluster's current one (fence row locked FOR SHARE in the same
 * transaction; see src/store/migrations/0001_initial.sql for why this holds
 * under READ COMMITTED). A write that loses reports BT_E_FENCED, and the
 * caller must stop issuing side effects at once: it is no longer leader.
 *
 * Outcomes reported to callbacks:
 *   BT_OK          written
 *   BT_E_FENCED    our epoch is stale: step down
 *   BT_E_CONFLICT  the row was not in the expected state (or is missing)
 *   BT_E_EXISTS    create of an existing row
 *   BT_E_PG        the server refused (e.g. lock timeout); safe to retry
 *   BT_E_PG_CONN   connection lost: outcome unknown; re-read, then retry
 *   BT_E_CANCELLED the store was closed
 * All writes of one loop turn are pipelined and committed together.
 */
#ifndef BATON_STORE_H
#define BATON_STORE_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>

#include "baton/err.h"
#include "baton/record.h"

/* The connection under the store (include/baton/pg.h, for tests and
 * benchmarks that count its transactions): the rest of baton talks to the
 * store, never to libpq. */
typedef struct bt_pg bt_pg_t;

/* The newest schema version this binary knows. */
int bt_store_schema_version(void);

/* Applies the embedded migrations in order under a PostgreSQL advisory
 * lock and records each in schema_migrations. Re-running is a no-op.
 * Returns BT_E_SCHEMA_NEWER when the database has a version this binary does
 * not know (an older binary must not write to a newer schema).
 * BLOCKING: call at start-up, before the event loop runs. `*out_version`
 * (may be NULL) receives the version the database is at afterwards; on
 * failure errbuf holds the reason. */
bt_err_t bt_store_migrate(const char *conninfo, int *out_version, char *errbuf,
                          size_t errlen);

typedef struct bt_store bt_store_t;

typedef struct bt_store_opts {
    const char *conninfo;
    const char *cluster;   /* baton cluster name: the fence row's key */
    const char *node;      /* this node's id, recorded with every write */
    /* the session's settings (net/pg.c has the defaults, 0 takes them) */
    uint32_t lock_timeout_ms, statement_timeout_ms, idle_in_tx_timeout_ms;
    uint32_t reply_timeout_ms;      /* a reply this late: the connection is given up */
    const char *application_name;
    uint32_t fence_grace_ms; /* see fence_acquire; default 2000 */
} bt_store_opts_t;

bt_err_t bt_store_open(struct ev_loop *loop, const bt_store_opts_t *opts,
                       bt_store_t **out);
void bt_store_close(bt_store_t *st); /* pending callbacks get BT_E_CANCELLED */
bt_pg_t *bt_store_pg(bt_store_t *st);
int bt_store_is_up(const bt_store_t *st);
/* Calls sent or queued and not answered yet. */
unsigned bt_store_pending(const bt_store_t *st);
/* One-shot: cb runs from the loop the next time nothing is in flight (see
 * bt_pg_when_idle); check bt_store_pending first. cb NULL cancels. */
void bt_store_when_idle(bt_store_t *st, void (*cb)(void *arg), void *arg);

/* `detail` is the server's message for BT_E_PG*, else NULL. */
typedef void (*bt_store_cb)(bt_err_t err, const char *detail, void *arg);

/* Records `epoch` as the cluster's current one, if it is greater than the
 * recorded one (BT_E_STALE_EPOCH otherwise), with a 'leader' event. It never
 * waits behind a stalled writer: a session that has held a lock on the fence
 * row for more than fence_grace_ms (a paused old leader mid-batch) is
 * terminated, so its writes roll back. */
bt_err_t bt_store_fence_acquire(bt_store_t *st, uint64_t epoch, const char *zone,
                                const char *reason, bt_store_cb cb, void *arg);

/* BT_OK while `epoch` is current, BT_E_FENCED otherwise. */
bt_err_t bt_store_fence_check(bt_store_t *st, uint64_t epoch, bt_store_cb cb,
                              void *arg);

/* The leader's periodic fenced write (table leader_heartbeat): BT_OK while
 * `epoch` is current, BT_E_FENCED otherwise. */
bt_err_t bt_store_leader_heartbeat(bt_store_t *st, uint64_t epoch, bt_store_cb cb,
                                   void *arg);

/* A leader handing off cleanly says so (fenced): every remote call of its
 * epoch was answered and its outcome written, every task whose outcome it
 * does not know is marked outcome_unknown, and it sends nothing more. The
 * next epoch's fence bump records that its predecessor released
 * (fence.inherited_clean), so the successor can trust the task records
 * instead of waiting out the transit bound (docs/failover.md, Rule 4). */
bt_err_t bt_store_fence_release(bt_store_t *st, uint64_t epoch, bt_store_cb cb, void *arg);

/* Inserts a new task run (one attempt). Sets run->writer_epoch; the stored
 * record carries this node as writer_node (run's own field is left as the
 * caller's); the queryable columns come from `run`. */
bt_err_t bt_store_task_create(bt_store_t *st, uint64_t epoch, bt_task_run_t *run,
                              bt_store_cb cb, void *arg);

/* Compare-and-set: moves run->run_key from state `from` to run->state and
 * stores `run` as its record (writer fields set as above). The error column
 * is set from run->error->message, or cleared. The record is copied: the
 * call is held and sent with the turn's other transitions as one statement.
 * A run moved again in the same turn from the state its previous move ends
 * in makes a chain with it: all of a chain's moves get BT_OK, or all get
 * BT_E_CONFLICT when the first does not apply. */
bt_err_t bt_store_task_transition(bt_store_t *st, uint64_t epoch,
                                  bt_task_state_t from, bt_task_run_t *run,
                                  bt_store_cb cb, void *arg);

/* Reads one task run. On BT_OK, `run` is owned by the callee: free it with
 * baton__v1__task_run__free_unpacked(run, NULL). BT_E_CORRUPT when the row's
 * record does not decode (or contradicts its columns): `run` is NULL and
 * `state` holds the row's state column, so the caller can fail the run with
 * bt_store_task_fail_corrupt. BT_E_NOTFOUND when there is no such row. */
typedef void (*bt_store_task_cb)(bt_err_t err, bt_task_run_t *run,
                                 const char *state, const char *detail,
                                 void *arg);
bt_err_t bt_store_task_get(bt_store_t *st, const char *run_key,
                           bt_store_task_cb cb, void *arg);

/* Replaces an undecodable record: moves the run (fenced, from `state`) to
 * failed with a fresh record rebuilt from the run key, whose error says why,
 * and appends a 'corrupt_record' event with the reason, in one transaction. */
bt_err_t bt_store_task_fail_corrupt(bt_store_t *st, uint64_t epoch,
                                    const char *run_key, const char *state,
                                    const char *why, bt_store_cb cb, void *arg);

/* Appends an audit event without the fence: for what a deposed node has to
 * say about itself (a takeover while it was alive). */
bt_err_t bt_store_event_note(bt_store_t *st, uint64_t epoch, const char *kind,
                             const char *detail_json, bt_store_cb cb, void *arg);

/* Appends an audit event under the fence. detail_json may be NULL. */
bt_err_t bt_store_event(bt_store_t *st, uint64_t epoch, const char *kind,
                        const char *run_key, const char *detail_json,
                        bt_store_cb cb, void *arg);

/* ---------------------------------------------------------- workflow runs */

typedef Baton__V1__WorkflowRun bt_workflow_run_t;

/* Creates `run` (state running) and the first attempt of each of its tasks
 * (`tasks[i]`, state scheduled, due now) in one fenced call. When
 * next_fire_ms >= 0 the workflow's scheduling cursor moves to it; when
 * request_id > 0 that run request is consumed. BT_E_EXISTS when a run with
 * that id exists (cursor and request are consumed all the same). */
bt_err_t bt_store_run_create(bt_store_t *st, uint64_t epoch, bt_workflow_run_t *run,
                             bt_task_run_t *const *tasks, size_t ntasks, int64_t next_fire_ms,
                             int64_t request_id, bt_store_cb cb, void *arg);

/* Sets the workflow's scheduling cursor if it has none yet (fenced). */
bt_err_t bt_store_workflow_cursor_init(bt_store_t *st, uint64_t epoch, const char *workflow_id,
                                       int64_t next_fire_ms, bt_store_cb cb, void *arg);

/* Compare-and-set of a run's state (`from` -> run->state), fenced. */
bt_err_t bt_store_run_transition(bt_store_t *st, uint64_t epoch, Baton__V1__RunState from,
                                 bt_workflow_run_t *run, bt_store_cb cb, void *arg);


/* Removes an operator's task request once acted on, with an event. */
bt_err_t bt_store_task_request_done(bt_store_t *st, uint64_t epoch, int64_t id,
                                    const char *outcome, bt_store_cb cb, void *arg);

/* ---------------------------------------------------------- reads
 *
 * What the dispatcher loads when it starts or reloads, and polls while it
 * leads (src/store/reads.c holds the SQL). Each answers exactly once, from
 * the loop, with its rows decoded; rows and everything they point to are
 * valid during the callback only. Records and specs are packed protobuf:
 * the caller unpacks them, and decides what an undecodable one means. A
 * bytea that does not decode is spec/record NULL with length 0. */

typedef struct bt_store_workflow_row {
    const char *workflow_id;
    int version;
    int paused;
    const uint8_t *spec;        /* WorkflowSpec */
    size_t spec_len;
    int64_t next_fire_ms;       /* the scheduling cursor; -1: none yet */
    int64_t change_seq;
} bt_store_workflow_row_t;

typedef struct bt_store_run_row {
    const uint8_t *record;      /* WorkflowRun */
    size_t record_len;
    const uint8_t *spec;        /* the WorkflowSpec of its version */
    size_t spec_len;
} bt_store_run_row_t;

typedef struct bt_store_task_row {
    const char *run_key;
    const char *state;          /* the row's state column */
    const uint8_t *record;      /* TaskRun */
    size_t record_len;
} bt_store_task_row_t;

typedef struct bt_store_pool_row {
    const char *name;
    uint32_t slots;
} bt_store_pool_row_t;

typedef struct bt_store_run_request_row {
    int64_t id;
    const char *workflow_id, *kind;
    int64_t logical_ms;
    const char *conf;           /* JSON, or NULL */
} bt_store_run_request_row_t;

typedef struct bt_store_task_request_row {
    int64_t id;
    const char *action, *workflow_id, *run_id;
    const char *task_id;        /* NULL: the whole run */
    int only_failed;
} bt_store_task_request_row_t;

/* `rows` is an array of the row type the read names (NULL unless BT_OK). */
typedef void (*bt_store_rows_cb)(bt_err_t err, const void *rows, size_t n, const char *errmsg,
                                 void *arg);

/* Workflows whose change_seq is above `since_seq` (0: every one). */
bt_err_t bt_store_read_workflows(bt_store_t *st, int64_t since_seq, bt_store_rows_cb cb,
                                 void *arg);
/* Runs queued or running, oldest logical time first, with their specs. */
bt_err_t bt_store_read_active_runs(bt_store_t *st, bt_store_rows_cb cb, void *arg);
/* The latest attempt of every task of those runs. */
bt_err_t bt_store_read_active_tasks(bt_store_t *st, bt_store_rows_cb cb, void *arg);
bt_err_t bt_store_read_pools(bt_store_t *st, bt_store_rows_cb cb, void *arg);
/* Operators' run requests (trigger, backfill), oldest first, at most 1,000. */
bt_err_t bt_store_read_run_requests(bt_store_t *st, bt_store_rows_cb cb, void *arg);
/* Operators' task requests (retry, kill, clear), oldest first, at most 100. */
bt_err_t bt_store_read_task_requests(bt_store_t *st, bt_store_rows_cb cb, void *arg);

/* The fence row: the current epoch (0: none) and whether that epoch's
 * predecessor released cleanly (bt_store_fence_release). */
typedef void (*bt_store_fence_cb)(bt_err_t err, uint64_t epoch, int inherited_clean, void *arg);
bt_err_t bt_store_read_fence(bt_store_t *st, bt_store_fence_cb cb, void *arg);

/* A finished run's record (WorkflowRun, packed): BT_E_NOTFOUND when the run
 * does not exist or has not finished. */
typedef void (*bt_store_blob_cb)(bt_err_t err, const uint8_t *data, size_t len, void *arg);
bt_err_t bt_store_read_finished_run(bt_store_t *st, const char *workflow_id, const char *run_id,
                                    bt_store_blob_cb cb, void *arg);

/* The cluster name and node id the store writes with. */
const char *bt_store_cluster(const bt_store_t *st);
const char *bt_store_node(const bt_store_t *st);

#endif
