//! Software module types and distribution set types (seeded per tenant, read-only in the API),
//! and which module types a set type takes.

use sqlx::PgConnection;

use crate::domain::ids::TenantId;
use crate::store::Result;
use crate::store::filter::{Filter, push_and};
use crate::store::page::{Listing, PageRequest, SortFields, fetch};

/// A software module type.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ModuleTypeRow {
    pub id: i64,
    pub key: String,
    pub name: String,
    pub description: Option<String>,
    pub colour: Option<String>,
    pub max_assignments: i32,
    pub deleted: bool,
    pub created_at: i64,
    pub created_by: String,
    pub last_modified_at: i64,
    pub last_modified_by: String,
}

const MODULE_TYPE_COLUMNS: &str = "ty.id, ty.key, ty.name, ty.description, ty.colour,
    ty.max_assignments, ty.deleted, ty.created_at, ty.created_by, ty.last_modified_at,
    ty.last_modified_by";

/// How module type lists sort: API name → column; by id unless asked otherwise.
pub const MODULE_TYPE_SORT: SortFields = SortFields::new(
    &[
        ("id", "ty.id"),
        ("key", "ty.key"),
        ("name", "ty.name"),
        ("description", "ty.description"),
        ("maxassignments", "ty.max_assignments"),
        ("colour", "ty.colour"),
        ("createdat", "ty.created_at"),
        ("createdby", "ty.created_by"),
        ("lastmodifiedat", "ty.last_modified_at"),
        ("lastmodifiedby", "ty.last_modified_by"),
    ],
    "ty.id ASC",
);

const MODULE_TYPES: Listing = Listing {
    columns: MODULE_TYPE_COLUMNS,
    from: "software_module_type ty",
    count_from: "software_module_type ty",
    sort: &MODULE_TYPE_SORT,
};

/// A page of the tenant's (not deleted) module types matching `q`, and their total.
pub async fn list_module_types(
    conn: &mut PgConnection,
    tenant: TenantId,
    q: Option<&Filter>,
    page: &PageRequest,
) -> Result<(Vec<ModuleTypeRow>, i64)> {
    fetch(conn, &MODULE_TYPES, page, |qb| {
        qb.push("NOT ty.deleted AND ty.tenant_id = ")
            .push_bind(tenant.0);
        push_and(qb, q, "ty");
    })
    .await
}

/// One module type by id.
pub async fn find_module_type(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: i64,
) -> Result<Option<ModuleTypeRow>> {
    Ok(sqlx::query_as::<_, ModuleTypeRow>(&format!(
        "SELECT {MODULE_TYPE_COLUMNS} FROM software_module_type ty
         WHERE ty.tenant_id = $1 AND ty.id = $2"
    ))
    .bind(tenant.0)
    .bind(id)
    .fetch_optional(conn)
    .await?)
}

/// One (not deleted) module type by key.
pub async fn find_module_type_by_key(
    conn: &mut PgConnection,
    tenant: TenantId,
    key: &str,
) -> Result<Option<ModuleTypeRow>> {
    Ok(sqlx::query_as::<_, ModuleTypeRow>(&format!(
        "SELECT {MODULE_TYPE_COLUMNS} FROM software_module_type ty
         WHERE ty.tenant_id = $1 AND ty.key = $2 AND NOT ty.deleted"
    ))
    .bind(tenant.0)
    .bind(key)
    .fetch_optional(conn)
    .await?)
}

/// A distribution set type.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SetTypeRow {
    pub id: i64,
    pub key: String,
    pub name: String,
    pub description: Option<String>,
    pub colour: Option<String>,
    pub deleted: bool,
    pub created_at: i64,
    pub created_by: String,
    pub last_modified_at: i64,
    pub last_modified_by: String,
}

const SET_TYPE_COLUMNS: &str = "dt.id, dt.key, dt.name, dt.description, dt.colour, dt.deleted,
    dt.created_at, dt.created_by, dt.last_modified_at, dt.last_modified_by";

/// How set type lists sort: API name → column; by id unless asked otherwise.
pub const SET_TYPE_SORT: SortFields = SortFields::new(
    &[
        ("id", "dt.id"),
        ("key", "dt.key"),
        ("name", "dt.name"),
        ("description", "dt.description"),
        ("colour", "dt.colour"),
        ("createdat", "dt.created_at"),
        ("createdby", "dt.created_by"),
        ("lastmodifiedat", "dt.last_modified_at"),
        ("lastmodifiedby", "dt.last_modified_by"),
    ],
    "dt.id ASC",
);

const SET_TYPES: Listing = Listing {
    columns: SET_TYPE_COLUMNS,
    from: "distribution_set_type dt",
    count_from: "distribution_set_type dt",
    sort: &SET_TYPE_SORT,
};

/// A page of the tenant's (not deleted) set types matching `q`, and their total.
pub async fn list_set_types(
    conn: &mut PgConnection,
    tenant: TenantId,
    q: Option<&Filter>,
    page: &PageRequest,
) -> Result<(Vec<SetTypeRow>, i64)> {
    fetch(conn, &SET_TYPES, page, |qb| {
        qb.push("NOT dt.deleted AND dt.tenant_id = ")
            .push_bind(tenant.0);
        push_and(qb, q, "dt");
    })
    .await
}

/// One set type by id.
pub async fn find_set_type(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: i64,
) -> Result<Option<SetTypeRow>> {
    Ok(sqlx::query_as::<_, SetTypeRow>(&format!(
        "SELECT {SET_TYPE_COLUMNS} FROM distribution_set_type dt
         WHERE dt.tenant_id = $1 AND dt.id = $2"
    ))
    .bind(tenant.0)
    .bind(id)
    .fetch_optional(conn)
    .await?)
}

/// One (not deleted) set type by key.
pub async fn find_set_type_by_key(
    conn: &mut PgConnection,
    tenant: TenantId,
    key: &str,
) -> Result<Option<SetTypeRow>> {
    Ok(sqlx::query_as::<_, SetTypeRow>(&format!(
        "SELECT {SET_TYPE_COLUMNS} FROM distribution_set_type dt
         WHERE dt.tenant_id = $1 AND dt.key = $2 AND NOT dt.deleted"
    ))
    .bind(tenant.0)
    .bind(key)
    .fetch_optional(conn)
    .await?)
}

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
    Ok(sqlx::query_as::<_, SetTypeElementRow>(&format!(
        "SELECT e.ds_type_id, e.mandatory, {MODULE_TYPE_COLUMNS}
         FROM distribution_set_type_element e
         JOIN distribution_set_type dt ON dt.id = e.ds_type_id
         JOIN software_module_type ty ON ty.id = e.sm_type_id
         WHERE dt.tenant_id = $1 AND e.ds_type_id = ANY($2)
         ORDER BY e.ds_type_id, ty.id"
    ))
    .bind(tenant.0)
    .bind(ds_type_ids)
    .fetch_all(conn)
    .await?)
}
