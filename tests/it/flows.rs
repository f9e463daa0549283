//! Deployment flows end to end through real RabbitMQ and PostgreSQL: the device simulator's
//! wire format, confirmation and automatic confirmation, download-only, batch assignments and the
//! maintenance-window push (dmf-protocol.md §3–§5, service.md "Timers push").

use std::time::Duration;

use futures::StreamExt;
use lapin::BasicProperties;
use lapin::message::Delivery;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

async fn register(app: &TestApp, thing: &str) {
    app.send(thing_created(thing)).await;
    app.wait_target(thing, |t| t["updateStatus"] == "registered")
        .await;
}

/// The action's history types, oldest first.
async fn history(app: &TestApp, thing: &str, action: i64) -> Vec<String> {
    let (s, h) = app
        .api_get(&format!(
            "/targets/{thing}/actions/{action}/status?sort=id:ASC&limit=100"
        ))
        .await;
    assert_eq!(s, StatusCode::OK, "{h}");
    h["content"]
        .as_array()
        .expect("history")
        .iter()
        .map(|e| e["type"].as_str().expect("type").to_owned())
        .collect()
}

fn security_token(t: &Value) -> String {
    t["securityToken"]
        .as_str()
        .expect("securityToken")
        .to_owned()
}

// ------------------------------------------------------------------------------------------
// 1. The hawkBit device simulator's exact bytes.

const SIM_EXCHANGE: &str = "simulator.replyTo";
const SIM_QUEUE: &str = "simulator_receiver";

/// The simulator's reply path as its Spring configuration declares it: a non-durable,
/// auto-delete fanout exchange bound to a non-durable, auto-delete queue with a one-day TTL and
/// a length limit.
async fn simulator_connector(app: &TestApp) -> lapin::Consumer {
    let mut args = FieldTable::default();
    args.insert(
        ShortString::from("x-message-ttl"),
        AMQPValue::LongLongInt(86_400_000),
    );
    args.insert(
        ShortString::from("x-max-length"),
        AMQPValue::LongInt(100_000),
    );
    reply_path(
        &app.channel,
        (SIM_EXCHANGE, SIM_QUEUE),
        args,
        "test-simulator",
    )
    .await
}

async fn next_sim(c: &mut lapin::Consumer) -> Delivery {
    tokio::time::timeout(Duration::from_secs(10), c.next())
        .await
        .expect("a message on simulator_receiver within 10 s")
        .expect("stream open")
        .expect("delivery")
}

/// Publish like Spring AMQP's RabbitTemplate does for the simulator: persistent, priority 0, a
/// fresh correlation id, every header a long string.
async fn publish_as_simulator(
    app: &TestApp,
    headers: &[(&str, &str)],
    props: BasicProperties,
    body: &[u8],
) {
    let props = props
        .with_headers(header_table(headers))
        .with_delivery_mode(2)
        .with_priority(0)
        .with_correlation_id(uuid::Uuid::new_v4().to_string().into());
    publish_dmf(&app.channel, props, body)
        .await
        .await
        .expect("confirm");
}

