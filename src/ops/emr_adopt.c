/* Adoption: finding what an earlier leader submitted under this attempt's
 * run key, so that a takeover (or a RunJobFlow whose answer was lost) never
 * starts a second cluster or step. EMR has no idempotency token; instead
 * every cluster is tagged baton:run-key=<marker> and its name ends in
 * " [bt:<hash of the run key>]", and every step's name ends in
 * "[<marker>]" (emr_json.c).
 *
 * Clusters: ListClusters only knows names and states, not tags, so it is
 * asked for the clusters created since the attempt started (less
 * EMR_ADOPT_SLACK_MS for clock skew), page by page, and each one whose name
 * ends in our suffix is described to compare its tag: one DescribeCluster,
 * however many clusters share the user's name. (A cluster named exactly as
 * the user wrote it, without a suffix, was created by an older baton and is
 * described too.) Steps: ListSteps returns a cluster's steps newest first
 * (when no state filter is given), 50 a page; we stop at the first step
 * created before the attempt started.
 *
 * A lookup that cannot finish (too many pages, a Marker that repeats) fails
 * the attempt instead of answering NOT_FOUND: submitting again could
 * duplicate work, which is what adoption exists to prevent.
 *
 * The sweep (after a submission that followed a lookup, docs/failover.md
 * Rule 4) walks the same pages but to the end, collecting every resource
 * with our key; it keeps one and cancels the others: TerminateJobFlows for
 * clusters, CancelSteps for steps. It keeps the first created while the
 * attempt runs, else the one the attempt recorded (its outputs went
 * downstream already). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "baton/log.h"
#include "ops/emr_int.h"

static int64_t since_s(const emr_call_t *c)
{
    int64_t ms = c->started_ms - EMR_ADOPT_SLACK_MS;
    return ms > 0 ? ms / 1000 : 0;
}

static int sweeping(const emr_call_t *c)
{
    return c->base.kind == OPC_SWEEP;
}

int emr_take_marker(emr_call_t *c, const json_t *reply, const char *op)
{
    const char *m = emr_str(reply, "Marker");
    if (m && c->page_marker && !strcmp(m, c->page_marker)) {
        opc_fail(&c->base, "bad_response", "%s: the same Marker twice", op);
        return 0;
    }
    opc_strset(&c->page_marker, m && *m ? m : NULL);
    c->pages++;
    return 1;
}

static void sweep_decide(emr_call_t *c);

/* Nothing older is left to look at: NOT_FOUND for a lookup, the verdict on
 * the twins found for a sweep. */
static void walk_over(emr_call_t *c)
{
    if (sweeping(c)) {
        sweep_decide(c);
        return;
    }
    bt_info("emr: %s: nothing carries this run key now", c->base.run_key);
    opc_finish(&c->base, BT_OP_NOT_FOUND);
}

/* Asks for the next page, or ends the walk after the last one. A lookup
 * that cannot see every page fails rather than answer NOT_FOUND; a sweep
 * judges what it saw. */
static void next_page(emr_call_t *c, const char *op, json_t *(*body)(const emr_call_t *),
                      opc_step_fn step)
{
    if (!c->page_marker) {
        walk_over(c);
    } else if (c->pages >= EMR_ADOPT_MAX_PAGES) {
        if (sweeping(c))
            sweep_decide(c);
        else
            opc_fail(&c->base, "lookup_incomplete",
                     "%s: more than %d pages; not submitting again without knowing", op,
                     EMR_ADOPT_MAX_PAGES);
    } else {
        emr_continue(c, op, body(c), 1, step);
    }
}

/* ------------------------------------------------------------ clusters */

static void on_list_clusters(opc_call_t *oc, bt_err_t err, const bt_http_response_t *res);

/* A name this attempt's cluster may have: ours with the suffix, or the
 * user's name alone (an older baton's). */
static int cluster_name_ours(const emr_call_t *c, const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (!n)
        return 0;
    return (n >= EMR_SUFFIX_LEN && !strcmp(name + n - EMR_SUFFIX_LEN, c->suffix)) ||
           !strcmp(name, c->name);
}

static json_t *list_clusters_body(const emr_call_t *c)
{
    /* every state: a cluster that already failed is still ours to report */
    json_t *b = json_pack("{s:I, s:[s,s,s,s,s,s,s]}", "CreatedAfter", (json_int_t)since_s(c),
                          "ClusterStates", "STARTING", "BOOTSTRAPPING", "RUNNING", "WAITING",
                          "TERMINATING", "TERMINATED", "TERMINATED_WITH_ERRORS");
    if (b && c->page_marker)
        json_object_set_new(b, "Marker", json_string(c->page_marker));
    return b;
}

