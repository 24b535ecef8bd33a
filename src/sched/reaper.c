/* The EMR orphan reaper (docs/operators.md, "Orphan reaper"): a cluster
 * baton created bills until someone ends it; when its run's teardown never
 * ran (the run was killed, timed out, failed before it, or the teardown
 * itself kept failing), nobody would. While leading, every reap_interval,
 * the dispatcher lists the live clusters carrying baton's run-key tag
 * (bt_emr_scan_tagged) and terminates each one
 *   - not tagged baton:keep=true (emr_create_cluster keep: true),
 *   - created more than reap_after ago,
 *   - whose run (the workflow run of the tag's task-run key) is finished,
 *     and finished more than reap_after ago;
 * with a fenced `cluster_reaped` event (committed before the call: it also
 * proves we still lead) and a counter. A cluster without
 * our tag, of a run still going, of a run this store does not know (an
 * other baton cluster's, in the same account), or that is young is left
 * alone. A failover in the middle only repeats TerminateJobFlows, which EMR
 * takes twice without harm. With reap_dry_run it only says what it would
 * terminate (`cluster_reap_candidate` events). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "baton/clock.h"
#include "baton/log.h"
#include "sched/dispatch.h"
#include "util/container.h"

static void next_cluster(bt_dispatcher_t *d);

static int current(const bt_dispatcher_t *d)
{
    return d->reaper.busy && d->reaper.gen == d->gen && d->started && !d->paused && !d->draining;
}

static void done(bt_dispatcher_t *d)
{
    free(d->reaper.list);
    d->reaper.list = NULL;
    d->reaper.n = d->reaper.i = 0;
    d->reaper.busy = 0;
}

static void on_noted(bt_err_t err, const char *detail, void *arg)
{
    (void)arg;
    if (err != BT_OK && err != BT_E_CANCELLED)
        bt_warn("reaper: recording the event: %s%s%s", bt_strerror(err), detail ? ": " : "",
                detail ? detail : "");
}

static void event(bt_dispatcher_t *d, const char *kind, const bt_emr_tagged_t *t, int64_t ended_ms,
                  bt_store_cb cb)
{
    char detail[512];
    snprintf(detail, sizeof detail,
             "{\"cluster_id\": \"%s\", \"state\": \"%s\", \"run_ended_ms\": %" PRId64 "}", t->id,
             t->state, ended_ms);
    if (bt_store_event(d->o.store, d->epoch, kind, t->run_key, detail, cb, d) != BT_OK &&
        cb != on_noted)
        next_cluster(d);
}

static void on_terminated(bt_err_t err, const char *msg, void *arg)
{
    bt_dispatcher_t *d = arg;
    if (!current(d))
        return done(d);
    const bt_emr_tagged_t *t = &d->reaper.list[d->reaper.i - 1];
    if (err != BT_OK) {
        bt_warn("reaper: TerminateJobFlows %s: %s; asking again next scan", t->id, msg);
    } else {
        d->stats.clusters_reaped++;
        bt_warn("reaper: terminated orphan cluster %s (%s), created by %s", t->id, t->state,
                t->run_key);
    }
    next_cluster(d);
}

/* The event is committed under our fence, which proves we still lead:
 * now the side effect. */
static void on_reap_noted(bt_err_t err, const char *detail, void *arg)
{
    bt_dispatcher_t *d = arg;
    if (err == BT_E_CANCELLED)
        return;
    if (!current(d))
        return done(d);
    const bt_emr_tagged_t *t = &d->reaper.list[d->reaper.i - 1];
    if (err != BT_OK) {
        bt_warn("reaper: not terminating %s: the event was refused (%s%s%s)", t->id,
                bt_strerror(err), detail ? ": " : "", detail ? detail : "");
        return next_cluster(d);
    }
    bt_err_t e = bt_emr_terminate_cluster(d->o.ops, d->o.nops, t->id, on_terminated, d);
    if (e != BT_OK) {
        bt_warn("reaper: cannot terminate %s: %s", t->id, bt_strerror(e));
        next_cluster(d);
    }
}

