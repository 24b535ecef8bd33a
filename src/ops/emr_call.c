/* The life of one EMR operator call (the entry points are in emr.c):
 *
 *   entry (submit/lookup/poll/cancel) -> credentials -> signed POST ->
 *   next step (another request, e.g. while adopting) ... -> one answer
 *
 * Answers decided inside the entry call (a bad spec, a sensor's gate) are
 * queued and delivered from a zero timer, so the operator contract (never
 * answer from inside the call) holds. When the family is freed, calls
 * waiting for the transport are detached (their `e` set to NULL) and freed
 * when the transport calls back; all others are freed at once.
 *
 * Mapping of answers (emr_int.h has the JSON side):
 *   2xx JSON object          -> the call's next step
 *   2xx anything else        -> FAILED bad_response
 *   429, 5xx, Throttling*    -> TRANSIENT (after the transport's retries)
 *   ExpiredToken*            -> TRANSIENT, cached credentials dropped
 *   other 4xx                -> FAILED, error_code = the __type's short name
 *   no answer                -> TRANSIENT (a submit is then looked up first)
 *   nothing sent, or only    -> NOT_SENT (the gate refused a side effect, or
 *   refusals before any work    every attempt was throttled: resubmitting
 *                               needs no lookup) */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "baton/clock.h"
#include "baton/log.h"
#include "ops/emr_int.h"
#include "util/container.h"

/* ------------------------------------------------------------ calls */

void emr_call_free(emr_call_t *c)
{
    for (size_t i = 0; i < c->ntargets; i++)
        free(c->targets[i]);
    free(c->targets);
    free(c->run_key);
    free(c->marker);
    free(c->endpoint);
    free(c->cluster_id);
    free(c->step_id);
    free(c->name);
    free(c->sent_name);
    json_decref(c->body);
    json_decref(c->candidates);
    free(c->page_marker);
    free(c->code);
    free(c->msg);
    free(c->detail);
    free(c->state);
    free(c);
}

void emr_call_unlink(emr_call_t *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else if (c->e && c->e->calls == c)
        c->e->calls = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->next = c->prev = NULL;
}

void emr_set_str(char **slot, const char *v)
{
    free(*slot);
    *slot = v ? strdup(v) : NULL;
}

void emr_set_state(emr_call_t *c, const char *state)
{
    emr_set_str(&c->state, state);
}

static void gate_update(emr_t *e, emr_call_t *c)
{
    int64_t now = bt_now_ms();
    gate_t **p = &e->gates, *g;
    while ((g = *p)) {
        /* a gate nobody asked about for an hour belongs to a task that is gone */
        if (!strcmp(g->key, c->run_key) || g->next_ms < now - 3600 * 1000) {
            *p = g->next;
            free(g->key);
            free(g);
            continue;
        }
        p = &g->next;
    }
    if (c->st != BT_OP_RUNNING || !(g = calloc(1, sizeof *g)) || !(g->key = strdup(c->run_key))) {
        free(g);
        return;
    }
    g->next_ms = now + (int64_t)c->gate_ms;
    snprintf(g->state, sizeof g->state, "%s", c->state ? c->state : "");
    g->next = e->gates;
    e->gates = g;
}

/* Answers end up in PostgreSQL text columns and in JSON, both of which
 * refuse invalid UTF-8; AWS's texts are UTF-8, but a length cap may have cut
 * one in the middle of a character. Bad bytes become '?'. */
static void utf8_fix(char *s)
{
    unsigned char *p = (unsigned char *)s;
    while (p && *p) {
        int n = *p < 0x80 ? 0 : (*p & 0xE0) == 0xC0 ? 1 : (*p & 0xF0) == 0xE0 ? 2
                              : (*p & 0xF8) == 0xF0 ? 3 : -1;
        int ok = n >= 0 && !(n == 1 && *p < 0xC2);
        for (int i = 1; ok && i <= n; i++)
            ok = (p[i] & 0xC0) == 0x80;
        if (!ok) {
            *p++ = '?';
            continue;
        }
        p += n + 1;
    }
}

