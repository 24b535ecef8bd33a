/* Workflow runs in the dispatcher: creating them (cron cursor, catchup,
 * max_active_runs, run requests), stepping their tasks with pools and
 * priorities, and finishing them. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "baton/clock.h"
#include "baton/log.h"
#include "baton/trigger.h"
#include "sched/sched_runs.h"

#define S(x) BATON__V1__TASK_STATE__TASK_STATE_##x

static bt_workflow_run_t *run_rec_copy(const bt_workflow_run_t *r)
{
    return bt_pb_clone(r);
}

static void run_dates(run_t *r, const wf_t *w)
{
    if (w && w->tz) {
        bt_tz_format_date(w->tz, r->rec->logical_time_ms, r->date);
        bt_tz_format_iso(w->tz, r->rec->logical_time_ms, r->logical);
    }
}

bt_err_t disp_add_run(bt_dispatcher_t *d, bt_workflow_run_t *rec, spec_ref_t *ref)
{
    const bt_workflow_spec_t *spec = ref->spec;
    run_t *r = calloc(1, sizeof *r);
    if (!r)
        return BT_E_NOMEM;
    r->rec = rec;
    r->spec = ref->spec;
    r->spec_ref = ref;
    r->wf = disp_wf(d, rec->workflow_id);
    r->ntasks = spec->n_tasks;
    r->dirty = 1;
    r->tasks = calloc(spec->n_tasks + 1, sizeof *r->tasks);
    if (!r->tasks) {
        free(r);
        return BT_E_NOMEM;
    }
    for (size_t i = 0; i < spec->n_tasks; i++) {
        task_t *t = &r->tasks[i];
        t->run = r;
        t->spec = spec->tasks[i];
        t->packed = &ref->packed[i];
        /* a placeholder until the stored attempt is loaded (or the one we
         * just created is installed) */
        t->cur = bt_task_attempt_new(rec->workflow_id, rec->run_id, spec->tasks[i]->id, 1, 0);
        if (!t->cur) {
            for (size_t k = 0; k < i; k++)
                baton__v1__task_run__free_unpacked(r->tasks[k].cur, NULL);
            free(r->tasks);
            free(r);
            return BT_E_NOMEM;
        }
    }
    run_dates(r, r->wf);
    if (r->wf)
        r->wf->active_runs++;
    r->next = d->runs;
    d->runs = r;
    return BT_OK;
}

task_t *disp_find_task(bt_dispatcher_t *d, const char *wf, const char *run_id,
                       const char *task_id)
{
    for (run_t *r = d->runs; r; r = r->next) {
        if (strcmp(r->rec->workflow_id, wf) || strcmp(r->rec->run_id, run_id))
            continue;
        for (size_t i = 0; i < r->ntasks; i++)
            if (!strcmp(r->tasks[i].spec->id, task_id))
                return &r->tasks[i];
    }
    return NULL;
}

/* ------------------------------------------------------------ creating */

typedef struct create_req {
    bt_dispatcher_t *d;
    unsigned gen;
    wf_t *wf;
    bt_workflow_run_t *rec;
    bt_task_run_t **tasks;
    size_t ntasks;
    int64_t next_fire;
    int64_t request_id;
} create_req_t;

static void create_req_free(create_req_t *c)
{
    for (size_t i = 0; i < c->ntasks; i++)
        if (c->tasks[i])
            baton__v1__task_run__free_unpacked(c->tasks[i], NULL);
    free(c->tasks);
    if (c->rec)
        baton__v1__workflow_run__free_unpacked(c->rec, NULL);
    free(c);
}

static void drop_request(bt_dispatcher_t *d, int64_t id)
{
    for (size_t i = 0; i < d->nreqs; i++) {
        if (d->reqs[i].id != id)
            continue;
        free(d->reqs[i].workflow_id);
        free(d->reqs[i].kind);
        free(d->reqs[i].conf);
        d->reqs[i] = d->reqs[--d->nreqs];
        return;
    }
}

