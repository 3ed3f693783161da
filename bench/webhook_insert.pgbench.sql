-- name: bench_webhooks__insert_event_and_job :exec
-- pgbench ceiling for ingress: what the gateway commits per delivery, one event row and one job row.
WITH e AS (
    INSERT INTO webhook_events (delivery_id, event_name, action, repository_external_id, repository_full_name,
                                sender_login, payload)
    SELECT gen_random_uuid()::text, 'issues', 'labeled', 186853002, 'Codertocat/Hello-World', 'Codertocat', p
    FROM bench_payload
    RETURNING id
)
INSERT INTO jobs (kind, payload, max_attempts, unique_key, correlation_id)
SELECT 'process_event', jsonb_build_object('webhook_event_id', id), 10, 'webhook:' || id, gen_random_uuid()
FROM e;
