//! Rollouts and their deployment groups (rollouts.md §2–§4): the status enums, which operator
//! operation is legal in which state, the group-size arithmetic of the auto-split, the success
//! and error conditions, and [`evaluate`], the pure decision of what a running rollout does next
//! given its groups' action counters.
//!
//! The engine feeds [`evaluate`] from counters maintained in the same transaction as the status
//! reports, so the report that crosses a threshold is the one that starts the next group.

use std::fmt;

/// Rollout states (§2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RolloutStatus {
    Creating,
    Ready,
    Paused,
    Starting,
    Stopped,
    Running,
    Finished,
    Deleting,
    Deleted,
    WaitingForApproval,
    ApprovalDenied,
    Stopping,
}

impl RolloutStatus {
    pub const ALL: [RolloutStatus; 12] = [
        Self::Creating,
        Self::Ready,
        Self::Paused,
        Self::Starting,
        Self::Stopped,
        Self::Running,
        Self::Finished,
        Self::Deleting,
        Self::Deleted,
        Self::WaitingForApproval,
        Self::ApprovalDenied,
        Self::Stopping,
    ];

    pub fn as_db(self) -> &'static str {
        match self {
            Self::Creating => "CREATING",
            Self::Ready => "READY",
            Self::Paused => "PAUSED",
            Self::Starting => "STARTING",
            Self::Stopped => "STOPPED",
            Self::Running => "RUNNING",
            Self::Finished => "FINISHED",
            Self::Deleting => "DELETING",
            Self::Deleted => "DELETED",
            Self::WaitingForApproval => "WAITING_FOR_APPROVAL",
            Self::ApprovalDenied => "APPROVAL_DENIED",
            Self::Stopping => "STOPPING",
        }
    }

    pub fn from_db(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_db() == s)
    }

    /// REST spelling: lower case (§9.1).
    pub fn api_name(self) -> String {
        self.as_db().to_ascii_lowercase()
    }

    /// hawkBit's stored code, which is what sorting by `status` orders by (§1.9, §12 #23).
    pub fn code(self) -> i32 {
        match self {
            Self::Creating => 0,
            Self::Ready => 1,
            Self::Paused => 2,
            Self::Starting => 3,
            Self::Stopped => 4,
            Self::Running => 5,
            Self::Finished => 6,
            Self::Deleting => 9,
            Self::Deleted => 10,
            Self::WaitingForApproval => 11,
            Self::ApprovalDenied => 12,
            Self::Stopping => 13,
        }
    }

    /// States the executor works on (§2.3).
    pub fn is_active(self) -> bool {
        matches!(
            self,
            Self::Creating
                | Self::Ready
                | Self::Starting
                | Self::Running
                | Self::Stopping
                | Self::Deleting
        )
    }
}

impl fmt::Display for RolloutStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_db())
    }
}

/// Deployment group states (§2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupStatus {
    Creating,
    Ready,
    Scheduled,
    Running,
    Finished,
    Error,
}

impl GroupStatus {
    pub const ALL: [GroupStatus; 6] = [
        Self::Creating,
        Self::Ready,
        Self::Scheduled,
        Self::Running,
        Self::Finished,
        Self::Error,
    ];

    pub fn as_db(self) -> &'static str {
        match self {
            Self::Creating => "CREATING",
            Self::Ready => "READY",
            Self::Scheduled => "SCHEDULED",
            Self::Running => "RUNNING",
            Self::Finished => "FINISHED",
            Self::Error => "ERROR",
        }
    }

    pub fn from_db(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_db() == s)
    }

    pub fn api_name(self) -> String {
        self.as_db().to_ascii_lowercase()
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Finished | Self::Error)
    }
}

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
}

/// Why an operation is refused: `IllegalState` → 400, `ReadOnly` → 403 (§9.1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{0}")]
    IllegalState(String),
    #[error("{0}")]
    ReadOnly(String),
}

