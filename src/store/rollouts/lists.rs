//! What the API lists of rollouts and groups: pages with a filter and an order, a group's
//! targets, and the rollouts of a distribution set by status.

use sqlx::{PgConnection, Postgres, QueryBuilder};

use super::{COLUMNS, FROM, GROUP_COLUMNS, groups_of, rollouts};
use crate::domain::ids::{GroupId, RolloutId, TenantId};
use crate::domain::rollout::{Group, Rollout};
use crate::store::Result;
use crate::store::filter::Filter;
use crate::store::filter::push_and;
use crate::store::page::{Base, Listing, PageRequest, SortFields, fetch};
use crate::store::targets;

/// `soft_deleted_mode` of rollout lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeletedMode {
    Exclude,
    Only,
    Include,
}

/// Sortable rollout fields: API name → column. `status` sorts by hawkBit's stored code
/// (`RolloutStatus::code`, checked by a test below).
pub const SORT: SortFields = SortFields::of(
    Base::Named,
    "r",
    &[("status", STATUS_CODE), ("totaltargets", "r.total_targets")],
    "r.id ASC",
);

const STATUS_CODE: &str = "CASE r.status WHEN 'CREATING' THEN 0 WHEN 'READY' THEN 1 \
    WHEN 'PAUSED' THEN 2 WHEN 'STARTING' THEN 3 WHEN 'STOPPED' THEN 4 WHEN 'RUNNING' THEN 5 \
    WHEN 'FINISHED' THEN 6 WHEN 'DELETING' THEN 9 WHEN 'DELETED' THEN 10 \
    WHEN 'WAITING_FOR_APPROVAL' THEN 11 WHEN 'APPROVAL_DENIED' THEN 12 \
    WHEN 'STOPPING' THEN 13 END";

const LIST: Listing = Listing {
    columns: COLUMNS,
    from: FROM,
    count_from: "rollout r",
    sort: &SORT,
};

/// A page of the tenant's rollouts.
pub async fn list(
    conn: &mut PgConnection,
    tenant: TenantId,
    q: Option<&Filter>,
    mode: DeletedMode,
    page: &PageRequest,
) -> Result<(Vec<Rollout>, i64)> {
    let (rows, total) = fetch(conn, &LIST, page, |qb| {
        qb.push("r.tenant_id = ").push_bind(tenant.0);
        match mode {
            DeletedMode::Exclude => qb.push(" AND NOT r.deleted"),
            DeletedMode::Only => qb.push(" AND r.deleted"),
            DeletedMode::Include => qb.push(""),
        };
        push_and(qb, q, "r");
    })
    .await?;
    Ok((rollouts(rows)?, total))
}

/// Sortable group fields (hawkBit validates group sorting against rollout fields, §9.2).
pub const GROUP_SORT: SortFields = SortFields::of(
    Base::Named,
    "g",
    &[("status", "g.status"), ("totaltargets", "g.total_targets")],
    "g.id ASC",
);

const GROUP_LIST: Listing = Listing {
    columns: GROUP_COLUMNS,
    from: "rollout_group g",
    count_from: "rollout_group g",
    sort: &GROUP_SORT,
};

/// A page of a rollout's groups.
pub async fn list_groups(
    conn: &mut PgConnection,
    rollout: RolloutId,
    q: Option<&Filter>,
    page: &PageRequest,
) -> Result<(Vec<Group>, i64)> {
    let (rows, total) = fetch(conn, &GROUP_LIST, page, |qb| {
        qb.push("g.rollout_id = ").push_bind(rollout.0);
        push_and(qb, q, "g");
    })
    .await?;
    Ok((groups_of(rows)?, total))
}

/// Ids of the targets of a group: its members and the targets of its actions (§12 #16), for the
/// group target listing. `q` filters targets (alias `t`).
pub fn push_group_targets(qb: &mut QueryBuilder<'_, Postgres>, group: GroupId) {
    let group = group.0;
    qb.push(" (t.id IN (SELECT target_id FROM rollout_target_group WHERE group_id = ")
        .push_bind(group)
        .push(") OR t.id IN (SELECT target_id FROM action WHERE rollout_group_id = ")
        .push_bind(group)
        .push(")) ");
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

const GROUP_TARGETS: Listing = Listing {
    columns: targets::COLUMNS,
    from: "target t LEFT JOIN target_type tt ON tt.id = t.target_type_id",
    count_from: "target t",
    sort: &targets::SORT,
};

/// A page of a group's targets: its members and the targets of its actions (§12 #16).
pub async fn group_targets(
    conn: &mut PgConnection,
    tenant: TenantId,
    group: GroupId,
    q: Option<&Filter>,
    page: &PageRequest,
) -> Result<(Vec<targets::TargetRow>, i64)> {
    fetch(conn, &GROUP_TARGETS, page, |qb| {
        qb.push("t.tenant_id = ").push_bind(tenant.0).push(" AND ");
        push_group_targets(qb, group);
        push_and(qb, q, "t");
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::rollout::RolloutStatus;

    #[test]
    fn the_status_sort_orders_by_hawkbits_codes() {
        for s in RolloutStatus::ALL {
            let arm = format!("WHEN '{}' THEN {} ", s.as_db(), s.code());
            assert!(format!("{STATUS_CODE} ").contains(&arm), "{arm}");
        }
    }
}
