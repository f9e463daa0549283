//! What a test owns outside its process: a database and a RabbitMQ vhost of its own, removed on
//! drop, and the command-line clients (`psql`, `rabbitmqctl`) that create and remove them.

use std::process::{Command, Output};

use sqlx::PgPool;

/// The PostgreSQL every test uses (user postgres, trust auth).
pub const PG: &str = "postgres://postgres@127.0.0.1:5432";

/// A name no other test uses.
fn unique(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

/// `rabbitmqctl args…`; fails the test when it fails.
pub fn rabbitmqctl(args: &[&str]) {
    let out = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("rabbitmqctl on PATH");
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `psql` on `database` running `sql`, unaligned and without headers, stopping at the first
/// error.
fn psql(database: &str, sql: &str) -> std::io::Result<Output> {
    Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            database,
            "-qAt",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ])
        .output()
}

/// Run SQL in `database` (fixtures and checks the API cannot express); its output, unaligned
/// and without headers. Fails the test when psql fails.
pub fn sql_in(database: &str, sql: &str) -> String {
    let out = psql(database, sql).expect("psql on PATH");
    assert!(
        out.status.success(),
        "psql: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A database of the test's own (created by whoever migrates it), dropped with `FORCE` on drop.
pub struct TestDb {
    pub name: String,
}

impl TestDb {
    /// A fresh name `<prefix>_<uuid>`; nothing is created yet (the service creates it).
    pub fn new(prefix: &str) -> Self {
        Self {
            name: unique(&format!("{prefix}_")),
        }
    }

    /// A fresh database with every migration applied, as `dmf-broker migrate` leaves it.
    pub async fn migrated() -> Self {
        let db = Self::new("dmf_test");
        let args = dmf_broker::config::DatabaseArgs {
            database_url: db.url(),
            database_pool: 2,
        };
        dmf_broker::app::migrate(&args).await.expect("migrations");
        db
    }

    pub fn url(&self) -> String {
        format!("{PG}/{}", self.name)
    }

    /// A pool on this database.
    pub async fn pool(&self) -> PgPool {
        PgPool::connect(&self.url()).await.expect("database")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let _ = psql(
            "postgres",
            &format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name),
        );
    }
}

/// A RabbitMQ vhost of the test's own, on which `guest` may do everything; deleted on drop.
pub struct TestVhost {
    pub name: String,
}

impl TestVhost {
    /// Creates `<prefix>-<uuid>`.
    pub fn new(prefix: &str) -> Self {
        let name = unique(&format!("{prefix}-"));
        rabbitmqctl(&["add_vhost", &name]);
        rabbitmqctl(&["set_permissions", "-p", &name, "guest", ".*", ".*", ".*"]);
        Self { name }
    }

    pub fn amqp_url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:5672/{}", self.name)
    }
}

impl Drop for TestVhost {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl")
            .args(["delete_vhost", &self.name])
            .output();
    }
}

/// A users file (TOML, as `--users-file` reads it) in the temp dir, removed on drop.
pub struct UsersFile(std::path::PathBuf);

impl UsersFile {
    pub fn new(toml: &str) -> Self {
        let file = std::env::temp_dir()
            .join(unique("dmf-users-"))
            .with_extension("toml");
        std::fs::write(&file, toml).expect("write users file");
        Self(file)
    }

    pub fn path(&self) -> String {
        self.0.to_string_lossy().into_owned()
    }
}

impl Drop for UsersFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
