/* An in-memory stand-in for the store, as src/sched uses it (the functions
 * of include/baton/store.h that the dispatcher calls, and the two of the
 * coordinator it asks), for the unit tests of the dispatcher's state
 * machine: no PostgreSQL, deterministic. Linked before baton_core, so the
 * real store and coordinator are never pulled in.
 *
 * It keeps task runs (compare-and-set on their state, like
 * baton_task_transitions), one workflow run, events and a log of every
 * move, and answers every call from the loop (a zero timer), in order, as
 * the real store does after its commit. */
#include "fake_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "baton/coord.h"
#include "baton/emr.h"
#include "baton/http.h"

#define MAX_ROWS 64

/* A write's answer or a read: delivered in the order they were asked,
 * as one pipelined connection does. */
typedef struct answer {
    struct answer *next;
    bt_store_cb cb;
    void *arg;
    bt_err_t err;
    void (*read)(struct answer *a); /* a read: answers itself */
    bt_store_t *st;
    int what;
    bt_store_rows_cb rows_cb;
    bt_store_fence_cb fence_cb;
    bt_store_blob_cb blob_cb;
} answer_t;

struct bt_store {
    struct ev_loop *loop;
    ev_timer kick;
    answer_t *head, **tail;
    int epoch_fenced;             /* every write answers BT_E_FENCED */
    int inherited_clean;
    fake_task_t tasks[MAX_ROWS];
    size_t ntasks;
    uint8_t *run_rec, *run_spec;
    size_t run_rec_len, run_spec_len;
    fake_move_t moves[MAX_ROWS * 4];
    size_t nmoves;
    char events[MAX_ROWS][64];
    size_t nevents;
};

static void on_kick(struct ev_loop *loop, ev_timer *w, int revents)
{
    bt_store_t *st = w->data;
    answer_t *a = st->head;
    (void)loop;
    (void)revents;
    st->head = NULL;
    st->tail = &st->head;
    while (a) {
        answer_t *next = a->next;
        if (a->read)
            a->read(a);
        else
            a->cb(a->err, NULL, a->arg);
        free(a);
        a = next;
    }
}

static bt_err_t queue(bt_store_t *st, answer_t *a)
{
    *st->tail = a;
    st->tail = &a->next;
    if (!ev_is_active(&st->kick)) {
        ev_timer_set(&st->kick, 0., 0.);
        ev_timer_start(st->loop, &st->kick);
    }
    return BT_OK;
}

static bt_err_t answer(bt_store_t *st, bt_store_cb cb, void *arg, bt_err_t err)
{
    answer_t *a = calloc(1, sizeof *a);
    if (!a)
        return BT_E_NOMEM;
    *a = (answer_t){.cb = cb, .arg = arg, .err = err};
    return queue(st, a);
}

static uint8_t *pack_task(const bt_task_run_t *r, size_t *len)
{
    *len = baton__v1__task_run__get_packed_size(r);
    uint8_t *b = malloc(*len + 1);
    if (b)
        baton__v1__task_run__pack(r, b);
    return b;
}

bt_store_t *fake_store_new(struct ev_loop *loop)
{
    bt_store_t *st = calloc(1, sizeof *st);
    st->loop = loop;
    st->tail = &st->head;
    st->inherited_clean = 1;
    ev_timer_init(&st->kick, on_kick, 0., 0.);
    st->kick.data = st;
    return st;
}

void fake_store_free(bt_store_t *st)
{
    ev_timer_stop(st->loop, &st->kick);
    while (st->head) {
        answer_t *a = st->head;
        st->head = a->next;
        free(a);
    }
    for (size_t i = 0; i < st->ntasks; i++)
        free(st->tasks[i].rec);
    free(st->run_rec);
    free(st->run_spec);
    free(st);
}

void fake_store_set_run(bt_store_t *st, const bt_workflow_run_t *run,
                        const Baton__V1__WorkflowSpec *spec)
{
    st->run_rec_len = baton__v1__workflow_run__get_packed_size(run);
    st->run_rec = malloc(st->run_rec_len + 1);
    baton__v1__workflow_run__pack(run, st->run_rec);
    st->run_spec_len = baton__v1__workflow_spec__get_packed_size(spec);
    st->run_spec = malloc(st->run_spec_len + 1);
    baton__v1__workflow_spec__pack(spec, st->run_spec);
}

void fake_store_add_task(bt_store_t *st, const bt_task_run_t *r)
{
    fake_task_t *t = &st->tasks[st->ntasks++];
    snprintf(t->key, sizeof t->key, "%s", r->run_key);
    snprintf(t->task, sizeof t->task, "%s", r->task_id);
    t->attempt = r->attempt;
    t->state = r->state;
    t->rec = pack_task(r, &t->len);
}

void fake_store_set_inherited_clean(bt_store_t *st, int clean)
{
    st->inherited_clean = clean;
}

