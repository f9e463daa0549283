//! Consumes `dmf_receiver` in batches: up to `batch_size` deliveries or `batch_wait_ms` after the
//! first, decoded, applied by the engine in one transaction, then dead letters published (with
//! confirms) and the whole batch acknowledged with one multi-ack — only after the commit.
//!
//! Failure policy: a message that cannot be decoded or that the engine refuses is
//! dead-lettered with its reason (header `x-dmf-error`) and acknowledged; if that publish fails
//! it is rejected without requeue, so the broker dead-letters it. A transient database error
//! keeps the batch unacknowledged and retries it with backoff; a permanent one is isolated by
//! retrying message by message, and only the culprit is dead-lettered. Nothing is requeued in a
//! loop, nothing blocks the queue.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    BasicRejectOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::TransportError;
use crate::config::AmqpArgs;
use crate::dmf::envelope::{self, RawMessage};
use crate::dmf::header;
use crate::engine::{Engine, Incoming, Verdict};

pub struct Consumer {
    conn: Arc<Connection>,
    channel: Channel,
    /// Publishes dead letters, with confirms; reopened when an error closed it.
    dead_letters: Channel,
    stream: lapin::Consumer,
    tag: String,
    cfg: AmqpArgs,
    engine: Arc<Engine>,
}

/// Text form of a header value: strings as they are, scalars by their textual form (§2.2).
fn header_text(v: &AMQPValue) -> Option<String> {
    Some(match v {
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        AMQPValue::ShortString(s) => s.as_str().to_owned(),
        AMQPValue::Boolean(b) => b.to_string(),
        AMQPValue::ShortShortInt(n) => n.to_string(),
        AMQPValue::ShortShortUInt(n) => n.to_string(),
        AMQPValue::ShortInt(n) => n.to_string(),
        AMQPValue::ShortUInt(n) => n.to_string(),
        AMQPValue::LongInt(n) => n.to_string(),
        AMQPValue::LongUInt(n) => n.to_string(),
        AMQPValue::LongLongInt(n) => n.to_string(),
        AMQPValue::Float(n) => n.to_string(),
        AMQPValue::Double(n) => n.to_string(),
        AMQPValue::Timestamp(n) => n.to_string(),
        _ => return None,
    })
}

/// The transport-neutral view of a delivery.
pub fn raw_message(d: &Delivery) -> RawMessage {
    let p = &d.properties;
    RawMessage {
        headers: p
            .headers()
            .as_ref()
            .map(|h| {
                h.inner()
                    .iter()
                    .filter_map(|(k, v)| header_text(v).map(|t| (k.as_str().to_owned(), t)))
                    .collect()
            })
            .unwrap_or_default(),
        content_type: p.content_type().as_ref().map(|s| s.as_str().to_owned()),
        correlation_id: p.correlation_id().as_ref().map(|s| s.as_str().to_owned()),
        reply_to: p.reply_to().as_ref().map(|s| s.as_str().to_owned()),
        body: d.data.clone(),
    }
}

/// A stable digest of what a message says, for redelivery dedupe.
fn digest(raw: &RawMessage) -> Vec<u8> {
    let mut h = Sha256::new();
    for (k, v) in &raw.headers {
        h.update(k.as_bytes());
        h.update([0]);
        h.update(v.as_bytes());
        h.update([0]);
    }
    for part in [&raw.content_type, &raw.correlation_id, &raw.reply_to] {
        h.update(part.as_deref().unwrap_or("").as_bytes());
        h.update([0]);
    }
    h.update(&raw.body);
    h.finalize().to_vec()
}

