-- name: webhook_events__accept :one
-- Stores one delivery and, when it is new and to be processed ($8 = 'received'), its job, in one
-- statement: one round trip and one implicit transaction. The job's columns $11..$17 are bound by
-- queue::bind_job and inserted exactly as jobs__enqueue does. No row when the delivery id was seen before.
WITH event AS (
    INSERT INTO webhook_events (provider, delivery_id, event_name, action, repository_external_id,
                                repository_full_name, sender_login, payload, processing_state, outcome,
                                outcome_reason, processed_at)
    VALUES ('github', $1, $2, $3, $4, $5, $6, $7::jsonb, $8::webhook_processing, $9, $10,
            CASE WHEN $8::webhook_processing = 'processed' THEN now() END)
    ON CONFLICT (provider, delivery_id) DO NOTHING
    RETURNING id
), job AS (
    INSERT INTO jobs (kind, payload, priority, run_at, max_attempts, unique_key, correlation_id)
    SELECT $11, $12, $13, now() + make_interval(secs => $14), $15, $16, $17
    FROM event
    WHERE $8::webhook_processing = 'received'
    ON CONFLICT (kind, unique_key) WHERE unique_key IS NOT NULL AND state IN ('available', 'running', 'failed')
    DO NOTHING
)
SELECT id FROM event
