//! Stored, named target filter queries (rollouts.md §1.4, §9.7). The query text is validated by
//! the caller before it gets here; this module only stores and lists it.

use sqlx::PgConnection;

use super::Audit;
use super::page::{Base, SortFields};
use super::table::Table;
use super::{Result, StoreError, sql};
use crate::domain::action::ActionType;
use crate::domain::ids::TenantId;

/// A target filter query with the settings of its auto-assignment (hawkBit 1.1's
/// filter-embedded one, an `auto_assignment` row linked to the filter), if it has one.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TargetFilterRow {
    pub id: i64,
    pub name: String,
    pub query: String,
    pub auto_assign_ds_id: Option<i64>,
    pub auto_assign_action_type: Option<ActionType>,
    pub auto_assign_weight: Option<i32>,
    pub confirmation_required: Option<bool>,
    #[sqlx(flatten)]
    pub audit: Audit,
}

pub(super) const COLUMNS: &str = "f.id, f.name, f.query, la.ds_id AS auto_assign_ds_id,
    la.action_type AS auto_assign_action_type, la.weight AS auto_assign_weight,
    la.confirmation_required, f.created_at, f.created_by, f.last_modified_at, f.last_modified_by";

/// How filter lists sort: API name → column; by id unless asked otherwise.
pub const SORT: SortFields = SortFields::of(
    Base::Audited,
    "f",
    &[("name", "f.name"), ("query", "f.query")],
    "f.id ASC",
);

/// The tenant's stored filters.
pub const TABLE: Table<TargetFilterRow> = Table::new("target_filter_query", "f", COLUMNS, &SORT)
    .joined("LEFT JOIN auto_assignment la ON la.target_filter_id = f.id");

fn duplicate(name: &str) -> impl FnOnce(StoreError) -> StoreError + '_ {
    move |e| e.conflict_as(|| format!("target filter {name:?} already exists"))
}

/// Insert a filter; a duplicate name within the tenant is a conflict. Returns its id.
pub async fn insert(
    conn: &mut PgConnection,
    tenant: TenantId,
    name: &str,
    query: &str,
    user: &str,
) -> Result<i64> {
    let sql =
        "INSERT INTO target_filter_query (tenant_id, name, query, created_by, last_modified_by)
               VALUES ($1, $2, $3, $4, $4) RETURNING id";
    sql::scalar(conn, sql, (tenant.0, name, query, user))
        .await
        .map_err(duplicate(name))
}

/// Change name and/or query (`None` = unchanged). Returns false when there is no such filter;
/// a name taken by another filter is a conflict.
pub async fn update(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: i64,
    name: Option<&str>,
    query: Option<&str>,
    user: &str,
) -> Result<bool> {
    let sql =
        "UPDATE target_filter_query SET name = COALESCE($3, name), query = COALESCE($4, query),
                      last_modified_at = epoch_ms(), last_modified_by = $5,
                      opt_lock_revision = opt_lock_revision + 1
               WHERE tenant_id = $1 AND id = $2";
    let updated = sql::execute(conn, sql, (tenant.0, id, name, query, user))
        .await
        .map_err(duplicate(name.unwrap_or_default()))?;
    Ok(updated > 0)
}
