/* Operators: YAML mappings onto their protobuf messages, generically,
 * through protobuf-c's descriptors. A new field in proto/baton.proto is
 * usable in workflow files without touching this file; only required
 * fields, outputs and cross-field rules are listed here.
 *
 * Naming: the YAML key is the proto field name, except that integer fields
 * ending in _ms or _s take a duration and drop the suffix
 * (poll_interval_ms <- "poll_interval: 30s"), and configurations_json takes
 * YAML under `configurations` and stores it as JSON (job_flow_overrides_json
 * likewise, checked against EMR's input shape: emr_overrides.c). */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "baton/clock.h"
#include "workflow/workflow_int.h"

/* bt_task_outputs() of test_op lists the keys of its outputs map from a
 * per-thread array: the map is bounded so the array can be. */
#define TEST_OP_MAX_OUTPUTS 64

typedef enum { K_PLAIN, K_DUR_MS, K_DUR_S, K_JSON } key_kind_t;

/* The YAML key of a field, and how its value is written. */
static key_kind_t yaml_key(const ProtobufCFieldDescriptor *f, char *buf, size_t len)
{
    size_t n = strlen(f->name);
    int integer = f->type == PROTOBUF_C_TYPE_UINT32 || f->type == PROTOBUF_C_TYPE_UINT64 ||
                  f->type == PROTOBUF_C_TYPE_INT32 || f->type == PROTOBUF_C_TYPE_INT64;
    key_kind_t k = K_PLAIN;
    if (integer && n > 3 && !strcmp(f->name + n - 3, "_ms"))
        k = K_DUR_MS, n -= 3;
    else if (integer && n > 2 && !strcmp(f->name + n - 2, "_s"))
        k = K_DUR_S, n -= 2;
    else if (f->type == PROTOBUF_C_TYPE_STRING && n > 5 && !strcmp(f->name + n - 5, "_json"))
        k = K_JSON, n -= 5;
    if (n >= len)
        n = len - 1;
    memcpy(buf, f->name, n);
    buf[n] = '\0';
    return k;
}

static const ProtobufCFieldDescriptor *field_by_key(const ProtobufCMessageDescriptor *d,
                                                    const char *key, key_kind_t *kind)
{
    char name[128];
    for (unsigned i = 0; i < d->n_fields; i++) {
        key_kind_t k = yaml_key(&d->fields[i], name, sizeof name);
        if (!strcmp(name, key)) {
            if (kind)
                *kind = k;
            return &d->fields[i];
        }
    }
    return NULL;
}

static void key_list(const ProtobufCMessageDescriptor *d, char *buf, size_t len)
{
    size_t used = 0;
    char name[128];
    buf[0] = '\0';
    for (unsigned i = 0; i < d->n_fields && used < len; i++) {
        yaml_key(&d->fields[i], name, sizeof name);
        int w = snprintf(buf + used, len - used, "%s%s", i ? ", " : "", name);
        if (w < 0)
            break;
        used += (size_t)w;
    }
}

/* Map fields are repeated `...Entry` messages of exactly key and value. */
static int is_map_entry(const ProtobufCMessageDescriptor *d)
{
    size_t n = strlen(d->name);
    return n > 5 && !strcmp(d->name + n - 5, "Entry") && d->n_fields == 2 &&
           !strcmp(d->fields[0].name, "key") && !strcmp(d->fields[1].name, "value");
}

static size_t elem_size(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_ENUM:
        return 4;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return 8;
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(void *);
    default:
        return 0; /* float, double, bytes: no operator has them */
    }
}

static ProtobufCMessage *new_message(wl_ctx_t *c, const ProtobufCMessageDescriptor *d)
{
    ProtobufCMessage *m = malloc(d->sizeof_message);
    if (!m) {
        c->oom = 1;
        return NULL;
    }
    protobuf_c_message_init(d, m);
    return m;
}

/* ---------------------------------------------------------- JSON */

/* EMR's Configurations are classifications with string properties, so
 * every scalar becomes a JSON string ("true" stays "true", as EMR wants). */
