-- name: agent_runs__relaunch :exec
-- The run's pod was lost: the next attempt gets new objects ($2 is the new Job name) and its own
-- start time, so the resync gives it the same grace as a first launch.
UPDATE agent_runs
SET attempt = attempt + 1, status = 'starting', job_name = $2, started_at = now(),
    payload = jsonb_set(payload, '{relaunches}', to_jsonb(COALESCE((payload ->> 'relaunches')::int, 0) + 1))
WHERE id = $1
