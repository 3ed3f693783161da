//! The consumer: claims due jobs, runs their handlers, heartbeats their leases, records outcomes in
//! batches, rescues expired leases, and shuts down gracefully.
//!
//! Tasks of one worker:
//! - the claim loop (this file's `run`): claims as many jobs as it has free slots, in one statement;
//! - one task per running job;
//! - the recorder: writes outcomes in batches, retrying while the database is unreachable;
//! - the heartbeat: extends all held leases in one statement, cancelling jobs whose lease was lost;
//! - the rescuer: returns jobs of dead workers to the queue.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use sqlx::PgPool;
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::handler::{JobContext, JobError, Registry};
use super::store::{self, ClaimedJob, JobId, Verdict};
use super::wakeup::Wakeups;
use crate::observability::metrics::{KindLabels, KindOutcomeLabels, Outcome, QueueMetrics};
use crate::retry::{Backoff, Retrier};

/// How a worker consumes the queue; built from [`crate::config::QueueConfig`].
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Identifies this worker in `lease_owner`; unique per process.
    pub owner: String,
    pub concurrency: usize,
    pub claim_batch: usize,
    pub lease: Duration,
    pub poll_interval: Duration,
    pub rescue_interval: Duration,
    pub shutdown_grace: Duration,
}

/// Backoff of the worker's own loops while PostgreSQL is unreachable.
const STORE_RETRY: Backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(5));
/// Most outcomes recorded in one statement.
const RECORD_BATCH: usize = 512;
/// How long a busy worker waits for more free slots before claiming a partial batch.
const CLAIM_COALESCE: Duration = Duration::from_millis(3);
/// How long the recorder gathers outcomes before writing them: one commit for many jobs.
const RECORD_COALESCE: Duration = Duration::from_millis(5);

struct Held {
    attempt: i32,
    cancel: CancellationToken,
}

struct Finished {
    id: JobId,
    attempt: i32,
    kind: String,
    verdict: Verdict,
}

struct Shared {
    pool: PgPool,
    config: WorkerConfig,
    metrics: QueueMetrics,
    /// Jobs claimed and not yet recorded as finished; what the heartbeat extends and shutdown releases.
    held: Mutex<HashMap<JobId, Held>>,
}

impl Shared {
    fn held_snapshot(&self) -> Vec<(JobId, i32)> {
        self.held
            .lock()
            .expect("held jobs poisoned")
            .iter()
            .map(|(id, h)| (*id, h.attempt))
            .collect()
    }
}

pub struct Worker {
    shared: Arc<Shared>,
    registry: Arc<Registry>,
    wakeup: Arc<Notify>,
}

impl Worker {
    pub fn new(
        pool: PgPool,
        registry: Registry,
        config: WorkerConfig,
        metrics: QueueMetrics,
        wakeups: &Wakeups,
    ) -> Self {
        let shared = Shared {
            pool,
            config,
            metrics,
            held: Mutex::new(HashMap::new()),
        };
        Self {
            shared: Arc::new(shared),
            registry: Arc::new(registry),
            wakeup: wakeups.subscribe(),
        }
    }

