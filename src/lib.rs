//! codex-k8s: a control plane that runs AI coding agents as Kubernetes workloads.
//!
//! One binary, three roles (`gateway`, `control`, `worker`) that never call each other: they share
//! PostgreSQL, the only state. See `docs/architecture.md` for the map of modules and who may depend on
//! whom; the rule that matters most is that `domain` imports no adapter.

pub mod cli;
pub mod config;
pub mod control;
pub mod domain;
pub mod gateway;
pub mod k8s;
pub mod leader;
pub mod observability;
pub mod providers;
pub mod queue;
pub mod retry;
pub mod sealing;
pub mod serve;
pub mod store;
pub mod telemetry;
pub mod tokens;
pub mod worker;
