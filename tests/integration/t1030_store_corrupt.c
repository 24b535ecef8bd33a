/* Bad input in the store: a record that does not decode, or decodes but
 * contradicts its row, fails that run with the reason recorded. Nothing
 * crashes (ASan and UBSan watch the decoder). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "itest.h"

#define S(x) BATON__V1__TASK_STATE__TASK_STATE_##x

static struct ev_loop *loop;
static const char *db;
static bt_store_t *st;

typedef struct got {
    int done;
    bt_err_t err;
    char state[32];
    char detail[256];
} got_t;

static void on_get(bt_err_t err, bt_task_run_t *run, const char *state, const char *detail,
                   void *arg)
{
    got_t *g = arg;
    g->err = err;
    snprintf(g->state, sizeof g->state, "%s", state ? state : "");
    snprintf(g->detail, sizeof g->detail, "%s", detail ? detail : "");
    if (run)
        baton__v1__task_run__free_unpacked(run, NULL);
    g->done = 1;
}

static void get(const char *key, got_t *g)
{
    memset(g, 0, sizeof *g);
    assert_int_equal(bt_store_task_get(st, key, on_get, g), BT_OK);
    assert_true(itest_run_until(loop, &g->done, 10));
}

static void insert_raw(PGconn *c, const char *key, const char *state, const char *record_hex)
{
    char sql[1024];
    snprintf(sql, sizeof sql,
             "INSERT INTO task_runs (cluster, run_key, workflow_id, run_id, task_id, attempt, "
             "state, writer_epoch, record) VALUES ('corrupt', '%s', 'wf', 'r', "
             "split_part('%s', '/', 3), 1, '%s', 1, '\\x%s')",
             key, key, state, record_hex);
    itest_exec(c, sql);
}

static void undecodable_record_fails_the_run(void **state)
{
    (void)state;
    PGconn *c = itest_connect(db);
    /* field 1 declared as a 200-byte string with 3 bytes behind it */
    insert_raw(c, "wf/r/garbage/1", "running", "0ac801616263");
    /* random bytes with an invalid wire type */
    insert_raw(c, "wf/r/noise/1", "queued", "ffffffffffffffffff07");

    got_t g;
    get("wf/r/garbage/1", &g);
    assert_int_equal(g.err, BT_E_CORRUPT);
    assert_string_equal(g.state, "running");
    assert_non_null(strstr(g.detail, "does not decode"));

    itest_outcome_t o = {0};
    assert_int_equal(bt_store_task_fail_corrupt(st, 1, "wf/r/garbage/1", g.state, g.detail,
                                                itest_outcome_cb, &o),
                     BT_OK);
    assert_int_equal(itest_wait(loop, &o), BT_OK);

    char *row = itest_text(c, "SELECT state || '|' || error FROM task_runs WHERE run_key='wf/r/garbage/1'");
    assert_string_equal(row, "failed|record does not decode as baton.v1.TaskRun");
    free(row);
    /* the event exists, written in the same transaction */
    char *ev = NULL;
    for (int i = 0; i < 100 && !ev; i++) {
        ev_run(loop, EVRUN_NOWAIT);
        PGresult *r = PQexec(c, "SELECT detail->>'from_state' FROM events WHERE kind='corrupt_record' "
                                "AND run_key='wf/r/garbage/1'");
        if (PQntuples(r) == 1)
            ev = strdup(PQgetvalue(r, 0, 0));
        PQclear(r);
    }
    assert_non_null(ev);
    assert_string_equal(ev, "running");
    free(ev);

    /* now it reads back as a proper failed run with the reason */
    get("wf/r/garbage/1", &g);
    assert_int_equal(g.err, BT_OK);

    get("wf/r/noise/1", &g);
    assert_int_equal(g.err, BT_E_CORRUPT);
    PQfinish(c);
}

static void record_contradicting_its_row_is_corrupt(void **state)
{
    (void)state;
    bt_task_run_t *r = itest_task_run("wf", "r", "other", 1, S(RUNNING));
    uint8_t buf[256];
    char hex[520];
    size_t n = baton__v1__task_run__pack(r, buf);
    for (size_t i = 0; i < n; i++)
        snprintf(hex + 2 * i, 3, "%02x", buf[i]);
    PGconn *c = itest_connect(db);
    /* a valid record of wf/r/other/1 stored under another key */
    insert_raw(c, "wf/r/misfiled/1", "running", hex);
    /* the right key but a different state than the column */
    insert_raw(c, "wf/r/other/1", "queued", hex);
    got_t g;
    get("wf/r/misfiled/1", &g);
    assert_int_equal(g.err, BT_E_CORRUPT);
    assert_non_null(strstr(g.detail, "run_key"));
    get("wf/r/other/1", &g);
    assert_int_equal(g.err, BT_E_CORRUPT);
    assert_non_null(strstr(g.detail, "state"));
    PQfinish(c);
    itest_task_run_free(r);
}

static void fail_corrupt_rejects_bad_arguments(void **state)
{
    itest_outcome_t o = {0};
    (void)state;
    assert_int_equal(bt_store_task_fail_corrupt(st, 1, "not-a-key", "running", "x", itest_outcome_cb, &o),
                     BT_E_INVAL);
    assert_int_equal(bt_store_task_fail_corrupt(st, 1, "a/b/c/1", "bogus", "x", itest_outcome_cb, &o),
                     BT_E_INVAL);
    assert_int_equal(bt_store_task_fail_corrupt(st, 1, "a/b/c/0", "running", "x", itest_outcome_cb, &o),
                     BT_E_INVAL);
    assert_false(o.done);
}

int main(void)
{
    char err[512];
    loop = ev_default_loop(0);
    db = itest_fresh_db("corrupt");
    if (bt_store_migrate(db, NULL, err, sizeof err) != BT_OK) {
        fprintf(stderr, "migrate: %s\n", err);
        return 1;
    }
    bt_store_opts_t o = {.conninfo = db, .cluster = "corrupt", .node = "n1"};
    if (bt_store_open(loop, &o, &st) != BT_OK)
        return 1;
    itest_wait_store_up(loop, st, 20);
    itest_outcome_t fo = {0};
    bt_store_fence_acquire(st, 1, "z", "test", itest_outcome_cb, &fo);
    if (itest_wait(loop, &fo) != BT_OK)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(undecodable_record_fails_the_run),
        cmocka_unit_test(record_contradicting_its_row_is_corrupt),
        cmocka_unit_test(fail_corrupt_rejects_bad_arguments),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    bt_store_close(st);
    return rc;
}
