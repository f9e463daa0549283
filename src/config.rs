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
    /// The reproducible load benchmark: starts the service on a fresh database and vhost, drives
    /// a fleet against it, prints a table and writes a JSON report.
    Bench(BenchArgs),
    /// A fleet of virtual devices speaking DMF as a connector: registers them, answers
    /// deployments and cancels with configurable outcomes and delays. For demos and load.
    Simulate(SimulateArgs),
    /// Start the service and a simulated fleet in-process, run a rollout over the fleet and show
    /// it progressing group by group; then keep both running until Ctrl-C.
    Demo(DemoArgs),
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

/// Where the broker is: the service and the simulator connect alike.
#[derive(Debug, Clone, Args)]
pub struct BrokerArgs {
    /// RabbitMQ URL, including the vhost (`%2f` is `/`).
    #[arg(
        long,
        env = "DMF_AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    pub amqp_url: String,
}

#[derive(Debug, Clone, Args)]
pub struct AmqpArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
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
    /// How long a batch waits for more deliveries once it has one (ms). 0: a batch is what has
    /// arrived meanwhile — under load that is plenty, and a lone report is applied at once.
    #[arg(long, env = "DMF_BATCH_WAIT_MS", default_value_t = 0)]
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
    /// Actions a target may have (hawkBit's `maxActionsPerTarget`); a rollout leaves out
    /// targets that reached it.
    #[arg(long, env = "DMF_MAX_ACTIONS_PER_TARGET", default_value_t = 2000)]
    pub max_actions_per_target: i64,
    /// Targets an auto-assignment may match when it is created (hawkBit's
    /// `maxTargetsPerAutoAssignment`; 0 = no limit). Targets that match later are not counted.
    #[arg(
        long,
        env = "DMF_MAX_TARGETS_PER_AUTO_ASSIGNMENT",
        default_value_t = 20000
    )]
    pub max_targets_per_auto_assignment: i64,
    /// Assignments one manual assignment request may make, target × set (hawkBit's
    /// `maxTargetDistributionSetAssignmentsPerManualAssignment`; 0 = no limit).
    #[arg(
        long,
        env = "DMF_MAX_TARGETS_PER_MANUAL_ASSIGNMENT",
        default_value_t = 5000
    )]
    pub max_targets_per_manual_assignment: i64,
    /// Seconds between safety passes of the running auto-assignments over the fleet (events
    /// assign at once; the pass catches a change no event reported).
    #[arg(long, env = "DMF_AUTO_ASSIGN_SWEEP_SECS", default_value_t = 300)]
    pub auto_assign_sweep_secs: u64,
    /// Seconds between passes of the automatic action cleanup (each tenant's
    /// `action.cleanup.auto.*`; hawkBit's auto-cleanup scheduler).
    #[arg(long, env = "DMF_ACTION_CLEANUP_SECS", default_value_t = 3600)]
    pub action_cleanup_secs: u64,
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

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// PostgreSQL server URL; the bench creates (and drops) its own database on it.
    #[arg(
        long,
        env = "DMF_BENCH_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432"
    )]
    pub database_url: String,
    /// RabbitMQ URL; the bench creates (and deletes) its own vhost on it with `rabbitmqctl`.
    #[arg(
        long,
        env = "DMF_BENCH_AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672"
    )]
    pub amqp_url: String,
    /// Devices of the ingestion/dispatch rollout [default: 20000; --quick: 400].
    #[arg(long, env = "DMF_BENCH_DEVICES")]
    pub devices: Option<u64>,
    /// Groups of that rollout [default: the fewest the 20,000-per-group quota allows].
    #[arg(long, env = "DMF_BENCH_GROUPS")]
    pub groups: Option<u64>,
    /// Targets of the rollout-creation figure [default: 100000; --quick: 2000].
    #[arg(long, env = "DMF_BENCH_CREATION_TARGETS")]
    pub creation_targets: Option<u64>,
    /// Registered targets an auto-assignment goes through for the throughput figure
    /// [default: 100000; --quick: 2000].
    #[arg(long, env = "DMF_BENCH_AUTO_TARGETS")]
    pub auto_targets: Option<u64>,
    /// Devices that register one by one for the auto-assignment latency [default: 200;
    /// --quick: 20].
    #[arg(long, env = "DMF_BENCH_AUTO_DEVICES")]
    pub auto_devices: Option<u64>,
    /// Group transitions sampled for the cascade latency [default: 100; --quick: 5].
    #[arg(long, env = "DMF_BENCH_TRANSITIONS")]
    pub transitions: Option<u64>,
    /// Devices per group of the cascade rollout [default: 20; --quick: 5].
    #[arg(long, env = "DMF_BENCH_GROUP_SIZE")]
    pub group_size: Option<u64>,
    /// Devices of the background rollout that keep the fleet busy during the cascade
    /// [default: 1000; --quick: 50].
    #[arg(long, env = "DMF_BENCH_BACKGROUND_DEVICES")]
    pub background_devices: Option<u64>,
    /// Status reports per second they send meanwhile [default: a quarter of the measured status
    /// ingestion].
    #[arg(long, env = "DMF_BENCH_BACKGROUND_RATE")]
    pub background_rate: Option<u64>,
    /// Executor tick of the service under test (its --rollout-tick-ms).
    #[arg(long, env = "DMF_BENCH_ROLLOUT_TICK_MS", default_value_t = 1000)]
    pub rollout_tick_ms: u64,
    /// Where the JSON report goes.
    #[arg(long, env = "DMF_BENCH_JSON", default_value = "bench-report.json")]
    pub json: PathBuf,
    /// Tiny sizes, done in seconds (CI): proves every phase works, measures nothing useful.
    #[arg(long, env = "DMF_BENCH_QUICK", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub quick: bool,
    /// tracing filter of the service under test (its --log); its log file is kept with --keep.
    #[arg(long, env = "DMF_BENCH_SERVICE_LOG", default_value = "warn")]
    pub service_log: String,
    /// Keep the bench database, vhost and service log afterwards (for inspection).
    #[arg(long, env = "DMF_BENCH_KEEP", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub keep: bool,
}

