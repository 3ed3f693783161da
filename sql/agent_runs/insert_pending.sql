-- name: agent_runs__insert_pending :one
-- A new pending run; no row when an active run already holds the same dedupe slot.
INSERT INTO agent_runs (id, project_id, repository_id, agent_key, trigger_label, trigger_kind, stage, revise,
                        target_kind, target_number, dedupe_key, issue_number, pr_number, runtime_mode, model,
                        reasoning_effort, learning_mode, payload, correlation_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)
ON CONFLICT (repository_id, target_kind, target_number, dedupe_key)
    WHERE status IN ('pending', 'starting', 'running', 'waiting')
DO NOTHING
RETURNING id
