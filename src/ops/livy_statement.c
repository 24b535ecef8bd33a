/* livy_statement: one piece of code in an interactive session of its own.
 *
 *   submit  POST /sessions {kind, proxyUser, conf, ..., name: run key}
 *   poll    no statement known: GET /sessions/{id}/statements; the first
 *           one there is ours (nobody else uses the session); none yet:
 *           GET /sessions/{id}/state and, once idle, POST
 *           /sessions/{id}/statements {code, kind}.
 *           A statement known: GET /sessions/{id}/statements/{sid}.
 *           Once it is available, error or cancelled: DELETE the session,
 *           then answer.
 *   cancel  POST .../statements/{sid}/cancel when one is known, then
 *           DELETE /sessions/{id} (which stops whatever runs in it)
 *   lookup  GET /sessions?from=&size= pages, the session named after the key
 *   sweep   the same pages, every session named after the key (livy.c)
 *
 * The dispatcher stores a handle when the work starts (submit, lookup),
 * not on every poll, so the statement id a poll learns may be forgotten.
 * Asking the session for its statements instead of remembering makes a
 * lost answer to the statement POST, or a takeover, harmless: the next
 * poll finds the statement rather than sending it twice. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "baton/log.h"
#include "ops/livy_int.h"

static int one_of(const char *s, const char *const *set, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(s, set[i]))
            return 1;
    return 0;
}
#define ONE_OF(s, ...)                                       \
    one_of(s, (const char *const[]){__VA_ARGS__},            \
           sizeof((const char *[]){__VA_ARGS__}) / sizeof(char *))

static char *session_body(const Baton__V1__LivyStatement *s, const char *name)
{
    json_t *o = json_object(), *conf = json_object();
    int bad = !o || !conf;
    bad |= lv_put_str(o, "kind", s->kind);
    bad |= lv_put_str(o, "proxyUser", s->proxy_user);
    for (size_t i = 0; i < s->n_conf; i++)
        bad |= json_object_set_new(conf, s->conf[i]->key, json_string(s->conf[i]->value));
    if (s->n_conf && !bad)
        bad |= json_object_set_new(o, "conf", conf); /* takes conf, even on failure */
    else
        json_decref(conf);
    bad |= lv_put_str(o, "driverMemory", s->driver_memory);
    bad |= lv_put_str(o, "executorMemory", s->executor_memory);
    if (s->num_executors)
        bad |= json_object_set_new(o, "numExecutors", json_integer(s->num_executors));
    bad |= lv_put_str(o, "name", name);
    char *text = bad ? NULL : json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return text;
}

/* ------------------------------------------------------------ the end */

static void on_cleaned(opc_call_t *oc, bt_err_t err, const bt_http_response_t *res)
{
    if (err != BT_OK || !((res->status >= 200 && res->status < 300) || res->status == 404))
        bt_warn("livy: %s: session %lld was not deleted (%s); Livy's idle timeout will end it",
                oc->run_key, (long long)lv_of(oc)->id,
                err != BT_OK ? bt_strerror(err) : "HTTP error");
    opc_done(oc);
}

/* The answer is decided: delete the session, then give the answer. */
static void finish(lv_call_t *c)
{
    if (lv_send(c, "DELETE", NULL, on_cleaned, LV_ANY, "/sessions/%lld", (long long)c->id) !=
        BT_OK)
        opc_done(&c->base);
}

/* Up to LV_TEXT_MAX bytes of the head, cut before a character, not in it. */
static void output_head(lv_call_t *c, const char *text)
{
    size_t n = LV_TEXT_MAX;
    if (strlen(text) <= n)
        return opc_output(&c->base, "output", text);
    while (n > 0 && ((unsigned char)text[n] & 0xC0) == 0x80)
        n--; /* text[n] continues a character: cut where it starts */
    char *cut = strndup(text, n);
    if (cut)
        opc_output(&c->base, "output", cut);
    free(cut);
}

static void statement_ok(lv_call_t *c, json_t *out)
{
    json_t *data = json_object_get(out, "data");
    if (!json_is_object(data)) {
        opc_set(&c->base, BT_OP_FAILED, "bad_response",
                "statement %lld: output has no data object", (long long)c->stmt_id);
        return;
    }
    const char *text = json_string_value(json_object_get(data, "text/plain"));
    char *dumped = NULL;
    json_t *jv = json_object_get(data, "application/json");
    if (!text && jv)
        text = dumped = json_dumps(jv, JSON_COMPACT | JSON_ENCODE_ANY);
    c->base.status = BT_OP_SUCCESS;
    lv_output_id(c, "livy_session_id", c->id);
    lv_output_id(c, "livy_statement_id", c->stmt_id);
    output_head(c, text ? text : "");
    free(dumped);
}

