/* Fenced writes and reads on top of the pipelined connection (net/pg.c).
 * The SQL lives in the migration (functions baton_*); here we only marshal
 * parameters and map the functions' text outcomes to bt_err_t. */
#include "baton/store.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "baton/clock.h"
#include "baton/log.h"
#include "store/internal.h"

static const bt_pg_stmt_t store_stmts[ST__COUNT] = {
    [ST_FENCE_ACQUIRE] = {"bt_fence_acquire",
                          "SELECT baton_fence_acquire($1, $2, $3, $4, $5, $6)", 6},
    [ST_FENCE_CHECK] = {"bt_fence_check", "SELECT baton_fence_check($1, $2)", 2},
    [ST_TASK_CREATE] = {"bt_task_create",
                        "SELECT baton_task_create($1, $2, $3, $4, $5, $6, $7, "
                        "$8, $9, $10, $11)",
                        11},
    [ST_TASK_GET] = {"bt_task_get",
                     "SELECT state, record FROM task_runs "
                     "WHERE cluster = $1 AND run_key = $2",
                     2},
    [ST_EVENT] = {"bt_event",
                  "SELECT baton_event_append($1, $2, $3, $4, $5, $6::jsonb)", 6},
    [ST_HEARTBEAT] = {"bt_heartbeat", "SELECT baton_leader_heartbeat($1, $2, $3)", 3},
    [ST_RUN_CREATE] = {"bt_run_create",
                       "SELECT baton_run_create($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, "
                       "$11, $12, $13, $14, $15)",
                       15},
    [ST_CURSOR_INIT] = {"bt_cursor_init", "SELECT baton_workflow_cursor_init($1, $2, $3, $4)",
                        4},
    [ST_RUN_TRANSITION] = {"bt_run_transition",
                           "SELECT baton_run_transition($1, $2, $3, $4, $5, $6, $7, $8)", 8},
    [ST_TASK_REQUEST_DONE] = {"bt_task_request_done",
                              "SELECT baton_task_request_done($1, $2, $3, $4, $5)", 5},
    [ST_TASK_TRANSITIONS] = {"bt_task_transitions",
                             "SELECT baton_task_transitions($1, $2, $3, $4, $5, $6, $7, $8, $9, "
                             "$10)",
                             10},
    [ST_FENCE_RELEASE] = {"bt_fence_release", "SELECT baton_fence_release($1, $2, $3)", 3},
    [ST_EVENT_NOTE] = {"bt_event_note", "SELECT baton_event_note($1, $2, $3, $4, $5::jsonb)", 5},
    /* the dispatcher's reads (reads.c) */
    [ST_READ_WORKFLOWS] = {"bt_read_workflows",
                           "SELECT workflow_id, version, paused, spec, "
                           "(extract(epoch FROM next_fire_at) * 1000)::bigint, change_seq "
                           "FROM workflows WHERE cluster = $1 AND change_seq > $2::bigint",
                           2},
    [ST_READ_RUNS] = {"bt_read_runs",
                      "SELECT r.record, v.spec FROM workflow_runs r JOIN workflow_versions v "
                      "ON v.cluster = r.cluster AND v.workflow_id = r.workflow_id "
                      "AND v.version = r.workflow_version "
                      "WHERE r.cluster = $1 AND r.state IN ('queued', 'running') "
                      "ORDER BY r.logical_time, r.run_id",
                      1},
    [ST_READ_FENCE] = {"bt_read_fence",
                       "SELECT inherited_clean, epoch FROM fence WHERE cluster = $1", 1},
    [ST_READ_TASKS] = {"bt_read_tasks",
                       "SELECT DISTINCT ON (t.workflow_id, t.run_id, t.task_id) "
                       "t.run_key, t.state, t.record FROM task_runs t JOIN workflow_runs r "
                       "ON r.cluster = t.cluster AND r.workflow_id = t.workflow_id "
                       "AND r.run_id = t.run_id "
                       "WHERE t.cluster = $1 AND r.state IN ('queued', 'running') "
                       "ORDER BY t.workflow_id, t.run_id, t.task_id, t.attempt DESC",
                       1},
    [ST_READ_POOLS] = {"bt_read_pools", "SELECT name, slots FROM pools WHERE cluster = $1", 1},
    [ST_READ_RUN_REQUESTS] = {"bt_read_run_requests",
                              "SELECT id, workflow_id, kind, "
                              "(extract(epoch FROM logical_time) * 1000)::bigint, conf "
                              "FROM run_requests WHERE cluster = $1 ORDER BY id LIMIT 1000",
                              1},
    [ST_READ_TASK_REQUESTS] = {"bt_read_task_requests",
                               "SELECT id, action, workflow_id, run_id, task_id, only_failed "
                               "FROM task_requests WHERE cluster = $1 ORDER BY id LIMIT 100",
                               1},
    [ST_READ_FINISHED_RUN] = {"bt_read_finished_run",
                              "SELECT record FROM workflow_runs WHERE cluster = $1 "
                              "AND workflow_id = $2 AND run_id = $3 "
                              "AND state IN ('success', 'failed', 'cancelled')",
                              3},
};

