//! One test per transition, the evaluation cases of hawkBit's tests, and property tests over
//! random event sequences against a model of the effects.

use super::*;
use crate::domain::action::ActionType;
use crate::domain::ids::{DsId, RolloutId, TenantId};
use crate::domain::rollout::spec::{Conditions, ErrorCondition, ErrorKind, Expr, SuccessAction};
use crate::domain::rollout::state::{Audit, Counts, Template};

pub(super) const NOW: i64 = 1_000_000;

pub(super) fn rollout(state: RolloutState) -> Rollout {
    Rollout {
        id: RolloutId(7),
        tenant: TenantId(1),
        name: "r".into(),
        description: None,
        target_filter: "name==*".into(),
        retry_of: None,
        ds: DsId(1),
        ds_name: "fw".into(),
        ds_version: "1".into(),
        ds_type: 1,
        state,
        action_type: ActionType::Forced,
        forced_time: 0,
        start_at: None,
        weight: 1000,
        total_targets: 0,
        groups_created: 0,
        deleted: false,
        dynamic: None,
        conditions: Conditions::defaults(),
        confirmation_required: false,
        creator_may_approve: false,
        approval_decided_by: None,
        approval_remark: None,
        audit: Audit::default(),
    }
}

pub(super) fn group(id: i64, parent: Option<i64>, state: GroupState, total: i64) -> Group {
    let mut conditions = Conditions::defaults();
    conditions.success_action.expression = None;
    Group {
        id: GroupId(id),
        rollout: RolloutId(7),
        parent: parent.map(GroupId),
        name: format!("group-{id}"),
        description: None,
        state,
        dynamic: false,
        conditions,
        total_targets: total,
        target_filter: String::new(),
        target_percentage: 100.0,
        confirmation_required: false,
        planned_size: None,
        counts: Counts {
            scheduled: if state == GroupState::Scheduled {
                total
            } else {
                0
            },
            running: if state == GroupState::Running {
                total
            } else {
                0
            },
            ..Counts::default()
        },
        audit: Audit::default(),
    }
}

pub(super) fn chain(n: i64, size: i64) -> Vec<Group> {
    (1..=n)
        .map(|i| {
            let state = if i == 1 {
                GroupState::Running
            } else {
                GroupState::Scheduled
            };
            group(i, (i > 1).then(|| i - 1), state, size)
        })
        .collect()
}

pub(super) fn facts(groups: &[Group]) -> Facts<'_> {
    Facts {
        groups,
        approval_enabled: false,
        enrol_idle_ms: 60_000,
    }
}

fn run(r: &Rollout, groups: &[Group], e: Event) -> Transition {
    step(r, &facts(groups), e, NOW).unwrap()
}

pub(super) fn running() -> RolloutState {
    RolloutState::Running { idle_since: None }
}

fn finish(g: &mut Group, n: i64) {
    g.counts.running -= n;
    g.counts.finished += n;
}

/// Two groups of five; the first, running, succeeds at 100 % and counts `counts`.
fn all_of_five(counts: Counts) -> Vec<Group> {
    let mut gs = chain(2, 5);
    gs[0].conditions.success.threshold = Expr::new("100");
    gs[0].counts = counts;
    gs
}

fn ids(v: &[i64]) -> Vec<GroupId> {
    v.iter().map(|i| GroupId(*i)).collect()
}

fn starts(t: &Transition) -> Vec<GroupId> {
    t.commands
        .iter()
        .filter_map(|c| match c {
            Command::Activate {
                group,
                lane: Lane::Start,
            } => Some(*group),
            _ => None,
        })
        .collect()
}

// ---- operator operations ------------------------------------------------------------------

