/* The EMR operators (include/baton/emr.h): the five entry points, what
 * each needs from its spec, and the family context they share. The life of
 * a call (credentials, signed requests, answers) is in emr_call.c, the
 * JSON shapes in emr_json.c, adoption in emr_adopt.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "baton/clock.h"
#include "baton/log.h"
#include "ops/emr_int.h"

/* ------------------------------------------------------------ entries */

static int id_ok(const char *s)
{
    size_t n = s ? strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
                 : 0;
    return n > 0 && n <= 64 && !s[n];
}

static int region_ok(const char *s)
{
    size_t n = s ? strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789-") : 0;
    return n > 0 && n < 32 && !s[n];
}

static char *endpoint_for(const char *region)
{
    char *s = NULL;
    /* the China partition has its own domain */
    if (asprintf(&s, "https://elasticmapreduce.%s.amazonaws.com%s", region,
                 strncmp(region, "cn-", 3) ? "" : ".cn") < 0)
        return NULL;
    return s;
}

static const char *spec_region(const Baton__V1__TaskSpec *s)
{
    switch (s->operator_case) {
    case OP(EMR_CREATE_CLUSTER):
        return s->emr_create_cluster->region;
    case OP(EMR_ADD_STEP):
        return s->emr_add_step->region;
    case OP(EMR_TERMINATE_CLUSTER):
        return s->emr_terminate_cluster->region;
    case OP(EMR_WAIT_CLUSTER):
        return s->emr_wait_cluster->region;
    case OP(EMR_WAIT_STEP):
        return s->emr_wait_step->region;
    default:
        return NULL;
    }
}

static int spec_ok(const Baton__V1__TaskSpec *s)
{
    switch (s->operator_case) {
    case OP(EMR_CREATE_CLUSTER):
        return s->emr_create_cluster != NULL;
    case OP(EMR_ADD_STEP):
        return s->emr_add_step != NULL;
    case OP(EMR_TERMINATE_CLUSTER):
        return s->emr_terminate_cluster != NULL;
    case OP(EMR_WAIT_CLUSTER):
        return s->emr_wait_cluster != NULL;
    case OP(EMR_WAIT_STEP):
        return s->emr_wait_step != NULL;
    default:
        return 0;
    }
}

/* What the call needs from the spec, copied (the spec may not outlive the
 * entry call). -1: out of memory; a spec EMR could not take is answered. */
