//! Drains the outbox: claims the oldest rows (one drainer across instances, so messages to a
//! device leave in commit order), renders them, publishes with publisher confirms and deletes
//! them only once confirmed — all in one database transaction. Woken in-process right after a
//! commit, by Postgres NOTIFY from other instances, and by a 1 s fallback tick.
//!
//! No row is ever dropped. A failure while the connection is lost is transient: the round rolls
//! back and everything is published again after the reconnect, however often that happens. A
//! row the broker itself refuses (a nack, or a channel error while the connection stays up) has
//! the refusal counted against that row only; after [`MAX_REFUSALS`] it is **parked** — moved to
//! `outbox_parked` with its reason, logged, shown at `GET /rest/v1/system/outbox/parked` — so
//! it can neither block the outbox nor vanish. A connector exchange that does not exist would
//! make the broker close the channel (404); each exchange is therefore checked (passively
//! declared) before use and the rows for a missing one are parked at once.
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
use crate::store::StoreError;
use crate::store::outbox::{self, Refused};

/// Refusals by the broker after which a row is parked instead of tried again (at least a second
/// apart: the drain pauses after each).
pub const MAX_REFUSALS: i32 = 5;
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

/// What a round handed to the broker: rows fully published, their pending confirms, rows to
/// park (their exchange is missing), and the first publish failure with the row it hit when
/// the broker refused that row (the connection stayed up).
#[derive(Default)]
struct Sent {
    ids: Vec<i64>,
    confirms: Vec<(i64, PublisherConfirm)>,
    missing: Vec<Refused>,
    failure: Option<TransportError>,
    refused: Vec<i64>,
}

impl Sent {
    /// Wait for every confirm. A nacked row is refused; the first confirm that fails because
    /// the channel closed under it names its row refused too if the connection is still up
    /// (the broker closed the channel over that message).
    async fn confirmed(mut self, conn: &Connection) -> Sent {
        for (id, c) in std::mem::take(&mut self.confirms) {
            match c.await {
                Ok(conf) if conf.is_ack() => {}
                Ok(_) => {
                    self.refused.push(id);
                    self.failure.get_or_insert(TransportError::Nacked);
                }
                Err(e) => {
                    if self.failure.is_none() && conn.status().connected() {
                        self.refused.push(id);
                    }
                    self.failure.get_or_insert(TransportError::from(e));
                }
            }
        }
        self
    }
}

/// A round's transaction: it commits without waiting for the WAL flush
/// ([`outbox::BEGIN_ROUND`]).
async fn begin_round(pool: &PgPool) -> Result<Transaction<'static, Postgres>, StoreError> {
    Ok(pool.begin_with(outbox::BEGIN_ROUND).await?)
}

