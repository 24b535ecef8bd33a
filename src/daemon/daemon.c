#include "daemon/daemon.h"

#include <ev.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

#include "baton/clock.h"
#include "baton/coord.h"
#include "baton/dispatcher.h"
#include "baton/emr.h"
#include "baton/genie.h"
#include "baton/http.h"
#include "baton/livy.h"
#include "baton/operator.h"
#include "baton/log.h"
#include "baton/store.h"
#include "daemon/admin.h"
#include "util/container.h"

/* The one context of a batond process (no other mutable global state). */
typedef struct bt_daemon {
    const bt_config_t *cfg;
    struct ev_loop *loop;
    bt_store_t *store;
    bt_coord_t *coord;
    bt_admin_t *admin;
    bt_dispatcher_t *dispatcher;
    bt_http_t *http;       /* one transport for every HTTP operator */
    bt_operator_t *ops[16];
    size_t nops;
    ev_signal sigterm, sigint;
    ev_timer hard_stop;    /* a handoff that cannot finish must not hang exit */
    int stopping;
} bt_daemon_t;

static void on_stopped(void *arg)
{
    bt_daemon_t *d = arg;
    bt_info("batond: handed off; exiting");
    ev_break(d->loop, EVBREAK_ALL);
}

static void on_hard_stop(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)w;
    (void)revents;
    bt_warn("batond: handoff did not finish in time; exiting anyway");
    ev_break(loop, EVBREAK_ALL);
}

static void on_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
    bt_daemon_t *d = w->signum == SIGTERM ? container_of(w, bt_daemon_t, sigterm)
                                          : container_of(w, bt_daemon_t, sigint);
    (void)revents;
    if (d->stopping) {
        ev_break(loop, EVBREAK_ALL);
        return;
    }
    d->stopping = 1;
    bt_info("batond: signal %d: planned handoff, then exit", w->signum);
    /* the calls' drain, then the writes' (2 s) and the release's (2 s) */
    ev_timer_init(&d->hard_stop, on_hard_stop, d->cfg->drain_timeout_ms / 1000.0 + 7., 0.);
    ev_timer_start(loop, &d->hard_stop);
    bt_coord_shutdown(d->coord, on_stopped, d);
}

static void on_calls_drained(void *arg, int clean)
{
    bt_daemon_t *d = arg;
    bt_coord_calls_drained(d->coord, clean);
}

/* The transport sends side effects only while this node may dispatch:
 * asked right before each one's first byte (http.h). */
static int may_send(void *arg)
{
    bt_daemon_t *d = arg;
    return d->coord && bt_coord_may_dispatch(d->coord);
}

static void on_role(bt_coord_t *co, bt_role_t role, uint64_t epoch, void *arg)
{
    bt_daemon_t *d = arg;
    bt_info("batond: node %s is %s (epoch %llu)", d->cfg->node_id, bt_role_name(role),
            (unsigned long long)epoch);
    /* anything but leading closes the gate: side effects waiting to be
     * sent, or half-written, are stopped now (before any I/O callback of
     * this loop turn when the pause check called us) */
    if (role != BT_ROLE_LEADING && d->http)
        bt_http_gate_closed(d->http, 0);
    if (!d->dispatcher)
        return;
    /* the dispatcher also asks bt_coord_may_dispatch before each action.
     * Suspended, it pauses (its calls go on, their answers are written);
     * handing off, it finishes its calls first; otherwise it stops */
    if (role == BT_ROLE_LEADING)
        bt_dispatcher_start(d->dispatcher, epoch);
    else if (role == BT_ROLE_SUSPENDED)
        bt_dispatcher_pause(d->dispatcher);
    else if (role == BT_ROLE_STEPPING_DOWN && bt_coord_handing_off(co))
        bt_dispatcher_drain(d->dispatcher, on_calls_drained, d);
    else
        bt_dispatcher_stop(d->dispatcher);
}

