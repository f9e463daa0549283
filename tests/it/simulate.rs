//! `simulate` against the real service: the fleet registers with its attributes, a rollout over
//! it ends with exactly the ERROR actions the id hash predicts, stuck devices keep their action
//! running, and stopping a rollout gets CANCELED or CANCEL_REJECTED as the hash says. Plus a
//! smoke test of `demo` end to end (twice, to show re-runs are idempotent).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use dmf_broker::config::{Cli, Command as Cmd, DemoArgs, SimulateArgs};
use dmf_broker::sim::{self, Counters, SimStats, fleet};
use reqwest::StatusCode;
use serde_json::json;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::helpers::*;

const DEVICES: u32 = 30;

fn sim_args(amqp_url: &str, extra: &[&str]) -> SimulateArgs {
    let devices = DEVICES.to_string();
    let mut argv = vec![
        "dmf-broker",
        "simulate",
        "--amqp-url",
        amqp_url,
        "--devices",
        &devices,
    ];
    argv.extend_from_slice(extra);
    let Cmd::Simulate(args) = Cli::parse_from(argv).command else {
        unreachable!()
    };
    args
}

struct RunningSim {
    token: CancellationToken,
    counters: Arc<Counters>,
    task: JoinHandle<anyhow::Result<SimStats>>,
}

impl RunningSim {
    fn start(args: SimulateArgs) -> Self {
        let token = CancellationToken::new();
        let counters = Arc::new(Counters::default());
        let task = tokio::spawn(sim::run_observed(args, token.clone(), counters.clone()));
        Self {
            token,
            counters,
            task,
        }
    }

    async fn stop(self) -> SimStats {
        self.token.cancel();
        self.task
            .await
            .expect("simulator task")
            .expect("simulator ran")
    }
}

fn ids(prefix: &str) -> Vec<String> {
    let naming = fleet::Naming::new(prefix, DEVICES);
    (0..DEVICES).map(|i| naming.id(i)).collect()
}

/// [`poll`] for a condition that names what it waits for.
async fn wait_until<T>(what: &str, secs: u64, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    poll(Duration::from_secs(secs), async || {
        f().await
            .ok_or_else(|| format!("timed out waiting for {what}"))
    })
    .await
}

async fn wait_fleet(app: &TestApp, prefix: &str) {
    let q = format!("/targets?q=controllerId=={prefix}*&limit=1");
    wait_until("the fleet to register", 15, async || {
        let (_, v) = app.api_get(&q).await;
        (v["total"] == DEVICES).then_some(())
    })
    .await;
}

async fn rollout(app: &TestApp, name: &str, prefix: &str, groups: u32) -> i64 {
    let ds = app.create_set(name).await;
    let r = app
        .create_rollout(json!({"name": name, "distributionSetId": ds,
                   "targetFilterQuery": format!("controllerId=={prefix}*"), "amountGroups": groups,
                   "successCondition": {"condition": "THRESHOLD", "expression": "50"},
                   "errorCondition": {"condition": "THRESHOLD", "expression": "100"}}))
        .await;
    let id = r["id"].as_i64().unwrap();
    app.wait_rollout(id, |r| r["status"] == "ready").await;
    app.start_rollout(id).await;
    id
}

