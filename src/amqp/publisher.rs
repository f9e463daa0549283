//! Drains the outbox: claims the oldest rows (one drainer across instances, so messages to a
//! device leave in commit order), renders them, publishes with publisher confirms and deletes
//! them only once confirmed — all in one database transaction. Woken in-process right after a
//! commit, by Postgres NOTIFY from other instances, and by a 1 s fallback tick.
//!
//! A connector exchange that does not exist would make the broker close the channel (404) and
//! lose the message; each exchange is therefore checked (passively declared) before use and
//! rows for a missing one are dropped with a warning. A row that keeps failing is dropped after
//! [`MAX_ATTEMPTS`], so nothing is retried forever (dmf-protocol.md §1.3).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lapin::options::{BasicPublishOptions, ExchangeDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ExchangeKind, PublisherConfirm};
use sqlx::postgres::PgListener;
use sqlx::{PgPool, Postgres, Transaction};
use tokio_util::sync::CancellationToken;

use super::TransportError;
use crate::config::AmqpArgs;
use crate::dmf::envelope::Outbound;
use crate::engine::Engine;
use crate::store::{StoreError, outbox};

pub const MAX_ATTEMPTS: i32 = 5;
/// Rows one regular round may claim (in claims of `DMF_OUTBOX_BATCH`) before it waits for the
/// confirms and commits: enough to keep the broker busy while the next claim renders, few
/// enough that a broker failure republishes little.
const ROUND_MAX: usize = 5_000;
/// How long a positive exchange check is trusted.
const EXCHANGE_TTL: Duration = Duration::from_secs(30);

pub struct Publisher {
    conn: Arc<Connection>,
    channel: Channel,
    probe: Option<Channel>,
    known: HashMap<String, Instant>,
    batch: i64,
    engine: Arc<Engine>,
}

fn properties(m: &Outbound) -> BasicProperties {
    let mut headers = FieldTable::default();
    for (k, v) in &m.headers {
        headers.insert(
            ShortString::from(k.as_str()),
            AMQPValue::LongString(v.as_str().into()),
        );
    }
    let mut p = BasicProperties::default()
        .with_content_type(m.content_type.as_str().into())
        .with_correlation_id(m.correlation_id.as_str().into())
        .with_delivery_mode(2)
        .with_priority(0)
        .with_headers(headers);
    if let Some(enc) = &m.content_encoding {
        p = p.with_content_encoding(enc.as_str().into());
    }
    p
}

/// What a round handed to the broker: rows fully published, their pending confirms, and the
/// first publish failure.
#[derive(Default)]
struct Sent {
    ids: Vec<i64>,
    confirms: Vec<PublisherConfirm>,
    failure: Option<TransportError>,
}

impl Sent {
    /// Wait for every confirm. The rows handed over, or the failure when a publish failed or
    /// the broker nacked.
    async fn confirmed(self) -> (Vec<i64>, Option<TransportError>) {
        let mut failure = self.failure;
        for c in self.confirms {
            match c.await {
                Ok(conf) if conf.is_ack() => {}
                _ => {
                    failure.get_or_insert(TransportError::Closed);
                }
            }
        }
        (self.ids, failure)
    }
}

/// A round's transaction: it commits without waiting for the WAL flush
/// ([`outbox::BEGIN_ROUND`]).
async fn begin_round(pool: &PgPool) -> Result<Transaction<'static, Postgres>, StoreError> {
    Ok(pool.begin_with(outbox::BEGIN_ROUND).await?)
}

/// End a publishing transaction once everything it sent is confirmed: delete the rows handed
/// over and commit; returns how many. On a failure roll back, count an attempt for every row of
/// `claimed`, drop those of `last_attempt` (logged) and return the failure.
async fn settle(
    pool: &PgPool,
    mut tx: Transaction<'_, Postgres>,
    sent: Sent,
    claimed: &[i64],
    last_attempt: &[i64],
) -> Result<usize, DrainError> {
    let (ids, failure) = sent.confirmed().await;
    if let Some(error) = failure {
        tx.rollback().await.map_err(StoreError::from)?;
        let mut conn = pool.acquire().await.map_err(StoreError::from)?;
        outbox::record_failure(&mut conn, claimed).await?;
        if !last_attempt.is_empty() {
            tracing::error!(
                count = last_attempt.len(),
                "outbox rows dropped after repeated publish failures"
            );
            outbox::delete(&mut conn, last_attempt).await?;
        }
        return Err(error.into());
    }
    outbox::delete(&mut tx, &ids).await?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok(ids.len())
}

