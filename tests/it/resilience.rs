//! Failure on purpose: the process killed mid-burst and restarted, the broker dropping every
//! connection, the database refusing connections. Nothing accepted may be lost, nothing applied
//! twice, and `/health` must tell the truth meanwhile.

use std::collections::{BTreeMap, HashMap};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use lapin::options::*;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::Connection as _;

use crate::helpers::*;

/// A connector on `amqp_url` with publisher confirms: the SDK's reply exchange and queue,
/// consumed without acks.
async fn connector(amqp_url: &str) -> (Connection, Channel, lapin::Consumer) {
    let conn = Connection::connect(amqp_url, ConnectionProperties::default())
        .await
        .expect("amqp");
    let ch = conn.create_channel().await.expect("channel");
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let replies = sdk_reply_path(&ch, &format!("test-{}", uuid::Uuid::new_v4())).await;
    (conn, ch, replies)
}

/// Publish a DMF message to `dmf.exchange` the way the SDK does (persistent, a fresh
/// correlation id unless given). Returns once the broker confirmed it.
async fn publish(ch: &Channel, headers: &[(&str, &str)], reply_to: Option<&str>, body: &str) {
    publish_with(
        ch,
        headers,
        reply_to,
        &uuid::Uuid::new_v4().to_string(),
        body,
    )
    .await
    .await
    .expect("confirm");
}

/// Publish without waiting for the confirm (for bursts); await the returned future for it.
async fn publish_with(
    ch: &Channel,
    headers: &[(&str, &str)],
    reply_to: Option<&str>,
    correlation_id: &str,
    body: &str,
) -> lapin::PublisherConfirm {
    let mut p = BasicProperties::default()
        .with_headers(header_table(headers))
        .with_content_type("application/json".into())
        .with_delivery_mode(2)
        .with_correlation_id(correlation_id.into());
    if let Some(r) = reply_to {
        p = p.with_reply_to(r.into());
    }
    publish_dmf(ch, p, body.as_bytes()).await
}

// ------------------------------------------------------------------------------------------
// 1. SIGKILL mid-burst, restart: every report applied exactly once, no outbound message lost.

/// The real binary on a fresh database and vhost, restartable on the same port.
struct Process {
    args: Vec<String>,
    child: Option<Child>,
    base: String,
    amqp_url: String,
    log: std::path::PathBuf,
    // Last: removed after the process was killed.
    db: TestDb,
    _vhost: TestVhost,
}

impl Process {
    fn new() -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let db = TestDb::new("dmf_test");
        let vhost = TestVhost::new("dmf-test");
        let amqp_url = vhost.amqp_url();
        // A free port, kept across restarts so clients need not rediscover it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let args = vec![
            "serve".to_owned(),
            "--database-url".to_owned(),
            db.url(),
            "--amqp-url".to_owned(),
            amqp_url.clone(),
            "--http-addr".to_owned(),
            format!("127.0.0.1:{port}"),
            "--log".to_owned(),
            "info".to_owned(),
        ];
        Self {
            args,
            child: None,
            base: format!("http://127.0.0.1:{port}"),
            log: std::env::temp_dir().join(format!("dmf-broker-{id}.log")),
            amqp_url,
            db,
            _vhost: vhost,
        }
    }

    fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let err = log.try_clone().expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_dmf-broker"))
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .expect("start dmf-broker");
        self.child = Some(child);
    }

    /// SIGKILL: no shutdown path runs, in-flight work is cut wherever it is.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("SIGKILL");
            c.wait().expect("reaped");
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
        // Kept when the test failed: the assertion messages point at it.
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

