//! Targets: DMF registration (upsert), attributes, auto-confirmation, deletion, and the reads
//! of the Management API.

use serde_json::Value;
use sqlx::{PgConnection, Postgres, QueryBuilder};
use std::collections::BTreeMap;

use super::filter::{Filter, push_and};
use super::page::{Base, Listing, PageRequest, SortFields, fetch};
use super::table::{RowLock, Table};
use super::{Audit, Named, NamedUpdate};
use super::{Result, StoreError, sql};
use crate::domain::ids::{TargetId, TenantId};

/// Every column the API shows, plus the tenant name for DMF headers.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TargetRow {
    pub id: i64,
    pub tenant_id: i64,
    pub controller_id: String,
    #[sqlx(flatten)]
    pub named: Named,
    pub address: Option<String>,
    pub security_token: String,
    pub attributes: sqlx::types::Json<BTreeMap<String, String>>,
    pub request_attributes: bool,
    pub update_status: String,
    pub assigned_ds_id: Option<i64>,
    pub installed_ds_id: Option<i64>,
    pub installation_date: Option<i64>,
    pub last_target_query: Option<i64>,
    pub target_type_id: Option<i64>,
    pub target_type_name: Option<String>,
    pub target_group: Option<String>,
    pub auto_confirm_at: Option<i64>,
    pub auto_confirm_initiator: Option<String>,
    pub auto_confirm_remark: Option<String>,
    #[sqlx(flatten)]
    pub audit: Audit,
}

pub(super) const COLUMNS: &str =
    "t.id, t.tenant_id, t.controller_id, t.name, t.description, t.address,
    t.security_token, t.attributes, t.request_attributes, t.update_status, t.assigned_ds_id,
    t.installed_ds_id, t.installation_date, t.last_target_query, t.target_type_id,
    tt.name AS target_type_name, t.target_group, t.auto_confirm_at, t.auto_confirm_initiator,
    t.auto_confirm_remark, t.created_at, t.created_by, t.last_modified_at, t.last_modified_by";

/// The outcome of a DMF registration.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Registered {
    pub id: i64,
    pub attributes: sqlx::types::Json<BTreeMap<String, String>>,
    pub inserted: bool,
}

/// THING_CREATED: create the target, or update address/name/status and last contact of an
/// existing one (§5.4). Concurrent registrations of one id meet in the upsert, not in an error.
pub async fn register(
    conn: &mut PgConnection,
    tenant: TenantId,
    controller_id: &str,
    name: Option<&str>,
    address: &str,
    security_token: &str,
) -> Result<Registered> {
    let sql =
        "INSERT INTO target (tenant_id, controller_id, name, description, address, security_token,
                             update_status, last_target_query, created_by, last_modified_by)
         VALUES ($1, $2, COALESCE($3, $2), 'Plug and Play target: ' || $2, $4, $5,
                 'REGISTERED', epoch_ms(), 'DMF', 'DMF')
         ON CONFLICT (tenant_id, controller_id) DO UPDATE SET
            address = excluded.address,
            name = COALESCE($3, target.name),
            update_status = CASE WHEN target.update_status = 'UNKNOWN' THEN 'REGISTERED'
                                 ELSE target.update_status END,
            last_target_query = excluded.last_target_query,
            last_modified_at = CASE WHEN target.address IS DISTINCT FROM excluded.address
                                      OR ($3 IS NOT NULL AND target.name <> $3)
                                    THEN epoch_ms() ELSE target.last_modified_at END
         RETURNING id, attributes, (xmax = 0) AS inserted";
    let binds = (tenant.0, controller_id, name, address, security_token);
    sql::fetch_one(conn, sql, binds).await
}

/// Apply the THING_CREATED `type` rule: a known type name sets it, `""` removes it, an unknown
/// name changes nothing. Returns false for an unknown name.
pub async fn set_type_by_name(
    conn: &mut PgConnection,
    target: TargetId,
    type_name: &str,
) -> Result<bool> {
    if type_name.is_empty() {
        let sql = "UPDATE target SET target_type_id = NULL WHERE id = $1";
        sql::execute(conn, sql, (target.0,)).await?;
        return Ok(true);
    }
    let sql = "UPDATE target t SET target_type_id = tt.id FROM target_type tt
               WHERE t.id = $1 AND tt.tenant_id = t.tenant_id AND tt.name = $2";
    Ok(sql::execute(conn, sql, (target.0, type_name)).await? > 0)
}