/// The state an operation moves a rollout to, or why it may not (§2.2). `TriggerNextGroup` and
/// `Update` keep the state; `Delete` is idempotent from DELETING.
pub fn apply_operation(status: RolloutStatus, op: Operation) -> Result<RolloutStatus, Refusal> {
    use RolloutStatus as S;
    let illegal = |what: &str| Err(Refusal::IllegalState(what.to_owned()));
    match op {
        Operation::Start => match status {
            S::Ready => Ok(S::Starting),
            _ => illegal("Rollout can only be started in state ready"),
        },
        Operation::Pause => match status {
            S::Running => Ok(S::Paused),
            _ => illegal("Rollout can only be paused in state running"),
        },
        Operation::Resume => match status {
            S::Paused => Ok(S::Running),
            _ => illegal("Rollout can only be resumed in state paused"),
        },
        Operation::Stop => match status {
            S::Creating
            | S::Ready
            | S::WaitingForApproval
            | S::ApprovalDenied
            | S::Starting
            | S::Running
            | S::Paused => Ok(S::Stopping),
            _ => illegal(
                "Rollout can only be stopped in state creating, ready, waiting_for_approval, \
                 approval_denied, starting, running or paused",
            ),
        },
        Operation::Delete => Ok(S::Deleting),
        Operation::Approve => match status {
            S::WaitingForApproval => Ok(S::Ready),
            _ => illegal("Rollout can only be approved in state waiting_for_approval"),
        },
        Operation::Deny => match status {
            S::WaitingForApproval => Ok(S::ApprovalDenied),
            _ => illegal("Rollout can only be denied in state waiting_for_approval"),
        },
        Operation::TriggerNextGroup => match status {
            S::Running => Ok(S::Running),
            _ => illegal("Rollout is not in running state"),
        },
        Operation::Update => match status {
            S::Deleting | S::Deleted => Err(Refusal::ReadOnly(
                "Rollout is deleted and cannot be updated".to_owned(),
            )),
            s => Ok(s),
        },
    }
}

/// Round half up as Java's `Math.round(double)` does.
fn round_half_up(x: f64) -> i64 {
    (x + 0.5).floor() as i64
}

/// The size of a static group when it is filled (§3.3): `pct` is the group's percentage of all
/// targets matching its filter, `served` the sum of the percentages of earlier groups with the
/// very same filter, `remaining` the targets still eligible for it. Bit-compatible with
/// hawkBit: percentages are `f32`, the arithmetic `f64`.
pub fn group_size(pct: f32, served: f64, remaining: i64) -> i64 {
    let to_serve = 100.0 - served;
    let pct_rest = if to_serve <= 1.0 {
        100.0
    } else {
        (f64::from(pct) * 100.0 / to_serve).min(100.0)
    };
    round_half_up(pct_rest * remaining as f64 / 100.0)
}

/// Sizes of `groups` auto-split groups over `total` targets (§3.3): every group has the
/// percentage `100/groups` and the same (empty) filter.
pub fn auto_split_sizes(total: i64, groups: usize) -> Vec<i64> {
    let pct = 100f32 / groups as f32;
    let mut served = 0f64;
    let mut remaining = total;
    let mut sizes = Vec::with_capacity(groups);
    for _ in 0..groups {
        let size = group_size(pct, served, remaining).min(remaining).max(0);
        sizes.push(size);
        remaining -= size;
        served += f64::from(pct);
    }
    sizes
}

/// The kind of a group's error condition. `Count` is our extension (service.md): more than N
/// failed actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Threshold,
    Count,
}

impl ErrorKind {
    pub fn as_db(self) -> &'static str {
        match self {
            Self::Threshold => "THRESHOLD",
            Self::Count => "COUNT",
        }
    }

    pub fn from_db(s: &str) -> Option<Self> {
        match s {
            "THRESHOLD" => Some(Self::Threshold),
            "COUNT" => Some(Self::Count),
            _ => None,
        }
    }
}

/// What a group does when its success condition holds (§4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SuccessAction {
    #[default]
    NextGroup,
    Pause,
}

