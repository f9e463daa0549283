//! Distribution-set invalidation (rollouts.md §6.6, §6.7): the set can no longer be assigned or
//! rolled out, its auto-assignments go, and — by cancellation type — its rollouts are stopped
//! or deleted and its open actions cancelled or force-closed.
//!
//! The set, its auto-assignments and its rollouts change in one transaction; the rollout
//! executor then finishes those rollouts in its own bounded steps (§6.3, §6.4). Open actions
//! are handled here in chunks of [`limits::STOP_CHUNK`], one transaction each, so a set
//! assigned to a million targets never holds one huge transaction.
//!
//! `force` first stops the rollouts like `soft` and moves them to DELETING only after their
//! actions are closed: a rollout deleted at once would have the executor close its actions
//! silently (§6.4), while every device with an open action of the set is owed a cancel request
//! before its action is force-closed (§6.7).

use std::fmt;

use super::rollouts::limits;
use super::{Engine, EngineError};
use crate::dmf::envelope;
use crate::domain::action::{ActionStatus, SERVER_PREFIX};
use crate::domain::ids::{ActionId, DsId, TenantId};
use crate::domain::rollout::{Operation, RolloutStatus};
use crate::domain::target::exchange_of;
use crate::store::outbox::Pending;
use crate::store::{actions, invalidation as store, rollouts, tenants};

/// What happens to the set's rollouts and open actions (`actionCancelationType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelationType {
    /// Nothing: running rollouts and actions continue.
    None,
    /// Rollouts stop; actions are cancelled and devices asked to cancel.
    Soft,
    /// Rollouts are deleted; actions are force-closed after devices were asked to cancel.
    Force,
}

impl CancelationType {
    /// The REST spelling (`none`, `soft`, `force`), in any case.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "none" => Some(Self::None),
            "soft" => Some(Self::Soft),
            "force" => Some(Self::Force),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Soft => "soft",
            Self::Force => "force",
        }
    }

    /// Whether rollouts and actions are touched (UPDATE_ROLLOUT is needed then).
    pub fn cancels(self) -> bool {
        self != Self::None
    }
}

impl fmt::Display for CancelationType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

use crate::domain::rollout::machine::stoppable;

impl Engine {
    /// `POST /distributionsets/{id}/invalidate` (§6.6).
    ///
    /// Safe to repeat: the set stays invalid and already cancelled actions are left alone, so
    /// invalidating again after a failure part-way finishes the cancellations. (A `force`
    /// interrupted before its last step leaves its rollouts stopped rather than deleted.)
    pub async fn invalidate_set(
        &self,
        tenant: TenantId,
        ds_id: DsId,
        kind: CancelationType,
        user: &str,
    ) -> Result<(), EngineError> {
        let mut tx = self.pool.begin().await?;
        // The set before its rollouts: no rollout writer waits for a set row while holding a
        // rollout, so this order cannot deadlock with the executor.
        if !store::lock_set(&mut tx, tenant, ds_id).await? {
            return Err(EngineError::NotFound(format!(
                "distribution set {ds_id} not found"
            )));
        }
        store::mark_invalid(&mut tx, ds_id, user).await?;
        crate::store::auto_assignments::delete_of_set(&mut tx, ds_id).await?;
        // Rollouts moved to STOPPING, and those whose actions the executor takes care of.
        let mut moved = Vec::new();
        let mut skip = Vec::new();
        if kind.cancels() {
            let mut wanted: Vec<&str> = RolloutStatus::ALL
                .into_iter()
                .filter(|s| stoppable(*s))
                .map(RolloutStatus::as_db)
                .collect();
            wanted.extend([
                RolloutStatus::Stopping.as_db(),
                RolloutStatus::Deleting.as_db(),
            ]);
            for (id, status) in store::lock_rollouts_of_set(&mut tx, tenant, ds_id, &wanted).await?
            {
                if RolloutStatus::from_db(&status).is_some_and(stoppable) {
                    self.operate_locked(&mut tx, tenant, id, Operation::Stop, user)
                        .await?;
                    moved.push(id);
                }
                // The executor cancels the actions of stopping rollouts with a cancel message
                // each (and deleting ones close theirs); `force` closes every action here.
                if kind == CancelationType::Soft {
                    skip.push(id);
                }
            }
        }
        tx.commit().await?;
        if !moved.is_empty() {
            self.wake_rollouts();
        }
        if !kind.cancels() {
            tracing::info!(ds_id = ds_id.0, cancelation = %kind, "distribution set invalidated");
            return Ok(());
        }

        let force = kind == CancelationType::Force;
        let ids = {
            let mut conn = self.pool.acquire().await?;
            store::open_actions(&mut conn, tenant, ds_id, &skip, force).await?
        };
        let mut closed = 0;
        for chunk in ids.chunks(limits::STOP_CHUNK as usize) {
            closed += self.cancel_set_actions(tenant, chunk, force).await?;
        }
        if force && !moved.is_empty() {
            let mut tx = self.pool.begin().await?;
            for id in &moved {
                self.operate_locked(&mut tx, tenant, *id, Operation::Delete, user)
                    .await?;
            }
            tx.commit().await?;
            self.wake_rollouts();
        }
        tracing::info!(
            ds_id = ds_id.0,
            cancelation = %kind,
            rollouts = moved.len(),
            actions = closed,
            "distribution set invalidated"
        );
        Ok(())
    }

