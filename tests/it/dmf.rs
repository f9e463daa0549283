//! End-to-end DMF scenarios through real RabbitMQ and PostgreSQL (dmf-protocol.md §9).

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn sdk_registration_creates_a_registered_target_with_the_amqp_address() {
    let app = spawn_app().await;
    app.send(thing_created("device-1")).await;
    let t = app.wait_target("device-1", |_| true).await;
    assert_eq!(t["updateStatus"], "registered");
    assert_eq!(t["name"], "device-1");
    assert_eq!(
        t["address"],
        format!("amqp://{}/sdk.replyTo", app.vhost.name)
    );
    assert!(t["description"].as_str().unwrap().contains("Plug and Play"));
}

#[tokio::test]
async fn thing_created_with_a_body_names_and_merges_attributes() {
    let app = spawn_app().await;
    let mut m = thing_created("device-2");
    m.body =
        br#"{"name":"Pump 2","attributeUpdate":{"attributes":{"a":"1","b":"2"},"mode":"MERGE"}}"#
            .to_vec();
    app.send(m).await;
    let mut m = thing_created("device-2");
    m.body = br#"{"name":"Pump 2b","attributeUpdate":{"attributes":{"c":"3"}}}"#.to_vec();
    app.send(m).await;
    app.wait_target("device-2", |t| t["name"] == "Pump 2b")
        .await;
    let (_, a) = app.api_get("/targets/device-2/attributes").await;
    assert_eq!(a, json!({"a": "1", "b": "2", "c": "3"}));
}

