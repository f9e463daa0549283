//! The raw ceilings, measured in the same run on the same machine with the service idle: what
//! RabbitMQ and PostgreSQL do on their own with the message sizes, windows, prefetch and batch
//! sizes the service uses. Every figure of the service is reported as a ratio of one of these.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ExchangeDeleteOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection};

use super::fleet::{Captured, Pipeline, WINDOW, consume_auto_ack, publish_reports, status_report};
use crate::amqp::topology::{Lifetime, declare_fanout_path};
use crate::store;

/// The service's consumer defaults (`DMF_PREFETCH`, `DMF_BATCH_SIZE`).
pub const PREFETCH: u16 = 1000;
pub const BATCH: usize = 500;

/// Declare a fanout exchange bound to a queue of the same name.
async fn scratch_path(ch: &Channel, name: &str, lifetime: Lifetime) -> lapin::Result<()> {
    declare_fanout_path(ch, name, name, lifetime, FieldTable::default()).await
}

async fn remove_path(ch: &Channel, name: &str) {
    let _ = ch
        .queue_delete(name.into(), QueueDeleteOptions::default())
        .await;
    let _ = ch
        .exchange_delete(name.into(), ExchangeDeleteOptions::default())
        .await;
}

/// The status-report path measured three ways (messages per second).
#[derive(Debug, Clone, Copy)]
pub struct StatusPath {
    /// Publishing the reports as the fleet does, nobody consuming.
    pub fill: f64,
    /// Consuming them from the filled queue with the service's prefetch and multi-ack.
    pub consume_prefilled: f64,
    /// Publishing and consuming at once, first publish → last ack: the shape of the ingestion
    /// figure with a consumer that does nothing.
    pub end_to_end: f64,
}

/// Status-report path: a durable queue behind a durable fanout exchange — the `dmf.exchange` →
/// `dmf_receiver` path — fed with status reports for `actions` exactly as the fleet publishes
/// them, consumed with the service's prefetch and one multi-ack per [`BATCH`].
pub async fn amqp_status_path(
    conn: &Connection,
    actions: u64,
    statuses: &'static [&'static str],
) -> anyhow::Result<StatusPath> {
    const NAME: &str = "bench.ceiling.status";
    let ch = conn.create_channel().await?;
    scratch_path(&ch, NAME, Lifetime::Durable).await?;
    let ids: Vec<i64> = (0..actions as i64).map(|i| 100000 + i).collect();
    let count = actions * statuses.len() as u64;

    let t0 = Instant::now();
    publish_reports(conn, NAME, &ids, statuses).await?;
    let fill = count as f64 / t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    consume_and_ack(conn, NAME, count).await?;
    let consume_prefilled = count as f64 / t0.elapsed().as_secs_f64();

    let t0 = Instant::now();
    let (published, consumed) = tokio::join!(
        publish_reports(conn, NAME, &ids, statuses),
        consume_and_ack(conn, NAME, count)
    );
    published?;
    consumed?;
    let end_to_end = count as f64 / t0.elapsed().as_secs_f64();

    remove_path(&ch, NAME).await;
    let _ = ch.close(200, "done".into()).await;
    Ok(StatusPath {
        fill,
        consume_prefilled,
        end_to_end,
    })
}

