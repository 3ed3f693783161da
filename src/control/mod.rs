//! The control role: turns stored webhook events into agent runs according to the label policy, owns
//! the run state machine, and keeps the audit trail.

use std::time::Duration;

use crate::queue::JobKind;

/// Applies the label policy to one stored webhook event (payload: `{"provider": …, "delivery_id": …}`).
pub const PROCESS_EVENT: JobKind = JobKind::new("process_event")
    .max_attempts(10)
    .backoff(Duration::from_millis(500), Duration::from_secs(300))
    .timeout(Duration::from_secs(60));

/// Most deliveries processed in one transaction.
const EVENT_BATCH: usize = 64;
/// How long the first delivery of a batch waits for others: the worker starts the jobs of one
/// claim within microseconds, so a short window gathers them without delaying a lone delivery much.
const EVENT_BATCH_WINDOW: Duration = Duration::from_millis(2);

mod events;
mod process_event;
mod store;

use std::sync::Arc;

pub use events::{ParsedEvent, parse as parse_event};
pub use process_event::ControlDeps;

use crate::queue::Registry;

/// The job handlers the control role runs.
pub fn handlers(deps: Arc<ControlDeps>) -> Registry {
    let mut registry = Registry::new();
    registry.register_batched(
        PROCESS_EVENT,
        EVENT_BATCH,
        EVENT_BATCH_WINDOW,
        move |jobs| process_event::handle_batch(jobs, deps.clone()),
    );
    registry
}