static void on_run_created(bt_err_t err, const char *detail, void *arg)
{
    create_req_t *c = arg;
    bt_dispatcher_t *d = c->d;
    if (c->gen != d->gen) {
        create_req_free(c);
        return;
    }
    c->wf->busy = 0;
    if (c->request_id > 0)
        drop_request(d, c->request_id);
    if (err == BT_E_EXISTS) {
        /* the cursor moved all the same; the run is known or finished */
        if (c->next_fire >= 0)
            c->wf->next_fire_ms = c->next_fire;
        bt_warn("dispatch: run %s/%s exists already", c->rec->workflow_id, c->rec->run_id);
        create_req_free(c);
        disp_kick(d);
        return;
    }
    if (!disp_write_ok(d, err, detail, "run create")) {
        create_req_free(c);
        return;
    }
    if (c->next_fire >= 0)
        c->wf->next_fire_ms = c->next_fire;
    spec_ref_t *spec = spec_ref_get(c->wf->spec_ref);
    bt_workflow_run_t *rec = run_rec_copy(c->rec);
    if (!rec || disp_add_run(d, rec, spec) != BT_OK) {
        spec_ref_put(spec);
        if (rec)
            baton__v1__workflow_run__free_unpacked(rec, NULL);
        create_req_free(c);
        disp_reload(d, "out of memory");
        return;
    }
    /* install the committed first attempts */
    run_t *r = d->runs;
    for (size_t i = 0; i < r->ntasks && i < c->ntasks; i++) {
        baton__v1__task_run__free_unpacked(r->tasks[i].cur, NULL);
        r->tasks[i].cur = c->tasks[i];
        r->tasks[i].committed_ms = bt_now_ms();
        c->tasks[i] = NULL;
    }
    d->stats.runs_created++;
    d->stats.transitions += c->ntasks;
    bt_info("dispatch: created run %s/%s (%zu tasks)", r->rec->workflow_id, r->rec->run_id,
            r->ntasks);
    create_req_free(c);
    disp_kick(d);
}

static void create_run(bt_dispatcher_t *d, wf_t *w, Baton__V1__RunKind kind, int64_t logical,
                       int64_t next_fire, int64_t request_id, const char *conf, int64_t now)
{
    char run_id[160], iso[40];
    bt_tz_t *utc = NULL;
    char err[64];
    create_req_t *c = calloc(1, sizeof *c);
    if (!c)
        return;
    if (bt_tz_load("UTC", &utc, err, sizeof err) != BT_OK) {
        free(c);
        return;
    }
    bt_tz_format_iso(utc, logical, iso);
    bt_tz_free(utc);
    char *plus = strstr(iso, "+00:00"); /* run ids read better with Z */
    if (plus)
        strcpy(plus, "Z");
    if (kind == BATON__V1__RUN_KIND__RUN_KIND_MANUAL)
        snprintf(run_id, sizeof run_id, "manual__%s__%" PRId64, iso, request_id);
    else
        snprintf(run_id, sizeof run_id, "%s__%s", bt_run_kind_name(kind), iso);
    c->d = d;
    c->gen = d->gen;
    c->wf = w;
    c->next_fire = next_fire;
    c->request_id = request_id;
    c->rec = malloc(sizeof *c->rec);
    c->tasks = calloc(w->spec->n_tasks + 1, sizeof *c->tasks);
    if (!c->rec || !c->tasks) {
        free(c->rec);
        c->rec = NULL;
        create_req_free(c);
        return;
    }
    baton__v1__workflow_run__init(c->rec);
    c->rec->workflow_id = strdup(w->id);
    c->rec->run_id = strdup(run_id);
    c->rec->conf_json = strdup(conf ? conf : "");
    c->rec->state = BATON__V1__RUN_STATE__RUN_STATE_RUNNING;
    c->rec->kind = kind;
    c->rec->logical_time_ms = logical;
    c->rec->interval_end_ms = logical;
    c->rec->interval_start_ms = logical;
    int64_t prev;
    if (w->cron && bt_cron_prev(w->cron, w->tz, logical, &prev) == BT_OK)
        c->rec->interval_start_ms = prev;
    c->rec->workflow_version = (uint32_t)w->version;
    c->rec->created_ms = c->rec->started_ms = now;
    if (!c->rec->workflow_id || !c->rec->run_id || !c->rec->conf_json) {
        create_req_free(c);
        return;
    }
    for (size_t i = 0; i < w->spec->n_tasks; i++) {
        if (!(c->tasks[i] = bt_task_attempt_new(w->id, run_id, w->spec->tasks[i]->id, 1, now))) {
            create_req_free(c);
            return;
        }
        c->ntasks++;
    }
    w->busy = 1;
    if (bt_store_run_create(d->o.store, d->epoch, c->rec, c->tasks, c->ntasks, next_fire,
                            request_id, on_run_created, c) != BT_OK) {
        w->busy = 0;
        create_req_free(c);
        disp_reload(d, "cannot send a run create");
    }
}

