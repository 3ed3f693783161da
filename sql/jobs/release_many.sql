-- name: jobs__release_many :many
-- Hands unfinished jobs back at shutdown so another worker starts them at once.
UPDATE jobs AS j
SET state = 'available',
    run_at = now(),
    last_error = 'released: the worker shut down before the job finished',
    lease_owner = NULL,
    lease_until = NULL
FROM unnest($1::bigint[], $2::int[]) AS r(id, attempt)
WHERE j.id = ANY($1::bigint[])
  AND j.id = r.id
  AND j.attempt = r.attempt
  AND j.state = 'running'
RETURNING j.id
