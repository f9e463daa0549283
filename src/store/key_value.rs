//! Key/value metadata of an owner entity (targets, software modules, distribution sets): the statements both
//! metadata tables share. A metadata table has the owner's id in `{owner_key}`, a `key` unique
//! per owner, the entry's other columns (a value, a module's `target_visible`), and is reached
//! through the owner's tenant.

use std::marker::PhantomData;

use sqlx::PgConnection;
use sqlx::postgres::PgRow;

use super::filter::{Filter, push_and};
use super::owned::OwnedRows;
use super::page::{Listing, PageRequest, SortFields, fetch};
use super::sql::Binds;
use super::table::Table;
use super::{Result, sql};
use crate::domain::ids::TenantId;

/// A metadata table, aliased `md`, whose rows read as `R`.
#[derive(Debug)]
pub struct MetadataTable<R> {
    /// The entries and their owners (whose `tenant_id` decides the tenant).
    rows: OwnedRows,
    /// The columns of an entry, `key` first, as `R` reads them.
    columns: &'static [&'static str],
    sort: &'static SortFields,
    row: PhantomData<fn() -> R>,
}

impl<R> MetadataTable<R> {
    /// The metadata table `table` of the rows of `owner`, whose id it holds in `owner_key`;
    /// entries read as `R` from `columns` (`key` first) and list in the order of `sort`.
    pub(super) const fn new<O>(
        table: &'static str,
        owner: &Table<O>,
        owner_key: &'static str,
        columns: &'static [&'static str],
        sort: &'static SortFields,
    ) -> Self {
        let (owner_table, owner) = owner.name_and_alias();
        Self {
            rows: OwnedRows {
                table,
                alias: "md",
                owner_table,
                owner,
                key: owner_key,
            },
            columns,
            sort,
            row: PhantomData,
        }
    }
}

