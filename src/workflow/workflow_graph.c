/* The checks that need every task: unique ids, depends_on naming real
 * tasks, no cycles, and templates that name outputs of upstream tasks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "baton/template.h"
#include "workflow/workflow_int.h"

const char *wl_task_name(const loader_t *L, size_t i)
{
    return L->meta[i].id ? L->meta[i].id->value : "?";
}

static int cmp_ids(const void *a, const void *b, void *arg)
{
    const loader_t *L = arg;
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    int c = strcmp(wl_task_name(L, x), wl_task_name(L, y));
    return c ? c : (x > y) - (x < y);
}

/* The first task with that id, or (size_t)-1. */
static size_t find_task(const loader_t *L, const char *id)
{
    size_t lo = 0, hi = L->n_by_id;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(wl_task_name(L, L->by_id[mid]), id) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < L->n_by_id && !strcmp(wl_task_name(L, L->by_id[lo]), id) ? L->by_id[lo] : (size_t)-1;
}

/* Edit distance, for "did you mean": ids are at most 100 characters. */
static size_t distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), row[101];
    if (la > 100 || lb > 100)
        return 101;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j], best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            diag = up;
            row[j] = best;
        }
    }
    return row[lb];
}

static void index_ids(loader_t *L)
{
    size_t n = L->wf->n_tasks;
    if (!(L->by_id = malloc((n ? n : 1) * sizeof *L->by_id))) {
        L->c.oom = 1;
        return;
    }
    for (size_t i = 0; i < n; i++)
        if (L->meta[i].id)
            L->by_id[L->n_by_id++] = i;
    qsort_r(L->by_id, L->n_by_id, sizeof *L->by_id, cmp_ids, L);
    /* sorted by (id, index): a duplicate follows its first occurrence */
    for (size_t k = 1; k < L->n_by_id; k++) {
        size_t a = L->by_id[k - 1], b = L->by_id[k];
        char path[WL_PATH_MAX];
        if (strcmp(wl_task_name(L, a), wl_task_name(L, b)))
            continue;
        wl_path_index(path, "tasks", b);
        strncat(path, ".id", sizeof path - strlen(path) - 1);
        wl_err(&L->c, L->meta[b].id, path, "duplicate task id '%s' (first defined at line %zu)",
               wl_task_name(L, b), L->meta[a].id->line);
    }
}

static void resolve_depends_on(loader_t *L)
{
    char path[WL_PATH_MAX], base[WL_PATH_MAX];
    size_t n = L->wf->n_tasks, suggestions = 0;
    /* listed[j] == i + 1: task i already depends on j (O(1) duplicates) */
    size_t *listed = calloc(n, sizeof *listed);
    if (!listed) {
        L->c.oom = 1;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const bt_ynode_t *deps = L->meta[i].deps;
        for (size_t k = 0; deps && k < deps->n; k++) {
            const bt_ynode_t *v = deps->items[k];
            if (v->kind != BT_YNODE_SCALAR || bt_ynode_is_null(v))
                continue; /* reported when loaded */
            wl_path_index(base, "tasks", i);
            wl_path_key(path, base, "depends_on");
            wl_path_index(base, path, k);
            size_t j = find_task(L, v->value);
            if (j == (size_t)-1) {
                /* "did you mean": bounded, a file of typos must stay fast */
                const char *best = NULL;
                size_t bd = 3;
                for (size_t x = 0; x < L->n_by_id && L->n_by_id <= 2000 && suggestions < 50;
                     x++) {
                    size_t dist = distance(v->value, wl_task_name(L, L->by_id[x]));
                    if (dist < bd)
                        bd = dist, best = wl_task_name(L, L->by_id[x]);
                }
                suggestions++;
                if (best)
                    wl_err(&L->c, v, base, "unknown task '%s' (did you mean '%s'?)", v->value,
                           best);
                else
                    wl_err(&L->c, v, base, "unknown task '%s'", v->value);
            } else if (j == i) {
                wl_err(&L->c, v, base, "a task cannot depend on itself");
            } else if (listed[j] == i + 1) {
                wl_err(&L->c, v, base, "'%s' is listed twice", v->value);
            } else {
                listed[j] = i + 1;
                if (bt_dag_add_edge(&L->dag, i, j) != BT_OK)
                    L->c.oom = 1;
            }
        }
    }
    free(listed);
}

