/* `job_flow_overrides:` of emr_create_cluster: any member of EMR's
 * RunJobFlow request, checked against AWS's own input shape (emr_model.c)
 * when the workflow is applied, so a typo is "file:line: unknown RunJobFlow
 * member 'Intances'", not a 400 at 3 a.m., and written as JSON with the
 * types EMR wants (numbers as numbers, booleans as booleans; the YAML
 * scalar alone cannot say). emr_json.c merges the result over what the
 * typed fields build. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "workflow/emr_model.h"
#include "workflow/workflow_int.h"

/* What baton writes itself: set through the typed fields, never here. */
static const char *const owned[] = {"Name"};

/* Edit distance of two short names, for "did you mean"; capped. */
static size_t distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), prev[64], cur[64];
    if (la >= 63 || lb >= 63)
        return 99;
    for (size_t j = 0; j <= lb; j++)
        prev[j] = j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t sub = prev[j - 1] + ((a[i - 1] | 32) != (b[j - 1] | 32));
            size_t del = prev[j] + 1, ins = cur[j - 1] + 1;
            cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
        memcpy(prev, cur, (lb + 1) * sizeof prev[0]);
    }
    return prev[lb];
}

static const emr_member_t *member(const emr_shape_t *s, const char *name)
{
    for (size_t i = 0; i < s->nmembers; i++)
        if (!strcmp(s->members[i].name, name))
            return &s->members[i];
    return NULL;
}

static const char *nearest(const emr_shape_t *s, const char *name)
{
    const char *best = NULL;
    size_t bd = 3; /* at most two edits away */
    for (size_t i = 0; i < s->nmembers; i++) {
        size_t d = distance(name, s->members[i].name);
        if (d < bd)
            bd = d, best = s->members[i].name;
    }
    return best;
}

static int templated(const bt_ynode_t *n)
{
    return n->kind == BT_YNODE_SCALAR && strstr(n->value, "{{");
}

static json_t *shape_json(wl_ctx_t *c, int shape, const bt_ynode_t *n, const char *path);

static json_t *structure(wl_ctx_t *c, const emr_shape_t *s, const bt_ynode_t *n, const char *path,
                         int top)
{
    char sub[WL_PATH_MAX];
    if (n->kind != BT_YNODE_MAP) {
        wl_err(c, n, path, "expected a mapping (%s), got %s", s->name, wl_kind(n));
        return NULL;
    }
    json_t *o = json_object();
    if (!o) {
        c->oom = 1;
        return NULL;
    }
    for (size_t i = 0; i < n->n; i++) {
        const char *k = n->keys[i];
        const emr_member_t *m = member(s, k);
        wl_path_key(sub, path, k);
        if (!m) {
            const char *near = nearest(s, k);
            wl_err_key(c, n, i, sub, "unknown %s member '%s'%s%s%s",
                       top ? "RunJobFlow" : s->name, k, near ? " (did you mean '" : "",
                       near ? near : "", near ? "'?)" : "");
            continue;
        }
        int mine = 0;
        for (size_t j = 0; top && j < sizeof owned / sizeof owned[0]; j++)
            mine |= !strcmp(k, owned[j]);
        if (mine) {
            wl_err_key(c, n, i, sub, "'%s' is set by the task's own field (name:)", k);
            continue;
        }
        json_t *v = shape_json(c, m->shape, n->items[i], sub);
        if (v)
            json_object_set_new(o, k, v);
    }
    /* a required member the typed fields supply (Instances at the top) is
     * not required of an override */
    for (size_t i = 0; !top && i < s->nmembers; i++)
        if (s->members[i].required && !bt_ynode_get(n, s->members[i].name))
            wl_err(c, n, path, "required %s member '%s' is missing", s->name,
                   s->members[i].name);
    return o;
}

static int number_of(wl_ctx_t *c, const emr_shape_t *s, const bt_ynode_t *n, const char *path,
                     double *out)
{
    const char *v = wl_scalar(c, n, path, "a number");
    char *end = NULL;
    if (!v)
        return -1;
    errno = 0;
    double d = s->type == EMS_DOUBLE ? strtod(v, &end) : (double)strtoll(v, &end, 10);
    if (!*v || *end || errno || !isfinite(d)) {
        wl_err(c, n, path, "'%s' is not %s (%s)", v,
               s->type == EMS_DOUBLE ? "a number" : "a whole number", s->name);
        return -1;
    }
    if ((s->has_min && d < s->min) || (s->has_max && d > s->max)) {
        wl_err(c, n, path, "%s is out of range for %s (%.0f to %.0f)", v, s->name,
               s->has_min ? s->min : -INFINITY, s->has_max ? s->max : INFINITY);
        return -1;
    }
    *out = d;
    return 0;
}

