//! The queue's SQL. Every statement lives in `sql/jobs/`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

use super::kind::JobKind;
use crate::domain::errors::RepositoryError;
use crate::sql;
use crate::store::map_sqlx_error;

pub type JobId = i64;

/// Lifecycle of a job: `available → running → succeeded`, or `running → failed` (waiting for its
/// retry) `→ running …`, and finally `dead` when attempts run out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Available,
    Running,
    Succeeded,
    Failed,
    Dead,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Available => "available",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Dead => "dead",
        }
    }

    fn parse(s: &str) -> Result<Self, RepositoryError> {
        Ok(match s {
            "available" => Self::Available,
            "running" => Self::Running,
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            "dead" => Self::Dead,
            other => {
                return Err(RepositoryError::Unexpected(format!(
                    "unknown job state {other:?}"
                )));
            }
        })
    }
}

/// A job to enqueue.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub payload: Value,
    pub priority: i16,
    pub delay: Duration,
    pub unique_key: Option<String>,
    pub correlation_id: Uuid,
}

impl NewJob {
    pub fn new(payload: Value) -> Self {
        Self {
            payload,
            priority: 0,
            delay: Duration::ZERO,
            unique_key: None,
            correlation_id: Uuid::now_v7(),
        }
    }

    /// Higher runs first.
    pub fn priority(mut self, priority: i16) -> Self {
        self.priority = priority;
        self
    }

    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// While an unfinished job of the same kind has this key, enqueueing another is a no-op.
    pub fn unique_key(mut self, key: impl Into<String>) -> Self {
        self.unique_key = Some(key.into());
        self
    }

    /// Ties the job to the request or event that caused it, for logs and the audit trail.
    pub fn correlation_id(mut self, id: Uuid) -> Self {
        self.correlation_id = id;
        self
    }
}

fn max_attempts(kind: &JobKind) -> i32 {
    i32::try_from(kind.max_attempts).unwrap_or(i32::MAX).max(1)
}

/// Binds a job's seven columns, in the order of `jobs/enqueue.sql`: kind, payload, priority, delay
/// in seconds, max attempts, unique key, correlation id. A statement that must insert its own row
/// and a job in one round trip (webhook ingress) inserts the job with these parameters and the same
/// conflict rule, so the job is exactly what [`enqueue`] would have made.
pub fn bind_job<'q, O>(
    query: sqlx::query::QueryScalar<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>,
    kind: &JobKind,
    job: &'q NewJob,
) -> sqlx::query::QueryScalar<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments> {
    query
        .bind(kind.name)
        .bind(&job.payload)
        .bind(job.priority)
        .bind(job.delay.as_secs_f64())
        .bind(max_attempts(kind))
        .bind(&job.unique_key)
        .bind(job.correlation_id)
}

/// Enqueues one job with `executor` (pass the caller's transaction to commit the job with the
/// caller's change). Returns `None` when `unique_key` matched an unfinished job.
pub async fn enqueue<'e>(
    executor: impl PgExecutor<'e>,
    kind: &JobKind,
    job: NewJob,
) -> Result<Option<JobId>, RepositoryError> {
    bind_job(sqlx::query_scalar(sql!("jobs/enqueue")), kind, &job)
        .fetch_optional(executor)
        .await
        .map_err(map_sqlx_error)
}

/// Enqueues many jobs of one kind in a single statement; returns the ids of the rows inserted.
pub async fn enqueue_many<'e>(
    executor: impl PgExecutor<'e>,
    kind: &JobKind,
    jobs: Vec<NewJob>,
) -> Result<Vec<JobId>, RepositoryError> {
    let n = jobs.len();
    let (mut payloads, mut priorities, mut delays, mut keys, mut correlations) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for job in jobs {
        payloads.push(job.payload);
        priorities.push(job.priority);
        delays.push(job.delay.as_secs_f64());
        keys.push(job.unique_key);
        correlations.push(job.correlation_id);
    }
    sqlx::query_scalar(sql!("jobs/enqueue_many"))
        .bind(vec![kind.name; n])
        .bind(payloads)
        .bind(priorities)
        .bind(delays)
        .bind(vec![max_attempts(kind); n])
        .bind(keys)
        .bind(correlations)
        .fetch_all(executor)
        .await
        .map_err(map_sqlx_error)
}

