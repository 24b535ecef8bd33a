/* store_bench: fenced task-run transitions per second through bt_store, next
 * to pgbench's simple-update workload (-N) with 1 and 4 clients, run against
 * the same PostgreSQL server in the same invocation.
 *
 * Usage: store_bench [TRANSITIONS] [SECONDS_PER_PGBENCH]
 * Needs BATON_TEST_PG (scripts/bench starts a server through the harness).
 * Last line of output: one JSON object with every figure. */
#include <ev.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "baton/clock.h"
#include "baton/pg.h"
#include "baton/store.h"

#define S(x) BATON__V1__TASK_STATE__TASK_STATE_##x
#define WINDOW 2048 /* transitions in flight at once */

typedef struct bench {
    struct ev_loop *loop;
    bt_store_t *st;
    bt_task_run_t *runs;
    char (*keys)[64];
    long nrows;
    long target, issued, done, failed;
} bench_t;

static void issue(bench_t *b, long i);

/* Each row alternates queued <-> running; row i has at most one write in
 * flight (a compare-and-set needs the previous one to have landed). */
typedef struct slot {
    bench_t *b;
    long row;
} slot_t;

static slot_t *slots;

static void on_transition(bt_err_t err, const char *detail, void *arg)
{
    slot_t *s = arg;
    bench_t *b = s->b;
    b->done++;
    if (err != BT_OK) {
        b->failed++;
        if (b->failed < 5)
            fprintf(stderr, "transition failed: %s %s\n", bt_err_name(err), detail ? detail : "");
    }
    if (b->issued < b->target)
        issue(b, s->row);
}

static void issue(bench_t *b, long row)
{
    bt_task_run_t *r = &b->runs[row];
    bt_task_state_t from = r->state;
    r->state = from == S(QUEUED) ? S(RUNNING) : S(QUEUED);
    if (bt_store_task_transition(b->st, 1, from, r, on_transition, &slots[row]) != BT_OK) {
        fprintf(stderr, "cannot queue a transition\n");
        exit(1);
    }
    b->issued++;
}

static void on_simple(bt_err_t err, const char *detail, void *arg)
{
    int *flag = arg;
    if (err != BT_OK) {
        fprintf(stderr, "setup failed: %s %s\n", bt_err_name(err), detail ? detail : "");
        exit(1);
    }
    (*flag)++;
}

static void run_until(struct ev_loop *loop, const int *counter, int target)
{
    while (*counter < target)
        ev_run(loop, EVRUN_ONCE);
}

static const char *pgbench_path(void)
{
    static const char *candidates[] = {"/usr/lib/postgresql/15/bin/pgbench", "/usr/bin/pgbench"};
    const char *env = getenv("PGBENCH");
    if (env)
        return env;
    for (size_t i = 0; i < sizeof candidates / sizeof candidates[0]; i++)
        if (access(candidates[i], X_OK) == 0)
            return candidates[i];
    return "pgbench";
}

/* Runs pgbench; returns its tps (without connection time), 0 when it ran but
 * printed none (pgbench -i), -1 when it failed. */
static double pgbench_tps(const char *conninfo, const char *args)
{
    char cmd[2048], line[512];
    double tps = 0;
    snprintf(cmd, sizeof cmd, "'%s' %s '%s' 2>&1", pgbench_path(), args, conninfo);
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    while (fgets(line, sizeof line, p)) {
        double v;
        if (sscanf(line, "tps = %lf (without initial connection time)", &v) == 1)
            tps = v;
    }
    if (pclose(p) != 0)
        return -1;
    return tps;
}

