//! Key/value metadata of software modules; target-visible entries reach the devices with their
//! deployments.

use sqlx::PgConnection;

use crate::domain::ids::TenantId;
use crate::store::filter::{Filter, push_and};
use crate::store::page::{Listing, PageRequest, SortFields, fetch};
use crate::store::{Result, StoreError};

/// One metadata entry of a software module.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MetadataRow {
    pub key: String,
    pub value: String,
    pub target_visible: bool,
}

/// How metadata lists sort: API name → column; by key unless asked otherwise.
pub const SORT: SortFields = SortFields::new(
    &[
        ("key", "md.key"),
        ("value", "md.value"),
        ("targetvisible", "md.target_visible"),
    ],
    "md.key ASC",
);

const FROM: &str = "software_module_metadata md JOIN software_module m ON m.id = md.sm_id";

const LIST: Listing = Listing {
    columns: "md.key, md.value, md.target_visible",
    from: FROM,
    count_from: FROM,
    sort: &SORT,
};

/// A page of a module's metadata matching `q`, and their total.
pub async fn list(
    conn: &mut PgConnection,
    tenant: TenantId,
    sm_id: i64,
    q: Option<&Filter>,
    page: &PageRequest,
) -> Result<(Vec<MetadataRow>, i64)> {
    fetch(conn, &LIST, page, |qb| {
        qb.push("m.tenant_id = ").push_bind(tenant.0);
        qb.push(" AND md.sm_id = ").push_bind(sm_id);
        push_and(qb, q, "md");
    })
    .await
}

/// One metadata entry of a module by key.
pub async fn find(
    conn: &mut PgConnection,
    tenant: TenantId,
    sm_id: i64,
    key: &str,
) -> Result<Option<MetadataRow>> {
    Ok(sqlx::query_as::<_, MetadataRow>(
        "SELECT md.key, md.value, md.target_visible FROM software_module_metadata md
         JOIN software_module m ON m.id = md.sm_id
         WHERE m.tenant_id = $1 AND md.sm_id = $2 AND md.key = $3",
    )
    .bind(tenant.0)
    .bind(sm_id)
    .bind(key)
    .fetch_optional(conn)
    .await?)
}

/// Add a metadata entry to a module of the tenant; an existing key is a conflict.
pub async fn insert(
    conn: &mut PgConnection,
    tenant: TenantId,
    sm_id: i64,
    entry: &MetadataRow,
) -> Result<bool> {
    Ok(sqlx::query(
        "INSERT INTO software_module_metadata (sm_id, key, value, target_visible)
         SELECT m.id, $3, $4, $5 FROM software_module m WHERE m.tenant_id = $1 AND m.id = $2",
    )
    .bind(tenant.0)
    .bind(sm_id)
    .bind(&entry.key)
    .bind(&entry.value)
    .bind(entry.target_visible)
    .execute(conn)
    .await
    .map_err(|e| match StoreError::from(e) {
        StoreError::Conflict(_) => StoreError::Conflict(format!(
            "metadata key {} already exists in software module {sm_id}",
            entry.key
        )),
        other => other,
    })?
    .rows_affected()
        > 0)
}

/// Change the value and/or visibility of a metadata entry (`None` = unchanged). False if unknown.
pub async fn update(
    conn: &mut PgConnection,
    tenant: TenantId,
    sm_id: i64,
    key: &str,
    value: Option<&str>,
    target_visible: Option<bool>,
) -> Result<Option<MetadataRow>> {
    Ok(sqlx::query_as::<_, MetadataRow>(
        "UPDATE software_module_metadata md SET value = COALESCE($4, md.value),
                target_visible = COALESCE($5, md.target_visible)
         FROM software_module m
         WHERE m.id = md.sm_id AND m.tenant_id = $1 AND md.sm_id = $2 AND md.key = $3
         RETURNING md.key, md.value, md.target_visible",
    )
    .bind(tenant.0)
    .bind(sm_id)
    .bind(key)
    .bind(value)
    .bind(target_visible)
    .fetch_optional(conn)
    .await?)
}

/// Remove a metadata entry of a module of the tenant. False if unknown.
pub async fn delete(
    conn: &mut PgConnection,
    tenant: TenantId,
    sm_id: i64,
    key: &str,
) -> Result<bool> {
    Ok(sqlx::query(
        "DELETE FROM software_module_metadata md USING software_module m
         WHERE m.id = md.sm_id AND m.tenant_id = $1 AND md.sm_id = $2 AND md.key = $3",
    )
    .bind(tenant.0)
    .bind(sm_id)
    .bind(key)
    .execute(conn)
    .await?
    .rows_affected()
        > 0)
}
