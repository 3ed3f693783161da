-- name: jobs__lock_lease :one
-- Inside a job's transaction: proves the lease is still held and keeps it so until commit.
SELECT id
FROM jobs
WHERE id = $1 AND attempt = $2 AND state = 'running' AND lease_until > clock_timestamp()
FOR UPDATE
