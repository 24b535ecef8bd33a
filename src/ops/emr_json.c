/* EMR request bodies and response fields (the AWS JSON 1.1 shapes of
 * RunJobFlow, AddJobFlowSteps, DescribeCluster, DescribeStep, ListClusters,
 * ListSteps), kept apart from the request flow in emr.c.
 *
 * Everything read from a response is checked for its type: a field of the
 * wrong type reads as absent, and the caller decides whether that is a bad
 * response. Strings from the spec go through json_string(), which refuses
 * invalid UTF-8, so a bad spec is reported rather than sent. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/emr_int.h"

/* ------------------------------------------------------------ names */

/* The run key as EMR stores it. Keys longer than the marker (long workflow,
 * run and task ids) keep their start and get a hash of the whole key, so
 * two attempts never share a marker. */
void emr_key_marker(const char *run_key, char out[EMR_MARKER_MAX + 1])
{
    size_t n = strlen(run_key);
    if (n <= EMR_MARKER_MAX) {
        memcpy(out, run_key, n + 1);
        return;
    }
    uint64_t h = 1469598103934665603ULL; /* FNV-1a 64 */
    for (const unsigned char *p = (const unsigned char *)run_key; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    size_t keep = EMR_MARKER_MAX - 17;
    while (keep && ((unsigned char)run_key[keep] & 0xC0) == 0x80)
        keep--; /* not in the middle of a UTF-8 sequence */
    snprintf(out, EMR_MARKER_MAX + 1, "%.*s#%016llx", (int)keep, run_key, (unsigned long long)h);
}

/* " [bt:<16 hex digits>]": a hash of the run key that ends every cluster
 * name. ListClusters returns names, not tags, so a lookup describes only
 * the clusters that end in its suffix (the tag confirms), never every
 * cluster that shares the user's name (40 manual runs of "nightly-..."
 * made hundreds of DescribeCluster calls at a takeover). */
void emr_cluster_suffix(const char *run_key, char out[EMR_SUFFIX_LEN + 1])
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a 64 */
    for (const unsigned char *p = (const unsigned char *)run_key; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    snprintf(out, EMR_SUFFIX_LEN + 1, " [bt:%016llx]", (unsigned long long)h);
}

/* "<name> [bt:<hash>]", the name shortened to fit EMR's 256 characters. */
void emr_cluster_name(const char *name, const char *run_key, char *out, size_t len)
{
    char suffix[EMR_SUFFIX_LEN + 1];
    size_t n = strlen(name), room = (len - 1 < EMR_NAME_MAX ? len - 1 : EMR_NAME_MAX);
    emr_cluster_suffix(run_key, suffix);
    if (n > room - EMR_SUFFIX_LEN) {
        n = room - EMR_SUFFIX_LEN;
        while (n && ((unsigned char)name[n] & 0xC0) == 0x80)
            n--;
    }
    snprintf(out, len, "%.*s%s", (int)n, name, suffix);
}

/* "<name> [<marker>]", the name shortened to fit EMR's 256 characters. */
void emr_step_name(const char *name, const char *marker, char *out, size_t len)
{
    size_t suffix = strlen(marker) + 3, n = strlen(name);
    size_t room = len - 1 < EMR_NAME_MAX ? len - 1 : EMR_NAME_MAX;
    if (suffix >= room) {
        snprintf(out, len, "[%s]", marker);
        return;
    }
    if (n > room - suffix) {
        n = room - suffix;
        while (n && ((unsigned char)name[n] & 0xC0) == 0x80)
            n--;
    }
    snprintf(out, len, "%.*s%s[%s]", (int)n, name, n ? " " : "", marker);
}

/* ------------------------------------------------------------ builders */

typedef struct jb {
    char *err;
    size_t errlen;
    int bad;
} jb_t;

static void jb_fail(jb_t *b, const char *what, const char *why)
{
    if (!b->bad)
        snprintf(b->err, b->errlen, "%s: %s", what, why);
    b->bad = 1;
}

static json_t *jstr(jb_t *b, const char *what, const char *v)
{
    json_t *s = json_string(v ? v : "");
    if (!s)
        jb_fail(b, what, "not valid UTF-8");
    return s;
}

/* Sets obj[key] = v unless v is empty (EMR treats "" as a value). */
static void put_str(jb_t *b, json_t *obj, const char *key, const char *v)
{
    if (v && *v) {
        json_t *s = jstr(b, key, v);
        if (s)
            json_object_set_new(obj, key, s);
    }
}

static void put_upper(jb_t *b, json_t *obj, const char *key, const char *v)
{
    char buf[64];
    size_t i;
    if (!v || !*v)
        return;
    for (i = 0; v[i] && i < sizeof buf - 1; i++)
        buf[i] = (char)toupper((unsigned char)v[i]);
    buf[i] = '\0';
    put_str(b, obj, key, buf);
}

static json_t *str_array(jb_t *b, const char *what, char **v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++) {
        json_t *s = jstr(b, what, v[i]);
        if (s)
            json_array_append_new(a, s);
    }
    return a;
}

