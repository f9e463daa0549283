//! Operator-owned key/value metadata of targets (rollouts.md §1.1: key ≤ 128, value ≤ 4000).
//! Every statement joins the target to check its tenant.

use sqlx::PgConnection;

use super::key_value::MetadataTable;
use super::page::SortFields;
use super::targets::TABLE as TARGETS;
use super::{Result, sql};
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

/// The metadata of the tenant's targets.
pub const TABLE: MetadataTable<MetadataRow> = MetadataTable::new(
    "target_metadata",
    &TARGETS,
    "target_id",
    "md.key, md.value",
    &SORT,
);

/// Add an entry; an existing key is a conflict. False if the target is not the tenant's.
pub async fn insert(
    conn: &mut PgConnection,
    tenant: TenantId,
    target_id: i64,
    entry: &MetadataRow,
) -> Result<bool> {
    let sql = "INSERT INTO target_metadata (target_id, key, value)
               SELECT t.id, $3, $4 FROM target t WHERE t.tenant_id = $1 AND t.id = $2";
    let inserted = sql::execute(conn, sql, (tenant.0, target_id, &entry.key, &entry.value))
        .await
        .map_err(|e| {
            e.conflict_as(|| {
                format!(
                    "metadata key {:?} already exists for this target",
                    entry.key
                )
            })
        })?;
    Ok(inserted > 0)
}

/// Change an entry's value; `None` if there is no such entry.
pub async fn update(
    conn: &mut PgConnection,
    tenant: TenantId,
    target_id: i64,
    key: &str,
    value: &str,
) -> Result<Option<MetadataRow>> {
    let sql = "UPDATE target_metadata md SET value = $4 FROM target t
               WHERE t.id = md.target_id AND t.tenant_id = $1 AND md.target_id = $2 AND md.key = $3
               RETURNING md.key, md.value";
    sql::fetch_optional(conn, sql, (tenant.0, target_id, key, value)).await
}
