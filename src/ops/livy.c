/* The Livy operator family: its constructor, the life of one operator call
 * and the pieces both operators use (requests, answers, lookup by name,
 * submission, adoption, deletion, log tails). The operators themselves are
 * in livy_batch.c and livy_statement.c.
 *
 * A call owes the dispatcher exactly one answer. It is answered either from
 * the callback of its last HTTP request (already on the loop) or, when no
 * request is needed, from a zero-delay timer, so never from inside the
 * operator call. A call whose family was freed while a request was in
 * flight is an orphan: the request's callback (at the latest the
 * cancellation from bt_http_free) frees it without answering. */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "baton/log.h"
#include "ops/livy_int.h"
#include "util/container.h"

#define LV_PAGE 100              /* sessions per lookup page; lines per log page */
#define LV_MAX_PAGES 500         /* a lookup gives up after 50,000 sessions */
#define LV_MAX_BODY (4u << 20)

/* ------------------------------------------------------------ calls */

static void call_free(lv_call_t *c)
{
    free(c->run_key);
    free(c->code);
    free(c->kind);
    free(c->message);
    free(c->detail);
    free(c->remote_state);
    for (size_t i = 0; i < c->n_out; i++) {
        free(c->keys[i]);
        free(c->vals[i]);
    }
    free(c);
}

static void call_unlink(lv_call_t *c)
{
    lv_t *lv = c->lv;
    if (c->prev)
        c->prev->next = c->next;
    else if (lv)
        lv->calls = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

static void on_later(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    lv_done(container_of(w, lv_call_t, later));
}

lv_call_t *lv_call_new(lv_t *lv, lv_op_t op, int session, const bt_op_call_t *call)
{
    lv_call_t *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    if (!(c->run_key = strdup(call->run->run_key ? call->run->run_key : ""))) {
        free(c);
        return NULL;
    }
    c->lv = lv;
    c->op = op;
    c->session = session;
    c->cb = call->cb;
    c->arg = call->arg;
    c->id = c->stmt_id = -1;
    const Baton__V1__RemoteHandle *h = call->run->handle;
    c->keep_first = call->run->state == BATON__V1__TASK_STATE__TASK_STATE_RUNNING;
    if (h && (op == LV_POLL || op == LV_CANCEL || op == LV_SWEEP)) { /* submit, lookup: none */
        c->id = session ? h->livy_session_id : h->livy_batch_id;
        c->stmt_id = session ? h->livy_statement_id : -1;
    }
    c->status = BT_OP_TRANSIENT; /* until something better is known */
    ev_timer_init(&c->later, on_later, 0., 0.);
    c->next = lv->calls;
    if (lv->calls)
        lv->calls->prev = c;
    lv->calls = c;
    return c;
}

void lv_call_abandon(lv_call_t *c)
{
    call_unlink(c);
    call_free(c);
}

void lv_done(lv_call_t *c)
{
    lv_t *lv = c->lv;
    Baton__V1__RemoteHandle h = BATON__V1__REMOTE_HANDLE__INIT;
    h.livy_batch_id = h.livy_session_id = h.livy_statement_id = -1;
    h.endpoint = lv->url;
    h.remote_state = c->remote_state ? c->remote_state : "";
    if (c->session) {
        h.livy_session_id = c->id;
        h.livy_statement_id = c->stmt_id;
    } else {
        h.livy_batch_id = c->id;
    }
    bt_op_result_t r = {
        .status = c->status,
        .handle = c->id >= 0 ? &h : NULL,
        .error_code = c->error_code,
        .message = c->message,
        .detail = c->detail,
        .remote_state = c->remote_state,
        .retry_after_ms = c->retry_after_ms,
        .n_outputs = c->n_out,
        .duplicates = c->cancelled,
    };
    for (size_t i = 0; i < c->n_out; i++) {
        r.output_keys[i] = c->keys[i];
        r.output_values[i] = c->vals[i];
    }
    ev_timer_stop(lv->loop, &c->later);
    call_unlink(c);
    c->cb(&r, c->arg);
    call_free(c);
}

void lv_done_later(lv_call_t *c)
{
    ev_timer_start(c->lv->loop, &c->later);
}

/* ------------------------------------------------------------ the answer */

static void set_text(char **slot, const char *fmt, va_list ap)
{
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    free(*slot);
    *slot = s;
}

void lv_set(lv_call_t *c, bt_op_status_t st, const char *code, const char *fmt, ...)
{
    va_list ap;
    c->status = st;
    c->error_code = code;
    va_start(ap, fmt);
    set_text(&c->message, fmt, ap);
    va_end(ap);
}

void lv_set_state(lv_call_t *c, const char *state)
{
    free(c->remote_state);
    c->remote_state = state ? strdup(state) : NULL;
}

void lv_set_detail(lv_call_t *c, const char *text)
{
    free(c->detail);
    c->detail = text ? strdup(text) : NULL;
}

void lv_output(lv_call_t *c, const char *key, const char *value)
{
    if (c->n_out >= LV_MAX_OUT)
        return;
    char *k = strdup(key), *v = strdup(value ? value : "");
    if (!k || !v) {
        free(k);
        free(v);
        return;
    }
    c->keys[c->n_out] = k;
    c->vals[c->n_out++] = v;
}

void lv_output_id(lv_call_t *c, const char *key, int64_t id)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", (long long)id);
    lv_output(c, key, buf);
}

