/* The orphan reaper's two EMR jobs (the decision is the dispatcher's,
 * src/sched/reaper.c): list the live clusters baton created, with the run
 * key each carries, and terminate one. Both are calls of the EMR family's
 * own on the operator-call core (opc_start): signed, throttled, retried and
 * gated (TerminateJobFlows only while we lead) like every operator call.
 *
 * Which clusters: ListClusters in STARTING, BOOTSTRAPPING, RUNNING and
 * WAITING (the states that bill), page by page; those whose name ends in
 * baton's suffix (" [bt:<16 hex>]", emr_json.c) are described for their
 * tags; a cluster without the baton:run-key tag is not reported. Only the
 * configured region (emr.region / emr.endpoint) is looked at. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "baton/log.h"
#include "ops/emr_int.h"

#define TAG_KEEP "baton:keep"

/* First in every job: whether a call took it over (then the call frees it,
 * whatever happens; else whoever made it). */
typedef struct job_head {
    int attached;
} job_head_t;

typedef struct scan {
    job_head_t head;
    bt_emr_tagged_t *list;
    size_t n, cap;
    bt_emr_scan_cb cb;
    void *arg;
} scan_t;

typedef struct term {
    job_head_t head;
    bt_emr_done_cb cb;
    void *arg;
} term_t;

static int has_our_suffix(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n < EMR_SUFFIX_LEN || memcmp(name + n - EMR_SUFFIX_LEN, " [bt:", 5) || name[n - 1] != ']')
        return 0;
    for (size_t i = n - EMR_SUFFIX_LEN + 5; i < n - 1; i++)
        if (!strchr("0123456789abcdef", name[i]))
            return 0;
    return 1;
}

static json_t *list_body(const emr_call_t *c)
{
    json_t *b = json_pack("{s:[s,s,s,s]}", "ClusterStates", "STARTING", "BOOTSTRAPPING",
                          "RUNNING", "WAITING");
    if (b && c->page_marker)
        json_object_set_new(b, "Marker", json_string(c->page_marker));
    return b;
}

static void on_page(opc_call_t *oc, bt_err_t err, const bt_http_response_t *res);
static void on_described(opc_call_t *oc, bt_err_t err, const bt_http_response_t *res);

static void next(emr_call_t *c)
{
    if (c->cand_i < json_array_size(c->candidates)) {
        const char *id = json_string_value(json_array_get(c->candidates, c->cand_i));
        emr_continue(c, "DescribeCluster", json_pack("{s:s}", "ClusterId", id), 1, on_described);
    } else if (!c->page_marker) {
        opc_finish(&c->base, BT_OP_SUCCESS);
    } else if (c->pages >= EMR_ADOPT_MAX_PAGES) {
        opc_fail(&c->base, "lookup_incomplete", "ListClusters: more than %d pages",
                 EMR_ADOPT_MAX_PAGES);
    } else {
        emr_continue(c, "ListClusters", list_body(c), 1, on_page);
    }
}

static void on_described(opc_call_t *oc, bt_err_t err, const bt_http_response_t *res)
{
    (void)err;
    (void)res;
    emr_call_t *c = emr_of(oc);
    scan_t *s = c->job;
    const json_t *cl = json_object_get(oc->reply, "Cluster");
    const char *key = emr_cluster_tag(cl, EMR_TAG_RUN_KEY), *keep = emr_cluster_tag(cl, TAG_KEEP);
    const char *id = emr_str(cl, "Id"), *state = emr_str(json_object_get(cl, "Status"), "State");
    c->cand_i++;
    if (key && *key && id && state) {
        if (s->n == s->cap) {
            size_t cap = s->cap ? s->cap * 2 : 16;
            bt_emr_tagged_t *l = realloc(s->list, cap * sizeof *l);
            if (!l)
                return opc_fail(oc, "lookup_incomplete", "out of memory");
            s->list = l, s->cap = cap;
        }
        bt_emr_tagged_t *t = &s->list[s->n++];
        memset(t, 0, sizeof *t);
        snprintf(t->id, sizeof t->id, "%s", id);
        snprintf(t->run_key, sizeof t->run_key, "%s", key);
        snprintf(t->state, sizeof t->state, "%s", state);
        t->created_ms = emr_created_ms(json_object_get(cl, "Status"));
        t->keep = keep && !strcmp(keep, "true");
    }
    next(c);
}

static void on_page(opc_call_t *oc, bt_err_t err, const bt_http_response_t *res)
{
    (void)err;
    (void)res;
    emr_call_t *c = emr_of(oc);
    const json_t *list = json_object_get(oc->reply, "Clusters"), *cl;
    size_t i;
    if (list && !json_is_array(list))
        return opc_fail(oc, "bad_response", "ListClusters: Clusters is not a list");
    if (!emr_take_marker(c, oc->reply, "ListClusters"))
        return;
    json_decref(c->candidates);
    if (!(c->candidates = json_array()))
        return opc_fail(oc, "lookup_incomplete", "out of memory");
    c->cand_i = 0;
    json_array_foreach(list, i, cl)
    {
        const char *id = emr_str(cl, "Id");
        if (id && *id && has_our_suffix(emr_str(cl, "Name")))
            json_array_append_new(c->candidates, json_string(id));
    }
    next(c);
}

