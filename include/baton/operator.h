/* Operators: what a task does. The dispatcher (src/sched/dispatcher.c)
 * drives every operator through the same calls, each asynchronous on the
 * daemon's loop, each answered exactly once through a bt_op_cb (never from
 * inside the call itself; a call that fails synchronously returns an error
 * and gets no callback).
 *
 *   submit  start the work of one attempt. Called only after the attempt's
 *           `submitting` state is committed (the write-ahead), with every
 *           template already rendered. Remote names carry the task-run key,
 *           so a later lookup can find the work.
 *   lookup  after a takeover (or an unknown outcome), find work submitted
 *           under this run key. BT_OP_NOT_FOUND says only what the service
 *           shows now: the dispatcher believes it once no earlier call can
 *           still take effect and a second lookup a settle time later agrees
 *           (docs/failover.md, Rule 4).
 *   poll    report on running work by its stored handle.
 *   cancel  stop the remote work (timeouts, `batonctl task kill`).
 *   sweep   (may be NULL: no twins possible) after a submission that
 *           followed a lookup, find every remote resource carrying this run
 *           key and cancel all but one before they run: the first created
 *           while the attempt runs (its handle may change: the answer's
 *           handle is the one kept), the recorded one once it has ended.
 *           SUCCESS with `duplicates` set to how many were cancelled.
 *
 * Every request that changes remote state is a side effect of the transport
 * (http.h): it leaves only while this node may act, checked right before its
 * first byte. A call whose side effect was not sent answers BT_OP_NOT_SENT,
 * a definite outcome: nothing happened, and the dispatcher asks again later
 * without a lookup. A submission whose request may have reached the service
 * but got no answer is BT_OP_TRANSIENT: its outcome is unknown.
 *
 * A malformed or unexpected response fails the attempt with the reason
 * recorded (BT_OP_FAILED + message); transport trouble that may succeed
 * later is BT_OP_TRANSIENT, and the dispatcher asks again.
 *
 * The HTTP families (EMR, Livy, Genie) keep this contract in one place:
 * src/ops/op_call.h owns the life of a call (entries, the one answer,
 * orphaning at shutdown, requests and the TRANSIENT/NOT_SENT mapping, the
 * sweep's bookkeeping); each family supplies its requests, answers and
 * verdicts. */
#ifndef BATON_OPERATOR_H
#define BATON_OPERATOR_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>

#include "baton.pb-c.h"
#include "baton/err.h"

typedef enum bt_op_status {
    BT_OP_RUNNING,    /* accepted / still running; handle set */
    BT_OP_SUCCESS,
    BT_OP_FAILED,     /* the work failed: error_code/message/detail say why */
    BT_OP_TRANSIENT,  /* could not tell (throttled, 5xx, connection): ask again */
    BT_OP_NOT_FOUND,  /* lookup: nothing was submitted under this key */
    BT_OP_NOT_SENT,   /* nothing was sent, or refused before any work: ask again */
} bt_op_status_t;

#define BT_OP_MAX_OUTPUTS 16

typedef struct bt_op_result {
    bt_op_status_t status;
    const Baton__V1__RemoteHandle *handle; /* may be NULL: keep the stored one */
    size_t n_outputs;
    const char *output_keys[BT_OP_MAX_OUTPUTS];
    const char *output_values[BT_OP_MAX_OUTPUTS];
    const char *error_code;   /* "remote_failed", "bad_response", ... */
    const char *message;
    const char *detail;       /* log tail, state-change reason */
    const char *remote_state; /* the service's own word for the state */
    uint64_t retry_after_ms;  /* TRANSIENT: the service asked us to wait */
    unsigned duplicates;      /* sweep: twins cancelled */
    unsigned twins;           /* sweep: resources with the key besides the one kept
                               * (cancelled, or ended already) */
} bt_op_result_t;

/* Everything in *res is valid during the callback only. */
typedef void (*bt_op_cb)(const bt_op_result_t *res, void *arg);

typedef struct bt_op_call {
    const Baton__V1__TaskSpec *spec;  /* rendered; operator oneof set */
    const Baton__V1__TaskRun *run;    /* run_key, attempt, handle, started_ms */
    bt_op_cb cb;
    void *arg;
} bt_op_call_t;

/* max_calls for the operators of an HTTP service. The transport opens a
 * few connections per service (8 by default): calls beyond them only wait
 * in its per-host queue, each holding its rendered spec, a copy of the run,
 * the operator's request and the HTTP request. With 10,000 jobs polled
 * every 30 s a backlog of polls once held 9 MB that way (bench/ops_bench
 * under heaptrack). Past the bound a call waits in the dispatcher, due and
 * holding nothing, until an answer frees a place. */
#define BT_OP_HTTP_MAX_CALLS 128

typedef struct bt_operator {
    const char *name;                 /* the YAML key, e.g. "livy_batch" */
    Baton__V1__TaskSpec__OperatorCase which;
    uint64_t poll_interval_ms;        /* default between polls */
    uint32_t max_calls;               /* calls in flight at most; 0: no bound */
    bt_err_t (*submit)(void *ctx, const bt_op_call_t *call);
    bt_err_t (*lookup)(void *ctx, const bt_op_call_t *call);
    bt_err_t (*poll)(void *ctx, const bt_op_call_t *call);
    bt_err_t (*cancel)(void *ctx, const bt_op_call_t *call);
    bt_err_t (*sweep)(void *ctx, const bt_op_call_t *call); /* NULL: no twins */
    void *ctx;
} bt_operator_t;

/* Each service family has one constructor of this shape in its own header
 * (include/baton/livy.h, genie.h, emr.h):
 *   bt_err_t bt_<svc>_operators(struct ev_loop *loop, bt_http_t *http,
 *                               const bt_config_t *cfg, bt_operator_t **out,
 *                               size_t max, size_t *n);
 * appending its operators to out[*n..max); and one bt_<svc>_operators_free.
 * A family whose endpoint is not configured adds nothing; a task that needs
 * it then fails with "no operator" rather than the daemon refusing to start. */

/* The test_op operator (proto TestOp), built only with BATON_TEST_OPERATORS.
 * With a `dir` (or $BATON_TEST_OP_DIR) each job is a file named after the
 * run key, outside the daemon, and every real submission appends a line to
 * DIR/submissions.log, so tests can count them across a takeover. Without
 * one it is an in-memory no-op (for benchmarks). */
bt_err_t bt_test_op_new(struct ev_loop *loop, bt_operator_t **out);
void bt_test_op_free(bt_operator_t *op);

#endif
