//! The simulator's broker side: one connection with a consuming and a publishing channel.
//!
//! One loop does everything, in rounds: take the deliveries that are already there (up to
//! [`BURST`], then one multi-ack), publish the reports that are due, publish the next chunk of
//! registrations; when a round found nothing to do, wait for a delivery, the next due report,
//! a publisher confirm or the progress tick. Publishing is pipelined: up to
//! `--confirm-window` messages await their publisher confirm at once (settled in order, never one
//! by one), so 100,000 registrations leave in seconds. All reports go through one channel in the
//! order they were scheduled, so a device's RUNNING always precedes its FINISHED.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use lapin::{Confirmation, PublisherConfirm};
use tokio_util::sync::CancellationToken;

use super::devices::Out;
use super::{Counters, Sim, SimStats, bump, wire};
use crate::amqp::{
    self,
    topology::{DMF_EXCHANGE, Lifetime, declare_fanout_path},
};
use crate::dmf::inbound::ReportStatus;
use crate::dmf::{CONTENT_TYPE_JSON, header, msg_type, topic};

/// Most deliveries handled, reports published or devices registered per round before the loop
/// looks at its other duties.
const BURST: usize = 256;
/// How often progress is logged.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// How long shutdown waits for outstanding confirms.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(5);
/// hawkBit's simulator and SDK give their reply queue these arguments (dmf-protocol.md §1.3).
const REPLY_QUEUE_TTL_MS: i64 = 86_400_000;
const REPLY_QUEUE_MIN_LENGTH: i64 = 100_000;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("AMQP: {0}")]
    Amqp(#[from] lapin::Error),
    #[error("AMQP connection lost")]
    Closed,
}

/// What a publish was, to count it once confirmed.
#[derive(Debug, Clone, Copy)]
enum Sent {
    Register,
    Report(ReportStatus),
    Attributes,
}

/// The publishing channel and its window of unconfirmed messages.
struct Outgoing {
    channel: Channel,
    window: VecDeque<(Sent, PublisherConfirm)>,
    max: usize,
    counters: Arc<Counters>,
}

impl Outgoing {
    async fn publish(
        &mut self,
        sent: Sent,
        props: BasicProperties,
        body: &[u8],
    ) -> Result<(), SessionError> {
        while self.window.len() >= self.max {
            self.settle_front().await?;
        }
        let confirm = self
            .channel
            .basic_publish(
                DMF_EXCHANGE.into(),
                "".into(),
                BasicPublishOptions::default(),
                body,
                props,
            )
            .await?;
        self.window.push_back((sent, confirm));
        self.settle_ready()
    }

    /// Count the confirms that have already arrived, in order, without waiting.
    fn settle_ready(&mut self) -> Result<(), SessionError> {
        while let Some((_, c)) = self.window.front_mut() {
            let Some(r) = c.now_or_never() else {
                break;
            };
            if let Some((sent, _)) = self.window.pop_front() {
                record(&self.counters, sent, r?);
            }
        }
        Ok(())
    }

    async fn settle_front(&mut self) -> Result<(), SessionError> {
        if let Some((sent, c)) = self.window.pop_front() {
            record(&self.counters, sent, c.await?);
        }
        Ok(())
    }
}

fn record(c: &Counters, sent: Sent, confirmation: Confirmation) {
    if !confirmation.is_ack() {
        bump(&c.nacked);
        tracing::warn!(?sent, "the broker refused a simulator message (nack)");
        return;
    }
    match sent {
        Sent::Register => bump(&c.registered),
        Sent::Attributes => bump(&c.attributes),
        Sent::Report(st) => {
            bump(&c.reports);
            match st {
                ReportStatus::Finished => bump(&c.finished),
                ReportStatus::Error => bump(&c.errors),
                ReportStatus::Canceled => bump(&c.canceled),
                ReportStatus::CancelRejected => bump(&c.cancel_rejected),
                _ => {}
            }
        }
    }
}

fn long(s: &str) -> AMQPValue {
    AMQPValue::LongString(s.into())
}

/// Properties of a message to the service: JSON, persistent (like the reference clients).
fn properties(headers: &[(&str, &str)]) -> BasicProperties {
    let mut table = FieldTable::default();
    for (k, v) in headers {
        table.insert(ShortString::from(*k), long(v));
    }
    BasicProperties::default()
        .with_content_type(CONTENT_TYPE_JSON.into())
        .with_delivery_mode(2)
        .with_headers(table)
}

/// A header as text (the service writes long strings; short ones are accepted too).
fn header_str<'a>(p: &'a BasicProperties, name: &str) -> Option<&'a str> {
    match p.headers().as_ref()?.inner().get(name)? {
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok(),
        AMQPValue::ShortString(s) => Some(s.as_str()),
        _ => None,
    }
}