#[tokio::test]
async fn a_killed_process_loses_nothing_and_applies_every_report_exactly_once() {
    const DEVICES: usize = 20;
    const ROUNDS: usize = 50;
    let mut svc = Process::new();
    svc.start();
    let http = reqwest::Client::new();
    wait_health(&http, &svc.base, StatusCode::OK, Duration::from_secs(20)).await;
    let (_conn, ch, mut replies) = connector(&svc.amqp_url).await;
    let base = svc.base.clone();
    let get = |path: String| {
        let http = http.clone();
        let base = base.clone();
        async move { rest(&http, &base, reqwest::Method::GET, &path, None).await }
    };

    // Arrange: devices registered, one set assigned to all, every deployment delivered.
    let things: Vec<String> = (0..DEVICES).map(|i| format!("kill-{i:02}")).collect();
    for t in &things {
        publish(
            &ch,
            &[
                ("type", "THING_CREATED"),
                ("tenant", "DEFAULT"),
                ("thingId", t),
            ],
            Some(REPLY_EXCHANGE),
            "",
        )
        .await;
    }
    poll(Duration::from_secs(10), async || {
        let (_, page) = get("/targets?limit=100".into()).await;
        match page["total"].as_u64() == Some(DEVICES as u64) {
            true => Ok(()),
            false => Err(format!("devices never registered: {page}")),
        }
    })
    .await;
    let (s, m) = rest(
        &http,
        &base,
        reqwest::Method::POST,
        "/softwaremodules",
        Some(json!([{"name": "kill-os", "version": "1", "type": "os"}])),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{m}");
    let (s, d) = rest(&http, &base, reqwest::Method::POST, "/distributionsets",
        Some(json!([{"name": "kill", "version": "1", "type": "os", "modules": [{"id": m[0]["id"]}]}]))).await;
    assert_eq!(s, StatusCode::CREATED, "{d}");
    let ds = d[0]["id"].as_i64().expect("set id");
    let body: Vec<Value> = things.iter().map(|t| json!({"id": t})).collect();
    let (s, out) = rest(
        &http,
        &base,
        reqwest::Method::POST,
        &format!("/distributionsets/{ds}/assignedTargets"),
        Some(Value::Array(body)),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{out}");
    let mut action_of: BTreeMap<String, i64> = BTreeMap::new();
    while action_of.len() < DEVICES {
        let d = tokio::time::timeout(Duration::from_secs(10), replies.next())
            .await
            .expect("deployments delivered")
            .expect("stream")
            .expect("delivery");
        assert_eq!(header(&d, "topic").as_deref(), Some("DOWNLOAD_AND_INSTALL"));
        let thing = header(&d, "thingId").expect("thingId");
        action_of.insert(thing, body_json(&d)["actionId"].as_i64().expect("actionId"));
    }

    // Act: a paced burst of reports — RUNNING rounds with a unique message each, and every
    // device's FINISHED somewhere in the middle, so that the kill cuts through report
    // application and outbox publishing alike — and SIGKILL once about a third is applied.
    let total = DEVICES * (ROUNDS + 1);
    let burst = {
        let ch = ch.clone();
        let action_of = action_of.clone();
        tokio::spawn(async move {
            let mut confirms = Vec::with_capacity(total);
            for round in 0..ROUNDS {
                for (i, (_, action)) in action_of.iter().enumerate() {
                    let body = format!(
                        r#"{{"actionId":{action},"actionStatus":"RUNNING","message":["round {round}"]}}"#
                    );
                    let corr = format!("{action}-{round}");
                    confirms.push(publish_with(&ch, &STATUS_HEADERS, None, &corr, &body).await);
                    if round == ROUNDS / 4 + i {
                        let body = format!(
                            r#"{{"actionId":{action},"actionStatus":"FINISHED","message":["done"]}}"#
                        );
                        let corr = format!("{action}-finished");
                        confirms.push(publish_with(&ch, &STATUS_HEADERS, None, &corr, &body).await);
                    }
                }
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
            for c in confirms {
                assert!(
                    c.await.expect("confirm").is_ack(),
                    "broker refused a report"
                );
            }
        })
    };
    let mut db = sqlx::PgConnection::connect(&svc.db.url())
        .await
        .expect("db");
    let initial = DEVICES as i64; // one RUNNING entry per action from the assignment
    let deadline = Instant::now() + Duration::from_secs(15);
    let applied = loop {
        let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM action_status")
            .fetch_one(&mut db)
            .await
            .expect("count");
        if applied - initial >= total as i64 / 3 {
            break applied - initial;
        }
        assert!(Instant::now() < deadline, "reports are not being applied");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    svc.kill();
    assert!(
        applied < total as i64,
        "the burst was over before the kill ({applied} of {total} applied)"
    );
    // The connector keeps publishing while the service is down; then it comes back.
    tokio::time::sleep(Duration::from_millis(300)).await;
    svc.start();
    wait_health(&http, &svc.base, StatusCode::OK, Duration::from_secs(20)).await;
    burst.await.expect("burst published");

    // Assert: every action closed, every report in its history exactly once.
    let mut want = vec!["running".to_owned()];
    want.extend((0..ROUNDS).map(|r| format!("running:round {r}")));
    want.push("finished:done".to_owned());
    want.sort();
    for (thing, action) in &action_of {
        let entries = poll(Duration::from_secs(15), async || {
            let (_, h) = get(format!(
                "/targets/{thing}/actions/{action}/status?sort=id:ASC&limit=500"
            ))
            .await;
            let entries = h["content"].as_array().cloned().unwrap_or_default();
            if entries.len() >= ROUNDS + 2 {
                return Ok(entries);
            }
            Err(format!(
                "{thing}: {} of {} history entries (log: {})",
                entries.len(),
                ROUNDS + 2,
                svc.log.display()
            ))
        })
        .await;
        let mut got: Vec<String> = entries
            .iter()
            .map(|e| {
                let ty = e["type"].as_str().unwrap_or("").to_owned();
                let first = e["messages"][0].as_str().unwrap_or("");
                if first.starts_with("Update Server:") {
                    ty
                } else {
                    format!("{ty}:{first}")
                }
            })
            .collect();
        got.sort();
        assert_eq!(got, want, "history of {thing} (log: {})", svc.log.display());
        let (_, a) = get(format!("/targets/{thing}/actions/{action}")).await;
        assert_eq!(a["status"], "finished", "{thing}");
        let (_, t) = get(format!("/targets/{thing}")).await;
        assert_eq!(t["updateStatus"], "in_sync", "{thing}");
    }
    // Every FINISHED asked its device for attributes; duplicates are allowed, loss is not.
    let mut asked: HashMap<String, usize> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while asked.len() < DEVICES {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(Some(Ok(d))) = tokio::time::timeout(left, replies.next()).await else {
            panic!(
                "REQUEST_ATTRIBUTES_UPDATE reached only {} of {DEVICES} devices: {asked:?} (log: {})",
                asked.len(),
                svc.log.display()
            );
        };
        match header(&d, "topic").as_deref() {
            Some("REQUEST_ATTRIBUTES_UPDATE") => {
                *asked
                    .entry(header(&d, "thingId").unwrap_or_default())
                    .or_default() += 1;
            }
            // A deployment re-sent after the restart is tolerated (THING_CREATED does the same).
            Some("DOWNLOAD_AND_INSTALL") => {}
            other => panic!("unexpected message {other:?}"),
        }
    }
}

// ------------------------------------------------------------------------------------------
// 2. RabbitMQ drops every connection.

#[tokio::test]
async fn health_reports_the_broker_down_then_up_and_messages_flow_after_reconnect() {
    let app = spawn_app().await;
    app.send(thing_created("before")).await;
    app.wait_target("before", |_| true).await;

    rabbitmqctl(&[
        "close_all_connections",
        "--vhost",
        &app.vhost.name,
        "resilience test",
    ]);
    let down = wait_health(
        &app.http,
        &app.base,
        StatusCode::SERVICE_UNAVAILABLE,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(
        down,
        json!({"status": "DOWN", "database": "UP", "amqp": "DOWN"})
    );
    let up = wait_health(&app.http, &app.base, StatusCode::OK, Duration::from_secs(8)).await;
    assert_eq!(up, json!({"status": "UP", "database": "UP", "amqp": "UP"}));

    // The test's own connection was closed too: a fresh connector.
    let (_conn, ch, mut replies) = connector(&app.vhost.amqp_url()).await;
    publish(
        &ch,
        &[
            ("type", "THING_CREATED"),
            ("tenant", "DEFAULT"),
            ("thingId", "after"),
        ],
        Some(REPLY_EXCHANGE),
        "",
    )
    .await;
    let t = app
        .wait_target("after", |t| t["updateStatus"] == "registered")
        .await;
    assert_eq!(
        t["address"],
        format!("amqp://{}/{REPLY_EXCHANGE}", app.vhost.name)
    );
    // Outbound works again too.
    publish(
        &ch,
        &[("type", "PING"), ("tenant", "DEFAULT")],
        Some(REPLY_EXCHANGE),
        "",
    )
    .await;
    let r = tokio::time::timeout(Duration::from_secs(10), replies.next())
        .await
        .expect("PING_RESPONSE after reconnect")
        .expect("stream")
        .expect("delivery");
    assert_eq!(header(&r, "type").as_deref(), Some("PING_RESPONSE"));
}

// ------------------------------------------------------------------------------------------
// 3. PostgreSQL refuses connections.

async fn admin_db() -> sqlx::PgConnection {
    sqlx::PgConnection::connect("postgres://postgres@127.0.0.1:5432/postgres")
        .await
        .expect("admin connection")
}

async fn allow_connections(admin: &mut sqlx::PgConnection, db: &str, allow: bool) {
    sqlx::query(&format!(
        "ALTER DATABASE \"{db}\" ALLOW_CONNECTIONS {allow}"
    ))
    .execute(&mut *admin)
    .await
    .expect("alter database");
    if !allow {
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(db)
        .execute(&mut *admin)
        .await
        .expect("terminate sessions");
    }
}

#[tokio::test]
async fn a_report_sent_while_the_database_is_away_is_applied_after_it_returns() {
    let mut app = spawn_app().await;
    app.send(thing_created("dev-pg")).await;
    app.wait_target("dev-pg", |_| true).await;
    let ds = app.create_set("pg").await;
    let action = app.assign(ds, json!([{"id": "dev-pg"}])).await[0];
    assert_eq!(
        header(&app.next_reply().await, "topic").as_deref(),
        Some("DOWNLOAD_AND_INSTALL")
    );

    let mut admin = admin_db().await;
    allow_connections(&mut admin, &app.db.name, false).await;
    let down = wait_health(
        &app.http,
        &app.base,
        StatusCode::SERVICE_UNAVAILABLE,
        Duration::from_secs(8),
    )
    .await;
    assert_eq!(
        down,
        json!({"status": "DOWN", "database": "DOWN", "amqp": "UP"})
    );

    // Reports arrive during the outage: they must wait, neither acked nor dead-lettered.
    let mut running = status(action, "RUNNING");
    running.correlation_id = Some("during-outage".into());
    app.send(running).await;
    app.send(status(action, "FINISHED")).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let still = wait_health(
        &app.http,
        &app.base,
        StatusCode::SERVICE_UNAVAILABLE,
        Duration::from_secs(1),
    )
    .await;
    assert_eq!(still["database"], "DOWN");

    allow_connections(&mut admin, &app.db.name, true).await;
    wait_health(&app.http, &app.base, StatusCode::OK, Duration::from_secs(8)).await;
    let req = app.next_reply().await;
    assert_eq!(
        header(&req, "topic").as_deref(),
        Some("REQUEST_ATTRIBUTES_UPDATE")
    );
    app.wait_target("dev-pg", |t| t["updateStatus"] == "in_sync")
        .await;
    let (_, h) = app
        .api_get(&format!(
            "/targets/dev-pg/actions/{action}/status?sort=id:ASC"
        ))
        .await;
    let types: Vec<&str> = h["content"]
        .as_array()
        .expect("history")
        .iter()
        .map(|e| e["type"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(types, ["running", "running", "finished"]);
    assert!(
        h["content"][1]["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .any(|m| m == "Update Server: DMF message correlation-id during-outage")
    );
}