#[test]
fn operations_allowed_only_from_their_states() {
    use Operation::*;
    use RolloutState as S;
    let gs = chain(2, 2);
    let op =
        |s: RolloutState, o: Operation| step(&rollout(s), &facts(&gs), Event::Operator(o), NOW);
    let next = |s, o| op(s, o).map(|t| t.next);
    let ready = S::Ready { start_at: None };
    assert_eq!(next(ready, Start), Ok(S::Starting));
    assert!(op(S::Creating, Start).is_err());
    assert!(op(running(), Start).is_err());
    assert_eq!(next(running(), Pause), Ok(S::Paused));
    assert!(op(S::Paused, Pause).is_err());
    assert_eq!(next(S::Paused, Resume), Ok(running()));
    assert!(op(ready, Resume).is_err());
    for s in [
        S::Creating,
        ready,
        S::WaitingForApproval,
        S::ApprovalDenied,
        S::Starting,
        running(),
        S::Paused,
    ] {
        assert_eq!(next(s, Stop), Ok(S::Stopping));
    }
    for s in [
        S::Stopping,
        S::Stopped,
        S::Finished,
        S::Deleting,
        S::Deleted,
    ] {
        assert!(op(s, Stop).is_err());
    }
    for s in [S::Creating, ready, S::Stopped, S::Finished, running()] {
        assert_eq!(next(s, Delete), Ok(S::Deleting));
    }
    assert_eq!(next(S::Deleting, Delete), Ok(S::Deleting));
    assert_eq!(next(S::Deleted, Delete), Ok(S::Deleted));
    assert_eq!(next(S::WaitingForApproval, Approve), Ok(ready));
    assert_eq!(next(S::WaitingForApproval, Deny), Ok(S::ApprovalDenied));
    assert!(op(ready, Approve).is_err());
    assert!(op(S::ApprovalDenied, Start).is_err());
    assert_eq!(next(running(), TriggerNextGroup), Ok(running()));
    assert!(op(S::Paused, TriggerNextGroup).is_err());
    assert!(matches!(op(S::Deleted, Update), Err(Refusal::ReadOnly(_))));
    assert_eq!(next(S::Finished, Update), Ok(S::Finished));
    assert_eq!(next(S::Finished, Retry), Ok(S::Finished));
    assert!(op(S::Stopped, Retry).is_err());
}

#[test]
fn approve_keeps_the_start_time_and_records_the_decision() {
    let mut r = rollout(RolloutState::WaitingForApproval);
    r.start_at = Some(NOW + 5);
    let t = run(&r, &[], Event::Operator(Operation::Approve));
    assert_eq!(
        t.next,
        RolloutState::Ready {
            start_at: Some(NOW + 5)
        }
    );
    assert_eq!(
        t.commands,
        vec![Command::RecordDecision, Command::WithdrawApproval]
    );
    let t = run(&r, &[], Event::Operator(Operation::Stop));
    assert_eq!(t.commands, vec![Command::WithdrawApproval]);
}

#[test]
fn resume_after_error_starts_the_group_after_the_failed_one() {
    let mut gs = chain(3, 2);
    gs[0].state = GroupState::Error;
    assert_eq!(resume_starts(&gs, false), ids(&[2]));
    let t = run(
        &rollout(RolloutState::Paused),
        &gs,
        Event::Operator(Operation::Resume),
    );
    assert_eq!(starts(&t), ids(&[2]));
    gs[0].state = GroupState::Running;
    assert!(resume_starts(&gs, false).is_empty());
}

#[test]
fn trigger_next_walks_the_chain() {
    let mut gs = chain(3, 5);
    assert_eq!(trigger_next(&gs), Some(ids(&[2])));
    gs[1].state = GroupState::Running;
    assert_eq!(trigger_next(&gs), Some(ids(&[3])));
    gs[2].state = GroupState::Running;
    assert_eq!(trigger_next(&gs), None);
    let e = step(
        &rollout(running()),
        &facts(&gs),
        Event::Operator(Operation::TriggerNextGroup),
        NOW,
    );
    assert!(matches!(e, Err(Refusal::IllegalState(m)) if m.contains("no") || m.contains("any")));
}

// ---- executor -----------------------------------------------------------------------------

