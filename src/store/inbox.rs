//! Digests of processed inbound messages. A redelivered message whose digest is here was
//! committed before the crash that prevented its ack, and is skipped.

use sqlx::PgConnection;

use super::Result;

/// Which of `digests` were processed before.
pub async fn seen(conn: &mut PgConnection, digests: &[Vec<u8>]) -> Result<Vec<Vec<u8>>> {
    if digests.is_empty() {
        return Ok(Vec::new());
    }
    Ok(
        sqlx::query_scalar("SELECT digest FROM inbox WHERE digest = ANY($1)")
            .bind(digests)
            .fetch_all(conn)
            .await?,
    )
}

/// Record digests as processed (in the transaction that applies the messages).
pub async fn record(conn: &mut PgConnection, digests: &[Vec<u8>]) -> Result<()> {
    if digests.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO inbox (digest) SELECT DISTINCT d FROM unnest($1::bytea[]) AS d
         ON CONFLICT (digest) DO UPDATE SET processed_at = epoch_ms()",
    )
    .bind(digests)
    .execute(conn)
    .await?;
    Ok(())
}

/// Forget digests older than `max_age_ms`: a message is redelivered within minutes, not days.
pub async fn purge(conn: &mut PgConnection, max_age_ms: i64) -> Result<u64> {
    Ok(
        sqlx::query("DELETE FROM inbox WHERE processed_at < epoch_ms() - $1")
            .bind(max_age_ms)
            .execute(conn)
            .await?
            .rows_affected(),
    )
}
