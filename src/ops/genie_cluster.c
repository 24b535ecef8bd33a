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
    char *esc = genie_url_escape(value), *q = *p;
    if (!esc || asprintf(p, "%s&%s=%s", q, key, esc) < 0)
        *p = NULL;
    free(q);
    free(esc);
    return *p ? 0 : -1;
}

/* GET /api/v3/clusters?name=..&status=..&tag=.. (see the top of the file). */
static char *search_path(const genie_t *g, const Baton__V1__GenieRegisterCluster *c)
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
static bt_err_t cluster_req(genie_call_t *c, const char *method, const char *id,
                            const char *body, opc_step_fn step)
{
    char *esc = genie_url_escape(id), *path = NULL;
    bt_err_t e = BT_E_NOMEM;
    if (esc && asprintf(&path, "/api/v3/clusters/%s", esc) >= 0) {
        genie_send_t o = {.method = method, .path = path, .body = body,
                          .content_type = body ? "application/json" : NULL,
                          .max_attempts = body ? 0 : 3, .budget_ms = body ? 0 : 30000};
        e = genie_send(c, &o, step);
    }
    free(esc);
    free(path);
    return e;
}

static void on_patched(opc_call_t *oc, bt_err_t err, const bt_http_response_t *res);

/* Teardown: PATCH the next cluster found, or answer with all of them. */
static void teardown_next(genie_call_t *c)
{
    if (c->next_id < c->n_ids) {
        if (cluster_req(c, "PATCH", c->ids[c->next_id++], c->patch, on_patched) != BT_OK) {
            opc_set(&c->base, BT_OP_TRANSIENT, NULL, "genie: out of memory");
            opc_done(&c->base);
        }
        return;
    }
    char joined[GENIE_MAX_TEARDOWN * 40 + 1] = "";
    size_t off = 0;
    for (int i = 0; i < c->n_ids && off < sizeof joined; i++)
        off += (size_t)snprintf(joined + off, sizeof joined - off, "%s%s", i ? "," : "",
                                c->ids[i]);
    bt_info("genie: teardown set %d cluster(s) named %s to %s", c->n_ids, c->name,
            c->base.state ? c->base.state : "");
    opc_output(&c->base, "genie_cluster_id", joined);
    opc_finish(&c->base, BT_OP_SUCCESS);
}

static void on_patched(opc_call_t *oc, bt_err_t err, const bt_http_response_t *res)
{
    genie_call_t *c = genie_of(oc);
    if (genie_2xx(res) || res->status == 404) /* gone meanwhile: nothing to change */
        teardown_next(c);
    else
        genie_rejected(c, "cluster status change", res);
}

static void on_searched(opc_call_t *oc, bt_err_t err, const bt_http_response_t *res)
{
    genie_call_t *c = genie_of(oc);
    char why[200];
    if (res->status != 200)
        return genie_rejected(c, "cluster search", res);
    c->n_ids = genie_parse_clusters(res->body, res->body_len, c->name, c->ids,
                                    GENIE_MAX_TEARDOWN, why, sizeof why);
    if (c->n_ids < 0) {
        c->n_ids = 0;
        return genie_bad(c, why);
    }
    teardown_next(c);
}

static bt_err_t start_teardown(genie_call_t *c, const Baton__V1__GenieRegisterCluster *spec)
{
    if (strcmp(spec->teardown_status, "OUT_OF_SERVICE") &&
        strcmp(spec->teardown_status, "TERMINATED")) {
        opc_fail(&c->base, "invalid_spec",
                 "genie: teardown_status must be OUT_OF_SERVICE or TERMINATED");
        return BT_OK;
    }
    char *path = search_path(c->g, spec);
    c->patch = genie_status_patch(spec->teardown_status);
    c->name = strdup(spec->name ? spec->name : "");
    genie_set_state(c, spec->teardown_status);
    genie_send_t o = {.method = "GET", .path = path, .max_attempts = 3, .budget_ms = 30000};
    bt_err_t e = path && c->patch && c->name ? genie_send(c, &o, on_searched) : BT_E_NOMEM;
    free(path);
    return e;
}

static void on_registered(opc_call_t *oc, bt_err_t err, const bt_http_response_t *res)
{
    genie_call_t *c = genie_of(oc);
    if (!genie_2xx(res) && res->status != 409)
        return genie_rejected(c, "cluster registration", res);
    bt_info("genie: cluster %s %s", c->id,
            res->status == 409 ? "already registered: adopting it" : "registered");
    opc_output(oc, "genie_cluster_id", c->id);
    opc_finish(oc, BT_OP_SUCCESS);
}

static void on_looked_up(opc_call_t *oc, bt_err_t err, const bt_http_response_t *res)
{
    genie_call_t *c = genie_of(oc);
    char why[200], state[32] = "";
    if (genie_got(c, res, "cluster lookup", "genie: no such cluster"))
        return;
    if (genie_parse_cluster(res->body, res->body_len, state, sizeof state, why, sizeof why))
        return genie_bad(c, why);
    genie_set_state(c, state);
    opc_output(oc, "genie_cluster_id", c->id);
    opc_finish(oc, BT_OP_SUCCESS);
}

bt_err_t genie_cluster_start(opc_call_t *oc, const bt_op_call_t *call)
{
    const Baton__V1__GenieRegisterCluster *spec = call->spec->genie_register_cluster;
    bt_err_t e;
    if (!spec || !call->run->run_key)
        return BT_E_INVAL;
    genie_call_t *c = genie_call_init(oc, 0);
    if (opc_use_endpoint(oc, call, spec->url, spec->auth, 1))
        return BT_OK; /* answered */
    genie_uuid(c->g->cluster, "cluster", call->run->run_key, c->id);
    if (oc->kind == OPC_CANCEL) { /* nothing runs remotely */
        opc_output(oc, "genie_cluster_id", "");
        opc_finish(oc, BT_OP_SUCCESS);
        return BT_OK;
    }
    if (is_teardown(spec) && oc->kind == OPC_LOOKUP) {
        /* nothing to adopt: running the teardown again is harmless */
        opc_finish(oc, BT_OP_NOT_FOUND);
        return BT_OK;
    }
    if (is_teardown(spec))
        return start_teardown(c, spec);
    if (oc->kind != OPC_SUBMIT) /* lookup, poll: is it registered? */
        return cluster_req(c, "GET", c->id, NULL, on_looked_up);
    char *body = genie_cluster_body(spec, c->id, c->g->cluster, call->run->run_key);
    if (!body) {
        opc_fail(oc, "invalid_spec",
                 "genie: cannot build the cluster (a field is not valid UTF-8?)");
        return BT_OK;
    }
    genie_set_state(c, *spec->status ? spec->status : "UP");
    /* the id makes a resent POST harmless: 409, adopted */
    genie_send_t o = {.method = "POST", .path = "/api/v3/clusters", .body = body,
                      .content_type = "application/json"};
    e = genie_send(c, &o, on_registered);
    free(body);
    return e;
}
