/* genie_register_cluster: make a cluster known to Genie, or, as a teardown
 * task, take it out of service.
 *
 * Registration is POST /api/v3/clusters with an id derived from the task-run
 * key (genie_json.c), so it is answered 201 the first time and 409 ever
 * after: both mean "registered", and the operator succeeds at once (nothing
 * runs remotely, so there is nothing to poll). A lookup after an unknown
 * outcome is GET /api/v3/clusters/{id}.
 *
 * Then the commands it names (`commands:` ids, `command_criteria:` tag
 * sets resolved to ACTIVE commands by GET /api/v3/commands) are linked to
 * it with PUT /api/v3/clusters/{id}/commands: Genie 3 runs a job only on a
 * cluster that has a matching command linked (Genie 4 resolves commands by
 * their own cluster criteria and takes the PUT as a no-op). A lookup that
 * finds the cluster links them too (a takeover between the two calls).
 *
 * Teardown: a task of this operator whose `status` is OUT_OF_SERVICE or
 * TERMINATED and whose `teardown_status` is set does not register anything.
 * It is another task run than the registration (another run key, so another
 * derived id), hence it finds its clusters by search: the clusters with this
 * exact name, the task's tags, the registering baton cluster's tag (so a
 * cluster a person registered is never touched) and, with emr_cluster_id,
 * "emr.cluster_id:<id>", not yet in the teardown status; then it changes
 * each one's command links (DELETE /api/v3/clusters/{id}/commands) and
 * then its status with Genie's PATCH /api/v3/clusters/{id} and a JSON
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
static void on_unlinked(opc_call_t *oc, bt_err_t err, const bt_http_response_t *res);

/* DELETE /api/v3/clusters/{id}/commands: the cluster's command links. */
static bt_err_t unlink_req(genie_call_t *c, const char *id, opc_step_fn step)
{
    char *esc = genie_url_escape(id), *path = NULL;
    bt_err_t e = BT_E_NOMEM;
    if (esc && asprintf(&path, "/api/v3/clusters/%s/commands", esc) >= 0) {
        genie_send_t o = {.method = "DELETE", .path = path};
        e = genie_send(c, &o, step);
    }
    free(esc);
    free(path);
    return e;
}

static void out_of_memory(genie_call_t *c)
{
    opc_set(&c->base, BT_OP_TRANSIENT, NULL, "genie: out of memory");
    opc_done(&c->base);
}

/* Teardown: the next cluster found loses its command links, then its
 * status; after the last, the answer with all of them. */
