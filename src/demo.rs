//! `dmf-broker demo`: the service and a simulated fleet in one process, and a rollout over the
//! fleet shown group by group in the terminal.
//!
//! It only uses what a user would: the service is `serve` (same settings and `DMF_*`
//! variables), the fleet is `simulate`, and everything is created through the service's own REST
//! API with the admin user. Re-running it reuses the devices and creates the next version of the
//! demo firmware and rollout (`demo-rollout-2`, ...), so it can be run again and again.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::app::{Application, StartError};
use crate::config::{DemoArgs, ServeArgs, SimulateArgs};
use crate::sim::fleet::{self, Naming};
use crate::sim::{self, Counters, SimStats};
use crate::{shutdown, telemetry};

/// Device ids of the demo fleet (`demo-000000`, ...).
pub const PREFIX: &str = "demo-";
/// The demo fleet's reply exchange, apart from a `simulate` running beside it.
pub const REPLY_TO: &str = "demo.replyTo";
const SUCCESS_THRESHOLD: u32 = 80;
const ERROR_THRESHOLD: u32 = 50;

/// How the demo ended.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoOutcome {
    pub rollout_id: i64,
    pub rollout_name: String,
    /// The rollout's status when the display stopped (`finished` normally).
    pub status: String,
    /// `totalTargetsPerStatus` at that moment.
    pub progress: BTreeMap<String, i64>,
    pub simulator: SimStats,
}

/// The tracing filter for the demo: unless `--log`/`DMF_LOG` was given, only warnings, so the
/// service's info lines do not tear the progress display.
pub fn log_filter(args: &DemoArgs) -> String {
    let explicit = std::env::var_os("DMF_LOG").is_some()
        || std::env::args().any(|a| a == "--log" || a.starts_with("--log="));
    if explicit {
        args.serve.log.filter.clone()
    } else {
        "warn".to_owned()
    }
}

fn validate(args: &DemoArgs) -> Result<(), String> {
    if args.devices == 0 || args.devices > 1_000_000 {
        return Err("DMF_DEMO_DEVICES must be between 1 and 1000000".into());
    }
    if !(0.0..=1.0).contains(&args.fail_ratio) {
        return Err("DMF_DEMO_FAIL_RATIO must be between 0 and 1".into());
    }
    if args.groups == 0 || args.groups > args.devices.min(500) {
        return Err("DMF_DEMO_GROUPS must be between 1 and min(devices, 500)".into());
    }
    args.serve.validate()
}

