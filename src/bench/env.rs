//! What the bench runs on: its own database and vhost (created for the run, removed after it,
//! so it never touches user data), the service under test as a child process (so its memory
//! can be read from `/proc`), and a description of the machine for the report.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use super::api::Api;
use crate::store;

/// The database and vhost of one run.
pub struct Isolation {
    pub vhost: String,
    pub db_url: String,
    pub amqp_url: String,
    user: String,
}

/// `scheme://authority` of a URL plus `/path`, keeping a `?query`.
fn with_path(base: &str, path: &str) -> anyhow::Result<String> {
    let (main, query) = match base.split_once('?') {
        Some((m, q)) => (m, Some(q)),
        None => (base, None),
    };
    let scheme_end = main.find("://").context("a URL with a scheme")? + 3;
    let authority_end = main[scheme_end..]
        .find('/')
        .map_or(main.len(), |i| scheme_end + i);
    let mut out = format!("{}/{path}", &main[..authority_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    Ok(out)
}

fn rabbitmqctl(args: &[&str]) -> anyhow::Result<String> {
    let out = std::process::Command::new("rabbitmqctl")
        .args(args)
        .output()
        .context("running rabbitmqctl (the bench creates its vhost with it)")?;
    if !out.status.success() {
        bail!(
            "rabbitmqctl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Isolation {
    pub fn new(database_base: &str, amqp_base: &str) -> anyhow::Result<Self> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let id = &id[..12];
        let vhost = format!("dmf-bench-{id}");
        let uri = lapin::uri::AMQPUri::from_str(amqp_base)
            .map_err(|e| anyhow::anyhow!("--amqp-url: {e}"))?;
        Ok(Isolation {
            db_url: with_path(database_base, &format!("dmf_bench_{id}"))?,
            amqp_url: with_path(amqp_base, &vhost)?,
            user: uri.authority.userinfo.username,
            vhost,
        })
    }

    pub async fn create(&self) -> anyhow::Result<()> {
        rabbitmqctl(&["add_vhost", &self.vhost])?;
        rabbitmqctl(&[
            "set_permissions",
            "-p",
            &self.vhost,
            &self.user,
            ".*",
            ".*",
            ".*",
        ])?;
        store::create_database_if_missing(&self.db_url)
            .await
            .context("creating the bench database")?;
        Ok(())
    }

    /// Remove the vhost and the database; failures are reported, not fatal.
    pub async fn remove(&self) {
        if let Err(e) = rabbitmqctl(&["delete_vhost", &self.vhost]) {
            eprintln!("bench: could not delete vhost {}: {e:#}", self.vhost);
        }
        if let Err(e) = store::bench::drop_database(&self.db_url).await {
            eprintln!("bench: could not drop the bench database: {e}");
        }
    }
}

/// The service under test, a child process of the bench.
pub struct Service {
    child: Child,
    pub pid: u32,
    pub base: String,
    pub log: PathBuf,
}

impl Service {
    /// Start `<this executable> serve` against the isolated database and vhost and wait until
    /// `/health` answers 200.
    pub async fn start(
        iso: &Isolation,
        rollout_tick_ms: u64,
        log_filter: &str,
    ) -> anyhow::Result<Self> {
        // A free port: bind, read, release (the child binds it a moment later).
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let log = std::env::temp_dir().join(format!("{}-service.log", iso.vhost));
        let out = std::fs::File::create(&log).context("creating the service log")?;
        let err = out.try_clone()?;
        let exe = std::env::current_exe().context("locating the dmf-broker executable")?;
        let child = Command::new(exe)
            .arg("serve")
            .args(["--database-url", &iso.db_url])
            .args(["--amqp-url", &iso.amqp_url])
            .args(["--http-addr", &format!("127.0.0.1:{port}")])
            .args(["--rollout-tick-ms", &rollout_tick_ms.to_string()])
            .args(["--log", log_filter])
            // The auto-assignment figure goes over more targets than hawkBit's quota allows.
            .args(["--max-targets-per-auto-assignment", "0"])
            .env_remove("DMF_HTTP_ADDR")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .kill_on_drop(true)
            .spawn()
            .context("starting the service")?;
        let pid = child.id().context("the service's pid")?;
        let mut svc = Service {
            child,
            pid,
            base: format!("http://127.0.0.1:{port}"),
            log,
        };
        let api = Api::new(svc.base.clone());
        let deadline = Instant::now() + Duration::from_secs(60);
        while !api.healthy().await {
            if let Some(status) = svc.child.try_wait()? {
                bail!(
                    "the service exited ({status}) before it became healthy; see {}",
                    svc.log.display()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "the service was not healthy within 60 s; see {}",
                    svc.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(svc)
    }

    /// Fails when the service has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("the service exited ({status}); see {}", self.log.display());
        }
        Ok(())
    }

    /// SIGTERM (graceful shutdown), then SIGKILL after 30 s.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if self.child.try_wait()?.is_some() {
            return Ok(());
        }
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        match tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await {
            Ok(status) => {
                let status = status?;
                if !status.success() {
                    bail!(
                        "the service exited with {status}; see {}",
                        self.log.display()
                    );
                }
                Ok(())
            }
            Err(_) => {
                self.child.kill().await?;
                bail!("the service did not stop within 30 s of SIGTERM; killed")
            }
        }
    }
}

/// Memory of a process from `/proc/<pid>/status`, in KiB: (VmRSS, VmHWM).
pub fn read_rss(pid: u32) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Samples the service's resident memory every 50 ms and keeps the maximum per phase.
#[derive(Clone)]
pub struct RssSampler {
    state: Arc<Mutex<RssState>>,
    token: CancellationToken,
}

#[derive(Default)]
struct RssState {
    phase: String,
    per_phase: Vec<(String, u64)>,
    hwm_kib: u64,
}

impl RssSampler {
    pub fn start(pid: u32) -> Self {
        let state = Arc::new(Mutex::new(RssState {
            phase: "start".into(),
            ..Default::default()
        }));
        let token = CancellationToken::new();
        let (s, t) = (state.clone(), token.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            loop {
                tokio::select! {
                    _ = t.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let Some((rss, hwm)) = read_rss(pid) else {
                    return;
                };
                if let Ok(mut st) = s.lock() {
                    st.hwm_kib = st.hwm_kib.max(hwm);
                    let phase = st.phase.clone();
                    match st.per_phase.iter_mut().find(|(p, _)| *p == phase) {
                        Some((_, max)) => *max = (*max).max(rss),
                        None => st.per_phase.push((phase, rss)),
                    }
                }
            }
        });
        RssSampler { state, token }
    }

    /// Attribute the following samples to `phase`.
    pub fn phase(&self, phase: &str) {
        if let Ok(mut st) = self.state.lock() {
            phase.clone_into(&mut st.phase);
        }
    }

    /// The largest VmRSS seen in `phase` (KiB).
    pub fn phase_max(&self, phase: &str) -> Option<u64> {
        let st = self.state.lock().ok()?;
        st.per_phase
            .iter()
            .find(|(p, _)| p == phase)
            .map(|(_, v)| *v)
    }

    /// Stop sampling; the peak (VmHWM, KiB) and the per-phase maxima of VmRSS.
    pub fn finish(&self, pid: u32) -> (u64, Vec<(String, u64)>) {
        self.token.cancel();
        let last = read_rss(pid).map_or(0, |(_, hwm)| hwm);
        match self.state.lock() {
            Ok(st) => (st.hwm_kib.max(last), st.per_phase.clone()),
            Err(_) => (last, Vec::new()),
        }
    }
}

fn first_line_with(path: &str, key: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_once([':', '=']))
        .map(|(_, v)| v.trim().trim_matches('"').to_owned())
}

/// The machine, for the report (the numbers mean little without it).
pub fn machine(postgres: &str) -> Value {
    let rabbit = rabbitmqctl(&["version"])
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into());
    let mem_kib = first_line_with("/proc/meminfo", "MemTotal")
        .and_then(|v| {
            v.split_whitespace()
                .next()
                .and_then(|n| n.parse::<u64>().ok())
        })
        .unwrap_or(0);
    let mut m = BTreeMap::new();
    m.insert(
        "cpu",
        json!(first_line_with("/proc/cpuinfo", "model name").unwrap_or_else(|| "unknown".into())),
    );
    m.insert(
        "cores",
        json!(std::thread::available_parallelism().map_or(0, |n| n.get())),
    );
    m.insert("memory_gib", json!(round(mem_kib as f64 / 1048576.0, 1)));
    m.insert(
        "os",
        json!(
            first_line_with("/etc/os-release", "PRETTY_NAME").unwrap_or_else(|| "unknown".into())
        ),
    );
    m.insert(
        "kernel",
        json!(
            std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_owned())
                .unwrap_or_default()
        ),
    );
    m.insert("postgresql", json!(postgres));
    m.insert("rabbitmq", json!(rabbit));
    json!(m)
}

pub fn round(v: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (v * f).round() / f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_get_the_run_path_and_keep_the_query() {
        for (url, path, want) in [
            (
                "postgres://postgres@127.0.0.1:5432",
                "db",
                "postgres://postgres@127.0.0.1:5432/db",
            ),
            (
                "postgres://u:p@h:5432/other?sslmode=disable",
                "db",
                "postgres://u:p@h:5432/db?sslmode=disable",
            ),
            (
                "amqp://guest:guest@127.0.0.1:5672/%2f",
                "v",
                "amqp://guest:guest@127.0.0.1:5672/v",
            ),
        ] {
            assert_eq!(with_path(url, path).unwrap(), want);
        }
        assert!(with_path("nonsense", "x").is_err());
    }
}