/// `$2` is the controllerId.
const BY_CONTROLLER_ID: &str = "t.controller_id = $2";

/// Lock a target by controllerId for an update in this transaction.
pub async fn lock_by_controller_id(
    conn: &mut PgConnection,
    tenant: TenantId,
    controller_id: &str,
) -> Result<Option<TargetRow>> {
    TABLE
        .find_where(
            conn,
            tenant,
            BY_CONTROLLER_ID,
            controller_id,
            RowLock::ForUpdate,
        )
        .await
}

/// Read a target by controllerId.
pub async fn find(
    conn: &mut PgConnection,
    tenant: TenantId,
    controller_id: &str,
) -> Result<Option<TargetRow>> {
    TABLE
        .find_where(conn, tenant, BY_CONTROLLER_ID, controller_id, RowLock::None)
        .await
}

/// Read targets by controllerIds, in id order, read as `lock` says (an assignment locks them);
/// absent ones are simply missing.
pub async fn find_many(
    conn: &mut PgConnection,
    tenant: TenantId,
    controller_ids: &[String],
    lock: RowLock,
) -> Result<Vec<TargetRow>> {
    let by_ids = "t.controller_id = ANY($2)";
    TABLE
        .find_all_where(conn, tenant, by_ids, controller_ids, lock)
        .await
}

/// Replace the controller attributes and clear the "attributes requested" flag (§5.10).
pub async fn set_attributes(
    conn: &mut PgConnection,
    target: TargetId,
    attributes: &BTreeMap<String, String>,
) -> Result<()> {
    let sql = "UPDATE target SET attributes = $2, request_attributes = false,
                      last_modified_at = epoch_ms()
               WHERE id = $1";
    sql::execute(conn, sql, (target.0, sqlx::types::Json(attributes))).await?;
    Ok(())
}

/// Switch automatic confirmation on (returns false if it already was) or off.
pub async fn set_auto_confirm(
    conn: &mut PgConnection,
    target: TargetId,
    on: Option<(&str, &str, &str)>,
) -> Result<bool> {
    let changed = match on {
        Some((initiator, remark, by)) => {
            let sql = "UPDATE target SET auto_confirm_at = epoch_ms(), auto_confirm_initiator = $2,
                              auto_confirm_remark = $3, auto_confirm_by = $4,
                              last_modified_at = epoch_ms()
                       WHERE id = $1 AND auto_confirm_at IS NULL";
            sql::execute(conn, sql, (target.0, initiator, remark, by)).await?
        }
        None => {
            let sql = "UPDATE target SET auto_confirm_at = NULL, auto_confirm_initiator = NULL,
                              auto_confirm_remark = NULL, auto_confirm_by = NULL,
                              last_modified_at = epoch_ms()
                       WHERE id = $1 AND auto_confirm_at IS NOT NULL";
            sql::execute(conn, sql, (target.0,)).await?
        }
    };
    Ok(changed > 0)
}

/// Delete a target (its actions and history go with it). Returns its last address.
pub async fn delete(conn: &mut PgConnection, target: TargetId) -> Result<Option<String>> {
    // Rollout memberships carry no foreign key (filling speed); they go with their target.
    let memberships = "DELETE FROM rollout_target_group WHERE target_id = $1";
    sql::execute(&mut *conn, memberships, (target.0,)).await?;
    let sql = "DELETE FROM target WHERE id = $1 RETURNING address";
    Ok(sql::scalar_optional(conn, sql, (target.0,))
        .await?
        .flatten())
}

/// How target lists sort: API name → column; by controllerId unless asked otherwise.
pub const SORT: SortFields = SortFields::of(
    Base::Named,
    "t",
    &[
        ("controllerid", "t.controller_id"),
        ("updatestatus", "t.update_status"),
        ("address", "t.address"),
        ("ipaddress", "t.address"),
        ("lastcontrollerrequestat", "t.last_target_query"),
    ],
    "t.controller_id ASC",
);

/// The tenant's targets, with their type's name.
pub const TABLE: Table<TargetRow> = Table::new("target", "t", COLUMNS, &SORT)
    .joined("LEFT JOIN target_type tt ON tt.id = t.target_type_id");

/// A target created through the Management API.
#[derive(Debug, Clone)]
pub struct NewTarget {
    pub controller_id: String,
    pub named: Named,
    pub address: Option<String>,
    pub security_token: String,
    pub request_attributes: bool,
    pub target_type_id: Option<i64>,
    pub group: Option<String>,
}

