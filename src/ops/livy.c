/* The Livy operator family: its constructor, its requests and answers on
 * the operator-call core (op_call.h), and the pieces both operators use
 * (lookup by name, submission, adoption, the duplicate sweep, deletion,
 * log tails). The operators themselves are in livy_batch.c and
 * livy_statement.c. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "baton/log.h"
#include "ops/livy_int.h"

#define LV_PAGE 100              /* sessions per lookup page; lines per log page */
#define LV_MAX_PAGES 500         /* a lookup gives up after 50,000 sessions */
#define LV_MAX_BODY (4u << 20)

/* ------------------------------------------------------------ calls */

lv_call_t *lv_call_init(opc_call_t *oc, const bt_op_call_t *call, int session)
{
    lv_call_t *c = lv_of(oc);
    const Baton__V1__RemoteHandle *h = call->run->handle;
    c->session = session;
    c->id = c->stmt_id = -1;
    if (h && (oc->kind == OPC_POLL || oc->kind == OPC_CANCEL || oc->kind == OPC_SWEEP)) {
        c->id = session ? h->livy_session_id : h->livy_batch_id; /* submit, lookup: none */
        c->stmt_id = session ? h->livy_statement_id : -1;
    }
    return c;
}

static void call_free(opc_call_t *oc)
{
    lv_call_t *c = lv_of(oc);
    free(c->stmt_code);
    free(c->stmt_kind);
}

static void result(opc_call_t *oc, bt_op_result_t *r, Baton__V1__RemoteHandle *h)
{
    lv_call_t *c = lv_of(oc);
    if (c->session) {
        h->livy_session_id = c->id;
        h->livy_statement_id = c->stmt_id;
    } else {
        h->livy_batch_id = c->id;
    }
    if (c->id >= 0)
        r->handle = h;
}

void lv_output_id(lv_call_t *c, const char *key, int64_t id)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", (long long)id);
    opc_output(&c->base, key, buf);
}

/* What a call is about: a batch or a session. */
static const char *noun(const lv_call_t *c)
{
    return c->session ? "session" : "batch";
}

static const char *coll(const lv_call_t *c)
{
    return c->session ? "sessions" : "batches";
}

/* ------------------------------------------------------------ requests */

static bt_err_t send_v(lv_call_t *c, const char *method, const char *body, opc_step_fn step,
                       const char *what, const char *fmt, va_list ap)
{
    char path[1024];
    int n = vsnprintf(path, sizeof path, fmt, ap);
    if (n < 0 || (size_t)n >= sizeof path)
        return BT_E_INVAL;
    int get = !strcmp(method, "GET");
    opc_req_t rq = {
        .method = method,
        .what = what,
        .path = path,
        .body = body,
        .content_type = body ? "application/json" : NULL,
        /* a poll that hangs holds the task; the dispatcher asks again soon */
        .timeout_ms = get ? 15000 : 30000,
        .max_attempts = 3,
        .budget_ms = 20000,
        /* a POST creates something; GET and DELETE may be repeated */
        .idempotent = strcmp(method, "POST") != 0,
        .side_effect = !get, /* POST creates, DELETE kills */
        .max_body = LV_MAX_BODY,
        .any = what == LV_ANY,
    };
    return opc_send(&c->base, &rq, step);
}

bt_err_t lv_send(lv_call_t *c, const char *method, const char *body, opc_step_fn step,
                 const char *what, const char *path_fmt, ...)
{
    va_list ap;
    va_start(ap, path_fmt);
    bt_err_t e = send_v(c, method, body, step, what, path_fmt, ap);
    va_end(ap);
    return e;
}