static void deliver(emr_call_t *c)
{
    emr_t *e = c->e;
    Baton__V1__RemoteHandle h = BATON__V1__REMOTE_HANDLE__INIT;
    bt_op_result_t r = {.status = c->st,
                        .error_code = c->code,
                        .message = c->msg,
                        .detail = c->detail,
                        .remote_state = c->state,
                        .retry_after_ms = c->retry_after_ms,
                        .duplicates = c->cancelled};
    utf8_fix(c->msg);
    utf8_fix(c->detail);
    utf8_fix(c->state);
    h.livy_batch_id = h.livy_session_id = h.livy_statement_id = -1;
    h.emr_cluster_id = c->cluster_id ? c->cluster_id : "";
    h.emr_step_id = c->step_id ? c->step_id : "";
    h.endpoint = c->endpoint;
    h.remote_state = c->state ? c->state : "";
    if (c->cluster_id)
        r.handle = &h;
    if (c->st == BT_OP_SUCCESS) {
        if (c->which == OP(EMR_WAIT_CLUSTER) || c->which == OP(EMR_WAIT_STEP)) {
            r.output_keys[r.n_outputs] = "state";
            r.output_values[r.n_outputs++] = c->state ? c->state : "";
        }
        if (c->step_id && c->which == OP(EMR_ADD_STEP)) {
            r.output_keys[r.n_outputs] = "step_id";
            r.output_values[r.n_outputs++] = c->step_id;
        }
        if (c->cluster_id &&
            (c->which == OP(EMR_CREATE_CLUSTER) || c->which == OP(EMR_ADD_STEP))) {
            r.output_keys[r.n_outputs] = "cluster_id";
            r.output_values[r.n_outputs++] = c->cluster_id;
        }
    }
    if (c->st == BT_OP_TRANSIENT)
        bt_warn("emr: %s: %s; will ask again", c->run_key, c->msg ? c->msg : "no answer");
    if (c->gate_ms && (c->kind == EMR_K_SUBMIT || c->kind == EMR_K_POLL))
        gate_update(e, c);
    emr_call_unlink(c);
    c->cb(&r, c->arg);
    emr_call_free(c);
}

void emr_on_kick(struct ev_loop *loop, ev_timer *t, int revents)
{
    emr_t *e = container_of(t, emr_t, kick);
    emr_call_t *q = e->queue;
    (void)loop;
    (void)revents;
    e->queue = NULL; /* answers may queue new calls */
    while (q) {
        emr_call_t *next = q->next;
        q->next = NULL;
        deliver(q);
        q = next;
    }
}

void emr_finish(emr_call_t *c, bt_op_status_t st)
{
    emr_t *e = c->e;
    c->st = st;
    if (!c->in_entry) {
        deliver(c);
        return;
    }
    emr_call_unlink(c);
    c->where = W_QUEUED;
    c->next = e->queue;
    e->queue = c;
    if (!ev_is_active(&e->kick)) {
        ev_timer_set(&e->kick, 0., 0.);
        ev_timer_start(e->loop, &e->kick);
    }
}

static void vset(char **slot, const char *fmt, va_list ap)
{
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    free(*slot);
    *slot = s;
}

void emr_fail(emr_call_t *c, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vset(&c->msg, fmt, ap);
    va_end(ap);
    emr_set_str(&c->code, code);
    emr_finish(c, BT_OP_FAILED);
}

