-- name: bench_runtime__run_states :one
-- (all runs, succeeded runs)
SELECT count(*), count(*) FILTER (WHERE status = 'succeeded') FROM agent_runs
