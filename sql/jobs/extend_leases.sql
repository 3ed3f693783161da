-- name: jobs__extend_leases :many
-- Heartbeat: extends the leases still held by (id, attempt); jobs missing from the result were lost.
UPDATE jobs AS j
SET lease_until = now() + make_interval(secs => $3)
FROM unnest($1::bigint[], $2::int[]) AS h(id, attempt)
WHERE j.id = ANY($1::bigint[])
  AND j.id = h.id
  AND j.attempt = h.attempt
  AND j.state = 'running'
RETURNING j.id
