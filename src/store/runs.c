/* Workflow runs and operators' requests: the dispatcher's fenced writes
 * beyond single task runs (store.c). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "baton/store.h"
#include "store/internal.h"

const char *bt_store_cluster(const bt_store_t *st)
{
    return st->cluster;
}

const char *bt_store_node(const bt_store_t *st)
{
    return st->node;
}

/* A growable string for array literals. */
typedef struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
} sbuf_t;

static void sb_put(sbuf_t *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

/* One element of a text[] literal: always quoted, with " and \ escaped. */
static void sb_text_elem(sbuf_t *b, const char *s)
{
    sb_put(b, "\"", 1);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            sb_put(b, "\\", 1);
        sb_put(b, s, 1);
    }
    sb_put(b, "\"", 1);
}

/* One element of a bytea[] literal in hex: "\\x0a0b" (the array parser
 * turns \\ into the \ of bytea's hex format). */
static void sb_bytea_elem(sbuf_t *b, const uint8_t *data, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    sb_put(b, "\"\\\\x", 4);
    for (size_t i = 0; i < n; i++) {
        char h[2] = {hex[data[i] >> 4], hex[data[i] & 15]};
        sb_put(b, h, 2);
    }
    sb_put(b, "\"", 1);
}

static uint8_t *pack_run_record(bt_workflow_run_t *run, size_t *len)
{
    *len = baton__v1__workflow_run__get_packed_size(run);
    uint8_t *buf = malloc(*len + 1);
    if (buf)
        baton__v1__workflow_run__pack(run, buf);
    return buf;
}

bt_err_t bt_store_run_create(bt_store_t *st, uint64_t epoch, bt_workflow_run_t *run,
                             bt_task_run_t *const *tasks, size_t ntasks, int64_t next_fire_ms,
                             int64_t request_id, bt_store_cb cb, void *arg)
{
    char ep[24], logical[40], next[40], req[24], due[40], ver[12];
    sbuf_t ids = {0}, keys = {0}, recs = {0};
    uint8_t *buf = NULL;
    size_t len;
    bt_err_t err = BT_E_NOMEM;
    store_req_t *rq = NULL;
    const char *kind = bt_run_kind_name(run ? run->kind : 0);

    if (!st || !cb || !run || !run->workflow_id || !*run->workflow_id || !run->run_id ||
        !*run->run_id || !kind || (ntasks && !tasks))
        return BT_E_INVAL;
    run->writer_epoch = epoch;
    sb_put(&ids, "{", 1);
    sb_put(&keys, "{", 1);
    sb_put(&recs, "{", 1);
    for (size_t i = 0; i < ntasks; i++) {
        bt_task_run_t *t = tasks[i];
        if (!t->run_key || !t->task_id) {
            err = BT_E_INVAL;
            goto out;
        }
        char *own = t->writer_node; /* put back after packing: the caller's */
        t->writer_epoch = epoch;
        t->writer_node = st->node;
        size_t tl = baton__v1__task_run__get_packed_size(t);
        uint8_t *tb = malloc(tl + 1);
        if (tb)
            baton__v1__task_run__pack(t, tb);
        t->writer_node = own;
        if (!tb)
            goto out;
        if (i) {
            sb_put(&ids, ",", 1);
            sb_put(&keys, ",", 1);
            sb_put(&recs, ",", 1);
        }
        sb_text_elem(&ids, t->task_id);
        sb_text_elem(&keys, t->run_key);
        sb_bytea_elem(&recs, tb, tl);
        free(tb);
    }
    sb_put(&ids, "}", 1);
    sb_put(&keys, "}", 1);
    sb_put(&recs, "}", 1);
    if (ids.oom || keys.oom || recs.oom)
        goto out;
    if (!(buf = pack_run_record(run, &len)))
        goto out;
    if (!(rq = store_req_new(cb, NULL, arg)))
        goto out;
    snprintf(ep, sizeof ep, "%" PRIu64, epoch);
    bt_ms_to_pg_time(run->logical_time_ms, logical);
    if (next_fire_ms >= 0)
        bt_ms_to_pg_time(next_fire_ms, next);
    snprintf(req, sizeof req, "%" PRId64, request_id);
    bt_ms_to_pg_time(run->created_ms, due);
    snprintf(ver, sizeof ver, "%u", run->workflow_version);
    const char *vals[15] = {st->cluster, ep, st->node, run->workflow_id, run->run_id, kind,
                            logical, (const char *)buf, next_fire_ms >= 0 ? next : NULL,
                            request_id > 0 ? req : NULL, ids.p, keys.p, recs.p, due, ver};
    int lens[15] = {0}, fmts[15] = {0};
    lens[7] = (int)len;
    fmts[7] = 1;
    err = store_submit(st, ST_RUN_CREATE, vals, lens, fmts, 0, store_on_outcome, rq);
out:
    free(buf);
    free(ids.p);
    free(keys.p);
    free(recs.p);
    return err;
}

