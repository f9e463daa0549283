//! Key/value metadata of software modules; target-visible entries reach the devices with their
//! deployments.

use sqlx::PgConnection;

use super::modules::TABLE as MODULES;
use crate::domain::ids::TenantId;
use crate::store::Result;
use crate::store::key_value::MetadataTable;
use crate::store::page::SortFields;

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

/// The metadata of the tenant's software modules.
pub const TABLE: MetadataTable<MetadataRow> = MetadataTable::new(
    "software_module_metadata",
    &MODULES,
    "sm_id",
    &["key", "value", "target_visible"],
    &SORT,
);

/// Add a metadata entry to a module of the tenant; an existing key is a conflict.
pub async fn insert(
    conn: &mut PgConnection,
    tenant: TenantId,
    sm_id: i64,
    entry: &MetadataRow,
) -> Result<bool> {
    let binds = (
        tenant.0,
        sm_id,
        &entry.key,
        &entry.value,
        entry.target_visible,
    );
    let duplicate = || {
        format!(
            "metadata key {} already exists in software module {sm_id}",
            entry.key
        )
    };
    TABLE.insert(conn, binds, duplicate).await
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
    let binds = (tenant.0, sm_id, key, value, target_visible);
    TABLE.update(conn, binds).await
}
