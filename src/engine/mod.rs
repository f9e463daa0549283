//! Use cases. Everything that changes state goes through here: a batch of inbound DMF messages
//! ([`Engine::handle_batch`]), assignments and cancellations from the Management API, tenant
//! configuration. Each runs in one transaction that also writes the outbox rows of the messages
//! it causes; [`dispatch`] renders those rows when the publisher drains them, or — for the
//! deployments a rollout starts — inside the producing transaction, so that they reach the
//! publisher's fast lane right after the commit ([`Engine::commit_with_outbox`]).
//!
//! Never here: lapin or axum types, SQL text.

pub mod action_ops;
pub mod assignment;
pub mod auto_assignment;
pub mod config_keys;
pub mod dispatch;
mod inbound;
pub mod invalidation;
pub mod rollouts;
pub mod timers;
pub mod typed_config;

use std::collections::HashMap;
use std::sync::Arc;

use sqlx::{PgPool, Postgres, Transaction};
use tokio::sync::{Mutex, Notify};

use crate::dmf::envelope::{Inbound, Outbound};
use crate::domain::Invalid;
use crate::domain::ids::{ActionId, GroupId, RolloutId, TenantId, TenantName};
use crate::store::outbox::{self, Pending};
use crate::store::statistics::Table;
use crate::store::{self, StoreError, tenants};

/// Most messages waiting in the fast lane (a few MB); beyond it, rows wait for the regular
/// drain. The publisher takes up to a round's worth at a time, so the cap is only reached while
/// it is not running (broker away).
const FAST_LANE_CAP: usize = 5_000;

/// A use case's failure.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// The operation is not allowed in the entity's current state.
    #[error("{0}")]
    State(String),
    #[error("{0}")]
    MultiAssignment(String),
    #[error("{0}")]
    SetInvalid(String),
    #[error("{0}")]
    SetIncomplete(String),
    #[error("{0}")]
    ConfigLocked(String),
    /// A rollout rule refused the request (a rule broken, a quota, read-only, illegal state).
    #[error(transparent)]
    Refused(#[from] crate::domain::rollout::Refusal),
    /// A bad target filter query.
    #[error(transparent)]
    Query(crate::domain::rsql::RsqlError),
    /// An auto-assignment operation its status does not allow.
    #[error(transparent)]
    AutoAssignState(#[from] crate::domain::auto_assignment::IllegalState),
    /// Automatic confirmation switched on for a target that has it on.
    #[error("{0}")]
    AutoConfirmActive(String),
    /// TIMEFORCED (or no known type) for an auto-assignment.
    #[error("{0}")]
    AutoAssignActionType(String),
    /// A configuration value of the wrong type or form.
    #[error("{0}")]
    ConfigInvalid(String),
    /// Actions the tenant does not allow to delete.
    #[error("{0}")]
    NotDeletable(String),
    /// A manual assignment to targets whose type does not accept the set's type.
    #[error("{0}")]
    TargetTypeIncompatible(String),
}

impl From<sqlx::Error> for EngineError {
    fn from(e: sqlx::Error) -> Self {
        EngineError::Store(e.into())
    }
}

/// One inbound message of a batch.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub message: Inbound,
    /// Stable digest of the message, for redelivery dedupe.
    pub digest: Vec<u8>,
    /// The broker redelivered it: it may have been applied before a crash.
    pub redelivered: bool,
}

/// What became of one inbound message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Applied (or deliberately ignored): acknowledge.
    Done,
    /// Permanently refused: dead-letter with this reason.
    Reject(String),
}

/// Settings the engine needs.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// The vhost of the AMQP connection, for target addresses (§1.5).
    pub vhost: String,
    /// Create tenants on their first DMF message.
    pub implicit_tenants: bool,
    /// `DMF_APPROVAL_WEBHOOK`.
    pub approval_webhook: Option<String>,
    /// Base URL for links handed to others (webhook).
    pub public_url: String,
    /// Throttle of dynamic enrolment after an empty pass (ms).
    pub enrol_idle_ms: i64,
    /// `maxActionsPerTarget` (rollouts.md §3.6): a rollout leaves out targets that have this
    /// many actions.
    pub max_actions_per_target: i64,
    /// `maxTargetsPerAutoAssignment` at creation (0 = no limit).
    pub max_targets_per_auto_assignment: i64,
    /// `maxTargetDistributionSetAssignmentsPerManualAssignment`: assignments one request may
    /// make (0 = no limit).
    pub max_targets_per_manual_assignment: i64,
}