static void scan_free(void *job)
{
    scan_t *s = job;
    free(s->list);
    free(s);
}

/* The call's EMR part: the family's region and endpoint; the job, which the
 * call frees with itself (answered or dropped with the family). */
static emr_call_t *job_init(opc_call_t *oc, void *job, void (*job_free)(void *))
{
    emr_call_t *c = emr_of(oc);
    c->e = container_of(oc->fam, emr_t, fam);
    snprintf(c->region, sizeof c->region, "%s", c->e->region);
    c->job = job;
    c->job_free = job_free;
    ((job_head_t *)job)->attached = 1;
    return c;
}

static void *job_of(const bt_op_call_t *call)
{
    return call->arg;
}

static bt_err_t scan_start(opc_call_t *oc, const bt_op_call_t *call)
{
    emr_call_t *c = job_init(oc, job_of(call), scan_free);
    return emr_send(c, "ListClusters", list_body(c), 1, on_page);
}

static void on_scanned(const bt_op_result_t *r, void *arg)
{
    scan_t *s = arg;
    if (r->status == BT_OP_SUCCESS)
        s->cb(BT_OK, NULL, s->list, s->n, s->arg);
    else
        s->cb(BT_E_HTTP, r->message ? r->message : "the scan failed", NULL, 0, s->arg);
}

/* A spec and run for a job of the family's own: the core wants both. */
static bt_err_t start_job(bt_operator_t *const *ops, size_t n, const char *key,
                          opc_start_fn start, bt_op_cb cb, void *job)
{
    opc_family_t *f = opc_family_find(ops, n, &emr_service);
    if (!f)
        return BT_E_NOTFOUND;
    Baton__V1__TaskSpec spec = BATON__V1__TASK_SPEC__INIT;
    Baton__V1__TaskRun run = BATON__V1__TASK_RUN__INIT;
    spec.operator_case = BATON__V1__TASK_SPEC__OPERATOR_EMR_TERMINATE_CLUSTER;
    run.run_key = (char *)key;
    bt_op_call_t oc = {.spec = &spec, .run = &run, .cb = cb, .arg = job};
    /* the job rides in `arg` twice: the start reads it, the answer frees it */
    return opc_start(f, OPC_POLL, &oc, start);
}

bt_err_t bt_emr_scan_tagged(bt_operator_t *const *ops, size_t n, bt_emr_scan_cb cb, void *arg)
{
    scan_t *s = calloc(1, sizeof *s);
    if (!s)
        return BT_E_NOMEM;
    s->cb = cb;
    s->arg = arg;
    bt_err_t e = start_job(ops, n, "reaper:scan", scan_start, on_scanned, s);
    if (e != BT_OK && !s->head.attached)
        free(s);
    return e;
}

static void on_terminated(opc_call_t *oc, bt_err_t err, const bt_http_response_t *res)
{
    (void)err;
    (void)res;
    opc_finish(oc, BT_OP_SUCCESS);
}

static bt_err_t term_start(opc_call_t *oc, const bt_op_call_t *call)
{
    emr_call_t *c = job_init(oc, job_of(call), free);
    const char *id = strchr(oc->run_key, ':') + 1; /* "reaper:<cluster id>" */
    if (!(c->cluster_id = strdup(id)))
        return BT_E_NOMEM;
    return emr_send(c, "TerminateJobFlows", json_pack("{s:[s]}", "JobFlowIds", id), 1,
                    on_terminated);
}

static void on_term_answer(const bt_op_result_t *r, void *arg)
{
    term_t *t = arg;
    if (r->status == BT_OP_SUCCESS)
        t->cb(BT_OK, NULL, t->arg);
    else
        t->cb(r->status == BT_OP_NOT_SENT ? BT_E_NOT_SENT : BT_E_HTTP,
              r->message ? r->message : "TerminateJobFlows failed", t->arg);
}

bt_err_t bt_emr_terminate_cluster(bt_operator_t *const *ops, size_t n, const char *cluster_id,
                                  bt_emr_done_cb cb, void *arg)
{
    char key[96];
    if (!cluster_id || !*cluster_id || strlen(cluster_id) > 64)
        return BT_E_INVAL;
    term_t *t = calloc(1, sizeof *t);
    if (!t)
        return BT_E_NOMEM;
    t->cb = cb;
    t->arg = arg;
    snprintf(key, sizeof key, "reaper:%s", cluster_id);
    bt_err_t e = start_job(ops, n, key, term_start, on_term_answer, t);
    if (e != BT_OK && !t->head.attached)
        free(t);
    return e;
}
