//! The transactional outbox. Rows are written in the transaction of the state change that
//! causes them; the publisher claims them in id order, publishes with confirms and deletes them.

use sqlx::PgConnection;

use super::{Result, sql};
use crate::dmf::envelope::Outbound;
use crate::domain::ids::{ActionId, TenantId};

/// Wakes publishers of every instance (the in-process publisher is also woken directly).
pub const CHANNEL: &str = "dmf_outbox";

/// What to send, as written by the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pending {
    /// A fully rendered message.
    Message(Outbound),
    /// The message representing this action at publish time.
    Action(ActionId),
    /// The message for this target's current action(s), if any.
    Target(i64),
    /// One BATCH_* message for these actions.
    Batch(Vec<ActionId>),
}

/// A claimed row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Row {
    pub id: i64,
    pub kind: String,
    pub exchange: Option<String>,
    pub headers: Option<sqlx::types::Json<Vec<(String, String)>>>,
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub correlation_id: Option<String>,
    pub body: Option<Vec<u8>>,
    pub action_id: Option<ActionId>,
    pub target_id: Option<i64>,
    pub action_ids: Option<Vec<ActionId>>,
    pub attempts: i32,
}

impl Row {
    pub fn pending(&self) -> Option<Pending> {
        Some(match self.kind.as_str() {
            "message" => Pending::Message(Outbound {
                exchange: self.exchange.clone()?,
                headers: self.headers.clone()?.0,
                content_type: self.content_type.clone()?,
                content_encoding: self.content_encoding.clone(),
                correlation_id: self.correlation_id.clone()?,
                body: self.body.clone().unwrap_or_default(),
            }),
            "action" => Pending::Action(self.action_id?),
            "target" => Pending::Target(self.target_id?),
            "batch" => Pending::Batch(self.action_ids.clone()?),
            _ => return None,
        })
    }
}

/// Append rows in order with one statement, and wake the publishers (the notification carries
/// `instance`, so the writer's own publisher, woken in-process, can ignore it). Returns the row
/// ids, in the order of `items`.
pub async fn enqueue(
    conn: &mut PgConnection,
    instance: &str,
    items: &[Pending],
) -> Result<Vec<i64>> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    // Column arrays for one multi-row INSERT; order within `items` is kept through `ord`.
    let mut ord = Vec::new();
    let mut kind = Vec::new();
    let mut exchange = Vec::new();
    let mut headers = Vec::new();
    let mut content_type = Vec::new();
    let mut content_encoding = Vec::new();
    let mut correlation_id = Vec::new();
    let mut body: Vec<Option<Vec<u8>>> = Vec::new();
    let mut action_id = Vec::new();
    let mut target_id = Vec::new();
    let mut action_ids: Vec<Option<String>> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        ord.push(i as i32);
        let (k, msg, a, t, b) = match item {
            Pending::Message(m) => ("message", Some(m), None, None, None),
            Pending::Action(a) => ("action", None, Some(*a), None, None),
            Pending::Target(t) => ("target", None, None, Some(*t), None),
            Pending::Batch(ids) => ("batch", None, None, None, Some(ids)),
        };
        kind.push(k);
        exchange.push(msg.map(|m| m.exchange.clone()));
        headers.push(msg.map(|m| serde_json::to_value(&m.headers).unwrap_or_default()));
        content_type.push(msg.map(|m| m.content_type.clone()));
        content_encoding.push(msg.and_then(|m| m.content_encoding.clone()));
        correlation_id.push(msg.map(|m| m.correlation_id.clone()));
        body.push(msg.map(|m| m.body.clone()));
        action_id.push(a);
        target_id.push(t);
        // bigint[][] cannot be unnested per row, so id lists travel as JSON text.
        action_ids.push(b.map(|ids| serde_json::to_string(ids).unwrap_or_default()));
    }
    // Ids come from the sequence in `ord` order (INSERT … SELECT … ORDER BY assigns them row
    // by row as sorted), so sorting the returned ids restores the order of `items`.
    let mut ids: Vec<i64> = sqlx::query_scalar(
        "INSERT INTO outbox (kind, exchange, headers, content_type, content_encoding, correlation_id,
                             body, action_id, target_id, action_ids)
         SELECT kind, exchange, headers, content_type, content_encoding, correlation_id, body,
                action_id, target_id,
                CASE WHEN ids IS NULL THEN NULL
                     ELSE ARRAY(SELECT jsonb_array_elements_text(ids::jsonb)::bigint) END
         FROM unnest($1::int[], $2::text[], $3::text[], $4::jsonb[], $5::text[], $6::text[], $7::text[],
                     $8::bytea[], $9::bigint[], $10::bigint[], $11::text[])
              AS u(ord, kind, exchange, headers, content_type, content_encoding, correlation_id,
                   body, action_id, target_id, ids)
         ORDER BY ord
         RETURNING id",
    )
    .bind(&ord)
    .bind(&kind)
    .bind(&exchange)
    .bind(&headers)
    .bind(&content_type)
    .bind(&content_encoding)
    .bind(&correlation_id)
    .bind(&body)
    .bind(&action_id)
    .bind(&target_id)
    .bind(&action_ids)
    .fetch_all(&mut *conn)
    .await?;
    ids.sort_unstable();
    sql::execute(conn, "SELECT pg_notify($1, $2)", (CHANNEL, instance)).await?;
    Ok(ids)
}