static int setup(emr_call_t *c, const Baton__V1__TaskSpec *s)
{
    const char *cluster = NULL, *step = NULL;
    uint64_t gate = 0;
    char name[EMR_NAME_MAX + 1];
    switch (c->which) {
    case OP(EMR_CREATE_CLUSTER):
        c->name = strdup(s->emr_create_cluster->name);
        c->wait = s->emr_create_cluster->wait_until_ready;
        emr_cluster_name(s->emr_create_cluster->name, c->run_key, name, sizeof name);
        if (!c->name || !(c->sent_name = strdup(name)))
            return -1;
        break;
    case OP(EMR_ADD_STEP):
        cluster = s->emr_add_step->cluster_id;
        c->wait = s->emr_add_step->wait_for_completion;
        emr_step_name(s->emr_add_step->name, c->marker, name, sizeof name);
        if (!(c->name = strdup(name)))
            return -1;
        break;
    case OP(EMR_TERMINATE_CLUSTER):
        cluster = s->emr_terminate_cluster->cluster_id;
        break;
    case OP(EMR_WAIT_CLUSTER): {
        const Baton__V1__EmrWaitCluster *w = s->emr_wait_cluster;
        static char *const dflt[] = {"WAITING", "RUNNING"};
        char *const *t = w->n_target_states ? w->target_states : dflt;
        size_t n = w->n_target_states ? w->n_target_states : 2;
        cluster = w->cluster_id;
        gate = w->poll_interval_ms;
        if (!(c->targets = calloc(n, sizeof *c->targets)))
            return -1;
        for (size_t i = 0; i < n; i++) {
            if (!(c->targets[c->ntargets] = strdup(t[i])))
                return -1;
            for (char *p = c->targets[c->ntargets++]; *p; p++)
                *p = *p >= 'a' && *p <= 'z' ? (char)(*p - 'a' + 'A') : *p;
            if (!emr_cluster_state_known(c->targets[i])) {
                emr_fail(c, "bad_spec", "target state '%.40s' is not a cluster state", t[i]);
                return 0;
            }
        }
        break;
    }
    case OP(EMR_WAIT_STEP):
        cluster = s->emr_wait_step->cluster_id;
        step = s->emr_wait_step->step_id;
        gate = s->emr_wait_step->poll_interval_ms;
        break;
    default:
        break;
    }
    if (c->which == OP(EMR_WAIT_CLUSTER) || c->which == OP(EMR_WAIT_STEP)) {
        /* sensors are asked every SENSOR_TICK_MS at most; a longer interval
         * of their own is kept by answering from the gate in between */
        uint64_t tick = c->e->poll_ms < SENSOR_TICK_MS ? c->e->poll_ms : SENSOR_TICK_MS;
        if (!gate)
            gate = c->e->poll_ms;
        c->gate_ms = gate > tick ? gate : 0;
    }
    if (!c->cluster_id && cluster && *cluster && !(c->cluster_id = strdup(cluster)))
        return -1;
    if (!c->step_id && step && *step && !(c->step_id = strdup(step)))
        return -1;
    if (c->cluster_id && !id_ok(c->cluster_id))
        emr_fail(c, "bad_spec", "'%.80s' is not a cluster id", c->cluster_id);
    else if (c->step_id && !id_ok(c->step_id))
        emr_fail(c, "bad_spec", "'%.80s' is not a step id", c->step_id);
    return 0;
}

/* NULL: out of memory. A call with an unusable spec comes back answered
 * (where == W_QUEUED). */
static emr_call_t *call_new(emr_t *e, int kind, const bt_op_call_t *oc)
{
    const Baton__V1__TaskRun *run = oc->run;
    const Baton__V1__RemoteHandle *h = run->handle;
    char marker[EMR_MARKER_MAX + 1];
    emr_call_t *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->e = e;
    c->kind = kind;
    c->which = oc->spec->operator_case;
    c->cb = oc->cb;
    c->arg = oc->arg;
    c->in_entry = 1;
    c->started_ms = run->started_ms;
    emr_key_marker(run->run_key ? run->run_key : "", marker);
    c->run_key = strdup(run->run_key ? run->run_key : "");
    c->marker = strdup(marker);
    emr_cluster_suffix(run->run_key ? run->run_key : "", c->suffix);
    c->keep_first = run->state == BATON__V1__TASK_STATE__TASK_STATE_RUNNING;
    const char *r = spec_region(oc->spec);
    int own = r && *r && strcmp(r, e->region) && region_ok(r);
    snprintf(c->region, sizeof c->region, "%s", own ? r : e->region);
    c->endpoint = own ? endpoint_for(r) : strdup(e->endpoint);
    if (h && h->emr_cluster_id && *h->emr_cluster_id)
        c->cluster_id = strdup(h->emr_cluster_id);
    if (h && h->emr_step_id && *h->emr_step_id)
        c->step_id = strdup(h->emr_step_id);
    c->next = e->calls;
    if (e->calls)
        e->calls->prev = c;
    e->calls = c;
    if (!c->run_key || !c->marker || !c->endpoint || setup(c, oc->spec) < 0) {
        if (c->where != W_QUEUED)
            emr_call_unlink(c);
        else
            e->queue = c->next; /* setup queued it last: undo */
        emr_call_free(c);
        return NULL;
    }
    if (c->where != W_QUEUED && r && *r && !region_ok(r))
        emr_fail(c, "bad_spec", "'%.40s' is not an AWS region", r);
    return c;
}

