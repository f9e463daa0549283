//! Rollouts, deployment groups and static group membership (rollouts.md §3–§6). Every bulk step
//! is one set-based statement over a bounded chunk (`INSERT … SELECT … ORDER BY … LIMIT`,
//! `UPDATE … FROM`), so a rollout over a million targets never holds one long transaction and a
//! crash at any point resumes where it stopped.

use sqlx::{PgConnection, Postgres, QueryBuilder};

use super::Result;
use super::filter::Filter;
use crate::domain::ids::TenantId;
use crate::domain::rollout::{Counts, ErrorKind, GroupFacts, GroupStatus, SuccessAction};

/// A rollout row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RolloutRow {
    pub id: i64,
    pub tenant_id: i64,
    pub name: String,
    pub description: Option<String>,
    pub target_filter: String,
    pub retry_of: Option<i64>,
    pub ds_id: i64,
    pub status: String,
    pub action_type: String,
    pub forced_time: i64,
    pub start_at: Option<i64>,
    pub weight: i32,
    pub total_targets: i64,
    pub groups_created: i32,
    pub deleted: bool,
    pub dynamic: bool,
    pub success_condition: String,
    pub success_condition_exp: String,
    pub success_action: String,
    pub success_action_exp: Option<String>,
    pub error_condition: Option<String>,
    pub error_condition_exp: Option<String>,
    pub error_action: Option<String>,
    pub error_action_exp: Option<String>,
    pub confirmation_required: bool,
    pub template_suffix: Option<String>,
    pub template_count: Option<i64>,
    pub last_empty_enrolment: Option<i64>,
    pub creator_may_approve: bool,
    pub approval_decided_by: Option<String>,
    pub approval_remark: Option<String>,
    pub created_at: i64,
    pub created_by: String,
    pub last_modified_at: i64,
    pub last_modified_by: String,
    /// Name and version of the distribution set (for links).
    pub ds_name: String,
    pub ds_version: String,
    pub ds_type_id: i64,
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
pub struct GroupRow {
    pub id: i64,
    pub rollout_id: i64,
    pub parent_id: Option<i64>,
    pub name: String,
    pub description: Option<String>,
    pub status: String,
    pub dynamic: bool,
    pub success_condition: String,
    pub success_condition_exp: String,
    pub success_action: String,
    pub success_action_exp: Option<String>,
    pub error_condition: Option<String>,
    pub error_condition_exp: Option<String>,
    pub error_action: Option<String>,
    pub error_action_exp: Option<String>,
    pub total_targets: i64,
    pub target_filter: String,
    pub target_percentage: f32,
    pub confirmation_required: bool,
    pub planned_size: Option<i64>,
    pub n_scheduled: i64,
    pub n_running: i64,
    pub n_downloaded: i64,
    pub n_finished: i64,
    pub n_error: i64,
    pub n_canceled: i64,
    pub created_at: i64,
    pub created_by: String,
    pub last_modified_at: i64,
    pub last_modified_by: String,
}

const GROUP_COLUMNS: &str = "g.id, g.rollout_id, g.parent_id, g.name, g.description, g.status,
    g.dynamic, g.success_condition, g.success_condition_exp, g.success_action,
    g.success_action_exp, g.error_condition, g.error_condition_exp, g.error_action,
    g.error_action_exp, g.total_targets, g.target_filter, g.target_percentage,
    g.confirmation_required, g.planned_size, g.n_scheduled, g.n_running, g.n_downloaded,
    g.n_finished, g.n_error, g.n_canceled, g.created_at, g.created_by, g.last_modified_at,
    g.last_modified_by";

impl GroupRow {
    pub fn counts(&self) -> Counts {
        Counts {
            scheduled: self.n_scheduled,
            running: self.n_running,
            downloaded: self.n_downloaded,
            finished: self.n_finished,
            error: self.n_error,
            canceled: self.n_canceled,
        }
    }

    pub fn status(&self) -> GroupStatus {
        GroupStatus::from_db(&self.status).unwrap_or(GroupStatus::Finished)
    }

    /// The facts the pure evaluation needs.
    pub fn facts(&self) -> GroupFacts {
        GroupFacts {
            id: self.id,
            parent: self.parent_id,
            status: self.status(),
            dynamic: self.dynamic,
            total_targets: self.total_targets,
            planned: self.target_percentage as i64,
            success_expression: self.success_condition_exp.clone(),
            success_action: SuccessAction::from_db(&self.success_action).unwrap_or_default(),
            error: match (&self.error_condition, &self.error_condition_exp) {
                (Some(k), Some(e)) => ErrorKind::from_db(k).map(|k| (k, e.clone())),
                _ => None,
            },
            counts: self.counts(),
        }
    }
}

/// Conditions of a rollout or group, as stored.
#[derive(Debug, Clone, Default)]
pub struct Conditions {
    pub success_condition: String,
    pub success_condition_exp: String,
    pub success_action: String,
    pub success_action_exp: Option<String>,
    pub error_condition: Option<String>,
    pub error_condition_exp: Option<String>,
    pub error_action: Option<String>,
    pub error_action_exp: Option<String>,
}

