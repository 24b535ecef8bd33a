/* The Genie 3 operators (include/baton/genie.h): the request plumbing they
 * share, genie_job, and their life cycle. genie_register_cluster is in
 * genie_cluster.c, bodies and parsers in genie_json.c.
 *
 * Every operator call is one short chain of HTTP requests on the shared
 * transport, answered once, at the end of the chain, from the loop.
 *
 * Exactly-once submission rests on the id: Genie lets the client choose a
 * job's id and refuses a second job with the same id (409). The id is a
 * function of the baton cluster and the task-run key (genie_json.c), so a
 * resubmission after a takeover or an unknown outcome lands on the first
 * job: 409 means "already submitted: adopt it", and a lookup needs no search,
 * just GET /api/v3/jobs/{id}/status. The same fact makes a POST safe to
 * resend, so submits are marked idempotent and the transport retries them
 * through 5xx and broken connections.
 *
 * Every call not yet answered is on the context's `pending` list. Freeing
 * the operators orphans them (r->g = NULL): the transport still calls back
 * (bt_http_free cancels what is left), and the answer is dropped, as every
 * operator drops its answers at shutdown. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "baton/genie.h"
#include "baton/log.h"
#include "ops/genie_int.h"
#include "util/container.h"

/* ------------------------------------------------------------ plumbing */

static void req_unlink(bt_genie_req_t *r)
{
    if (r->pprev) {
        *r->pprev = r->next;
        if (r->next)
            r->next->pprev = r->pprev;
        r->pprev = NULL;
        r->next = NULL;
    }
}

void bt_genie_req_free(bt_genie_req_t *r)
{
    req_unlink(r);
    free(r->stdout_tail);
    free(r->stderr_tail);
    free(r->patch);
    free(r->name);
    for (int i = 0; i < r->n_ids; i++)
        free(r->ids[i]);
    free(r);
}

bt_genie_req_t *bt_genie_req_new(bt_genie_t *g, const bt_op_call_t *c, bt_genie_step_t step,
                                 int is_job)
{
    bt_genie_req_t *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->g = g;
    r->step = step;
    r->is_job = is_job;
    r->cb = c->cb;
    r->arg = c->arg;
    r->next = g->pending;
    if (g->pending)
        g->pending->pprev = &r->next;
    g->pending = r;
    r->pprev = &g->pending;
    return r;
}

void bt_genie_finish(bt_genie_req_t *r, bt_op_status_t st, const char *code, const char *msg,
                     const char *detail, const char *out_key, const char *out_val)
{
    Baton__V1__RemoteHandle h = BATON__V1__REMOTE_HANDLE__INIT;
    h.livy_batch_id = h.livy_session_id = h.livy_statement_id = -1;
    h.endpoint = r->g->base;
    h.remote_state = r->state;
    if (r->is_job)
        h.genie_job_id = r->id;
    int no_handle = st == BT_OP_TRANSIENT || st == BT_OP_NOT_FOUND || st == BT_OP_NOT_SENT;
    bt_op_result_t res = {.status = st,
                          .handle = no_handle ? NULL : &h,
                          .error_code = code,
                          .message = msg,
                          .detail = detail,
                          .remote_state = r->state[0] ? r->state : NULL,
                          .retry_after_ms = r->retry_after_ms};
    if (out_key) {
        res.n_outputs = 1;
        res.output_keys[0] = out_key;
        res.output_values[0] = out_val;
    }
    req_unlink(r);
    r->cb(&res, r->arg);
    bt_genie_req_free(r);
}

static void on_kick(struct ev_loop *loop, ev_timer *w, int revents)
{
    bt_genie_req_t *r = container_of(w, bt_genie_req_t, kick);
    (void)loop;
    (void)revents;
    bt_genie_finish(r, r->ans_status, r->ans_code, r->ans_msg[0] ? r->ans_msg : NULL, NULL,
                    r->ans_status == BT_OP_SUCCESS && !r->is_job ? "genie_cluster_id" : NULL,
                    "");
}

void bt_genie_answer_later(bt_genie_req_t *r, bt_op_status_t st, const char *code,
                           const char *msg)
{
    r->step = BT_GENIE_ST_ANSWER;
    r->ans_status = st;
    r->ans_code = code;
    snprintf(r->ans_msg, sizeof r->ans_msg, "%s", msg ? msg : "");
    ev_timer_init(&r->kick, on_kick, 0., 0.);
    ev_timer_start(r->g->loop, &r->kick);
}

static void on_http(bt_err_t err, const bt_http_response_t *res, void *arg);

