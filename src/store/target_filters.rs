//! Stored, named target filter queries (rollouts.md §1.4, §9.7). The query text is validated by
//! the caller before it gets here; this module only stores and lists it.

use sqlx::PgConnection;

use super::filter::{Filter, push_and};
use super::page::{Listing, PageRequest, SortFields, fetch};
use super::{Result, StoreError};
use crate::domain::ids::TenantId;

/// A target filter query with its (deprecated, filter-embedded) auto-assignment settings.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TargetFilterRow {
    pub id: i64,
    pub name: String,
    pub query: String,
    pub auto_assign_ds_id: Option<i64>,
    pub auto_assign_action_type: Option<String>,
    pub auto_assign_weight: Option<i32>,
    pub confirmation_required: Option<bool>,
    pub created_at: i64,
    pub created_by: String,
    pub last_modified_at: i64,
    pub last_modified_by: String,
}

const COLUMNS: &str = "f.id, f.name, f.query, f.auto_assign_ds_id, f.auto_assign_action_type,
    f.auto_assign_weight, f.confirmation_required, f.created_at, f.created_by,
    f.last_modified_at, f.last_modified_by";

/// How filter lists sort: API name → column; by id unless asked otherwise.
pub const SORT: SortFields = SortFields::new(
    &[
        ("id", "f.id"),
        ("name", "f.name"),
        ("query", "f.query"),
        ("createdat", "f.created_at"),
        ("createdby", "f.created_by"),
        ("lastmodifiedat", "f.last_modified_at"),
        ("lastmodifiedby", "f.last_modified_by"),
    ],
    "f.id ASC",
);

const LIST: Listing = Listing {
    columns: COLUMNS,
    from: "target_filter_query f",
    count_from: "target_filter_query f",
    sort: &SORT,
};

/// A page of the tenant's filters matching `q` (an `Entity::TargetFilter` filter), and their
/// total.
pub async fn list(
    conn: &mut PgConnection,
    tenant: TenantId,
    q: Option<&Filter>,
    page: &PageRequest,
) -> Result<(Vec<TargetFilterRow>, i64)> {
    fetch(conn, &LIST, page, |qb| {
        qb.push("f.tenant_id = ").push_bind(tenant.0);
        push_and(qb, q, "f");
    })
    .await
}

/// One filter by id.
pub async fn find(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: i64,
) -> Result<Option<TargetFilterRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM target_filter_query f WHERE f.tenant_id = $1 AND f.id = $2"
    ))
    .bind(tenant.0)
    .bind(id)
    .fetch_optional(conn)
    .await?)
}

fn duplicate(name: &str) -> impl FnOnce(sqlx::Error) -> StoreError + '_ {
    move |e| match StoreError::from(e) {
        StoreError::Conflict(_) => {
            StoreError::Conflict(format!("target filter {name:?} already exists"))
        }
        other => other,
    }
}

/// Insert a filter; a duplicate name within the tenant is a conflict. Returns its id.
pub async fn insert(
    conn: &mut PgConnection,
    tenant: TenantId,
    name: &str,
    query: &str,
    user: &str,
) -> Result<i64> {
    sqlx::query_scalar(
        "INSERT INTO target_filter_query (tenant_id, name, query, created_by, last_modified_by)
         VALUES ($1, $2, $3, $4, $4) RETURNING id",
    )
    .bind(tenant.0)
    .bind(name)
    .bind(query)
    .bind(user)
    .fetch_one(conn)
    .await
    .map_err(duplicate(name))
}

/// Change name and/or query (`None` = unchanged). Returns false when there is no such filter;
/// a name taken by another filter is a conflict.
pub async fn update(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: i64,
    name: Option<&str>,
    query: Option<&str>,
    user: &str,
) -> Result<bool> {
    Ok(sqlx::query(
        "UPDATE target_filter_query SET name = COALESCE($3, name), query = COALESCE($4, query),
                last_modified_at = epoch_ms(), last_modified_by = $5,
                opt_lock_revision = opt_lock_revision + 1
         WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant.0)
    .bind(id)
    .bind(name)
    .bind(query)
    .bind(user)
    .execute(conn)
    .await
    .map_err(duplicate(name.unwrap_or_default()))?
    .rows_affected()
        > 0)
}

/// Delete a filter. Returns false when there is no such filter.
pub async fn delete(conn: &mut PgConnection, tenant: TenantId, id: i64) -> Result<bool> {
    Ok(
        sqlx::query("DELETE FROM target_filter_query WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.0)
            .bind(id)
            .execute(conn)
            .await?
            .rows_affected()
            > 0,
    )
}