impl SuccessAction {
    pub fn as_db(self) -> &'static str {
        match self {
            Self::NextGroup => "NEXTGROUP",
            Self::Pause => "PAUSE",
        }
    }

    pub fn from_db(s: &str) -> Option<Self> {
        match s {
            "NEXTGROUP" => Some(Self::NextGroup),
            "PAUSE" => Some(Self::Pause),
            _ => None,
        }
    }
}

/// A group's action counters by status bucket (maintained by the database, §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    pub scheduled: i64,
    /// Open statuses other than SCHEDULED and DOWNLOADED (RUNNING, WAIT_FOR_CONFIRMATION,
    /// CANCELING, ...).
    pub running: i64,
    pub downloaded: i64,
    pub finished: i64,
    pub error: i64,
    pub canceled: i64,
}

impl Counts {
    /// Number of actions of the group.
    pub fn total(&self) -> i64 {
        self.scheduled + self.running + self.downloaded + self.finished + self.error + self.canceled
    }

    /// Actions that keep the group open (§4.3).
    pub fn open(&self, download_only: bool) -> i64 {
        self.scheduled + self.running + if download_only { 0 } else { self.downloaded }
    }

    /// Actions that count as success (§4.2): DOWNLOADED for download-only rollouts, else
    /// FINISHED.
    pub fn succeeded(&self, download_only: bool) -> i64 {
        if download_only {
            self.downloaded
        } else {
            self.finished
        }
    }

    /// The six progress buckets of §8, given the total the buckets refer to.
    pub fn buckets(&self, total_targets: i64, download_only: bool) -> Progress {
        let (running, finished) = if download_only {
            (self.running, self.finished + self.downloaded)
        } else {
            (self.running + self.downloaded, self.finished)
        };
        Progress {
            notstarted: (total_targets - self.total()).max(0),
            scheduled: self.scheduled,
            running,
            finished,
            error: self.error,
            cancelled: self.canceled,
        }
    }

    pub fn add(&mut self, o: &Counts) {
        self.scheduled += o.scheduled;
        self.running += o.running;
        self.downloaded += o.downloaded;
        self.finished += o.finished;
        self.error += o.error;
        self.canceled += o.canceled;
    }
}

/// `totalTargetsPerStatus` (§8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    pub notstarted: i64,
    pub scheduled: i64,
    pub running: i64,
    pub finished: i64,
    pub error: i64,
    pub cancelled: i64,
}

/// Success condition (§4.2): finished share ≥ threshold, inclusive; an empty group succeeds;
/// an expression that is not an integer never fires [hB].
pub fn success_met(expression: &str, succeeded: i64, total: i64) -> bool {
    if total == 0 {
        return true;
    }
    match expression.trim().parse::<i64>() {
        Ok(t) => succeeded.saturating_mul(100) >= t.saturating_mul(total),
        Err(_) => false,
    }
}

/// Error condition (§4.2, service.md): THRESHOLD = failed share strictly above the percentage;
/// COUNT = strictly more than N failed actions. Never fires on an empty group or a non-integer.
pub fn error_met(kind: ErrorKind, expression: &str, errors: i64, total: i64) -> bool {
    if total == 0 {
        return false;
    }
    let Ok(t) = expression.trim().parse::<i64>() else {
        return false;
    };
    match kind {
        ErrorKind::Threshold => errors.saturating_mul(100) > t.saturating_mul(total),
        ErrorKind::Count => errors > t,
    }
}

/// What [`evaluate`] needs of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupFacts {
    pub id: i64,
    pub parent: Option<i64>,
    pub status: GroupStatus,
    pub dynamic: bool,
    pub total_targets: i64,
    /// Planned size of a dynamic group (its `targetPercentage`).
    pub planned: i64,
    pub success_expression: String,
    pub success_action: SuccessAction,
    pub error: Option<(ErrorKind, String)>,
    pub counts: Counts,
}

