//! Actions and their status history: locking for report application, set-based writes of a
//! whole batch of reports, assignment and cancellation, and the Management API reads.

use sqlx::PgConnection;

use super::Audit;
use super::filter::{Filter, push_and};
use super::page::{Listing, PageRequest, SortFields, fetch};
use super::{Result, sql};
use crate::domain::ids::{ActionId, DsId, GroupId, RolloutId, TenantId};

/// An action as report processing and dispatch need it, with its target's DMF facts.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ActionRow {
    pub id: ActionId,
    pub tenant_id: TenantId,
    pub tenant: String,
    pub target_id: i64,
    pub controller_id: String,
    pub address: Option<String>,
    pub security_token: String,
    pub ds_id: DsId,
    pub rollout_id: Option<RolloutId>,
    pub status: String,
    pub active: bool,
    pub action_type: String,
    pub weight: i32,
    pub intermediate_reports: i32,
    pub mw_schedule: Option<String>,
    pub mw_duration: Option<String>,
    pub mw_timezone: Option<String>,
}

const ACTION_COLUMNS: &str = "a.id, a.tenant_id, tn.name AS tenant, a.target_id, t.controller_id,
    t.address, t.security_token, a.ds_id, a.rollout_id, a.status, a.active, a.action_type, a.weight,
    a.intermediate_reports, a.mw_schedule, a.mw_duration, a.mw_timezone";

/// Lock actions by id (in id order, so concurrent instances do not deadlock).
pub async fn lock(conn: &mut PgConnection, ids: &[ActionId]) -> Result<Vec<ActionRow>> {
    sql::fetch_all(
        conn,
        &format!(
            "SELECT {ACTION_COLUMNS} FROM action a JOIN target t ON t.id = a.target_id
         JOIN tenant tn ON tn.id = a.tenant_id
         WHERE a.id IN (SELECT unnest($1::bigint[])) ORDER BY a.id FOR UPDATE OF a"
        ),
        (ids,),
    )
    .await
}

/// Read actions by id (for rendering).
pub async fn by_ids(conn: &mut PgConnection, ids: &[ActionId]) -> Result<Vec<ActionRow>> {
    sql::fetch_all(conn, &format!(
        "SELECT {ACTION_COLUMNS} FROM action a JOIN target t ON t.id = a.target_id
         JOIN tenant tn ON tn.id = a.tenant_id WHERE a.id IN (SELECT unnest($1::bigint[])) ORDER BY a.id"
    ), (ids,)).await
}

/// The open (active) actions of targets, ordered as devices should work on them: weight
/// descending, then id ascending (§5.2).
pub async fn open_of_targets(conn: &mut PgConnection, targets: &[i64]) -> Result<Vec<ActionRow>> {
    sql::fetch_all(conn, &format!(
        "SELECT {ACTION_COLUMNS} FROM action a JOIN target t ON t.id = a.target_id
         JOIN tenant tn ON tn.id = a.tenant_id
         WHERE a.target_id IN (SELECT unnest($1::bigint[])) AND a.active ORDER BY a.target_id, a.weight DESC, a.id"
    ), (targets,)).await
}

/// Target facts that reports change, locked.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TargetState {
    pub id: i64,
    pub controller_id: String,
    pub address: Option<String>,
    pub assigned_ds_id: Option<DsId>,
    pub installed_ds_id: Option<DsId>,
    pub installation_date: Option<i64>,
    pub update_status: String,
    pub request_attributes: bool,
}

pub async fn lock_targets(conn: &mut PgConnection, ids: &[i64]) -> Result<Vec<TargetState>> {
    sql::fetch_all(
        conn,
        "SELECT id, controller_id, address, assigned_ds_id, installed_ds_id, installation_date,
                update_status, request_attributes
         FROM target WHERE id IN (SELECT unnest($1::bigint[])) ORDER BY id FOR UPDATE",
        (ids,),
    )
    .await
}

