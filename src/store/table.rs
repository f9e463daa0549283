//! The statements every tenant-owned entity table shares: a page of the tenant's rows, one row
//! by id (or another condition), a row lock, a hard delete, a soft delete that falls back from
//! a hard one, and the "last modified" stamp. Each entity module describes its table once as a
//! [`Table`] and the API calls these through it (`tags::TABLE.find(c, tenant, id)`).
//!
//! Every statement is filtered by `{alias}.tenant_id`: a row of another tenant is not found.

use std::marker::PhantomData;

use sqlx::postgres::PgRow;
use sqlx::{Connection as _, Encode, FromRow, PgConnection, Postgres, Type};

use super::Result;
use super::filter::{Filter, push_and};
use super::page::{Listing, PageRequest, SortFields, fetch};
use super::sql;
use crate::domain::ids::TenantId;

/// A tenant-owned table with a `bigint` `id` key, read as rows of `R`.
#[derive(Debug)]
pub struct Table<R> {
    /// The table's name.
    name: &'static str,
    /// Its alias in `columns`, `joins`, `sort` and filters.
    alias: &'static str,
    /// Joins that only add columns (a type's key, say); a count leaves them out.
    joins: &'static str,
    /// The select list of `R`.
    columns: &'static str,
    sort: &'static SortFields,
    /// Rows have a `deleted` flag and lists leave deleted rows out (lookups by id still see
    /// them: an action may refer to a deleted set).
    soft_delete: bool,
    row: PhantomData<fn() -> R>,
}

/// How an entity went away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deletion {
    /// The row is gone.
    Hard,
    /// Still referenced (by a set, an action, a target): kept with `deleted = true`.
    Soft,
    /// No such entity in the tenant.
    NotFound,
}

/// Whether a read locks the row it finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowLock {
    None,
    /// `FOR UPDATE` of the entity's own row (not of joined ones).
    ForUpdate,
}

impl<R> Table<R>
where
    R: for<'r> FromRow<'r, PgRow> + Send + Unpin,
{
    /// A page of the tenant's rows matching `q` (a filter of this entity), and their total.
    pub async fn list(
        &self,
        conn: &mut PgConnection,
        tenant: TenantId,
        q: Option<&Filter>,
        page: &PageRequest,
    ) -> Result<(Vec<R>, i64)> {
        let from = format!("{} {} {}", self.name, self.alias, self.joins);
        let count_from = format!("{} {}", self.name, self.alias);
        let listing = Listing {
            columns: self.columns,
            from: &from,
            count_from: &count_from,
            sort: self.sort,
        };
        fetch(conn, &listing, page, |qb| {
            if self.soft_delete {
                qb.push(format!("NOT {}.deleted AND ", self.alias));
            }
            qb.push(format!("{}.tenant_id = ", self.alias))
                .push_bind(tenant.0);
            push_and(qb, q, self.alias);
        })
        .await
    }

    /// One row by id (soft-deleted ones included).
    pub async fn find(
        &self,
        conn: &mut PgConnection,
        tenant: TenantId,
        id: i64,
    ) -> Result<Option<R>> {
        let by_id = format!("{}.id = $2", self.alias);
        self.find_where(conn, tenant, &by_id, id, RowLock::None)
            .await
    }

    /// [`Self::find`], locking the row for the rest of the transaction (a concurrent change
    /// of it, or a foreign-key check against it, waits until commit).
    pub async fn lock(
        &self,
        conn: &mut PgConnection,
        tenant: TenantId,
        id: i64,
    ) -> Result<Option<R>> {
        let by_id = format!("{}.id = $2", self.alias);
        self.find_where(conn, tenant, &by_id, id, RowLock::ForUpdate)
            .await
    }

    /// One row that is not deleted by its `key` (types: a key is unique among the live rows).
    pub async fn find_live_key(
        &self,
        conn: &mut PgConnection,
        tenant: TenantId,
        key: &str,
    ) -> Result<Option<R>> {
        let live_key = format!("{a}.key = $2 AND NOT {a}.deleted", a = self.alias);
        self.find_where(conn, tenant, &live_key, key, RowLock::None)
            .await
    }

    /// One row by `condition`, a boolean SQL expression over the aliases in which `$2` is
    /// `value` (`"t.controller_id = $2"`).
    pub(super) async fn find_where<'q, V>(
        &self,
        conn: &mut PgConnection,
        tenant: TenantId,
        condition: &str,
        value: V,
        lock: RowLock,
    ) -> Result<Option<R>>
    where
        V: Encode<'q, Postgres> + Type<Postgres> + Send + 'q,
    {
        let sql = self.select(condition, &self.lock_clause(lock));
        sql::fetch_optional(conn, &sql, (tenant.0, value)).await
    }

    /// Rows by id (soft-deleted ones included), in id order; unknown ids are missing.
    pub async fn find_many(
        &self,
        conn: &mut PgConnection,
        tenant: TenantId,
        ids: &[i64],
    ) -> Result<Vec<R>> {
        let by_ids = format!("{}.id = ANY($2)", self.alias);
        self.find_all_where(conn, tenant, &by_ids, ids, RowLock::None)
            .await
    }

    /// Every row by `condition` (as in [`Self::find_where`]), in id order.
    pub(super) async fn find_all_where<'q, V>(
        &self,
        conn: &mut PgConnection,
        tenant: TenantId,
        condition: &str,
        value: V,
        lock: RowLock,
    ) -> Result<Vec<R>>
    where
        V: Encode<'q, Postgres> + Type<Postgres> + Send + 'q,
    {
        let suffix = format!("ORDER BY {}.id {}", self.alias, self.lock_clause(lock));
        let sql = self.select(condition, &suffix);
        sql::fetch_all(conn, &sql, (tenant.0, value)).await
    }

    fn lock_clause(&self, lock: RowLock) -> String {
        match lock {
            RowLock::None => String::new(),
            RowLock::ForUpdate => format!("FOR UPDATE OF {}", self.alias),
        }
    }

    fn select(&self, condition: &str, suffix: &str) -> String {
        format!(
            "SELECT {} FROM {} {} {} WHERE {}.tenant_id = $1 AND {condition} {suffix}",
            self.columns, self.name, self.alias, self.joins, self.alias
        )
    }
}

