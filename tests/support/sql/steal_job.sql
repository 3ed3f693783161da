-- name: test_jobs__steal :exec
-- Simulates another worker taking the job over: a new attempt under a new owner.
UPDATE jobs SET attempt = attempt + 1, lease_owner = 'thief', lease_until = now() + interval '1 hour' WHERE id = $1