/// The `demo` subcommand: exit 0 after Ctrl-C (or when done with `--exit-when-done`), 2 for bad
/// settings, 1 when something fails.
pub async fn main(args: DemoArgs) -> ExitCode {
    telemetry::init(&log_filter(&args), &args.serve.log.format);
    let token = CancellationToken::new();
    shutdown::cancel_on_signal(token.clone());
    let mut stdout = std::io::stdout();
    let tty = stdout.is_terminal();
    match run(args, token, &mut stdout, tty).await {
        Ok(_) => ExitCode::SUCCESS,
        Err(StartError::Config(msg)) => {
            eprintln!("dmf-broker: {msg}");
            ExitCode::from(2)
        }
        Err(StartError::Runtime(e)) => {
            eprintln!("dmf-broker demo failed: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Run the demo, writing the display to `out` (redrawn in place when `tty`). Returns after
/// `token` is cancelled, or once the rollout is done when `--exit-when-done` is set.
pub async fn run(
    args: DemoArgs,
    token: CancellationToken,
    out: &mut (dyn Write + Send),
    tty: bool,
) -> Result<DemoOutcome, StartError> {
    validate(&args).map_err(StartError::Config)?;
    let app = Application::build(args.serve.clone()).await?;
    let base = local_base(args.serve.http_addr, app.port());
    let service_token = CancellationToken::new();
    let service = tokio::spawn(app.run_until_stopped(service_token.clone()));
    let counters = Arc::new(Counters::default());
    let sim_token = CancellationToken::new();
    let mut simulator = None;

    let result = async {
        let api = Api::new(&base, &args.serve)?;
        wait_healthy(&api, &token).await?;
        let sim_args = simulator_args(&args);
        let queue = sim_args.reply_queue();
        simulator = Some(tokio::spawn(sim::run_observed(
            sim_args,
            sim_token.clone(),
            counters.clone(),
        )));
        line(
            out,
            &format!(
                "dmf-broker demo: service on {base}, {} simulated devices ({}000000, ...; {:.0} % fail by design)",
                args.devices,
                PREFIX,
                args.fail_ratio * 100.0
            ),
        )?;
        remove_stale_devices(&api, args.devices).await?;
        let registered = wait_registered(&api, &counters, args.devices, &token).await?;
        line(out, &format!("{registered} devices registered over DMF (THING_CREATED with attributes)"))?;
        let created = create_rollout(&api, &args).await?;
        line(
            out,
            &format!(
                "created software module, artifact and distribution set {} and rollout {} ({} groups, next group at {SUCCESS_THRESHOLD} % success, pause above {ERROR_THRESHOLD} % errors)",
                created.ds_label, created.name, args.groups
            ),
        )?;
        wait_ready_and_start(&api, created.id, &token).await?;
        let (status, progress) = Display::new(out, tty)
            .follow(&api, created.id, &token)
            .await?;
        explore(out, &base, &args, &created, &status, &progress, &queue)?;
        if !args.exit_when_done {
            token.cancelled().await;
        }
        Ok::<_, anyhow::Error>((created, status, progress))
    }
    .await;

    // Stop in order: the fleet first (it stops publishing), then the service.
    sim_token.cancel();
    let stats = match simulator {
        Some(h) => h.await.ok().and_then(Result::ok).unwrap_or_default(),
        None => counters.snapshot(),
    };
    service_token.cancel();
    let stopped = service.await;
    let (created, status, progress) = result?;
    match stopped {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e.into()),
        Err(e) => return Err(anyhow!("service task failed: {e}").into()),
    }
    let _ = writeln!(
        out,
        "stopped. simulator: {} registered, {} deployments, {} reports ({} finished, {} error)",
        stats.registered, stats.deployments, stats.reports, stats.finished, stats.errors
    );
    Ok(DemoOutcome {
        rollout_id: created.id,
        rollout_name: created.name,
        status,
        progress,
        simulator: stats,
    })
}

fn line(out: &mut (dyn Write + Send), text: &str) -> anyhow::Result<()> {
    writeln!(out, "{text}").context("writing to the terminal")?;
    out.flush().context("writing to the terminal")
}

/// Where this process reaches its own HTTP listener.
fn local_base(addr: SocketAddr, port: u16) -> String {
    let ip = addr.ip();
    if ip.is_unspecified() || ip.is_loopback() {
        format!("http://localhost:{port}")
    } else {
        format!("http://{}", SocketAddr::new(ip, port))
    }
}

fn simulator_args(args: &DemoArgs) -> SimulateArgs {
    SimulateArgs {
        broker: args.serve.amqp.broker.clone(),
        tenant: "DEFAULT".into(),
        devices: args.devices,
        prefix: PREFIX.into(),
        reply_to: REPLY_TO.into(),
        fail_ratio: args.fail_ratio,
        stuck_ratio: 0.0,
        cancel_reject_ratio: 0.0,
        delay_ms: args.delay_ms,
        jitter_ms: args.jitter_ms,
        prefetch: 2000,
        confirm_window: 2000,
        log: args.serve.log.clone(),
    }
}

/// The service's REST API as the admin user.
struct Api {
    http: reqwest::Client,
    base: String,
    user: String,
    password: String,
}

impl Api {
    fn new(base: &str, serve: &ServeArgs) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            http,
            base: base.replace("localhost", "127.0.0.1"),
            user: serve.admin_user.clone(),
            password: serve
                .admin_password
                .as_ref()
                .map(|p| p.expose_secret().to_owned())
                .unwrap_or_else(|| ServeArgs::DEFAULT_ADMIN_PASSWORD.to_owned()),
        })
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<(StatusCode, Value)> {
        let resp = req
            .basic_auth(&self.user, Some(&self.password))
            .send()
            .await
            .context("calling the service's REST API")?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    async fn get(&self, path: &str, query: &[(&str, &str)]) -> anyhow::Result<Value> {
        let req = self
            .http
            .get(format!("{}/rest/v1{path}", self.base))
            .query(query);
        match self.send(req).await? {
            (StatusCode::OK, v) => Ok(v),
            (s, v) => bail!("GET {path}: {s} {v}"),
        }
    }

    async fn post(&self, path: &str, body: &Value) -> anyhow::Result<(StatusCode, Value)> {
        self.send(
            self.http
                .post(format!("{}/rest/v1{path}", self.base))
                .json(body),
        )
        .await
    }
}

async fn wait_healthy(api: &Api, token: &CancellationToken) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = api.http.get(format!("{}/health", api.base)).send().await
            && r.status() == StatusCode::OK
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the service did not become healthy within 60 s (is RabbitMQ running?)");
        }
        pause(token, Duration::from_millis(200)).await?;
    }
}

