/* Private to src/sched: the task-run state machine's table of allowed
 * moves (like curl's mstate table and multistate()). Every change of a task
 * run's state the dispatcher writes goes through one gate (task_flow.c's
 * task_move) that checks this table, logs the move at debug level and
 * counts it. A move not in the table is a bug: the Sanitize build aborts,
 * a release build refuses the write and records an illegal_move event. A
 * new attempt is not a move: it is a new row, born `scheduled`. */
#ifndef BATON_SCHED_TASK_MOVES_H
#define BATON_SCHED_TASK_MOVES_H

#include <stddef.h>

#include "baton/record.h"

/* One more than the largest TaskState value. */
#define BT_TASK_NSTATES 12

/* 1 when `from` -> `to` is in the table. */
int task_move_allowed(bt_task_state_t from, bt_task_state_t to);

/* Why the move is in the table: the event that makes it (for the log and
 * the documentation), or NULL when it is not in the table. */
const char *task_move_why(bt_task_state_t from, bt_task_state_t to);

/* The table as a Mermaid state diagram, generated from the code for
 * docs/scheduling.md (tests/unit/test_task_moves.c keeps them equal).
 * Writes at most len bytes with the NUL; returns the length it needed. */
size_t task_moves_diagram(char *buf, size_t len);

#endif