static void report_cycle(const size_t *p, size_t len, void *arg)
{
    loader_t *L = arg;
    char path[WL_PATH_MAX], base[WL_PATH_MAX], msg[1024];
    bt_dag_format_path(p, len, (const char *const *)L->names, msg, sizeof msg);
    wl_path_index(base, "tasks", p[0]);
    wl_path_key(path, base, "depends_on");
    wl_err(&L->c, L->meta[p[0]].deps, path, "dependency cycle: %s (each depends on the next)",
           msg);
}

/* ---------------------------------------------------------- templates */

typedef struct tpl_check {
    loader_t *L;
    const wl_tpl_t *t;
} tpl_check_t;

static void check_ref(const char *task, const char *output, size_t off, void *arg)
{
    tpl_check_t *tc = arg;
    loader_t *L = tc->L;
    const wl_tpl_t *t = tc->t;
    size_t j = find_task(L, task);
    (void)off;
    if (j == (size_t)-1) {
        wl_err(&L->c, t->node, t->path, "tasks.%s.%s: there is no task '%s'", task, output, task);
        return;
    }
    if (j == t->task) {
        wl_err(&L->c, t->node, t->path, "tasks.%s.%s: a task cannot use its own outputs", task,
               output);
        return;
    }
    int up = bt_dag_is_upstream(&L->dag, t->task, j);
    if (up < 0) {
        L->c.oom = 1;
        return;
    }
    if (!up) {
        wl_err(&L->c, t->node, t->path,
               "tasks.%s.%s: '%s' is not upstream of '%s' (add it to depends_on, directly or "
               "through another task)",
               task, output, task, wl_task_name(L, t->task));
        return;
    }
    const bt_task_spec_t *ts = L->wf->tasks[j];
    const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field(
        &baton__v1__task_spec__descriptor, (unsigned)ts->operator_case);
    if (!f)
        return; /* that task's operator is missing or broken: reported there */
    const char *const *outs = bt_task_outputs(ts);
    char list[512] = "";
    size_t used = 0;
    for (size_t k = 0; outs[k]; k++) {
        if (!strcmp(outs[k], output))
            return;
        int w = snprintf(list + used, sizeof list - used, "%s%s", k ? ", " : "", outs[k]);
        if (w > 0 && (size_t)w < sizeof list - used)
            used += (size_t)w;
    }
    if (!*list)
        wl_err(&L->c, t->node, t->path, "tasks.%s.%s: %s publishes no outputs", task, output,
               f->name);
    else
        wl_err(&L->c, t->node, t->path, "tasks.%s.%s: %s has no output '%s' (it publishes %s)",
               task, output, f->name, output, list);
}

static void check_templates(loader_t *L)
{
    for (size_t i = 0; i < L->c.n_tpl; i++) {
        tpl_check_t tc = {L, &L->c.tpl[i]};
        char err[256];
        size_t off = 0;
        if (bt_template_scan(tc.t->node->value, check_ref, &tc, err, sizeof err, &off) ==
            BT_E_PARSE)
            wl_err(&L->c, tc.t->node, tc.t->path, "bad template: %s", err);
    }
}

void wl_check_graph(loader_t *L)
{
    for (size_t i = 0; i < L->wf->n_tasks; i++)
        L->names[i] = wl_task_name(L, i);
    index_ids(L);
    if (L->c.oom)
        return;
    resolve_depends_on(L);
    bt_dag_cycles(&L->dag, report_cycle, L);
    check_templates(L);
}
