/* One task's attempts through the state machine:
 *
 *   scheduled -> queued -> submitting -> running -> success
 *        |                     |            |-----> failed | timed_out
 *        |                     |            '-----> up_for_retry (+ a new
 *        |                     '--> (lookup after takeover)     attempt)
 *        '--> skipped | upstream_failed       (trigger rules)
 *
 * Every arrow is one fenced compare-and-set (store.h), applied to the
 * in-memory record only once committed. Operators are called only for a
 * committed `submitting` (the write-ahead) or `running` state. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "baton/clock.h"
#include "baton/log.h"
#include "baton/backoff.h"
#include "baton/trigger.h"
#include "sched/dispatch.h"
#include "sched/render.h"
#include "sched/task_moves.h"

#define S(x) BATON__V1__TASK_STATE__TASK_STATE_##x

enum { K_WRITE, K_CREATE, K_MARK, K_SUBMIT, K_LOOKUP, K_POLL, K_CANCEL, K_KILL, K_SWEEP };

bt_task_run_t *task_run_copy(const bt_task_run_t *r)
{
    return bt_pb_clone(r);
}

Baton__V1__TaskState task_state(const task_t *t)
{
    return t->cur->state;
}

int task_is_active(const task_t *t)
{
    Baton__V1__TaskState s = t->cur->state;
    return s == S(QUEUED) || s == S(SUBMITTING) || s == S(RUNNING);
}

int task_ready(const task_t *t, int *decision)
{
    bt_upstream_counts_t c = {0};
    for (size_t i = 0; i < t->spec->n_depends_on; i++) {
        for (size_t k = 0; k < t->run->ntasks; k++) {
            task_t *u = &t->run->tasks[k];
            if (!strcmp(u->spec->id, t->spec->depends_on[i])) {
                bt_upstream_count(&c, u->pending ? S(UNSPECIFIED) : task_state(u));
                break;
            }
        }
    }
    *decision = bt_trigger_decide(t->spec->trigger_rule, &c);
    return *decision == BT_TRIGGER_RUN;
}

/* ------------------------------------------------------------ writes */

static void on_written(bt_err_t err, const char *detail, void *arg)
{
    inflight_t *f = arg;
    bt_dispatcher_t *d = f->d;
    int kind = f->kind;
    d->task_writes--;
    if (f->gen == d->gen) {
        task_t *t = f->task;
        t->pending--;
        t->run->dirty = 1; /* its dependants and the run's end may move */
        if (disp_write_ok(d, err, detail, kind == K_CREATE ? "retry attempt" : "task")) {
            baton__v1__task_run__free_unpacked(t->cur, NULL);
            t->cur = f->rec;
            t->committed_ms = bt_now_ms();
            f->rec = NULL;
            if (kind != K_CREATE)
                d->stats.moves[f->from][t->cur->state]++;
            if (kind == K_CREATE) {
                /* a new attempt: nothing of the last one's doubts */
                t->next_attempt = NULL;
                t->needs_lookup = t->after_lookup = 0;
                t->not_found_mono = t->sweep_mono = 0;
                t->sweep_tries = 0;
                t->next_poll_ms = 0;
            }
            d->stats.transitions++;
            disp_kick(d);
        } else if (kind == K_CREATE) {
            t->next_attempt = NULL;
        }
    }
    if (f->rec)
        baton__v1__task_run__free_unpacked(f->rec, NULL);
    disp_inflight_done(f);
    if (kind == K_MARK)
        d->drain_marking--;
    if (d->draining)
        disp_drain_check(d);
}

/* Sends `rec` (a modified copy of t->cur) as a transition from t's state. */
static void on_illegal_event(bt_err_t err, const char *detail, void *arg)
{
    (void)detail;
    (void)arg;
    if (err != BT_OK && err != BT_E_CANCELLED)
        bt_warn("dispatch: illegal_move event: %s", bt_strerror(err));
}

/* The one gate of the state machine: sends `rec` as a move from `from`
 * (t's state, or the state an earlier write of this turn moves it to),
 * if task_moves.c's table has it. */