/* ------------------------------------------------------------ requests */

static void on_answer(bt_err_t err, const bt_http_response_t *res, void *arg)
{
    lv_call_t *c = arg;
    c->in_http = 0;
    if (!c->lv) {
        call_free(c); /* orphan: the family is gone, nobody to answer */
        return;
    }
    c->step(c, err, res);
}

static bt_err_t send_v(lv_call_t *c, const char *method, const char *body, lv_step_fn step,
                       const char *fmt, va_list ap)
{
    lv_t *lv = c->lv;
    char path[1024], url[2048];
    int n = vsnprintf(path, sizeof path, fmt, ap);
    if (n < 0 || (size_t)n >= sizeof path ||
        snprintf(url, sizeof url, "%s%s", lv->url, path) >= (int)sizeof url)
        return BT_E_INVAL;
    int get = !strcmp(method, "GET");
    /* Livy's CSRF filter wants X-Requested-By on everything but GET */
    const char *headers[] = {"X-Requested-By: baton", "Accept: application/json",
                             body ? "Content-Type: application/json" : NULL, NULL};
    bt_http_request_t req = {
        .method = method,
        .url = url,
        .headers = headers,
        .body = body,
        .body_len = body ? strlen(body) : 0,
        .userpwd = lv->userpwd,
        .insecure = lv->insecure,
        /* a poll that hangs holds the task; the dispatcher asks again soon */
        .timeout_ms = get ? 15000 : 30000,
        .max_attempts = 3,
        .retry_budget_ms = 20000,
        /* a POST creates something; GET and DELETE may be repeated */
        .idempotent = strcmp(method, "POST") != 0,
        .side_effect = !get, /* POST creates, DELETE kills */
        .max_body = LV_MAX_BODY,
    };
    c->step = step;
    bt_err_t e = bt_http_request(lv->http, &req, on_answer, c);
    if (e == BT_OK)
        c->in_http = 1;
    return e;
}

bt_err_t lv_send(lv_call_t *c, const char *method, const char *body, lv_step_fn step,
                 const char *path_fmt, ...)
{
    va_list ap;
    va_start(ap, path_fmt);
    bt_err_t e = send_v(c, method, body, step, path_fmt, ap);
    va_end(ap);
    return e;
}

void lv_chain(lv_call_t *c, const char *method, const char *body, lv_step_fn step,
              const char *path_fmt, ...)
{
    va_list ap;
    va_start(ap, path_fmt);
    bt_err_t e = send_v(c, method, body, step, path_fmt, ap);
    va_end(ap);
    if (e != BT_OK) {
        lv_set(c, BT_OP_NOT_SENT, NULL, "cannot send %s to Livy: %s", method, bt_strerror(e));
        lv_done(c);
    }
}

/* ------------------------------------------------------------ answers */

void lv_refusal(const bt_http_response_t *res, char *buf, size_t len)
{
    const char *body = res->body ? res->body : "";
    json_t *j = json_loadb(body, res->body_len, 0, NULL);
    const char *msg = json_string_value(json_object_get(j, "msg"));
    const char *t = strstr(body, "<title>"), *te = t ? strstr(t, "</title>") : NULL;
    if (msg)
        snprintf(buf, len, "%s", msg);
    else if (t && te) /* Jetty's HTML error page (the CSRF filter answers that way) */
        snprintf(buf, len, "%.*s", (int)(te - t - 7), t + 7);
    else
        snprintf(buf, len, "%.200s", body);
    json_decref(j);
    /* one line: messages end up in logs and tables */
    for (char *p = buf; *p; p++)
        if (*p == '\n' || *p == '\r' || *p == '\t')
            *p = ' ';
}

