//! Statements of distribution-set invalidation (rollouts.md §6.6): marking the set invalid,
//! dropping its auto-assignments, finding its rollouts and open actions. The state changes of
//! rollouts and actions reuse [`super::rollouts`] and [`super::actions`].

use sqlx::PgConnection;

use super::{Result, sql};
use crate::domain::ids::{ActionId, DsId, RolloutId, TenantId};

/// Lock a distribution set of the tenant that is not deleted, for the rest of the
/// transaction. False when there is none.
pub async fn lock_set(conn: &mut PgConnection, tenant: TenantId, ds: DsId) -> Result<bool> {
    Ok(sql::scalar_optional::<i64>(
        conn,
        "SELECT id FROM distribution_set WHERE tenant_id = $1 AND id = $2 AND NOT deleted
         FOR NO KEY UPDATE",
        (tenant, ds),
    )
    .await?
    .is_some())
}

/// Mark a set invalid; an invalid set stays unchanged (idempotent).
pub async fn mark_invalid(conn: &mut PgConnection, ds: DsId, user: &str) -> Result<()> {
    sql::execute(
        conn,
        "UPDATE distribution_set SET valid = false, last_modified_at = epoch_ms(),
                last_modified_by = $2, opt_lock_revision = opt_lock_revision + 1
         WHERE id = $1 AND valid",
        (ds, user),
    )
    .await?;
    Ok(())
}

/// Lock the set's rollouts in one of `statuses`, in id order (the lock order of every rollout
/// writer). Returns (id, status).
pub async fn lock_rollouts_of_set(
    conn: &mut PgConnection,
    tenant: TenantId,
    ds: DsId,
    statuses: &[&str],
) -> Result<Vec<(RolloutId, String)>> {
    sql::fetch_all(
        conn,
        "SELECT id, status FROM rollout WHERE tenant_id = $1 AND ds_id = $2 AND status = ANY($3)
         ORDER BY id FOR UPDATE",
        (tenant, ds, statuses),
    )
    .await
}

/// Ids of the set's active actions, in id order, outside the rollouts in `skip`; CANCELING ones
/// only with `include_canceling`. Not locked: callers lock them chunk by chunk.
pub async fn open_actions(
    conn: &mut PgConnection,
    tenant: TenantId,
    ds: DsId,
    skip: &[RolloutId],
    include_canceling: bool,
) -> Result<Vec<ActionId>> {
    sql::scalar_all(
        conn,
        "SELECT id FROM action
         WHERE tenant_id = $1 AND ds_id = $2 AND active AND ($4 OR status <> 'CANCELING')
           AND (rollout_id IS NULL OR NOT (rollout_id = ANY($3)))
         ORDER BY id",
        (tenant, ds, skip, include_canceling),
    )
    .await
}

/// An open action of the set, locked, with what a cancel message to its device needs.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OpenAction {
    pub id: ActionId,
    pub target_id: i64,
    pub status: String,
    pub controller_id: String,
    pub address: Option<String>,
}

/// Lock those of `ids` that are still active (and not CANCELING unless `include_canceling`), in
/// id order.
pub async fn lock_open_actions(
    conn: &mut PgConnection,
    ids: &[ActionId],
    include_canceling: bool,
) -> Result<Vec<OpenAction>> {
    sql::fetch_all(conn, "SELECT a.id, a.target_id, a.status, t.controller_id, t.address
         FROM action a JOIN target t ON t.id = a.target_id
         WHERE a.id IN (SELECT unnest($1::bigint[])) AND a.active AND ($2 OR a.status <> 'CANCELING')
         ORDER BY a.id FOR UPDATE OF a", (ids, include_canceling)).await
}