#[derive(Debug, Clone, Args)]
pub struct SimulateArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// Tenant header of every message.
    #[arg(long, env = "DMF_SIM_TENANT", default_value = "DEFAULT")]
    pub tenant: String,
    /// Number of virtual devices.
    #[arg(long, env = "DMF_SIM_DEVICES", default_value_t = 1000)]
    pub devices: u32,
    /// Device ids are the prefix plus a zero-padded index (`sim-000042`; at least 6 digits).
    #[arg(long, env = "DMF_SIM_PREFIX", default_value = "sim-")]
    pub prefix: String,
    /// The connector's reply exchange (fanout, auto-delete). Its queue is named after it: a
    /// `.replyTo` suffix becomes `_receiver` (`simulator.replyTo` → `simulator_receiver`, as in
    /// hawkBit's simulator), any other name gets `_receiver` appended.
    #[arg(long, env = "DMF_SIM_REPLY_TO", default_value = "simulator.replyTo")]
    pub reply_to: String,
    /// Fraction of devices (chosen by a hash of the id, so reproducible) that answer ERROR.
    #[arg(long, env = "DMF_SIM_FAIL_RATIO", default_value_t = 0.0)]
    pub fail_ratio: f64,
    /// Fraction of devices that never answer a deployment (they still answer cancels).
    #[arg(long, env = "DMF_SIM_STUCK_RATIO", default_value_t = 0.0)]
    pub stuck_ratio: f64,
    /// Fraction of devices that answer CANCEL_REJECTED to a cancel.
    #[arg(long, env = "DMF_SIM_CANCEL_REJECT_RATIO", default_value_t = 0.0)]
    pub cancel_reject_ratio: f64,
    /// Delay before each status report (ms).
    #[arg(long, env = "DMF_SIM_DELAY_MS", default_value_t = 0)]
    pub delay_ms: u64,
    /// Extra delay before each report, uniform in [0, jitter] (ms; derived from device, action
    /// and step, so runs repeat).
    #[arg(long, env = "DMF_SIM_JITTER_MS", default_value_t = 0)]
    pub jitter_ms: u64,
    /// Deliveries the broker may send ahead (basic.qos); acknowledged in batches.
    #[arg(long, env = "DMF_SIM_PREFETCH", default_value_t = 2000)]
    pub prefetch: u16,
    /// Published messages awaiting their publisher confirm before publishing waits.
    #[arg(long, env = "DMF_SIM_CONFIRM_WINDOW", default_value_t = 2000)]
    pub confirm_window: usize,
    #[command(flatten)]
    pub log: LogArgs,
}

