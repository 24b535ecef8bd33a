/* Trigger rules: a pure decision of the dispatcher.
 *
 * Trigger rules follow Airflow's, which our users know:
 *   all_success  run when every upstream succeeded; upstream_failed as soon
 *                as one failed; skipped when one was skipped.
 *   all_failed   run when every upstream failed (or upstream_failed);
 *                skipped as soon as one succeeded or was skipped.
 *   all_done     run when every upstream is final, whatever the outcome.
 *   one_success  run as soon as one succeeded; when all are final without a
 *                success: skipped if all were skipped, else upstream_failed.
 *   one_failed   run as soon as one failed; skipped when all are final
 *                without a failure.
 *   none_failed  run when every upstream is final and none failed (skipped
 *                is fine); upstream_failed as soon as one failed.
 * "Failed" counts failed, timed_out, cancelled and upstream_failed. A task
 * with no upstream runs at once. */
#ifndef BATON_TRIGGER_H
#define BATON_TRIGGER_H

#include <stdint.h>

#include "baton.pb-c.h"

typedef struct bt_upstream_counts {
    unsigned total;
    unsigned success, failed, skipped; /* final outcomes; failed as above */
    unsigned done;                     /* final, any outcome */
} bt_upstream_counts_t;

typedef enum bt_trigger_decision {
    BT_TRIGGER_WAIT,
    BT_TRIGGER_RUN,
    BT_TRIGGER_SKIP,
    BT_TRIGGER_UPSTREAM_FAILED,
} bt_trigger_decision_t;

/* Adds the final state of one upstream task to the counts (non-final
 * states only count towards total). */
void bt_upstream_count(bt_upstream_counts_t *c, Baton__V1__TaskState s);

bt_trigger_decision_t bt_trigger_decide(Baton__V1__TriggerRule rule,
                                        const bt_upstream_counts_t *c);

/* "all_success", ... ; NULL for an unknown value. */
const char *bt_trigger_rule_name(Baton__V1__TriggerRule r);

#endif
