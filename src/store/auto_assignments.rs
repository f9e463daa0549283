//! Auto-assignments (rollouts.md §1.4): the rows, the REST list, and the statements that find
//! the targets an auto-assignment gets: the ones that match its query, are compatible with the
//! set's type and never had an action of the set — among given targets (a target that just
//! registered or changed), or the next chunk of the fleet by id (the pass after a start).

use sqlx::{PgConnection, Postgres, QueryBuilder};

use super::filter::{Filter, push_and};
use super::page::{Base, Listing, PageRequest, SortFields, fetch};
use super::rollouts::members::push_compatible;
use super::table::Table;
use super::targets::{self, TargetRow};
use super::{Audit, Named, Result, sql};
use crate::domain::action::ActionType;
use crate::domain::auto_assignment::AutoAssignStatus;
use crate::domain::ids::{DsId, TenantId};

/// An auto-assignment with its set's name, version and type.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AutoAssignmentRow {
    pub id: i64,
    pub tenant_id: TenantId,
    #[sqlx(flatten)]
    pub named: Named,
    pub query: String,
    pub ds_id: DsId,
    pub ds_name: String,
    pub ds_version: String,
    pub ds_type_id: i64,
    pub action_type: ActionType,
    pub weight: i32,
    pub confirmation_required: bool,
    pub start_at: Option<i64>,
    pub status: AutoAssignStatus,
    pub approval_decided_by: Option<String>,
    pub approval_remark: Option<String>,
    pub target_filter_id: Option<i64>,
    pub pass_after: Option<i64>,
    #[sqlx(flatten)]
    pub audit: Audit,
}

const COLUMNS: &str = "aa.id, aa.tenant_id, aa.name, aa.description, aa.query, aa.ds_id,
    ds.name AS ds_name, ds.version AS ds_version, ds.type_id AS ds_type_id, aa.action_type,
    aa.weight, aa.confirmation_required, aa.start_at, aa.status, aa.approval_decided_by,
    aa.approval_remark, aa.target_filter_id, aa.pass_after, aa.created_at, aa.created_by,
    aa.last_modified_at, aa.last_modified_by";

const JOINS: &str = "JOIN distribution_set ds ON ds.id = aa.ds_id";

/// How lists sort: API name → column; by id unless asked otherwise.
pub const SORT: SortFields = SortFields::of(
    Base::Named,
    "aa",
    &[
        ("status", "aa.status"),
        ("actiontype", "aa.action_type"),
        ("weight", "aa.weight"),
        ("approvaldecidedby", "aa.approval_decided_by"),
    ],
    "aa.id ASC",
);

/// The tenant's auto-assignments.
pub const TABLE: Table<AutoAssignmentRow> =
    Table::new("auto_assignment", "aa", COLUMNS, &SORT).joined(JOINS);

/// An auto-assignment to insert.
#[derive(Debug, Clone)]
pub struct NewAutoAssignment {
    pub named: Named,
    pub query: String,
    pub ds: DsId,
    pub action_type: ActionType,
    pub weight: i32,
    pub confirmation_required: bool,
    pub start_at: Option<i64>,
    pub status: AutoAssignStatus,
    pub target_filter: Option<i64>,
}

/// Insert one; returns its id.
pub async fn insert(
    conn: &mut PgConnection,
    tenant: TenantId,
    a: &NewAutoAssignment,
    user: &str,
) -> Result<i64> {
    sql::scalar(
        conn,
        "INSERT INTO auto_assignment (tenant_id, name, description, query, ds_id, action_type,
             weight, confirmation_required, start_at, status, target_filter_id, created_by,
             last_modified_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12) RETURNING id",
        (
            tenant,
            &a.named.name,
            &a.named.description,
            &a.query,
            a.ds,
            a.action_type,
            a.weight,
            a.confirmation_required,
            a.start_at,
            a.status,
            a.target_filter,
            user,
        ),
    )
    .await
    .map_err(|e| e.conflict_as(|| "the target filter already has an auto-assignment".into()))
}

