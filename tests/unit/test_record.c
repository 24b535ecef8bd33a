#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "baton/err.h"
#include "baton/pg.h"
#include "baton/record.h"

static void run_keys(void **state)
{
    char buf[64];
    (void)state;
    assert_int_equal(bt_run_key_format(buf, sizeof buf, "etl", "2026-11-25", "load", 3), BT_OK);
    assert_string_equal(buf, "etl/2026-11-25/load/3");
    assert_int_equal(bt_run_key_format(buf, sizeof buf, "a/b", "r", "t", 1), BT_E_INVAL);
    assert_int_equal(bt_run_key_format(buf, sizeof buf, "", "r", "t", 1), BT_E_INVAL);
    assert_int_equal(bt_run_key_format(buf, sizeof buf, "w", "r", "t", 0), BT_E_INVAL);
    assert_int_equal(bt_run_key_format(buf, 8, "workflow", "r", "t", 1), BT_E_INVAL);
}

static void state_names_round_trip(void **state)
{
    (void)state;
    for (int s = 1; s <= BATON__V1__TASK_STATE__TASK_STATE_UPSTREAM_FAILED; s++) {
        bt_task_state_t back;
        const char *name = bt_task_state_name((bt_task_state_t)s);
        assert_non_null(name);
        assert_int_equal(bt_task_state_parse(name, &back), BT_OK);
        assert_int_equal(back, s);
    }
    bt_task_state_t x;
    assert_null(bt_task_state_name(BATON__V1__TASK_STATE__TASK_STATE_UNSPECIFIED));
    assert_null(bt_task_state_name((bt_task_state_t)999));
    assert_int_equal(bt_task_state_parse("Running", &x), BT_E_INVAL);
    assert_int_equal(bt_task_state_parse(NULL, &x), BT_E_INVAL);
    assert_true(bt_task_state_is_final(BATON__V1__TASK_STATE__TASK_STATE_UPSTREAM_FAILED));
    assert_false(bt_task_state_is_final(BATON__V1__TASK_STATE__TASK_STATE_UP_FOR_RETRY));
}

static void pg_times(void **state)
{
    char buf[40];
    (void)state;
    bt_ms_to_pg_time(0, buf);
    assert_string_equal(buf, "1970-01-01 00:00:00.000+00");
    bt_ms_to_pg_time(1795582800123LL, buf);
    assert_string_equal(buf, "2026-11-25 05:00:00.123+00");
    bt_ms_to_pg_time(-1, buf);
    assert_string_equal(buf, "1969-12-31 23:59:59.999+00");
}

static void errors_have_names(void **state)
{
    (void)state;
    for (int e = 0; e < BT_E__COUNT; e++) {
        assert_non_null(bt_strerror((bt_err_t)e));
        assert_true(strlen(bt_err_name((bt_err_t)e)) > 0);
        assert_string_not_equal(bt_err_name((bt_err_t)e), "unknown");
    }
    assert_string_equal(bt_err_name(BT_E_FENCED), "fenced");
    assert_string_equal(bt_strerror((bt_err_t)-3), "unknown error");
}

/* A record survives the wire: what the store writes is what it reads. */
static void task_run_round_trip(void **state)
{
    bt_task_run_t run = BATON__V1__TASK_RUN__INIT;
    Baton__V1__RemoteHandle h = BATON__V1__REMOTE_HANDLE__INIT;
    uint8_t buf[512];
    (void)state;
    run.run_key = "w/r/t/2";
    run.attempt = 2;
    run.state = BATON__V1__TASK_STATE__TASK_STATE_RUNNING;
    h.emr_cluster_id = "j-ABC";
    h.livy_batch_id = 0;
    run.handle = &h;
    size_t n = baton__v1__task_run__pack(&run, buf);
    bt_task_run_t *back = baton__v1__task_run__unpack(NULL, n, buf);
    assert_non_null(back);
    assert_string_equal(back->run_key, "w/r/t/2");
    assert_string_equal(back->handle->emr_cluster_id, "j-ABC");
    assert_int_equal(back->state, BATON__V1__TASK_STATE__TASK_STATE_RUNNING);
    baton__v1__task_run__free_unpacked(back, NULL);
    /* truncated bytes must not decode */
    assert_null(baton__v1__task_run__unpack(NULL, n - 3, buf));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(run_keys),
        cmocka_unit_test(state_names_round_trip),
        cmocka_unit_test(pg_times),
        cmocka_unit_test(errors_have_names),
        cmocka_unit_test(task_run_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
