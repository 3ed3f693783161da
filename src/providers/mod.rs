//! Adapters of the repository-host port (`domain::provider`). GitHub first; GitLab would be a
//! sibling module implementing the same traits.

pub mod github;
