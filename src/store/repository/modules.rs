//! Software modules: a typed, versioned piece of software (rollouts.md §1.2).

use sqlx::PgConnection;

use crate::domain::ids::TenantId;
use crate::store::page::{Base, SortFields};
use crate::store::table::Table;
use crate::store::{Audit, Named};
use crate::store::{Result, sql};

/// A software module with its type's key and name.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ModuleRow {
    pub id: i64,
    pub type_id: i64,
    pub type_key: String,
    pub type_name: String,
    pub max_assignments: i32,
    #[sqlx(flatten)]
    pub named: Named,
    pub version: String,
    pub vendor: Option<String>,
    pub encrypted: bool,
    pub locked: bool,
    pub deleted: bool,
    /// It has at least as many artifacts as its type's `minArtifacts` (hawkBit master).
    pub complete: bool,
    #[sqlx(flatten)]
    pub audit: Audit,
}

pub(super) const MODULE_COLUMNS: &str = "m.id, m.type_id, ty.key AS type_key, ty.name AS type_name,
    ty.max_assignments, m.name, m.version, m.vendor, m.description, m.encrypted, m.locked,
    m.deleted, m.created_at, m.created_by, m.last_modified_at, m.last_modified_by,
    (ty.min_artifacts = 0 OR (SELECT count(*) FROM artifact a WHERE a.sm_id = m.id)
                             >= ty.min_artifacts) AS complete";

/// How module lists sort: API name → column; by id unless asked otherwise.
pub const SORT: SortFields = SortFields::of(
    Base::Named,
    "m",
    &[
        ("version", "m.version"),
        ("type", "ty.key"),
        ("vendor", "m.vendor"),
        ("encrypted", "m.encrypted"),
        ("locked", "m.locked"),
    ],
    "m.id ASC",
);

/// The tenant's software modules, with their types.
pub const TABLE: Table<ModuleRow> = Table::new("software_module", "m", MODULE_COLUMNS, &SORT)
    .joined("JOIN software_module_type ty ON ty.id = m.type_id")
    .soft_deleted();

/// A software module to create.
#[derive(Debug, Clone)]
pub struct NewModule {
    pub type_id: i64,
    pub type_key: String,
    pub named: Named,
    pub version: String,
    pub vendor: Option<String>,
    pub encrypted: bool,
}

/// Insert a software module; a duplicate (type, name, version) is a conflict.
pub async fn insert(
    conn: &mut PgConnection,
    tenant: TenantId,
    m: &NewModule,
    user: &str,
) -> Result<i64> {
    let sql = "INSERT INTO software_module (tenant_id, type_id, name, version, vendor, description,
                                            encrypted, created_by, last_modified_by)
               SELECT $1, ty.id, $3, $4, $5, $6, $7, $8, $8 FROM software_module_type ty
               WHERE ty.tenant_id = $1 AND ty.id = $2
               RETURNING id";
    let binds = (
        tenant.0,
        m.type_id,
        &m.named.name,
        &m.version,
        &m.vendor,
        &m.named.description,
        m.encrypted,
        user,
    );
    sql::scalar(conn, sql, binds).await.map_err(|e| {
        e.conflict_as(|| {
            format!(
                "software module {}:{} of type {} already exists",
                m.named.name, m.version, m.type_key
            )
        })
    })
}

/// What a Management API update of a module may change (`None` = unchanged).
#[derive(Debug, Clone, Default)]
pub struct ModuleUpdate {
    pub description: Option<String>,
    pub vendor: Option<String>,
    /// hawkBit lets a PUT lock and also unlock a module.
    pub locked: Option<bool>,
}

/// Change a module's description, vendor and/or lock. False if unknown.
pub async fn update(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: i64,
    u: &ModuleUpdate,
    user: &str,
) -> Result<bool> {
    let sql = "UPDATE software_module SET description = COALESCE($3, description),
                      vendor = COALESCE($4, vendor), locked = COALESCE($5, locked),
                      last_modified_at = epoch_ms(), last_modified_by = $6,
                      opt_lock_revision = opt_lock_revision + 1
               WHERE tenant_id = $1 AND id = $2";
    let binds = (tenant.0, id, &u.description, &u.vendor, u.locked, user);
    Ok(sql::execute(conn, sql, binds).await? > 0)
}
