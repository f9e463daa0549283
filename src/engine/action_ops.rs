//! What the Management API and the timers do to existing actions besides cancelling them:
//! delete them (under the tenant's `action.delete.allowed.statuses`), switch a soft one to
//! forced, confirm or deny one waiting for confirmation, clean up old closed ones
//! (`action.cleanup.auto.*`) and make room on targets at their action quota
//! (`action.cleanup.onQuotaHit.percent`).
//!
//! Never here: SQL text, axum types.

use sqlx::PgConnection;

use super::config_keys::{self, statuses};
use super::inbound::now_ms;
use super::{Engine, EngineError};
use crate::domain::action::{ActionStatus, ActionType, SERVER_PREFIX};
use crate::domain::ids::{ActionId, TenantId};
use crate::domain::rollout::Refusal;
use crate::domain::rollout::state::RolloutStatus;
use crate::store::action_deletes::{self as deletes, Guard, Selection};
use crate::store::filter::Filter;
use crate::store::outbox::Pending;
use crate::store::{StoreError, actions, targets, tenants};

/// Actions one cleanup statement deletes at most: bounded locks and WAL per statement.
const CLEANUP_CHUNK: i64 = 1000;

/// What an API delete names.
#[derive(Debug, Clone)]
pub enum ActionsToDelete {
    /// `DELETE /actions/{id}`: 404 when the tenant has no such action.
    One(ActionId),
    /// `DELETE /actions` with a list of ids.
    Ids(Vec<ActionId>),
    /// `DELETE /actions?q=`.
    Query(Filter),
    /// `DELETE /targets/{id}/actions` with a list of ids.
    OfTarget {
        controller_id: String,
        ids: Vec<ActionId>,
    },
    /// `DELETE /targets/{id}/actions?keepLast=n`: all but the newest `keep_last`; those that may
    /// not be deleted are skipped (hawkBit).
    AllButNewest {
        controller_id: String,
        keep_last: i64,
    },
}

/// What became of a confirmation or denial (hawkBit answers each with its own status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feedback {
    Applied,
    /// The action is closed (410).
    Closed,
    /// The action does not wait for confirmation (404).
    NotWaiting,
}

/// How many of a target's oldest actions a purge leaves when the target is at `quota` and
/// `requested` more are about to be added, or `None` when the purge is off (`percent` outside
/// 1..=99, hawkBit) or would free fewer than `requested` places.
pub fn purge_keep(quota: i64, percent: i64, requested: i64) -> Option<i64> {
    if !(1..100).contains(&percent) {
        return None;
    }
    let freed = percent * quota / 100;
    (freed >= requested.max(1)).then_some(quota - freed)
}

/// Status names the store's deletes compare with.
fn guard() -> Guard {
    let settled = [
        RolloutStatus::Finished,
        RolloutStatus::Stopped,
        RolloutStatus::Deleted,
    ];
    Guard {
        scheduled: ActionStatus::Scheduled.as_db().to_owned(),
        settled: settled.iter().map(|s| s.as_db().to_owned()).collect(),
    }
}

fn names(list: &[ActionStatus]) -> Vec<String> {
    list.iter().map(|s| s.as_db().to_owned()).collect()
}

impl Engine {
    /// Delete the actions `what` names, all or none: 405 when one of them is in a status the
    /// tenant does not allow to delete or is an open action of a rollout. Returns how many went.
    pub async fn delete_actions(
        &self,
        tenant: TenantId,
        what: ActionsToDelete,
    ) -> Result<u64, EngineError> {
        let mut tx = self.pool.begin().await?;
        let cfg = tenants::configs(&mut tx, tenant).await?;
        let allowed = statuses(&cfg, config_keys::DELETE_ALLOWED);
        let allowed_names = names(&allowed);
        let scheduled = ActionStatus::Scheduled.as_db();
        let refuse = |n: i64, of: &str| {
            let list: Vec<&str> = allowed.iter().map(|s| s.as_db()).collect();
            EngineError::NotDeletable(format!(
                "{n} actions {of} are not in allowed statuses for deletion: [{}] (open actions of a rollout never are)",
                list.join(", ")
            ))
        };
        let target_of = async |c: &mut PgConnection, cid: &str| {
            targets::find(c, tenant, cid)
                .await?
                .map(|t| t.id)
                .ok_or_else(|| EngineError::NotFound(format!("target {cid} not found")))
        };
        let (sel_ids, target);
        let (sel, checked, of) = match &what {
            ActionsToDelete::One(id) => {
                if actions::view(&mut tx, tenant, *id).await?.is_none() {
                    return Err(EngineError::NotFound(format!("action {id} not found")));
                }
                sel_ids = vec![*id];
                (Selection::Ids(&sel_ids), true, "with this id")
            }
            ActionsToDelete::Ids(ids) => (Selection::Ids(ids), true, "from the id list"),
            ActionsToDelete::Query(f) => (Selection::Query(f), true, "matching the query"),
            ActionsToDelete::OfTarget { controller_id, ids } => {
                target = target_of(&mut tx, controller_id).await?;
                let sel = Selection::OfTarget { target, ids };
                (sel, true, "from the id list")
            }
            ActionsToDelete::AllButNewest {
                controller_id,
                keep_last,
            } => {
                target = target_of(&mut tx, controller_id).await?;
                let count = deletes::count_of_target(&mut tx, target).await? - keep_last;
                if count <= 0 {
                    return Ok(0);
                }
                (Selection::Oldest { target, count }, false, "")
            }
        };
        if checked {
            let n =
                deletes::count_undeletable(&mut tx, tenant, sel, &allowed_names, scheduled).await?;
            if n > 0 {
                return Err(refuse(n, of));
            }
        }
        let gone =
            deletes::delete_selected(&mut tx, tenant, sel, &allowed_names, scheduled).await?;
        tx.commit().await?;
        tracing::info!(tenant = %tenant, deleted = gone, "actions deleted");
        Ok(gone)
    }

