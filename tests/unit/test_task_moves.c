/* The task-run state machine (src/sched/task_moves.c) through the real
 * dispatcher, with a fake store (fake_store.c) and a fake operator whose
 * answers each case scripts: one case per move of the table, every path to
 * cancelled (killed), timed_out, upstream_failed and up_for_retry among
 * them, and the table against docs/scheduling.md's diagram.
 *
 * Each case loads one run whose task "t" (and an upstream "up" where the
 * rule needs one) starts in a given state, lets the dispatcher turn, and
 * checks the moves the store was asked for. No PostgreSQL, no ZooKeeper, no
 * time but the loop's. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "baton/clock.h"
#include "baton/dispatcher.h"
#include "fake_store.h"
#include "sched/dispatch.h"
#include "sched/sched_runs.h"
#include "sched/task_moves.h"

#define S(x) BATON__V1__TASK_STATE__TASK_STATE_##x

/* ------------------------------------------------------------ the fake operator */

enum { C_SUBMIT, C_LOOKUP, C_POLL, C_CANCEL, C_SWEEP, C__COUNT };

typedef struct fake_op {
    bt_operator_t op;
    struct ev_loop *loop;
    bt_op_status_t answer[C__COUNT];  /* what each kind of call answers */
    unsigned duplicates;              /* a sweep's */
    const char *sweep_cluster;        /* the twin a sweep keeps */
    int calls[C__COUNT];
} fake_op_t;

typedef struct pending {
    ev_timer t;
    bt_op_cb cb;
    void *arg;
    bt_op_status_t status;
    unsigned duplicates;
    const char *cluster;
} pending_t;

static void on_answer(struct ev_loop *loop, ev_timer *w, int revents)
{
    pending_t *p = w->data;
    Baton__V1__RemoteHandle h = BATON__V1__REMOTE_HANDLE__INIT;
    (void)loop;
    (void)revents;
    h.livy_batch_id = h.livy_session_id = h.livy_statement_id = -1;
    h.emr_cluster_id = (char *)(p->cluster ? p->cluster : "j-FIRST");
    bt_op_result_t r = {.status = p->status, .handle = &h, .duplicates = p->duplicates};
    if (p->status == BT_OP_FAILED) {
        r.error_code = "remote_failed";
        r.message = "the fake failed it";
    }
    p->cb(&r, p->arg);
    free(p);
}

static bt_err_t call(fake_op_t *o, int kind, const bt_op_call_t *c)
{
    pending_t *p = calloc(1, sizeof *p);
    if (!p)
        return BT_E_NOMEM;
    o->calls[kind]++;
    *p = (pending_t){.cb = c->cb, .arg = c->arg, .status = o->answer[kind]};
    if (kind == C_SWEEP) {
        p->duplicates = o->duplicates;
        p->cluster = o->sweep_cluster;
    }
    ev_timer_init(&p->t, on_answer, 0., 0.);
    p->t.data = p;
    ev_timer_start(o->loop, &p->t);
    return BT_OK;
}

#define ENTRY(name, kind)                                           \
    static bt_err_t name(void *ctx, const bt_op_call_t *c)          \
    {                                                               \
        return call(ctx, kind, c);                                  \
    }
ENTRY(op_submit, C_SUBMIT)
ENTRY(op_lookup, C_LOOKUP)
ENTRY(op_poll, C_POLL)
ENTRY(op_cancel, C_CANCEL)
ENTRY(op_sweep, C_SWEEP)

/* ------------------------------------------------------------ the fixture */

