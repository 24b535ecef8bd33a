/* Fenced writes: compare-and-set on (state, epoch), stale epochs fenced,
 * epochs only rise, and a turn's writes are pipelined into one commit. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "itest.h"

#define S(x) BATON__V1__TASK_STATE__TASK_STATE_##x

static struct ev_loop *loop;
static const char *db;
static bt_store_t *a, *b;

static bt_store_t *open_store(const char *node)
{
    bt_store_t *st;
    bt_store_opts_t o = {.conninfo = db, .cluster = "fence-test", .node = node};
    assert_int_equal(bt_store_open(loop, &o, &st), BT_OK);
    itest_wait_store_up(loop, st, 20);
    return st;
}

static bt_err_t acquire(bt_store_t *st, uint64_t epoch)
{
    itest_outcome_t o = {0};
    assert_int_equal(bt_store_fence_acquire(st, epoch, "z1", "test", itest_outcome_cb, &o), BT_OK);
    return itest_wait(loop, &o);
}

static bt_err_t create(bt_store_t *st, uint64_t epoch, bt_task_run_t *r)
{
    itest_outcome_t o = {0};
    assert_int_equal(bt_store_task_create(st, epoch, r, itest_outcome_cb, &o), BT_OK);
    return itest_wait(loop, &o);
}

static bt_err_t move(bt_store_t *st, uint64_t epoch, bt_task_state_t from, bt_task_run_t *r)
{
    itest_outcome_t o = {0};
    assert_int_equal(bt_store_task_transition(st, epoch, from, r, itest_outcome_cb, &o), BT_OK);
    return itest_wait(loop, &o);
}

static int setup(void **state)
{
    char err[512];
    (void)state;
    loop = ev_default_loop(0);
    db = itest_fresh_db("fence");
    assert_int_equal(bt_store_migrate(db, NULL, err, sizeof err), BT_OK);
    a = open_store("node-a");
    b = open_store("node-b");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    bt_store_close(a);
    bt_store_close(b);
    return 0;
}

static void epochs_only_rise(void **state)
{
    (void)state;
    assert_int_equal(acquire(a, 5), BT_OK);
    assert_int_equal(acquire(a, 5), BT_OK);              /* a retry of our own claim */
    assert_int_equal(acquire(b, 5), BT_E_STALE_EPOCH);   /* the same epoch, another node */
    assert_int_equal(acquire(b, 3), BT_E_STALE_EPOCH);
    PGconn *c = itest_connect(db);
    assert_int_equal(itest_scalar(c, "SELECT epoch FROM fence WHERE cluster = 'fence-test'"), 5);
    char *node = itest_text(c, "SELECT node FROM fence WHERE cluster = 'fence-test'");
    assert_string_equal(node, "node-a");
    free(node);
    PQfinish(c);
}

static void create_and_compare_and_set(void **state)
{
    (void)state;
    bt_task_run_t *r = itest_task_run("wf", "r1", "t1", 1, S(SCHEDULED));
    r->due_ms = 1795582800000LL;
    assert_int_equal(create(a, 5, r), BT_OK);
    assert_int_equal(create(a, 5, r), BT_E_EXISTS);
    assert_int_equal(create(a, 4, r), BT_E_FENCED);

    r->state = S(QUEUED);
    assert_int_equal(move(a, 5, S(SCHEDULED), r), BT_OK);
    assert_int_equal(move(a, 5, S(SCHEDULED), r), BT_E_CONFLICT); /* already moved */
    r->state = S(RUNNING);
    assert_int_equal(move(a, 4, S(QUEUED), r), BT_E_FENCED);

    PGconn *c = itest_connect(db);
    char *st = itest_text(c, "SELECT state || ' ' || writer_epoch || ' ' || due_at "
                             "FROM task_runs WHERE run_key = 'wf/r1/t1/1'");
    assert_string_equal(st, "queued 5 2026-11-25 05:00:00+00");
    free(st);
    assert_int_equal(itest_scalar(c, "SELECT count(*) FROM events WHERE run_key = 'wf/r1/t1/1'"), 2);
    PQfinish(c);
    itest_task_run_free(r);
}

typedef struct got {
    int done;
    bt_err_t err;
    bt_task_run_t *run;
} got_t;