int lv_trouble(lv_call_t *c, bt_err_t err, const bt_http_response_t *res, const char *what)
{
    char msg[256];
    if (err == BT_OK && res->status != 429 && res->status < 500)
        return 0;
    /* nothing sent, or only refusals before any work: a definite outcome */
    bt_op_status_t st = res->unsent ? BT_OP_NOT_SENT : BT_OP_TRANSIENT;
    if (err != BT_OK) {
        lv_set(c, st, NULL, "%s: %s", what, res->error ? res->error : bt_strerror(err));
    } else {
        lv_refusal(res, msg, sizeof msg);
        lv_set(c, st, NULL, "%s: HTTP %ld: %s", what, res->status, msg);
    }
    c->retry_after_ms = res->retry_after_ms;
    bt_info("livy: %s: %s (will ask again)", c->run_key, c->message);
    return 1;
}

json_t *lv_json(lv_call_t *c, const bt_http_response_t *res, const char *what)
{
    json_error_t je;
    json_t *j = json_loadb(res->body, res->body_len, 0, &je);
    if (!j) {
        lv_set(c, BT_OP_FAILED, "bad_response", "%s: not JSON (%s)", what, je.text);
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        lv_set(c, BT_OP_FAILED, "bad_response", "%s: not a JSON object", what);
        return NULL;
    }
    return j;
}

int64_t lv_json_id(const json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_integer(v) && json_integer_value(v) >= 0 ? (int64_t)json_integer_value(v) : -1;
}

int lv_put_str(json_t *o, const char *key, const char *value)
{
    if (!value || !*value)
        return 0; /* proto3: empty means unset */
    return json_object_set_new(o, key, json_string(value));
}

int lv_put_strs(json_t *o, const char *key, char **values, size_t n)
{
    if (!n)
        return 0;
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        if (json_array_append_new(a, json_string(values[i] ? values[i] : "")))
            break;
    if (json_array_size(a) != n) {
        json_decref(a);
        return -1;
    }
    return json_object_set_new(o, key, a);
}

const char *lv_tail(const char *text, size_t max)
{
    size_t len = strlen(text);
    if (len <= max)
        return text;
    const char *p = text + len - max;
    while (((unsigned char)*p & 0xC0) == 0x80) /* not in the middle of a character */
        p++;
    const char *nl = strchr(p, '\n');
    if (nl && nl - p < 200)
        p = nl + 1;
    return p;
}

/* ------------------------------------------------------------ lookup by name */

static void sweep_next(lv_call_t *c);

static void on_twin_deleted(lv_call_t *c, bt_err_t err, const bt_http_response_t *res)
{
    if (err != BT_OK || !((res->status >= 200 && res->status < 300) || res->status == 404))
        bt_warn("livy: %s: deleting a twin failed (%s); the next sweep tries again", c->run_key,
                err != BT_OK ? bt_strerror(err) : "HTTP error");
    sweep_next(c);
}

static int state_ended(const char *s)
{
    return !strcmp(s, "success") || !strcmp(s, "dead") || !strcmp(s, "killed") ||
           !strcmp(s, "error") || !strcmp(s, "shutting_down");
}

/* Deletes the next twin not kept that has not ended, then answers. */
static void sweep_next(lv_call_t *c)
{
    const char *coll = c->session ? "sessions" : "batches";
    while (c->twin_i < c->ntwins) {
        size_t i = c->twin_i++;
        if (c->twin_ids[i] == c->id || state_ended(c->twin_states[i]))
            continue;
        bt_warn("livy: %s: %s %lld carries this name too (%s): deleting it", c->run_key,
                c->session ? "session" : "batch", (long long)c->twin_ids[i], c->twin_states[i]);
        c->cancelled++;
        return lv_chain(c, "DELETE", NULL, on_twin_deleted, "/%s/%lld", coll,
                        (long long)c->twin_ids[i]);
    }
    c->status = BT_OP_SUCCESS;
    if (c->cancelled)
        lv_set_detail(c, "twins named after this run key were deleted");
    lv_done(c);
}

