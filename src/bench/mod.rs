//! `dmf-broker bench`: the reproducible load benchmark. One command measures, in the same run on
//! the same machine:
//!
//! 1. the raw ceilings — RabbitMQ publish-with-confirms and consume+ack of messages of the sizes
//!    the service handles, two broker hops, PostgreSQL batched row updates and a bulk insert;
//! 2. status ingestion — UPDATE_ACTION_STATUS reports applied (committed, acked) per second;
//! 3. dispatch — deployment messages delivered per second when a rollout starts;
//! 4. cascade latency — from publishing the report that completes a group to the next group's
//!    first deployment message at the connector, p50/p99, while other devices keep reporting;
//! 5. rollout creation — time to create and split a rollout over many targets;
//! 6. the service's peak resident memory.
//!
//! Isolation: a fresh database and vhost per run, removed afterwards; the service runs as a
//! child process (`serve`) so its memory is its own. The bench never touches user data.

mod api;
mod auto_assign;
mod ceilings;
mod env;
mod fleet;
mod report;

use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use self::api::{Api, finished};
use self::env::{Isolation, RssSampler, Service, read_rss, round};
use self::fleet::{BACKGROUND, CASCADE, CREATION, DMF_EXCHANGE, Fleet, INGEST, Pipeline};
use self::report::{Figure, Goal, fmt_num, percentile};
use crate::config::BenchArgs;
use crate::engine::rollouts::limits::{MAX_GROUPS, MAX_TARGETS_PER_GROUP};
use crate::store;

/// Status reports each ingestion device sends: RUNNING, DOWNLOAD, DOWNLOADED, FINISHED.
const REPORTS: [&str; 4] = ["RUNNING", "DOWNLOAD", "DOWNLOADED", "FINISHED"];
const MIB: f64 = 1024.0;

/// Sizes of one run: flags, else `--quick` sizes, else the defaults (about a minute).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Sizes {
    pub devices: u64,
    pub groups: u64,
    pub creation_targets: u64,
    pub auto_targets: u64,
    pub auto_devices: u64,
    pub transitions: u64,
    pub group_size: u64,
    pub background_devices: u64,
    /// Reports per second of the background load; `None`: a quarter of the measured ingestion.
    pub background_rate: Option<u64>,
    /// Actions the consume+ack ceiling reports on (as many reports each as a device sends).
    pub ceiling_actions: u64,
    pub deploy_ceiling_messages: u64,
    pub quick: bool,
}

impl Sizes {
    pub fn resolve(a: &BenchArgs) -> Result<Self, String> {
        let pick = |v: Option<u64>, quick: u64, normal: u64| {
            v.unwrap_or(if a.quick { quick } else { normal })
        };
        let devices = pick(a.devices, 400, 20000);
        let per_group = MAX_TARGETS_PER_GROUP as u64;
        let min_groups = devices.div_ceil(per_group).max(1);
        let groups = a.groups.unwrap_or(min_groups);
        let transitions = pick(a.transitions, 5, 100);
        let s = Sizes {
            devices,
            groups,
            creation_targets: pick(a.creation_targets, 2000, 100000),
            auto_targets: pick(a.auto_targets, 2000, 100000),
            auto_devices: pick(a.auto_devices, 20, 200),
            transitions,
            group_size: pick(a.group_size, 5, 20),
            background_devices: pick(a.background_devices, 50, 1000),
            background_rate: a.background_rate,
            ceiling_actions: devices.clamp(1250, 10000),
            deploy_ceiling_messages: devices.clamp(2000, 100000),
            quick: a.quick,
        };
        if devices == 0 {
            return Err("--devices must be at least 1".into());
        }
        if groups < min_groups || groups > devices || groups > MAX_GROUPS as u64 {
            return Err(format!(
                "--groups must be between {min_groups} (at most {per_group} targets per group) and {} for {devices} devices",
                devices.min(MAX_GROUPS as u64)
            ));
        }
        if transitions == 0 || transitions >= MAX_GROUPS as u64 {
            return Err(format!(
                "--transitions must be between 1 and {}",
                MAX_GROUPS - 1
            ));
        }
        if s.group_size == 0 || s.group_size > per_group {
            return Err(format!("--group-size must be between 1 and {per_group}"));
        }
        if s.background_devices == 0 || s.background_devices > per_group {
            return Err(format!(
                "--background-devices must be between 1 and {per_group}"
            ));
        }
        if s.auto_targets == 0 || s.auto_devices == 0 {
            return Err("--auto-targets and --auto-devices must be at least 1".into());
        }
        if s.creation_targets == 0 || s.creation_targets.div_ceil(per_group) > MAX_GROUPS as u64 {
            return Err(format!(
                "--creation-targets must be between 1 and {}",
                per_group * MAX_GROUPS as u64
            ));
        }
        Ok(s)
    }
}