/// A rollout to insert.
#[derive(Debug, Clone)]
pub struct NewRollout {
    pub name: String,
    pub description: Option<String>,
    pub target_filter: String,
    pub retry_of: Option<i64>,
    pub ds_id: i64,
    pub action_type: String,
    pub forced_time: i64,
    pub start_at: Option<i64>,
    pub weight: i32,
    pub total_targets: i64,
    pub dynamic: bool,
    pub conditions: Conditions,
    pub confirmation_required: bool,
    pub template_suffix: Option<String>,
    pub template_count: Option<i64>,
    pub creator_may_approve: bool,
}

/// A group to insert.
#[derive(Debug, Clone)]
pub struct NewGroup {
    pub name: String,
    pub description: Option<String>,
    pub status: GroupStatus,
    pub dynamic: bool,
    pub conditions: Conditions,
    pub target_filter: String,
    pub target_percentage: f32,
    pub confirmation_required: bool,
}

/// Insert a rollout in CREATING; `Conflict` when the name is taken.
pub async fn insert(
    conn: &mut PgConnection,
    tenant: TenantId,
    r: &NewRollout,
    user: &str,
) -> Result<i64> {
    let c = &r.conditions;
    Ok(sqlx::query_scalar(
        "INSERT INTO rollout (tenant_id, name, description, target_filter, retry_of, ds_id, status,
            action_type, forced_time, start_at, weight, total_targets, dynamic, success_condition,
            success_condition_exp, success_action, success_action_exp, error_condition,
            error_condition_exp, error_action, error_action_exp, confirmation_required,
            template_suffix, template_count, creator_may_approve, created_by, last_modified_by)
         VALUES ($1, $2, $3, $4, $5, $6, 'CREATING', $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                 $17, $18, $19, $20, $21, $22, $23, $24, $25, $25)
         RETURNING id",
    )
    .bind(tenant.0)
    .bind(&r.name)
    .bind(&r.description)
    .bind(&r.target_filter)
    .bind(r.retry_of)
    .bind(r.ds_id)
    .bind(&r.action_type)
    .bind(r.forced_time)
    .bind(r.start_at)
    .bind(r.weight)
    .bind(r.total_targets)
    .bind(r.dynamic)
    .bind(&c.success_condition)
    .bind(&c.success_condition_exp)
    .bind(&c.success_action)
    .bind(&c.success_action_exp)
    .bind(&c.error_condition)
    .bind(&c.error_condition_exp)
    .bind(&c.error_action)
    .bind(&c.error_action_exp)
    .bind(r.confirmation_required)
    .bind(&r.template_suffix)
    .bind(r.template_count)
    .bind(r.creator_may_approve)
    .bind(user)
    .fetch_one(conn)
    .await?)
}

/// Append groups to a rollout in order; each group's parent is the one before it (the first
/// one's parent is the rollout's current last group). Returns the new ids.
pub async fn insert_groups(
    conn: &mut PgConnection,
    rollout: i64,
    groups: &[NewGroup],
    user: &str,
) -> Result<Vec<i64>> {
    let mut ids = Vec::with_capacity(groups.len());
    let mut parent: Option<i64> =
        sqlx::query_scalar("SELECT max(id) FROM rollout_group WHERE rollout_id = $1")
            .bind(rollout)
            .fetch_one(&mut *conn)
            .await?;
    // At most the group quota (500) rows, once per rollout: one statement per group keeps the
    // parent chain simple.
    for g in groups {
        let c = &g.conditions;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO rollout_group (rollout_id, parent_id, name, description, status, dynamic,
                success_condition, success_condition_exp, success_action, success_action_exp,
                error_condition, error_condition_exp, error_action, error_action_exp,
                target_filter, target_percentage, confirmation_required, created_by,
                last_modified_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
                     $18, $18)
             RETURNING id",
        )
        .bind(rollout)
        .bind(parent)
        .bind(&g.name)
        .bind(&g.description)
        .bind(g.status.as_db())
        .bind(g.dynamic)
        .bind(&c.success_condition)
        .bind(&c.success_condition_exp)
        .bind(&c.success_action)
        .bind(&c.success_action_exp)
        .bind(&c.error_condition)
        .bind(&c.error_condition_exp)
        .bind(&c.error_action)
        .bind(&c.error_action_exp)
        .bind(&g.target_filter)
        .bind(g.target_percentage)
        .bind(g.confirmation_required)
        .bind(user)
        .fetch_one(&mut *conn)
        .await?;
        ids.push(id);
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

/// A rollout of the tenant.
pub async fn find(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: i64,
) -> Result<Option<RolloutRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM {FROM} WHERE r.tenant_id = $1 AND r.id = $2"
    ))
    .bind(tenant.0)
    .bind(id)
    .fetch_optional(conn)
    .await?)
}

/// Lock a rollout of the tenant for a state change (waits for the current holder).
pub async fn lock(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: i64,
) -> Result<Option<RolloutRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM {FROM} WHERE r.tenant_id = $1 AND r.id = $2 FOR UPDATE OF r"
    ))
    .bind(tenant.0)
    .bind(id)
    .fetch_optional(conn)
    .await?)
}

/// Lock a rollout for one executor step unless another worker holds it.
pub async fn try_lock(conn: &mut PgConnection, id: i64) -> Result<Option<RolloutRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM {FROM} WHERE r.id = $1 FOR UPDATE OF r SKIP LOCKED"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?)
}

