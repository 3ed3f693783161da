-- name: test_jobs__rerun :exec
-- Makes a finished job available again, as if its last attempt had never been recorded.
UPDATE jobs SET state = 'available', run_at = now(), finished_at = NULL WHERE id = $1
