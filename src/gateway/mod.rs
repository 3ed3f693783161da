//! The gateway role's HTTP surface: GitHub webhooks (and later staff login, the staff API, MCP and
//! the admin console). It stores what arrives and hands the work to other roles through the queue;
//! it never processes an event inside the request.

mod errors;
mod signature;
pub mod webhooks;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::post;
use sqlx::PgPool;

use crate::config::Secret;

pub use signature::{SignatureError, sign, verify};

/// GitHub sends at most 25 MiB per delivery.
pub const MAX_WEBHOOK_BYTES: usize = 25 * 1024 * 1024;

#[derive(Clone)]
pub struct GatewayState {
    pub pool: PgPool,
    pub webhook_secrets: Arc<Vec<Secret<String>>>,
}

pub fn router(state: GatewayState) -> Router {
    Router::new()
        .route("/api/v1/webhooks/github", post(webhooks::receive_github))
        .layer(DefaultBodyLimit::max(MAX_WEBHOOK_BYTES))
        .with_state(state)
}