/// Lock the rollouts that own any of these actions, in id order (rollout rows before action
/// rows: the order of every writer that waits for a rollout), and return them.
pub async fn lock_of_actions(conn: &mut PgConnection, actions: &[i64]) -> Result<Vec<RolloutRow>> {
    if actions.is_empty() {
        return Ok(Vec::new());
    }
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM {FROM}
         WHERE r.id IN (SELECT DISTINCT rollout_id FROM action
                        WHERE id IN (SELECT unnest($1::bigint[])) AND rollout_id IS NOT NULL)
         ORDER BY r.id FOR UPDATE OF r"
    ))
    .bind(actions)
    .fetch_all(conn)
    .await?)
}

/// Lock those of these rollouts that no other transaction holds, in id order, and return them.
pub async fn try_lock_many(conn: &mut PgConnection, ids: &[i64]) -> Result<Vec<RolloutRow>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM {FROM} WHERE r.id = ANY($1) ORDER BY r.id FOR UPDATE OF r SKIP LOCKED"
    ))
    .bind(ids)
    .fetch_all(conn)
    .await?)
}

/// Ids of rollouts the executor has work for, oldest first: active states (running ones for
/// evaluation, activation, enrolment), due `startAt`s, and paused rollouts whose running
/// groups are not fully activated yet.
pub async fn with_work(conn: &mut PgConnection) -> Result<Vec<i64>> {
    Ok(sqlx::query_scalar(
        "SELECT id FROM rollout
         WHERE status IN ('CREATING', 'STARTING', 'RUNNING', 'STOPPING', 'DELETING')
            OR (status = 'READY' AND start_at IS NOT NULL AND start_at <= epoch_ms())
            OR (status = 'PAUSED' AND EXISTS (SELECT 1 FROM rollout_group g
                WHERE g.rollout_id = rollout.id AND g.status = 'RUNNING' AND g.n_scheduled > 0))
         ORDER BY id",
    )
    .fetch_all(conn)
    .await?)
}

/// `soft_deleted_mode` of rollout lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeletedMode {
    Exclude,
    Only,
    Include,
}

/// Sortable rollout fields: API name → column. `status` sorts by hawkBit's stored code.
pub const SORT_FIELDS: &[(&str, &str)] = &[
    ("id", "r.id"),
    ("name", "r.name"),
    ("description", "r.description"),
    ("createdat", "r.created_at"),
    ("createdby", "r.created_by"),
    ("lastmodifiedat", "r.last_modified_at"),
    ("lastmodifiedby", "r.last_modified_by"),
    (
        "status",
        "CASE r.status WHEN 'CREATING' THEN 0 WHEN 'READY' THEN 1 WHEN 'PAUSED' THEN 2
         WHEN 'STARTING' THEN 3 WHEN 'STOPPED' THEN 4 WHEN 'RUNNING' THEN 5 WHEN 'FINISHED' THEN 6
         WHEN 'DELETING' THEN 9 WHEN 'DELETED' THEN 10 WHEN 'WAITING_FOR_APPROVAL' THEN 11
         WHEN 'APPROVAL_DENIED' THEN 12 ELSE 13 END",
    ),
    ("totaltargets", "r.total_targets"),
];

/// A page of the tenant's rollouts.
pub async fn list(
    conn: &mut PgConnection,
    tenant: TenantId,
    q: Option<&Filter>,
    mode: DeletedMode,
    order_by: &str,
    offset: i64,
    limit: i64,
) -> Result<(Vec<RolloutRow>, i64)> {
    let condition = |qb: &mut QueryBuilder<'_, Postgres>| {
        qb.push(" WHERE r.tenant_id = ").push_bind(tenant.0);
        match mode {
            DeletedMode::Exclude => qb.push(" AND NOT r.deleted"),
            DeletedMode::Only => qb.push(" AND r.deleted"),
            DeletedMode::Include => qb.push(""),
        };
        if let Some(f) = q {
            qb.push(" AND ");
            f.push_sql(qb, "r");
        }
    };
    page(conn, COLUMNS, FROM, condition, order_by, offset, limit).await
}

/// A page of rows `SELECT <columns> FROM <from> <condition> ORDER BY ... OFFSET ... LIMIT ...`
/// and the total count under the same condition.
async fn page<T>(
    conn: &mut PgConnection,
    columns: &str,
    from: &str,
    condition: impl Fn(&mut QueryBuilder<'_, Postgres>),
    order_by: &str,
    offset: i64,
    limit: i64,
) -> Result<(Vec<T>, i64)>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
{
    let mut qb = QueryBuilder::new(format!("SELECT {columns} FROM {from}"));
    condition(&mut qb);
    qb.push(format!(" ORDER BY {order_by} OFFSET "))
        .push_bind(offset)
        .push(" LIMIT ")
        .push_bind(limit);
    let rows = qb.build_query_as().fetch_all(&mut *conn).await?;
    let mut qb = QueryBuilder::new(format!("SELECT count(*) FROM {from}"));
    condition(&mut qb);
    let total = qb.build_query_scalar().fetch_one(conn).await?;
    Ok((rows, total))
}

/// Every group of a rollout in id order.
pub async fn groups(conn: &mut PgConnection, rollout: i64) -> Result<Vec<GroupRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {GROUP_COLUMNS} FROM rollout_group g WHERE g.rollout_id = $1 ORDER BY g.id"
    ))
    .bind(rollout)
    .fetch_all(conn)
    .await?)
}

