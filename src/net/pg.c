/* libpq in pipeline mode on libev. See include/baton/pg.h for the contract.
 *
 * Every query handed to libpq is appended to one FIFO of requests; libpq
 * returns results in the same order, so the head of the FIFO is always the
 * request the next result belongs to. Sync points are requests of their own
 * (kind REQ_SYNC) because PostgreSQL answers them with a result too. */
#include "baton/pg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "baton/clock.h"
#include "baton/log.h"
#include "util/container.h"

enum { REQ_QUERY, REQ_SETUP, REQ_SYNC };

enum pg_state {
    PG_DOWN,       /* waiting for the reconnect timer */
    PG_CONNECTING, /* PQconnectPoll in progress */
    PG_SETUP,      /* session settings and prepares in flight */
    PG_UP,
};

typedef struct pg_req {
    struct pg_req *next;
    int kind;
    bt_pg_cb cb;
    void *arg;
    PGresult *res; /* the result we will report (first error wins) */
    int64_t sent_ms;
} pg_req_t;

struct bt_pg {
    struct ev_loop *loop;
    bt_pg_opts_t opts;
    char *conninfo;
    char *app_name;
    PGconn *conn;
    enum pg_state state;
    int poll_events;          /* EV_READ / EV_WRITE wanted by connect poll */
    int want_write;           /* output left in libpq's buffer */
    int64_t connect_started_ms;
    int64_t last_reply_ms;    /* monotonic: the server last sent a result */
    uint32_t backoff_ms;
    unsigned unsynced;        /* queries since the last sync */
    unsigned pending;         /* user queries awaiting results */
    void (*idle_cb)(void *);  /* one-shot: pending reached zero */
    void *idle_arg;
    pg_req_t *head, *tail;
    pg_req_t *cur;            /* first request still awaiting results */
    ev_io io;
    ev_timer retry_timer;
    ev_timer watchdog;
    ev_prepare prepare;
    ev_timer broken_timer;    /* defers failure handling out of bt_pg_exec */
    bt_pg_state_cb state_cb;
    void *state_arg;
    void (*hold_fn)(void *);  /* sends what a layer above held back */
    void *hold_arg;
    int in_hold;
    bt_pg_stats_t stats;
};

/* Lets the layer above send what it held back, ahead of whatever comes
 * next (bt_pg_set_hold). Not re-entered: its own queries pass straight. */
static void pg_release_held(bt_pg_t *pg)
{
    if (!pg->hold_fn || pg->in_hold)
        return;
    pg->in_hold = 1;
    pg->hold_fn(pg->hold_arg);
    pg->in_hold = 0;
}


static void pg_io_cb(struct ev_loop *loop, ev_io *w, int revents);

/* Tells a waiter (bt_pg_when_idle) that nothing is in flight any more. */
static void pg_maybe_idle(bt_pg_t *pg)
{
    if (pg->pending == 0 && pg->idle_cb) {
        void (*cb)(void *) = pg->idle_cb;
        pg->idle_cb = NULL;
        cb(pg->idle_arg);
    }
}
static void pg_start_connect(bt_pg_t *pg);

static void pg_set_io(bt_pg_t *pg, int events)
{
    int fd = pg->conn ? PQsocket(pg->conn) : -1;
    if (ev_is_active(&pg->io) && pg->io.fd == fd && (pg->io.events & (EV_READ | EV_WRITE)) == events)
        return;
    ev_io_stop(pg->loop, &pg->io);
    if (fd < 0 || !events)
        return;
    ev_io_set(&pg->io, fd, events);
    ev_io_start(pg->loop, &pg->io);
}

static void pg_push(bt_pg_t *pg, pg_req_t *r)
{
    r->next = NULL;
    r->sent_ms = bt_mono_ms();
    if (pg->tail)
        pg->tail->next = r;
    else
        pg->head = r;
    pg->tail = r;
    if (!pg->cur)
        pg->cur = r;
}

