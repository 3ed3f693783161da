-- name: test_webhook_events__count :one
SELECT count(*)::bigint FROM webhook_events