/// Sortable group fields (hawkBit validates group sorting against rollout fields, §9.2).
pub const GROUP_SORT_FIELDS: &[(&str, &str)] = &[
    ("id", "g.id"),
    ("name", "g.name"),
    ("description", "g.description"),
    ("createdat", "g.created_at"),
    ("createdby", "g.created_by"),
    ("lastmodifiedat", "g.last_modified_at"),
    ("lastmodifiedby", "g.last_modified_by"),
    ("status", "g.status"),
    ("totaltargets", "g.total_targets"),
];

/// A page of a rollout's groups.
pub async fn list_groups(
    conn: &mut PgConnection,
    rollout: i64,
    q: Option<&Filter>,
    order_by: &str,
    offset: i64,
    limit: i64,
) -> Result<(Vec<GroupRow>, i64)> {
    let condition = |qb: &mut QueryBuilder<'_, Postgres>| {
        qb.push(" WHERE g.rollout_id = ").push_bind(rollout);
        if let Some(f) = q {
            qb.push(" AND ");
            f.push_sql(qb, "g");
        }
    };
    page(
        conn,
        GROUP_COLUMNS,
        "rollout_group g",
        condition,
        order_by,
        offset,
        limit,
    )
    .await
}

/// Ids of the targets of a group: its members and the targets of its actions (§12 #16), for the
/// group target listing. `q` filters targets (alias `t`).
pub fn push_group_targets(qb: &mut QueryBuilder<'_, Postgres>, group: i64) {
    qb.push(" (t.id IN (SELECT target_id FROM rollout_target_group WHERE group_id = ")
        .push_bind(group)
        .push(") OR t.id IN (SELECT target_id FROM action WHERE rollout_group_id = ")
        .push_bind(group)
        .push(")) ");
}

/// Set the status of a rollout.
pub async fn set_status(conn: &mut PgConnection, id: i64, status: &str, user: &str) -> Result<()> {
    sqlx::query(
        "UPDATE rollout SET status = $2, deleted = ($2 = 'DELETED'), last_modified_at = epoch_ms(),
                last_modified_by = $3, opt_lock_revision = opt_lock_revision + 1
         WHERE id = $1",
    )
    .bind(id)
    .bind(status)
    .bind(user)
    .execute(conn)
    .await?;
    Ok(())
}

/// Record an approval decision and the state it leads to.
pub async fn decide(
    conn: &mut PgConnection,
    id: i64,
    status: &str,
    decided_by: &str,
    remark: Option<&str>,
) -> Result<()> {
    sqlx::query(
        "UPDATE rollout SET status = $2, approval_decided_by = $3,
                approval_remark = COALESCE($4, approval_remark), last_modified_at = epoch_ms(),
                last_modified_by = $3, opt_lock_revision = opt_lock_revision + 1
         WHERE id = $1",
    )
    .bind(id)
    .bind(status)
    .bind(decided_by)
    .bind(remark)
    .execute(conn)
    .await?;
    Ok(())
}

/// Rename / redescribe a rollout.
pub async fn update_text(
    conn: &mut PgConnection,
    id: i64,
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
    .bind(id)
    .bind(name)
    .bind(description)
    .bind(user)
    .execute(conn)
    .await?;
    Ok(())
}

/// Set the status of groups.
pub async fn set_group_status(conn: &mut PgConnection, ids: &[i64], status: &str) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE rollout_group SET status = $2, last_modified_at = epoch_ms() WHERE id = ANY($1)",
    )
    .bind(ids)
    .bind(status)
    .execute(conn)
    .await?;
    Ok(())
}

/// Every group of a rollout that is not FINISHED/ERROR becomes FINISHED (stop, soft delete).
pub async fn finish_open_groups(conn: &mut PgConnection, rollout: i64) -> Result<()> {
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
pub async fn shrink_group(conn: &mut PgConnection, group: i64, total: i64) -> Result<()> {
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
pub async fn total_from_groups(conn: &mut PgConnection, rollout: i64) -> Result<()> {
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

/// Where targets come from: the rollout's filter with the creation cut-off and the DS-type
/// compatibility rule (§3.2), or for a retry rollout the targets that failed in its source.
pub struct Eligible<'a> {
    pub tenant: i64,
    pub rollout: &'a RolloutRow,
    pub base: Option<&'a Filter>,
    pub group: Option<&'a Filter>,
    /// Apply `created_at <= rollout.created_at` (static groups; not dynamic enrolment).
    pub cutoff: bool,
}

impl Eligible<'_> {
    /// Push the WHERE conditions over `target t`.
    fn push(&self, qb: &mut QueryBuilder<'_, Postgres>) {
        qb.push(" t.tenant_id = ").push_bind(self.tenant);
        if let Some(source) = self.rollout.retry_of {
            qb.push(
                " AND EXISTS (SELECT 1 FROM action fa WHERE fa.target_id = t.id AND fa.status = 'ERROR'
                  AND fa.rollout_id = ",
            )
            .push_bind(source)
            .push(")");
        } else {
            if let Some(f) = self.base {
                qb.push(" AND ");
                f.push_sql(qb, "t");
            }
            if self.cutoff {
                qb.push(" AND t.created_at <= ")
                    .push_bind(self.rollout.created_at);
            }
            qb.push(
                " AND (t.target_type_id IS NULL OR EXISTS (SELECT 1 FROM target_type_ds_type c
                   WHERE c.target_type_id = t.target_type_id AND c.ds_type_id = ",
            )
            .push_bind(self.rollout.ds_type_id)
            .push("))");
        }
        if let Some(f) = self.group {
            qb.push(" AND ");
            f.push_sql(qb, "t");
        }
    }
}

/// Count targets matching a filter and compatible with a DS type (creation, §3.1 step 8).
pub async fn count_matching(
    conn: &mut PgConnection,
    tenant: TenantId,
    filter: &Filter,
    ds_type_id: i64,
) -> Result<i64> {
    let mut qb = QueryBuilder::new("SELECT count(*) FROM target t WHERE t.tenant_id = ");
    qb.push_bind(tenant.0).push(" AND ");
    filter.push_sql(&mut qb, "t");
    qb.push(
        " AND (t.target_type_id IS NULL OR EXISTS (SELECT 1 FROM target_type_ds_type c
           WHERE c.target_type_id = t.target_type_id AND c.ds_type_id = ",
    )
    .push_bind(ds_type_id)
    .push("))");
    Ok(qb.build_query_scalar().fetch_one(conn).await?)
}

/// Targets with an ERROR action in a rollout (retry, §3.8).
pub async fn count_failed(conn: &mut PgConnection, rollout: i64) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(DISTINCT target_id) FROM action WHERE rollout_id = $1 AND status = 'ERROR'",
    )
    .bind(rollout)
    .fetch_one(conn)
    .await?)
}

