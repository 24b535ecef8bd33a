/* container_of: recover the struct that embeds a watcher (ev_io, ev_timer)
 * from the watcher pointer libev hands back, instead of a side table. */
#ifndef BATON_UTIL_CONTAINER_H
#define BATON_UTIL_CONTAINER_H

#include <stddef.h>

#define container_of(ptr, type, member) \
    ((type *)((char *)(ptr) - offsetof(type, member)))

#endif
