/* The dispatcher's life cycle, its view of PostgreSQL, and its turn: see
 * include/baton/dispatcher.h. Per-task logic is in task_flow.c, run
 * creation and completion in runs.c. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "baton/clock.h"
#include "baton/log.h"
#include "baton/trigger.h"
#include "sched/dispatch.h"
#include "sched/sched_runs.h"
#include "util/container.h"

/* ------------------------------------------------------------ plumbing */

uint64_t bt_disp_random(bt_dispatcher_t *d)
{
    /* splitmix64: jitter needs spread, not secrecy */
    uint64_t z = (d->rnd += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

int bt_disp_may_act(bt_dispatcher_t *d)
{
    return d->started && !d->paused && !d->draining &&
           (!d->o.coord || bt_coord_may_dispatch(d->o.coord));
}

void bt_disp_kick(bt_dispatcher_t *d)
{
    if (!d->started)
        return;
    ev_timer_stop(d->loop, &d->tick);
    ev_timer_set(&d->tick, 0., 0.);
    ev_timer_start(d->loop, &d->tick);
}

inflight_t *bt_disp_inflight(bt_dispatcher_t *d, task_t *t, int kind)
{
    inflight_t *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    f->d = d;
    f->gen = d->gen;
    f->task = t;
    f->kind = kind;
    f->next = d->inflight;
    f->prevp = &d->inflight;
    if (d->inflight)
        d->inflight->prevp = &f->next;
    d->inflight = f;
    return f;
}

void bt_disp_inflight_done(inflight_t *f)
{
    bt_dispatcher_t *d = f->d;
    *f->prevp = f->next;
    if (f->next)
        f->next->prevp = f->prevp;
    if (f->is_submit)
        f->d->n_submits--;
    if (f->is_call && !f->task)
        d->n_detached--;
    if (f->is_side_effect)
        d->n_side_effects--;
    free(f->run_key);
    bt_parked_free(f->parked);
    if (f->is_call) {
        f->d->op_calls[f->op]--;
        f->d->stats.calls_in_flight--;
        if (f->d->calls_waiting) {
            f->d->calls_waiting = 0;
            bt_disp_kick(f->d);
        }
    }
    if (f->rendered)
        baton__v1__task_spec__free_unpacked(f->rendered, NULL);
    if (f->call_run)
        baton__v1__task_run__free_unpacked(f->call_run, NULL);
    int side_effect = f->is_side_effect;
    free(f);
    if (side_effect && d->draining)
        bt_disp_drain_check(d);
}

int bt_disp_write_ok(bt_dispatcher_t *d, bt_err_t err, const char *detail, const char *what)
{
    if (err == BT_OK)
        return 1;
    if (d->draining) {
        /* handing off: the successor reads what did commit; this drain
         * just cannot vouch for it */
        bt_warn("dispatch: %s write while handing off: %s%s%s", what, bt_strerror(err),
                detail ? ": " : "", detail ? detail : "");
        d->drain_dirty = 1;
        return 0;
    }
    if (err == BT_E_FENCED) {
        bt_warn("dispatch: %s write fenced: another node leads; stepping down", what);
        bt_dispatcher_stop(d);
        if (d->o.coord)
            bt_coord_fenced(d->o.coord, what);
        return 0;
    }
    bt_warn("dispatch: %s write: %s%s%s; reloading from PostgreSQL", what, bt_strerror(err),
            detail ? ": " : "", detail ? detail : "");
    bt_disp_reload(d, bt_err_name(err));
    return 0;
}

/* ------------------------------------------------------------ model */

/* The operator message of a task, by the oneof's current case. */
static ProtobufCMessage **operator_slot(bt_task_spec_t *t)
{
    const ProtobufCMessageDescriptor *d = t->base.descriptor;
    for (unsigned i = 0; i < d->n_fields; i++)
        if ((d->fields[i].flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
            d->fields[i].id == (unsigned)t->operator_case)
            return (ProtobufCMessage **)((char *)t + d->fields[i].offset);
    return NULL;
}

/* Packs every task into one block, then frees the operator messages. A
 * NULL message with its case still set is what free_unpacked expects of
 * an absent one; nothing packs these tasks again. */
static int strip_operators(spec_ref_t *r)
{
    bt_workflow_spec_t *s = r->spec;
    size_t total = s->n_tasks * sizeof *r->packed;
    for (size_t i = 0; i < s->n_tasks; i++)
        total += protobuf_c_message_get_packed_size(&s->tasks[i]->base);
    if (!(r->packed = malloc(total ? total : 1)))
        return 0;
    uint8_t *at = (uint8_t *)(r->packed + s->n_tasks);
    for (size_t i = 0; i < s->n_tasks; i++) {
        r->packed[i].data = at;
        r->packed[i].len = protobuf_c_message_pack(&s->tasks[i]->base, at);
        at += r->packed[i].len;
        ProtobufCMessage **op = operator_slot(s->tasks[i]);
        if (op && *op) {
            protobuf_c_message_free_unpacked(*op, NULL);
            *op = NULL;
        }
    }
    return 1;
}

spec_ref_t *bt_spec_ref_new(bt_workflow_spec_t *s)
{
    spec_ref_t *r = s ? calloc(1, sizeof *r) : NULL;
    if (r) {
        r->refs = 1;
        r->spec = s;
    }
    if (!r || !strip_operators(r)) {
        free(r);
        if (s)
            baton__v1__workflow_spec__free_unpacked(s, NULL);
        return NULL;
    }
    return r;
}

void bt_spec_ref_put(spec_ref_t *r)
{
    if (r && --r->refs == 0) {
        baton__v1__workflow_spec__free_unpacked(r->spec, NULL);
        free(r->packed);
        free(r);
    }
}

static void wf_free(wf_t *w)
{
    if (!w)
        return;
    free(w->id);
    bt_spec_ref_put(w->spec_ref);
    bt_cron_free(w->cron);
    bt_tz_free(w->tz);
    free(w);
}

static void run_free(run_t *r)
{
    for (size_t i = 0; i < r->ntasks; i++) {
        if (r->tasks[i].cur)
            baton__v1__task_run__free_unpacked(r->tasks[i].cur, NULL);
    }
    free(r->tasks);
    if (r->rec)
        baton__v1__workflow_run__free_unpacked(r->rec, NULL);
    bt_spec_ref_put(r->spec_ref);
    free(r);
}

static void reqs_free(bt_dispatcher_t *d)
{
    for (size_t i = 0; i < d->nreqs; i++) {
        free(d->reqs[i].workflow_id);
        free(d->reqs[i].kind);
        free(d->reqs[i].conf);
    }
    free(d->reqs);
    d->reqs = NULL;
    d->nreqs = 0;
}

static void pools_clear(bt_dispatcher_t *d);

/* What a reload must not forget: when a NOT_FOUND may count again for a
 * task whose own submission's outcome is unknown (Rule 4). */
static void carry_unknown_outcomes(bt_dispatcher_t *d)
{
    int64_t mono = bt_mono_ms();
    for (run_t *r = d->runs; r; r = r->next)
        for (size_t i = 0; i < r->ntasks; i++) {
            task_t *t = &r->tasks[i];
            if (!t->needs_lookup || t->resolve_after_mono <= mono)
                continue;
            struct carry *c = realloc(d->carry, (d->ncarry + 1) * sizeof *c);
            if (!c)
                return;
            d->carry = c;
            if (!(c[d->ncarry].key = strdup(t->cur->run_key)))
                return;
            c[d->ncarry++].resolve_after_mono = t->resolve_after_mono;
        }
}

static void carry_free(bt_dispatcher_t *d)
{
    for (size_t i = 0; i < d->ncarry; i++)
        free(d->carry[i].key);
    free(d->carry);
    d->carry = NULL;
    d->ncarry = 0;
}

static int64_t carried(const bt_dispatcher_t *d, const char *key)
{
    for (size_t i = 0; i < d->ncarry; i++)
        if (!strcmp(d->carry[i].key, key))
            return d->carry[i].resolve_after_mono;
    return 0;
}

/* Drops the model. In-flight answers of writes of this generation are
 * orphaned; calls are detached, to be attached again by the next load. */
static void model_clear(bt_dispatcher_t *d)
{
    carry_unknown_outcomes(d);
    bt_disp_detach_calls(d);
    d->gen++;
    for (size_t i = 0; i < d->nwfs; i++)
        wf_free(d->wfs[i]);
    free(d->wfs);
    d->wfs = NULL;
    d->nwfs = 0;
    while (d->runs) {
        run_t *r = d->runs;
        d->runs = r->next;
        run_free(r);
    }
    pools_clear(d);
    reqs_free(d);
    /* task requests survive a reload: a reopened run must meet its request
     * before the dispatcher finds it finished again */
    for (size_t i = 0; i < d->ntreqs; i++)
        d->treqs[i].busy = 0;
    d->treqs_loading = 0;
    d->loaded = d->loading = 0;
    d->reqs_loading = 0;
    d->change_seq = 0;
}

wf_t *bt_disp_wf(bt_dispatcher_t *d, const char *id)
{
    for (size_t i = 0; i < d->nwfs; i++)
        if (!strcmp(d->wfs[i]->id, id))
            return d->wfs[i];
    return NULL;
}

/* Installs or replaces a workflow from a row. */
static void wf_upsert(bt_dispatcher_t *d, const char *id, int version, int paused,
                      const uint8_t *spec, size_t len, int64_t next_fire, int64_t seq)
{
    char err[256];
    bt_workflow_spec_t *s = baton__v1__workflow_spec__unpack(NULL, len, spec);
    spec_ref_t *ref = s ? bt_spec_ref_new(s) : NULL;
    if (!ref) {
        bt_error("dispatch: workflow %s: stored spec does not decode; skipped", id);
        return;
    }
    wf_t *w = bt_disp_wf(d, id);
    if (!w) {
        wf_t **arr = realloc(d->wfs, (d->nwfs + 1) * sizeof *arr);
        if (!arr || !(w = calloc(1, sizeof *w)) || !(w->id = strdup(id))) {
            free(w);
            if (arr)
                d->wfs = arr;
            bt_spec_ref_put(ref);
            return;
        }
        d->wfs = arr;
        d->wfs[d->nwfs++] = w;
        w->next_fire_ms = next_fire;
    }
    bt_spec_ref_put(w->spec_ref);
    bt_cron_free(w->cron);
    bt_tz_free(w->tz);
    w->cron = NULL;
    w->tz = NULL;
    w->spec = s;
    w->spec_ref = ref;
    w->version = version;
    w->paused = paused;
    w->change_seq = seq;
    if (bt_tz_load(s->timezone && *s->timezone ? s->timezone : "UTC", &w->tz, err, sizeof err) !=
        BT_OK)
        bt_error("dispatch: workflow %s: %s", id, err);
    if (s->schedule && *s->schedule && bt_cron_parse(s->schedule, &w->cron, err, sizeof err) != BT_OK)
        bt_error("dispatch: workflow %s: schedule: %s", id, err);
    if (seq > d->change_seq)
        d->change_seq = seq;
}

/* ------------------------------------------------------------ loading */

static int64_t col_i64(PGresult *res, int row, int col, int64_t dflt)
{
    return PQgetisnull(res, row, col) ? dflt : strtoll(PQgetvalue(res, row, col), NULL, 10);
}

/* A bytea column in text (hex) form, decoded; free with PQfreemem. */
static uint8_t *col_bytes(PGresult *res, int row, int col, size_t *len)
{
    return PQunescapeBytea((const unsigned char *)PQgetvalue(res, row, col), len);
}

typedef struct load_req {
    bt_dispatcher_t *d;
    unsigned gen;
    int which;
} load_req_t;

/* Answered in this order (one pipelined connection): the fence's word on
 * the predecessor comes before the tasks it is about. */
enum { L_WORKFLOWS, L_RUNS, L_FENCE, L_TASKS, L_POOLS, L__COUNT };

static void load_done(bt_dispatcher_t *d);

static void load_workflows(bt_dispatcher_t *d, PGresult *res)
{
    for (int i = 0; i < PQntuples(res); i++) {
        size_t len;
        uint8_t *b = col_bytes(res, i, 3, &len);
        if (!b)
            continue;
        wf_upsert(d, PQgetvalue(res, i, 0), (int)col_i64(res, i, 1, 1),
                  PQgetvalue(res, i, 2)[0] == 't', b, len, col_i64(res, i, 4, -1),
                  col_i64(res, i, 5, 0));
        PQfreemem(b);
    }
}

static void load_runs(bt_dispatcher_t *d, PGresult *res)
{
    for (int i = 0; i < PQntuples(res); i++) {
        size_t rl, sl;
        uint8_t *rb = col_bytes(res, i, 0, &rl), *sb = col_bytes(res, i, 1, &sl);
        bt_workflow_run_t *rec = rb ? baton__v1__workflow_run__unpack(NULL, rl, rb) : NULL;
        bt_workflow_spec_t *spec = sb ? baton__v1__workflow_spec__unpack(NULL, sl, sb) : NULL;
        PQfreemem(rb);
        PQfreemem(sb);
        wf_t *w = rec ? bt_disp_wf(d, rec->workflow_id) : NULL;
        spec_ref_t *ref = NULL;
        if (spec && w && w->spec_ref && (int)rec->workflow_version == w->version) {
            baton__v1__workflow_spec__free_unpacked(spec, NULL); /* the same version */
            ref = bt_spec_ref_get(w->spec_ref);
        } else if (spec) {
            ref = bt_spec_ref_new(spec);
        }
        if (!rec || !ref || bt_disp_add_run(d, rec, ref) != BT_OK) {
            bt_error("dispatch: an active run's record or spec does not decode; left alone");
            if (rec)
                baton__v1__workflow_run__free_unpacked(rec, NULL);
            bt_spec_ref_put(ref);
        }
    }
}

static void on_corrupt_failed(bt_err_t err, const char *detail, void *arg)
{
    bt_dispatcher_t *d = arg;
    (void)detail;
    if (err == BT_OK)
        bt_disp_reload(d, "a corrupt task record was failed");
}

static void load_tasks(bt_dispatcher_t *d, PGresult *res)
{
    for (int i = 0; i < PQntuples(res); i++) {
        size_t len;
        const char *key = PQgetvalue(res, i, 0), *state = PQgetvalue(res, i, 1);
        uint8_t *b = col_bytes(res, i, 2, &len);
        bt_task_run_t *rec = b ? baton__v1__task_run__unpack(NULL, len, b) : NULL;
        PQfreemem(b);
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
        task_t *t = bt_disp_find_task(d, rec->workflow_id, rec->run_id, rec->task_id);
        if (!t) {
            baton__v1__task_run__free_unpacked(rec, NULL);
            continue;
        }
        if (t->cur)
            baton__v1__task_run__free_unpacked(t->cur, NULL);
        t->cur = rec;
        t->next_poll_ms = 0;
        if (rec->state == BATON__V1__TASK_STATE__TASK_STATE_SUBMITTING)
            bt_task_loaded_submitting(d, t, carried(d, rec->run_key));
        if (rec->needs_sweep)
            t->sweep_mono = bt_mono_ms() + d->o.settle_ms;
        /* our own call for it, made before a pause or a reload: its answer,
         * not a lookup, says what happened */
        bt_disp_attach_call(d, t);
    }
}

/* Whether the leader before us released cleanly (migration 6). Our own
 * epoch must be the fence's: otherwise we are deposed already, and assume
 * nothing. */
static void load_fence(bt_dispatcher_t *d, PGresult *res)
{
    d->inherited_clean = PQntuples(res) == 1 && PQgetvalue(res, 0, 0)[0] == 't' &&
                         (uint64_t)col_i64(res, 0, 1, -1) == d->epoch;
    if (d->epoch_loads == 0)
        bt_info("dispatch: the previous leader %s", d->inherited_clean
                                                        ? "released cleanly: its records are "
                                                          "trusted"
                                                        : "did not release cleanly: every "
                                                          "submission it left is looked up "
                                                          "after the transit bound");
}

static void pools_clear(bt_dispatcher_t *d)
{
    for (size_t i = 0; i < d->npools; i++)
        free(d->pool_names[i]);
    free(d->pool_names);
    free(d->pool_slots);
    d->pool_names = NULL;
    d->pool_slots = NULL;
    d->npools = 0;
}

static void load_pools(bt_dispatcher_t *d, PGresult *res)
{
    int n = PQntuples(res);
    pools_clear(d);
    d->pool_names = calloc((size_t)n + 1, sizeof *d->pool_names);
    d->pool_slots = calloc((size_t)n + 1, sizeof *d->pool_slots);
    if (!d->pool_names || !d->pool_slots)
        return;
    for (int i = 0; i < n; i++) {
        d->pool_names[i] = strdup(PQgetvalue(res, i, 0));
        d->pool_slots[i] = (uint32_t)col_i64(res, i, 1, 0);
        if (d->pool_names[i])
            d->npools++;
        else
            break;
    }
}

static void on_load(bt_err_t err, PGresult *res, const char *errmsg, void *arg)
{
    load_req_t *l = arg;
    bt_dispatcher_t *d = l->d;
    int which = l->which;
    unsigned gen = l->gen;
    free(l);
    if (gen != d->gen)
        return;
    if (err != BT_OK) {
        bt_warn("dispatch: loading: %s%s%s", bt_strerror(err), errmsg ? ": " : "",
                errmsg ? errmsg : "");
        bt_disp_reload(d, "load failed");
        return;
    }
    switch (which) {
    case L_WORKFLOWS:
        load_workflows(d, res);
        break;
    case L_RUNS:
        load_runs(d, res);
        break;
    case L_FENCE:
        load_fence(d, res);
        break;
    case L_TASKS:
        load_tasks(d, res);
        break;
    case L_POOLS:
        load_pools(d, res);
        break;
    }
    if (--d->loads_left == 0)
        load_done(d);
}

static const char *const load_sql[L__COUNT] = {
    [L_WORKFLOWS] = "SELECT workflow_id, version, paused, spec, "
                    "(extract(epoch FROM next_fire_at) * 1000)::bigint, change_seq "
                    "FROM workflows WHERE cluster = $1",
    [L_RUNS] = "SELECT r.record, v.spec FROM workflow_runs r JOIN workflow_versions v "
               "ON v.cluster = r.cluster AND v.workflow_id = r.workflow_id "
               "AND v.version = r.workflow_version "
               "WHERE r.cluster = $1 AND r.state IN ('queued', 'running') "
               "ORDER BY r.logical_time, r.run_id",
    [L_TASKS] = "SELECT DISTINCT ON (t.workflow_id, t.run_id, t.task_id) "
                "t.run_key, t.state, t.record FROM task_runs t JOIN workflow_runs r "
                "ON r.cluster = t.cluster AND r.workflow_id = t.workflow_id "
                "AND r.run_id = t.run_id "
                "WHERE t.cluster = $1 AND r.state IN ('queued', 'running') "
                "ORDER BY t.workflow_id, t.run_id, t.task_id, t.attempt DESC",
    [L_POOLS] = "SELECT name, slots FROM pools WHERE cluster = $1",
    [L_FENCE] = "SELECT inherited_clean, epoch FROM fence WHERE cluster = $1",
};

static void load_start(bt_dispatcher_t *d)
{
    const char *vals[1] = {bt_store_cluster(d->o.store)};
    model_clear(d);
    d->loading = 1;
    d->loads_left = L__COUNT;
    for (int i = 0; i < L__COUNT; i++) {
        load_req_t *l = malloc(sizeof *l);
        if (!l) {
            d->loads_left--;
            continue;
        }
        *l = (load_req_t){d, d->gen, i};
        if (bt_pg_query(bt_store_pg(d->o.store), load_sql[i], 1, vals, NULL, NULL, 0, on_load,
                        l) != BT_OK) {
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
    carry_free(d);
    bt_disp_apply_parked(d);
    bt_disp_kick(d);
}

void bt_disp_reload(bt_dispatcher_t *d, const char *why)
{
    if (!d->started)
        return;
    bt_info("dispatch: reloading state from PostgreSQL (%s)", why);
    model_clear(d);
    d->reload_wanted = 1;
    ev_timer_stop(d->loop, &d->tick);
    /* not from inside a callback of the batch being delivered: next turn */
    ev_timer_set(&d->tick, 0.05, 0.);
    ev_timer_start(d->loop, &d->tick);
}

/* ------------------------------------------------------------ config poll */

static void on_changes(bt_err_t err, PGresult *res, const char *errmsg, void *arg)
{
    load_req_t *l = arg;
    bt_dispatcher_t *d = l->d;
    unsigned gen = l->gen;
    free(l);
    (void)errmsg;
    if (gen != d->gen || err != BT_OK)
        return;
    load_workflows(d, res);
    bt_disp_kick(d);
}

static void on_pools(bt_err_t err, PGresult *res, const char *errmsg, void *arg)
{
    load_req_t *l = arg;
    bt_dispatcher_t *d = l->d;
    unsigned gen = l->gen;
    free(l);
    (void)errmsg;
    if (gen == d->gen && err == BT_OK)
        load_pools(d, res);
}

static void on_requests(bt_err_t err, PGresult *res, const char *errmsg, void *arg)
{
    load_req_t *l = arg;
    bt_dispatcher_t *d = l->d;
    unsigned gen = l->gen;
    free(l);
    (void)errmsg;
    if (gen != d->gen)
        return;
    d->reqs_loading = 0;
    if (err != BT_OK)
        return;
    for (int i = 0; i < PQntuples(res); i++) {
        int64_t id = col_i64(res, i, 0, 0);
        size_t k;
        for (k = 0; k < d->nreqs && d->reqs[k].id != id; k++)
            ;
        if (k < d->nreqs)
            continue; /* known (maybe being created) */
        struct req *arr = realloc(d->reqs, (d->nreqs + 1) * sizeof *arr);
        if (!arr)
            return;
        d->reqs = arr;
        struct req *q = &d->reqs[d->nreqs];
        memset(q, 0, sizeof *q);
        q->id = id;
        q->workflow_id = strdup(PQgetvalue(res, i, 1));
        q->kind = strdup(PQgetvalue(res, i, 2));
        q->logical_ms = col_i64(res, i, 3, 0);
        q->conf = PQgetisnull(res, i, 4) ? NULL : strdup(PQgetvalue(res, i, 4));
        d->nreqs++;
    }
    if (PQntuples(res))
        bt_disp_kick(d);
}

static void poll_query(bt_dispatcher_t *d, const char *sql, int n, const char *const *vals,
                       bt_pg_cb cb)
{
    load_req_t *l = malloc(sizeof *l);
    if (!l)
        return;
    *l = (load_req_t){d, d->gen, 0};
    if (bt_pg_query(bt_store_pg(d->o.store), sql, n, vals, NULL, NULL, 0, cb, l) != BT_OK) {
        free(l);
        if (cb == on_requests)
            d->reqs_loading = 0;
    }
}

static void on_config_poll(struct ev_loop *loop, ev_timer *w, int revents)
{
    bt_dispatcher_t *d = (bt_dispatcher_t *)((char *)w - offsetof(bt_dispatcher_t, config_poll));
    (void)loop;
    (void)revents;
    if (!bt_disp_may_act(d))
        return;
    if (d->reload_wanted && !d->loading && bt_store_is_up(d->o.store)) {
        d->reload_wanted = 0;
        load_start(d);
        return;
    }
    if (!d->loaded)
        return;
    char seq[24];
    snprintf(seq, sizeof seq, "%" PRId64, d->change_seq);
    const char *vals[2] = {bt_store_cluster(d->o.store), seq};
    poll_query(d,
               "SELECT workflow_id, version, paused, spec, "
               "(extract(epoch FROM next_fire_at) * 1000)::bigint, change_seq "
               "FROM workflows WHERE cluster = $1 AND change_seq > $2::bigint",
               2, vals, on_changes);
    poll_query(d, load_sql[L_POOLS], 1, vals, on_pools);
    bt_disp_poll_task_requests(d);
    if (!d->reqs_loading) {
        d->reqs_loading = 1;
        poll_query(d,
                   "SELECT id, workflow_id, kind, "
                   "(extract(epoch FROM logical_time) * 1000)::bigint, conf "
                   "FROM run_requests WHERE cluster = $1 ORDER BY id LIMIT 1000",
                   1, vals, on_requests);
    }
}

/* ------------------------------------------------------------ the turn */

uint32_t bt_disp_pool_slots(bt_dispatcher_t *d, const char *pool)
{
    for (size_t i = 0; i < d->npools; i++)
        if (!strcmp(d->pool_names[i], pool))
            return d->pool_slots[i];
    return d->o.default_pool_slots;
}

static void on_drain_timer(struct ev_loop *loop, ev_timer *w, int revents);

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    bt_dispatcher_t *d = (bt_dispatcher_t *)((char *)w - offsetof(bt_dispatcher_t, tick));
    (void)loop;
    (void)revents;
    if (!bt_disp_may_act(d))
        return;
    if (d->reload_wanted && !d->loading) {
        if (!bt_store_is_up(d->o.store))
            return; /* the poll timer tries again */
        d->reload_wanted = 0;
        load_start(d);
        return;
    }
    if (!d->loaded)
        return;
    int64_t now = bt_now_ms(), wake = 0;
    bt_disp_schedule_runs(d, now, &wake);
    bt_disp_apply_task_requests(d, now);
    if (d->loaded)
        bt_disp_step_runs(d, now, &wake);
    if (!d->started || !d->loaded)
        return;
    /* sleep until the next thing is due, at most a second */
    double delay = 1.0;
    if (wake) {
        double until = (double)(wake - bt_now_ms()) / 1000.0;
        delay = until < 0.001 ? 0.001 : until < delay ? until : delay;
    }
    ev_timer_stop(d->loop, &d->tick);
    ev_timer_set(&d->tick, delay, 0.);
    ev_timer_start(d->loop, &d->tick);
}

/* ------------------------------------------------------------ life cycle */

bt_err_t bt_dispatcher_new(struct ev_loop *loop, const bt_dispatcher_opts_t *opts,
                           bt_dispatcher_t **out)
{
    bt_dispatcher_t *d;
    if (!opts || !opts->store)
        return BT_E_INVAL;
    if (!(d = calloc(1, sizeof *d)))
        return BT_E_NOMEM;
    d->loop = loop;
    d->o = *opts;
    if (!d->o.default_pool_slots)
        d->o.default_pool_slots = 128;
    if (!d->o.config_poll_ms)
        d->o.config_poll_ms = 500;
    if (!d->o.transit_bound_ms)
        d->o.transit_bound_ms = 10000;
    if (!d->o.settle_ms)
        d->o.settle_ms = 5000;
    if (!d->o.drain_timeout_ms)
        d->o.drain_timeout_ms = 30000;
    if (!(d->op_calls = calloc(d->o.nops ? d->o.nops : 1, sizeof *d->op_calls))) {
        free(d);
        return BT_E_NOMEM;
    }
    d->rnd = (uint64_t)bt_now_ms() ^ ((uint64_t)(uintptr_t)d << 16);
    ev_timer_init(&d->tick, on_tick, 0., 0.);
    ev_timer_init(&d->config_poll, on_config_poll, 0., d->o.config_poll_ms / 1000.0);
    ev_timer_init(&d->drain_timer, on_drain_timer, 0., 0.);
    *out = d;
    return BT_OK;
}

void bt_dispatcher_set_coord(bt_dispatcher_t *d, bt_coord_t *coord)
{
    d->o.coord = coord;
}

void bt_dispatcher_start(bt_dispatcher_t *d, uint64_t epoch)
{
    if (d->started && d->epoch == epoch && !d->draining) {
        if (d->paused) { /* the same leadership, resumed: its calls went on */
            d->paused = 0;
            bt_info("dispatch: resuming (epoch %" PRIu64 ")", epoch);
            ev_timer_again(d->loop, &d->config_poll);
            bt_disp_kick(d);
        }
        return;
    }
    bt_dispatcher_stop(d);
    if (epoch != d->epoch) {
        /* a new leadership: Rule 4's clock starts now, and what the last
         * one left behind is its successor's (our) to judge from records */
        d->epoch = epoch;
        d->epoch_loads = 0;
        d->started_mono = bt_mono_ms();
        carry_free(d);
        bt_disp_drop_parked(d);
    }
    d->started = 1;
    d->reload_wanted = 1;
    ev_timer_again(d->loop, &d->config_poll);
    bt_disp_kick(d);
}

void bt_dispatcher_pause(bt_dispatcher_t *d)
{
    if (!d || !d->started || d->paused || d->draining)
        return;
    d->paused = 1;
    ev_timer_stop(d->loop, &d->tick);
    ev_timer_stop(d->loop, &d->config_poll);
}

/* The drain is over: tell from the loop (never from inside a call). */
static void drain_finish(bt_dispatcher_t *d, int clean)
{
    if (!d->draining || d->drain_over)
        return;
    d->drain_over = 1; /* still issuing nothing until stopped or started */
    d->drain_dirty = !clean;
    d->stats.drains++;
    if (!clean)
        d->stats.drains_unclean++;
    ev_timer_stop(d->loop, &d->drain_timer);
    ev_timer_set(&d->drain_timer, 0., 0.);
    ev_timer_start(d->loop, &d->drain_timer);
}

void bt_dispatcher_stop(bt_dispatcher_t *d)
{
    if (!d || !d->started)
        return;
    drain_finish(d, 0); /* stopped before it was over: not clean */
    d->started = 0;
    d->paused = 0;
    d->draining = 0;
    ev_timer_stop(d->loop, &d->tick);
    ev_timer_stop(d->loop, &d->config_poll);
    model_clear(d);
    bt_disp_treqs_free(d); /* the next leader reads them afresh */
    d->reload_wanted = 0;
}

/* ------------------------------------------------------------ draining */

void bt_disp_drain_check(bt_dispatcher_t *d)
{
    if (!d->draining || d->drain_over || d->drain_marking || d->n_side_effects ||
        d->task_writes)
        return;
    if (d->drain_dirty || !d->loaded) {
        drain_finish(d, 0);
        return;
    }
    /* every call answered, every outcome written: what is left unknown is
     * said in the records, so the successor need not wait for it */
    size_t marked = 0;
    for (run_t *r = d->runs; r; r = r->next)
        for (size_t i = 0; i < r->ntasks; i++)
            marked += (size_t)bt_task_mark_unknown(d, &r->tasks[i]);
    d->drain_marking = (int)marked;
    if (marked)
        bt_info("dispatch: handing off: %zu submission(s) of unknown outcome marked", marked);
    else
        drain_finish(d, !d->drain_dirty);
}

static void on_drain_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    bt_dispatcher_t *d = container_of(w, bt_dispatcher_t, drain_timer);
    (void)loop;
    (void)revents;
    if (d->drain_over) {
        void (*done)(void *, int) = d->drain_done;
        d->drain_done = NULL;
        d->drain_over = 0;
        if (done)
            done(d->drain_arg, !d->drain_dirty);
        return;
    }
    if (!d->drain_cut) {
        /* the bound: cut the side effects still on their way; their
         * outcomes come back unknown and are marked as such */
        d->drain_cut = 1;
        size_t n = d->o.http ? bt_http_gate_closed(d->o.http, 1) : 0;
        bt_warn("dispatch: handing off: %zu call(s) unanswered after %u ms; cut off %zu",
                d->n_side_effects, d->o.drain_timeout_ms, n);
        ev_timer_set(&d->drain_timer, 2., 0.);
        ev_timer_start(d->loop, &d->drain_timer);
        return;
    }
    bt_warn("dispatch: handing off: %zu call(s) never answered; not a clean release",
            d->n_side_effects);
    drain_finish(d, 0);
}

void bt_dispatcher_drain(bt_dispatcher_t *d, void (*done)(void *arg, int clean), void *arg)
{
    d->drain_done = done;
    d->drain_arg = arg;
    d->drain_over = 0;
    if (!d->started) { /* nothing of ours runs: nothing to account for */
        d->draining = 1;
        drain_finish(d, 0);
        d->draining = 0;
        return;
    }
    bt_info("dispatch: handing off: %zu side-effecting call(s) in flight", d->n_side_effects);
    d->draining = 1;
    d->drain_dirty = d->drain_cut = 0;
    d->drain_marking = 0;
    ev_timer_stop(d->loop, &d->tick);
    ev_timer_stop(d->loop, &d->config_poll);
    ev_timer_set(&d->drain_timer, d->o.drain_timeout_ms / 1000.0, 0.);
    ev_timer_start(d->loop, &d->drain_timer);
    bt_disp_drain_check(d);
}

void bt_dispatcher_free(bt_dispatcher_t *d)
{
    if (!d)
        return;
    bt_dispatcher_stop(d);
    ev_timer_stop(d->loop, &d->drain_timer);
    model_clear(d);
    carry_free(d);
    bt_disp_treqs_free(d);
    /* answers that never came (the operators are freed first) */
    while (d->inflight) {
        inflight_t *f = d->inflight;
        if (f->rec)
            baton__v1__task_run__free_unpacked(f->rec, NULL);
        if (f->run_rec)
            baton__v1__workflow_run__free_unpacked(f->run_rec, NULL);
        bt_disp_inflight_done(f);
    }
    free(d->op_calls);
    free(d);
}

void bt_dispatcher_get_stats(const bt_dispatcher_t *d, bt_dispatcher_stats_t *out)
{
    memset(out, 0, sizeof *out);
    if (!d)
        return;
    *out = d->stats;
    out->active = d->started && d->loaded;
    out->side_effects_in_flight = d->n_side_effects;
    out->active_runs = out->active_tasks = 0;
    for (const run_t *r = d->runs; r; r = r->next) {
        out->active_runs++;
        for (size_t i = 0; i < r->ntasks; i++)
            out->active_tasks += bt_task_is_active(&r->tasks[i]);
    }
}

void bt_dispatcher_on_queued(bt_dispatcher_t *d, bt_dispatcher_lag_cb cb, void *arg)
{
    d->lag_cb = cb;
    d->lag_arg = arg;
}
