-- The product's entities (SPEC §3): people and projects, connected repositories, agent runs and
-- their sessions, stored webhook deliveries, and the append-only audit trail.

CREATE TABLE users (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email             text        NOT NULL CHECK (email LIKE '%_@_%'),
    github_login      text,
    github_id         bigint,
    is_platform_owner boolean     NOT NULL DEFAULT false,
    is_platform_admin boolean     NOT NULL DEFAULT false,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
-- Emails and logins compare case-insensitively; at most one platform owner.
CREATE UNIQUE INDEX users_email_ci ON users (lower(email));
CREATE UNIQUE INDEX users_github_login_ci ON users (lower(github_login)) WHERE github_login IS NOT NULL;
CREATE UNIQUE INDEX users_github_id ON users (github_id) WHERE github_id IS NOT NULL;
CREATE UNIQUE INDEX users_one_owner ON users ((true)) WHERE is_platform_owner;

CREATE TABLE projects (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    slug       text        NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
    name       text        NOT NULL CHECK (name <> ''),
    -- slots, learning_mode_default, runtime policy overrides
    settings   jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TYPE project_role AS ENUM ('read', 'read_write', 'admin');

CREATE TABLE project_members (
    project_id             uuid         NOT NULL REFERENCES projects ON DELETE CASCADE,
    user_id                uuid         NOT NULL REFERENCES users ON DELETE CASCADE,
    role                   project_role NOT NULL,
    learning_mode_override boolean,
    created_at             timestamptz  NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, user_id)
);
CREATE INDEX project_members_user ON project_members (user_id);

CREATE TABLE repositories (
    id                      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    project_id              uuid        NOT NULL REFERENCES projects ON DELETE CASCADE,
    provider                text        NOT NULL CHECK (provider IN ('github', 'gitlab')),
    external_id             bigint      NOT NULL,
    owner                   text        NOT NULL,
    name                    text        NOT NULL,
    default_branch          text        NOT NULL DEFAULT 'main',
    -- Tokens are sealed (XChaCha20-Poly1305) with the key named beside them; never returned by the API.
    access_token_ciphertext bytea,
    access_token_key_id     text,
    bot_token_ciphertext    bytea,
    bot_token_key_id        text,
    bot_login               text,
    bot_email               text,
    webhook_id              bigint,
    docs_root               text        NOT NULL DEFAULT 'docs',
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    UNIQUE (provider, external_id),
    CHECK ((access_token_ciphertext IS NULL) = (access_token_key_id IS NULL)),
    CHECK ((bot_token_ciphertext IS NULL) = (bot_token_key_id IS NULL))
);
CREATE INDEX repositories_project ON repositories (project_id);
CREATE UNIQUE INDEX repositories_full_name_ci ON repositories (provider, lower(owner), lower(name));

CREATE TABLE agents (
    key          text PRIMARY KEY CHECK (key ~ '^[a-z][a-z0-9-]*$'),
    display_name text    NOT NULL,
    -- NULL for the system roles; projects may add their own later.
    project_id   uuid REFERENCES projects ON DELETE CASCADE,
    is_system    boolean NOT NULL DEFAULT false
);
INSERT INTO agents (key, display_name, is_system) VALUES
    ('pm', 'Product manager', true),
    ('sa', 'Solution architect', true),
    ('em', 'Engineering manager', true),
    ('dev', 'Developer', true),
    ('reviewer', 'Reviewer', true),
    ('qa', 'QA engineer', true),
    ('sre', 'Site reliability engineer', true),
    ('km', 'Knowledge manager', true);

CREATE TYPE run_status AS ENUM ('pending', 'starting', 'running', 'waiting', 'succeeded', 'failed', 'canceled');
CREATE TYPE run_wait_reason AS ENUM ('input', 'backpressure', 'approval');

CREATE TABLE agent_runs (
    id               uuid PRIMARY KEY,
    project_id       uuid        NOT NULL REFERENCES projects ON DELETE CASCADE,
    repository_id    uuid        NOT NULL REFERENCES repositories ON DELETE CASCADE,
    agent_key        text        NOT NULL REFERENCES agents (key),
    trigger_label    text        NOT NULL,
    trigger_kind     text        NOT NULL CHECK (trigger_kind IN ('stage', 'discussion', 'reviewer')),
    stage            text,
    revise           boolean     NOT NULL DEFAULT false,
    -- The issue or pull request the run belongs to, and the slot it occupies for dedupe.
    target_kind      text        NOT NULL CHECK (target_kind IN ('issue', 'pull_request')),
    target_number    integer     NOT NULL CHECK (target_number > 0),
    dedupe_key       text        NOT NULL,
    issue_number     integer,
    pr_number        integer,
    status           run_status  NOT NULL DEFAULT 'pending',
    wait_reason      run_wait_reason,
    attempt          integer     NOT NULL DEFAULT 1 CHECK (attempt > 0),
    runtime_mode     text        NOT NULL CHECK (runtime_mode IN ('code-only', 'full-env')),
    namespace        text,
    job_name         text,
    model            text,
    reasoning_effort text,
    learning_mode    boolean     NOT NULL DEFAULT false,
    branch           text,
    pr_url           text,
    lease_owner      text,
    lease_until      timestamptz,
    payload          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    correlation_id   text        NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz,
    failure_reason   text,
    CONSTRAINT agent_runs_wait_reason_iff_waiting CHECK ((status = 'waiting') = (wait_reason IS NOT NULL)),
    CONSTRAINT agent_runs_stage_iff_stage_kind CHECK ((trigger_kind = 'stage') = (stage IS NOT NULL))
);
-- Semantic dedupe, enforced by the database: one active run per (repository, issue or PR, stage).
CREATE UNIQUE INDEX agent_runs_one_active ON agent_runs (repository_id, target_kind, target_number, dedupe_key)
    WHERE status IN ('pending', 'starting', 'running', 'waiting');
CREATE INDEX agent_runs_project_created ON agent_runs (project_id, created_at DESC, id DESC);
CREATE INDEX agent_runs_status_created ON agent_runs (status, created_at DESC, id DESC);

CREATE TABLE agent_sessions (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    repository_id uuid        NOT NULL REFERENCES repositories ON DELETE CASCADE,
    branch        text        NOT NULL,
    agent_key     text        NOT NULL REFERENCES agents (key),
    run_id        uuid REFERENCES agent_runs ON DELETE SET NULL,
    session       jsonb       NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (repository_id, branch, agent_key)
);

CREATE TYPE actor_type AS ENUM ('system', 'agent', 'human');

-- The audit trail. No foreign key to runs: the record outlives whatever it describes.
CREATE TABLE flow_events (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    correlation_id text        NOT NULL,
    run_id         uuid,
    actor_type     actor_type  NOT NULL,
    actor_id       text,
    event_type     text        NOT NULL CHECK (event_type ~ '^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$'),
    payload        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX flow_events_run ON flow_events (run_id, id) WHERE run_id IS NOT NULL;
CREATE INDEX flow_events_correlation ON flow_events (correlation_id, id);
CREATE INDEX flow_events_created ON flow_events (created_at DESC, id DESC);

CREATE FUNCTION flow_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'flow_events is append-only: % is not allowed', TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER flow_events_append_only BEFORE UPDATE OR DELETE ON flow_events
    FOR EACH ROW EXECUTE FUNCTION flow_events_append_only();

CREATE TYPE webhook_processing AS ENUM ('received', 'processed', 'failed');

CREATE TABLE webhook_events (
    id                     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    provider               text        NOT NULL DEFAULT 'github',
    delivery_id            text        NOT NULL CHECK (delivery_id <> ''),
    event_name             text        NOT NULL,
    action                 text,
    repository_external_id bigint,
    repository_full_name   text,
    sender_login           text,
    received_at            timestamptz NOT NULL DEFAULT now(),
    payload                jsonb       NOT NULL,
    processing_state       webhook_processing NOT NULL DEFAULT 'received',
    -- run_created | ignored | duplicate | refused | canceled …, with the reason code for ignored ones.
    outcome                text,
    outcome_reason         text,
    processed_at           timestamptz,
    UNIQUE (provider, delivery_id)
);
CREATE INDEX webhook_events_received ON webhook_events (received_at DESC, id DESC);