/// What a running rollout must do now.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Decision {
    /// Groups to start (SCHEDULED → RUNNING, their SCHEDULED actions activated), in order.
    pub start: Vec<i64>,
    /// Groups whose status changes (FINISHED or ERROR).
    pub group_status: Vec<(i64, GroupStatus)>,
    /// New `total_targets` of groups whose actions disappeared (targets deleted, §4.2).
    pub shrink: Vec<(i64, i64)>,
    /// The rollout pauses (success action PAUSE, or emergency shutdown).
    pub pause: bool,
    /// The rollout finished: no group is RUNNING or SCHEDULED any more.
    pub finish: bool,
}

impl Decision {
    pub fn is_empty(&self) -> bool {
        *self == Decision::default()
    }
}

/// The RUNNING evaluation of §4.2 over a rollout's groups (in id order), with our decisions:
/// once the rollout pauses, no further group starts in the same evaluation (§12 #17); a
/// rollout without RUNNING or SCHEDULED groups finishes (§12 #11); the success action runs only
/// when it changes something, so evaluating twice is a no-op.
pub fn evaluate(groups: &[GroupFacts], dynamic: bool, download_only: bool) -> Decision {
    let mut d = Decision::default();
    let mut status: Vec<GroupStatus> = groups.iter().map(|g| g.status).collect();
    let last_id = groups.last().map(|g| g.id);
    let running: Vec<usize> = (0..groups.len())
        .filter(|&i| status[i] == GroupStatus::Running)
        .collect();

    if running.is_empty() {
        // Nothing runs (e.g. resumed after the last running group failed): start the first
        // group still waiting, if any (hawkBit's "trigger next group as system").
        if let Some(i) = (0..groups.len()).find(|&i| status[i] == GroupStatus::Scheduled) {
            status[i] = GroupStatus::Running;
            d.start.push(groups[i].id);
        }
    }
    for (pos, &i) in running.iter().enumerate() {
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
        let is_last_running = pos + 1 == running.len();
        let denom = if is_last_running && g.dynamic {
            g.planned.max(1)
        } else {
            total
        };
        if let Some((kind, expr)) = &g.error
            && error_met(*kind, expr, g.counts.error, denom)
        {
            status[i] = GroupStatus::Error;
            d.group_status.push((g.id, GroupStatus::Error));
            d.pause = true;
            continue;
        }
        let never_completes = dynamic && Some(g.id) == last_id && g.dynamic;
        let complete = !never_completes && g.counts.open(download_only) == 0;
        if (complete
            || success_met(
                &g.success_expression,
                g.counts.succeeded(download_only),
                denom,
            ))
            && !d.pause
        {
            let children: Vec<usize> = (0..groups.len())
                .filter(|&c| groups[c].parent == Some(g.id) && status[c] == GroupStatus::Scheduled)
                .collect();
            match g.success_action {
                SuccessAction::NextGroup => {
                    for c in children {
                        status[c] = GroupStatus::Running;
                        d.start.push(groups[c].id);
                    }
                }
                SuccessAction::Pause => {
                    if !children.is_empty() {
                        d.pause = true;
                    }
                }
            }
        }
        if complete {
            status[i] = GroupStatus::Finished;
            d.group_status.push((g.id, GroupStatus::Finished));
        }
    }
    d.finish = !d.pause
        && !status
            .iter()
            .any(|s| matches!(s, GroupStatus::Running | GroupStatus::Scheduled));
    d
}

