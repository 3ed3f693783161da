-- name: jobs__claim :many
-- Claims up to $2 due jobs of the kinds in $1 for owner $3, leasing them for $4 seconds.
WITH picked AS (
    SELECT id
    FROM jobs
    WHERE state IN ('available', 'failed')
      AND run_at <= now()
      AND kind = ANY($1::text[])
    ORDER BY priority DESC, run_at, id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
UPDATE jobs AS j
SET state = 'running',
    attempt = j.attempt + 1,
    lease_owner = $3,
    lease_until = now() + make_interval(secs => $4),
    started_at = now()
FROM picked
WHERE j.id = picked.id
RETURNING j.id, j.kind, j.payload, j.attempt, j.max_attempts, j.correlation_id,
          extract(epoch FROM now() - j.run_at)::float8 AS waited_secs