typedef struct fx {
    struct ev_loop *loop;
    bt_store_t *st;
    fake_op_t op;
    bt_operator_t *ops[1];
    bt_dispatcher_t *d;
    /* the spec: "up" (when used) and "t" */
    Baton__V1__TestOp test_op;
    Baton__V1__TaskSpec up, t, *tasks[2];
    char *deps[1];
    Baton__V1__WorkflowSpec spec;
    Baton__V1__WorkflowRun run;
} fx_t;

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof *f);
    f->loop = ev_loop_new(EVFLAG_AUTO);
    f->st = fake_store_new(f->loop);
    f->op.loop = f->loop;
    f->op.op = (bt_operator_t){.name = "fake",
                               .which = BATON__V1__TASK_SPEC__OPERATOR_TEST_OP,
                               .poll_interval_ms = 10,
                               .submit = op_submit,
                               .lookup = op_lookup,
                               .poll = op_poll,
                               .cancel = op_cancel,
                               .sweep = op_sweep,
                               .ctx = &f->op};
    for (int k = 0; k < C__COUNT; k++)
        f->op.answer[k] = k == C_LOOKUP ? BT_OP_NOT_FOUND : BT_OP_RUNNING;
    f->op.answer[C_SWEEP] = BT_OP_SUCCESS;
    f->op.answer[C_CANCEL] = BT_OP_SUCCESS;
    f->ops[0] = &f->op.op;
    baton__v1__test_op__init(&f->test_op);
    baton__v1__task_spec__init(&f->t);
    baton__v1__task_spec__init(&f->up);
    f->t.id = "t";
    f->up.id = "up";
    f->t.pool = f->up.pool = "default";
    f->t.operator_case = f->up.operator_case = BATON__V1__TASK_SPEC__OPERATOR_TEST_OP;
    f->t.test_op = f->up.test_op = &f->test_op;
    baton__v1__workflow_spec__init(&f->spec);
    f->spec.id = "wf";
    f->spec.timezone = "UTC";
    baton__v1__workflow_run__init(&f->run);
    f->run.workflow_id = "wf";
    f->run.run_id = "r1";
    f->run.state = BATON__V1__RUN_STATE__RUN_STATE_RUNNING;
    f->run.kind = BATON__V1__RUN_KIND__RUN_KIND_MANUAL;
    f->run.workflow_version = 1;
    *state = f;
    return 0;
}

static void on_quiet(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    *(int *)w->data = 1;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    /* stopped, then every answer on its way delivered (and dropped or
     * parked) before anything it points to is freed */
    bt_dispatcher_stop(f->d);
    int quiet = 0;
    ev_timer t;
    ev_timer_init(&t, on_quiet, 0.1, 0.);
    t.data = &quiet;
    ev_timer_start(f->loop, &t);
    while (!quiet)
        ev_run(f->loop, EVRUN_ONCE);
    bt_dispatcher_free(f->d);
    fake_store_free(f->st);
    ev_loop_destroy(f->loop);
    free(f);
    return 0;
}

/* The run, with "t" in `state` (and "up" in up_state, unless 0). */
static void load(fx_t *f, bt_task_state_t state, bt_task_state_t up_state)
{
    size_t n = 0;
    if (up_state) {
        f->tasks[n++] = &f->up;
        f->deps[0] = "up";
        f->t.depends_on = f->deps;
        f->t.n_depends_on = 1;
    }
    f->tasks[n++] = &f->t;
    f->spec.tasks = f->tasks;
    f->spec.n_tasks = n;
    fake_store_set_run(f->st, &f->run, &f->spec);
    for (size_t i = 0; i < n; i++) {
        bt_task_run_t *r = bt_task_attempt_new("wf", "r1", f->tasks[i]->id, 1, 0);
        r->state = f->tasks[i] == &f->t ? state : up_state;
        if (r->state >= S(SUBMITTING))
            r->started_ms = bt_now_ms();
        fake_store_add_task(f->st, r);
        baton__v1__task_run__free_unpacked(r, NULL);
    }
    bt_dispatcher_opts_t o = {.store = f->st, .ops = f->ops, .nops = 1, .settle_ms = 100,
                              .transit_bound_ms = 100, .drain_timeout_ms = 2000};
    assert_int_equal(bt_dispatcher_new(f->loop, &o, &f->d), BT_OK);
    bt_dispatcher_start(f->d, 1);
}

static void on_guard(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    *(int *)w->data = 1;
    ev_break(loop, EVBREAK_ONE);
}

/* Turns the loop until pred holds (fails the case after 5 s). */
static void turn_until(fx_t *f, int (*pred)(fx_t *f), const char *what)
{
    int expired = 0;
    ev_timer guard;
    ev_timer_init(&guard, on_guard, 5., 0.);
    guard.data = &expired;
    ev_timer_start(f->loop, &guard);
    while (!pred(f) && !expired)
        ev_run(f->loop, EVRUN_ONCE);
    ev_timer_stop(f->loop, &guard);
    if (!pred(f))
        fail_msg("timed out waiting for %s", what);
}

