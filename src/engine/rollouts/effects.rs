//! The only code that turns the rollout machine's commands into store calls and outbox rows.
//! [`Engine::interpret`] steps an event, performs the transition's commands in order inside the
//! caller's transaction, feeds the outcome of each unit of work back into the machine as the
//! next event, and finally persists the state the machine chose.

use std::collections::VecDeque;

use sqlx::PgConnection;

use super::activation::lane_limit;
use super::{Flags, limits, now_ms};
use crate::domain::ids::GroupId;
use crate::domain::rollout::machine::{self, Command, Event, Facts, Lane};
use crate::domain::rollout::{Group, Rollout, RolloutState};
use crate::engine::{Engine, EngineError};
use crate::store::approvals;
use crate::store::outbox::Pending;
use crate::store::rollouts as store;

/// Who acts and what the tenant has configured.
pub(crate) struct Run<'a> {
    /// `last_modified_by` of the changes: the operator, or "system".
    pub actor: &'a str,
    /// An approver's remark (approve, deny).
    pub remark: Option<&'a str>,
    pub cfg: Flags,
}

impl Run<'static> {
    pub fn system(cfg: Flags) -> Self {
        Run {
            actor: "system",
            remark: None,
            cfg,
        }
    }
}

/// What an interpretation did, for the caller to follow up after its commit.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Outcome {
    /// Some state changed or some work was done.
    pub progressed: bool,
    /// The rollout row is gone (hard delete).
    pub gone: bool,
    /// An approval notice was written: wake its deliverer after the commit.
    pub notice: bool,
    /// A group started with more actions than its inline chunk: the executor goes on.
    pub more: bool,
}

impl Outcome {
    /// Wake what must run after the commit.
    pub fn after_commit(&self, engine: &Engine) {
        if self.notice {
            engine.approval_wake.notify_one();
        }
        if self.more {
            engine.rollout_wake.notify_one();
        }
    }
}

impl Engine {
    /// Step `event` through the machine and perform what it decides (see the module doc).
    /// `r` and `groups` are kept current.
    pub(crate) async fn interpret(
        &self,
        conn: &mut PgConnection,
        r: &mut Rollout,
        groups: &mut Vec<Group>,
        event: Event,
        run: &Run<'_>,
        out: &mut Vec<Pending>,
    ) -> Result<Outcome, EngineError> {
        let mut o = Outcome::default();
        let mut events = VecDeque::from([event]);
        let mut stale = false;
        while let Some(event) = events.pop_front() {
            if stale {
                *groups = store::groups(conn, r.id).await?;
                stale = false;
            }
            let facts = Facts {
                groups,
                approval_enabled: run.cfg.approval,
                enrol_idle_ms: self.settings.enrol_idle_ms,
            };
            let from = r.state;
            let t = machine::step(r, &facts, event, now_ms())?;
            o.progressed |= t.is_progress(from);
            for c in &t.commands {
                let (follow, changed) = self.perform(conn, r, groups, c, run, out, &mut o).await?;
                stale |= changed;
                events.extend(follow);
            }
            if t.next != from && !o.gone {
                self.persist(conn, r, from, t.next, event, run).await?;
            }
            r.state = t.next;
        }
        Ok(o)
    }

    /// Write a new state, with a lifecycle log line.
    async fn persist(
        &self,
        conn: &mut PgConnection,
        r: &Rollout,
        from: RolloutState,
        next: RolloutState,
        event: Event,
        run: &Run<'_>,
    ) -> Result<(), EngineError> {
        if from.status() != next.status() {
            store::set_status(conn, r.id, next.status(), run.actor).await?;
            let (from, to) = (from.status(), next.status());
            if next == RolloutState::Paused && !matches!(event, Event::Operator(_)) {
                tracing::warn!(rollout = %r.id, %from, %to, "rollout paused by a group condition");
            } else {
                tracing::info!(rollout = %r.id, %from, %to, ?event, "rollout state");
            }
        }
        if let (RolloutState::Running { idle_since: a }, RolloutState::Running { idle_since: b }) =
            (from, next)
            && a != b
        {
            store::set_last_empty_enrolment(conn, r.id, b).await?;
        }
        Ok(())
    }

