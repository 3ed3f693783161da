-- name: bench_jobs__claim_batch :many
-- pgbench ceiling for batched claims: the queue's claim-and-update for 64 rows per transaction.
WITH picked AS (
    SELECT id FROM jobs
    WHERE state IN ('available', 'failed') AND run_at <= now() AND kind = 'bench.noop'
    ORDER BY priority DESC, run_at, id
    LIMIT 64
    FOR UPDATE SKIP LOCKED
)
UPDATE jobs AS j
SET state = 'running', attempt = j.attempt + 1, lease_owner = 'pgbench',
    lease_until = now() + interval '30 seconds', started_at = now()
FROM picked
WHERE j.id = picked.id
RETURNING j.id;
