-- name: bench_payload__insert :exec
INSERT INTO bench_payload (p) VALUES ($1)
