/* The Genie 3 operators (include/baton/genie.h): their family, the
 * requests and answers both share, and genie_job. genie_register_cluster
 * is in genie_cluster.c, bodies and parsers in genie_json.c; the life of a
 * call is op_call.c's.
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
 * through 5xx and broken connections. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "baton/genie.h"
#include "baton/log.h"
#include "ops/genie_int.h"

/* ------------------------------------------------------------ calls */

genie_call_t *genie_call_init(opc_call_t *oc, int is_job)
{
    genie_call_t *c = genie_of(oc);
    c->g = container_of(oc->fam, genie_t, fam);
    c->is_job = is_job;
    return c;
}

static void call_free(opc_call_t *oc)
{
    genie_call_t *c = genie_of(oc);
    free(c->stdout_tail);
    free(c->stderr_tail);
    free(c->patch);
    free(c->name);
    for (int i = 0; i < c->n_ids; i++)
        free(c->ids[i]);
    json_decref(c->cmd_ids);
    json_decref(c->cmd_queries);
}

void genie_set_state(genie_call_t *c, const char *state)
{
    char s[32];
    snprintf(s, sizeof s, "%s", state ? state : "");
    opc_set_state(&c->base, s[0] ? s : NULL);
}

/* A handle with every definite answer; the job's id in it. */
static void result(opc_call_t *oc, bt_op_result_t *r, Baton__V1__RemoteHandle *h)
{
    genie_call_t *c = genie_of(oc);
    if (c->is_job)
        h->genie_job_id = c->id;
    if (oc->status != BT_OP_TRANSIENT && oc->status != BT_OP_NOT_FOUND &&
        oc->status != BT_OP_NOT_SENT)
        r->handle = h;
}

/* ------------------------------------------------------------ requests */

bt_err_t genie_send(genie_call_t *c, const genie_send_t *o, opc_step_fn step)
{
    char range[64];
    if (o->range)
        snprintf(range, sizeof range, "Range: %s", o->range);
    opc_req_t rq = {
        .method = o->method,
        .path = o->path,
        .body = o->body,
        .content_type = o->content_type,
        .header = o->range ? range : NULL,
        .max_attempts = o->max_attempts,
        .budget_ms = o->budget_ms,
        .idempotent = 1,
        /* POST creates, PATCH changes a cluster, DELETE kills a job */
        .side_effect = strcmp(o->method, "GET") != 0,
        .any = o->any,
    };
    return opc_send(&c->base, &rq, step);
}

/* Throttling, 5xx and transport trouble, after the transport's own retries:
 * the dispatcher asks again later. */
static void trouble(opc_call_t *oc, bt_err_t err, const bt_http_response_t *res, char *msg,
                    size_t len)
{
    genie_call_t *c = genie_of(oc);
    char why[400];
    if (err != BT_OK || !res || res->status == 0)
        snprintf(why, sizeof why, "%s", res && res->error ? res->error : bt_strerror(err));
    else
        genie_error_message(res->status, res->body, res->body_len, why, sizeof why);
    snprintf(msg, len, "genie: %s %s: %s", c->is_job ? "job" : "cluster", c->id, why);
}

void genie_rejected(genie_call_t *c, const char *what, const bt_http_response_t *res)
{
    char err[400], msg[512];
    genie_error_message(res->status, res->body, res->body_len, err, sizeof err);
    snprintf(msg, sizeof msg, "genie: %s rejected: %s", what, err);
    bt_warn("genie: %s: %s", c->id, msg);
    opc_fail(&c->base,
             res->status >= 400 && res->status < 500 ? "remote_rejected" : "bad_response", "%s",
             msg);
}

int genie_got(genie_call_t *c, const bt_http_response_t *res, const char *what,
              const char *none)
{
    if (res->status == 404) {
        opc_set(&c->base, BT_OP_NOT_FOUND, NULL, "%s", none);
        opc_done(&c->base);
    } else if (res->status != 200) {
        genie_rejected(c, what, res);
    }
    return res->status != 200;
}

void genie_bad(genie_call_t *c, const char *reason)
{
    char msg[512];
    snprintf(msg, sizeof msg, "genie: malformed response: %s", reason);
    bt_warn("genie: %s: %s", c->id, msg);
    opc_fail(&c->base, "bad_response", "%s", msg);
}

/* ------------------------------------------------------------ genie_job */

