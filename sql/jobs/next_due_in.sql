-- name: jobs__next_due_in :one
-- Seconds until the earliest waiting job of the given kinds becomes due (NULL when none waits).
SELECT extract(epoch FROM min(run_at) - now())::float8 AS due_in_secs
FROM jobs
WHERE state IN ('available', 'failed') AND kind = ANY($1::text[])
