//! The rollout state machine (rollouts.md §2–§6): one [`step`] for every transition — operator
//! operations, the executor's progress, counter changes from status reports and timers. It
//! decides; it performs nothing. A [`Transition`] names the next state and the [`Command`]s
//! that carry it out, which the engine (its one interpreter) turns into store calls and outbox
//! rows in the same transaction, feeding the outcome of a unit of work back in as an [`Event`].

use super::Refusal;
use super::state::{Group, GroupState, Rollout, RolloutState, RolloutStatus, WorkRule};
use crate::domain::ids::GroupId;

/// An operator request on a rollout (§4.5, §5, §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Start,
    Pause,
    Resume,
    Stop,
    Delete,
    Approve,
    Deny,
    TriggerNextGroup,
    /// Name/description update.
    Update,
    /// A retry rollout over the failed targets of this one (§3.8).
    Retry,
}

impl Operation {
    pub const ALL: [Operation; 10] = [
        Self::Start,
        Self::Pause,
        Self::Resume,
        Self::Stop,
        Self::Delete,
        Self::Approve,
        Self::Deny,
        Self::TriggerNextGroup,
        Self::Update,
        Self::Retry,
    ];
}

/// Where an activation's deployment messages are rendered, and so how many it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// The first chunk of a group that is starting (often inside the report batch whose report
    /// completed its parent: the cascade): rendered in the transaction, sent by the publisher's
    /// fast lane right after the commit.
    Start,
    /// The executor's next chunk of a running group, rendered by the publisher's rounds.
    Chunk,
    /// This many new members of a running dynamic group, rendered in the transaction.
    Members(i64),
}

/// What happens to a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Operator(Operation),
    /// The executor's (and the timers') turn: do the next unit of work, if any — fill, schedule,
    /// activate, enrol, evaluate, stop, delete; start a rollout whose `startAt` is due.
    Tick,
    /// A fill chunk added members; `complete`: the group has all it will get.
    Filled {
        group: GroupId,
        members: i64,
        complete: bool,
    },
    /// A schedule chunk created actions; `complete`: every member of the group has one.
    Scheduled {
        group: GroupId,
        complete: bool,
    },
    /// Dynamic enrolment added `count` targets to the group.
    Enrolled {
        group: GroupId,
        count: i64,
    },
    /// A dynamic group was appended.
    GroupAppended,
    /// A stop or delete chunk removed or cancelled actions; `more`: not done yet.
    Cancelled {
        more: bool,
    },
    /// Deleting found that no action of the rollout ever reached a device.
    NeverStarted,
    /// Status reports moved the group counters (§4.2 [ours: event-driven]).
    CountersChanged,
}

/// An effect to perform, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Add the next chunk of members to a CREATING group (answered by [`Event::Filled`]).
    Fill { group: GroupId },
    /// The group has all its members: READY with this total.
    MarkFilled { group: GroupId, members: i64 },
    /// Create the next chunk of SCHEDULED actions of a READY group ([`Event::Scheduled`]).
    Schedule { group: GroupId },
    /// Activate SCHEDULED actions of a RUNNING group (§4.6 B).
    Activate { group: GroupId, lane: Lane },
    /// Enrol up to `want` new targets into a dynamic group ([`Event::Enrolled`]).
    Enrol { group: GroupId, want: i64 },
    /// Append a dynamic group after the last one ([`Event::GroupAppended`]).
    AppendDynamicGroup { state: GroupState },
    SetGroup {
        groups: Vec<GroupId>,
        state: GroupState,
    },
    /// The group lost actions (targets deleted, §4.2): its total follows.
    Shrink { group: GroupId, total: i64 },
    /// The rollout's total becomes the sum of its groups'.
    CountTargets,
    /// Remove SCHEDULED actions, finish open groups, then cancel active actions: with a cancel
    /// message each (stop), or closed silently (`force`, delete); answered by
    /// [`Event::Cancelled`] or [`Event::NeverStarted`].
    CancelOpen { force: bool },
    /// Remove the rollout and everything of it.
    HardDelete,
    /// Record the approver and their remark.
    RecordDecision,
    /// Tell the approval webhook that the rollout waits (through the outbox).
    NotifyApproval,
    /// The rollout no longer waits: an undelivered approval notice is dropped.
    WithdrawApproval,
    /// Look at the rollout again at this time (ms).
    WakeAt(i64),
}

