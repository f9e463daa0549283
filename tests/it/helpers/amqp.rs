//! The connector side of DMF in tests: messages as connectors send them, publishing them to
//! `dmf.exchange`, the SDK's reply path, and reading what the service sent.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Consumer, PublisherConfirm};
use serde_json::Value;

use super::TestApp;
use dmf_broker::amqp::topology::{Lifetime, declare_fanout_path};

pub const REPLY_EXCHANGE: &str = "sdk.replyTo";
/// The queue the SDK binds to [`REPLY_EXCHANGE`].
const REPLY_QUEUE: &str = "sdk_receiver";

/// The topics a deployment reaches a device with.
pub const DEPLOYMENT_TOPICS: [&str; 3] = ["DOWNLOAD_AND_INSTALL", "DOWNLOAD", "CONFIRM"];

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

/// The headers of an UPDATE_ACTION_STATUS event.
pub const STATUS_HEADERS: [(&str, &str); 3] = [
    ("type", "EVENT"),
    ("tenant", "DEFAULT"),
    ("topic", "UPDATE_ACTION_STATUS"),
];

pub fn status(action: i64, st: &str) -> Msg {
    Msg::new(
        &STATUS_HEADERS,
        &format!(r#"{{"actionId":{action},"actionStatus":"{st}","message":["{st} reported"]}}"#),
    )
}

/// Every header a long string, as the SDK and Spring AMQP write them.
pub fn header_table(headers: &[(&str, &str)]) -> FieldTable {
    let mut table = FieldTable::default();
    for (k, v) in headers {
        table.insert(ShortString::from(*k), AMQPValue::LongString((*v).into()));
    }
    table
}

/// Publish `body` with `props` to `dmf.exchange`; await the returned future for the confirm.
pub async fn publish_dmf(ch: &Channel, props: BasicProperties, body: &[u8]) -> PublisherConfirm {
    ch.basic_publish(
        "dmf.exchange".into(),
        "".into(),
        BasicPublishOptions::default(),
        body,
        props,
    )
    .await
    .expect("publish")
}

/// The SDK's reply path on `ch`: a non-durable auto-delete fanout exchange bound to a
/// non-durable auto-delete queue, consumed without acks under `consumer_tag`.
pub async fn sdk_reply_path(ch: &Channel, consumer_tag: &str) -> Consumer {
    reply_path(
        ch,
        (REPLY_EXCHANGE, REPLY_QUEUE),
        FieldTable::default(),
        consumer_tag,
    )
    .await
}

/// A connector's reply path: the non-durable auto-delete fanout `exchange` bound to the
/// non-durable auto-delete `queue` (declared with `queue_args`), consumed without acks.
pub async fn reply_path(
    ch: &Channel,
    (exchange, queue): (&str, &str),
    queue_args: FieldTable,
    consumer_tag: &str,
) -> Consumer {
    declare_fanout_path(ch, exchange, queue, Lifetime::AutoDelete, queue_args)
        .await
        .unwrap_or_else(|e| panic!("reply path {exchange} → {queue}: {e}"));
    consume(ch, queue, consumer_tag).await
}

/// Consume `queue` without acks.
pub async fn consume(ch: &Channel, queue: &str, consumer_tag: &str) -> Consumer {
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
    .unwrap_or_else(|e| panic!("consume {queue}: {e}"))
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

/// The `topic` header, empty when absent.
pub fn topic(d: &Delivery) -> String {
    header(d, "topic").unwrap_or_default()
}

pub fn body_json(d: &Delivery) -> Value {
    serde_json::from_slice(&d.data).expect("JSON body")
}

impl TestApp {
    pub async fn send(&self, m: Msg) {
        let headers: Vec<(&str, &str)> = m.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut p = BasicProperties::default().with_headers(header_table(&headers));
        if let Some(ct) = m.content_type {
            p = p.with_content_type(ct.into());
        }
        if let Some(r) = &m.reply_to {
            p = p.with_reply_to(r.as_str().into());
        }
        if let Some(c) = &m.correlation_id {
            p = p.with_correlation_id(c.as_str().into());
        }
        publish_dmf(&self.channel, p, &m.body)
            .await
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

    /// The next message with one of `topics` (others, like REQUEST_ATTRIBUTES_UPDATE, skipped).
    pub async fn next_of(&mut self, topics: &[&str]) -> Delivery {
        loop {
            let d = self.next_reply().await;
            if header(&d, "topic").is_some_and(|t| topics.contains(&t.as_str())) {
                return d;
            }
        }
    }

    /// The next `n` messages with one of `topics`: (thingId, actionId), in arrival order.
    pub async fn collect(&mut self, topics: &[&str], n: usize) -> Vec<(String, i64)> {
        let mut out = Vec::new();
        while out.len() < n {
            out.push(thing_and_action(&self.next_of(topics).await));
        }
        out
    }

    /// Messages with one of `topics` until `n` distinct (thingId, actionId) pairs arrived.
    pub async fn collect_distinct(&mut self, topics: &[&str], n: usize) -> BTreeSet<(String, i64)> {
        let mut out = BTreeSet::new();
        while out.len() < n {
            out.insert(thing_and_action(&self.next_of(topics).await));
        }
        out
    }

    /// The next `n` deployment messages (any of [`DEPLOYMENT_TOPICS`]): (thingId, actionId).
    pub async fn deployments(&mut self, n: usize) -> Vec<(String, i64)> {
        self.collect(&DEPLOYMENT_TOPICS, n).await
    }

    /// No deployment or cancel reaches the connector within `ms` (attribute requests are fine).
    pub async fn assert_quiet(&mut self, ms: u64) {
        let deadline = Instant::now() + Duration::from_millis(ms);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match tokio::time::timeout(left, self.next_reply_raw()).await {
                Ok(Some(d)) => {
                    let topic = topic(&d);
                    assert_eq!(
                        topic,
                        "REQUEST_ATTRIBUTES_UPDATE",
                        "unexpected {topic}: {}",
                        String::from_utf8_lossy(&d.data)
                    );
                }
                _ => return,
            }
        }
    }
}

fn thing_and_action(d: &Delivery) -> (String, i64) {
    (
        header(d, "thingId").unwrap_or_default(),
        body_json(d)["actionId"].as_i64().expect("actionId"),
    )
}