    /// Perform one command. Returns the event its outcome is (if any) and whether the groups
    /// must be read again before the next step.
    #[allow(clippy::too_many_arguments)]
    async fn perform(
        &self,
        conn: &mut PgConnection,
        r: &Rollout,
        groups: &mut [Group],
        c: &Command,
        run: &Run<'_>,
        out: &mut Vec<Pending>,
        o: &mut Outcome,
    ) -> Result<(Option<Event>, bool), EngineError> {
        let cfg = run.cfg;
        Ok(match c {
            Command::Fill { group } => {
                let (members, complete) = self.fill(conn, r, groups, *group).await?;
                let e = Event::Filled {
                    group: *group,
                    members,
                    complete,
                };
                (Some(e), true)
            }
            Command::MarkFilled { group, members } => {
                store::group_ready(conn, *group, *members).await?;
                (None, true)
            }
            Command::Schedule { group } => {
                let complete = self.schedule(conn, r, *group, cfg).await?;
                let e = Event::Scheduled {
                    group: *group,
                    complete,
                };
                (Some(e), true)
            }
            Command::Activate { group, lane } => {
                let g = find(groups, *group)?;
                let n = self.activate(conn, r, g, *lane, cfg, out).await?;
                if *lane == Lane::Start && n as i64 == lane_limit(*lane) {
                    // More to activate: the executor goes on right after this commit.
                    o.more = true;
                    self.kick_rollouts();
                }
                if *lane == Lane::Start && n > 0 {
                    tracing::info!(rollout = %r.id, group = %group, "group started");
                }
                (None, true)
            }
            Command::Enrol { group, want } => {
                let g = find(groups, *group)?;
                let count = self
                    .enrol(conn, r, g, (*want).min(limits::ENROL_CHUNK), cfg)
                    .await?;
                let e = Event::Enrolled {
                    group: *group,
                    count,
                };
                (Some(e), true)
            }
            Command::AppendDynamicGroup { state } => {
                self.append_dynamic_group(conn, r, groups, *state).await?;
                (Some(Event::GroupAppended), true)
            }
            Command::SetGroup { groups: ids, state } => {
                store::set_group_status(conn, ids, *state).await?;
                for g in groups.iter_mut().filter(|g| ids.contains(&g.id)) {
                    g.state = *state;
                }
                (None, false)
            }
            Command::Shrink { group, total } => {
                store::shrink_group(conn, *group, *total).await?;
                (None, true)
            }
            Command::CountTargets => {
                store::total_from_groups(conn, r.id).await?;
                (None, false)
            }
            Command::CancelOpen { force } => {
                (Some(self.cancel_open(conn, r, *force, out).await?), true)
            }
            Command::HardDelete => {
                store::hard_delete(conn, r.id).await?;
                tracing::info!(rollout = %r.id, "rollout deleted");
                o.gone = true;
                (None, false)
            }
            Command::RecordDecision => {
                store::decide(conn, r.id, run.actor, run.remark).await?;
                (None, false)
            }
            Command::NotifyApproval => {
                let body = self.approval_notice(conn, r).await?;
                if let Some(body) = body {
                    approvals::enqueue(conn, r.id, &body).await?;
                    o.notice = true;
                }
                (None, false)
            }
            Command::WithdrawApproval => {
                approvals::withdraw(conn, r.id).await?;
                (None, false)
            }
            Command::WakeAt(at) => {
                self.wake_rollouts_at(*at);
                (None, false)
            }
        })
    }
}

fn find(groups: &[Group], id: GroupId) -> Result<&Group, EngineError> {
    groups
        .iter()
        .find(|g| g.id == id)
        .ok_or_else(|| EngineError::NotFound(format!("rollout group {id} not found")))
}
