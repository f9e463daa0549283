//! Management API use cases that change actions: direct assignment of a distribution set to
//! targets (rollouts.md §7, dmf-protocol.md §5.3), cancelling an action, deleting a target, and
//! tenant configuration with its cross-key rules.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;
use sqlx::PgConnection;

use super::config_keys::{self, flag};
use super::{Engine, EngineError};
use crate::dmf::envelope;
use crate::domain::Invalid;
use crate::domain::action::{ActionStatus, ActionType, SERVER_PREFIX, validate_weight};
use crate::domain::ids::{ActionId, DsId, TargetId, TenantId};
use crate::domain::maintenance::MaintenanceWindow;
use crate::domain::rollout::Refusal;
use crate::domain::target::exchange_of;
use crate::store::outbox::Pending;
use crate::store::table::RowLock;
use crate::store::{actions, repository, rollouts, targets, tenants};

/// A maintenance window as the API gives it.
#[derive(Debug, Clone)]
pub struct WindowSpec {
    pub schedule: String,
    pub duration: String,
    pub timezone: String,
}

/// One target of an assignment request.
#[derive(Debug, Clone)]
pub struct AssignTarget {
    pub controller_id: String,
    pub action_type: ActionType,
    pub forced_time: i64,
    pub weight: Option<i64>,
    pub confirmation_required: Option<bool>,
    pub window: Option<WindowSpec>,
}

/// One assignment of a set: to whom it belongs, who made it and the history entry its actions
/// start with.
pub(super) struct NewAssignment<'a> {
    pub tenant: TenantId,
    pub ds: DsId,
    /// Installed already: the actions are FINISHED and nothing is sent.
    pub offline: bool,
    pub user: &'a str,
    pub message: &'a str,
}

/// What an assignment did.
#[derive(Debug, Clone, Default)]
pub struct AssignOutcome {
    pub assigned: usize,
    pub already_assigned: usize,
    pub action_ids: Vec<ActionId>,
}

/// Lock a target by its controllerId; 404 when there is none.
async fn lock_target(
    conn: &mut PgConnection,
    tenant: TenantId,
    controller_id: &str,
) -> Result<targets::TargetRow, EngineError> {
    targets::lock_by_controller_id(conn, tenant, controller_id)
        .await?
        .ok_or_else(|| EngineError::NotFound(format!("target {controller_id} not found")))
}

/// Refuse a distribution set that new actions may not use: deleted or unknown (404), invalidated,
/// or incomplete (`incomplete` words that: hawkBit's assignment and rollout creation say it
/// differently). The set stays share-locked until the transaction ends.
pub(crate) async fn check_usable_set(
    conn: &mut PgConnection,
    tenant: TenantId,
    ds_id: DsId,
    incomplete: &str,
) -> Result<(), EngineError> {
    let set = repository::set_facts(conn, tenant.0, ds_id.0)
        .await?
        .filter(|s| !s.deleted)
        .ok_or_else(|| EngineError::NotFound(format!("distribution set {ds_id} not found")))?;
    if !set.valid {
        return Err(EngineError::SetInvalid(format!(
            "distribution set {ds_id} is invalidated"
        )));
    }
    if !set.complete {
        return Err(EngineError::SetIncomplete(format!(
            "distribution set {ds_id} {incomplete}"
        )));
    }
    Ok(())
}

