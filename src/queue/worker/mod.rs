//! The consumer: claims due jobs, runs their handlers, heartbeats their leases, records outcomes in
//! batches, rescues expired leases, and shuts down gracefully.
//!
//! Tasks of one worker:
//! - the claim loop (`Worker::run`): claims as many jobs as it has free slots, in one statement;
//! - one task per running job (`job`);
//! - the recorder (`recorder`): writes outcomes in batches, retrying while the database is away;
//! - the heartbeat and the rescuer (`upkeep`).
//!
//! Two limits bound a worker: `concurrency` handlers run at once, and at most `BACKLOG_FACTOR` times
//! that many jobs are claimed but not yet recorded, so a slow database slows claiming instead of
//! letting leased jobs pile up in memory.

mod job;
mod recorder;
mod upkeep;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::handler::Registry;
use super::store::{self, JobId, Verdict};
use super::wakeup::Wakeups;
use crate::observability::metrics::QueueMetrics;
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

impl WorkerConfig {
    /// The worker settings of `queue` for the worker identified by `owner`.
    pub fn from_queue_config(owner: String, queue: &crate::config::QueueConfig) -> Self {
        Self {
            owner,
            concurrency: queue.concurrency,
            claim_batch: queue.claim_batch,
            lease: queue.lease,
            poll_interval: queue.poll_interval,
            rescue_interval: queue.rescue_interval,
            shutdown_grace: queue.shutdown_grace,
        }
    }
}

/// Backoff of the worker's own loops while PostgreSQL is unreachable.
const STORE_RETRY: Backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(5));
/// Most outcomes recorded in one statement.
const RECORD_BATCH: usize = 512;
/// How long a busy worker waits for more free slots before claiming a partial batch.
const CLAIM_COALESCE: Duration = Duration::from_millis(3);
/// How long the recorder gathers outcomes before writing them: one commit for many jobs.
const RECORD_COALESCE: Duration = Duration::from_millis(5);
/// Claimed-but-unrecorded jobs allowed per slot of concurrency.
const BACKLOG_FACTOR: usize = 4;

struct Held {
    attempt: i32,
    cancel: CancellationToken,
}

struct Finished {
    id: JobId,
    attempt: i32,
    kind: String,
    verdict: Verdict,
    /// Released when the outcome is written (or given up on), freeing room to claim more.
    _unrecorded: OwnedSemaphorePermit,
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
        let recorder = tokio::spawn(recorder::record_outcomes(
            shared.clone(),
            finished_rx,
            self.wakeup.clone(),
        ));
        let heartbeat = tokio::spawn(upkeep::heartbeat(shared.clone(), helpers_stop.clone()));
        let rescuer = tokio::spawn(upkeep::rescue_loop(
            shared.clone(),
            self.wakeup.clone(),
            helpers_stop.clone(),
        ));
        let slots = Arc::new(Semaphore::new(config.concurrency.max(1)));
        let backlog = Arc::new(Semaphore::new(config.concurrency.max(1) * BACKLOG_FACTOR));
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
            // Room in the backlog for the whole batch: waits while the recorder is behind.
            let room = tokio::select! {
                room = backlog.clone().acquire_many_owned(permits.len() as u32) => room,
                _ = shutdown.cancelled() => break,
            };
            let mut unrecorded = room.expect("backlog semaphore never closed");
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
                let room = unrecorded
                    .split(1)
                    .expect("one unit of backlog per claimed job");
                let task = job::start_job(&shared, &self.registry, job, room, finished_tx.clone());
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
