//! Auto-assignments (rollouts.md §1.4) performed: the Management API's use cases, the
//! event-driven match of targets that just registered or changed (in the transaction that
//! changed them), and the worker that starts due ones and takes running ones through the fleet
//! in bounded chunks, one transaction each. What a status allows is decided by
//! `domain::auto_assignment::step`.
//!
//! Never here: SQL text.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use serde_json::Value;
use sqlx::PgConnection;

use super::assignment::{AssignTarget, NewAssignment, check_usable_set};
use super::config_keys::{self, flag};
use super::inbound::now_ms;
use super::{Engine, EngineError};
use crate::domain::action::{ActionType, SERVER_PREFIX, validate_weight};
use crate::domain::auto_assignment::{self as domain, AutoAssignStatus, Event};
use crate::domain::ids::{DsId, TenantId};
use crate::domain::rollout::Refusal;
use crate::store::auto_assignments::{self as store, AutoAssignmentRow, NewAutoAssignment, Scope};
use crate::store::filter::{Entity, Filter};
use crate::store::outbox::Pending;
use crate::store::rollouts::{lock_set_implicitly, lock_set_row};
use crate::store::{Named, StoreError, target_filters, tenants};

/// Targets one transaction of a fleet pass assigns at most (hawkBit: 1,000 per transaction).
pub const PASS_CHUNK: i64 = 1000;

/// An auto-assignment as the API asks for it.
#[derive(Debug, Clone)]
pub struct CreateAutoAssignment {
    pub named: Named,
    pub query: String,
    pub ds: DsId,
    /// `None`: FORCED.
    pub action_type: Option<ActionType>,
    pub weight: Option<i64>,
    pub confirmation_required: bool,
    pub start_at: Option<i64>,
    /// The legacy API's filter this one belongs to.
    pub target_filter: Option<i64>,
}

/// The query as a target filter (400 when it is not one).
fn target_filter(query: &str) -> Result<Filter, EngineError> {
    Filter::parse(Entity::Target, query).map_err(EngineError::Query)
}

fn not_found(id: i64) -> EngineError {
    EngineError::NotFound(format!("auto assignment {id} not found"))
}

/// The history entry of an action an auto-assignment created: which one (hawkBit writes
/// "Auto assignment: <name>").
fn history_message(a: &AutoAssignmentRow) -> String {
    format!(
        "{SERVER_PREFIX}Assignment initiated by auto assignment '{}' (id {})",
        a.named.name, a.id
    )
}

impl Engine {
    /// Create an auto-assignment (`POST /rest/v1/autoassignments`): a valid, complete set
    /// (locked implicitly as a rollout would), an allowed action type, a target query, and no
    /// more matching targets now than `maxTargetsPerAutoAssignment`.
    pub async fn create_auto_assignment(
        &self,
        tenant: TenantId,
        req: CreateAutoAssignment,
        user: &str,
    ) -> Result<AutoAssignmentRow, EngineError> {
        let mut tx = self.pool.begin().await?;
        let row = self
            .insert_auto_assignment(&mut tx, tenant, req, user)
            .await?;
        tx.commit().await?;
        self.auto_assign_wake.notify_one();
        tracing::info!(tenant = %tenant, auto_assignment = row.id, ds = %row.ds_id,
            status = row.status.as_db(), "auto-assignment created");
        Ok(row)
    }

    /// Give a target filter an auto-assignment of its own (hawkBit 1.1's
    /// `POST /targetfilters/{id}/autoAssignDS`): it replaces the one the filter had, takes the
    /// filter's name and query and follows them when the filter changes.
    pub async fn link_filter_auto_assignment(
        &self,
        tenant: TenantId,
        filter: i64,
        mut req: CreateAutoAssignment,
        user: &str,
    ) -> Result<AutoAssignmentRow, EngineError> {
        let mut tx = self.pool.begin().await?;
        let f = target_filters::TABLE
            .lock(&mut tx, tenant, filter)
            .await?
            .ok_or_else(|| EngineError::NotFound(format!("target filter {filter} not found")))?;
        store::unlink_filter(&mut tx, tenant, filter).await?;
        req.named = Named {
            name: f.name,
            description: None,
        };
        req.query = f.query;
        req.target_filter = Some(filter);
        let row = self
            .insert_auto_assignment(&mut tx, tenant, req, user)
            .await?;
        tx.commit().await?;
        self.auto_assign_wake.notify_one();
        tracing::info!(tenant = %tenant, auto_assignment = row.id, filter, "filter auto-assignment set");
        Ok(row)
    }