const fake_task_t *fake_store_task(const bt_store_t *st, const char *task)
{
    const fake_task_t *latest = NULL;
    for (size_t i = 0; i < st->ntasks; i++)
        if (!strcmp(st->tasks[i].task, task) && (!latest || st->tasks[i].attempt > latest->attempt))
            latest = &st->tasks[i];
    return latest;
}

bt_task_run_t *fake_store_task_record(const bt_store_t *st, const char *task)
{
    const fake_task_t *t = fake_store_task(st, task);
    return t ? baton__v1__task_run__unpack(NULL, t->len, t->rec) : NULL;
}

const fake_move_t *fake_store_moves(const bt_store_t *st, size_t *n)
{
    *n = st->nmoves;
    return st->moves;
}

int fake_store_has_event(const bt_store_t *st, const char *kind)
{
    for (size_t i = 0; i < st->nevents; i++)
        if (!strcmp(st->events[i], kind))
            return 1;
    return 0;
}

/* ------------------------------------------------------------ writes */

bt_err_t bt_store_task_transition(bt_store_t *st, uint64_t epoch, bt_task_state_t from,
                                  bt_task_run_t *run, bt_store_cb cb, void *arg)
{
    (void)epoch;
    if (st->epoch_fenced)
        return answer(st, cb, arg, BT_E_FENCED);
    for (size_t i = 0; i < st->ntasks; i++) {
        fake_task_t *t = &st->tasks[i];
        if (strcmp(t->key, run->run_key))
            continue;
        if (t->state != from)
            return answer(st, cb, arg, BT_E_CONFLICT);
        fake_move_t *m = &st->moves[st->nmoves++];
        snprintf(m->key, sizeof m->key, "%s", run->run_key);
        m->from = from;
        m->to = run->state;
        t->state = run->state;
        free(t->rec);
        t->rec = pack_task(run, &t->len);
        return answer(st, cb, arg, BT_OK);
    }
    return answer(st, cb, arg, BT_E_CONFLICT);
}

bt_err_t bt_store_task_create(bt_store_t *st, uint64_t epoch, bt_task_run_t *run,
                              bt_store_cb cb, void *arg)
{
    (void)epoch;
    if (st->ntasks == MAX_ROWS)
        return BT_E_NOMEM;
    fake_store_add_task(st, run);
    return answer(st, cb, arg, BT_OK);
}

bt_err_t bt_store_task_fail_corrupt(bt_store_t *st, uint64_t epoch, const char *run_key,
                                    const char *state, const char *why, bt_store_cb cb,
                                    void *arg)
{
    (void)epoch;
    (void)run_key;
    (void)state;
    (void)why;
    return answer(st, cb, arg, BT_OK);
}

bt_err_t bt_store_event(bt_store_t *st, uint64_t epoch, const char *kind, const char *run_key,
                        const char *detail_json, bt_store_cb cb, void *arg)
{
    (void)epoch;
    (void)run_key;
    (void)detail_json;
    if (st->nevents < MAX_ROWS)
        snprintf(st->events[st->nevents++], sizeof st->events[0], "%s", kind);
    return answer(st, cb, arg, BT_OK);
}

bt_err_t bt_store_run_create(bt_store_t *st, uint64_t epoch, bt_workflow_run_t *run,
                             bt_task_run_t *const *tasks, size_t ntasks, int64_t next_fire_ms,
                             int64_t request_id, bt_store_cb cb, void *arg)
{
    (void)epoch;
    (void)run;
    (void)next_fire_ms;
    (void)request_id;
    for (size_t i = 0; i < ntasks && st->ntasks < MAX_ROWS; i++)
        fake_store_add_task(st, tasks[i]);
    return answer(st, cb, arg, BT_OK);
}

bt_err_t bt_store_workflow_cursor_init(bt_store_t *st, uint64_t epoch, const char *workflow_id,
                                       int64_t next_fire_ms, bt_store_cb cb, void *arg)
{
    (void)epoch;
    (void)workflow_id;
    (void)next_fire_ms;
    return answer(st, cb, arg, BT_OK);
}

bt_err_t bt_store_run_transition(bt_store_t *st, uint64_t epoch, Baton__V1__RunState from,
                                 bt_workflow_run_t *run, bt_store_cb cb, void *arg)
{
    (void)epoch;
    (void)from;
    (void)run;
    return answer(st, cb, arg, BT_OK);
}

bt_err_t bt_store_task_request_done(bt_store_t *st, uint64_t epoch, int64_t id,
                                    const char *outcome, bt_store_cb cb, void *arg)
{
    (void)epoch;
    (void)id;
    (void)outcome;
    return answer(st, cb, arg, BT_OK);
}

int bt_store_is_up(const bt_store_t *st)
{
    return st != NULL;
}

const char *bt_store_cluster(const bt_store_t *st)
{
    (void)st;
    return "fake";
}

/* ------------------------------------------------------------ reads */

