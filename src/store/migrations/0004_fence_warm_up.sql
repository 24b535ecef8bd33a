-- baton schema, version 4: a warm-up call for baton_fence_acquire.
--
-- A standby's PostgreSQL session runs nothing until it takes over, and the
-- first call of a plpgsql function in a session pays for compiling it and
-- for loading the catalogs it needs: the first fence bump of a takeover
-- took 5 to 25 ms instead of under 1 (log_min_duration_statement, bind and
-- execute of bt_fence_acquire on cold and warm sessions). batond now makes
-- each new session call it once with a negative epoch, which returns
-- 'warm' at once; epochs are never negative, so no real call takes that
-- branch. The rest of the function is unchanged from version 1.

CREATE OR REPLACE FUNCTION baton_fence_acquire(p_cluster text, p_epoch bigint,
                                    p_node text, p_zone text, p_reason text,
                                    p_grace_ms integer)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_prev fence%ROWTYPE;
    v_killed integer := 0;
    v_n integer;
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