static pg_req_t *pg_pop(bt_pg_t *pg)
{
    pg_req_t *r = pg->head;
    if (r) {
        pg->head = r->next;
        if (!pg->head)
            pg->tail = NULL;
    }
    return r;
}

/* Sends what libpq has buffered; arms the write watcher if the socket is full. */
static int pg_flush(bt_pg_t *pg)
{
    int r = PQflush(pg->conn);
    if (r < 0)
        return -1;
    pg->want_write = (r == 1);
    pg_set_io(pg, EV_READ | (pg->want_write ? EV_WRITE : 0));
    return 0;
}

/* Connection lost or given up: every request still in the FIFO fails with
 * "outcome unknown", then we reconnect after a backoff. */
static void pg_conn_lost(bt_pg_t *pg, const char *why)
{
    int was_up = (pg->state == PG_UP);
    pg_req_t *list = pg->head;
    char reason[256];

    /* `why` often points into the connection's own error buffer, which
     * PQfinish frees below: copy it first. */
    snprintf(reason, sizeof reason, "%s", why ? why : "unknown");
    why = reason;
    bt_warn("pg: connection lost: %s", why);
    ev_io_stop(pg->loop, &pg->io);
    ev_prepare_stop(pg->loop, &pg->prepare);
    if (pg->conn) {
        PQfinish(pg->conn);
        pg->conn = NULL;
    }
    pg->head = pg->tail = pg->cur = NULL;
    pg->unsynced = 0;
    pg->pending = 0;
    pg->want_write = 0;
    pg->state = PG_DOWN;

    while (list) {
        pg_req_t *r = list;
        list = r->next;
        if (r->kind == REQ_QUERY)
            r->cb(BT_E_PG_CONN, NULL, why, r->arg);
        PQclear(r->res);
        free(r);
    }
    pg_maybe_idle(pg);
    if (was_up && pg->state_cb)
        pg->state_cb(pg, 0, pg->state_arg);
    pg_release_held(pg); /* fails what was held, now that we are down */

    /* A callback above may have freed nothing (not allowed) but may have
     * queued nothing either: we are down. Reconnect with backoff. */
    if (pg->state == PG_DOWN) {
        pg->backoff_ms = pg->backoff_ms ? pg->backoff_ms * 2 : 100;
        if (pg->backoff_ms > 5000)
            pg->backoff_ms = 5000;
        ev_timer_set(&pg->retry_timer, pg->backoff_ms / 1000.0, 0.);
        ev_timer_start(pg->loop, &pg->retry_timer);
        pg->stats.reconnects++;
    }
}

static void pg_sync(bt_pg_t *pg)
{
    pg_req_t *r = calloc(1, sizeof *r);
    if (!r || !PQpipelineSync(pg->conn)) {
        free(r);
        pg_conn_lost(pg, PQerrorMessage(pg->conn));
        return;
    }
    r->kind = REQ_SYNC;
    pg_push(pg, r);
    pg->unsynced = 0;
    pg->stats.syncs++;
    if (pg_flush(pg) < 0)
        pg_conn_lost(pg, PQerrorMessage(pg->conn));
}

static void pg_setup_done(bt_pg_t *pg)
{
    pg->state = PG_UP;
    pg->backoff_ms = 0;
    bt_debug("pg: connected, %d statements prepared", pg->opts.nstmts);
    if (pg->state_cb)
        pg->state_cb(pg, 1, pg->state_arg);
}

/* 1 when a query's own result is a success. */
static int pg_req_ok(const pg_req_t *r)
{
    ExecStatusType st = r->res ? PQresultStatus(r->res) : PGRES_FATAL_ERROR;
    return st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK;
}

/* The Sync of a batch came back: the batch's transaction has committed, or
 * rolled back if any statement failed. Only now may anyone be told that a
 * write happened: a statement's own result arrives before the commit, and
 * the commit can still fail (a later statement's error aborts the batch; a
 * terminated session never commits). Delivers head .. the sync request. */