static void on_candidate(opc_call_t *oc, bt_err_t err, const bt_http_response_t *res);

/* Describes this page's next candidate, or moves on to the next page. */
static void next_candidate(emr_call_t *c)
{
    if (c->cand_i < json_array_size(c->candidates)) {
        const char *id = json_string_value(json_array_get(c->candidates, c->cand_i));
        emr_continue(c, "DescribeCluster", json_pack("{s:s}", "ClusterId", id), 1, on_candidate);
    } else {
        next_page(c, "ListClusters", list_clusters_body, on_list_clusters);
    }
}

static void on_candidate(opc_call_t *oc, bt_err_t err, const bt_http_response_t *res)
{
    emr_call_t *c = emr_of(oc);
    const json_t *cl = json_object_get(oc->reply, "Cluster");
    const char *id = json_string_value(json_array_get(c->candidates, c->cand_i));
    if (!json_is_object(cl))
        return opc_fail(oc, "bad_response", "DescribeCluster: the answer has no Cluster");
    const char *tag = emr_cluster_tag(cl, EMR_TAG_RUN_KEY);
    c->cand_i++;
    if (tag && !strcmp(tag, c->marker)) {
        const json_t *status = json_object_get(cl, "Status");
        if (!sweeping(c)) {
            opc_strset(&c->cluster_id, id);
            bt_info("emr: %s: adopted cluster %s (tagged with this run key)", oc->run_key, id);
            return emr_cluster_verdict(c, cl);
        }
        opc_twin_add(oc, id, emr_created_ms(status), emr_str(status, "State"));
    }
    next_candidate(c);
}

static void on_list_clusters(opc_call_t *oc, bt_err_t err, const bt_http_response_t *res)
{
    emr_call_t *c = emr_of(oc);
    const json_t *list = json_object_get(oc->reply, "Clusters"), *cl;
    size_t i;
    if (list && !json_is_array(list))
        return opc_fail(oc, "bad_response", "ListClusters: Clusters is not a list");
    /* this page's candidates replace the last page's, all examined by now */
    json_decref(c->candidates);
    if (!(c->candidates = json_array()))
        return opc_fail(oc, "lookup_incomplete", "out of memory");
    c->cand_i = 0;
    json_array_foreach(list, i, cl) {
        const char *name = emr_str(cl, "Name"), *id = emr_str(cl, "Id");
        if (id && *id && cluster_name_ours(c, name))
            json_array_append_new(c->candidates, json_string(id));
    }
    if (emr_take_marker(c, oc->reply, "ListClusters"))
        next_candidate(c);
}

bt_err_t emr_adopt_cluster(emr_call_t *c)
{
    return emr_send(c, "ListClusters", list_clusters_body(c), 1, on_list_clusters);
}

/* ------------------------------------------------------------ steps */

static json_t *list_steps_body(const emr_call_t *c)
{
    json_t *b = json_pack("{s:s}", "ClusterId", c->cluster_id);
    if (b && c->page_marker)
        json_object_set_new(b, "Marker", json_string(c->page_marker));
    return b;
}

static int ends_with_marker(const char *name, const char *marker)
{
    size_t n = strlen(name), m = strlen(marker);
    return n >= m + 2 && name[n - 1] == ']' && name[n - m - 2] == '[' &&
           !memcmp(name + n - m - 1, marker, m);
}

static void on_list_steps(opc_call_t *oc, bt_err_t err, const bt_http_response_t *res)
{
    emr_call_t *c = emr_of(oc);
    const json_t *list = json_object_get(oc->reply, "Steps"), *st;
    int64_t oldest = c->started_ms - EMR_ADOPT_SLACK_MS;
    size_t i;
    if (list && !json_is_array(list))
        return opc_fail(oc, "bad_response", "ListSteps: Steps is not a list");
    json_array_foreach(list, i, st) {
        const char *name = emr_str(st, "Name"), *id = emr_str(st, "Id");
        const json_t *status = json_object_get(st, "Status");
        int64_t created = emr_created_ms(status);
        if (name && id && *id && ends_with_marker(name, c->marker)) {
            if (sweeping(c)) {
                opc_twin_add(oc, id, created, emr_str(status, "State"));
                continue;
            }
            opc_strset(&c->step_id, id);
            bt_info("emr: %s: adopted step %s on %s (named with this run key)", oc->run_key, id,
                    c->cluster_id);
            return emr_step_verdict(c, st);
        }
        if (created >= 0 && created < oldest)
            return walk_over(c); /* newest first: everything from here on is older than us */
    }
    if (emr_take_marker(c, oc->reply, "ListSteps"))
        next_page(c, "ListSteps", list_steps_body, on_list_steps);
}

