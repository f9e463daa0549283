//! Deleting actions: by the Management API (by id, by query, of a target), by the automatic
//! cleanup of old closed actions, and to make room on targets at their action quota. Every
//! delete is one statement; the group counters follow through the counter trigger and the
//! history through its cascade trigger (migrations).
//!
//! Open actions of a rollout (active or SCHEDULED) are never deleted by the API, and the
//! cleanup and the quota purge leave every action of an unfinished rollout alone: its group
//! counters drive its progress.

use serde_json::Value;
use sqlx::{PgConnection, Postgres, QueryBuilder};

use super::Result;
use super::filter::Filter;
use super::sql;
use crate::domain::ids::{ActionId, TenantId};

/// Which of a tenant's actions an API delete names.
#[derive(Debug, Clone, Copy)]
pub enum Selection<'a> {
    /// These ids (ids the tenant does not have are ignored).
    Ids(&'a [ActionId]),
    /// Those matching an action query.
    Query(&'a Filter),
    /// These ids among one target's actions.
    OfTarget { target: i64, ids: &'a [ActionId] },
    /// The `count` oldest actions of one target.
    Oldest { target: i64, count: i64 },
}

/// `a.tenant_id = … AND <selection>`.
fn push_selection(qb: &mut QueryBuilder<'_, Postgres>, tenant: TenantId, sel: Selection<'_>) {
    qb.push("a.tenant_id = ").push_bind(tenant.0);
    match sel {
        Selection::Ids(ids) => {
            qb.push(" AND a.id = ANY(")
                .push_bind(ids.to_vec())
                .push(")");
        }
        Selection::Query(f) => {
            qb.push(" AND ");
            f.push_sql(qb, "a");
        }
        Selection::OfTarget { target, ids } => {
            qb.push(" AND a.target_id = ").push_bind(target);
            qb.push(" AND a.id = ANY(")
                .push_bind(ids.to_vec())
                .push(")");
        }
        Selection::Oldest { target, count } => {
            qb.push(" AND a.id IN (SELECT id FROM action WHERE target_id = ")
                .push_bind(target)
                .push(" ORDER BY id LIMIT ")
                .push_bind(count)
                .push(")");
        }
    }
}

/// `<action a may be deleted by a user>`: its status is one of `allowed`, and it is not an open
/// action (active or `scheduled`) of a rollout.
fn push_deletable(qb: &mut QueryBuilder<'_, Postgres>, allowed: &[String], scheduled: &str) {
    qb.push("(a.status = ANY(")
        .push_bind(allowed.to_vec())
        .push(") AND NOT (a.rollout_id IS NOT NULL AND (a.active OR a.status = ")
        .push_bind(scheduled.to_owned())
        .push(")))");
}

/// `{head} <selection> AND [NOT] <deletable>`: the selected actions that may (or may not) be
/// deleted.
fn selected<'a>(
    head: &'a str,
    tenant: TenantId,
    sel: Selection<'a>,
    deletable: bool,
    allowed: &[String],
    scheduled: &str,
) -> QueryBuilder<'a, Postgres> {
    let mut qb = QueryBuilder::new(head);
    push_selection(&mut qb, tenant, sel);
    qb.push(if deletable { " AND " } else { " AND NOT " });
    push_deletable(&mut qb, allowed, scheduled);
    qb
}

/// How many selected actions may not be deleted (see [`push_deletable`]).
pub async fn count_undeletable(
    conn: &mut PgConnection,
    tenant: TenantId,
    sel: Selection<'_>,
    allowed: &[String],
    scheduled: &str,
) -> Result<i64> {
    let head = "SELECT count(*) FROM action a WHERE ";
    let mut qb = selected(head, tenant, sel, false, allowed, scheduled);
    Ok(qb.build_query_scalar().fetch_one(conn).await?)
}

/// Delete the selected actions that may be deleted; returns how many.
pub async fn delete_selected(
    conn: &mut PgConnection,
    tenant: TenantId,
    sel: Selection<'_>,
    allowed: &[String],
    scheduled: &str,
) -> Result<u64> {
    let head = "DELETE FROM action a WHERE ";
    let mut qb = selected(head, tenant, sel, true, allowed, scheduled);
    Ok(qb.build().execute(conn).await?.rows_affected())
}

/// How many actions a target has.
pub async fn count_of_target(conn: &mut PgConnection, target: i64) -> Result<i64> {
    sql::scalar(
        conn,
        "SELECT count(*) FROM action WHERE target_id = $1",
        (target,),
    )
    .await
}