static void teardown_next(genie_call_t *c)
{
    if (c->next_id < c->n_ids) {
        if (unlink_req(c, c->ids[c->next_id], on_unlinked) != BT_OK)
            out_of_memory(c);
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

static void on_unlinked(opc_call_t *oc, bt_err_t err, const bt_http_response_t *res)
{
    genie_call_t *c = genie_of(oc);
    (void)err;
    /* gone meanwhile (404), or a Genie 4 that links no commands: on */
    if (!genie_2xx(res) && res->status != 404)
        return genie_rejected(c, "cluster command unlink", res);
    if (cluster_req(c, "PATCH", c->ids[c->next_id++], c->patch, on_patched) != BT_OK)
        out_of_memory(c);
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

/* ---- linking the commands a registration names (Genie 3: a job runs on a
 * cluster only with an ACTIVE command linked to it that matches its
 * commandCriteria). The ids the spec names, then for each criterion every
 * ACTIVE command carrying all its tags; then one PUT that sets the links
 * (idempotent: a takeover that links again changes nothing). */

static void on_linked(opc_call_t *oc, bt_err_t err, const bt_http_response_t *res)
{
    genie_call_t *c = genie_of(oc);
    char joined[1024] = "";
    size_t i, off = 0;
    json_t *v;
    (void)err;
    if (!genie_2xx(res))
        return genie_rejected(c, "linking commands to the cluster", res);
    json_array_foreach(c->cmd_ids, i, v)
    {
        int w = snprintf(joined + off, sizeof joined - off, "%s%s", i ? "," : "",
                         json_string_value(v));
        if (w < 0 || (size_t)w >= sizeof joined - off)
            break;
        off += (size_t)w;
    }
    bt_info("genie: cluster %s: commands %s linked", c->id, joined);
    opc_output(oc, "genie_command_ids", joined);
    opc_output(oc, "genie_cluster_id", c->id);
    opc_finish(oc, BT_OP_SUCCESS);
}

static void link_next(genie_call_t *c);

static void on_commands(opc_call_t *oc, bt_err_t err, const bt_http_response_t *res)
{
    genie_call_t *c = genie_of(oc);
    json_error_t je;
    size_t i, found = 0;
    json_t *cmd;
    (void)err;
    if (res->status != 200)
        return genie_rejected(c, "command search", res);
    json_t *doc = json_loadb(res->body, res->body_len, 0, &je);
    json_t *emb = json_object_get(doc, "_embedded");
    json_t *list = emb ? json_object_get(emb, "commandList") : NULL;
    if (!json_is_object(doc) || (list && !json_is_array(list))) {
        json_decref(doc);
        return genie_bad(c, "command search: not a HAL page of commands");
    }
    json_array_foreach(list, i, cmd)
    {
        const char *id = json_string_value(json_object_get(cmd, "id"));
        if (!id || !*id)
            continue;
        found++;
        size_t k;
        json_t *have;
        int dup = 0;
        json_array_foreach(c->cmd_ids, k, have) dup |= !strcmp(json_string_value(have), id);
        if (!dup)
            json_array_append_new(c->cmd_ids, json_string(id));
    }
    json_decref(doc);
    if (!found) {
        const char *q = json_string_value(json_array_get(c->cmd_queries, c->query_i - 1));
        opc_fail(oc, "no_command", "genie: no ACTIVE command matches command_criteria (%s)",
                 q ? strchr(q, '?') + 1 : "?");
        return;
    }
    link_next(c);
}

static void link_next(genie_call_t *c)
{
    if (c->query_i < json_array_size(c->cmd_queries)) {
        const char *path = json_string_value(json_array_get(c->cmd_queries, c->query_i++));
        genie_send_t o = {.method = "GET", .path = path, .max_attempts = 3, .budget_ms = 30000};
        if (genie_send(c, &o, on_commands) != BT_OK)
            out_of_memory(c);
        return;
    }
    if (!json_array_size(c->cmd_ids)) { /* nothing to link */
        opc_output(&c->base, "genie_cluster_id", c->id);
        opc_finish(&c->base, BT_OP_SUCCESS);
        return;
    }
    char *esc = genie_url_escape(c->id), *path = NULL, *body = json_dumps(c->cmd_ids, JSON_COMPACT);
    if (esc && body && asprintf(&path, "/api/v3/clusters/%s/commands", esc) >= 0) {
        genie_send_t o = {.method = "PUT", .path = path, .body = body,
                          .content_type = "application/json"};
        if (genie_send(c, &o, on_linked) != BT_OK)
            path = (free(path), NULL);
    }
    if (!path)
        out_of_memory(c);
    free(path);
    free(esc);
    free(body);
}

/* What to link, from the spec (copied: the spec is gone by the answer). */
static int links_init(genie_call_t *c, const Baton__V1__GenieRegisterCluster *spec)
{
    if (!(c->cmd_ids = json_array()) || !(c->cmd_queries = json_array()))
        return -1;
    for (size_t i = 0; i < spec->n_commands; i++)
        if (json_array_append_new(c->cmd_ids, json_string(spec->commands[i])))
            return -1;
    for (size_t i = 0; i < spec->n_command_criteria; i++) {
        const Baton__V1__GenieCriterion *cr = spec->command_criteria[i];
        char *p = strdup("/api/v3/commands?size=100&status=ACTIVE");
        for (size_t k = 0; p && k < cr->n_tags; k++)
            if (add_param(&p, "tag", cr->tags[k]))
                p = NULL;
        if (!p || json_array_append_new(c->cmd_queries, json_string(p))) {
            free(p);
            return -1;
        }
        free(p);
    }
    return 0;
}

static void on_registered(opc_call_t *oc, bt_err_t err, const bt_http_response_t *res)
{
    genie_call_t *c = genie_of(oc);
    (void)err;
    if (!genie_2xx(res) && res->status != 409)
        return genie_rejected(c, "cluster registration", res);
    bt_info("genie: cluster %s %s", c->id,
            res->status == 409 ? "already registered: adopting it" : "registered");
    link_next(c);
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
    link_next(c); /* a takeover may have come between registering and linking */
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
    if (links_init(c, spec) < 0)
        return BT_E_NOMEM;
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
