-- name: jobs__enqueue_many :many
-- Bulk form of jobs__enqueue: one row per array element; duplicates of unfinished unique keys are skipped.
INSERT INTO jobs (kind, payload, priority, run_at, max_attempts, unique_key, correlation_id)
SELECT n.kind, n.payload, n.priority, now() + make_interval(secs => n.delay_secs), n.max_attempts, n.unique_key, n.correlation_id
FROM unnest($1::text[], $2::jsonb[], $3::smallint[], $4::float8[], $5::int[], $6::text[], $7::uuid[])
    AS n(kind, payload, priority, delay_secs, max_attempts, unique_key, correlation_id)
ON CONFLICT (kind, unique_key) WHERE unique_key IS NOT NULL AND state IN ('available', 'running', 'failed')
DO NOTHING
RETURNING id