    /// Validate and insert one in `tx`.
    async fn insert_auto_assignment(
        &self,
        tx: &mut PgConnection,
        tenant: TenantId,
        req: CreateAutoAssignment,
        user: &str,
    ) -> Result<AutoAssignmentRow, EngineError> {
        let action_type = req.action_type.unwrap_or(ActionType::Forced);
        if !domain::allowed_action_type(action_type) {
            return Err(EngineError::AutoAssignActionType(
                "The given action type for auto-assignment is invalid: allowed values are ['forced', 'soft', 'downloadonly']".into(),
            ));
        }
        let weight = validate_weight(req.weight)?;
        let filter = target_filter(&req.query)?;
        lock_set_row(&mut *tx, tenant, req.ds.0).await?;
        check_usable_set(&mut *tx, tenant, req.ds, "is incomplete").await?;
        let cfg = tenants::configs(&mut *tx, tenant).await?;
        let quota = self.settings.max_targets_per_auto_assignment;
        if quota > 0 {
            let n = store::count_matching(&mut *tx, tenant, &filter, req.ds).await?;
            if n > quota {
                return Err(Refusal::Quota(format!(
                    "the auto-assignment would assign {n} targets; the quota is {quota}"
                ))
                .into());
            }
        }
        if flag(&cfg, config_keys::IMPLICIT_LOCK) {
            lock_set_implicitly(&mut *tx, req.ds.0).await?;
        }
        let new = NewAutoAssignment {
            named: req.named,
            query: req.query,
            ds: req.ds,
            action_type,
            weight,
            confirmation_required: req.confirmation_required,
            start_at: req.start_at,
            status: domain::initial(flag(&cfg, config_keys::AUTO_ASSIGNMENT_APPROVAL)),
            target_filter: req.target_filter,
        };
        let id = store::insert(&mut *tx, tenant, &new, user).await?;
        let row = store::TABLE
            .find(tx, tenant, id)
            .await?
            .ok_or_else(|| not_found(id))?;
        Ok(row)
    }

    /// Approve, deny, start, pause or resume (`POST /rest/v1/autoassignments/{id}/{op}`);
    /// 409 when the status does not allow it.
    pub async fn operate_auto_assignment(
        &self,
        tenant: TenantId,
        id: i64,
        event: Event,
        remark: Option<&str>,
        user: &str,
    ) -> Result<AutoAssignmentRow, EngineError> {
        let mut tx = self.pool.begin().await?;
        let a = store::lock(&mut tx, tenant, id)
            .await?
            .ok_or_else(|| not_found(id))?;
        let t = domain::step(a.status, a.start_at, event, now_ms())?;
        let approval = matches!(event, Event::Approve | Event::Deny).then_some((user, remark));
        store::set_status(&mut tx, id, t.next, t.full_pass, approval, user).await?;
        let row = store::TABLE
            .find(&mut tx, tenant, id)
            .await?
            .ok_or_else(|| not_found(id))?;
        tx.commit().await?;
        if t.full_pass || t.next == AutoAssignStatus::Ready {
            self.auto_assign_wake.notify_one();
        }
        tracing::info!(tenant = %tenant, auto_assignment = id, ?event,
            status = t.next.as_db(), "auto-assignment operated");
        Ok(row)
    }

    /// Give targets that just registered or changed (in `conn`'s open transaction, locked by
    /// it) the actions of the auto-assignments they now match, in that transaction; `out`
    /// collects the deployments. One statement per assigning auto-assignment of the batch's
    /// tenants, not per target.
    pub(super) async fn auto_assign_targets(
        &self,
        conn: &mut PgConnection,
        touched: &[(TenantId, i64)],
        out: &mut Vec<Pending>,
    ) -> Result<usize, StoreError> {
        if touched.is_empty() {
            return Ok(0);
        }
        let mut tenants: Vec<TenantId> = touched.iter().map(|(t, _)| *t).collect();
        tenants.sort_unstable_by_key(|t| t.0);
        tenants.dedup();
        let assigning = store::assigning(conn, &tenants, now_ms()).await?;
        let mut created = 0;
        let mut cfgs: BTreeMap<i64, BTreeMap<String, Value>> = BTreeMap::new();
        for a in &assigning {
            let ids: Vec<i64> = touched
                .iter()
                .filter(|(t, _)| *t == a.tenant_id)
                .map(|(_, id)| *id)
                .collect();
            let Ok(filter) = target_filter(&a.query) else {
                tracing::error!(
                    auto_assignment = a.id,
                    "stored auto-assignment query does not parse"
                );
                continue;
            };
            if let Entry::Vacant(e) = cfgs.entry(a.tenant_id.0) {
                e.insert(tenants::configs(conn, a.tenant_id).await?);
            }
            let cfg = &cfgs[&a.tenant_id.0];
            match self
                .assign_matching(conn, cfg, a, &filter, Scope::Targets(&ids), out)
                .await
            {
                Ok((_, n)) => created += n,
                Err(EngineError::Store(e)) => return Err(e),
                // Not the targets' fault: the message stays applied, the pass retries later.
                Err(e) => tracing::error!(auto_assignment = a.id, error = %e,
                    "auto-assignment of changed targets failed"),
            }
        }
        Ok(created)
    }

    /// Targets the Management API created or changed, once that committed: the
    /// auto-assignments they now match assign them, in one transaction. A failure is logged
    /// and left to the safety pass: the change itself stands.
    pub async fn auto_assign_changed(&self, tenant: TenantId, ids: &[i64]) {
        let run = async || {
            let mut tx = self.pool.begin().await?;
            let touched: Vec<(TenantId, i64)> = ids.iter().map(|id| (tenant, *id)).collect();
            let mut out = Vec::new();
            let n = self
                .auto_assign_targets(&mut tx, &touched, &mut out)
                .await?;
            self.commit_with_outbox(tx, out).await?;
            Ok::<_, StoreError>(n)
        };
        if ids.is_empty() {
            return;
        }
        if let Err(e) = run().await {
            tracing::warn!(tenant = %tenant, targets = ids.len(), error = %e,
                "auto-assignment of changed targets left to the safety pass");
        }
    }

