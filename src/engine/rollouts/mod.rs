//! Rollout use cases (rollouts.md §3–§6), the engine as the one interpreter of
//! `domain::rollout::machine`: every change of a rollout is an event stepped through the
//! machine, whose commands [`effects`] performs in the same transaction.
//!
//! * this module: the executor (finds rollouts with work, runs one bounded step each) and the
//!   event-driven cascade ([`Engine::advance_rollouts`], inside the transaction that records
//!   status reports: the report that crosses a threshold starts the next group);
//! * [`create`]: creation and retry; [`operate`]: the operator operations;
//! * [`effects`]: commands → store calls and outbox rows; [`filling`] and [`activation`]: the
//!   chunked units of work behind them; [`approval`]: the approval webhook's delivery.
//!
//! Concurrency: every writer of a rollout — API operation, executor step, status-report batch —
//! first locks the rollout row (`FOR UPDATE`, in rollout id order), so one rollout is advanced
//! by exactly one transaction at a time across instances, and the group counters it reads are
//! a consistent snapshot.

pub mod activation;
pub mod approval;
pub mod create;
pub mod effects;
pub mod filling;
pub mod operate;

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgConnection;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::config_keys::{self, flag};
use super::{Engine, EngineError};
use crate::domain::ids::{RolloutId, TenantId};
use crate::domain::rollout::{Event, RolloutStatus};
use crate::store::outbox::Pending;
use crate::store::rollouts as store;
use crate::store::{StoreError, tenants};

pub use crate::domain::rollout::plan::{
    GroupSpec,
    limits::{MAX_GROUPS, MAX_TARGETS_PER_GROUP},
};
pub use crate::domain::rollout::spec::{ActSpec, CondSet, CondSpec};
pub use create::CreateRollout;

/// Quotas and chunk sizes (rollouts.md §3.6, §10.3).
pub mod limits {
    pub use crate::domain::rollout::plan::limits::*;
    /// Members added to a group per transaction.
    pub const FILL_CHUNK: i64 = 50000;
    /// SCHEDULED actions created per transaction.
    pub const SCHEDULE_CHUNK: i64 = 20000;
    /// Actions activated per transaction by the executor.
    pub const ACTIVATE_CHUNK: i64 = 1000;
    /// Actions activated inline by the transaction that starts a group (the rest follows from
    /// the executor right after commit): keeps status ingestion fast and the first message early.
    pub const ACTIVATE_INLINE: i64 = 200;
    /// Actions deleted or cancelled per transaction on stop/delete.
    pub const STOP_CHUNK: i64 = 5000;
    /// Targets enrolled per dynamic step.
    pub const ENROL_CHUNK: i64 = 5000;
    /// Throttle after an empty dynamic enrolment (`dynamicRolloutsMinInvolvePeriodMS`).
    pub const ENROL_IDLE_MS: i64 = 60000;
}

/// The tenant flags a rollout step needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Flags {
    pub multi: bool,
    pub batch: bool,
    pub autoclose: bool,
    pub confirmation_flow: bool,
    pub approval: bool,
    pub implicit_lock: bool,
    /// `action.cleanup.onQuotaHit.percent`: room made on targets at their action quota.
    pub purge_percent: i64,
}

async fn flags(conn: &mut PgConnection, tenant: TenantId) -> Result<Flags, StoreError> {
    let cfg = tenants::configs(conn, tenant).await?;
    Ok(Flags {
        multi: flag(&cfg, config_keys::MULTI_ASSIGNMENTS),
        batch: flag(&cfg, config_keys::BATCH_ASSIGNMENTS),
        autoclose: flag(&cfg, config_keys::AUTOCLOSE),
        confirmation_flow: flag(&cfg, config_keys::CONFIRMATION_FLOW),
        approval: flag(&cfg, config_keys::ROLLOUT_APPROVAL),
        implicit_lock: flag(&cfg, config_keys::IMPLICIT_LOCK),
        purge_percent: config_keys::number(&cfg, config_keys::PURGE_ON_QUOTA_HIT),
    })
}

/// The clock the machine reads (ms since the epoch): this host's, which the database server
/// shares in every deployment we support (`startAt` is compared with it).
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// What happened in one executor step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Did some work; there may be more right away.
    More,
    /// Nothing to do now.
    Idle,
    /// Another transaction holds the rollout (a report batch, another instance): try again soon.
    Busy,
}

