//! The job queue of SPEC §6, on PostgreSQL: how roles hand work to each other.
//!
//! - [`enqueue`] inside the caller's transaction, so a job exists exactly when the caller's change
//!   committed; `unique_key` dedupes unfinished jobs of a kind.
//! - A [`Worker`] claims due jobs in batches with `FOR UPDATE SKIP LOCKED`, leases them, heartbeats
//!   while they run, and records outcomes fenced by (job id, attempt): a worker presumed dead can never
//!   overwrite its successor. Failures retry with jittered exponential backoff until `max_attempts`,
//!   then the job is `dead` with its last error.
//! - Expired leases are rescued by any worker; NOTIFY wakes idle workers, a slow poll backs it up.
//! - [`maintenance`] prunes finished jobs and flags unknown kinds, as a leader-only loop.
//!
//! The queue never interprets payloads: handlers, registered by kind, do.

mod batch;
mod handler;
mod kind;
pub mod maintenance;
mod store;
mod wakeup;
mod worker;

pub use batch::BatchResults;
pub use handler::{JobContext, JobError, LeaseLost, Registry, lock_leases};
pub use kind::JobKind;
pub use store::{
    JobId, JobRecord, JobState, NewJob, bind_job, complete_fenced, depth_by_kind_state, enqueue,
    enqueue_many, get, rescue_expired,
};
pub use wakeup::{Wakeups, listen_for_wakeups};
pub use worker::{Worker, WorkerConfig};
