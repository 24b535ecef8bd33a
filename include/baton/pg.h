/* Asynchronous PostgreSQL on the libev loop: one connection in libpq's
 * non-blocking pipeline mode.
 *
 * Contract
 *  - Nothing here blocks on the server. The connection is made with
 *    PQconnectStartParams/PQconnectPoll, queries are sent with
 *    PQsendQueryPrepared/PQsendQueryParams and read as the socket becomes
 *    readable.
 *  - Queries issued during one loop turn are sent back to back and closed
 *    with one pipeline sync when the loop is about to block (an ev_prepare
 *    watcher), or earlier when `max_batch` queries are waiting. Everything
 *    between two syncs is one implicit transaction: one commit for the whole
 *    turn. Callbacks run only once the batch's sync has come back, i.e. after
 *    the commit: a statement's own result arrives before it, and a write
 *    reported before its commit could still be rolled back. If one statement
 *    of a batch fails, the whole batch rolls back and every callback of it
 *    gets BT_E_PG. Statements meant to be batched should therefore report
 *    expected outcomes as values, not exceptions.
 *  - Every accepted query gets exactly one callback, later, from the loop
 *    (never from inside bt_pg_query: libuv's rule). A query that cannot be
 *    accepted returns an error and gets no callback.
 *  - When the connection breaks, or a reply takes longer than
 *    `reply_timeout_ms` (a stopped or partitioned server), every pending
 *    query fails with BT_E_PG_CONN: the outcome of a write is then unknown,
 *    and callers must reconcile (our writes are compare-and-set, so a retry
 *    is safe). The handle reconnects by itself with backoff.
 *  - Session settings: lock_timeout, statement_timeout and
 *    idle_in_transaction_session_timeout are set at connect, so a paused
 *    peer holding a transaction cannot stall others for long.
 */
#ifndef BATON_PG_H
#define BATON_PG_H

#include <ev.h>
#include <libpq-fe.h>
#include <stdint.h>

#include "baton/err.h"

typedef struct bt_pg bt_pg_t;

/* A statement prepared on every (re)connect, then used by index. */
typedef struct bt_pg_stmt {
    const char *name;
    const char *sql;
    int nparams;
} bt_pg_stmt_t;

typedef struct bt_pg_opts {
    const char *conninfo;           /* libpq connection string or URI */
    const bt_pg_stmt_t *stmts;      /* may be NULL; must outlive the handle */
    int nstmts;
    uint32_t lock_timeout_ms;       /* default 2000 */
    uint32_t statement_timeout_ms;  /* default 10000 */
    uint32_t idle_in_tx_timeout_ms; /* default 5000 */
    uint32_t reply_timeout_ms;      /* default 15000; 0 = default */
    uint32_t max_batch;             /* queries per sync; default 512 */
    const char *application_name;   /* default "baton" */
    /* The socket watcher's libev priority (default 0). A connection whose
     * loss must be noticed before other I/O of the same loop turn (the
     * liveness lock's: coord/liveness.c) sets it higher. */
    int io_priority;
    /* Optional: one query sent with every session's setup (after the
     * prepares, before the handle is up), with up to two text parameters;
     * its result is ignored unless it fails. For what a session should do
     * before it is needed, e.g. have the server compile functions whose
     * first call must be fast. Must outlive the handle. */
    const char *warm_sql;
    const char *warm_params[2];
    int warm_nparams;
} bt_pg_opts_t;

/* `res` is owned by the library and freed after the callback returns; it is
 * NULL when err is not BT_OK. `errmsg` is the server's or libpq's message
 * (or NULL), valid during the callback only. */
typedef void (*bt_pg_cb)(bt_err_t err, PGresult *res, const char *errmsg, void *arg);

/* Called when the connection becomes ready (up = 1) or is lost (up = 0). */
typedef void (*bt_pg_state_cb)(bt_pg_t *pg, int up, void *arg);

/* Creates the handle and starts connecting. Copies conninfo. */
bt_err_t bt_pg_new(struct ev_loop *loop, const bt_pg_opts_t *opts, bt_pg_t **out);

/* Fails every pending query with BT_E_CANCELLED (callbacks run inside this
 * call), closes the connection, frees the handle. Accepts NULL. Must not be
 * called from one of this handle's callbacks. */
void bt_pg_free(bt_pg_t *pg);

void bt_pg_on_state(bt_pg_t *pg, bt_pg_state_cb cb, void *arg);

/* 1 when connected and statements are prepared. */
int bt_pg_is_up(const bt_pg_t *pg);

/* Queues statement `stmt` (index into opts.stmts) with text parameters
 * (NULL = SQL NULL). `lengths`/`formats` may be NULL for all-text; binary
 * parameters need both. Results come back in text format, except columns
 * fetched with binary_result = 1.
 * Returns BT_E_PG_CONN while the connection is down (no callback then). */
bt_err_t bt_pg_exec(bt_pg_t *pg, int stmt, const char *const *values,
                    const int *lengths, const int *formats, int binary_result,
                    bt_pg_cb cb, void *arg);

/* Same for an ad-hoc SQL text (parsed by the server every time). */
bt_err_t bt_pg_query(bt_pg_t *pg, const char *sql, int nparams,
                     const char *const *values, const int *lengths,
                     const int *formats, int binary_result, bt_pg_cb cb,
                     void *arg);

/* For a layer that holds queries back to merge them (the store coalesces a
 * turn's task transitions into one statement): fn runs before any other
 * query is queued on this handle, and before the turn's sync, and sends
 * what was held with bt_pg_exec, so everything still reaches the server in
 * the order it was asked for. After holding something, call bt_pg_holding
 * so fn runs before the loop blocks. fn NULL unregisters. */
void bt_pg_set_hold(bt_pg_t *pg, void (*fn)(void *arg), void *arg);
void bt_pg_holding(bt_pg_t *pg);

/* One-shot: cb runs (from the loop, right after the callbacks of the batch
 * that emptied it) the next time no query is in flight. Replaces an
 * earlier registration; cb NULL cancels. Not called when nothing is in
 * flight now: check bt_pg_pending first. */
void bt_pg_when_idle(bt_pg_t *pg, void (*cb)(void *arg), void *arg);

/* Number of queries sent or queued and not yet answered. */
unsigned bt_pg_pending(const bt_pg_t *pg);

/* Formats Unix milliseconds as a PostgreSQL timestamptz literal (UTC),
 * "2026-12-02 15:26:57.123+00". */
void bt_ms_to_pg_time(int64_t ms, char buf[40]);

/* Statistics for benchmarks and status. */
typedef struct bt_pg_stats {
    uint64_t queries;
    uint64_t syncs;        /* = transactions committed or aborted */
    uint64_t reconnects;
} bt_pg_stats_t;
void bt_pg_get_stats(const bt_pg_t *pg, bt_pg_stats_t *out);

#endif