bt_err_t bt_genie_send(bt_genie_req_t *r, const bt_genie_send_t *o)
{
    bt_genie_t *g = r->g;
    const char *headers[4];
    char ctype[96], range[64];
    int nh = 0;
    char *url = NULL;
    if (asprintf(&url, "%s%s", g->base, o->path) < 0)
        return BT_E_NOMEM;
    if (o->content_type) {
        snprintf(ctype, sizeof ctype, "Content-Type: %s", o->content_type);
        headers[nh++] = ctype;
    }
    if (g->auth_header)
        headers[nh++] = g->auth_header;
    if (o->range) {
        snprintf(range, sizeof range, "Range: %s", o->range);
        headers[nh++] = range;
    }
    headers[nh] = NULL;
    bt_http_request_t req = {
        .method = o->method,
        .url = url,
        .headers = headers,
        .body = o->body,
        .body_len = o->body ? strlen(o->body) : 0,
        .userpwd = g->userpwd,
        .max_attempts = o->max_attempts,
        .retry_budget_ms = o->budget_ms,
        .idempotent = o->idempotent,
        /* POST creates, PATCH changes a cluster, DELETE kills a job */
        .side_effect = strcmp(o->method, "GET") != 0,
        .insecure = g->insecure,
    };
    bt_err_t e = bt_http_request(g->http, &req, on_http, r);
    free(url);
    return e;
}

/* Throttling, 5xx and transport trouble, after the transport's own retries:
 * the dispatcher asks again later. */
static int transient(bt_err_t err, const bt_http_response_t *res)
{
    return err != BT_OK || !res || res->status == 0 || res->status == 429 || res->status >= 500;
}

static void finish_transient(bt_genie_req_t *r, bt_err_t err, const bt_http_response_t *res)
{
    char why[400], msg[720];
    if (err != BT_OK || !res || res->status == 0)
        snprintf(why, sizeof why, "%s", res && res->error ? res->error : bt_strerror(err));
    else
        bt_genie_error_message(res->status, res->body, res->body_len, why, sizeof why);
    snprintf(msg, sizeof msg, "genie: %s %s: %s", r->is_job ? "job" : "cluster", r->id, why);
    bt_info("%s; will ask again", msg);
    r->retry_after_ms = res ? res->retry_after_ms : 0;
    /* nothing sent, or refused before any work: a definite outcome */
    bt_genie_finish(r, res && res->unsent ? BT_OP_NOT_SENT : BT_OP_TRANSIENT, NULL, msg, NULL,
                    NULL, NULL);
}

void bt_genie_finish_rejected(bt_genie_req_t *r, const char *what, const bt_http_response_t *res)
{
    char err[400], msg[512];
    bt_genie_error_message(res->status, res->body, res->body_len, err, sizeof err);
    snprintf(msg, sizeof msg, "genie: %s rejected: %s", what, err);
    bt_warn("genie: %s: %s", r->id, msg);
    bt_genie_finish(r, BT_OP_FAILED,
                    res->status >= 400 && res->status < 500 ? "remote_rejected" : "bad_response",
                    msg, NULL, NULL, NULL);
}

void bt_genie_finish_bad(bt_genie_req_t *r, const char *reason)
{
    char msg[512];
    snprintf(msg, sizeof msg, "genie: malformed response: %s", reason);
    bt_warn("genie: %s: %s", r->id, msg);
    bt_genie_finish(r, BT_OP_FAILED, "bad_response", msg, NULL, NULL, NULL);
}

/* ------------------------------------------------------------ genie_job */

/* GET or DELETE {base}/api/v3/jobs/{id}{suffix} */
static bt_err_t job_req(bt_genie_req_t *r, const char *method, const char *suffix,
                        const char *range, uint32_t attempts)
{
    char *esc = bt_genie_url_escape(r->id), *path = NULL;
    if (!esc || asprintf(&path, "/api/v3/jobs/%s%s", esc, suffix) < 0) {
        free(esc);
        return BT_E_NOMEM;
    }
    bt_genie_send_t o = {.method = method, .path = path, .range = range, .idempotent = 1,
                         .max_attempts = attempts, .budget_ms = attempts ? 30000 : 0};
    bt_err_t e = bt_genie_send(r, &o);
    free(esc);
    free(path);
    return e;
}