impl Command {
    /// A command that changes something (a wake-up alone is no progress).
    pub fn is_work(&self) -> bool {
        !matches!(self, Command::WakeAt(_))
    }
}

/// The next state and the commands that take the rollout there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub next: RolloutState,
    pub commands: Vec<Command>,
}

impl Transition {
    fn stay(r: &Rollout) -> Self {
        Self::to(r.state, Vec::new())
    }

    fn to(next: RolloutState, commands: Vec<Command>) -> Self {
        Self { next, commands }
    }

    /// The state changes or something is to be done.
    pub fn is_progress(&self, from: RolloutState) -> bool {
        self.next != from || self.commands.iter().any(Command::is_work)
    }
}

/// What the machine knows besides the rollout: its groups in id order and the settings that
/// decide.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub groups: &'a [Group],
    /// The tenant's `rollout.approval.enabled`.
    pub approval_enabled: bool,
    /// Throttle of dynamic enrolment after an empty pass (`dynamicRolloutsMinInvolvePeriodMS`).
    pub enrol_idle_ms: i64,
}

/// The executor has work for the rollout now (the store's work query states the same rules in
/// SQL, see [`WorkRule`]).
pub fn has_work(r: &Rollout, f: &Facts, now: i64) -> bool {
    match r.state.status().work_rule() {
        WorkRule::Always => true,
        WorkRule::StartDue => r.start_at.is_some_and(|t| t <= now),
        WorkRule::ActivationPending => activation_pending(f.groups).is_some(),
        WorkRule::Never => false,
    }
}

fn activation_pending(groups: &[Group]) -> Option<GroupId> {
    groups
        .iter()
        .find(|g| g.state == GroupState::Running && g.counts.scheduled > 0)
        .map(|g| g.id)
}

/// The states a stop (and so a distribution set's invalidation) applies to (§6.3).
pub fn stoppable(s: RolloutStatus) -> bool {
    use RolloutStatus as S;
    matches!(
        s,
        S::Creating
            | S::Ready
            | S::WaitingForApproval
            | S::ApprovalDenied
            | S::Starting
            | S::Running
            | S::Paused
    )
}

fn illegal<T>(what: &str) -> Result<T, Refusal> {
    Err(Refusal::IllegalState(what.to_owned()))
}

/// Start groups: RUNNING, and the first chunk of their actions activated right away.
fn start_commands(start: &[GroupId], out: &mut Vec<Command>) {
    if start.is_empty() {
        return;
    }
    out.push(Command::SetGroup {
        groups: start.to_vec(),
        state: GroupState::Running,
    });
    out.extend(start.iter().map(|g| Command::Activate {
        group: *g,
        lane: Lane::Start,
    }));
}

