#include "itest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "baton/log.h"

const char *itest_pg(void)
{
    const char *pg = getenv("BATON_TEST_PG");
    if (!pg || !*pg)
        fail_msg("BATON_TEST_PG is not set: run through tests/harness/harness");
    return pg;
}

PGconn *itest_connect(const char *conninfo)
{
    PGconn *c = PQconnectdb(conninfo);
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("connect %s: %s", conninfo, PQerrorMessage(c));
    PQclear(PQexec(c, "SET client_min_messages = warning"));
    return c;
}

void itest_exec(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQresultErrorMessage(r));
    PQclear(r);
}

char *itest_text(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) < 1)
        fail_msg("%s: %s (%d rows)", sql, PQresultErrorMessage(r), PQntuples(r));
    char *v = PQgetisnull(r, 0, 0) ? NULL : strdup(PQgetvalue(r, 0, 0));
    PQclear(r);
    return v;
}

long long itest_scalar(PGconn *c, const char *sql)
{
    char *v = itest_text(c, sql);
    long long n = v ? atoll(v) : 0;
    free(v);
    return n;
}

const char *itest_fresh_db(const char *tag)
{
    /* a few buffers, so a test may hold several databases at once */
    static char ring[4][1024];
    static int next;
    char *conninfo = ring[next++ % 4];
    char sql[256];
    char db[96];
    PGconn *c = itest_connect(itest_pg());
    snprintf(db, sizeof db, "t_%s_%d", tag, (int)getpid());
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s", db);
    itest_exec(c, sql);
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", db);
    itest_exec(c, sql);
    PQfinish(c);
    /* A later dbname keyword overrides the earlier one in a conninfo. */
    snprintf(conninfo, sizeof ring[0], "%s dbname=%s", itest_pg(), db);
    return conninfo;
}

typedef struct flag_timer {
    ev_timer t;
    int fired;
} flag_timer_t;

static void on_deadline(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    ((flag_timer_t *)w)->fired = 1;
    ev_break(loop, EVBREAK_ONE);
}

typedef struct watch {
    ev_check c;
    const int *flag;
} watch_t;

static void on_check(struct ev_loop *loop, ev_check *w, int revents)
{
    (void)revents;
    if (*((watch_t *)w)->flag)
        ev_break(loop, EVBREAK_ONE);
}

int itest_run_until(struct ev_loop *loop, const int *flag, double seconds)
{
    flag_timer_t dl = {.fired = 0};
    watch_t w = {.flag = flag};
    if (*flag)
        return *flag;
    ev_timer_init(&dl.t, on_deadline, seconds, 0.);
    ev_timer_start(loop, &dl.t);
    ev_check_init(&w.c, on_check);
    ev_check_start(loop, &w.c);
    while (!*flag && !dl.fired)
        ev_run(loop, EVRUN_ONCE);
    ev_timer_stop(loop, &dl.t);
    ev_check_stop(loop, &w.c);
    return *flag;
}

typedef struct up_watch {
    ev_timer t;
    bt_store_t *st;
    int up;
} up_watch_t;

static void on_up_poll(struct ev_loop *loop, ev_timer *w, int revents)
{
    up_watch_t *u = (up_watch_t *)w;
    (void)loop;
    (void)revents;
    u->up = bt_store_is_up(u->st);
}

void itest_wait_store_up(struct ev_loop *loop, bt_store_t *st, double seconds)
{
    up_watch_t u = {.st = st, .up = bt_store_is_up(st)};
    ev_timer_init(&u.t, on_up_poll, 0.01, 0.01);
    ev_timer_start(loop, &u.t);
    itest_run_until(loop, &u.up, seconds);
    ev_timer_stop(loop, &u.t);
    if (!u.up)
        fail_msg("store not connected within %.0f s", seconds);
}

int itest_harness(const char *what, const char *action, const char *arg)
{
    const char *h = getenv("BATON_HARNESS");
    const char *dir = getenv("BATON_TEST_HARNESS_DIR");
    if (!h || !dir)
        fail_msg("BATON_HARNESS / BATON_TEST_HARNESS_DIR not set");
    pid_t pid = fork();
    if (pid == 0) {
        if (arg)
            execl(h, h, what, dir, arg, action, (char *)NULL);
        else
            execl(h, h, what, dir, action, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

bt_task_run_t *itest_task_run(const char *wf, const char *run, const char *task,
                              uint32_t attempt, bt_task_state_t state)
{
    bt_task_run_t *r = calloc(1, sizeof *r);
    char key[256];
    baton__v1__task_run__init(r);
    assert_int_equal(bt_run_key_format(key, sizeof key, wf, run, task, attempt), BT_OK);
    r->run_key = strdup(key);
    r->workflow_id = strdup(wf);
    r->run_id = strdup(run);
    r->task_id = strdup(task);
    r->attempt = attempt;
    r->state = state;
    return r;
}

void itest_task_run_free(bt_task_run_t *r)
{
    if (!r)
        return;
    free(r->run_key);
    free(r->workflow_id);
    free(r->run_id);
    free(r->task_id);
    free(r);
}

void itest_outcome_cb(bt_err_t err, const char *detail, void *arg)
{
    itest_outcome_t *o = arg;
    if (err != BT_OK && detail)
        bt_debug("itest: outcome %s: %s", bt_err_name(err), detail);
    o->err = err;
    o->done = 1;
}

bt_err_t itest_wait(struct ev_loop *loop, itest_outcome_t *o)
{
    if (!itest_run_until(loop, &o->done, 30.0))
        fail_msg("no outcome within 30 s");
    return o->err;
}
