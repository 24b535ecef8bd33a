-- baton schema, version 7: an audit event that needs no fence.
--
-- A node that learns it was deposed while it was alive (a fast takeover
-- after its liveness lock's connection broke: docs/failover.md) says so in
-- the log of events; its epoch is not current any more, so a fenced append
-- would be refused. The events table is append-only either way.
CREATE FUNCTION baton_event_note(p_cluster text, p_epoch bigint, p_node text, p_kind text,
                                 p_detail jsonb)
RETURNS text LANGUAGE sql AS $$
    INSERT INTO events (cluster, kind, node, epoch, detail)
        VALUES (p_cluster, p_kind, p_node, p_epoch, p_detail);
    SELECT 'ok';
$$;
