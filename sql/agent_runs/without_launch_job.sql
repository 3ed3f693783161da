-- name: agent_runs__without_launch_job :many
-- Pending runs with no unfinished launch job for their attempt: the job was lost or never made.
-- (Runs waiting for a slot are promoted when one frees, not from here.)
SELECT r.id, r.attempt, r.correlation_id
FROM agent_runs AS r
WHERE r.status = 'pending'
  AND NOT EXISTS (
      SELECT 1 FROM jobs AS j
      WHERE j.kind = $1 AND j.unique_key = r.id::text || ':' || r.attempt
        AND j.state IN ('available', 'running', 'failed')
  )