/// History entries to append, column-wise.
#[derive(Debug, Default)]
pub struct NewHistory {
    pub action_id: Vec<ActionId>,
    pub status: Vec<String>,
    pub code: Vec<Option<i32>>,
    /// JSON arrays of strings.
    pub messages: Vec<serde_json::Value>,
}

impl NewHistory {
    pub fn push(&mut self, action: ActionId, status: &str, code: Option<i32>, messages: &[String]) {
        self.action_id.push(action);
        self.status.push(status.to_owned());
        self.code.push(code);
        self.messages
            .push(serde_json::Value::from(messages.to_vec()));
    }
}

pub async fn insert_history(conn: &mut PgConnection, h: &NewHistory) -> Result<()> {
    if h.action_id.is_empty() {
        return Ok(());
    }
    sql::execute(
        conn,
        "INSERT INTO action_status (action_id, status, code, messages)
         SELECT * FROM unnest($1::bigint[], $2::text[], $3::int[], $4::jsonb[])",
        (&h.action_id, &h.status, &h.code, &h.messages),
    )
    .await?;
    Ok(())
}

/// Final action states after a batch, column-wise.
#[derive(Debug, Default)]
pub struct ActionUpdates {
    pub id: Vec<ActionId>,
    pub status: Vec<String>,
    pub active: Vec<bool>,
    pub intermediate_reports: Vec<i32>,
    pub last_status_code: Vec<Option<i32>>,
}

pub async fn update_states(conn: &mut PgConnection, u: &ActionUpdates, user: &str) -> Result<()> {
    if u.id.is_empty() {
        return Ok(());
    }
    sql::execute(
        conn,
        "UPDATE action a SET status = u.status, active = u.active,
                intermediate_reports = u.reports,
                last_status_code = COALESCE(u.code, a.last_status_code),
                last_modified_at = epoch_ms(), last_modified_by = $6,
                opt_lock_revision = a.opt_lock_revision + 1
         FROM unnest($1::bigint[], $2::text[], $3::bool[], $4::int[], $5::int[])
              AS u(id, status, active, reports, code)
         WHERE a.id = u.id",
        (
            &u.id,
            &u.status,
            &u.active,
            &u.intermediate_reports,
            &u.last_status_code,
            user,
        ),
    )
    .await?;
    Ok(())
}

/// Final target states after a batch, column-wise.
#[derive(Debug, Default)]
pub struct TargetUpdates {
    pub id: Vec<i64>,
    pub assigned_ds_id: Vec<Option<DsId>>,
    pub installed_ds_id: Vec<Option<DsId>>,
    pub installation_date: Vec<Option<i64>>,
    pub update_status: Vec<String>,
    pub request_attributes: Vec<bool>,
}

pub async fn update_targets(conn: &mut PgConnection, u: &TargetUpdates) -> Result<()> {
    if u.id.is_empty() {
        return Ok(());
    }
    sql::execute(
        conn,
        "UPDATE target t SET assigned_ds_id = u.assigned, installed_ds_id = u.installed,
                installation_date = u.installed_at, update_status = u.status,
                request_attributes = u.req, last_modified_at = epoch_ms()
         FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::text[], $6::bool[])
              AS u(id, assigned, installed, installed_at, status, req)
         WHERE t.id = u.id",
        (
            &u.id,
            &u.assigned_ds_id,
            &u.installed_ds_id,
            &u.installation_date,
            &u.update_status,
            &u.request_attributes,
        ),
    )
    .await?;
    Ok(())
}

/// New actions of one assignment, column-wise (one distribution set).
#[derive(Debug, Default)]
pub struct NewActions {
    pub target_id: Vec<i64>,
    pub action_type: Vec<String>,
    pub status: Vec<String>,
    pub active: Vec<bool>,
    pub weight: Vec<i32>,
    pub forced_time: Vec<i64>,
    pub mw_schedule: Vec<Option<String>>,
    pub mw_duration: Vec<Option<String>>,
    pub mw_timezone: Vec<Option<String>>,
}

