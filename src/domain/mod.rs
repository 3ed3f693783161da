//! The domain: entities, state machines, policies and the ports (traits) adapters implement.
//!
//! Plain Rust only. This module must never import sqlx, kube, octocrab, axum or any other adapter
//! crate; adapters depend on it, never the other way round.

pub mod errors;
pub mod labels;
pub mod policy;
pub mod provider;
pub mod runs;
pub mod runtime;
