-- The job queue shared by every role (SPEC §6). Workers claim with FOR UPDATE SKIP LOCKED; every
-- write a job makes is fenced by (id, attempt).
CREATE TYPE job_state AS ENUM ('available', 'running', 'succeeded', 'failed', 'dead');

CREATE TABLE jobs (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind           text        NOT NULL CHECK (kind <> ''),
    payload        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    state          job_state   NOT NULL DEFAULT 'available',
    priority       smallint    NOT NULL DEFAULT 0,
    run_at         timestamptz NOT NULL DEFAULT now(),
    attempt        integer     NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    max_attempts   integer     NOT NULL CHECK (max_attempts > 0),
    lease_owner    text,
    lease_until    timestamptz,
    last_error     text,
    unique_key     text,
    correlation_id uuid        NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    started_at     timestamptz,
    finished_at    timestamptz,
    -- A lease exists exactly while the job runs; a finished job has a finish time.
    CONSTRAINT jobs_lease_iff_running CHECK ((state = 'running') = (lease_until IS NOT NULL AND lease_owner IS NOT NULL)),
    CONSTRAINT jobs_finished_iff_final CHECK ((state IN ('succeeded', 'dead')) = (finished_at IS NOT NULL))
) WITH (
    -- A queue table churns: vacuum it early so dead tuples do not slow the claim scan.
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_analyze_scale_factor = 0.02,
    fillfactor = 85
);

-- The claim scan: due jobs in priority order.
CREATE INDEX jobs_claimable ON jobs (priority DESC, run_at, id) WHERE state IN ('available', 'failed');
-- Rescue of expired leases and heartbeats.
CREATE INDEX jobs_running_lease ON jobs (lease_until) WHERE state = 'running';
-- Dedupe: one unfinished job per (kind, unique_key).
CREATE UNIQUE INDEX jobs_unique_key_unfinished ON jobs (kind, unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('available', 'running', 'failed');
-- Pruning and the dead-jobs list.
CREATE INDEX jobs_finished ON jobs (state, finished_at) WHERE state IN ('succeeded', 'dead');

-- Wake idle workers when due jobs are inserted. NOTIFY is only a wake-up: workers also poll, and the
-- table stays the source of truth. One notification per statement, not per row, keeps bulk inserts cheap.
CREATE FUNCTION jobs_notify_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM inserted_jobs WHERE run_at <= now()) THEN
        PERFORM pg_notify('codex_k8s_jobs', '');
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER jobs_notify_inserted
    AFTER INSERT ON jobs
    REFERENCING NEW TABLE AS inserted_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION jobs_notify_inserted();

-- Leader leases for singleton loops (reconcile, cleanup, pruning). `term` grows with every change of
-- holder, so a deposed leader's term no longer matches and its guarded writes are refused.
CREATE TABLE leader_leases (
    name        text PRIMARY KEY,
    holder      text        NOT NULL,
    term        bigint      NOT NULL,
    lease_until timestamptz NOT NULL,
    acquired_at timestamptz NOT NULL
);
