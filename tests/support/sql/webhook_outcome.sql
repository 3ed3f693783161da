-- name: test_webhook_events__outcome :one
SELECT processing_state::text, outcome, outcome_reason FROM webhook_events WHERE delivery_id = $1