/// Sleep, or fail when the user interrupts.
async fn pause(token: &CancellationToken, d: Duration) -> anyhow::Result<()> {
    tokio::select! {
        _ = token.cancelled() => bail!("interrupted"),
        _ = tokio::time::sleep(d) => Ok(()),
    }
}

fn fleet_query() -> String {
    format!("controllerId=={PREFIX}*")
}

/// A previous demo with a larger fleet left devices this one does not simulate; they would
/// never answer, so they are deleted before the rollout picks its targets.
async fn remove_stale_devices(api: &Api, devices: u32) -> anyhow::Result<()> {
    let naming = Naming::new(PREFIX, devices);
    let q = fleet_query();
    let mut stale = Vec::new();
    let mut offset = 0;
    loop {
        let page = api
            .get(
                "/targets",
                &[
                    ("q", q.as_str()),
                    ("limit", "500"),
                    ("offset", &offset.to_string()),
                ],
            )
            .await?;
        let content = page["content"].as_array().cloned().unwrap_or_default();
        for t in &content {
            if let Some(id) = t["controllerId"].as_str()
                && naming.index_of(id).is_none()
            {
                stale.push(id.to_owned());
            }
        }
        offset += content.len();
        if content.is_empty() || offset as i64 >= page["total"].as_i64().unwrap_or(0) {
            break;
        }
    }
    for id in stale {
        let req = api
            .http
            .delete(format!("{}/rest/v1/targets/{id}", api.base));
        api.send(req).await?;
    }
    Ok(())
}

/// Until this run's simulator has sent every THING_CREATED (so its reply exchange exists) and
/// the service knows every device.
async fn wait_registered(
    api: &Api,
    counters: &Counters,
    devices: u32,
    token: &CancellationToken,
) -> anyhow::Result<i64> {
    let q = fleet_query();
    let deadline = Instant::now() + Duration::from_secs(60 + u64::from(devices) / 500);
    loop {
        let sent = counters
            .registered
            .load(std::sync::atomic::Ordering::Relaxed);
        let v = api
            .get("/targets", &[("q", q.as_str()), ("limit", "1")])
            .await?;
        let total = v["total"].as_i64().unwrap_or(0);
        if sent >= u64::from(devices) && total >= i64::from(devices) {
            return Ok(total);
        }
        if Instant::now() > deadline {
            bail!("only {total} of {devices} devices registered");
        }
        pause(token, Duration::from_millis(200)).await?;
    }
}

/// What the demo created.
#[derive(Debug, Clone)]
struct Created {
    id: i64,
    name: String,
    ds_label: String,
}

/// Why an attempt created no rollout.
enum Missed {
    /// A name of this round exists already: try the next round.
    Taken,
    Failed(anyhow::Error),
}

impl From<anyhow::Error> for Missed {
    fn from(e: anyhow::Error) -> Self {
        Missed::Failed(e)
    }
}

