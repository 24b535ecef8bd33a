-- baton schema, version 5: many task transitions in one fenced call.
--
-- baton_task_transition (version 1) moves one run: a fence check, an UPDATE
-- and an events INSERT, each started and planned on its own. With a turn's
-- worth of them pipelined, PostgreSQL's time went there, not into commits.
-- This function takes a turn's transitions as arrays, element i of each
-- being one transition, checks the fence once, moves every row in one
-- UPDATE and records the events in one INSERT. It returns one outcome per
-- element, in order: 'ok', 'conflict' (missing, or not in p_from[i]) or,
-- for all of them, 'fenced'.
--
-- The fence argument is the single function's: the FOR SHARE lock on the
-- fence row is taken before any row is touched and held to the commit.
-- A run key may appear once per call (one UPDATE moves a row once); the
-- caller puts a second move of the same run in a later call.
--
-- With empty arrays nothing is written, so nothing is fenced: batond's
-- session warm-up calls it that way, with a negative epoch, to have the
-- statement planned before its first real use.

CREATE FUNCTION baton_task_transitions(p_cluster text, p_epoch bigint,
                                       p_node text, p_keys text[],
                                       p_from text[], p_to text[],
                                       p_due timestamptz[], p_error text[],
                                       p_record bytea[])
RETURNS text[] LANGUAGE plpgsql
-- A custom plan per call (plpgsql's default for its first calls, and again
-- whenever the generic one looks costlier) tripled the cost of a small
-- batch; the generic plan, an index probe per element, suits every size.
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_out text[];
BEGIN
    IF cardinality(p_keys) > 0 AND baton_fence_check(p_cluster, p_epoch) <> 'ok' THEN
        RETURN array_fill('fenced'::text, ARRAY[cardinality(p_keys)]);
    END IF;
    IF cardinality(p_from) <> cardinality(p_keys) OR cardinality(p_to) <> cardinality(p_keys)
       OR cardinality(p_due) <> cardinality(p_keys) OR cardinality(p_error) <> cardinality(p_keys)
       OR cardinality(p_record) <> cardinality(p_keys) THEN
        RAISE EXCEPTION 'baton_task_transitions: arrays of different lengths';
    END IF;
    WITH u AS (
        SELECT *
          FROM unnest(p_keys, p_from, p_to, p_due, p_error, p_record)
               WITH ORDINALITY AS u(run_key, from_state, to_state, due_at, error, record, i)
    ), moved AS (
        UPDATE task_runs t
           SET state = u.to_state, due_at = u.due_at, error = u.error,
               record = u.record, writer_epoch = p_epoch,
               updated_at = clock_timestamp()
          FROM u
         WHERE t.cluster = p_cluster AND t.run_key = u.run_key
           -- not "=": that lets a plan made without statistics (a fresh
           -- table) probe task_runs_state_due, scanning every run in that
           -- state per element; IS NOT DISTINCT FROM is never an index
           -- condition, so the primary key it is (state is NOT NULL)
           AND t.state IS NOT DISTINCT FROM u.from_state
        RETURNING u.i, u.run_key, u.from_state, u.to_state
    ), logged AS (
        INSERT INTO events (cluster, kind, node, epoch, run_key, from_state, to_state)
        SELECT p_cluster, 'transition', p_node, p_epoch, run_key, from_state, to_state
          FROM moved ORDER BY i
    )
    SELECT coalesce(array_agg(CASE WHEN moved.i IS NULL THEN 'conflict' ELSE 'ok' END
                              ORDER BY u.i), '{}')
      INTO v_out
      FROM u LEFT JOIN moved ON moved.i = u.i;
    RETURN v_out;
END $$;

-- Every move of a run inserts into each index on task_runs (the state
-- changes, so no update is HOT). task_runs_run (cluster, workflow_id,
-- run_id) is a prefix of the unique key (cluster, workflow_id, run_id,
-- task_id, attempt), which serves the same lookups: one insert per move
-- saved.
DROP INDEX task_runs_run;
