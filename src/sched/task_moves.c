/* The task-run state machine's table (task_moves.h). */
#include "sched/task_moves.h"

#include <stdio.h>

#define S(x) BATON__V1__TASK_STATE__TASK_STATE_##x

typedef struct move {
    bt_task_state_t from, to;
    const char *why;
} move_t;

/* Every move the dispatcher may write, and the event that makes it. */
static const move_t moves[] = {
    {S(SCHEDULED), S(QUEUED), "due, trigger rule met, a pool slot free"},
    {S(SCHEDULED), S(SKIPPED), "trigger rule: skip"},
    {S(SCHEDULED), S(UPSTREAM_FAILED), "trigger rule: an upstream failed"},
    {S(SCHEDULED), S(CANCELLED), "killed"},
    {S(QUEUED), S(SUBMITTING), "the write-ahead, before the operator is called"},
    {S(QUEUED), S(CANCELLED), "killed"},
    {S(SUBMITTING), S(SUBMITTING), "handing off: outcome unknown, marked"},
    {S(SUBMITTING), S(RUNNING), "submitted or found by a lookup"},
    {S(SUBMITTING), S(SUCCESS), "submitted, done at once"},
    {S(SUBMITTING), S(FAILED), "refused, no retry left"},
    {S(SUBMITTING), S(UP_FOR_RETRY), "refused, a retry left"},
    {S(SUBMITTING), S(CANCELLED), "killed"},
    {S(RUNNING), S(RUNNING), "a duplicate sweep kept another twin"},
    {S(RUNNING), S(SUCCESS), "the remote work succeeded"},
    {S(RUNNING), S(FAILED), "failed or lost, no retry left"},
    {S(RUNNING), S(UP_FOR_RETRY), "failed, lost or timed out, a retry left"},
    {S(RUNNING), S(TIMED_OUT), "execution timeout, cancelled, no retry left"},
    {S(RUNNING), S(CANCELLED), "killed"},
};
#define NMOVES (sizeof moves / sizeof moves[0])

static const move_t *find(bt_task_state_t from, bt_task_state_t to)
{
    for (size_t i = 0; i < NMOVES; i++)
        if (moves[i].from == from && moves[i].to == to)
            return &moves[i];
    return NULL;
}

int task_move_allowed(bt_task_state_t from, bt_task_state_t to)
{
    return find(from, to) != NULL;
}

const char *task_move_why(bt_task_state_t from, bt_task_state_t to)
{
    const move_t *m = find(from, to);
    return m ? m->why : NULL;
}

size_t task_moves_diagram(char *buf, size_t len)
{
    size_t n = 0;
#define OUT(...)                                                                                 \
    do {                                                                                         \
        int k = snprintf(buf + (n < len ? n : len), n < len ? len - n : 0, __VA_ARGS__);         \
        n += k > 0 ? (size_t)k : 0;                                                              \
    } while (0)
    if (len)
        buf[0] = '\0';
    OUT("stateDiagram-v2\n");
    OUT("    [*] --> scheduled: a run or a retry creates the attempt\n");
    for (size_t i = 0; i < NMOVES; i++)
        OUT("    %s --> %s: %s\n", bt_task_state_name(moves[i].from),
            bt_task_state_name(moves[i].to), moves[i].why);
    OUT("    up_for_retry --> [*]: the next attempt is a new row\n");
#undef OUT
    return n;
}
