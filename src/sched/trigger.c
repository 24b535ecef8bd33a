/* Trigger rules (see include/baton/trigger.h). */
#include "baton/trigger.h"

#define S(x) BATON__V1__TASK_STATE__TASK_STATE_##x
#define R(x) BATON__V1__TRIGGER_RULE__TRIGGER_RULE_##x

void bt_upstream_count(bt_upstream_counts_t *c, Baton__V1__TaskState s)
{
    c->total++;
    switch (s) {
    case S(SUCCESS):
        c->success++;
        c->done++;
        break;
    case S(FAILED):
    case S(TIMED_OUT):
    case S(CANCELLED):
    case S(UPSTREAM_FAILED):
        c->failed++;
        c->done++;
        break;
    case S(SKIPPED):
        c->skipped++;
        c->done++;
        break;
    default:
        break;
    }
}

bt_trigger_decision_t bt_trigger_decide(Baton__V1__TriggerRule rule,
                                        const bt_upstream_counts_t *c)
{
    int all_done = c->done == c->total;
    if (c->total == 0)
        return BT_TRIGGER_RUN;
    switch (rule) {
    case R(ALL_DONE):
        return all_done ? BT_TRIGGER_RUN : BT_TRIGGER_WAIT;
    case R(ALL_FAILED):
        if (c->success || c->skipped)
            return BT_TRIGGER_SKIP;
        return all_done ? BT_TRIGGER_RUN : BT_TRIGGER_WAIT;
    case R(ONE_SUCCESS):
        if (c->success)
            return BT_TRIGGER_RUN;
        if (!all_done)
            return BT_TRIGGER_WAIT;
        return c->skipped == c->total ? BT_TRIGGER_SKIP : BT_TRIGGER_UPSTREAM_FAILED;
    case R(ONE_FAILED):
        if (c->failed)
            return BT_TRIGGER_RUN;
        return all_done ? BT_TRIGGER_SKIP : BT_TRIGGER_WAIT;
    case R(NONE_FAILED):
        if (c->failed)
            return BT_TRIGGER_UPSTREAM_FAILED;
        return all_done ? BT_TRIGGER_RUN : BT_TRIGGER_WAIT;
    case R(ALL_SUCCESS):
    default:
        if (c->failed)
            return BT_TRIGGER_UPSTREAM_FAILED;
        if (c->skipped)
            return BT_TRIGGER_SKIP;
        return all_done ? BT_TRIGGER_RUN : BT_TRIGGER_WAIT;
    }
}

const char *bt_trigger_rule_name(Baton__V1__TriggerRule r)
{
    switch (r) {
    case R(UNSPECIFIED):
    case R(ALL_SUCCESS):
        return "all_success";
    case R(ALL_DONE):
        return "all_done";
    case R(ALL_FAILED):
        return "all_failed";
    case R(ONE_SUCCESS):
        return "one_success";
    case R(ONE_FAILED):
        return "one_failed";
    case R(NONE_FAILED):
        return "none_failed";
    default:
        return 0;
    }
}