    /// Runs until `shutdown` fires, then stops claiming, gives running jobs `shutdown_grace` to
    /// finish, hands the rest back to the queue and returns.
    pub async fn run(self, shutdown: CancellationToken) {
        let shared = self.shared;
        let config = shared.config.clone();
        let kinds = self.registry.kinds();
        let (finished_tx, finished_rx) = mpsc::unbounded_channel();
        let helpers_stop = CancellationToken::new();
        let recorder = tokio::spawn(record_outcomes(
            shared.clone(),
            finished_rx,
            self.wakeup.clone(),
        ));
        let heartbeat = tokio::spawn(heartbeat(shared.clone(), helpers_stop.clone()));
        let rescuer = tokio::spawn(rescue_loop(
            shared.clone(),
            self.wakeup.clone(),
            helpers_stop.clone(),
        ));
        let slots = Arc::new(Semaphore::new(config.concurrency.max(1)));
        let mut running = JoinSet::new();
        let mut retrier = Retrier::new(STORE_RETRY);
        tracing::info!(owner = %config.owner, kinds = ?kinds, concurrency = config.concurrency, "job worker started");

        while !kinds.is_empty() && !shutdown.is_cancelled() {
            // Reap finished tasks so the set does not grow without bound.
            while running.try_join_next().is_some() {}
            let first = tokio::select! {
                permit = slots.clone().acquire_owned() => permit.expect("semaphore never closed"),
                _ = shutdown.cancelled() => break,
            };
            let mut permits = vec![first];
            take_free_slots(&slots, &mut permits, config.claim_batch);
            // While jobs run, a slot frees up per finished job; claiming each time would mean one
            // round trip per job. Wait a few milliseconds for a full batch instead (never when
            // idle, so an idle worker still starts a new job at once).
            let fuller_batch = config.claim_batch.min(config.concurrency);
            if permits.len() < fuller_batch && !running.is_empty() {
                let deadline = tokio::time::Instant::now() + CLAIM_COALESCE;
                while permits.len() < fuller_batch {
                    tokio::select! {
                        permit = slots.clone().acquire_owned() => permits.push(permit.expect("semaphore never closed")),
                        _ = tokio::time::sleep_until(deadline) => break,
                    }
                }
                take_free_slots(&slots, &mut permits, config.claim_batch);
            }
            let asked_at = Instant::now();
            let claimed = match store::claim(
                &shared.pool,
                &kinds,
                permits.len(),
                &config.owner,
                config.lease,
            )
            .await
            {
                Ok(jobs) => {
                    tracing::trace!(asked = permits.len(), claimed = jobs.len(), took = ?asked_at.elapsed(), "claim");
                    retrier.reset();
                    jobs
                }
                Err(e) => {
                    shared.metrics.store_error("claim");
                    tracing::warn!(error = %e, "claiming jobs failed; retrying");
                    drop(permits);
                    tokio::select! { _ = tokio::time::sleep(retrier.next_delay()) => continue, _ = shutdown.cancelled() => break }
                }
            };
            let none_claimed = claimed.is_empty();
            for (job, permit) in claimed.into_iter().zip(permits.drain(..)) {
                let task = start_job(&shared, &self.registry, job, finished_tx.clone());
                running.spawn(async move {
                    task.await;
                    drop(permit);
                });
            }
            drop(permits);
            if none_claimed {
                let wait = idle_wait(&shared, &kinds).await;
                tokio::select! {
                    _ = self.wakeup.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.cancelled() => break,
                }
            }
        }
        if kinds.is_empty() {
            shutdown.cancelled().await;
        }

        // Graceful stop: no more claims; running jobs get the grace period.
        let deadline = tokio::time::Instant::now() + config.shutdown_grace;
        if !running.is_empty() {
            tracing::info!(jobs = running.len(), grace = ?config.shutdown_grace, "waiting for running jobs to finish");
        }
        loop {
            tokio::select! {
                next = running.join_next() => if next.is_none() { break },
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        for held in shared.held.lock().expect("held jobs poisoned").values() {
            held.cancel.cancel();
        }
        running.shutdown().await;
        drop(finished_tx);
        // The recorder ends once every outcome sent before the channel closed is written; if the
        // database stays away that long, the unrecorded jobs come back through lease rescue.
        if tokio::time::timeout(config.shutdown_grace.max(Duration::from_secs(1)), recorder)
            .await
            .is_err()
        {
            tracing::warn!(
                "gave up recording outcomes at shutdown; those jobs will be rescued and run again"
            );
        }
        let unfinished = shared.held_snapshot();
        if !unfinished.is_empty() {
            match store::release_many(&shared.pool, &unfinished).await {
                Ok(ids) => tracing::info!(jobs = ?ids, "handed unfinished jobs back to the queue"),
                Err(e) => {
                    tracing::warn!(error = %e, "could not hand jobs back; they return when their lease expires")
                }
            }
        }
        helpers_stop.cancel();
        let _ = heartbeat.await;
        let _ = rescuer.await;
        tracing::info!(owner = %config.owner, "job worker stopped");
    }
}

fn take_free_slots(
    slots: &Arc<Semaphore>,
    permits: &mut Vec<tokio::sync::OwnedSemaphorePermit>,
    up_to: usize,
) {
    while permits.len() < up_to {
        match slots.clone().try_acquire_owned() {
            Ok(p) => permits.push(p),
            Err(_) => break,
        }
    }
}

/// How long an idle worker sleeps when nothing was due: until the next delayed job is due, at most
/// one poll interval. NOTIFY ends the sleep early.
async fn idle_wait(shared: &Shared, kinds: &[String]) -> Duration {
    let poll = shared.config.poll_interval;
    match store::next_due_in(&shared.pool, kinds).await {
        // Due now yet not claimed: other workers hold those rows; look again shortly.
        Ok(Some(due)) if due.is_zero() => Duration::from_millis(20).min(poll),
        Ok(Some(due)) => due.min(poll),
        Ok(None) => poll,
        Err(_) => poll,
    }
}

/// Builds the future that runs one claimed job and reports its verdict.
fn start_job(
    shared: &Arc<Shared>,
    registry: &Arc<Registry>,
    job: ClaimedJob,
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
                    delay: backoff.delay(failures),
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
        });
    }
    .instrument(span)
}

