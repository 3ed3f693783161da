-- name: webhook_events__record_outcomes :exec
-- Marks the deliveries $1[i] processed with outcome $2[i] and reason $3[i].
UPDATE webhook_events AS e
SET processing_state = 'processed', outcome = o.outcome, outcome_reason = o.reason, processed_at = now()
FROM unnest($1::bigint[], $2::text[], $3::text[]) AS o(id, outcome, reason)
WHERE e.id = o.id
