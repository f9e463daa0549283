//! No outbound message is lost to a broker that refuses it: rows the broker cannot take are
//! parked with their reason, shown per tenant, and requeued or discarded by an operator; a
//! refused row never holds back or takes down the others.

use std::time::Duration;

use futures::StreamExt;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

/// Poll the tenant's parked rows until there are `n`.
async fn parked(app: &TestApp, n: usize, within: Duration) -> Vec<Value> {
    poll(within, async || {
        let (s, v) = app.api_get("/system/outbox/parked").await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let rows = v["content"].as_array().cloned().unwrap_or_default();
        if rows.len() == n && v["total"] == n {
            Ok(rows)
        } else {
            Err(format!("{n} parked rows wanted: {v}"))
        }
    })
    .await
}

/// Register `thing` with `exchange` as its reply-to address.
async fn register_at(app: &TestApp, thing: &str, exchange: &str) {
    let mut m = thing_created(thing);
    m.reply_to = Some(exchange.to_owned());
    app.send(m).await;
    app.wait_target(thing, |_| true).await;
}

async fn requeue(app: &TestApp, id: i64) -> (StatusCode, Value) {
    let path = format!("/system/outbox/parked/{id}/requeue");
    app.api(reqwest::Method::POST, &path, None).await
}

async fn next_on(c: &mut lapin::Consumer) -> lapin::message::Delivery {
    tokio::time::timeout(Duration::from_secs(10), c.next())
        .await
        .expect("a message within 10 s")
        .expect("stream open")
        .expect("delivery")
}

#[tokio::test]
async fn a_missing_connector_exchange_parks_the_message_until_it_is_requeued() {
    let app = spawn_app().await;
    let exchange = format!("gone.{}", uuid::Uuid::new_v4());
    register_at(&app, "park-01", &exchange).await;
    register_at(&app, "park-02", &exchange).await;
    let ds = app.create_set("parked").await;
    let actions = app
        .assign(ds, json!([{"id": "park-01"}, {"id": "park-02"}]))
        .await;

    let rows = parked(&app, 2, Duration::from_secs(10)).await;
    let first = &rows[0];
    assert_eq!(first["thingId"], "park-01", "{first}");
    assert_eq!(first["actionId"], actions[0], "{first}");
    assert_eq!(first["exchange"], exchange.as_str(), "{first}");
    assert_eq!(first["topic"], "DOWNLOAD_AND_INSTALL", "{first}");
    let reason = first["reason"].as_str().expect("reason");
    assert!(reason.contains(&exchange), "{reason}");
    assert_eq!(sql(&app, "SELECT count(*) FROM outbox"), "0");
    // The actions stay open: nothing was given up.
    let a = app.action("park-01", actions[0]).await;
    assert_eq!(
        (&a["status"], &a["active"]),
        (&json!("running"), &json!(true)),
        "{a}"
    );

    // The connector comes back: a requeued row is delivered, rendered anew.
    let mut c = reply_path(
        &app.channel,
        (&exchange, &format!("{exchange}.q")),
        FieldTable::default(),
        "test-parked",
    )
    .await;
    let id = first["id"].as_i64().expect("id");
    let (s, v) = requeue(&app, id).await;
    assert_eq!((s, &v["requeued"]), (StatusCode::OK, &json!(1)), "{v}");
    let d = next_on(&mut c).await;
    assert_eq!(header(&d, "thingId").as_deref(), Some("park-01"));
    assert_eq!(body_json(&d)["actionId"], actions[0]);
    let rest = parked(&app, 1, Duration::from_secs(5)).await;
    assert_eq!(rest[0]["thingId"], "park-02");

    // Requeued rows are gone from the parked list; unknown ids are 404; discarding empties it.
    let (s, v) = requeue(&app, id).await;
    assert_error(s, &v, StatusCode::NOT_FOUND, ERR_NOT_FOUND);
    let (s, _) = app.api_delete("/system/outbox/parked").await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    parked(&app, 0, Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_message_the_broker_keeps_refusing_is_parked_and_the_others_flow() {
    let mut app = spawn_app().await;
    // A connector whose queue takes nothing: the broker nacks every publish to its exchange
    // while the connection stays up.
    let exchange = format!("full.{}", uuid::Uuid::new_v4());
    let mut args = FieldTable::default();
    args.insert(ShortString::from("x-max-length"), AMQPValue::LongInt(0));
    args.insert(
        ShortString::from("x-overflow"),
        AMQPValue::LongString("reject-publish".into()),
    );
    let _full = reply_path(
        &app.channel,
        (&exchange, &format!("{exchange}.q")),
        args,
        "test-full",
    )
    .await;
    register_at(&app, "full-01", &exchange).await;
    app.fleet("fine", 1).await;
    let ds = app.create_set("refused").await;
    let actions = app
        .assign(ds, json!([{"id": "full-01"}, {"id": "fine-00"}]))
        .await;

    // The healthy device gets its deployment (perhaps more than once: the refused round is
    // published again), and the refused row ends up parked, alone, with its refusals counted.
    let d = app.next_reply().await;
    assert_eq!(header(&d, "thingId").as_deref(), Some("fine-00"));
    let rows = parked(&app, 1, Duration::from_secs(30)).await;
    assert_eq!(rows[0]["thingId"], "full-01", "{}", rows[0]);
    assert_eq!(rows[0]["actionId"], actions[0]);
    assert_eq!(rows[0]["refusals"], 5, "{}", rows[0]);
    let reason = rows[0]["reason"].as_str().expect("reason");
    assert!(reason.contains("refused by the broker"), "{reason}");
    // Nothing else waits or was lost: the outbox drains.
    poll(Duration::from_secs(10), async || {
        match sql(&app, "SELECT count(*) FROM outbox").as_str() {
            "0" => Ok(()),
            n => Err(format!("{n} outbox rows left")),
        }
    })
    .await;
}
