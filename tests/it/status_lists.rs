//! The status lists in SQL agree with the Rust enums, so that a status added on one side fails
//! here until every place knows it: the CHECK constraints that enumerate values (read back from
//! the migrated schema with `pg_get_constraintdef`), and the group-counter trigger, driven through
//! every action status on a real row.

use std::collections::{BTreeMap, BTreeSet};

use dmf_broker::domain::action::{ActionStatus, ActionType, Counter};
use dmf_broker::domain::auto_assignment::{AutoAssignStatus, allowed_action_type, assigns};
use dmf_broker::domain::rollout::{GroupStatus, RolloutStatus};
use dmf_broker::domain::target::UpdateStatus;
use sqlx::PgPool;

use crate::helpers::TestDb;

/// Every enumerating CHECK constraint of the schema: (table, column) → the values it allows.
async fn enumerated_checks(pool: &PgPool) -> BTreeMap<(String, String), BTreeSet<String>> {
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT c.conrelid::regclass::text, a.attname::text, pg_get_constraintdef(c.oid)
         FROM pg_constraint c
         JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)
         WHERE c.contype = 'c' AND c.connamespace = 'public'::regnamespace",
    )
    .fetch_all(pool)
    .await
    .expect("constraints");
    let mut out = BTreeMap::new();
    for (table, column, def) in rows {
        // `col IN ('A', 'B')` reads back as `CHECK ((col = ANY (ARRAY['A'::text, 'B'::text])))`.
        let Some(list) = def.split("ARRAY[").nth(1) else {
            continue;
        };
        let values: BTreeSet<String> = list
            .split(',')
            .filter_map(|v| v.trim().strip_prefix('\'')?.split_once('\''))
            .map(|(v, _)| v.to_owned())
            .collect();
        assert!(!values.is_empty(), "{table}.{column}: unreadable {def}");
        let old = out.insert((table.clone(), column.clone()), values);
        assert!(old.is_none(), "two enumerating checks on {table}.{column}");
    }
    out
}

/// A partial index's definition and the quoted values it lists.
async fn index_values(pool: &PgPool, index: &str) -> (String, BTreeSet<String>) {
    let (def,): (String,) = sqlx::query_as("SELECT pg_get_indexdef($1::regclass)")
        .bind(index)
        .fetch_one(pool)
        .await
        .expect(index);
    let values = def
        .split('\'')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect();
    (def, values)
}

fn names(values: impl IntoIterator<Item = &'static str>) -> BTreeSet<String> {
    values.into_iter().map(str::to_owned).collect()
}

/// The update statuses a target can have. `UpdateStatus` has no `ALL`; the match makes a new
/// variant a compile error here until it is listed.
fn update_statuses() -> BTreeSet<String> {
    use UpdateStatus::*;
    let all = [Unknown, InSync, Pending, Error, Registered];
    for s in all {
        match s {
            Unknown | InSync | Pending | Error | Registered => {}
        }
    }
    names(all.map(UpdateStatus::as_db))
}

#[tokio::test]
async fn every_enumerating_check_constraint_matches_its_rust_enum() {
    let db = TestDb::migrated().await;
    let pool = db.pool().await;
    let mut checks = enumerated_checks(&pool).await;
    let mut take = |table: &str, column: &str| {
        checks
            .remove(&(table.to_owned(), column.to_owned()))
            .unwrap_or_else(|| panic!("no enumerating CHECK on {table}.{column}"))
    };

    let actions = names(ActionStatus::ALL.map(ActionStatus::as_db));
    assert_eq!(take("action", "status"), actions, "action.status");
    let rollouts = names(RolloutStatus::ALL.map(RolloutStatus::as_db));
    assert_eq!(take("rollout", "status"), rollouts, "rollout.status");
    let groups = names(GroupStatus::ALL.map(GroupStatus::as_db));
    assert_eq!(
        take("rollout_group", "status"),
        groups,
        "rollout_group.status"
    );
    let types = names(ActionType::ALL.map(ActionType::as_db));
    assert_eq!(take("action", "action_type"), types, "action.action_type");
    assert_eq!(take("rollout", "action_type"), types, "rollout.action_type");
    assert_eq!(
        take("target", "update_status"),
        update_statuses(),
        "target.update_status"
    );
    // Auto-assignment offers every action type but the time-forced one (as hawkBit does).
    assert_eq!(
        take("auto_assignment", "action_type"),
        names(
            ActionType::ALL
                .into_iter()
                .filter(|t| allowed_action_type(*t))
                .map(ActionType::as_db)
        ),
        "auto_assignment.action_type"
    );
    let auto_statuses = names(AutoAssignStatus::ALL.map(AutoAssignStatus::as_db));
    assert_eq!(
        take("auto_assignment", "status"),
        auto_statuses,
        "auto_assignment.status"
    );
    // Outbox row kinds have no Rust enum: store::outbox matches on these strings.
    assert_eq!(
        take("outbox", "kind"),
        names(["message", "action", "target", "batch"]),
        "outbox.kind"
    );
    // A new enumerating CHECK must be compared with its enum above.
    assert!(
        checks.is_empty(),
        "enumerating CHECK constraints not compared with a Rust enum: {checks:?}"
    );

    // The partial index of active rollouts lists statuses too: each must be one.
    let (index, listed) = index_values(&pool, "rollout_active").await;
    assert!(!listed.is_empty(), "{index}");
    assert!(listed.is_subset(&rollouts), "{index}: {listed:?}");
    // So does the one of assigning auto-assignments: exactly the statuses that may assign.
    let (index, listed) = index_values(&pool, "auto_assignment_active").await;
    let may_assign = names(
        AutoAssignStatus::ALL
            .into_iter()
            .filter(|s| assigns(*s, None, 0))
            .map(AutoAssignStatus::as_db),
    );
    assert_eq!(listed, may_assign, "{index}");
    pool.close().await;
}