/// Insert actions; returns (action id, target id) in input order.
pub async fn insert(
    conn: &mut PgConnection,
    tenant: TenantId,
    ds_id: DsId,
    a: &NewActions,
    user: &str,
) -> Result<Vec<(ActionId, i64)>> {
    Ok(sqlx::query_as(
        "INSERT INTO action (tenant_id, target_id, ds_id, action_type, status, active, weight,
                             forced_time, mw_schedule, mw_duration, mw_timezone, initiated_by,
                             created_by, last_modified_by)
         SELECT $1, target_id, $2, action_type, status, active, weight, forced_time,
                mw_schedule, mw_duration, mw_timezone, $12, $12, $12
         FROM unnest($3::bigint[], $4::text[], $5::text[], $6::bool[], $7::int[], $8::bigint[],
                     $9::text[], $10::text[], $11::text[]) WITH ORDINALITY
              AS u(target_id, action_type, status, active, weight, forced_time,
                   mw_schedule, mw_duration, mw_timezone, ord)
         ORDER BY ord
         RETURNING id, target_id",
    )
    .bind(tenant)
    .bind(ds_id)
    .bind(&a.target_id)
    .bind(&a.action_type)
    .bind(&a.status)
    .bind(&a.active)
    .bind(&a.weight)
    .bind(&a.forced_time)
    .bind(&a.mw_schedule)
    .bind(&a.mw_duration)
    .bind(&a.mw_timezone)
    .bind(user)
    .fetch_all(conn)
    .await?)
}

/// Open actions of targets that a new assignment supersedes: active, or SCHEDULED; not of a
/// required-migration-step set. Locked.
pub async fn lock_superseded(
    conn: &mut PgConnection,
    targets: &[i64],
    keep: &[ActionId],
) -> Result<Vec<(ActionId, i64, String, bool)>> {
    sql::fetch_all(
        conn,
        "SELECT a.id, a.target_id, a.status, a.active FROM action a
         JOIN distribution_set d ON d.id = a.ds_id
         WHERE a.target_id IN (SELECT unnest($1::bigint[])) AND (a.active OR a.status = 'SCHEDULED')
           AND NOT d.required_migration_step AND NOT (a.id = ANY($2))
         ORDER BY a.id FOR UPDATE OF a",
        (targets, keep),
    )
    .await
}

/// Point targets at a newly assigned set: assigned := ds, PENDING (or offline: installed too).
pub async fn assign_targets(
    conn: &mut PgConnection,
    targets: &[i64],
    ds_id: DsId,
    offline: bool,
) -> Result<()> {
    sql::execute(
        conn,
        "UPDATE target SET assigned_ds_id = $2,
                installed_ds_id = CASE WHEN $3 THEN $2 ELSE installed_ds_id END,
                installation_date = CASE WHEN $3 THEN epoch_ms() ELSE installation_date END,
                update_status = CASE WHEN $3 THEN 'IN_SYNC' ELSE 'PENDING' END,
                last_modified_at = epoch_ms()
         WHERE id IN (SELECT unnest($1::bigint[]))",
        (targets, ds_id, offline),
    )
    .await?;
    Ok(())
}

/// The Management API's view of an action.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ActionView {
    pub id: ActionId,
    pub controller_id: String,
    pub ds_id: DsId,
    pub action_type: String,
    pub active: bool,
    pub status: String,
    pub weight: i32,
    pub forced_time: i64,
    pub rollout_id: Option<RolloutId>,
    pub rollout_group_id: Option<GroupId>,
    pub mw_schedule: Option<String>,
    pub mw_duration: Option<String>,
    pub mw_timezone: Option<String>,
    pub external_ref: Option<String>,
    pub last_status_code: Option<i32>,
    /// Names of what the links of a full representation point at.
    pub target_name: String,
    pub ds_name: String,
    pub ds_version: String,
    pub rollout_name: Option<String>,
    #[sqlx(flatten)]
    pub audit: Audit,
}