/* Sent with every session's setup. A standby's session runs nothing until
 * it takes over, and the first call of a plpgsql function in a session
 * compiles it and loads the catalogs it needs: the first fence bump of a
 * takeover took 5 to 25 ms instead of under 1. These calls change nothing:
 * a negative epoch is the warm-up branch of baton_fence_acquire (migration
 * 4), baton_fence_check only reads, and baton_task_transitions with no
 * transitions writes nothing. Older schemas are skipped. */
static const char warm_sql[] =
    "SELECT CASE WHEN (SELECT max(version) FROM schema_migrations) >= 5 THEN "
    "baton_fence_acquire($1, -1, $2, '', 'warm-up', 0) || baton_fence_check($1, -1) || "
    "array_length(baton_task_transitions($1, -1, $2, '{}', '{}', '{}', '{}', '{}', '{}', false) "
    "|| baton_task_transitions($1, -1, $2, '{}', '{}', '{}', '{}', '{}', '{}', true), 1) "
    "END";

bt_err_t bt_store_open(struct ev_loop *loop, const bt_store_opts_t *opts,
                       bt_store_t **out)
{
    bt_store_t *st;
    bt_pg_opts_t po;
    bt_err_t err;

    if (!opts || !opts->conninfo || !opts->cluster || !*opts->cluster ||
        !opts->node || !*opts->node)
        return BT_E_INVAL;
    if (!(st = calloc(1, sizeof *st)))
        return BT_E_NOMEM;
    st->cluster = strdup(opts->cluster);
    st->node = strdup(opts->node);
    if (!st->cluster || !st->node) {
        err = BT_E_NOMEM;
        goto err_free;
    }
    st->fence_grace_ms = opts->fence_grace_ms ? opts->fence_grace_ms : 2000;
    po = (bt_pg_opts_t){.lock_timeout_ms = opts->lock_timeout_ms,
                        .statement_timeout_ms = opts->statement_timeout_ms,
                        .idle_in_tx_timeout_ms = opts->idle_in_tx_timeout_ms,
                        .reply_timeout_ms = opts->reply_timeout_ms,
                        .application_name = opts->application_name};
    po.conninfo = opts->conninfo;
    po.stmts = store_stmts;
    po.nstmts = ST__COUNT;
    po.warm_sql = warm_sql;
    po.warm_params[0] = st->cluster;
    po.warm_params[1] = st->node;
    po.warm_nparams = 2;
    if ((err = bt_pg_new(loop, &po, &st->pg)) != BT_OK)
        goto err_free;
    if (!(st->batch = store_batch_new(st, loop))) {
        bt_pg_free(st->pg);
        err = BT_E_NOMEM;
        goto err_free;
    }
    *out = st;
    return BT_OK;

err_free:
    free(st->cluster);
    free(st->node);
    free(st);
    return err;
}

void bt_store_close(bt_store_t *st)
{
    if (!st)
        return;
    store_batch_free(st->batch);
    bt_pg_free(st->pg);
    free(st->cluster);
    free(st->node);
    free(st);
}

bt_pg_t *bt_store_pg(bt_store_t *st)
{
    return st->pg;
}

int bt_store_is_up(const bt_store_t *st)
{
    return st && bt_pg_is_up(st->pg);
}

unsigned bt_store_pending(const bt_store_t *st)
{
    return st ? bt_pg_pending(st->pg) : 0;
}

void bt_store_when_idle(bt_store_t *st, void (*cb)(void *arg), void *arg)
{
    bt_pg_when_idle(st->pg, cb, arg);
}

bt_err_t store_outcome_err(const char *v)
{
    if (!strcmp(v, "ok"))
        return BT_OK;
    if (!strcmp(v, "fenced"))
        return BT_E_FENCED;
    if (!strcmp(v, "conflict"))
        return BT_E_CONFLICT;
    if (!strcmp(v, "exists"))
        return BT_E_EXISTS;
    if (!strcmp(v, "stale"))
        return BT_E_STALE_EPOCH;
    return BT_E_PG;
}

