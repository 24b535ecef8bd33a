-- baton schema, version 3: what the dispatcher needs beyond task runs.
--
-- Who writes what:
--  - batonctl (operators) writes configuration and requests: workflow
--    versions (apply), pause flags, pools, run requests (trigger, backfill)
--    and task requests (retry, kill, clear). None of these is a state change
--    of a run, so none is fenced; the dispatcher reads them.
--  - the leader alone writes runs and task runs, each change fenced.

-- Every applied version of a workflow, so a run keeps the DAG it started
-- with while a newer version is applied (workflows.spec is the newest).
CREATE TABLE workflow_versions (
    cluster      text NOT NULL,
    workflow_id  text NOT NULL,
    version      integer NOT NULL,
    spec         bytea NOT NULL,
    source       text NOT NULL DEFAULT '',
    applied_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (cluster, workflow_id, version)
);

-- The scheduling cursor: the next logical time to create a run for. NULL
-- until the dispatcher first sees the workflow (it then starts at the first
-- fire time after now, or after start_date with catchup). Advanced in the
-- same fenced call that creates the run.
ALTER TABLE workflows ADD COLUMN next_fire_at timestamptz;
ALTER TABLE workflows ADD COLUMN change_seq bigint NOT NULL DEFAULT 0;

-- A global counter bumped by every configuration change, so the dispatcher
-- polls one row to learn whether anything changed.
CREATE SEQUENCE baton_change_seq;

CREATE TABLE pools (
    cluster  text NOT NULL,
    name     text NOT NULL,
    slots    integer NOT NULL CHECK (slots >= 0),
    PRIMARY KEY (cluster, name)
);

-- Manual triggers and backfills waiting for the dispatcher.
CREATE TABLE run_requests (
    id            bigserial PRIMARY KEY,
    cluster       text NOT NULL,
    workflow_id   text NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('manual', 'backfill')),
    logical_time  timestamptz NOT NULL,
    conf          jsonb,
    requested_by  text NOT NULL DEFAULT '',
    requested_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX run_requests_cluster ON run_requests (cluster, id);

