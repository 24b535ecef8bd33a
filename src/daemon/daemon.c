#include "daemon/daemon.h"

#include <ev.h>
#include <stdio.h>

#include "baton/log.h"
#include "util/container.h"
#include "baton/store.h"

typedef struct bt_daemon {
    const bt_config_t *cfg;
    struct ev_loop *loop;
    bt_store_t *store;
    ev_signal sigterm, sigint;
} bt_daemon_t;


static void on_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)revents;
    bt_info("batond: signal %d: stopping", w->signum);
    ev_break(loop, EVBREAK_ALL);
}

static void on_pg_state(bt_pg_t *pg, int up, void *arg)
{
    bt_daemon_t *d = arg;
    (void)pg;
    bt_info("batond: PostgreSQL %s (node %s)", up ? "connected" : "lost", d->cfg->node_id);
}

int bt_daemon_run(const bt_config_t *cfg)
{
    bt_daemon_t d = {.cfg = cfg};
    char err[1024] = "";
    int version = 0;

    /* Blocking on purpose: nothing else runs yet, and a node must not join
     * the election against a schema it cannot write. */
    bt_err_t rc = bt_store_migrate(cfg->pg_conninfo, &version, err, sizeof err);
    if (rc != BT_OK) {
        bt_error("batond: refusing to start: %s", err);
        return rc == BT_E_SCHEMA_NEWER ? 2 : 1;
    }
    bt_info("batond %s: cluster %s, node %s, zone %s, schema v%d", BATON_VERSION,
            cfg->cluster, cfg->node_id, cfg->zone ? cfg->zone : "-", version);

    d.loop = ev_default_loop(EVFLAG_AUTO);
    bt_store_opts_t so = {
        .conninfo = cfg->pg_conninfo,
        .cluster = cfg->cluster,
        .node = cfg->node_id,
        .pg = {.lock_timeout_ms = (uint32_t)cfg->pg_lock_timeout_ms,
               .statement_timeout_ms = (uint32_t)cfg->pg_statement_timeout_ms,
               .idle_in_tx_timeout_ms = (uint32_t)cfg->pg_idle_tx_timeout_ms,
               .application_name = "batond"},
    };
    if ((rc = bt_store_open(d.loop, &so, &d.store)) != BT_OK) {
        bt_error("batond: cannot open the store: %s", bt_strerror(rc));
        return 1;
    }
    bt_pg_on_state(bt_store_pg(d.store), on_pg_state, &d);

    ev_signal_init(&d.sigterm, on_signal, SIGTERM);
    ev_signal_init(&d.sigint, on_signal, SIGINT);
    ev_signal_start(d.loop, &d.sigterm);
    ev_signal_start(d.loop, &d.sigint);

    ev_run(d.loop, 0);

    bt_store_close(d.store);
    ev_signal_stop(d.loop, &d.sigterm);
    ev_signal_stop(d.loop, &d.sigint);
    ev_loop_destroy(d.loop);
    return 0;
}