static void statement_error(lv_call_t *c, json_t *out)
{
    const char *ename = json_string_value(json_object_get(out, "ename"));
    const char *evalue = json_string_value(json_object_get(out, "evalue"));
    json_t *tb = json_object_get(out, "traceback");
    ename = ename ? ename : "?";
    evalue = evalue ? evalue : "";
    opc_set(&c->base, BT_OP_FAILED, "remote_failed", "Livy statement %lld failed: %s: %.300s",
            (long long)c->stmt_id, ename, evalue);
    /* the detail: "ename: evalue" and the traceback, its end if long */
    size_t cap = strlen(ename) + strlen(evalue) + 4;
    for (size_t i = 0; i < json_array_size(tb); i++) {
        const char *l = json_string_value(json_array_get(tb, i));
        cap += l ? strlen(l) : 0;
    }
    char *text = malloc(cap);
    if (!text)
        return;
    size_t len = (size_t)snprintf(text, cap, "%s: %s\n", ename, evalue);
    for (size_t i = 0; i < json_array_size(tb); i++) {
        const char *l = json_string_value(json_array_get(tb, i));
        len += (size_t)snprintf(text + len, cap - len, "%s", l ? l : "");
    }
    opc_set_detail(&c->base, lv_tail(text, LV_TEXT_MAX));
    free(text);
}

/* A statement object from Livy decides the answer (the caller frees it). */
static void judge_statement(lv_call_t *c, json_t *st)
{
    opc_call_t *oc = &c->base;
    int64_t sid = lv_json_id(st, "id");
    const char *state = json_string_value(json_object_get(st, "state"));
    if (sid < 0 || !state) {
        opc_set(oc, BT_OP_FAILED, "bad_response", "Livy session %lld: a statement without %s",
                (long long)c->id, sid < 0 ? "an id" : "a state");
        return finish(c);
    }
    c->stmt_id = sid;
    opc_set_state(oc, state);
    if (ONE_OF(state, "waiting", "running", "cancelling"))
        return opc_finish(oc, BT_OP_RUNNING);
    json_t *out = json_object_get(st, "output");
    const char *status = json_string_value(json_object_get(out, "status"));
    if (!strcmp(state, "available") && status && !strcmp(status, "ok"))
        statement_ok(c, out);
    else if (!strcmp(state, "available") && status && !strcmp(status, "error"))
        statement_error(c, out);
    else if (!strcmp(state, "available"))
        opc_set(oc, BT_OP_FAILED, "bad_response", "statement %lld: output status %s",
                (long long)sid, status ? "unknown" : "missing");
    else if (ONE_OF(state, "error", "cancelled"))
        opc_set(oc, BT_OP_FAILED, "remote_failed", "Livy statement %lld ended in state %s",
                (long long)sid, state);
    else
        opc_set(oc, BT_OP_FAILED, "bad_response", "statement %lld: unknown state",
                (long long)sid);
    finish(c);
}

/* ------------------------------------------------------------ poll */

static void on_statement(opc_call_t *oc, bt_err_t err, const bt_http_response_t *res)
{
    lv_call_t *c = lv_of(oc);
    char msg[256];
    if (res->status == 404) {
        opc_set(oc, BT_OP_NOT_FOUND, NULL, "Livy no longer knows session %lld or its statement",
                (long long)c->id);
        return opc_done(oc);
    }
    if (res->status != 200 && res->status != 201) {
        lv_refusal(res, msg, sizeof msg);
        opc_set(oc, BT_OP_FAILED, "rejected", "Livy refused the statement (HTTP %ld): %s",
                res->status, msg);
        return finish(c);
    }
    json_t *j = lv_json(c, res, "statement");
    if (!j)
        return finish(c);
    judge_statement(c, j);
    json_decref(j);
}

/* The session is idle: send the statement. */
static void send_statement(lv_call_t *c)
{
    json_t *body = json_pack("{s:s, s:s}", "code", c->stmt_code, "kind", c->stmt_kind);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!text) {
        opc_set(&c->base, BT_OP_FAILED, "operator", "the statement cannot be sent as JSON");
        return finish(c);
    }
    bt_info("livy: %s: session %lld is idle; sending the statement", c->base.run_key,
            (long long)c->id);
    lv_chain(c, "POST", text, on_statement, "statement request", "/sessions/%lld/statements",
             (long long)c->id);
    free(text);
}