static bt_err_t entry_end(emr_call_t *c, bt_err_t err)
{
    if (err != BT_OK) {
        emr_call_unlink(c); /* nothing was queued or sent: no answer will come */
        emr_call_free(c);
        return err;
    }
    c->in_entry = 0;
    return BT_OK;
}

static void on_run_job_flow(emr_call_t *c, json_t *reply)
{
    const char *id = emr_str(reply, "JobFlowId");
    if (!id_ok(id)) {
        emr_fail(c, "bad_response", "RunJobFlow: the answer has no JobFlowId");
        return;
    }
    emr_set_str(&c->cluster_id, id);
    bt_info("emr: %s: RunJobFlow started cluster %s", c->run_key, id);
    emr_set_state(c, "STARTING");
    emr_finish(c, c->wait ? BT_OP_RUNNING : BT_OP_SUCCESS);
}

static void on_add_steps(emr_call_t *c, json_t *reply)
{
    const char *id = json_string_value(json_array_get(json_object_get(reply, "StepIds"), 0));
    if (!id_ok(id)) {
        emr_fail(c, "bad_response", "AddJobFlowSteps: the answer has no StepIds");
        return;
    }
    emr_set_str(&c->step_id, id);
    bt_info("emr: %s: AddJobFlowSteps added step %s to %s", c->run_key, id, c->cluster_id);
    emr_set_state(c, "PENDING");
    emr_finish(c, c->wait ? BT_OP_RUNNING : BT_OP_SUCCESS);
}

static void on_terminate(emr_call_t *c, json_t *reply)
{
    (void)reply;
    emr_set_state(c, "TERMINATING");
    emr_finish(c, BT_OP_SUCCESS);
}

static void on_cancel_steps(emr_call_t *c, json_t *reply)
{
    const json_t *info = json_array_get(json_object_get(reply, "CancelStepsInfoList"), 0);
    const char *st = emr_str(info, "Status"), *why = emr_str(info, "Reason");
    if (st && !strcmp(st, "FAILED")) /* e.g. the step had ended already */
        bt_info("emr: %s: CancelSteps %s: %s", c->run_key, c->step_id, why ? why : "failed");
    emr_set_state(c, "CANCEL_PENDING");
    emr_finish(c, BT_OP_SUCCESS);
}

static void on_describe_cluster(emr_call_t *c, json_t *reply)
{
    const json_t *cl = json_object_get(reply, "Cluster");
    if (!json_is_object(cl))
        emr_fail(c, "bad_response", "DescribeCluster: the answer has no Cluster");
    else
        emr_cluster_verdict(c, cl);
}

static void on_describe_step(emr_call_t *c, json_t *reply)
{
    const json_t *st = json_object_get(reply, "Step");
    if (!json_is_object(st))
        emr_fail(c, "bad_response", "DescribeStep: the answer has no Step");
    else
        emr_step_verdict(c, st);
}

/* Sends op about the call's cluster (and step), or answers bad_spec. */
static bt_err_t about(emr_call_t *c, const char *op, int with_step, emr_next_fn next)
{
    json_t *b;
    if (!c->cluster_id || (with_step && !c->step_id)) {
        emr_fail(c, "bad_spec", "%s: no %s id", op, c->cluster_id ? "step" : "cluster");
        return BT_OK;
    }
    if (!strcmp(op, "TerminateJobFlows"))
        b = json_pack("{s:[s]}", "JobFlowIds", c->cluster_id);
    else if (!strcmp(op, "CancelSteps"))
        b = json_pack("{s:s, s:[s], s:s}", "ClusterId", c->cluster_id, "StepIds", c->step_id,
                      "StepCancellationOption", "SEND_INTERRUPT");
    else if (with_step)
        b = json_pack("{s:s, s:s}", "ClusterId", c->cluster_id, "StepId", c->step_id);
    else
        b = json_pack("{s:s}", "ClusterId", c->cluster_id);
    /* all of these may be repeated safely */
    return emr_send(c, op, b, 1, next);
}

