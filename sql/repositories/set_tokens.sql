-- name: repositories__set_tokens :exec
-- Stores sealed tokens: each pair ($2, $3) and ($4, $5) replaces its column pair when not null.
UPDATE repositories
SET access_token_ciphertext = COALESCE($2, access_token_ciphertext),
    access_token_key_id     = COALESCE($3, access_token_key_id),
    bot_token_ciphertext    = COALESCE($4, bot_token_ciphertext),
    bot_token_key_id        = COALESCE($5, bot_token_key_id),
    updated_at = now()
WHERE id = $1