static int loaded(fx_t *f)
{
    bt_dispatcher_stats_t s;
    bt_dispatcher_get_stats(f->d, &s);
    return s.active;
}

/* The task model's "t", once loaded (the test drives a few internals). */
static task_t *task_t_of(fx_t *f)
{
    return disp_find_task(f->d, "wf", "r1", "t");
}

/* Whether the store was asked for `from` -> `to` on t's attempt n. */
static int moved(fx_t *f, bt_task_state_t from, bt_task_state_t to)
{
    size_t n;
    const fake_move_t *m = fake_store_moves(f->st, &n);
    for (size_t i = 0; i < n; i++)
        if (!strcmp(m[i].key, "wf/r1/t/1") && m[i].from == from && m[i].to == to)
            return 1;
    return 0;
}

static bt_task_state_t want_from, want_to;
static int moved_wanted(fx_t *f)
{
    return moved(f, want_from, want_to);
}

static void expect_move(fx_t *f, bt_task_state_t from, bt_task_state_t to)
{
    char what[96];
    want_from = from;
    want_to = to;
    snprintf(what, sizeof what, "%s -> %s", bt_task_state_name(from), bt_task_state_name(to));
    turn_until(f, moved_wanted, what);
    assert_true(task_move_allowed(from, to));
    /* committed moves are counted by [from][to] */
    bt_dispatcher_stats_t s;
    turn_until(f, loaded, "the dispatcher");
    bt_dispatcher_get_stats(f->d, &s);
    assert_true(s.illegal_moves == 0);
}

static int second_attempt(fx_t *f)
{
    const fake_task_t *t = fake_store_task(f->st, "t");
    return t && t->attempt == 2;
}

/* ------------------------------------------------------------ scheduled */

static void scheduled_to_queued_then_submitting(void **state)
{
    fx_t *f = *state;
    load(f, S(SCHEDULED), 0);
    expect_move(f, S(SCHEDULED), S(QUEUED));
    expect_move(f, S(QUEUED), S(SUBMITTING));
    expect_move(f, S(SUBMITTING), S(RUNNING));
}

static void scheduled_to_skipped(void **state)
{
    fx_t *f = *state;
    load(f, S(SCHEDULED), S(SKIPPED)); /* all_success with its upstream skipped */
    expect_move(f, S(SCHEDULED), S(SKIPPED));
}

static void scheduled_to_upstream_failed(void **state)
{
    fx_t *f = *state;
    load(f, S(SCHEDULED), S(FAILED));
    expect_move(f, S(SCHEDULED), S(UPSTREAM_FAILED));
}

/* Killed before anything ran: the kill comes between the load and the
 * first turn (an operator's task request is applied the same way). */
static void kill_after_load(fx_t *f)
{
    turn_until(f, loaded, "the load");
    assert_int_equal(task_kill(f->d, task_t_of(f)), 1);
}

static void scheduled_to_cancelled(void **state)
{
    fx_t *f = *state;
    load(f, S(SCHEDULED), S(RUNNING)); /* waits for "up": nothing moves it */
    kill_after_load(f);
    expect_move(f, S(SCHEDULED), S(CANCELLED));
    bt_task_run_t *r = fake_store_task_record(f->st, "t");
    assert_string_equal(r->error->code, "killed");
    baton__v1__task_run__free_unpacked(r, NULL);
}

/* ------------------------------------------------------------ queued */

static void queued_to_submitting(void **state)
{
    fx_t *f = *state;
    load(f, S(QUEUED), 0); /* left queued by a leader that died */
    expect_move(f, S(QUEUED), S(SUBMITTING));
}

static void queued_to_cancelled(void **state)
{
    fx_t *f = *state;
    load(f, S(QUEUED), 0);
    kill_after_load(f);
    expect_move(f, S(QUEUED), S(CANCELLED));
}

/* ------------------------------------------------------------ submitting */

static void submitting_to_running(void **state)
{
    fx_t *f = *state;
    load(f, S(SUBMITTING), 0); /* a clean predecessor: never sent, submitted now */
    expect_move(f, S(SUBMITTING), S(RUNNING));
    assert_int_equal(f->op.calls[C_SUBMIT], 1);
    assert_int_equal(f->op.calls[C_LOOKUP], 0);
}