static bt_err_t submit_create(emr_call_t *c, const Baton__V1__EmrCreateCluster *s)
{
    char err[300] = "";
    json_t *body = emr_run_job_flow_body(s, c->sent_name, c->marker, err, sizeof err);
    if (!body) {
        if (!strcmp(err, "out of memory"))
            return BT_E_NOMEM;
        emr_fail(c, "bad_spec", "%s", err);
        return BT_OK;
    }
    /* never resent blindly: an unknown outcome is looked up (adoption) */
    return emr_send(c, "RunJobFlow", body, 0, on_run_job_flow);
}

static bt_err_t submit_step(emr_call_t *c, const Baton__V1__EmrAddStep *s)
{
    char err[300] = "";
    json_t *body;
    if (!c->cluster_id) {
        emr_fail(c, "bad_spec", "emr_add_step: cluster_id is empty");
        return BT_OK;
    }
    if (!(body = emr_add_steps_body(s, c->name, err, sizeof err))) {
        if (!strcmp(err, "out of memory"))
            return BT_E_NOMEM;
        emr_fail(c, "bad_spec", "%s", err);
        return BT_OK;
    }
    return emr_send(c, "AddJobFlowSteps", body, 0, on_add_steps);
}

static bt_err_t entry(emr_t *e, int kind, const bt_op_call_t *oc)
{
    emr_call_t *c;
    bt_err_t err = BT_OK;
    if (!oc->spec || !oc->run || !spec_ok(oc->spec))
        return BT_E_INVAL;
    if (!(c = call_new(e, kind, oc)))
        return BT_E_NOMEM;
    if (c->where == W_QUEUED)
        return entry_end(c, BT_OK);
    switch (kind * 100 + (int)c->which) {
    case EMR_K_SUBMIT * 100 + OP(EMR_CREATE_CLUSTER):
        err = submit_create(c, oc->spec->emr_create_cluster);
        break;
    case EMR_K_SUBMIT * 100 + OP(EMR_ADD_STEP):
        err = submit_step(c, oc->spec->emr_add_step);
        break;
    case EMR_K_SUBMIT * 100 + OP(EMR_TERMINATE_CLUSTER):
        err = about(c, "TerminateJobFlows", 0, on_terminate);
        break;
    case EMR_K_LOOKUP * 100 + OP(EMR_CREATE_CLUSTER):
    case EMR_K_SWEEP * 100 + OP(EMR_CREATE_CLUSTER):
        err = emr_adopt_cluster(c);
        break;
    case EMR_K_LOOKUP * 100 + OP(EMR_ADD_STEP):
    case EMR_K_SWEEP * 100 + OP(EMR_ADD_STEP):
        err = emr_adopt_step(c);
        break;
    case EMR_K_POLL * 100 + OP(EMR_WAIT_CLUSTER):
    case EMR_K_POLL * 100 + OP(EMR_WAIT_STEP): {
        const gate_t *g = e->gates;
        while (g && strcmp(g->key, c->run_key))
            g = g->next;
        if (c->gate_ms && g && bt_now_ms() < g->next_ms) {
            c->gate_ms = 0; /* an answer from the gate does not move it */
            emr_set_state(c, g->state);
            emr_finish(c, BT_OP_RUNNING);
            break;
        }
    }
        /* fall through */
    case EMR_K_SUBMIT * 100 + OP(EMR_WAIT_CLUSTER):
    case EMR_K_SUBMIT * 100 + OP(EMR_WAIT_STEP):
    case EMR_K_POLL * 100 + OP(EMR_CREATE_CLUSTER):
    case EMR_K_POLL * 100 + OP(EMR_ADD_STEP):
        if (c->which == OP(EMR_CREATE_CLUSTER) || c->which == OP(EMR_WAIT_CLUSTER))
            err = about(c, "DescribeCluster", 0, on_describe_cluster);
        else
            err = about(c, "DescribeStep", 1, on_describe_step);
        break;
    case EMR_K_CANCEL * 100 + OP(EMR_CREATE_CLUSTER):
        /* a cluster nobody waits for any more would run (and bill) on */
        if (c->cluster_id)
            err = about(c, "TerminateJobFlows", 0, on_terminate);
        else
            emr_finish(c, BT_OP_SUCCESS);
        break;
    case EMR_K_CANCEL * 100 + OP(EMR_ADD_STEP):
        if (c->cluster_id && c->step_id)
            err = about(c, "CancelSteps", 1, on_cancel_steps);
        else
            emr_finish(c, BT_OP_SUCCESS);
        break;
    case EMR_K_LOOKUP * 100 + OP(EMR_TERMINATE_CLUSTER):
    case EMR_K_LOOKUP * 100 + OP(EMR_WAIT_CLUSTER):
    case EMR_K_LOOKUP * 100 + OP(EMR_WAIT_STEP):
        /* nothing to adopt: submitting again is harmless */
        emr_finish(c, BT_OP_NOT_FOUND);
        break;
    default: /* polling a terminate, cancelling a sensor or a terminate */
        emr_finish(c, BT_OP_SUCCESS);
        break;
    }
    return entry_end(c, err);
}