/// The one transition function.
pub fn step(r: &Rollout, f: &Facts, event: Event, now: i64) -> Result<Transition, Refusal> {
    match event {
        Event::Operator(op) => operate(r, f, op),
        Event::Tick => Ok(tick(r, f, now)),
        Event::Filled {
            group,
            members,
            complete,
        } => Ok(match r.state {
            RolloutState::Creating
                if complete && state_of(f, group) == Some(GroupState::Creating) =>
            {
                Transition::to(r.state, vec![Command::MarkFilled { group, members }])
            }
            _ => Transition::stay(r),
        }),
        Event::Scheduled { group, complete } => Ok(match r.state {
            RolloutState::Starting if complete && state_of(f, group) == Some(GroupState::Ready) => {
                Transition::to(
                    r.state,
                    vec![Command::SetGroup {
                        groups: vec![group],
                        state: GroupState::Scheduled,
                    }],
                )
            }
            _ => Transition::stay(r),
        }),
        Event::Enrolled { group, count } => Ok(match r.state {
            RolloutState::Running { .. } => {
                let mut commands = Vec::new();
                let idle_since = if count == 0 {
                    Some(now)
                } else {
                    if state_of(f, group) == Some(GroupState::Running) {
                        commands.push(Command::Activate {
                            group,
                            lane: Lane::Members(count),
                        });
                    }
                    None
                };
                evaluate_into(r, f, RolloutState::Running { idle_since }, commands)
            }
            _ => Transition::stay(r),
        }),
        Event::GroupAppended | Event::CountersChanged => Ok(match r.state {
            RolloutState::Running { .. } => evaluate_into(r, f, r.state, Vec::new()),
            _ => Transition::stay(r),
        }),
        Event::Cancelled { more } => Ok(match r.state {
            RolloutState::Stopping if !more => Transition::to(RolloutState::Stopped, Vec::new()),
            RolloutState::Deleting if !more => Transition::to(RolloutState::Deleted, Vec::new()),
            _ => Transition::stay(r),
        }),
        Event::NeverStarted => Ok(match r.state {
            RolloutState::Deleting => {
                Transition::to(RolloutState::Deleted, vec![Command::HardDelete])
            }
            _ => Transition::stay(r),
        }),
    }
}

fn state_of(f: &Facts, group: GroupId) -> Option<GroupState> {
    f.groups.iter().find(|g| g.id == group).map(|g| g.state)
}

/// Operator operations (§2.2): which is legal in which state and what it does.
fn operate(r: &Rollout, f: &Facts, op: Operation) -> Result<Transition, Refusal> {
    use RolloutState as S;
    let waiting = r.state == S::WaitingForApproval;
    let withdraw = || {
        if waiting {
            vec![Command::WithdrawApproval]
        } else {
            Vec::new()
        }
    };
    match op {
        Operation::Start => match r.state {
            S::Ready { .. } => Ok(Transition::to(S::Starting, Vec::new())),
            _ => illegal("Rollout can only be started in state ready"),
        },
        Operation::Pause => match r.state {
            S::Running { .. } => Ok(Transition::to(S::Paused, Vec::new())),
            _ => illegal("Rollout can only be paused in state running"),
        },
        Operation::Resume => match r.state {
            S::Paused => {
                let mut commands = Vec::new();
                start_commands(&resume_starts(f.groups, r.download_only()), &mut commands);
                Ok(Transition::to(S::Running { idle_since: None }, commands))
            }
            _ => illegal("Rollout can only be resumed in state paused"),
        },
        Operation::Stop => match stoppable(r.state.status()) {
            true => Ok(Transition::to(S::Stopping, withdraw())),
            false => illegal(
                "Rollout can only be stopped in state creating, ready, waiting_for_approval, \
                 approval_denied, starting, running or paused",
            ),
        },
        Operation::Delete => match r.state {
            S::Deleting | S::Deleted => Ok(Transition::stay(r)),
            _ => Ok(Transition::to(S::Deleting, withdraw())),
        },
        Operation::Approve => match r.state {
            S::WaitingForApproval => Ok(Transition::to(
                S::Ready {
                    start_at: r.start_at,
                },
                vec![Command::RecordDecision, Command::WithdrawApproval],
            )),
            _ => illegal("Rollout can only be approved in state waiting_for_approval"),
        },
        Operation::Deny => match r.state {
            S::WaitingForApproval => Ok(Transition::to(
                S::ApprovalDenied,
                vec![Command::RecordDecision, Command::WithdrawApproval],
            )),
            _ => illegal("Rollout can only be denied in state waiting_for_approval"),
        },
        Operation::TriggerNextGroup => match r.state {
            S::Running { .. } => {
                let start = trigger_next(f.groups).ok_or_else(|| {
                    Refusal::IllegalState(format!(
                        "Rollout {} does not have any groups left to be triggered",
                        r.id
                    ))
                })?;
                let mut commands = Vec::new();
                start_commands(&start, &mut commands);
                Ok(Transition::to(r.state, commands))
            }
            _ => illegal("Rollout is not in running state"),
        },
        Operation::Update => match r.state {
            S::Deleting | S::Deleted => Err(Refusal::ReadOnly(
                "Rollout is deleted and cannot be updated".to_owned(),
            )),
            _ => Ok(Transition::stay(r)),
        },
        Operation::Retry => match r.state {
            S::Finished => Ok(Transition::stay(r)),
            _ => illegal("Rollout can only be retried in state finished"),
        },
    }
}

