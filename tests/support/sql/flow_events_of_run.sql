-- name: test_flow_events__of_run :many
SELECT event_type, payload FROM flow_events WHERE run_id = $1 ORDER BY id