static int task_move(bt_dispatcher_t *d, task_t *t, Baton__V1__TaskState from,
                     bt_task_run_t *rec, int kind)
{
    const char *why = task_move_why(from, rec->state);
    if (!why) {
        bt_error("dispatch: %s: %s -> %s is not a move of the state machine (a bug); refused",
                 rec->run_key, bt_task_state_name(from), bt_task_state_name(rec->state));
#ifdef BATON_ABORT_ON_BUG
        abort();
#endif
        char detail[96];
        snprintf(detail, sizeof detail, "{\"from\": \"%s\", \"to\": \"%s\"}",
                 bt_task_state_name(from), bt_task_state_name(rec->state));
        d->stats.illegal_moves++;
        bt_store_event(d->o.store, d->epoch, "illegal_move", rec->run_key, detail,
                       on_illegal_event, NULL);
        baton__v1__task_run__free_unpacked(rec, NULL);
        return 0;
    }
    bt_debug("dispatch: %s: %s -> %s (%s)", rec->run_key, bt_task_state_name(from),
             bt_task_state_name(rec->state), why);
    inflight_t *f = disp_inflight(d, t, kind);
    if (!f) {
        baton__v1__task_run__free_unpacked(rec, NULL);
        return 0;
    }
    f->rec = rec;
    f->from = from;
    t->pending++;
    d->task_writes++;
    bt_err_t e = bt_store_task_transition(d->o.store, d->epoch, from, rec, on_written, f);
    if (e != BT_OK) {
        t->pending--;
        d->task_writes--;
        f->rec = NULL;
        baton__v1__task_run__free_unpacked(rec, NULL);
        disp_inflight_done(f);
        disp_reload(d, bt_strerror(e));
        return 0;
    }
    return 1;
}

static void write_task_from(bt_dispatcher_t *d, task_t *t, Baton__V1__TaskState from,
                            bt_task_run_t *rec)
{
    task_move(d, t, from, rec, K_WRITE);
}

static void write_task(bt_dispatcher_t *d, task_t *t, bt_task_run_t *rec)
{
    write_task_from(d, t, t->cur->state, rec);
}

static bt_task_run_t *next_state(task_t *t, Baton__V1__TaskState s)
{
    bt_task_run_t *rec = task_run_copy(t->cur);
    if (rec)
        rec->state = s;
    return rec;
}

static void set_error(bt_task_run_t *rec, const char *code, const char *msg, const char *detail,
                      const char *remote_state)
{
    if (!rec->error) {
        rec->error = malloc(sizeof *rec->error);
        if (!rec->error)
            return;
        baton__v1__task_error__init(rec->error);
    }
    bt_pb_set_str(&rec->error->code, code);
    bt_pb_set_str(&rec->error->message, msg);
    bt_pb_set_str(&rec->error->detail, detail);
    bt_pb_set_str(&rec->error->remote_state, remote_state);
    rec->error->at_ms = bt_now_ms();
}

static void copy_handle(bt_task_run_t *rec, const Baton__V1__RemoteHandle *h);

/* The attempt failed (or timed out): retry if attempts remain, else final. */
static void fail_attempt(bt_dispatcher_t *d, task_t *t, Baton__V1__TaskState final,
                         const char *code, const char *msg, const char *detail,
                         const char *remote_state)
{
    int64_t now = bt_now_ms();
    /* a task the operator cannot even send (a bad URL, a credential
     * batond.yaml lacks) fails the same way on every attempt: no retry */
    int permanent = code && (!strcmp(code, "bad_spec") || !strcmp(code, "invalid_spec") ||
                             !strcmp(code, "no_operator"));
    int retry = t->cur->attempt <= t->spec->retries && !permanent;
    bt_task_run_t *rec = next_state(t, retry ? S(UP_FOR_RETRY) : final);
    if (!rec)
        return;
    set_error(rec, code, msg, detail, remote_state);
    rec->ended_ms = now;
    bt_info("dispatch: %s %s: %s", rec->run_key, retry ? "failed, will retry" : "failed", msg);
    if (!retry) {
        write_task(d, t, rec);
        return;
    }
    uint64_t delay = bt_backoff_ms(t->spec->retry_backoff_ms, t->spec->retry_backoff_max_ms,
                                   t->cur->attempt + 1, disp_random(d));
    rec->next_retry_ms = now + (int64_t)delay;
    write_task(d, t, rec);
    task_new_attempt(d, t, now + (int64_t)delay);
}