/* Ask again later: TRANSIENT, or NOT_SENT when nothing can have happened. */
static void again(emr_call_t *c, int unsent, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void again(emr_call_t *c, int unsent, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vset(&c->msg, fmt, ap);
    va_end(ap);
    emr_finish(c, unsent ? BT_OP_NOT_SENT : BT_OP_TRANSIENT);
}

/* The operations that change what runs (side effects for the transport). */
static int changes_state(const char *op)
{
    return !strcmp(op, "RunJobFlow") || !strcmp(op, "AddJobFlowSteps") ||
           !strcmp(op, "TerminateJobFlows") || !strcmp(op, "CancelSteps");
}

/* ------------------------------------------------------------ requests */

static void on_http(bt_err_t err, const bt_http_response_t *res, void *arg)
{
    emr_call_t *c = arg;
    if (!c->e) {
        emr_call_free(c); /* detached when the family was freed */
        return;
    }
    c->where = W_NONE;
    if (err != BT_OK || !res || res->status == 0) {
        again(c, res && res->unsent, "%s: %s: %s", c->op,
              res && res->unsent ? "not sent" : "no answer from EMR",
              res && res->error ? res->error : bt_strerror(err));
        return;
    }
    if (res->status >= 200 && res->status < 300) {
        json_t *j = json_loadb(res->body, res->body_len, 0, NULL);
        if (!json_is_object(j)) {
            /* the start of what came, printable: it goes into records and JSON */
            char head[161];
            size_t n = res->body_len < sizeof head - 1 ? res->body_len : sizeof head - 1;
            for (size_t i = 0; i < n; i++)
                head[i] = res->body[i] >= 0x20 && res->body[i] < 0x7f ? res->body[i] : '?';
            head[n] = '\0';
            json_decref(j);
            emr_set_str(&c->detail, n ? head : NULL);
            emr_fail(c, "bad_response", "%s: HTTP %ld with a body that is not a JSON object",
                     c->op, res->status);
            return;
        }
        c->next_fn(c, j); /* may finish (and free) c */
        json_decref(j);
        return;
    }
    emr_error_t ae;
    emr_parse_error(res->body, res->body_len, &ae);
    const char *what = ae.message[0] ? ae.message : "(no message)";
    if (res->status == 429 || res->status >= 500 || emr_is_throttling(ae.type)) {
        c->retry_after_ms = res->retry_after_ms;
        again(c, res->unsent, "%s: HTTP %ld %s: %s", c->op, res->status, ae.type, what);
    } else if (emr_is_expired_token(ae.type)) {
        bt_aws_creds_invalidate(c->e->creds);
        again(c, 1, "%s: %s: %s", c->op, ae.type, what); /* refused: nothing done */
    } else {
        char code[112];
        if (ae.type[0])
            snprintf(code, sizeof code, "%s", ae.type);
        else
            snprintf(code, sizeof code, "http_%ld", res->status);
        emr_fail(c, code, "%s: %s: %s", c->op, code, what);
    }
}

static void on_creds(bt_err_t err, const bt_aws_credentials_t *cr, const char *why, void *arg)
{
    emr_call_t *c = arg;
    emr_t *e = c->e;
    c->where = W_NONE;
    if (err != BT_OK) {
        /* nothing was sent: a submit may fail outright; anything else may
         * concern running work and is asked again */
        if (c->kind == EMR_K_SUBMIT)
            emr_fail(c, "no_credentials", "no AWS credentials: %s", why);
        else
            again(c, 1, "no AWS credentials: %s", why);
        return;
    }
    if (cr->session_token && cr->session_token[strcspn(cr->session_token, "\r\n")]) {
        again(c, 1, "the AWS session token (from %s) is not one line", cr->source);
        return;
    }
    char url[1100], target[128], sigv4[96], *token = NULL;
    const char *headers[4] = {"Content-Type: application/x-amz-json-1.1", target, NULL, NULL};
    char *payload = json_dumps(c->body, JSON_COMPACT);
    snprintf(url, sizeof url, "%s/", c->endpoint);
    snprintf(target, sizeof target, "X-Amz-Target: ElasticMapReduce.%s", c->op);
    snprintf(sigv4, sizeof sigv4, "aws:amz:%s:elasticmapreduce", c->region);
    /* libcurl signs every header it is given but knows nothing of session
     * tokens: the token goes in as a header, and so gets signed */
    if (cr->session_token && asprintf(&token, "X-Amz-Security-Token: %s", cr->session_token) < 0)
        token = NULL;
    headers[2] = token;
    if (!payload || (cr->session_token && !token)) {
        free(payload);
        again(c, 1, "%s: out of memory", c->op);
        return;
    }
    bt_http_request_t req = {.method = "POST",
                             .url = url,
                             .headers = headers,
                             .body = payload,
                             .body_len = strlen(payload),
                             .aws_sigv4 = sigv4,
                             .aws_access_key = cr->access_key_id,
                             .aws_secret_key = cr->secret_access_key,
                             .idempotent = c->idempotent,
                             .side_effect = changes_state(c->op),
                             .aws_throttling = 1,
                             .insecure = e->insecure};
    bt_err_t herr = bt_http_request(e->http, &req, on_http, c);
    if (token) {
        explicit_bzero(token, strlen(token));
        free(token);
    }
    free(payload);
    json_decref(c->body); /* the transport has its own copy */
    c->body = NULL;
    if (herr != BT_OK)
        again(c, 1, "%s: cannot send: %s", c->op, bt_strerror(herr));
    else
        c->where = W_HTTP;
}

bt_err_t emr_send(emr_call_t *c, const char *op, json_t *body, int idempotent, emr_next_fn next)
{
    json_decref(c->body);
    c->body = body;
    c->op = op;
    c->idempotent = idempotent;
    c->next_fn = next;
    if (!body)
        return BT_E_NOMEM;
    bt_err_t err = bt_aws_creds_get(c->e->creds, on_creds, c);
    if (err == BT_OK)
        c->where = W_CREDS;
    return err;
}

void emr_continue(emr_call_t *c, const char *op, json_t *body, int idempotent, emr_next_fn next)
{
    bt_err_t err = emr_send(c, op, body, idempotent, next);
    if (err != BT_OK)
        again(c, 1, "%s: cannot send: %s", op, bt_strerror(err));
}

/* ------------------------------------------------------------ verdicts */

static int is_target(const emr_call_t *c, const char *state)
{
    for (size_t i = 0; i < c->ntargets; i++)
        if (!strcmp(c->targets[i], state))
            return 1;
    return 0;
}

void emr_cluster_verdict(emr_call_t *c, const json_t *cluster)
{
    const json_t *status = json_object_get(cluster, "Status");
    const char *state = emr_str(status, "State"), *id = emr_str(cluster, "Id");
    char reason[700];
    if (!emr_cluster_state_known(state)) {
        emr_fail(c, "bad_response", "unknown cluster state '%.40s'", state ? state : "(none)");
        return;
    }
    emr_set_state(c, state);
    if (id && !c->cluster_id)
        c->cluster_id = strdup(id);
    emr_cluster_reason(status, reason, sizeof reason);
    int ready = !strcmp(state, "WAITING") || !strcmp(state, "RUNNING");
    int ending = !strcmp(state, "TERMINATING") || emr_cluster_state_terminal(state);
    if (c->which == OP(EMR_WAIT_CLUSTER)) {
        int awaits_end = is_target(c, "TERMINATING") || is_target(c, "TERMINATED") ||
                         is_target(c, "TERMINATED_WITH_ERRORS");
        if (is_target(c, state)) {
            emr_finish(c, BT_OP_SUCCESS);
            return;
        }
        if (!emr_cluster_state_terminal(state) && !(ending && !awaits_end)) {
            emr_finish(c, BT_OP_RUNNING);
            return;
        }
    } else if (!c->wait || ready) {
        emr_finish(c, BT_OP_SUCCESS);
        return;
    } else if (!ending) {
        emr_finish(c, BT_OP_RUNNING);
        return;
    }
    emr_set_str(&c->detail, reason[0] ? reason : NULL);
    emr_fail(c, "cluster_terminated", "cluster %s is %s%s%s", c->cluster_id ? c->cluster_id : "?",
             state, reason[0] ? ": " : "", reason);
}

void emr_step_verdict(emr_call_t *c, const json_t *step)
{
    const json_t *status = json_object_get(step, "Status");
    const char *state = emr_str(status, "State"), *id = emr_str(step, "Id");
    char detail[900], code[32];
    if (!emr_step_state_known(state)) {
        emr_fail(c, "bad_response", "unknown step state '%.40s'", state ? state : "(none)");
        return;
    }
    emr_set_state(c, state);
    if (id && !c->step_id)
        c->step_id = strdup(id);
    if ((c->which == OP(EMR_ADD_STEP) && !c->wait) || !strcmp(state, "COMPLETED")) {
        emr_finish(c, BT_OP_SUCCESS);
        return;
    }
    if (!emr_step_state_failed(state)) {
        emr_finish(c, BT_OP_RUNNING);
        return;
    }
    emr_step_failure(status, detail, sizeof detail);
    emr_set_str(&c->detail, detail[0] ? detail : NULL);
    snprintf(code, sizeof code, "step_%s", !strcmp(state, "FAILED")      ? "failed"
                                           : !strcmp(state, "CANCELLED") ? "cancelled"
                                                                         : "interrupted");
    emr_fail(c, code, "step %s on %s is %s%s%s", c->step_id ? c->step_id : "?",
             c->cluster_id ? c->cluster_id : "?", state, detail[0] ? ": " : "", detail);
}
