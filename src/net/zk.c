/* ZooKeeper's single-threaded client driven by libev. See include/baton/zk.h. */
#include "baton/zk.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "baton/clock.h"
#include "baton/log.h"
#include "util/container.h"

struct bt_zk {
    struct ev_loop *loop;
    bt_zk_opts_t opts;
    char *hosts;
    char *auth;
    zhandle_t *zh;
    int connected;
    int64_t last_recv_ms;
    ev_io io;
    ev_timer timer;
    ev_prepare prepare;
    ev_timer renew;      /* replaces an expired handle, outside its callbacks */
    struct ACL acl_entries[2];
    struct ACL_vector acl;
    struct ACL shared_entries[2];
    struct ACL_vector shared_acl;
};

static void zk_watcher(zhandle_t *zh, int type, int state, const char *path, void *ctx);

static bt_err_t zk_open(bt_zk_t *zk)
{
    zk->connected = 0;
    zk->zh = zookeeper_init(zk->hosts, zk_watcher, (int)zk->opts.session_timeout_ms, NULL, zk, 0);
    if (!zk->zh)
        return BT_E_ZK;
    /* By default the client resolves every server name again on each
     * zookeeper_interest() call, i.e. on every turn of our loop: three
     * getaddrinfo() calls (netlink address dumps) and a read of
     * /dev/urandom before the loop may block, on the path of every
     * ZooKeeper round trip of a handoff and of every dispatcher turn. A
     * DNS change is still seen within 30 s, and at once on a lost
     * connection. */
    zoo_set_servers_resolution_delay(zk->zh, 30000);
    if (zk->auth) {
        int rc = zoo_add_auth(zk->zh, "digest", zk->auth, (int)strlen(zk->auth), NULL, NULL);
        if (rc != ZOK) {
            bt_error("zk: cannot add digest auth: %s", zerror(rc));
            return BT_E_ZK;
        }
    }
    return BT_OK;
}

static void zk_renew_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    bt_zk_t *zk = container_of(w, bt_zk_t, renew);
    (void)loop;
    (void)revents;
    ev_io_stop(zk->loop, &zk->io);
    ev_timer_stop(zk->loop, &zk->timer);
    if (zk->zh)
        zookeeper_close(zk->zh);
    zk->zh = NULL;
    if (zk_open(zk) != BT_OK) {
        bt_error("zk: cannot start a new session; retrying in 1 s");
        ev_timer_set(&zk->renew, 1., 0.);
        ev_timer_start(zk->loop, &zk->renew);
        return;
    }
    bt_info("zk: started a new session after expiry");
    if (zk->opts.cb)
        zk->opts.cb(zk, BT_ZK_EXPIRED, zk->opts.arg);
}

static void zk_watcher(zhandle_t *zh, int type, int state, const char *path, void *ctx)
{
    bt_zk_t *zk = ctx;
    (void)path;
    if (type != ZOO_SESSION_EVENT || zh != zk->zh)
        return;
    if (state == ZOO_CONNECTED_STATE) {
        zk->connected = 1;
        zk->last_recv_ms = bt_mono_ms();
        bt_info("zk: connected, session 0x%llx, timeout %d ms",
                (unsigned long long)zoo_client_id(zh)->client_id, zoo_recv_timeout(zh));
        if (zk->opts.cb)
            zk->opts.cb(zk, BT_ZK_CONNECTED, zk->opts.arg);
    } else if (state == ZOO_CONNECTING_STATE || state == ZOO_ASSOCIATING_STATE) {
        if (zk->connected) {
            zk->connected = 0;
            bt_warn("zk: connection lost; session may still be alive");
            if (zk->opts.cb)
                zk->opts.cb(zk, BT_ZK_SUSPENDED, zk->opts.arg);
        }
    } else if (state == ZOO_EXPIRED_SESSION_STATE || state == ZOO_AUTH_FAILED_STATE) {
        zk->connected = 0;
        bt_warn("zk: session %s", state == ZOO_EXPIRED_SESSION_STATE ? "expired" : "auth failed");
        if (zk->opts.cb)
            zk->opts.cb(zk, BT_ZK_SUSPENDED, zk->opts.arg);
        /* closing the handle inside its own callback is not allowed */
        ev_timer_set(&zk->renew, 0., 0.);
        ev_timer_start(zk->loop, &zk->renew);
    }
}

static void zk_process(bt_zk_t *zk, int events)
{
    if (!zk->zh || ev_is_active(&zk->renew))
        return;
    if (events & ZOOKEEPER_READ)
        zk->last_recv_ms = bt_mono_ms();
    int rc = zookeeper_process(zk->zh, events);
    if (rc != ZOK && rc != ZNOTHING && rc != ZCONNECTIONLOSS && rc != ZOPERATIONTIMEOUT)
        bt_debug("zk: process: %s", zerror(rc));
}

static void zk_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    bt_zk_t *zk = container_of(w, bt_zk_t, io);
    (void)loop;
    zk_process(zk, ((revents & EV_READ) ? ZOOKEEPER_READ : 0) |
                       ((revents & EV_WRITE) ? ZOOKEEPER_WRITE : 0));
}

static void zk_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    bt_zk_t *zk = container_of(w, bt_zk_t, timer);
    (void)loop;
    (void)revents;
    zk_process(zk, 0);
}

