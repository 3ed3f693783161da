-- name: bench_jobs__claim_one :one
-- pgbench ceiling: the queue's claim-and-update for a single row, as one statement per transaction.
WITH picked AS (
    SELECT id FROM jobs
    WHERE state IN ('available', 'failed') AND run_at <= now() AND kind = 'bench.noop'
    ORDER BY priority DESC, run_at, id
    LIMIT 1
    FOR UPDATE SKIP LOCKED
)
UPDATE jobs AS j
SET state = 'running', attempt = j.attempt + 1, lease_owner = 'pgbench',
    lease_until = now() + interval '30 seconds', started_at = now()
FROM picked
WHERE j.id = picked.id
RETURNING j.id;
