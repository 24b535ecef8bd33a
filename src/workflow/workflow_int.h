/* Shared between the workflow loader (workflow_load.c: the file, tasks,
 * dependencies, templates) and the operator mapping (workflow_ops.c). */
#ifndef BATON_WORKFLOW_INT_H
#define BATON_WORKFLOW_INT_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

#include "baton/cron.h"
#include "baton/dag.h"
#include "baton/workflow.h"
#include "baton/yaml.h"

/* Field paths such as "tasks[12].emr_create_cluster.instance_groups[0].name";
 * longer ones are cut (they only appear in messages). */
#define WL_PATH_MAX 512

/* A string that holds "{{": checked once every task and edge is known. */
typedef struct wl_tpl {
    size_t task;
    const bt_ynode_t *node;
    char *path;
} wl_tpl_t;

typedef struct wl_ctx {
    const char *file;          /* the name messages use */
    const char *text;          /* the source, to find the column of a key */
    size_t len;
    size_t *line_off;          /* start offset of each line, built on demand */
    size_t n_lines;
    bt_diags_t *diags;
    size_t errors;
    int oom;
    size_t task;               /* index of the task being mapped */
    wl_tpl_t *tpl;
    size_t n_tpl, cap_tpl;
} wl_ctx_t;

/* An error at a node (its line and column) or at a position. */
void wl_err(wl_ctx_t *c, const bt_ynode_t *at, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void wl_err_at(wl_ctx_t *c, size_t line, size_t col, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* An error about the i-th key of a mapping, at the key. */
void wl_err_key(wl_ctx_t *c, const bt_ynode_t *map, size_t i, const char *path, const char *fmt,
                ...) __attribute__((format(printf, 5, 6)));

void wl_path_key(char *buf, const char *parent, const char *key);
void wl_path_index(char *buf, const char *parent, size_t i);

/* "a mapping", "a list", "null", "a value": for "expected X, got Y". */
const char *wl_kind(const bt_ynode_t *n);

/* strdup that records an allocation failure in the context. */
char *wl_strdup(wl_ctx_t *c, const char *s);

/* A non-null scalar's text, or NULL after reporting "expected <what>". */
const char *wl_scalar(wl_ctx_t *c, const bt_ynode_t *n, const char *path, const char *what);
/* Whole numbers within [min, max]; 0 on success, -1 after reporting. */
int wl_uint(wl_ctx_t *c, const bt_ynode_t *n, const char *path, uint64_t max, uint64_t *out);
int wl_int(wl_ctx_t *c, const bt_ynode_t *n, const char *path, int64_t min, int64_t max,
           int64_t *out);
/* Durations ("30s") in milliseconds; 0 on success, -1 after reporting. */
int wl_duration(wl_ctx_t *c, const bt_ynode_t *n, const char *path, uint64_t *ms);
/* true/false only: YAML 1.1's yes/no/on/off are too easy to write by accident. */
int wl_bool(wl_ctx_t *c, const bt_ynode_t *n, const char *path, int *out);

/* emr_create_cluster's job_flow_overrides: checked against EMR's RunJobFlow
 * input shape and written as typed JSON (emr_overrides.c); NULL after
 * reporting. */
char *wl_emr_overrides_json(wl_ctx_t *c, const bt_ynode_t *n, const char *path);

/* Remembers a string node for the template pass (only when it holds "{{"). */
void wl_note_template(wl_ctx_t *c, const bt_ynode_t *n, const char *path);

/* "2026-01-01", "2026-01-01T02:00[:00]", optionally with Z or +02:00: the
 * local wall time in seconds (as if UTC) and, if given, the offset. */
int wl_parse_date(const char *s, int64_t *local_s, int *has_off, int *off_s);

/* ---------------------------------------------------------- the loader */

typedef struct task_meta {
    const bt_ynode_t *id;   /* the id's node, when it is a valid id */
    const bt_ynode_t *deps; /* depends_on's list, when it is one */
} task_meta_t;

typedef struct loader {
    wl_ctx_t c;
    bt_workflow_spec_t *wf;
    bt_tz_t *tz;
    task_meta_t *meta;
    size_t *by_id;          /* indices of tasks with an id, sorted by id */
    size_t n_by_id;
    const char **names;     /* task ids by index, "?" when missing */
    bt_dag_t dag;
} loader_t;

/* Once every task is loaded: duplicate ids, depends_on, cycles, templates. */
void wl_check_graph(loader_t *L);
const char *wl_task_name(const loader_t *L, size_t i);

/* ---------------------------------------------------------- operators */

/* The TaskSpec oneof member for a YAML key, or NULL when it is none. */
const ProtobufCFieldDescriptor *wl_operator_field(const char *key);
/* 1 when this build accepts the operator; else 0 with the reason. */
int wl_operator_enabled(const ProtobufCFieldDescriptor *op, const char **why);
/* "emr_create_cluster, emr_add_step, ...": the operators this build has. */
void wl_operator_names(char *buf, size_t len);
/* Builds the operator's message from its mapping and checks its required
 * fields. Returns the message even when there were errors (so the caller
 * can keep going and free it with the TaskSpec), NULL only without one. */
ProtobufCMessage *wl_map_operator(wl_ctx_t *c, const ProtobufCFieldDescriptor *op,
                                  const bt_ynode_t *node, const char *path);

#endif