static json_t *instances(jb_t *b, const Baton__V1__EmrCreateCluster *s)
{
    json_t *in = json_object();
    if (s->n_instance_fleets) {
        json_t *fleets = json_array();
        for (size_t i = 0; i < s->n_instance_fleets; i++) {
            const Baton__V1__EmrInstanceFleet *f = s->instance_fleets[i];
            json_t *o = json_object(), *types = json_array();
            put_str(b, o, "Name", f->name);
            put_upper(b, o, "InstanceFleetType", f->fleet_type);
            json_object_set_new(o, "TargetOnDemandCapacity",
                                json_integer(f->target_on_demand_capacity));
            json_object_set_new(o, "TargetSpotCapacity", json_integer(f->target_spot_capacity));
            for (size_t k = 0; k < f->n_instance_types; k++) {
                json_t *t = json_object();
                put_str(b, t, "InstanceType", f->instance_types[k]);
                json_array_append_new(types, t);
            }
            json_object_set_new(o, "InstanceTypeConfigs", types);
            json_array_append_new(fleets, o);
        }
        json_object_set_new(in, "InstanceFleets", fleets);
        if (s->subnet_id && *s->subnet_id) {
            char *one[] = {s->subnet_id};
            json_object_set_new(in, "Ec2SubnetIds", str_array(b, "subnet_id", one, 1));
        }
    } else {
        json_t *groups = json_array();
        for (size_t i = 0; i < s->n_instance_groups; i++) {
            const Baton__V1__EmrInstanceGroup *g = s->instance_groups[i];
            json_t *o = json_object();
            put_str(b, o, "Name", g->name);
            put_upper(b, o, "InstanceRole", g->role);
            put_str(b, o, "InstanceType", g->instance_type);
            json_object_set_new(o, "InstanceCount", json_integer(g->instance_count));
            put_upper(b, o, "Market", g->market);
            put_str(b, o, "BidPrice", g->bid_price);
            json_array_append_new(groups, o);
        }
        json_object_set_new(in, "InstanceGroups", groups);
        put_str(b, in, "Ec2SubnetId", s->subnet_id);
    }
    put_str(b, in, "Ec2KeyName", s->ec2_key_name);
    json_object_set_new(in, "KeepJobFlowAliveWhenNoSteps",
                        json_boolean(s->keep_alive_when_no_steps));
    return in;
}

/* configurations_json: the loader stored a list (or one classification,
 * which EMR wants as a list of one); templates may have broken it since. */
static json_t *configurations(jb_t *b, const char *text)
{
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    if (json_is_object(j)) {
        json_t *a = json_array();
        json_array_append_new(a, j);
        return a;
    }
    if (!json_is_array(j)) {
        json_decref(j);
        jb_fail(b, "configurations", j ? "not a list of classifications" : "not JSON");
        return NULL;
    }
    return j;
}

