//! Target tags and which targets carry them (rollouts.md §1.1: target ↔ tag is M:N).

use sqlx::{PgConnection, Postgres, QueryBuilder};

use super::filter::{Filter, push_and};
use super::targets::{COLUMNS as TARGET_COLUMNS, TargetRow};
use super::{Result, StoreError};
use crate::domain::ids::TenantId;

/// A target tag as the API shows it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TagRow {
    pub id: i64,
    pub name: String,
    pub description: Option<String>,
    pub colour: Option<String>,
    pub created_at: i64,
    pub created_by: String,
    pub last_modified_at: i64,
    pub last_modified_by: String,
}

const COLUMNS: &str = "g.id, g.name, g.description, g.colour, g.created_at, g.created_by,
    g.last_modified_at, g.last_modified_by";

/// Sortable tag fields: API name → column.
pub const SORT_FIELDS: &[(&str, &str)] = &[
    ("id", "g.id"),
    ("name", "g.name"),
    ("description", "g.description"),
    ("colour", "g.colour"),
    ("createdat", "g.created_at"),
    ("createdby", "g.created_by"),
    ("lastmodifiedat", "g.last_modified_at"),
    ("lastmodifiedby", "g.last_modified_by"),
];

/// A page of the tenant's tags matching `q` (an [`Entity::TargetTag`](super::filter::Entity)
/// filter) and their total; `order_by` comes from [`SORT_FIELDS`] only.
pub async fn list(
    conn: &mut PgConnection,
    tenant: TenantId,
    q: Option<&Filter>,
    order_by: &str,
    offset: i64,
    limit: i64,
) -> Result<(Vec<TagRow>, i64)> {
    let mut page = QueryBuilder::new(format!(
        "SELECT {COLUMNS} FROM target_tag g WHERE g.tenant_id = "
    ));
    page.push_bind(tenant.0);
    push_and(&mut page, q, "g");
    page.push(format!(" ORDER BY {order_by} OFFSET "));
    page.push_bind(offset);
    page.push(" LIMIT ");
    page.push_bind(limit);
    let rows = page.build_query_as().fetch_all(&mut *conn).await?;
    let mut count = QueryBuilder::new("SELECT count(*) FROM target_tag g WHERE g.tenant_id = ");
    count.push_bind(tenant.0);
    push_and(&mut count, q, "g");
    let total = count.build_query_scalar().fetch_one(conn).await?;
    Ok((rows, total))
}

/// One tag by id.
pub async fn find(conn: &mut PgConnection, tenant: TenantId, id: i64) -> Result<Option<TagRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM target_tag g WHERE g.tenant_id = $1 AND g.id = $2"
    ))
    .bind(tenant.0)
    .bind(id)
    .fetch_optional(conn)
    .await?)
}

fn duplicate(e: sqlx::Error, name: &str) -> StoreError {
    match StoreError::from(e) {
        StoreError::Conflict(_) => {
            StoreError::Conflict(format!("a target tag named {name:?} already exists"))
        }
        other => other,
    }
}

/// Insert a tag; a duplicate name in the tenant is a conflict.
pub async fn insert(
    conn: &mut PgConnection,
    tenant: TenantId,
    name: &str,
    description: Option<&str>,
    colour: Option<&str>,
    user: &str,
) -> Result<TagRow> {
    sqlx::query_as(&format!(
        "INSERT INTO target_tag AS g (tenant_id, name, description, colour, created_by,
                                      last_modified_by)
         VALUES ($1, $2, $3, $4, $5, $5) RETURNING {COLUMNS}"
    ))
    .bind(tenant.0)
    .bind(name)
    .bind(description)
    .bind(colour)
    .bind(user)
    .fetch_one(conn)
    .await
    .map_err(|e| duplicate(e, name))
}

/// Change a tag (`None` = unchanged); `None` if it does not exist. A duplicate name is a
/// conflict.
pub async fn update(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: i64,
    name: Option<&str>,
    description: Option<&str>,
    colour: Option<&str>,
    user: &str,
) -> Result<Option<TagRow>> {
    sqlx::query_as(&format!(
        "UPDATE target_tag g SET name = COALESCE($3, g.name),
                description = COALESCE($4, g.description), colour = COALESCE($5, g.colour),
                last_modified_at = epoch_ms(), last_modified_by = $6,
                opt_lock_revision = g.opt_lock_revision + 1
         WHERE g.tenant_id = $1 AND g.id = $2 RETURNING {COLUMNS}"
    ))
    .bind(tenant.0)
    .bind(id)
    .bind(name)
    .bind(description)
    .bind(colour)
    .bind(user)
    .fetch_optional(conn)
    .await
    .map_err(|e| duplicate(e, name.unwrap_or_default()))
}

