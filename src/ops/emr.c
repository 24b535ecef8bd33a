/* The EMR operators (include/baton/emr.h): what each needs from its spec,
 * the first request of each call, and the family context they share. The
 * life of a call is op_call.c's; EMR's requests and answers (credentials,
 * signing, verdicts) are in emr_call.c, the JSON shapes in emr_json.c,
 * adoption in emr_adopt.c. */
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
    switch (c->base.which) {
    case OP(EMR_CREATE_CLUSTER):
        c->name = strdup(s->emr_create_cluster->name);
        c->wait = s->emr_create_cluster->wait_until_ready;
        emr_cluster_name(s->emr_create_cluster->name, c->base.run_key, name, sizeof name);
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
                opc_fail(&c->base, "bad_spec", "target state '%.40s' is not a cluster state",
                         t[i]);
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
    if (c->base.which == OP(EMR_WAIT_CLUSTER) || c->base.which == OP(EMR_WAIT_STEP)) {
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
        opc_fail(&c->base, "bad_spec", "'%.80s' is not a cluster id", c->cluster_id);
    else if (c->step_id && !id_ok(c->step_id))
        opc_fail(&c->base, "bad_spec", "'%.80s' is not a step id", c->step_id);
    return 0;
}

/* The call's own part: run key forms, region, endpoint, handle, spec.
 * BT_E_NOMEM, or BT_OK with an unusable spec already answered. */
static bt_err_t call_init(emr_call_t *c, const bt_op_call_t *oc)
{
    const Baton__V1__TaskRun *run = oc->run;
    const Baton__V1__RemoteHandle *h = run->handle;
    emr_t *e = container_of(c->base.fam, emr_t, fam);
    char marker[EMR_MARKER_MAX + 1];
    c->e = e;
    c->started_ms = run->started_ms;
    emr_key_marker(c->base.run_key, marker);
    c->marker = strdup(marker);
    emr_cluster_suffix(c->base.run_key, c->suffix);
    const char *r = spec_region(oc->spec);
    int own = r && *r && strcmp(r, e->region) && region_ok(r);
    snprintf(c->region, sizeof c->region, "%s", own ? r : e->region);
    if (own && !(c->endpoint = endpoint_for(r)))
        return BT_E_NOMEM;
    if (own)
        c->base.url = c->endpoint;
    if (h && h->emr_cluster_id && *h->emr_cluster_id)
        c->cluster_id = strdup(h->emr_cluster_id);
    if (h && h->emr_step_id && *h->emr_step_id)
        c->step_id = strdup(h->emr_step_id);
    if (!c->marker || setup(c, oc->spec) < 0)
        return BT_E_NOMEM;
    if (!opc_answered(&c->base) && r && *r && !region_ok(r))
        opc_fail(&c->base, "bad_spec", "'%.40s' is not an AWS region", r);
    return BT_OK;
}

static void on_run_job_flow(opc_call_t *oc, bt_err_t err, const bt_http_response_t *res)
{
    const char *id = emr_str(oc->reply, "JobFlowId");
    if (!id_ok(id))
        return opc_fail(oc, "bad_response", "RunJobFlow: the answer has no JobFlowId");
    opc_strset(&emr_of(oc)->cluster_id, id);
    bt_info("emr: %s: RunJobFlow started cluster %s", oc->run_key, id);
    opc_set_state(oc, "STARTING");
    opc_finish(oc, emr_of(oc)->wait ? BT_OP_RUNNING : BT_OP_SUCCESS);
}

static void on_add_steps(opc_call_t *oc, bt_err_t err, const bt_http_response_t *res)
{
    emr_call_t *c = emr_of(oc);
    const json_t *ids = json_object_get(oc->reply, "StepIds");
    const char *id = json_string_value(json_array_get(ids, 0));
    if (!id_ok(id))
        return opc_fail(oc, "bad_response", "AddJobFlowSteps: the answer has no StepIds");
    opc_strset(&c->step_id, id);
    bt_info("emr: %s: AddJobFlowSteps added step %s to %s", oc->run_key, id, c->cluster_id);
    opc_set_state(oc, "PENDING");
    opc_finish(oc, c->wait ? BT_OP_RUNNING : BT_OP_SUCCESS);
}

static void on_terminate(opc_call_t *oc, bt_err_t err, const bt_http_response_t *res)
{
    opc_set_state(oc, "TERMINATING");
    opc_finish(oc, BT_OP_SUCCESS);
}

static void on_cancel_steps(opc_call_t *oc, bt_err_t err, const bt_http_response_t *res)
{
    const json_t *info = json_array_get(json_object_get(oc->reply, "CancelStepsInfoList"), 0);
    const char *st = emr_str(info, "Status"), *why = emr_str(info, "Reason");
    if (st && !strcmp(st, "FAILED")) /* e.g. the step had ended already */
        bt_info("emr: %s: CancelSteps %s: %s", oc->run_key, emr_of(oc)->step_id,
                why ? why : "failed");
    opc_set_state(oc, "CANCEL_PENDING");
    opc_finish(oc, BT_OP_SUCCESS);
}

static void on_describe_cluster(opc_call_t *oc, bt_err_t err, const bt_http_response_t *res)
{
    const json_t *cl = json_object_get(oc->reply, "Cluster");
    if (!json_is_object(cl))
        return opc_fail(oc, "bad_response", "DescribeCluster: the answer has no Cluster");
    emr_cluster_verdict(emr_of(oc), cl);
}

static void on_describe_step(opc_call_t *oc, bt_err_t err, const bt_http_response_t *res)
{
    const json_t *st = json_object_get(oc->reply, "Step");
    if (!json_is_object(st))
        return opc_fail(oc, "bad_response", "DescribeStep: the answer has no Step");
    emr_step_verdict(emr_of(oc), st);
}

/* Sends op about the call's cluster (and step), or answers bad_spec. */
static bt_err_t about(emr_call_t *c, const char *op, int with_step, opc_step_fn step)
{
    json_t *b;
    if (!c->cluster_id || (with_step && !c->step_id)) {
        opc_fail(&c->base, "bad_spec", "%s: no %s id", op, c->cluster_id ? "step" : "cluster");
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
    return emr_send(c, op, b, 1, step);
}

static bt_err_t submit_create(emr_call_t *c, const Baton__V1__EmrCreateCluster *s)
{
    char err[300] = "";
    json_t *body = emr_run_job_flow_body(s, c->sent_name, c->marker, err, sizeof err);
    if (!body) {
        if (!strcmp(err, "out of memory"))
            return BT_E_NOMEM;
        opc_fail(&c->base, "bad_spec", "%s", err);
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
        opc_fail(&c->base, "bad_spec", "emr_add_step: cluster_id is empty");
        return BT_OK;
    }
    if (!(body = emr_add_steps_body(s, c->name, err, sizeof err))) {
        if (!strcmp(err, "out of memory"))
            return BT_E_NOMEM;
        opc_fail(&c->base, "bad_spec", "%s", err);
        return BT_OK;
    }
    return emr_send(c, "AddJobFlowSteps", body, 0, on_add_steps);
}

bt_err_t emr_start(opc_call_t *oc, const bt_op_call_t *call)
{
    emr_call_t *c = emr_of(oc);
    bt_err_t err;
    if (!spec_ok(call->spec))
        return BT_E_INVAL;
    if ((err = call_init(c, call)) != BT_OK || opc_answered(oc))
        return err;
    switch (oc->kind * 100 + (int)oc->which) {
    case OPC_SUBMIT * 100 + OP(EMR_CREATE_CLUSTER):
        return submit_create(c, call->spec->emr_create_cluster);
    case OPC_SUBMIT * 100 + OP(EMR_ADD_STEP):
        return submit_step(c, call->spec->emr_add_step);
    case OPC_SUBMIT * 100 + OP(EMR_TERMINATE_CLUSTER):
        return about(c, "TerminateJobFlows", 0, on_terminate);
    case OPC_LOOKUP * 100 + OP(EMR_CREATE_CLUSTER):
    case OPC_SWEEP * 100 + OP(EMR_CREATE_CLUSTER):
        return emr_adopt_cluster(c);
    case OPC_LOOKUP * 100 + OP(EMR_ADD_STEP):
    case OPC_SWEEP * 100 + OP(EMR_ADD_STEP):
        return emr_adopt_step(c);
    case OPC_POLL * 100 + OP(EMR_WAIT_CLUSTER):
    case OPC_POLL * 100 + OP(EMR_WAIT_STEP): {
        const gate_t *g = c->e->gates;
        while (g && strcmp(g->key, oc->run_key))
            g = g->next;
        if (c->gate_ms && g && bt_now_ms() < g->next_ms) {
            c->gate_ms = 0; /* an answer from the gate does not move it */
            opc_set_state(oc, g->state);
            opc_finish(oc, BT_OP_RUNNING);
            return BT_OK;
        }
    }
        /* fall through */
    case OPC_SUBMIT * 100 + OP(EMR_WAIT_CLUSTER):
    case OPC_SUBMIT * 100 + OP(EMR_WAIT_STEP):
    case OPC_POLL * 100 + OP(EMR_CREATE_CLUSTER):
    case OPC_POLL * 100 + OP(EMR_ADD_STEP):
        if (oc->which == OP(EMR_CREATE_CLUSTER) || oc->which == OP(EMR_WAIT_CLUSTER))
            return about(c, "DescribeCluster", 0, on_describe_cluster);
        return about(c, "DescribeStep", 1, on_describe_step);
    case OPC_CANCEL * 100 + OP(EMR_CREATE_CLUSTER):
        /* a cluster nobody waits for any more would run (and bill) on */
        if (c->cluster_id)
            return about(c, "TerminateJobFlows", 0, on_terminate);
        break;
    case OPC_CANCEL * 100 + OP(EMR_ADD_STEP):
        if (c->cluster_id && c->step_id)
            return about(c, "CancelSteps", 1, on_cancel_steps);
        break;
    case OPC_LOOKUP * 100 + OP(EMR_TERMINATE_CLUSTER):
    case OPC_LOOKUP * 100 + OP(EMR_WAIT_CLUSTER):
    case OPC_LOOKUP * 100 + OP(EMR_WAIT_STEP):
        /* nothing to adopt: submitting again is harmless */
        opc_finish(oc, BT_OP_NOT_FOUND);
        return BT_OK;
    default: /* polling a terminate, cancelling a sensor or a terminate */
        break;
    }
    opc_finish(oc, BT_OP_SUCCESS);
    return BT_OK;
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

bt_err_t bt_emr_operators(struct ev_loop *loop, bt_http_t *http, const bt_config_t *cfg,
                          bt_operator_t **out, size_t max, size_t *n)
{
    static const struct {
        const char *name;
        Baton__V1__TaskSpec__OperatorCase which;
    } kinds[5] = {{"emr_create_cluster", OP(EMR_CREATE_CLUSTER)},
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
    opc_family_init(&e->fam, &emr_service, loop, http);
    e->fam.insecure = cfg->http_insecure;
    e->fam.aws_throttling = 1;
    e->region = strdup(region);
    e->fam.url = has_endpoint ? opc_url_trim(cfg->emr_endpoint, 8) : endpoint_for(region);
    e->poll_ms = env && *env ? strtoull(env, NULL, 10) : cfg->emr_poll_ms;
    if (!e->poll_ms)
        e->poll_ms = 30000;
    bt_aws_creds_opts_t co = {.profile = cfg->aws_profile, .imds_endpoint = cfg->imds_endpoint};
    bt_err_t err = e->region && e->fam.url ? bt_aws_creds_new(loop, http, &co, &e->creds)
                                           : BT_E_NOMEM;
    if (err != BT_OK) {
        opc_family_free(&e->fam);
        return err;
    }
    opc_op_def_t defs[5];
    for (size_t i = 0; i < 5; i++) {
        int sensor = kinds[i].which == OP(EMR_WAIT_CLUSTER) || kinds[i].which == OP(EMR_WAIT_STEP);
        /* only these two create what a lookup could have missed */
        int creates =
            kinds[i].which == OP(EMR_CREATE_CLUSTER) || kinds[i].which == OP(EMR_ADD_STEP);
        defs[i] = (opc_op_def_t){
            .name = kinds[i].name,
            .which = kinds[i].which,
            .poll_interval_ms = sensor && e->poll_ms > SENSOR_TICK_MS ? SENSOR_TICK_MS
                                                                      : e->poll_ms,
            .sweeps = creates,
            .start = emr_start,
        };
    }
    opc_family_publish(&e->fam, defs, 5, out, n);
    bt_info("emr: operators on %s (region %s), polling every %llu ms", e->fam.url, e->region,
            (unsigned long long)e->poll_ms);
    return BT_OK;
}

void bt_emr_operators_free(bt_operator_t **ops, size_t n)
{
    opc_operators_free(ops, n, &emr_service);
}