/// Exchange and queue of the connector (dmf-protocol.md §1.3): a fanout exchange that is not
/// durable and auto-deletes, bound to a non-durable auto-delete queue. Both vanish when the
/// simulator disconnects, like the reference clients'; the service then drops messages for the
/// missing exchange until the devices register again.
async fn declare(channel: &Channel, sim: &Sim) -> lapin::Result<String> {
    let exchange = sim.args.reply_to.as_str();
    let queue = sim.args.reply_queue();
    // hawkBit's simulator arguments: a day's TTL and a length cap. The cap grows with the fleet
    // (two messages per device) so that a whole fleet's deployments fit even when the service
    // sends them faster than they are read; below 50,000 devices it is hawkBit's 100,000.
    let mut args = FieldTable::default();
    args.insert(
        ShortString::from("x-message-ttl"),
        AMQPValue::LongLongInt(REPLY_QUEUE_TTL_MS),
    );
    let cap = (2 * i64::from(sim.args.devices))
        .max(REPLY_QUEUE_MIN_LENGTH)
        .min(i64::from(i32::MAX));
    args.insert(
        ShortString::from("x-max-length"),
        AMQPValue::LongInt(cap as i32),
    );
    declare_fanout_path(channel, exchange, &queue, Lifetime::AutoDelete, args).await?;
    Ok(queue)
}

/// One connection's life: declare, register the fleet, answer until `token` is cancelled (then
/// `Ok`) or the connection fails (`Err`). `registered` tells the caller whether the whole fleet
/// got registered (a session that got that far resets the reconnect backoff).
pub async fn session(
    sim: &mut Sim,
    token: &CancellationToken,
    registered: &mut bool,
) -> Result<(), SessionError> {
    let conn =
        Connection::connect(&sim.args.broker.amqp_url, ConnectionProperties::default()).await?;
    let result = converse(sim, token, registered, &conn).await;
    // Also after a channel-level failure (e.g. `dmf.exchange` not declared yet, or a reply
    // queue declared elsewhere with other arguments), where the connection is still open.
    let _ = conn.close(200, "simulator stopped".into()).await;
    result
}

