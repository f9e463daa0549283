//! Software module types and distribution set types (seeded per tenant, created, changed and
//! deleted through the API), and which module types a set type takes.

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
    /// How many artifacts a module of this type needs to be complete (hawkBit master).
    pub min_artifacts: i32,
    pub deleted: bool,
    #[sqlx(flatten)]
    pub audit: Audit,
}

const MODULE_TYPE_COLUMNS: &str = "ty.id, ty.key, ty.name, ty.description, ty.colour,
    ty.max_assignments, ty.min_artifacts, ty.deleted, ty.created_at, ty.created_by, ty.last_modified_at,
    ty.last_modified_by";

/// How module type lists sort: API name → column; by id unless asked otherwise.
pub const MODULE_TYPE_SORT: SortFields = SortFields::of(
    Base::Named,
    "ty",
    &[
        ("key", "ty.key"),
        ("maxassignments", "ty.max_assignments"),
        ("minartifacts", "ty.min_artifacts"),
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

/// What a new module or set type carries besides its own fields.
#[derive(Debug, Clone)]
pub struct NewType {
    pub key: String,
    pub named: Named,
    pub colour: Option<String>,
}

/// The limits of a new module type.
#[derive(Debug, Clone, Copy)]
pub struct ModuleTypeLimits {
    pub max_assignments: i32,
    pub min_artifacts: i32,
}

/// A taken key or name of a type, said as hawkBit's 409 does.
fn duplicate_type(what: &str, t: &NewType) -> String {
    format!(
        "{what} with key {:?} or name {:?} already exists",
        t.key, t.named.name
    )
}

/// Insert a module type; a key or name the tenant already has (deleted types included) is a
/// conflict.
pub async fn insert_module_type(
    conn: &mut PgConnection,
    tenant: TenantId,
    t: &NewType,
    limits: ModuleTypeLimits,
    user: &str,
) -> Result<i64> {
    let sql = "INSERT INTO software_module_type (tenant_id, key, name, description, colour,
                   max_assignments, min_artifacts, created_by, last_modified_by)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) RETURNING id";
    let binds = (
        tenant.0,
        &t.key,
        &t.named.name,
        &t.named.description,
        &t.colour,
        limits.max_assignments,
        limits.min_artifacts,
        user,
    );
    sql::scalar(conn, sql, binds)
        .await
        .map_err(|e| e.conflict_as(|| duplicate_type("software module type", t)))
}

/// Insert a set type (without elements); a key or name the tenant already has is a conflict.
pub async fn insert_set_type(
    conn: &mut PgConnection,
    tenant: TenantId,
    t: &NewType,
    user: &str,
) -> Result<i64> {
    let sql = "INSERT INTO distribution_set_type (tenant_id, key, name, description, colour,
                   created_by, last_modified_by)
               VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING id";
    let binds = (
        tenant.0,
        &t.key,
        &t.named.name,
        &t.named.description,
        &t.colour,
        user,
    );
    sql::scalar(conn, sql, binds)
        .await
        .map_err(|e| e.conflict_as(|| duplicate_type("distribution set type", t)))
}

/// What a PUT may change of a type (hawkBit: only description and colour; `None` = unchanged).
#[derive(Debug, Clone, Default)]
pub struct TypeUpdate {
    pub description: Option<String>,
    pub colour: Option<String>,
}

/// Change the description and/or colour of a module type. False if unknown.
pub async fn update_module_type(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: i64,
    u: &TypeUpdate,
    user: &str,
) -> Result<bool> {
    update_type(conn, "software_module_type", tenant, id, u, user).await
}

/// Change the description and/or colour of a set type. False if unknown.
pub async fn update_set_type(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: i64,
    u: &TypeUpdate,
    user: &str,
) -> Result<bool> {
    update_type(conn, "distribution_set_type", tenant, id, u, user).await
}