static void on_cursor(bt_err_t err, const char *detail, void *arg)
{
    create_req_t *c = arg;
    bt_dispatcher_t *d = c->d;
    if (c->gen == d->gen) {
        c->wf->busy = 0;
        if (disp_write_ok(d, err, detail, "cursor")) {
            c->wf->next_fire_ms = c->next_fire;
            disp_kick(d);
        }
    }
    free(c);
}

static void init_cursor(bt_dispatcher_t *d, wf_t *w, int64_t now)
{
    int64_t start = w->spec->catchup && w->spec->start_ms ? w->spec->start_ms - 1 : now;
    int64_t next;
    if (bt_cron_next(w->cron, w->tz, start, &next) != BT_OK)
        return;
    create_req_t *c = calloc(1, sizeof *c);
    if (!c)
        return;
    c->d = d;
    c->gen = d->gen;
    c->wf = w;
    c->next_fire = next;
    w->busy = 1;
    if (bt_store_workflow_cursor_init(d->o.store, d->epoch, w->id, next, on_cursor, c) != BT_OK) {
        w->busy = 0;
        free(c);
    }
}

static void schedule_one(bt_dispatcher_t *d, wf_t *w, int64_t now, int64_t *wake)
{
    if (!w->spec || !w->cron || !w->tz || w->paused || w->busy)
        return;
    if (w->next_fire_ms < 0) {
        init_cursor(d, w, now);
        return;
    }
    if (w->next_fire_ms > now) {
        if (!*wake || w->next_fire_ms < *wake)
            *wake = w->next_fire_ms;
        return;
    }
    uint32_t max_runs = w->spec->max_active_runs ? w->spec->max_active_runs : 1;
    if (w->active_runs >= max_runs)
        return;
    int64_t logical = w->next_fire_ms, latest, next;
    /* without catchup only the latest missed time gets a run */
    if (!w->spec->catchup && bt_cron_prev(w->cron, w->tz, now + 1, &latest) == BT_OK &&
        latest > logical)
        logical = latest;
    if (bt_cron_next(w->cron, w->tz, logical, &next) != BT_OK)
        next = INT64_MAX / 2;
    create_run(d, w, BATON__V1__RUN_KIND__RUN_KIND_SCHEDULED, logical, next, -1, NULL, now);
}

void disp_schedule_runs(bt_dispatcher_t *d, int64_t now, int64_t *wake)
{
    for (size_t i = 0; i < d->nwfs && d->loaded; i++)
        schedule_one(d, d->wfs[i], now, wake);
    for (size_t i = 0; i < d->nreqs && d->loaded; i++) {
        struct req *q = &d->reqs[i];
        wf_t *w = disp_wf(d, q->workflow_id);
        if (q->busy || !w || !w->spec || w->busy)
            continue;
        uint32_t max_runs = w->spec->max_active_runs ? w->spec->max_active_runs : 1;
        if (w->active_runs >= max_runs)
            continue;
        q->busy = 1;
        create_run(d, w,
                   !strcmp(q->kind, "backfill") ? BATON__V1__RUN_KIND__RUN_KIND_BACKFILL
                                                : BATON__V1__RUN_KIND__RUN_KIND_MANUAL,
                   q->logical_ms, -1, q->id, q->conf, now);
    }
}

/* ------------------------------------------------------------ stepping */

typedef struct finish_req {
    bt_dispatcher_t *d;
    unsigned gen;
    run_t *run;
    bt_workflow_run_t *rec;
} finish_req_t;