static void exec_or_die(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
        fprintf(stderr, "%s: %s", sql, PQresultErrorMessage(r));
        exit(1);
    }
    PQclear(r);
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 200000;
    int secs = argc > 2 ? atoi(argv[2]) : 10;
    const char *base = getenv("BATON_TEST_PG");
    char db[1024], pgb_db[1024], err[512], args[128];
    bench_t b = {0};

    if (!base || n <= 0 || secs <= 0) {
        fprintf(stderr, "usage: BATON_TEST_PG=CONNINFO store_bench [TRANSITIONS] [SECONDS]\n");
        return 2;
    }
    PGconn *admin = PQconnectdb(base);
    if (PQstatus(admin) != CONNECTION_OK) {
        fprintf(stderr, "connect: %s", PQerrorMessage(admin));
        return 1;
    }
    exec_or_die(admin, "DROP DATABASE IF EXISTS bench_store");
    exec_or_die(admin, "CREATE DATABASE bench_store");
    exec_or_die(admin, "DROP DATABASE IF EXISTS bench_pgbench");
    exec_or_die(admin, "CREATE DATABASE bench_pgbench");
    PQfinish(admin);
    snprintf(db, sizeof db, "%s dbname=bench_store", base);
    snprintf(pgb_db, sizeof pgb_db, "%s dbname=bench_pgbench", base);

    if (bt_store_migrate(db, NULL, err, sizeof err) != BT_OK) {
        fprintf(stderr, "migrate: %s\n", err);
        return 1;
    }
    b.loop = ev_default_loop(0);
    bt_store_opts_t so = {.conninfo = db, .cluster = "bench", .node = "bench"};
    if (bt_store_open(b.loop, &so, &b.st) != BT_OK)
        return 1;
    while (!bt_store_is_up(b.st))
        ev_run(b.loop, EVRUN_ONCE);

    int ok = 0;
    bt_store_fence_acquire(b.st, 1, "z", "bench", on_simple, &ok);
    run_until(b.loop, &ok, 1);

    /* rows: one per in-flight slot */
    b.nrows = WINDOW;
    b.runs = calloc((size_t)b.nrows, sizeof *b.runs);
    b.keys = calloc((size_t)b.nrows, sizeof *b.keys);
    slots = calloc((size_t)b.nrows, sizeof *slots);
    ok = 0;
    for (long i = 0; i < b.nrows; i++) {
        bt_task_run_t *r = &b.runs[i];
        baton__v1__task_run__init(r);
        snprintf(b.keys[i], sizeof b.keys[i], "bench/run/t%ld/1", i);
        r->run_key = b.keys[i];
        r->workflow_id = "bench";
        r->run_id = "run";
        r->task_id = b.keys[i] + 10; /* "t<i>/1": a name, unused by the store */
        r->attempt = 1;
        r->state = S(QUEUED);
        r->due_ms = bt_now_ms();
        slots[i].b = &b;
        slots[i].row = i;
        bt_store_task_create(b.st, 1, r, on_simple, &ok);
    }
    run_until(b.loop, &ok, (int)b.nrows);

    /* the measured part */
    bt_pg_stats_t before, after;
    bt_pg_get_stats(bt_store_pg(b.st), &before);
    b.target = n;
    double t0 = bt_mono_s();
    for (long i = 0; i < b.nrows && b.issued < b.target; i++)
        issue(&b, i);
    while (b.done < b.target)
        ev_run(b.loop, EVRUN_ONCE);
    double elapsed = bt_mono_s() - t0;
    bt_pg_get_stats(bt_store_pg(b.st), &after);
    double baton_tps = (double)n / elapsed;
    unsigned long commits = (unsigned long)(after.syncs - before.syncs);

    bt_store_close(b.st);
    ev_loop_destroy(b.loop);
    free(b.runs);
    free(b.keys);
    free(slots);
    if (b.failed) {
        fprintf(stderr, "%ld transitions failed\n", b.failed);
        return 1;
    }
    printf("baton: %ld fenced transitions in %.2f s = %.0f/s (%lu commits, %.1f per commit)\n", n,
           elapsed, baton_tps, commits, (double)n / (double)(commits ? commits : 1));

    /* the peer, on the same server, now */
    if (pgbench_tps(pgb_db, "-i -q -s 4") < 0) {
        fprintf(stderr, "pgbench -i failed (%s)\n", pgbench_path());
        return 1;
    }
    snprintf(args, sizeof args, "-N -c 1 -j 1 -T %d -n", secs);
    double c1 = pgbench_tps(pgb_db, args);
    snprintf(args, sizeof args, "-N -c 4 -j 2 -T %d -n", secs);
    double c4 = pgbench_tps(pgb_db, args);
    if (c1 <= 0 || c4 <= 0) {
        fprintf(stderr, "pgbench did not run (%s)\n", pgbench_path());
        return 1;
    }
    printf("pgbench -N -c 1: %.0f tps\npgbench -N -c 4: %.0f tps\n", c1, c4);
    printf("ratio baton / pgbench -N -c 4: %.2f (target >= 2)\n", baton_tps / c4);
    printf("{\"bench\": \"store\", \"transitions\": %ld, \"seconds\": %.3f, "
           "\"baton_transitions_per_s\": %.0f, \"commits\": %lu, "
           "\"pgbench_N_c1_tps\": %.0f, \"pgbench_N_c4_tps\": %.0f, "
           "\"ratio_vs_pgbench_c4\": %.2f, \"ratio_vs_pgbench_c1\": %.2f}\n",
           n, elapsed, baton_tps, commits, c1, c4, baton_tps / c4, baton_tps / c1);
    return 0;
}
