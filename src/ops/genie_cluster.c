/* genie_register_cluster: make a cluster known to Genie, or, as a teardown
 * task, take it out of service.
 *
 * Registration is POST /api/v3/clusters with an id derived from the task-run
 * key (genie_json.c), so it is answered 201 the first time and 409 ever
 * after: both mean "registered", and the operator succeeds at once (nothing
 * runs remotely, so there is nothing to poll). A lookup after an unknown
 * outcome is GET /api/v3/clusters/{id}.
 *
 * Teardown: a task of this operator whose `status` is OUT_OF_SERVICE or
 * TERMINATED and whose `teardown_status` is set does not register anything.
 * It is another task run than the registration (another run key, so another
 * derived id), hence it finds its clusters by search: the clusters with this
 * exact name, the task's tags, the registering baton cluster's tag (so a
 * cluster a person registered is never touched) and, with emr_cluster_id,
 * "emr.cluster_id:<id>", not yet in the teardown status; then it changes
 * each one's status with Genie's PATCH /api/v3/clusters/{id} and a JSON
 * Patch [{"op":"replace","path":"/status","value":<teardown_status>}].
 * genie-web's ClusterRestController declares that PATCH as consuming
 * application/json, so that is the Content-Type sent (Spring would answer
 * application/json-patch+json with 415). A repeated teardown finds nothing
 * left to change and succeeds. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "baton/log.h"
#include "ops/genie_int.h"

static int is_teardown(const Baton__V1__GenieRegisterCluster *c)
{
    return c->teardown_status && *c->teardown_status && c->status &&
           (!strcmp(c->status, "OUT_OF_SERVICE") || !strcmp(c->status, "TERMINATED"));
}

/* Appends "&key=escaped(value)" to *p (freed and replaced); -1 when out of
 * memory, *p then NULL. */
static int add_param(char **p, const char *key, const char *value)
{
    char *esc = bt_genie_url_escape(value), *q = *p;
    if (!esc || asprintf(p, "%s&%s=%s", q, key, esc) < 0)
        *p = NULL;
    free(q);
    free(esc);
    return *p ? 0 : -1;
}

/* GET /api/v3/clusters?name=..&status=..&tag=.. (see the top of the file). */
static char *search_path(const bt_genie_t *g, const Baton__V1__GenieRegisterCluster *c)
{
    char *p = strdup("/api/v3/clusters?size=100"), tag[1200];
    if (!p || add_param(&p, "name", c->name ? c->name : ""))
        return NULL;
    if (strcmp(c->teardown_status, "UP") && add_param(&p, "status", "UP"))
        return NULL;
    if (strcmp(c->teardown_status, "OUT_OF_SERVICE") && add_param(&p, "status", "OUT_OF_SERVICE"))
        return NULL;
    for (size_t i = 0; i < c->n_tags; i++)
        if (add_param(&p, "tag", c->tags[i]))
            return NULL;
    snprintf(tag, sizeof tag, "baton.cluster:%s", g->cluster);
    if (add_param(&p, "tag", tag))
        return NULL;
    if (c->emr_cluster_id && *c->emr_cluster_id) {
        snprintf(tag, sizeof tag, "emr.cluster_id:%s", c->emr_cluster_id);
        if (add_param(&p, "tag", tag))
            return NULL;
    }
    return p;
}

/* GET or PATCH /api/v3/clusters/{id} */
static bt_err_t cluster_req(bt_genie_req_t *r, const char *method, const char *id,
                            const char *body)
{
    char *esc = bt_genie_url_escape(id), *path = NULL;
    bt_err_t e = BT_E_NOMEM;
    if (esc && asprintf(&path, "/api/v3/clusters/%s", esc) >= 0) {
        bt_genie_send_t o = {.method = method, .path = path, .body = body,
                             .content_type = body ? "application/json" : NULL, .idempotent = 1,
                             .max_attempts = body ? 0 : 3, .budget_ms = body ? 0 : 30000};
        e = bt_genie_send(r, &o);
    }
    free(esc);
    free(path);
    return e;
}

static bt_err_t start_teardown(bt_genie_t *g, bt_genie_req_t *r,
                               const Baton__V1__GenieRegisterCluster *spec)
{
    if (strcmp(spec->teardown_status, "OUT_OF_SERVICE") &&
        strcmp(spec->teardown_status, "TERMINATED")) {
        bt_genie_answer_later(r, BT_OP_FAILED, "invalid_spec",
                              "genie: teardown_status must be OUT_OF_SERVICE or TERMINATED");
        return BT_OK;
    }
    char *path = search_path(g, spec);
    r->patch = bt_genie_status_patch(spec->teardown_status);
    r->name = strdup(spec->name ? spec->name : "");
    snprintf(r->state, sizeof r->state, "%s", spec->teardown_status);
    r->step = BT_GENIE_ST_CL_SEARCH;
    bt_genie_send_t o = {.method = "GET", .path = path, .idempotent = 1, .max_attempts = 3,
                         .budget_ms = 30000};
    bt_err_t e = path && r->patch && r->name ? bt_genie_send(r, &o) : BT_E_NOMEM;
    free(path);
    return e;
}