static void unlink_run(bt_dispatcher_t *d, run_t *r)
{
    for (run_t **p = &d->runs; *p; p = &(*p)->next) {
        if (*p == r) {
            *p = r->next;
            break;
        }
    }
    if (r->wf && r->wf->active_runs)
        r->wf->active_runs--;
    for (size_t i = 0; i < r->ntasks; i++)
        baton__v1__task_run__free_unpacked(r->tasks[i].cur, NULL);
    free(r->tasks);
    baton__v1__workflow_run__free_unpacked(r->rec, NULL);
    spec_ref_put(r->spec_ref);
    free(r);
}

static void on_run_finished(bt_err_t err, const char *detail, void *arg)
{
    finish_req_t *f = arg;
    bt_dispatcher_t *d = f->d;
    if (f->gen == d->gen) {
        f->run->pending = 0;
        f->run->dirty = 1;
        if (disp_write_ok(d, err, detail, "run")) {
            bt_info("dispatch: run %s/%s %s", f->rec->workflow_id, f->rec->run_id,
                    bt_run_state_name(f->rec->state));
            unlink_run(d, f->run);
            disp_kick(d);
        }
    }
    baton__v1__workflow_run__free_unpacked(f->rec, NULL);
    free(f);
}

/* All tasks final: success when each succeeded or was skipped. */
static void maybe_finish(bt_dispatcher_t *d, run_t *r, int64_t now)
{
    int ok = 1;
    for (size_t i = 0; i < r->ntasks; i++) {
        task_t *t = &r->tasks[i];
        /* a sweep still due keeps the run open: its twins are the run's */
        if (t->pending || t->op_busy || t->sweep_mono || !bt_task_state_is_final(task_state(t)))
            return;
        if (task_state(t) != S(SUCCESS) && task_state(t) != S(SKIPPED))
            ok = 0;
    }
    finish_req_t *f = calloc(1, sizeof *f);
    if (!f || !(f->rec = run_rec_copy(r->rec))) {
        free(f);
        return;
    }
    f->d = d;
    f->gen = d->gen;
    f->run = r;
    f->rec->state = ok ? BATON__V1__RUN_STATE__RUN_STATE_SUCCESS
                       : BATON__V1__RUN_STATE__RUN_STATE_FAILED;
    f->rec->ended_ms = now;
    r->pending = 1;
    if (bt_store_run_transition(d->o.store, d->epoch, r->rec->state, f->rec, on_run_finished,
                                f) != BT_OK) {
        r->pending = 0;
        baton__v1__workflow_run__free_unpacked(f->rec, NULL);
        free(f);
        disp_reload(d, "cannot send a run transition");
    }
}

/* Tasks queued in one turn at most: each costs two fenced writes, and a
 * fan-out of tens of thousands placed in one turn would hold the loop (and
 * ZooKeeper's pings) while it builds them all. The rest go in the next
 * turn, at once. (Their operator calls are bounded in task_flow.c.) */
#define QUEUE_PER_TURN 4096

typedef struct ready {
    task_t *t;
} ready_t;

static int cmp_ready(const void *a, const void *b)
{
    const task_t *x = ((const ready_t *)a)->t, *y = ((const ready_t *)b)->t;
    int c = strcmp(x->spec->pool, y->spec->pool);
    if (c)
        return c;
    if (x->spec->priority != y->spec->priority)
        return x->spec->priority > y->spec->priority ? -1 : 1;
    if (x->cur->due_ms != y->cur->due_ms)
        return x->cur->due_ms < y->cur->due_ms ? -1 : 1;
    return strcmp(x->cur->run_key, y->cur->run_key);
}

/* Slots in use per pool, counted afresh each turn (queued, submitting,
 * running, or a write towards them in flight). */
static uint32_t pool_used(bt_dispatcher_t *d, const char *pool)
{
    uint32_t n = 0;
    for (run_t *r = d->runs; r; r = r->next)
        for (size_t i = 0; i < r->ntasks; i++)
            if (!strcmp(r->tasks[i].spec->pool, pool) &&
                (task_is_active(&r->tasks[i]) || (r->tasks[i].pending &&
                 task_state(&r->tasks[i]) == S(SCHEDULED))))
                n++;
    return n;
}

