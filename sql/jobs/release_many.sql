-- name: jobs__release_many :many
-- Hands unfinished jobs, the (id, attempt) pairs in $1/$2, back at shutdown so another worker
-- starts them at once.
UPDATE jobs AS j
SET state = 'available',
    run_at = now(),
    last_error = 'released: the worker shut down before the job finished',
    lease_owner = NULL,
    lease_until = NULL
WHERE j.id = ANY($1::bigint[])
  AND j.state = 'running'
  AND j.attempt = ($2::int[])[array_position($1::bigint[], j.id)]
RETURNING j.id