/// POST `body` to `path`; the id of what it created, found at the JSON pointer `id_at`.
async fn create(api: &Api, path: &str, body: Value, id_at: &str) -> Result<i64, Missed> {
    match api.post(path, &body).await? {
        (StatusCode::CREATED, v) => Ok(v
            .pointer(id_at)
            .and_then(Value::as_i64)
            .with_context(|| format!("POST {path}: no id at {id_at} in {v}"))?),
        (StatusCode::CONFLICT, _) => Err(Missed::Taken),
        (s, v) => Err(anyhow!("POST {path}: {s} {v}").into()),
    }
}

/// Software module, artifact, distribution set and rollout of version `1.<round>.0`.
async fn attempt(api: &Api, args: &DemoArgs, round: u32) -> Result<Created, Missed> {
    let version = format!("1.{round}.0");
    let sm_id = create(
        api,
        "/softwaremodules",
        json!([{"name": "demo-firmware", "version": version, "type": "os", "vendor": "dmf-broker demo",
                "description": "Firmware image deployed by `dmf-broker demo`"}]),
        "/0/id",
    )
    .await?;
    let filename = format!("demo-firmware-{version}.img");
    // An artifact is a reference to a file on a CDN; the simulated devices download nothing.
    let digest = {
        use sha2::Digest;
        let d = sha2::Sha256::digest(filename.as_bytes());
        d.iter().fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    };
    let (s, v) = api
        .post(
            &format!("/softwaremodules/{sm_id}/artifacts"),
            &json!({"filename": filename, "size": 52_428_800,
                    "hashes": {"sha1": &digest[..40], "md5": &digest[..32], "sha256": digest},
                    "urls": {"HTTPS": format!("https://cdn.example.com/demo/{filename}")}}),
        )
        .await?;
    if s != StatusCode::CREATED {
        return Err(anyhow!("creating the artifact: {s} {v}").into());
    }
    let ds_id = create(
        api,
        "/distributionsets",
        json!([{"name": "demo-firmware", "version": version, "type": "os", "modules": [{"id": sm_id}],
                "description": "Distribution set of `dmf-broker demo`"}]),
        "/0/id",
    )
    .await?;
    let name = format!("demo-rollout-{round}");
    let id = create(
        api,
        "/rollouts",
        json!({"name": name, "description": "Created by `dmf-broker demo`",
               "distributionSetId": ds_id, "targetFilterQuery": fleet_query(),
               "amountGroups": args.groups,
               "successCondition": {"condition": "THRESHOLD", "expression": SUCCESS_THRESHOLD.to_string()},
               "successAction": {"action": "NEXTGROUP", "expression": ""},
               "errorCondition": {"condition": "THRESHOLD", "expression": ERROR_THRESHOLD.to_string()},
               "errorAction": {"action": "PAUSE", "expression": ""}}),
        "/id",
    )
    .await?;
    Ok(Created {
        id,
        name,
        ds_label: format!("demo-firmware:{version}"),
    })
}

async fn create_rollout(api: &Api, args: &DemoArgs) -> anyhow::Result<Created> {
    for round in 1..=1000 {
        match attempt(api, args, round).await {
            Ok(c) => return Ok(c),
            Err(Missed::Taken) => {}
            Err(Missed::Failed(e)) => return Err(e),
        }
    }
    bail!("1000 demo rollouts exist already; delete some")
}

async fn wait_ready_and_start(api: &Api, id: i64, token: &CancellationToken) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = api.get(&format!("/rollouts/{id}"), &[]).await?;
        if r["status"] == "ready" {
            break;
        }
        if Instant::now() > deadline {
            bail!("rollout {id} did not become ready: {}", r["status"]);
        }
        pause(token, Duration::from_millis(100)).await?;
    }
    match api
        .post(&format!("/rollouts/{id}/start"), &json!({}))
        .await?
    {
        (StatusCode::NO_CONTENT | StatusCode::OK, _) => Ok(()),
        (s, v) => bail!("starting rollout {id}: {s} {v}"),
    }
}

/// A group's line of the display.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupView {
    pub name: String,
    pub status: String,
    pub total: i64,
    pub finished: i64,
    pub error: i64,
    pub running: i64,
    pub scheduled: i64,
    pub cancelled: i64,
}

