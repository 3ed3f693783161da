-- name: jobs__extend_leases :many
-- Heartbeat: extends the leases still held by the (id, attempt) pairs in $1/$2; jobs missing from
-- the result were lost.
UPDATE jobs AS j
SET lease_until = now() + make_interval(secs => $3)
WHERE j.id = ANY($1::bigint[])
  AND j.state = 'running'
  AND j.attempt = ($2::int[])[array_position($1::bigint[], j.id)]
RETURNING j.id