/* Which twin stays: the first created (lowest id) while the attempt runs,
 * else the recorded one, when it is among them. */
static void sweep_decide(lv_call_t *c)
{
    size_t keep = 0;
    int recorded = 0;
    for (size_t i = 0; i < c->ntwins; i++) {
        if (!c->keep_first && c->twin_ids[i] == c->id)
            recorded = 1, keep = i;
        if (!recorded && c->twin_ids[i] < c->twin_ids[keep])
            keep = i;
    }
    if (!c->ntwins) { /* not even ours is listed (yet): nothing to judge */
        c->status = BT_OP_SUCCESS;
        return lv_done(c);
    }
    if (c->id >= 0 && c->twin_ids[keep] != c->id)
        bt_warn("livy: %s: keeping %lld, created first, instead of %lld", c->run_key,
                (long long)c->twin_ids[keep], (long long)c->id);
    c->id = c->twin_ids[keep];
    lv_set_state(c, c->twin_states[keep]);
    c->twin_i = 0;
    sweep_next(c);
}

static void lookup_page(lv_call_t *c, bt_err_t err, const bt_http_response_t *res)
{
    const char *coll = c->session ? "sessions" : "batches";
    if (lv_trouble(c, err, res, "listing Livy sessions"))
        return lv_done(c);
    if (res->status != 200) {
        char msg[256];
        lv_refusal(res, msg, sizeof msg);
        lv_set(c, BT_OP_FAILED, "http_error", "GET /%s: HTTP %ld: %s", coll, res->status, msg);
        return lv_done(c);
    }
    json_t *j = lv_json(c, res, c->session ? "GET /sessions" : "GET /batches");
    if (!j)
        return lv_done(c);
    json_t *list = json_object_get(j, "sessions");
    json_t *total = json_object_get(j, "total");
    if (!json_is_array(list) || !json_is_integer(total)) {
        json_decref(j);
        lv_set(c, BT_OP_FAILED, "bad_response",
               "GET /%s: no \"sessions\" list or \"total\" count", coll);
        return lv_done(c);
    }
    size_t i, n = json_array_size(list);
    for (i = 0; i < n; i++) {
        json_t *s = json_array_get(list, i);
        if (!json_is_object(s)) {
            json_decref(j);
            lv_set(c, BT_OP_FAILED, "bad_response", "GET /%s: an entry is not an object", coll);
            return lv_done(c);
        }
        const char *name = json_string_value(json_object_get(s, "name"));
        if (!name || strcmp(name, c->run_key))
            continue; /* unnamed sessions are somebody else's */
        const char *state = json_string_value(json_object_get(s, "state"));
        if (c->op == LV_SWEEP) {
            if (lv_json_id(s, "id") >= 0 && state && c->ntwins < LV_SWEEP_MAX) {
                c->twin_ids[c->ntwins] = lv_json_id(s, "id");
                snprintf(c->twin_states[c->ntwins++], sizeof c->twin_states[0], "%s", state);
            }
            continue; /* all of them, to the last page */
        }
        c->id = lv_json_id(s, "id");
        if (c->id < 0 || !state) {
            json_decref(j);
            lv_set(c, BT_OP_FAILED, "bad_response",
                   "GET /%s: the entry named %s lacks an id or a state", coll, c->run_key);
            return lv_done(c);
        }
        lv_set_state(c, state);
        json_decref(j); /* state pointed into j: use c->remote_state from here */
        bt_info("livy: %s: found %s %lld (%s)", c->run_key, c->session ? "session" : "batch",
                (long long)c->id, c->remote_state ? c->remote_state : "?");
        return c->found(c);
    }
    int64_t next = c->page_from + (int64_t)n;
    int more = n > 0 && next < (int64_t)json_integer_value(total);
    json_decref(j);
    if (more && next >= (int64_t)LV_PAGE * LV_MAX_PAGES) {
        /* NOT_FOUND would let the dispatcher submit a twin of what may be
         * on a page not read: fail the attempt instead */
        lv_set(c, BT_OP_FAILED, "lookup_incomplete",
               "GET /%s: more than %d sessions; cannot tell whether %s exists", coll,
               LV_PAGE * LV_MAX_PAGES, c->run_key);
        return lv_done(c);
    }
    if (more) {
        c->page_from = next;
        return lv_chain(c, "GET", NULL, lookup_page, "/%s?from=%lld&size=%d", coll,
                        (long long)next, LV_PAGE);
    }
    if (c->op == LV_SWEEP)
        return sweep_decide(c);
    if (c->op == LV_SUBMIT)
        /* Livy said the name exists, and now it does not: ask again later */
        lv_set(c, BT_OP_TRANSIENT, NULL, "Livy refused a duplicate name it does not list");
    else
        lv_set(c, BT_OP_NOT_FOUND, NULL, "no Livy %s named %s", c->session ? "session" : "batch",
               c->run_key);
    lv_done(c);
}

