/* PostgreSQL faults under the store (servers of its own, via harness run):
 * a restart fails in-flight writes as "outcome unknown" and the store comes
 * back by itself; a frozen server trips the reply watchdog instead of
 * hanging the loop; a compare-and-set retry after an unknown outcome is safe. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "itest.h"

#define S(x) BATON__V1__TASK_STATE__TASK_STATE_##x

static struct ev_loop *loop;
static const char *db;

static bt_store_t *open_store(uint32_t reply_timeout_ms)
{
    bt_store_t *st;
    bt_store_opts_t o = {.conninfo = db, .cluster = "faults", .node = "n1",
                         .reply_timeout_ms = reply_timeout_ms};
    assert_int_equal(bt_store_open(loop, &o, &st), BT_OK);
    itest_wait_store_up(loop, st, 20);
    return st;
}

static void restart_fails_inflight_then_recovers(void **state)
{
    (void)state;
    bt_store_t *st = open_store(0);
    itest_outcome_t o = {0};
    assert_int_equal(bt_store_fence_acquire(st, 1, "z", "t", itest_outcome_cb, &o), BT_OK);
    assert_int_equal(itest_wait(loop, &o), BT_OK);

    bt_task_run_t *r = itest_task_run("wf", "r", "t", 1, S(SCHEDULED));
    itest_outcome_t c1 = {0};
    assert_int_equal(bt_store_task_create(st, 1, r, itest_outcome_cb, &c1), BT_OK);
    assert_int_equal(itest_wait(loop, &c1), BT_OK);

    /* kill -9 the postmaster: the connection dies under a pending write */
    r->state = S(QUEUED);
    itest_outcome_t t1 = {0};
    assert_int_equal(itest_harness("pg", "kill", NULL), 0);
    bt_err_t e = bt_store_task_transition(st, 1, S(SCHEDULED), r, itest_outcome_cb, &t1);
    if (e == BT_OK)
        e = itest_wait(loop, &t1);
    assert_true(e == BT_E_PG_CONN || e == BT_OK);
    assert_false(bt_store_is_up(st));
    assert_int_equal(itest_harness("pg", "start", NULL), 0);
    itest_wait_store_up(loop, st, 30);

    /* Outcome unknown: retrying the same compare-and-set is safe. Either it
     * applies now, or it had applied and now reports a conflict. */
    itest_outcome_t t2 = {0};
    assert_int_equal(bt_store_task_transition(st, 1, S(SCHEDULED), r, itest_outcome_cb, &t2), BT_OK);
    e = itest_wait(loop, &t2);
    assert_true(e == BT_OK || e == BT_E_CONFLICT);
    PGconn *c = itest_connect(db);
    char *stv = itest_text(c, "SELECT state FROM task_runs WHERE run_key='wf/r/t/1'");
    assert_string_equal(stv, "queued");
    free(stv);
    PQfinish(c);
    bt_pg_stats_t stats;
    bt_pg_get_stats(bt_store_pg(st), &stats);
    assert_true(stats.reconnects >= 1);
    itest_task_run_free(r);
    bt_store_close(st);
}

/* A heartbeat timer on the same loop keeps firing while PostgreSQL is
 * frozen: the loop never blocks on the server. */
typedef struct beat {
    ev_timer t;
    int n;
} beat_t;

static void on_beat(struct ev_loop *l, ev_timer *w, int revents)
{
    (void)l;
    (void)revents;
    ((beat_t *)w)->n++;
}

static void frozen_server_trips_the_watchdog(void **state)
{
    (void)state;
    bt_store_t *st = open_store(1000);
    beat_t beat = {.n = 0};
    ev_timer_init(&beat.t, on_beat, 0.05, 0.05);
    ev_timer_start(loop, &beat.t);

    assert_int_equal(itest_harness("pg", "stop", NULL), 0); /* SIGSTOP */
    itest_outcome_t o = {0};
    assert_int_equal(bt_store_fence_check(st, 1, itest_outcome_cb, &o), BT_OK);
    assert_int_equal(itest_wait(loop, &o), BT_E_PG_CONN);
    /* the loop kept turning while the server was frozen */
    assert_true(beat.n >= 10);
    assert_int_equal(itest_harness("pg", "cont", NULL), 0);
    itest_wait_store_up(loop, st, 30);
    itest_outcome_t o2 = {0};
    assert_int_equal(bt_store_fence_check(st, 1, itest_outcome_cb, &o2), BT_OK);
    assert_int_equal(itest_wait(loop, &o2), BT_OK);
    ev_timer_stop(loop, &beat.t);
    bt_store_close(st);
}

static void closing_cancels_pending(void **state)
{
    (void)state;
    bt_store_t *st = open_store(0);
    itest_outcome_t o = {0};
    assert_int_equal(bt_store_fence_check(st, 1, itest_outcome_cb, &o), BT_OK);
    bt_store_close(st); /* before the reply */
    assert_true(o.done);
    assert_int_equal(o.err, BT_E_CANCELLED);
}

int main(void)
{
    char err[512];
    loop = ev_default_loop(0);
    db = itest_fresh_db("faults");
    if (bt_store_migrate(db, NULL, err, sizeof err) != BT_OK) {
        fprintf(stderr, "migrate: %s\n", err);
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(restart_fails_inflight_then_recovers),
        cmocka_unit_test(frozen_server_trips_the_watchdog),
        cmocka_unit_test(closing_cancels_pending),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
