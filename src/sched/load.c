/* Loading the dispatcher's model from the store (its reads, store.h) when
 * a leadership starts or after a reload, and polling for what operators
 * changed since: applied workflows, pools, run requests. A read answered
 * after the model moved on (its generation) is dropped. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "baton/clock.h"
#include "baton/log.h"
#include "sched/dispatch.h"
#include "sched/sched_runs.h"
#include "util/container.h"

/* One read of a load or a poll: stale once the model's generation moved. */
typedef struct load_req {
    bt_dispatcher_t *d;
    unsigned gen;
} load_req_t;

/* The reads of a load, sent together and answered in this order (one
 * pipelined connection): the fence's word on the predecessor comes before
 * the tasks it is about. */
enum { L_WORKFLOWS, L_RUNS, L_FENCE, L_TASKS, L_POOLS, L__COUNT };

static void load_done(bt_dispatcher_t *d);
static void load_failed(bt_dispatcher_t *d, bt_err_t err, const char *errmsg);
static void load_step_done(bt_dispatcher_t *d);

/* The dispatcher a read answered now is for, or NULL when the model moved
 * on (the request is freed either way). */
static bt_dispatcher_t *current(void *arg)
{
    load_req_t *l = arg;
    bt_dispatcher_t *d = l->d;
    unsigned gen = l->gen;
    free(l);
    return gen == d->gen ? d : NULL;
}

static load_req_t *load_req(bt_dispatcher_t *d)
{
    load_req_t *l = malloc(sizeof *l);
    if (l)
        *l = (load_req_t){d, d->gen};
    return l;
}

static void load_workflows(bt_dispatcher_t *d, const bt_store_workflow_row_t *w, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (w[i].spec)
            disp_wf_upsert(d, w[i].workflow_id, w[i].version, w[i].paused, w[i].spec,
                           w[i].spec_len, w[i].next_fire_ms, w[i].change_seq);
}

static void load_runs(bt_dispatcher_t *d, const bt_store_run_row_t *row, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        bt_workflow_run_t *rec =
            row[i].record ? baton__v1__workflow_run__unpack(NULL, row[i].record_len, row[i].record)
                          : NULL;
        bt_workflow_spec_t *spec =
            row[i].spec ? baton__v1__workflow_spec__unpack(NULL, row[i].spec_len, row[i].spec)
                        : NULL;
        wf_t *w = rec ? disp_wf(d, rec->workflow_id) : NULL;
        spec_ref_t *ref = NULL;
        if (spec && w && w->spec_ref && (int)rec->workflow_version == w->version) {
            baton__v1__workflow_spec__free_unpacked(spec, NULL); /* the same version */
            ref = spec_ref_get(w->spec_ref);
        } else if (spec) {
            ref = spec_ref_new(spec);
        }
        if (!rec || !ref || disp_add_run(d, rec, ref) != BT_OK) {
            bt_error("dispatch: an active run's record or spec does not decode; left alone");
            if (rec)
                baton__v1__workflow_run__free_unpacked(rec, NULL);
            spec_ref_put(ref);
        }
    }
}

static void on_corrupt_failed(bt_err_t err, const char *detail, void *arg)
{
    bt_dispatcher_t *d = arg;
    (void)detail;
    if (err == BT_OK)
        disp_reload(d, "a corrupt task record was failed");
}

static void load_tasks(bt_dispatcher_t *d, const bt_store_task_row_t *row, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const char *key = row[i].run_key, *state = row[i].state;
        bt_task_run_t *rec =
            row[i].record ? baton__v1__task_run__unpack(NULL, row[i].record_len, row[i].record)
                          : NULL;
        const char *sn = rec ? bt_task_state_name(rec->state) : NULL;
        if (!rec || !sn || strcmp(sn, state) || strcmp(rec->run_key, key)) {
            bt_error("dispatch: task run %s: record does not decode or contradicts its row; "
                     "failing it",
                     key);
            if (rec)
                baton__v1__task_run__free_unpacked(rec, NULL);
            bt_store_task_fail_corrupt(d->o.store, d->epoch, key, state,
                                       "record does not decode or contradicts its row",
                                       on_corrupt_failed, d);
            continue;
        }
        task_t *t = disp_find_task(d, rec->workflow_id, rec->run_id, rec->task_id);
        if (!t) {
            baton__v1__task_run__free_unpacked(rec, NULL);
            continue;
        }
        if (t->cur)
            baton__v1__task_run__free_unpacked(t->cur, NULL);
        t->cur = rec;
        t->next_poll_ms = 0;
        if (rec->state == BATON__V1__TASK_STATE__TASK_STATE_SUBMITTING)
            task_loaded_submitting(d, t, disp_carried(d, rec->run_key));
        if (rec->needs_sweep)
            t->sweep_mono = bt_mono_ms() + d->o.settle_ms;
        /* our own call for it, made before a pause or a reload: its answer,
         * not a lookup, says what happened */
        disp_attach_call(d, t);
    }
}

