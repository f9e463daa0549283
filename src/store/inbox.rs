//! Digests of processed inbound messages. A redelivered message whose digest is here was
//! committed before the crash that prevented its ack, and is skipped.

use sqlx::PgConnection;

use super::Result;
use super::sql;

/// Which of `digests` were processed before.
pub async fn seen(conn: &mut PgConnection, digests: &[Vec<u8>]) -> Result<Vec<Vec<u8>>> {
    if digests.is_empty() {
        return Ok(Vec::new());
    }
    sql::scalar_all(
        conn,
        "SELECT digest FROM inbox WHERE digest = ANY($1)",
        (digests,),
    )
    .await
}

/// Record digests as processed (in the transaction that applies the messages).
pub async fn record(conn: &mut PgConnection, digests: &[Vec<u8>]) -> Result<()> {
    if digests.is_empty() {
        return Ok(());
    }
    sql::execute(
        conn,
        "INSERT INTO inbox (digest) SELECT DISTINCT d FROM unnest($1::bytea[]) AS d
         ON CONFLICT (digest) DO UPDATE SET processed_at = epoch_ms()",
        (digests,),
    )
    .await?;
    Ok(())
}

/// Forget digests older than `max_age_ms`: a message is redelivered within minutes, not days.
pub async fn purge(conn: &mut PgConnection, max_age_ms: i64) -> Result<u64> {
    sql::execute(
        conn,
        "DELETE FROM inbox WHERE processed_at < epoch_ms() - $1",
        (max_age_ms,),
    )
    .await
}
