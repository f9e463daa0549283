//! Operator-owned key/value metadata of targets (rollouts.md §1.1: key ≤ 128, value ≤ 4000).
//! Every statement joins the target to check its tenant.

use sqlx::PgConnection;

use super::filter::{Filter, push_and};
use super::page::{Listing, PageRequest, SortFields, fetch};
use super::{Result, StoreError};
use crate::domain::ids::TenantId;

/// One metadata entry of a target.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MetadataRow {
    pub key: String,
    pub value: String,
}

/// How metadata lists sort: API name → column; by key unless asked otherwise.
pub const SORT: SortFields =
    SortFields::new(&[("key", "md.key"), ("value", "md.value")], "md.key ASC");

const FROM: &str = "target_metadata md JOIN target t ON t.id = md.target_id";

const LIST: Listing = Listing {
    columns: "md.key, md.value",
    from: FROM,
    count_from: FROM,
    sort: &SORT,
};

/// A page of a target's metadata matching `q` (an
/// [`Entity::TargetMetadata`](super::filter::Entity) filter) and their total.
pub async fn list(
    conn: &mut PgConnection,
    tenant: TenantId,
    target_id: i64,
    q: Option<&Filter>,
    page: &PageRequest,
) -> Result<(Vec<MetadataRow>, i64)> {
    fetch(conn, &LIST, page, |qb| {
        qb.push("t.tenant_id = ").push_bind(tenant.0);
        qb.push(" AND md.target_id = ").push_bind(target_id);
        push_and(qb, q, "md");
    })
    .await
}

/// How many metadata entries a target has.
pub async fn count(conn: &mut PgConnection, tenant: TenantId, target_id: i64) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM target_metadata md JOIN target t ON t.id = md.target_id
         WHERE t.tenant_id = $1 AND md.target_id = $2",
    )
    .bind(tenant.0)
    .bind(target_id)
    .fetch_one(conn)
    .await?)
}

/// One entry by key.
pub async fn find(
    conn: &mut PgConnection,
    tenant: TenantId,
    target_id: i64,
    key: &str,
) -> Result<Option<MetadataRow>> {
    Ok(sqlx::query_as(
        "SELECT md.key, md.value FROM target_metadata md JOIN target t ON t.id = md.target_id
         WHERE t.tenant_id = $1 AND md.target_id = $2 AND md.key = $3",
    )
    .bind(tenant.0)
    .bind(target_id)
    .bind(key)
    .fetch_optional(conn)
    .await?)
}

/// Add an entry; an existing key is a conflict. False if the target is not the tenant's.
pub async fn insert(
    conn: &mut PgConnection,
    tenant: TenantId,
    target_id: i64,
    entry: &MetadataRow,
) -> Result<bool> {
    Ok(sqlx::query(
        "INSERT INTO target_metadata (target_id, key, value)
         SELECT t.id, $3, $4 FROM target t WHERE t.tenant_id = $1 AND t.id = $2",
    )
    .bind(tenant.0)
    .bind(target_id)
    .bind(&entry.key)
    .bind(&entry.value)
    .execute(conn)
    .await
    .map_err(|e| match StoreError::from(e) {
        StoreError::Conflict(_) => StoreError::Conflict(format!(
            "metadata key {:?} already exists for this target",
            entry.key
        )),
        other => other,
    })?
    .rows_affected()
        > 0)
}

/// Change an entry's value; `None` if there is no such entry.
pub async fn update(
    conn: &mut PgConnection,
    tenant: TenantId,
    target_id: i64,
    key: &str,
    value: &str,
) -> Result<Option<MetadataRow>> {
    Ok(sqlx::query_as(
        "UPDATE target_metadata md SET value = $4 FROM target t
         WHERE t.id = md.target_id AND t.tenant_id = $1 AND md.target_id = $2 AND md.key = $3
         RETURNING md.key, md.value",
    )
    .bind(tenant.0)
    .bind(target_id)
    .bind(key)
    .bind(value)
    .fetch_optional(conn)
    .await?)
}

/// Remove an entry. False if there was none.
pub async fn delete(
    conn: &mut PgConnection,
    tenant: TenantId,
    target_id: i64,
    key: &str,
) -> Result<bool> {
    Ok(sqlx::query(
        "DELETE FROM target_metadata md USING target t
         WHERE t.id = md.target_id AND t.tenant_id = $1 AND md.target_id = $2 AND md.key = $3",
    )
    .bind(tenant.0)
    .bind(target_id)
    .bind(key)
    .execute(conn)
    .await?
    .rows_affected()
        > 0)
}