static bt_err_t job_call(bt_genie_t *g, const bt_op_call_t *c, bt_genie_step_t step)
{
    const Baton__V1__RemoteHandle *h = c->run->handle;
    bt_err_t e;
    if (!c->spec->genie_job || !c->run->run_key)
        return BT_E_INVAL;
    bt_genie_req_t *r = bt_genie_req_new(g, c, step, 1);
    if (!r)
        return BT_E_NOMEM;
    /* poll and cancel prefer the stored id; submit and lookup (no handle
     * yet) and a kill before the handle was stored use the derived one */
    if (step != BT_GENIE_ST_JOB_SUBMIT && step != BT_GENIE_ST_JOB_LOOKUP && h &&
        h->genie_job_id && *h->genie_job_id)
        snprintf(r->id, sizeof r->id, "%s", h->genie_job_id);
    else
        bt_genie_uuid(g->cluster, "job", c->run->run_key, r->id);
    if (step == BT_GENIE_ST_JOB_SUBMIT) {
        char *body = bt_genie_job_body(c->spec->genie_job, r->id, g->cluster, c->run->run_key);
        if (!body) {
            bt_genie_answer_later(r, BT_OP_FAILED, "invalid_spec",
                                  "genie: cannot build the job request (a field is not valid "
                                  "UTF-8?)");
            return BT_OK;
        }
        bt_genie_send_t o = {.method = "POST", .path = "/api/v3/jobs", .body = body,
                             .content_type = "application/json", .idempotent = 1};
        e = bt_genie_send(r, &o);
        free(body);
    } else if (step == BT_GENIE_ST_JOB_CANCEL) {
        e = job_req(r, "DELETE", "", NULL, 0);
    } else {
        e = job_req(r, "GET", "/status", NULL, 3);
    }
    if (e != BT_OK)
        bt_genie_req_free(r);
    return e;
}

static bt_err_t job_submit(void *ctx, const bt_op_call_t *c)
{
    return job_call(ctx, c, BT_GENIE_ST_JOB_SUBMIT);
}

static bt_err_t job_lookup(void *ctx, const bt_op_call_t *c)
{
    return job_call(ctx, c, BT_GENIE_ST_JOB_LOOKUP);
}

static bt_err_t job_poll(void *ctx, const bt_op_call_t *c)
{
    return job_call(ctx, c, BT_GENIE_ST_JOB_POLL);
}

static bt_err_t job_cancel(void *ctx, const bt_op_call_t *c)
{
    return job_call(ctx, c, BT_GENIE_ST_JOB_CANCEL);
}

static void on_job_submit(bt_genie_req_t *r, const bt_http_response_t *res)
{
    if (bt_genie_2xx(res)) {
        snprintf(r->state, sizeof r->state, "INIT");
        bt_info("genie: job %s accepted (HTTP %ld)", r->id, res->status);
        bt_genie_finish(r, BT_OP_RUNNING, NULL, NULL, NULL, NULL, NULL);
    } else if (res->status == 409) {
        /* our id is taken: by our own earlier submission of this attempt */
        bt_info("genie: job %s already exists: adopting it", r->id);
        bt_genie_finish(r, BT_OP_RUNNING, NULL, NULL, NULL, NULL, NULL);
    } else {
        bt_genie_finish_rejected(r, "job submission", res);
    }
}

/* The failed job's log tails, then the answer. Missing files (404) and
 * empty ones (416 to a suffix range) are normal; other trouble only costs
 * the tail, never the verdict. */
static void job_failed_next(bt_genie_req_t *r)
{
    if (r->tails == 0) {
        r->step = BT_GENIE_ST_JOB_STDOUT;
        if (job_req(r, "GET", "/output/stdout", "bytes=-4096", 2) == BT_OK)
            return;
        r->tails++;
    }
    if (r->tails == 1) {
        r->step = BT_GENIE_ST_JOB_STDERR;
        if (job_req(r, "GET", "/output/stderr", "bytes=-4096", 2) == BT_OK)
            return;
        r->tails++;
    }
    char msg[300], *detail = NULL;
    snprintf(msg, sizeof msg, "genie job %s %s", r->id, r->state);
    if (asprintf(&detail, "stderr (tail):\n%s\nstdout (tail):\n%s",
                 r->stderr_tail ? r->stderr_tail : "(not fetched)",
                 r->stdout_tail ? r->stdout_tail : "(not fetched)") < 0)
        detail = NULL;
    bt_info("genie: %s", msg);
    bt_genie_finish(r, BT_OP_FAILED, "remote_failed", msg, detail, NULL, NULL);
    free(detail);
}

