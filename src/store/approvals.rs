//! Approval webhook notices (migration 6): written with the state change that makes a rollout
//! wait for approval, leased and delivered by the engine's deliverer, withdrawn when the rollout
//! no longer waits.

use sqlx::PgConnection;

use super::Result;
use super::sql;
use crate::domain::ids::RolloutId;

/// A notice leased for delivery.
#[derive(Debug, Clone)]
pub struct Notice {
    pub rollout: RolloutId,
    pub body: serde_json::Value,
    /// Attempts including this one.
    pub attempts: i32,
}

/// Write (or renew) the notice of a rollout that now waits for approval.
pub async fn enqueue(
    conn: &mut PgConnection,
    rollout: RolloutId,
    body: &serde_json::Value,
) -> Result<()> {
    sql::execute(
        conn,
        "INSERT INTO approval_notice (rollout_id, body) VALUES ($1, $2)
         ON CONFLICT (rollout_id) DO UPDATE SET body = EXCLUDED.body, attempts = 0,
             next_attempt_at = epoch_ms(), last_error = NULL",
        (rollout.0, body),
    )
    .await?;
    Ok(())
}

/// Drop the notice of a rollout that no longer waits, or whose notice was delivered.
pub async fn withdraw(conn: &mut PgConnection, rollout: RolloutId) -> Result<()> {
    sql::execute(
        conn,
        "DELETE FROM approval_notice WHERE rollout_id = $1",
        (rollout.0,),
    )
    .await?;
    Ok(())
}

/// Lease up to `limit` due notices for `lease_ms`: another deliverer (or this one after a
/// crash) takes them again only when the lease ran out.
pub async fn lease_due(conn: &mut PgConnection, limit: i64, lease_ms: i64) -> Result<Vec<Notice>> {
    let rows: Vec<(i64, serde_json::Value, i32)> = sql::fetch_all(
        conn,
        "UPDATE approval_notice n SET attempts = n.attempts + 1,
                next_attempt_at = epoch_ms() + $2
         WHERE n.rollout_id IN (SELECT rollout_id FROM approval_notice
                                WHERE next_attempt_at <= epoch_ms()
                                ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)
         RETURNING n.rollout_id, n.body, n.attempts",
        (limit, lease_ms),
    )
    .await?;
    Ok(rows
        .into_iter()
        .map(|(r, body, attempts)| Notice {
            rollout: RolloutId(r),
            body,
            attempts,
        })
        .collect())
}

/// A delivery failed: try again after `retry_ms`, remembering why.
pub async fn failed(
    conn: &mut PgConnection,
    rollout: RolloutId,
    retry_ms: i64,
    error: &str,
) -> Result<()> {
    sql::execute(
        conn,
        "UPDATE approval_notice SET next_attempt_at = epoch_ms() + $2, last_error = $3
         WHERE rollout_id = $1",
        (rollout.0, retry_ms, error),
    )
    .await?;
    Ok(())
}

/// The earliest due time of any notice (ms), if there is one.
pub async fn next_due(conn: &mut PgConnection) -> Result<Option<i64>> {
    Ok(
        sqlx::query_scalar("SELECT min(next_attempt_at) FROM approval_notice")
            .fetch_one(conn)
            .await?,
    )
}