#[derive(Debug, thiserror::Error)]
enum DrainError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The broker refused rows while the connection stayed up; counted, nothing lost.
    #[error("the broker refused {0} outbox row(s): {1}")]
    Refused(usize, TransportError),
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
                Err(e @ DrainError::Refused(..)) => {
                    tracing::warn!(error.message = %e, "outbox publish refused; will retry");
                    // A fresh channel if the broker closed ours, and a pause, so that the
                    // refusals of a row are spread over seconds before it is parked.
                    if !self.channel.status().connected() {
                        self.channel = super::confirm_channel(&self.conn).await?;
                    }
                    tokio::select! {
                        _ = token.cancelled() => {}
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
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
        let mut claimed = 0;
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
            claimed += rows.len();
            let rendered = self.engine.render(&mut tx, &rows).await?;
            let items: Vec<(i64, &[Outbound])> = rendered
                .iter()
                .map(|r| (r.outbox_id, r.messages.as_slice()))
                .collect();
            self.publish(&items, &mut sent).await?;
            if sent.failure.is_some() || (rows.len() as i64) < self.batch {
                break false;
            }
            if claimed >= ROUND_MAX || self.engine.has_fresh() {
                break true;
            }
        };
        if claimed == 0 {
            return Ok(false);
        }
        let published_us = started.elapsed().as_micros() as u64;
        self.settle(tx, sent).await?;
        tracing::debug!(
            rows = claimed,
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
        let published = self.settle(tx, sent).await?;
        tracing::debug!(
            rows = published,
            elapsed_us = started.elapsed().as_micros() as u64,
            "fast lane published"
        );
        Ok(())
    }

    /// Publish the messages of outbox rows in order, adding to `sent`; confirms are awaited by
    /// [`Sent::confirmed`]. A row with a message to a missing exchange is set aside to be
    /// parked (none of its messages sent). Stops at the first failed publish.
    async fn publish(
        &mut self,
        items: &[(i64, &[Outbound])],
        sent: &mut Sent,
    ) -> Result<(), DrainError> {
        'rows: for (id, messages) in items {
            for m in messages.iter() {
                if !self.exchange_exists(&m.exchange).await? {
                    let reason = format!("connector exchange '{}' does not exist", m.exchange);
                    sent.missing.push(refused(*id, reason, m));
                    continue 'rows;
                }
            }
            for m in messages.iter() {
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
                    Ok(c) => sent.confirms.push((*id, c)),
                    Err(e) => {
                        if self.conn.status().connected() {
                            sent.refused.push(*id);
                        }
                        sent.failure = Some(TransportError::from(e));
                        break 'rows;
                    }
                }
            }
            sent.ids.push(*id);
        }
        Ok(())
    }

    /// End a publishing transaction once everything it sent is confirmed: delete the rows
    /// handed over, park those of missing exchanges, commit; returns how many were published.
    /// On a failure roll back and count a refusal for the rows the broker refused (only them),
    /// parking those refused [`MAX_REFUSALS`] times.
    async fn settle(
        &mut self,
        mut tx: Transaction<'_, Postgres>,
        sent: Sent,
    ) -> Result<usize, DrainError> {
        let sent = sent.confirmed(&self.conn).await;
        let Some(error) = sent.failure else {
            if !sent.missing.is_empty() {
                outbox::park(&mut tx, &sent.missing).await?;
            }
            outbox::delete(&mut tx, &sent.ids).await?;
            tx.commit().await.map_err(StoreError::from)?;
            if let Some(first) = sent.missing.first() {
                tracing::error!(rows = sent.missing.len(), reason = %first.reason,
                    "outbox rows parked (GET /rest/v1/system/outbox/parked)");
            }
            return Ok(sent.ids.len());
        };
        tx.rollback().await.map_err(StoreError::from)?;
        if sent.refused.is_empty() {
            return Err(error.into());
        }
        let pool = self.engine.pool().clone();
        let mut conn = pool.acquire().await.map_err(StoreError::from)?;
        let exhausted = outbox::record_refusal(&mut conn, &sent.refused, MAX_REFUSALS).await?;
        if !exhausted.is_empty() {
            let reason = format!("refused by the broker {MAX_REFUSALS} times: {error}");
            let rows = outbox::rows(&mut conn, &exhausted).await?;
            let parked: Vec<Refused> = self
                .engine
                .render(&mut conn, &rows)
                .await?
                .iter()
                .map(|r| match r.messages.first() {
                    Some(m) => refused(r.outbox_id, reason.clone(), m),
                    None => Refused {
                        id: r.outbox_id,
                        reason: reason.clone(),
                        ..Refused::default()
                    },
                })
                .collect();
            outbox::park(&mut conn, &parked).await?;
            tracing::error!(rows = parked.len(), %reason,
                "outbox rows parked (GET /rest/v1/system/outbox/parked)");
        }
        Err(DrainError::Refused(sent.refused.len(), error))
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

/// A row set aside, described by its (first) message.
fn refused(id: i64, reason: String, m: &Outbound) -> Refused {
    let header = |name| m.header(name).map(str::to_owned);
    Refused {
        id,
        reason,
        tenant: header("tenant"),
        exchange: Some(m.exchange.clone()),
        thing_id: header("thingId"),
        topic: header("topic").or_else(|| header("type")),
    }
}