async fn converse(
    sim: &mut Sim,
    token: &CancellationToken,
    registered: &mut bool,
    conn: &Connection,
) -> Result<(), SessionError> {
    let consume = conn.create_channel().await?;
    let queue = declare(&consume, sim).await?;
    // Prefetch bounds what we hold unacknowledged; rounds ack up to BURST at once.
    consume
        .basic_qos(sim.args.prefetch, BasicQosOptions::default())
        .await?;
    let tag = format!("dmf-sim-{}", uuid::Uuid::new_v4().simple());
    // Manual acks (no_ack=false), sent in batches with `multiple`.
    let mut deliveries = consume
        .basic_consume(
            queue.as_str().into(),
            tag.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let publish = amqp::confirm_channel(conn).await?;
    let mut out = Outgoing {
        channel: publish,
        window: VecDeque::new(),
        max: sim.args.confirm_window,
        counters: sim.counters.clone(),
    };
    tracing::info!(queue = %queue, "simulator connected; registering the fleet");

    let started = Instant::now();
    // Registrations are counted across reconnects; this session's start from here.
    let registered_before = sim.counters.registered.load(Ordering::Relaxed);
    let mut registering: u32 = 0;
    let mut registered_logged = false;
    let mut next_progress = Instant::now() + PROGRESS_EVERY;
    let mut last_stats = SimStats::default();
    let result: Result<(), SessionError> = async {
        loop {
            if token.is_cancelled() {
                return Ok(());
            }
            let mut busy = false;

            // 1. Deliveries already waiting; one multi-ack for the lot.
            let mut last_tag = None;
            for _ in 0..BURST {
                match deliveries.next().now_or_never() {
                    Some(Some(Ok(d))) => {
                        handle(sim, &d);
                        last_tag = Some(d.delivery_tag);
                    }
                    Some(Some(Err(e))) => return Err(e.into()),
                    Some(None) => return Err(SessionError::Closed),
                    None => break,
                }
            }
            if let Some(t) = last_tag {
                consume
                    .basic_ack(t, BasicAckOptions { multiple: true })
                    .await?;
                busy = true;
            }

            // 2. Reports that are due.
            let now = sim.now();
            for _ in 0..BURST {
                let Some(o) = sim.devices.pop_due(now) else {
                    break;
                };
                publish_out(sim, &mut out, o).await?;
                busy = true;
            }

            // 3. The next registrations.
            if registering < sim.args.devices {
                let end = registering.saturating_add(BURST as u32).min(sim.args.devices);
                for i in registering..end {
                    let (id, body) = sim.bodies.thing_created(i);
                    let props = properties(&[
                        (header::TYPE, msg_type::THING_CREATED),
                        (header::TENANT, &sim.args.tenant),
                        (header::THING_ID, id),
                        ("sender", "simulator"),
                    ])
                    .with_reply_to(sim.args.reply_to.as_str().into());
                    out.publish(Sent::Register, props, body).await?;
                }
                registering = end;
                busy = true;
            }
            if !registered_logged
                && sim.counters.registered.load(Ordering::Relaxed) - registered_before
                    >= u64::from(sim.args.devices)
            {
                registered_logged = true;
                *registered = true;
                let secs = started.elapsed().as_secs_f64();
                tracing::info!(
                    devices = sim.args.devices,
                    seconds = format!("{secs:.2}"),
                    per_second = (f64::from(sim.args.devices) / secs.max(1e-3)) as u64,
                    "fleet registered (THING_CREATED confirmed by the broker)"
                );
            }

            if Instant::now() >= next_progress {
                next_progress = Instant::now() + PROGRESS_EVERY;
                let s = sim.counters.snapshot();
                if s != last_stats {
                    last_stats = s;
                    tracing::info!(
                        registered = s.registered,
                        deployments = s.deployments,
                        reports = s.reports,
                        finished = s.finished,
                        errors = s.errors,
                        cancels = s.cancels,
                        stuck = s.stuck,
                        pending = sim.devices.pending(),
                        "simulator progress"
                    );
                }
            }
            if busy {
                // Let the I/O tasks run between rounds.
                tokio::task::yield_now().await;
                continue;
            }

            // Idle: wait for something to do.
            let wake = sim
                .devices
                .next_due()
                .map_or(next_progress, |ms| sim.instant(ms).min(next_progress));
            let front = async {
                match out.window.front_mut() {
                    Some((_, c)) => c.await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = token.cancelled() => return Ok(()),
                d = deliveries.next() => match d {
                    Some(Ok(d)) => {
                        handle(sim, &d);
                        consume.basic_ack(d.delivery_tag, BasicAckOptions { multiple: true }).await?;
                    }
                    Some(Err(e)) => return Err(e.into()),
                    None => return Err(SessionError::Closed),
                },
                r = front => {
                    if let Some((sent, _)) = out.window.pop_front() {
                        record(&out.counters, sent, r?);
                    }
                }
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
        }
    }
    .await;

    if result.is_ok() {
        // Stopping: wait (briefly) for what was published, then leave cleanly.
        let settle = async {
            while !out.window.is_empty() {
                out.settle_front().await?;
            }
            Ok::<_, SessionError>(())
        };
        let _ = tokio::time::timeout(SETTLE_TIMEOUT, settle).await;
    }
    // Close the channels here, so the connection's close finds none half-open.
    let _ = consume.close(200, "simulator stopped".into()).await;
    let _ = out.channel.close(200, "simulator stopped".into()).await;
    result
}

/// Decode a delivery and apply it to the fleet.
fn handle(sim: &mut Sim, d: &lapin::message::Delivery) {
    let p = &d.properties;
    match wire::decode(
        header_str(p, header::TYPE),
        header_str(p, header::TOPIC),
        header_str(p, header::THING_ID),
        &d.data,
    ) {
        Ok(incoming) => {
            let now = sim.now();
            sim.apply(incoming, now);
        }
        Err(e) => {
            bump(&sim.counters.ignored);
            tracing::debug!(reason = %e, "message ignored");
        }
    }
}

/// Publish a due report or attribute answer.
async fn publish_out(sim: &mut Sim, out: &mut Outgoing, o: Out) -> Result<(), SessionError> {
    match o {
        Out::Status {
            device,
            action,
            status,
        } => {
            let (id, body) = sim.bodies.status(device, action, status);
            let props = properties(&[
                (header::TYPE, msg_type::EVENT),
                (header::TENANT, &sim.args.tenant),
                (header::TOPIC, topic::UPDATE_ACTION_STATUS),
                (header::THING_ID, id),
            ]);
            out.publish(Sent::Report(status), props, body).await
        }
        Out::Attributes { device } => {
            let (id, body) = sim.bodies.attributes(device);
            let props = properties(&[
                (header::TYPE, msg_type::EVENT),
                (header::TENANT, &sim.args.tenant),
                (header::TOPIC, topic::UPDATE_ATTRIBUTES),
                (header::THING_ID, id),
            ]);
            out.publish(Sent::Attributes, props, body).await
        }
    }
}