impl Engine {
    /// Assign distribution sets to targets (`POST /distributionsets/{id}/assignedTargets`,
    /// `POST /targets/{id}/assignedDS`): every set with its targets, all in one transaction,
    /// set-based, or nothing. As hawkBit refuses the whole request: more assignments than
    /// `maxTargetsPerManualAssignment` (429), a target at its action quota (429), a target whose
    /// type does not accept the set's type (400). Each set is locked implicitly (tenant config).
    pub async fn assign(
        &self,
        tenant: TenantId,
        sets: Vec<(DsId, Vec<AssignTarget>)>,
        offline: bool,
        user: &str,
    ) -> Result<AssignOutcome, EngineError> {
        // Validate every request before touching anything. A target named twice for one set
        // collapses to one action (the last entry wins): one assignment, one action per target.
        let mut requests = Vec::with_capacity(sets.len());
        for (ds, targets) in sets {
            let mut by_target: HashMap<String, AssignTarget> = HashMap::new();
            for r in targets {
                validate_weight(r.weight)?;
                if let Some(w) = &r.window {
                    MaintenanceWindow::parse(&w.schedule, &w.duration, &w.timezone)?;
                }
                by_target.insert(r.controller_id.clone(), r);
            }
            requests.push((ds, by_target));
        }
        let total: usize = requests.iter().map(|(_, t)| t.len()).sum();
        let quota = self.settings.max_targets_per_manual_assignment;
        if quota > 0 && total as i64 > quota {
            return Err(Refusal::Quota(format!(
                "Quota exceeded: Cannot assign {total} entities at once. The maximum is {quota}."
            ))
            .into());
        }
        let mut tx = self.pool.begin().await?;
        let cfg = tenants::configs(&mut tx, tenant).await?;
        let message = format!("{SERVER_PREFIX}Assignment initiated by user '{user}'");
        let mut outcome = AssignOutcome::default();
        let mut out = Vec::new();
        for (ds, by_target) in &requests {
            let set = NewAssignment {
                tenant,
                ds: *ds,
                offline,
                user,
                message: &message,
            };
            let one = self
                .assign_set(&mut tx, &cfg, &set, by_target, &mut out)
                .await?;
            outcome.assigned += one.assigned;
            outcome.already_assigned += one.already_assigned;
            outcome.action_ids.extend(one.action_ids);
        }
        self.commit_with_outbox(tx, out).await?;
        tracing::info!(
            sets = requests.len(),
            assigned = outcome.assigned,
            already = outcome.already_assigned,
            "assignment"
        );
        Ok(outcome)
    }

    /// One set of [`Self::assign`] in `tx`: the set locked implicitly and checked, the targets
    /// locked and checked, the actions created.
    async fn assign_set(
        &self,
        tx: &mut PgConnection,
        cfg: &BTreeMap<String, Value>,
        set: &NewAssignment<'_>,
        by_target: &HashMap<String, AssignTarget>,
        out: &mut Vec<Pending>,
    ) -> Result<AssignOutcome, EngineError> {
        let (tenant, ds_id) = (set.tenant, set.ds);
        // Locked before the usability check share-locks the row: two first assignments of one
        // set must not both hold the share lock and wait for each other's update.
        if flag(cfg, config_keys::IMPLICIT_LOCK) {
            rollouts::lock_set_implicitly(tx, ds_id.0).await?;
        }
        check_usable_set(tx, tenant, ds_id, "lacks a mandatory software module").await?;
        let ids: Vec<String> = by_target.keys().cloned().collect();
        let rows = targets::find_many(tx, tenant, &ids, RowLock::ForUpdate).await?;
        if rows.len() != ids.len() {
            let missing = ids
                .iter()
                .find(|id| !rows.iter().any(|r| &r.controller_id == *id))
                .cloned()
                .unwrap_or_default();
            return Err(EngineError::NotFound(format!("target {missing} not found")));
        }
        let row_ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let (incompatible, set_type) = targets::incompatible_types(tx, &row_ids, ds_id.0).await?;
        if !incompatible.is_empty() {
            return Err(EngineError::TargetTypeIncompatible(format!(
                "Targets of types [{}] are not compatible with distribution set of type {set_type}",
                incompatible.join(", ")
            )));
        }
        let multi = flag(cfg, config_keys::MULTI_ASSIGNMENTS);
        let mut outcome = AssignOutcome::default();
        let mut fresh = Vec::new();
        for row in &rows {
            if !multi && row.assigned_ds_id == Some(ds_id.0) && !set.offline {
                outcome.already_assigned += 1;
            } else {
                fresh.push((row, &by_target[&row.controller_id]));
            }
        }
        let limit = self.settings.max_actions_per_target;
        if limit > 0 {
            let fresh_ids: Vec<i64> = fresh.iter().map(|(r, _)| r.id).collect();
            // The tenant may have the oldest closed actions purged to make room (as rollouts).
            let percent = config_keys::number(cfg, config_keys::PURGE_ON_QUOTA_HIT);
            self.purge_at_quota(tx, tenant, &fresh_ids, 1, percent)
                .await?;
            let full = targets::over_action_quota(tx, &fresh_ids, 1, limit).await?;
            if let Some((target, n)) = full.first() {
                return Err(Refusal::Quota(format!(
                    "Quota exceeded: Cannot assign 1 more Action entities to Target '{target}' \
                     (it has {n}). The maximum is {limit}."
                ))
                .into());
            }
        }
        outcome.action_ids = self.create_actions(tx, cfg, set, &fresh, out).await?;
        outcome.assigned = outcome.action_ids.len();
        Ok(outcome)
    }

