//! Spawns the whole service against the machine's PostgreSQL and RabbitMQ, isolated by a fresh
//! database and a fresh vhost per test (removed on drop), plus a DMF connector on that vhost;
//! and the helpers every test module shares: REST calls, polling, fixtures, error bodies.
//!
//! [`scratch`] owns the database, the vhost and the command-line clients; [`amqp`] the
//! connector side (messages, publishing, reading replies).

mod amqp;
mod scratch;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use clap::Parser;
use dmf_broker::app::Application;
use dmf_broker::config::{Cli, Command as Cmd, ServeArgs};
use lapin::{Channel, Connection, ConnectionProperties};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

pub use amqp::*;
pub use scratch::{TestDb, TestVhost, rabbitmqctl, sql_in};

/// hawkBit's error codes (`errorCode` of an error body).
pub const ERR_SYNTAX: &str = "hawkbit.server.error.rest.param.rsqlParamSyntax";
pub const ERR_FIELD: &str = "hawkbit.server.error.rest.param.rsqlInvalidField";
pub const ERR_CONSTRAINT: &str = "hawkbit.server.error.repo.constraintViolation";
pub const ERR_EXISTS: &str = "hawkbit.server.error.repo.entityAlreadyExists";
pub const ERR_NOT_FOUND: &str = "hawkbit.server.error.repo.entityNotFound";
pub const ERR_NOT_READABLE: &str = "hawkbit.server.error.rest.body.notReadable";
pub const ERR_PERMISSION: &str = "hawkbit.server.error.insufficientPermission";

/// How often the polling helpers look again.
const POLL_EVERY: Duration = Duration::from_millis(25);

#[allow(dead_code)] // kept for tests that reconnect or inspect the broker
pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    pub conn: Connection,
    pub channel: Channel,
    replies: lapin::Consumer,
    dead: lapin::Consumer,
    token: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
    // Last: removed after the service stopped.
    pub db: TestDb,
    pub vhost: TestVhost,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// `serve` as the tests run it: on `db` and `amqp_url`, any free HTTP port, batches without
/// lingering, plus `extra` flags.
pub fn serve_args(db_url: &str, amqp_url: &str, extra: &[&str]) -> ServeArgs {
    let mut argv = vec![
        "dmf-broker",
        "serve",
        "--database-url",
        db_url,
        "--amqp-url",
        amqp_url,
        "--http-addr",
        "127.0.0.1:0",
        "--batch-wait-ms",
        "1",
    ];
    argv.extend_from_slice(extra);
    let Cmd::Serve(args) = Cli::parse_from(argv).command else {
        unreachable!()
    };
    args
}

/// The service in this process until `token` is cancelled; its base URL.
pub async fn start_service(
    args: ServeArgs,
    token: CancellationToken,
) -> (String, tokio::task::JoinHandle<()>) {
    let app = Application::build(args).await.expect("service starts");
    let base = format!("http://127.0.0.1:{}", app.port());
    let task = tokio::spawn(async move {
        app.run_until_stopped(token).await.expect("service runs");
    });
    (base, task)
}

pub async fn spawn_app_with(extra: &[&str]) -> TestApp {
    let db = TestDb::new("dmf_test");
    let vhost = TestVhost::new("dmf-test");
    let amqp_url = vhost.amqp_url();
    if std::env::var("TEST_LOG").is_ok() {
        dmf_broker::telemetry::init("info,dmf_broker=debug", "text");
    }
    let token = CancellationToken::new();
    let (base, task) = start_service(serve_args(&db.url(), &amqp_url, extra), token.clone()).await;
    let http = reqwest::Client::new();
    wait_health(&http, &base, StatusCode::OK, Duration::from_secs(20)).await;
    let conn = Connection::connect(&amqp_url, ConnectionProperties::default())
        .await
        .expect("amqp");
    let channel = conn.create_channel().await.expect("channel");
    let replies = sdk_reply_path(&channel, "test-replies").await;
    let dead = consume(&channel, "dmf_connector_deadletter_ttl", "test-dead").await;
    TestApp {
        base,
        http,
        conn,
        channel,
        replies,
        dead,
        token,
        task: Some(task),
        db,
        vhost,
    }
}