/* When t next needs a look, after a step that left it as it is now (tw:
 * the wake-up the step asked for). */
static int64_t task_wake(const task_t *t, int64_t tw, int ready)
{
    if (t->pending || t->op_busy)
        return INT64_MAX; /* the answer marks it */
    if (tw)
        return tw;
    if (ready)
        return 0; /* waits for a slot: a slot frees in any run */
    Baton__V1__TaskState s = task_state(t);
    if (bt_task_state_is_final(s) || s == S(SCHEDULED))
        return INT64_MAX; /* an upstream change marks the run */
    return 0;
}

/* One turn over the runs. A turn looks only at the tasks that need it:
 * those of runs where something changed, and those whose own time came
 * (a due time, a poll, a timeout). With thousands of running jobs polled
 * every 30 s a turn comes every few milliseconds, and looking at every
 * task each time would cost a core; once a second every task is looked at
 * all the same, so a change that marked nothing waits a second at most. */
void disp_step_runs(bt_dispatcher_t *d, int64_t now, int64_t *wake)
{
    ready_t *ready = NULL;
    size_t nready = 0, cap = 0;
    int sweep = now >= d->next_sweep_ms;
    if (sweep)
        d->next_sweep_ms = now + 1000;

    for (run_t *r = d->runs, *next; r && d->loaded; r = next) {
        next = r->next;
        if (r->pending)
            continue;
        int all = sweep || r->dirty, decision;
        r->dirty = 0;
        for (size_t i = 0; i < r->ntasks && d->loaded; i++) {
            task_t *t = &r->tasks[i];
            if (!all && t->wake_ms > now) {
                if (t->wake_ms != INT64_MAX)
                    wake_at_ms(wake, t->wake_ms);
                continue;
            }
            int64_t tw = 0;
            task_step(d, t, now, &tw);
            if (!d->loaded)
                break;
            int is_ready = 0;
            if (!t->pending && !t->op_busy && task_state(t) == S(SCHEDULED) &&
                t->cur->due_ms <= now && task_ready(t, &decision)) {
                if (nready == cap) {
                    cap = cap ? cap * 2 : 64;
                    ready_t *n = realloc(ready, cap * sizeof *n);
                    if (!n)
                        break;
                    ready = n;
                }
                ready[nready++].t = t;
                is_ready = 1;
            }
            t->wake_ms = task_wake(t, tw, is_ready);
            wake_at_ms(wake, tw);
        }
        if (all && d->loaded)
            maybe_finish(d, r, now);
    }
    if (!nready || !d->loaded) {
        free(ready);
        return;
    }
    /* slots in use per workflow, counted afresh when there is work to place
     * (pool_used counts per pool) */
    for (size_t i = 0; i < d->nwfs; i++)
        d->wfs[i]->active_tasks = 0;
    for (run_t *r = d->runs; r; r = r->next)
        for (size_t i = 0; i < r->ntasks; i++)
            if (r->wf && (task_is_active(&r->tasks[i]) || r->tasks[i].pending))
                r->wf->active_tasks++;
    /* queue by pool, priority (high first), then due time */
    qsort(ready, nready, sizeof *ready, cmp_ready);
    const char *pool = NULL;
    uint32_t free_slots = 0, queued = 0;
    for (size_t i = 0; i < nready && d->loaded; i++) {
        task_t *t = ready[i].t;
        if (!pool || strcmp(pool, t->spec->pool)) {
            pool = t->spec->pool;
            uint32_t slots = disp_pool_slots(d, pool), used = pool_used(d, pool);
            free_slots = slots > used ? slots - used : 0;
        }
        wf_t *w = t->run->wf;
        uint32_t max_tasks = w && w->spec->max_active_tasks ? w->spec->max_active_tasks : 16;
        if (!free_slots || (w && w->active_tasks >= max_tasks))
            continue;
        free_slots--;
        if (w)
            w->active_tasks++;
        task_queue(d, t, now);
        if (++queued == QUEUE_PER_TURN) {
            wake_at_ms(wake, now); /* the rest in the next turn */
            break;
        }
    }
    free(ready);
}
