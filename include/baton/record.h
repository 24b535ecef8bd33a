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

/* Workflow runs: "queued", "running", "success", "failed", "cancelled"; NULL if unknown. */
const char *bt_run_state_name(Baton__V1__RunState s);
bt_err_t bt_run_state_parse(const char *name, Baton__V1__RunState *out);
const char *bt_run_kind_name(Baton__V1__RunKind k);

/* A deep copy of any message, every field heap-allocated, so that
 * <type>__free_unpacked(copy, NULL) frees it; NULL when out of memory. */
void *bt_pb_clone(const void *msg);

/* Replaces a string field of a message (freeing the old value unless it is
 * protobuf-c's shared empty string); out of memory keeps the old value. */
void bt_pb_set_str(char **slot, const char *v);

/* A task run's attempt as it is born: `scheduled`, due at due_ms, its run
 * key made of the others, no handle yet (Livy ids -1: 0 is an id). NULL
 * when out of memory or when a part cannot be in a run key. */
bt_task_run_t *bt_task_attempt_new(const char *workflow, const char *run_id, const char *task,
                                   uint32_t attempt, int64_t due_ms);


#endif
