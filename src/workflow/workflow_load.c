/* Workflow files -> WorkflowSpec. One pass over the YAML tree builds the
 * spec and reports what is wrong locally; then, with every task known,
 * dependencies, cycles and templates are checked. Diagnostics are sorted
 * by position at the end, so users read them in file order. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "baton/cron.h"
#include "workflow/workflow_int.h"

#define WL_MAX_FILE (1024 * 1024)
/* Far above any real workflow; bounds the upstream closures (n^2 bits). */
#define WL_MAX_TASKS 10000

static const struct {
    const char *name;
    Baton__V1__TriggerRule rule;
} trigger_rules[] = {
    {"all_success", BATON__V1__TRIGGER_RULE__TRIGGER_RULE_ALL_SUCCESS},
    {"all_done", BATON__V1__TRIGGER_RULE__TRIGGER_RULE_ALL_DONE},
    {"all_failed", BATON__V1__TRIGGER_RULE__TRIGGER_RULE_ALL_FAILED},
    {"one_success", BATON__V1__TRIGGER_RULE__TRIGGER_RULE_ONE_SUCCESS},
    {"one_failed", BATON__V1__TRIGGER_RULE__TRIGGER_RULE_ONE_FAILED},
    {"none_failed", BATON__V1__TRIGGER_RULE__TRIGGER_RULE_NONE_FAILED},
};