/// Simulate the fill of custom groups at creation (§3.4 [ours]: exact, set-based): returns each
/// group's size. `groups` are (filter, percentage, served share of earlier same-filter groups).
pub async fn simulate_custom(
    conn: &mut PgConnection,
    tenant: TenantId,
    base: &Filter,
    ds_type_id: i64,
    groups: &[(Option<&Filter>, f32, f64)],
) -> Result<Vec<i64>> {
    sqlx::query(
        "CREATE TEMP TABLE IF NOT EXISTS rollout_sim (id bigint PRIMARY KEY) ON COMMIT DROP",
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query("TRUNCATE rollout_sim")
        .execute(&mut *conn)
        .await?;
    let mut qb =
        QueryBuilder::new("INSERT INTO rollout_sim SELECT t.id FROM target t WHERE t.tenant_id = ");
    qb.push_bind(tenant.0).push(" AND ");
    base.push_sql(&mut qb, "t");
    qb.push(
        " AND (t.target_type_id IS NULL OR EXISTS (SELECT 1 FROM target_type_ds_type c
           WHERE c.target_type_id = t.target_type_id AND c.ds_type_id = ",
    )
    .push_bind(ds_type_id)
    .push("))");
    qb.build().execute(&mut *conn).await?;
    let mut sizes = Vec::with_capacity(groups.len());
    for (filter, pct, served) in groups {
        let mut qb = QueryBuilder::new(
            "SELECT count(*) FROM rollout_sim s JOIN target t ON t.id = s.id WHERE true",
        );
        if let Some(f) = filter {
            qb.push(" AND ");
            f.push_sql(&mut qb, "t");
        }
        let remaining: i64 = qb.build_query_scalar().fetch_one(&mut *conn).await?;
        let size = crate::domain::rollout::group_size(*pct, *served, remaining).min(remaining);
        let mut qb = QueryBuilder::new(
            "DELETE FROM rollout_sim WHERE id IN (SELECT s.id FROM rollout_sim s JOIN target t ON t.id = s.id WHERE true",
        );
        if let Some(f) = filter {
            qb.push(" AND ");
            f.push_sql(&mut qb, "t");
        }
        qb.push(" ORDER BY s.id LIMIT ").push_bind(size).push(")");
        qb.build().execute(&mut *conn).await?;
        sizes.push(size);
    }
    Ok(sizes)
}

/// Count the targets still eligible for a static group: matching, not yet a member of another
/// group of the rollout; the group's own members count (a resumed fill must not shrink, §3.5).
pub async fn count_eligible(conn: &mut PgConnection, e: &Eligible<'_>, group: i64) -> Result<i64> {
    let mut qb = QueryBuilder::new("SELECT count(*) FROM target t WHERE ");
    e.push(&mut qb);
    qb.push(" AND NOT EXISTS (SELECT 1 FROM rollout_target_group m WHERE m.rollout_id = ")
        .push_bind(e.rollout.id)
        .push(" AND m.target_id = t.id AND m.group_id <> ")
        .push_bind(group)
        .push(")");
    Ok(qb.build_query_scalar().fetch_one(conn).await?)
}

/// Fix the planned sizes of groups.
pub async fn set_planned_sizes(conn: &mut PgConnection, ids: &[i64], sizes: &[i64]) -> Result<()> {
    sqlx::query(
        "UPDATE rollout_group g SET planned_size = u.size FROM unnest($1::bigint[], $2::bigint[]) AS u(id, size)
         WHERE g.id = u.id",
    )
    .bind(ids)
    .bind(sizes)
    .execute(conn)
    .await?;
    Ok(())
}

/// Members of a group so far, and the highest member target id.
pub async fn members(conn: &mut PgConnection, group: i64) -> Result<(i64, i64)> {
    Ok(sqlx::query_as(
        "SELECT count(*), COALESCE(max(target_id), 0) FROM rollout_target_group WHERE group_id = $1",
    )
    .bind(group)
    .fetch_one(conn)
    .await?)
}

/// The highest target id that is a member of any group of the rollout.
pub async fn max_member(conn: &mut PgConnection, rollout: i64) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT COALESCE(max(m.target_id), 0) FROM rollout_group g
         CROSS JOIN LATERAL (SELECT max(target_id) AS target_id FROM rollout_target_group
                             WHERE group_id = g.id) m
         WHERE g.rollout_id = $1",
    )
    .bind(rollout)
    .fetch_one(conn)
    .await?)
}