/// Consume `count` messages from `queue` as the service does: prefetch [`PREFETCH`], one
/// multi-ack per [`BATCH`] (and one for the rest).
async fn consume_and_ack(conn: &Connection, queue: &str, count: u64) -> anyhow::Result<()> {
    let ch = conn.create_channel().await?;
    ch.basic_qos(PREFETCH, BasicQosOptions::default()).await?;
    let mut consumer = ch
        .basic_consume(
            queue.into(),
            "bench-ceiling".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut got = 0u64;
    let mut pending = 0usize;
    while got < count {
        let d = tokio::time::timeout(Duration::from_secs(30), consumer.next())
            .await
            .context("the ceiling queue stopped delivering")?
            .context("the ceiling consumer closed")??;
        got += 1;
        pending += 1;
        if pending == BATCH || got == count {
            d.acker.ack(BasicAckOptions { multiple: true }).await?;
            pending = 0;
        }
    }
    drop(consumer);
    let _ = ch.close(200, "done".into()).await;
    Ok(())
}

/// Deployment path: republish `count` copies of a real deployment message (same body, same
/// properties) with confirms (window [`WINDOW`]) through a non-durable fanout exchange to a
/// queue drained by an auto-ack consumer — the service → connector path. Messages per second.
pub async fn amqp_deploy_publish(
    conn: &Connection,
    sample: &Captured,
    count: u64,
) -> anyhow::Result<f64> {
    const NAME: &str = "bench.ceiling.deploy";
    let ch = conn.create_channel().await?;
    scratch_path(&ch, NAME, Lifetime::Transient).await?;
    let mut consumer = consume_auto_ack(&ch, NAME, "bench-ceiling-drain").await?;
    let drain = tokio::spawn(async move {
        let mut n = 0u64;
        while n < count {
            match tokio::time::timeout(Duration::from_secs(30), consumer.next()).await {
                Ok(Some(Ok(_))) => n += 1,
                _ => break,
            }
        }
        n
    });
    let mut p = Pipeline::open(conn, WINDOW).await?;
    let t0 = Instant::now();
    for _ in 0..count {
        p.publish(NAME, "", &sample.0, sample.1.clone()).await?;
    }
    p.flush().await?;
    let rate = count as f64 / t0.elapsed().as_secs_f64();
    let drained = drain.await.unwrap_or(0);
    if drained < count {
        bail!("the deployment ceiling delivered {drained} of {count} messages");
    }
    remove_path(&ch, NAME).await;
    let _ = ch.close(200, "done".into()).await;
    Ok(rate)
}

/// The floor of a cascade: two broker hops without the service — the bench publishes a
/// status-report-sized persistent message to a durable queue, an echo consumer republishes it
/// to a non-durable one, the bench receives it. Round trips in ms, sorted.
pub async fn amqp_two_hops(conn: &Connection, samples: usize) -> anyhow::Result<Vec<f64>> {
    const A: &str = "bench.ceiling.hop-a";
    const B: &str = "bench.ceiling.hop-b";
    let ch = conn.create_channel().await?;
    scratch_path(&ch, A, Lifetime::Durable).await?;
    scratch_path(&ch, B, Lifetime::Transient).await?;
    let echo_ch = conn.create_channel().await?;
    let mut echo_in = consume_auto_ack(&echo_ch, A, "bench-echo").await?;
    let echo = tokio::spawn(async move {
        while let Some(Ok(d)) = echo_in.next().await {
            if echo_ch
                .basic_publish(
                    B.into(),
                    "".into(),
                    BasicPublishOptions::default(),
                    &d.data,
                    d.properties.clone(),
                )
                .await
                .is_err()
            {
                return;
            }
        }
    });
    let mut back = consume_auto_ack(&ch, B, "bench-echo-back").await?;
    let mut out = Vec::with_capacity(samples);
    for i in 0..samples {
        let (body, props) = status_report(i as i64, "FINISHED");
        let t0 = Instant::now();
        ch.basic_publish(
            A.into(),
            "".into(),
            BasicPublishOptions::default(),
            &body,
            props,
        )
        .await?;
        tokio::time::timeout(Duration::from_secs(10), back.next())
            .await
            .context("the echo did not come back")?
            .context("the echo consumer closed")??;
        out.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    echo.abort();
    remove_path(&ch, A).await;
    remove_path(&ch, B).await;
    let _ = ch.close(200, "done".into()).await;
    out.sort_by(f64::total_cmp);
    Ok(out)
}

/// PostgreSQL batched row updates: `updates` row updates on a table of `rows` rows, batches of
/// [`BATCH`] rows, one committed transaction per batch on one connection. Rows per second.
pub async fn pg_batched_update(db_url: &str, rows: u64, updates: u64) -> anyhow::Result<f64> {
    let mut conn = store::bench::connect(db_url).await?;
    let rows = rows.max(BATCH as u64) as i64;
    store::bench::create_update_scratch(&mut conn, rows).await?;
    let now = chrono::Utc::now().timestamp_millis();
    let mut done = 0u64;
    let mut next = 1i64;
    let mut status = 1i32;
    let t0 = Instant::now();
    while done < updates {
        let n = (BATCH as u64).min(updates - done) as i64;
        let ids: Vec<i64> = (0..n).map(|k| (next + k - 1) % rows + 1).collect();
        let statuses = vec![status; ids.len()];
        done += store::bench::update_scratch_batch(&mut conn, &ids, &statuses, now).await?;
        next += n;
        if next > rows {
            next -= rows;
            status += 1;
        }
    }
    let rate = done as f64 / t0.elapsed().as_secs_f64();
    store::bench::drop_scratch(&mut conn).await?;
    Ok(rate)
}

/// The floor of splitting a rollout: one `INSERT … SELECT` of `rows` (group, target) pairs into
/// a table with the membership table's primary key. Seconds.
pub async fn pg_membership_insert(db_url: &str, rows: u64) -> anyhow::Result<f64> {
    let mut conn = store::bench::connect(db_url).await?;
    let t0 = Instant::now();
    store::bench::insert_pairs_scratch(&mut conn, rows as i64).await?;
    let secs = t0.elapsed().as_secs_f64();
    store::bench::drop_scratch(&mut conn).await?;
    Ok(secs)
}