/// The tenants whose automatic cleanup is configured: tenant, `expiry` value and the status
/// value if set (`status_key`).
pub async fn cleanup_configs(
    conn: &mut PgConnection,
    expiry_key: &str,
    status_key: &str,
) -> Result<Vec<(TenantId, Value, Option<Value>)>> {
    sql::fetch_all(
        conn,
        "SELECT e.tenant_id, e.value, s.value FROM tenant_config e
         LEFT JOIN tenant_config s ON s.tenant_id = e.tenant_id AND s.key = $2
         WHERE e.key = $1 ORDER BY e.tenant_id",
        (expiry_key, status_key),
    )
    .await
}

/// What a cleanup or a purge may delete: closed actions (not active, not `scheduled`) that are
/// of no rollout, or of one in a status of `settled`.
const CLOSED_AND_SETTLED: &str = "NOT a.active AND a.status <> $SCHEDULED
    AND (a.rollout_id IS NULL OR NOT EXISTS (
        SELECT 1 FROM rollout r WHERE r.id = a.rollout_id AND NOT (r.status = ANY($SETTLED))))";

/// Delete up to `limit` of a tenant's closed actions in `statuses` last changed before
/// `before` (epoch ms), oldest first; returns how many.
pub async fn delete_expired(
    conn: &mut PgConnection,
    tenant: TenantId,
    statuses: &[String],
    before: i64,
    limit: i64,
    guard: &Guard,
) -> Result<u64> {
    let closed = CLOSED_AND_SETTLED
        .replace("$SCHEDULED", "$5")
        .replace("$SETTLED", "$6");
    sql::execute(
        conn,
        &format!(
            "DELETE FROM action WHERE id IN (
             SELECT a.id FROM action a WHERE a.tenant_id = $1 AND a.status = ANY($2)
               AND a.last_modified_at < $3 AND {closed}
             ORDER BY a.id LIMIT $4)"
        ),
        (
            tenant.0,
            statuses,
            before,
            limit,
            &guard.scheduled,
            &guard.settled,
        ),
    )
    .await
}

/// Status names the deletes need (the store takes no domain enums): the SCHEDULED action
/// status and the rollout statuses in which a rollout's actions no longer drive it.
#[derive(Debug, Clone)]
pub struct Guard {
    pub scheduled: String,
    pub settled: Vec<String>,
}

/// Make room on those of `targets` that have at least `quota` actions: delete their oldest
/// closed actions (see [`CLOSED_AND_SETTLED`]) until each has at most `keep`. Returns how many
/// targets lost actions and how many actions went.
pub async fn purge_for_quota(
    conn: &mut PgConnection,
    targets: &[i64],
    quota: i64,
    keep: i64,
    guard: &Guard,
) -> Result<(i64, i64)> {
    if targets.is_empty() {
        return Ok((0, 0));
    }
    let closed = CLOSED_AND_SETTLED
        .replace("$SCHEDULED", "$4")
        .replace("$SETTLED", "$5");
    sql::fetch_one(
        conn,
        &format!(
            "WITH full_targets AS (
                 SELECT x.target_id, count(*) AS n FROM action x
                 WHERE x.target_id = ANY($1) GROUP BY x.target_id HAVING count(*) >= $2),
             victims AS (
                 SELECT v.id FROM (
                     SELECT a.id, f.n, row_number() OVER (PARTITION BY a.target_id ORDER BY a.id) AS rn
                     FROM action a JOIN full_targets f ON f.target_id = a.target_id
                     WHERE {closed}) v
                 WHERE v.rn <= v.n - $3),
             gone AS (DELETE FROM action WHERE id IN (SELECT id FROM victims) RETURNING target_id)
             SELECT count(DISTINCT target_id), count(*) FROM gone"
        ),
        (targets, quota, keep, &guard.scheduled, &guard.settled),
    )
    .await
}

/// Members of a rollout group above target id `after` (the next `limit`, in id order) that have
/// at least `quota` actions: those the next scheduling chunk would leave out.
pub async fn group_members_at_quota(
    conn: &mut PgConnection,
    group: i64,
    after: i64,
    limit: i64,
    quota: i64,
) -> Result<Vec<i64>> {
    sql::scalar_all(
        conn,
        "SELECT m.target_id FROM (SELECT target_id FROM rollout_target_group
                                  WHERE group_id = $1 AND target_id > $2
                                  ORDER BY target_id LIMIT $3) m
         WHERE (SELECT count(*) FROM action x WHERE x.target_id = m.target_id) >= $4",
        (group, after, limit, quota),
    )
    .await
}

/// How many of `targets` have more than `max` actions.
pub async fn targets_over_quota(conn: &mut PgConnection, targets: &[i64], max: i64) -> Result<i64> {
    sql::scalar(
        conn,
        "SELECT count(*) FROM (SELECT target_id FROM action WHERE target_id = ANY($1)
                               GROUP BY target_id HAVING count(*) > $2) o",
        (targets, max),
    )
    .await
}