/// How a publishing round's transaction begins. The round only deletes rows that were already
/// published and confirmed, so it commits without waiting for the WAL flush: a database crash
/// can at worst resurrect rows that are then published again (at-least-once, which DMF
/// tolerates), never lose one. That saves a disk flush on the path of every outbound message.
pub const BEGIN_ROUND: &str = "BEGIN; SET LOCAL synchronous_commit TO OFF";

/// The publishing turn: one drainer at a time across instances keeps messages to a device in
/// commit order. Taken by the claiming statement itself (no extra round trip) and held until
/// the transaction ends; a claim that does not get it finds no rows. The key is an arbitrary
/// constant ("dmf-outbox").
const TURN: &str = "WITH turn AS (SELECT pg_try_advisory_xact_lock(7400117001) AS held)";

/// Take the turn and the oldest `limit` rows with an id above `after`, locked for this
/// transaction (a round that holds the turn already claims again after its last row).
pub async fn claim(conn: &mut PgConnection, after: i64, limit: i64) -> Result<Vec<Row>> {
    sql::fetch_all(
        conn,
        &format!(
            "{TURN}
         SELECT id, kind, exchange, headers, content_type, content_encoding, correlation_id, body,
                action_id, target_id, action_ids, attempts
         FROM outbox WHERE (SELECT held FROM turn) AND id > $2
         ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED"
        ),
        (limit, after),
    )
    .await
}

/// Rows by id, without the turn (to describe rows about to be parked).
pub async fn rows(conn: &mut PgConnection, ids: &[i64]) -> Result<Vec<Row>> {
    sql::fetch_all(
        conn,
        "SELECT id, kind, exchange, headers, content_type, content_encoding, correlation_id, body,
                action_id, target_id, action_ids, attempts
         FROM outbox WHERE id IN (SELECT unnest($1::bigint[])) ORDER BY id",
        (ids,),
    )
    .await
}

/// Take the turn and lock those of `ids` still waiting (not published meanwhile by another
/// round), in id order.
pub async fn claim_ids(conn: &mut PgConnection, ids: &[i64]) -> Result<Vec<i64>> {
    sql::scalar_all(
        conn,
        &format!(
            "{TURN}
         SELECT id FROM outbox WHERE (SELECT held FROM turn) AND id IN (SELECT unnest($1::bigint[]))
         ORDER BY id FOR UPDATE SKIP LOCKED"
        ),
        (ids,),
    )
    .await
}

/// Remove published (or deliberately dropped) rows.
pub async fn delete(conn: &mut PgConnection, ids: &[i64]) -> Result<()> {
    sql::execute(
        conn,
        "DELETE FROM outbox WHERE id IN (SELECT unnest($1::bigint[]))",
        (ids,),
    )
    .await?;
    Ok(())
}

/// Count a refusal by the broker for rows. Returns those that reached `max` refusals.
pub async fn record_refusal(conn: &mut PgConnection, ids: &[i64], max: i32) -> Result<Vec<i64>> {
    sql::fetch_all(
        conn,
        "UPDATE outbox SET attempts = attempts + 1 WHERE id IN (SELECT unnest($1::bigint[]))
         RETURNING id, attempts",
        (ids,),
    )
    .await
    .map(|rows: Vec<(i64, i32)>| {
        rows.into_iter()
            .filter(|(_, n)| *n >= max)
            .map(|(id, _)| id)
            .collect()
    })
}

/// Why a row is parked, and what it was rendered to (the operator's view of it).
#[derive(Debug, Clone, Default)]
pub struct Refused {
    pub id: i64,
    pub reason: String,
    pub tenant: Option<String>,
    pub exchange: Option<String>,
    pub thing_id: Option<String>,
    pub topic: Option<String>,
}

