//! What a rollout and its deployment groups are at a moment (rollouts.md §2): the typed states,
//! the entities as the engine and the API see them, and the per-group action counters.
//!
//! [`RolloutStatus`] and [`GroupState`] are the stored names (and hawkBit's REST names);
//! [`RolloutState`] is the rollout's state with the data that belongs to it.

use std::fmt;

use super::spec::{Conditions, Expr};
use crate::domain::action::ActionType;
use crate::domain::ids::{DsId, GroupId, RolloutId, TenantId};
use crate::domain::names::named_enum;

named_enum! {
    /// Rollout states by name (§2.1).
    pub enum RolloutStatus {
        Creating = "CREATING",
        Ready = "READY",
        Paused = "PAUSED",
        Starting = "STARTING",
        Stopped = "STOPPED",
        Running = "RUNNING",
        Finished = "FINISHED",
        Deleting = "DELETING",
        Deleted = "DELETED",
        WaitingForApproval = "WAITING_FOR_APPROVAL",
        ApprovalDenied = "APPROVAL_DENIED",
        Stopping = "STOPPING",
    }
}

/// When the executor has work for a rollout in a given status: the one definition that both
/// [`super::machine::has_work`] and the store's work query (`store::rollouts::with_work`) follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkRule {
    /// Always: filling, scheduling, activation and evaluation, stopping, deleting.
    Always,
    /// When `startAt` is due.
    StartDue,
    /// While a running group still has SCHEDULED actions (a group that started before a pause
    /// still gets all its actions activated).
    ActivationPending,
    /// Never: the rollout waits for an operator, or is done.
    Never,
}

impl RolloutStatus {
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

    /// When the executor has work in this status (§2.3).
    pub fn work_rule(self) -> WorkRule {
        match self {
            Self::Creating | Self::Starting | Self::Running | Self::Stopping | Self::Deleting => {
                WorkRule::Always
            }
            Self::Ready => WorkRule::StartDue,
            Self::Paused => WorkRule::ActivationPending,
            Self::WaitingForApproval
            | Self::ApprovalDenied
            | Self::Stopped
            | Self::Finished
            | Self::Deleted => WorkRule::Never,
        }
    }
}

impl fmt::Display for RolloutStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_db())
    }
}

/// A rollout's state with the data that belongs to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolloutState {
    /// Groups are being filled with members (§3.5).
    Creating,
    /// Filled; an approver must decide (§5).
    WaitingForApproval,
    ApprovalDenied,
    /// Filled (and approved); starts at `start_at` when one is set (§4.6).
    Ready {
        start_at: Option<i64>,
    },
    /// SCHEDULED actions are being created for every static group (§4.6 A).
    Starting,
    /// Groups run; a dynamic rollout also enrols new targets, throttled after an enrolment
    /// that found nothing at `idle_since` (§3.7).
    Running {
        idle_since: Option<i64>,
    },
    Paused,
    /// Open actions are being cancelled (§6.3).
    Stopping,
    Stopped,
    Finished,
    /// Actions are being removed before the rollout goes (§6.4).
    Deleting,
    Deleted,
}

impl RolloutState {
    pub fn status(self) -> RolloutStatus {
        use RolloutStatus as S;
        match self {
            Self::Creating => S::Creating,
            Self::WaitingForApproval => S::WaitingForApproval,
            Self::ApprovalDenied => S::ApprovalDenied,
            Self::Ready { .. } => S::Ready,
            Self::Starting => S::Starting,
            Self::Running { .. } => S::Running,
            Self::Paused => S::Paused,
            Self::Stopping => S::Stopping,
            Self::Stopped => S::Stopped,
            Self::Finished => S::Finished,
            Self::Deleting => S::Deleting,
            Self::Deleted => S::Deleted,
        }
    }

    /// The state of a stored status with its columns.
    pub fn from_parts(
        status: RolloutStatus,
        start_at: Option<i64>,
        idle_since: Option<i64>,
    ) -> Self {
        use RolloutStatus as S;
        match status {
            S::Creating => Self::Creating,
            S::WaitingForApproval => Self::WaitingForApproval,
            S::ApprovalDenied => Self::ApprovalDenied,
            S::Ready => Self::Ready { start_at },
            S::Starting => Self::Starting,
            S::Running => Self::Running { idle_since },
            S::Paused => Self::Paused,
            S::Stopping => Self::Stopping,
            S::Stopped => Self::Stopped,
            S::Finished => Self::Finished,
            S::Deleting => Self::Deleting,
            S::Deleted => Self::Deleted,
        }
    }

