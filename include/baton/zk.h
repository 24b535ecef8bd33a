/* A ZooKeeper session on the libev loop, with the single-threaded C client
 * (libzookeeper_st): no hidden threads, every callback runs on our loop.
 *
 * Contract
 *  - An ev_prepare watcher asks zookeeper_interest() what the client wants
 *    before every loop block (so async calls issued anywhere are flushed
 *    without a manual kick); an ev_io and an ev_timer then feed
 *    zookeeper_process().
 *  - Session events reach the owner's callback: CONNECTED (first connect
 *    or reconnect within the same session), SUSPENDED (connection lost, the
 *    session may still be alive), EXPIRED (the session is gone; this
 *    handle has already started a fresh session, and everything ephemeral
 *    must be rebuilt). AURORA-1840: SUSPENDED is not EXPIRED.
 *  - bt_zk_known_good() is the step-down rule: connected, and a server
 *    response seen within 2/3 of the negotiated session timeout. A leader
 *    issues no side effect unless it holds; it is evaluated against the
 *    clock at each call, so a process resumed after SIGSTOP sees it false
 *    before it can act on anything stale.
 */
#ifndef BATON_ZK_H
#define BATON_ZK_H

#include <ev.h>
#include <stdint.h>
#include <zookeeper.h>

#include "baton/err.h"

typedef struct bt_zk bt_zk_t;

typedef enum bt_zk_event {
    BT_ZK_CONNECTED,
    BT_ZK_SUSPENDED,
    BT_ZK_EXPIRED,
} bt_zk_event_t;

typedef void (*bt_zk_session_cb)(bt_zk_t *zk, bt_zk_event_t ev, void *arg);

typedef struct bt_zk_opts {
    const char *hosts;            /* "h1:p1,h2:p2,..." */
    uint32_t session_timeout_ms;
    const char *digest_auth;      /* "user:password" or NULL */
    bt_zk_session_cb cb;
    void *arg;
} bt_zk_opts_t;

bt_err_t bt_zk_new(struct ev_loop *loop, const bt_zk_opts_t *opts, bt_zk_t **out);
void bt_zk_free(bt_zk_t *zk); /* closes the session: ephemerals go at once */

/* The client handle for zoo_a* calls. Changes after EXPIRED. */
zhandle_t *bt_zk_handle(bt_zk_t *zk);

int bt_zk_connected(const bt_zk_t *zk);
int bt_zk_known_good(const bt_zk_t *zk);
int64_t bt_zk_session_id(const bt_zk_t *zk);
int bt_zk_timeout_ms(const bt_zk_t *zk);       /* negotiated, or requested */
int64_t bt_zk_last_recv_ms(const bt_zk_t *zk);  /* monotonic */

/* The ACL our znodes get: creator-all + world-read with digest auth,
 * open without (and a warning at start-up). */
struct ACL_vector *bt_zk_acl(bt_zk_t *zk);

/* The ACL of ancestors above the cluster root (e.g. /baton), which other
 * clusters, with other credentials, share: world may read and create
 * children; only the creator may delete or change it. */
struct ACL_vector *bt_zk_shared_acl(bt_zk_t *zk);

#endif