fn outcome_of(verdict: &Verdict) -> Outcome {
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

/// Writes outcomes in batches until the channel closes. While PostgreSQL is unreachable it keeps
/// retrying the same batch (the jobs stay leased and heartbeated meanwhile), so an outcome is only
/// dropped when its attempt was fenced out.
///
/// Recording a retry wakes the claim loop, which may be asleep without knowing the retry's time.
async fn record_outcomes(
    shared: Arc<Shared>,
    mut finished: mpsc::UnboundedReceiver<Finished>,
    wakeup: Arc<Notify>,
) {
    let mut batch: Vec<Finished> = Vec::with_capacity(RECORD_BATCH);
    let mut retrier = Retrier::new(STORE_RETRY);
    loop {
        if batch.is_empty() {
            match finished.recv().await {
                Some(f) => batch.push(f),
                None => return,
            }
            let deadline = tokio::time::Instant::now() + RECORD_COALESCE;
            while batch.len() < RECORD_BATCH {
                tokio::select! {
                    next = finished.recv() => match next {
                        Some(f) => batch.push(f),
                        None => break,
                    },
                    _ = tokio::time::sleep_until(deadline) => break,
                }
            }
        }
        while batch.len() < RECORD_BATCH {
            match finished.try_recv() {
                Ok(f) => batch.push(f),
                Err(_) => break,
            }
        }
        let rows: Vec<(JobId, i32, Verdict)> = batch
            .iter()
            .map(|f| (f.id, f.attempt, f.verdict.clone()))
            .collect();
        let asked_at = Instant::now();
        match store::finish_many(&shared.pool, &rows).await {
            Ok(recorded) => {
                tracing::trace!(outcomes = rows.len(), took = ?asked_at.elapsed(), "recorded");
                if rows
                    .iter()
                    .any(|(_, _, v)| matches!(v, Verdict::Retry { .. }))
                {
                    wakeup.notify_one();
                }
                retrier.reset();
                let mut held = shared.held.lock().expect("held jobs poisoned");
                for f in batch.drain(..) {
                    held.remove(&f.id);
                    let outcome = if recorded.contains(&f.id) {
                        outcome_of(&f.verdict)
                    } else {
                        Outcome::Fenced
                    };
                    if outcome == Outcome::Fenced {
                        tracing::warn!(
                            job_id = f.id,
                            attempt = f.attempt,
                            "attempt finished after losing its lease; outcome discarded"
                        );
                    }
                    shared
                        .metrics
                        .outcomes
                        .get_or_create(&KindOutcomeLabels {
                            kind: f.kind,
                            outcome,
                        })
                        .inc();
                }
            }
            Err(e) if e.is_transient() => {
                shared.metrics.store_error("finish");
                let delay = retrier.next_delay();
                tracing::warn!(error = %e, jobs = batch.len(), retry_in = ?delay, "recording job outcomes failed; retrying");
                tokio::time::sleep(delay).await;
            }
            Err(e) => {
                shared.metrics.store_error("finish");
                // Retrying a statement the server rejects cannot help. Dropping the batch stops its
                // heartbeats, so the jobs come back through lease rescue and run again.
                tracing::error!(error = %e, jobs = batch.len(), "recording job outcomes was rejected; the jobs will be rescued");
                let mut held = shared.held.lock().expect("held jobs poisoned");
                for f in batch.drain(..) {
                    held.remove(&f.id);
                }
            }
        }
    }
}

/// Extends every held lease at a third of the lease time. A job whose lease is gone (rescued while
/// this process was stalled) is cancelled: whatever it writes now would be fenced anyway.
async fn heartbeat(shared: Arc<Shared>, stop: CancellationToken) {
    let every = shared.config.lease / 3;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.cancelled() => return,
        }
        let held = shared.held_snapshot();
        if held.is_empty() {
            continue;
        }
        match store::extend_leases(&shared.pool, &held, shared.config.lease).await {
            Ok(extended) => {
                let lost: Vec<JobId> = held
                    .iter()
                    .map(|(id, _)| *id)
                    .filter(|id| !extended.contains(id))
                    .collect();
                if !lost.is_empty() {
                    let map = shared.held.lock().expect("held jobs poisoned");
                    for id in &lost {
                        if let Some(h) = map.get(id) {
                            h.cancel.cancel();
                        }
                    }
                    tracing::warn!(jobs = ?lost, "leases lost; cancelling those attempts");
                }
            }
            Err(e) => {
                shared.metrics.store_error("heartbeat");
                tracing::warn!(error = %e, "extending job leases failed; will retry");
            }
        }
    }
}

/// Any worker may rescue: the statement skips rows another rescuer already locked.
async fn rescue_loop(shared: Arc<Shared>, wakeup: Arc<Notify>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(shared.config.rescue_interval) => {}
            _ = stop.cancelled() => return,
        }
        match store::rescue_expired(&shared.pool, 1000).await {
            Ok(rescued) if !rescued.is_empty() => {
                shared.metrics.rescued.inc_by(rescued.len() as u64);
                for job in &rescued {
                    tracing::warn!(job_id = job.id, kind = %job.kind, attempt = job.attempt, state = %job.state, "rescued a job whose lease expired");
                }
                wakeup.notify_one();
            }
            Ok(_) => {}
            Err(e) => {
                shared.metrics.store_error("rescue");
                tracing::warn!(error = %e, "rescuing expired leases failed; will retry");
            }
        }
    }
}