    /// The actions of one assignment of `set.ds` to locked targets, each with its request:
    /// older open actions retired (single mode), each new action RUNNING, waiting for
    /// confirmation or (offline) FINISHED, its history entry `set.message`, the targets pointed
    /// at the set, and `out` given the deployments to send. Returns the new actions' ids.
    pub(super) async fn create_actions(
        &self,
        tx: &mut PgConnection,
        cfg: &BTreeMap<String, Value>,
        set: &NewAssignment<'_>,
        fresh: &[(&targets::TargetRow, &AssignTarget)],
        out: &mut Vec<Pending>,
    ) -> Result<Vec<ActionId>, EngineError> {
        if fresh.is_empty() {
            return Ok(Vec::new());
        }
        let multi = flag(cfg, config_keys::MULTI_ASSIGNMENTS);
        let fresh_ids: Vec<i64> = fresh.iter().map(|(r, _)| r.id).collect();
        if !multi && !set.offline {
            let autoclose = flag(cfg, config_keys::AUTOCLOSE);
            self.supersede(tx, &fresh_ids, &[], autoclose, out).await?;
        }
        let flow = flag(cfg, config_keys::CONFIRMATION_FLOW);
        let mut new = actions::NewActions::default();
        for (row, r) in fresh {
            let waits =
                flow && r.confirmation_required.unwrap_or(true) && row.auto_confirm_at.is_none();
            let (status, active) = if set.offline {
                (ActionStatus::Finished, false)
            } else if waits {
                (ActionStatus::WaitForConfirmation, true)
            } else {
                (ActionStatus::Running, true)
            };
            new.target_id.push(row.id);
            new.action_type.push(r.action_type.as_db().to_owned());
            new.status.push(status.as_db().to_owned());
            new.active.push(active);
            new.weight.push(validate_weight(r.weight)?);
            new.forced_time.push(r.forced_time);
            new.mw_schedule
                .push(r.window.as_ref().map(|w| w.schedule.clone()));
            new.mw_duration
                .push(r.window.as_ref().map(|w| w.duration.clone()));
            new.mw_timezone
                .push(r.window.as_ref().map(|w| w.timezone.clone()));
        }
        let created = actions::insert(tx, set.tenant, set.ds, &new, set.user).await?;
        let mut history = actions::NewHistory::default();
        for ((id, _), status) in created.iter().zip(&new.status) {
            history.push(*id, status, None, &[set.message.to_owned()]);
        }
        actions::insert_history(tx, &history).await?;
        actions::assign_targets(tx, &fresh_ids, set.ds, set.offline).await?;
        let ids: Vec<ActionId> = created.iter().map(|(id, _)| *id).collect();
        if !set.offline {
            if flag(cfg, config_keys::BATCH_ASSIGNMENTS) {
                out.push(Pending::Batch(ids.clone()));
            } else {
                out.extend(ids.iter().map(|id| Pending::Action(*id)));
            }
        }
        Ok(ids)
    }

    /// Retire the open actions of targets that get a new assignment (single mode): cancel them
    /// (CANCELING + CANCEL_DOWNLOAD), or with autoclose close them silently; SCHEDULED ones are
    /// cancelled. Required-migration-step sets are exempt, and so are the actions in `keep`
    /// (the ones being started).
    pub(super) async fn supersede(
        &self,
        conn: &mut sqlx::PgConnection,
        targets: &[i64],
        keep: &[ActionId],
        autoclose: bool,
        out: &mut Vec<Pending>,
    ) -> Result<(), EngineError> {
        let old = actions::lock_superseded(conn, targets, keep).await?;
        let mut updates = actions::ActionUpdates::default();
        let mut history = actions::NewHistory::default();
        for (id, _target, status, active) in old {
            if status == ActionStatus::Canceling.as_db() {
                continue;
            }
            let (next, still_active, msg) = if !active || autoclose {
                (
                    ActionStatus::Canceled,
                    false,
                    "close obsolete action due to new update",
                )
            } else {
                out.push(Pending::Action(id));
                (
                    ActionStatus::Canceling,
                    true,
                    "cancel obsolete action due to new update",
                )
            };
            updates.id.push(id);
            updates.status.push(next.as_db().to_owned());
            updates.active.push(still_active);
            updates.intermediate_reports.push(0);
            updates.last_status_code.push(None);
            history.push(id, next.as_db(), None, &[format!("{SERVER_PREFIX}{msg}")]);
        }
        actions::update_states_keep_reports(conn, &updates).await?;
        actions::insert_history(conn, &history).await?;
        Ok(())
    }