static json_t *to_json(wl_ctx_t *c, const bt_ynode_t *n, const char *path)
{
    char sub[WL_PATH_MAX];
    json_t *j = NULL;
    switch (n->kind) {
    case BT_YNODE_SCALAR:
        wl_note_template(c, n, path);
        if (!(j = json_string(n->value)))
            wl_err(c, n, path, "not valid UTF-8");
        return j;
    case BT_YNODE_SEQ:
        j = json_array();
        for (size_t i = 0; j && i < n->n; i++) {
            wl_path_index(sub, path, i);
            json_t *v = to_json(c, n->items[i], sub);
            if (v)
                json_array_append_new(j, v);
        }
        return j;
    case BT_YNODE_MAP:
        j = json_object();
        for (size_t i = 0; j && i < n->n; i++) {
            wl_path_key(sub, path, n->keys[i]);
            json_t *v = to_json(c, n->items[i], sub);
            if (v)
                json_object_set_new(j, n->keys[i], v);
        }
        return j;
    }
    return NULL;
}

static void set_json(wl_ctx_t *c, char **slot, const bt_ynode_t *n, const char *path)
{
    json_t *j;
    if (n->kind == BT_YNODE_SCALAR) {
        /* already JSON: checked here rather than by EMR at run time */
        json_error_t je;
        if (!(j = json_loads(n->value, 0, &je))) {
            wl_err(c, n, path, "not JSON (%s at character %d); or write it as YAML", je.text,
                   je.position);
            return;
        }
        wl_note_template(c, n, path);
    } else if (!(j = to_json(c, n, path))) {
        c->oom = 1;
        return;
    }
    if (!json_is_array(j) && !json_is_object(j))
        wl_err(c, n, path, "expected a list of classifications, got a single value");
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!s) {
        c->oom = 1;
        return;
    }
    *slot = s; /* json_dumps memory is plain malloc: free_unpacked frees it */
}

/* ---------------------------------------------------------- values */

static ProtobufCMessage *map_message(wl_ctx_t *c, const ProtobufCMessageDescriptor *d,
                                     const bt_ynode_t *n, const char *path, int allow_null);

/* Stores one value into `slot`, of the field's type. */
static void set_value(wl_ctx_t *c, void *slot, const ProtobufCFieldDescriptor *f, key_kind_t k,
                      const bt_ynode_t *n, const char *path)
{
    uint64_t u = 0;
    int64_t s = 0;
    int b = 0;
    if (k == K_DUR_MS || k == K_DUR_S) {
        if (wl_duration(c, n, path, &u) < 0)
            return;
        if (k == K_DUR_S && u % 1000) {
            wl_err(c, n, path, "'%s' is not a whole number of seconds", n->value);
            return;
        }
        if (k == K_DUR_S)
            u /= 1000;
        uint64_t max = elem_size(f->type) == 4 ? UINT32_MAX : UINT64_MAX;
        if (f->type == PROTOBUF_C_TYPE_INT32 || f->type == PROTOBUF_C_TYPE_INT64)
            max >>= 1;
        if (u > max) {
            wl_err(c, n, path, "'%s' is too long", n->value);
            return;
        }
        if (elem_size(f->type) == 4)
            *(uint32_t *)slot = (uint32_t)u;
        else
            *(uint64_t *)slot = u;
        return;
    }
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING: {
        if (k == K_JSON && !strcmp(f->name, "job_flow_overrides_json")) {
            char *j = wl_emr_overrides_json(c, n, path);
            if (j)
                *(char **)slot = j; /* json_dumps memory is plain malloc */
            return;
        }
        if (k == K_JSON) {
            set_json(c, slot, n, path);
            return;
        }
        const char *v = wl_scalar(c, n, path, "a string");
        if (!v)
            return;
        char *dup = wl_strdup(c, v);
        if (dup)
            *(char **)slot = dup;
        wl_note_template(c, n, path);
        return;
    }
    case PROTOBUF_C_TYPE_BOOL:
        if (wl_bool(c, n, path, &b) == 0)
            *(protobuf_c_boolean *)slot = b;
        return;
    case PROTOBUF_C_TYPE_UINT32:
        if (wl_uint(c, n, path, UINT32_MAX, &u) == 0)
            *(uint32_t *)slot = (uint32_t)u;
        return;
    case PROTOBUF_C_TYPE_UINT64:
        if (wl_uint(c, n, path, UINT64_MAX, &u) == 0)
            *(uint64_t *)slot = u;
        return;
    case PROTOBUF_C_TYPE_INT32:
        if (wl_int(c, n, path, INT32_MIN, INT32_MAX, &s) == 0)
            *(int32_t *)slot = (int32_t)s;
        return;
    case PROTOBUF_C_TYPE_INT64:
        if (wl_int(c, n, path, INT64_MIN, INT64_MAX, &s) == 0)
            *(int64_t *)slot = s;
        return;
    case PROTOBUF_C_TYPE_MESSAGE:
        *(ProtobufCMessage **)slot = map_message(c, f->descriptor, n, path, 0);
        return;
    default:
        wl_err(c, n, path, "this field's type cannot be written in a workflow file");
        return;
    }
}

