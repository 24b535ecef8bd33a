/* The admin endpoint (--http HOST:PORT): GET /status answers one JSON
 * object with this node's own view (role, epoch, ZooKeeper and PostgreSQL
 * health). Read-only; one short request per connection; on the daemon's
 * loop, never blocking it. */
#ifndef BATON_DAEMON_ADMIN_H
#define BATON_DAEMON_ADMIN_H

#include <ev.h>

#include "baton/err.h"

typedef struct bt_admin bt_admin_t;

/* Writes the status document; the caller frees the string. */
typedef char *(*bt_admin_status_fn)(void *arg);

bt_err_t bt_admin_start(struct ev_loop *loop, const char *hostport, bt_admin_status_fn fn,
                        void *arg, bt_admin_t **out);
void bt_admin_stop(bt_admin_t *a);

#endif
