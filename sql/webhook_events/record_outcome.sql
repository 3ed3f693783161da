-- name: webhook_events__record_outcome :exec
UPDATE webhook_events
SET processing_state = 'processed', outcome = $2, outcome_reason = $3, processed_at = now()
WHERE id = $1
