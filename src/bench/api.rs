//! The few Management API calls the bench makes, as the bootstrap admin of tenant DEFAULT.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

pub struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    pub fn new(base: String) -> Self {
        Api {
            http: reqwest::Client::new(),
            base,
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}/rest/v1{path}", self.base))
            .basic_auth("admin", Some("admin"))
            .timeout(Duration::from_secs(120));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("{method} {path}: {status} {text}");
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    /// Whether `/health` answers 200.
    pub async fn healthy(&self) -> bool {
        match self
            .http
            .get(format!("{}/health", self.base))
            .timeout(Duration::from_secs(2))
            .send()
            .await
        {
            Ok(r) => r.status().is_success(),
            Err(_) => false,
        }
    }

    /// A distribution set of one `os` module with one artifact (a realistic deployment body).
    pub async fn create_set(&self, name: &str) -> anyhow::Result<i64> {
        let m = self
            .post(
                "/softwaremodules",
                json!([{"name": format!("{name}-os"), "version": "1.0.0", "type": "os"}]),
            )
            .await?;
        let sm = m[0]["id"].as_i64().context("software module id")?;
        self.post(
            &format!("/softwaremodules/{sm}/artifacts"),
            json!({"filename": "rootfs.img", "size": 52428800,
                   "hashes": {"sha1": "2fd4e1c67a2d28fced849ee1bb76e7391b93eb12",
                              "md5": "9e107d9d372bb6826bd81d3542a419d6"},
                   "urls": {"HTTPS": "https://cdn.example.net/fw/rootfs.img"}}),
        )
        .await?;
        let d = self
            .post(
                "/distributionsets",
                json!([{"name": name, "version": "1.0.0", "type": "os", "modules": [{"id": sm}]}]),
            )
            .await?;
        d[0]["id"].as_i64().context("distribution set id")
    }

    /// How many targets have ids starting with `prefix`.
    pub async fn count_targets(&self, prefix: &str) -> anyhow::Result<i64> {
        let v = self
            .get(&format!("/targets?q=controllerId=={prefix}*&limit=1"))
            .await?;
        v["total"].as_i64().context("total of the target list")
    }

    /// Poll until `count_targets(prefix) >= n`.
    pub async fn wait_targets(
        &self,
        prefix: &str,
        n: i64,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let have = self.count_targets(prefix).await?;
            if have >= n {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("only {have} of {n} '{prefix}*' targets registered after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Create a rollout; its id.
    pub async fn create_rollout(&self, body: Value) -> anyhow::Result<i64> {
        let r = self.post("/rollouts", body).await?;
        r["id"].as_i64().context("rollout id")
    }

    /// Create a rollout and wait (up to `timeout`) until it is ready to start.
    pub async fn create_ready_rollout(
        &self,
        body: Value,
        timeout: Duration,
    ) -> anyhow::Result<i64> {
        let id = self.create_rollout(body).await?;
        self.wait_rollout(id, Duration::from_millis(50), timeout, "ready", |v| {
            v["status"] == "ready"
        })
        .await?;
        Ok(id)
    }

    pub async fn start_rollout(&self, id: i64) -> anyhow::Result<()> {
        self.post(&format!("/rollouts/{id}/start"), json!({}))
            .await
            .map(|_| ())
    }

    pub async fn rollout(&self, id: i64) -> anyhow::Result<Value> {
        self.get(&format!("/rollouts/{id}")).await
    }

    /// Poll the rollout every `every` until `f` holds; the rollout and the moment it was seen.
    pub async fn wait_rollout(
        &self,
        id: i64,
        every: Duration,
        timeout: Duration,
        what: &str,
        f: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<(Value, Instant)> {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.rollout(id).await?;
            let now = Instant::now();
            if f(&v) {
                return Ok((v, now));
            }
            if now > deadline {
                bail!(
                    "rollout {id} not {what} after {timeout:?}: status {} {}",
                    v["status"],
                    v["totalTargetsPerStatus"]
                );
            }
            tokio::time::sleep(every).await;
        }
    }

    /// Group ids of a rollout in order.
    pub async fn group_ids(&self, id: i64) -> anyhow::Result<Vec<i64>> {
        let v = self
            .get(&format!(
                "/rollouts/{id}/deploygroups?limit=500&sort=id:ASC"
            ))
            .await?;
        let mut ids: Vec<i64> = v["content"]
            .as_array()
            .context("group list")?
            .iter()
            .filter_map(|g| g["id"].as_i64())
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// FINISHED actions of a group.
    pub async fn group_finished(&self, rollout: i64, group: i64) -> anyhow::Result<i64> {
        let v = self
            .get(&format!("/rollouts/{rollout}/deploygroups/{group}"))
            .await?;
        v["totalTargetsPerStatus"]["finished"]
            .as_i64()
            .context("finished count of the group")
    }
}

/// FINISHED actions of a rollout body.
pub fn finished(v: &Value) -> i64 {
    v["totalTargetsPerStatus"]["finished"].as_i64().unwrap_or(0)
}