/* Before the loop blocks: watch what the client wants watched. */
static void zk_prepare_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
    bt_zk_t *zk = container_of(w, bt_zk_t, prepare);
    int fd = -1, interest = 0;
    struct timeval tv = {0, 0};
    (void)revents;
    if (!zk->zh || ev_is_active(&zk->renew))
        return;
    int rc = zookeeper_interest(zk->zh, &fd, &interest, &tv);
    if (rc != ZOK && rc != ZCONNECTIONLOSS && rc != ZOPERATIONTIMEOUT)
        bt_debug("zk: interest: %s", zerror(rc));
    int events = ((interest & ZOOKEEPER_READ) ? EV_READ : 0) |
                 ((interest & ZOOKEEPER_WRITE) ? EV_WRITE : 0);
    if (fd < 0 || !events) {
        ev_io_stop(loop, &zk->io);
    } else if (!ev_is_active(&zk->io) || zk->io.fd != fd ||
               (zk->io.events & (EV_READ | EV_WRITE)) != events) {
        ev_io_stop(loop, &zk->io);
        ev_io_set(&zk->io, fd, events);
        ev_io_start(loop, &zk->io);
    }
    double after = (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
    ev_timer_stop(loop, &zk->timer);
    ev_timer_set(&zk->timer, after > 0 ? after : 0.001, 0.);
    ev_timer_start(loop, &zk->timer);
}

bt_err_t bt_zk_new(struct ev_loop *loop, const bt_zk_opts_t *opts, bt_zk_t **out)
{
    bt_zk_t *zk;
    if (!loop || !opts || !opts->hosts || !out)
        return BT_E_INVAL;
    if (!(zk = calloc(1, sizeof *zk)))
        return BT_E_NOMEM;
    zk->loop = loop;
    zk->opts = *opts;
    if (!zk->opts.session_timeout_ms)
        zk->opts.session_timeout_ms = 6000;
    zk->hosts = strdup(opts->hosts);
    zk->auth = opts->digest_auth ? strdup(opts->digest_auth) : NULL;
    if (!zk->hosts || (opts->digest_auth && !zk->auth)) {
        bt_zk_free(zk);
        return BT_E_NOMEM;
    }
    if (zk->auth) {
        zk->acl_entries[0] = ZOO_CREATOR_ALL_ACL.data[0];
        zk->acl_entries[1] = ZOO_READ_ACL_UNSAFE.data[0];
        zk->acl.count = 2;
        /* Ancestors such as /baton hold every cluster's root: others may
         * read and create under them, never delete or re-ACL them. */
        zk->shared_entries[0] = ZOO_CREATOR_ALL_ACL.data[0];
        zk->shared_entries[1] = ZOO_READ_ACL_UNSAFE.data[0];
        zk->shared_entries[1].perms = ZOO_PERM_READ | ZOO_PERM_CREATE;
        zk->shared_acl.count = 2;
    } else {
        bt_warn("zk: no digest credentials configured: our znodes are open to every client");
        zk->acl_entries[0] = ZOO_OPEN_ACL_UNSAFE.data[0];
        zk->acl.count = 1;
        zk->shared_entries[0] = ZOO_OPEN_ACL_UNSAFE.data[0];
        zk->shared_acl.count = 1;
    }
    zk->acl.data = zk->acl_entries;
    zk->shared_acl.data = zk->shared_entries;

    static int log_set;
    if (!log_set) {
        zoo_set_debug_level(getenv("BATON_ZK_DEBUG") ? ZOO_LOG_LEVEL_DEBUG : ZOO_LOG_LEVEL_ERROR);
        log_set = 1;
    }
    ev_init(&zk->io, zk_io_cb);
    ev_init(&zk->timer, zk_timer_cb);
    ev_init(&zk->renew, zk_renew_cb);
    ev_prepare_init(&zk->prepare, zk_prepare_cb);
    ev_prepare_start(loop, &zk->prepare);
    if (zk_open(zk) != BT_OK) {
        bt_zk_free(zk);
        return BT_E_ZK;
    }
    *out = zk;
    return BT_OK;
}

void bt_zk_free(bt_zk_t *zk)
{
    if (!zk)
        return;
    if (zk->loop) {
        ev_io_stop(zk->loop, &zk->io);
        ev_timer_stop(zk->loop, &zk->timer);
        ev_timer_stop(zk->loop, &zk->renew);
        ev_prepare_stop(zk->loop, &zk->prepare);
    }
    if (zk->zh)
        zookeeper_close(zk->zh);
    free(zk->hosts);
    free(zk->auth);
    free(zk);
}

zhandle_t *bt_zk_handle(bt_zk_t *zk)
{
    return zk->zh;
}

int bt_zk_connected(const bt_zk_t *zk)
{
    return zk->zh && zk->connected;
}

int bt_zk_timeout_ms(const bt_zk_t *zk)
{
    int t = zk->zh && zk->connected ? zoo_recv_timeout(zk->zh) : 0;
    return t > 0 ? t : (int)zk->opts.session_timeout_ms;
}

int bt_zk_known_good(const bt_zk_t *zk)
{
    if (!bt_zk_connected(zk))
        return 0;
    return bt_mono_ms() - zk->last_recv_ms < (int64_t)bt_zk_timeout_ms(zk) * 2 / 3;
}

int64_t bt_zk_session_id(const bt_zk_t *zk)
{
    return zk->zh ? zoo_client_id(zk->zh)->client_id : 0;
}

int64_t bt_zk_last_recv_ms(const bt_zk_t *zk)
{
    return zk->last_recv_ms;
}

struct ACL_vector *bt_zk_acl(bt_zk_t *zk)
{
    return &zk->acl;
}

struct ACL_vector *bt_zk_shared_acl(bt_zk_t *zk)
{
    return &zk->shared_acl;
}
