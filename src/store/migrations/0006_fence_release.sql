-- baton schema, version 6: a leader that hands off says so.
--
-- A fence stops writes, not calls. A new leader may look a task left in
-- `submitting` up at the service and believe "not found" only once no call
-- of an earlier leader can still take effect there (docs/failover.md, Rule
-- 4). After a crash it cannot know which calls were in flight, so it waits
-- out the transit bound for every such task. A leader that hands off
-- cleanly (its calls answered and their outcomes written, every task whose
-- outcome it does not know marked outcome_unknown in its record, and no
-- further call possible) records that here, and its successor trusts the
-- records instead of waiting.
--
-- released_epoch: the last epoch that released cleanly (-1: none).
-- inherited_clean: whether the current epoch's predecessor had released
-- cleanly when the current epoch was acquired (a first leader has no
-- predecessor: clean).

ALTER TABLE fence ADD COLUMN released_epoch bigint NOT NULL DEFAULT -1;
ALTER TABLE fence ADD COLUMN inherited_clean boolean NOT NULL DEFAULT false;

-- 'ok' when p_epoch is current (and is now recorded as released), else
-- 'fenced'. The lock is the same as any fenced write's, so a release
-- either commits before a successor's bump or fails.
CREATE FUNCTION baton_fence_release(p_cluster text, p_epoch bigint, p_node text)
RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    IF baton_fence_check(p_cluster, p_epoch) <> 'ok' THEN
        RETURN 'fenced';
    END IF;
    UPDATE fence SET released_epoch = p_epoch WHERE cluster = p_cluster;
    INSERT INTO events (cluster, kind, node, epoch, detail)
        VALUES (p_cluster, 'release', p_node, p_epoch, NULL);
    RETURN 'ok';
END $$;

-- As in version 4, and the bump records whether the predecessor released.
CREATE OR REPLACE FUNCTION baton_fence_acquire(p_cluster text, p_epoch bigint,
                                    p_node text, p_zone text, p_reason text,
                                    p_grace_ms integer)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_prev fence%ROWTYPE;
    v_killed integer := 0;
    v_n integer;
    v_clean boolean;
BEGIN
    IF p_epoch < 0 THEN
        -- a warm-up: touches nothing, takes no lock
        PERFORM epoch FROM fence WHERE cluster = p_cluster;
        RETURN 'warm';
    END IF;
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
    v_clean := v_prev.epoch = -1 OR v_prev.released_epoch = v_prev.epoch;
    UPDATE fence SET epoch = p_epoch, node = p_node, zone = p_zone,
                     since = clock_timestamp(), inherited_clean = v_clean
     WHERE cluster = p_cluster AND epoch < p_epoch;
    INSERT INTO events (cluster, kind, node, epoch, detail)
        VALUES (p_cluster, 'leader', p_node, p_epoch,
                jsonb_build_object('zone', p_zone, 'reason', p_reason,
                                   'previous_node', v_prev.node,
                                   'previous_epoch', v_prev.epoch,
                                   'previous_released', v_clean,
                                   'stalled_writers_terminated', v_killed));
    RETURN 'ok';
END $$;