impl SimulateArgs {
    /// Characters allowed in a prefix: they appear unescaped in the simulator's JSON bodies and
    /// must be legal in a controllerId (no whitespace).
    pub fn valid_prefix_char(c: char) -> bool {
        c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')
    }

    /// Checks that need more than clap's parsing. The message names the setting.
    pub fn validate(&self) -> Result<(), String> {
        for (name, v) in [
            ("DMF_SIM_FAIL_RATIO", self.fail_ratio),
            ("DMF_SIM_STUCK_RATIO", self.stuck_ratio),
            ("DMF_SIM_CANCEL_REJECT_RATIO", self.cancel_reject_ratio),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("{name} must be between 0 and 1, not {v}"));
            }
        }
        if self.devices == 0 {
            return Err("DMF_SIM_DEVICES must be at least 1".into());
        }
        if !self.prefix.chars().all(Self::valid_prefix_char) || self.prefix.len() > 200 {
            return Err(format!(
                "DMF_SIM_PREFIX may only hold ASCII letters, digits and - _ . : (at most 200), not {:?}",
                self.prefix
            ));
        }
        if self.reply_to.trim().is_empty() || self.reply_to.chars().any(char::is_whitespace) {
            return Err(format!(
                "DMF_SIM_REPLY_TO must be a non-empty name without spaces, not {:?}",
                self.reply_to
            ));
        }
        if self.tenant.trim().is_empty() {
            return Err("DMF_SIM_TENANT must not be empty".into());
        }
        if self.prefetch == 0 || self.confirm_window == 0 {
            return Err("DMF_SIM_PREFETCH and DMF_SIM_CONFIRM_WINDOW must be at least 1".into());
        }
        self.broker
            .amqp_url
            .parse::<lapin::uri::AMQPUri>()
            .map_err(|e| format!("DMF_AMQP_URL is not an AMQP URL: {e}"))?;
        Ok(())
    }

    /// The queue behind the reply exchange (see `--reply-to`).
    pub fn reply_queue(&self) -> String {
        match self.reply_to.strip_suffix(".replyTo") {
            Some(stem) if !stem.is_empty() => format!("{stem}_receiver"),
            _ => format!("{}_receiver", self.reply_to),
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// The service's settings: those of `serve`, with its defaults and DMF_* variables.
    #[command(flatten)]
    pub serve: ServeArgs,
    /// Simulated devices in the demo fleet.
    #[arg(long, env = "DMF_DEMO_DEVICES", default_value_t = 200)]
    pub devices: u32,
    /// Fraction of demo devices that fail their update.
    #[arg(long, env = "DMF_DEMO_FAIL_RATIO", default_value_t = 0.03)]
    pub fail_ratio: f64,
    /// Deployment groups of the demo rollout.
    #[arg(long, env = "DMF_DEMO_GROUPS", default_value_t = 5)]
    pub groups: u32,
    /// Delay before each report of a demo device (ms).
    #[arg(long, env = "DMF_DEMO_DELAY_MS", default_value_t = 300)]
    pub delay_ms: u64,
    /// Extra random delay per report (ms), so devices do not move in lockstep.
    #[arg(long, env = "DMF_DEMO_JITTER_MS", default_value_t = 900)]
    pub jitter_ms: u64,
    /// Exit once the rollout has finished instead of running until Ctrl-C (for scripts).
    #[arg(long, env = "DMF_DEMO_EXIT_WHEN_DONE", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub exit_when_done: bool,
}
