//! Command line and environment: every option is a flag and a `DMF_*` variable
//! (`../shared/spec/service.md`). Parsed once in `main`; each component gets only its slice.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use secrecy::SecretString;

#[derive(Debug, Parser)]
#[command(
    name = "dmf-broker",
    version,
    about = "Staged software rollouts over hawkBit's DMF protocol"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once at start
pub enum Command {
    /// Run the service: migrate, declare the AMQP topology, consume, publish, serve HTTP.
    Serve(ServeArgs),
    /// Create the database if missing and apply migrations, then exit.
    Migrate(MigrateArgs),
    /// Exit 0 when the running service at --http-addr answers /health with 200 (for containers).
    Healthcheck(HealthcheckArgs),
}

#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// tracing filter, e.g. `info` or `dmf_broker=debug`.
    #[arg(long = "log", env = "DMF_LOG", default_value = "info")]
    pub filter: String,
    /// `text` or `json`.
    #[arg(long = "log-format", env = "DMF_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub format: String,
}

#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// PostgreSQL URL; the database is created when missing.
    #[arg(
        long,
        env = "DMF_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/dmf_broker"
    )]
    pub database_url: String,
    /// Connections in the pool.
    #[arg(long, env = "DMF_DATABASE_POOL", default_value_t = 10)]
    pub database_pool: u32,
}

#[derive(Debug, Clone, Args)]
pub struct AmqpArgs {
    /// RabbitMQ URL, including the vhost (`%2f` is `/`).
    #[arg(
        long,
        env = "DMF_AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    pub amqp_url: String,
    /// Queue the service consumes (hawkBit's name by default).
    #[arg(long, env = "DMF_RECEIVER_QUEUE", default_value = "dmf_receiver")]
    pub receiver_queue: String,
    /// Dead-letter exchange.
    #[arg(
        long,
        env = "DMF_DEAD_LETTER_EXCHANGE",
        default_value = "dmf.connector.deadletter"
    )]
    pub dead_letter_exchange: String,
    /// Dead-letter queue.
    #[arg(
        long,
        env = "DMF_DEAD_LETTER_QUEUE",
        default_value = "dmf_connector_deadletter_ttl"
    )]
    pub dead_letter_queue: String,
    /// How long dead letters are kept (ms); hawkBit's 21 days by default.
    #[arg(long, env = "DMF_DEAD_LETTER_TTL_MS", default_value_t = 1_814_400_000)]
    pub dead_letter_ttl_ms: i64,
    /// Unacknowledged deliveries the broker may send ahead (basic.qos).
    #[arg(long, env = "DMF_PREFETCH", default_value_t = 1000)]
    pub prefetch: u16,
    /// Deliveries applied in one database transaction and acknowledged with one multi-ack.
    #[arg(long, env = "DMF_BATCH_SIZE", default_value_t = 500)]
    pub batch_size: usize,
    /// How long a batch waits for more deliveries once it has one (ms).
    #[arg(long, env = "DMF_BATCH_WAIT_MS", default_value_t = 2)]
    pub batch_wait_ms: u64,
    /// Largest inbound body accepted (bytes); larger ones are dead-lettered.
    #[arg(long, env = "DMF_MAX_BODY_BYTES", default_value_t = 256 * 1024)]
    pub max_body_bytes: usize,
    /// Outbox rows published per round (one confirm wait per round).
    #[arg(long, env = "DMF_OUTBOX_BATCH", default_value_t = 1000)]
    pub outbox_batch: i64,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub amqp: AmqpArgs,
    /// Management API and health. Port 0 picks a free port (logged).
    #[arg(long, env = "DMF_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,
    /// Bootstrap user of tenant DEFAULT with every permission.
    #[arg(long, env = "DMF_ADMIN_USER", default_value = "admin")]
    pub admin_user: String,
    /// Its password; the default is refused on a non-loopback --http-addr.
    #[arg(long, env = "DMF_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<SecretString>,
    /// TOML file of further users.
    #[arg(long, env = "DMF_USERS_FILE")]
    pub users_file: Option<PathBuf>,
    /// URL that receives a POST whenever a rollout waits for approval.
    #[arg(long, env = "DMF_APPROVAL_WEBHOOK")]
    pub approval_webhook: Option<String>,
    /// Base URL of this service as others reach it (links in webhook calls); default
    /// `http://<DMF_HTTP_ADDR>`.
    #[arg(long, env = "DMF_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// How often the rollout executor looks for timers (`startAt`) and missed wake-ups (ms).
    #[arg(long, env = "DMF_ROLLOUT_TICK_MS", default_value_t = 1000)]
    pub rollout_tick_ms: u64,
    /// Pause of dynamic enrolment after a pass found no new target (ms; hawkBit's
    /// `dynamicRolloutsMinInvolvePeriodMS`).
    #[arg(long, env = "DMF_DYNAMIC_IDLE_MS", default_value_t = 60000)]
    pub dynamic_idle_ms: i64,
    /// Further tenants besides DEFAULT and the users file's (comma-separated).
    #[arg(long, env = "DMF_TENANTS", value_delimiter = ',')]
    pub tenants: Vec<String>,
    /// Create a tenant on its first DMF message instead of dead-lettering it.
    #[arg(long, env = "DMF_IMPLICIT_TENANTS", default_value_t = false, action = clap::ArgAction::Set)]
    pub implicit_tenants: bool,
    #[command(flatten)]
    pub log: LogArgs,
}

impl ServeArgs {
    pub const DEFAULT_ADMIN_PASSWORD: &'static str = "admin";

    /// Checks that need more than one setting. The message names the setting.
    pub fn validate(&self) -> Result<(), String> {
        if self.admin_password.is_none() && !self.http_addr.ip().is_loopback() {
            return Err(format!(
                "DMF_ADMIN_PASSWORD must be set: the default admin password is only accepted on a loopback DMF_HTTP_ADDR, not {}",
                self.http_addr
            ));
        }
        if self.amqp.batch_size == 0 {
            return Err("DMF_BATCH_SIZE must be at least 1".into());
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Debug, Clone, Args)]
pub struct HealthcheckArgs {
    #[arg(long, env = "DMF_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,
}
