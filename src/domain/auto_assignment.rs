//! Auto-assignments (rollouts.md §1.4, hawkBit master's `AutoAssignment`): a target filter query
//! and a distribution set; a matching target that never had an action of the set gets one.
//!
//! [`step`] is the whole lifecycle: given the status, the start time and one event (an
//! operator's operation or the clock) it returns the next status and whether the fleet must be
//! looked at again, or why the event is refused. [`assigns`] says when an auto-assignment
//! creates actions; the engine's work query is tested against it.

use super::action::ActionType;
use super::names::named_enum;

/// Longest `approvalDecidedBy` and approval remark hawkBit stores.
pub const MAX_DECIDED_BY: usize = 64;
pub const MAX_REMARK: usize = 255;

named_enum! {
    /// Lifecycle of an auto-assignment; REST shows the lower-case name.
    pub enum AutoAssignStatus {
        WaitingForApproval = "WAITING_FOR_APPROVAL",
        ApprovalDenied = "APPROVAL_DENIED",
        Ready = "READY",
        Paused = "PAUSED",
        Running = "RUNNING",
    }
}

/// What happens to an auto-assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Approve,
    Deny,
    /// Start now, before `startAt` if there is one.
    Start,
    Pause,
    Resume,
    /// The worker looks at it at `now`: a READY one whose start time has come starts.
    Tick,
}

/// The status after an event, and whether the fleet must be gone through (the targets that
/// matched while it was not assigning).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub next: AutoAssignStatus,
    pub full_pass: bool,
}

/// An event the current status does not allow (hawkBit's 409 `auto.assignment.illegalState`),
/// with hawkBit's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct IllegalState(pub &'static str);

/// The status a new auto-assignment starts in: waiting for approval when the tenant's
/// `auto.assignment.approval.enabled` is on, else READY.
pub fn initial(approval_enabled: bool) -> AutoAssignStatus {
    if approval_enabled {
        AutoAssignStatus::WaitingForApproval
    } else {
        AutoAssignStatus::Ready
    }
}

/// The start time has come (none means at once).
fn due(start_at: Option<i64>, now: i64) -> bool {
    start_at.is_none_or(|t| t <= now)
}

/// Decide one event.
pub fn step(
    status: AutoAssignStatus,
    start_at: Option<i64>,
    event: Event,
    now: i64,
) -> Result<Transition, IllegalState> {
    use AutoAssignStatus::*;
    let to = |next, full_pass| Ok(Transition { next, full_pass });
    match (event, status) {
        (Event::Approve, WaitingForApproval) => to(Ready, false),
        (Event::Deny, WaitingForApproval) => to(ApprovalDenied, false),
        (Event::Approve | Event::Deny, _) => {
            Err(IllegalState("Auto assignment not waiting for approval"))
        }
        (Event::Start, Ready) => to(Running, true),
        (Event::Start, _) => Err(IllegalState("Auto assignment not ready")),
        (Event::Pause, Running) => to(Paused, false),
        (Event::Pause, _) => Err(IllegalState("Auto assignment not running")),
        (Event::Resume, Paused) => to(Running, true),
        (Event::Resume, _) => Err(IllegalState("Auto assignment not paused")),
        (Event::Tick, Ready) if due(start_at, now) => to(Running, true),
        (Event::Tick, s) => to(s, false),
    }
}

/// Whether it creates actions at `now`: RUNNING, or READY with its start time come (hawkBit's
/// "active" auto-assignments; the worker turns such a READY one RUNNING on its next tick).
pub fn assigns(status: AutoAssignStatus, start_at: Option<i64>, now: i64) -> bool {
    match status {
        AutoAssignStatus::Running => true,
        AutoAssignStatus::Ready => due(start_at, now),
        _ => false,
    }
}

/// The action types an auto-assignment may use (hawkBit: FORCED, SOFT, DOWNLOAD_ONLY; a timed
/// forced install needs a time no auto-assignment knows).
pub fn allowed_action_type(t: ActionType) -> bool {
    t != ActionType::TimeForced
}

#[cfg(test)]
mod tests {
    use super::AutoAssignStatus::*;
    use super::*;
    use proptest::prelude::*;

    const NOW: i64 = 1_000_000;