impl<R> MetadataTable<R>
where
    R: for<'r> sqlx::FromRow<'r, PgRow> + Send + Unpin,
{
    /// A page of one owner's entries matching `q` (a metadata filter), and their total.
    pub async fn list(
        &self,
        conn: &mut PgConnection,
        tenant: TenantId,
        owner_id: i64,
        q: Option<&Filter>,
        page: &PageRequest,
    ) -> Result<(Vec<R>, i64)> {
        let (from, columns) = (self.rows.from(), self.select_list());
        let listing = Listing {
            columns: &columns,
            from: &from,
            count_from: &from,
            sort: self.sort,
        };
        fetch(conn, &listing, page, |qb| {
            self.rows.push_of_owner(qb, tenant, owner_id);
            push_and(qb, q, "md");
        })
        .await
    }

    /// How many entries an owner has.
    pub async fn count(
        &self,
        conn: &mut PgConnection,
        tenant: TenantId,
        owner_id: i64,
    ) -> Result<i64> {
        self.rows.count(conn, tenant, owner_id).await
    }

    /// One entry by key.
    pub async fn find(
        &self,
        conn: &mut PgConnection,
        tenant: TenantId,
        owner_id: i64,
        key: &str,
    ) -> Result<Option<R>> {
        let sql = format!(
            "SELECT {} FROM {} WHERE {} AND md.key = $3",
            self.select_list(),
            self.rows.from(),
            self.rows.of_owner()
        );
        sql::fetch_optional(conn, &sql, (tenant.0, owner_id, key)).await
    }

    /// Add an entry to an owner of the tenant. `binds` are the tenant, the owner's id and a
    /// value for each column; a key the owner already has is a conflict said as `duplicate`.
    /// False if the owner is not the tenant's.
    pub(super) async fn insert<'q>(
        &self,
        conn: &mut PgConnection,
        binds: impl Binds<'q>,
        duplicate: impl FnOnce() -> String,
    ) -> Result<bool> {
        let values: Vec<String> = (3..3 + self.columns.len())
            .map(|i| format!("${i}"))
            .collect();
        let sql = format!(
            "INSERT INTO {} ({}, {}) SELECT {owner}.id, {} FROM {} {owner}
             WHERE {owner}.tenant_id = $1 AND {owner}.id = $2",
            self.rows.table,
            self.rows.key,
            self.columns.join(", "),
            values.join(", "),
            self.rows.owner_table,
            owner = self.rows.owner,
        );
        let inserted = sql::execute(conn, &sql, binds)
            .await
            .map_err(|e| e.conflict_as(duplicate))?;
        Ok(inserted > 0)
    }

    /// Change an entry; `None` if there is no such entry. `binds` are the tenant, the owner's
    /// id, the key and a value for each other column (`None` = unchanged).
    pub(super) async fn update<'q>(
        &self,
        conn: &mut PgConnection,
        binds: impl Binds<'q>,
    ) -> Result<Option<R>> {
        let changes: Vec<String> = (self.columns.iter().skip(1).zip(4..))
            .map(|(c, i)| format!("{c} = COALESCE(${i}, md.{c})"))
            .collect();
        let sql = format!(
            "UPDATE {} md SET {} FROM {} {owner}
             WHERE {owner}.id = md.{} AND {} AND md.key = $3 RETURNING {}",
            self.rows.table,
            changes.join(", "),
            self.rows.owner_table,
            self.rows.key,
            self.rows.of_owner(),
            self.select_list(),
            owner = self.rows.owner,
        );
        sql::fetch_optional(conn, &sql, binds).await
    }

    /// Remove an entry. False if there was none.
    pub async fn delete(
        &self,
        conn: &mut PgConnection,
        tenant: TenantId,
        owner_id: i64,
        key: &str,
    ) -> Result<bool> {
        let sql = format!(
            "DELETE FROM {} md USING {} {owner} WHERE {owner}.id = md.{} AND {} AND md.key = $3",
            self.rows.table,
            self.rows.owner_table,
            self.rows.key,
            self.rows.of_owner(),
            owner = self.rows.owner,
        );
        Ok(sql::execute(conn, &sql, (tenant.0, owner_id, key)).await? > 0)
    }

    /// How many entries an owner would have once `keys` are set: those it has under other keys
    /// plus `keys` (distinct) — the count a quota checks before [`Self::upsert`].
    pub async fn count_with(
        &self,
        conn: &mut PgConnection,
        tenant: TenantId,
        owner_id: i64,
        keys: &[String],
    ) -> Result<i64> {
        let sql = format!(
            "SELECT count(*) FROM {} WHERE {} AND md.key <> ALL($3)",
            self.rows.from(),
            self.rows.of_owner()
        );
        let others: i64 = sql::scalar(conn, &sql, (tenant.0, owner_id, keys)).await?;
        Ok(others.saturating_add(i64::try_from(keys.len()).unwrap_or(i64::MAX)))
    }

    /// Set `keys[i]` to `values[i]` of an owner of the tenant in one statement: new keys are
    /// added, known ones overwritten (hawkBit 1.1's metadata create). For tables whose entries
    /// are a key and one value column; `keys` must be distinct.
    pub async fn upsert(
        &self,
        conn: &mut PgConnection,
        tenant: TenantId,
        owner_id: i64,
        keys: &[String],
        values: &[String],
    ) -> Result<()> {
        let value = self.columns.get(1).copied().unwrap_or("value");
        let sql = format!(
            "INSERT INTO {} ({key}, key, {value})
             SELECT {owner}.id, u.k, u.v FROM {} {owner}, unnest($3::text[], $4::text[]) AS u(k, v)
             WHERE {owner}.tenant_id = $1 AND {owner}.id = $2
             ON CONFLICT ({key}, key) DO UPDATE SET {value} = EXCLUDED.{value}",
            self.rows.table,
            self.rows.owner_table,
            key = self.rows.key,
            owner = self.rows.owner,
        );
        sql::execute(conn, &sql, (tenant.0, owner_id, keys, values)).await?;
        Ok(())
    }

    /// The columns of an entry over `md`.
    fn select_list(&self) -> String {
        let columns: Vec<String> = self.columns.iter().map(|c| format!("md.{c}")).collect();
        columns.join(", ")
    }
}