impl GroupView {
    fn from_json(g: &Value) -> Self {
        let p = &g["totalTargetsPerStatus"];
        let n = |k: &str| p[k].as_i64().unwrap_or(0);
        Self {
            name: g["name"].as_str().unwrap_or_default().to_owned(),
            status: g["status"].as_str().unwrap_or_default().to_owned(),
            total: g["totalTargets"].as_i64().unwrap_or(0),
            finished: n("finished"),
            error: n("error"),
            running: n("running"),
            scheduled: n("scheduled"),
            cancelled: n("cancelled"),
        }
    }
}

const BAR_WIDTH: usize = 30;

/// `[████▒▒░░░]` with finished, error, running and the rest in proportion; coloured on a TTY.
pub fn bar(g: &GroupView, width: usize, color: bool) -> String {
    let total = g.total.max(1) as f64;
    let cells = |n: i64| ((n.max(0) as f64 / total) * width as f64).round() as usize;
    let finished = cells(g.finished).min(width);
    let error = cells(g.error).min(width - finished);
    let running = cells(g.running).min(width - finished - error);
    let rest = width - finished - error - running;
    let paint = |code: &str, ch: &str, n: usize| {
        if n == 0 {
            String::new()
        } else if color {
            format!("\x1b[{code}m{}\x1b[0m", ch.repeat(n))
        } else {
            ch.repeat(n)
        }
    };
    format!(
        "[{}{}{}{}]",
        paint("32", "█", finished),
        paint("31", "█", error),
        paint("33", "▒", running),
        paint("2", "░", rest)
    )
}

/// One display line per group.
pub fn group_line(g: &GroupView, color: bool) -> String {
    format!(
        "  {:<10} {} {:>5} finished {:>4} error {:>4} running {:>5} scheduled  {}",
        g.name,
        bar(g, BAR_WIDTH, color),
        g.finished,
        g.error,
        g.running,
        g.scheduled,
        g.status
    )
}

/// What changed between two polls, as lines for the log above the bars. A group that went from
/// scheduled straight to finished between two polls still announces the cascade.
pub fn events(before: &[GroupView], now: &[GroupView]) -> Vec<String> {
    let mut out = Vec::new();
    for (i, g) in now.iter().enumerate() {
        let old = before.get(i).map(|b| b.status.as_str()).unwrap_or("");
        if old == g.status {
            continue;
        }
        let waiting = |s: &str| matches!(s, "" | "creating" | "ready" | "scheduled");
        if waiting(old) && !waiting(&g.status) {
            match i.checked_sub(1).and_then(|p| now.get(p)) {
                None => out.push(format!("-> {} started", g.name)),
                Some(prev) => out.push(format!(
                    "-> {} reached its success condition ({} of {} finished); cascade moves on to {}",
                    prev.name, prev.finished, prev.total, g.name
                )),
            }
        }
        match g.status.as_str() {
            "finished" => out.push(format!(
                "   {} finished: {} finished, {} error",
                g.name, g.finished, g.error
            )),
            "error" => out.push(format!(
                "!! {} hit its error condition ({} errors): the rollout pauses",
                g.name, g.error
            )),
            _ => {}
        }
    }
    out
}

/// The terminal display: event lines scroll, the bars below them are redrawn in place on a
/// TTY; elsewhere progress is printed as plain lines every few seconds.
struct Display<'a> {
    out: &'a mut (dyn Write + Send),
    tty: bool,
    /// Lines of the last frame (to move the cursor back over them).
    drawn: usize,
}

impl<'a> Display<'a> {
    fn new(out: &'a mut (dyn Write + Send), tty: bool) -> Self {
        Self { out, tty, drawn: 0 }
    }

    fn frame(
        &mut self,
        events: &[String],
        groups: &[GroupView],
        footer: &str,
    ) -> std::io::Result<()> {
        let mut s = String::new();
        if self.tty && self.drawn > 0 {
            // Up over the previous frame, then clear to the end of the screen.
            let _ = write!(s, "\x1b[{}A\x1b[J", self.drawn);
        }
        for e in events {
            s.push_str(e);
            s.push('\n');
        }
        if self.tty {
            for g in groups {
                s.push_str(&group_line(g, true));
                s.push('\n');
            }
            s.push_str(footer);
            s.push('\n');
            self.drawn = groups.len() + 1;
        }
        self.out.write_all(s.as_bytes())?;
        self.out.flush()
    }