impl<R> Table<R> {
    /// The table `name`, aliased `alias`, whose rows read as `R` from the select list
    /// `columns`, listed in the order of `sort`; no joins, hard deletes only.
    pub(super) const fn new(
        name: &'static str,
        alias: &'static str,
        columns: &'static str,
        sort: &'static SortFields,
    ) -> Self {
        Self {
            name,
            alias,
            joins: "",
            columns,
            sort,
            soft_delete: false,
            row: PhantomData,
        }
    }

    /// This table with `joins` (that only add columns) after it.
    pub(super) const fn joined(mut self, joins: &'static str) -> Self {
        self.joins = joins;
        self
    }

    /// This table with a `deleted` flag ([`Self::delete_or_mark`]): lists leave deleted rows
    /// out.
    pub(super) const fn soft_deleted(mut self) -> Self {
        self.soft_delete = true;
        self
    }

    /// The table's name and alias (a child table reaches its tenant through them).
    pub(super) const fn name_and_alias(&self) -> (&'static str, &'static str) {
        (self.name, self.alias)
    }

    /// This table joined to `from` on `on` (its rows as members of a link): the `FROM` of a
    /// list of them, and of its count (without the joins that only add columns).
    pub(super) fn joined_to(&self, from: &str, on: &str) -> (String, String) {
        let count_from = format!("{from} JOIN {} {} ON {on}", self.name, self.alias);
        (format!("{count_from} {}", self.joins), count_from)
    }

    /// The select list of `R`.
    pub(super) const fn columns(&self) -> &'static str {
        self.columns
    }

    /// The fields lists of this table sort by.
    pub fn sort(&self) -> &'static SortFields {
        self.sort
    }

    /// Delete a row (what cascades from it goes with it). False if there is no such row.
    pub async fn delete(&self, conn: &mut PgConnection, tenant: TenantId, id: i64) -> Result<bool> {
        let sql = format!("DELETE FROM {} WHERE tenant_id = $1 AND id = $2", self.name);
        Ok(sql::execute(conn, &sql, (tenant.0, id)).await? > 0)
    }

    /// Delete a row in a savepoint; when a foreign key still points at it, mark it deleted
    /// instead (a soft-delete table).
    pub async fn delete_or_mark(
        &self,
        conn: &mut PgConnection,
        tenant: TenantId,
        id: i64,
        user: &str,
    ) -> Result<Deletion> {
        // A savepoint (or a transaction when the caller has none): the failed DELETE must not
        // abort the caller's transaction.
        let mut sp = conn.begin().await?;
        let found = match self.delete(&mut sp, tenant, id).await {
            Ok(found) => {
                sp.commit().await?;
                return Ok(if found {
                    Deletion::Hard
                } else {
                    Deletion::NotFound
                });
            }
            Err(super::StoreError::Permanent(sqlx::Error::Database(db)))
                if db.code().as_deref() == Some("23503") =>
            {
                sp.rollback().await?;
                stamp(conn, self.name, tenant, id, user, "deleted = true,").await?
            }
            Err(e) => return Err(e),
        };
        Ok(if found {
            Deletion::Soft
        } else {
            Deletion::NotFound
        })
    }
}

/// Set `changes` (SQL assignments, each followed by a comma) of a row of the tenant's `table`
/// and the modification stamp; whether the row exists.
pub(super) async fn stamp(
    conn: &mut PgConnection,
    table: &str,
    tenant: TenantId,
    id: i64,
    user: &str,
    changes: &str,
) -> Result<bool> {
    let sql = format!(
        "UPDATE {table} SET {changes} last_modified_at = epoch_ms(), last_modified_by = $3,
                opt_lock_revision = opt_lock_revision + 1
         WHERE tenant_id = $1 AND id = $2"
    );
    Ok(sql::execute(conn, &sql, (tenant.0, id, user)).await? > 0)
}
