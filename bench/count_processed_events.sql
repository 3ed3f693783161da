-- name: bench_webhooks__count_processed :one
-- (processed deliveries, all stored deliveries)
SELECT count(*) FILTER (WHERE processing_state = 'processed'), count(*) FROM webhook_events
