//! The service keeps planner statistics of its fast-growing tables current (store::statistics):
//! a fleet registering in bulk must not leave the planner believing the target table is empty,
//! and the actions a rollout creates are analyzed right after it wrote them.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::*;

const BULK_TARGETS: &str = "INSERT INTO target (tenant_id, controller_id, name, security_token, update_status, created_by, last_modified_by)
     SELECT (SELECT id FROM tenant ORDER BY id LIMIT 1), 'bulk-' || n, 'bulk-' || n, md5(n::text), 'REGISTERED', 'test', 'test'
     FROM generate_series(1, 5000) AS n";

fn analyzed(table: &str) -> String {
    format!("SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables WHERE relname = '{table}'")
}

/// How many rows the planner believes `table` has.
fn planner_rows(app: &TestApp, table: &str) -> i64 {
    sql(
        app,
        &format!("SELECT reltuples::bigint FROM pg_class WHERE relname = '{table}'"),
    )
    .parse()
    .expect("a number")
}

/// Poll until `table` was analyzed by an explicit ANALYZE (`last_analyze`; autovacuum sets
/// `last_autoanalyze`), failing after `within`.
async fn wait_analyzed(app: &TestApp, table: &str, within: Duration) {
    poll(within, async || match sql(app, &analyzed(table)).as_str() {
        "t" => Ok(()),
        _ => Err(format!(
            "the service did not analyze {table} within {within:?}"
        )),
    })
    .await
}

#[tokio::test]
async fn a_table_that_grew_from_empty_is_analyzed_by_the_service() {
    let app = spawn_app().await;
    assert_eq!(
        sql(&app, &analyzed("target")),
        "f",
        "nothing analyzed the new table yet"
    );
    sql(&app, BULK_TARGETS);
    wait_analyzed(&app, "target", Duration::from_secs(20)).await;
    let estimate = planner_rows(&app, "target");
    assert!(
        estimate >= 4500,
        "planner estimate after ANALYZE: {estimate}"
    );
}

#[tokio::test]
async fn the_actions_a_rollout_creates_are_analyzed_without_waiting_for_the_next_check() {
    let app = spawn_app().await;
    sql(&app, BULK_TARGETS);
    // The periodic check (every 5 s) just ran: the next one is seconds away.
    wait_analyzed(&app, "target", Duration::from_secs(20)).await;
    let checked = Instant::now();
    let ds = app.create_set("fw").await;
    let r = app
        .create_rollout(json!({"name": "bulk", "distributionSetId": ds,
                   "targetFilterQuery": "controllerId==bulk-*", "amountGroups": 1}))
        .await;
    let id = r["id"].as_i64().expect("id");
    loop {
        let (_, v) = app.api_get(&format!("/rollouts/{id}")).await;
        if v["status"] == "ready" {
            break;
        }
        assert!(checked.elapsed() < Duration::from_secs(3), "not ready: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.start_rollout(id).await;
    // Scheduling writes 5,000 actions; the write itself wakes the refresh, well before the
    // periodic check comes round again.
    wait_analyzed(
        &app,
        "action",
        Duration::from_secs(4).saturating_sub(checked.elapsed()),
    )
    .await;
    let estimate = planner_rows(&app, "action");
    assert!(
        estimate >= 4500,
        "planner estimate after ANALYZE: {estimate}"
    );
}