impl Engine {
    /// Inside a status-report transaction, after the reports were applied: step the counter
    /// change of the running rollouts among `rollouts` and act at once — start the next group,
    /// finish groups, pause on errors, finish the rollout (§4.2 [ours: event-driven]).
    ///
    /// The rollout rows are taken last and only if free (`SKIP LOCKED`): a report batch never
    /// waits for a rollout, so it neither stalls behind an executor step nor starves it (the
    /// executor, which locks a rollout before its actions, can then never deadlock with it).
    /// A rollout held elsewhere is evaluated by the executor, woken after this commit.
    pub(super) async fn advance_rollouts(
        &self,
        conn: &mut PgConnection,
        rollouts: &[RolloutId],
        out: &mut Vec<Pending>,
    ) -> Result<(), EngineError> {
        let locked = store::try_lock_many(conn, rollouts).await?;
        if locked.len() < rollouts.len() {
            self.kick_rollouts();
        }
        for mut r in locked {
            if r.state.status() != RolloutStatus::Running {
                continue;
            }
            let mut groups = store::groups(conn, r.id).await?;
            let cfg = flags(conn, r.tenant).await?;
            let run = effects::Run::system(cfg);
            let o = self
                .interpret(conn, &mut r, &mut groups, Event::CountersChanged, &run, out)
                .await?;
            if o.progressed {
                self.kick_rollouts();
            }
        }
        Ok(())
    }

    fn kick_rollouts(&self) {
        self.rollout_kick
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// One executor step for a rollout: lock it (skipping it when another worker holds it), do
    /// one bounded unit of work (and what follows from it), commit.
    async fn step(&self, id: RolloutId) -> Result<Step, EngineError> {
        let started = std::time::Instant::now();
        let mut tx = self.pool.begin().await?;
        let Some(mut r) = store::try_lock(&mut tx, id).await? else {
            tracing::debug!(rollout = %id, "rollout step: busy");
            return Ok(Step::Busy);
        };
        let mut out = Vec::new();
        let cfg = flags(&mut tx, r.tenant).await?;
        let mut groups = store::groups(&mut tx, r.id).await?;
        let run = effects::Run::system(cfg);
        let o = self
            .interpret(&mut tx, &mut r, &mut groups, Event::Tick, &run, &mut out)
            .await?;
        let messages = out.len();
        self.commit_with_outbox(tx, out).await?;
        self.growth_committed(id);
        o.after_commit(self);
        let step = if o.progressed && !o.gone {
            Step::More
        } else {
            Step::Idle
        };
        tracing::debug!(
            rollout = %id,
            ?step,
            messages,
            elapsed_us = started.elapsed().as_micros() as u64,
            "rollout step"
        );
        Ok(step)
    }

    /// Run every rollout with work until it has none. Returns the steps taken and whether some
    /// rollout was busy elsewhere (worth another pass soon).
    pub async fn run_rollout_steps(&self) -> Result<(usize, bool), EngineError> {
        let ids = {
            let mut conn = self.pool.acquire().await?;
            store::with_work(&mut conn).await?
        };
        let mut steps = 0;
        let mut busy = false;
        for id in ids {
            loop {
                match self.step(id).await {
                    Ok(Step::More) => steps += 1,
                    Ok(Step::Idle) => break,
                    Ok(Step::Busy) => {
                        busy = true;
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(rollout = %id, error.message = %e, "rollout step failed");
                        break;
                    }
                }
            }
        }
        Ok((steps, busy))
    }

    /// How long the executor may sleep: until the earliest wake-up a step asked for, at most
    /// `tick`.
    fn executor_pause(&self, tick: Duration) -> Duration {
        let next = self
            .rollout_wake_at
            .swap(i64::MAX, std::sync::atomic::Ordering::Relaxed);
        if next == i64::MAX {
            return tick;
        }
        let wait = (next - now_ms()).max(0) as u64;
        Duration::from_millis(wait).min(tick)
    }

    /// Ask the executor to look again at `at` (ms).
    pub(super) fn wake_rollouts_at(&self, at: i64) {
        self.rollout_wake_at
            .fetch_min(at, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The rollout executor: runs steps whenever woken (API operations, reports that started a
/// group) and on a timer for `startAt`, throttled dynamic enrolment and missed wake-ups; soon
/// again when a rollout was held by another transaction.
pub async fn run_executor(engine: Arc<Engine>, tick: Duration, token: CancellationToken) {
    let wake = engine.rollout_wake.clone();
    run_woken(token, wake, async move || {
        match engine.run_rollout_steps().await {
            Ok((_, true)) => Duration::from_millis(20).min(tick),
            Ok(_) => engine.executor_pause(tick),
            Err(e) => {
                tracing::warn!(error.message = %e, "rollout executor pass failed");
                tick
            }
        }
    })
    .await;
}

/// Run `pass` until `token` is cancelled; after each one wait for `wake`, for the pause it
/// returned, or for the cancellation.
pub(super) async fn run_woken(
    token: CancellationToken,
    wake: Arc<Notify>,
    mut pass: impl AsyncFnMut() -> Duration,
) {
    loop {
        let pause = pass().await;
        tokio::select! {
            _ = token.cancelled() => return,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(pause) => {}
        }
    }
}