/// What one fill statement did.
#[derive(Debug, Clone, Copy, sqlx::FromRow)]
pub struct Filled {
    pub added: i64,
    /// Highest target id added (0 if none).
    pub last_added: i64,
    /// Highest target id looked at (0 if none).
    pub scanned_to: i64,
    /// Target ids looked at.
    pub scanned: i64,
}

/// Add up to `limit` eligible targets to a group, lowest ids first, looking at the next
/// `window` target ids of the tenant above `after`. The window keeps every statement an index
/// range scan whatever the filter's selectivity (a plain `ORDER BY id LIMIT` over a selective
/// filter makes the planner sort the whole table per chunk). `exclusive` = some other group's
/// members may lie above `after` and must be skipped.
pub async fn fill_chunk(
    conn: &mut PgConnection,
    e: &Eligible<'_>,
    group: i64,
    after: i64,
    limit: i64,
    window: i64,
    exclusive: bool,
) -> Result<Filled> {
    let mut qb = QueryBuilder::new(
        "WITH bound AS (SELECT max(id) AS hi, count(*) AS n FROM (SELECT id FROM target WHERE tenant_id = ",
    );
    qb.push_bind(e.tenant)
        .push(" AND id > ")
        .push_bind(after)
        .push(" ORDER BY id LIMIT ")
        .push_bind(window)
        .push(
            ") w), ins AS (INSERT INTO rollout_target_group (group_id, target_id, rollout_id) SELECT ",
        )
        .push_bind(group)
        .push(", t.id, ")
        .push_bind(e.rollout.id)
        .push(" FROM target t, bound WHERE t.id > ")
        .push_bind(after)
        .push(" AND t.id <= bound.hi AND ");
    e.push(&mut qb);
    if exclusive {
        qb.push(" AND NOT EXISTS (SELECT 1 FROM rollout_target_group m WHERE m.rollout_id = ")
            .push_bind(e.rollout.id)
            .push(" AND m.target_id = t.id)");
    }
    qb.push(" ORDER BY t.id LIMIT ").push_bind(limit).push(
        " RETURNING target_id)
             SELECT (SELECT count(*) FROM ins) AS added,
                    (SELECT COALESCE(max(target_id), 0) FROM ins) AS last_added,
                    (SELECT COALESCE(hi, 0) FROM bound) AS scanned_to,
                    (SELECT n FROM bound) AS scanned",
    );
    Ok(qb.build_query_as().fetch_one(conn).await?)
}

/// Mark a static group READY with its final member count.
pub async fn group_ready(conn: &mut PgConnection, group: i64, total: i64) -> Result<()> {
    sqlx::query(
        "UPDATE rollout_group SET status = 'READY', total_targets = $2, last_modified_at = epoch_ms()
         WHERE id = $1",
    )
    .bind(group)
    .bind(total)
    .execute(conn)
    .await?;
    Ok(())
}

/// The highest target id that already has an action in a group.
pub async fn max_scheduled_target(conn: &mut PgConnection, group: i64) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT COALESCE(max(target_id), 0) FROM action WHERE rollout_group_id = $1",
    )
    .bind(group)
    .fetch_one(conn)
    .await?)
}

/// What one scheduling statement did.
#[derive(Debug, Clone, Copy, sqlx::FromRow)]
pub struct Scheduled {
    /// Members looked at.
    pub members: i64,
    /// Highest member target id looked at.
    pub last_member: i64,
    /// Actions created.
    pub created: i64,
}

