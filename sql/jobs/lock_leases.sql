-- name: jobs__lock_leases :many
-- Batch form of jobs__lock_lease: the ids among ($1[i], $2[i]) whose lease is still held, locked until
-- commit (in id order, so two batches never wait on each other in a cycle).
SELECT j.id
FROM jobs AS j
JOIN unnest($1::bigint[], $2::int[]) AS held(id, attempt) ON held.id = j.id AND held.attempt = j.attempt
WHERE j.state = 'running' AND j.lease_until > clock_timestamp()
ORDER BY j.id
FOR UPDATE OF j
