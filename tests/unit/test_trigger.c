/* Trigger rules (Airflow's semantics) and retry backoff. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "baton/backoff.h"
#include "baton/trigger.h"

#define S(x) BATON__V1__TASK_STATE__TASK_STATE_##x
#define R(x) BATON__V1__TRIGGER_RULE__TRIGGER_RULE_##x

/* Counts from a list of upstream states, terminated by UNSPECIFIED. */
static bt_trigger_decision_t decide(Baton__V1__TriggerRule rule, const Baton__V1__TaskState *s)
{
    bt_upstream_counts_t c = {0};
    for (; *s != S(UNSPECIFIED); s++)
        bt_upstream_count(&c, *s);
    return bt_trigger_decide(rule, &c);
}

#define UP(...) ((const Baton__V1__TaskState[]){__VA_ARGS__, S(UNSPECIFIED)})

static void no_upstream_runs(void **state)
{
    (void)state;
    bt_upstream_counts_t c = {0};
    assert_int_equal(bt_trigger_decide(R(ALL_SUCCESS), &c), BT_TRIGGER_RUN);
    assert_int_equal(bt_trigger_decide(R(ALL_FAILED), &c), BT_TRIGGER_RUN);
}

static void all_success(void **state)
{
    (void)state;
    assert_int_equal(decide(R(ALL_SUCCESS), UP(S(SUCCESS), S(SUCCESS))), BT_TRIGGER_RUN);
    assert_int_equal(decide(R(ALL_SUCCESS), UP(S(SUCCESS), S(RUNNING))), BT_TRIGGER_WAIT);
    /* fails fast: one failure is enough, even with others still running */
    assert_int_equal(decide(R(ALL_SUCCESS), UP(S(FAILED), S(RUNNING))),
                     BT_TRIGGER_UPSTREAM_FAILED);
    assert_int_equal(decide(R(ALL_SUCCESS), UP(S(UPSTREAM_FAILED), S(SUCCESS))),
                     BT_TRIGGER_UPSTREAM_FAILED);
    assert_int_equal(decide(R(ALL_SUCCESS), UP(S(TIMED_OUT))), BT_TRIGGER_UPSTREAM_FAILED);
    /* skipped propagates */
    assert_int_equal(decide(R(ALL_SUCCESS), UP(S(SKIPPED), S(SUCCESS))), BT_TRIGGER_SKIP);
    /* unspecified is all_success */
    assert_int_equal(decide(R(UNSPECIFIED), UP(S(SKIPPED))), BT_TRIGGER_SKIP);
}

static void all_done(void **state)
{
    (void)state;
    assert_int_equal(decide(R(ALL_DONE), UP(S(FAILED), S(SKIPPED), S(SUCCESS))),
                     BT_TRIGGER_RUN);
    assert_int_equal(decide(R(ALL_DONE), UP(S(FAILED), S(QUEUED))), BT_TRIGGER_WAIT);
    assert_int_equal(decide(R(ALL_DONE), UP(S(UPSTREAM_FAILED))), BT_TRIGGER_RUN);
    /* up_for_retry is not done: another attempt follows */
    assert_int_equal(decide(R(ALL_DONE), UP(S(UP_FOR_RETRY))), BT_TRIGGER_WAIT);
}

static void all_failed(void **state)
{
    (void)state;
    assert_int_equal(decide(R(ALL_FAILED), UP(S(FAILED), S(UPSTREAM_FAILED))), BT_TRIGGER_RUN);
    assert_int_equal(decide(R(ALL_FAILED), UP(S(FAILED), S(RUNNING))), BT_TRIGGER_WAIT);
    assert_int_equal(decide(R(ALL_FAILED), UP(S(SUCCESS), S(RUNNING))), BT_TRIGGER_SKIP);
    assert_int_equal(decide(R(ALL_FAILED), UP(S(SKIPPED), S(FAILED))), BT_TRIGGER_SKIP);
}

static void one_success(void **state)
{
    (void)state;
    assert_int_equal(decide(R(ONE_SUCCESS), UP(S(SUCCESS), S(RUNNING))), BT_TRIGGER_RUN);
    assert_int_equal(decide(R(ONE_SUCCESS), UP(S(FAILED), S(RUNNING))), BT_TRIGGER_WAIT);
    assert_int_equal(decide(R(ONE_SUCCESS), UP(S(FAILED), S(SKIPPED))),
                     BT_TRIGGER_UPSTREAM_FAILED);
    assert_int_equal(decide(R(ONE_SUCCESS), UP(S(SKIPPED), S(SKIPPED))), BT_TRIGGER_SKIP);
}

static void one_failed(void **state)
{
    (void)state;
    assert_int_equal(decide(R(ONE_FAILED), UP(S(FAILED), S(RUNNING))), BT_TRIGGER_RUN);
    assert_int_equal(decide(R(ONE_FAILED), UP(S(SUCCESS), S(RUNNING))), BT_TRIGGER_WAIT);
    assert_int_equal(decide(R(ONE_FAILED), UP(S(SUCCESS), S(SKIPPED))), BT_TRIGGER_SKIP);
    assert_int_equal(decide(R(ONE_FAILED), UP(S(CANCELLED))), BT_TRIGGER_RUN);
}

static void none_failed(void **state)
{
    (void)state;
    assert_int_equal(decide(R(NONE_FAILED), UP(S(SUCCESS), S(SKIPPED))), BT_TRIGGER_RUN);
    assert_int_equal(decide(R(NONE_FAILED), UP(S(SUCCESS), S(QUEUED))), BT_TRIGGER_WAIT);
    assert_int_equal(decide(R(NONE_FAILED), UP(S(FAILED), S(QUEUED))),
                     BT_TRIGGER_UPSTREAM_FAILED);
}

static void backoff_is_capped_full_jitter(void **state)
{
    (void)state;
    /* the ceiling doubles per attempt from base, up to the cap */
    assert_int_equal(bt_backoff_ms(1000, 60000, 2, UINT64_MAX - 0), UINT64_MAX % 1001);
    for (uint64_t r = 0; r < 5000; r += 7) {
        assert_true(bt_backoff_ms(1000, 60000, 2, r * 2654435761u) <= 1000);
        assert_true(bt_backoff_ms(1000, 60000, 4, r * 2654435761u) <= 4000);
        assert_true(bt_backoff_ms(1000, 60000, 40, r * 2654435761u) <= 60000);
    }
    /* the full range is used: both near 0 and near the ceiling occur */
    int low = 0, high = 0;
    for (uint64_t r = 0; r < 4001; r++) {
        uint64_t d = bt_backoff_ms(1000, 60000, 4, r);
        low |= d < 100;
        high |= d > 3900;
    }
    assert_true(low && high);
    /* no overflow at huge attempt numbers; zero base means no wait */
    assert_true(bt_backoff_ms(UINT64_MAX / 3, UINT64_MAX, 200, 12345) <= UINT64_MAX);
    assert_int_equal(bt_backoff_ms(0, 1000, 3, 99), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(no_upstream_runs), cmocka_unit_test(all_success),
        cmocka_unit_test(all_done),         cmocka_unit_test(all_failed),
        cmocka_unit_test(one_success),      cmocka_unit_test(one_failed),
        cmocka_unit_test(none_failed),      cmocka_unit_test(backoff_is_capped_full_jitter),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