static void pg_deliver_batch(bt_pg_t *pg)
{
    int failed = 0, setup_failed = 0;
    for (pg_req_t *r = pg->head; r && r->kind != REQ_SYNC; r = r->next)
        failed |= !pg_req_ok(r);

    for (;;) {
        pg_req_t *r = pg_pop(pg);
        if (r->kind == REQ_SYNC) {
            PQclear(r->res);
            free(r);
            break;
        }
        if (r->kind == REQ_QUERY) {
            bt_err_t err = BT_OK;
            const char *msg = NULL;
            if (!pg_req_ok(r)) {
                err = BT_E_PG;
                msg = r->res && PQresultStatus(r->res) == PGRES_PIPELINE_ABORTED
                          ? "rolled back: an earlier statement of the same batch failed"
                          : (r->res ? PQresultErrorMessage(r->res) : "no result");
            } else if (failed) {
                err = BT_E_PG;
                msg = "rolled back: another statement of the same batch failed";
            }
            pg->pending--;
            r->cb(err, err == BT_OK ? r->res : NULL, msg, r->arg);
        } else if (!pg_req_ok(r)) {
            bt_error("pg: session setup failed: %s",
                     r->res ? PQresultErrorMessage(r->res) : "no result");
            setup_failed = 1;
        }
        PQclear(r->res);
        free(r);
    }
    pg_maybe_idle(pg);
    if (setup_failed)
        pg_conn_lost(pg, "session setup failed");
    else if (pg->state == PG_SETUP && !pg->head)
        pg_setup_done(pg);
}

/* Reads every complete result libpq has and files it under its request.
 * pg->cur is the first request whose results are not complete yet. */
static void pg_drain_results(bt_pg_t *pg)
{
    while (pg->conn && pg->cur) {
        if (PQisBusy(pg->conn))
            return;
        PGresult *res = PQgetResult(pg->conn);
        pg_req_t *r = pg->cur;
        if (res)
            pg->last_reply_ms = bt_mono_ms();
        if (!res) {
            /* NULL ends one query's results. Nothing to end: wait. */
            if (r->kind == REQ_SYNC || !r->res)
                return;
            pg->cur = r->next;
            continue;
        }
        if (PQresultStatus(res) == PGRES_PIPELINE_SYNC) {
            if (r->kind != REQ_SYNC) {
                PQclear(res);
                pg_conn_lost(pg, "protocol: sync result out of order");
                return;
            }
            r->res = res;
            pg->cur = r->next;
            pg_deliver_batch(pg);
            continue;
        }
        if (r->kind == REQ_SYNC) {
            /* e.g. the server terminating our session: it is going away */
            char why[256];
            snprintf(why, sizeof why, "unexpected result: %s", PQresultErrorMessage(res));
            PQclear(res);
            pg_conn_lost(pg, why);
            return;
        }
        /* Keep the first result, unless a later one is an error. */
        if (!r->res) {
            r->res = res;
        } else if (PQresultStatus(res) == PGRES_FATAL_ERROR) {
            PQclear(r->res);
            r->res = res;
        } else {
            PQclear(res);
        }
    }
}

