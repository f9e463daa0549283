//! The bench's DMF connector: one connection of its own, its reply path declared the way the
//! hawkBit SDK declares it (dmf-protocol.md §1.3), devices registered and answered with
//! pipelined publisher confirms. Deployment messages are timestamped the moment they are
//! delivered and routed to the phase that owns the device (by id prefix).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use tokio::sync::mpsc;

use crate::amqp::{
    self,
    topology::{Lifetime, declare_fanout_path},
};

/// The connector's reply exchange (`reply_to`) and the queue behind it.
pub const REPLY_EXCHANGE: &str = "bench.replyTo";
const REPLY_QUEUE: &str = "bench_receiver";
/// Where connectors publish (dmf-protocol.md §1.4).
pub use crate::amqp::topology::DMF_EXCHANGE;
pub const TENANT: &str = "DEFAULT";
/// Unconfirmed publishes in flight: the service's outbox publishes rounds of 1000
/// (`DMF_OUTBOX_BATCH`), the fleet and the raw ceilings use the same window.
pub const WINDOW: usize = 1000;
/// Channels publishing side by side for bulk status traffic: a fleet is many connectors, and
/// one channel's confirm round trips would cap the load the bench can offer.
pub const CHANNELS: usize = 4;

/// Device id prefixes, one per phase (the consumer routes deployments by them).
pub const INGEST: &str = "bench-i-";
pub const CASCADE: &str = "bench-c-";
pub const BACKGROUND: &str = "bench-b-";
/// Targets of the creation figure, inserted with SQL and never contacted.
pub const CREATION: &str = "bench-m-";
/// Devices that register one by one and get an auto-assignment's deployment.
pub const AUTO: &str = "bench-a-";
/// Targets an auto-assignment goes through, inserted with SQL and never contacted.
pub const AUTO_FLEET: &str = "bench-t-";

/// The id of device `i` of a fleet.
pub fn device_id(prefix: &str, i: u64) -> String {
    format!("{prefix}{i:07}")
}

/// A deployment message as it reached the connector.
#[derive(Debug, Clone)]
pub struct Arrival {
    pub thing: String,
    pub action: i64,
    pub at: Instant,
}

/// A message as it was delivered: body and properties.
pub type Captured = (Vec<u8>, BasicProperties);

/// One phase's view of deployments for its devices.
pub struct Inbox(mpsc::UnboundedReceiver<Arrival>);

impl Inbox {
    /// The next deployment, or an error after `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> anyhow::Result<Arrival> {
        match tokio::time::timeout(timeout, self.0.recv()).await {
            Ok(Some(a)) => Ok(a),
            Ok(None) => bail!("the connector's consumer stopped"),
            Err(_) => bail!("no deployment message within {timeout:?}"),
        }
    }

    /// `n` deployments for distinct devices (re-sends of a device already seen are skipped).
    pub async fn collect(&mut self, n: usize, idle: Duration) -> anyhow::Result<Vec<Arrival>> {
        let mut seen = std::collections::HashSet::with_capacity(n);
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let a = self
                .next(idle)
                .await
                .with_context(|| format!("after {} of {n} deployments", out.len()))?;
            if seen.insert(a.thing.clone()) {
                out.push(a);
            }
        }
        Ok(out)
    }
}

