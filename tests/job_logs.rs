//! A job's log lines are JSON and carry its correlation id (the product's own log layer, captured).

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use codex_k8s::config::LogFormat;
use codex_k8s::queue::{self, JobError, JobKind, JobState, NewJob, Registry, Wakeups, Worker};
use serde_json::{Value, json};
use support::{TestDb, job_in_state, worker_config};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::layer::SubscriberExt;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn job_log_lines_carry_the_correlation_id() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new("info"))
        .with(codex_k8s::telemetry::log_layer(
            LogFormat::Json,
            move || writer.clone(),
        ));
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let db = TestDb::migrated().await;
    const LOUD: JobKind = JobKind::new("test.loud").max_attempts(1);
    let correlation = uuid::Uuid::now_v7();
    let id = queue::enqueue(
        &db.pool,
        &LOUD,
        NewJob::new(json!({})).correlation_id(correlation),
    )
    .await
    .unwrap()
    .unwrap();
    let mut registry = Registry::new();
    registry.register(LOUD, |_| async {
        tracing::info!("inside the handler");
        Err(JobError::permanent("gave up"))
    });
    let stop = CancellationToken::new();
    let worker = tokio::spawn(
        Worker::new(
            db.pool.clone(),
            registry,
            worker_config("logs"),
            Default::default(),
            &Wakeups::new(),
        )
        .run(stop.clone()),
    );
    job_in_state(&db.pool, id, JobState::Dead, Duration::from_secs(10)).await;
    stop.cancel();
    worker.await.unwrap();

    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("every line is JSON"))
        .collect();
    let of_job: Vec<&Value> = lines
        .iter()
        .filter(|l| l["span"]["job_id"] == json!(id))
        .collect();
    let messages: Vec<&str> = of_job
        .iter()
        .filter_map(|l| l["message"].as_str())
        .collect();
    assert!(messages.contains(&"inside the handler"), "{text}");
    assert!(
        messages.contains(&"job failed for good; it is now dead"),
        "{text}"
    );
    for line in of_job {
        assert_eq!(
            line["span"]["correlation_id"],
            json!(correlation.to_string())
        );
        assert_eq!(line["span"]["kind"], json!("test.loud"));
    }
}
