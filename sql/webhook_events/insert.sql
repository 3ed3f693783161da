-- name: webhook_events__insert :one
-- Stores one delivery; returns no row when the delivery id was seen before.
INSERT INTO webhook_events (provider, delivery_id, event_name, action, repository_external_id,
                            repository_full_name, sender_login, payload, processing_state, outcome,
                            outcome_reason, processed_at)
VALUES ('github', $1, $2, $3, $4, $5, $6, $7::jsonb, $8::webhook_processing, $9, $10,
        CASE WHEN $8::webhook_processing = 'processed' THEN now() END)
ON CONFLICT (provider, delivery_id) DO NOTHING
RETURNING id