static void submitting_to_success(void **state)
{
    fx_t *f = *state;
    f->op.answer[C_SUBMIT] = BT_OP_SUCCESS;
    load(f, S(SUBMITTING), 0);
    expect_move(f, S(SUBMITTING), S(SUCCESS));
}

static void submitting_to_failed(void **state)
{
    fx_t *f = *state;
    f->op.answer[C_SUBMIT] = BT_OP_FAILED;
    load(f, S(SUBMITTING), 0);
    expect_move(f, S(SUBMITTING), S(FAILED));
}

static void submitting_to_up_for_retry(void **state)
{
    fx_t *f = *state;
    f->op.answer[C_SUBMIT] = BT_OP_FAILED;
    f->t.retries = 1;
    load(f, S(SUBMITTING), 0);
    expect_move(f, S(SUBMITTING), S(UP_FOR_RETRY));
    turn_until(f, second_attempt, "the next attempt, a new row");
    assert_int_equal(fake_store_task(f->st, "t")->state, S(SCHEDULED));
}

static void submitting_to_cancelled(void **state)
{
    fx_t *f = *state;
    load(f, S(SUBMITTING), 0);
    kill_after_load(f); /* cancels remotely first (nothing there), then records */
    expect_move(f, S(SUBMITTING), S(CANCELLED));
    assert_int_equal(f->op.calls[C_CANCEL], 1);
}

static int drained;
static void on_drained(void *arg, int clean)
{
    (void)arg;
    drained = clean ? 1 : -1;
}

static int drain_over(fx_t *f)
{
    (void)f;
    return drained != 0;
}

/* A crash left it in `submitting` (no clean release): its outcome is
 * unknown. A handoff now marks it so, for the successor. */
static void submitting_to_submitting_marked_unknown(void **state)
{
    fx_t *f = *state;
    fake_store_set_inherited_clean(f->st, 0);
    load(f, S(SUBMITTING), 0);
    turn_until(f, loaded, "the load");
    drained = 0;
    bt_dispatcher_drain(f->d, on_drained, NULL);
    expect_move(f, S(SUBMITTING), S(SUBMITTING));
    turn_until(f, drain_over, "the drain");
    assert_int_equal(drained, 1);
    bt_task_run_t *r = fake_store_task_record(f->st, "t");
    assert_true(r->outcome_unknown);
    baton__v1__task_run__free_unpacked(r, NULL);
    assert_int_equal(f->op.calls[C_SUBMIT], 0); /* never sent while unknown */
}

/* ------------------------------------------------------------ running */

static void running_to_success(void **state)
{
    fx_t *f = *state;
    f->op.answer[C_POLL] = BT_OP_SUCCESS;
    load(f, S(RUNNING), 0);
    expect_move(f, S(RUNNING), S(SUCCESS));
}

static void running_to_failed(void **state)
{
    fx_t *f = *state;
    f->op.answer[C_POLL] = BT_OP_FAILED;
    load(f, S(RUNNING), 0);
    expect_move(f, S(RUNNING), S(FAILED));
}

static void running_to_up_for_retry(void **state)
{
    fx_t *f = *state;
    f->op.answer[C_POLL] = BT_OP_NOT_FOUND; /* the remote work is gone */
    f->t.retries = 2;
    load(f, S(RUNNING), 0);
    expect_move(f, S(RUNNING), S(UP_FOR_RETRY));
    turn_until(f, second_attempt, "the next attempt");
}

static void running_to_timed_out(void **state)
{
    fx_t *f = *state;
    f->t.timeout_ms = 1; /* over at once: cancelled, then timed out */
    load(f, S(RUNNING), 0);
    expect_move(f, S(RUNNING), S(TIMED_OUT));
    assert_int_equal(f->op.calls[C_CANCEL], 1);
}

static void running_timeout_with_a_retry(void **state)
{
    fx_t *f = *state;
    f->t.timeout_ms = 1;
    f->t.retries = 1;
    load(f, S(RUNNING), 0);
    expect_move(f, S(RUNNING), S(UP_FOR_RETRY));
    turn_until(f, second_attempt, "the next attempt");
}

static void running_to_cancelled(void **state)
{
    fx_t *f = *state;
    load(f, S(RUNNING), 0);
    kill_after_load(f);
    expect_move(f, S(RUNNING), S(CANCELLED));
}

