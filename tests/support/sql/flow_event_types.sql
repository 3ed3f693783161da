-- name: test_flow_events__types_for_correlation :many
SELECT event_type FROM flow_events WHERE correlation_id = $1 ORDER BY id
