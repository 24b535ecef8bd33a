/* The text of every SQL statement batonctl sends; queries.h documents each
 * one's parameters and result columns. Times are formatted by the server
 * (to_char ... AT TIME ZONE 'UTC') so that the CLI prints them as stored. */
#include "cli/queries.h"

/* ---- transactions */
const char BT_SQL_BEGIN[] = "BEGIN";
const char BT_SQL_COMMIT[] = "COMMIT";
const char BT_SQL_ROLLBACK[] = "ROLLBACK";

/* ---- workflows */
const char BT_SQL_WORKFLOW_APPLY[] =
    "SELECT outcome, version FROM baton_workflow_apply($1, $2, $3::bytea, $4)";

const char BT_SQL_WORKFLOW_SET_PAUSED[] = "SELECT baton_workflow_pause($1, $2, $3::boolean)";

const char BT_SQL_WORKFLOW_LIST[] =
    "SELECT w.workflow_id, w.version, w.paused, w.spec, "
    "coalesce(to_char(w.next_fire_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), ''), "
    "(SELECT count(*) FROM workflow_runs r WHERE r.cluster = w.cluster "
    " AND r.workflow_id = w.workflow_id AND r.state IN ('queued', 'running')) "
    "FROM workflows w WHERE w.cluster = $1 ORDER BY w.workflow_id";

const char BT_SQL_WORKFLOW_SHOW[] = "SELECT version, paused, spec, source FROM workflows "
                                    "WHERE cluster = $1 AND workflow_id = $2";

const char BT_SQL_WORKFLOW_SPEC[] =
    "SELECT spec FROM workflows WHERE cluster = $1 AND workflow_id = $2";

/* ---- runs */
const char BT_SQL_RUN_REQUEST_INSERT[] =
    "INSERT INTO run_requests (cluster, workflow_id, kind, "
    "logical_time, conf, requested_by) "
    "SELECT $1, $2, $3, coalesce($4::timestamptz, clock_timestamp()), "
    "$5::jsonb, $6 WHERE EXISTS (SELECT 1 FROM workflows "
    "WHERE cluster = $1 AND workflow_id = $2) RETURNING id";

const char BT_SQL_RUN_LIST[] =
    "SELECT r.workflow_id, r.run_id, r.state, r.kind, "
    "to_char(r.logical_time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "
    "(SELECT count(*) FILTER (WHERE t.state = 'success') || '/' || count(*) FROM "
    " (SELECT DISTINCT ON (task_id) state FROM task_runs WHERE cluster = r.cluster "
    "  AND workflow_id = r.workflow_id AND run_id = r.run_id ORDER BY task_id, attempt DESC) t) "
    "FROM workflow_runs r WHERE r.cluster = $1 AND ($2::text IS NULL OR r.workflow_id = $2) "
    "AND ($3::text IS NULL OR r.state = $3) ORDER BY r.created_at DESC LIMIT $4::int";

const char BT_SQL_RUN_LATEST_ATTEMPTS[] =
    "SELECT DISTINCT ON (task_id) record FROM task_runs "
    "WHERE cluster = $1 AND workflow_id = $2 AND run_id = $3 "
    "ORDER BY task_id, attempt DESC";

const char BT_SQL_RUN_COUNT_BY_STATE[] =
    "SELECT state, count(*) FROM workflow_runs WHERE cluster = $1 GROUP BY 1";

/* ---- task runs */
const char BT_SQL_TASK_REQUEST_INSERT[] =
    "INSERT INTO task_requests (cluster, action, workflow_id, run_id, "
    "task_id, only_failed, requested_by) SELECT $1, $2, $3, $4, $5, "
    "$6::boolean, $7 WHERE EXISTS (SELECT 1 FROM task_runs WHERE "
    "cluster = $1 AND workflow_id = $3 AND run_id = $4 AND "
    "($5::text IS NULL OR task_id = $5)) RETURNING id";

const char BT_SQL_TASK_ATTEMPTS[] = "SELECT record FROM task_runs WHERE cluster = $1 AND "
                                    "workflow_id = $2 AND run_id = $3 AND task_id = $4 "
                                    "ORDER BY attempt";

const char BT_SQL_TASK_COUNT_BY_STATE[] =
    "SELECT state, count(*) FROM (SELECT DISTINCT ON (workflow_id, run_id, task_id) "
    "state FROM task_runs WHERE cluster = $1 ORDER BY workflow_id, run_id, "
    "task_id, attempt DESC) t GROUP BY 1";

/* ---- pools */
const char BT_SQL_POOL_SET[] = "INSERT INTO pools (cluster, name, slots) VALUES ($1, $2, "
                               "$3::int) ON CONFLICT (cluster, name) DO UPDATE SET slots = "
                               "EXCLUDED.slots";

const char BT_SQL_POOL_LIST[] = "SELECT name, slots FROM pools WHERE cluster = $1 ORDER BY 1";

/* ---- leadership and the audit trail */
const char BT_SQL_FENCE_EPOCH[] = "SELECT epoch FROM fence WHERE cluster = $1";

const char BT_SQL_LEADER_CHANGES[] =
    "SELECT to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), node, "
    "coalesce(detail->>'zone', ''), epoch, coalesce(detail->>'reason', ''), "
    "coalesce(detail->>'previous_node', '') FROM events WHERE cluster = $1 AND kind = 'leader' "
    "ORDER BY id DESC LIMIT $2::int";

const char BT_SQL_EVENT_LIST[] =
    "SELECT * FROM (SELECT id, to_char(at AT TIME ZONE 'UTC', "
    "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), kind, node, coalesce(epoch::text, ''), "
    "coalesce(run_key, ''), coalesce(from_state, ''), coalesce(to_state, ''), "
    "coalesce(detail::text, '') FROM events WHERE cluster = $1 AND at > clock_timestamp() - "
    "make_interval(secs => $2::bigint / 1000.0) ORDER BY id DESC LIMIT $3::int) e ORDER BY 1";

/* ---- schema */
const char BT_SQL_SCHEMA_MIGRATIONS[] =
    "SELECT version, name, to_char(applied_at AT TIME ZONE 'UTC', "
    "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM schema_migrations "
    "ORDER BY version";

const char BT_SQL_SCHEMA_TABLES[] =
    "SELECT c.relname, greatest(c.reltuples, 0)::bigint "
    "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = current_schema() AND c.relkind = 'r' "
    "ORDER BY c.relname";
