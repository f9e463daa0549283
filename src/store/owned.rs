//! Rows of a child table that belong to a row of a tenant-owned table (metadata entries, link
//! rows): they hold their owner's id and reach the tenant only through the owner, so their
//! statements join the owner and filter by its `tenant_id`.

use sqlx::{PgConnection, Postgres, QueryBuilder};

use super::{Result, sql};
use crate::domain::ids::TenantId;

/// The table `table`, aliased `alias`, whose column `key` holds the id of its owner: a row of
/// `owner_table`, aliased `owner`.
#[derive(Debug, Clone, Copy)]
pub(super) struct OwnedRows {
    pub table: &'static str,
    pub alias: &'static str,
    pub owner_table: &'static str,
    pub owner: &'static str,
    pub key: &'static str,
}

impl OwnedRows {
    /// The rows joined to their owners.
    pub fn from(&self) -> String {
        format!(
            "{} {alias} JOIN {} {owner} ON {owner}.id = {alias}.{}",
            self.table,
            self.owner_table,
            self.key,
            alias = self.alias,
            owner = self.owner,
        )
    }

    /// The rows of one owner: `$1` is the owner's tenant and `$2` its id.
    pub fn of_owner(&self) -> String {
        format!(
            "{}.tenant_id = $1 AND {}.{} = $2",
            self.owner, self.alias, self.key
        )
    }

    /// [`Self::of_owner`] with the tenant and the owner's id bound (a listing's condition).
    pub fn push_of_owner(&self, qb: &mut QueryBuilder<'_, Postgres>, tenant: TenantId, id: i64) {
        qb.push(format!("{}.tenant_id = ", self.owner))
            .push_bind(tenant.0);
        qb.push(format!(" AND {}.{} = ", self.alias, self.key))
            .push_bind(id);
    }

    /// How many rows an owner of the tenant has.
    pub async fn count(&self, conn: &mut PgConnection, tenant: TenantId, id: i64) -> Result<i64> {
        let sql = format!(
            "SELECT count(*) FROM {} WHERE {}",
            self.from(),
            self.of_owner()
        );
        sql::scalar(conn, &sql, (tenant.0, id)).await
    }
}
