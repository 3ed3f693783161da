-- name: agent_runs__without_launch_job :many
-- Pending or slot-waiting runs with no unfinished launch job: their job was lost or never made.
SELECT r.id, r.correlation_id
FROM agent_runs AS r
WHERE (r.status = 'pending' OR (r.status = 'waiting' AND r.wait_reason = 'backpressure'))
  AND NOT EXISTS (
      SELECT 1 FROM jobs AS j
      WHERE j.kind = $1 AND j.unique_key = r.id::text AND j.state IN ('available', 'running', 'failed')
  )
