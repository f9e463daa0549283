//! The broker entities of dmf-protocol.md §1.2, declared at start and after every reconnect.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Channel, ExchangeKind};

use crate::config::AmqpArgs;

/// The fixed inbound exchange connectors publish to (not configurable in hawkBit either).
pub const DMF_EXCHANGE: &str = "dmf.exchange";

/// How long an exchange and its queue live on the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// Outlive the service and keep messages across broker restarts.
    Durable,
    /// Kept until deleted; gone after a broker restart.
    Transient,
    /// Deleted by the broker once their last user is gone (a connector's reply path, §1.3).
    AutoDelete,
}

/// Declare the fanout `exchange` and the `queue` (declared with `queue_args`) bound to it, both
/// with the same `lifetime`.
pub async fn declare_fanout_path(
    channel: &Channel,
    exchange: &str,
    queue: &str,
    lifetime: Lifetime,
    queue_args: FieldTable,
) -> lapin::Result<()> {
    let durable = lifetime == Lifetime::Durable;
    let auto_delete = lifetime == Lifetime::AutoDelete;
    channel
        .exchange_declare(
            exchange.into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions {
                durable,
                auto_delete,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                durable,
                auto_delete,
                ..Default::default()
            },
            queue_args,
        )
        .await?;
    channel
        .queue_bind(
            queue.into(),
            exchange.into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
}

/// Declare exchanges, queues and bindings. Options mirror hawkBit's so that redeclaring against
/// a broker hawkBit set up succeeds (RabbitMQ compares arguments). Durable, not auto-delete: the
/// entities outlive the service and keep messages across broker restarts.
pub async fn declare(channel: &Channel, cfg: &AmqpArgs) -> lapin::Result<()> {
    // Dead letters are kept for humans and tools for the TTL (signed 64-bit, like hawkBit).
    let mut dl_args = FieldTable::default();
    dl_args.insert(
        ShortString::from("x-message-ttl"),
        AMQPValue::LongLongInt(cfg.dead_letter_ttl_ms),
    );
    declare_fanout_path(
        channel,
        &cfg.dead_letter_exchange,
        &cfg.dead_letter_queue,
        Lifetime::Durable,
        dl_args,
    )
    .await?;
    // Rejected messages (reject without requeue) go to the dead-letter exchange: the fallback
    // path when our own dead-letter publish fails.
    let mut receiver_args = FieldTable::default();
    receiver_args.insert(
        ShortString::from("x-dead-letter-exchange"),
        AMQPValue::LongString(cfg.dead_letter_exchange.as_str().into()),
    );
    declare_fanout_path(
        channel,
        DMF_EXCHANGE,
        &cfg.receiver_queue,
        Lifetime::Durable,
        receiver_args,
    )
    .await
}