#[test]
fn creating_fills_group_by_group_then_waits_for_approval_or_is_ready() {
    let mut gs = vec![
        group(1, None, GroupState::Creating, 0),
        group(2, Some(1), GroupState::Creating, 0),
    ];
    let r = rollout(RolloutState::Creating);
    let t = run(&r, &gs, Event::Tick);
    assert_eq!(t.commands, vec![Command::Fill { group: GroupId(1) }]);
    let t = run(
        &r,
        &gs,
        Event::Filled {
            group: GroupId(1),
            members: 3,
            complete: true,
        },
    );
    assert_eq!(
        t.commands,
        vec![Command::MarkFilled {
            group: GroupId(1),
            members: 3
        }]
    );
    let partial = Event::Filled {
        group: GroupId(1),
        members: 3,
        complete: false,
    };
    assert!(run(&r, &gs, partial).commands.is_empty());
    gs[0].state = GroupState::Ready;
    gs[1].state = GroupState::Ready;
    let t = run(&r, &gs, Event::Tick);
    assert_eq!(t.next, RolloutState::Ready { start_at: None });
    assert_eq!(t.commands, vec![Command::CountTargets]);
    let f = Facts {
        approval_enabled: true,
        ..facts(&gs)
    };
    let t = step(&r, &f, Event::Tick, NOW).unwrap();
    assert_eq!(t.next, RolloutState::WaitingForApproval);
    assert!(t.commands.contains(&Command::NotifyApproval));
    // The creator may approve: no approval needed.
    let mut mine = r.clone();
    mine.creator_may_approve = true;
    assert!(matches!(
        step(&mine, &f, Event::Tick, NOW).unwrap().next,
        RolloutState::Ready { .. }
    ));
}

#[test]
fn a_dynamic_rollout_gets_its_dynamic_group_when_filled() {
    let gs = vec![group(1, None, GroupState::Ready, 2)];
    let mut r = rollout(RolloutState::Creating);
    r.dynamic = Some(Template {
        suffix: String::new(),
        count: None,
    });
    let t = run(&r, &gs, Event::Tick);
    assert!(t.commands.contains(&Command::AppendDynamicGroup {
        state: GroupState::Ready
    }));
}

#[test]
fn ready_starts_when_start_at_is_due() {
    let mut r = rollout(RolloutState::Ready {
        start_at: Some(NOW + 1),
    });
    r.start_at = Some(NOW + 1);
    assert_eq!(run(&r, &[], Event::Tick).next, r.state);
    assert!(!has_work(&r, &facts(&[]), NOW));
    assert!(has_work(&r, &facts(&[]), NOW + 1));
    let t = step(&r, &facts(&[]), Event::Tick, NOW + 1).unwrap();
    assert_eq!(t.next, RolloutState::Starting);
}

#[test]
fn starting_schedules_every_static_group_then_runs_the_first() {
    let mut gs = vec![
        group(1, None, GroupState::Ready, 2),
        group(2, Some(1), GroupState::Ready, 2),
    ];
    gs[1].dynamic = true;
    let r = rollout(RolloutState::Starting);
    let t = run(&r, &gs, Event::Tick);
    assert_eq!(t.commands, vec![Command::Schedule { group: GroupId(1) }]);
    let done = Event::Scheduled {
        group: GroupId(1),
        complete: true,
    };
    assert_eq!(
        run(&r, &gs, done).commands,
        vec![Command::SetGroup {
            groups: ids(&[1]),
            state: GroupState::Scheduled
        }]
    );
    gs[0].state = GroupState::Scheduled;
    let t = run(&r, &gs, Event::Tick);
    assert_eq!(t.next, running());
    assert_eq!(
        t.commands,
        vec![
            Command::SetGroup {
                groups: ids(&[2]),
                state: GroupState::Scheduled
            },
            Command::SetGroup {
                groups: ids(&[1]),
                state: GroupState::Running
            },
        ]
    );
}

#[test]
fn running_and_paused_activate_what_is_still_scheduled() {
    let mut gs = chain(2, 4);
    gs[0].counts = Counts {
        scheduled: 3,
        running: 1,
        ..Counts::default()
    };
    for state in [running(), RolloutState::Paused] {
        let t = run(&rollout(state), &gs, Event::Tick);
        assert_eq!(
            t.commands,
            vec![Command::Activate {
                group: GroupId(1),
                lane: Lane::Chunk
            }]
        );
        assert!(has_work(&rollout(state), &facts(&gs), NOW));
    }
    gs[0].counts = Counts {
        running: 4,
        ..Counts::default()
    };
    assert!(!has_work(&rollout(RolloutState::Paused), &facts(&gs), NOW));
}