    /// Cancel an action (`DELETE /targets/{id}/actions/{actionId}`): an open action goes to
    /// CANCELING and the device gets CANCEL_DOWNLOAD; `force` closes a cancelling one at once.
    pub async fn cancel_action(
        &self,
        tenant: TenantId,
        controller_id: &str,
        action_id: ActionId,
        force: bool,
        user: &str,
    ) -> Result<(), EngineError> {
        let mut tx = self.pool.begin().await?;
        let target = lock_target(&mut tx, tenant, controller_id).await?;
        let rows = actions::lock(&mut tx, &[action_id]).await?;
        let a = rows
            .into_iter()
            .find(|a| a.tenant_id == tenant && a.target_id == target.id)
            .ok_or_else(|| EngineError::NotFound(format!("action {action_id} not found")))?;
        let mut out = Vec::new();
        let mut updates = actions::ActionUpdates::default();
        let mut history = actions::NewHistory::default();
        let canceling = a.status == ActionStatus::Canceling.as_db();
        if !a.active {
            return Err(EngineError::State(format!(
                "action {action_id} is not active"
            )));
        }
        let (next, still_active, message) = if force {
            if !canceling {
                return Err(EngineError::State(format!(
                    "action {action_id} must be cancelled before it can be force-quit"
                )));
            }
            (
                ActionStatus::Canceled,
                false,
                format!("A force quit has been performed by user '{user}'."),
            )
        } else {
            if canceling {
                return Err(EngineError::State(format!(
                    "action {action_id} is already being cancelled"
                )));
            }
            (
                ActionStatus::Canceling,
                true,
                format!("Cancellation initiated by user '{user}'."),
            )
        };
        updates.id.push(a.id);
        updates.status.push(next.as_db().to_owned());
        updates.active.push(still_active);
        history.push(
            a.id,
            next.as_db(),
            None,
            &[format!("{SERVER_PREFIX}{message}")],
        );
        actions::update_states_keep_reports(&mut tx, &updates).await?;
        actions::insert_history(&mut tx, &history).await?;
        if force {
            actions::reset_assigned_after_cancel(&mut tx, target.id).await?;
            out.push(Pending::Target(target.id));
        } else {
            out.push(Pending::Action(a.id));
        }
        self.commit_with_outbox(tx, out).await?;
        Ok(())
    }

    /// Switch a target's automatic confirmation on (`Some((initiator, remark))`, confirming
    /// its waiting actions; 409 when it already is) or off (`POST
    /// /targets/{id}/autoConfirm/activate|deactivate`).
    pub async fn set_auto_confirm(
        &self,
        tenant: TenantId,
        controller_id: &str,
        on: Option<(&str, &str)>,
        user: &str,
    ) -> Result<(), EngineError> {
        let mut tx = self.pool.begin().await?;
        let target = lock_target(&mut tx, tenant, controller_id).await?;
        let mut out = Vec::new();
        match on {
            Some((initiator, remark)) => {
                let initiator = if initiator.is_empty() {
                    user
                } else {
                    initiator
                };
                let newly = super::inbound::activate_auto_confirm(
                    &mut tx, target.id, initiator, remark, user, &mut out,
                )
                .await?;
                if !newly {
                    return Err(EngineError::AutoConfirmActive(format!(
                        "auto confirmation of target {controller_id} is already active"
                    )));
                }
            }
            None => {
                targets::set_auto_confirm(&mut tx, TargetId(target.id), None).await?;
            }
        }
        self.commit_with_outbox(tx, out).await?;
        Ok(())
    }

