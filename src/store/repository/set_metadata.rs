//! Key/value metadata of distribution sets (hawkBit's `/distributionsets/{id}/metadata`).

use super::sets::TABLE as SETS;
use crate::store::key_value::MetadataTable;
use crate::store::page::SortFields;

/// One metadata entry of a distribution set.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SetMetadataRow {
    pub key: String,
    pub value: String,
}

/// How metadata lists sort: API name → column; by key unless asked otherwise.
pub const SORT: SortFields =
    SortFields::new(&[("key", "md.key"), ("value", "md.value")], "md.key ASC");

/// The metadata of the tenant's distribution sets.
pub const TABLE: MetadataTable<SetMetadataRow> = MetadataTable::new(
    "distribution_set_metadata",
    &SETS,
    "ds_id",
    &["key", "value"],
    &SORT,
);
