//! Wires the layers together: database (created and migrated), engine, AMQP supervisor, HTTP
//! server. The only place that knows all of them.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use secrecy::SecretString;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::{self, ApiState};
use crate::auth::Users;
use crate::config::{DatabaseArgs, ServeArgs};
use crate::domain::ids::TenantName;
use crate::engine::{Engine, EngineSettings};
use crate::health::Health;
use crate::{amqp, store};

/// How often planner statistics of the hot tables are checked (see store::statistics).
const STATISTICS_EVERY: Duration = Duration::from_secs(5);

/// Why `serve` could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Bad configuration: exit 2 with this one-line message.
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Runtime(#[from] anyhow::Error),
}

pub struct Application {
    args: ServeArgs,
    listener: TcpListener,
    engine: Arc<Engine>,
    users: Arc<Users>,
    health: Arc<Health>,
}

/// Create the database if missing and apply migrations.
pub async fn migrate(db: &DatabaseArgs) -> anyhow::Result<()> {
    store::create_database_if_missing(&db.database_url)
        .await
        .context("creating the database")?;
    let pool = store::pool(&db.database_url, 2)?;
    store::migrate(&pool).await.context("applying migrations")?;
    tracing::info!("migrations applied");
    Ok(())
}

impl Application {
    /// Validate configuration, prepare the database, bind the HTTP listener.
    pub async fn build(args: ServeArgs) -> Result<Self, StartError> {
        args.validate().map_err(StartError::Config)?;
        let password = args
            .admin_password
            .clone()
            .unwrap_or_else(|| SecretString::from(ServeArgs::DEFAULT_ADMIN_PASSWORD));
        let mut users = Users::with_admin(&args.admin_user, &password);
        if let Some(path) = &args.users_file {
            users.load_file(path).map_err(StartError::Config)?;
        }
        let mut tenant_names =
            vec![TenantName::parse(TenantName::DEFAULT).map_err(|e| StartError::Config(e.0))?];
        for t in &args.tenants {
            if t.trim().is_empty() {
                continue;
            }
            tenant_names.push(
                TenantName::parse(t)
                    .map_err(|e| StartError::Config(format!("DMF_TENANTS: {e}")))?,
            );
        }
        tenant_names.extend(users.tenants());
        tenant_names.sort();
        tenant_names.dedup();

        migrate(&args.database).await?;
        let pool = store::pool(&args.database.database_url, args.database.database_pool)
            .map_err(|e| StartError::Runtime(e.into()))?;
        let engine = Arc::new(Engine::new(
            pool,
            EngineSettings {
                vhost: amqp::vhost_of(&args.amqp.broker.amqp_url),
                implicit_tenants: args.implicit_tenants,
                approval_webhook: args.approval_webhook.clone(),
                public_url: args
                    .public_url
                    .clone()
                    .unwrap_or_else(|| format!("http://{}", args.http_addr)),
                enrol_idle_ms: args.dynamic_idle_ms,
                max_actions_per_target: args.max_actions_per_target,
                max_targets_per_auto_assignment: args.max_targets_per_auto_assignment,
                max_targets_per_manual_assignment: args.max_targets_per_manual_assignment,
            },
        ));
        engine
            .ensure_tenants(&tenant_names)
            .await
            .context("creating tenants")?;
        let listener = TcpListener::bind(args.http_addr)
            .await
            .with_context(|| format!("binding DMF_HTTP_ADDR {}", args.http_addr))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        tracing::info!(http_addr = %addr, "listening");
        Ok(Self {
            args,
            listener,
            engine,
            users: Arc::new(users),
            health: Arc::new(Health::default()),
        })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub fn engine(&self) -> Arc<Engine> {
        self.engine.clone()
    }

    /// Serve until `token` is cancelled, then shut down in order: stop consuming, drain the
    /// outbox, finish HTTP requests, close the pool.
    pub async fn run_until_stopped(self, token: CancellationToken) -> anyhow::Result<()> {
        let tracker = TaskTracker::new();
        let amqp_done = tracker.spawn(amqp::run(
            self.args.amqp.clone(),
            self.engine.clone(),
            self.health.clone(),
            token.child_token(),
        ));
        let executor = tracker.spawn(crate::engine::rollouts::run_executor(
            self.engine.clone(),
            Duration::from_millis(self.args.rollout_tick_ms.max(10)),
            token.child_token(),
        ));
        tracker.spawn(crate::engine::rollouts::approval::run_approval_notices(
            self.engine.clone(),
            token.child_token(),
        ));
        let engine = &self.engine;
        let housekeeping = tracker.spawn(repeat(
            token.child_token(),
            async || tokio::time::sleep(Duration::from_secs(60)).await,
            {
                let engine = engine.clone();
                async move || engine.purge_inbox().await
            },
            "inbox purge failed",
        ));
        // Planner statistics of tables a fleet or a rollout can multiply within seconds.
        tracker.spawn({
            let mut tick = ticks(STATISTICS_EVERY);
            let grown = engine.statistics_wake();
            let engine = engine.clone();
            repeat(
                token.child_token(),
                async move || {
                    tokio::select! {
                        _ = tick.tick() => {}
                        // Woken after the commit of a bulk write.
                        _ = grown.notified() => {}
                    }
                },
                async move || engine.refresh_statistics().await,
                "statistics refresh failed",
            )
        });
        // Timers push: a device hears of its action the moment a maintenance window opens.
        tracker.spawn({
            let engine = engine.clone();
            every(
                token.child_token(),
                Duration::from_secs(1),
                async move || engine.push_opened_windows().await,
                "maintenance window sweep failed",
            )
        });
        // Automatic cleanup of old closed actions, for the tenants that configured it.
        tracker.spawn({
            let engine = engine.clone();
            every(
                token.child_token(),
                Duration::from_secs(self.args.action_cleanup_secs.max(1)),
                async move || engine.clean_up_actions().await,
                "action cleanup failed",
            )
        });
        // Auto-assignments: due ones start, passes go through the fleet chunk by chunk (at
        // once while work is left, else on a wake or every second).
        tracker.spawn({
            let wake = engine.auto_assign_wake();
            let more = Arc::new(AtomicBool::new(true));
            let mut tick = ticks(Duration::from_secs(1));
            let (engine, left) = (engine.clone(), more.clone());
            repeat(
                token.child_token(),
                async move || {
                    if !more.swap(false, Ordering::Relaxed) {
                        tokio::select! {
                            _ = tick.tick() => {}
                            _ = wake.notified() => {}
                        }
                    }
                },
                async move || {
                    let more = engine.run_auto_assign_work().await?;
                    left.store(more, Ordering::Relaxed);
                    Ok::<_, crate::engine::EngineError>(())
                },
                "auto-assignment worker failed",
            )
        });
        // The safety pass of running auto-assignments over the fleet.
        tracker.spawn({
            let engine = engine.clone();
            every(
                token.child_token(),
                Duration::from_secs(self.args.auto_assign_sweep_secs.max(1)),
                async move || engine.start_auto_assign_safety_passes().await,
                "auto-assignment safety pass failed",
            )
        });
        let router = api::router(ApiState {
            engine: self.engine.clone(),
            db: store::Db::new(self.engine.pool().clone()),
            users: self.users.clone(),
            health: self.health.clone(),
        });
        let http_token = token.clone();
        let server = axum::serve(self.listener, router)
            .with_graceful_shutdown(async move { http_token.cancelled().await });
        let result = server.await.context("HTTP server failed");
        tracker.close();
        // The AMQP task stops consuming and drains the outbox before it returns.
        if tokio::time::timeout(Duration::from_secs(30), tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("background tasks did not stop within 30 s");
        }
        drop((amqp_done, housekeeping, executor));
        self.engine.pool().close().await;
        tracing::info!("stopped");
        result
    }
}

/// A background job: `job` after every `wait`, until `token` is cancelled; a failure is logged
/// as `failed` and the job runs again after the next wait.
async fn repeat<T, E: std::fmt::Display>(
    token: CancellationToken,
    mut wait: impl AsyncFnMut(),
    mut job: impl AsyncFnMut() -> Result<T, E>,
    failed: &'static str,
) {
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            _ = wait() => {}
        }
        if let Err(e) = job().await {
            tracing::warn!(error.message = %e, "{failed}");
        }
    }
}

/// A timer that fires every `period`; a tick missed while the job ran is not caught up.
fn ticks(period: Duration) -> tokio::time::Interval {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick
}

/// [`repeat`] on a timer: `job` every `period` (the first at once).
async fn every<T, E: std::fmt::Display>(
    token: CancellationToken,
    period: Duration,
    job: impl AsyncFnMut() -> Result<T, E>,
    failed: &'static str,
) {
    let mut tick = ticks(period);
    let wait = async move || {
        tick.tick().await;
    };
    repeat(token, wait, job, failed).await
}

/// `healthcheck`: exit 0 when the service answers /health with 200.
pub async fn healthcheck(addr: SocketAddr) -> ExitCode {
    let addr = if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    };
    let check = async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        s.write_all(
            format!("GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.ok()?;
        Some(buf.starts_with(b"HTTP/1.1 200"))
    };
    match tokio::time::timeout(Duration::from_secs(5), check).await {
        Ok(Some(true)) => ExitCode::SUCCESS,
        _ => ExitCode::from(1),
    }
}
