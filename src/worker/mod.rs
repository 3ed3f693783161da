//! The worker role: executes side effects (Kubernetes, GitHub) with retries. Its handlers arrive
//! with the Kubernetes and GitHub issues; the kinds are declared now so the control role can
//! enqueue them and they wait, queued, until a worker can run them.

use std::time::Duration;

use crate::queue::JobKind;

/// Creates the Kubernetes objects of a pending run (payload: `{"run_id": …}`).
pub const LAUNCH_RUN: JobKind = JobKind::new("launch_run").timeout(Duration::from_secs(120));
/// Stops a run's workload and marks it canceled (payload: `{"run_id": …}`).
pub const CANCEL_RUN: JobKind = JobKind::new("cancel_run").timeout(Duration::from_secs(120));
/// Posts a comment (and optionally labels) on an issue or pull request.
pub const GITHUB_COMMENT: JobKind = JobKind::new("github_comment").timeout(Duration::from_secs(60));