/* 1-100 of [A-Za-z0-9_-] plus `extra`: ids appear in run keys and URLs. */
static int name_ok(const char *s, const char *extra)
{
    size_t n = strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-");
    while (s[n] && strchr(extra, s[n]))
        n += 1 + strspn(s + n + 1,
                        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-");
    return n >= 1 && n <= 100 && !s[n];
}

static void set_str(loader_t *L, char **slot, const char *v)
{
    char *d = wl_strdup(&L->c, v);
    if (d)
        *slot = d; /* the old value is protobuf_c_empty_string: not freed */
}

/* ---------------------------------------------------------- knobs */

/* retries, backoffs, timeout, pool, priority: the same in `defaults` and
 * in a task, stored in two different messages. */
typedef struct knobs {
    uint32_t *retries;
    uint64_t *backoff, *backoff_max, *timeout;
    char **pool;
    int32_t *priority;
} knobs_t;

static const char knob_names[] = "retries, retry_backoff, retry_backoff_max, timeout, pool, priority";

/* 1 when `key` is a knob (handled, errors reported), 0 when it is not. */
static int set_knob(loader_t *L, const char *key, const bt_ynode_t *v, const char *path,
                    const knobs_t *k)
{
    uint64_t u = 0;
    int64_t s;
    const char *str;
    if (!strcmp(key, "retries")) {
        if (wl_uint(&L->c, v, path, 1000, &u) == 0)
            *k->retries = (uint32_t)u;
    } else if (!strcmp(key, "retry_backoff")) {
        wl_duration(&L->c, v, path, k->backoff);
    } else if (!strcmp(key, "retry_backoff_max")) {
        wl_duration(&L->c, v, path, k->backoff_max);
    } else if (!strcmp(key, "timeout")) {
        if (wl_duration(&L->c, v, path, &u) == 0 && u == 0)
            wl_err(&L->c, v, path, "must be longer than 0");
        else if (u)
            *k->timeout = u;
    } else if (!strcmp(key, "pool")) {
        if ((str = wl_scalar(&L->c, v, path, "a pool name"))) {
            if (!name_ok(str, ""))
                wl_err(&L->c, v, path, "'%s' is not a pool name (1-100 of A-Z a-z 0-9 _ -)", str);
            else if (strcmp(str, *k->pool)) {
                char *d = wl_strdup(&L->c, str);
                if (d) {
                    if (*k->pool != protobuf_c_empty_string)
                        free(*k->pool);
                    *k->pool = d;
                }
            }
        }
    } else if (!strcmp(key, "priority")) {
        if (wl_int(&L->c, v, path, -1000000, 1000000, &s) == 0)
            *k->priority = (int32_t)s;
    } else {
        return 0;
    }
    return 1;
}

static void load_defaults(loader_t *L, const bt_ynode_t *n)
{
    Baton__V1__TaskDefaults *d = L->wf->defaults;
    knobs_t k = {&d->retries, &d->retry_backoff_ms, &d->retry_backoff_max_ms, &d->timeout_ms,
                 &d->pool, &d->priority};
    char sub[WL_PATH_MAX];
    if (n->kind != BT_YNODE_MAP) {
        wl_err(&L->c, n, "defaults", "expected a mapping, got %s", wl_kind(n));
        return;
    }
    for (size_t i = 0; i < n->n; i++) {
        wl_path_key(sub, "defaults", n->keys[i]);
        if (!set_knob(L, n->keys[i], n->items[i], sub, &k))
            wl_err_key(&L->c, n, i, sub, "unknown key '%s' (valid: %s)", n->keys[i], knob_names);
    }
}

/* ---------------------------------------------------------- tasks */

static void load_depends_on(loader_t *L, size_t i, const bt_ynode_t *v, const char *path)
{
    bt_task_spec_t *t = L->wf->tasks[i];
    char sub[WL_PATH_MAX];
    if (v->kind != BT_YNODE_SEQ) {
        wl_err(&L->c, v, path, "expected a list of task ids, got %s", wl_kind(v));
        return;
    }
    if (!v->n)
        return;
    if (!(t->depends_on = calloc(v->n, sizeof *t->depends_on))) {
        L->c.oom = 1;
        return;
    }
    t->n_depends_on = v->n;
    for (size_t k = 0; k < v->n; k++) {
        wl_path_index(sub, path, k);
        const char *id = wl_scalar(&L->c, v->items[k], sub, "a task id");
        t->depends_on[k] = wl_strdup(&L->c, id ? id : "");
    }
    L->meta[i].deps = v;
}

static void load_task(loader_t *L, size_t i, const bt_ynode_t *n)
{
    char path[WL_PATH_MAX], sub[WL_PATH_MAX], names[1024];
    const ProtobufCFieldDescriptor *op = NULL;
    const Baton__V1__TaskDefaults *d = L->wf->defaults;
    bt_task_spec_t *t = L->wf->tasks[i];
    int saw_op = 0, saw_id = 0;

    wl_path_index(path, "tasks", i);
    L->c.task = i;
    t->retries = d->retries;
    t->retry_backoff_ms = d->retry_backoff_ms;
    t->retry_backoff_max_ms = d->retry_backoff_max_ms;
    t->timeout_ms = d->timeout_ms;
    set_str(L, &t->pool, d->pool);
    t->priority = d->priority;
    t->trigger_rule = BATON__V1__TRIGGER_RULE__TRIGGER_RULE_ALL_SUCCESS;
    t->source_line = (uint32_t)n->line;
    if (n->kind != BT_YNODE_MAP) {
        wl_err(&L->c, n, path, "expected a mapping (id: ..., <operator>: ...), got %s",
               wl_kind(n));
        return;
    }
    knobs_t k = {&t->retries, &t->retry_backoff_ms, &t->retry_backoff_max_ms, &t->timeout_ms,
                 &t->pool, &t->priority};
    wl_operator_names(names, sizeof names);
    for (size_t j = 0; j < n->n; j++) {
        const char *key = n->keys[j];
        const bt_ynode_t *v = n->items[j];
        const ProtobufCFieldDescriptor *f;
        const char *s, *why;
        wl_path_key(sub, path, key);
        if (!strcmp(key, "id")) {
            saw_id = 1;
            t->source_line = (uint32_t)n->key_lines[j];
            if (!(s = wl_scalar(&L->c, v, sub, "a task id")))
                continue;
            if (!name_ok(s, ""))
                wl_err(&L->c, v, sub, "'%s' is not a task id (1-100 of A-Z a-z 0-9 _ -)", s);
            else
                L->meta[i].id = v;
            set_str(L, &t->id, s);
        } else if (!strcmp(key, "depends_on")) {
            load_depends_on(L, i, v, sub);
        } else if (!strcmp(key, "trigger_rule")) {
            if (!(s = wl_scalar(&L->c, v, sub, "a trigger rule")))
                continue;
            size_t r, nr = sizeof trigger_rules / sizeof trigger_rules[0];
            for (r = 0; r < nr && strcmp(s, trigger_rules[r].name); r++)
                ;
            if (r < nr)
                t->trigger_rule = trigger_rules[r].rule;
            else
                wl_err(&L->c, v, sub,
                       "'%s' is not a trigger rule (all_success, all_done, all_failed, "
                       "one_success, one_failed, none_failed)",
                       s);
        } else if (set_knob(L, key, v, sub, &k)) {
            continue;
        } else if ((f = wl_operator_field(key))) {
            saw_op = 1;
            if (!wl_operator_enabled(f, &why)) {
                wl_err_key(&L->c, n, j, sub, "%s", why);
            } else if (op) {
                wl_err_key(&L->c, n, j, sub,
                           "a second operator: this task already runs %s (one operator per task)",
                           op->name);
            } else {
                op = f;
                ProtobufCMessage *m = wl_map_operator(&L->c, f, v, sub);
                if (m) {
                    *(uint32_t *)((char *)t + f->quantifier_offset) = f->id;
                    *(ProtobufCMessage **)((char *)t + f->offset) = m;
                }
            }
        } else {
            wl_err_key(&L->c, n, j, sub,
                       "unknown key '%s' (valid: id, depends_on, trigger_rule, %s; and one "
                       "operator: %s)",
                       key, knob_names, names);
        }
    }
    if (!saw_id)
        wl_err(&L->c, n, path, "required key 'id' is missing");
    if (!saw_op)
        wl_err(&L->c, n, path, "no operator: a task needs one of %s", names);
}

static void load_tasks(loader_t *L, const bt_ynode_t *n)
{
    bt_workflow_spec_t *wf = L->wf;
    if (n->kind != BT_YNODE_SEQ) {
        wl_err(&L->c, n, "tasks", "expected a list of tasks, got %s", wl_kind(n));
        return;
    }
    if (n->n == 0 || n->n > WL_MAX_TASKS) {
        wl_err(&L->c, n, "tasks", n->n ? "%zu tasks; at most %d" : "must not be empty", n->n,
               WL_MAX_TASKS);
        return;
    }
    wf->tasks = calloc(n->n, sizeof *wf->tasks);
    L->meta = calloc(n->n, sizeof *L->meta);
    L->names = calloc(n->n, sizeof *L->names);
    if (!wf->tasks || !L->meta || !L->names || bt_dag_init(&L->dag, n->n) != BT_OK) {
        L->c.oom = 1;
        return;
    }
    for (size_t i = 0; i < n->n; i++) {
        if (!(wf->tasks[i] = malloc(sizeof *wf->tasks[i]))) {
            L->c.oom = 1;
            return;
        }
        baton__v1__task_spec__init(wf->tasks[i]);
        wf->n_tasks++;
    }
    for (size_t i = 0; i < n->n; i++)
        load_task(L, i, n->items[i]);


    wl_check_graph(L);
}

/* ---------------------------------------------------------- top level */

static void load_start_date(loader_t *L, const bt_ynode_t *n)
{
    const char *s = wl_scalar(&L->c, n, "start_date", "a date");
    int64_t local;
    int has_off = 0, off = 0;
    if (!s)
        return;
    if (wl_parse_date(s, &local, &has_off, &off) < 0) {
        wl_err(&L->c, n, "start_date",
               "'%s' is not a date (2026-01-01, 2026-01-01T02:00, 2026-01-01T02:00:00+01:00)", s);
        return;
    }
    if (!has_off && L->tz) {
        /* local wall time -> instant: take the zone's offset near that
         * time, then again at the corrected instant (right except inside a
         * DST gap, where any nearby instant will do for a start date) */
        bt_local_time_t lt;
        bt_tz_to_local(L->tz, local * 1000, &lt);
        bt_tz_to_local(L->tz, (local - lt.utc_offset_s) * 1000, &lt);
        off = lt.utc_offset_s;
    }
    L->wf->start_ms = (local - off) * 1000;
}

static void load_schedule(loader_t *L, const bt_ynode_t *n)
{
    const char *s = wl_scalar(&L->c, n, "schedule", "a cron expression, @daily..., or none");
    char err[256];
    bt_cron_t *cron = NULL;
    if (!s)
        return;
    if (!strcmp(s, "none")) {
        set_str(L, &L->wf->schedule, ""); /* manual runs only */
        return;
    }
    if (bt_cron_parse(s, &cron, err, sizeof err) != BT_OK)
        wl_err(&L->c, n, "schedule", "bad cron expression '%s': %s", s, err);
    else
        set_str(L, &L->wf->schedule, s);
    bt_cron_free(cron);
}

static void load_top(loader_t *L, const bt_ynode_t *root)
{
    static const char valid[] = "workflow, description, schedule, timezone, start_date, catchup, "
                                "max_active_runs, max_active_tasks, defaults, tasks";
    bt_workflow_spec_t *wf = L->wf;
    const bt_ynode_t *n;
    const char *s;
    char err[256];
    uint64_t u;
    int b;

    /* the zone and the defaults first: start_date and tasks need them */
    if ((n = bt_ynode_get(root, "timezone"))) {
        if ((s = wl_scalar(&L->c, n, "timezone", "a time zone name"))) {
            if (bt_tz_load(s, &L->tz, err, sizeof err) != BT_OK)
                wl_err(&L->c, n, "timezone", "%s", err);
            else
                set_str(L, &wf->timezone, s);
        }
    } else {
        set_str(L, &wf->timezone, "UTC");
        if (bt_tz_load("UTC", &L->tz, err, sizeof err) != BT_OK)
            wl_err(&L->c, root, "timezone", "%s", err);
    }
    if ((n = bt_ynode_get(root, "defaults")))
        load_defaults(L, n);

    for (size_t i = 0; i < root->n; i++) {
        const char *key = root->keys[i];
        n = root->items[i];
        if (!strcmp(key, "workflow")) {
            if (!(s = wl_scalar(&L->c, n, key, "a workflow id")))
                continue;
            if (!name_ok(s, "."))
                wl_err(&L->c, n, key, "'%s' is not a workflow id (1-100 of A-Z a-z 0-9 _ . -)",
                       s);
            set_str(L, &wf->id, s);
        } else if (!strcmp(key, "description")) {
            if ((s = wl_scalar(&L->c, n, key, "a string")))
                set_str(L, &wf->description, s);
        } else if (!strcmp(key, "schedule")) {
            load_schedule(L, n);
        } else if (!strcmp(key, "start_date")) {
            load_start_date(L, n);
        } else if (!strcmp(key, "catchup")) {
            if (wl_bool(&L->c, n, key, &b) == 0)
                wf->catchup = b;
        } else if (!strcmp(key, "max_active_runs") || !strcmp(key, "max_active_tasks")) {
            if (wl_uint(&L->c, n, key, 100000, &u) < 0)
                continue;
            if (u == 0)
                wl_err(&L->c, n, key, "must be at least 1");
            if (!strcmp(key, "max_active_runs"))
                wf->max_active_runs = (uint32_t)u;
            else
                wf->max_active_tasks = (uint32_t)u;
        } else if (!strcmp(key, "tasks")) {
            load_tasks(L, n);
        } else if (strcmp(key, "timezone") && strcmp(key, "defaults")) {
            wl_err_key(&L->c, root, i, key, "unknown key '%s' (valid: %s)", key, valid);
        }
    }
    static const char *const required[] = {"workflow", "schedule", "tasks"};
    for (size_t i = 0; i < sizeof required / sizeof required[0]; i++)
        if (!bt_ynode_get(root, required[i]))
            wl_err(&L->c, root, "", "required key '%s' is missing", required[i]);
}

/* ---------------------------------------------------------- entry points */

/* Stable, by position: a file's errors in the order a reader meets them. */
typedef struct ranked {
    bt_diag_t d;
    size_t seq;
} ranked_t;

static int cmp_ranked(const void *a, const void *b)
{
    const ranked_t *x = a, *y = b;
    if (x->d.line != y->d.line)
        return x->d.line < y->d.line ? -1 : 1;
    if (x->d.col != y->d.col)
        return x->d.col < y->d.col ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static void sort_diags(bt_diags_t *d, size_t first)
{
    size_t n = d->n - first;
    ranked_t *r = n > 1 ? malloc(n * sizeof *r) : NULL;
    if (!r)
        return; /* unsorted is still correct */
    for (size_t i = 0; i < n; i++)
        r[i] = (ranked_t){d->items[first + i], i};
    qsort(r, n, sizeof *r, cmp_ranked);
    for (size_t i = 0; i < n; i++)
        d->items[first + i] = r[i].d;
    free(r);
}

/* libyaml's "NAME:LINE:COL: reason" back into a diagnostic. */
static void yaml_diag(bt_diags_t *d, const char *name, const char *err)
{
    size_t nl = strlen(name), line = 0, col = 0;
    int used = 0;
    if (!strncmp(err, name, nl) && err[nl] == ':' &&
        sscanf(err + nl + 1, "%zu:%zu: %n", &line, &col, &used) == 2 && used > 0)
        bt_diags_add(d, name, line, col, "", "%s", err + nl + 1 + used);
    else
        bt_diags_add(d, name, 0, 0, "", "%s", err);
}

bt_err_t bt_workflow_load_string(const char *name, const char *text, size_t len,
                                 bt_workflow_spec_t **out, bt_diags_t *diags)
{
    bt_diags_t scratch;
    bt_ynode_t *root = NULL;
    char err[512];
    if (!out)
        return BT_E_INVAL;
    *out = NULL;
    if (!diags) {
        bt_diags_init(&scratch);
        diags = &scratch;
    }
    name = name ? name : "<string>";
    if (!text || len > WL_MAX_FILE) {
        bt_diags_add(diags, name, 0, 0, "", "the file is larger than 1 MiB");
        if (diags == &scratch)
            bt_diags_free(&scratch);
        return BT_E_INVAL;
    }
    bt_err_t rc = bt_yaml_load_string(name, text, len, &root, err, sizeof err);
    if (rc != BT_OK) {
        if (rc != BT_E_NOMEM)
            yaml_diag(diags, name, err);
        if (diags == &scratch)
            bt_diags_free(&scratch);
        return rc == BT_E_NOMEM ? rc : BT_E_INVAL;
    }

    loader_t L = {.c = {.file = name, .text = text, .len = len, .diags = diags}};
    size_t first = diags->n;
    if (root->kind != BT_YNODE_MAP) {
        wl_err(&L.c, root, "", "the top level must be a mapping (workflow: ..., tasks: ...), not %s",
               wl_kind(root));
    } else if (!(L.wf = malloc(sizeof *L.wf)) ||
               !(baton__v1__workflow_spec__init(L.wf),
                 L.wf->defaults = malloc(sizeof *L.wf->defaults))) {
        L.c.oom = 1;
    } else {
        /* built-in defaults; `defaults:` and then each task override them */
        Baton__V1__TaskDefaults *d = L.wf->defaults;
        baton__v1__task_defaults__init(d);
        d->retry_backoff_ms = 30 * 1000;
        d->retry_backoff_max_ms = 10 * 60 * 1000;
        d->timeout_ms = 6 * 3600 * 1000;
        set_str(&L, &d->pool, "default");
        L.wf->max_active_runs = 1;
        L.wf->max_active_tasks = 16;
        set_str(&L, &L.wf->source_file, name);
        load_top(&L, root);
    }
    sort_diags(diags, first);

    for (size_t i = 0; i < L.c.n_tpl; i++)
        free(L.c.tpl[i].path);
    free(L.c.tpl);
    free(L.c.line_off);
    free(L.meta);
    free(L.by_id);
    free(L.names);
    bt_dag_free(&L.dag);
    bt_tz_free(L.tz);
    bt_ynode_free(root);
    if (L.c.errors || L.c.oom) {
        if (L.c.oom)
            bt_diags_add(diags, name, 0, 0, "", "out of memory");
        if (L.wf)
            baton__v1__workflow_spec__free_unpacked(L.wf, NULL);
        rc = L.c.oom ? BT_E_NOMEM : BT_E_INVAL;
    } else {
        *out = L.wf;
    }
    if (diags == &scratch)
        bt_diags_free(&scratch);
    return rc;
}

bt_err_t bt_workflow_load_file(const char *path, bt_workflow_spec_t **out, bt_diags_t *diags)
{
    bt_diags_t scratch;
    if (!out || !path)
        return BT_E_INVAL;
    *out = NULL;
    if (!diags) {
        bt_diags_init(&scratch);
        diags = &scratch;
    }
    bt_err_t rc = BT_E_IO;
    char *buf = NULL;
    size_t n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        bt_diags_add(diags, path, 0, 0, "", "cannot open: %s", strerror(errno));
    } else if (!(buf = malloc(WL_MAX_FILE + 1))) {
        rc = BT_E_NOMEM;
    } else if ((n = fread(buf, 1, WL_MAX_FILE + 1, f)), ferror(f)) {
        bt_diags_add(diags, path, 0, 0, "", "cannot read: %s", strerror(errno));
    } else if (n > WL_MAX_FILE) {
        bt_diags_add(diags, path, 0, 0, "", "the file is larger than 1 MiB");
        rc = BT_E_INVAL;
    } else {
        rc = bt_workflow_load_string(path, buf, n, out, diags);
    }
    if (f)
        fclose(f);
    free(buf);
    if (diags == &scratch)
        bt_diags_free(&scratch);
    return rc;
}

const bt_task_spec_t *bt_workflow_task(const bt_workflow_spec_t *wf, const char *id)
{
    for (size_t i = 0; wf && id && i < wf->n_tasks; i++)
        if (wf->tasks[i] && !strcmp(wf->tasks[i]->id, id))
            return wf->tasks[i];
    return NULL;
}
