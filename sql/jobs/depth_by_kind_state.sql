-- name: jobs__depth_by_kind_state :many
-- Queue depth for /metrics. Succeeded jobs are left out: they are history, counted by the outcome counters.
SELECT kind, state::text AS state, count(*)::bigint AS jobs
FROM jobs
WHERE state IN ('available', 'running', 'failed', 'dead')
GROUP BY kind, state
