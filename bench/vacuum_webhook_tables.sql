-- name: bench_webhooks__vacuum :exec
-- After the warm-up, as autovacuum would have done on a service that has been running for a minute.
VACUUM ANALYZE jobs, webhook_events, flow_events