    /// Cancel (soft) or force-close one chunk of a set's open actions in one transaction.
    /// Returns how many changed.
    async fn cancel_set_actions(
        &self,
        tenant: TenantId,
        ids: &[ActionId],
        force: bool,
    ) -> Result<usize, EngineError> {
        let mut tx = self.pool.begin().await?;
        // Rollout rows first, then actions, then targets: the lock order of the executor.
        rollouts::lock_of_actions(&mut tx, ids).await?;
        let open = store::lock_open_actions(&mut tx, ids, force).await?;
        if open.is_empty() {
            return Ok(0);
        }
        let (status, message) = if force {
            (
                ActionStatus::Canceled,
                "A force quit has been performed by server.",
            )
        } else {
            (
                ActionStatus::Canceling,
                "A cancellation has been performed by server.",
            )
        };
        let message = [format!("{SERVER_PREFIX}{message}")];
        let mut updates = actions::ActionUpdates::default();
        let mut history = actions::NewHistory::default();
        for a in &open {
            updates.id.push(a.id);
            updates.status.push(status.as_db().to_owned());
            updates.active.push(!force);
            history.push(a.id, status.as_db(), None, &message);
        }
        actions::update_states_keep_reports(&mut tx, &updates).await?;
        actions::insert_history(&mut tx, &history).await?;
        let mut out = Vec::with_capacity(open.len());
        if force {
            // The device is asked to cancel the action closed here (§6.7), unless it already
            // was (a CANCELING action). Rendered now: a closed action is no longer among the
            // open ones that a multi-assignment MULTI_ACTION lists.
            let tenant_name = tenants::name_of(&mut tx, tenant).await?;
            for a in open
                .iter()
                .filter(|a| a.status != ActionStatus::Canceling.as_db())
            {
                if let Some(exchange) = a.address.as_deref().and_then(exchange_of) {
                    out.push(Pending::Message(envelope::encode_cancel(
                        &exchange,
                        &tenant_name,
                        &a.controller_id,
                        a.id.0,
                    )));
                }
            }
            let mut targets: Vec<i64> = open.iter().map(|a| a.target_id).collect();
            targets.sort_unstable();
            targets.dedup();
            actions::lock_targets(&mut tx, &targets).await?;
            rollouts::reset_assigned(&mut tx, &targets).await?;
            // Then the device learns its next current action, if any.
            out.extend(targets.iter().map(|t| Pending::Target(*t)));
        } else {
            // Rendered at publish time: CANCEL_DOWNLOAD (or MULTI_ACTION with the cancel).
            out.extend(open.iter().map(|a| Pending::Action(a.id)));
        }
        self.commit_with_outbox(tx, out).await?;
        Ok(open.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancelation_types_parse_in_any_case() {
        assert_eq!(CancelationType::parse("none"), Some(CancelationType::None));
        assert_eq!(CancelationType::parse("SOFT"), Some(CancelationType::Soft));
        assert_eq!(
            CancelationType::parse("Force"),
            Some(CancelationType::Force)
        );
        assert_eq!(CancelationType::parse("hard"), None);
        assert!(!CancelationType::None.cancels());
        assert!(CancelationType::Force.cancels());
    }

    #[test]
    fn only_rollouts_a_stop_applies_to_are_moved() {
        use RolloutStatus as S;
        let moved: Vec<_> = S::ALL.into_iter().filter(|s| stoppable(*s)).collect();
        assert_eq!(
            moved,
            vec![
                S::Creating,
                S::Ready,
                S::Paused,
                S::Starting,
                S::Running,
                S::WaitingForApproval,
                S::ApprovalDenied,
            ]
        );
    }
}
