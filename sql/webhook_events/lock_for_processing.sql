-- name: webhook_events__lock_for_processing :many
-- The stored deliveries ($1[i] provider, $2[i] delivery id), locked in id order for the transaction
-- that records their outcomes.
SELECT e.id, e.provider, e.delivery_id, e.event_name, e.payload::text AS payload, e.processing_state::text AS processing_state
FROM webhook_events AS e
JOIN unnest($1::text[], $2::text[]) AS wanted(provider, delivery_id)
    ON wanted.provider = e.provider AND wanted.delivery_id = e.delivery_id
ORDER BY e.id
FOR UPDATE OF e