// The names are read per row of the page only (scalar subqueries), so filters and counts
// over `action a JOIN target t` stay as they are.
const VIEW_COLUMNS: &str = "a.id, t.controller_id, a.ds_id, a.action_type, a.active, a.status,
    a.weight, a.forced_time, a.rollout_id, a.rollout_group_id, a.mw_schedule, a.mw_duration,
    a.mw_timezone, a.external_ref, a.last_status_code, t.name AS target_name,
    (SELECT d.name FROM distribution_set d WHERE d.id = a.ds_id) AS ds_name,
    (SELECT d.version FROM distribution_set d WHERE d.id = a.ds_id) AS ds_version,
    (SELECT r.name FROM rollout r WHERE r.id = a.rollout_id) AS rollout_name,
    a.created_at, a.created_by, a.last_modified_at, a.last_modified_by";

/// How action lists sort: API name → column; newest first unless asked otherwise.
pub const SORT: SortFields = SortFields::new(
    &[
        ("id", "a.id"),
        ("status", "a.status"),
        ("active", "a.active"),
        ("weight", "a.weight"),
        ("createdat", "a.created_at"),
        ("lastmodifiedat", "a.last_modified_at"),
        ("laststatuscode", "a.last_status_code"),
    ],
    "a.id DESC",
);

const LIST: Listing = Listing {
    columns: VIEW_COLUMNS,
    from: "action a JOIN target t ON t.id = a.target_id",
    count_from: "action a",
    sort: &SORT,
};

/// A page of a tenant's actions, optionally of one target, matching `q` (an
/// [`Entity::Action`](super::filter::Entity) filter), and their total.
pub async fn list(
    conn: &mut PgConnection,
    tenant: TenantId,
    target: Option<i64>,
    q: Option<&Filter>,
    page: &PageRequest,
) -> Result<(Vec<ActionView>, i64)> {
    fetch(conn, &LIST, page, |qb| {
        qb.push("a.tenant_id = ").push_bind(tenant.0);
        if let Some(t) = target {
            qb.push(" AND a.target_id = ").push_bind(t);
        }
        push_and(qb, q, "a");
    })
    .await
}

/// One action of the tenant as the Management API shows it.
pub async fn view(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: ActionId,
) -> Result<Option<ActionView>> {
    sql::fetch_optional(
        conn,
        &format!(
            "SELECT {VIEW_COLUMNS} FROM action a JOIN target t ON t.id = a.target_id
         WHERE a.tenant_id = $1 AND a.id = $2"
        ),
        (tenant.0, id),
    )
    .await
}

/// Set an action's type (switching a soft action to forced).
pub async fn set_action_type(
    conn: &mut PgConnection,
    id: ActionId,
    action_type: &str,
    user: &str,
) -> Result<()> {
    sql::execute(
        conn,
        "UPDATE action SET action_type = $2, last_modified_at = epoch_ms(), last_modified_by = $3,
                opt_lock_revision = opt_lock_revision + 1
         WHERE id = $1",
        (id, action_type, user),
    )
    .await?;
    Ok(())
}

/// One history entry.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct HistoryRow {
    pub id: i64,
    pub status: String,
    pub occurred_at: i64,
    pub code: Option<i32>,
    pub messages: sqlx::types::Json<Vec<String>>,
}

/// A page of an action's history, newest first unless `ascending`.
pub async fn history(
    conn: &mut PgConnection,
    action: ActionId,
    ascending: bool,
    offset: i64,
    limit: i64,
) -> Result<(Vec<HistoryRow>, i64)> {
    let dir = if ascending { "ASC" } else { "DESC" };
    let rows = sql::fetch_all(
        &mut *conn,
        &format!(
            "SELECT id, status, occurred_at, code, messages FROM action_status
         WHERE action_id = $1 ORDER BY id {dir} OFFSET $2 LIMIT $3"
        ),
        (action, offset, limit),
    )
    .await?;
    let total = sql::scalar(
        conn,
        "SELECT count(*) FROM action_status WHERE action_id = $1",
        (action,),
    )
    .await?;
    Ok((rows, total))
}