/// A job just claimed by a worker.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(super) struct ClaimedJob {
    pub id: JobId,
    pub kind: String,
    pub payload: Value,
    pub attempt: i32,
    pub max_attempts: i32,
    pub correlation_id: Uuid,
    /// How long the job was due before it was claimed.
    pub waited_secs: f64,
}

pub(super) async fn claim(
    pool: &PgPool,
    kinds: &[String],
    limit: usize,
    owner: &str,
    lease: Duration,
) -> Result<Vec<ClaimedJob>, RepositoryError> {
    sqlx::query_as(sql!("jobs/claim"))
        .bind(kinds)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind(owner)
        .bind(lease.as_secs_f64())
        .fetch_all(pool)
        .await
        .map_err(map_sqlx_error)
}

/// The recorded result of one attempt.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Verdict {
    Succeeded,
    Retry { delay: Duration, error: String },
    Dead { error: String },
}

/// Records outcomes of (id, attempt) pairs; returns the ids that were still held. The others were
/// fenced out: their lease expired and the job moved on without them.
pub(super) async fn finish_many(
    pool: &PgPool,
    outcomes: &[(JobId, i32, Verdict)],
) -> Result<Vec<JobId>, RepositoryError> {
    let n = outcomes.len();
    let (mut ids, mut attempts, mut states, mut delays, mut errors) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for (id, attempt, verdict) in outcomes {
        ids.push(*id);
        attempts.push(*attempt);
        let (state, delay, error) = match verdict {
            Verdict::Succeeded => ("succeeded", None, None),
            Verdict::Retry { delay, error } => {
                ("failed", Some(delay.as_secs_f64()), Some(error.as_str()))
            }
            Verdict::Dead { error } => ("dead", None, Some(error.as_str())),
        };
        states.push(state);
        delays.push(delay);
        errors.push(error);
    }
    sqlx::query_scalar(sql!("jobs/finish_many"))
        .bind(ids)
        .bind(attempts)
        .bind(states)
        .bind(delays)
        .bind(errors)
        .fetch_all(pool)
        .await
        .map_err(map_sqlx_error)
}

/// Marks one attempt succeeded, fenced. `false` means the attempt no longer holds its lease: a late
/// completion from a worker presumed dead, which must change nothing.
pub async fn complete_fenced(
    pool: &PgPool,
    id: JobId,
    attempt: i32,
) -> Result<bool, RepositoryError> {
    let finished = finish_many(pool, &[(id, attempt, Verdict::Succeeded)]).await?;
    Ok(finished.contains(&id))
}

pub(super) async fn extend_leases(
    pool: &PgPool,
    held: &[(JobId, i32)],
    lease: Duration,
) -> Result<Vec<JobId>, RepositoryError> {
    let (ids, attempts): (Vec<JobId>, Vec<i32>) = held.iter().copied().unzip();
    sqlx::query_scalar(sql!("jobs/extend_leases"))
        .bind(ids)
        .bind(attempts)
        .bind(lease.as_secs_f64())
        .fetch_all(pool)
        .await
        .map_err(map_sqlx_error)
}

pub(super) async fn release_many(
    pool: &PgPool,
    held: &[(JobId, i32)],
) -> Result<Vec<JobId>, RepositoryError> {
    let (ids, attempts): (Vec<JobId>, Vec<i32>) = held.iter().copied().unzip();
    sqlx::query_scalar(sql!("jobs/release_many"))
        .bind(ids)
        .bind(attempts)
        .fetch_all(pool)
        .await
        .map_err(map_sqlx_error)
}

/// A job whose expired lease was taken back.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RescuedJob {
    pub id: JobId,
    pub kind: String,
    pub attempt: i32,
    pub state: String,
}

