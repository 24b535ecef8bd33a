/* Records: the protobuf messages of proto/baton.proto, their state names as
 * stored in PostgreSQL, and the task-run key. */
#ifndef BATON_RECORD_H
#define BATON_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "baton.pb-c.h"
#include "baton/err.h"

typedef Baton__V1__TaskRun bt_task_run_t;
typedef Baton__V1__TaskState bt_task_state_t;

/* "scheduled", "queued", ...: the names task_runs.state holds. NULL for an
 * unknown value. */
const char *bt_task_state_name(bt_task_state_t s);

/* The reverse; BT_E_INVAL for an unknown name. */
bt_err_t bt_task_state_parse(const char *name, bt_task_state_t *out);

/* 1 for success, failed, timed_out, cancelled, skipped, upstream_failed. */
int bt_task_state_is_final(bt_task_state_t s);

/* Writes "<workflow>/<run_id>/<task>/<attempt>" into buf. Returns BT_E_INVAL
 * when a part is empty or holds a '/', or when buf is too small. */
bt_err_t bt_run_key_format(char *buf, size_t len, const char *workflow,
                           const char *run_id, const char *task,
                           uint32_t attempt);

/* A deep copy of any message, every field heap-allocated, so that
 * <type>__free_unpacked(copy, NULL) frees it; NULL when out of memory. */
void *bt_pb_clone(const void *msg);

/* Formats Unix milliseconds as a PostgreSQL timestamptz literal (UTC). */
void bt_ms_to_pg_time(int64_t ms, char buf[40]);

#endif
