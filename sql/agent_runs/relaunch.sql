-- name: agent_runs__relaunch :exec
-- The run's pod was lost: the next attempt gets new objects ($2 is the new Job name).
UPDATE agent_runs
SET attempt = attempt + 1, status = 'starting', job_name = $2,
    payload = jsonb_set(payload, '{relaunches}', to_jsonb(COALESCE((payload ->> 'relaunches')::int, 0) + 1))
WHERE id = $1
