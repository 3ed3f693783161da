-- name: bench_payload__create :exec
CREATE TABLE bench_payload (p jsonb NOT NULL)
