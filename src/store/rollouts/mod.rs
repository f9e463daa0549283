//! Rollouts, deployment groups and static group membership (rollouts.md §3–§6). Every bulk step
//! is one set-based statement over a bounded chunk (`INSERT … SELECT … ORDER BY … LIMIT`,
//! `UPDATE … FROM`), so a rollout over a million targets never holds one long transaction and a
//! crash at any point resumes where it stopped.
//!
//! Rows stay here: readers get [`Rollout`] and [`Group`], converted with `TryFrom`, and a value
//! no version of the service writes (an unknown status, say) is a [`StoreError::Corrupt`].
//!
//! * this module: rollouts and groups themselves, their states and the executor's work query;
//! * [`members`]: which targets a group takes (fill, dynamic enrolment, creation counts);
//! * [`work`]: the actions of a rollout (schedule, activate, stop, delete).

pub mod lists;
pub mod members;
pub mod work;

use sqlx::postgres::PgArguments;
use sqlx::query::QueryScalar;
use sqlx::{PgConnection, Postgres};

pub use lists::*;
pub use members::*;
pub use work::*;

use super::{Audit as AuditColumns, Result, StoreError};
use crate::domain::action::ActionType;
use crate::domain::ids::{ActionId, DsId, GroupId, RolloutId, TenantId};
use crate::domain::rollout::plan::PlannedGroup;
use crate::domain::rollout::spec::{Conditions, StoredConditions};
use crate::domain::rollout::state::{Audit, Template};
use crate::domain::rollout::{
    Counts, Group, GroupState, Rollout, RolloutState, RolloutStatus, WorkRule,
};

/// A rollout row.
#[derive(Debug, Clone, sqlx::FromRow)]
struct RolloutRow {
    id: i64,
    tenant_id: i64,
    name: String,
    description: Option<String>,
    target_filter: String,
    retry_of: Option<i64>,
    ds_id: i64,
    status: String,
    action_type: String,
    forced_time: i64,
    start_at: Option<i64>,
    weight: i32,
    total_targets: i64,
    groups_created: i32,
    deleted: bool,
    dynamic: bool,
    #[sqlx(flatten)]
    conditions: ConditionColumns,
    confirmation_required: bool,
    template_suffix: Option<String>,
    template_count: Option<i64>,
    last_empty_enrolment: Option<i64>,
    creator_may_approve: bool,
    approval_decided_by: Option<String>,
    approval_remark: Option<String>,
    #[sqlx(flatten)]
    audit: AuditColumns,
    ds_name: String,
    ds_version: String,
    ds_type_id: i64,
}

/// The condition columns rollouts and groups share.
#[derive(Debug, Clone, sqlx::FromRow)]
struct ConditionColumns {
    success_condition: String,
    success_condition_exp: String,
    success_action: String,
    success_action_exp: Option<String>,
    error_condition: Option<String>,
    error_condition_exp: Option<String>,
    error_action: Option<String>,
    error_action_exp: Option<String>,
}

impl TryFrom<ConditionColumns> for Conditions {
    type Error = StoreError;

    fn try_from(c: ConditionColumns) -> Result<Self> {
        Conditions::from_stored(&StoredConditions {
            success_condition: c.success_condition,
            success_condition_exp: c.success_condition_exp,
            success_action: c.success_action,
            success_action_exp: c.success_action_exp,
            error_condition: c.error_condition,
            error_condition_exp: c.error_condition_exp,
            error_action: c.error_action,
            error_action_exp: c.error_action_exp,
        })
        .map_err(StoreError::Corrupt)
    }
}

/// The condition columns as an insert names them, in the order [`bind_conditions`] binds them.
const CONDITION_COLUMNS: &str = "success_condition, success_condition_exp, success_action,
    success_action_exp, error_condition, error_condition_exp, error_action, error_action_exp";