static json_t *shape_json(wl_ctx_t *c, int shape, const bt_ynode_t *n, const char *path)
{
    const emr_shape_t *s = &emr_shapes[shape];
    char sub[WL_PATH_MAX];
    json_t *j = NULL;
    double d;
    int b;
    if (templated(n) && s->type != EMS_STRING) {
        wl_err(c, n, path, "a template may only fill a string member here (%s is not one)",
               s->name);
        return NULL;
    }
    switch (s->type) {
    case EMS_STRUCT:
        return structure(c, s, n, path, 0);
    case EMS_LIST:
        if (n->kind != BT_YNODE_SEQ) {
            wl_err(c, n, path, "expected a list (%s), got %s", s->name, wl_kind(n));
            return NULL;
        }
        if (!(j = json_array()))
            break;
        for (size_t i = 0; i < n->n; i++) {
            wl_path_index(sub, path, i);
            json_t *v = shape_json(c, s->elem, n->items[i], sub);
            if (v)
                json_array_append_new(j, v);
        }
        return j;
    case EMS_MAP:
        if (n->kind != BT_YNODE_MAP) {
            wl_err(c, n, path, "expected a mapping (%s), got %s", s->name, wl_kind(n));
            return NULL;
        }
        if (!(j = json_object()))
            break;
        for (size_t i = 0; i < n->n; i++) {
            wl_path_key(sub, path, n->keys[i]);
            json_t *v = shape_json(c, s->elem, n->items[i], sub);
            if (v)
                json_object_set_new(j, n->keys[i], v);
        }
        return j;
    case EMS_STRING: {
        const char *v = wl_scalar(c, n, path, "a string");
        if (!v)
            return NULL;
        size_t len = strlen(v);
        if (!templated(n) && s->nenums) {
            size_t i = 0;
            while (i < s->nenums && strcmp(v, s->enums[i]))
                i++;
            if (i == s->nenums) {
                char list[512] = "";
                for (size_t k = 0; k < s->nenums && strlen(list) < sizeof list - 64; k++)
                    snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s",
                             k ? ", " : "", s->enums[k]);
                wl_err(c, n, path, "'%s' is not one of %s", v, list);
                return NULL;
            }
        }
        if (!templated(n) && ((s->has_min && (double)len < s->min) ||
                              (s->has_max && (double)len > s->max))) {
            wl_err(c, n, path, "%zu characters; %s takes %.0f to %.0f", len, s->name,
                   s->has_min ? s->min : 0., s->has_max ? s->max : 1e9);
            return NULL;
        }
        wl_note_template(c, n, path);
        if (!(j = json_string(v)))
            wl_err(c, n, path, "not valid UTF-8");
        return j;
    }
    case EMS_INTEGER:
    case EMS_LONG:
        if (number_of(c, s, n, path, &d) < 0)
            return NULL;
        j = json_integer((json_int_t)d);
        break;
    case EMS_DOUBLE:
        if (number_of(c, s, n, path, &d) < 0)
            return NULL;
        j = json_real(d);
        break;
    case EMS_BOOLEAN:
        if (wl_bool(c, n, path, &b) < 0)
            return NULL;
        j = json_boolean(b);
        break;
    case EMS_TIMESTAMP:
    case EMS_BLOB:
        wl_err(c, n, path, "%s cannot be given here", s->name);
        return NULL;
    }
    if (!j)
        c->oom = 1;
    return j;
}

char *wl_emr_overrides_json(wl_ctx_t *c, const bt_ynode_t *n, const char *path)
{
    const emr_shape_t *root = &emr_shapes[emr_run_job_flow_input];
    if (n->kind != BT_YNODE_MAP) {
        wl_err(c, n, path, "expected a mapping of RunJobFlow members, got %s", wl_kind(n));
        return NULL;
    }
    size_t before = c->errors;
    json_t *o = structure(c, root, n, path, 1);
    char *s = o && c->errors == before ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(o);
    if (!s && c->errors == before)
        c->oom = 1;
    return s;
}
