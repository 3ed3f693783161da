//! `POST /api/v1/webhooks/github` (SPEC §5): check headers and signature, store the delivery and, for
//! the events the product uses, enqueue `process_event`, all in one transaction, then answer.
//! Nothing is processed inside the request, and nothing is acknowledged before it is committed.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use super::GatewayState;
use super::errors::ApiError;
use super::signature::{self, SignatureError};
use crate::control::PROCESS_EVENT;
use crate::domain::errors::RepositoryError;
use crate::queue::{self, NewJob};
use crate::sql;
use crate::store::map_sqlx_error;

/// The events codex-k8s acts on; every other event is recorded and answered `ignored`.
pub const USED_EVENTS: [&str; 6] = [
    "issues",
    "pull_request",
    "pull_request_review",
    "issue_comment",
    "installation",
    "installation_repositories",
];

/// GitHub gives up on a delivery after 10 s; answer before that, with 503 if the database is slow.
const REQUEST_BUDGET: Duration = Duration::from_secs(8);

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
}

fn required_header<'h>(headers: &'h HeaderMap, name: &str) -> Result<&'h str, ApiError> {
    let value = headers
        .get(name)
        .ok_or_else(|| bad_request(format!("missing header {name}")))?;
    let value = value
        .to_str()
        .map_err(|_| bad_request(format!("header {name} is not visible ASCII")))?;
    if value.trim().is_empty() {
        return Err(bad_request(format!("header {name} is empty")));
    }
    Ok(value.trim())
}

/// The few payload fields stored in columns. Deserialising into this (rather than a `Value` tree)
/// still validates the whole body as JSON but builds nothing for the fields it skips.
#[derive(Deserialize)]
struct Envelope {
    action: Option<String>,
    repository: Option<RepositoryRef>,
    sender: Option<SenderRef>,
}

#[derive(Deserialize)]
struct RepositoryRef {
    id: Option<i64>,
    full_name: Option<String>,
}

#[derive(Deserialize)]
struct SenderRef {
    login: Option<String>,
}

/// A checked delivery: headers, the verified body as text, and its indexed fields.
struct Delivery<'b> {
    id: String,
    event: String,
    body: &'b str,
    envelope: Envelope,
}

fn parse<'b>(
    state: &GatewayState,
    headers: &HeaderMap,
    body: &'b [u8],
) -> Result<Delivery<'b>, ApiError> {
    let event = required_header(headers, "X-GitHub-Event")?.to_owned();
    let id = required_header(headers, "X-GitHub-Delivery")?.to_owned();
    if id.len() > 200 {
        return Err(bad_request(
            "X-GitHub-Delivery is longer than 200 characters",
        ));
    }
    let signature_header = required_header(headers, "X-Hub-Signature-256")?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !content_type
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
    {
        return Err(bad_request(
            "Content-Type must be application/json (set the webhook's content type to JSON)",
        ));
    }
    // Authenticate the exact bytes before reading any of them.
    signature::verify(&state.webhook_secrets, signature_header, body).map_err(|e| match e {
        SignatureError::Malformed => bad_request(e.to_string()),
        SignatureError::Mismatch => {
            ApiError::new(StatusCode::UNAUTHORIZED, "bad_signature", e.to_string())
        }
    })?;
    let text = std::str::from_utf8(body)
        .map_err(|e| bad_request(format!("body is not valid JSON: {e}")))?;
    if !text.trim_start().starts_with('{') {
        return Err(bad_request("body is not valid JSON: expected an object"));
    }
    let envelope: Envelope = serde_json::from_str(text)
        .map_err(|e| bad_request(format!("body is not valid JSON: {e}")))?;
    Ok(Delivery {
        id,
        event,
        body: text,
        envelope,
    })
}

