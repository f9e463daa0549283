//! Activation of a running group's SCHEDULED actions (§4.6 B): each becomes RUNNING (or waits
//! for confirmation), older actions of its target are superseded, and its deployment goes to
//! the outbox — rendered in the transaction for the fast lane, or by the publisher's rounds.

use sqlx::PgConnection;

use super::{Flags, limits};
use crate::domain::action::{ActionStatus, SERVER_PREFIX};
use crate::domain::ids::ActionId;
use crate::domain::rollout::{Group, Lane, Rollout};
use crate::engine::{Engine, EngineError};
use crate::store::outbox::Pending;
use crate::store::rollouts as store;
use crate::store::{StoreError, actions};

/// How many actions one activation takes.
pub(super) fn lane_limit(lane: Lane) -> i64 {
    match lane {
        Lane::Start => limits::ACTIVATE_INLINE,
        Lane::Chunk => limits::ACTIVATE_CHUNK,
        Lane::Members(n) => n,
    }
}

impl Engine {
    /// Activate SCHEDULED actions of a running group. Returns how many were taken.
    pub(super) async fn activate(
        &self,
        conn: &mut PgConnection,
        r: &Rollout,
        g: &Group,
        lane: Lane,
        cfg: Flags,
        out: &mut Vec<Pending>,
    ) -> Result<usize, EngineError> {
        let hint = self.activation_hint(g.id);
        let mut batch = store::lock_scheduled(conn, g.id, hint, lane_limit(lane)).await?;
        if batch.is_empty() && hint > ActionId(0) && g.counts.scheduled > 0 {
            // The hint ran ahead (a chunk rolled back): start over.
            batch = store::lock_scheduled(conn, g.id, ActionId(0), lane_limit(lane)).await?;
        }
        let Some(last) = batch.last() else {
            return Ok(0);
        };
        self.set_activation_hint(g.id, last.id);
        let single = !cfg.multi;
        let mut updates = actions::ActionUpdates::default();
        let mut history = actions::NewHistory::default();
        let mut started = Vec::new();
        let mut started_targets = Vec::new();
        let initiated = format!(
            "{SERVER_PREFIX}Initiated by Rollout Group '{}' [Rollout {}:{}]",
            g.name, r.name, r.id
        );
        for a in &batch {
            if single && a.assigned_ds_id == Some(r.ds) {
                updates.id.push(a.id);
                updates
                    .status
                    .push(ActionStatus::Finished.as_db().to_owned());
                updates.active.push(false);
                history.push(
                    a.id,
                    ActionStatus::Running.as_db(),
                    None,
                    &[format!(
                        "{SERVER_PREFIX}Distribution Set is already assigned. Skipping this action."
                    )],
                );
                continue;
            }
            let waits = cfg.confirmation_flow && g.confirmation_required && !a.auto_confirm;
            let status = if waits {
                ActionStatus::WaitForConfirmation
            } else {
                ActionStatus::Running
            };
            updates.id.push(a.id);
            updates.status.push(status.as_db().to_owned());
            updates.active.push(true);
            let mut messages = vec![initiated.clone()];
            if cfg.confirmation_flow && !waits {
                messages.push(format!(
                    "{SERVER_PREFIX}Assignment confirmed {}",
                    if a.auto_confirm {
                        "by auto-confirmation"
                    } else {
                        "as no confirmation is required"
                    }
                ));
            }
            history.push(a.id, status.as_db(), None, &messages);
            started.push(a.id);
            started_targets.push(a.target_id);
        }
        // Cancellations of superseded actions first: the devices hear of them before (or, while
        // they are pending, instead of) the new deployment.
        let mut mine = Vec::new();
        if single && !started_targets.is_empty() {
            self.supersede(conn, &started_targets, &started, cfg.autoclose, &mut mine)
                .await?;
        }
        actions::update_states_keep_reports(conn, &updates).await?;
        actions::insert_history(conn, &history).await?;
        actions::assign_targets(conn, &started_targets, r.ds, false).await?;
        if !started.is_empty() {
            if cfg.batch {
                mine.push(Pending::Batch(started.clone()));
            } else {
                mine.extend(started.iter().map(|id| Pending::Action(*id)));
            }
        }
        match lane {
            Lane::Chunk => out.extend(mine),
            Lane::Start | Lane::Members(_) => out.extend(self.prerender(conn, &mine).await?),
        }
        Ok(batch.len())
    }
}

/// Set actions to a status decided by the server, with the history entry saying so.
pub(super) async fn set_by_server(
    conn: &mut PgConnection,
    ids: &[ActionId],
    status: ActionStatus,
    message: &str,
) -> Result<(), StoreError> {
    let mut updates = actions::ActionUpdates::default();
    let mut history = actions::NewHistory::default();
    let message = [format!("{SERVER_PREFIX}{message}")];
    for id in ids {
        updates.id.push(*id);
        updates.status.push(status.as_db().to_owned());
        updates.active.push(status != ActionStatus::Canceled);
        history.push(*id, status.as_db(), None, &message);
    }
    actions::update_states_keep_reports(conn, &updates).await?;
    actions::insert_history(conn, &history).await
}
