/* The leader process's liveness, for a takeover faster than the session
 * timeout (coordination.fast_takeover; docs/failover.md, "Fast takeover").
 *
 * The leader holds a PostgreSQL session-level advisory lock on a connection
 * of its own. When its process dies (crash, kill -9, OOM kill) its kernel
 * closes that socket at once, the backend ends, and PostgreSQL releases the
 * lock. The first standby in line waits for the lock (pg_advisory_lock,
 * re-issued every second under lock_timeout, never blocking our loop): a
 * wait that is granted after the lock was seen held means the holder let go.
 * If the `leader` znode is then still another session's, that leader's
 * process is gone while ZooKeeper still keeps its session: the standby
 * deletes its `leader` znode and its candidate, and claims (the fence bump
 * refuses whatever the old epoch might still write). A host crash or a
 * partition closes no socket: the lock stays held and the session timeout
 * decides, as before.
 *
 * The same signal can come from a live leader whose lock connection broke
 * (a network blip, its backend terminated): a false takeover. Such a leader
 * loses its right to send the moment the connection drops (bt_coord_may_
 * dispatch is false while `lost`), pauses, and resumes only if it gets the
 * lock back and its `leader` znode is still its own; otherwise it steps
 * down, counts it and says so in an event. A standby that finds the lock
 * free (nobody holds it: a leader reconnecting, after a PostgreSQL restart)
 * lets go at once and looks again later: only a release it saw happen
 * counts. A new leader that cannot get the lock (a deposed leader's backend
 * still holds it, or a host that vanished left it to TCP keepalives)
 * dispatches anyway, fenced, and ends that backend. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "baton/clock.h"
#include "baton/log.h"
#include "baton/pg.h"
#include "coord/coord_int.h"
#include "util/container.h"

enum { LS_NAME, LS_TRY, LS_WAIT, LS_UNLOCK, LS_PING, LS_END_HOLDER, LS__COUNT };

/* The lock's row in pg_locks: a bigint key is (classid, objid) = (high,
 * low) 32 bits, objsubid 1. */
#define HOLDER_OF_KEY                                                                            \
    "l.locktype = 'advisory' AND l.classid = $2::oid AND l.objid = $3::oid "                    \
    "AND l.objsubid = 1 AND l.granted AND l.pid <> pg_backend_pid()"

static const bt_pg_stmt_t live_stmts[LS__COUNT] = {
    /* our backend's name carries our ZooKeeper session: a standby that sees
     * the lock held knows whose `leader` znode a release speaks for */
    [LS_NAME] = {"bt_live_name", "SELECT set_config('application_name', $1, false)", 1},
    /* the try, and who holds it when it is not us */
    [LS_TRY] = {"bt_live_try",
                "SELECT pg_try_advisory_lock($1::bigint), (SELECT a.application_name "
                "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid WHERE " HOLDER_OF_KEY
                " LIMIT 1)",
                3},
    [LS_WAIT] = {"bt_live_wait", "SELECT pg_advisory_lock($1::bigint)", 1},
    [LS_UNLOCK] = {"bt_live_unlock", "SELECT pg_advisory_unlock($1::bigint)", 1},
    /* the leader's lease on the lock: its backend is still there */
    [LS_PING] = {"bt_live_ping", "SELECT 1", 0},
    /* the backend that holds our lock while we lead: a deposed leader's */
    [LS_END_HOLDER] = {"bt_live_end_holder",
                       "SELECT count(pg_terminate_backend(l.pid)) FROM pg_locks l WHERE "
                       "$1::bigint IS NOT NULL AND " HOLDER_OF_KEY,
                       3},
};

/* A blocking wait gives up after this, and is asked again: a standby that
 * stopped being first in line lets go within it. */
#define WAIT_SLICE_MS 1000
/* Our lock connection's application_name: the prefix and the node; as
 * leader, the prefix, 0x<ZooKeeper session>, ':' and the node. */
#define LIVE_NAME_PREFIX "batond-liveness:"

/* How soon to ask again after finding the lock free or out of reach. */
#define RETRY_S 0.2
/* The leader asks its lock's backend this often; an answer renews the lease
 * (BT_COORD_LIVE_LEASE_MS) from the moment the question was sent. */
#define PING_S 0.4

/* The coordinator of a callback, or NULL while the connection is being
 * freed (its callbacks then only have to let go). */
static bt_coord_t *of(void *arg)
{
    bt_coord_t *co = arg;
    return co->live.closing ? NULL : co;
}