void task_new_attempt(bt_dispatcher_t *d, task_t *t, int64_t due)
{
    bt_task_run_t *next = bt_task_attempt_new(t->cur->workflow_id, t->cur->run_id,
                                              t->cur->task_id, t->cur->attempt + 1, due);
    if (!next)
        return;
    inflight_t *f = disp_inflight(d, t, K_CREATE);
    if (!f) {
        baton__v1__task_run__free_unpacked(next, NULL);
        return;
    }
    f->rec = next;
    t->next_attempt = next;
    t->pending++;
    d->task_writes++;
    if (bt_store_task_create(d->o.store, d->epoch, next, on_written, f) != BT_OK) {
        t->pending--;
        d->task_writes--;
        t->next_attempt = NULL;
        f->rec = NULL;
        disp_inflight_done(f);
        baton__v1__task_run__free_unpacked(next, NULL);
        disp_reload(d, "cannot send a new attempt");
    }
}

/* ------------------------------------------------------------ operators */

/* The index in o.ops of the operator for spec, or o.nops. */
static size_t operator_index(bt_dispatcher_t *d, const bt_task_spec_t *spec)
{
    size_t i = 0;
    while (i < d->o.nops && !(d->o.ops[i] && d->o.ops[i]->which == spec->operator_case))
        i++;
    return i;
}

static const bt_operator_t *operator_for(bt_dispatcher_t *d, const bt_task_spec_t *spec)
{
    size_t i = operator_index(d, spec);
    return i < d->o.nops ? d->o.ops[i] : NULL;
}

static const char *output_of(const char *task, const char *name, void *arg)
{
    run_t *r = arg;
    for (size_t i = 0; i < r->ntasks; i++) {
        const bt_task_run_t *c = r->tasks[i].cur;
        if (strcmp(r->tasks[i].spec->id, task))
            continue;
        for (size_t k = 0; k < c->n_outputs; k++)
            if (!strcmp(c->outputs[k]->key, name))
                return c->outputs[k]->value;
    }
    return NULL;
}

static void copy_handle(bt_task_run_t *rec, const Baton__V1__RemoteHandle *h)
{
    if (!h)
        return;
    if (!rec->handle) {
        if (!(rec->handle = malloc(sizeof *rec->handle)))
            return;
        baton__v1__remote_handle__init(rec->handle);
    }
    Baton__V1__RemoteHandle *o = rec->handle;
#define COPY_STR(f)                                                                               \
    if (h->f && *h->f)                                                                            \
    bt_pb_set_str(&o->f, h->f)
    COPY_STR(emr_cluster_id);
    COPY_STR(emr_step_id);
    COPY_STR(genie_job_id);
    COPY_STR(endpoint);
    COPY_STR(remote_state);
#undef COPY_STR
    if (h->livy_batch_id >= 0)
        o->livy_batch_id = h->livy_batch_id;
    if (h->livy_session_id >= 0)
        o->livy_session_id = h->livy_session_id;
    if (h->livy_statement_id >= 0)
        o->livy_statement_id = h->livy_statement_id;
}

static void add_outputs(bt_task_run_t *rec, const bt_op_result_t *res)
{
    for (size_t i = 0; i < res->n_outputs; i++) {
        size_t k;
        for (k = 0; k < rec->n_outputs; k++)
            if (!strcmp(rec->outputs[k]->key, res->output_keys[i]))
                break;
        if (k == rec->n_outputs) {
            Baton__V1__TaskRun__OutputsEntry **arr =
                realloc(rec->outputs, (rec->n_outputs + 1) * sizeof *arr);
            if (!arr)
                return;
            rec->outputs = arr;
            if (!(arr[k] = malloc(sizeof *arr[k])))
                return;
            baton__v1__task_run__outputs_entry__init(arr[k]);
            arr[k]->key = arr[k]->value = NULL;
            bt_pb_set_str(&arr[k]->key, res->output_keys[i]);
            rec->n_outputs++;
        }
        bt_pb_set_str(&rec->outputs[k]->value, res->output_values[i]);
    }
}

/* Submissions (and lookups) in flight at most; the rest wait, committed in
 * `submitting`, for an answer to free a place. */
#define MAX_SUBMITS_IN_FLIGHT 512

/* A submission or lookup that could not be made (throttled, not sent) is
 * asked again this much later, unless the service said when. */
#define SUBMIT_RETRY_MS 2000