/// The connector: its connection, the three phase inboxes, counters.
pub struct Fleet {
    pub conn: Connection,
    pub ingest: Inbox,
    pub cascade: Inbox,
    pub background: Inbox,
    pub auto: Inbox,
    /// Messages that were not deployments (REQUEST_ATTRIBUTES_UPDATE, ...).
    pub other: Arc<AtomicU64>,
    /// The first deployment message received, body and properties as the service sent them
    /// (the dispatch ceiling republishes exactly this).
    pub sample: Arc<Mutex<Option<Captured>>>,
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

/// Consume `queue` with automatic acknowledgement (the bench's receivers never hold a message).
pub async fn consume_auto_ack(
    ch: &Channel,
    queue: &str,
    consumer_tag: &str,
) -> lapin::Result<lapin::Consumer> {
    ch.basic_consume(
        queue.into(),
        consumer_tag.into(),
        BasicConsumeOptions {
            no_ack: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
}

#[derive(serde::Deserialize)]
struct ActionRef {
    #[serde(rename = "actionId")]
    action_id: i64,
}

impl Fleet {
    /// Connect, declare the reply path, start consuming.
    pub async fn connect(amqp_url: &str) -> anyhow::Result<Self> {
        let conn = Connection::connect(amqp_url, ConnectionProperties::default())
            .await
            .context("connecting the bench connector")?;
        let ch = conn.create_channel().await?;
        // As the SDK: a non-durable, auto-deleted fanout exchange and queue (§1.3).
        declare_fanout_path(
            &ch,
            REPLY_EXCHANGE,
            REPLY_QUEUE,
            Lifetime::AutoDelete,
            FieldTable::default(),
        )
        .await?;
        // Automatic acknowledgement: the connector must never be the bottleneck it measures.
        let mut consumer = consume_auto_ack(&ch, REPLY_QUEUE, "bench-connector").await?;
        let (ingest_tx, ingest) = mpsc::unbounded_channel();
        let (cascade_tx, cascade) = mpsc::unbounded_channel();
        let (background_tx, background) = mpsc::unbounded_channel();
        let (auto_tx, auto) = mpsc::unbounded_channel();
        let other = Arc::new(AtomicU64::new(0));
        let sample = Arc::new(Mutex::new(None));
        let (other_c, sample_c) = (other.clone(), sample.clone());
        tokio::spawn(async move {
            // Keeps the channel alive as long as the consumer runs.
            let _ch = ch;
            while let Some(Ok(d)) = consumer.next().await {
                let at = Instant::now();
                let topic = header(&d, "topic");
                if !matches!(
                    topic.as_deref(),
                    Some("DOWNLOAD_AND_INSTALL" | "DOWNLOAD" | "CONFIRM")
                ) {
                    other_c.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let Ok(ActionRef { action_id }) = serde_json::from_slice(&d.data) else {
                    other_c.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let thing = header(&d, "thingId").unwrap_or_default();
                if let Ok(mut s) = sample_c.lock()
                    && s.is_none()
                {
                    *s = Some((d.data.clone(), d.properties.clone()));
                }
                let tx = if thing.starts_with(INGEST) {
                    &ingest_tx
                } else if thing.starts_with(CASCADE) {
                    &cascade_tx
                } else if thing.starts_with(BACKGROUND) {
                    &background_tx
                } else if thing.starts_with(AUTO) {
                    &auto_tx
                } else {
                    other_c.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let _ = tx.send(Arrival {
                    thing,
                    action: action_id,
                    at,
                });
            }
        });
        Ok(Fleet {
            conn,
            ingest: Inbox(ingest),
            cascade: Inbox(cascade),
            background: Inbox(background),
            auto: Inbox(auto),
            other,
            sample,
        })
    }

    /// A publishing channel with confirms and the fleet's window.
    pub async fn pipeline(&self) -> anyhow::Result<Pipeline> {
        Pipeline::open(&self.conn, WINDOW).await
    }

    /// Register `count` devices `<prefix><index>` with THING_CREATED.
    pub async fn register(&self, prefix: &str, count: u64) -> anyhow::Result<()> {
        let mut p = self.pipeline().await?;
        for i in 0..count {
            let (body, props) = thing_created(&device_id(prefix, i));
            p.publish(DMF_EXCHANGE, "", &body, props).await?;
        }
        p.flush().await
    }
}

/// Publishes with confirms, keeping up to `window` unconfirmed messages in flight.
pub struct Pipeline {
    channel: Channel,
    inflight: VecDeque<lapin::PublisherConfirm>,
    window: usize,
}

impl Pipeline {
    pub async fn open(conn: &Connection, window: usize) -> anyhow::Result<Self> {
        let channel = amqp::confirm_channel(conn).await?;
        Ok(Pipeline {
            channel,
            inflight: VecDeque::with_capacity(window),
            window: window.max(1),
        })
    }

    pub async fn publish(
        &mut self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        props: BasicProperties,
    ) -> anyhow::Result<()> {
        if self.inflight.len() >= self.window
            && let Some(c) = self.inflight.pop_front()
        {
            settle(c).await?;
        }
        let c = self
            .channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions::default(),
                body,
                props,
            )
            .await?;
        self.inflight.push_back(c);
        Ok(())
    }

    /// Wait until every message published so far is confirmed.
    pub async fn flush(&mut self) -> anyhow::Result<()> {
        while let Some(c) = self.inflight.pop_front() {
            settle(c).await?;
        }
        Ok(())
    }
}

/// Publish, for every action, one report per status — status by status, as a fleet progressing
/// together does — spread over [`CHANNELS`] channels by device, so each device's reports stay in
/// order. Returns once every report is confirmed.
pub async fn publish_reports(
    conn: &Connection,
    exchange: &'static str,
    actions: &[i64],
    statuses: &'static [&'static str],
) -> anyhow::Result<()> {
    let mut tasks = Vec::with_capacity(CHANNELS);
    for share in 0..CHANNELS {
        let mine: Vec<i64> = actions
            .iter()
            .skip(share)
            .step_by(CHANNELS)
            .copied()
            .collect();
        let mut p = Pipeline::open(conn, WINDOW).await?;
        tasks.push(tokio::spawn(async move {
            for status in statuses {
                for a in &mine {
                    let (body, props) = status_report(*a, status);
                    p.publish(exchange, "", &body, props).await?;
                }
            }
            p.flush().await
        }));
    }
    for t in tasks {
        t.await.context("report publisher")??;
    }
    Ok(())
}

async fn settle(c: lapin::PublisherConfirm) -> anyhow::Result<()> {
    let conf = c.await.context("publisher confirm")?;
    if !conf.is_ack() {
        bail!("the broker refused (nacked) a message");
    }
    Ok(())
}

fn headers(pairs: &[(&str, &str)]) -> FieldTable {
    let mut h = FieldTable::default();
    for (k, v) in pairs {
        h.insert(ShortString::from(*k), AMQPValue::LongString((*v).into()));
    }
    h
}

/// THING_CREATED as the SDK sends it: empty body, `reply_to` naming the connector's exchange.
pub fn thing_created(thing: &str) -> (Vec<u8>, BasicProperties) {
    let props = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_reply_to(REPLY_EXCHANGE.into())
        .with_delivery_mode(2)
        .with_headers(headers(&[
            ("type", "THING_CREATED"),
            ("tenant", TENANT),
            ("thingId", thing),
            ("sender", "dmf-broker-bench"),
        ]));
    (Vec::new(), props)
}

/// UPDATE_ACTION_STATUS as the SDK sends it (no `thingId`, §3.4): about 120 bytes of JSON.
pub fn status_report(action: i64, status: &str) -> (Vec<u8>, BasicProperties) {
    let ts = chrono::Utc::now().timestamp_millis();
    let body = format!(
        r#"{{"actionId":{action},"actionStatus":"{status}","timestamp":{ts},"message":["bench device reports {status}"]}}"#
    );
    let props = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_delivery_mode(2)
        .with_headers(headers(&[
            ("type", "EVENT"),
            ("tenant", TENANT),
            ("topic", "UPDATE_ACTION_STATUS"),
            ("sender", "dmf-broker-bench"),
        ]));
    (body.into_bytes(), props)
}