static void on_get(bt_err_t err, bt_task_run_t *run, const char *state, const char *detail,
                   void *arg)
{
    got_t *g = arg;
    (void)state;
    (void)detail;
    g->err = err;
    g->run = run;
    g->done = 1;
}

static void read_back_record(void **state)
{
    got_t g = {0};
    (void)state;
    assert_int_equal(bt_store_task_get(b, "wf/r1/t1/1", on_get, &g), BT_OK);
    itest_run_until(loop, &g.done, 10);
    assert_int_equal(g.err, BT_OK);
    assert_int_equal(g.run->state, S(QUEUED));
    assert_int_equal(g.run->writer_epoch, 5);
    assert_string_equal(g.run->writer_node, "node-a");
    assert_int_equal(g.run->due_ms, 1795582800000LL);
    baton__v1__task_run__free_unpacked(g.run, NULL);

    got_t none = {0};
    assert_int_equal(bt_store_task_get(b, "wf/r1/t1/9", on_get, &none), BT_OK);
    itest_run_until(loop, &none.done, 10);
    assert_int_equal(none.err, BT_E_NOTFOUND);
}

static void new_leader_fences_old(void **state)
{
    (void)state;
    bt_task_run_t *r = itest_task_run("wf", "r1", "t1", 1, S(RUNNING));
    assert_int_equal(acquire(b, 6), BT_OK);
    assert_int_equal(move(a, 5, S(QUEUED), r), BT_E_FENCED);
    assert_int_equal(move(b, 6, S(QUEUED), r), BT_OK);

    PGconn *c = itest_connect(db);
    char *prev = itest_text(c, "SELECT detail->>'previous_node' || ' ' || (detail->>'previous_epoch') "
                               "FROM events WHERE kind = 'leader' AND epoch = 6");
    assert_string_equal(prev, "node-a 5");
    free(prev);
    /* the audit trail is append-only */
    PGresult *res = PQexec(c, "DELETE FROM events");
    assert_int_equal(PQresultStatus(res), PGRES_FATAL_ERROR);
    assert_non_null(strstr(PQresultErrorMessage(res), "append-only"));
    PQclear(res);
    PQfinish(c);
    itest_task_run_free(r);
}

/* Writes of one loop turn travel in one pipeline and commit together. */
#define NBATCH 300
static void one_turn_is_one_commit(void **state)
{
    static itest_outcome_t outs[NBATCH];
    bt_task_run_t *runs[NBATCH];
    bt_pg_stats_t before, after;
    char id[32];
    (void)state;
    bt_pg_get_stats(bt_store_pg(b), &before);
    for (int i = 0; i < NBATCH; i++) {
        snprintf(id, sizeof id, "t%d", i);
        runs[i] = itest_task_run("wf", "batch", id, 1, S(SCHEDULED));
        outs[i].done = 0;
        assert_int_equal(bt_store_task_create(b, 6, runs[i], itest_outcome_cb, &outs[i]), BT_OK);
    }
    for (int i = 0; i < NBATCH; i++)
        assert_int_equal(itest_wait(loop, &outs[i]), BT_OK);
    bt_pg_get_stats(bt_store_pg(b), &after);
    assert_int_equal(after.queries - before.queries, NBATCH);
    assert_int_equal(after.syncs - before.syncs, 1);
    for (int i = 0; i < NBATCH; i++)
        itest_task_run_free(runs[i]);
}

/* A turn's transitions go out as one fenced statement. A run moved again
 * before its first move committed, from where that move ends, makes a
 * chain in the same statement; a move from anywhere else goes into a second
 * statement (generation), after the first. Each caller gets its own
 * outcome; a wrong expected state is a conflict for that run alone. */