static bt_err_t e_submit(void *ctx, const bt_op_call_t *oc)
{
    return entry(ctx, EMR_K_SUBMIT, oc);
}

static bt_err_t e_lookup(void *ctx, const bt_op_call_t *oc)
{
    return entry(ctx, EMR_K_LOOKUP, oc);
}

static bt_err_t e_poll(void *ctx, const bt_op_call_t *oc)
{
    return entry(ctx, EMR_K_POLL, oc);
}

static bt_err_t e_cancel(void *ctx, const bt_op_call_t *oc)
{
    return entry(ctx, EMR_K_CANCEL, oc);
}

static bt_err_t e_sweep(void *ctx, const bt_op_call_t *oc)
{
    return entry(ctx, EMR_K_SWEEP, oc);
}

/* ------------------------------------------------------------ the family */

/* elasticmapreduce.<region>.amazonaws.com or <region>.elasticmapreduce... */
static int region_of_endpoint(const char *url, char *out, size_t len)
{
    const char *host = strstr(url, "://");
    char labels[2][40] = {"", ""};
    host = host ? host + 3 : url;
    if (sscanf(host, "%39[^.:/].%39[^.:/]", labels[0], labels[1]) != 2)
        return 0;
    const char *r = !strcmp(labels[0], "elasticmapreduce")   ? labels[1]
                    : !strcmp(labels[1], "elasticmapreduce") ? labels[0]
                                                             : NULL;
    if (!region_ok(r))
        return 0;
    snprintf(out, len, "%s", r);
    return 1;
}

static void emr_free(emr_t *e)
{
    ev_timer_stop(e->loop, &e->kick);
    bt_aws_creds_free(e->creds); /* drops the calls' credential waits */
    while (e->calls) {
        emr_call_t *c = e->calls;
        e->calls = c->next;
        c->next = c->prev = NULL;
        if (c->where == W_HTTP)
            c->e = NULL; /* freed when the transport calls back */
        else
            emr_call_free(c);
    }
    while (e->queue) {
        emr_call_t *c = e->queue;
        e->queue = c->next;
        emr_call_free(c);
    }
    while (e->gates) {
        gate_t *g = e->gates;
        e->gates = g->next;
        free(g->key);
        free(g);
    }
    free(e->region);
    free(e->endpoint);
    free(e);
}

