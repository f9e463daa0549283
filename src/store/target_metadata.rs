//! Operator-owned key/value metadata of targets (rollouts.md §1.1: key ≤ 128, value ≤ 4000).
//! Every statement joins the target to check its tenant.

use sqlx::PgConnection;

use super::Result;
use super::key_value::MetadataTable;
use super::page::SortFields;
use super::targets::TABLE as TARGETS;
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
    &["key", "value"],
    &SORT,
);

/// Add an entry; an existing key is a conflict. False if the target is not the tenant's.
pub async fn insert(
    conn: &mut PgConnection,
    tenant: TenantId,
    target_id: i64,
    entry: &MetadataRow,
) -> Result<bool> {
    let binds = (tenant.0, target_id, &entry.key, &entry.value);
    let duplicate = || {
        format!(
            "metadata key {:?} already exists for this target",
            entry.key
        )
    };
    TABLE.insert(conn, binds, duplicate).await
}

/// Change an entry's value; `None` if there is no such entry.
pub async fn update(
    conn: &mut PgConnection,
    tenant: TenantId,
    target_id: i64,
    key: &str,
    value: &str,
) -> Result<Option<MetadataRow>> {
    TABLE.update(conn, (tenant.0, target_id, key, value)).await
}