/// Change name and/or description (`None` = unchanged). False when there is none.
pub async fn update(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: i64,
    name: Option<&str>,
    description: Option<&str>,
    user: &str,
) -> Result<bool> {
    let sql = "UPDATE auto_assignment SET name = COALESCE($3, name),
                      description = COALESCE($4, description),
                      last_modified_at = epoch_ms(), last_modified_by = $5,
                      opt_lock_revision = opt_lock_revision + 1
               WHERE tenant_id = $1 AND id = $2";
    Ok(sql::execute(conn, sql, (tenant, id, name, description, user)).await? > 0)
}

/// A new status; `full_pass` starts a pass over the fleet from its first target. The decision
/// (`approval`: who and why) is kept when given.
pub async fn set_status(
    conn: &mut PgConnection,
    id: i64,
    status: AutoAssignStatus,
    full_pass: bool,
    approval: Option<(&str, Option<&str>)>,
    user: &str,
) -> Result<()> {
    let (decided_by, remark, decided) = match approval {
        Some((by, remark)) => (Some(by), remark, true),
        None => (None, None, false),
    };
    sql::execute(
        conn,
        "UPDATE auto_assignment SET status = $2,
                pass_after = CASE WHEN $3 THEN 0 ELSE pass_after END,
                approval_decided_by = CASE WHEN $4 THEN $5 ELSE approval_decided_by END,
                approval_remark = CASE WHEN $4 THEN $6 ELSE approval_remark END,
                last_modified_at = epoch_ms(), last_modified_by = $7,
                opt_lock_revision = opt_lock_revision + 1
         WHERE id = $1",
        (id, status, full_pass, decided, decided_by, remark, user),
    )
    .await?;
    Ok(())
}

/// Lock one of the tenant's auto-assignments for a change of its status.
pub async fn lock(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: i64,
) -> Result<Option<AutoAssignmentRow>> {
    TABLE.lock(conn, tenant, id).await
}

/// The statuses in which an auto-assignment may create actions: READY ones whose start time has
/// come and RUNNING ones (`domain::auto_assignment::assigns`, tested against this).
const ASSIGNS: &str = "(aa.status = 'RUNNING'
    OR (aa.status = 'READY' AND (aa.start_at IS NULL OR aa.start_at <= $2)))";

/// The tenants' auto-assignments that create actions at `now`, in the order they are applied:
/// by weight, then id, so in single-assignment mode the heaviest (then newest) is assigned last
/// and stays.
pub async fn assigning(
    conn: &mut PgConnection,
    tenants: &[TenantId],
    now: i64,
) -> Result<Vec<AutoAssignmentRow>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM auto_assignment aa {JOINS}
         WHERE aa.tenant_id = ANY($1) AND {ASSIGNS} ORDER BY aa.weight, aa.id"
    );
    sql::fetch_all(conn, &sql, (tenants, now)).await
}

/// Auto-assignments with work for the worker at `now`: a READY one to start, or a pass over
/// the fleet under way.
pub async fn with_work(conn: &mut PgConnection, now: i64) -> Result<Vec<AutoAssignmentRow>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM auto_assignment aa {JOINS}
         WHERE (aa.status = 'READY' AND (aa.start_at IS NULL OR aa.start_at <= $1))
            OR (aa.status = 'RUNNING' AND aa.pass_after IS NOT NULL)
         ORDER BY aa.tenant_id, aa.weight, aa.id"
    );
    sql::fetch_all(conn, &sql, (now,)).await
}

/// The safety pass: every RUNNING auto-assignment without a pass under way goes through the
/// fleet again (catching a target whose change no event reported). Returns how many.
pub async fn start_safety_passes(conn: &mut PgConnection) -> Result<u64> {
    let sql = "UPDATE auto_assignment SET pass_after = 0
               WHERE status = 'RUNNING' AND pass_after IS NULL";
    Ok(sqlx::query(sql).execute(conn).await?.rows_affected())
}

