//! Association tables of two tenant-owned tables (a set's modules, the set types a target
//! type accepts, a tag's targets): the statements every such M:N link shares. A link row holds
//! the owner's id in `{owner_key}` and the member's in `{member_key}`; both rows must belong to
//! the tenant.

use sqlx::PgConnection;
use sqlx::postgres::PgRow;

use super::filter::{Filter, push_and};
use super::owned::OwnedRows;
use super::page::{Listing, PageRequest, fetch};
use super::table::{Table, stamp};
use super::{Result, sql};
use crate::domain::ids::TenantId;

/// A link table, aliased `l`, from the rows of an owner table, which read as `O`, to those of a
/// member table, which read as `M`.
#[derive(Debug)]
pub struct Link<O: 'static, M: 'static> {
    /// The link rows and their owners (rows of the owners' table).
    links: OwnedRows,
    /// The owners' and the members' tables: rows of either are read as their table reads them.
    owners: &'static Table<O>,
    members: &'static Table<M>,
    /// The member's table and alias, and the column of `l` that holds the member's id.
    member_table: &'static str,
    member: &'static str,
    member_key: &'static str,
}

impl<O, M> Link<O, M> {
    /// The link table `table` from the rows of `owners` (id in `owner_key`) to the rows of
    /// `members` (id in `member_key`).
    pub(super) const fn new(
        table: &'static str,
        owners: &'static Table<O>,
        owner_key: &'static str,
        members: &'static Table<M>,
        member_key: &'static str,
    ) -> Self {
        let (owner_table, owner) = owners.name_and_alias();
        let (member_table, member) = members.name_and_alias();
        Self {
            links: OwnedRows {
                table,
                alias: "l",
                owner_table,
                owner,
                key: owner_key,
            },
            owners,
            members,
            member_table,
            member,
            member_key,
        }
    }

    /// Link members (by id) to an owner; members already linked stay linked once, ids that
    /// are not the tenant's are left out, and an owner of another tenant links nothing.
    pub async fn link(
        &self,
        conn: &mut PgConnection,
        tenant: TenantId,
        owner_id: i64,
        member_ids: &[i64],
    ) -> Result<()> {
        let sql = format!(
            "INSERT INTO {} ({}, {})
             SELECT {owner}.id, {member}.id FROM {} {owner}
             JOIN {} {member} ON {member}.tenant_id = {owner}.tenant_id AND {member}.id = ANY($3)
             WHERE {owner}.tenant_id = $1 AND {owner}.id = $2
             ON CONFLICT DO NOTHING",
            self.links.table,
            self.links.key,
            self.member_key,
            self.links.owner_table,
            self.member_table,
            owner = self.links.owner,
            member = self.member,
        );
        sql::execute(conn, &sql, (tenant.0, owner_id, member_ids)).await?;
        Ok(())
    }

    /// Unlink a member from an owner of the tenant. False if it was not linked.
    pub async fn unlink(
        &self,
        conn: &mut PgConnection,
        tenant: TenantId,
        owner_id: i64,
        member_id: i64,
    ) -> Result<bool> {
        Ok(self
            .unlink_many(conn, tenant, owner_id, &[member_id])
            .await?
            > 0)
    }

    /// Unlink several members from an owner of the tenant in one statement. Returns how many
    /// were linked.
    pub async fn unlink_many(
        &self,
        conn: &mut PgConnection,
        tenant: TenantId,
        owner_id: i64,
        member_ids: &[i64],
    ) -> Result<u64> {
        let sql = format!(
            "DELETE FROM {} l USING {} {owner}
             WHERE {owner}.id = l.{key} AND {owner}.tenant_id = $1 AND l.{key} = $2
               AND l.{} = ANY($3)",
            self.links.table,
            self.links.owner_table,
            self.member_key,
            owner = self.links.owner,
            key = self.links.key,
        );
        sql::execute(conn, &sql, (tenant.0, owner_id, member_ids)).await
    }

