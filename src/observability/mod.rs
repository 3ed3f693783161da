//! Health, readiness and Prometheus metrics, served by every role on `CODEXK8S_HTTP_ADDR`.

pub mod http;
pub mod metrics;

pub use metrics::{Metrics, QueueMetrics};
