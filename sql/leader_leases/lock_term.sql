-- name: leader_leases__lock_term :one
-- Inside a leader's transaction: proves the term is still current and blocks any take-over until commit.
SELECT term
FROM leader_leases
WHERE name = $1 AND holder = $2 AND term = $3 AND lease_until > clock_timestamp()
FOR SHARE
