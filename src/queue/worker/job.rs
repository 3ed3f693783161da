//! One attempt of one job: run the handler under its timeout, catch panics, decide the verdict.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use futures::FutureExt;
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{Finished, Held, Shared};
use crate::observability::metrics::{KindLabels, KindOutcomeLabels, Outcome};
use crate::queue::handler::{JobContext, JobError, Registry};
use crate::queue::store::{ClaimedJob, Verdict};

/// Builds the future that runs one claimed job and reports its verdict.
/// `unrecorded` is this job's share of the worker's backlog; it is released once the outcome is
/// written.
pub(super) fn start_job(
    shared: &Arc<Shared>,
    registry: &Arc<Registry>,
    job: ClaimedJob,
    unrecorded: OwnedSemaphorePermit,
    finished: mpsc::UnboundedSender<Finished>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let cancel = CancellationToken::new();
    shared.held.lock().expect("held jobs poisoned").insert(
        job.id,
        Held {
            attempt: job.attempt,
            cancel: cancel.clone(),
        },
    );
    let labels = KindLabels {
        kind: job.kind.clone(),
    };
    shared.metrics.claimed.get_or_create(&labels).inc();
    shared
        .metrics
        .claim_latency
        .get_or_create(&labels)
        .observe(job.waited_secs.max(0.0));
    let span = tracing::info_span!(
        "job",
        job_id = job.id,
        kind = %job.kind,
        attempt = job.attempt,
        correlation_id = %job.correlation_id,
    );
    let registered = registry.get(&job.kind).cloned();
    let backoff = registered.as_ref().map(|r| r.kind.backoff);
    let metrics = shared.metrics.clone();
    async move {
        let started = Instant::now();
        let ctx = JobContext::new(
            job.id,
            job.kind.clone(),
            job.attempt,
            job.max_attempts,
            job.correlation_id,
            job.payload,
            cancel,
        );
        let result = match registered {
            None => Err(JobError::permanent(format!(
                "unknown job kind {:?}: no handler is registered for it",
                job.kind
            ))),
            Some(registered) => {
                let run = AssertUnwindSafe((registered.handler)(ctx)).catch_unwind();
                match tokio::time::timeout(registered.kind.timeout, run).await {
                    Ok(Ok(result)) => result,
                    Ok(Err(panic)) => Err(JobError::retryable(format!(
                        "handler panicked: {}",
                        panic_message(&panic)
                    ))),
                    Err(_) => Err(JobError::retryable(format!(
                        "timed out after {:?}",
                        registered.kind.timeout
                    ))),
                }
            }
        };
        let verdict = match (result, backoff) {
            (Ok(()), _) => Verdict::Succeeded,
            (Err(e), Some(backoff)) if e.is_retryable() && job.attempt < job.max_attempts => {
                let failures = u32::try_from(job.attempt).unwrap_or(u32::MAX);
                Verdict::Retry {
                    delay: backoff
                        .delay(failures)
                        .max(e.not_before().unwrap_or_default()),
                    error: e.message().to_owned(),
                }
            }
            (Err(e), _) => Verdict::Dead {
                error: e.message().to_owned(),
            },
        };
        match &verdict {
            Verdict::Succeeded => tracing::debug!("job succeeded"),
            Verdict::Retry { delay, error } => {
                tracing::warn!(%error, retry_in = ?delay, "job failed; will retry")
            }
            Verdict::Dead { error } => {
                tracing::error!(%error, "job failed for good; it is now dead")
            }
        }
        let outcome = outcome_of(&verdict);
        metrics
            .duration
            .get_or_create(&KindOutcomeLabels {
                kind: job.kind.clone(),
                outcome,
            })
            .observe(started.elapsed().as_secs_f64());
        let _ = finished.send(Finished {
            id: job.id,
            attempt: job.attempt,
            kind: job.kind,
            verdict,
            _unrecorded: unrecorded,
        });
    }
    .instrument(span)
}

pub(super) fn outcome_of(verdict: &Verdict) -> Outcome {
    match verdict {
        Verdict::Succeeded => Outcome::Succeeded,
        Verdict::Retry { .. } => Outcome::Retried,
        Verdict::Dead { .. } => Outcome::Dead,
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}
