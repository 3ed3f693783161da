//! `/healthz`, `/readyz` and `/metrics`, on every role.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use sqlx::PgPool;
use tower_http::trace::{DefaultMakeSpan, DefaultOnRequest, DefaultOnResponse, TraceLayer};
use tracing::Level;

use super::metrics::{KindStateLabels, Metrics};
use crate::queue;
use crate::sql;
use crate::store::migrations::{self, SchemaStatus};

/// How long a probe may wait on the database before answering "not ready".
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub struct OpsState {
    pub pool: PgPool,
    pub metrics: Arc<Metrics>,
}

pub fn router(state: OpsState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// One span per request (exported as a trace when OTLP is on); request logs stay at debug level.
pub fn with_request_spans(router: Router) -> Router {
    router.layer(
        TraceLayer::new_for_http()
            .make_span_with(DefaultMakeSpan::new().level(Level::INFO))
            .on_request(DefaultOnRequest::new().level(Level::DEBUG))
            .on_response(DefaultOnResponse::new().level(Level::DEBUG)),
    )
}

/// Alive: the process answers. Never touches the database, so a database outage does not make
/// Kubernetes restart healthy pods.
async fn healthz() -> impl IntoResponse {
    axum::Json(json!({ "status": "ok" }))
}

fn not_ready(reason: String) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(json!({ "status": "not_ready", "reason": reason })),
    )
        .into_response()
}

/// Ready: the database answers and holds exactly the migrations this build expects.
async fn readyz(State(state): State<OpsState>) -> Response {
    let check = async {
        sqlx::query_scalar::<_, i32>(sql!("schema/ping"))
            .fetch_one(&state.pool)
            .await
            .map_err(|e| format!("database unreachable: {e}"))?;
        migrations::status(&state.pool)
            .await
            .map_err(|e| format!("cannot read migrations: {e}"))
    };
    match tokio::time::timeout(PROBE_TIMEOUT, check).await {
        Err(_) => not_ready(format!("database did not answer within {PROBE_TIMEOUT:?}")),
        Ok(Err(reason)) => not_ready(reason),
        Ok(Ok(SchemaStatus::Pending(versions))) => not_ready(format!(
            "migrations not applied: {versions:?}; run `codex-k8s migrate`"
        )),
        Ok(Ok(SchemaStatus::Broken(reason))) => not_ready(reason),
        Ok(Ok(SchemaStatus::Current)) => axum::Json(json!({ "status": "ready" })).into_response(),
    }
}

async fn metrics(State(state): State<OpsState>) -> Response {
    match tokio::time::timeout(PROBE_TIMEOUT, queue::depth_by_kind_state(&state.pool)).await {
        Ok(Ok(rows)) => {
            state.metrics.queue.depth.clear();
            for (kind, job_state, count) in rows {
                state
                    .metrics
                    .queue
                    .depth
                    .get_or_create(&KindStateLabels {
                        kind,
                        state: job_state,
                    })
                    .set(count);
            }
        }
        // Stale depth is better than no metrics at all while the database is away.
        _ => state.metrics.queue.store_error("metrics_depth"),
    }
    state.metrics.observe_pool(&state.pool);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}