/// A status report as the simulator's Jackson converter writes it: no `thingId`, the
/// `content-type` header, `content_encoding=UTF-8`, members in declaration order.
async fn simulator_status(app: &TestApp, action: i64, status: &str, message: &str) {
    let body =
        format!(r#"{{"actionId":{action},"actionStatus":"{status}","message":["{message}"]}}"#);
    publish_as_simulator(
        app,
        &[
            ("type", "EVENT"),
            ("tenant", "DEFAULT"),
            ("topic", "UPDATE_ACTION_STATUS"),
            ("content-type", "application/json"),
        ],
        BasicProperties::default()
            .with_content_type("application/json".into())
            .with_content_encoding("UTF-8".into()),
        body.as_bytes(),
    )
    .await;
}

#[tokio::test]
async fn the_device_simulator_registers_receives_its_deployment_and_reports_back() {
    let mut app = spawn_app().await;
    let mut sim = simulator_connector(&app).await;

    // THING_CREATED: `new Message(null, props)` — an empty body under a JSON content type.
    publish_as_simulator(
        &app,
        &[
            ("type", "THING_CREATED"),
            ("tenant", "DEFAULT"),
            ("thingId", "sim-000001"),
            ("sender", "simulator"),
        ],
        BasicProperties::default()
            .with_content_type("application/json".into())
            .with_reply_to(SIM_EXCHANGE.into()),
        b"",
    )
    .await;
    let t = app
        .wait_target("sim-000001", |t| t["updateStatus"] == "registered")
        .await;
    assert_eq!(
        t["address"],
        format!("amqp://{}/{SIM_EXCHANGE}", app.vhost.name)
    );
    assert_eq!(t["name"], "sim-000001");
    assert_eq!(t["description"], "Plug and Play target: sim-000001");

    // PING: text/plain, no body, answered on the simulator's exchange.
    publish_as_simulator(
        &app,
        &[("tenant", "DEFAULT"), ("type", "PING")],
        BasicProperties::default()
            .with_content_type("text/plain".into())
            .with_reply_to(SIM_EXCHANGE.into()),
        b"",
    )
    .await;
    let pong = next_sim(&mut sim).await;
    assert_eq!(header(&pong, "type").as_deref(), Some("PING_RESPONSE"));
    assert_eq!(header(&pong, "tenant").as_deref(), Some("DEFAULT"));
    assert!(pong.properties.correlation_id().is_some());

    let ds = app.create_set("sim-fw").await;
    let ids = app.assign(ds, json!([{"id": "sim-000001"}])).await;
    let d = next_sim(&mut sim).await;
    assert_eq!(topic(&d), "DOWNLOAD_AND_INSTALL");
    assert_eq!(header(&d, "type").as_deref(), Some("EVENT"));
    assert_eq!(header(&d, "thingId").as_deref(), Some("sim-000001"));
    assert_eq!(header(&d, "tenant").as_deref(), Some("DEFAULT"));
    assert_eq!(
        header(&d, "content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(
        d.properties.content_type().as_ref().map(|s| s.as_str()),
        Some("application/json")
    );
    assert_eq!(
        d.properties.content_encoding().as_ref().map(|s| s.as_str()),
        Some("UTF-8")
    );
    assert_eq!(*d.properties.delivery_mode(), Some(2));
    let body = body_json(&d);
    assert_eq!(body["actionId"], ids[0]);
    assert_eq!(body["targetSecurityToken"], security_token(&t).as_str());
    assert_eq!(body["softwareModules"][0]["moduleVersion"], "1.0.0");
    // Nothing went to the SDK's exchange.
    app.assert_no_reply(200).await;

    simulator_status(&app, ids[0], "RUNNING", "Simulation begins!").await;
    simulator_status(&app, ids[0], "FINISHED", "Simulation complete!").await;
    let req = next_sim(&mut sim).await;
    assert_eq!(topic(&req), "REQUEST_ATTRIBUTES_UPDATE");
    assert_eq!(header(&req, "thingId").as_deref(), Some("sim-000001"));
    assert!(req.data.is_empty());

    // The simulator answers with its attributes (MERGE), reply_to set as on every message.
    publish_as_simulator(
        &app,
        &[
            ("type", "EVENT"),
            ("topic", "UPDATE_ATTRIBUTES"),
            ("tenant", "DEFAULT"),
            ("thingId", "sim-000001"),
        ],
        BasicProperties::default()
            .with_content_type("application/json".into())
            .with_content_encoding("UTF-8".into())
            .with_reply_to(SIM_EXCHANGE.into()),
        br#"{"attributes":{"isoCode":"DE","hwRevision":"1.1","serial":"42"},"mode":"MERGE"}"#,
    )
    .await;
    let t = app
        .wait_target("sim-000001", |t| {
            t["updateStatus"] == "in_sync" && t["requestAttributes"] == false
        })
        .await;
    assert_eq!(
        t["address"],
        format!("amqp://{}/{SIM_EXCHANGE}", app.vhost.name)
    );
    let (_, a) = app.api_get("/targets/sim-000001/attributes").await;
    assert_eq!(
        a,
        json!({"isoCode": "DE", "hwRevision": "1.1", "serial": "42"})
    );
    let a = app.action("sim-000001", ids[0]).await;
    assert_eq!(a["status"], "finished");
    assert_eq!(
        history(&app, "sim-000001", ids[0]).await,
        ["running", "running", "finished"]
    );
}

// ------------------------------------------------------------------------------------------
// 2. Confirmation flow.

#[tokio::test]
async fn confirmation_flow_sends_confirm_then_denied_waits_and_confirmed_deploys() {
    let mut app = spawn_app().await;
    app.set_config("user.confirmation.flow.enabled", true).await;
    register(&app, "dev-cf").await;
    let ds = app.create_set("cf").await;
    let ids = app
        .assign(ds, json!([{"id": "dev-cf", "confirmationRequired": true}]))
        .await;

    let c = app.next_reply().await;
    assert_eq!(topic(&c), "CONFIRM");
    assert_eq!(header(&c, "thingId").as_deref(), Some("dev-cf"));
    assert_eq!(
        header(&c, "__TypeId__").as_deref(),
        Some("org.eclipse.hawkbit.dmf.json.model.DmfConfirmRequest")
    );
    let body = body_json(&c);
    assert_eq!(body["actionId"], ids[0]);
    let t = app.wait_target("dev-cf", |_| true).await;
    assert_eq!(body["targetSecurityToken"], security_token(&t).as_str());
    assert_eq!(body["softwareModules"][0]["moduleType"], "os");
    let a = app.action("dev-cf", ids[0]).await;
    assert_eq!(a["status"], "wait_for_confirmation");
    assert_eq!(a["active"], true);

    // DENIED: still waiting, one more WAIT_FOR_CONFIRMATION entry, nothing sent.
    app.send(status(ids[0], "DENIED")).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while history(&app, "dev-cf", ids[0]).await.len() < 2 {
        assert!(std::time::Instant::now() < deadline, "DENIED never applied");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        history(&app, "dev-cf", ids[0]).await,
        ["wait_for_confirmation", "wait_for_confirmation"]
    );
    assert_eq!(
        app.action("dev-cf", ids[0]).await["status"],
        "wait_for_confirmation"
    );
    app.assert_no_reply(300).await;

    // CONFIRMED: RUNNING, and the deployment follows at once.
    app.send(status(ids[0], "CONFIRMED")).await;
    let d = app.next_reply().await;
    assert_eq!(topic(&d), "DOWNLOAD_AND_INSTALL");
    assert_eq!(body_json(&d)["actionId"], ids[0]);
    let a = app
        .wait_action("dev-cf", ids[0], |a| a["status"] == "running")
        .await;
    assert_eq!(a["active"], true);
    assert_eq!(
        history(&app, "dev-cf", ids[0]).await,
        ["wait_for_confirmation", "wait_for_confirmation", "running"]
    );
    // A second CONFIRMED is in the wrong state: dead-lettered.
    app.send(status(ids[0], "CONFIRMED")).await;
    let dl = app.next_dead_letter().await;
    assert!(
        header(&dl, "x-dmf-error")
            .unwrap_or_default()
            .contains("Confirmed")
    );
}

// ------------------------------------------------------------------------------------------
// 3. Automatic confirmation.

fn auto_confirm(thing: &str, enabled: bool) -> Msg {
    Msg::new(
        &[
            ("type", "EVENT"),
            ("tenant", "DEFAULT"),
            ("topic", "UPDATE_AUTO_CONFIRM"),
            ("thingId", thing),
        ],
        &format!(r#"{{"enabled":{enabled},"initiator":"fleet-ops","remark":"contract signed"}}"#),
    )
}

#[tokio::test]
async fn auto_confirm_confirms_the_waiting_action_pushes_it_and_skips_later_confirmations() {
    let mut app = spawn_app().await;
    app.set_config("user.confirmation.flow.enabled", true).await;
    register(&app, "dev-ac").await;
    let ds1 = app.create_set("ac1").await;
    let ds2 = app.create_set("ac2").await;
    let a1 = app.assign(ds1, json!([{"id": "dev-ac"}])).await[0];
    assert_eq!(topic(&app.next_reply().await), "CONFIRM");

    // Switching automatic confirmation on confirms the waiting action and pushes it at once.
    app.send(auto_confirm("dev-ac", true)).await;
    let d = app.next_reply().await;
    assert_eq!(topic(&d), "DOWNLOAD_AND_INSTALL");
    assert_eq!(body_json(&d)["actionId"], a1);
    let a = app.action("dev-ac", a1).await;
    assert_eq!(a["status"], "running");
    assert_eq!(
        history(&app, "dev-ac", a1).await,
        ["wait_for_confirmation", "running"]
    );
    let (_, h) = app
        .api_get(&format!(
            "/targets/dev-ac/actions/{a1}/status?sort=id:DESC&limit=1"
        ))
        .await;
    let note = h["content"][0]["messages"][0].as_str().unwrap_or_default();
    assert!(
        note.contains("fleet-ops") && note.contains("contract signed"),
        "{note}"
    );

    // Switching it on again is idempotent: nothing sent, nothing dead-lettered.
    app.send(auto_confirm("dev-ac", true)).await;
    app.assert_no_reply(300).await;

    // The device finishes; a new assignment goes straight to DOWNLOAD_AND_INSTALL.
    app.send(status(a1, "FINISHED")).await;
    assert_eq!(topic(&app.next_reply().await), "REQUEST_ATTRIBUTES_UPDATE");
    app.wait_target("dev-ac", |t| t["updateStatus"] == "in_sync")
        .await;
    let a2 = app
        .assign(ds2, json!([{"id": "dev-ac", "confirmationRequired": true}]))
        .await[0];
    let d = app.next_reply().await;
    assert_eq!(topic(&d), "DOWNLOAD_AND_INSTALL");
    assert_eq!(body_json(&d)["actionId"], a2);
    assert_eq!(app.action("dev-ac", a2).await["status"], "running");

    // Off again: the next assignment waits for confirmation.
    app.send(auto_confirm("dev-ac", false)).await;
    app.send(status(a2, "FINISHED")).await;
    assert_eq!(topic(&app.next_reply().await), "REQUEST_ATTRIBUTES_UPDATE");
    app.wait_target("dev-ac", |t| t["updateStatus"] == "in_sync")
        .await;
    let a3 = app.assign(ds1, json!([{"id": "dev-ac"}])).await[0];
    let c = app.next_reply().await;
    assert_eq!(topic(&c), "CONFIRM");
    assert_eq!(body_json(&c)["actionId"], a3);
}

// ------------------------------------------------------------------------------------------
// 4. Download-only.

#[tokio::test]
async fn download_only_is_sent_as_download_and_closed_by_downloaded() {
    let mut app = spawn_app().await;
    register(&app, "dev-do").await;
    let ds = app.create_set("do").await;
    let ids = app
        .assign(ds, json!([{"id": "dev-do", "type": "downloadonly"}]))
        .await;

    let d = app.next_reply().await;
    assert_eq!(topic(&d), "DOWNLOAD");
    assert_eq!(header(&d, "type").as_deref(), Some("EVENT"));
    assert_eq!(header(&d, "thingId").as_deref(), Some("dev-do"));
    assert_eq!(body_json(&d)["actionId"], ids[0]);
    assert_eq!(
        app.action("dev-do", ids[0]).await["forceType"],
        "downloadonly"
    );

    app.send(status(ids[0], "DOWNLOADED")).await;
    let req = app.next_reply().await;
    assert_eq!(topic(&req), "REQUEST_ATTRIBUTES_UPDATE");
    let a = app
        .wait_action("dev-do", ids[0], |a| a["status"] == "downloaded")
        .await;
    assert_eq!(a["active"], false);
    let t = app
        .wait_target("dev-do", |t| t["updateStatus"] == "in_sync")
        .await;
    assert_eq!(t["requestAttributes"], true);
    assert_eq!(
        history(&app, "dev-do", ids[0]).await,
        ["running", "downloaded"]
    );
    // Assigned is the new set, installed unchanged (none).
    let (_, assigned) = app.api_get("/targets/dev-do/assignedDS").await;
    assert_eq!(assigned["id"], ds);
    let (_, installed) = app.api_get("/targets/dev-do/installedDS").await;
    assert!(installed["id"].is_null(), "{installed}");
    // Nothing else is current: no further message.
    app.assert_no_reply(300).await;
}

// ------------------------------------------------------------------------------------------
// 5. Batch assignments.

#[tokio::test]
async fn batch_mode_sends_one_batch_message_for_the_whole_assignment() {
    let mut app = spawn_app().await;
    app.set_config("batch.assignments.enabled", true).await;
    let things = ["b-1", "b-2", "b-3", "b-4", "b-5", "b-6"];
    for t in things {
        register(&app, t).await;
    }
    let mut tokens = std::collections::BTreeMap::new();
    for t in things {
        tokens.insert(t, security_token(&app.wait_target(t, |_| true).await));
    }
    let ds = app.create_set("batch").await;

    let ids = app.assign(ds,
        json!([{"id": "b-1", "type": "forced"}, {"id": "b-2", "type": "forced"}, {"id": "b-3", "type": "forced"}]),
    )
    .await;
    let m = app.next_reply().await;
    assert_eq!(topic(&m), "BATCH_DOWNLOAD_AND_INSTALL");
    assert_eq!(header(&m, "type").as_deref(), Some("EVENT"));
    assert_eq!(header(&m, "tenant").as_deref(), Some("DEFAULT"));
    assert_eq!(header(&m, "thingId"), None);
    let body = body_json(&m);
    assert!(body["timestamp"].as_i64().unwrap_or(0) > 0);
    assert_eq!(body["softwareModules"][0]["moduleType"], "os");
    let mut got: Vec<(i64, String, String)> = body["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .map(|t| {
            (
                t["actionId"].as_i64().unwrap_or(0),
                t["controllerId"].as_str().unwrap_or("").to_owned(),
                t["targetSecurityToken"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    got.sort();
    let mut want: Vec<(i64, String, String)> = Vec::new();
    for id in &ids {
        let (_, a) = app.api_get(&format!("/actions/{id}")).await;
        let thing = things
            .iter()
            .find(|t| {
                a["_links"]["target"]["href"]
                    .as_str()
                    .is_some_and(|h| h.ends_with(&format!("/targets/{t}")))
            })
            .expect("action of one of the targets");
        want.push((*id, thing.to_string(), tokens[thing].clone()));
    }
    want.sort();
    assert_eq!(got, want);
    // One message for the assignment, not one per device.
    app.assert_no_reply(300).await;

    let ids = app.assign(ds,
        json!([{"id": "b-4", "type": "downloadonly"}, {"id": "b-5", "type": "downloadonly"}, {"id": "b-6", "type": "downloadonly"}]),
    )
    .await;
    let m = app.next_reply().await;
    assert_eq!(topic(&m), "BATCH_DOWNLOAD");
    assert_eq!(header(&m, "thingId"), None);
    let mut listed: Vec<i64> = body_json(&m)["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .map(|t| t["actionId"].as_i64().unwrap_or(0))
        .collect();
    listed.sort_unstable();
    let mut ids = ids;
    ids.sort_unstable();
    assert_eq!(listed, ids);
    app.assert_no_reply(300).await;
}

// ------------------------------------------------------------------------------------------
// 6. Maintenance window opening.

#[tokio::test]
async fn a_device_is_pushed_download_and_install_when_its_maintenance_window_opens() {
    let mut app = spawn_app().await;
    register(&app, "dev-mw").await;
    let ds = app.create_set("mw").await;
    // A window opening once a minute, a few seconds from now, for 30 s: closed at assignment
    // (the previous one closed half a minute ago), open shortly after.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let second = (now + 4) % 60;
    let schedule = format!("{second} * * * * ?");
    let ids = app.assign(ds,
        json!([{"id": "dev-mw", "maintenanceWindow": {"schedule": schedule, "duration": "00:00:30", "timezone": "+00:00"}}]),
    )
    .await;
    let d = app.next_reply().await;
    assert_eq!(topic(&d), "DOWNLOAD");
    assert_eq!(body_json(&d)["actionId"], ids[0]);
    let a = app.action("dev-mw", ids[0]).await;
    assert_eq!(a["maintenanceWindow"]["schedule"], schedule.as_str());

    // The device says nothing; the window opens and the service pushes the installation.
    let started = std::time::Instant::now();
    let d = app.next_reply().await;
    assert_eq!(topic(&d), "DOWNLOAD_AND_INSTALL");
    assert_eq!(header(&d, "thingId").as_deref(), Some("dev-mw"));
    assert_eq!(body_json(&d)["actionId"], ids[0]);
    assert!(started.elapsed() < Duration::from_secs(8));
    // Pushed once per opening, not on every sweep.
    app.assert_no_reply(2500).await;
    // While open, a poll gets DOWNLOAD_AND_INSTALL too.
    app.send(thing_created("dev-mw")).await;
    assert_eq!(topic(&app.next_reply().await), "DOWNLOAD_AND_INSTALL");
}

/// References between targets, actions, their history and sets are kept by triggers instead of
/// per-row foreign keys (migration 4): a set an action or a target still uses is only
/// soft-deleted, and a deleted target takes its actions and their history along, after which
/// its set can go for good.
#[tokio::test]
async fn deleting_targets_and_sets_keeps_references_whole() {
    let mut app = spawn_app().await;
    register(&app, "dev-gone").await;
    register(&app, "dev-stays").await;
    let gone_set = app.create_set("fw-gone").await;
    let kept_set = app.create_set("fw-kept").await;
    let gone = app.assign(gone_set, json!([{"id": "dev-gone"}])).await;
    let kept = app.assign(kept_set, json!([{"id": "dev-stays"}])).await;
    for _ in 0..2 {
        app.next_reply().await;
    }
    app.send(status(gone[0], "RUNNING")).await;
    let count_history =
        |id: i64| format!("SELECT count(*) FROM action_status WHERE action_id = {id}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while sql(&app, &count_history(gone[0])) != "2" {
        assert!(
            std::time::Instant::now() < deadline,
            "RUNNING never recorded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A set in use by an action (and as the target's assigned set) is kept, marked deleted.
    let (s, _) = app
        .api_delete(&format!("/distributionsets/{kept_set}"))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, d) = app.api_get(&format!("/distributionsets/{kept_set}")).await;
    assert_eq!(
        (s, d["deleted"].as_bool()),
        (StatusCode::OK, Some(true)),
        "{d}"
    );

    // Deleting the target deletes its action and that action's history, nothing else.
    let (s, _) = app.api_delete("/targets/dev-gone").await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(
        sql(
            &app,
            &format!("SELECT count(*) FROM action WHERE id = {}", gone[0])
        ),
        "0"
    );
    assert_eq!(sql(&app, &count_history(gone[0])), "0");
    let (s, a) = app.api_get(&format!("/actions/{}", kept[0])).await;
    assert_eq!(s, StatusCode::OK, "{a}");
    assert_ne!(sql(&app, &count_history(kept[0])), "0");

    // Nothing refers to the first set any more: it is deleted for good.
    let (s, _) = app
        .api_delete(&format!("/distributionsets/{gone_set}"))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = app.api_get(&format!("/distributionsets/{gone_set}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}