/* What this node should do with the lock now. */
static int wanted(const bt_coord_t *co)
{
    if (!co->opts.fast_takeover)
        return LIVE_NONE;
    /* a handoff (an exit's too) keeps the lock until its znodes are gone: a
     * standby must not take the release for a death while we still finish
     * our calls; but a node stepping down never takes it */
    if (co->role == BT_ROLE_STEPPING_DOWN && co->live.held)
        return LIVE_HOLD;
    if (co->leaving)
        return LIVE_NONE;
    if (co->role == BT_ROLE_LEADING || co->role == BT_ROLE_SUSPENDED ||
        co->role == BT_ROLE_CLAIMING)
        return LIVE_HOLD;
    if (co->role == BT_ROLE_STANDBY && co->pred_first[0] && co->setup_done && !co->requeuing)
        return LIVE_WATCH;
    return LIVE_NONE;
}

static void live_next(bt_coord_t *co);

/* The coordinator of an answer (NULL while closing), its request done. */
static bt_coord_t *answered(void *arg)
{
    bt_coord_t *co = of(arg);
    if (co)
        co->live.inflight = 0;
    return co;
}

/* Sends one of the statements with the lock's key (and its pg_locks halves
 * for those that take three parameters). */
static void send_key(bt_coord_t *co, int stmt, bt_pg_cb cb)
{
    char key[24], hi[16], lo[16];
    snprintf(key, sizeof key, "%" PRId64, co->live.key);
    snprintf(hi, sizeof hi, "%u", (unsigned)((uint64_t)co->live.key >> 32));
    snprintf(lo, sizeof lo, "%u", (unsigned)((uint64_t)co->live.key & 0xffffffffu));
    const char *vals[3] = {key, hi, lo};
    co->live.sent_ms = bt_mono_ms();
    if (bt_pg_exec(co->live.pg, stmt, vals, NULL, NULL, 0, cb, co) == BT_OK)
        co->live.inflight = stmt + 1;
}

/* The ZooKeeper session a holder's application_name names, or 0. */
static int64_t holder_session(PGresult *res)
{
    if (!res || PQntuples(res) != 1 || PQnfields(res) < 2 || PQgetisnull(res, 0, 1))
        return 0;
    const char *name = PQgetvalue(res, 0, 1);
    if (strncmp(name, LIVE_NAME_PREFIX "0x", sizeof LIVE_NAME_PREFIX + 1))
        return 0;
    return (int64_t)strtoull(name + sizeof LIVE_NAME_PREFIX + 1, NULL, 16);
}

static void retry_later(bt_coord_t *co, double s)
{
    ev_timer_stop(co->loop, &co->live.retry);
    ev_timer_set(&co->live.retry, s, 0.);
    ev_timer_start(co->loop, &co->live.retry);
}

static int first_bool(PGresult *res)
{
    return res && PQntuples(res) == 1 && PQgetvalue(res, 0, 0)[0] == 't';
}

static void on_unlocked(bt_err_t err, PGresult *res, const char *errmsg, void *arg)
{
    bt_coord_t *co = answered(arg);
    (void)err;
    (void)res;
    (void)errmsg;
    if (!co)
        return;
    live_next(co);
}

static void unlock(bt_coord_t *co)
{
    co->live.held = 0;
    co->live.seen_held = 0;
    send_key(co, LS_UNLOCK, on_unlocked);
}

static void on_named(bt_err_t err, PGresult *res, const char *errmsg, void *arg)
{
    bt_coord_t *co = answered(arg);
    (void)res;
    (void)errmsg;
    if (!co)
        return;
    if (err == BT_OK)
        co->live.named_session = co->live.naming_session;
    else
        retry_later(co, RETRY_S);
    live_next(co);
}

static void on_holder_ended(bt_err_t err, PGresult *res, const char *errmsg, void *arg)
{
    bt_coord_t *co = answered(arg);
    (void)errmsg;
    if (!co)
        return;
    if (err == BT_OK && res && PQntuples(res) == 1 && atoi(PQgetvalue(res, 0, 0)) > 0)
        bt_warn("coord: ended the backend of a deposed leader that still held the liveness "
                "lock");
    retry_later(co, RETRY_S);
}

