-- name: jobs__rescue_expired :many
-- Jobs whose worker stopped heartbeating go back to the queue, or die when out of attempts.
WITH expired AS (
    SELECT id
    FROM jobs
    WHERE state = 'running' AND lease_until < now()
    ORDER BY lease_until
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
UPDATE jobs AS j
SET state = CASE WHEN j.attempt >= j.max_attempts THEN 'dead'::job_state ELSE 'available'::job_state END,
    finished_at = CASE WHEN j.attempt >= j.max_attempts THEN now() END,
    run_at = now(),
    last_error = format('lease expired: worker %s stopped heartbeating during attempt %s', j.lease_owner, j.attempt),
    lease_owner = NULL,
    lease_until = NULL
FROM expired
WHERE j.id = expired.id
RETURNING j.id, j.kind, j.attempt, j.state::text AS state