#[test]
fn dynamic_enrolment_appends_enrols_and_throttles() {
    let mut r = rollout(running());
    r.dynamic = Some(Template {
        suffix: String::new(),
        count: Some(3),
    });
    let mut gs = vec![
        group(1, None, GroupState::Finished, 2),
        group(2, Some(1), GroupState::Running, 1),
    ];
    gs[1].dynamic = true;
    gs[1].target_percentage = 3.0;
    gs[1].counts = Counts {
        running: 1,
        ..Counts::default()
    };
    let t = run(&r, &gs, Event::Tick);
    assert_eq!(
        t.commands,
        vec![Command::Enrol {
            group: GroupId(2),
            want: 2
        }]
    );
    let t = run(
        &r,
        &gs,
        Event::Enrolled {
            group: GroupId(2),
            count: 2,
        },
    );
    assert_eq!(
        t.commands.first(),
        Some(&Command::Activate {
            group: GroupId(2),
            lane: Lane::Members(2)
        })
    );
    let t = run(
        &r,
        &gs,
        Event::Enrolled {
            group: GroupId(2),
            count: 0,
        },
    );
    assert_eq!(
        t.next,
        RolloutState::Running {
            idle_since: Some(NOW)
        }
    );
    // Throttled: no enrolment, a wake-up instead, and nothing else to do is no progress.
    r.state = t.next;
    let t = step(&r, &facts(&gs), Event::Tick, NOW + 10).unwrap();
    assert_eq!(t.commands, vec![Command::WakeAt(NOW + 60_000)]);
    assert!(!t.is_progress(r.state));
    // A full dynamic group gets a successor.
    gs[1].total_targets = 3;
    let t = step(&r, &facts(&gs), Event::Tick, NOW + 60_000).unwrap();
    assert_eq!(
        t.commands,
        vec![Command::AppendDynamicGroup {
            state: GroupState::Scheduled
        }]
    );
}

#[test]
fn stopping_and_deleting_cancel_until_done() {
    for (state, force, done) in [
        (RolloutState::Stopping, false, RolloutState::Stopped),
        (RolloutState::Deleting, true, RolloutState::Deleted),
    ] {
        let r = rollout(state);
        assert_eq!(
            run(&r, &[], Event::Tick).commands,
            vec![Command::CancelOpen { force }]
        );
        assert_eq!(run(&r, &[], Event::Cancelled { more: true }).next, state);
        assert_eq!(run(&r, &[], Event::Cancelled { more: false }).next, done);
    }
    let t = run(&rollout(RolloutState::Deleting), &[], Event::NeverStarted);
    assert_eq!(
        (t.next, t.commands),
        (RolloutState::Deleted, vec![Command::HardDelete])
    );
    assert_eq!(
        run(&rollout(RolloutState::Stopping), &[], Event::NeverStarted).next,
        RolloutState::Stopping
    );
}

// ---- evaluation (counter changes) ---------------------------------------------------------

#[test]
fn success_threshold_starts_the_next_group_once() {
    let mut gs = chain(5, 2);
    finish(&mut gs[0], 1); // S04: 1 of 2 finished with s50
    let r = rollout(running());
    let t = run(&r, &gs, Event::CountersChanged);
    assert_eq!(starts(&t), ids(&[2]));
    assert_eq!(t.next, running());
    // Applied: group 2 RUNNING; evaluating again starts nothing new.
    gs[1].state = GroupState::Running;
    gs[1].counts = Counts {
        running: 2,
        ..Counts::default()
    };
    assert!(run(&r, &gs, Event::CountersChanged).commands.is_empty());
}

