//! Key/value metadata of an owner entity (targets, software modules): the statements both
//! metadata tables share. A metadata table has the owner's id in `{owner_key}`, a `key` unique
//! per owner, and is reached through the owner's tenant; what else a row holds (a module's
//! `target_visible`) is for its module's own insert and update.

use std::marker::PhantomData;

use sqlx::PgConnection;
use sqlx::postgres::PgRow;

use super::filter::{Filter, push_and};
use super::page::{Listing, PageRequest, SortFields, fetch};
use super::table::Table;
use super::{Result, sql};
use crate::domain::ids::TenantId;

/// A metadata table, aliased `md`, whose rows read as `R`.
#[derive(Debug)]
pub struct MetadataTable<R> {
    /// The metadata table.
    table: &'static str,
    /// The owner's table and its alias (its `tenant_id` decides the tenant).
    owner_table: &'static str,
    owner: &'static str,
    /// The column of `md` that holds the owner's id.
    owner_key: &'static str,
    /// The select list of `R` over `md`.
    columns: &'static str,
    sort: &'static SortFields,
    row: PhantomData<fn() -> R>,
}

impl<R> MetadataTable<R> {
    /// The metadata table `table` of the rows of `owner`, whose id it holds in `owner_key`;
    /// entries read as `R` from `columns` (over `md`) and list in the order of `sort`.
    pub(super) const fn new<O>(
        table: &'static str,
        owner: &Table<O>,
        owner_key: &'static str,
        columns: &'static str,
        sort: &'static SortFields,
    ) -> Self {
        let (owner_table, owner) = owner.name_and_alias();
        Self {
            table,
            owner_table,
            owner,
            owner_key,
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
        let from = self.from();
        let listing = Listing {
            columns: self.columns,
            from: &from,
            count_from: &from,
            sort: self.sort,
        };
        fetch(conn, &listing, page, |qb| {
            qb.push(format!("{}.tenant_id = ", self.owner))
                .push_bind(tenant.0);
            qb.push(format!(" AND md.{} = ", self.owner_key))
                .push_bind(owner_id);
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
        let sql = format!(
            "SELECT count(*) FROM {} WHERE {}",
            self.from(),
            self.owner_cond()
        );
        sql::scalar(conn, &sql, (tenant.0, owner_id)).await
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
            self.columns,
            self.from(),
            self.owner_cond()
        );
        sql::fetch_optional(conn, &sql, (tenant.0, owner_id, key)).await
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
            self.table,
            self.owner_table,
            self.owner_key,
            self.owner_cond(),
            owner = self.owner,
        );
        Ok(sql::execute(conn, &sql, (tenant.0, owner_id, key)).await? > 0)
    }

    /// The entries joined to their owners.
    fn from(&self) -> String {
        format!(
            "{} md JOIN {} {owner} ON {owner}.id = md.{}",
            self.table,
            self.owner_table,
            self.owner_key,
            owner = self.owner
        )
    }

    /// `$1` is the owner's tenant and `$2` its id.
    fn owner_cond(&self) -> String {
        format!(
            "{}.tenant_id = $1 AND md.{} = $2",
            self.owner, self.owner_key
        )
    }
}