/* Finds the batch or session named after the run key, paging through
 * GET /batches or /sessions: found -> c->id, c->remote_state set and
 * `found` runs; none -> NOT_FOUND (TRANSIENT when submitting). Returns
 * whether the first request went out (no answer is owed if not). */
static bt_err_t lv_lookup(lv_call_t *c, lv_then_fn found)
{
    c->found = found;
    c->page_from = 0;
    return lv_send(c, "GET", NULL, lookup_page, "/%s?from=0&size=%d",
                   c->session ? "sessions" : "batches", LV_PAGE);
}

/* ------------------------------------------------------------ submit, lookup, cancel */

/* What a call is about: a batch or a session. */
static const char *noun(const lv_call_t *c)
{
    return c->session ? "session" : "batch";
}

bt_err_t lv_started(lv_call_t *c, bt_err_t e)
{
    if (e != BT_OK)
        lv_call_abandon(c);
    return e;
}

/* A lookup found the work: it runs (a session's statement, if any, is
 * found by the next poll). */
static void adopt(lv_call_t *c)
{
    c->status = BT_OP_RUNNING;
    c->stmt_id = -1;
    lv_done(c);
}

static void on_created(lv_call_t *c, bt_err_t err, const bt_http_response_t *res)
{
    const char *what = c->session ? "POST /sessions" : "POST /batches";
    char msg[256];
    if (lv_trouble(c, err, res, what))
        return lv_done(c);
    if (res->status != 200 && res->status != 201) {
        lv_refusal(res, msg, sizeof msg);
        if (res->status == 400 && strstr(msg, "Duplicate session name")) {
            bt_info("livy: %s: Livy has a %s of this name; adopting it", c->run_key, noun(c));
            if (lv_lookup(c, adopt) != BT_OK) {
                lv_set(c, BT_OP_TRANSIENT, NULL, "cannot look the %s up", noun(c));
                lv_done(c);
            }
            return;
        }
        lv_set(c, BT_OP_FAILED, "rejected", "Livy refused the %s (HTTP %ld): %s", noun(c),
               res->status, msg);
        return lv_done(c);
    }
    json_t *j = lv_json(c, res, what);
    if (!j)
        return lv_done(c);
    int64_t id = lv_json_id(j, "id");
    const char *state = json_string_value(json_object_get(j, "state"));
    if (id < 0 || !state || (c->known && !c->known(state))) {
        lv_set(c, BT_OP_FAILED, "bad_response", "%s: the answer lacks an id or a %sstate", what,
               c->known ? "known " : "");
    } else {
        c->id = id;
        lv_set_state(c, state);
        c->status = BT_OP_RUNNING;
        bt_info("livy: %s: %s %lld %s (%s)", c->run_key, noun(c), (long long)id,
                c->session ? "created" : "submitted", state);
    }
    json_decref(j);
    lv_done(c);
}

bt_err_t lv_submit(lv_call_t *c, char *body, lv_known_fn known)
{
    c->known = known;
    bt_err_t e = body ? lv_send(c, "POST", body, on_created, "/%s",
                                c->session ? "sessions" : "batches")
                      : BT_E_INVAL;
    free(body); /* the transport keeps its own copy */
    return lv_started(c, e);
}

bt_err_t lv_start_lookup(lv_t *lv, int session, const bt_op_call_t *call)
{
    lv_call_t *c = lv_call_new(lv, LV_LOOKUP, session, call);
    return c ? lv_started(c, lv_lookup(c, adopt)) : BT_E_NOMEM;
}

