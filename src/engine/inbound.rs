//! Applying inbound DMF messages (dmf-protocol.md §3, §5). Called by [`Engine::handle_batch`]
//! inside its transaction; every refusal is a [`Verdict::Reject`] with a one-line reason.

use std::collections::{BTreeMap, HashMap};

use rand::RngCore;
use sqlx::PgConnection;

use super::{Engine, EngineError, Verdict, config_keys};
use crate::dmf::envelope::{self, Inbound};
use crate::dmf::inbound::{AttributeMode as WireMode, AttributeUpdate};
use crate::domain::action::{
    ActionState, ActionStatus, ActionType, Report, ReportContext, SERVER_PREFIX, TargetEffect,
    apply_report, is_progress,
};
use crate::domain::ids::{ActionId, ControllerId, DsId, RolloutId, TargetId, TenantId};
use crate::domain::maintenance::MaintenanceWindow;
use crate::domain::target::{self, AttributeMode, UpdateStatus};
use crate::store::outbox::Pending;
use crate::store::{Result, StoreError, actions, targets, tenants};

/// Wall clock in epoch ms (the engine's only clock reading; the domain gets it as an argument).
pub(super) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// 16 random bytes as 32 lower-case hex characters, as hawkBit generates them.
pub(super) fn new_security_token() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn mode(m: Option<WireMode>) -> AttributeMode {
    match m {
        None | Some(WireMode::Merge) => AttributeMode::Merge,
        Some(WireMode::Replace) => AttributeMode::Replace,
        Some(WireMode::Remove) => AttributeMode::Remove,
    }
}

macro_rules! reject {
    ($($arg:tt)*) => {
        return Ok(Verdict::Reject(format!($($arg)*)))
    };
}

impl Engine {
    /// Apply one message other than a status report. `out` collects outbox rows, `touched`
    /// the targets it registered or changed (for auto-assignment).
    pub(super) async fn apply_one(
        &self,
        conn: &mut PgConnection,
        msg: &Inbound,
        out: &mut Vec<Pending>,
        touched: &mut Vec<(TenantId, i64)>,
    ) -> Result<Verdict> {
        if let Inbound::Ping {
            tenant,
            correlation_id,
            reply_to,
        } = msg
        {
            // No tenant lookup: PING probes the DMF service, not a tenant (§3.6).
            match (correlation_id, reply_to) {
                (Some(corr), Some(reply_to)) => out.push(Pending::Message(
                    envelope::encode_ping_response(reply_to, tenant, corr, now_ms()),
                )),
                (None, _) => tracing::debug!("PING without correlation id dropped"),
                (_, None) => tracing::warn!("PING without reply_to dropped"),
            }
            return Ok(Verdict::Done);
        }
        let (tenant_id, tenant) = match self.tenant_for_dmf(conn, msg.tenant()).await? {
            Ok(t) => t,
            Err(reason) => return Ok(Verdict::Reject(reason)),
        };
        match msg {
            Inbound::ThingCreated {
                thing_id,
                reply_to,
                body,
                ..
            } => {
                let cid = match ControllerId::parse(thing_id) {
                    Ok(c) => c,
                    Err(e) => reject!("{e}"),
                };
                let address = match target::dmf_address(&self.settings.vhost, reply_to) {
                    Ok(a) => a,
                    Err(e) => reject!("{e}"),
                };
                let body = body.clone().unwrap_or_default();
                let name = body.name.as_deref().filter(|n| !n.trim().is_empty());
                if let Some(n) = name
                    && let Err(e) = target::validate_name(n)
                {
                    reject!("{e}");
                }
                let reg = targets::register(
                    conn,
                    tenant_id,
                    cid.as_str(),
                    name,
                    &address,
                    &new_security_token(),
                )
                .await?;
                let id = TargetId(reg.id);
                if let Some(type_name) = &body.target_type
                    && !targets::set_type_by_name(conn, id, type_name).await?
                {
                    tracing::error!(tenant = %tenant, thing_id = %cid, target_type = %type_name,
                        "THING_CREATED names an unknown target type; type left unchanged");
                }
                if let Some(update) = &body.attribute_update
                    && let Err(reason) = self
                        .update_attributes(conn, id, &reg.attributes.0, update)
                        .await?
                {
                    return Ok(Verdict::Reject(reason));
                }
                touched.push((tenant_id, reg.id));
                if reg.inserted {
                    tracing::debug!(tenant = %tenant, thing_id = %cid, "target registered");
                } else {
                    // A device that registers again hears of its open actions. A new one has
                    // none, and a follow-up rendered after its first rollout group started
                    // would only repeat that group's deployment.
                    out.push(Pending::Target(reg.id));
                }
                Ok(Verdict::Done)
            }
            Inbound::ThingRemoved { thing_id, .. } => {
                let Some(row) = targets::lock_by_controller_id(conn, tenant_id, thing_id).await?
                else {
                    reject!("target {thing_id:?} does not exist");
                };
                let address = targets::delete(conn, TargetId(row.id)).await?;
                if let Some(exchange) = address.as_deref().and_then(target::exchange_of) {
                    out.push(Pending::Message(envelope::encode_thing_deleted(
                        &exchange,
                        tenant.as_str(),
                        thing_id,
                    )));
                }
                Ok(Verdict::Done)
            }
            Inbound::UpdateAttributes { thing_id, body, .. } => {
                let Some(row) = targets::lock_by_controller_id(conn, tenant_id, thing_id).await?
                else {
                    reject!("target {thing_id:?} does not exist");
                };
                match self
                    .update_attributes(conn, TargetId(row.id), &row.attributes.0, body)
                    .await?
                {
                    Ok(()) => {
                        touched.push((tenant_id, row.id));
                        Ok(Verdict::Done)
                    }
                    Err(reason) => Ok(Verdict::Reject(reason)),
                }
            }
            Inbound::UpdateAutoConfirm { thing_id, body, .. } => {
                let Some(row) = targets::lock_by_controller_id(conn, tenant_id, thing_id).await?
                else {
                    reject!("target {thing_id:?} does not exist");
                };
                if body.enabled {
                    let initiator = body.initiator.clone().unwrap_or_default();
                    let remark = body.remark.clone().unwrap_or_else(|| {
                        "Activated using Device Management Federation API.".to_owned()
                    });
                    activate_auto_confirm(conn, row.id, &initiator, &remark, "DMF", out).await?;
                } else {
                    targets::set_auto_confirm(conn, TargetId(row.id), None).await?;
                }
                Ok(Verdict::Done)
            }
            Inbound::UpdateActionStatus { .. } | Inbound::Ping { .. } => {
                // Handled elsewhere; never routed here.
                Ok(Verdict::Done)
            }
        }
    }

