/* Adoption: finding what an earlier leader submitted under this attempt's
 * run key, so that a takeover (or a RunJobFlow whose answer was lost) never
 * starts a second cluster or step. EMR has no idempotency token; instead
 * every cluster is tagged baton:run-key=<marker> and every step's name ends
 * in "[<marker>]" (emr_json.c).
 *
 * Clusters: ListClusters only knows names and states, not tags, so it is
 * asked for the clusters created since the attempt started (less
 * EMR_ADOPT_SLACK_MS for clock skew), page by page, and each one with our
 * cluster name is described to compare its tag. Steps: ListSteps returns a
 * cluster's steps newest first (when no state filter is given), 50 a page;
 * we stop at the first step created before the attempt started.
 *
 * A lookup that cannot finish (too many pages, a Marker that repeats) fails
 * the attempt instead of answering NOT_FOUND: submitting again could
 * duplicate work, which is what adoption exists to prevent. */
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

/* Takes a Marker from a list answer; 0 (answered) when it repeats. */
static int take_marker(emr_call_t *c, const json_t *reply, const char *op)
{
    const char *m = emr_str(reply, "Marker");
    if (m && c->page_marker && !strcmp(m, c->page_marker)) {
        emr_fail(c, "bad_response", "%s: the same Marker twice", op);
        return 0;
    }
    emr_set_str(&c->page_marker, m && *m ? m : NULL);
    c->pages++;
    return 1;
}

/* Asks for the next page, or answers NOT_FOUND after the last one. */
static void next_page(emr_call_t *c, const char *op, json_t *(*body)(const emr_call_t *),
                      emr_next_fn next)
{
    if (!c->page_marker) {
        bt_info("emr: %s: nothing carries this run key; submitting", c->run_key);
        emr_finish(c, BT_OP_NOT_FOUND);
    } else if (c->pages >= EMR_ADOPT_MAX_PAGES) {
        emr_fail(c, "lookup_incomplete",
                 "%s: more than %d pages; not submitting again without knowing", op,
                 EMR_ADOPT_MAX_PAGES);
    } else {
        emr_continue(c, op, body(c), 1, next);
    }
}

/* ------------------------------------------------------------ clusters */

static void on_list_clusters(emr_call_t *c, json_t *reply);

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

static void on_candidate(emr_call_t *c, json_t *reply)
{
    const json_t *cl = json_object_get(reply, "Cluster");
    const char *id = json_string_value(json_array_get(c->candidates, c->cand_i));
    if (!json_is_object(cl)) {
        emr_fail(c, "bad_response", "DescribeCluster: the answer has no Cluster");
        return;
    }
    const char *tag = emr_cluster_tag(cl, EMR_TAG_RUN_KEY);
    if (tag && !strcmp(tag, c->marker)) {
        emr_set_str(&c->cluster_id, id);
        bt_info("emr: %s: adopted cluster %s (tagged with this run key)", c->run_key, id);
        emr_cluster_verdict(c, cl);
        return;
    }
    c->cand_i++;
    if (c->cand_i < json_array_size(c->candidates)) {
        id = json_string_value(json_array_get(c->candidates, c->cand_i));
        emr_continue(c, "DescribeCluster", json_pack("{s:s}", "ClusterId", id), 1, on_candidate);
    } else {
        next_page(c, "ListClusters", list_clusters_body, on_list_clusters);
    }
}

static void on_list_clusters(emr_call_t *c, json_t *reply)
{
    const json_t *list = json_object_get(reply, "Clusters"), *cl;
    size_t i;
    if (list && !json_is_array(list)) {
        emr_fail(c, "bad_response", "ListClusters: Clusters is not a list");
        return;
    }
    /* this page's candidates replace the last page's, all examined by now */
    json_decref(c->candidates);
    if (!(c->candidates = json_array())) {
        emr_fail(c, "lookup_incomplete", "out of memory");
        return;
    }
    c->cand_i = 0;
    json_array_foreach(list, i, cl) {
        const char *name = emr_str(cl, "Name"), *id = emr_str(cl, "Id");
        if (name && id && *id && !strcmp(name, c->name))
            json_array_append_new(c->candidates, json_string(id));
    }
    if (!take_marker(c, reply, "ListClusters"))
        return;
    if (json_array_size(c->candidates)) {
        const char *id = json_string_value(json_array_get(c->candidates, 0));
        emr_continue(c, "DescribeCluster", json_pack("{s:s}", "ClusterId", id), 1, on_candidate);
    } else {
        next_page(c, "ListClusters", list_clusters_body, on_list_clusters);
    }
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

static void on_list_steps(emr_call_t *c, json_t *reply)
{
    const json_t *list = json_object_get(reply, "Steps"), *st;
    int64_t oldest = c->started_ms - EMR_ADOPT_SLACK_MS;
    size_t i;
    if (list && !json_is_array(list)) {
        emr_fail(c, "bad_response", "ListSteps: Steps is not a list");
        return;
    }
    json_array_foreach(list, i, st) {
        const char *name = emr_str(st, "Name"), *id = emr_str(st, "Id");
        if (name && id && *id && ends_with_marker(name, c->marker)) {
            emr_set_str(&c->step_id, id);
            bt_info("emr: %s: adopted step %s on %s (named with this run key)", c->run_key, id,
                    c->cluster_id);
            emr_step_verdict(c, st);
            return;
        }
        int64_t created = emr_created_ms(json_object_get(st, "Status"));
        if (created >= 0 && created < oldest) {
            /* newest first: everything from here on is older than us */
            bt_info("emr: %s: no step carries this run key; submitting", c->run_key);
            emr_finish(c, BT_OP_NOT_FOUND);
            return;
        }
    }
    if (take_marker(c, reply, "ListSteps"))
        next_page(c, "ListSteps", list_steps_body, on_list_steps);
}

bt_err_t emr_adopt_step(emr_call_t *c)
{
    if (!c->cluster_id) {
        emr_fail(c, "bad_spec", "emr_add_step: cluster_id is empty");
        return BT_OK;
    }
    return emr_send(c, "ListSteps", list_steps_body(c), 1, on_list_steps);
}