/* Polls are due on 50 ms boundaries: those that come due together are made
 * in one turn. A turn looks at every task that is due, and with thousands
 * of running jobs a turn per poll would come every few milliseconds; a
 * 30 s poll does not mind 50 ms. */
#define POLL_SLOT_MS 50
static int64_t poll_slot(int64_t when)
{
    return (when + POLL_SLOT_MS - 1) / POLL_SLOT_MS * POLL_SLOT_MS;
}

static int64_t retry_in(const bt_op_result_t *res, uint64_t dflt)
{
    return (int64_t)(res->retry_after_ms > dflt ? res->retry_after_ms : dflt);
}

/* The attempt was killed by an operator (batonctl task kill). */
static void record_killed(bt_dispatcher_t *d, task_t *t, const bt_op_result_t *res)
{
    bt_task_run_t *rec = next_state(t, S(CANCELLED));
    if (!rec)
        return;
    int reported = res && res->status == BT_OP_FAILED;
    set_error(rec, "killed",
              reported ? "killed by an operator; the remote side reported"
                       : "killed by an operator (batonctl task kill)",
              reported ? res->message : NULL, res ? res->remote_state : NULL);
    rec->ended_ms = bt_now_ms();
    write_task(d, t, rec);
}

/* Work the attempt started (or found) runs, or already ended well: the
 * move out of `submitting`, with the handle. One found by a lookup, or
 * submitted after one, gets a duplicate sweep a settle time later. */
static void record_started(bt_dispatcher_t *d, task_t *t, int kind, const bt_op_result_t *res)
{
    int done = res->status == BT_OP_SUCCESS;
    bt_task_run_t *rec = next_state(t, done ? S(SUCCESS) : S(RUNNING));
    if (!rec)
        return;
    copy_handle(rec, res->handle);
    if (done) {
        add_outputs(rec, res);
        rec->ended_ms = bt_now_ms();
    }
    if (kind == K_LOOKUP || t->after_lookup) {
        rec->needs_sweep = 1; /* a successor sweeps too, should we go first */
        t->sweep_mono = bt_mono_ms() + d->o.settle_ms;
    }
    rec->outcome_unknown = 0;
    t->needs_lookup = 0;
    t->not_found_mono = 0;
    t->after_lookup = 0;
    write_task(d, t, rec);
}

/* Rule 4: a lookup's NOT_FOUND is believed only when the lookup started
 * after every earlier call for this key can have taken effect, and a
 * second one, a settle time after the first that counted, agrees. */
static void judge_not_found(bt_dispatcher_t *d, task_t *t, int64_t started)
{
    int64_t settle = d->o.settle_ms;
    if (started < t->resolve_after_mono) {
        t->not_found_mono = 0;
        t->next_poll_ms = disp_wall_of(t->resolve_after_mono);
        d->stats.not_found_waits++;
        bt_info("dispatch: %s: not found, but an earlier call may still land; "
                "looking again in %" PRId64 " ms",
                t->cur->run_key, t->resolve_after_mono - bt_mono_ms());
    } else if (settle && !t->not_found_mono) {
        t->not_found_mono = started;
        t->next_poll_ms = disp_wall_of(started + settle);
        d->stats.not_found_waits++;
    } else if (settle && started < t->not_found_mono + settle) {
        t->next_poll_ms = disp_wall_of(t->not_found_mono + settle);
    } else {
        bt_info("dispatch: %s: nothing carries this run key; submitting", t->cur->run_key);
        t->needs_lookup = 0;
        t->not_found_mono = 0;
        t->after_lookup = 1;
        t->next_poll_ms = 0;
    }
}

static void on_submit_answer(bt_dispatcher_t *d, task_t *t, inflight_t *f,
                             const bt_op_result_t *res)
{
    int64_t now = bt_now_ms();
    switch (res->status) {
    case BT_OP_RUNNING:
    case BT_OP_SUCCESS:
        record_started(d, t, f->kind, res);
        break;
    case BT_OP_FAILED:
        fail_attempt(d, t, S(FAILED), res->error_code ? res->error_code : "remote_failed",
                     res->message ? res->message : "the remote work failed", res->detail,
                     res->remote_state);
        break;
    case BT_OP_NOT_FOUND:
        if (f->kind == K_LOOKUP)
            judge_not_found(d, t, f->started_mono);
        else
            fail_attempt(d, t, S(FAILED), "bad_response", "the operator answered a submission "
                         "with NOT_FOUND", NULL, res->remote_state);
        break;
    case BT_OP_TRANSIENT:
        if (f->kind == K_SUBMIT) {
            /* it may have reached the service: look it up, and believe a
             * "not found" only once it can no longer take effect */
            t->needs_lookup = 1;
            t->not_found_mono = 0;
            t->resolve_after_mono = bt_mono_ms() + d->o.transit_bound_ms;
        }
        t->next_poll_ms = now + retry_in(res, SUBMIT_RETRY_MS);
        break;
    case BT_OP_NOT_SENT: /* nothing happened: the same again, later */
    default:
        t->next_poll_ms = now + retry_in(res, SUBMIT_RETRY_MS);
        break;
    }
}