/// Bind stored conditions to the placeholders of [`CONDITION_COLUMNS`] in an insert.
fn bind_conditions<'q, O>(
    q: QueryScalar<'q, Postgres, O, PgArguments>,
    c: &'q StoredConditions,
) -> QueryScalar<'q, Postgres, O, PgArguments> {
    q.bind(&c.success_condition)
        .bind(&c.success_condition_exp)
        .bind(&c.success_action)
        .bind(&c.success_action_exp)
        .bind(&c.error_condition)
        .bind(&c.error_condition_exp)
        .bind(&c.error_action)
        .bind(&c.error_action_exp)
}

impl From<AuditColumns> for Audit {
    fn from(a: AuditColumns) -> Self {
        Audit {
            created_at: a.created_at,
            created_by: a.created_by,
            last_modified_at: a.last_modified_at,
            last_modified_by: a.last_modified_by,
        }
    }
}

fn corrupt(what: &str, value: &str, id: i64) -> StoreError {
    StoreError::Corrupt(format!("{what} {id} has the unknown value {value:?}"))
}

impl TryFrom<RolloutRow> for Rollout {
    type Error = StoreError;

    fn try_from(r: RolloutRow) -> Result<Self> {
        let status =
            RolloutStatus::from_db(&r.status).ok_or_else(|| corrupt("rollout", &r.status, r.id))?;
        let action_type = ActionType::from_db(&r.action_type)
            .ok_or_else(|| corrupt("rollout", &r.action_type, r.id))?;
        Ok(Rollout {
            id: RolloutId(r.id),
            tenant: TenantId(r.tenant_id),
            name: r.name,
            description: r.description,
            target_filter: r.target_filter,
            retry_of: r.retry_of.map(RolloutId),
            ds: DsId(r.ds_id),
            ds_name: r.ds_name,
            ds_version: r.ds_version,
            ds_type: r.ds_type_id,
            state: RolloutState::from_parts(status, r.start_at, r.last_empty_enrolment),
            action_type,
            forced_time: r.forced_time,
            start_at: r.start_at,
            weight: r.weight,
            total_targets: r.total_targets,
            groups_created: r.groups_created,
            deleted: r.deleted,
            dynamic: r.dynamic.then(|| Template {
                suffix: r.template_suffix.unwrap_or_default(),
                count: r.template_count,
            }),
            conditions: r.conditions.try_into()?,
            confirmation_required: r.confirmation_required,
            creator_may_approve: r.creator_may_approve,
            approval_decided_by: r.approval_decided_by,
            approval_remark: r.approval_remark,
            audit: r.audit.into(),
        })
    }
}

fn rollouts(rows: Vec<RolloutRow>) -> Result<Vec<Rollout>> {
    rows.into_iter().map(Rollout::try_from).collect()
}

const COLUMNS: &str = "r.id, r.tenant_id, r.name, r.description, r.target_filter, r.retry_of,
    r.ds_id, r.status, r.action_type, r.forced_time, r.start_at, r.weight, r.total_targets,
    r.groups_created, r.deleted, r.dynamic, r.success_condition, r.success_condition_exp,
    r.success_action, r.success_action_exp, r.error_condition, r.error_condition_exp,
    r.error_action, r.error_action_exp, r.confirmation_required, r.template_suffix,
    r.template_count, r.last_empty_enrolment, r.creator_may_approve, r.approval_decided_by,
    r.approval_remark, r.created_at, r.created_by, r.last_modified_at, r.last_modified_by,
    d.name AS ds_name, d.version AS ds_version, d.type_id AS ds_type_id";

const FROM: &str = "rollout r JOIN distribution_set d ON d.id = r.ds_id";

/// A deployment group row with its counters.
#[derive(Debug, Clone, sqlx::FromRow)]
struct GroupRow {
    id: i64,
    rollout_id: i64,
    parent_id: Option<i64>,
    name: String,
    description: Option<String>,
    status: String,
    dynamic: bool,
    #[sqlx(flatten)]
    conditions: ConditionColumns,
    total_targets: i64,
    target_filter: String,
    target_percentage: f32,
    confirmation_required: bool,
    planned_size: Option<i64>,
    n_scheduled: i64,
    n_running: i64,
    n_downloaded: i64,
    n_finished: i64,
    n_error: i64,
    n_canceled: i64,
    #[sqlx(flatten)]
    audit: AuditColumns,
}

