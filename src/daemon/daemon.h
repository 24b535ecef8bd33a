/* The daemon's one context and its run loop. */
#ifndef BATON_DAEMON_H
#define BATON_DAEMON_H

#include "baton/config.h"

/* Migrates the schema (blocking, before the loop), then runs the event loop
 * until SIGTERM/SIGINT. Returns the process exit status. */
int bt_daemon_run(const bt_config_t *cfg);

#endif