bt_err_t emr_adopt_step(emr_call_t *c)
{
    if (!c->cluster_id) {
        if (sweeping(c))
            opc_finish(&c->base, BT_OP_SUCCESS);
        else
            opc_fail(&c->base, "bad_spec", "emr_add_step: cluster_id is empty");
        return BT_OK;
    }
    return emr_send(c, "ListSteps", list_steps_body(c), 1, on_list_steps);
}

/* ------------------------------------------------------------ the sweep */

static int twin_ending(const char *state)
{
    return !strcmp(state, "TERMINATING") || !strcmp(state, "TERMINATED") ||
           !strcmp(state, "TERMINATED_WITH_ERRORS") || !strcmp(state, "CANCELLED") ||
           !strcmp(state, "CANCEL_PENDING") || !strcmp(state, "FAILED") ||
           !strcmp(state, "COMPLETED") || !strcmp(state, "INTERRUPTED");
}

static int is_step(const emr_call_t *c)
{
    return c->base.which == OP(EMR_ADD_STEP);
}

/* The answer: SUCCESS with the kept one's id and, when twins were
 * cancelled, which ones in the detail. */
static void sweep_answer(emr_call_t *c, const char *kept)
{
    if (c->base.duplicates) {
        char detail[900] = "";
        size_t n = 0;
        for (size_t i = 0; i < c->base.ntwins && n < sizeof detail - 1; i++) {
            const opc_twin_t *t = &c->base.twins[i];
            if (strcmp(t->id, kept))
                n += (size_t)snprintf(detail + n, sizeof detail - n, "%s%s (%s)", n ? ", " : "",
                                      t->id, t->state);
        }
        opc_set_detail(&c->base, detail);
    }
    opc_finish(&c->base, BT_OP_SUCCESS);
}

static void sweep_cancel(emr_call_t *c);

static void on_twin_cancelled(opc_call_t *oc, bt_err_t err, const bt_http_response_t *res)
{
    emr_call_t *c = emr_of(oc);
    if (is_step(c))
        sweep_answer(c, c->step_id);
    else
        sweep_cancel(c); /* clusters: one TerminateJobFlows each, the next one now */
}

/* Cancels the twins that are neither kept nor ending already: the steps in
 * one CancelSteps, the clusters one at a time. */
static void sweep_cancel(emr_call_t *c)
{
    const char *kept = is_step(c) ? c->step_id : c->cluster_id;
    const opc_twin_t *t;
    json_t *ids = json_array();
    const char *noun = is_step(c) ? "step" : "cluster";
    while (ids && (t = opc_twin_next(&c->base, kept, twin_ending, noun))) {
        json_array_append_new(ids, json_string(t->id));
        if (!is_step(c))
            break;
    }
    if (!json_array_size(ids)) {
        json_decref(ids);
        sweep_answer(c, kept);
    } else if (is_step(c)) {
        emr_continue(c, "CancelSteps",
                     json_pack("{s:s, s:o, s:s}", "ClusterId", c->cluster_id, "StepIds", ids,
                               "StepCancellationOption", "SEND_INTERRUPT"),
                     1, on_twin_cancelled);
    } else {
        emr_continue(c, "TerminateJobFlows", json_pack("{s:o}", "JobFlowIds", ids), 1,
                     on_twin_cancelled);
    }
}

/* Keeps one twin (opc_twin_keep says which), then cancels the others. */
static void sweep_decide(emr_call_t *c)
{
    char **kept = is_step(c) ? &c->step_id : &c->cluster_id;
    const opc_twin_t *k = opc_twin_keep(&c->base, *kept);
    if (!k) {
        opc_finish(&c->base, BT_OP_SUCCESS); /* not even ours is listed (yet): nothing to judge */
        return;
    }
    opc_strset(kept, k->id);
    opc_set_state(&c->base, k->state);
    sweep_cancel(c);
}