/// The executor's next unit of work in each state.
fn tick(r: &Rollout, f: &Facts, now: i64) -> Transition {
    use RolloutState as S;
    match r.state {
        S::Creating => match f.groups.iter().find(|g| g.state == GroupState::Creating) {
            Some(g) => Transition::to(r.state, vec![Command::Fill { group: g.id }]),
            None => {
                // Every group is READY (§3.5, §5).
                let mut commands = vec![Command::CountTargets];
                if r.is_dynamic() && !f.groups.iter().any(|g| g.dynamic) {
                    commands.push(Command::AppendDynamicGroup {
                        state: GroupState::Ready,
                    });
                }
                let next = if f.approval_enabled && !r.creator_may_approve {
                    commands.push(Command::NotifyApproval);
                    S::WaitingForApproval
                } else {
                    if let Some(t) = r.start_at {
                        commands.push(Command::WakeAt(t));
                    }
                    S::Ready {
                        start_at: r.start_at,
                    }
                };
                Transition::to(next, commands)
            }
        },
        S::Ready { start_at } => match start_at {
            Some(t) if t <= now => Transition::to(S::Starting, Vec::new()),
            _ => Transition::stay(r),
        },
        S::Starting => {
            let ready = |dynamic: bool| {
                f.groups
                    .iter()
                    .filter(move |g| g.state == GroupState::Ready && g.dynamic == dynamic)
            };
            if let Some(g) = ready(false).next() {
                return Transition::to(r.state, vec![Command::Schedule { group: g.id }]);
            }
            // Every static group has its actions (§4.6 A): dynamic groups wait SCHEDULED for
            // their turn, the first group runs (its actions are activated by the next tick).
            let mut commands = Vec::new();
            let dynamic: Vec<GroupId> = ready(true).map(|g| g.id).collect();
            if !dynamic.is_empty() {
                commands.push(Command::SetGroup {
                    groups: dynamic,
                    state: GroupState::Scheduled,
                });
            }
            if let Some(first) = f.groups.first() {
                commands.push(Command::SetGroup {
                    groups: vec![first.id],
                    state: GroupState::Running,
                });
            }
            Transition::to(S::Running { idle_since: None }, commands)
        }
        S::Running { idle_since } => {
            if let Some(g) = activation_pending(f.groups) {
                return Transition::to(r.state, vec![activate_chunk(g)]);
            }
            let mut commands = Vec::new();
            if r.is_dynamic() {
                let resume_at = idle_since.map(|t| t + f.enrol_idle_ms);
                match (resume_at, f.groups.last()) {
                    (Some(t), _) if now < t => commands.push(Command::WakeAt(t)),
                    (_, Some(last)) => {
                        let planned = last.planned().max(1);
                        if last.total_targets >= planned || last.state == GroupState::Finished {
                            if (f.groups.len() as i64) < super::plan::limits::MAX_GROUPS {
                                return Transition::to(
                                    r.state,
                                    vec![Command::AppendDynamicGroup {
                                        state: GroupState::Scheduled,
                                    }],
                                );
                            }
                        } else {
                            return Transition::to(
                                r.state,
                                vec![Command::Enrol {
                                    group: last.id,
                                    want: planned - last.total_targets,
                                }],
                            );
                        }
                    }
                    (_, None) => {}
                }
            }
            evaluate_into(r, f, r.state, commands)
        }
        // A group that started before the pause still gets all its actions activated.
        S::Paused => match activation_pending(f.groups) {
            Some(g) => Transition::to(r.state, vec![activate_chunk(g)]),
            None => Transition::stay(r),
        },
        S::Stopping => Transition::to(r.state, vec![Command::CancelOpen { force: false }]),
        S::Deleting => Transition::to(r.state, vec![Command::CancelOpen { force: true }]),
        S::WaitingForApproval | S::ApprovalDenied | S::Stopped | S::Finished | S::Deleted => {
            Transition::stay(r)
        }
    }
}

