/* Every SQL statement batonctl sends, by name (the texts are in queries.c).
 *
 * One file, so that a schema change is checked against the CLI in one
 * place, and a reader of a command sees what it asks for by the name of the
 * statement instead of a wall of SQL. Each comment gives the parameters ($1
 * ...) and the columns of the result, in order; the call site passes the
 * parameters as text (bt_cli_query).
 *
 * Reads are the CLI's own. Writes are requests and configuration only
 * (docs/cli.md: nothing here writes a run or a task run): workflows go
 * through the schema's baton_workflow_* functions, run and task requests and
 * pools are single-row inserts the dispatcher reads. */
#ifndef BATON_CLI_QUERIES_H
#define BATON_CLI_QUERIES_H

/* ---- transactions (db.c: bt_cli_begin, bt_cli_commit, bt_cli_rollback) */
extern const char BT_SQL_BEGIN[];
extern const char BT_SQL_COMMIT[];
extern const char BT_SQL_ROLLBACK[];

/* ---- workflows */
/* $1 cluster, $2 workflow id, $3 encoded WorkflowSpec (bytea text form),
 * $4 source file. -> outcome ('created', 'updated', 'unchanged'), version. */
extern const char BT_SQL_WORKFLOW_APPLY[];
/* $1 cluster, $2 workflow id, $3 paused ('true'/'false'). -> 'ok' or
 * 'missing'. */
extern const char BT_SQL_WORKFLOW_SET_PAUSED[];
/* $1 cluster. -> workflow id, version, paused, spec, next fire time (UTC,
 * ISO, '' when unset), active runs (queued or running); by workflow id. */
extern const char BT_SQL_WORKFLOW_LIST[];
/* $1 cluster, $2 workflow id. -> version, paused, spec, source. */
extern const char BT_SQL_WORKFLOW_SHOW[];
/* $1 cluster, $2 workflow id. -> spec. */
extern const char BT_SQL_WORKFLOW_SPEC[];

/* ---- runs */
/* $1 cluster, $2 workflow id, $3 kind ('manual', 'backfill'), $4 logical
 * time (NULL: now), $5 conf (JSON object or NULL), $6 requested by.
 * -> request id; no row when the workflow does not exist. */
extern const char BT_SQL_RUN_REQUEST_INSERT[];
/* $1 cluster, $2 workflow id or NULL, $3 state or NULL, $4 limit. ->
 * workflow id, run id, state, kind, logical time (UTC, ISO), "succeeded/
 * tasks"; newest first. */
extern const char BT_SQL_RUN_LIST[];
/* $1 cluster, $2 workflow id, $3 run id. -> record (TaskRun) of each
 * task's latest attempt, by task id. */
extern const char BT_SQL_RUN_LATEST_ATTEMPTS[];
/* $1 cluster. -> run state, count. */
extern const char BT_SQL_RUN_COUNT_BY_STATE[];

/* ---- task runs */
/* $1 cluster, $2 action ('retry', 'kill', 'clear'), $3 workflow id, $4 run
 * id, $5 task id (NULL: every task of the run), $6 only failed
 * ('t'/'f'), $7 requested by. -> request id; no row when no such task run
 * exists. */
extern const char BT_SQL_TASK_REQUEST_INSERT[];
/* $1 cluster, $2 workflow id, $3 run id, $4 task id. -> record (TaskRun)
 * of every attempt, oldest first. */
extern const char BT_SQL_TASK_ATTEMPTS[];
/* $1 cluster. -> state of each task's latest attempt, count. */
extern const char BT_SQL_TASK_COUNT_BY_STATE[];

/* ---- pools */
/* $1 cluster, $2 pool name, $3 slots. Creates or resizes. */
extern const char BT_SQL_POOL_SET[];
/* $1 cluster. -> name, slots; by name. */
extern const char BT_SQL_POOL_LIST[];

/* ---- leadership and the audit trail */
/* $1 cluster. -> the fence row's epoch (no row before the first leader). */
extern const char BT_SQL_FENCE_EPOCH[];
/* $1 cluster, $2 limit. -> at (UTC, ISO with ms), node, zone, epoch,
 * reason, previous node; newest first. */
extern const char BT_SQL_LEADER_CHANGES[];
/* $1 cluster, $2 window in ms, $3 limit. -> id, at (UTC, ISO with ms),
 * kind, node, epoch, run key, from state, to state, detail (JSON text); the
 * newest $3 of the window, oldest first. Absent values are ''. */
extern const char BT_SQL_EVENT_LIST[];

/* ---- schema (no parameters) */
/* -> version, name, applied at (UTC, ISO); by version. */
extern const char BT_SQL_SCHEMA_MIGRATIONS[];
/* -> table name, approximate rows (from the catalogue, not count(*)):
 * every table of the current schema, by name. */
extern const char BT_SQL_SCHEMA_TABLES[];

#endif
