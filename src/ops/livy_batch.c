/* livy_batch: one Spark application through Livy's batch API.
 *
 *   submit  POST /batches {file, className, args, ..., name: run key}
 *   poll    GET /batches/{id}/state; at `success` GET /batches/{id} for the
 *           YARN application id; at dead|killed|error the log's tail
 *           (GET /batches/{id}/log) becomes the error detail
 *   cancel  DELETE /batches/{id} (404: already gone, which is what we want)
 *   lookup  GET /batches?from=&size= pages, the batch named after the key
 *   sweep   the same pages, every batch named after the key (livy.c)
 *
 * Livy refuses a second batch with a name it already has ("Duplicate
 * session name"), so a submission repeated after an unknown outcome adopts
 * the first one instead of failing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "baton/log.h"
#include "ops/livy_int.h"

typedef enum { BS_RUNNING, BS_SUCCESS, BS_FAILED, BS_UNKNOWN } batch_state_t;

/* Livy's batch states (SessionState): everything not final is "running". */
static batch_state_t classify(const char *s)
{
    static const char *const running[] = {"not_started", "starting", "recovering", "idle",
                                          "running",     "busy",     "shutting_down"};
    static const char *const failed[] = {"error", "dead", "killed"};
    for (size_t i = 0; i < sizeof running / sizeof running[0]; i++)
        if (!strcmp(s, running[i]))
            return BS_RUNNING;
    for (size_t i = 0; i < sizeof failed / sizeof failed[0]; i++)
        if (!strcmp(s, failed[i]))
            return BS_FAILED;
    return !strcmp(s, "success") ? BS_SUCCESS : BS_UNKNOWN;
}

/* The POST /batches body, or NULL (out of memory, or text that is not
 * UTF-8, which JSON cannot carry). */
static char *batch_body(const Baton__V1__LivyBatch *b, const char *name)
{
    json_t *o = json_object(), *conf = json_object();
    int bad = !o || !conf || !b->file || !*b->file;
    bad |= lv_put_str(o, "file", b->file);
    bad |= lv_put_str(o, "className", b->class_name);
    bad |= lv_put_strs(o, "args", b->args, b->n_args);
    bad |= lv_put_strs(o, "jars", b->jars, b->n_jars);
    bad |= lv_put_strs(o, "pyFiles", b->py_files, b->n_py_files);
    bad |= lv_put_strs(o, "files", b->files, b->n_files);
    bad |= lv_put_strs(o, "archives", b->archives, b->n_archives);
    for (size_t i = 0; i < b->n_conf; i++)
        bad |= json_object_set_new(conf, b->conf[i]->key, json_string(b->conf[i]->value));
    if (b->n_conf && !bad)
        bad |= json_object_set_new(o, "conf", conf); /* takes conf, even on failure */
    else
        json_decref(conf);
    bad |= lv_put_str(o, "driverMemory", b->driver_memory);
    bad |= lv_put_str(o, "executorMemory", b->executor_memory);
    if (b->driver_cores)
        bad |= json_object_set_new(o, "driverCores", json_integer(b->driver_cores));
    if (b->executor_cores)
        bad |= json_object_set_new(o, "executorCores", json_integer(b->executor_cores));
    if (b->num_executors)
        bad |= json_object_set_new(o, "numExecutors", json_integer(b->num_executors));
    bad |= lv_put_str(o, "queue", b->queue);
    bad |= lv_put_str(o, "proxyUser", b->proxy_user);
    bad |= lv_put_str(o, "name", name);
    char *s = bad ? NULL : json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

static int known_state(const char *s)
{
    return classify(s) != BS_UNKNOWN;
}

/* ------------------------------------------------------------ poll */

static void on_info(opc_call_t *oc, bt_err_t err, const bt_http_response_t *res)
{
    lv_call_t *c = lv_of(oc);
    json_t *j = NULL;
    /* 404: gone already, and the state said success */
    if (res->status == 200) {
        if (!(j = lv_json(c, res, "GET /batches/{id}")))
            return opc_done(oc);
        json_t *app = json_object_get(j, "appId");
        if (app && !json_is_string(app) && !json_is_null(app)) {
            json_decref(j);
            return opc_fail(oc, "bad_response", "GET /batches/%lld: appId is not a string",
                            (long long)c->id);
        }
    }
    lv_output_id(c, "livy_batch_id", c->id);
    const char *app = json_string_value(json_object_get(j, "appId"));
    if (app && *app)
        opc_output(oc, "app_id", app);
    json_decref(j);
    opc_finish(oc, BT_OP_SUCCESS);
}

static void on_state(opc_call_t *oc, bt_err_t err, const bt_http_response_t *res)
{
    lv_call_t *c = lv_of(oc);
    if (res->status == 404) {
        opc_set(oc, BT_OP_NOT_FOUND, NULL, "Livy no longer knows batch %lld", (long long)c->id);
        return opc_done(oc);
    }
    if (res->status != 200) {
        char msg[256];
        lv_refusal(res, msg, sizeof msg);
        return opc_fail(oc, "http_error", "GET /batches/%lld/state: HTTP %ld: %s",
                        (long long)c->id, res->status, msg);
    }
    json_t *j = lv_json(c, res, "GET /batches/{id}/state");
    if (!j)
        return opc_done(oc);
    const char *state = json_string_value(json_object_get(j, "state"));
    batch_state_t bs = state ? classify(state) : BS_UNKNOWN;
    if (lv_json_id(j, "id") != c->id || bs == BS_UNKNOWN) {
        opc_set(oc, BT_OP_FAILED, "bad_response", "GET /batches/%lld/state: %s",
                (long long)c->id,
                lv_json_id(j, "id") != c->id ? "the answer is not about this batch (id)"
                : state                      ? "unknown batch state"
                                             : "no state in the answer");
        if (state)
            opc_set_state(oc, state);
        json_decref(j);
        return opc_done(oc);
    }
    opc_set_state(oc, state);
    json_decref(j); /* state pointed into j */
    switch (bs) {
    case BS_RUNNING:
        return opc_finish(oc, BT_OP_RUNNING);
    case BS_SUCCESS:
        return lv_chain(c, "GET", NULL, on_info, "GET /batches/{id}", "/batches/%lld",
                        (long long)c->id);
    default:
        opc_set(oc, BT_OP_FAILED, "remote_failed", "Livy batch %lld ended in state %s",
                (long long)c->id, oc->state ? oc->state : "?");
        return lv_fetch_log_then_done(c);
    }
}

/* ------------------------------------------------------------ the operator */

bt_err_t lv_batch_start(opc_call_t *oc, const bt_op_call_t *call)
{
    lv_call_t *c = lv_call_init(oc, call, 0);
    const Baton__V1__LivyBatch *b = call->spec->livy_batch;
    if (b && opc_use_endpoint(oc, call, b->url, b->auth, 0))
        return BT_OK; /* answered */
    switch (oc->kind) {
    case OPC_SUBMIT:
        return b ? lv_submit(c, batch_body(b, oc->run_key), known_state) : BT_E_INVAL;
    case OPC_POLL:
        if (c->id < 0)
            return BT_E_INVAL;
        return lv_send(c, "GET", NULL, on_state, "GET /batches/{id}/state", "/batches/%lld/state",
                       (long long)c->id);
    case OPC_CANCEL:
        return lv_delete(c);
    default: /* lookup, sweep */
        return lv_lookup(c);
    }
}