static char *status_json(void *arg)
{
    bt_daemon_t *d = arg;
    bt_zk_t *zk = bt_coord_zk(d->coord);
    json_t *o = json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:I, s:b, s:I, s:I, s:I, s:I, s:b, s:b, s:I, s:I, s:b, s:I, s:I}",
        "node",
        d->cfg->node_id, "cluster", d->cfg->cluster, "zone", d->cfg->zone ? d->cfg->zone : "",
        "version", BATON_VERSION, "role", bt_role_name(bt_coord_role(d->coord)), "epoch",
        (json_int_t)bt_coord_epoch(d->coord), "dispatching", bt_coord_may_dispatch(d->coord),
        "leader_since_ms", (json_int_t)(bt_coord_leader_since_us(d->coord) / 1000),
        "leader_since_us", (json_int_t)bt_coord_leader_since_us(d->coord), "last_stop_ms",
        (json_int_t)(bt_coord_last_stop_us(d->coord) / 1000), "last_stop_us",
        (json_int_t)bt_coord_last_stop_us(d->coord), "zk_connected",
        bt_zk_connected(zk), "zk_known_good", bt_zk_known_good(zk), "zk_session",
        (json_int_t)bt_zk_session_id(zk), "zk_last_response_ms_ago",
        (json_int_t)(bt_mono_ms() - bt_zk_last_recv_ms(zk)), "pg_connected",
        bt_store_is_up(d->store), "pg_pending", (json_int_t)bt_store_pending(d->store),
        "now_ms", (json_int_t)bt_now_ms());
    bt_dispatcher_stats_t ds;
    bt_dispatcher_get_stats(d->dispatcher, &ds);
    json_t *dj = json_pack("{s:b, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
                           "active", ds.active,
                           "runs_created", (json_int_t)ds.runs_created, "transitions",
                           (json_int_t)ds.transitions, "submits", (json_int_t)ds.submits,
                           "lookups", (json_int_t)ds.lookups, "polls", (json_int_t)ds.polls,
                           "reloads", (json_int_t)ds.reloads, "active_runs",
                           (json_int_t)ds.active_runs, "active_tasks",
                           (json_int_t)ds.active_tasks, "calls_in_flight",
                           (json_int_t)ds.calls_in_flight, "calls_in_flight_max",
                           (json_int_t)ds.calls_in_flight_max, "calls_deferred",
                           (json_int_t)ds.calls_deferred);
    if (o && dj)
        json_object_set_new(o, "dispatcher", dj);
    else
        json_decref(dj);
    /* Rule 4 of docs/failover.md at work: what waited, what was swept,
     * what the gate kept back */
    bt_http_stats_t hs;
    bt_http_get_stats(d->http, &hs);
    json_t *xj = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "side_effects_in_flight",
                           (json_int_t)ds.side_effects_in_flight, "not_found_waits",
                           (json_int_t)ds.not_found_waits, "sweeps", (json_int_t)ds.sweeps,
                           "duplicates_found", (json_int_t)ds.duplicates_found,
                           "duplicates_cancelled", (json_int_t)ds.duplicates_cancelled,
                           "drains", (json_int_t)ds.drains, "drains_unclean",
                           (json_int_t)ds.drains_unclean, "not_sent", (json_int_t)hs.not_sent,
                           "cut_off", (json_int_t)hs.cut_off);
    if (o && xj)
        json_object_set_new(o, "exactly_once", xj);
    else
        json_decref(xj);
    json_t *rj = json_pack("{s:b, s:b, s:I, s:I, s:I}", "on", d->cfg->emr_reap, "dry_run",
                           d->cfg->emr_reap_dry_run, "scans", (json_int_t)ds.reap_scans,
                           "reaped", (json_int_t)ds.clusters_reaped, "would_reap",
                           (json_int_t)ds.clusters_would_reap);
    if (o && rj)
        json_object_set_new(o, "reaper", rj);
    else
        json_decref(rj);
    bt_coord_stats_t cs;
    bt_coord_get_stats(d->coord, &cs);
    json_t *lj = json_pack("{s:b, s:b, s:b, s:I, s:I}", "fast_takeover", d->cfg->fast_takeover,
                           "held", cs.liveness_held, "watching", cs.liveness_watching,
                           "fast_takeovers", (json_int_t)cs.fast_takeovers, "taken_over_alive",
                           (json_int_t)cs.taken_over_alive);
    if (o && lj)
        json_object_set_new(o, "liveness", lj);
    else
        json_decref(lj);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return s;
}

