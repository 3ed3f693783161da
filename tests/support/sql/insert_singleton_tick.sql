-- name: test_singleton_ticks__insert :exec
INSERT INTO singleton_ticks (holder, term, started_at, ended_at) VALUES ($1, $2, $3, clock_timestamp())
