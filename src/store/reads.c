/* The dispatcher's reads (store.h, "Reads"): what a leader loads when it
 * starts or reloads, and what it polls for while it leads. The SQL is
 * here, prepared on every session (store.c's table), so that src/sched
 * never sees libpq: each read answers with its rows decoded into plain C
 * structs, valid during the callback only. Records and specs stay packed
 * protobuf: the caller unpacks them and decides what a corrupt one means. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/internal.h"

typedef struct read_req {
    int stmt;
    void (*cb)(void); /* one of the typed callbacks of store.h, by stmt */
    void *arg;
} read_req_t;

static int64_t col_i64(PGresult *res, int row, int col, int64_t dflt)
{
    return PQgetisnull(res, row, col) ? dflt : strtoll(PQgetvalue(res, row, col), NULL, 10);
}

static const char *col_str(PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col);
}

/* A bytea column (text form) decoded into *out: free with PQfreemem. NULL
 * and 0 for SQL NULL or a value that does not decode. */
static uint8_t *col_bytes(PGresult *res, int row, int col, size_t *len)
{
    *len = 0;
    if (PQgetisnull(res, row, col))
        return NULL;
    return PQunescapeBytea((const unsigned char *)PQgetvalue(res, row, col), len);
}

/* The rows of one answer, decoded; what they point into is freed after the
 * callback (the result by the pg layer, the byteas here). */
typedef struct decoded {
    void *rows;
    size_t n;
    uint8_t **blobs;
    size_t nblobs;
} decoded_t;

static uint8_t *keep_blob(decoded_t *d, uint8_t *b)
{
    if (b)
        d->blobs[d->nblobs++] = b;
    return b;
}

static void decoded_free(decoded_t *d)
{
    for (size_t i = 0; i < d->nblobs; i++)
        PQfreemem(d->blobs[i]);
    free(d->blobs);
    free(d->rows);
}

/* Allocates n rows of `size` and room for `blobs_per_row` byteas each. */
static bt_err_t decoded_alloc(decoded_t *d, size_t n, size_t size, size_t blobs_per_row)
{
    memset(d, 0, sizeof *d);
    d->n = n;
    d->rows = calloc(n ? n : 1, size);
    d->blobs = calloc(n * blobs_per_row + 1, sizeof *d->blobs);
    if (!d->rows || !d->blobs) {
        decoded_free(d);
        return BT_E_NOMEM;
    }
    return BT_OK;
}

static void decode_workflows(PGresult *res, decoded_t *d)
{
    bt_store_workflow_row_t *w = d->rows;
    for (size_t i = 0; i < d->n; i++) {
        int r = (int)i;
        w[i] = (bt_store_workflow_row_t){
            .workflow_id = PQgetvalue(res, r, 0),
            .version = (int)col_i64(res, r, 1, 1),
            .paused = PQgetvalue(res, r, 2)[0] == 't',
            .next_fire_ms = col_i64(res, r, 4, -1),
            .change_seq = col_i64(res, r, 5, 0),
        };
        w[i].spec = keep_blob(d, col_bytes(res, r, 3, &w[i].spec_len));
    }
}

static void decode_runs(PGresult *res, decoded_t *d)
{
    bt_store_run_row_t *w = d->rows;
    for (size_t i = 0; i < d->n; i++) {
        w[i].record = keep_blob(d, col_bytes(res, (int)i, 0, &w[i].record_len));
        w[i].spec = keep_blob(d, col_bytes(res, (int)i, 1, &w[i].spec_len));
    }
}

static void decode_tasks(PGresult *res, decoded_t *d)
{
    bt_store_task_row_t *w = d->rows;
    for (size_t i = 0; i < d->n; i++) {
        w[i].run_key = PQgetvalue(res, (int)i, 0);
        w[i].state = PQgetvalue(res, (int)i, 1);
        w[i].record = keep_blob(d, col_bytes(res, (int)i, 2, &w[i].record_len));
    }
}

static void decode_pools(PGresult *res, decoded_t *d)
{
    bt_store_pool_row_t *w = d->rows;
    for (size_t i = 0; i < d->n; i++) {
        w[i].name = PQgetvalue(res, (int)i, 0);
        w[i].slots = (uint32_t)col_i64(res, (int)i, 1, 0);
    }
}

static void decode_run_requests(PGresult *res, decoded_t *d)
{
    bt_store_run_request_row_t *w = d->rows;
    for (size_t i = 0; i < d->n; i++) {
        int r = (int)i;
        w[i] = (bt_store_run_request_row_t){.id = col_i64(res, r, 0, 0),
                                            .workflow_id = PQgetvalue(res, r, 1),
                                            .kind = PQgetvalue(res, r, 2),
                                            .logical_ms = col_i64(res, r, 3, 0),
                                            .conf = col_str(res, r, 4)};
    }
}

static void decode_task_requests(PGresult *res, decoded_t *d)
{
    bt_store_task_request_row_t *w = d->rows;
    for (size_t i = 0; i < d->n; i++) {
        int r = (int)i;
        w[i] = (bt_store_task_request_row_t){.id = col_i64(res, r, 0, 0),
                                             .action = PQgetvalue(res, r, 1),
                                             .workflow_id = PQgetvalue(res, r, 2),
                                             .run_id = PQgetvalue(res, r, 3),
                                             .task_id = col_str(res, r, 4),
                                             .only_failed = PQgetvalue(res, r, 5)[0] == 't'};
    }
}