static void on_poll_answer(bt_dispatcher_t *d, task_t *t, const bt_op_result_t *res,
                           uint64_t interval)
{
    int64_t now = bt_now_ms();
    bt_task_run_t *rec;
    switch (res->status) {
    case BT_OP_RUNNING:
        t->next_poll_ms = poll_slot(now + (int64_t)interval);
        break;
    case BT_OP_SUCCESS:
        if ((rec = next_state(t, S(SUCCESS)))) {
            copy_handle(rec, res->handle);
            add_outputs(rec, res);
            rec->ended_ms = now;
            write_task(d, t, rec);
        }
        break;
    case BT_OP_FAILED:
        /* keep what the service said last (e.g. FAILED) with the record */
        if (res->handle && t->cur->handle)
            copy_handle(t->cur, res->handle);
        fail_attempt(d, t, S(FAILED), res->error_code ? res->error_code : "remote_failed",
                     res->message ? res->message : "the remote work failed", res->detail,
                     res->remote_state);
        break;
    case BT_OP_NOT_FOUND:
        fail_attempt(d, t, S(FAILED), "remote_lost", "the remote work is gone", NULL,
                     res->remote_state);
        break;
    default:
        t->next_poll_ms = now + retry_in(res, interval);
        break;
    }
}

/* A timeout's cancel (K_CANCEL) or an operator's kill (K_KILL). */
static void on_cancel_answer(bt_dispatcher_t *d, task_t *t, inflight_t *f,
                             const bt_op_result_t *res, uint64_t interval)
{
    switch (res->status) {
    case BT_OP_RUNNING:
    case BT_OP_SUCCESS:
    case BT_OP_FAILED:
        if (res->handle && t->cur->handle && res->status == BT_OP_FAILED)
            copy_handle(t->cur, res->handle);
        if (f->kind == K_KILL)
            record_killed(d, t, res);
        else
            fail_attempt(d, t, S(TIMED_OUT), "timed_out", "execution timeout; cancelled",
                         res->status == BT_OP_FAILED ? res->message : NULL, res->remote_state);
        break;
    case BT_OP_NOT_FOUND:
        fail_attempt(d, t, S(FAILED), "remote_lost", "the remote work is gone", NULL,
                     res->remote_state);
        break;
    default: /* asked again: by the next turn's timeout check, or the kill request */
        t->next_poll_ms = bt_now_ms() + retry_in(res, interval);
        break;
    }
}

static void on_duplicate_event(bt_err_t err, const char *detail, void *arg)
{
    (void)arg;
    if (err != BT_OK && err != BT_E_CANCELLED)
        bt_warn("dispatch: duplicate_cancelled event: %s%s%s", bt_strerror(err),
                detail ? ": " : "", detail ? detail : "");
}

/* A sweep asked again this often at most: the run it keeps open (its twins
 * are the run's) must end even when the service stays away. */
#define SWEEP_TRIES 10