    fn ok(status: AutoAssignStatus, event: Event) -> Transition {
        step(status, None, event, NOW).expect("allowed")
    }

    #[test]
    fn approval_decides_a_waiting_one() {
        assert_eq!(ok(WaitingForApproval, Event::Approve).next, Ready);
        assert_eq!(ok(WaitingForApproval, Event::Deny).next, ApprovalDenied);
        for s in [ApprovalDenied, Ready, Paused, Running] {
            let e = step(s, None, Event::Approve, NOW).unwrap_err();
            assert_eq!(e.0, "Auto assignment not waiting for approval");
            assert!(step(s, None, Event::Deny, NOW).is_err());
        }
    }

    #[test]
    fn start_pause_resume_follow_hawkbit() {
        assert_eq!(
            ok(Ready, Event::Start),
            Transition {
                next: Running,
                full_pass: true
            }
        );
        assert_eq!(
            ok(Running, Event::Pause),
            Transition {
                next: Paused,
                full_pass: false
            }
        );
        assert_eq!(
            ok(Paused, Event::Resume),
            Transition {
                next: Running,
                full_pass: true
            }
        );
        assert_eq!(
            step(Running, None, Event::Start, NOW).unwrap_err().0,
            "Auto assignment not ready"
        );
        assert_eq!(
            step(Paused, None, Event::Pause, NOW).unwrap_err().0,
            "Auto assignment not running"
        );
        assert_eq!(
            step(Running, None, Event::Resume, NOW).unwrap_err().0,
            "Auto assignment not paused"
        );
    }

    #[test]
    fn a_ready_one_starts_when_its_time_comes() {
        let later = Some(NOW + 1);
        assert_eq!(step(Ready, later, Event::Tick, NOW).unwrap().next, Ready);
        assert_eq!(
            step(Ready, later, Event::Tick, NOW + 1).unwrap().next,
            Running
        );
        assert_eq!(step(Ready, None, Event::Tick, NOW).unwrap().next, Running);
        // Start does not wait for startAt.
        assert_eq!(step(Ready, later, Event::Start, NOW).unwrap().next, Running);
    }

    #[test]
    fn initial_status_follows_the_approval_setting() {
        assert_eq!(initial(true), WaitingForApproval);
        assert_eq!(initial(false), Ready);
    }

    fn status() -> impl Strategy<Value = AutoAssignStatus> {
        proptest::sample::select(AutoAssignStatus::ALL.to_vec())
    }

    fn event() -> impl Strategy<Value = Event> {
        proptest::sample::select(vec![
            Event::Approve,
            Event::Deny,
            Event::Start,
            Event::Pause,
            Event::Resume,
            Event::Tick,
        ])
    }

    proptest! {
        /// Over any sequence of events and times: a refused event changes nothing; only
        /// approval leaves WAITING_FOR_APPROVAL and nothing leaves APPROVAL_DENIED; a denied
        /// or waiting one never assigns; a tick is idempotent; every transition into
        /// assigning goes through the fleet once; a tick never takes a status to one that
        /// assigns unless `assigns` already said it does.
        #[test]
        fn lifecycle_invariants(
            start in status(),
            start_at in proptest::option::of(0i64..2_000),
            steps in proptest::collection::vec((event(), 0i64..2_000), 0..40),
        ) {
            let mut s = start;
            for (e, now) in steps {
                let before = s;
                match step(s, start_at, e, now) {
                    Err(_) => {}
                    Ok(t) => {
                        if before == ApprovalDenied {
                            prop_assert_eq!(t.next, ApprovalDenied);
                        }
                        if before == WaitingForApproval && t.next != before {
                            prop_assert!(matches!(e, Event::Approve | Event::Deny));
                        }
                        let started = t.next == Running && before != Running;
                        prop_assert_eq!(started, t.full_pass);
                        if e == Event::Tick {
                            prop_assert_eq!(step(t.next, start_at, e, now).unwrap().next, t.next);
                            if t.next != before {
                                prop_assert!(assigns(before, start_at, now));
                            }
                        }
                        s = t.next;
                    }
                }
                if matches!(s, ApprovalDenied | WaitingForApproval | Paused) {
                    prop_assert!(!assigns(s, start_at, now));
                }
            }
        }
    }
}