/// The service with the users of `users_toml` (a `--users-file`, read once at start).
pub async fn spawn_app_with_users(users_toml: &str, extra: &[&str]) -> TestApp {
    let users = scratch::UsersFile::new(users_toml);
    let path = users.path();
    let mut args = extra.to_vec();
    args.extend(["--users-file", &path]);
    spawn_app_with(&args).await
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.token.cancel();
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// Calls `f` until it returns `Ok`, for at most `within`; then fails with its last `Err`.
pub async fn poll<T>(within: Duration, mut f: impl AsyncFnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + within;
    loop {
        match f().await {
            Ok(v) => return v,
            Err(why) => assert!(Instant::now() < deadline, "{why}"),
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// Poll `/health` of the service at `base` until its status code is `want`; returns the body.
pub async fn wait_health(
    http: &reqwest::Client,
    base: &str,
    want: StatusCode,
    within: Duration,
) -> Value {
    poll(within, async || {
        let mut last = Value::Null;
        if let Ok(r) = http.get(format!("{base}/health")).send().await {
            let code = r.status();
            last = r.json().await.unwrap_or(Value::Null);
            if code == want {
                return Ok(last);
            }
        }
        Err(format!(
            "/health never answered {want} within {within:?}; last body {last}"
        ))
    })
    .await
}

/// A Management API call (`/rest/v1{path}`) as `admin` to the service at `base`.
pub async fn rest(
    http: &reqwest::Client,
    base: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    rest_as(http, base, ("admin", "admin"), method, path, body).await
}

/// A Management API call (`/rest/v1{path}`) as `user` to the service at `base`: status and
/// JSON body (`Null` when there is none).
pub async fn rest_as(
    http: &reqwest::Client,
    base: &str,
    (user, pass): (&str, &str),
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = http
        .request(method, format!("{base}/rest/v1{path}"))
        .basic_auth(user, Some(pass));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("http");
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

impl TestApp {
    pub async fn api(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.api_as("admin", "admin", method, path, body).await
    }

    pub async fn api_as(
        &self,
        user: &str,
        pass: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        rest_as(&self.http, &self.base, (user, pass), method, path, body).await
    }

    pub async fn api_get(&self, path: &str) -> (StatusCode, Value) {
        self.api(Method::GET, path, None).await
    }

    pub async fn api_post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.api(Method::POST, path, Some(body)).await
    }

    pub async fn api_put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.api(Method::PUT, path, Some(body)).await
    }

    pub async fn api_delete(&self, path: &str) -> (StatusCode, Value) {
        self.api(Method::DELETE, path, None).await
    }

    /// Poll `GET path` until it answers 200 with a body `f` holds on (at most `within`).
    pub async fn wait_json(
        &self,
        path: &str,
        within: Duration,
        f: impl Fn(&Value) -> bool,
    ) -> Value {
        poll(within, async || {
            let (s, v) = self.api_get(path).await;
            if s == StatusCode::OK && f(&v) {
                Ok(v)
            } else {
                Err(format!("{path} never got there: {v}"))
            }
        })
        .await
    }

    /// Poll until `f` holds on the target's JSON (10 s).
    pub async fn wait_target(&self, id: &str, f: impl Fn(&Value) -> bool) -> Value {
        self.wait_json(&format!("/targets/{id}"), Duration::from_secs(10), f)
            .await
    }

    /// Poll the rollout until `f` holds (15 s).
    pub async fn wait_rollout(&self, id: i64, f: impl Fn(&Value) -> bool) -> Value {
        self.wait_json(&format!("/rollouts/{id}"), Duration::from_secs(15), f)
            .await
    }

    /// Register `n` devices `<prefix>-NN` through DMF and wait until the last one exists.
    pub async fn fleet(&self, prefix: &str, n: usize) -> Vec<String> {
        let ids: Vec<String> = (0..n).map(|i| format!("{prefix}-{i:02}")).collect();
        for id in &ids {
            self.send(thing_created(id)).await;
        }
        if let Some(last) = ids.last() {
            self.wait_target(last, |_| true).await;
        }
        ids
    }

    /// A complete `os` distribution set with one module and one artifact; returns its id.
    pub async fn create_set(&self, name: &str) -> i64 {
        let (s, m) = self
            .api_post(
                "/softwaremodules",
                json!([{"name": format!("{name}-os"), "version": "1.0.0", "type": "os"}]),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{m}");
        let sm = m[0]["id"].as_i64().expect("module id");
        let (s, a) = self
            .api_post(&format!("/softwaremodules/{sm}/artifacts"), json!({
                "filename": "rootfs.img", "size": 52428800,
                "hashes": {"sha1": "2fd4e1c67a2d28fced849ee1bb76e7391b93eb12", "md5": "9e107d9d372bb6826bd81d3542a419d6"},
                "urls": {"HTTPS": "https://cdn.example.net/rootfs.img"}}))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{a}");
        let (s, d) = self
            .api_post(
                "/distributionsets",
                json!([{"name": name, "version": "1.0.0", "type": "os", "modules": [{"id": sm}]}]),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{d}");
        d[0]["id"].as_i64().expect("set id")
    }

    /// Assign `ds` with the given per-target bodies; the created action ids in response order.
    pub async fn assign(&self, ds: i64, targets: Value) -> Vec<i64> {
        let (s, out) = self
            .api_post(&format!("/distributionsets/{ds}/assignedTargets"), targets)
            .await;
        assert_eq!(s, StatusCode::OK, "{out}");
        out["assignedActions"]
            .as_array()
            .expect("assignedActions")
            .iter()
            .map(|a| a["id"].as_i64().expect("action id"))
            .collect()
    }

    /// An action of a target as the API shows it.
    pub async fn action(&self, target: &str, id: i64) -> Value {
        let (s, v) = self
            .api_get(&format!("/targets/{target}/actions/{id}"))
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v
    }

    /// Poll until the action's JSON satisfies `f` (10 s).
    pub async fn wait_action(&self, target: &str, id: i64, f: impl Fn(&Value) -> bool) -> Value {
        poll(Duration::from_secs(10), async || {
            let a = self.action(target, id).await;
            if f(&a) {
                Ok(a)
            } else {
                Err(format!("action {id} never reached the expected state: {a}"))
            }
        })
        .await
    }

    /// POST `/rollouts`; asserts 201 and returns the created rollout.
    pub async fn create_rollout(&self, body: Value) -> Value {
        let (s, v) = self.api_post("/rollouts", body).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v
    }

    /// POST `/rollouts/{id}/start`; asserts 204.
    pub async fn start_rollout(&self, id: i64) {
        let (s, v) = self
            .api_post(&format!("/rollouts/{id}/start"), json!({}))
            .await;
        assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    }

    /// Set a boolean tenant configuration value; asserts 200.
    pub async fn set_config(&self, key: &str, value: bool) {
        let (s, b) = self
            .api_put(&format!("/system/configs/{key}"), json!({"value": value}))
            .await;
        assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    }
}

pub fn attrs(v: &Value) -> BTreeMap<String, String> {
    serde_json::from_value(v.clone()).unwrap_or_default()
}

/// Run SQL in the test's database (fixtures and checks the API cannot express); its output,
/// unaligned and without headers.
pub fn sql(app: &TestApp, sql: &str) -> String {
    sql_in(&app.db.name, sql)
}

/// An error answer: `want` with hawkBit's error body carrying `code`.
pub fn assert_error_code(status: StatusCode, body: &Value, want: StatusCode, code: &str) {
    assert_eq!(status, want, "{body}");
    assert_eq!(body["errorCode"], code, "{body}");
}

/// [`assert_error_code`], and the body is complete (`exceptionClass` and `message` too).
pub fn assert_error(status: StatusCode, body: &Value, want: StatusCode, code: &str) {
    assert_error_code(status, body, want, code);
    assert!(body["exceptionClass"].is_string(), "{body}");
    assert!(body["message"].is_string(), "{body}");
}

/// Percent-encode a query value completely, so `;`, `,`, `'`, `%`, `+`, `*`, `=` and `&` reach
/// the server as typed.
pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// An HTTP endpoint that answers the first `failures` requests with 503 and the rest with
/// 204, and hands over every body it was sent.
pub async fn webhook_sink(
    failures: usize,
) -> (String, tokio::sync::mpsc::UnboundedReceiver<Value>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut served = 0;
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let body = loop {
                let Ok(n) = s.read(&mut chunk).await else {
                    break None;
                };
                if n == 0 {
                    break None;
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if body.len() >= len {
                        break Some(body.to_owned());
                    }
                }
            };
            let Some(body) = body else { continue };
            let _ = tx.send(serde_json::from_str(&body).unwrap_or(Value::Null));
            served += 1;
            let answer: &[u8] = if served <= failures {
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            } else {
                b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            };
            let _ = s.write_all(answer).await;
        }
    });
    (url, rx)
}