/// Returns up to `limit` jobs with expired leases to the queue (or to `dead` when out of attempts).
pub async fn rescue_expired(pool: &PgPool, limit: i64) -> Result<Vec<RescuedJob>, RepositoryError> {
    sqlx::query_as(sql!("jobs/rescue_expired"))
        .bind(limit)
        .fetch_all(pool)
        .await
        .map_err(map_sqlx_error)
}

pub(super) async fn lock_lease(
    conn: &mut sqlx::PgConnection,
    id: JobId,
    attempt: i32,
) -> Result<bool, RepositoryError> {
    let row: Option<JobId> = sqlx::query_scalar(sql!("jobs/lock_lease"))
        .bind(id)
        .bind(attempt)
        .fetch_optional(conn)
        .await
        .map_err(map_sqlx_error)?;
    Ok(row.is_some())
}

/// The ids among `held` (id, attempt) whose lease is still held, locked until the caller commits.
pub(super) async fn lock_leases(
    conn: &mut sqlx::PgConnection,
    held: &[(JobId, i32)],
) -> Result<Vec<JobId>, RepositoryError> {
    let (ids, attempts): (Vec<JobId>, Vec<i32>) = held.iter().copied().unzip();
    sqlx::query_scalar(sql!("jobs/lock_leases"))
        .bind(ids)
        .bind(attempts)
        .fetch_all(conn)
        .await
        .map_err(map_sqlx_error)
}

pub(super) async fn next_due_in(
    pool: &PgPool,
    kinds: &[String],
) -> Result<Option<Duration>, RepositoryError> {
    let secs: Option<f64> = sqlx::query_scalar(sql!("jobs/next_due_in"))
        .bind(kinds)
        .fetch_one(pool)
        .await
        .map_err(map_sqlx_error)?;
    Ok(secs.map(|s| Duration::from_secs_f64(s.max(0.0))))
}

/// A job as stored, for inspection (console, tests).
#[derive(Debug, Clone)]
pub struct JobRecord {
    pub id: JobId,
    pub kind: String,
    pub payload: Value,
    pub state: JobState,
    pub priority: i16,
    pub attempt: i32,
    pub max_attempts: i32,
    pub lease_owner: Option<String>,
    pub last_error: Option<String>,
    pub unique_key: Option<String>,
    pub correlation_id: Uuid,
    pub run_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct JobRow {
    id: JobId,
    kind: String,
    payload: Value,
    state: String,
    priority: i16,
    attempt: i32,
    max_attempts: i32,
    lease_owner: Option<String>,
    last_error: Option<String>,
    unique_key: Option<String>,
    correlation_id: Uuid,
    run_at: DateTime<Utc>,
    created_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
}

pub async fn get(pool: &PgPool, id: JobId) -> Result<JobRecord, RepositoryError> {
    let row: Option<JobRow> = sqlx::query_as(sql!("jobs/get"))
        .bind(id)
        .fetch_optional(pool)
        .await
        .map_err(map_sqlx_error)?;
    let row = row.ok_or_else(|| RepositoryError::NotFound(format!("job {id}")))?;
    Ok(JobRecord {
        id: row.id,
        kind: row.kind,
        payload: row.payload,
        state: JobState::parse(&row.state)?,
        priority: row.priority,
        attempt: row.attempt,
        max_attempts: row.max_attempts,
        lease_owner: row.lease_owner,
        last_error: row.last_error,
        unique_key: row.unique_key,
        correlation_id: row.correlation_id,
        run_at: row.run_at,
        created_at: row.created_at,
        started_at: row.started_at,
        finished_at: row.finished_at,
    })
}

/// Unfinished and dead jobs counted by kind and state, for `/metrics`.
pub async fn depth_by_kind_state(
    pool: &PgPool,
) -> Result<Vec<(String, String, i64)>, RepositoryError> {
    sqlx::query_as(sql!("jobs/depth_by_kind_state"))
        .fetch_all(pool)
        .await
        .map_err(map_sqlx_error)
}