/// Run the bench; the exit code says whether every phase completed (not whether goals were met).
pub async fn run(args: BenchArgs) -> ExitCode {
    let sizes = match Sizes::resolve(&args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("dmf-broker bench: {e}");
            return ExitCode::from(2);
        }
    };
    let iso = match Isolation::new(&args.database_url, &args.amqp_url) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("dmf-broker bench: {e:#}");
            return ExitCode::from(2);
        }
    };
    let started_at = chrono::Utc::now().to_rfc3339();
    let t_run = Instant::now();
    progress(&format!(
        "database {} and vhost {} for this run",
        iso.db_url.rsplit('/').next().unwrap_or_default(),
        iso.vhost
    ));
    let outcome = match iso.create().await {
        Ok(()) => with_service(&args, &sizes, &iso).await,
        Err(e) => Err(e),
    };
    if args.keep {
        progress(&format!(
            "kept database {} and vhost {}",
            iso.db_url, iso.vhost
        ));
    } else {
        iso.remove().await;
    }
    let (figures, mut context, stop_error) = match outcome {
        Ok(v) => v,
        Err(e) => {
            eprintln!("dmf-broker bench failed: {e:#}");
            return ExitCode::from(1);
        }
    };
    let command = std::iter::once("dmf-broker".to_owned())
        .chain(std::env::args().skip(1))
        .collect::<Vec<_>>()
        .join(" ");
    context["command"] = json!(command);
    context["version"] = json!(env!("CARGO_PKG_VERSION"));
    context["build"] = json!(if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    });
    context["started_at"] = json!(started_at);
    context["duration_s"] = json!(round(t_run.elapsed().as_secs_f64(), 1));
    context["sizes"] = serde_json::to_value(&sizes).unwrap_or(Value::Null);
    context["figures"] = report::figures_json(&figures);

    println!();
    print!("{}", report::table(&figures));
    println!();
    println!("command: {command}");
    if let Some(m) = context["machine"].as_object() {
        println!(
            "machine: {} ({} cores, {} GiB), {}; {}; RabbitMQ {}",
            m.get("cpu").and_then(Value::as_str).unwrap_or("?"),
            m.get("cores").cloned().unwrap_or(Value::Null),
            m.get("memory_gib").cloned().unwrap_or(Value::Null),
            m.get("os").and_then(Value::as_str).unwrap_or("?"),
            m.get("postgresql")
                .and_then(Value::as_str)
                .and_then(|s| s.split(" on ").next())
                .unwrap_or("?"),
            m.get("rabbitmq").and_then(Value::as_str).unwrap_or("?"),
        );
    }
    let text = match serde_json::to_string_pretty(&context) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("dmf-broker bench: rendering the report: {e}");
            return ExitCode::from(1);
        }
    };
    if let Err(e) = std::fs::write(&args.json, text + "\n") {
        eprintln!("dmf-broker bench: writing {}: {e}", args.json.display());
        return ExitCode::from(1);
    }
    println!("report: {}", args.json.display());
    if let Some(e) = stop_error {
        eprintln!("dmf-broker bench: the service did not shut down cleanly: {e:#}");
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

fn progress(msg: &str) {
    eprintln!("bench: {msg}");
}

type Outcome = (Vec<Figure>, Value, Option<anyhow::Error>);

/// Start the service, run the phases, stop the service (always).
async fn with_service(args: &BenchArgs, sizes: &Sizes, iso: &Isolation) -> anyhow::Result<Outcome> {
    let t = Instant::now();
    let mut svc = Service::start(iso, args.rollout_tick_ms, &args.service_log).await?;
    progress(&format!(
        "service pid {} healthy at {} after {:.1} s (log {})",
        svc.pid,
        svc.base,
        t.elapsed().as_secs_f64(),
        svc.log.display()
    ));
    let result = phases(&mut svc, sizes, iso).await;
    let log = svc.log.clone();
    let stopped = svc.stop().await;
    match result {
        Ok((figures, context)) => {
            if !args.keep {
                let _ = std::fs::remove_file(&log);
            }
            Ok((figures, context, stopped.err()))
        }
        Err(e) => Err(e.context(format!("service log: {}", log.display()))),
    }
}

/// A rollout create body.
fn rollout_body(name: &str, ds: i64, prefix: &str, groups: u64, threshold: &str) -> Value {
    json!({
        "name": name,
        "distributionSetId": ds,
        "targetFilterQuery": format!("controllerId=={prefix}*"),
        "amountGroups": groups,
        "successCondition": {"condition": "THRESHOLD", "expression": threshold},
        "successAction": {"action": "NEXTGROUP", "expression": ""},
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn phases(
    svc: &mut Service,
    sizes: &Sizes,
    iso: &Isolation,
) -> anyhow::Result<(Vec<Figure>, Value)> {
    let api = Api::new(svc.base.clone());
    let idle_rss_kib = read_rss(svc.pid).map_or(0, |(rss, _)| rss);
    let rss = RssSampler::start(svc.pid);
    let mut db = store::bench::connect(&iso.db_url).await?;
    let machine = env::machine(&store::bench::server_version(&mut db).await?);
    let mut fleet = Fleet::connect(&iso.amqp_url).await?;
    let mut figures = Vec::new();
    let cascade_devices = (sizes.transitions + 1) * sizes.group_size;
    let long = Duration::from_secs(60);

    // Registration: every device the phases use, with THING_CREATED through the service.
    rss.phase("registration");
    let t = Instant::now();
    let fleet_size = sizes.devices + cascade_devices + sizes.background_devices;
    fleet.register(INGEST, sizes.devices).await?;
    fleet.register(CASCADE, cascade_devices).await?;
    fleet.register(BACKGROUND, sizes.background_devices).await?;
    api.wait_targets(
        "bench-",
        fleet_size as i64,
        Duration::from_secs(120 + fleet_size / 200),
    )
    .await?;
    let registration_s = t.elapsed().as_secs_f64();
    progress(&format!(
        "registered {} devices in {registration_s:.1} s ({} THING_CREATED/s)",
        fmt_num(fleet_size as f64),
        fmt_num(fleet_size as f64 / registration_s)
    ));
    let ds = api.create_set("bench-fw").await?;

    // Dispatch: deployments of a rollout over all ingestion devices; with several groups a
    // success threshold of 0 starts every group at once.
    rss.phase("dispatch");
    let rid = api
        .create_ready_rollout(
            rollout_body("bench-ingest", ds, INGEST, sizes.groups, "0"),
            long,
        )
        .await?;
    let t_start = Instant::now();
    api.start_rollout(rid).await?;
    let arrivals = fleet
        .ingest
        .collect(sizes.devices as usize, Duration::from_secs(60))
        .await
        .context("dispatch")?;
    let first = arrivals.iter().map(|a| a.at).min().unwrap_or(t_start);
    let last = arrivals.iter().map(|a| a.at).max().unwrap_or(t_start);
    let dispatch_s = (last - t_start).as_secs_f64();
    let dispatch = sizes.devices as f64 / dispatch_s;
    progress(&format!(
        "dispatch: {} deployments in {dispatch_s:.2} s after POST start ({} msg/s)",
        fmt_num(sizes.devices as f64),
        fmt_num(dispatch)
    ));
    svc.check_alive()?;

    // Ingestion: every device reports RUNNING, DOWNLOAD, DOWNLOADED, FINISHED (all devices one
    // status after the other, as a fleet progressing together does), published as fast as the
    // broker confirms them; done when the service shows every action FINISHED (committed). One
    // queue, one consumer: the last FINISHED applied means every report before it was applied.
    rss.phase("ingestion");
    let reports = sizes.devices * REPORTS.len() as u64;
    let actions: Vec<i64> = arrivals.iter().map(|a| a.action).collect();
    let t0 = Instant::now();
    let publish = async {
        fleet::publish_reports(&fleet.conn, DMF_EXCHANGE, &actions, &REPORTS).await?;
        anyhow::Ok(Instant::now())
    };
    let applied = api.wait_rollout(
        rid,
        Duration::from_millis(20),
        Duration::from_secs(120 + reports / 500),
        "finished by every device",
        |v| finished(v) >= sizes.devices as i64,
    );
    let (t_published, applied) = tokio::join!(publish, applied);
    let t_published = t_published.context("publishing the reports")?;
    let (_, t_done) = applied.context("ingestion")?;
    let ingest_s = (t_done - t0).as_secs_f64();
    let publish_s = (t_published - t0).as_secs_f64();
    let ingestion = reports as f64 / ingest_s;
    // The service kept up with the fleet (no backlog worth the name when the last report was
    // out): the figure is then the fleet's rate, not the service's.
    let publisher_bound = ingest_s - publish_s < 0.05 * ingest_s;
    progress(&format!(
        "ingestion: {} reports applied in {ingest_s:.2} s ({} reports/s; published in {publish_s:.2} s{})",
        fmt_num(reports as f64),
        fmt_num(ingestion),
        if publisher_bound {
            " — bound by the bench's publishing"
        } else {
            ""
        }
    ));
    // Let the service drain its attribute requests before the ceilings run beside it.
    let deadline = Instant::now() + long;
    while fleet.other.load(Ordering::Relaxed) < sizes.devices && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    svc.check_alive()?;

    // Ceilings, with the service idle.
    rss.phase("ceilings");
    let status_path =
        ceilings::amqp_status_path(&fleet.conn, sizes.ceiling_actions, &REPORTS).await?;
    let raw_consume = status_path.end_to_end;
    let ceiling_messages = sizes.ceiling_actions * REPORTS.len() as u64;
    let sample = fleet
        .sample
        .lock()
        .ok()
        .and_then(|s| s.clone())
        .context("no deployment message was captured")?;
    let sample_bytes = sample.0.len();
    let raw_deploy =
        ceilings::amqp_deploy_publish(&fleet.conn, &sample, sizes.deploy_ceiling_messages).await?;
    let hops = ceilings::amqp_two_hops(&fleet.conn, if sizes.quick { 50 } else { 500 }).await?;
    let pg_update =
        ceilings::pg_batched_update(&iso.db_url, sizes.devices, reports.min(400000)).await?;
    let pg_pairs_s = ceilings::pg_membership_insert(&iso.db_url, sizes.creation_targets).await?;
    progress(&format!(
        "ceilings: publish+confirm {} msg/s ({sample_bytes} B deployments), consume+ack {} msg/s while the fleet publishes ({} from a filled queue; the fleet alone publishes {}), PG update {} rows/s",
        fmt_num(raw_deploy),
        fmt_num(raw_consume),
        fmt_num(status_path.consume_prefilled),
        fmt_num(status_path.fill),
        fmt_num(pg_update)
    ));
    figures.push(
Figure::new("raw_amqp_consume_ack", "raw RabbitMQ consume+ack", raw_consume, "msg/s")
.detail(json!({"measured": "status reports (persistent, durable queue) consumed and acked while the fleet's publishers send them, first publish → last ack: the ingestion figure's shape with a consumer that does nothing",
            "messages": ceiling_messages, "prefetch": ceilings::PREFETCH,
            "multi_ack_every": ceilings::BATCH,
            "consume_from_filled_queue_msg_per_s": round(status_path.consume_prefilled, 1),
            "publish_alone_msg_per_s": round(status_path.fill, 1),
            "publishing": format!("{} channels with publisher confirms, window {} each, as the fleet publishes", fleet::CHANNELS, fleet::WINDOW)})),
);
    figures.push(
Figure::new("raw_amqp_publish_confirm", "raw RabbitMQ publish+confirm", raw_deploy, "msg/s")
.detail(json!({"measured": "a captured deployment message republished through a non-durable fanout exchange to a consumed queue (the service → connector path), one channel",
            "messages": sizes.deploy_ceiling_messages, "message_bytes": sample_bytes,
            "window": fleet::WINDOW})),
);
    figures.push(
        Figure::new(
            "raw_pg_batched_update",
            "raw PostgreSQL batched update",
            pg_update,
            "rows/s",
        )
        .detail(
            json!({"statement": "UPDATE … FROM unnest($ids, $statuses)", "batch": ceilings::BATCH,
            "one_commit_per_batch": true, "rows": sizes.devices.max(ceilings::BATCH as u64),
            "updates": reports.min(400000)}),
        ),
    );
    figures.push(
Figure::new("status_ingestion", "status ingestion", ingestion, "reports/s")
.against("raw consume+ack", raw_consume)
.goal(Goal::RatioAtLeast(0.5), "≥ 0.50 × ceiling")
.detail(json!({
            "measured": "reports / (first report published → every action FINISHED in the API)",
            "reports": reports, "devices": sizes.devices, "reports_per_device": REPORTS.len(),
            "seconds": round(ingest_s, 3),
            "publish_seconds": round(publish_s, 3),
            "publisher_bound": publisher_bound,
            "publishing": format!("{} channels with publisher confirms, window {} each", fleet::CHANNELS, fleet::WINDOW),
            "versus_raw_pg_update": round(ingestion / pg_update, 3),
        })),
);
    figures.push(
Figure::new("dispatch", "dispatch", dispatch, "msg/s")
.against("raw publish+confirm", raw_deploy)
.goal(Goal::RatioAtLeast(0.7), "≥ 0.70 × ceiling")
.detail(json!({
            "measured": "deployments / (POST start → last deployment at the connector)",
            "deployments": sizes.devices, "groups": sizes.groups,
            "seconds": round(dispatch_s, 3),
            "first_deployment_ms": round(ms(first - t_start), 1),
            "steady_msg_per_s": round((sizes.devices.saturating_sub(1)) as f64 / (last - first).as_secs_f64().max(1e-9), 1),
        })),
);
    svc.check_alive()?;

    // Cascade: a rollout of many small groups (threshold 100 %, NEXTGROUP) while a background
    // rollout's devices keep reporting.
    rss.phase("cascade");
    let bid = api
        .create_ready_rollout(
            rollout_body("bench-background", ds, BACKGROUND, 1, "100"),
            long,
        )
        .await?;
    api.start_rollout(bid).await?;
    let background = fleet
        .background
        .collect(sizes.background_devices as usize, Duration::from_secs(60))
        .await
        .context("background rollout")?;
    let token = CancellationToken::new();
    let background_rate = sizes
        .background_rate
        .unwrap_or((ingestion / 4.0) as u64)
        .max(1);
    let load = tokio::spawn(background_load(
        fleet.pipeline().await?,
        background.iter().map(|a| a.action).collect(),
        background_rate,
        token.clone(),
    ));
    let groups = sizes.transitions + 1;
    let cid = api
        .create_ready_rollout(
            rollout_body("bench-cascade", ds, CASCADE, groups, "100"),
            long,
        )
        .await?;
    let gids = api.group_ids(cid).await?;
    if gids.len() as u64 != groups {
        bail!(
            "the cascade rollout has {} groups, not {groups}",
            gids.len()
        );
    }
    let mut p = fleet.pipeline().await?;
    api.start_rollout(cid).await?;
    let mut samples = Vec::with_capacity(sizes.transitions as usize);
    let mut t0: Option<Instant> = None;
    // Wall-clock starts, to find a transition in the service's log (--service-log, --keep).
    let mut started_at_ms = Vec::with_capacity(sizes.transitions as usize);
    for (k, gid) in gids.iter().enumerate() {
        let batch = fleet
            .cascade
            .collect(sizes.group_size as usize, Duration::from_secs(30))
            .await
            .with_context(|| format!("cascade group {}", k + 1))?;
        if let Some(t0) = t0 {
            let t1 = batch.iter().map(|a| a.at).min().unwrap_or(t0);
            samples.push(ms(t1.saturating_duration_since(t0)));
        }
        let Some((held, rest)) = batch.split_last() else {
            bail!("empty cascade group");
        };
        for a in rest {
            let (body, props) = fleet::status_report(a.action, "FINISHED");
            p.publish(DMF_EXCHANGE, "", &body, props).await?;
        }
        p.flush().await?;
        if k + 1 < gids.len() && !rest.is_empty() {
            // Only the held-back report may be left: everything else is applied.
            let deadline = Instant::now() + Duration::from_secs(30);
            while api.group_finished(cid, *gid).await? < rest.len() as i64 {
                if Instant::now() > deadline {
                    bail!(
                        "cascade group {} did not apply its reports within 30 s",
                        k + 1
                    );
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        let (body, props) = fleet::status_report(held.action, "FINISHED");
        t0 = Some(Instant::now());
        if k + 1 < gids.len() {
            started_at_ms.push(chrono::Utc::now().timestamp_millis());
        }
        p.publish(DMF_EXCHANGE, "", &body, props).await?;
        p.flush().await?;
    }
    token.cancel();
    let (bg_sent, bg_secs) = load.await.context("background load")??;
    let mut sorted = samples.clone();
    sorted.sort_by(f64::total_cmp);
    let (p50, p99) = (percentile(&sorted, 50.0), percentile(&sorted, 99.0));
    let (h50, h99) = (percentile(&hops, 50.0), percentile(&hops, 99.0));
    progress(&format!(
        "cascade: {} transitions, p50 {p50:.2} ms, p99 {p99:.2} ms (background {} reports/s)",
        samples.len(),
        fmt_num(bg_sent as f64 / bg_secs.max(1e-9))
    ));
    let cascade_detail = json!({
        "measured": "publish of the report completing a group (threshold 100 %) → first deployment of the next group at the connector",
        "transitions": samples.len(), "group_size": sizes.group_size,
        "samples_ms_in_order": samples.iter().map(|v| round(*v, 3)).collect::<Vec<_>>(),
        "started_at_unix_ms": started_at_ms,
        "background": {"devices": sizes.background_devices, "reports": bg_sent,
            "reports_per_s": round(bg_sent as f64 / bg_secs.max(1e-9), 1),
            "target_reports_per_s": background_rate,
            "rate": if sizes.background_rate.is_some() { "--background-rate" } else { "a quarter of the measured status ingestion" }},
        "ceiling": "two broker hops without the service (bench → durable queue → echo → non-durable queue → bench), idle",
    });
    figures.push(
        Figure::new("cascade_p50", "cascade latency p50", p50, "ms")
            .against("two broker hops p50", h50)
            .goal(Goal::at_most(5.0), "≤ 5 ms")
            .detail(cascade_detail.clone()),
    );
    figures.push(
        Figure::new("cascade_p99", "cascade latency p99", p99, "ms")
            .against("two broker hops p99", h99)
            .goal(Goal::at_most(25.0), "≤ 25 ms")
            .detail(json!({"see": "cascade_p50", "samples": samples.len()})),
    );
    svc.check_alive()?;

    // Creation: plain targets inserted with SQL, then a rollout over all of them, split into
    // the fewest groups the per-group quota allows; done when the API shows it READY.
    rss.phase("creation");
    let tenant = store::bench::tenant_id(&mut db, "DEFAULT")
        .await?
        .context("tenant DEFAULT")?;
    let t = Instant::now();
    store::bench::insert_targets(&mut db, tenant, CREATION, sizes.creation_targets as i64).await?;
    let insert_s = t.elapsed().as_secs_f64();
    let creation_groups = sizes
        .creation_targets
        .div_ceil(MAX_TARGETS_PER_GROUP as u64);
    let t = Instant::now();
    let mid = api
        .create_rollout(rollout_body(
            "bench-creation",
            ds,
            CREATION,
            creation_groups,
            "100",
        ))
        .await?;
    let post_s = t.elapsed().as_secs_f64();
    let (created, t_ready) = api
        .wait_rollout(
            mid,
            Duration::from_millis(50),
            Duration::from_secs(120 + sizes.creation_targets / 2000),
            "ready",
            |v| v["status"] == "ready",
        )
        .await
        .context("rollout creation")?;
    let creation_s = (t_ready - t).as_secs_f64();
    if created["totalTargets"].as_i64() != Some(sizes.creation_targets as i64) {
        bail!(
            "the creation rollout holds {} targets, not {}",
            created["totalTargets"],
            sizes.creation_targets
        );
    }
    progress(&format!(
        "creation: {} targets in {creation_groups} groups READY after {creation_s:.2} s",
        fmt_num(sizes.creation_targets as f64)
    ));
    let at_million = sizes.creation_targets >= 1_000_000;
    figures.push(
        Figure::new(
            "rollout_creation",
            format!(
                "rollout creation, {} targets",
                fmt_num(sizes.creation_targets as f64)
            ),
            creation_s,
            "s",
        )
        .against("raw PG insert of the memberships", pg_pairs_s)
        .goal(
            Goal::at_most(10.0).applies_if(at_million),
            if at_million {
                "≤ 10 s"
            } else {
                "≤ 10 s at 1,000,000"
            },
        )
        .detail(json!({
            "measured": "POST /rollouts → GET shows READY (created and split)",
            "targets": sizes.creation_targets, "groups": creation_groups,
            "post_answered_s": round(post_s, 3), "targets_inserted_by_sql_s": round(insert_s, 3),
        })),
    );
    svc.check_alive()?;

    rss.phase("auto-assignment");
    let hops = auto_assign::Hops { p50: h50, p99: h99 };
    figures.extend(auto_assign::measure(&api, &mut fleet, &mut db, sizes, &hops).await?);
    svc.check_alive()?;

    let (peak_kib, per_phase) = rss.finish(svc.pid);
    let phase_json: serde_json::Map<String, Value> = per_phase
        .iter()
        .map(|(p, kib)| (p.clone(), json!(round(*kib as f64 / MIB, 1))))
        .collect();
    let creation_mib = rss.phase_max("creation").map(|k| round(k as f64 / MIB, 1));
    figures.push(
        Figure::new(
            "service_peak_rss",
            "service peak RSS",
            peak_kib as f64 / MIB,
            "MiB",
        )
        .against("idle service after start", idle_rss_kib as f64 / MIB)
        .goal(Goal::at_most(64.0), "≤ 64 MiB")
        .detail(
            json!({"measured": "VmHWM of the service process over the whole run",
            "max_vmrss_mib_by_phase": phase_json, "creation_phase_mib": creation_mib}),
        ),
    );

    let context = json!({
        "tool": "dmf-broker bench",
        "machine": machine,
        "registration": {"devices": fleet_size, "seconds": round(registration_s, 3)},
        "other_messages_at_connector": fleet.other.load(Ordering::Relaxed),
    });
    let _ = fleet.conn.close(200, "bench done".into()).await;
    Ok((figures, context))
}

/// Intermediate reports (RUNNING, DOWNLOAD) for `actions`, round robin at `rate` per second,
/// until cancelled. Sent count and seconds.
async fn background_load(
    mut p: Pipeline,
    actions: Vec<i64>,
    rate: u64,
    token: CancellationToken,
) -> anyhow::Result<(u64, f64)> {
    // Per action history is capped (maxStatusEntriesPerAction 1000): stay well below.
    let cap = actions.len() as u64 * 500;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let t0 = Instant::now();
    let mut sent = 0u64;
    let n = actions.len() as u64;
    while sent < cap {
        tokio::select! {
            _ = token.cancelled() => break,
            _ = tick.tick() => {}
        }
        // Paced by the clock, not by ticks: a late tick catches up, a low rate stays low.
        let due = ((t0.elapsed().as_secs_f64() * rate as f64) as u64).min(cap);
        while sent < due {
            let action = actions[(sent % n) as usize];
            let status = if (sent / n).is_multiple_of(2) {
                "RUNNING"
            } else {
                "DOWNLOAD"
            };
            let (body, props) = fleet::status_report(action, status);
            p.publish(DMF_EXCHANGE, "", &body, props).await?;
            sent += 1;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    p.flush().await?;
    Ok((sent, secs))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::config::{Cli, Command};

    fn sizes(argv: &[&str]) -> Result<Sizes, String> {
        let args = ["dmf-broker", "bench"].iter().chain(argv).copied();
        let Command::Bench(a) = Cli::parse_from(args).command else {
            unreachable!()
        };
        Sizes::resolve(&a)
    }

    #[test]
    fn sizes_come_from_flags_then_quick_then_defaults() {
        let d = sizes(&[]).unwrap();
        assert_eq!(
            (d.devices, d.groups, d.creation_targets),
            (20000, 1, 100000)
        );
        assert_eq!(
            (d.transitions, d.group_size, d.background_rate),
            (100, 20, None)
        );
        let q = sizes(&["--quick"]).unwrap();
        assert!(q.quick && q.devices < 1000 && q.creation_targets < 10000);
        let m = sizes(&[
            "--quick",
            "--devices",
            "100000",
            "--creation-targets",
            "1000000",
        ])
        .unwrap();
        assert_eq!(
            (m.devices, m.groups, m.creation_targets),
            (100000, 5, 1000000)
        );
        assert_eq!(m.ceiling_actions, 10000);
    }

    #[test]
    fn sizes_beyond_the_quotas_are_refused() {
        assert!(sizes(&["--devices", "100000", "--groups", "4"]).is_err());
        assert!(sizes(&["--devices", "0"]).is_err());
        assert!(sizes(&["--transitions", "500"]).is_err());
        assert!(sizes(&["--creation-targets", "10000001"]).is_err());
        assert!(sizes(&["--group-size", "0"]).is_err());
    }
}
