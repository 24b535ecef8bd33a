/* Private to src/sched: workflow runs in the dispatcher (sched_runs.c). */
#ifndef BATON_SCHED_RUNS_H
#define BATON_SCHED_RUNS_H

#include "sched/dispatch.h"

/* Adds a loaded run (takes rec and the reference to its spec, only when it
 * succeeds); its tasks get placeholder records until load_tasks fills them. */
bt_err_t disp_add_run(bt_dispatcher_t *d, bt_workflow_run_t *rec, spec_ref_t *ref);
task_t *disp_find_task(bt_dispatcher_t *d, const char *wf, const char *run_id,
                          const char *task_id);
wf_t *disp_wf(bt_dispatcher_t *d, const char *id);
uint32_t disp_pool_slots(bt_dispatcher_t *d, const char *pool);

/* Creates due runs: cron cursors (catchup, max_active_runs) and requests. */
void disp_schedule_runs(bt_dispatcher_t *d, int64_t now, int64_t *wake);
/* Steps every task of every active run, queues ready tasks by pool and
 * priority, and finishes runs whose tasks are all final. */
void disp_step_runs(bt_dispatcher_t *d, int64_t now, int64_t *wake);

#endif
