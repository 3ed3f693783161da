-- name: flow_events__append_many :exec
-- Bulk form of flow_events__append: one event per array index.
INSERT INTO flow_events (correlation_id, run_id, actor_type, actor_id, event_type, payload)
SELECT e.correlation_id, e.run_id, e.actor_type::actor_type, e.actor_id, e.event_type, e.payload
FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::jsonb[])
    WITH ORDINALITY AS e(correlation_id, run_id, actor_type, actor_id, event_type, payload, position)
ORDER BY e.position