bt_err_t lv_start_sweep(lv_t *lv, int session, const bt_op_call_t *call)
{
    lv_call_t *c = lv_call_new(lv, LV_SWEEP, session, call);
    return c ? lv_started(c, lv_lookup(c, NULL)) : BT_E_NOMEM;
}

lv_call_t *lv_cancel_call(lv_t *lv, int session, const bt_op_call_t *call, bt_err_t *e)
{
    lv_call_t *c = lv_call_new(lv, LV_CANCEL, session, call);
    *e = c ? BT_OK : BT_E_NOMEM;
    if (c && c->id < 0) {
        c->status = BT_OP_SUCCESS; /* nothing was started */
        lv_done_later(c);
        return NULL;
    }
    return c;
}

void lv_deleted(lv_call_t *c, bt_err_t err, const bt_http_response_t *res)
{
    if (err == BT_OK && ((res->status >= 200 && res->status < 300) || res->status == 404)) {
        /* a batch already gone says so; a deleted session is killed either way */
        int gone = res->status == 404 && !c->session;
        c->status = BT_OP_SUCCESS;
        lv_set_state(c, gone ? "gone" : "killed");
        bt_info("livy: %s: %s %lld %s", c->run_key, noun(c), (long long)c->id,
                gone ? "was already gone" : "deleted");
        return lv_done(c);
    }
    if (lv_trouble(c, err, res, c->session ? "DELETE /sessions/{id}" : "DELETE /batches/{id}"))
        return lv_done(c);
    char msg[256];
    lv_refusal(res, msg, sizeof msg);
    lv_set(c, BT_OP_FAILED, "http_error", "DELETE /%s/%lld: HTTP %ld: %s",
           c->session ? "sessions" : "batches", (long long)c->id, res->status, msg);
    lv_done(c);
}

/* ------------------------------------------------------------ log tails */

static void log_page(lv_call_t *c, bt_err_t err, const bt_http_response_t *res)
{
    const char *coll = c->session ? "sessions" : "batches";
    char note[300];
    json_t *j = NULL;
    if (err != BT_OK || res->status != 200) {
        snprintf(note, sizeof note, "(the log could not be read: %s)",
                 err != BT_OK ? bt_strerror(err) : "HTTP error");
        goto out_note;
    }
    j = json_loadb(res->body, res->body_len, 0, NULL);
    json_t *lines = json_object_get(j, "log");
    json_t *total = json_object_get(j, "total"), *from = json_object_get(j, "from");
    if (!json_is_array(lines) || !json_is_integer(total) || !json_is_integer(from)) {
        snprintf(note, sizeof note, "(the log answer was not what Livy sends)");
        goto out_note;
    }
    size_t n = json_array_size(lines);
    json_int_t last = json_integer_value(from) + (json_int_t)n;
    if (!c->log_tail_asked && last < json_integer_value(total)) {
        /* the first page was the head; the end is what explains a failure */
        c->log_tail_asked = 1;
        json_int_t start = json_integer_value(total) - LV_PAGE;
        json_decref(j);
        return lv_chain(c, "GET", NULL, log_page, "/%s/%lld/log?from=%lld&size=%d", coll,
                        (long long)c->id, (long long)(start > 0 ? start : 0), LV_PAGE);
    }
    size_t cap = 1, len = 0;
    for (size_t i = 0; i < n; i++) {
        const char *l = json_string_value(json_array_get(lines, i));
        cap += (l ? strlen(l) : 0) + 1;
    }
    char *text = malloc(cap);
    if (!text) {
        snprintf(note, sizeof note, "(out of memory reading the log)");
        goto out_note;
    }
    text[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        const char *l = json_string_value(json_array_get(lines, i));
        len += (size_t)snprintf(text + len, cap - len, "%s%s", l ? l : "", i + 1 < n ? "\n" : "");
    }
    lv_set_detail(c, lv_tail(text, LV_TEXT_MAX));
    free(text);
    json_decref(j);
    return lv_done(c);

out_note:
    json_decref(j);
    lv_set_detail(c, note);
    lv_done(c);
}

void lv_fetch_log_then_done(lv_call_t *c)
{
    c->log_tail_asked = 0;
    lv_chain(c, "GET", NULL, log_page, "/%s/%lld/log?from=0&size=%d",
             c->session ? "sessions" : "batches", (long long)c->id, LV_PAGE);
}

/* ------------------------------------------------------------ the family */