#[test]
fn error_threshold_is_an_emergency_shutdown() {
    let mut gs = chain(5, 2);
    gs[0].counts = Counts {
        error: 2,
        ..Counts::default()
    }; // K01
    let t = run(&rollout(running()), &gs, Event::CountersChanged);
    assert_eq!(t.next, RolloutState::Paused);
    assert_eq!(
        t.commands,
        vec![Command::SetGroup {
            groups: ids(&[1]),
            state: GroupState::Error
        }]
    );
}

#[test]
fn complete_group_runs_success_action_below_threshold() {
    // K04: s100 PAUSE, 4 FINISHED + 1 CANCELED → group FINISHED, rollout PAUSED.
    let mut gs = all_of_five(Counts {
        finished: 4,
        canceled: 1,
        ..Counts::default()
    });
    gs[0].conditions.success_action.action = SuccessAction::Pause;
    gs[0].conditions.error = Some(ErrorCondition {
        kind: ErrorKind::Threshold,
        threshold: Expr::new("10"),
    });
    let d = evaluate(&gs, false, false);
    assert_eq!(d.group_state, vec![(GroupId(1), GroupState::Finished)]);
    assert!(d.pause && d.start.is_empty());
}

#[test]
fn last_group_completing_finishes_the_rollout() {
    let mut gs = chain(2, 2);
    gs[0].state = GroupState::Finished;
    gs[0].counts = Counts {
        finished: 2,
        ..Counts::default()
    };
    gs[1].state = GroupState::Running;
    gs[1].counts = Counts {
        finished: 1,
        error: 1,
        ..Counts::default()
    };
    let t = run(&rollout(running()), &gs, Event::CountersChanged);
    assert_eq!(t.next, RolloutState::Finished);
}

#[test]
fn deleted_targets_shrink_the_group() {
    // K07: s100, one action deleted, 4 finished → 4/4 complete.
    let gs = all_of_five(Counts {
        finished: 4,
        ..Counts::default()
    });
    let d = evaluate(&gs, false, false);
    assert_eq!(d.shrink, vec![(GroupId(1), 4)]);
    assert_eq!(d.start, ids(&[2]));
    assert_eq!(d.group_state, vec![(GroupId(1), GroupState::Finished)]);
}

#[test]
fn download_only_counts_downloaded() {
    let gs = all_of_five(Counts {
        downloaded: 5,
        ..Counts::default()
    });
    let d = evaluate(&gs, false, true);
    assert_eq!(d.start, ids(&[2]));
    assert_eq!(d.group_state, vec![(GroupId(1), GroupState::Finished)]);
    // Not download-only: DOWNLOADED keeps the group open and is no success.
    let d = evaluate(&gs, false, false);
    assert!(d.start.is_empty() && d.group_state.is_empty());
}

#[test]
fn empty_groups_complete_in_the_evaluation_that_starts_them() {
    let mut gs = chain(3, 2);
    gs[1].total_targets = 0;
    gs[1].counts = Counts::default();
    finish(&mut gs[0], 2);
    let d = evaluate(&gs, false, false);
    assert_eq!(d.start, ids(&[2, 3]));
    assert_eq!(
        d.group_state,
        vec![
            (GroupId(1), GroupState::Finished),
            (GroupId(2), GroupState::Finished)
        ]
    );
}

#[test]
fn dynamic_last_group_never_completes_and_uses_planned_size() {
    let mut gs = chain(2, 3);
    gs[0].state = GroupState::Finished;
    gs[1].state = GroupState::Running;
    gs[1].dynamic = true;
    gs[1].target_percentage = 3.0;
    gs[1].conditions.success.threshold = Expr::new("60");
    gs[1].counts = Counts {
        finished: 2,
        ..Counts::default()
    };
    let d = evaluate(&gs, true, false);
    assert!(d.group_state.is_empty() && !d.finish, "{d:?}");
}

#[test]
fn counter_changes_outside_running_change_nothing() {
    let mut gs = chain(2, 2);
    finish(&mut gs[0], 2);
    for s in [
        RolloutState::Paused,
        RolloutState::Stopping,
        RolloutState::Finished,
    ] {
        assert_eq!(
            run(&rollout(s), &gs, Event::CountersChanged),
            Transition {
                next: s,
                commands: Vec::new()
            }
        );
    }
}
