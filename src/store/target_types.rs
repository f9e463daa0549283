//! Target types and the distribution set types each accepts (rollouts.md §1.1). Targets refer
//! to them by id (`target.target_type_id`); THING_CREATED names them (see
//! [`super::targets::set_type_by_name`]).

use sqlx::PgConnection;

use super::link::Link;
use super::page::{Base, SortFields};
use super::repository::types::{SET_TYPES, SetTypeRow};
use super::table::Table;
use super::{Audit, Named, NamedUpdate};
use super::{Result, StoreError, sql};
use crate::domain::ids::TenantId;

/// A target type as the API shows it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TargetTypeRow {
    pub id: i64,
    pub key: String,
    #[sqlx(flatten)]
    pub named: Named,
    pub colour: Option<String>,
    #[sqlx(flatten)]
    pub audit: Audit,
}

const COLUMNS: &str = "tt.id, tt.key, tt.name, tt.description, tt.colour, tt.created_at,
    tt.created_by, tt.last_modified_at, tt.last_modified_by";

/// How target type lists sort: API name → column; by id unless asked otherwise.
pub const SORT: SortFields = SortFields::of(
    Base::Named,
    "tt",
    &[("key", "tt.key"), ("colour", "tt.colour")],
    "tt.id ASC",
);

/// The tenant's target types.
pub const TABLE: Table<TargetTypeRow> = Table::new("target_type", "tt", COLUMNS, &SORT);

/// The distribution set types the tenant's target types accept. Adding or removing one is a
/// change of the target type; set types that are not the tenant's are left out (the caller
/// reports them).
pub const DS_TYPES: Link<TargetTypeRow, SetTypeRow> = Link::new(
    "target_type_ds_type",
    &TABLE,
    "target_type_id",
    &SET_TYPES,
    "ds_type_id",
);

/// A target type to create; `key` and `name` are both set (one defaults to the other).
#[derive(Debug, Clone)]
pub struct NewTargetType {
    pub key: String,
    pub named: Named,
    pub colour: Option<String>,
}

/// Insert a target type; a duplicate name or key in the tenant is a conflict.
pub async fn insert(
    conn: &mut PgConnection,
    tenant: TenantId,
    t: &NewTargetType,
    user: &str,
) -> Result<TargetTypeRow> {
    let sql = format!(
        "INSERT INTO target_type AS tt (tenant_id, key, name, description, colour, created_by,
                                        last_modified_by)
         VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING {COLUMNS}"
    );
    let (key, n) = (&t.key, &t.named);
    let binds = (tenant.0, key, &n.name, &n.description, &t.colour, user);
    sql::fetch_one(conn, &sql, binds)
        .await
        .map_err(|e| duplicate(e, &n.name, Some(key)))
}

fn duplicate(e: StoreError, name: &str, key: Option<&str>) -> StoreError {
    e.conflict_as(|| match key {
        Some(key) => format!("a target type with name {name:?} or key {key:?} already exists"),
        None => format!("a target type with name {name:?} already exists"),
    })
}

/// Fields an update may change (`None` = unchanged); hawkBit never changes the key.
#[derive(Debug, Clone, Default)]
pub struct TargetTypeUpdate {
    pub named: NamedUpdate,
    pub colour: Option<String>,
}

/// Update a target type; `None` if it does not exist. A duplicate name is a conflict.
pub async fn update(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: i64,
    u: &TargetTypeUpdate,
    user: &str,
) -> Result<Option<TargetTypeRow>> {
    let sql = format!(
        "UPDATE target_type tt SET name = COALESCE($3, tt.name),
                description = COALESCE($4, tt.description), colour = COALESCE($5, tt.colour),
                last_modified_at = epoch_ms(), last_modified_by = $6,
                opt_lock_revision = tt.opt_lock_revision + 1
         WHERE tt.tenant_id = $1 AND tt.id = $2 RETURNING {COLUMNS}"
    );
    let binds = (
        tenant.0,
        id,
        &u.named.name,
        &u.named.description,
        &u.colour,
        user,
    );
    sql::fetch_optional(conn, &sql, binds)
        .await
        .map_err(|e| duplicate(e, u.named.name.as_deref().unwrap_or_default(), None))
}

/// Whether any target has this type.
pub async fn in_use(conn: &mut PgConnection, tenant: TenantId, id: i64) -> Result<bool> {
    let sql = "SELECT EXISTS (SELECT 1 FROM target WHERE tenant_id = $1 AND target_type_id = $2)";
    sql::scalar(conn, sql, (tenant.0, id)).await
}

/// Of `ids`, the distribution set types that do not exist (or are deleted) in the tenant.
pub async fn missing_ds_types(
    conn: &mut PgConnection,
    tenant: TenantId,
    ids: &[i64],
) -> Result<Vec<i64>> {
    let sql = "SELECT i FROM unnest($2::bigint[]) AS i
               WHERE NOT EXISTS (SELECT 1 FROM distribution_set_type dt
                                 WHERE dt.tenant_id = $1 AND dt.id = i AND NOT dt.deleted)
               ORDER BY i";
    sql::scalar_all(conn, sql, (tenant.0, ids)).await
}