bt_err_t bt_store_run_transition(bt_store_t *st, uint64_t epoch, Baton__V1__RunState from,
                                 bt_workflow_run_t *run, bt_store_cb cb, void *arg)
{
    char ep[24];
    size_t len;
    const char *f = bt_run_state_name(from), *t = bt_run_state_name(run ? run->state : 0);
    if (!st || !cb || !run || !f || !t || !run->workflow_id || !run->run_id)
        return BT_E_INVAL;
    run->writer_epoch = epoch;
    uint8_t *buf = pack_run_record(run, &len);
    store_req_t *rq = buf ? store_req_new(cb, NULL, arg) : NULL;
    if (!rq) {
        free(buf);
        return BT_E_NOMEM;
    }
    snprintf(ep, sizeof ep, "%" PRIu64, epoch);
    const char *vals[8] = {st->cluster, ep, st->node, run->workflow_id, run->run_id, f, t,
                           (const char *)buf};
    int lens[8] = {0, 0, 0, 0, 0, 0, 0, (int)len}, fmts[8] = {0, 0, 0, 0, 0, 0, 0, 1};
    bt_err_t err =
        store_submit(st, ST_RUN_TRANSITION, vals, lens, fmts, 0, store_on_outcome, rq);
    free(buf);
    return err;
}

bt_err_t bt_store_task_request_done(bt_store_t *st, uint64_t epoch, int64_t id,
                                    const char *outcome, bt_store_cb cb, void *arg)
{
    char ep[24], ids[24];
    store_req_t *rq;
    if (!st || !cb || id <= 0)
        return BT_E_INVAL;
    if (!(rq = store_req_new(cb, NULL, arg)))
        return BT_E_NOMEM;
    snprintf(ep, sizeof ep, "%" PRIu64, epoch);
    snprintf(ids, sizeof ids, "%" PRId64, id);
    const char *vals[5] = {st->cluster, ep, st->node, ids, outcome ? outcome : ""};
    return store_submit(st, ST_TASK_REQUEST_DONE, vals, NULL, NULL, 0, store_on_outcome,
                        rq);
}

bt_err_t bt_store_workflow_cursor_init(bt_store_t *st, uint64_t epoch, const char *workflow_id,
                                       int64_t next_fire_ms, bt_store_cb cb, void *arg)
{
    char ep[24], next[40];
    store_req_t *rq;
    if (!st || !cb || !workflow_id)
        return BT_E_INVAL;
    if (!(rq = store_req_new(cb, NULL, arg)))
        return BT_E_NOMEM;
    snprintf(ep, sizeof ep, "%" PRIu64, epoch);
    bt_ms_to_pg_time(next_fire_ms, next);
    const char *vals[4] = {st->cluster, ep, workflow_id, next};
    return store_submit(st, ST_CURSOR_INIT, vals, NULL, NULL, 0, store_on_outcome, rq);
}
