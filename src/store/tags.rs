//! Target tags and which targets carry them (rollouts.md §1.1: target ↔ tag is M:N).

use sqlx::PgConnection;

use super::filter::{Filter, push_and};
use super::page::{Listing, PageRequest, SortFields, fetch};
use super::targets::{COLUMNS as TARGET_COLUMNS, SORT as TARGET_SORT, TargetRow};
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

/// How tag lists sort: API name → column; by id unless asked otherwise.
pub const SORT: SortFields = SortFields::new(
    &[
        ("id", "g.id"),
        ("name", "g.name"),
        ("description", "g.description"),
        ("colour", "g.colour"),
        ("createdat", "g.created_at"),
        ("createdby", "g.created_by"),
        ("lastmodifiedat", "g.last_modified_at"),
        ("lastmodifiedby", "g.last_modified_by"),
    ],
    "g.id ASC",
);

const LIST: Listing = Listing {
    columns: COLUMNS,
    from: "target_tag g",
    count_from: "target_tag g",
    sort: &SORT,
};

/// A page of the tenant's tags matching `q` (an [`Entity::TargetTag`](super::filter::Entity)
/// filter) and their total.
pub async fn list(
    conn: &mut PgConnection,
    tenant: TenantId,
    q: Option<&Filter>,
    page: &PageRequest,
) -> Result<(Vec<TagRow>, i64)> {
    fetch(conn, &LIST, page, |qb| {
        qb.push("g.tenant_id = ").push_bind(tenant.0);
        push_and(qb, q, "g");
    })
    .await
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

const TAGGED_TARGETS: Listing = Listing {
    columns: TARGET_COLUMNS,
    from: "target t JOIN target_tag_assignment a ON a.target_id = t.id
          LEFT JOIN target_type tt ON tt.id = t.target_type_id",
    count_from: "target t JOIN target_tag_assignment a ON a.target_id = t.id",
    sort: &TARGET_SORT,
};

/// A page of the targets carrying a tag and matching `q` (an
/// [`Entity::Target`](super::filter::Entity) filter) and their total, sorted like targets.
pub async fn assigned_targets(
    conn: &mut PgConnection,
    tenant: TenantId,
    tag_id: i64,
    q: Option<&Filter>,
    page: &PageRequest,
) -> Result<(Vec<TargetRow>, i64)> {
    fetch(conn, &TAGGED_TARGETS, page, |qb| {
        qb.push("t.tenant_id = ").push_bind(tenant.0);
        qb.push(" AND a.tag_id = ").push_bind(tag_id);
        push_and(qb, q, "t");
    })
    .await
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