/// The device's only action of this test and its status history types.
async fn action_of(app: &TestApp, device: &str) -> (String, Vec<String>) {
    let (_, acts) = app.api_get(&format!("/targets/{device}/actions")).await;
    let a = &acts["content"][0];
    let (_, hist) = app
        .api_get(&format!(
            "/targets/{device}/actions/{}/status?limit=100",
            a["id"]
        ))
        .await;
    let types = hist["content"]
        .as_array()
        .map(|h| {
            h.iter()
                .map(|e| e["type"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default();
    (a["status"].as_str().unwrap_or_default().to_owned(), types)
}

#[tokio::test]
async fn a_simulated_fleet_registers_and_fails_exactly_where_its_hash_says() {
    let app = spawn_app_with(&["--rollout-tick-ms", "50"]).await;
    let args = sim_args(
        &app.vhost.amqp_url(),
        &[
            "--prefix",
            "a-",
            "--reply-to",
            "a.replyTo",
            "--fail-ratio",
            "0.2",
        ],
    );
    assert_eq!(args.reply_queue(), "a_receiver");
    let sim = RunningSim::start(args);
    wait_fleet(&app, "a-").await;

    // Every device registered with its three attributes.
    for (i, id) in ids("a-").iter().enumerate() {
        let (s, v) = app.api_get(&format!("/targets/{id}/attributes")).await;
        assert_eq!(s, StatusCode::OK);
        let a = attrs(&v);
        assert_eq!(
            a.keys().map(String::as_str).collect::<Vec<_>>(),
            ["hwRevision", "isoCode", "serial"]
        );
        assert_eq!(a["serial"], format!("SN-{i:06}"));
    }

    let id = rollout(&app, "fleet-a", "a-", 3).await;
    let v = app.wait_rollout(id, |r| r["status"] == "finished").await;
    let failing: Vec<String> = ids("a-")
        .into_iter()
        .filter(|d| fleet::fails(d, 0.2))
        .collect();
    assert!(!failing.is_empty(), "the sample needs a failing device");
    let p = &v["totalTargetsPerStatus"];
    assert_eq!(p["error"], failing.len());
    assert_eq!(p["finished"], DEVICES as usize - failing.len());
    // The very devices the hash names are the ones in ERROR.
    for d in ids("a-") {
        let want = if failing.contains(&d) {
            "error"
        } else {
            "in_sync"
        };
        let t = app.wait_target(&d, |t| t["updateStatus"] == want).await;
        assert_eq!(t["updateStatus"], want, "{d}");
    }
    // Every FINISHED was followed by REQUEST_ATTRIBUTES_UPDATE, which the devices answered.
    let want_attributes = u64::from(DEVICES) - failing.len() as u64;
    wait_until("attribute answers", 10, async || {
        (sim.counters.snapshot().attributes >= want_attributes).then_some(())
    })
    .await;
    let stats = sim.stop().await;
    assert_eq!(stats.registered, u64::from(DEVICES));
    assert_eq!(stats.deployments, u64::from(DEVICES));
    assert_eq!(stats.errors, failing.len() as u64);
    assert_eq!(stats.finished, u64::from(DEVICES) - failing.len() as u64);
    assert_eq!(stats.reports, 4 * u64::from(DEVICES));
    assert_eq!((stats.nacked, stats.ignored), (0, 0));
}

#[tokio::test]
async fn stuck_devices_keep_running_and_answer_a_stop_as_their_hash_says() {
    let app = spawn_app_with(&["--rollout-tick-ms", "50"]).await;
    let (stuck, fail, reject) = (0.3, 0.2, 0.5);
    let sim = RunningSim::start(sim_args(
        &app.vhost.amqp_url(),
        &[
            "--prefix",
            "b-",
            "--reply-to",
            "b.replyTo",
            "--fail-ratio",
            "0.2",
            "--stuck-ratio",
            "0.3",
            "--cancel-reject-ratio",
            "0.5",
        ],
    ));
    wait_fleet(&app, "b-").await;
    let all = ids("b-");
    let stuck_ids: Vec<&String> = all.iter().filter(|d| fleet::stuck(d, stuck)).collect();
    let rejecting: Vec<&String> = stuck_ids
        .iter()
        .copied()
        .filter(|d| fleet::rejects_cancel(d, reject))
        .collect();
    let cancelling: Vec<&String> = stuck_ids
        .iter()
        .copied()
        .filter(|d| !fleet::rejects_cancel(d, reject))
        .collect();
    let errors = all
        .iter()
        .filter(|d| !fleet::stuck(d, stuck) && fleet::fails(d, fail))
        .count();
    assert!(!rejecting.is_empty() && !cancelling.is_empty() && errors > 0);

    let id = rollout(&app, "fleet-b", "b-", 1).await;
    // Everyone but the stuck devices answers; those keep their action running.
    let answered = DEVICES as usize - stuck_ids.len();
    let v = app
        .wait_rollout(id, |r| {
            let p = &r["totalTargetsPerStatus"];
            p["finished"].as_u64().unwrap_or(0) + p["error"].as_u64().unwrap_or(0)
                == answered as u64
        })
        .await;
    assert_eq!(v["totalTargetsPerStatus"]["error"], errors);
    assert_eq!(v["totalTargetsPerStatus"]["running"], stuck_ids.len());
    tokio::time::sleep(Duration::from_millis(300)).await;
    for d in &stuck_ids {
        assert_eq!(action_of(&app, d).await.0, "running", "{d}");
    }

    // Stop: every stuck device gets CANCEL_DOWNLOAD and answers by its hash.
    let (s, v) = app
        .api_post(&format!("/rollouts/{id}/stop"), json!({}))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    app.wait_rollout(id, |r| {
        r["totalTargetsPerStatus"]["cancelled"] == cancelling.len()
    })
    .await;
    for d in &cancelling {
        assert_eq!(action_of(&app, d).await.0, "canceled", "{d}");
    }
    for d in &rejecting {
        let (status, history) = wait_until("CANCEL_REJECTED to be applied", 10, async || {
            let (status, history) = action_of(&app, d).await;
            history
                .iter()
                .any(|t| t == "cancel_rejected")
                .then_some((status, history))
        })
        .await;
        assert_eq!(status, "running", "{d}: back to running after rejecting");
        assert!(history.iter().any(|t| t == "canceling"), "{history:?}");
    }
    let stats = sim.stop().await;
    assert_eq!(stats.stuck, stuck_ids.len() as u64);
    assert_eq!(stats.canceled, cancelling.len() as u64);
    assert_eq!(stats.cancel_rejected, rejecting.len() as u64);
    assert_eq!(stats.errors, errors as u64);
}

#[tokio::test]
async fn batch_deployments_are_answered_for_every_listed_device() {
    let app = spawn_app_with(&["--rollout-tick-ms", "50"]).await;
    let (s, b) = app
        .api_put(
            "/system/configs/batch.assignments.enabled",
            json!({"value": true}),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    let sim = RunningSim::start(sim_args(
        &app.vhost.amqp_url(),
        &[
            "--prefix",
            "c-",
            "--reply-to",
            "c.replyTo",
            "--fail-ratio",
            "0.2",
        ],
    ));
    wait_fleet(&app, "c-").await;
    let id = rollout(&app, "fleet-c", "c-", 2).await;
    let v = app.wait_rollout(id, |r| r["status"] == "finished").await;
    let failing = ids("c-").iter().filter(|d| fleet::fails(d, 0.2)).count();
    assert_eq!(v["totalTargetsPerStatus"]["error"], failing);
    let stats = sim.stop().await;
    assert_eq!(stats.deployments, u64::from(DEVICES));
    assert_eq!(stats.errors, failing as u64);
}

#[tokio::test]
async fn multi_action_devices_work_through_every_open_action() {
    let app = spawn_app_with(&["--rollout-tick-ms", "50"]).await;
    let (s, b) = app
        .api_put(
            "/system/configs/multi.assignments.enabled",
            json!({"value": true}),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    let sim = RunningSim::start(sim_args(
        &app.vhost.amqp_url(),
        &[
            "--prefix",
            "m-",
            "--reply-to",
            "m.replyTo",
            "--delay-ms",
            "5",
        ],
    ));
    wait_fleet(&app, "m-").await;
    // Two rollouts over the same devices: in multi-assignment mode neither cancels the other,
    // every device gets MULTI_ACTION lists and finishes one action after the other.
    let low = rollout(&app, "low", "m-", 1).await;
    let high = rollout(&app, "high", "m-", 1).await;
    for id in [low, high] {
        let v = app.wait_rollout(id, |r| r["status"] == "finished").await;
        assert_eq!(v["totalTargetsPerStatus"]["finished"], DEVICES, "{v}");
    }
    let stats = sim.stop().await;
    assert_eq!(stats.finished, 2 * u64::from(DEVICES));
    assert_eq!(stats.ignored, 0);
}

#[test]
fn simulator_settings_are_validated_and_name_the_queue() {
    let args = sim_args("amqp://guest:guest@127.0.0.1:5672/%2f", &[]);
    assert_eq!(args.reply_to, "simulator.replyTo");
    assert_eq!(args.reply_queue(), "simulator_receiver");
    assert_eq!((args.devices, args.prefix.as_str()), (DEVICES, "sim-"));
    assert!(args.validate().is_ok());
    let bad = sim_args("amqp://x", &["--fail-ratio", "1.5"]);
    assert!(bad.validate().unwrap_err().contains("DMF_SIM_FAIL_RATIO"));
    let bad = sim_args("amqp://x", &["--prefix", "a b"]);
    assert!(bad.validate().unwrap_err().contains("DMF_SIM_PREFIX"));
    let other = sim_args("amqp://x", &["--reply-to", "fleet-7"]);
    assert_eq!(other.reply_queue(), "fleet-7_receiver");
}

/// A fresh vhost and database for a demo, removed on drop.
struct Scratch {
    db: TestDb,
    vhost: TestVhost,
}

impl Scratch {
    fn new() -> Self {
        Self {
            db: TestDb::new("dmf_demo"),
            vhost: TestVhost::new("dmf-demo"),
        }
    }

    fn demo_args(&self) -> DemoArgs {
        let amqp = self.vhost.amqp_url();
        let db = self.db.url();
        let argv = [
            "dmf-broker",
            "demo",
            "--database-url",
            &db,
            "--amqp-url",
            &amqp,
            "--http-addr",
            "127.0.0.1:0",
            "--rollout-tick-ms",
            "50",
            "--batch-wait-ms",
            "1",
            "--devices",
            "40",
            "--groups",
            "4",
            "--fail-ratio",
            "0.1",
            "--delay-ms",
            "0",
            "--jitter-ms",
            "30",
            "--exit-when-done",
        ];
        let Cmd::Demo(args) = Cli::parse_from(argv).command else {
            unreachable!()
        };
        args
    }
}

#[tokio::test]
async fn the_demo_runs_a_rollout_to_the_end_and_can_run_again() {
    let scratch = Scratch::new();
    let failing = (0..40)
        .filter(|i| fleet::fails(&format!("demo-{i:06}"), 0.1))
        .count() as i64;
    for round in 1..=2 {
        let mut out = Vec::new();
        let outcome = dmf_broker::demo::run(
            scratch.demo_args(),
            CancellationToken::new(),
            &mut out,
            false,
        )
        .await
        .expect("demo runs");
        let text = String::from_utf8_lossy(&out);
        assert_eq!(
            outcome.rollout_name,
            format!("demo-rollout-{round}"),
            "{text}"
        );
        assert_eq!(outcome.status, "finished", "{text}");
        let want: BTreeMap<String, i64> = [
            ("finished", 40 - failing),
            ("error", failing),
            ("running", 0),
            ("scheduled", 0),
            ("cancelled", 0),
            ("notstarted", 0),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        assert_eq!(outcome.progress, want, "{text}");
        assert!(text.contains("cascade moves on to group-2"), "{text}");
        assert!(text.contains("/ui"), "{text}");
        assert!(text.contains("curl -u admin:admin"), "{text}");
        assert_eq!(outcome.simulator.errors, failing as u64);
    }
}
