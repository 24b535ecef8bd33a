/* The records' helpers (include/baton/record.h): state names, run keys,
 * copies, and the making of a task run's attempt. No I/O: the scheduler's
 * run path and the store both build on it. */
#include "baton/record.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const bt_task_state_names[] = {
    [BATON__V1__TASK_STATE__TASK_STATE_SCHEDULED] = "scheduled",
    [BATON__V1__TASK_STATE__TASK_STATE_QUEUED] = "queued",
    [BATON__V1__TASK_STATE__TASK_STATE_SUBMITTING] = "submitting",
    [BATON__V1__TASK_STATE__TASK_STATE_RUNNING] = "running",
    [BATON__V1__TASK_STATE__TASK_STATE_SUCCESS] = "success",
    [BATON__V1__TASK_STATE__TASK_STATE_FAILED] = "failed",
    [BATON__V1__TASK_STATE__TASK_STATE_UP_FOR_RETRY] = "up_for_retry",
    [BATON__V1__TASK_STATE__TASK_STATE_TIMED_OUT] = "timed_out",
    [BATON__V1__TASK_STATE__TASK_STATE_CANCELLED] = "cancelled",
    [BATON__V1__TASK_STATE__TASK_STATE_SKIPPED] = "skipped",
    [BATON__V1__TASK_STATE__TASK_STATE_UPSTREAM_FAILED] = "upstream_failed",
};
#define BT_NSTATES (sizeof bt_task_state_names / sizeof bt_task_state_names[0])

const char *bt_task_state_name(bt_task_state_t s)
{
    if ((unsigned)s >= BT_NSTATES)
        return NULL;
    return bt_task_state_names[s];
}

bt_err_t bt_task_state_parse(const char *name, bt_task_state_t *out)
{
    for (unsigned i = 1; name && i < BT_NSTATES; i++) {
        if (bt_task_state_names[i] && !strcmp(bt_task_state_names[i], name)) {
            *out = (bt_task_state_t)i;
            return BT_OK;
        }
    }
    return BT_E_INVAL;
}

int bt_task_state_is_final(bt_task_state_t s)
{
    switch (s) {
    case BATON__V1__TASK_STATE__TASK_STATE_SUCCESS:
    case BATON__V1__TASK_STATE__TASK_STATE_FAILED:
    case BATON__V1__TASK_STATE__TASK_STATE_TIMED_OUT:
    case BATON__V1__TASK_STATE__TASK_STATE_CANCELLED:
    case BATON__V1__TASK_STATE__TASK_STATE_SKIPPED:
    case BATON__V1__TASK_STATE__TASK_STATE_UPSTREAM_FAILED:
        return 1;
    default:
        return 0;
    }
}

static int bt_key_part_ok(const char *s)
{
    return s && *s && !strchr(s, '/');
}

bt_err_t bt_run_key_format(char *buf, size_t len, const char *workflow,
                           const char *run_id, const char *task,
                           uint32_t attempt)
{
    if (!bt_key_part_ok(workflow) || !bt_key_part_ok(run_id) ||
        !bt_key_part_ok(task) || attempt == 0)
        return BT_E_INVAL;
    int n = snprintf(buf, len, "%s/%s/%s/%u", workflow, run_id, task, attempt);
    if (n < 0 || (size_t)n >= len)
        return BT_E_INVAL;
    return BT_OK;
}

void *bt_pb_clone(const void *msg)
{
    const ProtobufCMessage *m = msg;
    size_t len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(len + 1); /* +1: never malloc(0) */
    if (!buf)
        return NULL;
    protobuf_c_message_pack(m, buf);
    ProtobufCMessage *c = protobuf_c_message_unpack(m->descriptor, NULL, len, buf);
    free(buf);
    return c;
}

void bt_pb_set_str(char **slot, const char *v)
{
    char *n = strdup(v ? v : "");
    if (!n)
        return; /* keep the old value rather than lose the record */
    if (*slot && *slot != protobuf_c_empty_string)
        free(*slot);
    *slot = n;
}

bt_task_run_t *bt_task_attempt_new(const char *workflow, const char *run_id, const char *task,
                                   uint32_t attempt, int64_t due_ms)
{
    char key[1024];
    if (bt_run_key_format(key, sizeof key, workflow, run_id, task, attempt) != BT_OK)
        return NULL;
    bt_task_run_t *r = malloc(sizeof *r);
    Baton__V1__RemoteHandle *h = malloc(sizeof *h);
    if (!r || !h) {
        free(r);
        free(h);
        return NULL;
    }
    baton__v1__task_run__init(r);
    baton__v1__remote_handle__init(h);
    h->livy_batch_id = h->livy_session_id = h->livy_statement_id = -1; /* 0 is a Livy id */
    r->handle = h;
    r->attempt = attempt;
    r->state = BATON__V1__TASK_STATE__TASK_STATE_SCHEDULED;
    r->due_ms = due_ms;
    r->run_key = strdup(key);
    r->workflow_id = strdup(workflow);
    r->run_id = strdup(run_id);
    r->task_id = strdup(task);
    if (!r->run_key || !r->workflow_id || !r->run_id || !r->task_id) {
        baton__v1__task_run__free_unpacked(r, NULL);
        return NULL;
    }
    return r;
}

static const char *const run_state_names[] = {
    [BATON__V1__RUN_STATE__RUN_STATE_QUEUED] = "queued",
    [BATON__V1__RUN_STATE__RUN_STATE_RUNNING] = "running",
    [BATON__V1__RUN_STATE__RUN_STATE_SUCCESS] = "success",
    [BATON__V1__RUN_STATE__RUN_STATE_FAILED] = "failed",
    [BATON__V1__RUN_STATE__RUN_STATE_CANCELLED] = "cancelled",
};

const char *bt_run_state_name(Baton__V1__RunState s)
{
    if ((unsigned)s >= sizeof run_state_names / sizeof run_state_names[0])
        return NULL;
    return run_state_names[s];
}

bt_err_t bt_run_state_parse(const char *name, Baton__V1__RunState *out)
{
    for (unsigned i = 0; i < sizeof run_state_names / sizeof run_state_names[0]; i++) {
        if (run_state_names[i] && name && !strcmp(run_state_names[i], name)) {
            *out = (Baton__V1__RunState)i;
            return BT_OK;
        }
    }
    return BT_E_INVAL;
}

const char *bt_run_kind_name(Baton__V1__RunKind k)
{
    switch (k) {
    case BATON__V1__RUN_KIND__RUN_KIND_SCHEDULED:
        return "scheduled";
    case BATON__V1__RUN_KIND__RUN_KIND_MANUAL:
        return "manual";
    case BATON__V1__RUN_KIND__RUN_KIND_BACKFILL:
        return "backfill";
    default:
        return NULL;
    }
}
