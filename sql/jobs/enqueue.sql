-- name: jobs__enqueue :one
-- Returns no row when an unfinished job with the same (kind, unique_key) exists.
INSERT INTO jobs (kind, payload, priority, run_at, max_attempts, unique_key, correlation_id)
VALUES ($1, $2, $3, now() + make_interval(secs => $4), $5, $6, $7)
ON CONFLICT (kind, unique_key) WHERE unique_key IS NOT NULL AND state IN ('available', 'running', 'failed')
DO NOTHING
RETURNING id