-- Operators' requests on task runs: retry a failed task, kill a running one,
-- clear a run's tasks. The dispatcher applies them as fenced transitions.
CREATE TABLE task_requests (
    id            bigserial PRIMARY KEY,
    cluster       text NOT NULL,
    action        text NOT NULL CHECK (action IN ('retry', 'kill', 'clear')),
    workflow_id   text NOT NULL,
    run_id        text NOT NULL,
    task_id       text,            -- NULL: every task of the run (clear)
    only_failed   boolean NOT NULL DEFAULT false,
    requested_by  text NOT NULL DEFAULT '',
    requested_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX task_requests_cluster ON task_requests (cluster, id);

ALTER TABLE workflow_runs ADD COLUMN request_id bigint;
-- The spec version the run follows (workflow_versions), chosen at creation.
ALTER TABLE workflow_runs ADD COLUMN workflow_version integer NOT NULL DEFAULT 1;

-- Sets a workflow's cursor the first time the dispatcher sees it, so that a
-- takeover continues from the same place instead of "the next fire after
-- now" (which would lose a run due in between). Returns 'ok' or 'fenced'.
CREATE FUNCTION baton_workflow_cursor_init(p_cluster text, p_epoch bigint,
                                           p_workflow_id text, p_next timestamptz)
RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    IF baton_fence_check(p_cluster, p_epoch) <> 'ok' THEN
        RETURN 'fenced';
    END IF;
    UPDATE workflows SET next_fire_at = p_next
     WHERE cluster = p_cluster AND workflow_id = p_workflow_id AND next_fire_at IS NULL;
    RETURN 'ok';
END $$;

-- Applies a workflow file's spec. Returns 'unchanged', 'created' or
-- 'updated', with the version now current. An unchanged file (same SHA-256
-- of the encoded spec: protobuf-c encodes fields in a fixed order) is a
-- no-op.
CREATE FUNCTION baton_workflow_apply(p_cluster text, p_workflow_id text,
                                     p_spec bytea, p_source text,
                                     OUT outcome text, OUT version integer)
LANGUAGE plpgsql AS $$
DECLARE
    v_cur workflows%ROWTYPE;
    p_sha bytea := sha256(p_spec);
BEGIN
    SELECT * INTO v_cur FROM workflows
     WHERE cluster = p_cluster AND workflow_id = p_workflow_id FOR UPDATE;
    IF FOUND AND v_cur.spec_sha256 = p_sha THEN
        outcome := 'unchanged';
        version := v_cur.version;
        RETURN;
    END IF;
    IF FOUND THEN
        version := v_cur.version + 1;
        UPDATE workflows SET version = baton_workflow_apply.version, spec_sha256 = p_sha,
                             spec = p_spec, source = p_source,
                             updated_at = clock_timestamp(),
                             change_seq = nextval('baton_change_seq')
         WHERE cluster = p_cluster AND workflow_id = p_workflow_id;
        outcome := 'updated';
    ELSE
        version := 1;
        INSERT INTO workflows (cluster, workflow_id, version, spec_sha256, spec, source,
                               change_seq)
            VALUES (p_cluster, p_workflow_id, 1, p_sha, p_spec, p_source,
                    nextval('baton_change_seq'));
        outcome := 'created';
    END IF;
    INSERT INTO workflow_versions (cluster, workflow_id, version, spec, source)
        VALUES (p_cluster, p_workflow_id, version, p_spec, p_source);
    INSERT INTO events (cluster, kind, detail)
        VALUES (p_cluster, 'workflow_apply',
                jsonb_build_object('workflow', p_workflow_id, 'version', version,
                                   'source', p_source, 'outcome', outcome));
END $$;

-- Pause or unpause. Returns 'ok' or 'missing'.
CREATE FUNCTION baton_workflow_pause(p_cluster text, p_workflow_id text, p_paused boolean)
RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    UPDATE workflows SET paused = p_paused, change_seq = nextval('baton_change_seq'),
                         updated_at = clock_timestamp()
     WHERE cluster = p_cluster AND workflow_id = p_workflow_id;
    IF NOT FOUND THEN
        RETURN 'missing';
    END IF;
    INSERT INTO events (cluster, kind, detail)
        VALUES (p_cluster, CASE WHEN p_paused THEN 'pause' ELSE 'unpause' END,
                jsonb_build_object('workflow', p_workflow_id));
    RETURN 'ok';
END $$;

-- Creates a workflow run and all its first attempts in one fenced call.
-- p_next_fire: the cursor's new value (NULL leaves it); p_request: the run
-- request this run fulfils (deleted here), or NULL.
-- Returns 'ok', 'fenced' or 'exists' (a run with that id exists: the
-- cursor and request are still consumed, so a retried call converges).
CREATE FUNCTION baton_run_create(p_cluster text, p_epoch bigint, p_node text,
                                 p_workflow_id text, p_run_id text, p_kind text,
                                 p_logical_time timestamptz, p_record bytea,
                                 p_next_fire timestamptz, p_request bigint,
                                 p_task_ids text[], p_run_keys text[],
                                 p_task_records bytea[], p_due timestamptz,
                                 p_version integer)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_n integer;
BEGIN
    IF baton_fence_check(p_cluster, p_epoch) <> 'ok' THEN
        RETURN 'fenced';
    END IF;
    IF p_next_fire IS NOT NULL THEN
        UPDATE workflows SET next_fire_at = p_next_fire
         WHERE cluster = p_cluster AND workflow_id = p_workflow_id;
    END IF;
    IF p_request IS NOT NULL THEN
        DELETE FROM run_requests WHERE id = p_request AND cluster = p_cluster;
    END IF;
    INSERT INTO workflow_runs (cluster, workflow_id, run_id, state, kind, logical_time,
                               writer_epoch, record, request_id, workflow_version)
        VALUES (p_cluster, p_workflow_id, p_run_id, 'running', p_kind, p_logical_time,
                p_epoch, p_record, p_request, p_version)
        ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    IF v_n = 0 THEN
        RETURN 'exists';
    END IF;
    INSERT INTO task_runs (cluster, run_key, workflow_id, run_id, task_id, attempt,
                           state, due_at, writer_epoch, record)
        SELECT p_cluster, k, p_workflow_id, p_run_id, t, 1, 'scheduled', p_due, p_epoch, r
          FROM unnest(p_task_ids, p_run_keys, p_task_records) AS x(t, k, r);
    INSERT INTO events (cluster, kind, node, epoch, detail)
        VALUES (p_cluster, 'run_create', p_node, p_epoch,
                jsonb_build_object('workflow', p_workflow_id, 'run', p_run_id,
                                   'kind', p_kind, 'logical_time', p_logical_time,
                                   'tasks', cardinality(p_task_ids)));
    RETURN 'ok';
END $$;

-- Moves a run between states (CAS + fence). Returns 'ok', 'fenced' or
-- 'conflict'.
CREATE FUNCTION baton_run_transition(p_cluster text, p_epoch bigint, p_node text,
                                     p_workflow_id text, p_run_id text,
                                     p_from text, p_to text, p_record bytea)
RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    IF baton_fence_check(p_cluster, p_epoch) <> 'ok' THEN
        RETURN 'fenced';
    END IF;
    UPDATE workflow_runs SET state = p_to, record = p_record, writer_epoch = p_epoch,
                             updated_at = clock_timestamp()
     WHERE cluster = p_cluster AND workflow_id = p_workflow_id AND run_id = p_run_id
       AND state = p_from;
    IF NOT FOUND THEN
        RETURN 'conflict';
    END IF;
    INSERT INTO events (cluster, kind, node, epoch, from_state, to_state, detail)
        VALUES (p_cluster, 'run_transition', p_node, p_epoch, p_from, p_to,
                jsonb_build_object('workflow', p_workflow_id, 'run', p_run_id));
    RETURN 'ok';
END $$;

-- Consumes an operator's task request (fenced, so only the leader that acts
-- on it removes it). Returns 'ok' or 'fenced'.
CREATE FUNCTION baton_task_request_done(p_cluster text, p_epoch bigint, p_node text,
                                        p_id bigint, p_outcome text)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v task_requests%ROWTYPE;
BEGIN
    IF baton_fence_check(p_cluster, p_epoch) <> 'ok' THEN
        RETURN 'fenced';
    END IF;
    DELETE FROM task_requests WHERE id = p_id AND cluster = p_cluster RETURNING * INTO v;
    IF FOUND THEN
        INSERT INTO events (cluster, kind, node, epoch, detail)
            VALUES (p_cluster, 'task_request', p_node, p_epoch,
                    jsonb_build_object('action', v.action, 'workflow', v.workflow_id,
                                       'run', v.run_id, 'task', v.task_id,
                                       'by', v.requested_by, 'outcome', p_outcome));
    END IF;
    RETURN 'ok';
END $$;
