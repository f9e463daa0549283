//! Which targets a group takes: the eligibility rules (§3.2), the counts and size simulation
//! of creation, the resumable fill of static groups (§3.5) and dynamic enrolment (§3.7).

use sqlx::{PgConnection, Postgres, QueryBuilder};

use crate::domain::ids::{GroupId, RolloutId, TenantId};
use crate::domain::rollout::Rollout;
use crate::store::Result;
use crate::store::filter::Filter;

/// Where targets come from: the rollout's filter with the creation cut-off and the DS-type
/// compatibility rule (§3.2), or for a retry rollout the targets that failed in its source.
pub struct Eligible<'a> {
    pub tenant: i64,
    pub rollout: &'a Rollout,
    pub base: Option<&'a Filter>,
    pub group: Option<&'a Filter>,
    /// Apply `created_at <= rollout.created_at` (static groups; not dynamic enrolment).
    pub cutoff: bool,
}

impl<'a> Eligible<'a> {
    pub fn new(
        rollout: &'a Rollout,
        base: Option<&'a Filter>,
        group: Option<&'a Filter>,
        cutoff: bool,
    ) -> Self {
        Self {
            tenant: rollout.tenant.0,
            rollout,
            base,
            group,
            cutoff,
        }
    }

    /// Push the WHERE conditions over `target t`.
    fn push(&self, qb: &mut QueryBuilder<'_, Postgres>) {
        qb.push(" t.tenant_id = ").push_bind(self.tenant);
        if let Some(source) = self.rollout.retry_of.map(|r| r.0) {
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
                    .push_bind(self.rollout.audit.created_at);
            }
            push_compatible(qb, self.rollout.ds_type);
        }
        if let Some(f) = self.group {
            qb.push(" AND ");
            f.push_sql(qb, "t");
        }
    }
}

/// Push ` AND` the DS-type compatibility rule over `target t` (§3.2): a target without a type
/// takes any set, a typed one only sets of a type its type accepts.
pub(in crate::store) fn push_compatible(qb: &mut QueryBuilder<'_, Postgres>, ds_type_id: i64) {
    qb.push(
        " AND (t.target_type_id IS NULL OR EXISTS (SELECT 1 FROM target_type_ds_type c
           WHERE c.target_type_id = t.target_type_id AND c.ds_type_id = ",
    )
    .push_bind(ds_type_id)
    .push("))");
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
    push_compatible(&mut qb, ds_type_id);
    Ok(qb.build_query_scalar().fetch_one(conn).await?)
}

/// Targets with an ERROR action in a rollout (retry, §3.8).
pub async fn count_failed(conn: &mut PgConnection, rollout: RolloutId) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(DISTINCT target_id) FROM action WHERE rollout_id = $1 AND status = 'ERROR'",
    )
    .bind(rollout.0)
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
    push_compatible(&mut qb, ds_type_id);
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
        let size =
            crate::domain::rollout::plan::group_size(*pct, *served, remaining).min(remaining);
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
pub async fn count_eligible(
    conn: &mut PgConnection,
    e: &Eligible<'_>,
    group: GroupId,
) -> Result<i64> {
    let mut qb = QueryBuilder::new("SELECT count(*) FROM target t WHERE ");
    e.push(&mut qb);
    qb.push(" AND NOT EXISTS (SELECT 1 FROM rollout_target_group m WHERE m.rollout_id = ")
        .push_bind(e.rollout.id.0)
        .push(" AND m.target_id = t.id AND m.group_id <> ")
        .push_bind(group.0)
        .push(")");
    Ok(qb.build_query_scalar().fetch_one(conn).await?)
}

/// Fix the planned sizes of groups.
pub async fn set_planned_sizes(
    conn: &mut PgConnection,
    ids: &[GroupId],
    sizes: &[i64],
) -> Result<()> {
    let ids: Vec<i64> = ids.iter().map(|g| g.0).collect();
    sqlx::query(
        "UPDATE rollout_group g SET planned_size = u.size FROM unnest($1::bigint[], $2::bigint[]) AS u(id, size)
         WHERE g.id = u.id",
    )
    .bind(&ids)
    .bind(sizes)
    .execute(conn)
    .await?;
    Ok(())
}

/// Members of a group so far, and the highest member target id.
pub async fn members(conn: &mut PgConnection, group: GroupId) -> Result<(i64, i64)> {
    Ok(sqlx::query_as(
        "SELECT count(*), COALESCE(max(target_id), 0) FROM rollout_target_group WHERE group_id = $1",
    )
    .bind(group.0)
    .fetch_one(conn)
    .await?)
}

/// The highest target id that is a member of any group of the rollout.
pub async fn max_member(conn: &mut PgConnection, rollout: RolloutId) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT COALESCE(max(m.target_id), 0) FROM rollout_group g
         CROSS JOIN LATERAL (SELECT max(target_id) AS target_id FROM rollout_target_group
                             WHERE group_id = g.id) m
         WHERE g.rollout_id = $1",
    )
    .bind(rollout.0)
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
    group: GroupId,
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
        .push_bind(group.0)
        .push(", t.id, ")
        .push_bind(e.rollout.id.0)
        .push(" FROM target t, bound WHERE t.id > ")
        .push_bind(after)
        .push(" AND t.id <= bound.hi AND ");
    e.push(&mut qb);
    if exclusive {
        qb.push(" AND NOT EXISTS (SELECT 1 FROM rollout_target_group m WHERE m.rollout_id = ")
            .push_bind(e.rollout.id.0)
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
pub async fn group_ready(conn: &mut PgConnection, group: GroupId, total: i64) -> Result<()> {
    sqlx::query(
        "UPDATE rollout_group SET status = 'READY', total_targets = $2, last_modified_at = epoch_ms()
         WHERE id = $1",
    )
    .bind(group.0)
    .bind(total)
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
    group: GroupId,
    limit: i64,
    single: bool,
) -> Result<Vec<i64>> {
    let r = e.rollout;
    let mut qb = QueryBuilder::new("WITH chunk AS (SELECT t.id AS target_id FROM target t WHERE ");
    e.push(&mut qb);
    qb.push(
        " AND NOT EXISTS (SELECT 1 FROM action x WHERE x.target_id = t.id AND x.rollout_id >= ",
    )
    .push_bind(r.id.0)
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
    .push_bind(r.tenant.0)
    .push(", c.target_id, ")
    .push_bind(r.ds.0)
    .push(", ")
    .push_bind(r.action_type.as_db())
    .push(", 'SCHEDULED', false, ")
    .push_bind(r.weight)
    .push(", ")
    .push_bind(r.forced_time)
    .push(", ")
    .push_bind(r.id.0)
    .push(", ")
    .push_bind(group.0)
    .push(", ")
    .push_bind(r.audit.created_by.clone())
    .push(", ")
    .push_bind(r.audit.created_by.clone())
    .push(", ")
    .push_bind(r.audit.created_by.clone())
    .push(" FROM chunk c ORDER BY c.target_id RETURNING id) SELECT id FROM ins");
    let ids: Vec<i64> = qb.build_query_scalar().fetch_all(&mut *conn).await?;
    if !ids.is_empty() {
        sqlx::query(
            "WITH g AS (UPDATE rollout_group SET total_targets = total_targets + $2 WHERE id = $1
                        RETURNING rollout_id)
             UPDATE rollout r SET total_targets = r.total_targets + $2 FROM g WHERE r.id = g.rollout_id",
        )
        .bind(group.0)
        .bind(ids.len() as i64)
        .execute(conn)
        .await?;
    }
    Ok(ids)
}
