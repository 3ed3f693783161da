-- name: webhook_events__lock_for_processing :one
-- The stored delivery, locked for the transaction that records its outcome.
SELECT id, delivery_id, event_name, payload, processing_state::text AS processing_state
FROM webhook_events
WHERE id = $1
FOR UPDATE
