//! Handlers that are cheaper per job when run together. Jobs of one kind that start within a few
//! milliseconds of each other in this process are handed to the handler as one batch, so it can do
//! their work in one transaction with set-based statements. The queue still claims, times out,
//! retries and records every job on its own; only the handler's work is shared.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::oneshot;

use super::handler::{JobContext, JobError};

/// One result per job, in the order the batch was given.
pub type BatchResults = Vec<Result<(), JobError>>;

pub(super) type BatchFn =
    Arc<dyn Fn(Vec<JobContext>) -> BoxFuture<'static, BatchResults> + Send + Sync>;

type Waiting = (JobContext, oneshot::Sender<Result<(), JobError>>);

/// Gathers concurrent attempts of one kind into batches for a batch handler.
pub(super) struct Coalescer {
    handler: BatchFn,
    max_batch: usize,
    window: Duration,
    waiting: Mutex<Vec<Waiting>>,
}

impl Coalescer {
    pub(super) fn new(handler: BatchFn, max_batch: usize, window: Duration) -> Self {
        Self {
            handler,
            max_batch: max_batch.max(1),
            window,
            waiting: Mutex::new(Vec::new()),
        }
    }

    /// Runs `job` as part of the next batch and returns its own result.
    pub(super) async fn submit(self: Arc<Self>, job: JobContext) -> Result<(), JobError> {
        let (done, result) = oneshot::channel();
        let first = {
            let mut waiting = self.waiting.lock().expect("batch queue poisoned");
            waiting.push((job, done));
            waiting.len() == 1
        };
        if first {
            // The first arrival opens the window. The batch runs on its own task so that it finishes
            // (or rolls back) as a whole even when this attempt is dropped by its timeout.
            let coalescer = self.clone();
            tokio::spawn(async move { coalescer.run_window().await });
        }
        result.await.unwrap_or_else(|_| {
            Err(JobError::retryable(
                "the batch this job ran in ended without a result (its handler panicked)",
            ))
        })
    }

    async fn run_window(&self) {
        tokio::time::sleep(self.window).await;
        let gathered = std::mem::take(&mut *self.waiting.lock().expect("batch queue poisoned"));
        let mut batches = Vec::new();
        let mut rest = gathered.into_iter().peekable();
        while rest.peek().is_some() {
            let chunk: Vec<Waiting> = rest.by_ref().take(self.max_batch).collect();
            batches.push(self.run_batch(chunk));
        }
        futures::future::join_all(batches).await;
    }

    async fn run_batch(&self, batch: Vec<Waiting>) {
        let (jobs, senders): (Vec<JobContext>, Vec<_>) = batch.into_iter().unzip();
        let expected = jobs.len();
        let results = (self.handler)(jobs).await;
        if results.len() != expected {
            tracing::error!(
                expected,
                got = results.len(),
                "a batch handler returned the wrong number of results"
            );
        }
        let mut results = results.into_iter();
        for sender in senders {
            let result = results.next().unwrap_or_else(|| {
                Err(JobError::retryable(
                    "the batch handler returned no result for this job",
                ))
            });
            // The attempt may have timed out meanwhile; its result then has nobody to go to.
            let _ = sender.send(result);
        }
    }
}