static char *tail_of(bt_err_t err, const bt_http_response_t *res)
{
    char buf[200];
    if (err == BT_OK && res && (res->status == 200 || res->status == 206))
        return bt_genie_tail_text(res->body, res->body_len);
    if (err == BT_OK && res && (res->status == 404 || res->status == 416))
        return strdup("(none)");
    if (err != BT_OK || !res || res->status == 0)
        snprintf(buf, sizeof buf, "(unavailable: %s)",
                 res && res->error ? res->error : bt_strerror(err));
    else
        snprintf(buf, sizeof buf, "(unavailable: HTTP %ld)", res->status);
    return strdup(buf);
}

static void on_job_status(bt_genie_req_t *r, const bt_http_response_t *res)
{
    char err[200];
    if (res->status == 404) {
        bt_genie_finish(r, BT_OP_NOT_FOUND, NULL, "genie: no such job", NULL, NULL, NULL);
        return;
    }
    if (res->status != 200) {
        bt_genie_finish_rejected(r, "job status", res);
        return;
    }
    if (bt_genie_parse_status(res->body, res->body_len, r->state, sizeof r->state, err,
                              sizeof err)) {
        r->state[0] = '\0';
        bt_genie_finish_bad(r, err);
        return;
    }
    bt_genie_phase_t ph = bt_genie_phase(r->state);
    if (r->step == BT_GENIE_ST_JOB_LOOKUP || ph == BT_GENIE_ACTIVE) {
        /* a lookup adopts whatever it finds; the next poll reports the end */
        if (r->step == BT_GENIE_ST_JOB_LOOKUP)
            bt_info("genie: found job %s (%s): adopting it", r->id, r->state);
        bt_genie_finish(r, BT_OP_RUNNING, NULL, NULL, NULL, NULL, NULL);
    } else if (ph == BT_GENIE_SUCCEEDED) {
        bt_genie_finish(r, BT_OP_SUCCESS, NULL, NULL, NULL, "genie_job_id", r->id);
    } else {
        job_failed_next(r);
    }
}

static void on_job_cancel(bt_genie_req_t *r, const bt_http_response_t *res)
{
    /* gone (404) or already finished (409/412, by version) is what we want */
    if (bt_genie_2xx(res) || res->status == 404 || res->status == 409 || res->status == 412) {
        snprintf(r->state, sizeof r->state, "%s", bt_genie_2xx(res) ? "KILLED" : "FINISHED");
        bt_info("genie: kill of job %s: HTTP %ld", r->id, res->status);
        bt_genie_finish(r, BT_OP_SUCCESS, NULL, NULL, NULL, NULL, NULL);
    } else {
        bt_genie_finish_rejected(r, "job kill", res);
    }
}

static void on_http(bt_err_t err, const bt_http_response_t *res, void *arg)
{
    bt_genie_req_t *r = arg;
    if (!r->g) { /* the operators are gone: drop the answer */
        bt_genie_req_free(r);
        return;
    }
    if (r->step == BT_GENIE_ST_JOB_STDOUT || r->step == BT_GENIE_ST_JOB_STDERR) {
        char **slot = r->step == BT_GENIE_ST_JOB_STDOUT ? &r->stdout_tail : &r->stderr_tail;
        *slot = tail_of(err, res);
        r->tails++;
        job_failed_next(r);
        return;
    }
    if (transient(err, res)) {
        finish_transient(r, err, res);
        return;
    }
    switch (r->step) {
    case BT_GENIE_ST_JOB_SUBMIT:
        on_job_submit(r, res);
        break;
    case BT_GENIE_ST_JOB_LOOKUP:
    case BT_GENIE_ST_JOB_POLL:
        on_job_status(r, res);
        break;
    case BT_GENIE_ST_JOB_CANCEL:
        on_job_cancel(r, res);
        break;
    default:
        bt_genie_cluster_answer(r, res);
        break;
    }
}

/* ------------------------------------------------------------ clusters */

static bt_err_t cl_submit(void *ctx, const bt_op_call_t *c)
{
    return bt_genie_cluster_call(ctx, c, BT_GENIE_SUBMIT);
}

static bt_err_t cl_lookup(void *ctx, const bt_op_call_t *c)
{
    return bt_genie_cluster_call(ctx, c, BT_GENIE_LOOKUP);
}

static bt_err_t cl_poll(void *ctx, const bt_op_call_t *c)
{
    return bt_genie_cluster_call(ctx, c, BT_GENIE_POLL);
}

static bt_err_t cl_cancel(void *ctx, const bt_op_call_t *c)
{
    return bt_genie_cluster_call(ctx, c, BT_GENIE_CANCEL);
}

/* ------------------------------------------------------------ life cycle */

