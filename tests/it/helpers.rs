//! Spawns the whole service against the machine's PostgreSQL and RabbitMQ, isolated by a fresh
//! database and a fresh vhost per test (removed on drop), plus a DMF connector on that vhost.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use clap::Parser;
use dmf_broker::app::Application;
use dmf_broker::config::{Cli, Command as Cmd};
use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use reqwest::StatusCode;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub const REPLY_EXCHANGE: &str = "sdk.replyTo";

#[allow(dead_code)] // kept for tests that reconnect or inspect the broker
pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    pub vhost: String,
    pub db_name: String,
    pub amqp_url: String,
    pub conn: Connection,
    pub channel: Channel,
    replies: lapin::Consumer,
    dead: lapin::Consumer,
    token: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

fn rabbitmqctl(args: &[&str]) {
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

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

pub async fn spawn_app_with(extra: &[&str]) -> TestApp {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let db_name = format!("dmf_test_{id}");
    let vhost = format!("dmf-test-{id}");
    rabbitmqctl(&["add_vhost", &vhost]);
    rabbitmqctl(&["set_permissions", "-p", &vhost, "guest", ".*", ".*", ".*"]);
    let amqp_url = format!("amqp://guest:guest@127.0.0.1:5672/{vhost}");
    let db_url = format!("postgres://postgres@127.0.0.1:5432/{db_name}");
    let mut argv = vec![
        "dmf-broker",
        "serve",
        "--database-url",
        &db_url,
        "--amqp-url",
        &amqp_url,
        "--http-addr",
        "127.0.0.1:0",
        "--batch-wait-ms",
        "1",
    ];
    argv.extend_from_slice(extra);
    let Cmd::Serve(args) = Cli::parse_from(argv).command else {
        unreachable!()
    };
    if std::env::var("TEST_LOG").is_ok() {
        dmf_broker::telemetry::init("info,dmf_broker=debug", "text");
    }
    let app = Application::build(args).await.expect("service starts");
    let port = app.port();
    let token = CancellationToken::new();
    let t = token.clone();
    let task = tokio::spawn(async move {
        app.run_until_stopped(t).await.expect("service runs");
    });
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = http.get(format!("{base}/health")).send().await
            && r.status() == StatusCode::OK
        {
            break;
        }
        assert!(Instant::now() < deadline, "service never became healthy");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let conn = Connection::connect(&amqp_url, ConnectionProperties::default())
        .await
        .expect("amqp");
    let channel = conn.create_channel().await.expect("channel");
    // The SDK's reply path: non-durable auto-delete fanout exchange and queue.
    channel
        .exchange_declare(
            REPLY_EXCHANGE.into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions {
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("reply exchange");
    channel
        .queue_declare(
            "sdk_receiver".into(),
            QueueDeclareOptions {
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("reply queue");
    channel
        .queue_bind(
            "sdk_receiver".into(),
            REPLY_EXCHANGE.into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind");
    let replies = channel
        .basic_consume(
            "sdk_receiver".into(),
            "test-replies".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("consume replies");
    let dead = channel
        .basic_consume(
            "dmf_connector_deadletter_ttl".into(),
            "test-dead".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("consume dead letters");
    TestApp {
        base,
        http,
        vhost,
        db_name,
        amqp_url,
        conn,
        channel,
        replies,
        dead,
        token,
        task: Some(task),
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.token.cancel();
        if let Some(t) = self.task.take() {
            t.abort();
        }
        let _ = Command::new("rabbitmqctl")
            .args(["delete_vhost", &self.vhost])
            .output();
        let _ = Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-q",
                "-c",
                &format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.db_name),
            ])
            .output();
    }
}

/// A DMF message as a connector sends it.
pub struct Msg {
    pub headers: Vec<(&'static str, String)>,
    pub content_type: Option<&'static str>,
    pub reply_to: Option<String>,
    pub correlation_id: Option<String>,
    pub body: Vec<u8>,
}

impl Msg {
    pub fn new(headers: &[(&'static str, &str)], body: &str) -> Self {
        Msg {
            headers: headers.iter().map(|(k, v)| (*k, v.to_string())).collect(),
            content_type: Some("application/json"),
            reply_to: None,
            correlation_id: None,
            body: body.as_bytes().to_vec(),
        }
    }
}

/// THING_CREATED exactly as the hawkBit SDK sends it (empty body, sender header, reply_to).
pub fn thing_created(thing: &str) -> Msg {
    let mut m = Msg::new(
        &[
            ("type", "THING_CREATED"),
            ("tenant", "DEFAULT"),
            ("thingId", thing),
            ("sender", "hawkBit-sdk"),
        ],
        "",
    );
    m.content_type = Some("application/json");
    m.reply_to = Some(REPLY_EXCHANGE.into());
    m
}

pub fn status(action: i64, st: &str) -> Msg {
    Msg::new(
        &[
            ("type", "EVENT"),
            ("tenant", "DEFAULT"),
            ("topic", "UPDATE_ACTION_STATUS"),
        ],
        &format!(r#"{{"actionId":{action},"actionStatus":"{st}","message":["{st} reported"]}}"#),
    )
}

pub fn header(d: &Delivery, name: &str) -> Option<String> {
    d.properties
        .headers()
        .as_ref()?
        .inner()
        .iter()
        .find(|(k, _)| k.as_str() == name)
        .and_then(|(_, v)| match v {
            AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
            AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
            _ => None,
        })
}

pub fn body_json(d: &Delivery) -> Value {
    serde_json::from_slice(&d.data).expect("JSON body")
}

impl TestApp {
    pub async fn send(&self, m: Msg) {
        let mut headers = FieldTable::default();
        for (k, v) in &m.headers {
            headers.insert(
                ShortString::from(*k),
                AMQPValue::LongString(v.as_str().into()),
            );
        }
        let mut p = BasicProperties::default().with_headers(headers);
        if let Some(ct) = m.content_type {
            p = p.with_content_type(ct.into());
        }
        if let Some(r) = &m.reply_to {
            p = p.with_reply_to(r.as_str().into());
        }
        if let Some(c) = &m.correlation_id {
            p = p.with_correlation_id(c.as_str().into());
        }
        self.channel
            .basic_publish(
                "dmf.exchange".into(),
                "".into(),
                BasicPublishOptions::default(),
                &m.body,
                p,
            )
            .await
            .expect("publish")
            .await
            .expect("confirm");
    }

    /// The next message the service sent to the connector.
    pub async fn next_reply(&mut self) -> Delivery {
        tokio::time::timeout(Duration::from_secs(10), self.replies.next())
            .await
            .expect("a message for the connector within 10 s")
            .expect("stream open")
            .expect("delivery")
    }

    /// No message reaches the connector within `ms`.
    pub async fn assert_no_reply(&mut self, ms: u64) {
        if let Ok(Some(Ok(d))) =
            tokio::time::timeout(Duration::from_millis(ms), self.replies.next()).await
        {
            panic!(
                "unexpected message: {:?} {}",
                d.properties.headers(),
                String::from_utf8_lossy(&d.data)
            );
        }
    }

    /// The next message for the connector, waiting as long as the caller's timeout allows.
    pub async fn next_reply_raw(&mut self) -> Option<Delivery> {
        self.replies.next().await.and_then(Result::ok)
    }

    pub async fn next_dead_letter(&mut self) -> Delivery {
        tokio::time::timeout(Duration::from_secs(10), self.dead.next())
            .await
            .expect("a dead letter within 10 s")
            .expect("stream open")
            .expect("delivery")
    }

    pub async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.api_as("admin", "admin", method, path, body).await
    }

    pub async fn api_as(
        &self,
        user: &str,
        pass: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, format!("{}/rest/v1{path}", self.base))
            .basic_auth(user, Some(pass));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("http");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn api_get(&self, path: &str) -> (StatusCode, Value) {
        self.api(reqwest::Method::GET, path, None).await
    }

    pub async fn api_post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.api(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn api_put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.api(reqwest::Method::PUT, path, Some(body)).await
    }

    pub async fn api_delete(&self, path: &str) -> (StatusCode, Value) {
        self.api(reqwest::Method::DELETE, path, None).await
    }

    /// Poll until `f` holds on the target's JSON (10 s).
    pub async fn wait_target(&self, id: &str, f: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (s, v) = self.api_get(&format!("/targets/{id}")).await;
            if s == StatusCode::OK && f(&v) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "target {id} never reached the expected state: {v}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A complete `os` distribution set with one module and one artifact; returns its id.
    pub async fn create_set(&self, name: &str) -> i64 {
        let (s, m) = self.api_post("/softwaremodules", serde_json::json!([{"name": format!("{name}-os"), "version": "1.0.0", "type": "os"}])).await;
        assert_eq!(s, StatusCode::CREATED, "{m}");
        let sm = m[0]["id"].as_i64().expect("module id");
        let (s, a) = self
            .api_post(&format!("/softwaremodules/{sm}/artifacts"), serde_json::json!({
                "filename": "rootfs.img", "size": 52428800,
                "hashes": {"sha1": "2fd4e1c67a2d28fced849ee1bb76e7391b93eb12", "md5": "9e107d9d372bb6826bd81d3542a419d6"},
                "urls": {"HTTPS": "https://cdn.example.net/rootfs.img"}}))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{a}");
        let (s, d) = self.api_post("/distributionsets", serde_json::json!([{"name": name, "version": "1.0.0", "type": "os", "modules": [{"id": sm}]}])).await;
        assert_eq!(s, StatusCode::CREATED, "{d}");
        d[0]["id"].as_i64().expect("set id")
    }
}

pub fn attrs(v: &Value) -> BTreeMap<String, String> {
    serde_json::from_value(v.clone()).unwrap_or_default()
}

/// Run SQL in the test's database (fixtures and checks the API cannot express); its output,
/// unaligned and without headers.
pub fn sql(app: &TestApp, sql: &str) -> String {
    let out = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            &app.db_name,
            "-qAt",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ])
        .output()
        .expect("psql on PATH");
    assert!(
        out.status.success(),
        "psql: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