    /// Validate and apply an attribute update; `Err` is the refusal reason.
    async fn update_attributes(
        &self,
        conn: &mut PgConnection,
        target: TargetId,
        current: &BTreeMap<String, String>,
        update: &AttributeUpdate,
    ) -> Result<Result<(), String>> {
        match target::apply_attribute_update(current, &update.attributes, mode(update.mode)) {
            Ok(next) => {
                targets::set_attributes(conn, target, &next).await?;
                Ok(Ok(()))
            }
            Err(e) => Ok(Err(e.0)),
        }
    }

    /// Apply a run of status reports set-based: lock the actions and their targets once, decide
    /// each report in order in memory (the pure state machine), then write history, actions,
    /// targets and outbox rows with one statement each.
    pub(super) async fn apply_reports(
        &self,
        conn: &mut PgConnection,
        run: &[&Inbound],
        out: &mut Vec<Pending>,
    ) -> Result<Vec<Verdict>> {
        let mut verdicts = vec![Verdict::Done; run.len()];
        let mut tenant_of = Vec::with_capacity(run.len());
        for (i, msg) in run.iter().enumerate() {
            match self.tenant_for_dmf(conn, msg.tenant()).await? {
                Ok((id, name)) => tenant_of.push(Some((id, name))),
                Err(reason) => {
                    verdicts[i] = Verdict::Reject(reason);
                    tenant_of.push(None);
                }
            }
        }
        let ids: Vec<ActionId> = run
            .iter()
            .filter_map(|m| match m {
                Inbound::UpdateActionStatus { body, .. } => Some(ActionId(body.action_id)),
                _ => None,
            })
            .collect();
        let rows = actions::lock(conn, &ids).await?;
        let mut state: HashMap<ActionId, (actions::ActionRow, ActionState, bool)> = HashMap::new();
        for row in rows {
            let st = ActionState {
                status: ActionStatus::from_db(&row.status).unwrap_or(ActionStatus::Running),
                active: row.active,
                action_type: ActionType::from_db(&row.action_type).unwrap_or_default(),
                intermediate_reports: row.intermediate_reports,
            };
            state.insert(row.id, (row, st, false));
        }
        // A run of progress reports on active actions without a maintenance window only appends
        // history (`is_progress`): their targets are neither locked nor read (the usual batch
        // while a fleet downloads and installs).
        let progress_only = run.iter().all(|m| {
            matches!(m, Inbound::UpdateActionStatus { body, .. } if is_progress(body.action_status))
        }) && state
            .values()
            .all(|(r, _, _)| r.active && r.mw_schedule.is_none());
        let mut targets: HashMap<i64, (actions::TargetState, bool)> = HashMap::new();
        let mut open: HashMap<i64, Vec<(ActionId, DsId)>> = HashMap::new();
        let mut flags = Default::default();
        if !progress_only {
            let mut target_ids: Vec<i64> = state.values().map(|(r, _, _)| r.target_id).collect();
            target_ids.sort_unstable();
            target_ids.dedup();
            targets = actions::lock_targets(conn, &target_ids)
                .await?
                .into_iter()
                .map(|t| (t.id, (t, false)))
                .collect();
            // Open actions per target, oldest first: the successor of a completed cancellation.
            for a in actions::open_of_targets(conn, &target_ids).await? {
                open.entry(a.target_id).or_default().push((a.id, a.ds_id));
            }
            for list in open.values_mut() {
                list.sort_unstable();
            }
            let tenant_names: Vec<String> =
                state.values().map(|(r, _, _)| r.tenant.clone()).collect();
            flags = tenants::flags_by_name(conn, &tenant_names, &[config_keys::CONFIRMATION_FLOW])
                .await?;
        }

        let now = now_ms();
        let mut history = actions::NewHistory::default();
        for (i, msg) in run.iter().enumerate() {
            let (
                Inbound::UpdateActionStatus {
                    thing_id,
                    correlation_id,
                    body,
                    ..
                },
                Some((tenant_id, _)),
            ) = (msg, &tenant_of[i])
            else {
                continue;
            };
            let Some((row, st, changed)) = state.get_mut(&ActionId(body.action_id)) else {
                verdicts[i] = Verdict::Reject(format!("action {} does not exist", body.action_id));
                continue;
            };
            if row.tenant_id != *tenant_id {
                verdicts[i] = Verdict::Reject(format!("action {} does not exist", body.action_id));
                continue;
            }
            if let Some(thing) = thing_id
                && thing != &row.controller_id
            {
                verdicts[i] = Verdict::Reject(format!(
                    "action {} does not belong to thing {thing:?}",
                    body.action_id
                ));
                continue;
            }
            let ctx = ReportContext {
                confirmation_flow_enabled: flags
                    .get(&row.tenant)
                    .and_then(|f| f.get(config_keys::CONFIRMATION_FLOW))
                    .copied()
                    .unwrap_or(false),
            };
            let report = Report {
                status: body.action_status,
                messages: body.message.clone(),
                code: body.code,
                correlation_id: correlation_id.clone(),
            };
            let outcome = match apply_report(*st, &report, ctx) {
                Ok(o) => o,
                Err(e) => {
                    verdicts[i] = Verdict::Reject(e.to_string());
                    continue;
                }
            };
            if let Some(h) = &outcome.history {
                history.push(row.id, h.status.as_db(), h.code, &h.messages);
            }
            if outcome.next != *st || outcome.history.as_ref().is_some_and(|h| h.code.is_some()) {
                *changed = true;
            }
            *st = outcome.next;
            // The target row is locked with its action (FK); a missing one means it was deleted
            // in this very batch, and there is nothing left to update.
            let Some((t, t_changed)) = targets.get_mut(&row.target_id) else {
                continue;
            };
            if !st.active
                && let Some(list) = open.get_mut(&row.target_id)
            {
                list.retain(|(id, _)| *id != row.id);
            }
            match outcome.target {
                TargetEffect::None => {}
                TargetEffect::Installed { download_only } => {
                    t.installed_ds_id = Some(row.ds_id);
                    t.installation_date = Some(now);
                    if download_only {
                        t.assigned_ds_id = Some(row.ds_id);
                    }
                    if t.assigned_ds_id == t.installed_ds_id {
                        t.update_status = UpdateStatus::InSync.as_db().to_owned();
                    }
                    *t_changed = true;
                }
                TargetEffect::Failed => {
                    t.update_status = UpdateStatus::Error.as_db().to_owned();
                    t.assigned_ds_id = None;
                    *t_changed = true;
                }
                TargetEffect::Downloaded => {
                    t.update_status = UpdateStatus::InSync.as_db().to_owned();
                    *t_changed = true;
                }
                TargetEffect::CancelCompleted => {
                    match open.get(&row.target_id).and_then(|l| l.first()) {
                        Some((_, ds)) => t.assigned_ds_id = Some(*ds),
                        None => {
                            t.assigned_ds_id = t.installed_ds_id;
                            t.update_status = UpdateStatus::InSync.as_db().to_owned();
                        }
                    }
                    *t_changed = true;
                }
            }
            if outcome.request_attributes {
                t.request_attributes = true;
                *t_changed = true;
                if let Some(exchange) = t.address.as_deref().and_then(target::exchange_of) {
                    out.push(Pending::Message(envelope::encode_request_attributes(
                        &exchange,
                        &row.tenant,
                        &t.controller_id,
                    )));
                }
            }
            let window_open = st.active
                && match (&row.mw_schedule, &row.mw_duration, &row.mw_timezone) {
                    (Some(s), Some(d), Some(z)) => MaintenanceWindow::parse(s, d, z)
                        .map(|w| w.is_open(now))
                        .unwrap_or(false),
                    _ => false,
                };
            // A follow-up sends the target's current action; with none left open there is
            // nothing to send (the usual end of a deployment), so no outbox row is written.
            let has_open = open.get(&row.target_id).is_some_and(|l| !l.is_empty());
            if (outcome.follow_up && has_open) || window_open {
                out.push(Pending::Target(row.target_id));
            }
        }

        actions::insert_history(conn, &history).await?;
        let mut updates = actions::ActionUpdates::default();
        for (row, st, changed) in state.values() {
            if *changed {
                updates.id.push(row.id);
                updates.status.push(st.status.as_db().to_owned());
                updates.active.push(st.active);
                updates.intermediate_reports.push(st.intermediate_reports);
                updates.last_status_code.push(None);
            }
        }
        // The last reported code of each action.
        for (idx, id) in updates.id.iter().enumerate() {
            if let Some(pos) = history.action_id.iter().rposition(|a| a == id) {
                updates.last_status_code[idx] = history.code[pos];
            }
        }
        actions::update_states(conn, &updates, "DMF").await?;
        let mut tu = actions::TargetUpdates::default();
        for (t, changed) in targets.values() {
            if *changed {
                tu.id.push(t.id);
                tu.assigned_ds_id.push(t.assigned_ds_id);
                tu.installed_ds_id.push(t.installed_ds_id);
                tu.installation_date.push(t.installation_date);
                tu.update_status.push(t.update_status.clone());
                tu.request_attributes.push(t.request_attributes);
            }
        }
        actions::update_targets(conn, &tu).await?;
        // The reports that cross a group's threshold start the next group right here, in
        // their own transaction (rollouts.md §4.2 [ours]). Only rollouts whose counters moved
        // are evaluated: intermediate reports cannot change a decision.
        let mut rollouts: Vec<RolloutId> = state
            .values()
            .filter(|(row, st, _)| {
                ActionStatus::from_db(&row.status).map(ActionStatus::counter)
                    != Some(st.status.counter())
            })
            .filter_map(|(row, _, _)| row.rollout_id)
            .collect();
        rollouts.sort_unstable();
        rollouts.dedup();
        if !rollouts.is_empty() {
            self.advance_rollouts(conn, &rollouts, out)
                .await
                .map_err(|e| match e {
                    EngineError::Store(s) => s,
                    other => StoreError::Permanent(sqlx::Error::Protocol(other.to_string())),
                })?;
        }
        Ok(verdicts)
    }
}

/// Switch a target's automatic confirmation on (false if it already was) and confirm the
/// actions waiting for it; `by` is who switched it on (a user, or `DMF`).
pub(super) async fn activate_auto_confirm(
    conn: &mut PgConnection,
    target: i64,
    initiator: &str,
    remark: &str,
    by: &str,
    out: &mut Vec<Pending>,
) -> Result<bool> {
    let on = Some((initiator, remark, by));
    if !targets::set_auto_confirm(conn, TargetId(target), on).await? {
        return Ok(false);
    }
    let note = format!(
        "{SERVER_PREFIX}Assignment automatically confirmed by initiator '{initiator}'. \n\nAuto confirmation activated by system user: '{by}' \n\nRemark: {remark}"
    );
    let confirmed = actions::confirm_waiting(conn, target, &note).await?;
    // [ours] Timers push: the device learns of its now-runnable action at once.
    if !confirmed.is_empty() {
        out.push(Pending::Target(target));
    }
    Ok(true)
}