/// Confirm every active action of a target that waits for confirmation (automatic
/// confirmation switched on): status RUNNING plus a RUNNING history entry. Returns their ids.
pub async fn confirm_waiting(
    conn: &mut PgConnection,
    target: i64,
    message: &str,
) -> Result<Vec<ActionId>> {
    let ids: Vec<ActionId> = sql::scalar_all(
        &mut *conn,
        "UPDATE action SET status = 'RUNNING', last_modified_at = epoch_ms()
         WHERE target_id = $1 AND active AND status = 'WAIT_FOR_CONFIRMATION' RETURNING id",
        (target,),
    )
    .await?;
    sql::execute(
        conn,
        "INSERT INTO action_status (action_id, status, messages)
         SELECT id, 'RUNNING', jsonb_build_array($2::text) FROM unnest($1::bigint[]) AS id",
        (&ids, message),
    )
    .await?;
    Ok(ids)
}

/// Set status/active of actions without touching their report counters (operator changes).
pub async fn update_states_keep_reports(conn: &mut PgConnection, u: &ActionUpdates) -> Result<()> {
    if u.id.is_empty() {
        return Ok(());
    }
    sql::execute(
        conn,
        "UPDATE action a SET status = u.status, active = u.active, last_modified_at = epoch_ms(),
                opt_lock_revision = a.opt_lock_revision + 1
         FROM unnest($1::bigint[], $2::text[], $3::bool[]) AS u(id, status, active)
         WHERE a.id = u.id",
        (&u.id, &u.status, &u.active),
    )
    .await?;
    Ok(())
}

/// After a cancellation completed: the target's assigned set becomes that of its oldest open
/// action, or its installed set (IN_SYNC) when none is left.
pub async fn reset_assigned_after_cancel(conn: &mut PgConnection, target: i64) -> Result<()> {
    sql::execute(conn, "UPDATE target t SET
            assigned_ds_id = COALESCE(o.ds_id, t.installed_ds_id),
            update_status = CASE WHEN o.ds_id IS NULL THEN 'IN_SYNC' ELSE t.update_status END,
            last_modified_at = epoch_ms()
         FROM (SELECT (SELECT ds_id FROM action WHERE target_id = $1 AND active ORDER BY id LIMIT 1) AS ds_id) o
         WHERE t.id = $1", (target,)).await?;
    Ok(())
}

/// An open action with a maintenance window, as the window sweep needs it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct WindowedAction {
    pub id: ActionId,
    pub target_id: i64,
    pub created_at: i64,
    pub mw_schedule: String,
    pub mw_duration: String,
    pub mw_timezone: String,
}

/// Active actions whose maintenance window opening changes what their device is sent: not
/// download-only (always DOWNLOAD), not cancelling or waiting for confirmation, of a target
/// reachable over DMF. Across tenants on purpose: the sweep is the service's, not a tenant's.
pub async fn active_with_window(conn: &mut PgConnection) -> Result<Vec<WindowedAction>> {
    Ok(sqlx::query_as(
        "SELECT a.id, a.target_id, a.created_at, a.mw_schedule, a.mw_duration, a.mw_timezone
         FROM action a JOIN target t ON t.id = a.target_id
         WHERE a.active AND a.mw_schedule IS NOT NULL AND a.mw_duration IS NOT NULL
           AND a.mw_timezone IS NOT NULL AND a.action_type <> 'DOWNLOAD_ONLY'
           AND a.status NOT IN ('CANCELING', 'WAIT_FOR_CONFIRMATION')
           AND t.address LIKE 'amqp:%'
         ORDER BY a.id",
    )
    .fetch_all(conn)
    .await?)
}

/// How many actions of a set are in each status (`GET /distributionsets/{id}/statistics`).
pub async fn status_counts_of_set(
    conn: &mut PgConnection,
    tenant: TenantId,
    ds: i64,
) -> Result<Vec<(String, i64)>> {
    sql::fetch_all(
        conn,
        "SELECT status, count(*) FROM action WHERE tenant_id = $1 AND ds_id = $2
         GROUP BY status ORDER BY status",
        (tenant, ds),
    )
    .await
}
