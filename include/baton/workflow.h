/* Workflow files: YAML (one workflow per file) -> a validated, fully
 * resolved WorkflowSpec (proto/baton.proto), or every error found.
 *
 * Each diagnostic names file, line, column and field, e.g.
 *   etl.yaml:14:7: tasks[2].depends_on: unknown task 'transfrom'
 * All errors of a file are reported, not only the first. Nothing is stored
 * by this module: callers store a spec only when the load had no errors.
 *
 * Resolution: `defaults` are copied into every TaskSpec (a stored TaskSpec
 * never relies on defaults), durations ("30s", "2h") become milliseconds,
 * trigger_rule names become the enum, and source_file/source_line are set.
 * Validation: unknown or missing keys, wrong types, bad cron, unknown time
 * zone, duplicate task ids, missing dependencies, cycles, exactly one
 * operator per task, and every {{ }} template (see template.h). */
#ifndef BATON_WORKFLOW_H
#define BATON_WORKFLOW_H

#include <stddef.h>
#include <stdio.h>

#include "baton.pb-c.h"
#include "baton/err.h"

typedef Baton__V1__WorkflowSpec bt_workflow_spec_t;
typedef Baton__V1__TaskSpec bt_task_spec_t;

typedef struct bt_diag {
    char *file;
    size_t line, col;   /* 1-based; 0 when the error is about the whole file */
    char *field;        /* path such as "tasks[2].depends_on[0]"; "" for the file */
    char *msg;
} bt_diag_t;

typedef struct bt_diags {
    size_t n, cap;
    bt_diag_t *items;
} bt_diags_t;

void bt_diags_init(bt_diags_t *d);
void bt_diags_free(bt_diags_t *d);
/* Appends one; printf-style message. */
void bt_diags_add(bt_diags_t *d, const char *file, size_t line, size_t col,
                  const char *field, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
/* One line per diagnostic: "FILE:LINE:COL: FIELD: MESSAGE". */
void bt_diags_print(const bt_diags_t *d, FILE *out);

/* Loads and validates. BT_OK with *out set (free with
 * baton__v1__workflow_spec__free_unpacked(*out, NULL)) when there are no
 * errors; BT_E_INVAL with *out NULL and diags filled otherwise (BT_E_IO when
 * the file cannot be read, also as a diagnostic). */
bt_err_t bt_workflow_load_file(const char *path, bt_workflow_spec_t **out, bt_diags_t *diags);
bt_err_t bt_workflow_load_string(const char *name, const char *text, size_t len,
                                 bt_workflow_spec_t **out, bt_diags_t *diags);

/* The task of that id, or NULL. */
const bt_task_spec_t *bt_workflow_task(const bt_workflow_spec_t *wf, const char *id);

/* Output names an operator publishes ("cluster_id", ...), NULL-terminated;
 * what {{ tasks.<id>.<output> }} may name. */
const char *const *bt_task_outputs(const bt_task_spec_t *task);

#endif
