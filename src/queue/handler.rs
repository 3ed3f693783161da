//! What a job handler sees ([`JobContext`]), what it returns ([`JobError`]), and the [`Registry`] that
//! maps kinds to handlers.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::batch::{BatchFn, BatchResults, Coalescer};
use super::kind::JobKind;
use super::store::{self, JobId};
use crate::domain::errors::RepositoryError;

/// Why an attempt failed, and whether another attempt may help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct JobError {
    message: String,
    retryable: bool,
    /// The least time before the next attempt, when the failure says (a rate limit's wait).
    not_before: Option<std::time::Duration>,
}

impl JobError {
    /// A failure another attempt may fix (a timeout, an unavailable service).
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: true,
            not_before: None,
        }
    }

    /// A failure to retry no sooner than `wait` (longer if the kind's backoff says so).
    pub fn retry_after(message: impl Into<String>, wait: std::time::Duration) -> Self {
        Self {
            message: message.into(),
            retryable: true,
            not_before: Some(wait),
        }
    }

    pub fn not_before(&self) -> Option<std::time::Duration> {
        self.not_before
    }

    /// A failure no retry will fix (a malformed payload): the job goes straight to `dead`.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: false,
            not_before: None,
        }
    }

    pub fn is_retryable(&self) -> bool {
        self.retryable
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<RepositoryError> for JobError {
    fn from(err: RepositoryError) -> Self {
        // Even an unexpected store error may be fixed by a deploy; the attempt limit bounds retries.
        Self::retryable(err.to_string())
    }
}

/// The attempt no longer holds its lease; whatever it was about to write must not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("job {id} attempt {attempt} lost its lease")]
pub struct LeaseLost {
    pub id: JobId,
    pub attempt: i32,
}

impl From<LeaseLost> for JobError {
    fn from(err: LeaseLost) -> Self {
        Self::retryable(err.to_string())
    }
}

/// Everything one attempt of a job needs.
#[derive(Debug, Clone)]
pub struct JobContext {
    pub id: JobId,
    pub kind: String,
    pub attempt: i32,
    pub max_attempts: i32,
    pub correlation_id: Uuid,
    payload: Value,
    cancel: CancellationToken,
}

impl JobContext {
    pub(super) fn new(
        id: JobId,
        kind: String,
        attempt: i32,
        max_attempts: i32,
        correlation_id: Uuid,
        payload: Value,
        cancel: CancellationToken,
    ) -> Self {
        Self {
            id,
            kind,
            attempt,
            max_attempts,
            correlation_id,
            payload,
            cancel,
        }
    }

    pub fn payload(&self) -> &Value {
        &self.payload
    }

    /// The payload as a typed value; a payload of the wrong shape is a permanent failure.
    pub fn parse_payload<T: DeserializeOwned>(&self) -> Result<T, JobError> {
        serde_json::from_value(self.payload.clone())
            .map_err(|e| JobError::permanent(format!("malformed {} payload: {e}", self.kind)))
    }

    /// Fires when the attempt should stop: its lease was lost, or shutdown's grace period ran out.
    pub fn cancellation(&self) -> &CancellationToken {
        &self.cancel
    }

    pub fn is_last_attempt(&self) -> bool {
        self.attempt >= self.max_attempts
    }

    /// Fences the caller's transaction: proves this attempt still holds its lease and holds the job row
    /// locked until commit, so a rescue cannot hand the job to another worker while the transaction's
    /// writes are pending. Call it first in every transaction a handler commits.
    pub async fn lock_lease(&self, tx: &mut sqlx::PgConnection) -> Result<(), JobError> {
        if store::lock_lease(tx, self.id, self.attempt).await? {
            Ok(())
        } else {
            Err(LeaseLost {
                id: self.id,
                attempt: self.attempt,
            }
            .into())
        }
    }
}

/// Fences one transaction for many attempts at once (see [`JobContext::lock_lease`]): returns, in the
/// order of `jobs`, whether each attempt still holds its lease. The held ones stay locked until commit.
pub async fn lock_leases(
    tx: &mut sqlx::PgConnection,
    jobs: &[JobContext],
) -> Result<Vec<bool>, JobError> {
    let wanted: Vec<(JobId, i32)> = jobs.iter().map(|j| (j.id, j.attempt)).collect();
    let held: std::collections::HashSet<JobId> =
        store::lock_leases(tx, &wanted).await?.into_iter().collect();
    Ok(jobs.iter().map(|j| held.contains(&j.id)).collect())
}

impl JobContext {
    /// The error a handler returns for an attempt whose lease was lost.
    pub fn lease_lost(&self) -> JobError {
        LeaseLost {
            id: self.id,
            attempt: self.attempt,
        }
        .into()
    }
}

type HandlerFn = Arc<dyn Fn(JobContext) -> BoxFuture<'static, Result<(), JobError>> + Send + Sync>;

#[derive(Clone)]
pub(super) struct Registered {
    pub kind: JobKind,
    pub handler: HandlerFn,
}

/// Handlers by kind. A process claims only the kinds registered here, so jobs for another role, or
/// for a handler a later release adds, wait for a process that can run them.
#[derive(Clone, Default)]
pub struct Registry {
    handlers: HashMap<&'static str, Registered>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `handler` for `kind`.
    ///
    /// # Panics
    /// When the kind already has a handler: two handlers for one kind is a wiring bug.
    pub fn register<F, Fut>(&mut self, kind: JobKind, handler: F) -> &mut Self
    where
        F: Fn(JobContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), JobError>> + Send + 'static,
    {
        let handler: HandlerFn = Arc::new(move |ctx| Box::pin(handler(ctx)));
        let previous = self
            .handlers
            .insert(kind.name, Registered { kind, handler });
        assert!(
            previous.is_none(),
            "job kind {:?} registered twice",
            kind.name
        );
        self
    }

    /// Registers a handler that takes jobs of `kind` in batches of at most `max_batch`: attempts that
    /// start within `window` of the first are handed over together (see [`super::batch`]).
    ///
    /// # Panics
    /// When the kind already has a handler.
    pub fn register_batched<F, Fut>(
        &mut self,
        kind: JobKind,
        max_batch: usize,
        window: std::time::Duration,
        handler: F,
    ) -> &mut Self
    where
        F: Fn(Vec<JobContext>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = BatchResults> + Send + 'static,
    {
        let batch: BatchFn = Arc::new(move |jobs| Box::pin(handler(jobs)));
        let coalescer = Arc::new(Coalescer::new(batch, max_batch, window));
        self.register(kind, move |ctx| coalescer.clone().submit(ctx))
    }

    /// Adds every handler of `other`.
    pub fn merge(&mut self, other: Registry) -> &mut Self {
        for (name, registered) in other.handlers {
            let previous = self.handlers.insert(name, registered);
            assert!(previous.is_none(), "job kind {name:?} registered twice");
        }
        self
    }

    pub fn kinds(&self) -> Vec<String> {
        let mut kinds: Vec<String> = self.handlers.keys().map(|k| k.to_string()).collect();
        kinds.sort();
        kinds
    }

    pub fn is_empty(&self) -> bool {
        self.handlers.is_empty()
    }

    pub(super) fn get(&self, kind: &str) -> Option<&Registered> {
        self.handlers.get(kind)
    }
}
