-- The leader's fenced heartbeat: proof that the node that believes it leads
-- can still write under the fence. A deposed leader's next heartbeat comes
-- back 'fenced' and it steps down, even when ZooKeeper has not told it yet.
CREATE TABLE leader_heartbeat (
    cluster   text PRIMARY KEY,
    node      text NOT NULL,
    epoch     bigint NOT NULL,
    beats     bigint NOT NULL DEFAULT 0,
    beat_at   timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Returns 'ok' or 'fenced'.
CREATE FUNCTION baton_leader_heartbeat(p_cluster text, p_epoch bigint, p_node text)
RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    IF baton_fence_check(p_cluster, p_epoch) <> 'ok' THEN
        RETURN 'fenced';
    END IF;
    INSERT INTO leader_heartbeat AS h (cluster, node, epoch, beats)
        VALUES (p_cluster, p_node, p_epoch, 1)
        ON CONFLICT (cluster) DO UPDATE
           SET node = EXCLUDED.node, epoch = EXCLUDED.epoch,
               beats = CASE WHEN h.epoch = EXCLUDED.epoch THEN h.beats + 1 ELSE 1 END,
               beat_at = clock_timestamp();
    RETURN 'ok';
END $$;
