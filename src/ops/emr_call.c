/* EMR's requests and answers on the operator-call core (op_call.h):
 * credentials and SigV4 before each request, the JSON side of answers,
 * the handle and outputs of the answer, and the verdicts on clusters and
 * steps. The entry points are in emr.c, adoption in emr_adopt.c.
 *
 * Mapping of answers (emr_int.h has the JSON side):
 *   2xx JSON object          -> the call's step
 *   2xx anything else        -> FAILED bad_response
 *   429, 5xx, Throttling*    -> TRANSIENT (after the transport's retries)
 *   ExpiredToken*            -> NOT_SENT, cached credentials dropped
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

static void call_free(opc_call_t *oc)
{
    emr_call_t *c = emr_of(oc);
    for (size_t i = 0; i < c->ntargets; i++)
        free(c->targets[i]);
    free(c->targets);
    free(c->marker);
    free(c->endpoint);
    free(c->cluster_id);
    free(c->step_id);
    free(c->name);
    free(c->sent_name);
    json_decref(c->candidates);
    free(c->page_marker);
    if (c->job_free)
        c->job_free(c->job);
}

static void family_free(opc_family_t *f)
{
    emr_t *e = container_of(f, emr_t, fam);
    bt_aws_creds_free(e->creds); /* drops the calls' credential waits */
    while (e->gates) {
        gate_t *g = e->gates;
        e->gates = g->next;
        free(g->key);
        free(g);
    }
    free(e->region);
    free(e);
}

static void gate_update(emr_t *e, emr_call_t *c)
{
    int64_t now = bt_now_ms();
    gate_t **p = &e->gates, *g;
    while ((g = *p)) {
        /* a gate nobody asked about for an hour belongs to a task that is gone */
        if (!strcmp(g->key, c->base.run_key) || g->next_ms < now - 3600 * 1000) {
            *p = g->next;
            free(g->key);
            free(g);
            continue;
        }
        p = &g->next;
    }
    if (c->base.status != BT_OP_RUNNING || !(g = calloc(1, sizeof *g)) ||
        !(g->key = strdup(c->base.run_key))) {
        free(g);
        return;
    }
    g->next_ms = now + (int64_t)c->gate_ms;
    snprintf(g->state, sizeof g->state, "%s", c->base.state ? c->base.state : "");
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

static void output(bt_op_result_t *r, const char *key, const char *value)
{
    r->output_keys[r->n_outputs] = key;
    r->output_values[r->n_outputs++] = value;
}

/* The handle, the outputs, and a sensor's gate moved on. */
static void result(opc_call_t *oc, bt_op_result_t *r, Baton__V1__RemoteHandle *h)
{
    emr_call_t *c = emr_of(oc);
    const char *state = oc->state ? oc->state : "";
    utf8_fix(oc->msg);
    utf8_fix(oc->detail);
    utf8_fix(oc->state);
    h->emr_cluster_id = c->cluster_id ? c->cluster_id : "";
    h->emr_step_id = c->step_id ? c->step_id : "";
    if (c->cluster_id)
        r->handle = h;
    if (oc->status == BT_OP_SUCCESS) {
        if (oc->which == OP(EMR_WAIT_CLUSTER) || oc->which == OP(EMR_WAIT_STEP))
            output(r, "state", state);
        if (c->step_id && oc->which == OP(EMR_ADD_STEP))
            output(r, "step_id", c->step_id);
        if (c->cluster_id &&
            (oc->which == OP(EMR_CREATE_CLUSTER) || oc->which == OP(EMR_ADD_STEP)))
            output(r, "cluster_id", c->cluster_id);
    }
    if (c->gate_ms && (oc->kind == OPC_SUBMIT || oc->kind == OPC_POLL))
        gate_update(c->e, c);
}

/* ------------------------------------------------------------ requests */

/* The operations that change what runs (side effects for the transport). */
static int changes_state(const char *op)
{
    return !strcmp(op, "RunJobFlow") || !strcmp(op, "AddJobFlowSteps") ||
           !strcmp(op, "TerminateJobFlows") || !strcmp(op, "CancelSteps");
}

/* Ask again later, nothing having happened. */
static void not_sent(emr_call_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void not_sent(emr_call_t *c, const char *fmt, ...)
{
    char *msg = NULL;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&msg, fmt, ap) < 0)
        msg = NULL;
    va_end(ap);
    opc_set(&c->base, BT_OP_NOT_SENT, NULL, "%s", msg ? msg : "out of memory");
    free(msg);
    opc_done(&c->base);
}

