//! The actions of a rollout: created SCHEDULED per group (§4.6 A), locked for activation, and
//! removed, cancelled or force-closed on stop and delete (§6.3, §6.4).

use sqlx::PgConnection;

use crate::domain::ids::{ActionId, DsId, GroupId, RolloutId};
use crate::domain::rollout::Rollout;
use crate::store::Result;

/// The highest target id that already has an action in a group.
pub async fn max_scheduled_target(conn: &mut PgConnection, group: GroupId) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT COALESCE(max(target_id), 0) FROM action WHERE rollout_group_id = $1",
    )
    .bind(group.0)
    .fetch_one(conn)
    .await?)
}

/// What one scheduling statement did.
#[derive(Debug, Clone, Copy, sqlx::FromRow)]
pub struct Scheduled {
    /// Members looked at.
    pub members: i64,
    /// Highest member target id looked at.
    pub last_member: i64,
    /// Actions created.
    pub created: i64,
}

/// Create SCHEDULED actions for up to `limit` members of a group above `after` (§4.6 A). In
/// single-assignment mode, other rollouts' SCHEDULED actions of those targets are cancelled
/// first (not of required-migration-step sets). A target that already has `quota` actions
/// (`maxActionsPerTarget`, §3.6) gets none: it is left out of the rollout instead of failing it.
pub async fn schedule_chunk(
    conn: &mut PgConnection,
    r: &Rollout,
    group: GroupId,
    after: i64,
    limit: i64,
    single: bool,
    quota: i64,
) -> Result<Scheduled> {
    Ok(sqlx::query_as(
        "WITH chunk AS (
             SELECT m.target_id FROM rollout_target_group m JOIN target t ON t.id = m.target_id
             WHERE m.group_id = $1 AND m.target_id > $2 ORDER BY m.target_id LIMIT $3),
         allowed AS (
             SELECT c.target_id FROM chunk c
             WHERE (SELECT count(*) FROM action x WHERE x.target_id = c.target_id) < $12),
         cancelled AS (
             UPDATE action a SET status = 'CANCELED', active = false, last_modified_at = epoch_ms()
             FROM allowed c, distribution_set d
             WHERE $4 AND a.target_id = c.target_id AND a.status = 'SCHEDULED'
               AND a.rollout_id IS DISTINCT FROM $5 AND d.id = a.ds_id AND NOT d.required_migration_step
             RETURNING a.id),
         ins AS (
             INSERT INTO action (tenant_id, target_id, ds_id, action_type, status, active, weight,
                                 forced_time, rollout_id, rollout_group_id, initiated_by,
                                 created_by, last_modified_by)
             SELECT $6, c.target_id, $7, $8, 'SCHEDULED', false, $9, $10, $5, $1, $11, $11, $11
             FROM allowed c ORDER BY c.target_id
             RETURNING target_id)
         SELECT (SELECT count(*) FROM chunk) AS members,
                (SELECT COALESCE(max(target_id), 0) FROM chunk) AS last_member,
                (SELECT count(*) FROM ins) AS created",
    )
    .bind(group.0)
    .bind(after)
    .bind(limit)
    .bind(single)
    .bind(r.id.0)
    .bind(r.tenant.0)
    .bind(r.ds.0)
    .bind(r.action_type.as_db())
    .bind(r.weight)
    .bind(r.forced_time)
    .bind(&r.audit.created_by)
    .bind(quota)
    .fetch_one(conn)
    .await?)
}

/// A SCHEDULED action about to be activated, with what its target says about it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Activation {
    pub id: ActionId,
    pub target_id: i64,
    pub assigned_ds_id: Option<DsId>,
    pub auto_confirm: bool,
}

/// Lock up to `limit` SCHEDULED actions of a group with an id above `after`, oldest first.
pub async fn lock_scheduled(
    conn: &mut PgConnection,
    group: GroupId,
    after: ActionId,
    limit: i64,
) -> Result<Vec<Activation>> {
    Ok(sqlx::query_as(
        // The chunk is chosen (and locked) before the join, so only its rows meet `target`.
        "SELECT a.id, a.target_id, t.assigned_ds_id, t.auto_confirm_at IS NOT NULL AS auto_confirm
         FROM (SELECT id, target_id FROM action
               WHERE rollout_group_id = $1 AND id > $3 AND status = 'SCHEDULED'
               ORDER BY id LIMIT $2 FOR UPDATE) a
         JOIN target t ON t.id = a.target_id ORDER BY a.id",
    )
    .bind(group)
    .bind(limit)
    .bind(after)
    .fetch_all(conn)
    .await?)
}

/// Delete up to `limit` SCHEDULED actions of a rollout (stop, delete). Returns how many.
pub async fn delete_scheduled(
    conn: &mut PgConnection,
    rollout: RolloutId,
    limit: i64,
) -> Result<u64> {
    Ok(sqlx::query(
        "DELETE FROM action WHERE id IN (SELECT id FROM action WHERE rollout_id = $1
                                         AND status = 'SCHEDULED' LIMIT $2)",
    )
    .bind(rollout.0)
    .bind(limit)
    .execute(conn)
    .await?
    .rows_affected())
}

/// Lock up to `limit` active actions of a rollout that are not CANCELING yet.
pub async fn lock_active(
    conn: &mut PgConnection,
    rollout: RolloutId,
    limit: i64,
    include_canceling: bool,
) -> Result<Vec<(ActionId, i64)>> {
    Ok(sqlx::query_as(
        "SELECT id, target_id FROM action
         WHERE rollout_id = $1 AND active AND ($3 OR status <> 'CANCELING')
         ORDER BY id LIMIT $2 FOR UPDATE",
    )
    .bind(rollout.0)
    .bind(limit)
    .bind(include_canceling)
    .fetch_all(conn)
    .await?)
}

/// Whether the rollout has any action, and any action other than SCHEDULED.
pub async fn action_presence(conn: &mut PgConnection, rollout: RolloutId) -> Result<(bool, bool)> {
    Ok(sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM action WHERE rollout_id = $1),
                EXISTS (SELECT 1 FROM action WHERE rollout_id = $1 AND status <> 'SCHEDULED')",
    )
    .bind(rollout.0)
    .fetch_one(conn)
    .await?)
}

/// Remove a rollout with its groups and memberships (its actions must be gone).
pub async fn hard_delete(conn: &mut PgConnection, rollout: RolloutId) -> Result<()> {
    sqlx::query(
        "DELETE FROM rollout_target_group
         WHERE group_id IN (SELECT id FROM rollout_group WHERE rollout_id = $1)",
    )
    .bind(rollout.0)
    .execute(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM rollout WHERE id = $1")
        .bind(rollout.0)
        .execute(conn)
        .await?;
    Ok(())
}

/// After force-closing actions: each target's assigned set becomes that of its oldest open
/// action, or its installed set (IN_SYNC) when none is left (set-based, §6.4).
pub async fn reset_assigned(conn: &mut PgConnection, targets: &[i64]) -> Result<()> {
    sqlx::query(
        "UPDATE target t SET
            assigned_ds_id = COALESCE(o.ds_id, t.installed_ds_id),
            update_status = CASE WHEN o.ds_id IS NULL THEN 'IN_SYNC' ELSE t.update_status END,
            last_modified_at = epoch_ms()
         FROM (SELECT u.id, (SELECT ds_id FROM action WHERE target_id = u.id AND active
                             ORDER BY id LIMIT 1) AS ds_id
               FROM unnest($1::bigint[]) AS u(id)) o
         WHERE t.id = o.id",
    )
    .bind(targets)
    .execute(conn)
    .await?;
    Ok(())
}