/* "basic USER:PASSWORD" -> curl's userpwd; "bearer TOKEN" -> a header. A
 * line break would let the token inject headers: refused. */
static bt_err_t parse_auth(bt_genie_t *g, const char *auth)
{
    const char *v;
    if (!auth || !*auth)
        return BT_OK;
    if (strpbrk(auth, "\r\n"))
        return BT_E_CONFIG;
    if (!strncasecmp(auth, "basic ", 6)) {
        for (v = auth + 6; *v == ' '; v++)
            ;
        if (!strchr(v, ':'))
            return BT_E_CONFIG;
        return (g->userpwd = strdup(v)) ? BT_OK : BT_E_NOMEM;
    }
    if (!strncasecmp(auth, "bearer ", 7)) {
        for (v = auth + 7; *v == ' '; v++)
            ;
        if (!*v)
            return BT_E_CONFIG;
        return asprintf(&g->auth_header, "Authorization: Bearer %s", v) < 0 ? BT_E_NOMEM
                                                                            : BT_OK;
    }
    return BT_E_CONFIG;
}

static void genie_free(bt_genie_t *g)
{
    while (g->pending) {
        bt_genie_req_t *r = g->pending;
        req_unlink(r);
        if (r->step == BT_GENIE_ST_ANSWER) {
            ev_timer_stop(g->loop, &r->kick);
            bt_genie_req_free(r);
        } else {
            r->g = NULL; /* the transport still owes it a callback */
        }
    }
    free(g->base);
    free(g->cluster);
    free(g->userpwd);
    free(g->auth_header);
    free(g);
}

bt_err_t bt_genie_operators(struct ev_loop *loop, bt_http_t *http, const bt_config_t *cfg,
                            bt_operator_t **out, size_t max, size_t *n)
{
    if (!cfg->genie_url || !*cfg->genie_url)
        return BT_OK;
    if (!http || *n + 2 > max)
        return BT_E_INVAL;
    bt_genie_t *g = calloc(1, sizeof *g);
    if (!g)
        return BT_E_NOMEM;
    g->loop = loop;
    g->http = http;
    g->insecure = cfg->http_insecure;
    g->base = strdup(cfg->genie_url);
    g->cluster = strdup(cfg->cluster ? cfg->cluster : "");
    bt_err_t e = g->base && g->cluster ? parse_auth(g, cfg->genie_auth) : BT_E_NOMEM;
    if (e != BT_OK) {
        if (e == BT_E_CONFIG)
            bt_error("genie: auth must be \"basic USER:PASSWORD\" or \"bearer TOKEN\"");
        genie_free(g);
        return e;
    }
    for (size_t len = strlen(g->base); len > 0 && g->base[len - 1] == '/'; len--)
        g->base[len - 1] = '\0';
    g->job_op = (bt_operator_t){
        .name = "genie_job",
        .which = BATON__V1__TASK_SPEC__OPERATOR_GENIE_JOB,
        .max_calls = BT_OP_HTTP_MAX_CALLS,
        .poll_interval_ms = cfg->genie_poll_ms ? cfg->genie_poll_ms : 2000,
        .submit = job_submit,
        .lookup = job_lookup,
        .poll = job_poll,
        .cancel = job_cancel,
        .ctx = g,
    };
    g->cluster_op = (bt_operator_t){
        .name = "genie_register_cluster",
        .which = BATON__V1__TASK_SPEC__OPERATOR_GENIE_REGISTER_CLUSTER,
        .max_calls = BT_OP_HTTP_MAX_CALLS,
        .poll_interval_ms = cfg->genie_poll_ms ? cfg->genie_poll_ms : 2000,
        .submit = cl_submit,
        .lookup = cl_lookup,
        .poll = cl_poll,
        .cancel = cl_cancel,
        .ctx = g,
    };
    out[(*n)++] = &g->job_op;
    out[(*n)++] = &g->cluster_op;
    bt_info("genie: operators for %s (%s)", g->base,
            g->userpwd ? "basic auth" : g->auth_header ? "bearer token" : "no auth");
    return BT_OK;
}

static int is_genie(const bt_operator_t *op)
{
    return op && (op->submit == job_submit || op->submit == cl_submit);
}

void bt_genie_operators_free(bt_operator_t **ops, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!is_genie(ops[i]))
            continue;
        bt_genie_t *g = ops[i]->ctx;
        /* both operators live inside g: forget them all before it goes */
        for (size_t j = i; j < n; j++)
            if (is_genie(ops[j]) && ops[j]->ctx == g)
                ops[j] = NULL;
        genie_free(g);
    }
}