/* GET or DELETE {base}/api/v3/jobs/{id}{suffix} */
static bt_err_t job_req(genie_call_t *c, const char *method, const char *suffix,
                        const char *range, uint32_t attempts, opc_step_fn step)
{
    char *esc = genie_url_escape(c->id), *path = NULL;
    if (!esc || asprintf(&path, "/api/v3/jobs/%s%s", esc, suffix) < 0) {
        free(esc);
        return BT_E_NOMEM;
    }
    /* a ranged GET is a log tail: its step sees every outcome */
    genie_send_t o = {.method = method, .path = path, .range = range,
                      .max_attempts = attempts, .budget_ms = attempts ? 30000 : 0,
                      .any = range != NULL};
    bt_err_t e = genie_send(c, &o, step);
    free(esc);
    free(path);
    return e;
}

static void on_job_submit(opc_call_t *oc, bt_err_t err, const bt_http_response_t *res)
{
    genie_call_t *c = genie_of(oc);
    if (genie_2xx(res)) {
        genie_set_state(c, "INIT");
        bt_info("genie: job %s accepted (HTTP %ld)", c->id, res->status);
        opc_finish(oc, BT_OP_RUNNING);
    } else if (res->status == 409) {
        /* our id is taken: by our own earlier submission of this attempt */
        bt_info("genie: job %s already exists: adopting it", c->id);
        opc_finish(oc, BT_OP_RUNNING);
    } else {
        genie_rejected(c, "job submission", res);
    }
}

static void on_tail(opc_call_t *oc, bt_err_t err, const bt_http_response_t *res);

/* The failed job's log tails, then the answer. Missing files (404) and
 * empty ones (416 to a suffix range) are normal; other trouble only costs
 * the tail, never the verdict. */
static void job_failed_next(genie_call_t *c)
{
    if (c->tails == 0) {
        if (job_req(c, "GET", "/output/stdout", "bytes=-4096", 2, on_tail) == BT_OK)
            return;
        c->tails++;
    }
    if (c->tails == 1) {
        if (job_req(c, "GET", "/output/stderr", "bytes=-4096", 2, on_tail) == BT_OK)
            return;
        c->tails++;
    }
    char msg[300], *detail = NULL;
    snprintf(msg, sizeof msg, "genie job %s %s", c->id, c->base.state ? c->base.state : "");
    if (asprintf(&detail, "stderr (tail):\n%s\nstdout (tail):\n%s",
                 c->stderr_tail ? c->stderr_tail : "(not fetched)",
                 c->stdout_tail ? c->stdout_tail : "(not fetched)") < 0)
        detail = NULL;
    bt_info("genie: %s", msg);
    opc_set_detail(&c->base, detail);
    free(detail);
    opc_fail(&c->base, "remote_failed", "%s", msg);
}

static char *tail_of(bt_err_t err, const bt_http_response_t *res)
{
    char buf[200];
    if (err == BT_OK && res && (res->status == 200 || res->status == 206))
        return genie_tail_text(res->body, res->body_len);
    if (err == BT_OK && res && (res->status == 404 || res->status == 416))
        return strdup("(none)");
    if (err != BT_OK || !res || res->status == 0)
        snprintf(buf, sizeof buf, "(unavailable: %s)",
                 res && res->error ? res->error : bt_strerror(err));
    else
        snprintf(buf, sizeof buf, "(unavailable: HTTP %ld)", res->status);
    return strdup(buf);
}

/* The answer to GET .../output/stdout, then .../output/stderr. */
static void on_tail(opc_call_t *oc, bt_err_t err, const bt_http_response_t *res)
{
    genie_call_t *c = genie_of(oc);
    char **slot = c->tails == 0 ? &c->stdout_tail : &c->stderr_tail;
    *slot = tail_of(err, res);
    c->tails++;
    job_failed_next(c);
}

static void on_job_status(opc_call_t *oc, bt_err_t err, const bt_http_response_t *res)
{
    genie_call_t *c = genie_of(oc);
    char err_text[200], state[32] = "";
    if (genie_got(c, res, "job status", "genie: no such job"))
        return;
    if (genie_parse_status(res->body, res->body_len, state, sizeof state, err_text,
                           sizeof err_text))
        return genie_bad(c, err_text);
    genie_set_state(c, state);
    genie_phase_t ph = genie_phase(state);
    if (oc->kind == OPC_LOOKUP || ph == GENIE_ACTIVE) {
        /* a lookup adopts whatever it finds; the next poll reports the end */
        if (oc->kind == OPC_LOOKUP)
            bt_info("genie: found job %s (%s): adopting it", c->id, state);
        opc_finish(oc, BT_OP_RUNNING);
    } else if (ph == GENIE_SUCCEEDED) {
        opc_output(oc, "genie_job_id", c->id);
        opc_finish(oc, BT_OP_SUCCESS);
    } else {
        job_failed_next(c);
    }
}

