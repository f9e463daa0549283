//! The service keeps planner statistics of its fast-growing tables current (store::statistics):
//! a fleet registering in bulk must not leave the planner believing the target table is empty.

use std::time::{Duration, Instant};

use crate::helpers::*;

#[tokio::test]
async fn a_table_that_grew_from_empty_is_analyzed_by_the_service() {
    let app = spawn_app().await;
    let analyzed =
        "SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables WHERE relname = 'target'";
    assert_eq!(
        sql(&app, analyzed),
        "f",
        "nothing analyzed the new table yet"
    );
    sql(
        &app,
        "INSERT INTO target (tenant_id, controller_id, name, security_token, update_status, created_by, last_modified_by)
         SELECT (SELECT id FROM tenant ORDER BY id LIMIT 1), 'bulk-' || n, 'bulk-' || n, md5(n::text), 'REGISTERED', 'test', 'test'
         FROM generate_series(1, 5000) AS n",
    );
    // `last_analyze` is set by an explicit ANALYZE only (autovacuum sets `last_autoanalyze`).
    let deadline = Instant::now() + Duration::from_secs(20);
    while sql(&app, analyzed) != "t" {
        assert!(
            Instant::now() < deadline,
            "the service never analyzed the grown table"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let estimate: i64 = sql(
        &app,
        "SELECT reltuples::bigint FROM pg_class WHERE relname = 'target'",
    )
    .parse()
    .expect("a number");
    assert!(
        estimate >= 4500,
        "planner estimate after ANALYZE: {estimate}"
    );
}