/* livy.auth: "basic USER:PASSWORD" -> "USER:PASSWORD" */
static bt_err_t parse_auth(const char *auth, char **userpwd)
{
    *userpwd = NULL;
    if (!auth || !*auth)
        return BT_OK;
    if (strncasecmp(auth, "basic", 5) || !isspace((unsigned char)auth[5]))
        return BT_E_CONFIG;
    const char *p = auth + 5;
    while (isspace((unsigned char)*p))
        p++;
    if (!strchr(p, ':'))
        return BT_E_CONFIG;
    return (*userpwd = strdup(p)) ? BT_OK : BT_E_NOMEM;
}

static void family_free(lv_t *lv)
{
    size_t n = 0;
    for (lv_call_t *c = lv->calls; c; c = c->next)
        n++;
    if (n)
        bt_info("livy: shutting down with %zu call(s) unanswered; abandoned", n);
    while (lv->calls) {
        lv_call_t *c = lv->calls;
        ev_timer_stop(lv->loop, &c->later);
        call_unlink(c);
        c->lv = NULL;
        if (!c->in_http)
            call_free(c); /* else the request's answer frees it */
    }
    free(lv->url);
    free(lv->userpwd);
    free(lv);
}

bt_err_t bt_livy_operators(struct ev_loop *loop, bt_http_t *http, const bt_config_t *cfg,
                           bt_operator_t **out, size_t max, size_t *n)
{
    if (!loop || !http || !cfg || !out || !n)
        return BT_E_INVAL;
    if (!cfg->livy_url || !*cfg->livy_url)
        return BT_OK;
    if (*n + 2 > max)
        return BT_E_INVAL;
    lv_t *lv = calloc(1, sizeof *lv);
    if (!lv)
        return BT_E_NOMEM;
    lv->loop = loop;
    lv->http = http;
    lv->insecure = cfg->http_insecure;
    bt_err_t e = BT_E_NOMEM;
    if (!(lv->url = strdup(cfg->livy_url)))
        goto err_free;
    for (size_t len = strlen(lv->url); len > 0 && lv->url[len - 1] == '/'; len--)
        lv->url[len - 1] = '\0';
    if ((e = parse_auth(cfg->livy_auth, &lv->userpwd)) != BT_OK) {
        bt_error("livy: livy.auth must be \"basic USER:PASSWORD\"");
        goto err_free;
    }
    lv->batch = (bt_operator_t){
        .name = "livy_batch",
        .which = BATON__V1__TASK_SPEC__OPERATOR_LIVY_BATCH,
        .max_calls = BT_OP_HTTP_MAX_CALLS,
        .poll_interval_ms = cfg->livy_poll_ms ? cfg->livy_poll_ms : 2000,
        .submit = bt_livy_batch_submit,
        .lookup = bt_livy_batch_lookup,
        .poll = bt_livy_batch_poll,
        .cancel = bt_livy_batch_cancel,
        .sweep = bt_livy_batch_sweep,
        .ctx = lv,
    };
    lv->statement = (bt_operator_t){
        .name = "livy_statement",
        .which = BATON__V1__TASK_SPEC__OPERATOR_LIVY_STATEMENT,
        .max_calls = BT_OP_HTTP_MAX_CALLS,
        .poll_interval_ms = cfg->livy_poll_ms ? cfg->livy_poll_ms : 2000,
        .submit = bt_livy_statement_submit,
        .lookup = bt_livy_statement_lookup,
        .poll = bt_livy_statement_poll,
        .cancel = bt_livy_statement_cancel,
        .sweep = bt_livy_statement_sweep,
        .ctx = lv,
    };
    out[(*n)++] = &lv->batch;
    out[(*n)++] = &lv->statement;
    bt_info("livy: operators livy_batch, livy_statement against %s", lv->url);
    return BT_OK;

err_free:
    family_free(lv);
    return e;
}

void bt_livy_operators_free(bt_operator_t **ops, size_t n)
{
    lv_t *lv = NULL;
    for (size_t i = 0; i < n; i++) {
        if (ops[i] && ops[i]->submit == bt_livy_batch_submit) {
            lv = ops[i]->ctx;
            ops[i] = NULL;
        } else if (ops[i] && ops[i]->submit == bt_livy_statement_submit) {
            lv = ops[i]->ctx;
            ops[i] = NULL;
        }
    }
    if (lv)
        family_free(lv);
}