/* Per read: its row size, how many byteas a row holds, its decoder. */
static const struct {
    size_t size, blobs;
    void (*decode)(PGresult *res, decoded_t *d);
} readers[ST__COUNT] = {
    [ST_READ_WORKFLOWS] = {sizeof(bt_store_workflow_row_t), 1, decode_workflows},
    [ST_READ_RUNS] = {sizeof(bt_store_run_row_t), 2, decode_runs},
    [ST_READ_TASKS] = {sizeof(bt_store_task_row_t), 1, decode_tasks},
    [ST_READ_POOLS] = {sizeof(bt_store_pool_row_t), 0, decode_pools},
    [ST_READ_RUN_REQUESTS] = {sizeof(bt_store_run_request_row_t), 0, decode_run_requests},
    [ST_READ_TASK_REQUESTS] = {sizeof(bt_store_task_request_row_t), 0, decode_task_requests},
};

static void on_rows(bt_err_t err, PGresult *res, const char *errmsg, void *arg)
{
    read_req_t *rq = arg;
    bt_store_rows_cb cb = (bt_store_rows_cb)rq->cb;
    decoded_t d = {0};
    if (err == BT_OK &&
        (err = decoded_alloc(&d, (size_t)PQntuples(res), readers[rq->stmt].size,
                             readers[rq->stmt].blobs)) == BT_OK)
        readers[rq->stmt].decode(res, &d);
    cb(err, err == BT_OK ? d.rows : NULL, err == BT_OK ? d.n : 0, errmsg, rq->arg);
    if (err == BT_OK)
        decoded_free(&d);
    free(rq);
}

static bt_err_t read_rows(bt_store_t *st, int stmt, const char *const *vals, void (*cb)(void),
                          bt_pg_cb on_done, void *arg)
{
    read_req_t *rq = malloc(sizeof *rq);
    if (!st || !cb || !rq) {
        free(rq);
        return st && cb ? BT_E_NOMEM : BT_E_INVAL;
    }
    *rq = (read_req_t){stmt, cb, arg};
    bt_err_t err = bt_pg_exec(st->pg, stmt, vals, NULL, NULL, 0, on_done, rq);
    if (err != BT_OK)
        free(rq);
    return err;
}

bt_err_t bt_store_read_workflows(bt_store_t *st, int64_t since_seq, bt_store_rows_cb cb,
                                 void *arg)
{
    char seq[24];
    snprintf(seq, sizeof seq, "%" PRId64, since_seq);
    const char *vals[2] = {st ? st->cluster : NULL, seq};
    return read_rows(st, ST_READ_WORKFLOWS, vals, (void (*)(void))cb, on_rows, arg);
}

/* The reads whose only parameter is the cluster. */
static bt_err_t cluster_rows(bt_store_t *st, int stmt, bt_store_rows_cb cb, void *arg)
{
    const char *vals[1] = {st ? st->cluster : NULL};
    return read_rows(st, stmt, vals, (void (*)(void))cb, on_rows, arg);
}

bt_err_t bt_store_read_active_runs(bt_store_t *st, bt_store_rows_cb cb, void *arg)
{
    return cluster_rows(st, ST_READ_RUNS, cb, arg);
}

bt_err_t bt_store_read_active_tasks(bt_store_t *st, bt_store_rows_cb cb, void *arg)
{
    return cluster_rows(st, ST_READ_TASKS, cb, arg);
}

bt_err_t bt_store_read_pools(bt_store_t *st, bt_store_rows_cb cb, void *arg)
{
    return cluster_rows(st, ST_READ_POOLS, cb, arg);
}

bt_err_t bt_store_read_run_requests(bt_store_t *st, bt_store_rows_cb cb, void *arg)
{
    return cluster_rows(st, ST_READ_RUN_REQUESTS, cb, arg);
}

bt_err_t bt_store_read_task_requests(bt_store_t *st, bt_store_rows_cb cb, void *arg)
{
    return cluster_rows(st, ST_READ_TASK_REQUESTS, cb, arg);
}

static void on_fence(bt_err_t err, PGresult *res, const char *errmsg, void *arg)
{
    read_req_t *rq = arg;
    bt_store_fence_cb cb = (bt_store_fence_cb)rq->cb;
    uint64_t epoch = 0;
    int clean = 0;
    (void)errmsg;
    if (err == BT_OK && PQntuples(res) == 1) {
        int64_t e = col_i64(res, 0, 1, -1);
        epoch = e > 0 ? (uint64_t)e : 0;
        clean = PQgetvalue(res, 0, 0)[0] == 't';
    }
    cb(err, epoch, clean, rq->arg);
    free(rq);
}

bt_err_t bt_store_read_fence(bt_store_t *st, bt_store_fence_cb cb, void *arg)
{
    const char *vals[1] = {st ? st->cluster : NULL};
    return read_rows(st, ST_READ_FENCE, vals, (void (*)(void))cb, on_fence, arg);
}

static void on_run_record(bt_err_t err, PGresult *res, const char *errmsg, void *arg)
{
    read_req_t *rq = arg;
    bt_store_blob_cb cb = (bt_store_blob_cb)rq->cb;
    size_t len = 0;
    uint8_t *b = NULL;
    (void)errmsg;
    if (err == BT_OK && PQntuples(res) != 1)
        err = BT_E_NOTFOUND;
    else if (err == BT_OK && !(b = col_bytes(res, 0, 0, &len)))
        err = BT_E_CORRUPT;
    cb(err, b, len, rq->arg);
    PQfreemem(b);
    free(rq);
}

bt_err_t bt_store_read_finished_run(bt_store_t *st, const char *workflow_id, const char *run_id,
                                    bt_store_blob_cb cb, void *arg)
{
    const char *vals[3] = {st ? st->cluster : NULL, workflow_id, run_id};
    return read_rows(st, ST_READ_FINISHED_RUN, vals, (void (*)(void))cb, on_run_record, arg);
}
