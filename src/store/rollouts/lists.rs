//! What the API lists of rollouts and groups: pages with a filter and an order, a group's
//! targets, and the rollouts of a distribution set by status.

use sqlx::{PgConnection, Postgres, QueryBuilder};

use super::{COLUMNS, FROM, GROUP_COLUMNS, groups_of, rollouts};
use crate::domain::ids::{GroupId, RolloutId, TenantId};
use crate::domain::rollout::{Group, Rollout};
use crate::store::Result;
use crate::store::filter::Filter;

/// `soft_deleted_mode` of rollout lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeletedMode {
    Exclude,
    Only,
    Include,
}

/// Sortable rollout fields: API name → column. `status` sorts by hawkBit's stored code.
pub const SORT_FIELDS: &[(&str, &str)] = &[
    ("id", "r.id"),
    ("name", "r.name"),
    ("description", "r.description"),
    ("createdat", "r.created_at"),
    ("createdby", "r.created_by"),
    ("lastmodifiedat", "r.last_modified_at"),
    ("lastmodifiedby", "r.last_modified_by"),
    (
        "status",
        "CASE r.status WHEN 'CREATING' THEN 0 WHEN 'READY' THEN 1 WHEN 'PAUSED' THEN 2
         WHEN 'STARTING' THEN 3 WHEN 'STOPPED' THEN 4 WHEN 'RUNNING' THEN 5 WHEN 'FINISHED' THEN 6
         WHEN 'DELETING' THEN 9 WHEN 'DELETED' THEN 10 WHEN 'WAITING_FOR_APPROVAL' THEN 11
         WHEN 'APPROVAL_DENIED' THEN 12 ELSE 13 END",
    ),
    ("totaltargets", "r.total_targets"),
];

/// A page of the tenant's rollouts.
pub async fn list(
    conn: &mut PgConnection,
    tenant: TenantId,
    q: Option<&Filter>,
    mode: DeletedMode,
    order_by: &str,
    offset: i64,
    limit: i64,
) -> Result<(Vec<Rollout>, i64)> {
    let condition = |qb: &mut QueryBuilder<'_, Postgres>| {
        qb.push(" WHERE r.tenant_id = ").push_bind(tenant.0);
        match mode {
            DeletedMode::Exclude => qb.push(" AND NOT r.deleted"),
            DeletedMode::Only => qb.push(" AND r.deleted"),
            DeletedMode::Include => qb.push(""),
        };
        if let Some(f) = q {
            qb.push(" AND ");
            f.push_sql(qb, "r");
        }
    };
    let (rows, total) = page(conn, COLUMNS, FROM, condition, order_by, offset, limit).await?;
    Ok((rollouts(rows)?, total))
}

/// A page of rows `SELECT <columns> FROM <from> <condition> ORDER BY ... OFFSET ... LIMIT ...`
/// and the total count under the same condition.
async fn page<T>(
    conn: &mut PgConnection,
    columns: &str,
    from: &str,
    condition: impl Fn(&mut QueryBuilder<'_, Postgres>),
    order_by: &str,
    offset: i64,
    limit: i64,
) -> Result<(Vec<T>, i64)>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
{
    let mut qb = QueryBuilder::new(format!("SELECT {columns} FROM {from}"));
    condition(&mut qb);
    qb.push(format!(" ORDER BY {order_by} OFFSET "))
        .push_bind(offset)
        .push(" LIMIT ")
        .push_bind(limit);
    let rows = qb.build_query_as().fetch_all(&mut *conn).await?;
    let mut qb = QueryBuilder::new(format!("SELECT count(*) FROM {from}"));
    condition(&mut qb);
    let total = qb.build_query_scalar().fetch_one(conn).await?;
    Ok((rows, total))
}

/// Every group of a rollout in id order.
pub async fn groups(conn: &mut PgConnection, rollout: RolloutId) -> Result<Vec<Group>> {
    groups_of(
        sqlx::query_as(&format!(
            "SELECT {GROUP_COLUMNS} FROM rollout_group g WHERE g.rollout_id = $1 ORDER BY g.id"
        ))
        .bind(rollout.0)
        .fetch_all(conn)
        .await?,
    )
}

/// Sortable group fields (hawkBit validates group sorting against rollout fields, §9.2).
pub const GROUP_SORT_FIELDS: &[(&str, &str)] = &[
    ("id", "g.id"),
    ("name", "g.name"),
    ("description", "g.description"),
    ("createdat", "g.created_at"),
    ("createdby", "g.created_by"),
    ("lastmodifiedat", "g.last_modified_at"),
    ("lastmodifiedby", "g.last_modified_by"),
    ("status", "g.status"),
    ("totaltargets", "g.total_targets"),
];

/// A page of a rollout's groups.
pub async fn list_groups(
    conn: &mut PgConnection,
    rollout: RolloutId,
    q: Option<&Filter>,
    order_by: &str,
    offset: i64,
    limit: i64,
) -> Result<(Vec<Group>, i64)> {
    let condition = |qb: &mut QueryBuilder<'_, Postgres>| {
        qb.push(" WHERE g.rollout_id = ").push_bind(rollout.0);
        if let Some(f) = q {
            qb.push(" AND ");
            f.push_sql(qb, "g");
        }
    };
    let (rows, total) = page(
        conn,
        GROUP_COLUMNS,
        "rollout_group g",
        condition,
        order_by,
        offset,
        limit,
    )
    .await?;
    Ok((groups_of(rows)?, total))
}

/// Ids of the targets of a group: its members and the targets of its actions (§12 #16), for the
/// group target listing. `q` filters targets (alias `t`).
pub fn push_group_targets(qb: &mut QueryBuilder<'_, Postgres>, group: GroupId) {
    let group = group.0;
    qb.push(" (t.id IN (SELECT target_id FROM rollout_target_group WHERE group_id = ")
        .push_bind(group)
        .push(") OR t.id IN (SELECT target_id FROM action WHERE rollout_group_id = ")
        .push_bind(group)
        .push(")) ");
}

/// Rollouts per status of a distribution set (`/distributionsets/{id}/statistics/rollouts`).
pub async fn statistics_of_set(
    conn: &mut PgConnection,
    tenant: TenantId,
    ds: i64,
) -> Result<Vec<(String, i64)>> {
    Ok(sqlx::query_as(
        "SELECT status, count(*) FROM rollout WHERE tenant_id = $1 AND ds_id = $2 AND NOT deleted
         GROUP BY status ORDER BY status",
    )
    .bind(tenant.0)
    .bind(ds)
    .fetch_all(conn)
    .await?)
}

/// A page of a group's targets: its members and the targets of its actions (§12 #16).
pub async fn group_targets(
    conn: &mut PgConnection,
    tenant: TenantId,
    group: GroupId,
    q: Option<&Filter>,
    order_by: &str,
    offset: i64,
    limit: i64,
) -> Result<(Vec<crate::store::targets::TargetRow>, i64)> {
    let condition = |qb: &mut QueryBuilder<'_, Postgres>| {
        qb.push(" WHERE t.tenant_id = ")
            .push_bind(tenant.0)
            .push(" AND ");
        push_group_targets(qb, group);
        if let Some(f) = q {
            qb.push(" AND ");
            f.push_sql(qb, "t");
        }
    };
    page(
        conn,
        crate::store::targets::COLUMNS,
        "target t LEFT JOIN target_type tt ON tt.id = t.target_type_id",
        condition,
        order_by,
        offset,
        limit,
    )
    .await
}