    /// Delete a target; its connector gets THING_DELETED when it has a DMF address.
    pub async fn delete_target(
        &self,
        tenant: TenantId,
        controller_id: &str,
    ) -> Result<(), EngineError> {
        let mut tx = self.pool.begin().await?;
        let row = lock_target(&mut tx, tenant, controller_id).await?;
        let tenant_name: String = tenants::name_of(&mut tx, tenant).await?;
        let address = targets::delete(&mut tx, TargetId(row.id)).await?;
        let out = address
            .as_deref()
            .and_then(exchange_of)
            .map(|exchange| {
                Pending::Message(envelope::encode_thing_deleted(
                    &exchange,
                    &tenant_name,
                    controller_id,
                ))
            })
            .into_iter()
            .collect();
        self.commit_with_outbox(tx, out).await?;
        Ok(())
    }

    /// Set a tenant configuration value, enforcing the rules between keys (§7): multi-assignment
    /// is irreversible and excludes batch mode; autoclose is frozen once multi-assignment is on.
    pub async fn put_config(
        &self,
        tenant: TenantId,
        key: &str,
        value: Value,
        user: &str,
    ) -> Result<tenants::ConfigRow, EngineError> {
        let mut tx = self.pool.begin().await?;
        let row = put_config_in(&mut tx, tenant, key, value, user).await?;
        tx.commit().await?;
        Ok(row)
    }

    /// Set several values in one transaction, in the order given, each under the rules of
    /// [`Self::put_config`] as the values before it left them: all or none.
    pub async fn put_configs(
        &self,
        tenant: TenantId,
        values: Vec<(String, Value)>,
        user: &str,
    ) -> Result<(), EngineError> {
        let mut tx = self.pool.begin().await?;
        for (key, value) in values {
            put_config_in(&mut tx, tenant, &key, value, user).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Remove a configuration value (back to the default), with the same rules as setting it.
    pub async fn delete_config(
        &self,
        tenant: TenantId,
        key: &str,
        user: &str,
    ) -> Result<(), EngineError> {
        let default = config_keys::default_of(key).ok_or_else(|| {
            EngineError::NotFound(format!("configuration key {key} does not exist"))
        })?;
        let mut conn = self.pool.acquire().await?;
        let cfg = tenants::configs(&mut conn, tenant).await?;
        if flag(&cfg, key) != default {
            // Reverting is a change: the same rules apply.
            drop(conn);
            self.put_config(tenant, key, Value::Bool(default), user)
                .await?;
            let mut conn = self.pool.acquire().await?;
            tenants::delete_config(&mut conn, tenant, key).await?;
        } else {
            tenants::delete_config(&mut conn, tenant, key).await?;
        }
        Ok(())
    }
}

/// [`Engine::put_config`] in `tx`.
async fn put_config_in(
    tx: &mut PgConnection,
    tenant: TenantId,
    key: &str,
    value: Value,
    user: &str,
) -> Result<tenants::ConfigRow, EngineError> {
    let known = config_keys::DEFAULTS.iter().any(|(k, _)| *k == key);
    if !known {
        return Err(EngineError::NotFound(format!(
            "configuration key {key} does not exist"
        )));
    }
    let Some(on) = value.as_bool() else {
        return Err(Invalid::new(format!("value of {key} must be a boolean")).into());
    };
    let cfg = tenants::configs(&mut *tx, tenant).await?;
    let multi = flag(&cfg, config_keys::MULTI_ASSIGNMENTS);
    match key {
        config_keys::MULTI_ASSIGNMENTS if multi && !on => {
            return Err(EngineError::ConfigLocked(
                "multi-assignments cannot be switched off once on".into(),
            ));
        }
        config_keys::MULTI_ASSIGNMENTS if on && flag(&cfg, config_keys::BATCH_ASSIGNMENTS) => {
            return Err(EngineError::ConfigLocked(
                "multi-assignments cannot be enabled while batch assignments are on".into(),
            ));
        }
        config_keys::BATCH_ASSIGNMENTS if on && multi => {
            return Err(EngineError::ConfigLocked(
                "batch assignments cannot be enabled while multi-assignments are on".into(),
            ));
        }
        config_keys::AUTOCLOSE if multi && flag(&cfg, config_keys::AUTOCLOSE) != on => {
            return Err(EngineError::ConfigLocked(
                "autoclose cannot change while multi-assignments are on".into(),
            ));
        }
        _ => {}
    }
    Ok(tenants::put_config(tx, tenant, key, &Value::Bool(on), user).await?)
}