static void on_session_state(opc_call_t *oc, bt_err_t err, const bt_http_response_t *res)
{
    lv_call_t *c = lv_of(oc);
    if (res->status == 404) {
        opc_set(oc, BT_OP_NOT_FOUND, NULL, "Livy no longer knows session %lld", (long long)c->id);
        return opc_done(oc);
    }
    if (res->status != 200)
        return opc_fail(oc, "http_error", "GET /sessions/%lld/state: HTTP %ld", (long long)c->id,
                        res->status);
    json_t *j = lv_json(c, res, "GET /sessions/{id}/state");
    if (!j)
        return finish(c);
    const char *state = json_string_value(json_object_get(j, "state"));
    if (!state || lv_json_id(j, "id") != c->id) {
        opc_set(oc, BT_OP_FAILED, "bad_response", "GET /sessions/%lld/state: %s",
                (long long)c->id,
                state ? "the answer is not about this session (id)" : "no state in the answer");
        json_decref(j);
        return finish(c);
    }
    opc_set_state(oc, state);
    json_decref(j); /* state pointed into j */
    state = oc->state ? oc->state : "";
    if (!strcmp(state, "idle"))
        return send_statement(c);
    if (ONE_OF(state, "not_started", "starting", "recovering", "busy", "running"))
        return opc_finish(oc, BT_OP_RUNNING);
    if (ONE_OF(state, "shutting_down", "error", "dead", "killed", "success")) {
        opc_set(oc, BT_OP_FAILED, "remote_failed",
                "Livy session %lld ended in state %s before the statement ran", (long long)c->id,
                state);
        return lv_fetch_log_then_done(c);
    }
    opc_set(oc, BT_OP_FAILED, "bad_response", "GET /sessions/%lld/state: unknown state",
            (long long)c->id);
    finish(c);
}

static void on_statements(opc_call_t *oc, bt_err_t err, const bt_http_response_t *res)
{
    lv_call_t *c = lv_of(oc);
    if (res->status == 404) {
        opc_set(oc, BT_OP_NOT_FOUND, NULL, "Livy no longer knows session %lld", (long long)c->id);
        return opc_done(oc);
    }
    if (res->status != 200)
        return opc_fail(oc, "http_error", "GET /sessions/%lld/statements: HTTP %ld",
                        (long long)c->id, res->status);
    json_t *j = lv_json(c, res, "GET /sessions/{id}/statements");
    json_t *list = json_object_get(j, "statements");
    if (j && !json_is_array(list))
        opc_set(oc, BT_OP_FAILED, "bad_response",
                "GET /sessions/%lld/statements: no \"statements\" list", (long long)c->id);
    if (!json_is_array(list)) {
        json_decref(j);
        return finish(c);
    }
    json_t *first = json_array_get(list, 0);
    if (first) {
        judge_statement(c, first); /* a non-object has no id: bad_response */
        json_decref(j);
        return;
    }
    json_decref(j);
    lv_chain(c, "GET", NULL, on_session_state, "GET /sessions/{id}/state", "/sessions/%lld/state",
             (long long)c->id);
}

static bt_err_t statement_poll(lv_call_t *c, const Baton__V1__LivyStatement *s)
{
    if (!s)
        return BT_E_INVAL;
    c->stmt_code = strdup(s->code ? s->code : "");
    c->stmt_kind = strdup(s->kind ? s->kind : "");
    if (c->id < 0)
        return BT_E_INVAL;
    if (!c->stmt_code || !c->stmt_kind)
        return BT_E_NOMEM;
    if (c->stmt_id >= 0)
        return lv_send(c, "GET", NULL, on_statement, "statement request",
                       "/sessions/%lld/statements/%lld", (long long)c->id,
                       (long long)c->stmt_id);
    return lv_send(c, "GET", NULL, on_statements, "GET /sessions/{id}/statements",
                   "/sessions/%lld/statements", (long long)c->id);
}

/* ------------------------------------------------------------ cancel */

static void on_statement_cancelled(opc_call_t *oc, bt_err_t err, const bt_http_response_t *res)
{
    /* whatever it said, deleting the session stops the statement */
    lv_call_t *c = lv_of(oc);
    lv_chain(c, "DELETE", NULL, lv_deleted, "DELETE /sessions/{id}", "/sessions/%lld",
             (long long)c->id);
}

/* ------------------------------------------------------------ the operator */

bt_err_t lv_statement_start(opc_call_t *oc, const bt_op_call_t *call)
{
    lv_call_t *c = lv_call_init(oc, call, 1);
    const Baton__V1__LivyStatement *s = call->spec->livy_statement;
    if (s && opc_use_endpoint(oc, call, s->url, s->auth, 0))
        return BT_OK; /* answered */
    switch (oc->kind) {
    case OPC_SUBMIT:
        return s ? lv_submit(c, session_body(s, oc->run_key), NULL) : BT_E_INVAL;
    case OPC_POLL:
        return statement_poll(c, s);
    case OPC_CANCEL:
        if (c->id >= 0 && c->stmt_id >= 0)
            return lv_send(c, "POST", NULL, on_statement_cancelled, LV_ANY,
                           "/sessions/%lld/statements/%lld/cancel", (long long)c->id,
                           (long long)c->stmt_id);
        return lv_delete(c);
    default: /* lookup, sweep */
        return lv_lookup(c);
    }
}
