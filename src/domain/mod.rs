//! The pure core: validated identifiers, target rules (controllerId, attributes, addresses) and
//! the action state machine that decides what a device report does.
//!
//! Nothing here does I/O or reads the clock: time comes in as an argument. No tokio, sqlx, lapin
//! or axum. Everything is unit- and property-tested next to the code.

pub mod action;
pub mod auto_assignment;
pub mod ids;
pub mod maintenance;
pub mod names;
pub mod rollout;
pub mod rsql;
pub mod target;

/// An input that breaks a domain rule. The message is user-facing (REST error body, dead-letter
/// reason) and names the offending value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

impl Invalid {
    pub fn new(msg: impl Into<String>) -> Self {
        Self(msg.into())
    }
}
