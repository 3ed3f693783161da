-- name: test_repositories__copy_access_token :exec
-- Moves repository $1's sealed access token onto repository $2, as an attacker with write access might.
UPDATE repositories AS target
SET access_token_ciphertext = source.access_token_ciphertext, access_token_key_id = source.access_token_key_id
FROM repositories AS source
WHERE source.id = $1 AND target.id = $2