const GROUP_COLUMNS: &str = "g.id, g.rollout_id, g.parent_id, g.name, g.description, g.status,
    g.dynamic, g.success_condition, g.success_condition_exp, g.success_action,
    g.success_action_exp, g.error_condition, g.error_condition_exp, g.error_action,
    g.error_action_exp, g.total_targets, g.target_filter, g.target_percentage,
    g.confirmation_required, g.planned_size, g.n_scheduled, g.n_running, g.n_downloaded,
    g.n_finished, g.n_error, g.n_canceled, g.created_at, g.created_by, g.last_modified_at,
    g.last_modified_by";

impl TryFrom<GroupRow> for Group {
    type Error = StoreError;

    fn try_from(g: GroupRow) -> Result<Self> {
        Ok(Group {
            id: GroupId(g.id),
            rollout: RolloutId(g.rollout_id),
            parent: g.parent_id.map(GroupId),
            name: g.name,
            description: g.description,
            state: GroupState::from_db(&g.status)
                .ok_or_else(|| corrupt("rollout group", &g.status, g.id))?,
            dynamic: g.dynamic,
            conditions: g.conditions.try_into()?,
            total_targets: g.total_targets,
            target_filter: g.target_filter,
            target_percentage: g.target_percentage,
            confirmation_required: g.confirmation_required,
            planned_size: g.planned_size,
            counts: Counts {
                scheduled: g.n_scheduled,
                running: g.n_running,
                downloaded: g.n_downloaded,
                finished: g.n_finished,
                error: g.n_error,
                canceled: g.n_canceled,
            },
            audit: g.audit.into(),
        })
    }
}

fn groups_of(rows: Vec<GroupRow>) -> Result<Vec<Group>> {
    rows.into_iter().map(Group::try_from).collect()
}

/// A rollout to insert.
#[derive(Debug, Clone)]
pub struct NewRollout {
    pub name: String,
    pub description: Option<String>,
    pub target_filter: String,
    pub retry_of: Option<RolloutId>,
    pub ds: DsId,
    pub action_type: ActionType,
    pub forced_time: i64,
    pub start_at: Option<i64>,
    pub weight: i32,
    pub total_targets: i64,
    pub dynamic: bool,
    pub conditions: Conditions,
    pub confirmation_required: bool,
    pub template: Option<(String, i64)>,
    pub creator_may_approve: bool,
}

/// Insert a rollout in CREATING; `Conflict` when the name is taken.
pub async fn insert(
    conn: &mut PgConnection,
    tenant: TenantId,
    r: &NewRollout,
    user: &str,
) -> Result<RolloutId> {
    let c = r.conditions.to_stored();
    let sql = format!(
        "INSERT INTO rollout (tenant_id, name, description, target_filter, retry_of, ds_id, status,
            action_type, forced_time, start_at, weight, total_targets, dynamic, {CONDITION_COLUMNS},
            confirmation_required, template_suffix, template_count, creator_may_approve,
            created_by, last_modified_by)
         VALUES ($1, $2, $3, $4, $5, $6, 'CREATING', $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                 $17, $18, $19, $20, $21, $22, $23, $24, $25, $25)
         RETURNING id"
    );
    let q = sqlx::query_scalar(&sql)
        .bind(tenant.0)
        .bind(&r.name)
        .bind(&r.description)
        .bind(&r.target_filter)
        .bind(r.retry_of.map(|r| r.0))
        .bind(r.ds.0)
        .bind(r.action_type.as_db())
        .bind(r.forced_time)
        .bind(r.start_at)
        .bind(r.weight)
        .bind(r.total_targets)
        .bind(r.dynamic);
    Ok(bind_conditions(q, &c)
        .bind(r.confirmation_required)
        .bind(r.template.as_ref().map(|t| t.0.clone()))
        .bind(r.template.as_ref().map(|t| t.1))
        .bind(r.creator_may_approve)
        .bind(user)
        .fetch_one(conn)
        .await
        .map(RolloutId)?)
}

