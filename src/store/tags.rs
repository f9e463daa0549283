//! Tags of targets and of distribution sets, and which targets and sets carry them
//! (rollouts.md §1.1: target ↔ tag and set ↔ tag are M:N). Both kinds have the same shape:
//! a [`Tags`] describes each.

use sqlx::PgConnection;

use super::link::Link;
use super::page::{Base, SortFields};
use super::repository::sets::{SetRow, TABLE as SETS};
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

/// A change of a tag (`None` = unchanged).
#[derive(Debug, Clone, Copy, Default)]
pub struct TagChange<'a> {
    pub name: Option<&'a str>,
    pub description: Option<&'a str>,
    pub colour: Option<&'a str>,
}

/// One kind of tag: its table and what a conflict calls it.
#[derive(Debug)]
pub struct Tags {
    pub table: Table<TagRow>,
    name: &'static str,
    what: &'static str,
}

/// The tenant's target tags.
pub const TARGET_TAGS: Tags = Tags {
    table: Table::new("target_tag", "g", COLUMNS, &SORT),
    name: "target_tag",
    what: "target tag",
};

/// The tenant's distribution set tags.
pub const SET_TAGS: Tags = Tags {
    table: Table::new("distribution_set_tag", "g", COLUMNS, &SORT),
    name: "distribution_set_tag",
    what: "distribution set tag",
};

/// The target tags' table.
pub const TABLE: &Table<TagRow> = &TARGET_TAGS.table;

/// Which of the tenant's targets carry which tags. Tagging changes neither side's audit
/// columns.
pub const ASSIGNMENTS: Link<TagRow, TargetRow> = Link::new(
    "target_tag_assignment",
    TABLE,
    "tag_id",
    &TARGETS,
    "target_id",
);

/// Which of the tenant's sets carry which set tags.
pub const SET_ASSIGNMENTS: Link<TagRow, SetRow> = Link::new(
    "distribution_set_tag_assignment",
    &SET_TAGS.table,
    "tag_id",
    &SETS,
    "ds_id",
);

impl Tags {
    fn duplicate(&self, e: StoreError, name: &str) -> StoreError {
        e.conflict_as(|| format!("a {} named {name:?} already exists", self.what))
    }

    /// Insert a tag; a duplicate name in the tenant is a conflict.
    pub async fn insert(
        &self,
        conn: &mut PgConnection,
        tenant: TenantId,
        name: &str,
        description: Option<&str>,
        colour: Option<&str>,
        user: &str,
    ) -> Result<TagRow> {
        let sql = format!(
            "INSERT INTO {} AS g (tenant_id, name, description, colour, created_by,
                                      last_modified_by)
         VALUES ($1, $2, $3, $4, $5, $5) RETURNING {COLUMNS}",
            self.name
        );
        sql::fetch_one(conn, &sql, (tenant.0, name, description, colour, user))
            .await
            .map_err(|e| self.duplicate(e, name))
    }

    /// Change a tag (`None` = unchanged); `None` if it does not exist. A duplicate name is a
    /// conflict.
    pub async fn update(
        &self,
        conn: &mut PgConnection,
        tenant: TenantId,
        id: i64,
        change: &TagChange<'_>,
        user: &str,
    ) -> Result<Option<TagRow>> {
        let TagChange {
            name,
            description,
            colour,
        } = *change;
        let sql = format!(
            "UPDATE {} g SET name = COALESCE($3, g.name),
                description = COALESCE($4, g.description), colour = COALESCE($5, g.colour),
                last_modified_at = epoch_ms(), last_modified_by = $6,
                opt_lock_revision = g.opt_lock_revision + 1
         WHERE g.tenant_id = $1 AND g.id = $2 RETURNING {COLUMNS}",
            self.name
        );
        let binds = (tenant.0, id, name, description, colour, user);
        sql::fetch_optional(conn, &sql, binds)
            .await
            .map_err(|e| self.duplicate(e, name.unwrap_or_default()))
    }
}
