/* The life of one operator call, once for every HTTP service family (the
 * contract is in op_call.h):
 *
 *   entry (submit/lookup/poll/cancel/sweep) -> the operator's start ->
 *   [prepare ->] request -> step -> [request -> step ...] -> one answer
 *
 * A call is on its family's list from the entry to its answer. It is
 * idle (inside the entry, between requests, or while the service prepares
 * a request), in HTTP (the transport owes it a callback), or answered and
 * waiting for its zero timer. Freeing the family frees the idle and the
 * answered ones and orphans those in HTTP: their callback frees them.
 *
 * Trouble, after the transport's own retries, is the core's to answer:
 *   no answer, 429, 5xx, svc->throttled   -> TRANSIENT: ask again later
 *   ... when the response says `unsent`   -> NOT_SENT: nothing can have
 *                                            happened (the gate refused a
 *                                            side effect, or every attempt
 *                                            was refused before any work)
 * unless the request was sent with `any` (a log tail, a cleanup whose
 * failure only costs a note): then the step sees it all. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "baton/log.h"
#include "ops/op_call.h"
#include "util/container.h"

enum { OPC_IDLE, OPC_HTTP, OPC_QUEUED };

/* ------------------------------------------------------------ calls */

static void unlink_call(opc_call_t *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else if (c->fam && c->fam->calls == c)
        c->fam->calls = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

static void free_request(opc_req_t *rq, int all)
{
    free((char *)rq->path);
    free((char *)rq->body);
    free((char *)rq->header);
    rq->path = rq->body = rq->header = NULL;
    if (all) {
        free((char *)rq->what);
        rq->what = NULL;
    }
}

static void call_free(opc_call_t *c)
{
    if (c->svc->call_free)
        c->svc->call_free(c);
    free_request(&c->rq, 1);
    free(c->run_key);
    free(c->code);
    free(c->msg);
    free(c->detail);
    free(c->state);
    for (size_t i = 0; i < c->n_out; i++) {
        free(c->out_keys[i]);
        free(c->out_vals[i]);
    }
    free(c->twins);
    free(c->own_url);
    free(c->userpwd);
    free(c->auth_header);
    json_decref(c->reply);
    free(c);
}

/* Frees a call that owes no answer; one whose request is in flight (which
 * a start that fails should not leave) is orphaned instead. */
static void drop(opc_call_t *c)
{
    ev_timer_stop(c->fam->loop, &c->later);
    unlink_call(c);
    c->fam = NULL;
    if (c->where != OPC_HTTP)
        call_free(c);
}

static void deliver(opc_call_t *c)
{
    Baton__V1__RemoteHandle h = BATON__V1__REMOTE_HANDLE__INIT;
    bt_op_result_t r = {.status = c->status,
                        .error_code = c->code,
                        .message = c->msg,
                        .detail = c->detail,
                        .remote_state = c->state,
                        .retry_after_ms = c->retry_after_ms,
                        .duplicates = c->duplicates,
                        .twins = c->ntwins ? (unsigned)c->ntwins - 1 : 0,
                        .n_outputs = c->n_out};
    h.livy_batch_id = h.livy_session_id = h.livy_statement_id = -1;
    h.endpoint = (char *)c->url;
    h.remote_state = c->state ? c->state : "";
    for (size_t i = 0; i < c->n_out; i++) {
        r.output_keys[i] = c->out_keys[i];
        r.output_values[i] = c->out_vals[i];
    }
    if (c->svc->result)
        c->svc->result(c, &r, &h);
    ev_timer_stop(c->fam->loop, &c->later);
    unlink_call(c);
    c->cb(&r, c->arg);
    call_free(c);
}

static void on_later(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    deliver(container_of(w, opc_call_t, later));
}

void opc_done(opc_call_t *c)
{
    if (!c->in_entry) {
        deliver(c);
        return;
    }
    c->where = OPC_QUEUED;
    ev_timer_start(c->fam->loop, &c->later);
}

void opc_finish(opc_call_t *c, bt_op_status_t st)
{
    c->status = st;
    opc_done(c);
}

int opc_answered(const opc_call_t *c)
{
    return c->where == OPC_QUEUED;
}

/* ------------------------------------------------------------ entries */

static bt_err_t entry(void *ctx, opc_kind_t kind, const bt_op_call_t *oc)
{
    opc_op_t *o = ctx;
    return opc_start(o->fam, kind, oc, o->start);
}

bt_err_t opc_start(opc_family_t *f, opc_kind_t kind, const bt_op_call_t *oc, opc_start_fn start)
{
    if (!oc || !oc->spec || !oc->run)
        return BT_E_INVAL;
    opc_call_t *c = calloc(1, f->svc->call_size);
    if (!c)
        return BT_E_NOMEM;
    c->fam = f;
    c->svc = f->svc;
    c->kind = kind;
    c->which = oc->spec->operator_case;
    c->url = f->url;
    c->cb = oc->cb;
    c->arg = oc->arg;
    c->keep_first = oc->run->state == BATON__V1__TASK_STATE__TASK_STATE_RUNNING;
    c->status = BT_OP_TRANSIENT;
    c->in_entry = 1;
    ev_timer_init(&c->later, on_later, 0., 0.);
    c->next = f->calls;
    if (f->calls)
        f->calls->prev = c;
    f->calls = c;
    bt_err_t e = (c->run_key = strdup(oc->run->run_key ? oc->run->run_key : ""))
                     ? start(c, oc)
                     : BT_E_NOMEM;
    if (e != BT_OK) {
        drop(c); /* nothing was sent: no answer will come */
        return e;
    }
    c->in_entry = 0;
    return BT_OK;
}

static bt_err_t e_submit(void *ctx, const bt_op_call_t *oc)
{
    return entry(ctx, OPC_SUBMIT, oc);
}

static bt_err_t e_lookup(void *ctx, const bt_op_call_t *oc)
{
    return entry(ctx, OPC_LOOKUP, oc);
}

static bt_err_t e_poll(void *ctx, const bt_op_call_t *oc)
{
    return entry(ctx, OPC_POLL, oc);
}

static bt_err_t e_cancel(void *ctx, const bt_op_call_t *oc)
{
    return entry(ctx, OPC_CANCEL, oc);
}

static bt_err_t e_sweep(void *ctx, const bt_op_call_t *oc)
{
    return entry(ctx, OPC_SWEEP, oc);
}

/* ------------------------------------------------------------ the family */

void opc_family_init(opc_family_t *f, const opc_service_t *svc, struct ev_loop *loop,
                     bt_http_t *http)
{
    f->svc = svc;
    f->loop = loop;
    f->http = http;
}

bt_err_t opc_parse_auth(const char *auth, int bearer_ok, char **userpwd, char **header)
{
    const char *v;
    *userpwd = *header = NULL;
    if (!auth || !*auth)
        return BT_OK;
    if (strpbrk(auth, "\r\n"))
        return BT_E_CONFIG;
    if (!strncasecmp(auth, "basic ", 6)) {
        for (v = auth + 6; *v == ' '; v++)
            ;
        if (!strchr(v, ':'))
            return BT_E_CONFIG;
        return (*userpwd = strdup(v)) ? BT_OK : BT_E_NOMEM;
    }
    if (bearer_ok && !strncasecmp(auth, "bearer ", 7)) {
        for (v = auth + 7; *v == ' '; v++)
            ;
        if (!*v)
            return BT_E_CONFIG;
        if (asprintf(header, "Authorization: Bearer %s", v) < 0) {
            *header = NULL;
            return BT_E_NOMEM;
        }
        return BT_OK;
    }
    return BT_E_CONFIG;
}

/* An endpoint a task may name: http(s)://, a host, nothing that would
 * change the request line. */
static int url_ok(const char *u)
{
    size_t skip = !strncmp(u, "http://", 7) ? 7 : !strncmp(u, "https://", 8) ? 8 : 0;
    if (!skip || !u[skip] || u[skip] == '/' || strlen(u) > 1024)
        return 0;
    for (const unsigned char *p = (const unsigned char *)u; *p; p++)
        if (*p <= ' ' || *p == 0x7f || *p == '?' || *p == '#')
            return 0;
    return 1;
}

int opc_use_endpoint(opc_call_t *c, const bt_op_call_t *call, const char *url, const char *auth,
                     int bearer_ok)
{
    const Baton__V1__RemoteHandle *h = call->run->handle;
    const char *where = h && h->endpoint && *h->endpoint && c->kind != OPC_SUBMIT &&
                                c->kind != OPC_LOOKUP
                            ? h->endpoint
                            : url && *url ? url
                                          : NULL;
    if (where) {
        if (!url_ok(where)) {
            opc_fail(c, "bad_spec", "url: '%.120s' is not an http:// or https:// URL", where);
            return -1;
        }
        if (!(c->own_url = opc_url_trim(where, 8))) {
            opc_fail(c, "bad_spec", "out of memory");
            return -1;
        }
        c->url = c->own_url;
    }
    if (!c->url || !*c->url) {
        opc_fail(c, "bad_spec", "no %s URL: give the task url: or set %s.url in batond.yaml",
                 c->svc->name, c->svc->name);
        return -1;
    }
    if (!auth || !*auth)
        return 0;
    const char *cred = bt_config_credential(c->fam->cfg, auth);
    if (!cred) {
        opc_fail(c, "bad_spec", "auth: '%.80s' is not a credential in batond.yaml", auth);
        return -1;
    }
    bt_err_t e = opc_parse_auth(cred, bearer_ok, &c->userpwd, &c->auth_header);
    if (e != BT_OK) {
        opc_fail(c, "bad_spec", "auth: credential '%.80s' %s", auth,
                 e == BT_E_NOMEM ? "could not be read (out of memory)"
                                 : "is not a kind this service takes");
        return -1;
    }
    return 0;
}

char *opc_url_trim(const char *url, size_t keep)
{
    if (!url)
        return NULL;
    char *s = strdup(url);
    for (size_t len = s ? strlen(s) : 0; len > keep && s[len - 1] == '/';)
        s[--len] = '\0';
    return s;
}

void opc_family_publish(opc_family_t *f, const opc_op_def_t *defs, size_t ndefs,
                        bt_operator_t **out, size_t *n)
{
    for (size_t i = 0; i < ndefs && f->nops < OPC_MAX_OPS; i++) {
        opc_op_t *o = &f->ops[f->nops++];
        o->fam = f;
        o->start = defs[i].start;
        o->op = (bt_operator_t){
            .name = defs[i].name,
            .which = defs[i].which,
            .poll_interval_ms = defs[i].poll_interval_ms,
            .max_calls = BT_OP_HTTP_MAX_CALLS,
            .submit = e_submit,
            .lookup = e_lookup,
            .poll = e_poll,
            .cancel = e_cancel,
            .sweep = defs[i].sweeps ? e_sweep : NULL,
            .ctx = o,
        };
        out[(*n)++] = &o->op;
    }
}

void opc_family_free(opc_family_t *f)
{
    size_t n = 0;
    for (opc_call_t *c = f->calls; c; c = c->next)
        n++;
    if (n)
        bt_info("%s: shutting down with %zu call(s) unanswered; abandoned", f->svc->name, n);
    while (f->calls)
        drop(f->calls); /* those in HTTP are freed by their answer */
    free(f->url);
    free(f->userpwd);
    free(f->auth_header);
    f->svc->family_free(f);
}

static opc_family_t *family_of(const bt_operator_t *op, const opc_service_t *svc);

opc_family_t *opc_family_find(bt_operator_t *const *ops, size_t n, const opc_service_t *svc)
{
    for (size_t i = 0; ops && i < n; i++) {
        opc_family_t *f = family_of(ops[i], svc);
        if (f)
            return f;
    }
    return NULL;
}

static opc_family_t *family_of(const bt_operator_t *op, const opc_service_t *svc)
{
    if (!op || op->submit != e_submit)
        return NULL;
    opc_family_t *f = ((opc_op_t *)op->ctx)->fam;
    return f->svc == svc ? f : NULL;
}

void opc_operators_free(bt_operator_t **ops, size_t n, const opc_service_t *svc)
{
    for (size_t i = 0; i < n; i++) {
        opc_family_t *f = family_of(ops[i], svc);
        if (!f)
            continue;
        /* the operators live inside f: forget them all before it goes */
        for (size_t j = i; j < n; j++)
            if (family_of(ops[j], svc) == f)
                ops[j] = NULL;
        opc_family_free(f);
    }
}

/* ------------------------------------------------------------ the answer */

static void vset(char **slot, const char *fmt, va_list ap)
{
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    free(*slot);
    *slot = s;
}

void opc_strset(char **slot, const char *v)
{
    free(*slot);
    *slot = v ? strdup(v) : NULL;
}

void opc_set(opc_call_t *c, bt_op_status_t st, const char *code, const char *fmt, ...)
{
    va_list ap;
    c->status = st;
    opc_strset(&c->code, code);
    va_start(ap, fmt);
    vset(&c->msg, fmt, ap);
    va_end(ap);
}

void opc_fail(opc_call_t *c, const char *code, const char *fmt, ...)
{
    va_list ap;
    c->status = BT_OP_FAILED;
    opc_strset(&c->code, code);
    va_start(ap, fmt);
    vset(&c->msg, fmt, ap);
    va_end(ap);
    opc_done(c);
}

void opc_set_state(opc_call_t *c, const char *state)
{
    opc_strset(&c->state, state);
}

void opc_set_detail(opc_call_t *c, const char *text)
{
    opc_strset(&c->detail, text);
}

void opc_output(opc_call_t *c, const char *key, const char *value)
{
    if (c->n_out >= OPC_MAX_OUT)
        return;
    char *k = strdup(key), *v = strdup(value ? value : "");
    if (!k || !v) {
        free(k);
        free(v);
        return;
    }
    c->out_keys[c->n_out] = k;
    c->out_vals[c->n_out++] = v;
}

/* ------------------------------------------------------------ requests */

static int is_trouble(const opc_call_t *c, bt_err_t err, const bt_http_response_t *res)
{
    if (err != BT_OK || !res || res->status == 0 || res->status == 429 || res->status >= 500)
        return 1;
    return c->svc->throttled && c->svc->throttled(res);
}

/* Ask again later: TRANSIENT, or NOT_SENT when nothing can have happened. */
static void answer_trouble(opc_call_t *c, bt_err_t err, const bt_http_response_t *res)
{
    char msg[800];
    c->svc->trouble(c, err, res, msg, sizeof msg);
    c->retry_after_ms = res ? res->retry_after_ms : 0;
    opc_set(c, res && res->unsent ? BT_OP_NOT_SENT : BT_OP_TRANSIENT, NULL, "%s", msg);
    bt_info("%s: %s: %s; will ask again", c->svc->name, c->run_key, msg);
    opc_done(c);
}

static void on_http(bt_err_t err, const bt_http_response_t *res, void *arg)
{
    opc_call_t *c = arg;
    c->where = OPC_IDLE;
    if (!c->fam) {
        call_free(c); /* orphan: the family is gone, nobody to answer */
        return;
    }
    json_decref(c->reply);
    c->reply = NULL;
    if (!c->rq.any && is_trouble(c, err, res)) {
        answer_trouble(c, err, res);
        return;
    }
    if (!c->rq.any && c->svc->parse) {
        json_t *reply = c->svc->parse(c, res);
        if (!reply)
            return; /* answered: c is gone */
        c->reply = reply;
    }
    c->step(c, err, res);
}

static bt_err_t transmit(opc_call_t *c, const opc_auth_t *auth)
{
    opc_family_t *f = c->fam;
    const opc_req_t *rq = &c->rq;
    const char *headers[9];
    char ctype[128], *url = NULL;
    size_t nh = 0;
    for (size_t i = 0; f->headers[i] && nh < 4; i++)
        headers[nh++] = f->headers[i];
    /* a task that names its credential sends it instead of the family's */
    int own = c->userpwd || c->auth_header;
    const char *authz = own ? c->auth_header : f->auth_header;
    if (authz)
        headers[nh++] = authz;
    if (rq->content_type) {
        snprintf(ctype, sizeof ctype, "Content-Type: %s", rq->content_type);
        headers[nh++] = ctype;
    }
    if (rq->header)
        headers[nh++] = rq->header;
    if (auth && auth->header)
        headers[nh++] = auth->header;
    headers[nh] = NULL;
    if (asprintf(&url, "%s%s", c->url, rq->path ? rq->path : "") < 0)
        return BT_E_NOMEM;
    bt_http_request_t req = {
        .method = rq->method,
        .url = url,
        .headers = headers,
        .body = rq->body,
        .body_len = rq->body ? strlen(rq->body) : 0,
        .aws_sigv4 = auth ? auth->aws_sigv4 : NULL,
        .aws_access_key = auth ? auth->aws_access_key : NULL,
        .aws_secret_key = auth ? auth->aws_secret_key : NULL,
        .userpwd = own ? c->userpwd : f->userpwd,
        .timeout_ms = rq->timeout_ms,
        .max_attempts = rq->max_attempts,
        .retry_budget_ms = rq->budget_ms,
        .idempotent = rq->idempotent,
        .side_effect = rq->side_effect,
        .aws_throttling = f->aws_throttling,
        .insecure = f->insecure,
        .max_body = rq->max_body,
    };
    bt_err_t e = bt_http_request(f->http, &req, on_http, c);
    free(url);
    free_request(&c->rq, 0); /* the transport has its own copy */
    if (e == BT_OK)
        c->where = OPC_HTTP;
    return e;
}

static const char *dup_or_null(const char *s, int *bad)
{
    char *d = s ? strdup(s) : NULL;
    *bad |= s && !d;
    return d;
}

bt_err_t opc_send(opc_call_t *c, const opc_req_t *rq, opc_step_fn step)
{
    int bad = 0;
    opc_req_t copy = *rq; /* copied before the last one goes: rq may point into it */
    copy.what = dup_or_null(rq->what ? rq->what : rq->method, &bad);
    copy.path = dup_or_null(rq->path, &bad);
    copy.body = dup_or_null(rq->body, &bad);
    copy.header = dup_or_null(rq->header, &bad);
    free_request(&c->rq, 1);
    c->rq = copy;
    c->step = step;
    if (bad)
        return BT_E_NOMEM;
    return c->svc->prepare ? c->svc->prepare(c) : transmit(c, NULL);
}

void opc_unsent(opc_call_t *c, const char *what, bt_err_t e)
{
    opc_set(c, BT_OP_NOT_SENT, NULL, "%s: cannot send: %s", what, bt_strerror(e));
    opc_done(c);
}

void opc_prepared(opc_call_t *c, const opc_auth_t *auth)
{
    bt_err_t e = transmit(c, auth);
    if (e != BT_OK)
        opc_unsent(c, c->rq.what, e);
}

/* ------------------------------------------------------------ sweeps */

void opc_twin_add(opc_call_t *c, const char *id, int64_t created_ms, const char *state)
{
    if (!c->twins && !(c->twins = calloc(OPC_SWEEP_MAX, sizeof *c->twins)))
        return;
    if (c->ntwins == OPC_SWEEP_MAX)
        return;
    opc_twin_t *t = &c->twins[c->ntwins++];
    snprintf(t->id, sizeof t->id, "%s", id);
    t->created_ms = created_ms;
    snprintf(t->state, sizeof t->state, "%s", state ? state : "");
}

const opc_twin_t *opc_twin_keep(opc_call_t *c, const char *recorded)
{
    const opc_twin_t *k = c->twins;
    c->twin_i = 0;
    for (size_t i = 0; i < c->ntwins; i++) {
        const opc_twin_t *t = &c->twins[i];
        if (!c->keep_first && recorded && !strcmp(t->id, recorded)) {
            k = t;
            break;
        }
        if (t->created_ms < k->created_ms ||
            (t->created_ms == k->created_ms && strcmp(t->id, k->id) < 0))
            k = t;
    }
    if (!c->ntwins)
        return NULL;
    if (recorded && strcmp(recorded, k->id))
        bt_warn("%s: %s: keeping %s, created first, instead of %s", c->svc->name, c->run_key,
                k->id, recorded);
    return k;
}

const opc_twin_t *opc_twin_next(opc_call_t *c, const char *kept, int (*ended)(const char *),
                                const char *noun)
{
    while (c->twin_i < c->ntwins) {
        const opc_twin_t *t = &c->twins[c->twin_i++];
        if (!strcmp(t->id, kept) || ended(t->state))
            continue;
        bt_warn("%s: %s: %s %s carries this run key too (%s): cancelling it", c->svc->name,
                c->run_key, noun, t->id, t->state);
        c->duplicates++;
        return t;
    }
    return NULL;
}