async fn update_type(
    conn: &mut PgConnection,
    table: &str,
    tenant: TenantId,
    id: i64,
    u: &TypeUpdate,
    user: &str,
) -> Result<bool> {
    let sql = format!(
        "UPDATE {table} SET description = COALESCE($3, description),
                colour = COALESCE($4, colour), last_modified_at = epoch_ms(),
                last_modified_by = $5, opt_lock_revision = opt_lock_revision + 1
         WHERE tenant_id = $1 AND id = $2"
    );
    let binds = (tenant.0, id, &u.description, &u.colour, user);
    Ok(sql::execute(conn, &sql, binds).await? > 0)
}

/// Let a set type of the tenant take the tenant's module types `sm_type_ids`, as mandatory or
/// optional ones (a type it already takes changes its kind). Ids of other tenants are skipped;
/// the caller checks them first.
pub async fn add_elements(
    conn: &mut PgConnection,
    tenant: TenantId,
    ds_type_id: i64,
    sm_type_ids: &[i64],
    mandatory: bool,
) -> Result<()> {
    let sql = "INSERT INTO distribution_set_type_element (ds_type_id, sm_type_id, mandatory)
               SELECT dt.id, ty.id, $4 FROM distribution_set_type dt
               JOIN software_module_type ty ON ty.tenant_id = dt.tenant_id AND ty.id = ANY($3)
               WHERE dt.tenant_id = $1 AND dt.id = $2
               ON CONFLICT (ds_type_id, sm_type_id) DO UPDATE SET mandatory = EXCLUDED.mandatory";
    sql::execute(conn, sql, (tenant.0, ds_type_id, sm_type_ids, mandatory)).await?;
    Ok(())
}

/// Stop a set type of the tenant taking a module type. False if it did not take it.
pub async fn remove_element(
    conn: &mut PgConnection,
    tenant: TenantId,
    ds_type_id: i64,
    sm_type_id: i64,
) -> Result<bool> {
    let sql = "DELETE FROM distribution_set_type_element e USING distribution_set_type dt
               WHERE dt.id = e.ds_type_id AND dt.tenant_id = $1 AND e.ds_type_id = $2
                 AND e.sm_type_id = $3";
    Ok(sql::execute(conn, sql, (tenant.0, ds_type_id, sm_type_id)).await? > 0)
}

/// How many module types a set type of the tenant takes.
pub async fn count_elements(
    conn: &mut PgConnection,
    tenant: TenantId,
    ds_type_id: i64,
) -> Result<i64> {
    let sql = "SELECT count(*) FROM distribution_set_type_element e
               JOIN distribution_set_type dt ON dt.id = e.ds_type_id
               WHERE dt.tenant_id = $1 AND e.ds_type_id = $2";
    sql::scalar(conn, sql, (tenant.0, ds_type_id)).await
}

/// Whether distribution sets (deleted ones included) have this type: its module lists are then
/// frozen (hawkBit).
pub async fn set_type_in_use(
    conn: &mut PgConnection,
    tenant: TenantId,
    ds_type_id: i64,
) -> Result<bool> {
    let sql = "SELECT EXISTS (SELECT 1 FROM distribution_set
                              WHERE tenant_id = $1 AND type_id = $2)";
    sql::scalar(conn, sql, (tenant.0, ds_type_id)).await
}

/// Take a set type of the tenant off every target type's compatible list (hawkBit does so when
/// it deletes a set type, also when the type is only marked deleted).
pub async fn drop_from_target_types(
    conn: &mut PgConnection,
    tenant: TenantId,
    ds_type_id: i64,
) -> Result<()> {
    let sql = "DELETE FROM target_type_ds_type l USING distribution_set_type dt
               WHERE dt.id = l.ds_type_id AND dt.tenant_id = $1 AND l.ds_type_id = $2";
    sql::execute(conn, sql, (tenant.0, ds_type_id)).await?;
    Ok(())
}