static void pg_on_connected(bt_pg_t *pg)
{
    char buf[160];
    const char *vals[3];
    char lt[16], st[16], it[16];
    pg_req_t *r;

    if (PQsetnonblocking(pg->conn, 1) != 0 || !PQenterPipelineMode(pg->conn)) {
        pg_conn_lost(pg, PQerrorMessage(pg->conn));
        return;
    }
    pg->state = PG_SETUP;
    snprintf(lt, sizeof lt, "%u", pg->opts.lock_timeout_ms);
    snprintf(st, sizeof st, "%u", pg->opts.statement_timeout_ms);
    snprintf(it, sizeof it, "%u", pg->opts.idle_in_tx_timeout_ms);
    vals[0] = lt;
    vals[1] = st;
    vals[2] = it;
    snprintf(buf, sizeof buf,
             "SELECT set_config('lock_timeout', $1, false), "
             "set_config('statement_timeout', $2, false), "
             "set_config('idle_in_transaction_session_timeout', $3, false)");
    if (!PQsendQueryParams(pg->conn, buf, 3, NULL, vals, NULL, NULL, 0))
        goto fail;
    if (!(r = calloc(1, sizeof *r)))
        goto fail;
    r->kind = REQ_SETUP;
    pg_push(pg, r);

    for (int i = 0; i < pg->opts.nstmts; i++) {
        const bt_pg_stmt_t *s = &pg->opts.stmts[i];
        if (!PQsendPrepare(pg->conn, s->name, s->sql, s->nparams, NULL))
            goto fail;
        if (!(r = calloc(1, sizeof *r)))
            goto fail;
        r->kind = REQ_SETUP;
        pg_push(pg, r);
    }
    if (pg->opts.warm_sql) {
        if (!PQsendQueryParams(pg->conn, pg->opts.warm_sql, pg->opts.warm_nparams, NULL,
                               pg->opts.warm_params, NULL, NULL, 0))
            goto fail;
        if (!(r = calloc(1, sizeof *r)))
            goto fail;
        r->kind = REQ_SETUP;
        pg_push(pg, r);
    }
    pg_sync(pg);
    return;
fail:
    pg_conn_lost(pg, PQerrorMessage(pg->conn));
}

static void pg_connect_step(bt_pg_t *pg)
{
    switch (PQconnectPoll(pg->conn)) {
    case PGRES_POLLING_READING:
        pg_set_io(pg, EV_READ);
        break;
    case PGRES_POLLING_WRITING:
        pg_set_io(pg, EV_WRITE);
        break;
    case PGRES_POLLING_OK:
        pg_set_io(pg, EV_READ);
        pg_on_connected(pg);
        break;
    default:
        pg_conn_lost(pg, PQerrorMessage(pg->conn));
        break;
    }
}

static void pg_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    bt_pg_t *pg = container_of(w, bt_pg_t, io);
    (void)loop;

    if (pg->state == PG_CONNECTING) {
        pg_connect_step(pg);
        return;
    }
    if ((revents & EV_WRITE) && pg_flush(pg) < 0) {
        pg_conn_lost(pg, PQerrorMessage(pg->conn));
        return;
    }
    if (revents & EV_READ) {
        if (!PQconsumeInput(pg->conn)) {
            pg_conn_lost(pg, PQerrorMessage(pg->conn));
            return;
        }
        pg_drain_results(pg);
    }
}

static void pg_start_connect(bt_pg_t *pg)
{
    const char *keys[] = {"dbname", "application_name", NULL};
    const char *vals[] = {pg->conninfo, pg->app_name, NULL};

    pg->conn = PQconnectStartParams(keys, vals, 1);
    pg->connect_started_ms = bt_mono_ms();
    if (!pg->conn || PQstatus(pg->conn) == CONNECTION_BAD) {
        pg->state = PG_CONNECTING; /* so conn_lost schedules a retry */
        pg_conn_lost(pg, pg->conn ? PQerrorMessage(pg->conn) : "out of memory");
        return;
    }
    pg->state = PG_CONNECTING;
    pg_set_io(pg, EV_WRITE);
}

static void pg_retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    bt_pg_t *pg = container_of(w, bt_pg_t, retry_timer);
    (void)loop;
    (void)revents;
    pg_start_connect(pg);
}

/* Runs just before the loop blocks: closes this turn's batch with a sync. */
static void pg_prepare_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
    bt_pg_t *pg = container_of(w, bt_pg_t, prepare);
    (void)loop;
    (void)revents;
    pg_release_held(pg);
    if (pg->state == PG_UP && pg->unsynced)
        pg_sync(pg);
}

/* A server that stopped answering (SIGSTOP, partition) never closes the
 * socket; without this the requests would wait for TCP keepalives. Silence
 * is what counts, not the age of the oldest request: a deep pipeline (a
 * burst of thousands of transitions) keeps its tail waiting longer than
 * the timeout while the server answers all along. A statement the server
 * sits on is statement_timeout's to end. */
