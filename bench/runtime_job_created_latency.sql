-- name: bench_runtime__job_created_latency :many
-- Per run: from the delivery's arrival to the audit row of its Job's creation (written right after
-- the API answered), in seconds.
SELECT extract(epoch FROM f.created_at - w.received_at)::float8
FROM flow_events AS f
JOIN webhook_events AS w ON w.delivery_id = f.correlation_id
WHERE f.event_type = 'k8s.job.created'