/* Overrides over the typed body: objects member by member, anything else
 * replaced; Tags are added to (never over our run-key tag, which is what a
 * new leader finds the cluster by). */
static void merge(json_t *into, json_t *from)
{
    const char *k;
    json_t *v;
    json_object_foreach(from, k, v)
    {
        json_t *cur = json_object_get(into, k);
        if (json_is_object(cur) && json_is_object(v)) {
            merge(cur, v);
        } else if (!strcmp(k, "Tags") && json_is_array(cur) && json_is_array(v)) {
            size_t i;
            json_t *t;
            json_array_foreach(v, i, t)
            {
                const char *key = json_string_value(json_object_get(t, "Key"));
                if (!key || strcmp(key, EMR_TAG_RUN_KEY))
                    json_array_insert(cur, 0, t);
            }
        } else {
            json_object_set(into, k, v);
        }
    }
}

json_t *emr_run_job_flow_body(const Baton__V1__EmrCreateCluster *s, const char *name,
                              const char *marker, char *err, size_t errlen)
{
    jb_t b = {.err = err, .errlen = errlen};
    json_t *o = json_object(), *apps = json_array(), *boot = json_array(), *tags = json_array();
    if (!o || !apps || !boot || !tags) {
        json_decref(o);
        json_decref(apps);
        json_decref(boot);
        json_decref(tags);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    put_str(&b, o, "Name", name);
    put_str(&b, o, "ReleaseLabel", s->release_label);
    for (size_t i = 0; i < s->n_applications; i++) {
        json_t *a = json_object();
        put_str(&b, a, "Name", s->applications[i]);
        json_array_append_new(apps, a);
    }
    json_object_set_new(o, "Applications", apps);
    json_object_set_new(o, "Instances", instances(&b, s));
    put_str(&b, o, "ServiceRole", s->service_role);
    put_str(&b, o, "JobFlowRole", s->job_flow_role);
    put_str(&b, o, "LogUri", s->log_uri);
    if (s->configurations_json && *s->configurations_json) {
        json_t *cfg = configurations(&b, s->configurations_json);
        if (cfg)
            json_object_set_new(o, "Configurations", cfg);
    }
    for (size_t i = 0; i < s->n_bootstrap_actions; i++) {
        const Baton__V1__EmrBootstrapAction *ba = s->bootstrap_actions[i];
        json_t *a = json_object(), *script = json_object();
        char dflt[32];
        snprintf(dflt, sizeof dflt, "bootstrap-%zu", i + 1);
        put_str(&b, a, "Name", ba->name && *ba->name ? ba->name : dflt);
        put_str(&b, script, "Path", ba->path);
        json_object_set_new(script, "Args", str_array(&b, "bootstrap_actions.args", ba->args,
                                                      ba->n_args));
        json_object_set_new(a, "ScriptBootstrapAction", script);
        json_array_append_new(boot, a);
    }
    if (s->n_bootstrap_actions)
        json_object_set_new(o, "BootstrapActions", boot);
    else
        json_decref(boot);
    /* the user's tags, then ours, which nobody may override: it is what a
     * new leader finds the cluster by */
    for (size_t i = 0; i < s->n_tags; i++) {
        if (!strcmp(s->tags[i]->key, EMR_TAG_RUN_KEY))
            continue;
        json_t *t = json_object();
        put_str(&b, t, "Key", s->tags[i]->key);
        json_object_set_new(t, "Value", jstr(&b, "tags", s->tags[i]->value));
        json_array_append_new(tags, t);
    }
    if (s->keep) { /* the orphan reaper leaves it alone (emr_reap.c) */
        json_t *k = json_object();
        put_str(&b, k, "Key", "baton:keep");
        put_str(&b, k, "Value", "true");
        json_array_append_new(tags, k);
    }
    json_t *ours = json_object();
    put_str(&b, ours, "Key", EMR_TAG_RUN_KEY);
    put_str(&b, ours, "Value", marker);
    json_array_append_new(tags, ours);
    json_object_set_new(o, "Tags", tags);
    /* a cluster kept alive without steps bills until someone ends it: if
     * its teardown never runs (killed run, lost leader, a bug), EMR's own
     * idle timer does, after an hour unless the workflow says otherwise */
    uint32_t idle = s->auto_termination_idle_s ? s->auto_termination_idle_s
                    : s->keep_alive_when_no_steps ? EMR_DEFAULT_IDLE_S
                                                  : 0;
    if (idle) {
        json_t *p = json_object();
        json_object_set_new(p, "IdleTimeout", json_integer(idle));
        json_object_set_new(o, "AutoTerminationPolicy", p);
    }
    json_object_set_new(o, "VisibleToAllUsers", json_true());
    if (!b.bad && s->job_flow_overrides_json && *s->job_flow_overrides_json) {
        json_error_t je;
        json_t *ov = json_loads(s->job_flow_overrides_json, 0, &je);
        if (!json_is_object(ov)) {
            /* the loader wrote it; a template may have broken it */
            snprintf(err, errlen, "job_flow_overrides: not a JSON object after rendering (%s)",
                     je.text);
            b.bad = 1;
        } else {
            merge(o, ov);
        }
        json_decref(ov);
    }
    if (b.bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

json_t *emr_add_steps_body(const Baton__V1__EmrAddStep *s, const char *step_name, char *err,
                           size_t errlen)
{
    jb_t b = {.err = err, .errlen = errlen};
    json_t *o = json_object(), *steps = json_array(), *step = json_object(), *jar = json_object();
    if (!o || !steps || !step || !jar) {
        json_decref(o);
        json_decref(steps);
        json_decref(step);
        json_decref(jar);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    put_str(&b, o, "JobFlowId", s->cluster_id);
    put_str(&b, step, "Name", step_name);
    put_upper(&b, step, "ActionOnFailure",
              s->action_on_failure && *s->action_on_failure ? s->action_on_failure : "CONTINUE");
    put_str(&b, jar, "Jar", s->jar && *s->jar ? s->jar : "command-runner.jar");
    put_str(&b, jar, "MainClass", s->main_class);
    json_object_set_new(jar, "Args", str_array(&b, "args", s->args, s->n_args));
    json_object_set_new(step, "HadoopJarStep", jar);
    json_array_append_new(steps, step);
    json_object_set_new(o, "Steps", steps);
    if (s->execution_role_arn && *s->execution_role_arn)
        put_str(&b, o, "ExecutionRoleArn", s->execution_role_arn);
    if (b.bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* ------------------------------------------------------------ responses */

const char *emr_str(const json_t *obj, const char *key)
{
    return json_is_object(obj) ? json_string_value(json_object_get(obj, key)) : NULL;
}

/* AWS JSON errors: {"__type": "ValidationException", "message": "..."},
 * where __type may be namespaced ("com.amazonaws.emr#Foo") or carry a
 * ":http://..." suffix, and the message key's case varies by service. */
void emr_parse_error(const char *body, size_t len, emr_error_t *out)
{
    out->type[0] = out->message[0] = '\0';
    json_t *j = body && len ? json_loadb(body, len, 0, NULL) : NULL;
    const char *t = emr_str(j, "__type"), *m = emr_str(j, "message");
    if (!t)
        t = emr_str(j, "code");
    if (!m)
        m = emr_str(j, "Message");
    if (t) {
        const char *hash = strrchr(t, '#');
        if (hash)
            t = hash + 1;
        size_t n = strcspn(t, ":");
        if (n >= sizeof out->type)
            n = sizeof out->type - 1;
        memcpy(out->type, t, n);
        out->type[n] = '\0';
        /* a type is an identifier: anything else is not worth recording */
        for (char *p = out->type; *p; p++)
            if (!isalnum((unsigned char)*p) && *p != '_' && *p != '.')
                *p = '_';
    }
    if (m)
        snprintf(out->message, sizeof out->message, "%s", m);
    json_decref(j);
}

static int in_list(const char *s, const char *const *list)
{
    for (; s && *list; list++)
        if (!strcmp(s, *list))
            return 1;
    return 0;
}

int emr_is_throttling(const char *type)
{
    static const char *const t[] = {"ThrottlingException", "Throttling", "ThrottledException",
                                    "RequestThrottledException", "TooManyRequestsException",
                                    "RequestLimitExceeded", "SlowDown", NULL};
    return in_list(type, t);
}

int emr_is_expired_token(const char *type)
{
    static const char *const t[] = {"ExpiredTokenException", "ExpiredToken", "RequestExpired",
                                    NULL};
    return in_list(type, t);
}

int emr_cluster_state_known(const char *s)
{
    static const char *const t[] = {"STARTING", "BOOTSTRAPPING", "RUNNING", "WAITING",
                                    "TERMINATING", "TERMINATED", "TERMINATED_WITH_ERRORS", NULL};
    return in_list(s, t);
}

int emr_cluster_state_terminal(const char *s)
{
    static const char *const t[] = {"TERMINATED", "TERMINATED_WITH_ERRORS", NULL};
    return in_list(s, t);
}

int emr_step_state_known(const char *s)
{
    static const char *const t[] = {"PENDING", "CANCEL_PENDING", "RUNNING", "COMPLETED",
                                    "CANCELLED", "FAILED", "INTERRUPTED", NULL};
    return in_list(s, t);
}

int emr_step_state_failed(const char *s)
{
    static const char *const t[] = {"CANCELLED", "FAILED", "INTERRUPTED", NULL};
    return in_list(s, t);
}

/* Status.StateChangeReason {Code, Message} -> "CODE: Message" */
void emr_cluster_reason(const json_t *status, char *out, size_t len)
{
    const json_t *r = json_object_get(status, "StateChangeReason");
    const char *code = emr_str(r, "Code"), *msg = emr_str(r, "Message");
    snprintf(out, len, "%s%s%s", code ? code : "", code && msg ? ": " : "", msg ? msg : "");
}

/* Status.FailureDetails {Reason, Message, LogFile}, else the change reason */
void emr_step_failure(const json_t *status, char *out, size_t len)
{
    const json_t *f = json_object_get(status, "FailureDetails");
    const char *reason = emr_str(f, "Reason"), *msg = emr_str(f, "Message");
    const char *log = emr_str(f, "LogFile");
    if (!reason && !msg && !log) {
        emr_cluster_reason(status, out, len);
        return;
    }
    int n = snprintf(out, len, "%s%s%s", reason ? reason : "", reason && msg ? ": " : "",
                     msg ? msg : "");
    if (log && n >= 0 && (size_t)n < len)
        snprintf(out + n, len - (size_t)n, "%s(log: %s)", n ? " " : "", log);
}

const char *emr_cluster_tag(const json_t *cluster, const char *key)
{
    const json_t *tags = json_object_get(cluster, "Tags");
    size_t i;
    const json_t *t;
    if (!json_is_array(tags))
        return NULL;
    json_array_foreach(tags, i, t) {
        const char *k = emr_str(t, "Key");
        if (k && !strcmp(k, key))
            return emr_str(t, "Value");
    }
    return NULL;
}

/* Timestamps are epoch seconds as JSON numbers, with a fraction or not. */
int64_t emr_created_ms(const json_t *status)
{
    const json_t *v = json_object_get(json_object_get(status, "Timeline"), "CreationDateTime");
    if (!json_is_number(v))
        return -1;
    double s = json_number_value(v);
    return s > 0 && s < 1e11 ? (int64_t)(s * 1000.0) : -1;
}
