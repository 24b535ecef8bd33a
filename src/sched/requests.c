/* Operators' task requests (batonctl task retry|kill, run clear): rows in
 * task_requests that the leader applies as fenced writes and then consumes,
 * so nothing batonctl does races the dispatcher or bypasses the fence. A
 * request for a run that already finished reopens the run first (a fenced
 * run transition back to running), then reloads, then applies it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "baton/clock.h"
#include "baton/log.h"
#include "sched/dispatch.h"
#include "sched/sched_runs.h"

#define S(x) BATON__V1__TASK_STATE__TASK_STATE_##x

typedef struct treq_call {
    bt_dispatcher_t *d;
    unsigned gen;
    int64_t id;
    bt_workflow_run_t *rec;
} treq_call_t;

void disp_treqs_free(bt_dispatcher_t *d)
{
    for (size_t i = 0; i < d->ntreqs; i++) {
        free(d->treqs[i].action);
        free(d->treqs[i].workflow_id);
        free(d->treqs[i].run_id);
        free(d->treqs[i].task_id);
    }
    free(d->treqs);
    d->treqs = NULL;
    d->ntreqs = 0;
    d->treqs_loading = 0;
}

static void drop_treq(bt_dispatcher_t *d, int64_t id)
{
    for (size_t i = 0; i < d->ntreqs; i++) {
        if (d->treqs[i].id != id)
            continue;
        free(d->treqs[i].action);
        free(d->treqs[i].workflow_id);
        free(d->treqs[i].run_id);
        free(d->treqs[i].task_id);
        d->treqs[i] = d->treqs[--d->ntreqs];
        return;
    }
}

static void on_polled(bt_err_t err, const void *rows, size_t n, const char *errmsg, void *arg)
{
    treq_call_t *c = arg;
    bt_dispatcher_t *d = c->d;
    const bt_store_task_request_row_t *row = rows;
    (void)errmsg;
    if (c->gen == d->gen) {
        d->treqs_loading = 0;
        for (size_t i = 0; err == BT_OK && i < n; i++) {
            size_t k;
            for (k = 0; k < d->ntreqs && d->treqs[k].id != row[i].id; k++)
                ;
            if (k < d->ntreqs)
                continue;
            struct treq *arr = realloc(d->treqs, (d->ntreqs + 1) * sizeof *arr);
            if (!arr)
                break;
            d->treqs = arr;
            struct treq *q = &d->treqs[d->ntreqs++];
            memset(q, 0, sizeof *q);
            q->id = row[i].id;
            q->action = strdup(row[i].action);
            q->workflow_id = strdup(row[i].workflow_id);
            q->run_id = strdup(row[i].run_id);
            q->task_id = row[i].task_id ? strdup(row[i].task_id) : NULL;
            q->only_failed = row[i].only_failed;
        }
        if (err == BT_OK && n)
            disp_kick(d);
    }
    free(c);
}

void disp_poll_task_requests(bt_dispatcher_t *d)
{
    if (d->treqs_loading)
        return;
    treq_call_t *c = calloc(1, sizeof *c);
    if (!c)
        return;
    c->d = d;
    c->gen = d->gen;
    d->treqs_loading = 1;
    if (bt_store_read_task_requests(d->o.store, on_polled, c) != BT_OK) {
        d->treqs_loading = 0;
        free(c);
    }
}

static void on_done(bt_err_t err, const char *detail, void *arg)
{
    treq_call_t *c = arg;
    bt_dispatcher_t *d = c->d;
    if (c->gen == d->gen && disp_write_ok(d, err, detail, "task request"))
        drop_treq(d, c->id);
    free(c);
}

static void consume(bt_dispatcher_t *d, struct treq *q, const char *outcome)
{
    treq_call_t *c = calloc(1, sizeof *c);
    if (!c)
        return;
    c->d = d;
    c->gen = d->gen;
    c->id = q->id;
    q->busy = 1;
    bt_info("dispatch: %s of %s/%s%s%s: %s", q->action, q->workflow_id, q->run_id,
            q->task_id ? "/" : "", q->task_id ? q->task_id : "", outcome);
    if (bt_store_task_request_done(d->o.store, d->epoch, q->id, outcome, on_done, c) != BT_OK) {
        q->busy = 0;
        free(c);
    }
}

/* ---------------------------------------------------------- reopening */

static void on_reopened(bt_err_t err, const char *detail, void *arg)
{
    treq_call_t *c = arg;
    bt_dispatcher_t *d = c->d;
    if (c->gen == d->gen && disp_write_ok(d, err, detail, "run reopen"))
        disp_reload(d, "a finished run was reopened for a task request");
    if (c->rec)
        baton__v1__workflow_run__free_unpacked(c->rec, NULL);
    free(c);
}