/* A repeated field: a YAML list, or for a protobuf map a YAML mapping. */
static void set_repeated(wl_ctx_t *c, ProtobufCMessage *m, const ProtobufCFieldDescriptor *f,
                         key_kind_t k, const bt_ynode_t *n, const char *path)
{
    char sub[WL_PATH_MAX];
    int map = f->type == PROTOBUF_C_TYPE_MESSAGE && is_map_entry(f->descriptor);
    bt_ynode_kind_t want = map ? BT_YNODE_MAP : BT_YNODE_SEQ;
    if (n->kind != want) {
        wl_err(c, n, path, "expected %s, got %s", map ? "a mapping" : "a list", wl_kind(n));
        return;
    }
    size_t es = elem_size(f->type);
    if (!es) {
        wl_err(c, n, path, "this field's type cannot be written in a workflow file");
        return;
    }
    if (n->n == 0)
        return;
    char *arr = calloc(n->n, es);
    if (!arr) {
        c->oom = 1;
        return;
    }
    /* Elements start NULL; one that stays NULL had an error, and a spec
     * with errors is freed (free_unpacked takes NULLs), never returned. */
    *(size_t *)((char *)m + f->quantifier_offset) = n->n;
    *(void **)((char *)m + f->offset) = arr;
    for (size_t i = 0; i < n->n; i++) {
        void *slot = arr + i * es;
        if (map) {
            const ProtobufCMessageDescriptor *ed = f->descriptor;
            ProtobufCMessage *e = new_message(c, ed);
            *(ProtobufCMessage **)slot = e;
            if (!e)
                return;
            wl_path_key(sub, path, n->keys[i]);
            char *key = wl_strdup(c, n->keys[i]);
            if (key)
                *(char **)((char *)e + ed->fields[0].offset) = key;
            set_value(c, (char *)e + ed->fields[1].offset, &ed->fields[1], K_PLAIN, n->items[i],
                      sub);
        } else {
            wl_path_index(sub, path, i);
            set_value(c, slot, f, k, n->items[i], sub);
        }
    }
}

/* allow_null: an operator written with nothing under it ("test_op:") is
 * an empty mapping; a nested message left empty is a mistake. */
static ProtobufCMessage *map_message(wl_ctx_t *c, const ProtobufCMessageDescriptor *d,
                                     const bt_ynode_t *n, const char *path, int allow_null)
{
    char sub[WL_PATH_MAX];
    if (n->kind != BT_YNODE_MAP && !(allow_null && bt_ynode_is_null(n))) {
        wl_err(c, n, path, "expected a mapping, got %s", wl_kind(n));
        return NULL;
    }
    ProtobufCMessage *m = new_message(c, d);
    if (!m || n->kind != BT_YNODE_MAP)
        return m;
    for (size_t i = 0; i < n->n; i++) {
        key_kind_t k = K_PLAIN;
        const ProtobufCFieldDescriptor *f = field_by_key(d, n->keys[i], &k);
        wl_path_key(sub, path, n->keys[i]);
        if (!f) {
            char valid[1024];
            key_list(d, valid, sizeof valid);
            wl_err_key(c, n, i, sub, "unknown key '%s' (valid: %s)", n->keys[i], valid);
            continue;
        }
        if (f->label == PROTOBUF_C_LABEL_REPEATED)
            set_repeated(c, m, f, k, n->items[i], sub);
        else
            set_value(c, (char *)m + f->offset, f, k, n->items[i], sub);
    }
    return m;
}

/* ---------------------------------------------------------- rules */

/* n: the operator's mapping (maybe empty); at: where to report about it */
typedef void (*op_check_fn)(wl_ctx_t *c, const bt_ynode_t *n, const bt_ynode_t *at,
                            const char *path);

static void check_emr_create_cluster(wl_ctx_t *c, const bt_ynode_t *n, const bt_ynode_t *at,
                                     const char *path)
{
    const bt_ynode_t *groups = bt_ynode_get(n, "instance_groups");
    const bt_ynode_t *fleets = bt_ynode_get(n, "instance_fleets");
    char sub[WL_PATH_MAX];
    if (groups && fleets) {
        wl_path_key(sub, path, "instance_fleets");
        wl_err(c, fleets, sub, "instance_groups and instance_fleets exclude each other");
    } else if (!groups && !fleets) {
        wl_err(c, at, path, "required key 'instance_groups' or 'instance_fleets' is missing");
    }
}