static void on_sweep_answer(bt_dispatcher_t *d, task_t *t, const bt_op_result_t *res)
{
    if ((res->status == BT_OP_TRANSIENT || res->status == BT_OP_NOT_SENT) &&
        ++t->sweep_tries < SWEEP_TRIES) {
        t->sweep_mono = bt_mono_ms() + d->o.settle_ms;
        return;
    }
    t->sweep_mono = 0;
    d->stats.sweeps++;
    if (res->status != BT_OP_SUCCESS) {
        bt_warn("dispatch: %s: duplicate sweep: %s", t->cur->run_key,
                res->message ? res->message : "failed");
        return;
    }
    if (!res->twins && !res->duplicates)
        return;
    /* a twin that had ended already is found, not cancelled: it ran */
    d->stats.duplicates_found += res->twins;
    d->stats.duplicates_cancelled += res->duplicates;
    bt_warn("dispatch: %s: %u twin(s) found, %u cancelled: %s", t->cur->run_key, res->twins,
            res->duplicates, res->detail ? res->detail : "");
    json_t *j = json_pack("{s:i, s:i, s:s, s:s}", "found", (int)res->twins, "cancelled",
                          (int)res->duplicates, "twins", res->detail ? res->detail : "", "kept",
                          res->handle && res->handle->emr_step_id && *res->handle->emr_step_id
                              ? res->handle->emr_step_id
                          : res->handle && res->handle->emr_cluster_id ? res->handle->emr_cluster_id
                                                                       : "");
    char *detail = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    bt_store_event(d->o.store, d->epoch,
                   res->duplicates ? "duplicate_cancelled" : "duplicate_found", t->cur->run_key,
                   detail, on_duplicate_event, NULL);
    free(detail);
    /* the twin kept is the first created: the attempt follows it from now */
    bt_task_run_t *rec;
    if (task_state(t) == S(RUNNING) && res->handle && (rec = next_state(t, S(RUNNING)))) {
        copy_handle(rec, res->handle);
        write_task(d, t, rec);
    }
}

/* An operator's answer for an attached call: applied, then f freed. */
void task_op_result(inflight_t *f, const bt_op_result_t *res)
{
    bt_dispatcher_t *d = f->d;
    task_t *t = f->task;
    uint64_t interval = 1000;
    const bt_operator_t *op = operator_for(d, t->spec);
    if (op && op->poll_interval_ms)
        interval = op->poll_interval_ms;
    t->op_busy = 0;
    t->wake_ms = 0;
    t->run->dirty = 1; /* the run may end (a sweep done), or its tasks move */
    if (d->draining && !f->is_side_effect) {
        /* a handoff: reads are the successor's to make again */
        disp_inflight_done(f);
        return;
    }
    switch (f->kind) {
    case K_SUBMIT:
    case K_LOOKUP:
        on_submit_answer(d, t, f, res);
        break;
    case K_POLL:
        on_poll_answer(d, t, res, interval);
        break;
    case K_CANCEL:
    case K_KILL:
        on_cancel_answer(d, t, f, res, interval);
        break;
    case K_SWEEP:
        on_sweep_answer(d, t, res);
        break;
    }
    disp_kick(d);
    disp_inflight_done(f);
}

static void on_op_result(const bt_op_result_t *res, void *arg)
{
    inflight_t *f = arg;
    bt_dispatcher_t *d = f->d;
    if (f->epoch != d->epoch) {
        /* an earlier leadership's: its successor judges what it did */
        bt_debug("dispatch: %s: answer of epoch %" PRIu64 " dropped", f->run_key, f->epoch);
        disp_inflight_done(f);
        return;
    }
    if (!f->task) {
        /* detached by a pause or a reload: applied once attached again */
        if (!(f->parked = parked_new(res))) {
            bt_warn("dispatch: %s: out of memory keeping an answer; the task is looked up",
                    f->run_key);
            disp_inflight_done(f);
        }
        return;
    }
    task_op_result(f, res);
}

/* A call could not be made: the attempt fails over it, but a sweep only
 * gives up (the work it looks after may have ended well already). */
static void call_failed(bt_dispatcher_t *d, task_t *t, int kind, const char *code,
                        const char *msg)
{
    if (kind == K_SWEEP) {
        bt_warn("dispatch: %s: duplicate sweep not made: %s", t->cur->run_key, msg);
        t->sweep_mono = 0;
        return;
    }
    fail_attempt(d, t, S(FAILED), code, msg, NULL, NULL);
}

/* 0: no place for the call now (it is due again next turn); 1: made, or the
 * attempt failed over it. */
