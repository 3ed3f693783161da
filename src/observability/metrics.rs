//! Prometheus metrics, kept in one registry per process (no global recorder, so tests can run many
//! services in one process).

use std::sync::Arc;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use sqlx::PgPool;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum Outcome {
    Succeeded,
    Retried,
    Dead,
    /// The attempt finished after losing its lease; its result was discarded.
    Fenced,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindOutcomeLabels {
    pub kind: String,
    pub outcome: Outcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindStateLabels {
    pub kind: String,
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    pub operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LeaseLabels {
    pub lease: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 0.5 ms … ~16 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

fn duration_histogram() -> Histogram {
    // 1 ms … ~9 h
    Histogram::new(exponential_buckets(0.001, 2.5, 20))
}

/// The queue's instruments, cloned into every worker (each field is a shared handle).
#[derive(Clone)]
pub struct QueueMetrics {
    pub claimed: Family<KindLabels, Counter>,
    pub outcomes: Family<KindOutcomeLabels, Counter>,
    pub claim_latency: HistogramFamily<KindLabels>,
    pub duration: HistogramFamily<KindOutcomeLabels>,
    pub depth: Family<KindStateLabels, Gauge>,
    pub store_errors: Family<OperationLabels, Counter>,
    pub rescued: Counter,
}

impl Default for QueueMetrics {
    fn default() -> Self {
        Self {
            claimed: Family::default(),
            outcomes: Family::default(),
            claim_latency: Family::new_with_constructor(latency_histogram),
            duration: Family::new_with_constructor(duration_histogram),
            depth: Family::default(),
            store_errors: Family::default(),
            rescued: Counter::default(),
        }
    }
}

impl QueueMetrics {
    pub fn store_error(&self, operation: &'static str) {
        self.store_errors
            .get_or_create(&OperationLabels { operation })
            .inc();
    }
}

/// All instruments of one process and the registry that renders them.
pub struct Metrics {
    registry: Registry,
    pub queue: QueueMetrics,
    pub leader: Family<LeaseLabels, Gauge>,
    pool_connections: Family<PoolLabels, Gauge>,
    pool_max: Gauge,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("codexk8s");
        let queue = QueueMetrics::default();
        registry.register(
            "jobs_claimed",
            "Jobs claimed by this process",
            queue.claimed.clone(),
        );
        registry.register(
            "jobs_outcomes",
            "Finished attempts by outcome",
            queue.outcomes.clone(),
        );
        registry.register(
            "job_claim_latency_seconds",
            "Time from a job becoming due to being claimed",
            queue.claim_latency.clone(),
        );
        registry.register(
            "job_duration_seconds",
            "Time a handler ran, by outcome",
            queue.duration.clone(),
        );
        registry.register(
            "jobs",
            "Unfinished and dead jobs in the queue, by kind and state",
            queue.depth.clone(),
        );
        registry.register(
            "queue_store_errors",
            "Queue operations that failed to reach PostgreSQL",
            queue.store_errors.clone(),
        );
        registry.register(
            "jobs_rescued",
            "Jobs taken back from workers whose lease expired",
            queue.rescued.clone(),
        );
        let leader = Family::<LeaseLabels, Gauge>::default();
        registry.register(
            "leader",
            "1 while this process holds the named leader lease",
            leader.clone(),
        );
        let pool_connections = Family::<PoolLabels, Gauge>::default();
        registry.register(
            "db_pool_connections",
            "Database pool connections by state",
            pool_connections.clone(),
        );
        let pool_max = Gauge::default();
        registry.register(
            "db_pool_max_connections",
            "Database pool size limit",
            pool_max.clone(),
        );
        Arc::new(Self {
            registry,
            queue,
            leader,
            pool_connections,
            pool_max,
        })
    }

    pub fn observe_pool(&self, pool: &PgPool) {
        let size = i64::from(pool.size());
        let idle = i64::try_from(pool.num_idle()).unwrap_or(i64::MAX);
        self.pool_connections
            .get_or_create(&PoolLabels { state: "idle" })
            .set(idle);
        self.pool_connections
            .get_or_create(&PoolLabels { state: "in_use" })
            .set(size - idle);
        self.pool_max
            .set(i64::from(pool.options().get_max_connections()));
    }

    /// The Prometheus text exposition of every instrument.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}
