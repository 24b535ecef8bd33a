-- baton schema, version 5: many task transitions in one fenced call.
--
-- baton_task_transition (version 1) moves one run: a fence check, an UPDATE
-- and an events INSERT, each started and planned on its own. With a turn's
-- worth of them pipelined, PostgreSQL's time went there, not into commits.
-- This function takes a turn's transitions as arrays, element i of each
-- being one transition, checks the fence once, moves every row in one
-- UPDATE and records the events in one INSERT. It returns one outcome per
-- element, in order: 'ok', 'conflict' or, for all of them, 'fenced'.
--
-- A run may appear more than once, as a chain: each later move starting
-- where the one before it ends (the caller keeps it so). A chain is one
-- compare-and-set, from its first move's state to its last move's, with
-- the last move's columns and record and one event per move: all its moves
-- are 'ok', or all are 'conflict' (the run missing, or not in the first
-- move's state). One UPDATE moves a row once, and a second version of the
-- row would cost a second set of index inserts. p_chained says whether
-- any run appears twice: without chains a plainer statement does (the
-- chains' window and sorts took store_bench from 23,071-24,671 to
-- 20,031-20,672 transitions/s).
--
-- The fence argument is the single function's: the FOR SHARE lock on the
-- fence row is taken before any row is touched and held to the commit.
--
-- With empty arrays nothing is written, so nothing is fenced: batond's
-- session warm-up calls it that way, with a negative epoch, to have the
-- statement planned before its first real use.

CREATE FUNCTION baton_task_transitions(p_cluster text, p_epoch bigint,
                                       p_node text, p_keys text[],
                                       p_from text[], p_to text[],
                                       p_due timestamptz[], p_error text[],
                                       p_record bytea[], p_chained boolean)
RETURNS text[] LANGUAGE plpgsql
-- A custom plan per call (plpgsql's default for its first calls, and again
-- whenever the generic one looks costlier) tripled the cost of a small
-- batch; the generic plan, an index probe per element, suits every size.
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_out text[];
    v_ok bigint[];
    v_i bigint;
BEGIN
    IF cardinality(p_keys) > 0 AND baton_fence_check(p_cluster, p_epoch) <> 'ok' THEN
        RETURN array_fill('fenced'::text, ARRAY[cardinality(p_keys)]);
    END IF;
    IF cardinality(p_from) <> cardinality(p_keys) OR cardinality(p_to) <> cardinality(p_keys)
       OR cardinality(p_due) <> cardinality(p_keys) OR cardinality(p_error) <> cardinality(p_keys)
       OR cardinality(p_record) <> cardinality(p_keys) THEN
        RAISE EXCEPTION 'baton_task_transitions: arrays of different lengths';
    END IF;
    IF NOT p_chained THEN
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
               AND t.state IS NOT DISTINCT FROM u.from_state  -- see below
            RETURNING u.i, u.run_key, u.from_state, u.to_state
        ), logged AS (
            INSERT INTO events (cluster, kind, node, epoch, run_key, from_state, to_state)
            SELECT p_cluster, 'transition', p_node, p_epoch, run_key, from_state, to_state
              FROM moved ORDER BY i
        )
        SELECT array_agg(i) INTO v_ok FROM moved;
    ELSE
        WITH u AS (
            SELECT *
              FROM unnest(p_keys, p_from, p_to, p_due, p_error, p_record)
                   WITH ORDINALITY AS u(run_key, from_state, to_state, due_at, error, record, i)
        ), chains AS (
            -- per run: its last move, the state its first one starts from, and
            -- every move (no joins: a generic plan's guess of 10 rows per side
            -- could make one a nested loop over the whole batch)
            SELECT DISTINCT ON (run_key) run_key, to_state, due_at, error, record,
                   first_value(from_state) OVER w AS first_from,
                   array_agg(i) OVER w AS hop_i,
                   array_agg(from_state) OVER w AS hop_from,
                   array_agg(to_state) OVER w AS hop_to
              FROM u
            WINDOW w AS (PARTITION BY run_key ORDER BY i
                         ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
             ORDER BY run_key, i DESC
        ), moved AS (
            UPDATE task_runs t
               SET state = c.to_state, due_at = c.due_at, error = c.error,
                   record = c.record, writer_epoch = p_epoch,
                   updated_at = clock_timestamp()
              FROM chains c
             WHERE t.cluster = p_cluster AND t.run_key = c.run_key
               -- not "=": that lets a plan made without statistics (a fresh
               -- table) probe task_runs_state_due, scanning every run in that
               -- state per element; IS NOT DISTINCT FROM is never an index
               -- condition, so the primary key it is (state is NOT NULL)
               AND t.state IS NOT DISTINCT FROM c.first_from
            RETURNING c.run_key, c.hop_i, c.hop_from, c.hop_to
        ), hops AS (
            SELECT m.run_key, h.i, h.from_state, h.to_state
              FROM moved m, unnest(m.hop_i, m.hop_from, m.hop_to) AS h(i, from_state, to_state)
        ), logged AS (
            INSERT INTO events (cluster, kind, node, epoch, run_key, from_state, to_state)
            SELECT p_cluster, 'transition', p_node, p_epoch, run_key, from_state, to_state
              FROM hops ORDER BY i
        )
        SELECT array_agg(i) INTO v_ok FROM hops;
    END IF;
    v_out := array_fill('conflict'::text, ARRAY[cardinality(p_keys)]);
    IF v_ok IS NOT NULL THEN
        FOREACH v_i IN ARRAY v_ok LOOP
            v_out[v_i] := 'ok';
        END LOOP;
    END IF;
    RETURN coalesce(v_out, '{}');
END $$;

-- Every move of a run inserts into each index on task_runs (the state
-- changes, so no update is HOT). task_runs_run (cluster, workflow_id,
-- run_id) is a prefix of the unique key (cluster, workflow_id, run_id,
-- task_id, attempt), which serves the same lookups: one insert per move
-- saved.
DROP INDEX task_runs_run;