impl Consumer {
    pub async fn start(
        conn: Arc<Connection>,
        cfg: &AmqpArgs,
        engine: Arc<Engine>,
    ) -> Result<Self, TransportError> {
        let channel = conn.create_channel().await?;
        // Prefetch bounds what we hold unacknowledged; it must exceed the batch size so a batch
        // can fill while the previous one commits.
        channel
            .basic_qos(cfg.prefetch, BasicQosOptions::default())
            .await?;
        let tag = format!("dmf-broker-{}", uuid::Uuid::new_v4());
        // Manual acks (no_ack=false): a delivery is acknowledged only after its effects commit.
        let stream = channel
            .basic_consume(
                cfg.receiver_queue.as_str().into(),
                tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let dead_letters = super::confirm_channel(&conn).await?;
        Ok(Self {
            conn,
            channel,
            dead_letters,
            stream,
            tag,
            cfg: cfg.clone(),
            engine,
        })
    }

    /// Consume until `token` is cancelled (Ok) or the channel fails (Err).
    pub async fn run(mut self, token: CancellationToken) -> Result<(), TransportError> {
        loop {
            let first = tokio::select! {
                _ = token.cancelled() => {
                    // Stop consuming; unacked prefetched deliveries return to the queue.
                    let _ = self.channel.basic_cancel(self.tag.as_str().into(), BasicCancelOptions::default()).await;
                    let _ = self.channel.close(200, "shutting down".into()).await;
                    return Ok(());
                }
                next = self.stream.next() => next,
            };
            let first = first.ok_or(TransportError::Closed)??;
            let mut batch = vec![first];
            let deadline = Instant::now() + Duration::from_millis(self.cfg.batch_wait_ms);
            while batch.len() < self.cfg.batch_size {
                let left = deadline.saturating_duration_since(Instant::now());
                match tokio::time::timeout(left, self.stream.next()).await {
                    Ok(Some(d)) => batch.push(d?),
                    Ok(None) => return Err(TransportError::Closed),
                    Err(_) => break,
                }
            }
            if !self.process(batch, &token).await? {
                return Ok(());
            }
        }
    }

    /// Apply one batch. Returns false when shutdown interrupted a retry (batch left unacked).
    async fn process(
        &mut self,
        batch: Vec<Delivery>,
        token: &CancellationToken,
    ) -> Result<bool, TransportError> {
        let raws: Vec<RawMessage> = batch.iter().map(raw_message).collect();
        let mut reasons: Vec<Option<String>> = vec![None; batch.len()];
        let mut incoming = Vec::new();
        let mut index = Vec::new();
        for (i, (raw, d)) in raws.iter().zip(&batch).enumerate() {
            match envelope::decode(raw, self.cfg.max_body_bytes) {
                Ok(message) => {
                    index.push(i);
                    incoming.push(Incoming {
                        message,
                        digest: digest(raw),
                        redelivered: d.redelivered,
                    });
                }
                Err(e) => reasons[i] = Some(e.to_string()),
            }
        }
        let Some(verdicts) = self.apply(&incoming, token).await else {
            return Ok(false);
        };
        for (pos, v) in verdicts.into_iter().enumerate() {
            if let Verdict::Reject(reason) = v {
                reasons[index[pos]] = Some(reason);
            }
        }
        // Dead letters first (confirmed), then one multi-ack for the batch.
        let mut failed = vec![false; batch.len()];
        for (i, reason) in reasons.iter().enumerate() {
            if let Some(reason) = reason {
                let r = &raws[i];
                tracing::warn!(
                    reason = %reason,
                    tenant = r.headers.get(header::TENANT).map(String::as_str).unwrap_or(""),
                    thing_id = r.headers.get(header::THING_ID).map(String::as_str).unwrap_or(""),
                    msg_type = r.headers.get(header::TYPE).map(String::as_str).unwrap_or(""),
                    "dead-lettering inbound message"
                );
                self.engine.count_dead_letter();
                if self.dead_letter(&batch[i], reason).await.is_err() {
                    failed[i] = true;
                }
            }
        }
        if failed.iter().any(|f| *f) {
            for (d, f) in batch.iter().zip(&failed) {
                if *f {
                    // The broker dead-letters it through the queue's x-dead-letter-exchange.
                    d.acker
                        .reject(BasicRejectOptions { requeue: false })
                        .await?;
                } else {
                    d.acker.ack(BasicAckOptions::default()).await?;
                }
            }
        } else if let Some(last) = batch.last() {
            last.acker.ack(BasicAckOptions { multiple: true }).await?;
        }
        Ok(true)
    }

    /// Run the batch through the engine, retrying transient failures and isolating permanent
    /// ones. `None` when shutdown came first (the caller leaves the batch unacked).
    async fn apply(
        &self,
        incoming: &[Incoming],
        token: &CancellationToken,
    ) -> Option<Vec<Verdict>> {
        if incoming.is_empty() {
            return Some(Vec::new());
        }
        let mut backoff = Duration::from_millis(100);
        loop {
            let started = Instant::now();
            let err = match self.engine.handle_batch(incoming).await {
                Ok(v) => {
                    tracing::debug!(
                        messages = incoming.len(),
                        elapsed_us = started.elapsed().as_micros() as u64,
                        "batch committed"
                    );
                    return Some(v);
                }
                Err(e) => e,
            };
            // An error while the database is unreachable says nothing about the messages, whatever
            // its class: e.g. "database is not currently accepting connections" (55000) comes
            // from the connect phase and looks permanent. Retry instead of dead-lettering.
            if err.is_transient() || !self.engine.database_up().await {
                tracing::warn!(error.message = %err, retry_in_ms = backoff.as_millis() as u64, "database unavailable; batch will be retried");
            } else {
                tracing::error!(error.message = %err, "batch failed; retrying message by message");
                let mut verdicts = Vec::with_capacity(incoming.len());
                let mut transient = false;
                for one in incoming {
                    match self.engine.handle_batch(std::slice::from_ref(one)).await {
                        Ok(mut v) => verdicts.push(v.pop().unwrap_or(Verdict::Done)),
                        Err(e) if e.is_transient() || !self.engine.database_up().await => {
                            transient = true;
                            break;
                        }
                        Err(e) => verdicts.push(Verdict::Reject(format!("internal error: {e}"))),
                    }
                }
                if !transient {
                    return Some(verdicts);
                }
            }
            tokio::select! {
                _ = token.cancelled() => {
                    // Leave the batch unacked: the broker redelivers it to the next consumer.
                    return None;
                }
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    /// Publish the delivery unchanged to the dead-letter exchange with the reason added:
    /// `mandatory`, so that a dead-letter exchange routing it nowhere counts as a failure (the
    /// broker returns it) and the caller falls back to rejecting it.
    async fn dead_letter(&mut self, d: &Delivery, reason: &str) -> Result<(), TransportError> {
        if !self.dead_letters.status().connected() {
            self.dead_letters = super::confirm_channel(&self.conn).await?;
        }
        let mut headers = d.properties.headers().clone().unwrap_or_default();
        let one_line: String = reason
            .replace(['\r', '\n'], " ")
            .chars()
            .take(1000)
            .collect();
        headers.insert(
            ShortString::from(header::DEAD_LETTER_REASON),
            AMQPValue::LongString(one_line.as_str().into()),
        );
        let props: BasicProperties = d.properties.clone().with_headers(headers);
        let confirm = self
            .dead_letters
            .basic_publish(
                self.cfg.dead_letter_exchange.as_str().into(),
                d.routing_key.clone(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                &d.data,
                props,
            )
            .await?
            .await?;
        // A returned (unroutable) message is acked too, with the message attached.
        if confirm.is_ack() && confirm.take_message().is_none() {
            Ok(())
        } else {
            Err(TransportError::Closed)
        }
    }
}
