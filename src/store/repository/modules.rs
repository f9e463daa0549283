//! Software modules: a typed, versioned piece of software (rollouts.md §1.2).

use sqlx::PgConnection;

use super::{Deletion, delete_or_mark};
use crate::domain::ids::TenantId;
use crate::store::filter::{Filter, push_and};
use crate::store::page::{Listing, PageRequest, SortFields, fetch};
use crate::store::{Result, StoreError};

/// A software module with its type's key and name.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ModuleRow {
    pub id: i64,
    pub type_id: i64,
    pub type_key: String,
    pub type_name: String,
    pub max_assignments: i32,
    pub name: String,
    pub version: String,
    pub vendor: Option<String>,
    pub description: Option<String>,
    pub encrypted: bool,
    pub locked: bool,
    pub deleted: bool,
    pub created_at: i64,
    pub created_by: String,
    pub last_modified_at: i64,
    pub last_modified_by: String,
}

pub(super) const MODULE_COLUMNS: &str = "m.id, m.type_id, ty.key AS type_key, ty.name AS type_name,
    ty.max_assignments, m.name, m.version, m.vendor, m.description, m.encrypted, m.locked,
    m.deleted, m.created_at, m.created_by, m.last_modified_at, m.last_modified_by";

/// How module lists sort: API name → column; by id unless asked otherwise.
pub const SORT: SortFields = SortFields::new(
    &[
        ("id", "m.id"),
        ("name", "m.name"),
        ("version", "m.version"),
        ("type", "ty.key"),
        ("vendor", "m.vendor"),
        ("description", "m.description"),
        ("encrypted", "m.encrypted"),
        ("locked", "m.locked"),
        ("createdat", "m.created_at"),
        ("createdby", "m.created_by"),
        ("lastmodifiedat", "m.last_modified_at"),
        ("lastmodifiedby", "m.last_modified_by"),
    ],
    "m.id ASC",
);

const LIST: Listing = Listing {
    columns: MODULE_COLUMNS,
    from: "software_module m JOIN software_module_type ty ON ty.id = m.type_id",
    count_from: "software_module m",
    sort: &SORT,
};

/// A page of the tenant's (not deleted) software modules matching `q`, and their total.
pub async fn list(
    conn: &mut PgConnection,
    tenant: TenantId,
    q: Option<&Filter>,
    page: &PageRequest,
) -> Result<(Vec<ModuleRow>, i64)> {
    fetch(conn, &LIST, page, |qb| {
        qb.push("NOT m.deleted AND m.tenant_id = ")
            .push_bind(tenant.0);
        push_and(qb, q, "m");
    })
    .await
}

/// One software module by id (soft-deleted ones included).
pub async fn find(conn: &mut PgConnection, tenant: TenantId, id: i64) -> Result<Option<ModuleRow>> {
    Ok(sqlx::query_as::<_, ModuleRow>(&format!(
        "SELECT {MODULE_COLUMNS} FROM software_module m
         JOIN software_module_type ty ON ty.id = m.type_id
         WHERE m.tenant_id = $1 AND m.id = $2"
    ))
    .bind(tenant.0)
    .bind(id)
    .fetch_optional(conn)
    .await?)
}

/// Software modules by ids (soft-deleted ones included; unknown ids are missing from the result).
pub async fn find_many(
    conn: &mut PgConnection,
    tenant: TenantId,
    ids: &[i64],
) -> Result<Vec<ModuleRow>> {
    Ok(sqlx::query_as::<_, ModuleRow>(&format!(
        "SELECT {MODULE_COLUMNS} FROM software_module m
         JOIN software_module_type ty ON ty.id = m.type_id
         WHERE m.tenant_id = $1 AND m.id = ANY($2) ORDER BY m.id"
    ))
    .bind(tenant.0)
    .bind(ids)
    .fetch_all(conn)
    .await?)
}

/// A software module to create.
#[derive(Debug, Clone)]
pub struct NewModule {
    pub type_id: i64,
    pub type_key: String,
    pub name: String,
    pub version: String,
    pub vendor: Option<String>,
    pub description: Option<String>,
    pub encrypted: bool,
}

/// Insert a software module; a duplicate (type, name, version) is a conflict.
pub async fn insert(
    conn: &mut PgConnection,
    tenant: TenantId,
    m: &NewModule,
    user: &str,
) -> Result<i64> {
    sqlx::query_scalar(
        "INSERT INTO software_module (tenant_id, type_id, name, version, vendor, description,
                                      encrypted, created_by, last_modified_by)
         SELECT $1, ty.id, $3, $4, $5, $6, $7, $8, $8 FROM software_module_type ty
         WHERE ty.tenant_id = $1 AND ty.id = $2
         RETURNING id",
    )
    .bind(tenant.0)
    .bind(m.type_id)
    .bind(&m.name)
    .bind(&m.version)
    .bind(&m.vendor)
    .bind(&m.description)
    .bind(m.encrypted)
    .bind(user)
    .fetch_one(conn)
    .await
    .map_err(|e| match StoreError::from(e) {
        StoreError::Conflict(_) => StoreError::Conflict(format!(
            "software module {}:{} of type {} already exists",
            m.name, m.version, m.type_key
        )),
        other => other,
    })
}

/// Change a module's description and/or vendor (`None` = unchanged). False if unknown.
pub async fn update(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: i64,
    description: Option<&str>,
    vendor: Option<&str>,
    user: &str,
) -> Result<bool> {
    Ok(sqlx::query(
        "UPDATE software_module SET description = COALESCE($3, description),
                vendor = COALESCE($4, vendor), last_modified_at = epoch_ms(),
                last_modified_by = $5, opt_lock_revision = opt_lock_revision + 1
         WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant.0)
    .bind(id)
    .bind(description)
    .bind(vendor)
    .bind(user)
    .execute(conn)
    .await?
    .rows_affected()
        > 0)
}

/// Delete a module with its artifacts and metadata, or soft-delete it while a set references it.
pub async fn delete(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: i64,
    user: &str,
) -> Result<Deletion> {
    delete_or_mark(
        conn,
        "DELETE FROM software_module WHERE tenant_id = $1 AND id = $2",
        "UPDATE software_module SET deleted = true, last_modified_at = epoch_ms(),
                last_modified_by = $3, opt_lock_revision = opt_lock_revision + 1
         WHERE tenant_id = $1 AND id = $2",
        tenant,
        id,
        user,
    )
    .await
}