/* Reads answer from the same queue, with the rows as they are then. */
enum { R_NONE, R_RUNS, R_TASKS, R_FENCE };

static void on_read(answer_t *r)
{
    bt_store_t *st = r->st;
    if (r->what == R_FENCE) {
        r->fence_cb(BT_OK, 1, st->inherited_clean, r->arg);
    } else if (r->what == R_RUNS) {
        bt_store_run_row_t row = {st->run_rec, st->run_rec_len, st->run_spec, st->run_spec_len};
        r->rows_cb(BT_OK, &row, st->run_rec ? 1 : 0, NULL, r->arg);
    } else if (r->what == R_TASKS) {
        bt_store_task_row_t rows[MAX_ROWS];
        size_t n = 0;
        for (size_t i = 0; i < st->ntasks; i++) {
            const fake_task_t *t = &st->tasks[i];
            if (fake_store_task(st, t->task) != t)
                continue; /* the latest attempt of each task */
            rows[n++] = (bt_store_task_row_t){t->key, bt_task_state_name(t->state), t->rec,
                                              t->len};
        }
        r->rows_cb(BT_OK, rows, n, NULL, r->arg);
    } else if (r->rows_cb) {
        r->rows_cb(BT_OK, NULL, 0, NULL, r->arg);
    } else {
        r->blob_cb(BT_E_NOTFOUND, NULL, 0, r->arg);
    }
}

static bt_err_t read_later(bt_store_t *st, int what, bt_store_rows_cb rows_cb,
                           bt_store_fence_cb fence_cb, bt_store_blob_cb blob_cb, void *arg)
{
    answer_t *a = calloc(1, sizeof *a);
    if (!a)
        return BT_E_NOMEM;
    *a = (answer_t){.read = on_read, .st = st, .what = what, .rows_cb = rows_cb,
                    .fence_cb = fence_cb, .blob_cb = blob_cb, .arg = arg};
    return queue(st, a);
}

bt_err_t bt_store_read_workflows(bt_store_t *st, int64_t since_seq, bt_store_rows_cb cb,
                                 void *arg)
{
    (void)since_seq;
    return read_later(st, R_NONE, cb, NULL, NULL, arg);
}

bt_err_t bt_store_read_active_runs(bt_store_t *st, bt_store_rows_cb cb, void *arg)
{
    return read_later(st, R_RUNS, cb, NULL, NULL, arg);
}

bt_err_t bt_store_read_active_tasks(bt_store_t *st, bt_store_rows_cb cb, void *arg)
{
    return read_later(st, R_TASKS, cb, NULL, NULL, arg);
}

bt_err_t bt_store_read_pools(bt_store_t *st, bt_store_rows_cb cb, void *arg)
{
    return read_later(st, R_NONE, cb, NULL, NULL, arg);
}

bt_err_t bt_store_read_run_requests(bt_store_t *st, bt_store_rows_cb cb, void *arg)
{
    return read_later(st, R_NONE, cb, NULL, NULL, arg);
}

bt_err_t bt_store_read_task_requests(bt_store_t *st, bt_store_rows_cb cb, void *arg)
{
    return read_later(st, R_NONE, cb, NULL, NULL, arg);
}

bt_err_t bt_store_read_fence(bt_store_t *st, bt_store_fence_cb cb, void *arg)
{
    return read_later(st, R_FENCE, NULL, cb, NULL, arg);
}

bt_err_t bt_store_read_finished_run(bt_store_t *st, const char *workflow_id, const char *run_id,
                                    bt_store_blob_cb cb, void *arg)
{
    (void)workflow_id;
    (void)run_id;
    return read_later(st, R_NONE, NULL, NULL, cb, arg);
}

/* ------------------------------------------------------------ the rest */

/* The dispatcher runs without a coordinator here (coord NULL: it always
 * may act), but links against these. */
int bt_coord_may_dispatch(const bt_coord_t *co)
{
    (void)co;
    return 1;
}

void bt_coord_fenced(bt_coord_t *co, const char *what)
{
    (void)co;
    (void)what;
}

/* ... and the transport only to cut a drain's calls off (no http here). */
size_t bt_http_gate_closed(bt_http_t *h, int sent_too)
{
    (void)h;
    (void)sent_too;
    return 0;
}

/* ... and the EMR orphan reaper's jobs: no EMR operators here. */
bt_err_t bt_emr_scan_tagged(bt_operator_t *const *ops, size_t n, bt_emr_scan_cb cb, void *arg)
{
    (void)ops;
    (void)n;
    (void)cb;
    (void)arg;
    return BT_E_NOTFOUND;
}

bt_err_t bt_emr_terminate_cluster(bt_operator_t *const *ops, size_t n, const char *cluster_id,
                                  bt_emr_done_cb cb, void *arg)
{
    (void)ops;
    (void)n;
    (void)cluster_id;
    (void)cb;
    (void)arg;
    return BT_E_NOTFOUND;
}