/// Create SCHEDULED actions for up to `limit` members of a group above `after` (§4.6 A). In
/// single-assignment mode, other rollouts' SCHEDULED actions of those targets are cancelled
/// first (not of required-migration-step sets). A target that already has `quota` actions
/// (`maxActionsPerTarget`, §3.6) gets none: it is left out of the rollout instead of failing it.
pub async fn schedule_chunk(
    conn: &mut PgConnection,
    r: &RolloutRow,
    group: i64,
    after: i64,
    limit: i64,
    single: bool,
    quota: i64,
) -> Result<Scheduled> {
    Ok(sqlx::query_as(
        "WITH chunk AS (
             SELECT m.target_id FROM rollout_target_group m JOIN target t ON t.id = m.target_id
             WHERE m.group_id = $1 AND m.target_id > $2 ORDER BY m.target_id LIMIT $3),
         allowed AS (
             SELECT c.target_id FROM chunk c
             WHERE (SELECT count(*) FROM action x WHERE x.target_id = c.target_id) < $12),
         cancelled AS (
             UPDATE action a SET status = 'CANCELED', active = false, last_modified_at = epoch_ms()
             FROM allowed c, distribution_set d
             WHERE $4 AND a.target_id = c.target_id AND a.status = 'SCHEDULED'
               AND a.rollout_id IS DISTINCT FROM $5 AND d.id = a.ds_id AND NOT d.required_migration_step
             RETURNING a.id),
         ins AS (
             INSERT INTO action (tenant_id, target_id, ds_id, action_type, status, active, weight,
                                 forced_time, rollout_id, rollout_group_id, initiated_by,
                                 created_by, last_modified_by)
             SELECT $6, c.target_id, $7, $8, 'SCHEDULED', false, $9, $10, $5, $1, $11, $11, $11
             FROM allowed c ORDER BY c.target_id
             RETURNING target_id)
         SELECT (SELECT count(*) FROM chunk) AS members,
                (SELECT COALESCE(max(target_id), 0) FROM chunk) AS last_member,
                (SELECT count(*) FROM ins) AS created",
    )
    .bind(group)
    .bind(after)
    .bind(limit)
    .bind(single)
    .bind(r.id)
    .bind(r.tenant_id)
    .bind(r.ds_id)
    .bind(&r.action_type)
    .bind(r.weight)
    .bind(r.forced_time)
    .bind(&r.created_by)
    .bind(quota)
    .fetch_one(conn)
    .await?)
}

/// A SCHEDULED action about to be activated, with what its target says about it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Activation {
    pub id: i64,
    pub target_id: i64,
    pub assigned_ds_id: Option<i64>,
    pub auto_confirm: bool,
}

/// Lock up to `limit` SCHEDULED actions of a group with an id above `after`, oldest first.
pub async fn lock_scheduled(
    conn: &mut PgConnection,
    group: i64,
    after: i64,
    limit: i64,
) -> Result<Vec<Activation>> {
    Ok(sqlx::query_as(
        // The chunk is chosen (and locked) before the join, so only its rows meet `target`.
        "SELECT a.id, a.target_id, t.assigned_ds_id, t.auto_confirm_at IS NOT NULL AS auto_confirm
         FROM (SELECT id, target_id FROM action
               WHERE rollout_group_id = $1 AND id > $3 AND status = 'SCHEDULED'
               ORDER BY id LIMIT $2 FOR UPDATE) a
         JOIN target t ON t.id = a.target_id ORDER BY a.id",
    )
    .bind(group)
    .bind(limit)
    .bind(after)
    .fetch_all(conn)
    .await?)
}

/// Delete up to `limit` SCHEDULED actions of a rollout (stop, delete). Returns how many.
pub async fn delete_scheduled(conn: &mut PgConnection, rollout: i64, limit: i64) -> Result<u64> {
    Ok(sqlx::query(
        "DELETE FROM action WHERE id IN (SELECT id FROM action WHERE rollout_id = $1
                                         AND status = 'SCHEDULED' LIMIT $2)",
    )
    .bind(rollout)
    .bind(limit)
    .execute(conn)
    .await?
    .rows_affected())
}

/// Lock up to `limit` active actions of a rollout that are not CANCELING yet.
pub async fn lock_active(
    conn: &mut PgConnection,
    rollout: i64,
    limit: i64,
    include_canceling: bool,
) -> Result<Vec<(i64, i64)>> {
    Ok(sqlx::query_as(
        "SELECT id, target_id FROM action
         WHERE rollout_id = $1 AND active AND ($3 OR status <> 'CANCELING')
         ORDER BY id LIMIT $2 FOR UPDATE",
    )
    .bind(rollout)
    .bind(limit)
    .bind(include_canceling)
    .fetch_all(conn)
    .await?)
}

/// Whether the rollout has any action, and any action other than SCHEDULED.
pub async fn action_presence(conn: &mut PgConnection, rollout: i64) -> Result<(bool, bool)> {
    Ok(sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM action WHERE rollout_id = $1),
                EXISTS (SELECT 1 FROM action WHERE rollout_id = $1 AND status <> 'SCHEDULED')",
    )
    .bind(rollout)
    .fetch_one(conn)
    .await?)
}