static int op_call(bt_dispatcher_t *d, task_t *t, int kind)
{
    size_t opi = operator_index(d, t->spec);
    const bt_operator_t *op = opi < d->o.nops ? d->o.ops[opi] : NULL;
    char err[512] = "";
    if (!op) {
        fail_attempt(d, t, S(FAILED), "no_operator", "this build has no operator for this task",
                     NULL, NULL);
        return 1;
    }
    bt_err_t (*fn)(void *, const bt_op_call_t *) = kind == K_SUBMIT   ? op->submit
                                                   : kind == K_LOOKUP ? op->lookup
                                                   : kind == K_POLL   ? op->poll
                                                   : kind == K_SWEEP  ? op->sweep
                                                                      : op->cancel; /* and kill */
    if (kind == K_SWEEP && !fn) {
        t->sweep_mono = 0; /* this operator cannot have twins */
        return 1;
    }
    if (op->max_calls && d->op_calls[opi] >= op->max_calls) {
        d->calls_waiting = 1;
        d->stats.calls_deferred++;
        return 0;
    }
    inflight_t *f = disp_inflight(d, t, kind);
    if (!f)
        return 0;
    if (!(f->run_key = strdup(t->cur->run_key))) {
        disp_inflight_done(f);
        return 0;
    }
    f->is_call = 1;
    f->op = opi;
    f->epoch = d->epoch;
    f->started_mono = bt_mono_ms();
    d->op_calls[opi]++;
    if (++d->stats.calls_in_flight > d->stats.calls_in_flight_max)
        d->stats.calls_in_flight_max = d->stats.calls_in_flight;
    bt_template_ctx_t ctx = {.run_id = t->run->rec->run_id,
                             .run_date = t->run->date,
                             .logical_time = t->run->logical,
                             .output = output_of,
                             .arg = t->run};
    if (task_spec_render(t->packed, &ctx, &f->rendered, err, sizeof err) != BT_OK ||
        !(f->call_run = task_run_copy(t->cur))) {
        disp_inflight_done(f);
        call_failed(d, t, kind, "template", err[0] ? err : "out of memory");
        return 1;
    }
    bt_op_call_t call = {.spec = f->rendered, .run = f->call_run, .cb = on_op_result, .arg = f};
    t->op_busy = 1;
    if (kind == K_SUBMIT || kind == K_LOOKUP) {
        f->is_submit = 1;
        d->n_submits++;
    }
    if (kind != K_LOOKUP && kind != K_POLL) {
        f->is_side_effect = 1;
        d->n_side_effects++;
    }
    bt_err_t e = fn ? fn(op->ctx, &call) : BT_E_INVAL;
    if (e != BT_OK) {
        t->op_busy = 0;
        disp_inflight_done(f);
        call_failed(d, t, kind, "operator", bt_strerror(e));
        return 1;
    }
    if (kind == K_SUBMIT)
        d->stats.submits++;
    else if (kind == K_LOOKUP)
        d->stats.lookups++;
    else if (kind == K_POLL)
        d->stats.polls++;
    return 1;
}

/* Rule 4 for a task that a load finds in `submitting` (a call of ours for
 * it, if any, is attached after this). At a takeover from a leader that
 * released cleanly, its record says whether its outcome is known: without
 * outcome_unknown nothing was ever sent for it. Otherwise (a crash, a
 * partition, a reload of our own) it is looked up, and a NOT_FOUND counts
 * only from the transit bound after this leadership began (a takeover) or
 * from what the reload carried over. */
void task_loaded_submitting(bt_dispatcher_t *d, task_t *t, int64_t carried)
{
    int takeover = d->epoch_loads == 0;
    t->not_found_mono = 0;
    if (takeover && d->inherited_clean && !t->cur->outcome_unknown) {
        t->needs_lookup = 0;
        return;
    }
    t->needs_lookup = 1;
    t->resolve_after_mono = takeover ? d->started_mono + d->o.transit_bound_ms : carried;
}

int task_mark_unknown(bt_dispatcher_t *d, task_t *t)
{
    if (task_state(t) != S(SUBMITTING) || !t->needs_lookup || t->cur->outcome_unknown)
        return 0;
    bt_task_run_t *rec = next_state(t, S(SUBMITTING));
    if (!rec)
        return 0;
    rec->outcome_unknown = 1;
    return task_move(d, t, S(SUBMITTING), rec, K_MARK);
}

/* ------------------------------------------------------------ the step */