int bt_daemon_run(const bt_config_t *cfg)
{
    bt_daemon_t d = {.cfg = cfg};
    char err[1024] = "";
    int version = 0, rc = 1;

    /* Blocking on purpose: nothing else runs yet, and a node must not join
     * the election against a schema it cannot write. */
    bt_err_t e = bt_store_migrate(cfg->pg_conninfo, &version, err, sizeof err);
    if (e != BT_OK) {
        bt_error("batond: refusing to start: %s", err);
        return e == BT_E_SCHEMA_NEWER ? 2 : 1;
    }
    bt_info("batond %s: cluster %s, node %s, zone %s, schema v%d", BATON_VERSION, cfg->cluster,
            cfg->node_id, cfg->zone ? cfg->zone : "-", version);

    d.loop = ev_default_loop(EVFLAG_AUTO);
    bt_store_opts_t so = {
        .conninfo = cfg->pg_conninfo,
        .cluster = cfg->cluster,
        .node = cfg->node_id,
        .lock_timeout_ms = (uint32_t)cfg->pg_lock_timeout_ms,
        .statement_timeout_ms = (uint32_t)cfg->pg_statement_timeout_ms,
        .idle_in_tx_timeout_ms = (uint32_t)cfg->pg_idle_tx_timeout_ms,
        .application_name = "batond",
    };
    if ((e = bt_store_open(d.loop, &so, &d.store)) != BT_OK) {
        bt_error("batond: cannot open the store: %s", bt_strerror(e));
        goto out;
    }
#ifdef BATON_TEST_OPERATORS
    if (bt_test_op_new(d.loop, &d.ops[d.nops]) == BT_OK)
        d.nops++;
#endif
    if ((e = bt_http_new(d.loop, &(bt_http_opts_t){.ca_bundle = cfg->http_ca_bundle},
                         &d.http)) != BT_OK) {
        bt_error("batond: cannot create the HTTP transport: %s", bt_strerror(e));
        goto out;
    }
    if ((e = bt_genie_operators(d.loop, d.http, cfg, d.ops, sizeof d.ops / sizeof d.ops[0],
                                &d.nops)) != BT_OK) {
        bt_error("batond: refusing to start: genie operators: %s", bt_strerror(e));
        rc = 2;
        goto out;
    }
    if ((e = bt_emr_operators(d.loop, d.http, cfg, d.ops, sizeof d.ops / sizeof d.ops[0],
                              &d.nops)) != BT_OK) {
        bt_error("batond: refusing to start: emr operators: %s", bt_strerror(e));
        rc = 2;
        goto out;
    }
    if ((e = bt_livy_operators(d.loop, d.http, cfg, d.ops, sizeof d.ops / sizeof d.ops[0],
                               &d.nops)) != BT_OK) {
        bt_error("batond: refusing to start: livy operators: %s", bt_strerror(e));
        rc = 2;
        goto out;
    }
    bt_dispatcher_opts_t dopts = {.store = d.store,
                                  .ops = d.ops,
                                  .nops = d.nops,
                                  .default_pool_slots = 128,
                                  /* after a fast takeover the predecessor may
                                   * send for up to its lease past our start */
                                  .transit_bound_ms = (uint32_t)(cfg->transit_bound_ms +
                                                                 (cfg->fast_takeover
                                                                      ? BT_COORD_LIVE_LEASE_MS
                                                                      : 0)),
                                  .settle_ms = (uint32_t)cfg->settle_ms,
                                  .drain_timeout_ms = (uint32_t)cfg->drain_timeout_ms,
                                  .http = d.http,
                                  .reap = cfg->emr_reap,
                                  .reap_dry_run = cfg->emr_reap_dry_run,
                                  .reap_after_ms = cfg->emr_reap_after_ms,
                                  .reap_interval_ms = cfg->emr_reap_interval_ms};
    if ((e = bt_dispatcher_new(d.loop, &dopts, &d.dispatcher)) != BT_OK) {
        bt_error("batond: cannot create the dispatcher: %s", bt_strerror(e));
        goto out;
    }
    bt_coord_opts_t co = {
        .cluster = cfg->cluster,
        .node_id = cfg->node_id,
        .zone = cfg->zone,
        .http = cfg->http,
        .zk_hosts = cfg->zk_hosts,
        .zk_root = cfg->zk_root,
        .zk_session_timeout_ms = (uint32_t)cfg->zk_session_timeout_ms,
        .zk_auth = cfg->zk_auth,
        .preferred_zone = cfg->preferred_zone,
        .zone_handoff = cfg->zone_handoff,
        .store = d.store,
        .drain_calls = 1,
        .fast_takeover = cfg->fast_takeover,
        .pg_conninfo = cfg->pg_conninfo,
        .on_role = on_role,
        .arg = &d,
    };
    if ((e = bt_coord_new(d.loop, &co, &d.coord)) == BT_OK) {
        bt_dispatcher_set_coord(d.dispatcher, d.coord);
        bt_http_set_gate(d.http, may_send, &d);
    }
    if (e != BT_OK) {
        bt_error("batond: cannot start coordination: %s", bt_strerror(e));
        rc = e == BT_E_CONFIG ? 2 : 1;
        goto out;
    }
    if (cfg->http && (e = bt_admin_start(d.loop, cfg->http, status_json, &d, &d.admin)) != BT_OK) {
        bt_error("batond: refusing to start: http: cannot serve on '%s'", cfg->http);
        rc = 2;
        goto out;
    }

    ev_signal_init(&d.sigterm, on_signal, SIGTERM);
    ev_signal_init(&d.sigint, on_signal, SIGINT);
    ev_signal_start(d.loop, &d.sigterm);
    ev_signal_start(d.loop, &d.sigint);
    ev_run(d.loop, 0);
    ev_signal_stop(d.loop, &d.sigterm);
    ev_signal_stop(d.loop, &d.sigint);
    ev_timer_stop(d.loop, &d.hard_stop);
    rc = 0;

out:
    bt_admin_stop(d.admin);
    bt_dispatcher_stop(d.dispatcher);
    /* order: operators drop their answers, the store cancels its writes
     * (callbacks still find the dispatcher), then the dispatcher goes */
    bt_genie_operators_free(d.ops, d.nops); /* NULLs its slots */
    bt_emr_operators_free(d.ops, d.nops);   /* likewise */
    bt_livy_operators_free(d.ops, d.nops);  /* likewise */
    for (size_t i = 0; i < d.nops; i++)
        bt_test_op_free(d.ops[i]);
    bt_http_free(d.http); /* after the operators: answers still in flight are dropped */
    bt_coord_free(d.coord);
    bt_store_close(d.store);
    bt_dispatcher_free(d.dispatcher);
    if (d.loop)
        ev_loop_destroy(d.loop);
    return rc;
}