/// Remove a rollout with its groups and memberships (its actions must be gone).
pub async fn hard_delete(conn: &mut PgConnection, rollout: i64) -> Result<()> {
    sqlx::query(
        "DELETE FROM rollout_target_group
         WHERE group_id IN (SELECT id FROM rollout_group WHERE rollout_id = $1)",
    )
    .bind(rollout)
    .execute(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM rollout WHERE id = $1")
        .bind(rollout)
        .execute(conn)
        .await?;
    Ok(())
}

/// After force-closing actions: each target's assigned set becomes that of its oldest open
/// action, or its installed set (IN_SYNC) when none is left (set-based, §6.4).
pub async fn reset_assigned(conn: &mut PgConnection, targets: &[i64]) -> Result<()> {
    sqlx::query(
        "UPDATE target t SET
            assigned_ds_id = COALESCE(o.ds_id, t.installed_ds_id),
            update_status = CASE WHEN o.ds_id IS NULL THEN 'IN_SYNC' ELSE t.update_status END,
            last_modified_at = epoch_ms()
         FROM (SELECT u.id, (SELECT ds_id FROM action WHERE target_id = u.id AND active
                             ORDER BY id LIMIT 1) AS ds_id
               FROM unnest($1::bigint[]) AS u(id)) o
         WHERE t.id = o.id",
    )
    .bind(targets)
    .execute(conn)
    .await?;
    Ok(())
}

/// Record that dynamic enrolment found nothing now (throttle).
pub async fn set_last_empty_enrolment(
    conn: &mut PgConnection,
    rollout: i64,
    at: Option<i64>,
) -> Result<()> {
    sqlx::query("UPDATE rollout SET last_empty_enrolment = $2 WHERE id = $1")
        .bind(rollout)
        .bind(at)
        .execute(conn)
        .await?;
    Ok(())
}

/// Enrol up to `limit` new targets into a dynamic group (§3.7): matching the rollout filter
/// (no creation cut-off) and the group filter, compatible, with no action in this or any newer
/// rollout. Creates their SCHEDULED actions; returns their ids.
pub async fn enrol_dynamic(
    conn: &mut PgConnection,
    e: &Eligible<'_>,
    group: i64,
    limit: i64,
    single: bool,
) -> Result<Vec<i64>> {
    let r = e.rollout;
    let mut qb = QueryBuilder::new("WITH chunk AS (SELECT t.id AS target_id FROM target t WHERE ");
    e.push(&mut qb);
    qb.push(
        " AND NOT EXISTS (SELECT 1 FROM action x WHERE x.target_id = t.id AND x.rollout_id >= ",
    )
    .push_bind(r.id)
    .push(") ORDER BY t.id LIMIT ")
    .push_bind(limit)
    .push(
        "), cancelled AS (UPDATE action a SET status = 'CANCELED', active = false,
                 last_modified_at = epoch_ms() FROM chunk c, distribution_set d WHERE ",
    )
    .push_bind(single)
    .push(
        " AND a.target_id = c.target_id AND a.status = 'SCHEDULED' AND d.id = a.ds_id
              AND NOT d.required_migration_step RETURNING a.id),
             ins AS (INSERT INTO action (tenant_id, target_id, ds_id, action_type, status, active,
                     weight, forced_time, rollout_id, rollout_group_id, initiated_by, created_by,
                     last_modified_by) SELECT ",
    )
    .push_bind(r.tenant_id)
    .push(", c.target_id, ")
    .push_bind(r.ds_id)
    .push(", ")
    .push_bind(r.action_type.clone())
    .push(", 'SCHEDULED', false, ")
    .push_bind(r.weight)
    .push(", ")
    .push_bind(r.forced_time)
    .push(", ")
    .push_bind(r.id)
    .push(", ")
    .push_bind(group)
    .push(", ")
    .push_bind(r.created_by.clone())
    .push(", ")
    .push_bind(r.created_by.clone())
    .push(", ")
    .push_bind(r.created_by.clone())
    .push(" FROM chunk c ORDER BY c.target_id RETURNING id) SELECT id FROM ins");
    let ids: Vec<i64> = qb.build_query_scalar().fetch_all(&mut *conn).await?;
    if !ids.is_empty() {
        sqlx::query(
            "WITH g AS (UPDATE rollout_group SET total_targets = total_targets + $2 WHERE id = $1
                        RETURNING rollout_id)
             UPDATE rollout r SET total_targets = r.total_targets + $2 FROM g WHERE r.id = g.rollout_id",
        )
        .bind(group)
        .bind(ids.len() as i64)
        .execute(conn)
        .await?;
    }
    Ok(ids)
}

/// Rollouts per status of a distribution set (`/distributionsets/{id}/statistics/rollouts`).
pub async fn statistics_of_set(
    conn: &mut PgConnection,
    tenant: TenantId,
    ds: i64,
) -> Result<Vec<(String, i64)>> {
    Ok(sqlx::query_as(
        "SELECT status, count(*) FROM rollout WHERE tenant_id = $1 AND ds_id = $2 AND NOT deleted
         GROUP BY status ORDER BY status",
    )
    .bind(tenant.0)
    .bind(ds)
    .fetch_all(conn)
    .await?)
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

/// Lock the implicit-lock flag of a distribution set (§1.3).
pub async fn lock_set_implicitly(conn: &mut PgConnection, ds: i64) -> Result<()> {
    sqlx::query("UPDATE distribution_set SET locked = true WHERE id = $1 AND NOT locked")
        .bind(ds)
        .execute(conn)
        .await?;
    Ok(())
}

/// A page of a group's targets: its members and the targets of its actions (§12 #16).
pub async fn group_targets(
    conn: &mut PgConnection,
    tenant: TenantId,
    group: i64,
    q: Option<&Filter>,
    order_by: &str,
    offset: i64,
    limit: i64,
) -> Result<(Vec<super::targets::TargetRow>, i64)> {
    let condition = |qb: &mut QueryBuilder<'_, Postgres>| {
        qb.push(" WHERE t.tenant_id = ")
            .push_bind(tenant.0)
            .push(" AND ");
        push_group_targets(qb, group);
        if let Some(f) = q {
            qb.push(" AND ");
            f.push_sql(qb, "t");
        }
    };
    page(
        conn,
        super::targets::COLUMNS,
        "target t LEFT JOIN target_type tt ON tt.id = t.target_type_id",
        condition,
        order_by,
        offset,
        limit,
    )
    .await
}
