-- The run token of the current attempt is kept only as its SHA-256; the runner API (issue 5)
-- authenticates runners by it.
ALTER TABLE agent_runs ADD COLUMN run_token_hash bytea;