/* The cluster's run, if it is finished. */
static void on_run(bt_err_t err, const uint8_t *data, size_t len, void *arg)
{
    bt_dispatcher_t *d = arg;
    if (err == BT_E_CANCELLED)
        return; /* the store is closing: so is the dispatcher */
    if (!current(d))
        return done(d);
    const bt_emr_tagged_t *t = &d->reaper.list[d->reaper.i - 1];
    if (err != BT_OK) {
        /* NOTFOUND: running, or a run this store does not know */
        if (err != BT_E_NOTFOUND)
            bt_warn("reaper: the run of %s (cluster %s): %s", t->run_key, t->id,
                    bt_strerror(err));
        return next_cluster(d);
    }
    Baton__V1__WorkflowRun *run = baton__v1__workflow_run__unpack(NULL, len, data);
    int64_t ended = run ? run->ended_ms : 0;
    if (run)
        baton__v1__workflow_run__free_unpacked(run, NULL);
    if (!ended || bt_now_ms() - ended < (int64_t)d->o.reap_after_ms)
        return next_cluster(d);
    if (d->o.reap_dry_run) {
        d->stats.clusters_would_reap++;
        bt_info("reaper: would terminate orphan cluster %s (%s), created by %s (dry run)", t->id,
                t->state, t->run_key);
        event(d, "cluster_reap_candidate", t, ended, on_noted);
        return next_cluster(d);
    }
    /* the event first: a crash between it and the call still leaves a
     * record, and its fence proves we lead when the call goes out */
    event(d, "cluster_reaped", t, ended, on_reap_noted);
}

/* "<workflow>/<run id>/<task>/<attempt>": the workflow and run id. */
static int split_key(const char *key, char *wf, char *run, size_t len)
{
    const char *a = strchr(key, '/'), *b = a ? strchr(a + 1, '/') : NULL;
    if (!a || !b || a == key || b == a + 1 || (size_t)(a - key) >= len ||
        (size_t)(b - a - 1) >= len || !strchr(b + 1, '/'))
        return -1;
    snprintf(wf, len, "%.*s", (int)(a - key), key);
    snprintf(run, len, "%.*s", (int)(b - a - 1), a + 1);
    return 0;
}

static void next_cluster(bt_dispatcher_t *d)
{
    char wf[256], run[256];
    while (d->reaper.i < d->reaper.n) {
        const bt_emr_tagged_t *t = &d->reaper.list[d->reaper.i++];
        if (t->keep || split_key(t->run_key, wf, run, sizeof wf) < 0)
            continue;
        if (t->created_ms >= 0 && bt_now_ms() - t->created_ms < (int64_t)d->o.reap_after_ms)
            continue;
        if (bt_store_read_finished_run(d->o.store, wf, run, on_run, d) == BT_OK)
            return;
    }
    done(d);
}

static void on_scan(bt_err_t err, const char *msg, const bt_emr_tagged_t *list, size_t n,
                    void *arg)
{
    bt_dispatcher_t *d = arg;
    if (!current(d))
        return done(d);
    if (err != BT_OK) {
        bt_warn("reaper: listing the clusters: %s; trying again next scan", msg);
        return done(d);
    }
    d->stats.reap_scans++;
    if (n && !(d->reaper.list = malloc(n * sizeof *list)))
        return done(d);
    if (n)
        memcpy(d->reaper.list, list, n * sizeof *list);
    d->reaper.n = n;
    d->reaper.i = 0;
    bt_debug("reaper: %zu live cluster(s) carry a run key", n);
    next_cluster(d);
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    bt_dispatcher_t *d = container_of(w, bt_dispatcher_t, reaper.timer);
    (void)loop;
    (void)revents;
    if (d->reaper.busy || !d->started || !d->loaded || d->paused || d->draining)
        return;
    d->reaper.busy = 1;
    d->reaper.gen = d->gen;
    bt_err_t e = bt_emr_scan_tagged(d->o.ops, d->o.nops, on_scan, d);
    if (e != BT_OK) {
        if (e != BT_E_NOTFOUND) /* no EMR operators: nothing to reap */
            bt_warn("reaper: cannot list the clusters: %s", bt_strerror(e));
        done(d);
    }
}

void disp_reaper_init(bt_dispatcher_t *d)
{
    if (!d->o.reap_after_ms)
        d->o.reap_after_ms = 15 * 60 * 1000;
    if (!d->o.reap_interval_ms)
        d->o.reap_interval_ms = 5 * 60 * 1000;
    double s = (double)d->o.reap_interval_ms / 1000.0;
    ev_timer_init(&d->reaper.timer, on_timer, s, s);
    if (d->o.reap && d->o.nops) {
        ev_timer_start(d->loop, &d->reaper.timer);
        ev_unref(d->loop); /* the reaper alone keeps no loop running */
    }
}

void disp_reaper_stop(bt_dispatcher_t *d)
{
    if (ev_is_active(&d->reaper.timer)) {
        ev_ref(d->loop);
        ev_timer_stop(d->loop, &d->reaper.timer);
    }
    /* a scan in flight answers into nothing: the operators are freed first
     * (its answer never comes) and the store cancels its reads */
    free(d->reaper.list);
    d->reaper.list = NULL;
}
