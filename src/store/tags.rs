//! Target tags and which targets carry them (rollouts.md §1.1: target ↔ tag is M:N).

use sqlx::PgConnection;

use super::link::Link;
use super::page::{Base, SortFields};
use super::sql;
use super::table::Table;
use super::targets::{TABLE as TARGETS, TargetRow};
use super::{Audit, Named};
use super::{Result, StoreError};
use crate::domain::ids::TenantId;

/// A target tag as the API shows it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TagRow {
    pub id: i64,
    #[sqlx(flatten)]
    pub named: Named,
    pub colour: Option<String>,
    #[sqlx(flatten)]
    pub audit: Audit,
}

const COLUMNS: &str = "g.id, g.name, g.description, g.colour, g.created_at, g.created_by,
    g.last_modified_at, g.last_modified_by";

/// How tag lists sort: API name → column; by id unless asked otherwise.
pub const SORT: SortFields =
    SortFields::of(Base::Named, "g", &[("colour", "g.colour")], "g.id ASC");

/// The tenant's target tags.
pub const TABLE: Table<TagRow> = Table::new("target_tag", "g", COLUMNS, &SORT);

/// Which of the tenant's targets carry which tags. Tagging changes neither side's audit
/// columns.
pub const ASSIGNMENTS: Link<TagRow, TargetRow> = Link::new(
    "target_tag_assignment",
    &TABLE,
    "tag_id",
    &TARGETS,
    "target_id",
);

fn duplicate(e: StoreError, name: &str) -> StoreError {
    e.conflict_as(|| format!("a target tag named {name:?} already exists"))
}

/// Insert a tag; a duplicate name in the tenant is a conflict.
pub async fn insert(
    conn: &mut PgConnection,
    tenant: TenantId,
    name: &str,
    description: Option<&str>,
    colour: Option<&str>,
    user: &str,
) -> Result<TagRow> {
    let sql = format!(
        "INSERT INTO target_tag AS g (tenant_id, name, description, colour, created_by,
                                      last_modified_by)
         VALUES ($1, $2, $3, $4, $5, $5) RETURNING {COLUMNS}"
    );
    sql::fetch_one(conn, &sql, (tenant.0, name, description, colour, user))
        .await
        .map_err(|e| duplicate(e, name))
}

/// Change a tag (`None` = unchanged); `None` if it does not exist. A duplicate name is a
/// conflict.
pub async fn update(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: i64,
    name: Option<&str>,
    description: Option<&str>,
    colour: Option<&str>,
    user: &str,
) -> Result<Option<TagRow>> {
    let sql = format!(
        "UPDATE target_tag g SET name = COALESCE($3, g.name),
                description = COALESCE($4, g.description), colour = COALESCE($5, g.colour),
                last_modified_at = epoch_ms(), last_modified_by = $6,
                opt_lock_revision = g.opt_lock_revision + 1
         WHERE g.tenant_id = $1 AND g.id = $2 RETURNING {COLUMNS}"
    );
    let binds = (tenant.0, id, name, description, colour, user);
    sql::fetch_optional(conn, &sql, binds)
        .await
        .map_err(|e| duplicate(e, name.unwrap_or_default()))
}