static void pg_watchdog_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    bt_pg_t *pg = container_of(w, bt_pg_t, watchdog);
    int64_t now = bt_mono_ms();
    (void)loop;
    (void)revents;

    if (pg->state == PG_CONNECTING &&
        now - pg->connect_started_ms > (int64_t)pg->opts.reply_timeout_ms)
        pg_conn_lost(pg, "connect timed out");
    else if (pg->head && now - (pg->head->sent_ms > pg->last_reply_ms ? pg->head->sent_ms
                                                                      : pg->last_reply_ms) >
                             (int64_t)pg->opts.reply_timeout_ms)
        pg_conn_lost(pg, "no reply from server within the reply timeout");
}

static void pg_broken_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    bt_pg_t *pg = container_of(w, bt_pg_t, broken_timer);
    (void)loop;
    (void)revents;
    if (pg->state == PG_UP || pg->state == PG_SETUP)
        pg_conn_lost(pg, pg->conn ? PQerrorMessage(pg->conn) : "send failed");
}

bt_err_t bt_pg_new(struct ev_loop *loop, const bt_pg_opts_t *opts, bt_pg_t **out)
{
    bt_pg_t *pg;

    if (!loop || !opts || !opts->conninfo || !out)
        return BT_E_INVAL;
    if (!(pg = calloc(1, sizeof *pg)))
        return BT_E_NOMEM;
    pg->loop = loop;
    pg->opts = *opts;
    pg->conninfo = strdup(opts->conninfo);
    pg->app_name = strdup(opts->application_name ? opts->application_name : "baton");
    if (!pg->conninfo || !pg->app_name) {
        free(pg->conninfo);
        free(pg->app_name);
        free(pg);
        return BT_E_NOMEM;
    }
    if (!pg->opts.lock_timeout_ms)
        pg->opts.lock_timeout_ms = 2000;
    if (!pg->opts.statement_timeout_ms)
        pg->opts.statement_timeout_ms = 10000;
    if (!pg->opts.idle_in_tx_timeout_ms)
        pg->opts.idle_in_tx_timeout_ms = 5000;
    if (!pg->opts.reply_timeout_ms)
        pg->opts.reply_timeout_ms = 15000;
    if (!pg->opts.max_batch)
        pg->opts.max_batch = 512;

    ev_init(&pg->io, pg_io_cb);
    ev_set_priority(&pg->io, pg->opts.io_priority);
    ev_init(&pg->retry_timer, pg_retry_cb);
    ev_init(&pg->broken_timer, pg_broken_cb);
    ev_prepare_init(&pg->prepare, pg_prepare_cb);
    double tick = pg->opts.reply_timeout_ms / 4000.0;
    ev_timer_init(&pg->watchdog, pg_watchdog_cb, tick, tick);
    ev_timer_start(loop, &pg->watchdog);
    /* The watchdog alone must not keep a loop alive that has nothing else. */
    ev_unref(loop);
    pg->state = PG_DOWN;
    pg_start_connect(pg);
    *out = pg;
    return BT_OK;
}

void bt_pg_free(bt_pg_t *pg)
{
    pg_req_t *list;
    if (!pg)
        return;
    ev_io_stop(pg->loop, &pg->io);
    ev_timer_stop(pg->loop, &pg->retry_timer);
    ev_timer_stop(pg->loop, &pg->broken_timer);
    ev_prepare_stop(pg->loop, &pg->prepare);
    ev_ref(pg->loop);
    ev_timer_stop(pg->loop, &pg->watchdog);
    list = pg->head;
    pg->head = pg->tail = pg->cur = NULL;
    while (list) {
        pg_req_t *r = list;
        list = r->next;
        if (r->kind == REQ_QUERY)
            r->cb(BT_E_CANCELLED, NULL, "handle closed", r->arg);
        PQclear(r->res);
        free(r);
    }
    if (pg->conn)
        PQfinish(pg->conn);
    free(pg->conninfo);
    free(pg->app_name);
    free(pg);
}

