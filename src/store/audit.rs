//! The audit trail (`flow_events`): append-only, written in the same transaction as the change it
//! describes. Payloads must never carry secrets.

use serde_json::Value;
use uuid::Uuid;

use super::map_sqlx_error;
use crate::domain::errors::RepositoryError;
use crate::sql;

/// Who caused an audited event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    System,
    Agent(String),
    Human(String),
}

impl Actor {
    fn parts(&self) -> (&'static str, Option<&str>) {
        match self {
            Self::System => ("system", None),
            Self::Agent(id) => ("agent", Some(id)),
            Self::Human(id) => ("human", Some(id)),
        }
    }
}

/// One audited event.
#[derive(Debug, Clone)]
pub struct FlowEvent<'a> {
    pub correlation_id: &'a str,
    pub run_id: Option<Uuid>,
    pub actor: Actor,
    /// Dotted, e.g. `webhook.ignored`, `run.created`, `k8s.job.created`.
    pub event_type: &'a str,
    pub payload: Value,
}

pub async fn append(
    conn: &mut sqlx::PgConnection,
    event: FlowEvent<'_>,
) -> Result<(), RepositoryError> {
    let (actor_type, actor_id) = event.actor.parts();
    sqlx::query(sql!("flow_events/append"))
        .bind(event.correlation_id)
        .bind(event.run_id)
        .bind(actor_type)
        .bind(actor_id)
        .bind(event.event_type)
        .bind(&event.payload)
        .execute(conn)
        .await
        .map_err(map_sqlx_error)?;
    Ok(())
}

/// Appends an event the system caused on its own (no person, no agent).
pub async fn append_system(
    conn: &mut sqlx::PgConnection,
    correlation_id: &str,
    run_id: Option<Uuid>,
    event_type: &str,
    payload: Value,
) -> Result<(), RepositoryError> {
    let event = FlowEvent {
        correlation_id,
        run_id,
        actor: Actor::System,
        event_type,
        payload,
    };
    append(conn, event).await
}

/// Appends `events` in one statement, in order.
pub async fn append_many(
    conn: &mut sqlx::PgConnection,
    events: &[FlowEvent<'_>],
) -> Result<(), RepositoryError> {
    if events.is_empty() {
        return Ok(());
    }
    let n = events.len();
    let (mut correlations, mut runs, mut actor_types, mut actor_ids, mut types, mut payloads) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for event in events {
        let (actor_type, actor_id) = event.actor.parts();
        correlations.push(event.correlation_id);
        runs.push(event.run_id);
        actor_types.push(actor_type);
        actor_ids.push(actor_id);
        types.push(event.event_type);
        payloads.push(&event.payload);
    }
    sqlx::query(sql!("flow_events/append_many"))
        .bind(correlations)
        .bind(runs)
        .bind(actor_types)
        .bind(actor_ids)
        .bind(types)
        .bind(payloads)
        .execute(conn)
        .await
        .map_err(map_sqlx_error)?;
    Ok(())
}