static void on_run_record(bt_err_t err, const uint8_t *data, size_t len, void *arg)
{
    treq_call_t *c = arg;
    bt_dispatcher_t *d = c->d;
    if (c->gen != d->gen || (err != BT_OK && err != BT_E_NOTFOUND && err != BT_E_CORRUPT)) {
        free(c);
        return;
    }
    struct treq *q = NULL;
    for (size_t i = 0; i < d->ntreqs; i++)
        if (d->treqs[i].id == c->id)
            q = &d->treqs[i];
    if (!q) {
        free(c);
        return;
    }
    if (err == BT_E_NOTFOUND) {
        q->busy = 0;
        consume(d, q, "no such run");
        free(c);
        return;
    }
    c->rec = data ? baton__v1__workflow_run__unpack(NULL, len, data) : NULL;
    if (!c->rec) {
        q->busy = 0;
        consume(d, q, "the run's record does not decode");
        free(c);
        return;
    }
    Baton__V1__RunState from = c->rec->state;
    c->rec->state = BATON__V1__RUN_STATE__RUN_STATE_RUNNING;
    c->rec->ended_ms = 0;
    if (bt_store_run_transition(d->o.store, d->epoch, from, c->rec, on_reopened, c) != BT_OK) {
        q->busy = 0;
        baton__v1__workflow_run__free_unpacked(c->rec, NULL);
        free(c);
    }
}

static void reopen(bt_dispatcher_t *d, struct treq *q)
{
    treq_call_t *c = calloc(1, sizeof *c);
    if (!c)
        return;
    c->d = d;
    c->gen = d->gen;
    c->id = q->id;
    q->busy = 1;
    if (bt_store_read_finished_run(d->o.store, q->workflow_id, q->run_id, on_run_record, c) !=
        BT_OK) {
        q->busy = 0;
        free(c);
    }
}

/* ---------------------------------------------------------- applying */

static run_t *find_run(bt_dispatcher_t *d, const char *wf, const char *run_id)
{
    for (run_t *r = d->runs; r; r = r->next)
        if (!strcmp(r->rec->workflow_id, wf) && !strcmp(r->rec->run_id, run_id))
            return r;
    return NULL;
}

static int failed_state(Baton__V1__TaskState s)
{
    return s == S(FAILED) || s == S(TIMED_OUT) || s == S(CANCELLED) || s == S(UPSTREAM_FAILED);
}

/* Marks t and, transitively, every task downstream of it. */
static void mark_downstream(run_t *r, size_t i, char *mark)
{
    if (mark[i])
        return;
    mark[i] = 1;
    for (size_t k = 0; k < r->ntasks; k++)
        for (size_t j = 0; j < r->tasks[k].spec->n_depends_on; j++)
            if (!strcmp(r->tasks[k].spec->depends_on[j], r->tasks[i].spec->id))
                mark_downstream(r, k, mark);
}

/* New attempts for the marked tasks that are final; 0 when one is busy. */
static int clear_marked(bt_dispatcher_t *d, run_t *r, const char *mark, int only_failed,
                        int64_t now, int *n)
{
    for (size_t i = 0; i < r->ntasks; i++)
        if (mark[i] && (r->tasks[i].pending || r->tasks[i].op_busy))
            return 0;
    for (size_t i = 0; i < r->ntasks; i++) {
        task_t *t = &r->tasks[i];
        Baton__V1__TaskState s = task_state(t);
        if (!mark[i] || !bt_task_state_is_final(s))
            continue;
        if (only_failed && !failed_state(s) && s != S(SKIPPED))
            continue;
        task_new_attempt(d, t, now);
        (*n)++;
    }
    return 1;
}

static void apply_one(bt_dispatcher_t *d, struct treq *q, int64_t now)
{
    run_t *r = find_run(d, q->workflow_id, q->run_id);
    char outcome[96];
    int n = 0;
    if (!r) {
        reopen(d, q); /* finished (or unknown): reopen, reload, come back */
        return;
    }
    if (r->pending)
        return;
    char *mark = calloc(r->ntasks + 1, 1);
    if (!mark)
        return;
    size_t target = r->ntasks;
    for (size_t i = 0; q->task_id && i < r->ntasks; i++)
        if (!strcmp(r->tasks[i].spec->id, q->task_id))
            target = i;
    if (q->task_id && target == r->ntasks) {
        consume(d, q, "no such task in this run");
    } else if (!strcmp(q->action, "kill")) {
        if (task_kill(d, &r->tasks[target]))
            consume(d, q, "killed");
    } else if (!strcmp(q->action, "retry")) {
        mark_downstream(r, target, mark);
        if (clear_marked(d, r, mark, 1, now, &n)) {
            snprintf(outcome, sizeof outcome, "%d task(s) given a new attempt", n);
            consume(d, q, outcome);
        }
    } else { /* clear */
        for (size_t i = 0; i < r->ntasks; i++)
            if (!q->only_failed || failed_state(task_state(&r->tasks[i])))
                mark_downstream(r, i, mark);
        if (clear_marked(d, r, mark, q->only_failed, now, &n)) {
            snprintf(outcome, sizeof outcome, "%d task(s) cleared", n);
            consume(d, q, outcome);
        }
    }
    free(mark);
}

void disp_apply_task_requests(bt_dispatcher_t *d, int64_t now)
{
    for (size_t i = 0; i < d->ntreqs && d->loaded; i++)
        if (!d->treqs[i].busy)
            apply_one(d, &d->treqs[i], now);
}