/* The answer to a try (leader or standby). */
static void on_try(bt_err_t err, PGresult *res, const char *errmsg, void *arg)
{
    bt_coord_t *co = answered(arg);
    (void)errmsg;
    if (!co)
        return;
    int got = err == BT_OK && first_bool(res);
    if (err != BT_OK) {
        retry_later(co, RETRY_S);
        return;
    }
    int want = wanted(co);
    if (got && want == LIVE_HOLD) {
        co->live.held = 1;
        co->live.lease_from_ms = co->live.sent_ms;
        bt_debug("coord: holding the liveness lock");
        if (co->live.lost)
            co_live_regained(co);
        live_next(co);
        return;
    }
    if (got && want == LIVE_WATCH && co->live.seen_held) {
        /* a recheck between two waits: released since we saw it held */
        co->live.held = 1;
        co->live.seen_held = 0;
        co_take_over_early(co);
        return;
    }
    if (got) {
        /* free: nobody holds it (a leader reconnecting, or none yet); it is
         * not ours to keep, and a release we did not see proves nothing */
        unlock(co);
        retry_later(co, RETRY_S * 2.5);
        return;
    }
    if (want == LIVE_HOLD) {
        if (co->live.lost) {
            /* we held it, lost its connection, and now another holds it:
             * a standby is taking over, unless `leader` is still ours (a
             * grant it is about to give back); ask again meanwhile */
            retry_later(co, RETRY_S);
            co_live_taken_over(co);
            return;
        }
        if (co->role == BT_ROLE_LEADING && co->fence_committed) {
            /* we lead (fenced): the holder is a deposed leader's backend
             * (a paused or cut-off process); until it ends we cannot hold
             * the lock, and our own crash would cost a session timeout */
            send_key(co, LS_END_HOLDER, on_holder_ended);
            if (co->live.inflight)
                return;
        }
        retry_later(co, RETRY_S);
        return;
    }
    if (want == LIVE_WATCH) {
        /* held: wait for it to let go. Only a holder that names a ZooKeeper
         * session can be taken over from (its `leader` znode must be that
         * session's); an old batond's, or a stranger's, is waited out. */
        co->live.holder_session = holder_session(res);
        if (co->live.holder_session) {
            co->live.seen_held = 1;
            live_next(co);
        } else {
            retry_later(co, RETRY_S * 5);
        }
        return;
    }
    live_next(co);
}

/* The answer to a blocking wait (standby). */
static void on_wait(bt_err_t err, PGresult *res, const char *errmsg, void *arg)
{
    bt_coord_t *co = answered(arg);
    (void)res;
    (void)errmsg;
    if (!co)
        return;
    if (err != BT_OK) {
        /* lock_timeout (still held): a try says who holds it now, then we
         * wait again; the connection: start over */
        if (err == BT_E_PG_CONN)
            co->live.seen_held = 0;
        co->live.recheck = 1;
        live_next(co);
        return;
    }
    co->live.held = 1;
    if (wanted(co) == LIVE_HOLD) { /* we lead by now: the lock is ours to keep */
        co->live.lease_from_ms = co->live.sent_ms;
        live_next(co);
        return;
    }
    if (wanted(co) == LIVE_WATCH && co->live.seen_held) {
        co->live.seen_held = 0;
        co_take_over_early(co);
        return;
    }
    unlock(co);
}

/* Names our backend: with our ZooKeeper session while we hold the lock as
 * leader (only such a holder can be taken over from), plainly otherwise.
 * PostgreSQL cuts names at 63 bytes: the session comes first. */
static void send_name(bt_coord_t *co, int64_t session)
{
    char name[sizeof co->live.app_name + 24];
    if (session)
        snprintf(name, sizeof name, LIVE_NAME_PREFIX "0x%016llx:%s", (unsigned long long)session,
                 co->node);
    else
        snprintf(name, sizeof name, "%s", co->live.app_name);
    co->live.naming_session = session;
    const char *vals[1] = {name};
    if (bt_pg_exec(co->live.pg, LS_NAME, vals, NULL, NULL, 0, on_named, co) == BT_OK)
        co->live.inflight = LS_NAME + 1;
}

/* Does what wanted() says, one request at a time. */
static void live_next(bt_coord_t *co)
{
    if (!co->live.pg || co->live.inflight || !co->live.up || ev_is_active(&co->live.retry))
        return;
    switch (wanted(co)) {
    case LIVE_HOLD:
        if (co->live.named_session != bt_zk_session_id(co->zk)) {
            send_name(co, bt_zk_session_id(co->zk)); /* the session first */
            return;
        }
        if (!co->live.held)
            send_key(co, LS_TRY, on_try);
        return;
    case LIVE_WATCH:
        if (co->live.held)
            unlock(co); /* held from a grant nobody used: let go first */
        else if (co->live.named_session)
            /* a watcher's try holds the lock for a moment: under a name
             * left from our leadership, the next standby would take that
             * moment's end for our death while we lead (a handoff to us) */
            send_name(co, 0);
        else if (co->live.seen_held && !co->live.recheck)
            send_key(co, LS_WAIT, on_wait);
        else {
            co->live.recheck = 0;
            send_key(co, LS_TRY, on_try);
        }
        return;
    default:
        if (co->live.held)
            unlock(co);
        return;
    }
}

static void on_pong(bt_err_t err, PGresult *res, const char *errmsg, void *arg)
{
    bt_coord_t *co = answered(arg);
    (void)res;
    (void)errmsg;
    if (!co)
        return;
    if (err == BT_OK && co->live.held) {
        co->live.lease_from_ms = co->live.sent_ms; /* the backend, and so the lock, was there */
        if (co->live.lost)
            co_live_regained(co);
    }
    live_next(co);
}