    /// No event changes this state any more.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Deleted)
    }

    /// Done with its devices: only deletion (and renaming, and a retry rollout of a finished
    /// one) is left.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Finished | Self::Stopped | Self::Deleted)
    }
}

named_enum! {
    /// Deployment group states (§2.4).
    pub enum GroupState {
        Creating = "CREATING",
        Ready = "READY",
        Scheduled = "SCHEDULED",
        Running = "RUNNING",
        Finished = "FINISHED",
        Error = "ERROR",
    }
}

/// The stored name of [`GroupState`], as other modules and tests know it.
pub type GroupStatus = GroupState;

impl GroupState {
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Finished | Self::Error)
    }

    /// Started at some point (the groups resume and trigger-next look back on).
    pub fn has_started(self) -> bool {
        !matches!(self, Self::Scheduled | Self::Ready | Self::Creating)
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

/// Who did something and when (the audit columns every entity has).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Audit {
    pub created_at: i64,
    pub created_by: String,
    pub last_modified_at: i64,
    pub last_modified_by: String,
}

/// The template dynamic groups are appended from (§3.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub suffix: String,
    /// Targets per dynamic group; `None`: the size of the last static group.
    pub count: Option<i64>,
}

/// A rollout as the engine and the API see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Rollout {
    pub id: RolloutId,
    pub tenant: TenantId,
    pub name: String,
    pub description: Option<String>,
    pub target_filter: String,
    /// A retry rollout enrols the targets that failed in this one instead of a filter (§3.8).
    pub retry_of: Option<RolloutId>,
    pub ds: DsId,
    pub ds_name: String,
    pub ds_version: String,
    /// The set's type (targets of incompatible types are left out, §3.2).
    pub ds_type: i64,
    pub state: RolloutState,
    pub action_type: ActionType,
    pub forced_time: i64,
    pub start_at: Option<i64>,
    pub weight: i32,
    pub total_targets: i64,
    pub groups_created: i32,
    pub deleted: bool,
    /// Dynamic rollouts keep enrolling matching targets (§3.7).
    pub dynamic: Option<Template>,
    /// Rollout-level conditions: what dynamic groups appended later inherit.
    pub conditions: Conditions,
    pub confirmation_required: bool,
    /// The creator holds APPROVE_ROLLOUT: approval is implicit (§5).
    pub creator_may_approve: bool,
    pub approval_decided_by: Option<String>,
    pub approval_remark: Option<String>,
    pub audit: Audit,
}

impl Rollout {
    pub fn download_only(&self) -> bool {
        self.action_type == ActionType::DownloadOnly
    }

    pub fn is_dynamic(&self) -> bool {
        self.dynamic.is_some()
    }

    /// Progress (§8) from its groups' counters.
    pub fn progress(&self, groups: &[Group]) -> Progress {
        let mut c = Counts::default();
        for g in groups {
            c.add(&g.counts);
        }
        c.buckets(self.total_targets, self.download_only())
    }
}

/// A deployment group with its counters.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub id: GroupId,
    pub rollout: RolloutId,
    pub parent: Option<GroupId>,
    pub name: String,
    pub description: Option<String>,
    pub state: GroupState,
    pub dynamic: bool,
    pub conditions: Conditions,
    pub total_targets: i64,
    /// Empty: every target of the rollout's filter.
    pub target_filter: String,
    /// Of a static group its share in percent; of a dynamic group its planned size.
    pub target_percentage: f32,
    pub confirmation_required: bool,
    /// Members a static group is filled up to, fixed when its filling begins (§3.5).
    pub planned_size: Option<i64>,
    pub counts: Counts,
    pub audit: Audit,
}

impl Group {
    /// Planned size of a dynamic group (its `targetPercentage`).
    pub fn planned(&self) -> i64 {
        self.target_percentage as i64
    }

    pub fn has_filter(&self) -> bool {
        !self.target_filter.trim().is_empty()
    }

    /// Progress of this group (§8).
    pub fn progress(&self, download_only: bool) -> Progress {
        self.counts.buckets(self.total_targets, download_only)
    }

    /// The success expression as the group's condition states it.
    pub fn success_threshold(&self) -> &Expr {
        &self.conditions.success.threshold
    }
}
