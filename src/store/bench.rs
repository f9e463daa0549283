//! The SQL of `dmf-broker bench` (`crate::bench`): the database it owns for one run, the raw
//! PostgreSQL ceilings it measures on scratch tables, and bulk targets for the rollout-creation
//! figure. Never used by the service itself.

use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};

use super::sql;
use super::{Result, StoreError};

/// A single connection to `url` (the bench measures on one connection, as the service's
/// consumer commits its batches on one).
pub async fn connect(url: &str) -> Result<PgConnection> {
    Ok(PgConnectOptions::from_str(url)
        .map_err(StoreError::Permanent)?
        .disable_statement_logging()
        .connect()
        .await?)
}

/// Drop the database named in `url`, disconnecting whoever still uses it.
pub async fn drop_database(url: &str) -> Result<()> {
    let opts = PgConnectOptions::from_str(url).map_err(StoreError::Permanent)?;
    let Some(name) = opts.get_database().map(str::to_owned) else {
        return Ok(());
    };
    let mut conn = opts
        .database("postgres")
        .disable_statement_logging()
        .connect()
        .await?;
    let quoted = format!("\"{}\"", name.replace('"', "\"\""));
    sqlx::query(&format!("DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"))
        .execute(&mut conn)
        .await?;
    let _ = conn.close().await;
    Ok(())
}

/// `SELECT version()`, for the report.
pub async fn server_version(conn: &mut PgConnection) -> Result<String> {
    Ok(sqlx::query_scalar("SELECT version()")
        .fetch_one(conn)
        .await?)
}

/// The id of a tenant by its (upper-case) name.
pub async fn tenant_id(conn: &mut PgConnection, name: &str) -> Result<Option<i64>> {
    sql::scalar_optional(conn, "SELECT id FROM tenant WHERE name = $1", (name,)).await
}

/// Drop the scratch table `name` if it is left from an earlier run and create it anew with
/// `columns` (a column list).
async fn recreate_scratch(conn: &mut PgConnection, name: &str, columns: &str) -> Result<()> {
    let drop = format!("DROP TABLE IF EXISTS {name}");
    sql::execute(&mut *conn, &drop, ()).await?;
    sql::execute(conn, &format!("CREATE TABLE {name} ({columns})"), ()).await?;
    Ok(())
}

/// A scratch table of `rows` rows shaped like the hot part of `action` (id, status, time).
pub async fn create_update_scratch(conn: &mut PgConnection, rows: i64) -> Result<()> {
    recreate_scratch(
        conn,
        "bench_update_scratch",
        "id bigint PRIMARY KEY, status integer NOT NULL, last_modified_at bigint NOT NULL",
    )
    .await?;
    sql::execute(
        &mut *conn,
        "INSERT INTO bench_update_scratch (id, status, last_modified_at)
         SELECT i, 0, 0 FROM generate_series(1, $1) AS i",
        (rows,),
    )
    .await?;
    sqlx::query("ANALYZE bench_update_scratch")
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// One batch of the raw update ceiling, in its own transaction:
/// `UPDATE … FROM unnest(ids, statuses)`, the statement shape the service uses for batches.
pub async fn update_scratch_batch(
    conn: &mut PgConnection,
    ids: &[i64],
    statuses: &[i32],
    now_ms: i64,
) -> Result<u64> {
    let mut tx = conn.begin().await?;
    let n = sql::execute(
        &mut tx,
        "UPDATE bench_update_scratch s SET status = u.status, last_modified_at = $3
         FROM unnest($1::bigint[], $2::integer[]) AS u(id, status)
         WHERE s.id = u.id",
        (ids, statuses, now_ms),
    )
    .await?;
    tx.commit().await?;
    Ok(n)
}

/// The raw floor of splitting a rollout: insert `rows` (group, target) pairs, one transaction.
pub async fn insert_pairs_scratch(conn: &mut PgConnection, rows: i64) -> Result<u64> {
    recreate_scratch(
        conn,
        "bench_pairs_scratch",
        "rollout_group bigint NOT NULL, target bigint NOT NULL,
         PRIMARY KEY (rollout_group, target)",
    )
    .await?;
    sql::execute(
        &mut *conn,
        "INSERT INTO bench_pairs_scratch (rollout_group, target)
         SELECT i / 20000, i FROM generate_series(1, $1) AS i",
        (rows,),
    )
    .await
}

/// Remove the scratch tables.
pub async fn drop_scratch(conn: &mut PgConnection) -> Result<()> {
    sqlx::query("DROP TABLE IF EXISTS bench_update_scratch, bench_pairs_scratch")
        .execute(conn)
        .await?;
    Ok(())
}

/// Insert `count` plain targets `<prefix><0000001>` (no address: they are never contacted).
pub async fn insert_targets(
    conn: &mut PgConnection,
    tenant: i64,
    prefix: &str,
    count: i64,
) -> Result<u64> {
    sql::execute(
        conn,
        "INSERT INTO target (tenant_id, controller_id, name, security_token, update_status,
                             created_by, last_modified_by)
         SELECT $1, $2 || lpad(i::text, 7, '0'), $2 || lpad(i::text, 7, '0'), md5(i::text),
                'REGISTERED', 'bench', 'bench'
         FROM generate_series(1, $3) AS i",
        (tenant, prefix, count),
    )
    .await
}

/// The raw reference of auto-assignment: actions of `ds` for the targets `<prefix>*`, inserted
/// in chunks of `chunk` targets by id, one transaction each (as a pass does, without the
/// service's checks, history and messages), then deleted again. Returns the actions inserted.
pub async fn insert_actions_chunked(
    conn: &mut PgConnection,
    tenant: i64,
    ds: i64,
    prefix: &str,
    chunk: i64,
) -> Result<i64> {
    let mut after = 0_i64;
    let mut total = 0_i64;
    loop {
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        let (last, n): (Option<i64>, i64) = sqlx::query_as(
            "WITH c AS (SELECT id FROM target WHERE tenant_id = $1 AND id > $2
                          AND controller_id LIKE $3 || '%' ORDER BY id LIMIT $4),
                  ins AS (INSERT INTO action (tenant_id, target_id, ds_id, action_type, status,
                              active, initiated_by, created_by, last_modified_by)
                          SELECT $1, id, $5, 'FORCED', 'RUNNING', true, 'bench', 'bench', 'bench'
                          FROM c RETURNING target_id)
             SELECT max(target_id), count(*) FROM ins",
        )
        .bind(tenant)
        .bind(after)
        .bind(prefix)
        .bind(chunk)
        .bind(ds)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        let Some(last) = last else { break };
        total += n;
        after = last;
    }
    sql::execute(conn, "DELETE FROM action WHERE ds_id = $1", (ds,)).await?;
    Ok(total)
}

/// Actions of `ds` (the auto-assignment figure polls it).
pub async fn count_actions_of_set(conn: &mut PgConnection, ds: i64) -> Result<i64> {
    sql::scalar(conn, "SELECT count(*) FROM action WHERE ds_id = $1", (ds,)).await
}