/* url: and auth: of the operators that talk to a Livy or a Genie: a URL
 * (or a template that renders one: checked when it is rendered) and the
 * name of a credential in batond.yaml (never a secret in the workflow). */
static void check_endpoint(wl_ctx_t *c, const bt_ynode_t *n, const bt_ynode_t *at,
                           const char *path)
{
    (void)at;
    const bt_ynode_t *url = bt_ynode_get(n, "url"), *auth = bt_ynode_get(n, "auth");
    char sub[WL_PATH_MAX];
    if (url && url->kind == BT_YNODE_SCALAR && *url->value && !strstr(url->value, "{{") &&
        strncmp(url->value, "http://", 7) && strncmp(url->value, "https://", 8)) {
        wl_path_key(sub, path, "url");
        wl_err(c, url, sub, "'%.80s' is not an http:// or https:// URL", url->value);
    }
    if (auth && auth->kind == BT_YNODE_SCALAR && *auth->value) {
        const char *k = auth->value;
        size_t len = strspn(k, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-");
        if (k[len] || len > 64) {
            wl_path_key(sub, path, "auth");
            wl_err(c, auth, sub,
                   "names a credential defined under credentials: in batond.yaml (1-64 of "
                   "A-Z a-z 0-9 _ -), never the secret itself");
        }
    }
}

static void check_livy_statement(wl_ctx_t *c, const bt_ynode_t *n, const bt_ynode_t *at,
                                 const char *path)
{
    check_endpoint(c, n, at, path);
    static const char *const kinds[] = {"spark", "pyspark", "sparkr", "sql"};
    const bt_ynode_t *kind = bt_ynode_get(n, "kind");
    char sub[WL_PATH_MAX];
    if (!kind || kind->kind != BT_YNODE_SCALAR || !*kind->value)
        return; /* reported as missing or mistyped already */
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (!strcmp(kind->value, kinds[i]))
            return;
    wl_path_key(sub, path, "kind");
    wl_err(c, kind, sub, "'%s' is not a statement kind (spark, pyspark, sparkr, sql)",
           kind->value);
}

static void check_test_op(wl_ctx_t *c, const bt_ynode_t *n, const bt_ynode_t *at,
                          const char *path)
{
    (void)at;
    const bt_ynode_t *outs = bt_ynode_get(n, "outputs");
    char sub[WL_PATH_MAX];
    if (!outs || outs->kind != BT_YNODE_MAP)
        return;
    wl_path_key(sub, path, "outputs");
    if (outs->n > TEST_OP_MAX_OUTPUTS)
        wl_err(c, outs, sub, "%zu outputs; at most %d", outs->n, TEST_OP_MAX_OUTPUTS);
    for (size_t i = 0; i < outs->n; i++) {
        const char *k = outs->keys[i];
        size_t len = strspn(k, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-");
        if (!*k || k[len] || len > 100)
            wl_err_key(c, outs, i, sub,
                       "output name '%s' cannot be named by templates (1-100 of A-Z a-z 0-9 _ -)",
                       k);
    }
}

/* What a cluster publishes once it is ready (emr_call.c, ready_outputs). */
#define CLUSTER_READY_OUTPUTS                                                                    \
    "master_dns", "master_private_dns", "master_public_dns", "master_instance_id",             \
        "release_label", "applications", "cluster_arn"

/* What {{ tasks.<id>.<output> }} may name, what must be there, and the
 * rules that span fields. Keyed by the TaskSpec oneof member's name. */
static const struct op_rule {
    const char *name;
    const char *const outputs[10];
    const char *const required[7];
    op_check_fn check;
} rules[] = {
    {"emr_create_cluster", {"cluster_id", CLUSTER_READY_OUTPUTS, NULL}, {"name", "release_label", NULL},
     check_emr_create_cluster},
    {"emr_add_step", {"step_id", "cluster_id", NULL}, {"cluster_id", "name", "args", NULL}, NULL},
    {"emr_terminate_cluster", {NULL}, {"cluster_id", NULL}, NULL},
    {"emr_wait_cluster", {"state", CLUSTER_READY_OUTPUTS, NULL}, {"cluster_id", NULL}, NULL},
    {"emr_wait_step", {"state", NULL}, {"cluster_id", "step_id", NULL}, NULL},
    {"genie_job",
     {"genie_job_id", NULL},
     {"name", "user", "version", "command_args", "cluster_criteria", "command_criterion", NULL},
     check_endpoint},
    {"genie_register_cluster", {"genie_cluster_id", "genie_command_ids", NULL}, {"name", "user", "version", NULL},
     check_endpoint},
    {"livy_batch", {"livy_batch_id", "app_id", NULL}, {"file", NULL}, check_endpoint},
    {"livy_statement",
     {"livy_session_id", "livy_statement_id", "output", NULL},
     {"kind", "code", NULL},
     check_livy_statement},
    {"test_op", {"job_id", NULL}, {NULL}, check_test_op},
};

static const struct op_rule *rule_for(const char *name)
{
    for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++)
        if (!strcmp(rules[i].name, name))
            return &rules[i];
    return NULL;
}

static void check_required(wl_ctx_t *c, const bt_ynode_t *n, const bt_ynode_t *at,
                           const char *path, const char *const *req)
{
    char sub[WL_PATH_MAX];
    for (; *req; req++) {
        const bt_ynode_t *v = bt_ynode_get(n, *req);
        if (!v) {
            wl_err(c, at, path, "required key '%s' is missing", *req);
            continue;
        }
        /* a plain null was reported as mistyped when it was mapped */
        int empty = v->kind == BT_YNODE_SCALAR ? !*v->value && !bt_ynode_is_null(v) : v->n == 0;
        wl_path_key(sub, path, *req);
        if (empty)
            wl_err(c, v, sub, "must not be empty");
    }
}

const ProtobufCFieldDescriptor *wl_operator_field(const char *key)
{
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field_by_name(&baton__v1__task_spec__descriptor, key);
    return f && (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) ? f : NULL;
}

int wl_operator_enabled(const ProtobufCFieldDescriptor *op, const char **why)
{
#ifndef BATON_TEST_OPERATORS
    if (!strcmp(op->name, "test_op")) {
        *why = "test_op exists only in test and benchmark builds";
        return 0;
    }
#endif
    (void)op;
    *why = NULL;
    return 1;
}

void wl_operator_names(char *buf, size_t len)
{
    const ProtobufCMessageDescriptor *d = &baton__v1__task_spec__descriptor;
    size_t used = 0;
    const char *why;
    buf[0] = '\0';
    for (unsigned i = 0; i < d->n_fields && used < len; i++) {
        if (!(d->fields[i].flags & PROTOBUF_C_FIELD_FLAG_ONEOF) ||
            !wl_operator_enabled(&d->fields[i], &why))
            continue;
        int w = snprintf(buf + used, len - used, "%s%s", used ? ", " : "", d->fields[i].name);
        if (w < 0)
            break;
        used += (size_t)w;
    }
}

ProtobufCMessage *wl_map_operator(wl_ctx_t *c, const ProtobufCFieldDescriptor *op,
                                  const bt_ynode_t *node, const char *path)
{
    ProtobufCMessage *m = map_message(c, op->descriptor, node, path, 1);
    const struct op_rule *r = rule_for(op->name);
    if (!m || !r)
        return m;
    /* "livy_batch:" with nothing under it is an empty mapping */
    static const bt_ynode_t empty = {.kind = BT_YNODE_MAP};
    const bt_ynode_t *n = node->kind == BT_YNODE_MAP ? node : &empty;
    check_required(c, n, node, path, r->required);
    if (r->check)
        r->check(c, n, node, path);
    return m;
}

/* ---------------------------------------------------------- outputs */

const char *const *bt_task_outputs(const bt_task_spec_t *task)
{
    static const char *const none[] = {NULL};
    if (!task || task->operator_case == BATON__V1__TASK_SPEC__OPERATOR__NOT_SET)
        return none;
    if (task->operator_case == BATON__V1__TASK_SPEC__OPERATOR_TEST_OP && task->test_op) {
        /* valid until the next call in this thread (the loader bounds the map) */
        static _Thread_local const char *list[TEST_OP_MAX_OUTPUTS + 2];
        size_t n = 0;
        int job_id = 0;
        for (size_t i = 0; i < task->test_op->n_outputs && n < TEST_OP_MAX_OUTPUTS; i++) {
            list[n++] = task->test_op->outputs[i]->key;
            job_id |= !strcmp(task->test_op->outputs[i]->key, "job_id");
        }
        if (!job_id)
            list[n++] = "job_id";
        list[n] = NULL;
        return list;
    }
    const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field(
        &baton__v1__task_spec__descriptor, (unsigned)task->operator_case);
    const struct op_rule *r = f ? rule_for(f->name) : NULL;
    return r ? r->outputs : none;
}