#define NMOVE 200
static void turn_of_transitions_is_one_statement_per_generation(void **state)
{
    static itest_outcome_t first[NMOVE], second[NMOVE], third[NMOVE];
    itest_outcome_t wrong = {0}, created[NMOVE];
    bt_task_run_t *runs[NMOVE];
    bt_pg_stats_t before, after;
    char id[32];
    (void)state;
    for (int i = 0; i < NMOVE; i++) {
        snprintf(id, sizeof id, "g%d", i);
        runs[i] = itest_task_run("wf", "gen", id, 1, S(SCHEDULED));
        created[i] = (itest_outcome_t){0};
        assert_int_equal(bt_store_task_create(b, 6, runs[i], itest_outcome_cb, &created[i]), BT_OK);
    }
    for (int i = 0; i < NMOVE; i++)
        assert_int_equal(itest_wait(loop, &created[i]), BT_OK);

    bt_pg_get_stats(bt_store_pg(b), &before);
    for (int i = 0; i < NMOVE; i++) {
        runs[i]->state = S(QUEUED);
        assert_int_equal(bt_store_task_transition(b, 6, S(SCHEDULED), runs[i], itest_outcome_cb,
                                                  &first[i]), BT_OK);
        runs[i]->state = S(SUBMITTING);
        assert_int_equal(bt_store_task_transition(b, 6, S(QUEUED), runs[i], itest_outcome_cb,
                                                  &second[i]), BT_OK);
    }
    /* a third move for half of them, and one from a state run 0 is not in */
    for (int i = 0; i < NMOVE; i += 2) {
        runs[i]->state = S(RUNNING);
        assert_int_equal(bt_store_task_transition(b, 6, S(SUBMITTING), runs[i], itest_outcome_cb,
                                                  &third[i]), BT_OK);
    }
    runs[0]->state = S(SUCCESS);
    assert_int_equal(bt_store_task_transition(b, 6, S(QUEUED), runs[0], itest_outcome_cb, &wrong),
                     BT_OK);
    for (int i = 0; i < NMOVE; i++) {
        assert_int_equal(itest_wait(loop, &first[i]), BT_OK);
        assert_int_equal(itest_wait(loop, &second[i]), BT_OK);
        if (i % 2 == 0)
            assert_int_equal(itest_wait(loop, &third[i]), BT_OK);
    }
    assert_int_equal(itest_wait(loop, &wrong), BT_E_CONFLICT);
    bt_pg_get_stats(bt_store_pg(b), &after);
    assert_int_equal(after.queries - before.queries, 2); /* 500 chained moves, then 1 */
    assert_int_equal(after.syncs - before.syncs, 1);

    PGconn *c = itest_connect(db);
    assert_int_equal(itest_scalar(c, "SELECT count(*) FROM task_runs WHERE run_id = 'gen' "
                                     "AND state = 'running'"), NMOVE / 2);
    assert_int_equal(itest_scalar(c, "SELECT count(*) FROM task_runs WHERE run_id = 'gen' "
                                     "AND state = 'submitting'"), NMOVE / 2);
    /* every run's events in the order of its moves */
    assert_int_equal(itest_scalar(c, "SELECT count(*) FROM events e WHERE kind = 'transition' "
                                     "AND run_key LIKE 'wf/gen/%' AND from_state = 'queued' "
                                     "AND NOT EXISTS (SELECT 1 FROM events p WHERE p.run_key = "
                                     "e.run_key AND p.to_state = 'queued' AND p.id < e.id)"), 0);
    assert_int_equal(itest_scalar(c, "SELECT count(*) FROM events WHERE kind = 'transition' "
                                     "AND run_key LIKE 'wf/gen/%'"), NMOVE * 2 + NMOVE / 2);
    PQfinish(c);

    /* a stale epoch fences every move of its statement */
    itest_outcome_t fenced[3] = {{0}};
    for (int i = 0; i < 3; i++) {
        runs[i + 1]->state = S(FAILED);
        assert_int_equal(bt_store_task_transition(a, 5, S(SUBMITTING), runs[i + 1],
                                                  itest_outcome_cb, &fenced[i]), BT_OK);
    }
    for (int i = 0; i < 3; i++)
        assert_int_equal(itest_wait(loop, &fenced[i]), BT_E_FENCED);

    /* a chain whose first move does not apply: none of it does */
    itest_outcome_t c1 = {0}, c2 = {0};
    runs[1]->state = S(RUNNING);
    assert_int_equal(bt_store_task_transition(b, 6, S(QUEUED), runs[1], itest_outcome_cb, &c1),
                     BT_OK); /* it is in submitting */
    runs[1]->state = S(SUCCESS);
    assert_int_equal(bt_store_task_transition(b, 6, S(RUNNING), runs[1], itest_outcome_cb, &c2),
                     BT_OK);
    assert_int_equal(itest_wait(loop, &c1), BT_E_CONFLICT);
    assert_int_equal(itest_wait(loop, &c2), BT_E_CONFLICT);
    c = itest_connect(db);
    char *st1 = itest_text(c, "SELECT state FROM task_runs WHERE run_key = 'wf/gen/g1/1'");
    assert_string_equal(st1, "submitting");
    free(st1);
    assert_int_equal(itest_scalar(c, "SELECT count(*) FROM events WHERE run_key = 'wf/gen/g1/1'"), 3);
    PQfinish(c);
    for (int i = 0; i < NMOVE; i++)
        itest_task_run_free(runs[i]);
}

