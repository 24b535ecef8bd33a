/* The fencing race, for real: two writers on two PostgreSQL sessions with
 * different epochs, the current leader writing as fast as it can while the
 * other bumps the epoch. Checked from the server's side: once the bump has
 * committed, no write of the old epoch ever commits again. Then the worst
 * case: an old leader frozen mid-batch, holding the fence row, must not stall
 * the new leader's bump. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "itest.h"

#define S(x) BATON__V1__TASK_STATE__TASK_STATE_##x
#define NROWS 40
#define ROUNDS 6

static struct ev_loop *loop;
static const char *db;

typedef struct writer writer_t;
typedef struct row_ctx {
    writer_t *w;
    bt_task_run_t *run;
    int sent_after_bump; /* this write was issued after the bump committed */
} row_ctx_t;

struct writer {
    bt_store_t *st;
    uint64_t epoch;
    int active;
    int inflight;
    long ok, fenced, ok_after_bump, other;
    row_ctx_t rows[NROWS];
};

static int bump_committed;

static void flip(row_ctx_t *rc);

static void on_write(bt_err_t err, const char *detail, void *arg)
{
    row_ctx_t *rc = arg;
    writer_t *w = rc->w;
    (void)detail;
    w->inflight--;
    if (err == BT_OK) {
        w->ok++;
        if (rc->sent_after_bump)
            w->ok_after_bump++;
        /* the CAS succeeded: the row is now in run->state */
    } else if (err == BT_E_FENCED) {
        w->fenced++;
        w->active = 0; /* step down: no more writes */
        return;
    } else {
        w->other++;
        /* CONFLICT: the other writer moved it; re-read is not needed for
         * this test, we just flip from the other state next time. */
    }
    if (w->active)
        flip(rc);
}

static void flip(row_ctx_t *rc)
{
    bt_task_state_t from = rc->run->state;
    bt_task_state_t to = from == S(QUEUED) ? S(RUNNING) : S(QUEUED);
    rc->run->state = to;
    rc->sent_after_bump = bump_committed;
    if (bt_store_task_transition(rc->w->st, rc->w->epoch, from, rc->run, on_write, rc) == BT_OK)
        rc->w->inflight++;
    else
        rc->run->state = from;
}

static bt_store_t *open_store(const char *node, uint32_t grace_ms)
{
    bt_store_t *st;
    bt_store_opts_t o = {.conninfo = db, .cluster = "race", .node = node,
                         .fence_grace_ms = grace_ms};
    assert_int_equal(bt_store_open(loop, &o, &st), BT_OK);
    itest_wait_store_up(loop, st, 20);
    return st;
}

static void writer_init(writer_t *w, bt_store_t *st)
{
    memset(w, 0, sizeof *w);
    w->st = st;
    for (int i = 0; i < NROWS; i++) {
        char task[16];
        snprintf(task, sizeof task, "t%d", i);
        w->rows[i].w = w;
        w->rows[i].run = itest_task_run("wf", "race", task, 1, S(QUEUED));
    }
}

static void writer_free(writer_t *w)
{
    for (int i = 0; i < NROWS; i++)
        itest_task_run_free(w->rows[i].run);
}

typedef struct bump {
    ev_timer t;
    writer_t *by;
    uint64_t epoch;
    itest_outcome_t out;
} bump_t;

static void on_bump_done(bt_err_t err, const char *detail, void *arg)
{
    bump_t *b = arg;
    (void)detail;
    b->out.err = err;
    b->out.done = 1;
    if (err == BT_OK)
        bump_committed = 1;
}

static void on_bump_timer(struct ev_loop *l, ev_timer *t, int revents)
{
    bump_t *b = (bump_t *)t;
    (void)l;
    (void)revents;
    assert_int_equal(bt_store_fence_acquire(b->by->st, b->epoch, "z", "race", on_bump_done, b), BT_OK);
}

