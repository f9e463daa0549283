//! The auto-assignment figures: how fast an auto-assignment goes through a registered fleet
//! (targets per second, against the database inserting the same actions in the same chunks
//! without the service), and how soon a device that registers and matches gets its deployment
//! (THING_CREATED published → deployment at the connector, against two broker hops).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;
use sqlx::PgConnection;

use super::api::Api;
use super::env::round;
use super::fleet::{self, AUTO, AUTO_FLEET, DMF_EXCHANGE, Fleet};
use super::report::{Figure, fmt_num, percentile};
use super::{Sizes, ms, progress};
use crate::engine::auto_assignment::PASS_CHUNK;
use crate::store;

/// Broker round trips without the service (from the cascade phase): p50 and p99 in ms.
pub struct Hops {
    pub p50: f64,
    pub p99: f64,
}

async fn create(api: &Api, name: &str, query: &str, ds: i64) -> anyhow::Result<i64> {
    let body = json!({"name": name, "targetFilterQuery": query, "distributionSetId": ds});
    let v = api.post("/autoassignments", body).await?;
    v["id"].as_i64().context("auto-assignment id")
}

/// Poll until the auto-assignment is running (the worker starts a READY one within a tick).
async fn wait_running(api: &Api, id: i64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while api.get(&format!("/autoassignments/{id}")).await?["status"] != "running" {
        if Instant::now() > deadline {
            bail!("auto-assignment {id} not running after 30 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Run both figures; `ds` is a set no target has an action of.
pub async fn measure(
    api: &Api,
    fleet: &mut Fleet,
    db: &mut PgConnection,
    sizes: &Sizes,
    hops: &Hops,
) -> anyhow::Result<Vec<Figure>> {
    let tenant = store::bench::tenant_id(db, fleet::TENANT)
        .await?
        .context("tenant DEFAULT")?;
    let n = sizes.auto_targets as i64;
    store::bench::insert_targets(db, tenant, AUTO_FLEET, n).await?;
    let ds = api.create_set("bench-auto").await?;

    // The raw reference: the same actions in the same chunks, straight into the database.
    let t = Instant::now();
    let raw = store::bench::insert_actions_chunked(db, tenant, ds, AUTO_FLEET, PASS_CHUNK).await?;
    let raw_per_s = raw as f64 / t.elapsed().as_secs_f64().max(1e-9);

    // Through the service: POST, then the pass until every target has its action.
    let t = Instant::now();
    let id = create(
        api,
        "bench-fleet",
        &format!("controllerId=={AUTO_FLEET}*"),
        ds,
    )
    .await?;
    let deadline = t + Duration::from_secs(120 + sizes.auto_targets / 500);
    while store::bench::count_actions_of_set(db, ds).await? < n {
        if Instant::now() > deadline {
            bail!("the auto-assignment did not assign {n} targets in time");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pass_s = t.elapsed().as_secs_f64();
    let per_s = n as f64 / pass_s.max(1e-9);
    progress(&format!(
        "auto-assignment: {} targets in {pass_s:.2} s ({} targets/s; raw {} actions/s)",
        fmt_num(n as f64),
        fmt_num(per_s),
        fmt_num(raw_per_s)
    ));
    api.post(&format!("/autoassignments/{id}/pause"), json!({}))
        .await?;

    // Latency: devices register one at a time and match a running auto-assignment.
    let lid = create(api, "bench-latency", &format!("controllerId=={AUTO}*"), ds).await?;
    wait_running(api, lid).await?;
    let mut p = fleet.pipeline().await?;
    let mut samples = Vec::with_capacity(sizes.auto_devices as usize);
    for i in 0..sizes.auto_devices {
        let thing = fleet::device_id(AUTO, i);
        let (body, props) = fleet::thing_created(&thing);
        let t0 = Instant::now();
        p.publish(DMF_EXCHANGE, "", &body, props).await?;
        p.flush().await?;
        let a = fleet
            .auto
            .next(Duration::from_secs(10))
            .await
            .with_context(|| format!("deployment of {thing}"))?;
        if a.thing != thing {
            bail!("expected the deployment of {thing}, got {}", a.thing);
        }
        samples.push(ms(a.at.saturating_duration_since(t0)));
    }
    let mut sorted = samples.clone();
    sorted.sort_by(f64::total_cmp);
    let (p50, p99) = (percentile(&sorted, 50.0), percentile(&sorted, 99.0));
    progress(&format!(
        "auto-assignment latency: {} devices, p50 {p50:.2} ms, p99 {p99:.2} ms",
        samples.len()
    ));
    let latency = json!({
        "measured": "THING_CREATED of a matching device published → its deployment at the connector, one device at a time",
        "devices": samples.len(),
        "samples_ms_in_order": samples.iter().map(|v| round(*v, 3)).collect::<Vec<_>>(),
        "ceiling": "two broker hops without the service (the cascade phase's), idle",
    });
    Ok(vec![
        Figure::new(
            "auto_assign_targets_per_s",
            format!("auto-assignment, {} targets", fmt_num(n as f64)),
            per_s,
            "targets/s",
        )
        .against("raw PG action insert, same chunks", raw_per_s)
        .detail(json!({
            "measured": "POST /autoassignments → every registered matching target has its action (pass in chunks, one transaction each)",
            "targets": n, "seconds": round(pass_s, 3), "chunk": PASS_CHUNK,
            "raw_actions": raw,
        })),
        Figure::new("auto_assign_p50", "auto-assignment latency p50", p50, "ms")
            .against("two broker hops p50", hops.p50)
            .detail(latency),
        Figure::new("auto_assign_p99", "auto-assignment latency p99", p99, "ms")
            .against("two broker hops p99", hops.p99)
            .detail(json!({"see": "auto_assign_p50", "samples": samples.len()})),
    ])
}