/* Whether the leader before us released cleanly (migration 6). Our own
 * epoch must be the fence's: otherwise we are deposed already, and assume
 * nothing. */
static void on_fence(bt_err_t err, uint64_t epoch, int inherited_clean, void *arg)
{
    bt_dispatcher_t *d = current(arg);
    if (!d)
        return;
    if (err != BT_OK) {
        load_failed(d, err, NULL);
        return;
    }
    d->inherited_clean = inherited_clean && epoch == d->epoch;
    if (d->epoch_loads == 0)
        bt_info("dispatch: the previous leader %s", d->inherited_clean
                                                        ? "released cleanly: its records are "
                                                          "trusted"
                                                        : "did not release cleanly: every "
                                                          "submission it left is looked up "
                                                          "after the transit bound");
    load_step_done(d);
}

static void load_pools(bt_dispatcher_t *d, const bt_store_pool_row_t *p, size_t n)
{
    disp_pools_clear(d);
    d->pool_names = calloc(n + 1, sizeof *d->pool_names);
    d->pool_slots = calloc(n + 1, sizeof *d->pool_slots);
    if (!d->pool_names || !d->pool_slots)
        return;
    for (size_t i = 0; i < n; i++) {
        d->pool_names[i] = strdup(p[i].name);
        d->pool_slots[i] = p[i].slots;
        if (d->pool_names[i])
            d->npools++;
        else
            break;
    }
}

static void load_failed(bt_dispatcher_t *d, bt_err_t err, const char *errmsg)
{
    bt_warn("dispatch: loading: %s%s%s", bt_strerror(err), errmsg ? ": " : "",
            errmsg ? errmsg : "");
    disp_reload(d, "load failed");
}

static void load_step_done(bt_dispatcher_t *d)
{
    if (--d->loads_left == 0)
        load_done(d);
}

/* The rows of one read of a load, applied by `apply`, in load order. */
#define LOAD_CB(name, row_t, apply)                                                            \
    static void name(bt_err_t err, const void *rows, size_t n, const char *errmsg, void *arg) \
    {                                                                                         \
        bt_dispatcher_t *d = current(arg);                                                    \
        if (!d)                                                                               \
            return;                                                                           \
        if (err != BT_OK) {                                                                   \
            load_failed(d, err, errmsg);                                                      \
            return;                                                                           \
        }                                                                                     \
        apply(d, (const row_t *)rows, n);                                                     \
        load_step_done(d);                                                                    \
    }
LOAD_CB(on_workflows, bt_store_workflow_row_t, load_workflows)
LOAD_CB(on_runs, bt_store_run_row_t, load_runs)
LOAD_CB(on_tasks, bt_store_task_row_t, load_tasks)
LOAD_CB(on_load_pools, bt_store_pool_row_t, load_pools)

/* Sends read `which` of a load. */
static bt_err_t load_read(bt_dispatcher_t *d, int which, load_req_t *l)
{
    bt_store_t *st = d->o.store;
    switch (which) {
    case L_WORKFLOWS:
        return bt_store_read_workflows(st, INT64_MIN, on_workflows, l);
    case L_RUNS:
        return bt_store_read_active_runs(st, on_runs, l);
    case L_FENCE:
        return bt_store_read_fence(st, on_fence, l);
    case L_TASKS:
        return bt_store_read_active_tasks(st, on_tasks, l);
    default:
        return bt_store_read_pools(st, on_load_pools, l);
    }
}

static void load_start(bt_dispatcher_t *d)
{
    disp_model_clear(d);
    d->loading = 1;
    d->loads_left = L__COUNT;
    for (int i = 0; i < L__COUNT; i++) {
        load_req_t *l = load_req(d);
        if (!l || load_read(d, i, l) != BT_OK) {
            free(l);
            d->loading = 0;
            d->reload_wanted = 1; /* PostgreSQL is down: the poll timer retries */
            d->gen++;
            return;
        }
    }
}

