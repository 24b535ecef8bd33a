-- baton schema, version 1.
-- One database may hold several baton clusters: every table is keyed by
-- `cluster`. Records are protobuf (proto/baton.proto) in bytea; the columns
-- beside them are the ones we query on, written in the same statement.

-- One row per baton cluster: the current leader's fencing epoch. Every
-- fenced write locks this row FOR SHARE; a new leader's epoch bump takes it
-- FOR UPDATE, so the two serialise.
CREATE TABLE fence (
    cluster     text PRIMARY KEY,
    -- -1 marks a row created by baton_fence_acquire before its first leader
    epoch       bigint NOT NULL CHECK (epoch >= -1),
    node        text NOT NULL,
    zone        text NOT NULL DEFAULT '',
    since       timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE TABLE workflows (
    cluster      text NOT NULL,
    workflow_id  text NOT NULL,
    version      integer NOT NULL CHECK (version > 0),
    spec_sha256  bytea NOT NULL,
    paused       boolean NOT NULL DEFAULT false,
    spec         bytea NOT NULL,
    source       text NOT NULL DEFAULT '',
    updated_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (cluster, workflow_id)
);

CREATE TABLE workflow_runs (
    cluster       text NOT NULL,
    workflow_id   text NOT NULL,
    run_id        text NOT NULL,
    state         text NOT NULL CHECK (state IN
                    ('queued', 'running', 'success', 'failed', 'cancelled')),
    kind          text NOT NULL CHECK (kind IN ('scheduled', 'manual', 'backfill')),
    logical_time  timestamptz NOT NULL,
    writer_epoch  bigint NOT NULL,
    record        bytea NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (cluster, workflow_id, run_id),
    FOREIGN KEY (cluster, workflow_id) REFERENCES workflows (cluster, workflow_id)
);
CREATE INDEX workflow_runs_active ON workflow_runs (cluster, state)
    WHERE state IN ('queued', 'running');

-- One row per attempt. run_key = <workflow>/<run_id>/<task>/<attempt>.
CREATE TABLE task_runs (
    cluster       text NOT NULL,
    run_key       text NOT NULL,
    workflow_id   text NOT NULL,
    run_id        text NOT NULL,
    task_id       text NOT NULL,
    attempt       integer NOT NULL CHECK (attempt > 0),
    state         text NOT NULL CHECK (state IN
                    ('scheduled', 'queued', 'submitting', 'running', 'success',
                     'failed', 'up_for_retry', 'timed_out', 'cancelled',
                     'skipped', 'upstream_failed')),
    due_at        timestamptz,
    error         text,
    writer_epoch  bigint NOT NULL,
    record        bytea NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (cluster, run_key),
    UNIQUE (cluster, workflow_id, run_id, task_id, attempt)
);
CREATE INDEX task_runs_state_due ON task_runs (cluster, state, due_at);
CREATE INDEX task_runs_run ON task_runs (cluster, workflow_id, run_id);

-- The audit trail: leader changes, state transitions, operator calls.
CREATE TABLE events (
    id          bigserial PRIMARY KEY,
    cluster     text NOT NULL,
    at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    kind        text NOT NULL,
    node        text NOT NULL DEFAULT '',
    epoch       bigint,
    run_key     text,
    from_state  text,
    to_state    text,
    detail      jsonb
);
CREATE INDEX events_cluster_at ON events (cluster, at);

CREATE FUNCTION baton_events_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events is append-only';
END $$;
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION baton_events_append_only();

-- Fencing. Each function below is one round trip and returns its outcome as
-- a value ('ok', 'fenced', 'conflict', ...), never as an exception: a batch
-- of pipelined transitions shares one transaction, and an exception would
-- abort the others.
--
-- Why this holds under READ COMMITTED: the writer takes the fence row FOR
-- SHARE before it touches anything. If a new leader's bump committed first,
-- the writer reads the new epoch (a locking read always sees the latest
-- committed row version) and returns 'fenced'. If the writer got the share
-- lock first, the bump waits for the writer's commit, so the write is
-- ordered before the new epoch exists. There is no third case.

-- Take (or re-take) leadership with a strictly greater epoch.
-- Returns 'ok' or 'stale' (a newer epoch is recorded, or the same epoch by
-- another node). The same node repeating its own epoch gets 'ok' again: a
-- claimant may have to retry after a lost reply.
--
-- A deposed leader that was paused (SIGSTOP, VM freeze, GC) in the middle of
-- a pipelined batch holds the fence row FOR SHARE in an open transaction, and
-- PostgreSQL arms idle_in_transaction_session_timeout only at a Sync, which
-- that leader never sent. Waiting for it could take forever. So we do not
-- wait: we take the row NOWAIT and, while that fails, terminate any session
-- that has held a lock on `fence` for longer than p_grace_ms. Fenced writes
-- last milliseconds; one that old belongs to a writer that is not running.
-- Its uncommitted writes roll back and its client sees "outcome unknown".
-- (Terminating needs the same role, or membership in pg_signal_backend.)
CREATE FUNCTION baton_fence_acquire(p_cluster text, p_epoch bigint,
                                    p_node text, p_zone text, p_reason text,
                                    p_grace_ms integer)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_prev fence%ROWTYPE;
    v_killed integer := 0;
    v_n integer;
BEGIN
    INSERT INTO fence AS f (cluster, epoch, node, zone)
        VALUES (p_cluster, -1, '', '')
        ON CONFLICT (cluster) DO NOTHING;
    LOOP
        BEGIN
            SELECT * INTO v_prev FROM fence WHERE cluster = p_cluster
                FOR UPDATE NOWAIT;
            EXIT;
        EXCEPTION WHEN lock_not_available THEN
            SELECT count(*) INTO v_n FROM (
                SELECT pg_terminate_backend(l.pid)
                  FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                 WHERE l.locktype = 'relation'
                   AND l.relation = 'fence'::regclass
                   AND l.granted
                   AND l.pid <> pg_backend_pid()
                   AND a.xact_start < clock_timestamp()
                                      - make_interval(secs => p_grace_ms / 1000.0)) k;
            v_killed := v_killed + v_n;
            PERFORM pg_sleep(0.005);
        END;
    END LOOP;
    IF v_prev.epoch > p_epoch OR (v_prev.epoch = p_epoch AND v_prev.node <> p_node) THEN
        RETURN 'stale';
    END IF;
    IF v_prev.epoch = p_epoch THEN
        RETURN 'ok';  -- our own, already recorded
    END IF;
    UPDATE fence SET epoch = p_epoch, node = p_node, zone = p_zone,
                     since = clock_timestamp()
     WHERE cluster = p_cluster AND epoch < p_epoch;
    INSERT INTO events (cluster, kind, node, epoch, detail)
        VALUES (p_cluster, 'leader', p_node, p_epoch,
                jsonb_build_object('zone', p_zone, 'reason', p_reason,
                                   'previous_node', v_prev.node,
                                   'previous_epoch', v_prev.epoch,
                                   'stalled_writers_terminated', v_killed));
    RETURN 'ok';
END $$;

-- 'ok' when p_epoch is current, else 'fenced'. Takes the share lock, so a
-- caller that batches it with other statements orders them before any bump.
CREATE FUNCTION baton_fence_check(p_cluster text, p_epoch bigint)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_epoch bigint;
BEGIN
    SELECT epoch INTO v_epoch FROM fence WHERE cluster = p_cluster FOR SHARE;
    IF v_epoch IS DISTINCT FROM p_epoch THEN
        RETURN 'fenced';
    END IF;
    RETURN 'ok';
END $$;

-- Move one task run from p_from to p_to, replacing its record.
-- Returns 'ok', 'fenced' or 'conflict' (missing, or not in p_from).
CREATE FUNCTION baton_task_transition(p_cluster text, p_epoch bigint,
                                      p_node text, p_run_key text,
                                      p_from text, p_to text,
                                      p_due timestamptz, p_error text,
                                      p_record bytea)
RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    IF baton_fence_check(p_cluster, p_epoch) <> 'ok' THEN
        RETURN 'fenced';
    END IF;
    UPDATE task_runs
       SET state = p_to, due_at = p_due, error = p_error, record = p_record,
           writer_epoch = p_epoch, updated_at = clock_timestamp()
     WHERE cluster = p_cluster AND run_key = p_run_key AND state = p_from;
    IF NOT FOUND THEN
        RETURN 'conflict';
    END IF;
    INSERT INTO events (cluster, kind, node, epoch, run_key, from_state, to_state)
        VALUES (p_cluster, 'transition', p_node, p_epoch, p_run_key, p_from, p_to);
    RETURN 'ok';
END $$;

-- Create one task run (one attempt). Returns 'ok', 'fenced' or 'exists'.
CREATE FUNCTION baton_task_create(p_cluster text, p_epoch bigint, p_node text,
                                  p_run_key text, p_workflow_id text,
                                  p_run_id text, p_task_id text,
                                  p_attempt integer, p_state text,
                                  p_due timestamptz, p_record bytea)
RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    IF baton_fence_check(p_cluster, p_epoch) <> 'ok' THEN
        RETURN 'fenced';
    END IF;
    INSERT INTO task_runs (cluster, run_key, workflow_id, run_id, task_id,
                           attempt, state, due_at, writer_epoch, record)
        VALUES (p_cluster, p_run_key, p_workflow_id, p_run_id, p_task_id,
                p_attempt, p_state, p_due, p_epoch, p_record)
        ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        RETURN 'exists';
    END IF;
    INSERT INTO events (cluster, kind, node, epoch, run_key, to_state)
        VALUES (p_cluster, 'create', p_node, p_epoch, p_run_key, p_state);
    RETURN 'ok';
END $$;

-- Append an audit event under the fence (operator calls and the like).
CREATE FUNCTION baton_event_append(p_cluster text, p_epoch bigint, p_node text,
                                   p_kind text, p_run_key text, p_detail jsonb)
RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    IF baton_fence_check(p_cluster, p_epoch) <> 'ok' THEN
        RETURN 'fenced';
    END IF;
    INSERT INTO events (cluster, kind, node, epoch, run_key, detail)
        VALUES (p_cluster, p_kind, p_node, p_epoch, p_run_key, p_detail);
    RETURN 'ok';
END $$;
