-- name: leader_leases__release :exec
-- A leader that stops gracefully expires its own lease so another replica takes over at once.
UPDATE leader_leases
SET lease_until = now() - interval '1 millisecond'
WHERE name = $1 AND holder = $2 AND term = $3
