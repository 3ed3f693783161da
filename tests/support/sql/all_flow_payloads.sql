-- name: test_flow_events__all_payloads :many
SELECT payload::text FROM flow_events