/// Delete a tag (its assignments go with it). False if unknown.
pub async fn delete(conn: &mut PgConnection, tenant: TenantId, id: i64) -> Result<bool> {
    Ok(
        sqlx::query("DELETE FROM target_tag WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.0)
            .bind(id)
            .execute(conn)
            .await?
            .rows_affected()
            > 0,
    )
}

/// A page of the targets carrying a tag and matching `q` (an
/// [`Entity::Target`](super::filter::Entity) filter) and their total; `order_by` comes from
/// [`super::targets::SORT_FIELDS`] only.
pub async fn assigned_targets(
    conn: &mut PgConnection,
    tenant: TenantId,
    tag_id: i64,
    q: Option<&Filter>,
    order_by: &str,
    offset: i64,
    limit: i64,
) -> Result<(Vec<TargetRow>, i64)> {
    let scope = |qb: &mut QueryBuilder<'_, Postgres>| {
        qb.push_bind(tenant.0);
        qb.push(" AND a.tag_id = ");
        qb.push_bind(tag_id);
        push_and(qb, q, "t");
    };
    let mut page = QueryBuilder::new(format!(
        "SELECT {TARGET_COLUMNS} FROM target t
         JOIN target_tag_assignment a ON a.target_id = t.id
         LEFT JOIN target_type tt ON tt.id = t.target_type_id
         WHERE t.tenant_id = "
    ));
    scope(&mut page);
    page.push(format!(" ORDER BY {order_by} OFFSET "));
    page.push_bind(offset);
    page.push(" LIMIT ");
    page.push_bind(limit);
    let rows = page.build_query_as().fetch_all(&mut *conn).await?;
    let mut count = QueryBuilder::new(
        "SELECT count(*) FROM target t JOIN target_tag_assignment a ON a.target_id = t.id
         WHERE t.tenant_id = ",
    );
    scope(&mut count);
    let total = count.build_query_scalar().fetch_one(conn).await?;
    Ok((rows, total))
}

/// The tenant's targets with these controllerIds, in no particular order (absent ones are
/// simply missing).
pub async fn targets_by_controller_ids(
    conn: &mut PgConnection,
    tenant: TenantId,
    controller_ids: &[String],
) -> Result<Vec<TargetRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {TARGET_COLUMNS} FROM target t
         LEFT JOIN target_type tt ON tt.id = t.target_type_id
         WHERE t.tenant_id = $1 AND t.controller_id = ANY($2)"
    ))
    .bind(tenant.0)
    .bind(controller_ids)
    .fetch_all(conn)
    .await?)
}

/// Tag targets (by id; already tagged ones stay tagged). Both must belong to the tenant.
pub async fn assign(
    conn: &mut PgConnection,
    tenant: TenantId,
    tag_id: i64,
    target_ids: &[i64],
) -> Result<()> {
    sqlx::query(
        "INSERT INTO target_tag_assignment (tag_id, target_id)
         SELECT g.id, t.id FROM target_tag g JOIN target t ON t.tenant_id = g.tenant_id
         WHERE g.tenant_id = $1 AND g.id = $2 AND t.id = ANY($3)
         ON CONFLICT DO NOTHING",
    )
    .bind(tenant.0)
    .bind(tag_id)
    .bind(target_ids)
    .execute(conn)
    .await?;
    Ok(())
}

/// Remove a tag from a target. False if the target did not carry it.
pub async fn unassign(
    conn: &mut PgConnection,
    tenant: TenantId,
    tag_id: i64,
    target_id: i64,
) -> Result<bool> {
    Ok(sqlx::query(
        "DELETE FROM target_tag_assignment a USING target_tag g
         WHERE g.id = a.tag_id AND g.tenant_id = $1 AND a.tag_id = $2 AND a.target_id = $3",
    )
    .bind(tenant.0)
    .bind(tag_id)
    .bind(target_id)
    .execute(conn)
    .await?
    .rows_affected()
        > 0)
}

/// The tags a target carries, by id.
pub async fn tags_of_target(
    conn: &mut PgConnection,
    tenant: TenantId,
    target_id: i64,
) -> Result<Vec<TagRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM target_tag g JOIN target_tag_assignment a ON a.tag_id = g.id
         WHERE g.tenant_id = $1 AND a.target_id = $2 ORDER BY g.id"
    ))
    .bind(tenant.0)
    .bind(target_id)
    .fetch_all(conn)
    .await?)
}
