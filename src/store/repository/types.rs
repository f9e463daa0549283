//! Software module types and distribution set types (seeded per tenant, read-only in the API),
//! and which module types a set type takes.

use sqlx::PgConnection;

use crate::domain::ids::TenantId;
use crate::store::page::{Base, SortFields};
use crate::store::table::Table;
use crate::store::{Audit, Named};
use crate::store::{Result, sql};

/// A software module type.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ModuleTypeRow {
    pub id: i64,
    pub key: String,
    #[sqlx(flatten)]
    pub named: Named,
    pub colour: Option<String>,
    pub max_assignments: i32,
    pub deleted: bool,
    #[sqlx(flatten)]
    pub audit: Audit,
}

const MODULE_TYPE_COLUMNS: &str = "ty.id, ty.key, ty.name, ty.description, ty.colour,
    ty.max_assignments, ty.deleted, ty.created_at, ty.created_by, ty.last_modified_at,
    ty.last_modified_by";

/// How module type lists sort: API name → column; by id unless asked otherwise.
pub const MODULE_TYPE_SORT: SortFields = SortFields::of(
    Base::Named,
    "ty",
    &[
        ("key", "ty.key"),
        ("maxassignments", "ty.max_assignments"),
        ("colour", "ty.colour"),
    ],
    "ty.id ASC",
);

/// The tenant's software module types.
pub const MODULE_TYPES: Table<ModuleTypeRow> = Table::new(
    "software_module_type",
    "ty",
    MODULE_TYPE_COLUMNS,
    &MODULE_TYPE_SORT,
)
.soft_deleted();

/// A distribution set type.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SetTypeRow {
    pub id: i64,
    pub key: String,
    #[sqlx(flatten)]
    pub named: Named,
    pub colour: Option<String>,
    pub deleted: bool,
    #[sqlx(flatten)]
    pub audit: Audit,
}

const SET_TYPE_COLUMNS: &str = "dt.id, dt.key, dt.name, dt.description, dt.colour, dt.deleted,
    dt.created_at, dt.created_by, dt.last_modified_at, dt.last_modified_by";

/// How set type lists sort: API name → column; by id unless asked otherwise.
pub const SET_TYPE_SORT: SortFields = SortFields::of(
    Base::Named,
    "dt",
    &[("key", "dt.key"), ("colour", "dt.colour")],
    "dt.id ASC",
);

/// The tenant's distribution set types.
pub const SET_TYPES: Table<SetTypeRow> = Table::new(
    "distribution_set_type",
    "dt",
    SET_TYPE_COLUMNS,
    &SET_TYPE_SORT,
)
.soft_deleted();

/// A module type a set type takes, and whether it is mandatory.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SetTypeElementRow {
    pub ds_type_id: i64,
    pub mandatory: bool,
    #[sqlx(flatten)]
    pub module_type: ModuleTypeRow,
}

/// The module types several set types take (ordered by set type, then module type id).
pub async fn set_type_elements(
    conn: &mut PgConnection,
    tenant: TenantId,
    ds_type_ids: &[i64],
) -> Result<Vec<SetTypeElementRow>> {
    let sql = format!(
        "SELECT e.ds_type_id, e.mandatory, {MODULE_TYPE_COLUMNS}
         FROM distribution_set_type_element e
         JOIN distribution_set_type dt ON dt.id = e.ds_type_id
         JOIN software_module_type ty ON ty.id = e.sm_type_id
         WHERE dt.tenant_id = $1 AND e.ds_type_id = ANY($2)
         ORDER BY e.ds_type_id, ty.id"
    );
    sql::fetch_all(conn, &sql, (tenant.0, ds_type_ids)).await
}