static void on_job_cancel(opc_call_t *oc, bt_err_t err, const bt_http_response_t *res)
{
    genie_call_t *c = genie_of(oc);
    /* gone (404) or already finished (409/412, by version) is what we want */
    if (genie_2xx(res) || res->status == 404 || res->status == 409 || res->status == 412) {
        genie_set_state(c, genie_2xx(res) ? "KILLED" : "FINISHED");
        bt_info("genie: kill of job %s: HTTP %ld", c->id, res->status);
        opc_finish(oc, BT_OP_SUCCESS);
    } else {
        genie_rejected(c, "job kill", res);
    }
}

static bt_err_t job_start(opc_call_t *oc, const bt_op_call_t *call)
{
    const Baton__V1__RemoteHandle *h = call->run->handle;
    if (!call->spec->genie_job || !call->run->run_key)
        return BT_E_INVAL;
    genie_call_t *c = genie_call_init(oc, 1);
    bt_err_t e;
    const Baton__V1__GenieJob *spec = call->spec->genie_job;
    if (opc_use_endpoint(oc, call, spec->url, spec->auth, 1))
        return BT_OK; /* answered */
    /* poll and cancel prefer the stored id; submit and lookup (no handle
     * yet) and a kill before the handle was stored use the derived one */
    if (oc->kind != OPC_SUBMIT && oc->kind != OPC_LOOKUP && h && h->genie_job_id &&
        *h->genie_job_id)
        snprintf(c->id, sizeof c->id, "%s", h->genie_job_id);
    else
        genie_uuid(c->g->cluster, "job", call->run->run_key, c->id);
    if (oc->kind == OPC_CANCEL)
        return job_req(c, "DELETE", "", NULL, 0, on_job_cancel);
    if (oc->kind != OPC_SUBMIT)
        return job_req(c, "GET", "/status", NULL, 3, on_job_status);
    char *body = genie_job_body(call->spec->genie_job, c->id, c->g->cluster, call->run->run_key);
    if (!body) {
        opc_fail(oc, "invalid_spec",
                 "genie: cannot build the job request (a field is not valid UTF-8?)");
        return BT_OK;
    }
    genie_send_t o = {.method = "POST", .path = "/api/v3/jobs", .body = body,
                      .content_type = "application/json"};
    e = genie_send(c, &o, on_job_submit);
    free(body);
    return e;
}

/* ------------------------------------------------------------ the family */

static void family_free(opc_family_t *f)
{
    genie_t *g = container_of(f, genie_t, fam);
    free(g->cluster);
    free(g);
}

static const opc_service_t genie_service = {
    .name = "genie",
    .call_size = sizeof(genie_call_t),
    .trouble = trouble,
    .result = result,
    .call_free = call_free,
    .family_free = family_free,
};

bt_err_t bt_genie_operators(struct ev_loop *loop, bt_http_t *http, const bt_config_t *cfg,
                            bt_operator_t **out, size_t max, size_t *n)
{
    if (!http || *n + 2 > max)
        return BT_E_INVAL;
    genie_t *g = calloc(1, sizeof *g);
    if (!g)
        return BT_E_NOMEM;
    opc_family_init(&g->fam, &genie_service, loop, http);
    g->fam.insecure = cfg->http_insecure;
    g->fam.cfg = cfg;
    /* no genie.url: every task names its Genie (url:) */
    int has_url = cfg->genie_url && *cfg->genie_url;
    g->cluster = strdup(cfg->cluster ? cfg->cluster : "");
    bt_err_t e = BT_E_NOMEM;
    if ((!has_url || (g->fam.url = opc_url_trim(cfg->genie_url, 0))) && g->cluster)
        e = opc_parse_auth(cfg->genie_auth, 1, &g->fam.userpwd, &g->fam.auth_header);
    if (e != BT_OK) {
        if (e == BT_E_CONFIG)
            bt_error("genie: auth must be \"basic USER:PASSWORD\" or \"bearer TOKEN\"");
        opc_family_free(&g->fam);
        return e;
    }
    uint64_t poll = cfg->genie_poll_ms ? cfg->genie_poll_ms : 2000;
    const opc_op_def_t defs[2] = {
        {"genie_job", BATON__V1__TASK_SPEC__OPERATOR_GENIE_JOB, poll, 0, job_start},
        {"genie_register_cluster", BATON__V1__TASK_SPEC__OPERATOR_GENIE_REGISTER_CLUSTER, poll,
         0, genie_cluster_start},
    };
    opc_family_publish(&g->fam, defs, 2, out, n);
    bt_info("genie: operators for %s (%s)", g->fam.url ? g->fam.url : "each task's url:",
            g->fam.userpwd ? "basic auth" : g->fam.auth_header ? "bearer token" : "no auth");
    return BT_OK;
}

void bt_genie_operators_free(bt_operator_t **ops, size_t n)
{
    opc_operators_free(ops, n, &genie_service);
}