/// Groups whose activation hint is remembered (a group needs one only while it activates).
const ACTIVATION_HINTS_CAP: usize = 10_000;

pub struct Engine {
    pool: PgPool,
    settings: EngineSettings,
    /// Known tenants, canonical name → id. Tenants are never deleted, so entries never go stale.
    tenants: Mutex<HashMap<String, TenantId>>,
    /// Wakes the in-process outbox publisher right after a commit that wrote outbox rows.
    outbox_wake: Arc<Notify>,
    /// Names this process in outbox notifications.
    instance: String,
    /// The fast lane: committed outbox rows that were rendered in their transaction, with their
    /// messages, for the in-process publisher to send without a claim-and-render round.
    fresh: std::sync::Mutex<Vec<(i64, Outbound)>>,
    /// Inbound messages dead-lettered since start.
    dead_letters: std::sync::atomic::AtomicU64,
    /// Wakes the rollout executor (API operations, groups started by reports).
    rollout_wake: Arc<Notify>,
    /// A transaction left work for the executor; wake it after the commit.
    rollout_kick: std::sync::atomic::AtomicBool,
    /// The earliest time (ms) a rollout step asked to be looked at again (`i64::MAX`: none).
    rollout_wake_at: std::sync::atomic::AtomicI64,
    /// Wakes the approval notice deliverer after a commit that wrote a notice.
    approval_wake: Arc<Notify>,
    /// Wakes the auto-assignment worker (one created, started or resumed).
    auto_assign_wake: Arc<Notify>,
    /// Client of outgoing webhooks.
    http: reqwest::Client,
    /// State of the maintenance-window push sweep ([`timers`]).
    window_sweep: timers::WindowSweep,
    /// Rows this process added to the hot tables since the last statistics refresh.
    grown: std::sync::Mutex<HashMap<Table, i64>>,
    /// Rows a rollout's open transaction added, moved to `grown` when it commits: an ANALYZE
    /// beside the writing transaction would not count them (and take the table for empty).
    growing: std::sync::Mutex<HashMap<RolloutId, Vec<(Table, i64)>>>,
    /// Wakes the statistics refresh once `grown` is worth a look.
    statistics_wake: Arc<Notify>,
    /// Per group, an action id below which no SCHEDULED action is expected: activation pages
    /// through a group in id order, so each chunk starts where the last one ended instead of
    /// stepping over every action activated before. Only a hint (a chunk that rolled back moved
    /// it too far; activation then starts over from the beginning).
    activation_hint: std::sync::Mutex<HashMap<GroupId, ActionId>>,
}