/// Append groups to a rollout in order; each group's parent is the one before it (the first
/// one's parent is the rollout's current last group). Returns the new ids.
pub async fn insert_groups(
    conn: &mut PgConnection,
    rollout: RolloutId,
    groups: &[PlannedGroup],
    user: &str,
) -> Result<Vec<GroupId>> {
    let rollout = rollout.0;
    let mut ids = Vec::with_capacity(groups.len());
    let mut parent: Option<i64> =
        sqlx::query_scalar("SELECT max(id) FROM rollout_group WHERE rollout_id = $1")
            .bind(rollout)
            .fetch_one(&mut *conn)
            .await?;
    let sql = format!(
        "INSERT INTO rollout_group (rollout_id, parent_id, name, description, status, dynamic,
            {CONDITION_COLUMNS}, target_filter, target_percentage, confirmation_required,
            created_by, last_modified_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
                 $18, $18)
         RETURNING id"
    );
    // At most the group quota (500) rows, once per rollout: one statement per group keeps the
    // parent chain simple.
    for g in groups {
        let c = g.conditions.to_stored();
        let q = sqlx::query_scalar(&sql)
            .bind(rollout)
            .bind(parent)
            .bind(&g.name)
            .bind(&g.description)
            .bind(g.state.as_db())
            .bind(g.dynamic);
        let id: i64 = bind_conditions(q, &c)
            .bind(&g.target_filter)
            .bind(g.target_percentage)
            .bind(g.confirmation_required)
            .bind(user)
            .fetch_one(&mut *conn)
            .await?;
        ids.push(GroupId(id));
        parent = Some(id);
    }
    sqlx::query(
        "UPDATE rollout SET groups_created = (SELECT count(*) FROM rollout_group WHERE rollout_id = $1)
         WHERE id = $1",
    )
    .bind(rollout)
    .execute(conn)
    .await?;
    Ok(ids)
}

/// One rollout by id, of the tenant when one is given, read as `lock` says.
async fn one(
    conn: &mut PgConnection,
    tenant: Option<TenantId>,
    id: RolloutId,
    lock: &str,
) -> Result<Option<Rollout>> {
    let row: Option<RolloutRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM {FROM} WHERE r.id = $1 AND ($2::bigint IS NULL OR r.tenant_id = $2) {lock}"
    ))
    .bind(id.0)
    .bind(tenant.map(|t| t.0))
    .fetch_optional(conn)
    .await?;
    row.map(Rollout::try_from).transpose()
}

/// A rollout of the tenant.
pub async fn find(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: RolloutId,
) -> Result<Option<Rollout>> {
    one(conn, Some(tenant), id, "").await
}

/// Lock a rollout of the tenant for a state change (waits for the current holder).
pub async fn lock(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: RolloutId,
) -> Result<Option<Rollout>> {
    one(conn, Some(tenant), id, "FOR UPDATE OF r").await
}

/// Lock a rollout for one executor step unless another worker holds it.
pub async fn try_lock(conn: &mut PgConnection, id: RolloutId) -> Result<Option<Rollout>> {
    one(conn, None, id, "FOR UPDATE OF r SKIP LOCKED").await
}

/// Lock the rollouts that own any of these actions, in id order (rollout rows before action
/// rows: the order of every writer that waits for a rollout), and return them.
pub async fn lock_of_actions(
    conn: &mut PgConnection,
    actions: &[ActionId],
) -> Result<Vec<Rollout>> {
    if actions.is_empty() {
        return Ok(Vec::new());
    }
    rollouts(
        sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM {FROM}
             WHERE r.id IN (SELECT DISTINCT rollout_id FROM action
                            WHERE id IN (SELECT unnest($1::bigint[])) AND rollout_id IS NOT NULL)
             ORDER BY r.id FOR UPDATE OF r"
        ))
        .bind(actions)
        .fetch_all(conn)
        .await?,
    )
}

/// Lock those of these rollouts that no other transaction holds, in id order, and return them.
pub async fn try_lock_many(conn: &mut PgConnection, ids: &[RolloutId]) -> Result<Vec<Rollout>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    rollouts(
        sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM {FROM} WHERE r.id = ANY($1) ORDER BY r.id FOR UPDATE OF r SKIP LOCKED"
        ))
        .bind(ids)
        .fetch_all(conn)
        .await?,
    )
}