static int throttled(const bt_http_response_t *res)
{
    emr_error_t ae;
    if (res->status >= 200 && res->status < 300)
        return 0;
    emr_parse_error(res->body, res->body_len, &ae);
    return emr_is_throttling(ae.type);
}

static void trouble(opc_call_t *c, bt_err_t err, const bt_http_response_t *res, char *msg,
                    size_t len)
{
    emr_error_t ae;
    if (err != BT_OK || !res || res->status == 0) {
        snprintf(msg, len, "%s: %s: %s", c->rq.what,
                 res && res->unsent ? "not sent" : "no answer from EMR",
                 res && res->error ? res->error : bt_strerror(err));
        return;
    }
    emr_parse_error(res->body, res->body_len, &ae);
    snprintf(msg, len, "%s: HTTP %ld %s: %s", c->rq.what, res->status, ae.type,
             ae.message[0] ? ae.message : "(no message)");
}

/* The JSON object of a 2xx answer, for the step; anything else ends the
 * call here. */
static json_t *parse(opc_call_t *oc, const bt_http_response_t *res)
{
    emr_call_t *c = emr_of(oc);
    const char *op = oc->rq.what;
    if (res->status >= 200 && res->status < 300) {
        json_t *j = json_loadb(res->body, res->body_len, 0, NULL);
        if (json_is_object(j))
            return j;
        /* the start of what came, printable: it goes into records and JSON */
        char head[161];
        size_t n = res->body_len < sizeof head - 1 ? res->body_len : sizeof head - 1;
        for (size_t i = 0; i < n; i++)
            head[i] = res->body[i] >= 0x20 && res->body[i] < 0x7f ? res->body[i] : '?';
        head[n] = '\0';
        json_decref(j);
        opc_set_detail(&c->base, n ? head : NULL);
        opc_fail(&c->base, "bad_response", "%s: HTTP %ld with a body that is not a JSON object",
                 op, res->status);
        return NULL;
    }
    emr_error_t ae;
    emr_parse_error(res->body, res->body_len, &ae);
    const char *what = ae.message[0] ? ae.message : "(no message)";
    if (emr_is_expired_token(ae.type)) {
        bt_aws_creds_invalidate(c->e->creds);
        not_sent(c, "%s: %s: %s", op, ae.type, what); /* refused: nothing done */
        return NULL;
    }
    char code[112];
    if (ae.type[0])
        snprintf(code, sizeof code, "%s", ae.type);
    else
        snprintf(code, sizeof code, "http_%ld", res->status);
    opc_fail(&c->base, code, "%s: %s: %s", op, code, what);
    return NULL;
}

static void on_creds(bt_err_t err, const bt_aws_credentials_t *cr, const char *why, void *arg)
{
    emr_call_t *c = arg;
    const char *op = c->base.rq.what;
    if (err != BT_OK) {
        /* nothing was sent: a submit may fail outright; anything else may
         * concern running work and is asked again */
        if (c->base.kind == OPC_SUBMIT)
            opc_fail(&c->base, "no_credentials", "no AWS credentials: %s", why);
        else
            not_sent(c, "no AWS credentials: %s", why);
        return;
    }
    if (cr->session_token && cr->session_token[strcspn(cr->session_token, "\r\n")]) {
        not_sent(c, "the AWS session token (from %s) is not one line", cr->source);
        return;
    }
    char sigv4[96], *token = NULL;
    snprintf(sigv4, sizeof sigv4, "aws:amz:%s:elasticmapreduce", c->region);
    /* libcurl signs every header it is given but knows nothing of session
     * tokens: the token goes in as a header, and so gets signed */
    if (cr->session_token && asprintf(&token, "X-Amz-Security-Token: %s", cr->session_token) < 0) {
        not_sent(c, "%s: out of memory", op);
        return;
    }
    opc_auth_t auth = {.aws_sigv4 = sigv4,
                       .aws_access_key = cr->access_key_id,
                       .aws_secret_key = cr->secret_access_key,
                       .header = token};
    opc_prepared(&c->base, &auth);
    if (token) {
        explicit_bzero(token, strlen(token));
        free(token);
    }
}