    fn plain(&mut self, elapsed: f64, groups: &[GroupView]) -> std::io::Result<()> {
        let mut s = String::new();
        for g in groups.iter().filter(|g| g.status == "running") {
            let _ = writeln!(
                s,
                "[{elapsed:6.1}s] {}: {} finished, {} error, {} running, {} scheduled (of {})",
                g.name, g.finished, g.error, g.running, g.scheduled, g.total
            );
        }
        self.out.write_all(s.as_bytes())?;
        self.out.flush()
    }

    /// Poll the rollout and its groups until the rollout leaves `running`/`starting`; returns
    /// its final status and progress.
    async fn follow(
        &mut self,
        api: &Api,
        id: i64,
        token: &CancellationToken,
    ) -> anyhow::Result<(String, BTreeMap<String, i64>)> {
        let started = Instant::now();
        let mut before: Vec<GroupView> = Vec::new();
        let mut last_status = String::new();
        let mut last_plain = Instant::now();
        let tick = if self.tty {
            Duration::from_millis(200)
        } else {
            Duration::from_millis(500)
        };
        loop {
            let r = api.get(&format!("/rollouts/{id}"), &[]).await?;
            let gs = api
                .get(
                    &format!("/rollouts/{id}/deploygroups"),
                    &[("representation", "full"), ("limit", "500")],
                )
                .await?;
            let groups: Vec<GroupView> = gs["content"]
                .as_array()
                .map(|a| a.iter().map(GroupView::from_json).collect())
                .unwrap_or_default();
            let status = r["status"].as_str().unwrap_or_default().to_owned();
            let elapsed = started.elapsed().as_secs_f64();
            let mut evs = events(&before, &groups);
            if status != last_status {
                evs.push(format!(
                    "   rollout {}: {status} ({elapsed:.1} s)",
                    r["name"].as_str().unwrap_or_default()
                ));
                last_status = status.clone();
            }
            let p = &r["totalTargetsPerStatus"];
            let footer = format!(
                "  rollout {status}: {} finished, {} error, {} running of {} devices  ({elapsed:.1} s)",
                p["finished"], p["error"], p["running"], r["totalTargets"]
            );
            self.frame(&evs, &groups, &footer)
                .context("writing to the terminal")?;
            if !self.tty && last_plain.elapsed() >= Duration::from_secs(2) {
                last_plain = Instant::now();
                self.plain(elapsed, &groups)
                    .context("writing to the terminal")?;
            }
            before = groups;
            if !matches!(status.as_str(), "running" | "starting" | "ready") {
                let progress = p
                    .as_object()
                    .map(|o| {
                        o.iter()
                            .map(|(k, v)| (k.clone(), v.as_i64().unwrap_or(0)))
                            .collect()
                    })
                    .unwrap_or_default();
                if !self.tty {
                    line(self.out, &footer)?;
                }
                return Ok((status, progress));
            }
            pause(token, tick).await?;
        }
    }
}

