/* sched_bench: the dispatcher at 1,000 workflows x 10 tasks.
 *
 * Each workflow is a fan-out/fan-in DAG (t0 -> t1..t8 -> t9) of test_op
 * tasks in their in-memory, instant form (the no-op operator of test and
 * benchmark builds). One manual run of every workflow is requested at once
 * through run_requests, as `batonctl trigger` does; the dispatcher (no
 * ZooKeeper here: it dispatches under a fence epoch taken directly) creates
 * the runs and drives every task through scheduled -> queued -> submitting
 * -> success, each a fenced write.
 *
 * Reports scheduling lag (a task's due/eligible time -> queued) p50/p99/max
 * and transitions per second, and runs store_bench (same server, same
 * invocation) for the raw fenced-transition rate it is compared with.
 *
 * Usage: sched_bench [WORKFLOWS] [TASKS_PER_WORKFLOW]
 * Needs BATON_TEST_PG. Last line of output: one JSON object. */
#include <ev.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "baton/clock.h"
#include "baton/dispatcher.h"
#include "baton/operator.h"
#include "baton/pg.h"
#include "baton/store.h"

static int64_t *lags, *e2e;
static size_t nlags, caplags;

static void on_lag(int64_t lag_ms, int64_t end_to_end_ms, void *arg)
{
    (void)arg;
    if (nlags == caplags) {
        caplags = caplags ? caplags * 2 : 4096;
        lags = realloc(lags, caplags * sizeof *lags);
        e2e = realloc(e2e, caplags * sizeof *e2e);
        if (!lags || !e2e)
            exit(1);
    }
    e2e[nlags] = end_to_end_ms;
    lags[nlags++] = lag_ms;
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
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

/* A WorkflowSpec t0 -> t1..t(n-2) -> t(n-1), packed, as a bytea hex literal. */
static char *spec_hex(const char *id, int ntasks)
{
    Baton__V1__WorkflowSpec w = BATON__V1__WORKFLOW_SPEC__INIT;
    Baton__V1__TaskSpec *tasks = calloc((size_t)ntasks, sizeof *tasks);
    Baton__V1__TaskSpec **tp = calloc((size_t)ntasks, sizeof *tp);
    Baton__V1__TestOp op = BATON__V1__TEST_OP__INIT;
    char (*names)[16] = calloc((size_t)ntasks, sizeof *names);
    char **mid = calloc((size_t)ntasks, sizeof *mid);
    char *first[1];
    w.id = (char *)id;
    w.timezone = "UTC";
    w.max_active_runs = 1;
    w.max_active_tasks = (uint32_t)ntasks;
    for (int i = 0; i < ntasks; i++) {
        baton__v1__task_spec__init(&tasks[i]);
        snprintf(names[i], sizeof names[i], "t%d", i);
        tasks[i].id = names[i];
        tasks[i].pool = "default";
        tasks[i].timeout_ms = 3600000;
        tasks[i].operator_case = BATON__V1__TASK_SPEC__OPERATOR_TEST_OP;
        tasks[i].test_op = &op;
        tp[i] = &tasks[i];
    }
    first[0] = names[0];
    for (int i = 1; i < ntasks - 1; i++) {
        tasks[i].n_depends_on = 1;
        tasks[i].depends_on = first;
        mid[i - 1] = names[i];
    }
    if (ntasks > 2) {
        tasks[ntasks - 1].n_depends_on = (size_t)ntasks - 2;
        tasks[ntasks - 1].depends_on = mid;
    } else if (ntasks == 2) {
        tasks[1].n_depends_on = 1;
        tasks[1].depends_on = first;
    }
    w.n_tasks = (size_t)ntasks;
    w.tasks = tp;
    size_t len = baton__v1__workflow_spec__get_packed_size(&w);
    uint8_t *buf = malloc(len);
    char *hex = malloc(2 * len + 3);
    baton__v1__workflow_spec__pack(&w, buf);
    strcpy(hex, "\\x");
    for (size_t i = 0; i < len; i++)
        sprintf(hex + 2 + 2 * i, "%02x", buf[i]);
    free(buf);
    free(tasks);
    free(tp);
    free(names);
    free(mid);
    return hex;
}

static void on_fenced(bt_err_t err, const char *detail, void *arg)
{
    int *ok = arg;
    if (err != BT_OK) {
        fprintf(stderr, "fence: %s %s\n", bt_err_name(err), detail ? detail : "");
        exit(1);
    }
    *ok = 1;
}

/* store_bench's transitions_per_s, measured now against the same server. */
static double store_bench_rate(const char *self)
{
    char path[4096], cmd[4200], line[4096], last[4096] = "";
    snprintf(path, sizeof path, "%s", self);
    char *slash = strrchr(path, '/');
    snprintf(slash ? slash + 1 : path, sizeof path - (size_t)(slash ? slash + 1 - path : 0),
             "store_bench");
    snprintf(cmd, sizeof cmd, "'%s' 100000 1 2>/dev/null", path);
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    while (fgets(line, sizeof line, p))
        snprintf(last, sizeof last, "%s", line);
    pclose(p);
    const char *k = strstr(last, "\"baton_transitions_per_s\":");
    return k ? atof(k + strlen("\"baton_transitions_per_s\":")) : -1;
}

int main(int argc, char **argv)
{
    int nwf = argc > 1 ? atoi(argv[1]) : 1000;
    int ntasks = argc > 2 ? atoi(argv[2]) : 10;
    const char *base = getenv("BATON_TEST_PG");
    char db[1024], err[512];
    if (!base || nwf <= 0 || ntasks <= 0) {
        fprintf(stderr, "usage: BATON_TEST_PG=CONNINFO sched_bench [WORKFLOWS] [TASKS]\n");
        return 2;
    }
    PGconn *admin = PQconnectdb(base);
    if (PQstatus(admin) != CONNECTION_OK) {
        fprintf(stderr, "connect: %s", PQerrorMessage(admin));
        return 1;
    }
    exec_or_die(admin, "DROP DATABASE IF EXISTS bench_sched");
    exec_or_die(admin, "CREATE DATABASE bench_sched");
    PQfinish(admin);
    snprintf(db, sizeof db, "%s dbname=bench_sched", base);
    if (bt_store_migrate(db, NULL, err, sizeof err) != BT_OK) {
        fprintf(stderr, "migrate: %s\n", err);
        return 1;
    }

    /* the workflows, applied as batonctl does */
    PGconn *c = PQconnectdb(db);
    exec_or_die(c, "BEGIN");
    for (int i = 0; i < nwf; i++) {
        char id[32];
        snprintf(id, sizeof id, "wf%04d", i);
        char *hex = spec_hex(id, ntasks);
        const char *vals[3] = {"bench", id, hex};
        PGresult *r = PQexecParams(c, "SELECT baton_workflow_apply($1, $2, $3::bytea, 'bench')",
                                   3, NULL, vals, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            fprintf(stderr, "apply: %s", PQresultErrorMessage(r));
            return 1;
        }
        PQclear(r);
        free(hex);
    }
    exec_or_die(c, "COMMIT");

    struct ev_loop *loop = ev_default_loop(0);
    bt_store_t *st;
    bt_store_opts_t so = {.conninfo = db, .cluster = "bench", .node = "bench"};
    if (bt_store_open(loop, &so, &st) != BT_OK)
        return 1;
    while (!bt_store_is_up(st))
        ev_run(loop, EVRUN_ONCE);
    int ok = 0;
    bt_store_fence_acquire(st, 1, "z", "bench", on_fenced, &ok);
    while (!ok)
        ev_run(loop, EVRUN_ONCE);

    bt_operator_t *op;
    if (bt_test_op_new(loop, &op) != BT_OK) {
        fprintf(stderr, "this build has no test_op (configure with -DBATON_TEST_OPERATORS=ON)\n");
        return 1;
    }
    bt_dispatcher_t *d;
    bt_dispatcher_opts_t dopts = {.store = st, .ops = &op, .nops = 1,
                                  .default_pool_slots = 1000000, .config_poll_ms = 100};
    if (bt_dispatcher_new(loop, &dopts, &d) != BT_OK)
        return 1;
    bt_dispatcher_on_queued(d, on_lag, NULL);
    bt_dispatcher_start(d, 1);
    bt_dispatcher_stats_t s;
    do {
        ev_run(loop, EVRUN_ONCE);
        bt_dispatcher_get_stats(d, &s);
    } while (!s.active);

    /* one manual run of every workflow, requested at once */
    exec_or_die(c, "INSERT INTO run_requests (cluster, workflow_id, kind, logical_time) "
                   "SELECT 'bench', workflow_id, 'manual', now() FROM workflows "
                   "WHERE cluster = 'bench'");
    int64_t t0 = bt_mono_ms(), first = 0;
    uint64_t tr0 = s.transitions;
    bt_pg_stats_t ps0, ps1;
    bt_pg_get_stats(bt_store_pg(st), &ps0);
    for (;;) {
        ev_run(loop, EVRUN_ONCE);
        bt_dispatcher_get_stats(d, &s);
        if (!first && s.runs_created)
            first = bt_mono_ms();
        if (s.runs_created >= (uint64_t)nwf && s.active_runs == 0)
            break;
        if (bt_mono_ms() - t0 > 600000) {
            fprintf(stderr, "did not finish in 10 minutes\n");
            return 1;
        }
    }
    int64_t t1 = bt_mono_ms();
    bt_pg_get_stats(bt_store_pg(st), &ps1);
    double secs = (double)(t1 - first) / 1000.0;
    uint64_t transitions = s.transitions - tr0;
    double rate = secs > 0 ? (double)transitions / secs : 0;

    PGresult *r = PQexec(c, "SELECT count(*) FILTER (WHERE state = 'success'), count(*) "
                            "FROM task_runs WHERE cluster = 'bench'");
    long succ = atol(PQgetvalue(r, 0, 0)), all = atol(PQgetvalue(r, 0, 1));
    PQclear(r);
    PQfinish(c);

    qsort(lags, nlags, sizeof *lags, cmp64);
    qsort(e2e, nlags, sizeof *e2e, cmp64);
    int64_t p50 = nlags ? lags[nlags / 2] : -1, p99 = nlags ? lags[nlags * 99 / 100] : -1,
            mx = nlags ? lags[nlags - 1] : -1;
    int64_t e50 = nlags ? e2e[nlags / 2] : -1, e99 = nlags ? e2e[nlags * 99 / 100] : -1;

    bt_test_op_free(op);
    bt_store_close(st);
    bt_dispatcher_free(d);

    double store_rate = store_bench_rate(argv[0]);
    printf("%d workflows x %d tasks: %ld/%ld task runs succeeded\n", nwf, ntasks, succ, all);
    printf("transitions: %llu in %.2f s = %.0f/s (%llu commits); store_bench: %.0f/s (%.0f%%)\n",
           (unsigned long long)transitions, secs, rate,
           (unsigned long long)(ps1.syncs - ps0.syncs), store_rate,
           store_rate > 0 ? 100.0 * rate / store_rate : 0);
    printf("scheduling lag (eligible -> queued), %zu tasks: p50 %lld ms, p99 %lld ms, max %lld ms\n",
           nlags, (long long)p50, (long long)p99, (long long)mx);
    printf("upstream finished -> queued (includes the upstream write's commit): p50 %lld ms, "
           "p99 %lld ms\n", (long long)e50, (long long)e99);
    printf("{\"bench\":\"sched\",\"workflows\":%d,\"tasks_per_workflow\":%d,"
           "\"task_runs_succeeded\":%ld,\"task_runs\":%ld,\"transitions\":%llu,"
           "\"seconds\":%.3f,\"transitions_per_s\":%.0f,\"commits\":%llu,"
           "\"lag_p50_ms\":%lld,\"lag_p99_ms\":%lld,\"lag_max_ms\":%lld,"
           "\"end_to_end_p50_ms\":%lld,\"end_to_end_p99_ms\":%lld,"
           "\"peer_store_bench_transitions_per_s\":%.0f,\"ratio_to_store_bench\":%.3f}\n",
           nwf, ntasks, succ, all, (unsigned long long)transitions, secs, rate,
           (unsigned long long)(ps1.syncs - ps0.syncs), (long long)p50, (long long)p99,
           (long long)mx, (long long)e50, (long long)e99, store_rate,
           store_rate > 0 ? rate / store_rate : 0);
    free(lags);
    free(e2e);
    return succ == all && all == (long)nwf * ntasks ? 0 : 1;
}