bt_err_t bt_emr_operators(struct ev_loop *loop, bt_http_t *http, const bt_config_t *cfg,
                          bt_operator_t **out, size_t max, size_t *n)
{
    static const struct {
        const char *name;
        Baton__V1__TaskSpec__OperatorCase which;
    } defs[5] = {{"emr_create_cluster", OP(EMR_CREATE_CLUSTER)},
                 {"emr_add_step", OP(EMR_ADD_STEP)},
                 {"emr_terminate_cluster", OP(EMR_TERMINATE_CLUSTER)},
                 {"emr_wait_cluster", OP(EMR_WAIT_CLUSTER)},
                 {"emr_wait_step", OP(EMR_WAIT_STEP)}};
    int has_region = cfg->emr_region && *cfg->emr_region;
    int has_endpoint = cfg->emr_endpoint && *cfg->emr_endpoint;
    const char *env = getenv("BATON_EMR_POLL_INTERVAL_MS"), *dflt = getenv("AWS_DEFAULT_REGION");
    char region[40];

    if (!has_region && !has_endpoint)
        return BT_OK;
    if (!http || *n + 5 > max)
        return BT_E_INVAL;
    if (has_region && !region_ok(cfg->emr_region)) {
        bt_error("emr: '%s' is not an AWS region", cfg->emr_region);
        return BT_E_CONFIG;
    }
    if (has_region)
        snprintf(region, sizeof region, "%s", cfg->emr_region);
    else if (!region_of_endpoint(cfg->emr_endpoint, region, sizeof region))
        snprintf(region, sizeof region, "%s", region_ok(dflt) ? dflt : "us-east-1");

    emr_t *e = calloc(1, sizeof *e);
    if (!e)
        return BT_E_NOMEM;
    e->loop = loop;
    e->http = http;
    e->insecure = cfg->http_insecure;
    e->region = strdup(region);
    e->endpoint = has_endpoint ? strdup(cfg->emr_endpoint) : endpoint_for(region);
    e->poll_ms = env && *env ? strtoull(env, NULL, 10) : cfg->emr_poll_ms;
    if (!e->poll_ms)
        e->poll_ms = 30000;
    ev_timer_init(&e->kick, emr_on_kick, 0., 0.);
    bt_aws_creds_opts_t co = {.profile = cfg->aws_profile, .imds_endpoint = cfg->imds_endpoint};
    bt_err_t err = e->region && e->endpoint ? bt_aws_creds_new(loop, http, &co, &e->creds)
                                            : BT_E_NOMEM;
    if (err != BT_OK) {
        emr_free(e);
        return err;
    }
    for (size_t len = strlen(e->endpoint); len > 8 && e->endpoint[len - 1] == '/';)
        e->endpoint[--len] = '\0';
    for (size_t i = 0; i < 5; i++) {
        int sensor = defs[i].which == OP(EMR_WAIT_CLUSTER) || defs[i].which == OP(EMR_WAIT_STEP);
        /* only these two create what a lookup could have missed */
        int creates = defs[i].which == OP(EMR_CREATE_CLUSTER) || defs[i].which == OP(EMR_ADD_STEP);
        e->ops[i] = (bt_operator_t){
            .name = defs[i].name,
            .which = defs[i].which,
            .max_calls = BT_OP_HTTP_MAX_CALLS,
            .poll_interval_ms = sensor && e->poll_ms > SENSOR_TICK_MS ? SENSOR_TICK_MS
                                                                      : e->poll_ms,
            .submit = e_submit,
            .lookup = e_lookup,
            .poll = e_poll,
            .cancel = e_cancel,
            .sweep = creates ? e_sweep : NULL,
            .ctx = e,
        };
        out[(*n)++] = &e->ops[i];
    }
    bt_info("emr: operators on %s (region %s), polling every %llu ms", e->endpoint, e->region,
            (unsigned long long)e->poll_ms);
    return BT_OK;
}

void bt_emr_operators_free(bt_operator_t **ops, size_t n)
{
    emr_t *e = NULL;
    /* the five share one context: free it once; NULL our slots so that a
     * caller freeing the rest by type never sees them */
    for (size_t i = 0; i < n; i++)
        if (ops[i] && ops[i]->submit == e_submit) {
            e = ops[i]->ctx;
            ops[i] = NULL;
        }
    if (e)
        emr_free(e);
}
