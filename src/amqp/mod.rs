//! Thin lapin adapter: the broker topology ([`topology`]), the batching consumer of
//! `dmf_receiver` ([`consumer`]) and the outbox publisher ([`publisher`]), kept alive by
//! [`run`], which reconnects with capped exponential backoff and reports broker health.
//!
//! Nothing here decides what a message means: decoding is `dmf`, effects are `engine`.

pub mod consumer;
pub mod publisher;
pub mod topology;

use std::sync::Arc;
use std::time::Duration;

use lapin::options::ConfirmSelectOptions;
use lapin::{Channel, Connection, ConnectionProperties};
use tokio_util::sync::CancellationToken;

use crate::config::AmqpArgs;
use crate::engine::Engine;
use crate::health::Health;

/// A broker failure. Every one is transient from the service's point of view: reconnect.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("AMQP: {0}")]
    Amqp(#[from] lapin::Error),
    #[error("AMQP connection lost")]
    Closed,
    /// The broker answered a publish with a nack.
    #[error("the broker nacked the message")]
    Nacked,
}

/// The vhost named by an AMQP URL (`/` when absent), for target addresses.
pub fn vhost_of(url: &str) -> String {
    url.parse::<lapin::uri::AMQPUri>()
        .map(|u| u.vhost)
        .unwrap_or_else(|_| "/".to_owned())
}

/// A new channel in publisher-confirm mode.
pub async fn confirm_channel(conn: &Connection) -> lapin::Result<Channel> {
    let channel = conn.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok(channel)
}

/// Run consumer and publisher until `token` is cancelled, reconnecting after any failure
/// (1 s doubling to 30 s, reset once connected).
pub async fn run(
    cfg: AmqpArgs,
    engine: Arc<Engine>,
    health: Arc<Health>,
    token: CancellationToken,
) {
    let mut backoff = Duration::from_secs(1);
    loop {
        if token.is_cancelled() {
            return;
        }
        match session(&cfg, &engine, &health, &token).await {
            Ok(()) => return,
            Err(e) => {
                // Only consecutive failures to connect grow the delay: a session that got
                // connected starts over at one second.
                if health.amqp_up() {
                    backoff = Duration::from_secs(1);
                }
                health.set_amqp(false);
                tracing::warn!(error.message = %e, retry_in_ms = backoff.as_millis() as u64, "AMQP session ended; reconnecting");
            }
        }
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// One connection's life: declare, consume and publish until it fails or we stop.
async fn session(
    cfg: &AmqpArgs,
    engine: &Arc<Engine>,
    health: &Arc<Health>,
    token: &CancellationToken,
) -> Result<(), TransportError> {
    let conn =
        Arc::new(Connection::connect(&cfg.broker.amqp_url, ConnectionProperties::default()).await?);
    let setup = conn.create_channel().await?;
    topology::declare(&setup, cfg).await?;
    let _ = setup.close(200, "topology declared".into()).await;
    health.set_amqp(true);
    tracing::info!("connected to RabbitMQ; topology declared");

    // The consumer stops first on shutdown; the publisher then drains what it committed.
    let consumer_token = token.child_token();
    let publisher_token = CancellationToken::new();
    let consumer = consumer::Consumer::start(conn.clone(), cfg, engine.clone()).await?;
    let publisher = publisher::Publisher::start(conn.clone(), cfg, engine.clone()).await?;
    let mut consume = tokio::spawn(consumer.run(consumer_token.clone()));
    let mut publish = tokio::spawn(publisher.run(publisher_token.clone()));

    let result = tokio::select! {
        r = &mut consume => {
            match r {
                Ok(Ok(())) => {
                    // Consumer stopped because we are shutting down: drain the outbox once.
                    publisher_token.cancel();
                    let _ = (&mut publish).await;
                    Ok(())
                }
                Ok(Err(e)) => Err(e),
                Err(_) => Err(TransportError::Closed),
            }
        }
        r = &mut publish => {
            consumer_token.cancel();
            let _ = (&mut consume).await;
            match r {
                Ok(Ok(())) => Err(TransportError::Closed),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(TransportError::Closed),
            }
        }
    };
    publisher_token.cancel();
    consumer_token.cancel();
    let _ = conn.close(200, "bye".into()).await;
    result
}
