//! The broker entities of dmf-protocol.md §1.2, declared at start and after every reconnect.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Channel, ExchangeKind};

use crate::config::AmqpArgs;

/// The fixed inbound exchange connectors publish to (not configurable in hawkBit either).
pub const DMF_EXCHANGE: &str = "dmf.exchange";

/// Declare exchanges, queues and bindings. Options mirror hawkBit's so that redeclaring against
/// a broker hawkBit set up succeeds (RabbitMQ compares arguments).
pub async fn declare(channel: &Channel, cfg: &AmqpArgs) -> lapin::Result<()> {
    // Durable, not auto-delete: the entities outlive the service and keep messages across
    // broker restarts.
    let durable_exchange = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .exchange_declare(
            DMF_EXCHANGE.into(),
            ExchangeKind::Fanout,
            durable_exchange,
            FieldTable::default(),
        )
        .await?;
    channel
        .exchange_declare(
            cfg.dead_letter_exchange.as_str().into(),
            ExchangeKind::Fanout,
            durable_exchange,
            FieldTable::default(),
        )
        .await?;
    let durable_queue = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    // Rejected messages (reject without requeue) go to the dead-letter exchange: the fallback
    // path when our own dead-letter publish fails.
    let mut receiver_args = FieldTable::default();
    receiver_args.insert(
        ShortString::from("x-dead-letter-exchange"),
        AMQPValue::LongString(cfg.dead_letter_exchange.as_str().into()),
    );
    channel
        .queue_declare(
            cfg.receiver_queue.as_str().into(),
            durable_queue,
            receiver_args,
        )
        .await?;
    channel
        .queue_bind(
            cfg.receiver_queue.as_str().into(),
            DMF_EXCHANGE.into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    // Dead letters are kept for humans and tools for the TTL (signed 64-bit, like hawkBit).
    let mut dl_args = FieldTable::default();
    dl_args.insert(
        ShortString::from("x-message-ttl"),
        AMQPValue::LongLongInt(cfg.dead_letter_ttl_ms),
    );
    channel
        .queue_declare(
            cfg.dead_letter_queue.as_str().into(),
            durable_queue,
            dl_args,
        )
        .await?;
    channel
        .queue_bind(
            cfg.dead_letter_queue.as_str().into(),
            cfg.dead_letter_exchange.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok(())
}
