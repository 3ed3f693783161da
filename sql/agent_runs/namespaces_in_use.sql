-- name: agent_runs__namespaces_in_use :many
-- Namespaces that an active run uses or may soon use.
SELECT DISTINCT namespace FROM agent_runs
WHERE namespace IS NOT NULL AND status IN ('pending', 'starting', 'running', 'waiting')