/// Insert targets; a duplicate controllerId is a conflict.
pub async fn insert(
    conn: &mut PgConnection,
    tenant: TenantId,
    targets: &[NewTarget],
    user: &str,
) -> Result<Vec<i64>> {
    let mut ids = Vec::with_capacity(targets.len());
    for t in targets {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO target (tenant_id, controller_id, name, description, address, security_token,
                                 request_attributes, target_type_id, target_group, created_by, last_modified_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) RETURNING id",
        )
        .bind(tenant.0)
        .bind(&t.controller_id)
        .bind(&t.named.name)
        .bind(&t.named.description)
        .bind(&t.address)
        .bind(&t.security_token)
        .bind(t.request_attributes)
        .bind(t.target_type_id)
        .bind(&t.group)
        .bind(user)
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| match StoreError::from(e) {
            StoreError::Conflict(_) => {
                StoreError::Conflict(format!("target {} already exists", t.controller_id))
            }
            other => other,
        })?;
        ids.push(id);
    }
    Ok(ids)
}

/// Fields a Management API update may change (`None` = unchanged).
#[derive(Debug, Clone, Default)]
pub struct TargetUpdate {
    pub named: NamedUpdate,
    pub address: Option<String>,
    pub security_token: Option<String>,
    pub request_attributes: Option<bool>,
    pub group: Option<String>,
    pub target_type_id: Option<Option<i64>>,
}

pub async fn update(
    conn: &mut PgConnection,
    target: TargetId,
    u: &TargetUpdate,
    user: &str,
) -> Result<()> {
    sql::execute(
        conn,
        "UPDATE target SET name = COALESCE($2, name), description = COALESCE($3, description),
                address = COALESCE($4, address), security_token = COALESCE($5, security_token),
                request_attributes = COALESCE($6, request_attributes),
                target_group = COALESCE($7, target_group),
                target_type_id = CASE WHEN $8 THEN $9 ELSE target_type_id END,
                last_modified_at = epoch_ms(), last_modified_by = $10,
                opt_lock_revision = opt_lock_revision + 1
         WHERE id = $1",
        (
            target.0,
            &u.named.name,
            &u.named.description,
            &u.address,
            &u.security_token,
            u.request_attributes,
            &u.group,
            u.target_type_id.is_some(),
            u.target_type_id.flatten(),
            user,
        ),
    )
    .await?;
    Ok(())
}

/// Resolve a target type by id within the tenant.
pub async fn target_type_exists(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: i64,
) -> Result<bool> {
    let sql = "SELECT EXISTS (SELECT 1 FROM target_type WHERE tenant_id = $1 AND id = $2)";
    sql::scalar(conn, sql, (tenant.0, id)).await
}

/// Attributes as JSON for the API.
pub fn attributes_json(row: &TargetRow) -> Value {
    serde_json::to_value(&row.attributes.0).unwrap_or_default()
}

const WITH_SET: Listing = Listing {
    columns: COLUMNS,
    from: "target t LEFT JOIN target_type tt ON tt.id = t.target_type_id",
    count_from: "target t",
    sort: &SORT,
};

/// A page of the targets a set is assigned to (`installed`: installed on) matching `q`, and
/// their total (`GET /distributionsets/{id}/assignedTargets|installedTargets`).
pub async fn with_set(
    conn: &mut PgConnection,
    tenant: TenantId,
    ds: i64,
    installed: bool,
    q: Option<&Filter>,
    page: &PageRequest,
) -> Result<(Vec<TargetRow>, i64)> {
    fetch(conn, &WITH_SET, page, |qb| {
        qb.push("t.tenant_id = ").push_bind(tenant.0);
        qb.push(if installed {
            " AND t.installed_ds_id = "
        } else {
            " AND t.assigned_ds_id = "
        })
        .push_bind(ds);
        push_and(qb, q, "t");
    })
    .await
}