/// What was stored and how to answer.
enum Stored {
    Accepted,
    Duplicate,
    Ignored(&'static str),
}

/// The provider name stored with every delivery this endpoint receives.
const PROVIDER: &str = "github";

/// Stores the delivery and, for used events, its `process_event` job in one statement: one round
/// trip, committed before the reply.
async fn store(state: &GatewayState, delivery: &Delivery<'_>) -> Result<Stored, RepositoryError> {
    let used = USED_EVENTS.contains(&delivery.event.as_str());
    let ignored_reason = match delivery.event.as_str() {
        "ping" => Some("ping"),
        _ if !used => Some("event_not_used"),
        _ => None,
    };
    let e = &delivery.envelope;
    let correlation = Uuid::parse_str(&delivery.id).unwrap_or_else(|_| Uuid::now_v7());
    let job = NewJob::new(json!({ "provider": PROVIDER, "delivery_id": delivery.id }))
        .unique_key(format!("webhook:{PROVIDER}:{}", delivery.id))
        .correlation_id(correlation);
    let query = sqlx::query_scalar(sql!("webhook_events/accept"))
        .bind(&delivery.id)
        .bind(&delivery.event)
        .bind(e.action.as_deref())
        .bind(e.repository.as_ref().and_then(|r| r.id))
        .bind(e.repository.as_ref().and_then(|r| r.full_name.as_deref()))
        .bind(e.sender.as_ref().and_then(|s| s.login.as_deref()))
        .bind(delivery.body)
        .bind(if ignored_reason.is_some() {
            "processed"
        } else {
            "received"
        })
        .bind(ignored_reason.map(|_| "ignored"))
        .bind(ignored_reason);
    let inserted: Option<i64> = queue::bind_job(query, &PROCESS_EVENT, &job)
        .fetch_optional(&state.pool)
        .await
        .map_err(map_sqlx_error)?;
    Ok(match (inserted, ignored_reason) {
        (None, _) => Stored::Duplicate,
        (Some(_), Some(reason)) => Stored::Ignored(reason),
        (Some(_), None) => Stored::Accepted,
    })
}

/// Stores with one retry when the store is unavailable: a pooled connection can be stale after a
/// database restart, and the statement is idempotent (a committed first try answers `duplicate`).
async fn store_with_retry(
    state: &GatewayState,
    delivery: &Delivery<'_>,
) -> Result<Stored, RepositoryError> {
    match store(state, delivery).await {
        Err(RepositoryError::Unavailable(why)) => {
            tracing::info!(error = %why, delivery = %delivery.id, "retrying a webhook store once");
            store(state, delivery).await
        }
        other => other,
    }
}

fn unavailable(e: &RepositoryError) -> ApiError {
    tracing::warn!(error = %e, "webhook not stored: database unavailable");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "the database is unavailable; redeliver later",
    )
}

pub async fn receive_github(
    State(state): State<GatewayState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let delivery = match parse(&state, &headers, &body) {
        Ok(d) => d,
        Err(e) => {
            tracing::info!(code = e.code, message = %e.message, "webhook refused");
            return e.into_response();
        }
    };
    let stored =
        match tokio::time::timeout(REQUEST_BUDGET, store_with_retry(&state, &delivery)).await {
            Err(_) => {
                return unavailable(&RepositoryError::Unavailable(format!(
                    "no answer within {REQUEST_BUDGET:?}"
                )))
                .into_response();
            }
            Ok(Err(e @ RepositoryError::Unavailable(_))) => return unavailable(&e).into_response(),
            Ok(Err(RepositoryError::InvalidInput(why))) => {
                return bad_request(format!("the payload cannot be stored: {why}")).into_response();
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, delivery = %delivery.id, "storing a webhook failed");
                return ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "storing the delivery failed",
                )
                .into_response();
            }
            Ok(Ok(stored)) => stored,
        };
    let (status, body) = match stored {
        Stored::Accepted => (
            StatusCode::ACCEPTED,
            json!({ "status": "accepted", "delivery_id": delivery.id }),
        ),
        Stored::Duplicate => (
            StatusCode::OK,
            json!({ "status": "duplicate", "delivery_id": delivery.id }),
        ),
        Stored::Ignored("ping") => (
            StatusCode::OK,
            json!({ "status": "pong", "delivery_id": delivery.id }),
        ),
        Stored::Ignored(reason) => (
            StatusCode::OK,
            json!({ "status": "ignored", "reason": reason, "delivery_id": delivery.id }),
        ),
    };
    tracing::info!(delivery = %delivery.id, event = %delivery.event, status = status.as_u16(), "webhook stored");
    (status, Json(body)).into_response()
}
