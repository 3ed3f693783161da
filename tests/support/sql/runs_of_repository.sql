-- name: test_agent_runs__of_repository :many
SELECT id, agent_key, stage, trigger_label, trigger_kind, revise, target_kind, target_number, status::text AS status,
       runtime_mode, model, reasoning_effort, correlation_id
FROM agent_runs ORDER BY created_at