fn activate_chunk(group: GroupId) -> Command {
    Command::Activate {
        group,
        lane: Lane::Chunk,
    }
}

/// Evaluate a running rollout (§4.2) and turn the decision into commands after `commands`;
/// `next` is the state when the decision neither pauses nor finishes it.
fn evaluate_into(
    r: &Rollout,
    f: &Facts,
    next: RolloutState,
    mut commands: Vec<Command>,
) -> Transition {
    let d = evaluate(f.groups, r.is_dynamic(), r.download_only());
    for (group, total) in &d.shrink {
        commands.push(Command::Shrink {
            group: *group,
            total: *total,
        });
    }
    // Starts first: a group the evaluation started may also have completed in it (empty).
    start_commands(&d.start, &mut commands);
    for state in [GroupState::Error, GroupState::Finished] {
        let groups: Vec<GroupId> = d
            .group_state
            .iter()
            .filter(|(_, s)| *s == state)
            .map(|(g, _)| *g)
            .collect();
        if !groups.is_empty() {
            commands.push(Command::SetGroup { groups, state });
        }
    }
    let next = if d.pause {
        RolloutState::Paused
    } else if d.finish {
        RolloutState::Finished
    } else {
        next
    };
    Transition::to(next, commands)
}

/// What a running rollout must do now.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Decision {
    /// Groups to start (SCHEDULED → RUNNING, their SCHEDULED actions activated), in order.
    pub start: Vec<GroupId>,
    /// Groups whose state changes (FINISHED or ERROR).
    pub group_state: Vec<(GroupId, GroupState)>,
    /// New `total_targets` of groups whose actions disappeared (targets deleted, §4.2).
    pub shrink: Vec<(GroupId, i64)>,
    /// The rollout pauses (success action PAUSE, or emergency shutdown).
    pub pause: bool,
    /// The rollout finished: no group is RUNNING or SCHEDULED any more.
    pub finish: bool,
}