static bt_err_t prepare(opc_call_t *c)
{
    return bt_aws_creds_get(emr_of(c)->e->creds, on_creds, emr_of(c));
}

bt_err_t emr_send(emr_call_t *c, const char *op, json_t *body, int idempotent, opc_step_fn step)
{
    char target[128], *payload = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!payload)
        return BT_E_NOMEM;
    snprintf(target, sizeof target, "X-Amz-Target: ElasticMapReduce.%s", op);
    opc_req_t rq = {.method = "POST",
                    .what = op,
                    .path = "/",
                    .body = payload,
                    .content_type = "application/x-amz-json-1.1",
                    .header = target,
                    .idempotent = idempotent,
                    .side_effect = changes_state(op)};
    bt_err_t err = opc_send(&c->base, &rq, step);
    free(payload);
    return err;
}

void emr_continue(emr_call_t *c, const char *op, json_t *body, int idempotent, opc_step_fn step)
{
    bt_err_t err = emr_send(c, op, body, idempotent, step);
    if (err != BT_OK)
        opc_unsent(&c->base, op, err);
}

const opc_service_t emr_service = {
    .name = "emr",
    .call_size = sizeof(emr_call_t),
    .prepare = prepare,
    .throttled = throttled,
    .parse = parse,
    .trouble = trouble,
    .result = result,
    .call_free = call_free,
    .family_free = family_free,
};

/* ------------------------------------------------------------ verdicts */

static int is_target(const emr_call_t *c, const char *state)
{
    for (size_t i = 0; i < c->ntargets; i++)
        if (!strcmp(c->targets[i], state))
            return 1;
    return 0;
}

/* ListInstances' master: its addresses and instance id (an empty list, a
 * master replaced meanwhile: DescribeCluster's name is enough to go on). */
static void on_master_listed(opc_call_t *oc, bt_err_t err, const bt_http_response_t *res)
{
    (void)err;
    (void)res;
    const json_t *m = json_array_get(json_object_get(oc->reply, "Instances"), 0);
    const char *priv = emr_str(m, "PrivateDnsName"), *pub = emr_str(m, "PublicDnsName");
    const char *id = emr_str(m, "Ec2InstanceId");
    if (priv && *priv)
        opc_output(oc, "master_private_dns", priv);
    if (pub && *pub)
        opc_output(oc, "master_public_dns", pub);
    if (id && *id)
        opc_output(oc, "master_instance_id", id);
    if (!emr_of(oc)->has_master_dns && priv && *priv)
        opc_output(oc, "master_dns", priv);
    if (!m)
        bt_warn("emr: %s: ListInstances found no running master on %s", oc->run_key,
                emr_of(oc)->cluster_id ? emr_of(oc)->cluster_id : "?");
    opc_finish(oc, BT_OP_SUCCESS);
}

/* A ready cluster's endpoints, for the tasks that use what runs on it (its
 * Livy, a Genie registration): DescribeCluster's part now, then the master
 * from ListInstances, then the answer. */