/// The outbox columns a parked row keeps, so that a requeued one is rendered anew.
const ROW_COLUMNS: &str = "kind, exchange, headers, content_type, content_encoding, correlation_id,
     body, action_id, target_id, action_ids, created_at, attempts";

/// Move rows out of the outbox into `outbox_parked` with their reasons, in one statement.
pub async fn park(conn: &mut PgConnection, rows: &[Refused]) -> Result<u64> {
    if rows.is_empty() {
        return Ok(0);
    }
    let col = |f: fn(&Refused) -> Option<String>| rows.iter().map(f).collect::<Vec<_>>();
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    sql::execute(
        conn,
        &format!(
            "WITH why AS (
                 SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[],
                                      $6::text[])
                          AS w(id, reason, tenant, target_exchange, thing_id, topic)),
             moved AS (DELETE FROM outbox WHERE id IN (SELECT id FROM why) RETURNING *)
             INSERT INTO outbox_parked (id, {ROW_COLUMNS}, tenant, target_exchange, thing_id,
                                        topic, reason)
             SELECT m.id, {ROW_COLUMNS}, w.tenant, w.target_exchange, w.thing_id, w.topic,
                    w.reason
             FROM moved m JOIN why w USING (id)"
        ),
        (
            &ids,
            col(|r| Some(r.reason.clone())),
            col(|r| r.tenant.clone()),
            col(|r| r.exchange.clone()),
            col(|r| r.thing_id.clone()),
            col(|r| r.topic.clone()),
        ),
    )
    .await
}

/// A parked row as operators see it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ParkedRow {
    pub id: i64,
    pub kind: String,
    pub action_id: Option<i64>,
    pub target_id: Option<i64>,
    pub target_exchange: Option<String>,
    pub thing_id: Option<String>,
    pub topic: Option<String>,
    pub reason: String,
    pub attempts: i32,
    pub created_at: i64,
    pub parked_at: i64,
}

/// Which parked rows of `tenant` a request means: all, or these ids.
const OF_TENANT: &str = "p.tenant = (SELECT name FROM tenant WHERE id = $1)
     AND ($2::bigint[] IS NULL OR p.id IN (SELECT unnest($2::bigint[])))";

/// A tenant's parked rows, oldest first, and how many there are in all.
pub async fn parked(
    conn: &mut PgConnection,
    tenant: TenantId,
    offset: i64,
    limit: i64,
) -> Result<(Vec<ParkedRow>, i64)> {
    let rows = sql::fetch_all(
        conn,
        &format!(
            "SELECT id, kind, action_id, target_id, target_exchange, thing_id, topic, reason,
                    attempts, created_at, parked_at
             FROM outbox_parked p WHERE {OF_TENANT} ORDER BY id OFFSET $3 LIMIT $4"
        ),
        (tenant, None::<Vec<i64>>, offset, limit),
    )
    .await?;
    let total = sql::scalar(
        conn,
        &format!("SELECT count(*) FROM outbox_parked p WHERE {OF_TENANT}"),
        (tenant, None::<Vec<i64>>),
    )
    .await?;
    Ok((rows, total))
}

/// Put a tenant's parked rows (all, or `ids`) back into the outbox, at its end (they are
/// rendered anew when published), or discard them. Returns how many.
pub async fn release_parked(
    conn: &mut PgConnection,
    tenant: TenantId,
    ids: Option<&[i64]>,
    requeue: bool,
) -> Result<u64> {
    let taken = format!("DELETE FROM outbox_parked p WHERE {OF_TENANT} RETURNING *");
    // A requeued row starts over: no refusals counted.
    let fresh = ROW_COLUMNS.replace("attempts", "0");
    let statement = if requeue {
        format!(
            "WITH taken AS ({taken}),
             queued AS (INSERT INTO outbox ({ROW_COLUMNS})
                        SELECT {fresh} FROM taken ORDER BY id RETURNING id)
             SELECT count(*) FROM queued"
        )
    } else {
        format!("WITH taken AS ({taken}) SELECT count(*) FROM taken")
    };
    let n: i64 = sql::scalar(conn, &statement, (tenant, ids.map(<[i64]>::to_vec))).await?;
    if requeue && n > 0 {
        sql::execute(conn, "SELECT pg_notify($1, '')", (CHANNEL,)).await?;
    }
    Ok(n as u64)
}

/// Rows waiting to be published.
pub async fn backlog(conn: &mut PgConnection) -> Result<i64> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(conn)
        .await?)
}