/// Where the fleet pass stands: after target `after`, or done (`None`).
pub async fn set_pass(conn: &mut PgConnection, id: i64, after: Option<i64>) -> Result<()> {
    sql::execute(
        conn,
        "UPDATE auto_assignment SET pass_after = $2 WHERE id = $1",
        (id, after),
    )
    .await?;
    Ok(())
}

/// Delete the auto-assignments of a set (it was invalidated). Returns how many.
pub async fn delete_of_set(conn: &mut PgConnection, ds: DsId) -> Result<u64> {
    sql::execute(conn, "DELETE FROM auto_assignment WHERE ds_id = $1", (ds,)).await
}

/// Which targets to look at.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// These targets (they just registered or changed).
    Targets(&'a [i64]),
    /// The next targets of the fleet by id, after this one, at most `limit` matching.
    After { after: i64, limit: i64 },
}

/// What [`matching_targets`] found.
#[derive(Debug)]
pub struct Matched {
    /// The targets to assign, locked, in id order.
    pub targets: Vec<TargetRow>,
    /// How many matched before the re-check, and the last of them: where a pass goes on.
    pub found: usize,
    pub last: Option<i64>,
}

/// The targets of `scope` that `a` gets an action for, locked, in id order: they match its
/// query `filter`, are compatible with the set's type and never had an action of the set.
pub async fn matching_targets(
    conn: &mut PgConnection,
    a: &AutoAssignmentRow,
    filter: &Filter,
    scope: Scope<'_>,
) -> Result<Matched> {
    let mut qb: QueryBuilder<'_, Postgres> = QueryBuilder::new(format!(
        "SELECT {} FROM target t LEFT JOIN target_type tt ON tt.id = t.target_type_id WHERE t.tenant_id = ",
        targets::COLUMNS
    ));
    qb.push_bind(a.tenant_id);
    match scope {
        Scope::Targets(ids) => {
            qb.push(" AND t.id = ANY(").push_bind(ids).push(")");
        }
        Scope::After { after, .. } => {
            qb.push(" AND t.id > ").push_bind(after);
        }
    }
    qb.push(" AND ");
    filter.push_sql(&mut qb, "t");
    push_compatible(&mut qb, a.ds_type_id);
    qb.push(" AND NOT EXISTS (SELECT 1 FROM action x WHERE x.target_id = t.id AND x.ds_id = ")
        .push_bind(a.ds_id)
        .push(") ORDER BY t.id");
    if let Scope::After { limit, .. } = scope {
        qb.push(" LIMIT ").push_bind(limit);
    }
    qb.push(" FOR UPDATE OF t");
    let rows: Vec<TargetRow> = qb.build_query_as().fetch_all(&mut *conn).await?;
    // The lock may have waited for a transaction that gave a target its action of the set;
    // the statement's snapshot predates that, a new statement sees it.
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let (found, last) = (ids.len(), ids.last().copied());
    let taken: Vec<(i64,)> = sql::fetch_all(
        conn,
        "SELECT DISTINCT target_id FROM action WHERE target_id = ANY($1) AND ds_id = $2",
        (&ids, a.ds_id),
    )
    .await?;
    let targets = rows
        .into_iter()
        .filter(|r| !taken.contains(&(r.id,)))
        .collect();
    Ok(Matched {
        targets,
        found,
        last,
    })
}