bt_err_t bt_genie_cluster_call(bt_genie_t *g, const bt_op_call_t *c, bt_genie_call_t kind)
{
    const Baton__V1__GenieRegisterCluster *spec = c->spec->genie_register_cluster;
    bt_err_t e;
    if (!spec || !c->run->run_key)
        return BT_E_INVAL;
    bt_genie_req_t *r = bt_genie_req_new(g, c, BT_GENIE_ST_CL_REGISTER, 0);
    if (!r)
        return BT_E_NOMEM;
    bt_genie_uuid(g->cluster, "cluster", c->run->run_key, r->id);
    if (kind == BT_GENIE_CANCEL) { /* nothing runs remotely */
        bt_genie_answer_later(r, BT_OP_SUCCESS, NULL, NULL);
        return BT_OK;
    }
    if (is_teardown(spec) && kind == BT_GENIE_LOOKUP) {
        /* nothing to adopt: running the teardown again is harmless */
        bt_genie_answer_later(r, BT_OP_NOT_FOUND, NULL, NULL);
        return BT_OK;
    }
    if (is_teardown(spec)) {
        e = start_teardown(g, r, spec);
    } else if (kind == BT_GENIE_SUBMIT) {
        char *body = bt_genie_cluster_body(spec, r->id, g->cluster, c->run->run_key);
        if (!body) {
            bt_genie_answer_later(r, BT_OP_FAILED, "invalid_spec",
                                  "genie: cannot build the cluster (a field is not valid UTF-8?)");
            return BT_OK;
        }
        snprintf(r->state, sizeof r->state, "%s", *spec->status ? spec->status : "UP");
        /* the id makes a resent POST harmless: 409, adopted below */
        bt_genie_send_t o = {.method = "POST", .path = "/api/v3/clusters", .body = body,
                             .content_type = "application/json", .idempotent = 1};
        e = bt_genie_send(r, &o);
        free(body);
    } else { /* lookup, poll: is it registered? */
        r->step = BT_GENIE_ST_CL_GET;
        e = cluster_req(r, "GET", r->id, NULL);
    }
    if (e != BT_OK)
        bt_genie_req_free(r);
    return e;
}

/* Teardown: PATCH the next cluster found, or answer with all of them. */
static void teardown_next(bt_genie_req_t *r)
{
    if (r->next_id < r->n_ids) {
        if (cluster_req(r, "PATCH", r->ids[r->next_id++], r->patch) != BT_OK)
            bt_genie_finish(r, BT_OP_TRANSIENT, NULL, "genie: out of memory", NULL, NULL, NULL);
        return;
    }
    char joined[BT_GENIE_MAX_TEARDOWN * 40 + 1] = "";
    size_t off = 0;
    for (int i = 0; i < r->n_ids && off < sizeof joined; i++)
        off += (size_t)snprintf(joined + off, sizeof joined - off, "%s%s", i ? "," : "",
                                r->ids[i]);
    bt_info("genie: teardown set %d cluster(s) named %s to %s", r->n_ids, r->name, r->state);
    bt_genie_finish(r, BT_OP_SUCCESS, NULL, NULL, NULL, "genie_cluster_id", joined);
}

/* Every answer but the transient ones (the caller handled those). */
void bt_genie_cluster_answer(bt_genie_req_t *r, const bt_http_response_t *res)
{
    char err[200];
    switch (r->step) {
    case BT_GENIE_ST_CL_REGISTER:
        if (bt_genie_2xx(res) || res->status == 409) {
            bt_info("genie: cluster %s %s", r->id,
                    res->status == 409 ? "already registered: adopting it" : "registered");
            bt_genie_finish(r, BT_OP_SUCCESS, NULL, NULL, NULL, "genie_cluster_id", r->id);
        } else {
            bt_genie_finish_rejected(r, "cluster registration", res);
        }
        return;
    case BT_GENIE_ST_CL_GET:
        if (res->status == 404)
            bt_genie_finish(r, BT_OP_NOT_FOUND, NULL, "genie: no such cluster", NULL, NULL, NULL);
        else if (res->status != 200)
            bt_genie_finish_rejected(r, "cluster lookup", res);
        else if (bt_genie_parse_cluster(res->body, res->body_len, r->state, sizeof r->state, err,
                                        sizeof err))
            bt_genie_finish_bad(r, err);
        else
            bt_genie_finish(r, BT_OP_SUCCESS, NULL, NULL, NULL, "genie_cluster_id", r->id);
        return;
    case BT_GENIE_ST_CL_SEARCH:
        if (res->status != 200) {
            bt_genie_finish_rejected(r, "cluster search", res);
            return;
        }
        r->n_ids = bt_genie_parse_clusters(res->body, res->body_len, r->name, r->ids,
                                           BT_GENIE_MAX_TEARDOWN, err, sizeof err);
        if (r->n_ids < 0) {
            r->n_ids = 0;
            bt_genie_finish_bad(r, err);
            return;
        }
        r->step = BT_GENIE_ST_CL_PATCH;
        teardown_next(r);
        return;
    case BT_GENIE_ST_CL_PATCH:
        if (bt_genie_2xx(res) || res->status == 404) /* gone meanwhile: nothing to change */
            teardown_next(r);
        else
            bt_genie_finish_rejected(r, "cluster status change", res);
        return;
    default:
        bt_genie_finish_bad(r, "an answer to no request");
        return;
    }
}
