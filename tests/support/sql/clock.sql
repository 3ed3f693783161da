-- name: test_clock__now :one
SELECT clock_timestamp()