void store_on_outcome(bt_err_t err, PGresult *res, const char *errmsg, void *arg)
{
    store_req_t *rq = arg;
    if (err == BT_OK) {
        if (PQntuples(res) != 1 || PQnfields(res) != 1) {
            err = BT_E_PG;
            errmsg = "unexpected result shape";
        } else {
            err = store_outcome_err(PQgetvalue(res, 0, 0));
            errmsg = NULL;
        }
    }
    rq->cb(err, errmsg, rq->arg);
    free(rq);
}

bt_err_t store_submit(bt_store_t *st, int stmt, const char *const *vals,
                      const int *lens, const int *fmts, int binary,
                      bt_pg_cb on_done, store_req_t *rq)
{
    bt_err_t err = bt_pg_exec(st->pg, stmt, vals, lens, fmts, binary, on_done, rq);
    if (err != BT_OK)
        free(rq);
    return err;
}

store_req_t *store_req_new(bt_store_cb cb, bt_store_task_cb task_cb, void *arg)
{
    store_req_t *rq = calloc(1, sizeof *rq);
    if (rq) {
        rq->cb = cb;
        rq->task_cb = task_cb;
        rq->arg = arg;
    }
    return rq;
}

bt_err_t bt_store_fence_acquire(bt_store_t *st, uint64_t epoch, const char *zone,
                                const char *reason, bt_store_cb cb, void *arg)
{
    char ep[24], grace[16];
    store_req_t *rq;
    if (!st || !cb || epoch == 0 || epoch > INT64_MAX)
        return BT_E_INVAL;
    if (!(rq = store_req_new(cb, NULL, arg)))
        return BT_E_NOMEM;
    snprintf(ep, sizeof ep, "%" PRIu64, epoch);
    snprintf(grace, sizeof grace, "%u", st->fence_grace_ms);
    const char *vals[6] = {st->cluster, ep, st->node, zone ? zone : "",
                           reason ? reason : "", grace};
    return store_submit(st, ST_FENCE_ACQUIRE, vals, NULL, NULL, 0, store_on_outcome, rq);
}

/* The statements whose parameters are (cluster, epoch[, node]). */
static bt_err_t epoch_call(bt_store_t *st, int stmt, uint64_t epoch, bt_store_cb cb, void *arg)
{
    char ep[24];
    store_req_t *rq;
    if (!st || !cb)
        return BT_E_INVAL;
    if (!(rq = store_req_new(cb, NULL, arg)))
        return BT_E_NOMEM;
    snprintf(ep, sizeof ep, "%" PRIu64, epoch);
    const char *vals[3] = {st->cluster, ep, st->node};
    return store_submit(st, stmt, vals, NULL, NULL, 0, store_on_outcome, rq);
}

bt_err_t bt_store_fence_check(bt_store_t *st, uint64_t epoch, bt_store_cb cb,
                              void *arg)
{
    return epoch_call(st, ST_FENCE_CHECK, epoch, cb, arg);
}

bt_err_t bt_store_leader_heartbeat(bt_store_t *st, uint64_t epoch, bt_store_cb cb,
                                   void *arg)
{
    return epoch_call(st, ST_HEARTBEAT, epoch, cb, arg);
}

bt_err_t bt_store_fence_release(bt_store_t *st, uint64_t epoch, bt_store_cb cb, void *arg)
{
    return epoch_call(st, ST_FENCE_RELEASE, epoch, cb, arg);
}

bt_err_t bt_store_event_note(bt_store_t *st, uint64_t epoch, const char *kind,
                             const char *detail_json, bt_store_cb cb, void *arg)
{
    char ep[24];
    store_req_t *rq;
    if (!st || !cb || !kind)
        return BT_E_INVAL;
    if (!(rq = store_req_new(cb, NULL, arg)))
        return BT_E_NOMEM;
    snprintf(ep, sizeof ep, "%" PRIu64, epoch);
    const char *vals[5] = {st->cluster, ep, st->node, kind, detail_json};
    return store_submit(st, ST_EVENT_NOTE, vals, NULL, NULL, 0, store_on_outcome, rq);
}

/* Packs a record after stamping the writer fields. Caller frees *out. */
static bt_err_t pack_run(bt_store_t *st, uint64_t epoch, bt_task_run_t *run,
                         uint8_t **out, size_t *len)
{
    /* writer_node is packed from our copy and then put back: the caller
     * owns the record (often an unpacked one whose strings it will free) */
    char *own = run->writer_node;
    run->writer_epoch = epoch;
    run->writer_node = st->node;
    *len = baton__v1__task_run__get_packed_size(run);
    /* +1: malloc(0) may return NULL for an all-default record */
    if ((*out = malloc(*len + 1)))
        baton__v1__task_run__pack(run, *out);
    run->writer_node = own;
    return *out ? BT_OK : BT_E_NOMEM;
}