/// The SQL condition over `rollout` (unaliased) of one [`WorkRule`].
fn work_condition(rule: WorkRule) -> &'static str {
    match rule {
        WorkRule::Always => "true",
        WorkRule::StartDue => "start_at IS NOT NULL AND start_at <= epoch_ms()",
        WorkRule::ActivationPending => {
            "EXISTS (SELECT 1 FROM rollout_group g WHERE g.rollout_id = rollout.id
                     AND g.status = 'RUNNING' AND g.n_scheduled > 0)"
        }
        WorkRule::Never => "false",
    }
}

/// The work query's `WHERE`, derived from [`RolloutStatus::work_rule`] of every status, so it
/// states exactly what `domain::rollout::machine::has_work` decides.
pub fn work_filter() -> String {
    let mut parts = Vec::new();
    for rule in [
        WorkRule::Always,
        WorkRule::StartDue,
        WorkRule::ActivationPending,
    ] {
        let statuses: Vec<String> = RolloutStatus::ALL
            .iter()
            .filter(|s| s.work_rule() == rule)
            .map(|s| format!("'{}'", s.as_db()))
            .collect();
        if statuses.is_empty() {
            continue;
        }
        parts.push(format!(
            "(status IN ({}) AND {})",
            statuses.join(", "),
            work_condition(rule)
        ));
    }
    parts.join(" OR ")
}

/// Ids of rollouts the executor has work for, oldest first (see [`work_filter`]).
pub async fn with_work(conn: &mut PgConnection) -> Result<Vec<RolloutId>> {
    let ids: Vec<i64> = sqlx::query_scalar(&format!(
        "SELECT id FROM rollout WHERE {} ORDER BY id",
        work_filter()
    ))
    .fetch_all(conn)
    .await?;
    Ok(ids.into_iter().map(RolloutId).collect())
}

/// Every group of a rollout in id order.
pub async fn groups(conn: &mut PgConnection, rollout: RolloutId) -> Result<Vec<Group>> {
    groups_of(
        sqlx::query_as(&format!(
            "SELECT {GROUP_COLUMNS} FROM rollout_group g WHERE g.rollout_id = $1 ORDER BY g.id"
        ))
        .bind(rollout.0)
        .fetch_all(conn)
        .await?,
    )
}

/// Set the status of a rollout.
pub async fn set_status(
    conn: &mut PgConnection,
    id: RolloutId,
    status: RolloutStatus,
    user: &str,
) -> Result<()> {
    sqlx::query(
        "UPDATE rollout SET status = $2, deleted = ($2 = 'DELETED'), last_modified_at = epoch_ms(),
                last_modified_by = $3, opt_lock_revision = opt_lock_revision + 1
         WHERE id = $1",
    )
    .bind(id.0)
    .bind(status.as_db())
    .bind(user)
    .execute(conn)
    .await?;
    Ok(())
}

/// Record an approval decision (the state it leads to is set with [`set_status`]).
pub async fn decide(
    conn: &mut PgConnection,
    id: RolloutId,
    decided_by: &str,
    remark: Option<&str>,
) -> Result<()> {
    sqlx::query(
        "UPDATE rollout SET approval_decided_by = $2,
                approval_remark = COALESCE($3, approval_remark), last_modified_at = epoch_ms(),
                last_modified_by = $2
         WHERE id = $1",
    )
    .bind(id.0)
    .bind(decided_by)
    .bind(remark)
    .execute(conn)
    .await?;
    Ok(())
}

/// Rename / redescribe a rollout.
pub async fn update_text(
    conn: &mut PgConnection,
    id: RolloutId,
    name: Option<&str>,
    description: Option<&str>,
    user: &str,
) -> Result<()> {
    sqlx::query(
        "UPDATE rollout SET name = COALESCE($2, name), description = COALESCE($3, description),
                last_modified_at = epoch_ms(), last_modified_by = $4,
                opt_lock_revision = opt_lock_revision + 1
         WHERE id = $1",
    )
    .bind(id.0)
    .bind(name)
    .bind(description)
    .bind(user)
    .execute(conn)
    .await?;
    Ok(())
}