/// The counters of the one group, in the order of [`BUCKETS`].
async fn counters(pool: &PgPool, group: i64) -> [i64; 6] {
    let (s, r, d, f, e, c): (i64, i64, i64, i64, i64, i64) = sqlx::query_as(
        "SELECT n_scheduled, n_running, n_downloaded, n_finished, n_error, n_canceled
         FROM rollout_group WHERE id = $1",
    )
    .bind(group)
    .fetch_one(pool)
    .await
    .expect("group counters");
    [s, r, d, f, e, c]
}

/// Deletes the group's actions (the trigger's DELETE path): every counter back to zero.
async fn delete_actions(pool: &PgPool, group: i64) {
    sqlx::query("DELETE FROM action WHERE rollout_group_id = $1")
        .bind(group)
        .execute(pool)
        .await
        .expect("delete");
    assert_eq!(counters(pool, group).await, [0; 6], "after DELETE");
}

const BUCKETS: [Counter; 6] = [
    Counter::Scheduled,
    Counter::Running,
    Counter::Downloaded,
    Counter::Finished,
    Counter::Error,
    Counter::Canceled,
];

/// What the counters should read for actions in `statuses` (the domain's buckets).
fn expected(statuses: &[ActionStatus]) -> [i64; 6] {
    BUCKETS.map(|b| statuses.iter().filter(|s| s.counter() == b).count() as i64)
}

#[tokio::test]
async fn the_group_counter_trigger_counts_every_action_status_in_the_domains_bucket() {
    let db = TestDb::migrated().await;
    let pool = db.pool().await;
    // Tenant, set type, set, rollout, one group: the least a group-bound action needs.
    let (group,): (i64,) = sqlx::query_as(
        "WITH t AS (INSERT INTO tenant (name) VALUES ('COUNTERS') RETURNING id),
         ty AS (INSERT INTO distribution_set_type (tenant_id, key, name, created_by, last_modified_by)
                SELECT id, 'os', 'OS', 'test', 'test' FROM t RETURNING id, tenant_id),
         ds AS (INSERT INTO distribution_set (tenant_id, type_id, name, version, created_by, last_modified_by)
                SELECT tenant_id, id, 'fw', '1', 'test', 'test' FROM ty RETURNING id, tenant_id),
         r AS (INSERT INTO rollout (tenant_id, name, target_filter, ds_id, status, action_type,
                                    success_condition, success_condition_exp, success_action,
                                    created_by, last_modified_by)
               SELECT tenant_id, 'counters', 'name==*', id, 'RUNNING', 'FORCED',
                      'THRESHOLD', '100', 'NEXTGROUP', 'test', 'test' FROM ds RETURNING id)
         INSERT INTO rollout_group (rollout_id, name, status, success_condition,
                                    success_condition_exp, success_action, created_by, last_modified_by)
         SELECT id, 'g1', 'RUNNING', 'THRESHOLD', '100', 'NEXTGROUP', 'test', 'test' FROM r
         RETURNING id",
    )
    .fetch_one(&pool)
    .await
    .expect("rollout fixture");
    let insert = |statuses: Vec<&'static str>| {
        sqlx::query(
            "INSERT INTO action (tenant_id, target_id, ds_id, action_type, active, status,
                                 rollout_id, rollout_group_id, initiated_by, created_by, last_modified_by)
             SELECT r.tenant_id, 0, r.ds_id, 'FORCED', true, s, r.id, g.id, 'test', 'test', 'test'
             FROM rollout_group g JOIN rollout r ON r.id = g.rollout_id, unnest($2::text[]) AS s
             WHERE g.id = $1",
        )
        .bind(group)
        .bind(statuses)
    };
    assert_eq!(counters(&pool, group).await, [0; 6]);

    // One action moved through every status (UPDATE): always exactly its bucket.
    insert(vec![ActionStatus::Scheduled.as_db()])
        .execute(&pool)
        .await
        .expect("insert one action");
    let mut now = ActionStatus::Scheduled;
    for next in ActionStatus::ALL
        .into_iter()
        .chain([ActionStatus::Scheduled])
    {
        sqlx::query("UPDATE action SET status = $1 WHERE rollout_group_id = $2")
            .bind(next.as_db())
            .bind(group)
            .execute(&pool)
            .await
            .expect("status update");
        assert_eq!(
            counters(&pool, group).await,
            expected(&[next]),
            "{now:?} → {next:?}: counters [scheduled, running, downloaded, finished, error, canceled]"
        );
        now = next;
    }
    // One action in each status, inserted in one statement (INSERT), then deleted (DELETE).
    delete_actions(&pool, group).await;
    insert(ActionStatus::ALL.map(ActionStatus::as_db).to_vec())
        .execute(&pool)
        .await
        .expect("insert one action per status");
    assert_eq!(
        counters(&pool, group).await,
        expected(&ActionStatus::ALL),
        "one action per status"
    );
    delete_actions(&pool, group).await;
    pool.close().await;
}