static void on_state_read(bt_err_t err, PGresult *res, const char *errmsg, void *arg)
{
    char *out = arg;
    (void)errmsg;
    snprintf(out, 32, "%s", err == BT_OK && PQntuples(res) == 1 ? PQgetvalue(res, 0, 0) : "?");
}

/* Held transitions go out before anything asked for after them, so a read
 * in the same turn, on the same connection, sees them. */
static void held_transitions_keep_their_place(void **state)
{
    itest_outcome_t moved = {0};
    char seen[32] = "";
    (void)state;
    bt_task_run_t *r = itest_task_run("wf", "order", "t", 1, S(SCHEDULED));
    itest_outcome_t made = {0};
    assert_int_equal(bt_store_task_create(b, 6, r, itest_outcome_cb, &made), BT_OK);
    assert_int_equal(itest_wait(loop, &made), BT_OK);
    r->state = S(QUEUED);
    assert_int_equal(bt_store_task_transition(b, 6, S(SCHEDULED), r, itest_outcome_cb, &moved),
                     BT_OK);
    const char *vals[1] = {"wf/order/t/1"};
    assert_int_equal(bt_pg_query(bt_store_pg(b), "SELECT state FROM task_runs WHERE run_key = $1",
                                 1, vals, NULL, NULL, 0, on_state_read, seen), BT_OK);
    assert_int_equal(itest_wait(loop, &moved), BT_OK);
    assert_string_equal(seen, "queued");
    itest_task_run_free(r);
}

/* An error in a batch rolls back that whole batch, including writes whose
 * own statement succeeded before the error: they must be reported as failed,
 * never as written. The next turn is clean. */
static void failed_statement_rolls_back_its_batch_only(void **state)
{
    itest_outcome_t bad = {0}, good = {0}, later = {0};
    (void)state;
    bt_task_run_t *r = itest_task_run("wf", "abort", "t", 1, S(SCHEDULED));
    assert_int_equal(bt_pg_query(bt_store_pg(b), "SELECT 1", 0, NULL, NULL, NULL, 0, NULL, NULL),
                     BT_E_INVAL); /* a query needs a callback */
    /* good first: its statement succeeds, then the batch aborts */
    assert_int_equal(bt_store_task_create(b, 6, r, itest_outcome_cb, &good), BT_OK);
    assert_int_equal(bt_store_event(b, 6, "probe", NULL, "{\"x\": 1/0}", itest_outcome_cb, &bad),
                     BT_OK); /* invalid JSON: the server rejects it */
    assert_int_equal(itest_wait(loop, &good), BT_E_PG);
    assert_int_equal(itest_wait(loop, &bad), BT_E_PG);
    PGconn *c = itest_connect(db);
    assert_int_equal(itest_scalar(c, "SELECT count(*) FROM task_runs WHERE run_key='wf/abort/t/1'"), 0);
    PQfinish(c);
    assert_int_equal(bt_store_task_create(b, 6, r, itest_outcome_cb, &later), BT_OK);
    assert_int_equal(itest_wait(loop, &later), BT_OK);
    itest_task_run_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(epochs_only_rise),
        cmocka_unit_test(create_and_compare_and_set),
        cmocka_unit_test(read_back_record),
        cmocka_unit_test(new_leader_fences_old),
        cmocka_unit_test(one_turn_is_one_commit),
        cmocka_unit_test(turn_of_transitions_is_one_statement_per_generation),
        cmocka_unit_test(held_transitions_keep_their_place),
        cmocka_unit_test(failed_statement_rolls_back_its_batch_only),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