static int run_valid(const bt_task_run_t *run)
{
    return run && run->run_key && *run->run_key && run->workflow_id &&
           run->run_id && run->task_id && run->attempt > 0 &&
           bt_task_state_name(run->state);
}

bt_err_t bt_store_task_create(bt_store_t *st, uint64_t epoch, bt_task_run_t *run,
                              bt_store_cb cb, void *arg)
{
    char ep[24], att[12], due[40];
    uint8_t *buf;
    size_t len;
    bt_err_t err;
    store_req_t *rq;

    if (!st || !cb || !run_valid(run))
        return BT_E_INVAL;
    if ((err = pack_run(st, epoch, run, &buf, &len)) != BT_OK)
        return err;
    if (!(rq = store_req_new(cb, NULL, arg))) {
        free(buf);
        return BT_E_NOMEM;
    }
    snprintf(ep, sizeof ep, "%" PRIu64, epoch);
    snprintf(att, sizeof att, "%u", run->attempt);
    if (run->due_ms)
        bt_ms_to_pg_time(run->due_ms, due);
    const char *vals[11] = {st->cluster, ep, st->node, run->run_key,
                            run->workflow_id, run->run_id, run->task_id, att,
                            bt_task_state_name(run->state),
                            run->due_ms ? due : NULL, (const char *)buf};
    int lens[11] = {0};
    int fmts[11] = {0};
    lens[10] = (int)len;
    fmts[10] = 1;
    err = store_submit(st, ST_TASK_CREATE, vals, lens, fmts, 0, store_on_outcome, rq);
    free(buf); /* libpq copied it into its output buffer */
    return err;
}

bt_err_t bt_store_task_transition(bt_store_t *st, uint64_t epoch,
                                  bt_task_state_t from, bt_task_run_t *run,
                                  bt_store_cb cb, void *arg)
{
    uint8_t *buf;
    size_t len;
    bt_err_t err;
    store_req_t *rq;
    const char *from_name = bt_task_state_name(from);

    if (!st || !cb || !run_valid(run) || !from_name)
        return BT_E_INVAL;
    if ((err = pack_run(st, epoch, run, &buf, &len)) != BT_OK)
        return err;
    if (!(rq = store_req_new(cb, NULL, arg))) {
        free(buf);
        return BT_E_NOMEM;
    }
    const char *errtext = (run->error && run->error->message && *run->error->message)
                              ? run->error->message
                              : NULL;
    err = store_batch_add(st->batch, epoch, run, from_name, errtext, buf, len, rq);
    if (err != BT_OK)
        free(rq);
    free(buf);
    return err;
}

/* The record must agree with the row it sits in: a record that decodes but
 * names another run is as corrupt as one that does not decode. */
static const char *record_mismatch(const bt_task_run_t *run, const char *key,
                                   const char *state)
{
    if (!run->run_key || strcmp(run->run_key, key))
        return "record's run_key differs from the row's";
    const char *name = bt_task_state_name(run->state);
    if (!name || strcmp(name, state))
        return "record's state differs from the row's";
    return NULL;
}

typedef struct get_req {
    store_req_t base;
    char *run_key;
} get_req_t;

static void on_task_get(bt_err_t err, PGresult *res, const char *errmsg, void *arg)
{
    get_req_t *g = arg;
    bt_task_run_t *run = NULL;
    const char *state = NULL;
    char statebuf[32] = "";
    const char *why = errmsg;

    if (err == BT_OK && PQntuples(res) == 0) {
        err = BT_E_NOTFOUND;
    } else if (err == BT_OK) {
        int slen = PQgetlength(res, 0, 0);
        if (slen <= 0 || (size_t)slen >= sizeof statebuf) {
            err = BT_E_CORRUPT;
            why = "state column out of range";
        } else {
            memcpy(statebuf, PQgetvalue(res, 0, 0), (size_t)slen);
            state = statebuf;
            run = baton__v1__task_run__unpack(NULL, (size_t)PQgetlength(res, 0, 1),
                                              (const uint8_t *)PQgetvalue(res, 0, 1));
            if (!run) {
                err = BT_E_CORRUPT;
                why = "record does not decode as baton.v1.TaskRun";
            } else if ((why = record_mismatch(run, g->run_key, state))) {
                baton__v1__task_run__free_unpacked(run, NULL);
                run = NULL;
                err = BT_E_CORRUPT;
            }
        }
        if (err == BT_E_CORRUPT)
            bt_warn("store: task run %s: %s", g->run_key, why);
    }
    g->base.task_cb(err, run, state, why, g->base.arg);
    free(g->run_key);
    free(g);
}