/// The names of the types of `targets` that do not accept sets of the type of set `ds`, and
/// the name of that set type (a manual assignment refuses them all at once, as hawkBit does).
pub async fn incompatible_types(
    conn: &mut PgConnection,
    targets: &[i64],
    ds: i64,
) -> Result<(Vec<String>, String)> {
    let sql = "SELECT DISTINCT tt.name FROM target t
               JOIN target_type tt ON tt.id = t.target_type_id
               JOIN distribution_set d ON d.id = $2
               WHERE t.id = ANY($1)
                 AND NOT EXISTS (SELECT 1 FROM target_type_ds_type c
                                 WHERE c.target_type_id = tt.id AND c.ds_type_id = d.type_id)
               ORDER BY 1";
    let names = sql::scalar_all(&mut *conn, sql, (targets, ds)).await?;
    let set_type = "SELECT dt.name FROM distribution_set d
                    JOIN distribution_set_type dt ON dt.id = d.type_id WHERE d.id = $1";
    Ok((names, sql::scalar(conn, set_type, (ds,)).await?))
}

/// The targets among `targets` that already have `limit - adding` actions or more: each
/// controllerId with its number of actions (hawkBit's `maxActionsPerTarget` on assignment).
pub async fn over_action_quota(
    conn: &mut PgConnection,
    targets: &[i64],
    adding: i64,
    limit: i64,
) -> Result<Vec<(String, i64)>> {
    let sql = "SELECT t.controller_id, count(a.id) FROM target t
               JOIN action a ON a.target_id = t.id
               WHERE t.id = ANY($1)
               GROUP BY t.id HAVING count(a.id) + $2 > $3 ORDER BY t.id";
    sql::fetch_all(conn, sql, (targets, adding, limit)).await
}

/// The tenant's target groups, each once, in order (`GET /targetgroups`).
pub async fn groups(conn: &mut PgConnection, tenant: TenantId) -> Result<Vec<String>> {
    let sql = "SELECT DISTINCT target_group FROM target
               WHERE tenant_id = $1 AND target_group IS NOT NULL ORDER BY 1";
    sql::scalar_all(conn, sql, (tenant.0,)).await
}

/// A page of the targets of `group` (ignoring case; `subgroups`: also of `group/…`) matching
/// `q`, and their total.
pub async fn in_group(
    conn: &mut PgConnection,
    tenant: TenantId,
    group: &str,
    subgroups: bool,
    q: Option<&Filter>,
    page: &PageRequest,
) -> Result<(Vec<TargetRow>, i64)> {
    fetch(conn, &WITH_SET, page, |qb| {
        qb.push("t.tenant_id = ").push_bind(tenant.0);
        push_group(qb, group, subgroups);
        push_and(qb, q, "t");
    })
    .await
}

/// ` AND` the target is in `group` (ignoring case), or with `subgroups` in one below it.
fn push_group(qb: &mut QueryBuilder<'_, Postgres>, group: &str, subgroups: bool) {
    let group = group.to_lowercase();
    qb.push(" AND (lower(t.target_group) = ")
        .push_bind(group.clone());
    if subgroups {
        // The group is a literal prefix: its own `%` and `_` match only themselves.
        let escaped = group
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        qb.push(" OR lower(t.target_group) LIKE ")
            .push_bind(format!("{escaped}/%"));
    }
    qb.push(")");
}

/// Which targets a group change applies to.
pub enum GroupMembers<'a> {
    /// These controllerIds (unknown ones are skipped, as in hawkBit).
    Ids(&'a [String]),
    /// Every target matching the filter (all of the tenant's without one).
    Matching(Option<&'a Filter>),
}

/// Put targets into `group`, or (`None`) out of theirs, in one statement. Returns the ids of
/// the targets that changed.
pub async fn set_group(
    conn: &mut PgConnection,
    tenant: TenantId,
    group: Option<&str>,
    members: GroupMembers<'_>,
    user: &str,
) -> Result<Vec<i64>> {
    let mut qb = QueryBuilder::new("UPDATE target t SET target_group = ");
    qb.push_bind(group)
        .push(", last_modified_at = epoch_ms(), last_modified_by = ")
        .push_bind(user)
        .push(", opt_lock_revision = opt_lock_revision + 1 WHERE t.tenant_id = ")
        .push_bind(tenant.0)
        .push(" AND t.target_group IS DISTINCT FROM ")
        .push_bind(group);
    match members {
        GroupMembers::Ids(ids) => {
            qb.push(" AND t.controller_id = ANY(")
                .push_bind(ids)
                .push(")");
        }
        GroupMembers::Matching(q) => push_and(&mut qb, q, "t"),
    }
    qb.push(" RETURNING t.id");
    Ok(qb.build_query_scalar().fetch_all(conn).await?)
}