    /// Switch action `id` of target `controller_id` to forced (hawkBit's `forceTargetAction`):
    /// a forced or time-forced one stays as it is, whatever its status. Nothing is sent to the
    /// device: hawkBit sends nothing over DMF either (forced and soft read the same there).
    pub async fn force_action(
        &self,
        tenant: TenantId,
        controller_id: &str,
        id: ActionId,
        user: &str,
    ) -> Result<(), EngineError> {
        let mut tx = self.pool.begin().await?;
        let a = lock_of_target(&mut tx, tenant, controller_id, id).await?;
        let ty = ActionType::from_db(&a.action_type);
        if !matches!(ty, Some(ActionType::Forced | ActionType::TimeForced)) {
            actions::set_action_type(&mut tx, id, ActionType::Forced.as_db(), user).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Confirm (`confirm`) or deny action `id` of target `controller_id` for the user, with the
    /// caller's `code` and `details` in its history (hawkBit's `ConfirmationManagement`). A
    /// confirmed action runs: its device is sent it through the outbox. A denied one waits for
    /// confirmation again (also one confirmed before, while the confirmation flow is on).
    pub async fn confirm_action(
        &self,
        tenant: TenantId,
        controller_id: &str,
        id: ActionId,
        confirm: bool,
        code: Option<i32>,
        details: Vec<String>,
    ) -> Result<Feedback, EngineError> {
        let mut tx = self.pool.begin().await?;
        let a = lock_of_target(&mut tx, tenant, controller_id, id).await?;
        if !a.active {
            return Ok(Feedback::Closed);
        }
        let status = ActionStatus::from_db(&a.status);
        let waiting = status == Some(ActionStatus::WaitForConfirmation);
        if !waiting {
            let cfg = tenants::configs(&mut tx, tenant).await?;
            let flow = config_keys::flag(&cfg, config_keys::CONFIRMATION_FLOW);
            // Only a denial may revoke a confirmation, and not of an action being cancelled.
            if confirm || !flow || status.is_none_or(ActionStatus::is_cancel) {
                return Ok(Feedback::NotWaiting);
            }
        }
        let (next, note) = if confirm {
            (
                ActionStatus::Running,
                "Target confirmed action. Therefore, it will be set to the running state to proceed with the deployment.",
            )
        } else {
            (
                ActionStatus::WaitForConfirmation,
                "Target rejected action. Action will stay in confirmation pending state.",
            )
        };
        let mut messages = details;
        messages.push(format!("{SERVER_PREFIX}{note}"));
        if let Some(c) = code {
            messages.push(format!("Confirmation status code: {c}"));
        }
        let mut updates = actions::ActionUpdates::default();
        updates.id.push(a.id);
        updates.status.push(next.as_db().to_owned());
        updates.active.push(true);
        let mut history = actions::NewHistory::default();
        history.push(a.id, next.as_db(), code, &messages);
        actions::update_states_keep_reports(&mut tx, &updates).await?;
        actions::insert_history(&mut tx, &history).await?;
        let out = if confirm {
            vec![Pending::Target(a.target_id)]
        } else {
            Vec::new()
        };
        self.commit_with_outbox(tx, out).await?;
        Ok(Feedback::Applied)
    }

    /// The automatic action cleanup (hawkBit's `AutoActionCleanup`): for each tenant whose
    /// `action.cleanup.auto.expiry` is not negative, delete its closed actions in the statuses of
    /// `action.cleanup.auto.status` that did not change for that long, in chunks. Returns how
    /// many went.
    #[tracing::instrument(skip_all, fields(deleted))]
    pub async fn clean_up_actions(&self) -> Result<u64, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let configs = deletes::cleanup_configs(
            &mut conn,
            config_keys::CLEANUP_EXPIRY,
            config_keys::CLEANUP_STATUS,
        )
        .await?;
        let guard = guard();
        let mut total = 0;
        for (tenant, expiry, status) in configs {
            let Some(expiry) = expiry.as_i64().filter(|e| *e >= 0) else {
                continue;
            };
            let mut cfg = std::collections::BTreeMap::new();
            if let Some(s) = status {
                cfg.insert(config_keys::CLEANUP_STATUS.to_owned(), s);
            }
            let wanted = names(&statuses(&cfg, config_keys::CLEANUP_STATUS));
            if wanted.is_empty() {
                continue;
            }
            let before = now_ms() - expiry;
            loop {
                let n = deletes::delete_expired(
                    &mut conn,
                    tenant,
                    &wanted,
                    before,
                    CLEANUP_CHUNK,
                    &guard,
                )
                .await?;
                total += n;
                if n < CLEANUP_CHUNK as u64 {
                    break;
                }
            }
        }
        if total > 0 {
            tracing::info!(deleted = total, "old actions cleaned up");
        }
        tracing::Span::current().record("deleted", total);
        Ok(total)
    }

    /// Make room for `requested` new actions on each of `targets` that is at its action quota
    /// (`maxActionsPerTarget`), if the tenant's `action.cleanup.onQuotaHit.percent` says so:
    /// their oldest closed actions go, that share of the quota at least. Returns how many
    /// targets lost actions. For manual assignment and rollouts alike.
    pub async fn make_room_for_actions(
        &self,
        conn: &mut PgConnection,
        tenant: TenantId,
        targets: &[i64],
        requested: i64,
    ) -> Result<i64, EngineError> {
        let cfg = tenants::configs(&mut *conn, tenant).await?;
        let percent = config_keys::number(&cfg, config_keys::PURGE_ON_QUOTA_HIT);
        self.purge_at_quota(conn, tenant, targets, requested, percent)
            .await
    }

    /// [`Self::make_room_for_actions`] with the tenant's purge `percent` already read.
    pub(crate) async fn purge_at_quota(
        &self,
        conn: &mut PgConnection,
        tenant: TenantId,
        targets: &[i64],
        requested: i64,
        percent: i64,
    ) -> Result<i64, EngineError> {
        let quota = self.settings.max_actions_per_target;
        let Some(keep) = purge_keep(quota, percent, requested) else {
            return Ok(0);
        };
        let (purged, deleted) =
            deletes::purge_for_quota(conn, targets, quota, keep, &guard()).await?;
        if purged > 0 {
            tracing::info!(tenant = %tenant, targets = purged, deleted, percent, "actions purged at the action quota");
        }
        Ok(purged)
    }

    /// [`Self::make_room_for_actions`], then 429 (hawkBit's quota error) if one of `targets`
    /// would still exceed the quota with `requested` more actions.
    pub async fn ensure_action_room(
        &self,
        conn: &mut PgConnection,
        tenant: TenantId,
        targets: &[i64],
        requested: i64,
    ) -> Result<(), EngineError> {
        self.make_room_for_actions(conn, tenant, targets, requested)
            .await?;
        let quota = self.settings.max_actions_per_target;
        let over = deletes::targets_over_quota(conn, targets, quota - requested).await?;
        if over > 0 {
            return Err(Refusal::Quota(format!(
                "{over} targets would exceed the quota of {quota} actions per target"
            ))
            .into());
        }
        Ok(())
    }
}

/// Action `id` locked, if it is one of target `controller_id` of the tenant; else 404.
async fn lock_of_target(
    conn: &mut PgConnection,
    tenant: TenantId,
    controller_id: &str,
    id: ActionId,
) -> Result<actions::ActionRow, EngineError> {
    actions::lock(conn, &[id])
        .await?
        .into_iter()
        .find(|a| a.tenant_id == tenant && a.controller_id == controller_id)
        .ok_or_else(|| EngineError::NotFound(format!("action {id} not found")))
}

#[cfg(test)]
mod tests {
    use super::purge_keep;

    #[test]
    fn purge_frees_the_share_of_the_quota() {
        assert_eq!(purge_keep(10, 20, 1), Some(8));
        assert_eq!(purge_keep(2000, 50, 1), Some(1000));
    }

    #[test]
    fn purge_is_off_outside_one_to_ninety_nine_percent_or_when_it_frees_too_little() {
        assert_eq!(purge_keep(10, 0, 1), None);
        assert_eq!(purge_keep(10, 100, 1), None);
        assert_eq!(purge_keep(10, 5, 1), None);
        assert_eq!(purge_keep(10, 20, 3), None);
    }
}
