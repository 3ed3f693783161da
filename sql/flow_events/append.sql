-- name: flow_events__append :exec
INSERT INTO flow_events (correlation_id, run_id, actor_type, actor_id, event_type, payload)
VALUES ($1, $2, $3::actor_type, $4, $5, $6)