    /// How many members an owner of the tenant has.
    pub async fn count(
        &self,
        conn: &mut PgConnection,
        tenant: TenantId,
        owner_id: i64,
    ) -> Result<i64> {
        self.links.count(conn, tenant, owner_id).await
    }

    /// The link rows joined to their owners and members: the `FROM` of a list of members, and
    /// of its count.
    fn members_from(&self) -> (String, String) {
        let on = format!("{}.id = l.{}", self.member, self.member_key);
        self.members.joined_to(&self.links.from(), &on)
    }

    /// [`Self::link`] as a change of the owner: it is stamped modified by `user`.
    pub async fn add(
        &self,
        conn: &mut PgConnection,
        tenant: TenantId,
        owner_id: i64,
        member_ids: &[i64],
        user: &str,
    ) -> Result<()> {
        self.link(conn, tenant, owner_id, member_ids).await?;
        stamp(conn, self.links.owner_table, tenant, owner_id, user, "").await?;
        Ok(())
    }

    /// [`Self::unlink`] as a change of the owner: stamped modified by `user` when a member
    /// went. False if it was not linked.
    pub async fn remove(
        &self,
        conn: &mut PgConnection,
        tenant: TenantId,
        owner_id: i64,
        member_id: i64,
        user: &str,
    ) -> Result<bool> {
        let removed = self.unlink(conn, tenant, owner_id, member_id).await?;
        if removed {
            stamp(conn, self.links.owner_table, tenant, owner_id, user, "").await?;
        }
        Ok(removed)
    }
}

impl<O, M> Link<O, M>
where
    O: for<'r> sqlx::FromRow<'r, PgRow> + Send + Unpin,
{
    /// Every owner of the tenant a member is linked to, in id order (a target's tags).
    pub async fn owners_of(
        &self,
        conn: &mut PgConnection,
        tenant: TenantId,
        member_id: i64,
    ) -> Result<Vec<O>> {
        let on = format!("{}.id = l.{}", self.links.owner, self.links.key);
        let (from, _) = self
            .owners
            .joined_to(&format!("{} l", self.links.table), &on);
        let sql = format!(
            "SELECT {} FROM {from} WHERE {}.tenant_id = $1 AND l.{} = $2 ORDER BY {}.id",
            self.owners.columns(),
            self.links.owner,
            self.member_key,
            self.links.owner
        );
        sql::fetch_all(conn, &sql, (tenant.0, member_id)).await
    }
}

impl<O, M> Link<O, M>
where
    M: for<'r> sqlx::FromRow<'r, PgRow> + Send + Unpin,
{
    /// Every member of an owner of the tenant, in id order.
    pub async fn all_members(
        &self,
        conn: &mut PgConnection,
        tenant: TenantId,
        owner_id: i64,
    ) -> Result<Vec<M>> {
        let (from, _) = self.members_from();
        let sql = format!(
            "SELECT {} FROM {from} WHERE {} ORDER BY {}.id",
            self.members.columns(),
            self.links.of_owner(),
            self.member
        );
        sql::fetch_all(conn, &sql, (tenant.0, owner_id)).await
    }

    /// A page of an owner's members matching `q` (a filter of the member's entity) and their
    /// total, listed like the member's table (deleted members included: a set keeps them).
    pub async fn members(
        &self,
        conn: &mut PgConnection,
        tenant: TenantId,
        owner_id: i64,
        q: Option<&Filter>,
        page: &PageRequest,
    ) -> Result<(Vec<M>, i64)> {
        let (from, count_from) = self.members_from();
        let listing = Listing {
            columns: self.members.columns(),
            from: &from,
            count_from: &count_from,
            sort: self.members.sort(),
        };
        fetch(conn, &listing, page, |qb| {
            self.links.push_of_owner(qb, tenant, owner_id);
            push_and(qb, q, self.member);
        })
        .await
    }
}
