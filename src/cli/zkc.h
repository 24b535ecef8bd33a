/* batonctl's synchronous ZooKeeper calls (see zkc.c). Paths are relative to
 * the cluster's base, <root>/<cluster>. Calls return ZooKeeper's rc (ZOK,
 * ZNONODE, ...) or ZOPERATIONTIMEOUT when the command's deadline passed. */
#ifndef BATON_CLI_ZKC_H
#define BATON_CLI_ZKC_H

#include <stddef.h>
#include <stdint.h>

#include "baton/config.h"
#include "baton/zk.h"

typedef struct bt_zkc bt_zkc_t;

/* Connects within timeout_ms (the deadline for every later call, until
 * bt_zkc_extend). NULL with a reason in err. */
bt_zkc_t *bt_zkc_open(const bt_config_t *cfg, uint32_t timeout_ms, char *err, size_t errlen);
void bt_zkc_close(bt_zkc_t *z);
const char *bt_zkc_base(const bt_zkc_t *z);
void bt_zkc_extend(bt_zkc_t *z, uint32_t ms);

/* *out: the node's data, NUL-terminated (free()); "" is the base itself. */
int bt_zkc_get(bt_zkc_t *z, const char *rel, char **out, int64_t *czxid);
int bt_zkc_children(bt_zkc_t *z, const char *rel, char ***names, int *count);
void bt_zkc_free_names(char **names, int count);
int bt_zkc_create(bt_zkc_t *z, const char *rel, const char *data);
int bt_zkc_delete(bt_zkc_t *z, const char *rel);
/* Runs the loop for ms (keeps the session alive while a command waits). */
void bt_zkc_pump(bt_zkc_t *z, uint32_t ms);

#endif