/// How many targets an auto-assignment of `ds` with `filter` would assign now (the create
/// quota).
pub async fn count_matching(
    conn: &mut PgConnection,
    tenant: TenantId,
    filter: &Filter,
    ds: DsId,
) -> Result<i64> {
    let type_sql = "SELECT type_id FROM distribution_set WHERE id = $1";
    let ds_type: i64 = sql::scalar(&mut *conn, type_sql, (ds,)).await?;
    let mut qb: QueryBuilder<'_, Postgres> =
        QueryBuilder::new("SELECT count(*) FROM target t WHERE t.tenant_id = ");
    qb.push_bind(tenant).push(" AND ");
    filter.push_sql(&mut qb, "t");
    push_compatible(&mut qb, ds_type);
    qb.push(" AND NOT EXISTS (SELECT 1 FROM action x WHERE x.target_id = t.id AND x.ds_id = ")
        .push_bind(ds)
        .push(")");
    Ok(qb.build_query_scalar().fetch_one(conn).await?)
}

const OF_SET: Listing = Listing {
    columns: COLUMNS,
    from: "auto_assignment aa JOIN distribution_set ds ON ds.id = aa.ds_id",
    count_from: "auto_assignment aa",
    sort: &SORT,
};

/// A page of the auto-assignments of a set matching `q`, and their total.
pub async fn of_set(
    conn: &mut PgConnection,
    tenant: TenantId,
    ds: DsId,
    q: Option<&Filter>,
    page: &PageRequest,
) -> Result<(Vec<AutoAssignmentRow>, i64)> {
    fetch(conn, &OF_SET, page, |qb| {
        qb.push("aa.tenant_id = ").push_bind(tenant);
        qb.push(" AND aa.ds_id = ").push_bind(ds);
        push_and(qb, q, "aa");
    })
    .await
}

/// How many auto-assignments a set has.
pub async fn count_of_set(conn: &mut PgConnection, tenant: TenantId, ds: DsId) -> Result<i64> {
    let sql = "SELECT count(*) FROM auto_assignment WHERE tenant_id = $1 AND ds_id = $2";
    sql::scalar(conn, sql, (tenant, ds)).await
}

/// Remove a filter's auto-assignment (legacy API). False if it had none.
pub async fn unlink_filter(conn: &mut PgConnection, tenant: TenantId, filter: i64) -> Result<bool> {
    let sql = "DELETE FROM auto_assignment WHERE tenant_id = $1 AND target_filter_id = $2";
    Ok(sql::execute(conn, sql, (tenant, filter)).await? > 0)
}

/// A filter's auto-assignment follows the filter's name and query; a running one goes through
/// the fleet again when the query changed.
pub async fn follow_filter(conn: &mut PgConnection, tenant: TenantId, filter: i64) -> Result<()> {
    sql::execute(
        conn,
        "UPDATE auto_assignment aa SET name = f.name,
                pass_after = CASE WHEN aa.query <> f.query AND aa.status = 'RUNNING' THEN 0
                                  ELSE aa.pass_after END,
                query = f.query, last_modified_at = epoch_ms()
         FROM target_filter_query f
         WHERE f.id = aa.target_filter_id AND aa.tenant_id = $1 AND f.id = $2",
        (tenant, filter),
    )
    .await?;
    Ok(())
}

const OF_SET_FILTERS_FROM: &str = "target_filter_query f JOIN auto_assignment la
    ON la.target_filter_id = f.id";

/// A page of the filters whose auto-assignment assigns `ds` (legacy `autoAssignTargetFilters`),
/// and their total.
pub async fn filters_of_set(
    conn: &mut PgConnection,
    tenant: TenantId,
    ds: DsId,
    q: Option<&Filter>,
    page: &PageRequest,
) -> Result<(Vec<super::target_filters::TargetFilterRow>, i64)> {
    let listing = Listing {
        columns: super::target_filters::COLUMNS,
        from: OF_SET_FILTERS_FROM,
        count_from: OF_SET_FILTERS_FROM,
        sort: &super::target_filters::SORT,
    };
    fetch(conn, &listing, page, |qb| {
        qb.push("f.tenant_id = ").push_bind(tenant);
        qb.push(" AND la.ds_id = ").push_bind(ds);
        push_and(qb, q, "f");
    })
    .await
}
