//! Owns every SQL statement. Functions that take part in a unit of work take
//! `&mut PgConnection` (pass `&mut *tx`) so the engine composes them in one transaction; row
//! structs stay here and convert to domain types.
//!
//! Never outside this module: SQL text, sqlx row types.

pub mod action_deletes;
pub mod actions;
pub mod approvals;
pub mod auto_assignments;
pub mod bench;
pub mod filter;
mod ids;
pub mod inbox;
pub mod invalidation;
pub mod key_value;
pub mod link;
pub mod outbox;
mod owned;
pub mod page;
pub mod repository;
pub mod rollouts;
pub mod sql;
pub mod statistics;
pub mod table;
pub mod tags;
pub mod target_filters;
pub mod target_metadata;
pub mod target_types;
pub mod targets;
pub mod tenants;

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A database failure, split by what the caller should do about it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Worth retrying: connection lost, pool exhausted, serialization failure, deadlock,
    /// server shutting down.
    #[error("database unavailable: {0}")]
    Transient(#[source] sqlx::Error),
    /// A unique constraint rejected the write.
    #[error("conflict: {0}")]
    Conflict(String),
    /// Anything else: a bug or data the schema refuses. Retrying will not help.
    #[error("database error: {0}")]
    Permanent(#[source] sqlx::Error),
    /// A stored value no version of the service writes (an unknown status, say): never read
    /// as some default.
    #[error("corrupt data: {0}")]
    Corrupt(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_) => Self::Transient(e),
            sqlx::Error::Database(db) => {
                let code = db.code().unwrap_or_default();
                // Classes 08 connection, 40 rollback (serialization, deadlock), 53 resources,
                // 57 operator intervention (shutdown), 58 system error.
                if ["08", "40", "53", "57", "58"]
                    .iter()
                    .any(|c| code.starts_with(c))
                {
                    Self::Transient(e)
                } else if code == "23505" {
                    Self::Conflict(db.constraint().unwrap_or("unique").to_owned())
                } else {
                    Self::Permanent(e)
                }
            }
            _ => Self::Permanent(e),
        }
    }
}

impl StoreError {
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient(_))
    }

    /// A unique-constraint conflict said the way the API reports it (`message` names what
    /// already exists); any other error unchanged.
    pub fn conflict_as(self, message: impl FnOnce() -> String) -> Self {
        match self {
            Self::Conflict(_) => Self::Conflict(message()),
            other => other,
        }
    }
}

/// The four audit columns of every Management API entity: who created it and when, who
/// changed it last and when (epoch ms). Row structs flatten it (`#[sqlx(flatten)]`).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Audit {
    pub created_at: i64,
    pub created_by: String,
    pub last_modified_at: i64,
    pub last_modified_by: String,
}

/// What hawkBit's named entities (tags, types, modules, sets, targets) carry besides their id:
/// a name and an optional description. Rows flatten it (`#[sqlx(flatten)]`); inputs take it
/// as it is.
#[derive(Debug, Clone, Default, sqlx::FromRow)]
pub struct Named {
    pub name: String,
    pub description: Option<String>,
}

/// A change of a [`Named`] entity's name and description (`None` = unchanged).
#[derive(Debug, Clone, Default)]
pub struct NamedUpdate {
    pub name: Option<String>,
    pub description: Option<String>,
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The database as request handlers use it. A handler hands a closure to [`Db::run`] or
/// [`Db::tx`]; the store side takes the connection from the pool, begins and commits, so a
/// handler never holds the pool or a transaction of its own.
#[derive(Debug, Clone)]
pub struct Db {
    pool: PgPool,
}

impl Db {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Run `f` on one pooled connection; each statement commits on its own.
    pub async fn run<T, E>(
        &self,
        f: impl AsyncFnOnce(&mut PgConnection) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        let mut conn = self.pool.acquire().await.map_err(StoreError::from)?;
        f(&mut conn).await
    }

    /// Run `f` in one transaction: committed when `f` succeeds, rolled back when it fails.
    pub async fn tx<T, E>(
        &self,
        f: impl AsyncFnOnce(&mut PgConnection) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        let mut tx = self.pool.begin().await.map_err(StoreError::from)?;
        let out = f(&mut tx).await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(out)
    }
}

/// Create the database named in `url` if it does not exist (connecting to `postgres`).
pub async fn create_database_if_missing(url: &str) -> Result<()> {
    let opts = PgConnectOptions::from_str(url).map_err(StoreError::Permanent)?;
    let name = opts.get_database().unwrap_or("postgres").to_owned();
    let mut conn = opts
        .clone()
        .database("postgres")
        .disable_statement_logging()
        .connect()
        .await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut conn)
            .await?;
    if !exists {
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        match sqlx::query(&format!("CREATE DATABASE {quoted}"))
            .execute(&mut conn)
            .await
        {
            // Another instance created it meanwhile.
            Ok(_) | Err(sqlx::Error::Database(_)) if database_exists(&mut conn, &name).await => {}
            Ok(_) => {}
            Err(e) => return Err(e.into()),
        }
        tracing::info!(database = %name, "created database");
    }
    let _ = conn.close().await;
    Ok(())
}

async fn database_exists(conn: &mut PgConnection, name: &str) -> bool {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(name)
        .fetch_one(conn)
        .await
        .unwrap_or(false)
}

/// A pool for `url`. Connections are made lazily so the service starts (and reports DOWN) while
/// the database is away.
pub fn pool(url: &str, size: u32) -> Result<PgPool> {
    let opts = PgConnectOptions::from_str(url)
        .map_err(StoreError::Permanent)?
        .disable_statement_logging()
        // Short, planned-once statements: JIT compilation only adds latency (hundreds of ms on
        // the first large scan of a rollout fill).
        .options([
            ("jit", "off"),
            // The hot rows live in shared buffers: an index probe costs about what a sequential
            // page read does. With the default (4) the planner joined a chunk of 1,000 ids
            // against 20,000 actions by hashing the whole table (8 ms instead of 2.5 ms for
            // index probes, and growing with the table).
            ("random_page_cost", "1.1"),
        ]);
    Ok(PgPoolOptions::new()
        .max_connections(size)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy_with(opts))
}

/// Apply pending migrations.
pub async fn migrate(pool: &PgPool) -> std::result::Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}

/// Whether the database answers.
pub async fn ping(pool: &PgPool) -> bool {
    sqlx::query("SELECT 1").execute(pool).await.is_ok()
}

/// The database clock in epoch ms (all stored times use it).
pub async fn now_ms(conn: &mut PgConnection) -> Result<i64> {
    Ok(sqlx::query_scalar("SELECT epoch_ms()")
        .fetch_one(conn)
        .await?)
}
