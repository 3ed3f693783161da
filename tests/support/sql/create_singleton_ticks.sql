-- name: test_singleton_ticks__create :exec
CREATE TABLE singleton_ticks (holder text NOT NULL, term bigint NOT NULL, started_at timestamptz NOT NULL, ended_at timestamptz NOT NULL)