    /// Create the actions of `a` for the targets of `scope` it matches. Returns where a pass
    /// goes on (`None`: it is done) and how many actions were created.
    async fn assign_matching(
        &self,
        conn: &mut PgConnection,
        cfg: &BTreeMap<String, Value>,
        a: &AutoAssignmentRow,
        filter: &Filter,
        scope: Scope<'_>,
        out: &mut Vec<Pending>,
    ) -> Result<(Option<i64>, usize), EngineError> {
        let matched = store::matching_targets(conn, a, filter, scope).await?;
        // Fewer than a chunk matched: the rest of the fleet has none.
        let next = matched.last.filter(|_| matched.found as i64 >= PASS_CHUNK);
        let rows = matched.targets;
        let request = AssignTarget {
            controller_id: String::new(),
            action_type: a.action_type,
            forced_time: 0,
            weight: Some(i64::from(a.weight)),
            confirmation_required: Some(a.confirmation_required),
            window: None,
        };
        let fresh: Vec<_> = rows.iter().map(|r| (r, &request)).collect();
        let message = history_message(a);
        let set = NewAssignment {
            tenant: a.tenant_id,
            ds: a.ds_id,
            offline: false,
            user: &a.audit.created_by,
            message: &message,
        };
        let ids = self.create_actions(conn, cfg, &set, &fresh, out).await?;
        if !ids.is_empty() {
            tracing::debug!(auto_assignment = a.id, actions = ids.len(), "auto-assigned");
        }
        Ok((next, ids.len()))
    }

    /// One round of the worker: start the READY auto-assignments whose time has come, and take
    /// every pass under way one chunk further (a transaction each). Returns whether work is
    /// left (another round should follow at once).
    pub async fn run_auto_assign_work(&self) -> Result<bool, EngineError> {
        let mut conn = self.pool.acquire().await?;
        let work = store::with_work(&mut conn, now_ms()).await?;
        drop(conn);
        let mut more = false;
        for a in work {
            match self.auto_assign_step(&a).await {
                Ok(left) => more |= left,
                Err(EngineError::Store(StoreError::Transient(e))) => {
                    tracing::warn!(auto_assignment = a.id, error = %e, "auto-assignment step retried");
                    more = true;
                }
                Err(e) => {
                    tracing::error!(auto_assignment = a.id, error = %e, "auto-assignment step failed")
                }
            }
        }
        Ok(more)
    }

    /// One step of one auto-assignment, in one transaction: a due READY one turns RUNNING (its
    /// pass begins next round); a RUNNING one assigns the next chunk of its pass.
    async fn auto_assign_step(&self, seen: &AutoAssignmentRow) -> Result<bool, EngineError> {
        let mut tx = self.pool.begin().await?;
        let Some(a) = store::lock(&mut tx, seen.tenant_id, seen.id).await? else {
            return Ok(false);
        };
        if a.status == AutoAssignStatus::Ready {
            let t = domain::step(a.status, a.start_at, Event::Tick, now_ms())?;
            if t.next != a.status {
                store::set_status(
                    &mut tx,
                    a.id,
                    t.next,
                    t.full_pass,
                    None,
                    &a.audit.created_by,
                )
                .await?;
                tx.commit().await?;
                tracing::info!(auto_assignment = a.id, "auto-assignment started");
            }
            return Ok(t.full_pass);
        }
        let (AutoAssignStatus::Running, Some(after)) = (a.status, a.pass_after) else {
            return Ok(false);
        };
        let filter = target_filter(&a.query)?;
        let cfg = tenants::configs(&mut tx, a.tenant_id).await?;
        let mut out = Vec::new();
        let scope = Scope::After {
            after,
            limit: PASS_CHUNK,
        };
        let (next, _) = self
            .assign_matching(&mut tx, &cfg, &a, &filter, scope, &mut out)
            .await?;
        store::set_pass(&mut tx, a.id, next).await?;
        self.commit_with_outbox(tx, out).await?;
        if next.is_none() {
            tracing::info!(auto_assignment = a.id, "auto-assignment pass done");
        }
        Ok(next.is_some())
    }

    /// Start a safety pass of every running auto-assignment that has none under way.
    pub async fn start_auto_assign_safety_passes(&self) -> Result<u64, EngineError> {
        let mut conn = self.pool.acquire().await?;
        let n = store::start_safety_passes(&mut conn).await?;
        if n > 0 {
            self.auto_assign_wake.notify_one();
        }
        Ok(n)
    }

    /// What wakes the auto-assignment worker.
    pub fn auto_assign_wake(&self) -> std::sync::Arc<tokio::sync::Notify> {
        self.auto_assign_wake.clone()
    }
}