/// The RUNNING evaluation of §4.2 over a rollout's groups (in id order), with our decisions:
/// once the rollout pauses, no further group starts in the same evaluation (§12 #17); a
/// rollout without RUNNING or SCHEDULED groups finishes (§12 #11); a group started by the
/// evaluation is evaluated in it too (an empty group completes at once), and the success action
/// runs only when it changes something — so evaluating twice is a no-op.
pub fn evaluate(groups: &[Group], dynamic: bool, download_only: bool) -> Decision {
    let mut d = Decision::default();
    let mut state: Vec<GroupState> = groups.iter().map(|g| g.state).collect();
    let last_id = groups.last().map(|g| g.id);
    let mut running: Vec<usize> = (0..groups.len())
        .filter(|&i| state[i] == GroupState::Running)
        .collect();
    if running.is_empty() {
        // Nothing runs (e.g. resumed after the last running group failed): start the first
        // group still waiting, if any (hawkBit's "trigger next group as system").
        if let Some(i) = (0..groups.len()).find(|&i| state[i] == GroupState::Scheduled) {
            state[i] = GroupState::Running;
            d.start.push(groups[i].id);
            running.push(i);
        }
    }
    let mut pos = 0;
    while pos < running.len() {
        let i = running[pos];
        pos += 1;
        let g = &groups[i];
        let actions = g.counts.total();
        let total = if g.dynamic {
            actions
        } else {
            actions.min(g.total_targets)
        };
        if !g.dynamic && actions < g.total_targets {
            d.shrink.push((g.id, actions));
        }
        let is_last_running = pos == running.len();
        let denom = if is_last_running && g.dynamic {
            g.planned().max(1)
        } else {
            total
        };
        if let Some(e) = &g.conditions.error
            && e.met(g.counts.error, denom)
        {
            state[i] = GroupState::Error;
            d.group_state.push((g.id, GroupState::Error));
            d.pause = true;
            continue;
        }
        let never_completes = dynamic && Some(g.id) == last_id && g.dynamic;
        let complete = !never_completes && g.counts.open(download_only) == 0;
        if (complete
            || g.conditions
                .success
                .met(g.counts.succeeded(download_only), denom))
            && !d.pause
        {
            let children: Vec<usize> = (0..groups.len())
                .filter(|&c| groups[c].parent == Some(g.id) && state[c] == GroupState::Scheduled)
                .collect();
            match g.conditions.success_action.action {
                super::spec::SuccessAction::NextGroup => {
                    for c in children {
                        state[c] = GroupState::Running;
                        d.start.push(groups[c].id);
                        running.push(c);
                    }
                }
                super::spec::SuccessAction::Pause => {
                    if !children.is_empty() {
                        d.pause = true;
                    }
                }
            }
        }
        if complete {
            state[i] = GroupState::Finished;
            d.group_state.push((g.id, GroupState::Finished));
        }
    }
    d.finish = !d.pause
        && !state
            .iter()
            .any(|s| matches!(s, GroupState::Running | GroupState::Scheduled));
    d
}

/// Resume (§6.2): the started group with the highest id runs NEXTGROUP now when it failed, or
/// when its success action is PAUSE and its condition holds. Returns the groups to start.
pub fn resume_starts(groups: &[Group], download_only: bool) -> Vec<GroupId> {
    let Some(last) = groups
        .iter()
        .filter(|g| g.state.has_started())
        .max_by_key(|g| g.id)
    else {
        return Vec::new();
    };
    let pause = last.conditions.success_action.action == super::spec::SuccessAction::Pause;
    let run_next = last.state == GroupState::Error
        || (pause
            && (last.state == GroupState::Finished
                || last.conditions.success.met(
                    last.counts.succeeded(download_only),
                    last.counts
                        .total()
                        .min(last.total_targets.max(last.counts.total())),
                )));
    if run_next {
        children_to_start(groups, last.id)
    } else {
        Vec::new()
    }
}

/// Manual "trigger next group" (§4.5): NEXTGROUP for the started group with the highest id.
/// `None` when no group is left to trigger.
pub fn trigger_next(groups: &[Group]) -> Option<Vec<GroupId>> {
    if !groups.iter().any(|g| g.state == GroupState::Scheduled) {
        return None;
    }
    let last = groups
        .iter()
        .filter(|g| g.state.has_started())
        .max_by_key(|g| g.id)?;
    let start = children_to_start(groups, last.id);
    if start.is_empty() { None } else { Some(start) }
}

fn children_to_start(groups: &[Group], parent: GroupId) -> Vec<GroupId> {
    groups
        .iter()
        .filter(|g| g.parent == Some(parent) && g.state == GroupState::Scheduled)
        .map(|g| g.id)
        .collect()
}

#[cfg(test)]
mod properties;
#[cfg(test)]
mod tests;