bt_err_t bt_store_task_get(bt_store_t *st, const char *run_key,
                           bt_store_task_cb cb, void *arg)
{
    get_req_t *g;
    bt_err_t err;
    if (!st || !run_key || !cb)
        return BT_E_INVAL;
    if (!(g = calloc(1, sizeof *g)) || !(g->run_key = strdup(run_key))) {
        free(g);
        return BT_E_NOMEM;
    }
    g->base.task_cb = cb;
    g->base.arg = arg;
    const char *vals[2] = {st->cluster, run_key};
    /* binary results: the record is raw bytes; state (text) arrives as-is */
    err = bt_pg_exec(st->pg, ST_TASK_GET, vals, NULL, NULL, 1, on_task_get, g);
    if (err != BT_OK) {
        free(g->run_key);
        free(g);
    }
    return err;
}

/* Splits "<wf>/<run>/<task>/<attempt>" in place. */
static int split_run_key(char *key, char **wf, char **run, char **task,
                         uint32_t *attempt)
{
    char *parts[4];
    char *save = NULL, *p = key;
    for (int i = 0; i < 4; i++, p = NULL) {
        if (!(parts[i] = strtok_r(p, "/", &save)))
            return -1;
    }
    if (strtok_r(NULL, "/", &save))
        return -1;
    char *end;
    unsigned long a = strtoul(parts[3], &end, 10);
    if (*end || a == 0 || a > UINT32_MAX)
        return -1;
    *wf = parts[0];
    *run = parts[1];
    *task = parts[2];
    *attempt = (uint32_t)a;
    return 0;
}

static void on_corrupt_event(bt_err_t err, const char *detail, void *arg)
{
    (void)arg;
    if (err != BT_OK)
        bt_warn("store: corrupt_record event not written: %s", detail ? detail : bt_strerror(err));
}

bt_err_t bt_store_task_fail_corrupt(bt_store_t *st, uint64_t epoch,
                                    const char *run_key, const char *state,
                                    const char *why, bt_store_cb cb, void *arg)
{
    bt_task_run_t run = BATON__V1__TASK_RUN__INIT;
    Baton__V1__TaskError error = BATON__V1__TASK_ERROR__INIT;
    bt_task_state_t from;
    char *copy, *wf, *rid, *task;
    bt_err_t err;

    if (!st || !run_key || !cb || bt_task_state_parse(state, &from) != BT_OK)
        return BT_E_INVAL;
    if (!(copy = strdup(run_key)))
        return BT_E_NOMEM;
    if (split_run_key(copy, &wf, &rid, &task, &run.attempt) < 0) {
        free(copy);
        return BT_E_INVAL;
    }
    error.code = "corrupt_record";
    error.message = (char *)(why ? why : "stored record is corrupt");
    error.at_ms = bt_now_ms();
    run.run_key = (char *)run_key;
    run.workflow_id = wf;
    run.run_id = rid;
    run.task_id = task;
    run.state = BATON__V1__TASK_STATE__TASK_STATE_FAILED;
    run.ended_ms = error.at_ms;
    run.error = &error;
    err = bt_store_task_transition(st, epoch, from, &run, cb, arg);
    if (err == BT_OK) {
        /* Same loop turn, so same transaction as the transition. */
        json_t *d = json_pack("{s:s, s:s}", "reason", error.message, "from_state", state);
        char *text = d ? json_dumps(d, JSON_COMPACT) : NULL;
        if (!text || bt_store_event(st, epoch, "corrupt_record", run_key, text,
                                    on_corrupt_event, NULL) != BT_OK)
            bt_warn("store: corrupt_record event not queued for %s", run_key);
        free(text);
        json_decref(d);
    }
    free(copy);
    return err;
}

bt_err_t bt_store_event(bt_store_t *st, uint64_t epoch, const char *kind,
                        const char *run_key, const char *detail_json,
                        bt_store_cb cb, void *arg)
{
    char ep[24];
    store_req_t *rq;
    if (!st || !kind || !cb)
        return BT_E_INVAL;
    if (!(rq = store_req_new(cb, NULL, arg)))
        return BT_E_NOMEM;
    snprintf(ep, sizeof ep, "%" PRIu64, epoch);
    const char *vals[6] = {st->cluster, ep, st->node, kind, run_key, detail_json};
    return store_submit(st, ST_EVENT, vals, NULL, NULL, 0, store_on_outcome, rq);
}
