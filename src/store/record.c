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

void bt_ms_to_pg_time(int64_t ms, char buf[40])
{
    time_t secs = (time_t)(ms / 1000);
    int frac = (int)(ms % 1000);
    struct tm tm;
    if (frac < 0) {
        frac += 1000;
        secs -= 1;
    }
    gmtime_r(&secs, &tm);
    size_t n = strftime(buf, 40, "%Y-%m-%d %H:%M:%S", &tm);
    snprintf(buf + n, 40 - n, ".%03d+00", frac);
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