void lv_chain(lv_call_t *c, const char *method, const char *body, opc_step_fn step,
              const char *what, const char *path_fmt, ...)
{
    va_list ap;
    va_start(ap, path_fmt);
    bt_err_t e = send_v(c, method, body, step, what, path_fmt, ap);
    va_end(ap);
    if (e != BT_OK)
        opc_unsent(&c->base, what ? what : method, e);
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

static void trouble(opc_call_t *c, bt_err_t err, const bt_http_response_t *res, char *msg,
                    size_t len)
{
    char why[256];
    if (err != BT_OK) {
        snprintf(msg, len, "%s: %s", c->rq.what, res->error ? res->error : bt_strerror(err));
        return;
    }
    lv_refusal(res, why, sizeof why);
    snprintf(msg, len, "%s: HTTP %ld: %s", c->rq.what, res->status, why);
}

json_t *lv_json(lv_call_t *c, const bt_http_response_t *res, const char *what)
{
    json_error_t je;
    json_t *j = json_loadb(res->body, res->body_len, 0, &je);
    if (!j) {
        opc_set(&c->base, BT_OP_FAILED, "bad_response", "%s: not JSON (%s)", what, je.text);
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        opc_set(&c->base, BT_OP_FAILED, "bad_response", "%s: not a JSON object", what);
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

static void on_twin_deleted(opc_call_t *oc, bt_err_t err, const bt_http_response_t *res)
{
    if (err != BT_OK || !((res->status >= 200 && res->status < 300) || res->status == 404))
        bt_warn("livy: %s: deleting a twin failed (%s); the next sweep tries again", oc->run_key,
                err != BT_OK ? bt_strerror(err) : "HTTP error");
    sweep_next(lv_of(oc));
}

static int state_ended(const char *s)
{
    return !strcmp(s, "success") || !strcmp(s, "dead") || !strcmp(s, "killed") ||
           !strcmp(s, "error") || !strcmp(s, "shutting_down");
}

/* Deletes the next twin not kept that has not ended, then answers. */
static void sweep_next(lv_call_t *c)
{
    char kept[32];
    snprintf(kept, sizeof kept, "%lld", (long long)c->id);
    const opc_twin_t *t = opc_twin_next(&c->base, kept, state_ended, noun(c));
    if (t)
        return lv_chain(c, "DELETE", NULL, on_twin_deleted, LV_ANY, "/%s/%s", coll(c), t->id);
    if (c->base.duplicates)
        opc_set_detail(&c->base, "twins named after this run key were deleted");
    opc_finish(&c->base, BT_OP_SUCCESS);
}

/* Which twin stays: the first created (lowest id) while the attempt runs,
 * else the recorded one, when it is among them. */
static void sweep_decide(lv_call_t *c)
{
    char recorded[32];
    snprintf(recorded, sizeof recorded, "%lld", (long long)c->id);
    const opc_twin_t *k = opc_twin_keep(&c->base, c->id >= 0 ? recorded : NULL);
    if (!k) /* not even ours is listed (yet): nothing to judge */
        return opc_finish(&c->base, BT_OP_SUCCESS);
    c->id = strtoll(k->id, NULL, 10);
    opc_set_state(&c->base, k->state);
    sweep_next(c);
}

/* A lookup found the work: it runs (a session's statement, if any, is
 * found by the next poll). */
static void adopt(lv_call_t *c)
{
    c->stmt_id = -1;
    opc_finish(&c->base, BT_OP_RUNNING);
}

/* One entry of a page named after the run key: adopted (lookup, submit),
 * or noted as a twin (sweep). 1: the call is answered. */
static int named_entry(lv_call_t *c, json_t *s)
{
    const char *state = json_string_value(json_object_get(s, "state"));
    int64_t id = lv_json_id(s, "id");
    if (c->base.kind == OPC_SWEEP) {
        if (id >= 0 && state) {
            char ids[32];
            snprintf(ids, sizeof ids, "%lld", (long long)id);
            opc_twin_add(&c->base, ids, id, state); /* ids rise with creation */
        }
        return 0; /* all of them, to the last page */
    }
    if (id < 0 || !state) {
        opc_fail(&c->base, "bad_response", "GET /%s: the entry named %s lacks an id or a state",
                 coll(c), c->base.run_key);
        return 1;
    }
    c->id = id;
    opc_set_state(&c->base, state);
    bt_info("livy: %s: found %s %lld (%s)", c->base.run_key, noun(c), (long long)c->id,
            c->base.state ? c->base.state : "?");
    adopt(c);
    return 1;
}

static void lookup_page(opc_call_t *oc, bt_err_t err, const bt_http_response_t *res)
{
    lv_call_t *c = lv_of(oc);
    if (res->status != 200) {
        char msg[256];
        lv_refusal(res, msg, sizeof msg);
        return opc_fail(oc, "http_error", "GET /%s: HTTP %ld: %s", coll(c), res->status, msg);
    }
    json_t *j = lv_json(c, res, c->session ? "GET /sessions" : "GET /batches");
    if (!j)
        return opc_done(oc);
    json_t *list = json_object_get(j, "sessions");
    json_t *total = json_object_get(j, "total");
    if (!json_is_array(list) || !json_is_integer(total)) {
        json_decref(j);
        return opc_fail(oc, "bad_response", "GET /%s: no \"sessions\" list or \"total\" count",
                        coll(c));
    }
    size_t i, n = json_array_size(list);
    for (i = 0; i < n; i++) {
        json_t *s = json_array_get(list, i);
        if (!json_is_object(s)) {
            json_decref(j);
            return opc_fail(oc, "bad_response", "GET /%s: an entry is not an object", coll(c));
        }
        const char *name = json_string_value(json_object_get(s, "name"));
        if (!name || strcmp(name, oc->run_key))
            continue; /* unnamed sessions are somebody else's */
        if (named_entry(c, s)) {
            json_decref(j);
            return;
        }
    }
    int64_t next = c->page_from + (int64_t)n;
    int more = n > 0 && next < (int64_t)json_integer_value(total);
    json_decref(j);
    if (more && next >= (int64_t)LV_PAGE * LV_MAX_PAGES)
        /* NOT_FOUND would let the dispatcher submit a twin of what may be
         * on a page not read: fail the attempt instead */
        return opc_fail(oc, "lookup_incomplete",
                        "GET /%s: more than %d sessions; cannot tell whether %s exists", coll(c),
                        LV_PAGE * LV_MAX_PAGES, oc->run_key);
    if (more) {
        c->page_from = next;
        return lv_chain(c, "GET", NULL, lookup_page, "listing Livy sessions",
                        "/%s?from=%lld&size=%d", coll(c), (long long)next, LV_PAGE);
    }
    if (oc->kind == OPC_SWEEP)
        return sweep_decide(c);
    if (oc->kind == OPC_SUBMIT)
        /* Livy said the name exists, and now it does not: ask again later */
        opc_set(oc, BT_OP_TRANSIENT, NULL, "Livy refused a duplicate name it does not list");
    else
        opc_set(oc, BT_OP_NOT_FOUND, NULL, "no Livy %s named %s", noun(c), oc->run_key);
    opc_done(oc);
}

bt_err_t lv_lookup(lv_call_t *c)
{
    c->page_from = 0;
    return lv_send(c, "GET", NULL, lookup_page, "listing Livy sessions", "/%s?from=0&size=%d",
                   coll(c), LV_PAGE);
}

/* ------------------------------------------------------------ submit, cancel */

static void on_created(opc_call_t *oc, bt_err_t err, const bt_http_response_t *res)
{
    lv_call_t *c = lv_of(oc);
    const char *what = oc->rq.what;
    char msg[256];
    if (res->status != 200 && res->status != 201) {
        lv_refusal(res, msg, sizeof msg);
        if (res->status == 400 && strstr(msg, "Duplicate session name")) {
            bt_info("livy: %s: Livy has a %s of this name; adopting it", oc->run_key, noun(c));
            if (lv_lookup(c) != BT_OK) {
                opc_set(oc, BT_OP_TRANSIENT, NULL, "cannot look the %s up", noun(c));
                opc_done(oc);
            }
            return;
        }
        return opc_fail(oc, "rejected", "Livy refused the %s (HTTP %ld): %s", noun(c),
                        res->status, msg);
    }
    json_t *j = lv_json(c, res, what);
    if (!j)
        return opc_done(oc);
    int64_t id = lv_json_id(j, "id");
    const char *state = json_string_value(json_object_get(j, "state"));
    if (id < 0 || !state || (c->known && !c->known(state))) {
        opc_set(oc, BT_OP_FAILED, "bad_response", "%s: the answer lacks an id or a %sstate",
                what, c->known ? "known " : "");
    } else {
        c->id = id;
        opc_set_state(oc, state);
        oc->status = BT_OP_RUNNING;
        bt_info("livy: %s: %s %lld %s (%s)", oc->run_key, noun(c), (long long)id,
                c->session ? "created" : "submitted", state);
    }
    json_decref(j);
    opc_done(oc);
}

bt_err_t lv_submit(lv_call_t *c, char *body, lv_known_fn known)
{
    c->known = known;
    bt_err_t e = body ? lv_send(c, "POST", body, on_created,
                                c->session ? "POST /sessions" : "POST /batches", "/%s", coll(c))
                      : BT_E_INVAL;
    free(body); /* the transport keeps its own copy */
    return e;
}

bt_err_t lv_delete(lv_call_t *c)
{
    if (c->id < 0) {
        opc_finish(&c->base, BT_OP_SUCCESS); /* nothing was started */
        return BT_OK;
    }
    return lv_send(c, "DELETE", NULL, lv_deleted,
                   c->session ? "DELETE /sessions/{id}" : "DELETE /batches/{id}", "/%s/%lld",
                   coll(c), (long long)c->id);
}

void lv_deleted(opc_call_t *oc, bt_err_t err, const bt_http_response_t *res)
{
    lv_call_t *c = lv_of(oc);
    if ((res->status >= 200 && res->status < 300) || res->status == 404) {
        /* a batch already gone says so; a deleted session is killed either way */
        int gone = res->status == 404 && !c->session;
        opc_set_state(oc, gone ? "gone" : "killed");
        bt_info("livy: %s: %s %lld %s", oc->run_key, noun(c), (long long)c->id,
                gone ? "was already gone" : "deleted");
        return opc_finish(oc, BT_OP_SUCCESS);
    }
    char msg[256];
    lv_refusal(res, msg, sizeof msg);
    opc_fail(oc, "http_error", "DELETE /%s/%lld: HTTP %ld: %s", coll(c), (long long)c->id,
             res->status, msg);
}

/* ------------------------------------------------------------ log tails */

static void log_page(opc_call_t *oc, bt_err_t err, const bt_http_response_t *res)
{
    lv_call_t *c = lv_of(oc);
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
        return lv_chain(c, "GET", NULL, log_page, LV_ANY, "/%s/%lld/log?from=%lld&size=%d",
                        coll(c), (long long)c->id, (long long)(start > 0 ? start : 0), LV_PAGE);
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
    opc_set_detail(oc, lv_tail(text, LV_TEXT_MAX));
    free(text);
    json_decref(j);
    return opc_done(oc);

out_note:
    json_decref(j);
    opc_set_detail(oc, note);
    opc_done(oc);
}

void lv_fetch_log_then_done(lv_call_t *c)
{
    c->log_tail_asked = 0;
    lv_chain(c, "GET", NULL, log_page, LV_ANY, "/%s/%lld/log?from=0&size=%d", coll(c),
             (long long)c->id, LV_PAGE);
}

/* ------------------------------------------------------------ the family */

static void family_free(opc_family_t *f)
{
    free(f);
}

static const opc_service_t lv_service = {
    .name = "livy",
    .call_size = sizeof(lv_call_t),
    .trouble = trouble,
    .result = result,
    .call_free = call_free,
    .family_free = family_free,
};

bt_err_t bt_livy_operators(struct ev_loop *loop, bt_http_t *http, const bt_config_t *cfg,
                           bt_operator_t **out, size_t max, size_t *n)
{
    if (!loop || !http || !cfg || !out || !n)
        return BT_E_INVAL;
    if (*n + 2 > max)
        return BT_E_INVAL;
    opc_family_t *f = calloc(1, sizeof *f);
    if (!f)
        return BT_E_NOMEM;
    opc_family_init(f, &lv_service, loop, http);
    f->insecure = cfg->http_insecure;
    f->cfg = cfg;
    /* Livy's CSRF filter wants X-Requested-By on everything but GET */
    f->headers[0] = "X-Requested-By: baton";
    f->headers[1] = "Accept: application/json";
    /* no livy.url: every task names its Livy (url:, e.g. its cluster's) */
    bt_err_t e = BT_E_NOMEM;
    if (cfg->livy_url && *cfg->livy_url && !(f->url = opc_url_trim(cfg->livy_url, 0)))
        goto err_free;
    if ((e = opc_parse_auth(cfg->livy_auth, 0, &f->userpwd, &f->auth_header)) != BT_OK) {
        bt_error("livy: livy.auth must be \"basic USER:PASSWORD\"");
        goto err_free;
    }
    uint64_t poll = cfg->livy_poll_ms ? cfg->livy_poll_ms : 2000;
    const opc_op_def_t defs[2] = {
        {"livy_batch", BATON__V1__TASK_SPEC__OPERATOR_LIVY_BATCH, poll, 1, lv_batch_start},
        {"livy_statement", BATON__V1__TASK_SPEC__OPERATOR_LIVY_STATEMENT, poll, 1,
         lv_statement_start},
    };
    opc_family_publish(f, defs, 2, out, n);
    bt_info("livy: operators livy_batch, livy_statement against %s",
            f->url ? f->url : "each task's url:");
    return BT_OK;

err_free:
    opc_family_free(f);
    return e;
}

void bt_livy_operators_free(bt_operator_t **ops, size_t n)
{
    opc_operators_free(ops, n, &lv_service);
}