/// Resume (§6.2): the started group with the highest id runs NEXTGROUP now when it failed, or
/// when its success action is PAUSE and its condition holds. Returns the groups to start.
pub fn resume_starts(groups: &[GroupFacts], download_only: bool) -> Vec<i64> {
    let Some(last) = groups
        .iter()
        .filter(|g| {
            !matches!(
                g.status,
                GroupStatus::Scheduled | GroupStatus::Ready | GroupStatus::Creating
            )
        })
        .max_by_key(|g| g.id)
    else {
        return Vec::new();
    };
    let run_next = last.status == GroupStatus::Error
        || (last.success_action == SuccessAction::Pause
            && (last.status == GroupStatus::Finished
                || success_met(
                    &last.success_expression,
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
pub fn trigger_next(groups: &[GroupFacts]) -> Option<Vec<i64>> {
    if !groups.iter().any(|g| g.status == GroupStatus::Scheduled) {
        return None;
    }
    let last = groups
        .iter()
        .filter(|g| {
            !matches!(
                g.status,
                GroupStatus::Scheduled | GroupStatus::Ready | GroupStatus::Creating
            )
        })
        .max_by_key(|g| g.id)?;
    let start = children_to_start(groups, last.id);
    if start.is_empty() { None } else { Some(start) }
}

fn children_to_start(groups: &[GroupFacts], parent: i64) -> Vec<i64> {
    groups
        .iter()
        .filter(|g| g.parent == Some(parent) && g.status == GroupStatus::Scheduled)
        .map(|g| g.id)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn auto_split_matches_hawkbit_examples() {
        assert_eq!(auto_split_sizes(10, 5), vec![2, 2, 2, 2, 2]);
        assert_eq!(auto_split_sizes(9, 4), vec![2, 2, 3, 2]);
        assert_eq!(auto_split_sizes(3, 5), vec![1, 1, 0, 1, 0]);
        assert_eq!(auto_split_sizes(50, 5), vec![10; 5]);
        assert_eq!(auto_split_sizes(20, 4), vec![5; 4]);
    }

    #[test]
    fn custom_percentages_follow_percent_from_the_rest() {
        // 20 base targets, 10 of them in group 1 by filter; [100 % gr1, 20 %, 80 %] → 10, 4, 16
        // where groups 2 and 3 share the empty filter.
        assert_eq!(group_size(100.0, 0.0, 10), 10);
        assert_eq!(group_size(20.0, 0.0, 20), 4);
        assert_eq!(group_size(80.0, 20.0, 16), 16);
        // 52 targets, [33.3 %] × 3 → 17, 17, 18.
        let a = group_size(33.3, 0.0, 52);
        let b = group_size(33.3, f64::from(33.3f32), 52 - a);
        let c = group_size(33.3, 2.0 * f64::from(33.3f32), 52 - a - b);
        assert_eq!((a, b, c), (17, 17, 18));
    }

    #[test]
    fn thresholds_as_hawkbit_tests_assert() {
        // K09: error threshold, strict.
        assert!(error_met(ErrorKind::Threshold, "10", 2, 5));
        assert!(!error_met(ErrorKind::Threshold, "50", 1, 5));
        assert!(!error_met(ErrorKind::Threshold, "50", 0, 5));
        assert!(!error_met(ErrorKind::Threshold, "20", 1, 5));
        assert!(!error_met(ErrorKind::Threshold, "20", 0, 0));
        assert!(!error_met(ErrorKind::Threshold, "notANumber", 5, 5));
        // COUNT: more than N.
        assert!(!error_met(ErrorKind::Count, "2", 2, 100));
        assert!(error_met(ErrorKind::Count, "2", 3, 100));
        // K10: success threshold, inclusive.
        assert!(success_met("80", 4, 5));
        assert!(!success_met("80", 3, 5));
        assert!(success_met("20", 1, 5));
        assert!(success_met("80", 0, 0));
        assert!(!success_met("10", 0, 5));
        assert!(!success_met("notANumber", 5, 5));
        assert!(!success_met("50.5", 5, 5));
    }

    #[test]
    fn operations_allowed_only_from_their_states() {
        use Operation::*;
        use RolloutStatus::*;
        assert_eq!(apply_operation(Ready, Start), Ok(Starting));
        assert!(apply_operation(Creating, Start).is_err());
        assert!(apply_operation(Running, Start).is_err());
        assert_eq!(apply_operation(Running, Pause), Ok(Paused));
        assert!(apply_operation(Paused, Pause).is_err());
        assert_eq!(apply_operation(Paused, Resume), Ok(Running));
        assert!(apply_operation(Ready, Resume).is_err());
        for s in [
            Creating,
            Ready,
            WaitingForApproval,
            ApprovalDenied,
            Starting,
            Running,
            Paused,
        ] {
            assert_eq!(apply_operation(s, Stop), Ok(Stopping));
        }
        for s in [Stopping, Stopped, Finished, Deleting, Deleted] {
            assert!(apply_operation(s, Stop).is_err());
        }
        for s in RolloutStatus::ALL {
            assert_eq!(apply_operation(s, Delete), Ok(Deleting));
        }
        assert_eq!(apply_operation(WaitingForApproval, Approve), Ok(Ready));
        assert_eq!(
            apply_operation(WaitingForApproval, Deny),
            Ok(ApprovalDenied)
        );
        assert!(apply_operation(Ready, Approve).is_err());
        assert!(apply_operation(ApprovalDenied, Start).is_err());
        assert_eq!(apply_operation(Running, TriggerNextGroup), Ok(Running));
        assert!(apply_operation(Paused, TriggerNextGroup).is_err());
        assert!(matches!(
            apply_operation(Deleted, Update),
            Err(Refusal::ReadOnly(_))
        ));
        assert_eq!(apply_operation(Finished, Update), Ok(Finished));
    }

    fn group(id: i64, parent: Option<i64>, status: GroupStatus, total: i64) -> GroupFacts {
        GroupFacts {
            id,
            parent,
            status,
            dynamic: false,
            total_targets: total,
            planned: 0,
            success_expression: "50".into(),
            success_action: SuccessAction::NextGroup,
            error: Some((ErrorKind::Threshold, "50".into())),
            counts: Counts {
                scheduled: if status == GroupStatus::Scheduled {
                    total
                } else {
                    0
                },
                running: if status == GroupStatus::Running {
                    total
                } else {
                    0
                },
                ..Counts::default()
            },
        }
    }

    fn chain(n: i64, size: i64) -> Vec<GroupFacts> {
        (1..=n)
            .map(|i| {
                let status = if i == 1 {
                    GroupStatus::Running
                } else {
                    GroupStatus::Scheduled
                };
                group(i, (i > 1).then(|| i - 1), status, size)
            })
            .collect()
    }

    fn finish(g: &mut GroupFacts, n: i64) {
        g.counts.running -= n;
        g.counts.finished += n;
    }

    #[test]
    fn success_threshold_starts_the_next_group_once() {
        let mut gs = chain(5, 2);
        finish(&mut gs[0], 1); // S04: 1 of 2 finished with s50
        let d = evaluate(&gs, false, false);
        assert_eq!(d.start, vec![2]);
        assert!(d.group_status.is_empty() && !d.pause && !d.finish);
        // Applied: group 2 RUNNING; evaluating again starts nothing new.
        gs[1].status = GroupStatus::Running;
        gs[1].counts = Counts {
            running: 2,
            ..Counts::default()
        };
        let d = evaluate(&gs, false, false);
        assert!(d.start.is_empty(), "{d:?}");
    }

    #[test]
    fn error_threshold_is_an_emergency_shutdown() {
        let mut gs = chain(5, 2);
        gs[0].counts = Counts {
            error: 2,
            ..Counts::default()
        }; // K01
        let d = evaluate(&gs, false, false);
        assert_eq!(d.group_status, vec![(1, GroupStatus::Error)]);
        assert!(d.pause && d.start.is_empty() && !d.finish);
    }

    #[test]
    fn complete_group_runs_success_action_below_threshold() {
        // K04: s100 PAUSE, 4 FINISHED + 1 CANCELED → group FINISHED, rollout PAUSED.
        let mut gs = chain(2, 5);
        gs[0].success_expression = "100".into();
        gs[0].success_action = SuccessAction::Pause;
        gs[0].error = Some((ErrorKind::Threshold, "10".into()));
        gs[0].counts = Counts {
            finished: 4,
            canceled: 1,
            ..Counts::default()
        };
        let d = evaluate(&gs, false, false);
        assert_eq!(d.group_status, vec![(1, GroupStatus::Finished)]);
        assert!(d.pause && d.start.is_empty());
    }

    #[test]
    fn last_group_completing_finishes_the_rollout() {
        let mut gs = chain(2, 2);
        gs[0].status = GroupStatus::Finished;
        gs[0].counts = Counts {
            finished: 2,
            ..Counts::default()
        };
        gs[1].status = GroupStatus::Running;
        gs[1].counts = Counts {
            finished: 1,
            error: 1,
            ..Counts::default()
        };
        let d = evaluate(&gs, false, false);
        assert_eq!(d.group_status, vec![(2, GroupStatus::Finished)]);
        assert!(d.finish);
    }

    #[test]
    fn deleted_targets_shrink_the_group() {
        // K07: s100, one action deleted, 4 finished → 4/4 complete.
        let mut gs = chain(2, 5);
        gs[0].success_expression = "100".into();
        gs[0].counts = Counts {
            finished: 4,
            ..Counts::default()
        };
        let d = evaluate(&gs, false, false);
        assert_eq!(d.shrink, vec![(1, 4)]);
        assert_eq!(d.start, vec![2]);
        assert_eq!(d.group_status, vec![(1, GroupStatus::Finished)]);
    }

    #[test]
    fn download_only_counts_downloaded() {
        let mut gs = chain(2, 5);
        gs[0].success_expression = "100".into();
        gs[0].counts = Counts {
            downloaded: 5,
            ..Counts::default()
        };
        let d = evaluate(&gs, false, true);
        assert_eq!(d.start, vec![2]);
        assert_eq!(d.group_status, vec![(1, GroupStatus::Finished)]);
        // Not download-only: DOWNLOADED keeps the group open and is no success.
        let d = evaluate(&gs, false, false);
        assert!(d.start.is_empty() && d.group_status.is_empty());
    }

    #[test]
    fn resume_after_error_starts_the_group_after_the_failed_one() {
        let mut gs = chain(3, 2);
        gs[0].status = GroupStatus::Error;
        assert_eq!(resume_starts(&gs, false), vec![2]);
        gs[0].status = GroupStatus::Running;
        assert!(resume_starts(&gs, false).is_empty());
    }

    #[test]
    fn trigger_next_walks_the_chain() {
        let mut gs = chain(3, 5);
        assert_eq!(trigger_next(&gs), Some(vec![2]));
        gs[1].status = GroupStatus::Running;
        assert_eq!(trigger_next(&gs), Some(vec![3]));
        gs[2].status = GroupStatus::Running;
        assert_eq!(trigger_next(&gs), None);
    }

    #[test]
    fn dynamic_last_group_never_completes_and_uses_planned_size() {
        let mut gs = chain(2, 3);
        gs[0].status = GroupStatus::Finished;
        gs[1].status = GroupStatus::Running;
        gs[1].dynamic = true;
        gs[1].planned = 3;
        gs[1].success_expression = "60".into();
        gs[1].counts = Counts {
            finished: 2,
            ..Counts::default()
        };
        let d = evaluate(&gs, true, false);
        assert!(d.group_status.is_empty() && !d.finish, "{d:?}");
    }

    /// A random group chain in a plausible state.
    fn arb_rollout() -> impl Strategy<Value = Vec<GroupFacts>> {
        (
            1usize..6,
            0i64..6,
            prop::collection::vec((0i64..4, 0i64..4, 0i64..4, 0i64..3, 0i64..3), 6),
        )
            .prop_flat_map(|(n, started, counts)| {
                (
                    Just(n),
                    Just(started.min(n as i64)),
                    Just(counts),
                    0i64..101,
                    0i64..101,
                    any::<bool>(),
                )
            })
            .prop_map(|(n, started, counts, s, e, pause)| {
                (0..n)
                    .map(|i| {
                        let (sch, run, fin, err, can) = counts[i];
                        let idx = i as i64;
                        let status = if idx < started {
                            GroupStatus::Running
                        } else {
                            GroupStatus::Scheduled
                        };
                        let c = if status == GroupStatus::Scheduled {
                            Counts {
                                scheduled: sch + run + fin + err + can,
                                ..Counts::default()
                            }
                        } else {
                            Counts {
                                scheduled: 0,
                                running: run,
                                finished: fin,
                                error: err,
                                canceled: can,
                                downloaded: 0,
                            }
                        };
                        GroupFacts {
                            id: idx + 1,
                            parent: (i > 0).then_some(idx),
                            status,
                            dynamic: false,
                            total_targets: c.total(),
                            planned: 0,
                            success_expression: s.to_string(),
                            success_action: if pause {
                                SuccessAction::Pause
                            } else {
                                SuccessAction::NextGroup
                            },
                            error: Some((ErrorKind::Threshold, e.to_string())),
                            counts: c,
                        }
                    })
                    .collect()
            })
    }

    fn apply(gs: &mut [GroupFacts], d: &Decision) {
        for id in &d.start {
            let g = gs.iter_mut().find(|g| g.id == *id).unwrap();
            g.status = GroupStatus::Running;
            g.counts.running += g.counts.scheduled;
            g.counts.scheduled = 0;
        }
        for (id, s) in &d.group_status {
            gs.iter_mut().find(|g| g.id == *id).unwrap().status = *s;
        }
    }

    proptest! {
        #[test]
        fn evaluation_never_repeats_itself_and_reaches_a_fixpoint(mut gs in arb_rollout()) {
            // Re-evaluating after applying a decision never starts a started group again nor
            // touches a group it already finished; with no new reports the chain settles.
            let n = gs.len();
            let mut started = std::collections::BTreeSet::new();
            let mut settled = false;
            for _ in 0..=n + 1 {
                let d = evaluate(&gs, false, false);
                for id in &d.start {
                    prop_assert!(started.insert(*id), "group {id} started twice");
                }
                for (id, _) in &d.group_status {
                    let g = gs.iter().find(|g| g.id == *id).unwrap();
                    prop_assert!(!g.status.is_terminal());
                }
                if d.start.is_empty() && d.group_status.is_empty() {
                    settled = true;
                    break;
                }
                apply(&mut gs, &d);
            }
            prop_assert!(settled);
        }

        #[test]
        fn no_group_starts_before_its_parent_condition(gs in arb_rollout()) {
            let d = evaluate(&gs, false, false);
            for id in &d.start {
                let g = gs.iter().find(|g| g.id == *id).unwrap();
                prop_assert_eq!(g.status, GroupStatus::Scheduled);
                if let Some(p) = g.parent {
                    let parent = gs.iter().find(|x| x.id == p).unwrap();
                    let ok = parent.counts.open(false) == 0
                        || success_met(&parent.success_expression, parent.counts.finished, parent.counts.total());
                    prop_assert!(parent.status == GroupStatus::Running && ok);
                    prop_assert!(!error_met(ErrorKind::Threshold,
                        &parent.error.as_ref().unwrap().1, parent.counts.error, parent.counts.total()));
                }
            }
        }

        #[test]
        fn terminal_groups_never_change(gs in arb_rollout()) {
            let d = evaluate(&gs, false, false);
            for (id, _) in &d.group_status {
                let g = gs.iter().find(|g| g.id == *id).unwrap();
                prop_assert!(!g.status.is_terminal());
            }
        }

        #[test]
        fn auto_split_covers_every_target(total in 0i64..100_000, groups in 1usize..500) {
            let sizes = auto_split_sizes(total, groups);
            prop_assert_eq!(sizes.len(), groups);
            prop_assert_eq!(sizes.iter().sum::<i64>(), total);
            prop_assert!(sizes.iter().all(|s| *s >= 0));
        }

        #[test]
        fn progress_buckets_sum_to_total(sch in 0i64..50, run in 0i64..50, dl in 0i64..50,
                                         fin in 0i64..50, err in 0i64..50, can in 0i64..50,
                                         extra in 0i64..50, dlo in any::<bool>()) {
            let c = Counts { scheduled: sch, running: run, downloaded: dl, finished: fin, error: err, canceled: can };
            let p = c.buckets(c.total() + extra, dlo);
            prop_assert_eq!(p.notstarted + p.scheduled + p.running + p.finished + p.error + p.cancelled,
                            c.total() + extra);
        }
    }
}