#[tokio::test]
async fn assignment_is_delivered_and_finished_reports_bring_the_target_in_sync() {
    let mut app = spawn_app().await;
    app.send(thing_created("dev-a")).await;
    app.wait_target("dev-a", |_| true).await;
    let ds = app.create_set("fw").await;
    // Module metadata reaches the device when it is target-visible, and only then.
    let (_, sms) = app
        .api_get(&format!("/distributionsets/{ds}/assignedSM"))
        .await;
    let sm = sms["content"][0]["id"].as_i64().expect("module id");
    let (s, md) = app
        .api_post(
            &format!("/softwaremodules/{sm}/metadata"),
            json!([{"key": "install.mode", "value": "ab", "targetVisible": true},
                   {"key": "notes", "value": "internal"},
                   {"key": "a.first", "value": "1", "targetVisible": true}]),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{md}");
    let (s, out) = app
        .api_post(
            &format!("/distributionsets/{ds}/assignedTargets"),
            json!([{"id": "dev-a"}]),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{out}");
    assert_eq!(out["assigned"], 1);
    let action = out["assignedActions"][0]["id"].as_i64().unwrap();

    let d = app.next_reply().await;
    assert_eq!(header(&d, "type").as_deref(), Some("EVENT"));
    assert_eq!(header(&d, "topic").as_deref(), Some("DOWNLOAD_AND_INSTALL"));
    assert_eq!(header(&d, "thingId").as_deref(), Some("dev-a"));
    assert_eq!(header(&d, "tenant").as_deref(), Some("DEFAULT"));
    assert_eq!(
        d.properties.content_type().as_ref().map(|s| s.as_str()),
        Some("application/json")
    );
    let body = body_json(&d);
    assert_eq!(body["actionId"], action);
    assert!(String::from_utf8_lossy(&d.data).starts_with(r#"{"actionId":"#));
    assert_eq!(body["softwareModules"][0]["moduleType"], "os");
    assert_eq!(
        body["softwareModules"][0]["artifacts"][0]["urls"]["HTTPS"],
        "https://cdn.example.net/rootfs.img"
    );
    assert_eq!(body["softwareModules"][0]["artifacts"][0]["size"], 52428800);
    assert_eq!(
        body["softwareModules"][0]["metadata"],
        json!([{"key": "a.first", "value": "1"}, {"key": "install.mode", "value": "ab"}])
    );
    app.wait_target("dev-a", |t| t["updateStatus"] == "pending")
        .await;

    for st in ["RUNNING", "DOWNLOAD", "DOWNLOADED", "FINISHED"] {
        app.send(status(action, st)).await;
    }
    let req = app.next_reply().await;
    assert_eq!(
        header(&req, "topic").as_deref(),
        Some("REQUEST_ATTRIBUTES_UPDATE")
    );
    assert!(req.data.is_empty());
    app.wait_target("dev-a", |t| t["updateStatus"] == "in_sync")
        .await;
    let (_, a) = app
        .api_get(&format!("/targets/dev-a/actions/{action}"))
        .await;
    assert_eq!(a["status"], "finished");
    assert_eq!(a["active"], false);
    let (_, h) = app
        .api_get(&format!(
            "/targets/dev-a/actions/{action}/status?sort=id:ASC"
        ))
        .await;
    let types: Vec<&str> = h["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        vec!["running", "running", "download", "downloaded", "finished"]
    );
    let (_, inst) = app.api_get("/targets/dev-a/installedDS").await;
    assert_eq!(inst["id"], ds);
}

#[tokio::test]
async fn a_cancelled_action_gets_cancel_download_and_closes_on_canceled() {
    let mut app = spawn_app().await;
    app.send(thing_created("dev-c")).await;
    app.wait_target("dev-c", |_| true).await;
    let ds = app.create_set("fw").await;
    let (_, out) = app
        .api_post(
            &format!("/distributionsets/{ds}/assignedTargets"),
            json!([{"id": "dev-c"}]),
        )
        .await;
    let action = out["assignedActions"][0]["id"].as_i64().unwrap();
    assert_eq!(
        header(&app.next_reply().await, "topic").as_deref(),
        Some("DOWNLOAD_AND_INSTALL")
    );

    let (s, _) = app
        .api_delete(&format!("/targets/dev-c/actions/{action}"))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let c = app.next_reply().await;
    assert_eq!(header(&c, "topic").as_deref(), Some("CANCEL_DOWNLOAD"));
    assert_eq!(c.data, format!(r#"{{"actionId":{action}}}"#).into_bytes());
    // A poll while cancelling re-sends the cancel.
    app.send(thing_created("dev-c")).await;
    assert_eq!(
        header(&app.next_reply().await, "topic").as_deref(),
        Some("CANCEL_DOWNLOAD")
    );

    app.send(status(action, "CANCELED")).await;
    app.wait_target("dev-c", |t| t["updateStatus"] == "in_sync")
        .await;
    let (_, a) = app
        .api_get(&format!("/targets/dev-c/actions/{action}"))
        .await;
    assert_eq!(a["status"], "canceled");
}

#[tokio::test]
async fn a_second_assignment_waits_for_the_cancel_of_the_first() {
    let mut app = spawn_app().await;
    app.send(thing_created("dev-s")).await;
    app.wait_target("dev-s", |_| true).await;
    let ds1 = app.create_set("one").await;
    let ds2 = app.create_set("two").await;
    let (_, o1) = app
        .api_post(
            &format!("/distributionsets/{ds1}/assignedTargets"),
            json!([{"id": "dev-s"}]),
        )
        .await;
    let a1 = o1["assignedActions"][0]["id"].as_i64().unwrap();
    assert_eq!(
        header(&app.next_reply().await, "topic").as_deref(),
        Some("DOWNLOAD_AND_INSTALL")
    );
    let (_, o2) = app
        .api_post(
            &format!("/distributionsets/{ds2}/assignedTargets"),
            json!([{"id": "dev-s"}]),
        )
        .await;
    let a2 = o2["assignedActions"][0]["id"].as_i64().unwrap();
    let c = app.next_reply().await;
    assert_eq!(header(&c, "topic").as_deref(), Some("CANCEL_DOWNLOAD"));
    assert_eq!(body_json(&c)["actionId"], a1);
    app.assert_no_reply(300).await;
    app.send(status(a1, "CANCELED")).await;
    let d = app.next_reply().await;
    assert_eq!(header(&d, "topic").as_deref(), Some("DOWNLOAD_AND_INSTALL"));
    assert_eq!(body_json(&d)["actionId"], a2);
}

#[tokio::test]
async fn multi_assignment_sends_multi_action_ordered_by_weight() {
    let mut app = spawn_app().await;
    let (s, _) = app
        .api_put(
            "/system/configs/multi.assignments.enabled",
            json!({"value": true}),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    app.send(thing_created("dev-m")).await;
    app.wait_target("dev-m", |_| true).await;
    let ds1 = app.create_set("m1").await;
    let ds2 = app.create_set("m2").await;
    let (_, o1) = app
        .api_post(
            &format!("/distributionsets/{ds1}/assignedTargets"),
            json!([{"id": "dev-m", "weight": 111}]),
        )
        .await;
    let first = app.next_reply().await;
    assert_eq!(header(&first, "topic").as_deref(), Some("MULTI_ACTION"));
    let (_, o2) = app
        .api_post(
            &format!("/distributionsets/{ds2}/assignedTargets"),
            json!([{"id": "dev-m", "weight": 450}]),
        )
        .await;
    let m = app.next_reply().await;
    let list = body_json(&m);
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!(
        list[0]["action"]["actionId"],
        o2["assignedActions"][0]["id"]
    );
    assert_eq!(list[0]["weight"], 450);
    assert_eq!(
        list[1]["action"]["actionId"],
        o1["assignedActions"][0]["id"]
    );
    assert_eq!(list[1]["topic"], "DOWNLOAD_AND_INSTALL");
    let (s, e) = app
        .api_post(
            &format!("/distributionsets/{ds1}/assignedTargets"),
            json!([{"id": "dev-m", "weight": 1001}]),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    // Irreversible.
    let (s, _) = app
        .api_put(
            "/system/configs/multi.assignments.enabled",
            json!({"value": false}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn ping_is_answered_with_the_same_correlation_id() {
    let mut app = spawn_app().await;
    let mut m = Msg::new(&[("type", "PING"), ("tenant", "default")], "");
    m.content_type = Some("text/plain");
    m.reply_to = Some(REPLY_EXCHANGE.into());
    m.correlation_id = Some("corr-42".into());
    app.send(m).await;
    let r = app.next_reply().await;
    assert_eq!(header(&r, "type").as_deref(), Some("PING_RESPONSE"));
    assert_eq!(header(&r, "tenant").as_deref(), Some("default"));
    assert_eq!(
        r.properties.correlation_id().as_ref().map(|s| s.as_str()),
        Some("corr-42")
    );
    assert_eq!(
        r.properties.content_type().as_ref().map(|s| s.as_str()),
        Some("text/plain")
    );
    assert!(String::from_utf8_lossy(&r.data).parse::<i64>().unwrap() > 0);
}

#[tokio::test]
async fn every_bad_input_is_dead_lettered_with_its_reason_and_the_next_message_still_works() {
    let mut app = spawn_app().await;
    let mut cases: Vec<(Msg, &str)> = vec![
        (
            Msg::new(&[("tenant", "DEFAULT")], "{}"),
            "missing header: type",
        ),
        (
            Msg::new(&[("type", "NotExist"), ("tenant", "DEFAULT")], "{}"),
            "unknown type",
        ),
        (
            Msg::new(&[("type", "THING_CREATED"), ("thingId", "x")], ""),
            "missing header: tenant",
        ),
        (
            Msg::new(
                &[
                    ("type", "EVENT"),
                    ("tenant", "DEFAULT"),
                    ("topic", "NotExist"),
                ],
                "{}",
            ),
            "unknown topic",
        ),
        (
            Msg::new(
                &[
                    ("type", "EVENT"),
                    ("tenant", "DEFAULT"),
                    ("topic", "UPDATE_ACTION_STATUS"),
                ],
                "Invalid Content",
            ),
            "invalid JSON",
        ),
        (
            Msg::new(
                &[
                    ("type", "EVENT"),
                    ("tenant", "DEFAULT"),
                    ("topic", "UPDATE_ACTION_STATUS"),
                ],
                r#"{"actionId":1,"actionStatus":"FINISH"}"#,
            ),
            "invalid JSON",
        ),
        (
            Msg::new(
                &[
                    ("type", "EVENT"),
                    ("tenant", "DEFAULT"),
                    ("topic", "UPDATE_ACTION_STATUS"),
                ],
                r#"{"actionId":987654,"actionStatus":"FINISHED"}"#,
            ),
            "does not exist",
        ),
        (
            Msg::new(
                &[
                    ("type", "EVENT"),
                    ("tenant", "NOBODY"),
                    ("topic", "UPDATE_ACTION_STATUS"),
                ],
                r#"{"actionId":1,"actionStatus":"FINISHED"}"#,
            ),
            "unknown tenant",
        ),
        (
            Msg::new(
                &[
                    ("type", "EVENT"),
                    ("tenant", "DEFAULT"),
                    ("topic", "UPDATE_ATTRIBUTES"),
                ],
                r#"{"attributes":{"a":"b"}}"#,
            ),
            "missing header: thingId",
        ),
        (
            Msg::new(
                &[
                    ("type", "THING_REMOVED"),
                    ("tenant", "DEFAULT"),
                    ("thingId", "ghost"),
                ],
                "",
            ),
            "does not exist",
        ),
    ];
    let mut wrong_ct = Msg::new(
        &[
            ("type", "EVENT"),
            ("tenant", "DEFAULT"),
            ("topic", "UPDATE_ACTION_STATUS"),
        ],
        r#"{"actionId":1,"actionStatus":"RUNNING"}"#,
    );
    wrong_ct.content_type = Some("text/plain");
    cases.push((wrong_ct, "wrong content type"));
    let mut spaced = thing_created("Invalid Invalid");
    spaced.body.clear();
    cases.push((spaced, "whitespace"));
    let mut no_reply = thing_created("dev-x");
    no_reply.reply_to = None;
    cases.push((no_reply, "reply_to"));
    let big = "x".repeat(300 * 1024);
    cases.push((
        Msg::new(
            &[
                ("type", "EVENT"),
                ("tenant", "DEFAULT"),
                ("topic", "UPDATE_ACTION_STATUS"),
            ],
            &big,
        ),
        "exceeds the limit",
    ));

    for (msg, reason) in cases {
        app.send(msg).await;
        let d = app.next_dead_letter().await;
        let got = header(&d, "x-dmf-error").unwrap_or_default();
        assert!(
            got.contains(reason),
            "expected reason containing {reason:?}, got {got:?}"
        );
    }
    // The consumer went straight on.
    app.send(thing_created("dev-ok")).await;
    app.wait_target("dev-ok", |t| t["updateStatus"] == "registered")
        .await;
}

#[tokio::test]
async fn thing_removed_deletes_the_target_and_answers_thing_deleted() {
    let mut app = spawn_app().await;
    app.send(thing_created("dev-r")).await;
    app.wait_target("dev-r", |_| true).await;
    app.send(Msg::new(
        &[
            ("type", "THING_REMOVED"),
            ("tenant", "DEFAULT"),
            ("thingId", "dev-r"),
        ],
        "",
    ))
    .await;
    let d = app.next_reply().await;
    assert_eq!(header(&d, "type").as_deref(), Some("THING_DELETED"));
    assert_eq!(header(&d, "thingId").as_deref(), Some("dev-r"));
    let (s, _) = app.api_get("/targets/dev-r").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn update_attributes_merges_replaces_and_removes() {
    let app = spawn_app().await;
    app.send(thing_created("dev-at")).await;
    app.wait_target("dev-at", |_| true).await;
    let upd = |body: &str| {
        Msg::new(
            &[
                ("type", "EVENT"),
                ("tenant", "DEFAULT"),
                ("topic", "UPDATE_ATTRIBUTES"),
                ("thingId", "dev-at"),
            ],
            body,
        )
    };
    app.send(upd(r#"{"attributes":{"a":"1","b":"2"}}"#)).await;
    app.send(upd(r#"{"attributes":{"x":"9"},"mode":"REPLACE"}"#))
        .await;
    app.send(upd(r#"{"attributes":{"y":"8","x":"7"},"mode":"MERGE"}"#))
        .await;
    app.send(upd(r#"{"attributes":{"y":"ignored"},"mode":"REMOVE"}"#))
        .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, a) = app.api_get("/targets/dev-at/attributes").await;
        if attrs(&a) == [("x".to_string(), "7".to_string())].into_iter().collect() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "attributes: {a}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_api_answers_hawkbit_error_bodies() {
    let app = spawn_app().await;
    let (s, e) = app.api_get("/targets/nope").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(e["errorCode"], "hawkbit.server.error.repo.entityNotFound");
    let (s, _) = app
        .api_as("admin", "wrong", reqwest::Method::GET, "/targets", None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let resp = app
        .http
        .post(format!("{}/rest/v1/targets", app.base))
        .basic_auth("admin", Some("admin"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let e: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(e["errorCode"], "hawkbit.server.error.rest.body.notReadable");
}