void task_queue(bt_dispatcher_t *d, task_t *t, int64_t now)
{
    bt_task_run_t *rec = next_state(t, S(QUEUED));
    if (!rec)
        return;
    rec->queued_ms = now;
    if (d->lag_cb) {
        /* due -> queued: from the moment it could run (due, and the last
         * upstream finished) to now */
        int64_t eligible = t->cur->due_ms ? t->cur->due_ms : now, ended = eligible;
        if (t->committed_ms > eligible)
            eligible = t->committed_ms;
        for (size_t i = 0; i < t->spec->n_depends_on; i++)
            for (size_t k = 0; k < t->run->ntasks; k++) {
                const task_t *u = &t->run->tasks[k];
                if (strcmp(u->spec->id, t->spec->depends_on[i]))
                    continue;
                if (u->committed_ms > eligible)
                    eligible = u->committed_ms;
                if (u->cur->ended_ms > ended)
                    ended = u->cur->ended_ms;
            }
        d->lag_cb(now - eligible, now - (ended < eligible ? ended : eligible), d->lag_arg);
    }
    /* The slot is ours and nothing else stands between queued and the
     * write-ahead: both transitions go into this turn's transaction, each
     * a compare-and-set of its own (the second from queued). The operator
     * is still called only once `submitting` has committed. */
    bt_task_run_t *sub = task_run_copy(rec);
    write_task(d, t, rec);
    if (sub) {
        sub->state = S(SUBMITTING);
        sub->started_ms = now;
        write_task_from(d, t, S(QUEUED), sub);
    }
}

void task_step(bt_dispatcher_t *d, task_t *t, int64_t now, int64_t *wake)
{
    bt_task_run_t *rec;
    int decision;
    if (t->pending || t->op_busy)
        return;
    if (t->sweep_mono) {
        /* twins of work submitted after a lookup: whatever its state now */
        int64_t mono = bt_mono_ms();
        if (mono >= t->sweep_mono) {
            op_call(d, t, K_SWEEP);
            return;
        }
        wake_at_ms(wake, now + (t->sweep_mono - mono));
    }
    switch (t->cur->state) {
    case S(SCHEDULED):
        if (t->cur->due_ms > now) {
            wake_at_ms(wake, t->cur->due_ms);
            return;
        }
        task_ready(t, &decision);
        if (decision == BT_TRIGGER_SKIP || decision == BT_TRIGGER_UPSTREAM_FAILED) {
            if ((rec = next_state(t, decision == BT_TRIGGER_SKIP ? S(SKIPPED)
                                                                 : S(UPSTREAM_FAILED)))) {
                rec->ended_ms = now;
                write_task(d, t, rec);
            }
        }
        return; /* RUN: the caller queues it by pool and priority */
    case S(QUEUED):
        if ((rec = next_state(t, S(SUBMITTING)))) {
            rec->started_ms = now;
            write_task(d, t, rec);
        }
        return;
    case S(SUBMITTING):
        /* committed, so it can wait for its turn: each submission in
         * flight holds a request and its body until the service answers */
        if (t->next_poll_ms > now) {
            wake_at_ms(wake, t->next_poll_ms); /* asked again later (Rule 4, throttling) */
            return;
        }
        if (d->n_submits >= MAX_SUBMITS_IN_FLIGHT)
            return;
        op_call(d, t, t->needs_lookup ? K_LOOKUP : K_SUBMIT);
        return;
    case S(RUNNING):
        if (t->spec->timeout_ms && t->cur->started_ms &&
            now >= t->cur->started_ms + (int64_t)t->spec->timeout_ms) {
            bt_info("dispatch: %s: execution timeout (%" PRIu64 " ms); cancelling",
                    t->cur->run_key, t->spec->timeout_ms);
            op_call(d, t, K_CANCEL);
            return;
        }
        if (now >= t->next_poll_ms) {
            op_call(d, t, K_POLL);
            return;
        }
        wake_at_ms(wake, t->next_poll_ms);
        if (t->spec->timeout_ms && t->cur->started_ms)
            wake_at_ms(wake, t->cur->started_ms + (int64_t)t->spec->timeout_ms);
        return;
    default:
        return;
    }
}

int task_kill(bt_dispatcher_t *d, task_t *t)
{
    if (t->pending || t->op_busy)
        return 0; /* next turn */
    switch (t->cur->state) {
    case S(SCHEDULED):
    case S(QUEUED):
        record_killed(d, t, NULL); /* nothing remote to stop */
        return 1;
    case S(SUBMITTING):
    case S(RUNNING):
        return op_call(d, t, K_KILL);
    default:
        return 1; /* final: nothing to kill */
    }
}
