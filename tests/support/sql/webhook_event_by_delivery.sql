-- name: test_webhook_events__by_delivery :one
SELECT event_name, action, processing_state::text AS processing_state, outcome, outcome_reason, payload
FROM webhook_events WHERE delivery_id = $1