static void load_done(bt_dispatcher_t *d)
{
    size_t nruns = 0, ntasks = 0;
    d->loading = 0;
    d->loaded = 1;
    d->stats.reloads++;
    for (run_t *r = d->runs; r; r = r->next) {
        nruns++;
        ntasks += r->ntasks;
    }
    bt_info("dispatch: loaded %zu workflows, %zu active runs, %zu tasks (epoch %" PRIu64 ")",
            d->nwfs, nruns, ntasks, d->epoch);
    d->epoch_loads++;
    disp_carry_free(d);
    disp_apply_parked(d);
    disp_kick(d);
}

void disp_reload(bt_dispatcher_t *d, const char *why)
{
    if (!d->started)
        return;
    bt_info("dispatch: reloading state from PostgreSQL (%s)", why);
    disp_model_clear(d);
    d->reload_wanted = 1;
    ev_timer_stop(d->loop, &d->tick);
    /* not from inside a callback of the batch being delivered: next turn */
    ev_timer_set(&d->tick, 0.05, 0.);
    ev_timer_start(d->loop, &d->tick);
}

/* ------------------------------------------------------------ config poll */

static void on_changes(bt_err_t err, const void *rows, size_t n, const char *errmsg, void *arg)
{
    bt_dispatcher_t *d = current(arg);
    (void)errmsg;
    if (!d || err != BT_OK)
        return;
    load_workflows(d, rows, n);
    disp_kick(d);
}

static void on_pools(bt_err_t err, const void *rows, size_t n, const char *errmsg, void *arg)
{
    bt_dispatcher_t *d = current(arg);
    (void)errmsg;
    if (d && err == BT_OK)
        load_pools(d, rows, n);
}

static void on_requests(bt_err_t err, const void *rows, size_t n, const char *errmsg, void *arg)
{
    bt_dispatcher_t *d = current(arg);
    const bt_store_run_request_row_t *row = rows;
    (void)errmsg;
    if (!d)
        return;
    d->reqs_loading = 0;
    if (err != BT_OK)
        return;
    for (size_t i = 0; i < n; i++) {
        size_t k;
        for (k = 0; k < d->nreqs && d->reqs[k].id != row[i].id; k++)
            ;
        if (k < d->nreqs)
            continue; /* known (maybe being created) */
        struct req *arr = realloc(d->reqs, (d->nreqs + 1) * sizeof *arr);
        if (!arr)
            return;
        d->reqs = arr;
        struct req *q = &d->reqs[d->nreqs];
        memset(q, 0, sizeof *q);
        q->id = row[i].id;
        q->workflow_id = strdup(row[i].workflow_id);
        q->kind = strdup(row[i].kind);
        q->logical_ms = row[i].logical_ms;
        q->conf = row[i].conf ? strdup(row[i].conf) : NULL;
        d->nreqs++;
    }
    if (n)
        disp_kick(d);
}

/* A reload, or the first load of a leadership, once PostgreSQL is up: 1
 * when it started. */
int disp_load_if_wanted(bt_dispatcher_t *d)
{
    if (!d->reload_wanted || d->loading || !bt_store_is_up(d->o.store))
        return 0;
    d->reload_wanted = 0;
    load_start(d);
    return 1;
}

void disp_on_config_poll(struct ev_loop *loop, ev_timer *w, int revents)
{
    bt_dispatcher_t *d = container_of(w, bt_dispatcher_t, config_poll);
    load_req_t *l;
    (void)loop;
    (void)revents;
    if (!disp_may_act(d) || disp_load_if_wanted(d) || !d->loaded)
        return;
    if ((l = load_req(d)) && bt_store_read_workflows(d->o.store, d->change_seq, on_changes, l))
        free(l);
    if ((l = load_req(d)) && bt_store_read_pools(d->o.store, on_pools, l))
        free(l);
    disp_poll_task_requests(d);
    if (!d->reqs_loading && (l = load_req(d))) {
        d->reqs_loading = 1;
        if (bt_store_read_run_requests(d->o.store, on_requests, l) != BT_OK) {
            free(l);
            d->reqs_loading = 0;
        }
    }
}