/// Set the status of groups.
pub async fn set_group_status(
    conn: &mut PgConnection,
    ids: &[GroupId],
    state: GroupState,
) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = ids.iter().map(|g| g.0).collect();
    sqlx::query(
        "UPDATE rollout_group SET status = $2, last_modified_at = epoch_ms() WHERE id = ANY($1)",
    )
    .bind(&ids)
    .bind(state.as_db())
    .execute(conn)
    .await?;
    Ok(())
}

/// Every group of a rollout that is not FINISHED/ERROR becomes FINISHED (stop, soft delete).
pub async fn finish_open_groups(conn: &mut PgConnection, rollout: RolloutId) -> Result<()> {
    let rollout = rollout.0;
    sqlx::query(
        "UPDATE rollout_group SET status = 'FINISHED', last_modified_at = epoch_ms()
         WHERE rollout_id = $1 AND status NOT IN ('FINISHED', 'ERROR')",
    )
    .bind(rollout)
    .execute(conn)
    .await?;
    Ok(())
}

/// A group's total shrank to the number of its actions (targets deleted, §4.2); the rollout's
/// total follows.
pub async fn shrink_group(conn: &mut PgConnection, group: GroupId, total: i64) -> Result<()> {
    let group = group.0;
    sqlx::query(
        "WITH g AS (SELECT rollout_id, total_targets - $2 AS diff FROM rollout_group WHERE id = $1),
              u AS (UPDATE rollout_group SET total_targets = $2 WHERE id = $1)
         UPDATE rollout r SET total_targets = r.total_targets - g.diff FROM g WHERE r.id = g.rollout_id",
    )
    .bind(group)
    .bind(total)
    .execute(conn)
    .await?;
    Ok(())
}

/// Set the rollout's total to the sum of its groups' totals (end of CREATING).
pub async fn total_from_groups(conn: &mut PgConnection, rollout: RolloutId) -> Result<()> {
    let rollout = rollout.0;
    sqlx::query(
        "UPDATE rollout SET total_targets =
            (SELECT COALESCE(sum(total_targets), 0) FROM rollout_group WHERE rollout_id = $1)
         WHERE id = $1",
    )
    .bind(rollout)
    .execute(conn)
    .await?;
    Ok(())
}

/// Record that dynamic enrolment found nothing now (throttle).
pub async fn set_last_empty_enrolment(
    conn: &mut PgConnection,
    rollout: RolloutId,
    at: Option<i64>,
) -> Result<()> {
    let rollout = rollout.0;
    sqlx::query("UPDATE rollout SET last_empty_enrolment = $2 WHERE id = $1")
        .bind(rollout)
        .bind(at)
        .execute(conn)
        .await?;
    Ok(())
}

/// Take the set's row before reading its facts: creating a rollout may then mark it locked
/// without upgrading a share lock (two creations would deadlock), and an invalidation waits.
/// `NO KEY UPDATE` leaves the foreign-key checks of action inserts unblocked.
pub async fn lock_set_row(conn: &mut PgConnection, tenant: TenantId, ds: i64) -> Result<()> {
    sqlx::query(
        "SELECT 1 FROM distribution_set WHERE tenant_id = $1 AND id = $2 FOR NO KEY UPDATE",
    )
    .bind(tenant.0)
    .bind(ds)
    .execute(conn)
    .await?;
    Ok(())
}

/// Lock a distribution set implicitly (§1.3), unless it carries a tag named
/// `skip-implicit-lock` or `skip_implicit_lock` (any case).
pub async fn lock_set_implicitly(conn: &mut PgConnection, ds: i64) -> Result<()> {
    sqlx::query(
        "UPDATE distribution_set SET locked = true WHERE id = $1 AND NOT locked
           AND NOT EXISTS (SELECT 1 FROM distribution_set_tag_assignment a
                           JOIN distribution_set_tag g ON g.id = a.tag_id
                           WHERE a.ds_id = $1
                             AND lower(replace(g.name, '_', '-')) = 'skip-implicit-lock')",
    )
    .bind(ds)
    .execute(conn)
    .await?;
    Ok(())
}
