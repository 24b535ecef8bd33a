/* {{ }} templates in operator fields. The only expressions are
 *   run.date           the logical date in the workflow's zone, YYYY-MM-DD
 *   run.id             the run id
 *   run.logical_time   ISO 8601 with offset, in the workflow's zone
 *   tasks.<id>.<name>  an output published by an upstream task
 * with optional spaces inside the braces. Nothing else: no filters, no code.
 * A literal "{{" is written "{{ '{{' }}". */
#ifndef BATON_TEMPLATE_H
#define BATON_TEMPLATE_H

#include <stddef.h>

#include "baton/err.h"

/* Calls `ref` for every task reference in s (task id, output name, byte
 * offset of the expression in s). BT_E_PARSE with a reason in err (and the
 * offset in *err_off) for anything that is not one of the forms above. */
typedef void (*bt_template_ref_cb)(const char *task, const char *output, size_t off, void *arg);
bt_err_t bt_template_scan(const char *s, bt_template_ref_cb ref, void *arg, char *err,
                          size_t errlen, size_t *err_off);

typedef struct bt_template_ctx {
    const char *run_id;
    const char *run_date;
    const char *logical_time;
    /* Returns the value of tasks.<task>.<output>, or NULL when that task has
     * not published it (render then fails with a reason). */
    const char *(*output)(const char *task, const char *output, void *arg);
    void *arg;
} bt_template_ctx_t;

/* Renders s into a new string (*out, free()). BT_E_NOTFOUND with a reason
 * when an output is missing, BT_E_PARSE on a malformed template. */
bt_err_t bt_template_render(const char *s, const bt_template_ctx_t *ctx, char **out, char *err,
                            size_t errlen);

#endif
