/* The dispatcher's life cycle (start, pause, drain, stop) and its turn:
 * see include/baton/dispatcher.h. The model is in model.c, its loading in
 * load.c, one task's attempts in task_flow.c, runs in sched_runs.c,
 * operators' task requests in requests.c, calls across reloads in calls.c. */
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

uint64_t disp_random(bt_dispatcher_t *d)
{
    /* splitmix64: jitter needs spread, not secrecy */
    uint64_t z = (d->rnd += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

int disp_may_act(bt_dispatcher_t *d)
{
    return d->started && !d->paused && !d->draining &&
           (!d->o.coord || bt_coord_may_dispatch(d->o.coord));
}

void disp_kick(bt_dispatcher_t *d)
{
    if (!d->started)
        return;
    ev_timer_stop(d->loop, &d->tick);
    ev_timer_set(&d->tick, 0., 0.);
    ev_timer_start(d->loop, &d->tick);
}

inflight_t *disp_inflight(bt_dispatcher_t *d, task_t *t, int kind)
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

void disp_inflight_done(inflight_t *f)
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
    parked_free(f->parked);
    if (f->is_call) {
        f->d->op_calls[f->op]--;
        f->d->stats.calls_in_flight--;
        if (f->d->calls_waiting) {
            f->d->calls_waiting = 0;
            disp_kick(f->d);
        }
    }
    if (f->rendered)
        baton__v1__task_spec__free_unpacked(f->rendered, NULL);
    if (f->call_run)
        baton__v1__task_run__free_unpacked(f->call_run, NULL);
    int side_effect = f->is_side_effect;
    free(f);
    if (side_effect && d->draining)
        disp_drain_check(d);
}

int disp_write_ok(bt_dispatcher_t *d, bt_err_t err, const char *detail, const char *what)
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
    disp_reload(d, bt_err_name(err));
    return 0;
}

/* ------------------------------------------------------------ the turn */

uint32_t disp_pool_slots(bt_dispatcher_t *d, const char *pool)
{
    for (size_t i = 0; i < d->npools; i++)
        if (!strcmp(d->pool_names[i], pool))
            return d->pool_slots[i];
    return d->o.default_pool_slots;
}

static void on_drain_timer(struct ev_loop *loop, ev_timer *w, int revents);

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    bt_dispatcher_t *d = container_of(w, bt_dispatcher_t, tick);
    (void)loop;
    (void)revents;
    if (!disp_may_act(d))
        return;
    if (d->reload_wanted) {
        disp_load_if_wanted(d); /* PostgreSQL down: the poll timer tries again */
        return;
    }
    if (!d->loaded)
        return;
    int64_t now = bt_now_ms(), wake = 0;
    disp_schedule_runs(d, now, &wake);
    disp_apply_task_requests(d, now);
    if (d->loaded)
        disp_step_runs(d, now, &wake);
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
    ev_timer_init(&d->config_poll, disp_on_config_poll, 0., d->o.config_poll_ms / 1000.0);
    disp_reaper_init(d);
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
            disp_kick(d);
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
        disp_carry_free(d);
        disp_drop_parked(d);
    }
    d->started = 1;
    d->reload_wanted = 1;
    ev_timer_again(d->loop, &d->config_poll);
    disp_kick(d);
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
    disp_model_clear(d);
    disp_treqs_free(d); /* the next leader reads them afresh */
    d->reload_wanted = 0;
}

/* ------------------------------------------------------------ draining */

void disp_drain_check(bt_dispatcher_t *d)
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
            marked += (size_t)task_mark_unknown(d, &r->tasks[i]);
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
    disp_drain_check(d);
}

void bt_dispatcher_free(bt_dispatcher_t *d)
{
    if (!d)
        return;
    bt_dispatcher_stop(d);
    ev_timer_stop(d->loop, &d->drain_timer);
    disp_reaper_stop(d);
    disp_model_clear(d);
    disp_carry_free(d);
    disp_treqs_free(d);
    /* answers that never came (the operators are freed first) */
    while (d->inflight) {
        inflight_t *f = d->inflight;
        if (f->rec)
            baton__v1__task_run__free_unpacked(f->rec, NULL);
        if (f->run_rec)
            baton__v1__workflow_run__free_unpacked(f->run_rec, NULL);
        disp_inflight_done(f);
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
            out->active_tasks += task_is_active(&r->tasks[i]);
    }
}

void bt_dispatcher_on_queued(bt_dispatcher_t *d, bt_dispatcher_lag_cb cb, void *arg)
{
    d->lag_cb = cb;
    d->lag_arg = arg;
}
