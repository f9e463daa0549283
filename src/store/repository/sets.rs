//! Distribution sets: the modules deployed together (rollouts.md §1.3), their content and
//! locking, and (soft) deletion.

use sqlx::PgConnection;

use super::modules::{self, MODULE_COLUMNS, ModuleRow};
use crate::domain::ids::TenantId;
use crate::store::link::Link;
use crate::store::page::{Base, SortFields};
use crate::store::table::Table;
use crate::store::{Audit, Named, NamedUpdate};
use crate::store::{Result, sql};

/// A distribution set with its type and computed completeness.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SetRow {
    pub id: i64,
    pub type_id: i64,
    pub type_key: String,
    pub type_name: String,
    #[sqlx(flatten)]
    pub named: Named,
    pub version: String,
    pub required_migration_step: bool,
    pub locked: bool,
    pub valid: bool,
    pub deleted: bool,
    /// All mandatory module types of the set's type are present.
    pub complete: bool,
    #[sqlx(flatten)]
    pub audit: Audit,
}

const SET_COLUMNS: &str = "d.id, d.type_id, dt.key AS type_key, dt.name AS type_name, d.name,
    d.version, d.description, d.required_migration_step, d.locked, d.valid, d.deleted,
    NOT EXISTS (SELECT 1 FROM distribution_set_type_element e
                WHERE e.ds_type_id = d.type_id AND e.mandatory
                  AND NOT EXISTS (SELECT 1 FROM distribution_set_module dm
                                  JOIN software_module sm ON sm.id = dm.sm_id
                                  WHERE dm.ds_id = d.id AND sm.type_id = e.sm_type_id)) AS complete,
    d.created_at, d.created_by, d.last_modified_at, d.last_modified_by";

/// How set lists sort: API name → column; by id unless asked otherwise.
pub const SORT: SortFields = SortFields::of(
    Base::Named,
    "d",
    &[
        ("version", "d.version"),
        ("type", "dt.key"),
        ("requiredmigrationstep", "d.required_migration_step"),
        ("locked", "d.locked"),
        ("valid", "d.valid"),
    ],
    "d.id ASC",
);

/// The tenant's distribution sets, with their types.
pub const TABLE: Table<SetRow> = Table::new("distribution_set", "d", SET_COLUMNS, &SORT)
    .joined("JOIN distribution_set_type dt ON dt.id = d.type_id")
    .soft_deleted();

/// The modules of the tenant's sets. Adding or removing one is a change of the set.
pub const MODULES: Link<SetRow, ModuleRow> = Link::new(
    "distribution_set_module",
    &TABLE,
    "ds_id",
    &modules::TABLE,
    "sm_id",
);

/// A module as a member of a set.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SetModuleRow {
    pub ds_id: i64,
    #[sqlx(flatten)]
    pub module: ModuleRow,
}

/// The modules of several sets of the tenant (ordered by set, then module id).
pub async fn modules_of(
    conn: &mut PgConnection,
    tenant: TenantId,
    ds_ids: &[i64],
) -> Result<Vec<SetModuleRow>> {
    let sql = format!(
        "SELECT dm.ds_id, {MODULE_COLUMNS} FROM distribution_set_module dm
         JOIN distribution_set d ON d.id = dm.ds_id
         JOIN software_module m ON m.id = dm.sm_id
         JOIN software_module_type ty ON ty.id = m.type_id
         WHERE d.tenant_id = $1 AND dm.ds_id = ANY($2) ORDER BY dm.ds_id, m.id"
    );
    sql::fetch_all(conn, &sql, (tenant.0, ds_ids)).await
}

/// A distribution set to create.
#[derive(Debug, Clone)]
pub struct NewSet {
    pub type_id: i64,
    pub named: Named,
    pub version: String,
    pub required_migration_step: bool,
}

/// Insert a distribution set; a duplicate (name, version) is a conflict.
pub async fn insert(
    conn: &mut PgConnection,
    tenant: TenantId,
    s: &NewSet,
    user: &str,
) -> Result<i64> {
    let sql = "INSERT INTO distribution_set (tenant_id, type_id, name, version, description,
                                             required_migration_step, created_by, last_modified_by)
               SELECT $1, dt.id, $3, $4, $5, $6, $7, $7 FROM distribution_set_type dt
               WHERE dt.tenant_id = $1 AND dt.id = $2
               RETURNING id";
    let binds = (
        tenant.0,
        s.type_id,
        &s.named.name,
        &s.version,
        &s.named.description,
        s.required_migration_step,
        user,
    );
    sql::scalar(conn, sql, binds).await.map_err(|e| {
        e.conflict_as(|| {
            format!(
                "distribution set {}:{} already exists",
                s.named.name, s.version
            )
        })
    })
}

/// Fields a Management API update of a set may change (`None` = unchanged).
#[derive(Debug, Clone, Default)]
pub struct SetUpdate {
    pub named: NamedUpdate,
    pub version: Option<String>,
    pub required_migration_step: Option<bool>,
    pub locked: Option<bool>,
}

/// Update a set of the tenant; locking it also locks its modules. False if unknown; a
/// (name, version) taken by another set is a conflict.
pub async fn update(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: i64,
    u: &SetUpdate,
    user: &str,
) -> Result<bool> {
    let sql =
        "UPDATE distribution_set SET name = COALESCE($3, name), version = COALESCE($4, version),
                      description = COALESCE($5, description),
                      required_migration_step = COALESCE($6, required_migration_step),
                      locked = COALESCE($7, locked),
                      last_modified_at = epoch_ms(), last_modified_by = $8,
                      opt_lock_revision = opt_lock_revision + 1
               WHERE tenant_id = $1 AND id = $2";
    let binds = (
        tenant.0,
        id,
        &u.named.name,
        &u.version,
        &u.named.description,
        u.required_migration_step,
        u.locked,
        user,
    );
    let updated = sql::execute(&mut *conn, sql, binds).await.map_err(|e| {
        e.conflict_as(|| {
            format!(
                "a distribution set named {}:{} already exists",
                u.named.name.as_deref().unwrap_or("(unchanged)"),
                u.version.as_deref().unwrap_or("(unchanged)")
            )
        })
    })? > 0;
    if updated && u.locked == Some(true) {
        lock_modules(conn, tenant, id, user).await?;
    }
    Ok(updated)
}

/// Lock every module of a set of the tenant (a locked set freezes its modules too).
pub async fn lock_modules(
    conn: &mut PgConnection,
    tenant: TenantId,
    ds_id: i64,
    user: &str,
) -> Result<()> {
    let sql = "UPDATE software_module m SET locked = true, last_modified_at = epoch_ms(),
                      last_modified_by = $3, opt_lock_revision = m.opt_lock_revision + 1
               FROM distribution_set_module dm
               WHERE dm.sm_id = m.id AND dm.ds_id = $2 AND m.tenant_id = $1 AND NOT m.locked";
    sql::execute(conn, sql, (tenant.0, ds_id, user)).await?;
    Ok(())
}