#[derive(Debug, thiserror::Error)]
enum DrainError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Transport(#[from] TransportError),
}

impl From<lapin::Error> for DrainError {
    fn from(e: lapin::Error) -> Self {
        DrainError::Transport(e.into())
    }
}

impl Publisher {
    pub async fn start(
        conn: Arc<Connection>,
        cfg: &AmqpArgs,
        engine: Arc<Engine>,
    ) -> Result<Self, TransportError> {
        // What the fast lane gathered while no publisher ran is still in the outbox; the regular
        // rounds send it in id order, with whatever else waited.
        drop(engine.take_fresh(usize::MAX));
        let channel = super::confirm_channel(&conn).await?;
        Ok(Self {
            conn,
            channel,
            probe: None,
            known: HashMap::new(),
            batch: cfg.outbox_batch,
            engine,
        })
    }

    /// Publish until `token` is cancelled, then drain once more and return.
    pub async fn run(mut self, token: CancellationToken) -> Result<(), TransportError> {
        let wake = self.engine.outbox_wake();
        let mut listener = match PgListener::connect_with(self.engine.pool()).await {
            Ok(mut l) => l.listen(outbox::CHANNEL).await.ok().map(|_| l),
            Err(_) => None,
        };
        loop {
            match self.drain().await {
                Ok(()) => {}
                Err(DrainError::Transport(e)) => return Err(e),
                Err(DrainError::Store(e)) => {
                    tracing::warn!(error.message = %e, "outbox drain failed; will retry");
                }
            }
            if token.is_cancelled() {
                // Closed here, so the connection's close finds no channel half-open.
                let _ = self.channel.close(200, "shutting down".into()).await;
                if let Some(p) = self.probe.take() {
                    let _ = p.close(200, "shutting down".into()).await;
                }
                return Ok(());
            }
            let own = self.engine.instance().to_owned();
            let notified = async {
                match listener.as_mut() {
                    Some(l) => loop {
                        match l.try_recv().await {
                            // Our own commits wake us in-process, after the fast-lane hand-over;
                            // their notification would only race it into a regular round.
                            Ok(Some(n)) if n.payload() == own => continue,
                            Ok(_) => break,
                            Err(_) => {
                                tokio::time::sleep(Duration::from_secs(1)).await;
                                break;
                            }
                        }
                    },
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = token.cancelled() => {}
                _ = wake.notified() => {}
                _ = notified => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// Publish until the outbox is empty (or another instance holds the turn): the fast lane
    /// first, whenever it has messages, then regular rounds.
    async fn drain(&mut self) -> Result<(), DrainError> {
        loop {
            let fresh = self.engine.take_fresh(self.batch as usize);
            let more = if fresh.is_empty() {
                self.round().await?
            } else {
                self.fast_round(fresh).await?;
                true
            };
            if !more {
                return Ok(());
            }
        }
    }

    /// One regular round: claim the oldest rows, render and publish them, and while the broker
    /// confirms those, claim and render the next ones in the same transaction (it keeps the
    /// turn), up to [`ROUND_MAX`] rows or until the fast lane has messages; then wait for every
    /// confirm and delete the rows. Returns whether there may be more.
    async fn round(&mut self) -> Result<bool, DrainError> {
        let pool = self.engine.pool().clone();
        let started = Instant::now();
        let mut tx = begin_round(&pool).await?;
        let mut claimed: Vec<(i64, i32)> = Vec::new();
        let mut sent = Sent::default();
        let mut after = 0;
        let mut claims = 0;
        let more = loop {
            let rows = outbox::claim(&mut tx, after, self.batch).await?;
            let Some(last) = rows.last() else {
                break false;
            };
            after = last.id;
            claims += 1;
            claimed.extend(rows.iter().map(|r| (r.id, r.attempts)));
            let rendered = self.engine.render(&mut tx, &rows).await?;
            let items: Vec<(i64, &[Outbound])> = rendered
                .iter()
                .map(|r| (r.outbox_id, r.messages.as_slice()))
                .collect();
            self.publish(&items, &mut sent).await?;
            if sent.failure.is_some() || (rows.len() as i64) < self.batch {
                break false;
            }
            if claimed.len() >= ROUND_MAX || self.engine.has_fresh() {
                break true;
            }
        };
        if claimed.is_empty() {
            return Ok(false);
        }
        let published_us = started.elapsed().as_micros() as u64;
        let all: Vec<i64> = claimed.iter().map(|(id, _)| *id).collect();
        let last_attempt: Vec<i64> = claimed
            .iter()
            .filter(|(_, attempts)| attempts + 1 >= MAX_ATTEMPTS)
            .map(|(id, _)| *id)
            .collect();
        settle(&pool, tx, sent, &all, &last_attempt).await?;
        tracing::debug!(
            rows = claimed.len(),
            claims,
            published_us,
            elapsed_us = started.elapsed().as_micros() as u64,
            "outbox round published"
        );
        Ok(more)
    }

    /// Publish messages of the fast lane: rendered in their producing transaction, so only
    /// the publishing turn and their rows are taken (rows another round published meanwhile
    /// are skipped). Rows it cannot publish stay for the regular rounds.
    async fn fast_round(&mut self, mut fresh: Vec<(i64, Outbound)>) -> Result<(), DrainError> {
        // Hand-overs arrive in commit order; rows leave in id order, as from a regular round.
        fresh.sort_unstable_by_key(|(id, _)| *id);
        let pool = self.engine.pool().clone();
        let started = Instant::now();
        let mut tx = begin_round(&pool).await?;
        let wanted: Vec<i64> = fresh.iter().map(|(id, _)| *id).collect();
        let held = outbox::claim_ids(&mut tx, &wanted).await?;
        if held.is_empty() {
            return Ok(());
        }
        // Both lists are in id order now.
        let mut next = held.iter().peekable();
        let items: Vec<(i64, &[Outbound])> = fresh
            .iter()
            .filter(|(id, _)| next.next_if_eq(&id).is_some())
            .map(|(id, m)| (*id, std::slice::from_ref(m)))
            .collect();
        let mut sent = Sent::default();
        self.publish(&items, &mut sent).await?;
        // Rows at their last attempt are left for a regular round to drop.
        let published = settle(&pool, tx, sent, &held, &[]).await?;
        tracing::debug!(
            rows = published,
            elapsed_us = started.elapsed().as_micros() as u64,
            "fast lane published"
        );
        Ok(())
    }

    /// Publish the messages of outbox rows in order, adding to `sent`; confirms are awaited by
    /// [`Sent::confirmed`]. Rows of a missing exchange count as handed over (their messages
    /// dropped). Stops at the first failed publish.
    async fn publish(
        &mut self,
        items: &[(i64, &[Outbound])],
        sent: &mut Sent,
    ) -> Result<(), DrainError> {
        'rows: for (id, messages) in items {
            for m in messages.iter() {
                if !self.exchange_exists(&m.exchange).await? {
                    tracing::warn!(exchange = %m.exchange, tenant = m.header("tenant").unwrap_or(""),
                        thing_id = m.header("thingId").unwrap_or(""), "connector exchange does not exist; message dropped");
                    continue;
                }
                match self
                    .channel
                    .basic_publish(
                        m.exchange.as_str().into(),
                        "".into(),
                        BasicPublishOptions::default(),
                        &m.body,
                        properties(m),
                    )
                    .await
                {
                    Ok(c) => sent.confirms.push(c),
                    Err(e) => {
                        sent.failure = Some(TransportError::from(e));
                        break 'rows;
                    }
                }
            }
            sent.ids.push(*id);
        }
        Ok(())
    }

    /// Whether an exchange exists, by a passive declare on a spare channel (a failed passive
    /// declare closes the channel it ran on, not the publishing one).
    async fn exchange_exists(&mut self, name: &str) -> Result<bool, DrainError> {
        if name.is_empty() {
            return Ok(true); // the default exchange always exists
        }
        if self
            .known
            .get(name)
            .is_some_and(|t| t.elapsed() < EXCHANGE_TTL)
        {
            return Ok(true);
        }
        let probe = match self.probe.take() {
            Some(p) if p.status().connected() => p,
            _ => self.conn.create_channel().await?,
        };
        let passive = ExchangeDeclareOptions {
            passive: true,
            ..Default::default()
        };
        match probe
            .exchange_declare(
                name.into(),
                ExchangeKind::Fanout,
                passive,
                FieldTable::default(),
            )
            .await
        {
            Ok(()) => {
                self.known.insert(name.to_owned(), Instant::now());
                self.probe = Some(probe);
                Ok(true)
            }
            Err(_) => {
                self.known.remove(name);
                Ok(false)
            }
        }
    }
}
