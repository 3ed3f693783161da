-- name: jobs__prune_finished :exec
-- Deletes up to $3 finished jobs: succeeded ones older than $1 seconds, dead ones older than $2 seconds.
DELETE FROM jobs
WHERE id IN (
    SELECT id FROM jobs
    WHERE (state = 'succeeded' AND finished_at < now() - make_interval(secs => $1))
       OR (state = 'dead' AND finished_at < now() - make_interval(secs => $2))
    LIMIT $3
)