/* While leading with the lock: renew the lease (an error or a silence of
 * the connection ends it: bt_pg reports the loss, co_live_check the lapse). */
static void on_ping(struct ev_loop *loop, ev_timer *w, int revents)
{
    bt_coord_t *co = container_of(w, bt_coord_t, live.ping);
    (void)loop;
    (void)revents;
    if (co->live.held && co->live.up && !co->live.inflight && wanted(co) == LIVE_HOLD)
        send_key(co, LS_PING, on_pong);
    co_live_check(co);
}

static void on_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
    bt_coord_t *co = container_of(w, bt_coord_t, live.retry);
    (void)loop;
    (void)revents;
    live_next(co);
}

static void on_state(bt_pg_t *pg, int up, void *arg)
{
    bt_coord_t *co = of(arg);
    (void)pg;
    if (!co)
        return;
    co->live.up = up;
    co->live.inflight = 0; /* every query of a lost connection is answered with the loss */
    co->live.named_session = 0; /* a new backend has the conninfo's name */
    if (up) {
        live_next(co);
        return;
    }
    co->live.seen_held = 0;
    if (co->live.held && wanted(co) == LIVE_HOLD) {
        /* PostgreSQL releases the lock as the backend ends: a standby may
         * take over now, so we may not send another byte */
        co->live.held = 0;
        co->live.lost = 1;
        bt_warn("coord: the liveness lock's connection broke: a standby may take over; "
                "sending nothing until it is ours again");
        co_live_lost(co);
        return;
    }
    co->live.held = 0;
}

void co_live_update(bt_coord_t *co)
{
    int want = wanted(co);
    if (want != LIVE_HOLD)
        co->live.lost = co->live.checking = 0; /* a new leadership starts clean */
    if (want != LIVE_WATCH)
        co->live.seen_held = 0; /* a new place in line looks afresh */
    live_next(co);
}

int co_live_may_send(const bt_coord_t *co)
{
    if (co->live.lost)
        return 0;
    /* a leader that never got the lock cannot be taken over early: only the
     * session timeout ends it, as without fast takeover */
    return !co->live.held || bt_mono_ms() - co->live.lease_from_ms < BT_COORD_LIVE_LEASE_MS;
}

void co_live_check(bt_coord_t *co)
{
    if (co->role != BT_ROLE_LEADING || co->live.lost || co_live_may_send(co))
        return;
    /* the backend has not answered for a lease: it may be gone (a
     * partition, PostgreSQL ending it) and its lock a standby's by now */
    co->live.lost = 1;
    bt_warn("coord: the liveness lock's backend last answered %" PRId64
            " ms ago: a standby may take over; sending nothing until it answers",
            bt_mono_ms() - co->live.lease_from_ms);
    co_live_lost(co);
}

bt_err_t co_live_start(bt_coord_t *co)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a 64 of the cluster: its lock's key */
    ev_init(&co->live.retry, on_retry);
    ev_timer_init(&co->live.ping, on_ping, PING_S, PING_S);
    if (!co->opts.fast_takeover)
        return BT_OK;
    if (!co->opts.pg_conninfo) {
        bt_error("coord: fast takeover needs the PostgreSQL conninfo");
        return BT_E_CONFIG;
    }
    for (const char *p = "baton-leader:"; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    for (const unsigned char *p = (const unsigned char *)co->cluster; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    co->live.key = (int64_t)h;
    snprintf(co->live.app_name, sizeof co->live.app_name, LIVE_NAME_PREFIX "%s", co->node);
    bt_pg_opts_t po = {.conninfo = co->opts.pg_conninfo,
                       .stmts = live_stmts,
                       .nstmts = LS__COUNT,
                       .lock_timeout_ms = WAIT_SLICE_MS,
                       .reply_timeout_ms = 5000,
                       .application_name = co->live.app_name,
                       /* its loss is read before curl's sockets, in the same
                       * turn: after a pause, before any byte more is sent */
                       .io_priority = EV_MAXPRI - 1};
    bt_err_t e = bt_pg_new(co->loop, &po, &co->live.pg);
    if (e != BT_OK)
        return e;
    bt_pg_on_state(co->live.pg, on_state, co);
    ev_timer_start(co->loop, &co->live.ping);
    ev_unref(co->loop); /* the ping timer alone keeps no loop running */
    return BT_OK;
}

void co_live_free(bt_coord_t *co)
{
    co->live.closing = 1;
    if (co->live.pg) {
        bt_pg_on_state(co->live.pg, NULL, NULL);
        bt_pg_free(co->live.pg); /* ends the session: the lock goes with it */
        co->live.pg = NULL;
    }
    ev_timer_stop(co->loop, &co->live.retry);
    if (ev_is_active(&co->live.ping)) {
        ev_ref(co->loop);
        ev_timer_stop(co->loop, &co->live.ping);
    }
}