void bt_pg_on_state(bt_pg_t *pg, bt_pg_state_cb cb, void *arg)
{
    pg->state_cb = cb;
    pg->state_arg = arg;
}

int bt_pg_is_up(const bt_pg_t *pg)
{
    return pg && pg->state == PG_UP;
}

void bt_pg_set_hold(bt_pg_t *pg, void (*fn)(void *arg), void *arg)
{
    pg->hold_fn = fn;
    pg->hold_arg = arg;
}

void bt_pg_holding(bt_pg_t *pg)
{
    if (!ev_is_active(&pg->prepare))
        ev_prepare_start(pg->loop, &pg->prepare);
}

void bt_pg_when_idle(bt_pg_t *pg, void (*cb)(void *arg), void *arg)
{
    pg->idle_cb = cb;
    pg->idle_arg = arg;
}

unsigned bt_pg_pending(const bt_pg_t *pg)
{
    return pg ? pg->pending : 0;
}

void bt_pg_get_stats(const bt_pg_t *pg, bt_pg_stats_t *out)
{
    *out = pg->stats;
}

static bt_err_t pg_enqueue(bt_pg_t *pg, int ok, bt_pg_cb cb, void *arg)
{
    pg_req_t *r;
    if (!ok) {
        /* libpq could not take it: the connection is broken. Fail the rest
         * from the loop, not from inside the caller's call. */
        ev_timer_set(&pg->broken_timer, 0., 0.);
        ev_timer_start(pg->loop, &pg->broken_timer);
        return BT_E_PG_CONN;
    }
    if (!(r = calloc(1, sizeof *r))) {
        /* The query is already in libpq's buffer and its result must be
         * consumed by someone: drop the connection instead of desyncing. */
        ev_timer_set(&pg->broken_timer, 0., 0.);
        ev_timer_start(pg->loop, &pg->broken_timer);
        return BT_E_NOMEM;
    }
    r->kind = REQ_QUERY;
    r->cb = cb;
    r->arg = arg;
    pg_push(pg, r);
    pg->pending++;
    pg->stats.queries++;
    if (++pg->unsynced >= pg->opts.max_batch) {
        pg_sync(pg);
    } else {
        if (!ev_is_active(&pg->prepare))
            ev_prepare_start(pg->loop, &pg->prepare);
        if (pg_flush(pg) < 0) {
            ev_timer_set(&pg->broken_timer, 0., 0.);
            ev_timer_start(pg->loop, &pg->broken_timer);
        }
    }
    return BT_OK;
}

bt_err_t bt_pg_exec(bt_pg_t *pg, int stmt, const char *const *values,
                    const int *lengths, const int *formats, int binary_result,
                    bt_pg_cb cb, void *arg)
{
    if (!pg || !cb || stmt < 0 || stmt >= pg->opts.nstmts)
        return BT_E_INVAL;
    pg_release_held(pg);
    if (pg->state != PG_UP)
        return BT_E_PG_CONN;
    const bt_pg_stmt_t *s = &pg->opts.stmts[stmt];
    int ok = PQsendQueryPrepared(pg->conn, s->name, s->nparams, values, lengths,
                                 formats, binary_result ? 1 : 0);
    return pg_enqueue(pg, ok, cb, arg);
}

bt_err_t bt_pg_query(bt_pg_t *pg, const char *sql, int nparams,
                     const char *const *values, const int *lengths,
                     const int *formats, int binary_result, bt_pg_cb cb,
                     void *arg)
{
    if (!pg || !cb || !sql)
        return BT_E_INVAL;
    pg_release_held(pg);
    if (pg->state != PG_UP)
        return BT_E_PG_CONN;
    int ok = PQsendQueryParams(pg->conn, sql, nparams, NULL, values, lengths,
                               formats, binary_result ? 1 : 0);
    return pg_enqueue(pg, ok, cb, arg);
}
