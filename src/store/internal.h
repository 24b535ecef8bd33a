/* Private to src/store: the store handle, its prepared statements and the
 * request plumbing shared by store.c (fence, task runs) and runs.c
 * (workflow runs, requests). */
#ifndef BATON_STORE_INTERNAL_H
#define BATON_STORE_INTERNAL_H

#include <libpq-fe.h>

#include "baton/pg.h"
#include "baton/store.h"

enum {
    ST_FENCE_ACQUIRE,
    ST_FENCE_CHECK,
    ST_TASK_CREATE,
    ST_TASK_GET,
    ST_EVENT,
    ST_HEARTBEAT,
    ST_RUN_CREATE,
    ST_RUN_TRANSITION,
    ST_TASK_REQUEST_DONE,
    ST_CURSOR_INIT,
    ST_TASK_TRANSITIONS,
    ST_FENCE_RELEASE,
    ST_EVENT_NOTE,
    /* reads.c */
    ST_READ_WORKFLOWS,
    ST_READ_RUNS,
    ST_READ_FENCE,
    ST_READ_TASKS,
    ST_READ_POOLS,
    ST_READ_RUN_REQUESTS,
    ST_READ_TASK_REQUESTS,
    ST_READ_FINISHED_RUN,
    ST__COUNT
};

typedef struct bt_store_batch bt_store_batch_t;

struct bt_store {
    bt_pg_t *pg;
    bt_store_batch_t *batch;
    uint32_t fence_grace_ms;
    char *cluster;
    char *node;
};

/* One in-flight call: who to tell, and how to read the answer. */
typedef struct store_req {
    bt_store_cb cb;
    bt_store_task_cb task_cb;
    void *arg;
} store_req_t;

/* Queues prepared statement `stmt`; frees rq when it cannot be sent. */
bt_err_t store_submit(bt_store_t *st, int stmt, const char *const *vals, const int *lens,
                          const int *fmts, int binary, bt_pg_cb on_done, store_req_t *rq);
store_req_t *store_req_new(bt_store_cb cb, bt_store_task_cb task_cb, void *arg);
/* Maps a baton_* function's outcome text ('ok', 'fenced', ...) to an error. */
bt_err_t store_outcome_err(const char *v);

/* batch.c: task transitions coalesced per loop turn (see there). _add
 * takes rq on BT_OK only; rec is copied. */
bt_store_batch_t *store_batch_new(bt_store_t *st, struct ev_loop *loop);
void store_batch_free(bt_store_batch_t *bt); /* held callers get BT_E_CANCELLED */
bt_err_t store_batch_add(bt_store_batch_t *bt, uint64_t epoch, const bt_task_run_t *run,
                             const char *from, const char *errtext, const uint8_t *rec,
                             size_t rec_len, store_req_t *rq);

/* Reads a baton_* function's one text outcome and calls rq->cb. */
void store_on_outcome(bt_err_t err, PGresult *res, const char *errmsg, void *arg);

#endif
