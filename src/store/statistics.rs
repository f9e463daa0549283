//! Planner statistics of the tables that grow fastest. A fleet registering or a rollout creating
//! its actions can multiply a table within seconds, long before autovacuum's next ANALYZE; with
//! statistics that still describe an empty table the planner picks sequential scans and hash
//! joins that cost tens of milliseconds per statement (seen in the bench at 100,000 devices).

use sqlx::PgConnection;

use super::Result;

/// Tables whose statistics are kept current (the outbox churns but is always read in id order).
const TABLES: &[&str] = &["target", "action", "action_status", "rollout_target_group"];

/// ANALYZE a table once changes since its last ANALYZE reach this share of its rows (a table
/// that grew from empty qualifies at once)…
const CHANGED_SHARE: f64 = 0.2;
/// …and at least this many.
const CHANGED_MIN: i64 = 1000;

/// Analyze the tables whose statistics fell behind; returns their names.
pub async fn refresh(conn: &mut PgConnection) -> Result<Vec<String>> {
    let stale: Vec<String> = sqlx::query_scalar(
        "SELECT relname::text FROM pg_stat_user_tables
         WHERE schemaname = current_schema() AND relname = ANY($1)
           AND n_mod_since_analyze >= $2
           AND n_mod_since_analyze >= $3 * n_live_tup
         ORDER BY relname",
    )
    .bind(TABLES)
    .bind(CHANGED_MIN)
    .bind(CHANGED_SHARE)
    .fetch_all(&mut *conn)
    .await?;
    for table in &stale {
        // Names come from the constant list above, never from input.
        sqlx::query(&format!("ANALYZE {table}"))
            .execute(&mut *conn)
            .await?;
    }
    Ok(stale)
}
