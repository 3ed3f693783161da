-- name: bench_jobs__vacuum :exec
VACUUM ANALYZE jobs