/// How to look around once the rollout is done.
fn explore(
    out: &mut (dyn Write + Send),
    base: &str,
    args: &DemoArgs,
    created: &Created,
    status: &str,
    progress: &BTreeMap<String, i64>,
    queue: &str,
) -> anyhow::Result<()> {
    let user = &args.serve.admin_user;
    // Never print a password that was configured; the default is public anyway.
    let cred = if args.serve.admin_password.is_some() {
        format!("{user}:$DMF_ADMIN_PASSWORD")
    } else {
        format!("{user}:{}", ServeArgs::DEFAULT_ADMIN_PASSWORD)
    };
    let naming = Naming::new(PREFIX, args.devices);
    let failing = (0..args.devices)
        .map(|i| naming.id(i))
        .find(|id| fleet::fails(id, args.fail_ratio));
    let id = created.id;
    let mut s = String::new();
    let n = |k: &str| progress.get(k).copied().unwrap_or(0);
    let _ = writeln!(
        s,
        "\nRollout {} is {status}: {} finished, {} error, {} running.\n",
        created.name,
        n("finished"),
        n("error"),
        n("running")
    );
    let _ = writeln!(s, "Explore (user {user}):");
    let _ = writeln!(s, "  web page        {base}/ui");
    let _ = writeln!(
        s,
        "  rollout         curl -u {cred} {base}/rest/v1/rollouts/{id}"
    );
    let _ = writeln!(
        s,
        "  its groups      curl -u {cred} '{base}/rest/v1/rollouts/{id}/deploygroups?representation=full'"
    );
    let _ = writeln!(
        s,
        "  its actions     curl -u {cred} '{base}/rest/v1/actions?q=rollout.id=={id}'"
    );
    let _ = writeln!(
        s,
        "  failed devices  curl -u {cred} '{base}/rest/v1/targets?q=updateStatus==error'"
    );
    if let Some(f) = failing {
        let _ = writeln!(
            s,
            "  a failing one   curl -u {cred} {base}/rest/v1/targets/{f}/actions"
        );
    }
    let _ = writeln!(
        s,
        "  its attributes  curl -u {cred} {base}/rest/v1/targets/{}/attributes",
        naming.id(0)
    );
    let _ = writeln!(s, "  health          curl {base}/health");
    let _ = writeln!(
        s,
        "  the fleet       {} devices behind exchange {REPLY_TO} / queue {queue} on the broker",
        args.devices
    );
    if !args.exit_when_done {
        let _ = writeln!(
            s,
            "\nThe service and the simulated fleet keep running; press Ctrl-C to stop."
        );
    }
    line(out, &s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(name: &str, status: &str, finished: i64, error: i64, running: i64) -> GroupView {
        GroupView {
            name: name.into(),
            status: status.into(),
            total: 40,
            finished,
            error,
            running,
            scheduled: 40 - finished - error - running,
            cancelled: 0,
        }
    }

    #[test]
    fn bars_are_proportional_and_always_full_width() {
        let plain = bar(&g("group-1", "running", 20, 4, 8), 20, false);
        assert_eq!(plain, "[████████████▒▒▒▒░░░░]");
        for f in 0..=40 {
            let b = bar(&g("g", "running", f, 40 - f, 0), 30, false);
            assert_eq!(b.chars().count(), 32, "{b}");
        }
        let empty = GroupView::default();
        assert_eq!(bar(&empty, 4, false), "[░░░░]");
        assert!(bar(&g("g", "running", 40, 0, 0), 4, true).contains("\x1b[32m"));
    }

    #[test]
    fn events_name_the_cascade() {
        let before = vec![
            g("group-1", "running", 20, 0, 20),
            g("group-2", "scheduled", 0, 0, 0),
        ];
        let now = vec![
            g("group-1", "running", 33, 1, 6),
            g("group-2", "running", 0, 0, 40),
        ];
        let e = events(&before, &now);
        assert_eq!(e.len(), 1);
        assert!(e[0].contains("group-1 reached its success condition (33 of 40 finished)"));
        assert!(e[0].contains("moves on to group-2"));
        assert!(events(&now, &now).is_empty());
        let done = vec![g("group-1", "finished", 39, 1, 0)];
        assert_eq!(
            events(&now[..1], &done),
            ["   group-1 finished: 39 finished, 1 error"]
        );
        // Too fast to see it running: the cascade is still announced.
        let skipped = vec![
            g("group-1", "finished", 40, 0, 0),
            g("group-2", "finished", 40, 0, 0),
        ];
        let e = events(&before, &skipped);
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(e[1].contains("cascade moves on to group-2"));
    }

    #[test]
    fn the_local_base_is_reachable() {
        let addr: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert_eq!(local_base(addr, 8080), "http://localhost:8080");
        let addr: SocketAddr = "10.1.2.3:0".parse().unwrap();
        assert_eq!(local_base(addr, 9000), "http://10.1.2.3:9000");
    }
}