/* Submitted after a lookup (needs_sweep): the sweep found a twin created
 * first and cancelled ours, so the attempt follows the first from now. */
static void running_to_running_after_a_sweep(void **state)
{
    fx_t *f = *state;
    f->op.duplicates = 1;
    f->op.sweep_cluster = "j-EARLIER";
    f->op.answer[C_POLL] = BT_OP_RUNNING;
    load(f, S(SCHEDULED), 0);
    /* let it run, then mark it as one that went through a lookup */
    expect_move(f, S(SUBMITTING), S(RUNNING));
    task_t *t = task_t_of(f);
    t->sweep_mono = bt_mono_ms();
    expect_move(f, S(RUNNING), S(RUNNING));
    bt_task_run_t *r = fake_store_task_record(f->st, "t");
    assert_string_equal(r->handle->emr_cluster_id, "j-EARLIER");
    baton__v1__task_run__free_unpacked(r, NULL);
    assert_true(fake_store_has_event(f->st, "duplicate_cancelled"));
}

/* ------------------------------------------------------------ the table */

static void nothing_leaves_a_final_state(void **state)
{
    (void)state;
    bt_task_state_t finals[] = {S(SUCCESS), S(FAILED), S(TIMED_OUT), S(CANCELLED), S(SKIPPED),
                                S(UPSTREAM_FAILED), S(UP_FOR_RETRY)};
    for (size_t i = 0; i < sizeof finals / sizeof finals[0]; i++)
        for (int to = 0; to < BT_TASK_NSTATES; to++)
            assert_false(task_move_allowed(finals[i], (bt_task_state_t)to));
    assert_false(task_move_allowed(S(SCHEDULED), S(RUNNING)));  /* no write-ahead skipped */
    assert_false(task_move_allowed(S(QUEUED), S(RUNNING)));
}

/* docs/scheduling.md shows the table as generated here; with
 * BATON_UPDATE_DOCS=1 this rewrites it. */
static void docs_show_the_table(void **state)
{
    (void)state;
    char path[4096], diagram[8192];
    snprintf(path, sizeof path, "%s", __FILE__); /* tests/unit/test_task_moves.c */
    char *slash = strrchr(path, '/');
    assert_non_null(slash);
    snprintf(slash, sizeof path - (size_t)(slash - path), "/../../docs/scheduling.md");
    size_t need = task_moves_diagram(diagram, sizeof diagram);
    assert_true(need < sizeof diagram);
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    static char doc[1 << 17];
    size_t len = fread(doc, 1, sizeof doc - 1, fp);
    fclose(fp);
    doc[len] = '\0';
    const char *begin_mark = "<!-- task-moves: generated by tests/unit/test_task_moves.c -->\n```mermaid\n";
    char *begin = strstr(doc, begin_mark), *end = begin ? strstr(begin, "```\n<!-- end -->") : NULL;
    assert_non_null(begin);
    assert_non_null(end);
    begin += strlen(begin_mark);
    const char *update = getenv("BATON_UPDATE_DOCS");
    if (update && !strcmp(update, "1")) {
        fp = fopen(path, "w");
        assert_non_null(fp);
        fprintf(fp, "%.*s%s%s", (int)(begin - doc), doc, diagram, end);
        fclose(fp);
        return;
    }
    if ((size_t)(end - begin) != strlen(diagram) || strncmp(begin, diagram, strlen(diagram)))
        fail_msg("docs/scheduling.md's diagram is not the table's: run this test with "
                 "BATON_UPDATE_DOCS=1");
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(scheduled_to_queued_then_submitting),
        T(scheduled_to_skipped),
        T(scheduled_to_upstream_failed),
        T(scheduled_to_cancelled),
        T(queued_to_submitting),
        T(queued_to_cancelled),
        T(submitting_to_running),
        T(submitting_to_success),
        T(submitting_to_failed),
        T(submitting_to_up_for_retry),
        T(submitting_to_cancelled),
        T(submitting_to_submitting_marked_unknown),
        T(running_to_success),
        T(running_to_failed),
        T(running_to_up_for_retry),
        T(running_to_timed_out),
        T(running_timeout_with_a_retry),
        T(running_to_cancelled),
        T(running_to_running_after_a_sweep),
        cmocka_unit_test(nothing_leaves_a_final_state),
        cmocka_unit_test(docs_show_the_table),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
