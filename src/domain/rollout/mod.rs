//! Rollouts and their deployment groups (rollouts.md §2–§6), pure:
//!
//! * [`state`] — the typed states ([`RolloutState`] with its data, [`GroupState`]), the
//!   [`Rollout`] and [`Group`] entities and their action counters;
//! * [`spec`] — success/error conditions and actions, parsed once;
//! * [`plan`] — validation and group sizing of a new (or retry) rollout;
//! * [`machine`] — [`machine::step`], every transition, returning the commands that carry it
//!   out; the engine is its one interpreter.

pub mod machine;
pub mod plan;
pub mod spec;
pub mod state;

pub use machine::{Command, Event, Facts, Lane, Operation, Transition, step};
pub use spec::{Conditions, ErrorKind, SuccessAction};
pub use state::{
    Counts, Group, GroupState, GroupStatus, Progress, Rollout, RolloutState, RolloutStatus,
    WorkRule,
};

/// Why the machine or the plan refuses: `IllegalState` → 400 rollout state, `ReadOnly` → 403,
/// `Constraint` → 400, `NotReadable` → 400 not readable, `Quota` → 429 (§9.1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{0}")]
    IllegalState(String),
    #[error("{0}")]
    ReadOnly(String),
    #[error("{0}")]
    Constraint(String),
    #[error("{0}")]
    NotReadable(String),
    #[error("{0}")]
    Quota(String),
}