static void ready_outputs(emr_call_t *c, const json_t *cluster)
{
    opc_call_t *oc = &c->base;
    const char *v;
    char apps[512] = "";
    size_t i, used = 0;
    const json_t *a;
    if ((v = emr_str(cluster, "MasterPublicDnsName")) && *v) {
        opc_output(oc, "master_dns", v);
        c->has_master_dns = 1;
    }
    if ((v = emr_str(cluster, "ReleaseLabel")))
        opc_output(oc, "release_label", v);
    if ((v = emr_str(cluster, "ClusterArn")))
        opc_output(oc, "cluster_arn", v);
    json_array_foreach(json_object_get(cluster, "Applications"), i, a)
    {
        const char *name = emr_str(a, "Name");
        int w = name ? snprintf(apps + used, sizeof apps - used, "%s%s", used ? "," : "", name)
                     : 0;
        if (w > 0 && (size_t)w < sizeof apps - used)
            used += (size_t)w;
    }
    opc_output(oc, "applications", apps);
    const char *coll = emr_str(cluster, "InstanceCollectionType");
    json_t *body = coll && !strcmp(coll, "INSTANCE_FLEET")
                       ? json_pack("{s:s, s:s, s:[s]}", "ClusterId", c->cluster_id,
                                   "InstanceFleetType", "MASTER", "InstanceStates", "RUNNING")
                       : json_pack("{s:s, s:[s], s:[s]}", "ClusterId", c->cluster_id,
                                   "InstanceGroupTypes", "MASTER", "InstanceStates", "RUNNING");
    emr_continue(c, "ListInstances", body, 1, on_master_listed);
}

void emr_cluster_verdict(emr_call_t *c, const json_t *cluster)
{
    opc_call_t *oc = &c->base;
    const json_t *status = json_object_get(cluster, "Status");
    const char *state = emr_str(status, "State"), *id = emr_str(cluster, "Id");
    char reason[700];
    if (!emr_cluster_state_known(state))
        return opc_fail(oc, "bad_response", "unknown cluster state '%.40s'",
                        state ? state : "(none)");
    opc_set_state(oc, state);
    if (id && !c->cluster_id)
        c->cluster_id = strdup(id);
    emr_cluster_reason(status, reason, sizeof reason);
    int ready = !strcmp(state, "WAITING") || !strcmp(state, "RUNNING");
    int ending = !strcmp(state, "TERMINATING") || emr_cluster_state_terminal(state);
    if (oc->which == OP(EMR_WAIT_CLUSTER)) {
        int awaits_end = is_target(c, "TERMINATING") || is_target(c, "TERMINATED") ||
                         is_target(c, "TERMINATED_WITH_ERRORS");
        if (is_target(c, state))
            return ready && c->cluster_id ? ready_outputs(c, cluster)
                                          : opc_finish(oc, BT_OP_SUCCESS);
        if (!emr_cluster_state_terminal(state) && !(ending && !awaits_end))
            return opc_finish(oc, BT_OP_RUNNING);
    } else if (c->wait && ready && c->cluster_id) {
        return ready_outputs(c, cluster);
    } else if (!c->wait || ready) {
        return opc_finish(oc, BT_OP_SUCCESS);
    } else if (!ending) {
        return opc_finish(oc, BT_OP_RUNNING);
    }
    opc_set_detail(oc, reason[0] ? reason : NULL);
    opc_fail(oc, "cluster_terminated", "cluster %s is %s%s%s",
             c->cluster_id ? c->cluster_id : "?", state, reason[0] ? ": " : "", reason);
}

void emr_step_verdict(emr_call_t *c, const json_t *step)
{
    opc_call_t *oc = &c->base;
    const json_t *status = json_object_get(step, "Status");
    const char *state = emr_str(status, "State"), *id = emr_str(step, "Id");
    char detail[900], code[32];
    if (!emr_step_state_known(state))
        return opc_fail(oc, "bad_response", "unknown step state '%.40s'",
                        state ? state : "(none)");
    opc_set_state(oc, state);
    if (id && !c->step_id)
        c->step_id = strdup(id);
    if ((oc->which == OP(EMR_ADD_STEP) && !c->wait) || !strcmp(state, "COMPLETED"))
        return opc_finish(oc, BT_OP_SUCCESS);
    if (!emr_step_state_failed(state))
        return opc_finish(oc, BT_OP_RUNNING);
    emr_step_failure(status, detail, sizeof detail);
    opc_set_detail(oc, detail[0] ? detail : NULL);
    snprintf(code, sizeof code, "step_%s", !strcmp(state, "FAILED")      ? "failed"
                                           : !strcmp(state, "CANCELLED") ? "cancelled"
                                                                         : "interrupted");
    opc_fail(oc, code, "step %s on %s is %s%s%s", c->step_id ? c->step_id : "?",
             c->cluster_id ? c->cluster_id : "?", state, detail[0] ? ": " : "", detail);
}