impl Engine {
    pub fn new(pool: PgPool, settings: EngineSettings) -> Self {
        Self {
            pool,
            settings,
            tenants: Mutex::new(HashMap::new()),
            outbox_wake: Arc::new(Notify::new()),
            instance: uuid::Uuid::new_v4().to_string(),
            fresh: Default::default(),
            dead_letters: Default::default(),
            rollout_wake: Arc::new(Notify::new()),
            rollout_kick: Default::default(),
            rollout_wake_at: std::sync::atomic::AtomicI64::new(i64::MAX),
            approval_wake: Arc::new(Notify::new()),
            auto_assign_wake: Arc::new(Notify::new()),
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            window_sweep: Default::default(),
            grown: Default::default(),
            growing: Default::default(),
            statistics_wake: Arc::new(Notify::new()),
            activation_hint: Default::default(),
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Wake the rollout executor now.
    pub fn wake_rollouts(&self) {
        self.rollout_wake.notify_one();
    }

    pub fn outbox_wake(&self) -> Arc<Notify> {
        self.outbox_wake.clone()
    }

    /// Write `out` to the outbox in `tx` and commit; then hand the rendered messages among them
    /// to the fast lane and wake the publisher.
    pub(crate) async fn commit_with_outbox(
        &self,
        mut tx: Transaction<'_, Postgres>,
        out: Vec<Pending>,
    ) -> Result<(), StoreError> {
        let ids = outbox::enqueue(&mut tx, &self.instance, &out).await?;
        tx.commit().await?;
        if out.is_empty() {
            return Ok(());
        }
        {
            let mut fresh = self.fresh.lock().unwrap_or_else(|e| e.into_inner());
            for (id, p) in ids.into_iter().zip(out) {
                if let Pending::Message(m) = p
                    && fresh.len() < FAST_LANE_CAP
                {
                    fresh.push((id, m));
                }
            }
        }
        self.outbox_wake.notify_one();
        Ok(())
    }

    /// What this process's outbox notifications carry.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Whether the fast lane holds messages.
    pub fn has_fresh(&self) -> bool {
        !self
            .fresh
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }

    /// Take up to `max` messages of the fast lane, oldest first.
    pub fn take_fresh(&self, max: usize) -> Vec<(i64, Outbound)> {
        let mut fresh = self.fresh.lock().unwrap_or_else(|e| e.into_inner());
        let n = max.min(fresh.len());
        fresh.drain(..n).collect()
    }

    pub fn count_dead_letter(&self) {
        self.dead_letters
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn dead_letter_count(&self) -> u64 {
        self.dead_letters.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub async fn database_up(&self) -> bool {
        store::ping(&self.pool).await
    }

    /// Make sure the configured tenants exist (at start).
    pub async fn ensure_tenants(&self, names: &[TenantName]) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        let mut cache = self.tenants.lock().await;
        for name in names {
            let id = tenants::ensure(&mut conn, name).await?;
            cache.insert(name.as_str().to_owned(), id);
        }
        Ok(())
    }

    /// The tenant of an API user (created with its default types on first use).
    pub async fn tenant_for_api(&self, name: &TenantName) -> Result<TenantId, StoreError> {
        if let Some(id) = self.tenants.lock().await.get(name.as_str()) {
            return Ok(*id);
        }
        let mut conn = self.pool.acquire().await?;
        let id = tenants::ensure(&mut conn, name).await?;
        self.tenants
            .lock()
            .await
            .insert(name.as_str().to_owned(), id);
        Ok(id)
    }

    /// Resolve the tenant of a DMF message: known tenants only, unless implicit creation is on.
    async fn tenant_for_dmf(
        &self,
        conn: &mut sqlx::PgConnection,
        raw: &str,
    ) -> Result<Result<(TenantId, TenantName), String>, StoreError> {
        let name = match TenantName::parse(raw) {
            Ok(n) => n,
            Err(e) => return Ok(Err(e.0)),
        };
        if let Some(id) = self.tenants.lock().await.get(name.as_str()) {
            return Ok(Ok((*id, name)));
        }
        let id = if self.settings.implicit_tenants {
            Some(tenants::ensure(conn, &name).await?)
        } else {
            tenants::find(conn, &name).await?
        };
        match id {
            Some(id) => {
                self.tenants
                    .lock()
                    .await
                    .insert(name.as_str().to_owned(), id);
                Ok(Ok((id, name)))
            }
            None => Ok(Err("unknown tenant".to_owned())),
        }
    }

    /// Apply a batch of inbound messages in one transaction and say what became of each.
    ///
    /// Status reports are applied set-based (a run of consecutive reports costs a handful of
    /// statements); other messages one by one inside a savepoint, so a refused message leaves no
    /// trace. A store error aborts the whole batch: the caller retries transient ones and
    /// isolates the culprit of permanent ones by retrying message by message.
    pub async fn handle_batch(&self, batch: &[Incoming]) -> Result<Vec<Verdict>, StoreError> {
        let mut verdicts = vec![Verdict::Done; batch.len()];
        let mut tx = self.pool.begin().await?;

        let redelivered: Vec<Vec<u8>> = batch
            .iter()
            .filter(|m| m.redelivered)
            .map(|m| m.digest.clone())
            .collect();
        let seen = store::inbox::seen(&mut tx, &redelivered).await?;
        let skip: Vec<bool> = batch
            .iter()
            .map(|m| m.redelivered && seen.contains(&m.digest))
            .collect();
        if skip.iter().any(|s| *s) {
            tracing::info!(
                count = skip.iter().filter(|s| **s).count(),
                "skipping redelivered messages that were already applied"
            );
        }

        let mut outbox = Vec::new();
        // Targets that registered or changed: the auto-assignments they now match assign them
        // in this transaction.
        let mut touched = Vec::new();
        let mut i = 0;
        while i < batch.len() {
            if skip[i] {
                i += 1;
                continue;
            }
            if matches!(batch[i].message, Inbound::UpdateActionStatus { .. }) {
                let start = i;
                while i < batch.len()
                    && !skip[i]
                    && matches!(batch[i].message, Inbound::UpdateActionStatus { .. })
                {
                    i += 1;
                }
                let run: Vec<&Inbound> = batch[start..i].iter().map(|m| &m.message).collect();
                let run_verdicts = self.apply_reports(&mut tx, &run, &mut outbox).await?;
                verdicts[start..i].clone_from_slice(&run_verdicts);
            } else {
                let mut sp = sqlx::Connection::begin(&mut *tx).await?;
                let mut pending = Vec::new();
                let mut changed = Vec::new();
                match self
                    .apply_one(&mut sp, &batch[i].message, &mut pending, &mut changed)
                    .await?
                {
                    Verdict::Done => {
                        sp.commit().await?;
                        outbox.append(&mut pending);
                        touched.append(&mut changed);
                    }
                    reject => {
                        sp.rollback().await?;
                        verdicts[i] = reject;
                    }
                }
                i += 1;
            }
        }
        self.auto_assign_targets(&mut tx, &touched, &mut outbox)
            .await?;
        let digests: Vec<Vec<u8>> = batch.iter().map(|m| m.digest.clone()).collect();
        store::inbox::record(&mut tx, &digests).await?;
        self.commit_with_outbox(tx, outbox).await?;
        if self
            .rollout_kick
            .swap(false, std::sync::atomic::Ordering::Relaxed)
        {
            self.rollout_wake.notify_one();
        }
        Ok(verdicts)
    }

    /// Note rows a step of `rollout` just wrote to a hot table, not yet committed.
    pub(crate) fn note_growth(&self, rollout: RolloutId, table: Table, rows: i64) {
        if rows <= 0 {
            return;
        }
        let mut growing = self.growing.lock().unwrap_or_else(|e| e.into_inner());
        growing.entry(rollout).or_default().push((table, rows));
    }

    /// After `rollout`'s transaction committed: its rows count, and a bulk write wakes the
    /// statistics refresh. (Rows of a transaction that rolled back count with its next commit;
    /// an early ANALYZE costs little.)
    pub(crate) fn growth_committed(&self, rollout: RolloutId) {
        let Some(rows) = self
            .growing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&rollout)
        else {
            return;
        };
        let bulk = {
            let mut grown = self.grown.lock().unwrap_or_else(|e| e.into_inner());
            let mut bulk = false;
            for (table, n) in rows {
                let total = grown.entry(table).or_default();
                *total += n;
                bulk |= *total >= store::statistics::CHANGED_MIN;
            }
            bulk
        };
        if bulk {
            self.statistics_wake.notify_one();
        }
    }

    fn activation_hint(&self, group: GroupId) -> ActionId {
        let hints = self
            .activation_hint
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        hints.get(&group).copied().unwrap_or(ActionId(0))
    }

    fn set_activation_hint(&self, group: GroupId, id: ActionId) {
        let mut hints = self
            .activation_hint
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if hints.len() >= ACTIVATION_HINTS_CAP && !hints.contains_key(&group) {
            hints.clear();
        }
        hints.insert(group, id);
    }

    pub fn statistics_wake(&self) -> Arc<Notify> {
        self.statistics_wake.clone()
    }

    /// ANALYZE the fast-growing tables whose planner statistics fell behind.
    pub async fn refresh_statistics(&self) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        let grown: Vec<(Table, i64)> = self
            .grown
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .collect();
        let analyzed = store::statistics::refresh(&mut conn, &grown).await?;
        if !analyzed.is_empty() {
            tracing::debug!(tables = ?analyzed, "planner statistics refreshed");
        }
        Ok(())
    }

    /// Forget inbox digests older than an hour.
    pub async fn purge_inbox(&self) -> Result<u64, StoreError> {
        let mut conn = self.pool.acquire().await?;
        store::inbox::purge(&mut conn, 3_600_000).await
    }
}