static void racing_writers_never_commit_a_stale_epoch(void **state)
{
    writer_t *ws = calloc(2, sizeof *ws);
    (void)state;
    writer_init(&ws[0], open_store("node-a", 2000));
    writer_init(&ws[1], open_store("node-b", 2000));
    PGconn *c = itest_connect(db);

    /* rows exist, created by the first leader */
    itest_outcome_t o = {0};
    assert_int_equal(bt_store_fence_acquire(ws[0].st, 1, "z", "start", itest_outcome_cb, &o), BT_OK);
    assert_int_equal(itest_wait(loop, &o), BT_OK);
    for (int i = 0; i < NROWS; i++) {
        itest_outcome_t co = {0};
        assert_int_equal(bt_store_task_create(ws[0].st, 1, ws[0].rows[i].run, itest_outcome_cb, &co), BT_OK);
        assert_int_equal(itest_wait(loop, &co), BT_OK);
    }

    uint64_t epoch = 1;
    srand((unsigned)getpid());
    for (int round = 0; round < ROUNDS; round++) {
        writer_t *leader = &ws[round % 2], *next = &ws[(round + 1) % 2];
        char sql[160];
        leader->epoch = epoch;
        leader->active = 1;
        leader->ok_after_bump = 0;
        bump_committed = 0;
        /* the leader keeps every row busy */
        for (int i = 0; i < NROWS; i++) {
            /* resync our view of the row with the server's */
            snprintf(sql, sizeof sql,
                     "SELECT state FROM task_runs WHERE cluster='race' AND run_key='wf/race/t%d/1'", i);
            char *stv = itest_text(c, sql);
            assert_int_equal(bt_task_state_parse(stv, &leader->rows[i].run->state), BT_OK);
            free(stv);
            flip(&leader->rows[i]);
        }
        /* the next leader bumps after a random 20..120 ms of writing */
        bump_t b = {.by = next, .epoch = epoch + 1};
        ev_timer_init(&b.t, on_bump_timer, (20 + rand() % 100) / 1000.0, 0.);
        ev_timer_start(loop, &b.t);
        assert_int_equal(itest_wait(loop, &b.out), BT_OK);
        /* Server-side view right after the bump committed ... */
        snprintf(sql, sizeof sql, "SELECT count(*) FROM events WHERE cluster='race' AND epoch=%llu",
                 (unsigned long long)epoch);
        long long stale_before = itest_scalar(c, sql);
        /* ... the old leader goes on until it is told it is fenced ... */
        long ok_at_bump = leader->ok;
        int stopped = 0;
        while (leader->inflight > 0 || leader->active) {
            ev_run(loop, EVRUN_ONCE);
            if (++stopped > 100000)
                fail_msg("old leader never saw the fence");
        }
        /* ... and not one write of its epoch committed after the bump. */
        assert_int_equal(itest_scalar(c, sql), stale_before);
        assert_int_equal(leader->ok_after_bump, 0);
        assert_true(leader->fenced >= 1);
        printf("round %d: epoch %llu: %ld writes ok (%ld answered after the bump, all "
               "sent before it), fenced after bump\n",
               round, (unsigned long long)epoch, leader->ok, leader->ok - ok_at_bump);
        assert_true(leader->ok > 0);
        epoch++;
    }
    assert_int_equal(itest_scalar(c, "SELECT epoch FROM fence WHERE cluster='race'"), epoch);
    /* epochs only rose: leader events are strictly increasing in id order */
    assert_int_equal(itest_scalar(c, "SELECT count(*) FROM (SELECT epoch, lag(epoch) OVER (ORDER BY id) p "
                                     "FROM events WHERE cluster='race' AND kind='leader') x "
                                     "WHERE p IS NOT NULL AND epoch <= p"),
                     0);
    PQfinish(c);
    for (int i = 0; i < 2; i++) {
        bt_store_close(ws[i].st);
        writer_free(&ws[i]);
    }
    free(ws);
}

/* Child: a leader with epoch `epoch` that sends one fenced write and freezes
 * before its loop turn ends, i.e. before the pipeline's Sync is sent. The
 * server has run the statement and holds the fence row FOR SHARE. */
static int frozen_leader(uint64_t epoch)
{
    struct ev_loop *l = ev_loop_new(0);
    bt_store_t *st;
    bt_store_opts_t o = {.conninfo = db, .cluster = "race", .node = "frozen"};
    itest_outcome_t out = {0};
    if (bt_store_open(l, &o, &st) != BT_OK)
        return 10;
    itest_wait_store_up(l, st, 20);
    if (bt_store_fence_check(st, epoch, itest_outcome_cb, &out) != BT_OK)
        return 11;
    raise(SIGSTOP); /* frozen with the statement executed, no Sync sent */
    itest_run_until(l, &out.done, 30);
    int rc = out.done && out.err == BT_E_PG_CONN ? 0 : 20 + (int)out.err;
    bt_store_close(st);
    ev_loop_destroy(l);
    return rc;
}

static void frozen_leader_mid_batch_does_not_stall_the_bump(void **state)
{
    (void)state;
    PGconn *c = itest_connect(db);
    long long epoch = itest_scalar(c, "SELECT epoch FROM fence WHERE cluster='race'");
    pid_t kid = fork();
    if (kid == 0)
        _exit(frozen_leader((uint64_t)epoch));
    int status;
    assert_int_equal(waitpid(kid, &status, WUNTRACED), kid);
    assert_true(WIFSTOPPED(status));
    /* the frozen session holds a lock on fence (once the server has run
     * the statement the child sent just before it froze) */
    int locked = 0;
    for (int i = 0; i < 500 && !locked; i++) {
        locked = itest_scalar(c, "SELECT count(*) FROM pg_locks WHERE relation='fence'::regclass "
                                 "AND granted") >= 1;
        if (!locked)
            usleep(10000);
    }
    assert_true(locked);

    bt_store_t *st = open_store("new-leader", 500);
    itest_outcome_t o = {0};
    assert_int_equal(bt_store_fence_acquire(st, (uint64_t)epoch + 1, "z", "takeover", itest_outcome_cb, &o),
                     BT_OK);
    assert_int_equal(itest_wait(loop, &o), BT_OK);
    char *killed = itest_text(c, "SELECT detail->>'stalled_writers_terminated' FROM events "
                                 "WHERE cluster='race' AND kind='leader' ORDER BY id DESC LIMIT 1");
    assert_string_equal(killed, "1");
    free(killed);

    /* the frozen leader wakes up: its write's outcome is "connection lost" */
    kill(kid, SIGCONT);
    assert_int_equal(waitpid(kid, &status, 0), kid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    bt_store_close(st);
    PQfinish(c);
}

int main(void)
{
    char err[512];
    loop = ev_default_loop(0);
    db = itest_fresh_db("race");
    if (bt_store_migrate(db, NULL, err, sizeof err) != BT_OK) {
        fprintf(stderr, "migrate: %s\n", err);
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(racing_writers_never_commit_a_stale_epoch),
        cmocka_unit_test(frozen_leader_mid_batch_does_not_stall_the_bump),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
