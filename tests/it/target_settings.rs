//! A target's type and automatic confirmation as sub-resources, through HTTP and AMQP.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{assert_error, body_json, spawn_app, thing_created};

#[tokio::test]
async fn a_targets_type_is_set_and_cleared() {
    let app = spawn_app().await;
    app.send(thing_created("tt-1")).await;
    app.wait_target("tt-1", |_| true).await;
    let (s, t) = app
        .api_post("/targettypes", json!([{"name": "gateway", "key": "gw"}]))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    let tt = t[0]["id"].as_i64().expect("type id");

    let (s, e) = app
        .api_post("/targets/tt-1/targettype", json!({"id": 999999}))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{e}");
    let (s, e) = app
        .api_post("/targets/nobody/targettype", json!({"id": tt}))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{e}");
    let (s, v) = app
        .api_post("/targets/tt-1/targettype", json!({"id": tt}))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    let (_, t) = app.api_get("/targets/tt-1").await;
    assert_eq!(t["targetType"], tt, "{t}");
    assert_eq!(
        app.api_delete("/targets/tt-1/targettype").await.0,
        StatusCode::NO_CONTENT
    );
    let (_, t) = app.api_get("/targets/tt-1").await;
    assert!(t["targetType"].is_null(), "{t}");
}

#[tokio::test]
async fn auto_confirm_is_read_activated_once_and_deactivated() {
    let mut app = spawn_app().await;
    app.set_config("user.confirmation.flow.enabled", true).await;
    app.send(thing_created("ac-1")).await;
    app.wait_target("ac-1", |_| true).await;
    let (s, v) = app.api_get("/targets/ac-1/autoConfirm").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["active"], false, "{v}");
    assert!(v["_links"]["activate"]["href"].is_string(), "{v}");

    // An action waits for confirmation; switching auto-confirm on confirms it and the device
    // hears of it at once.
    let ds = app.create_set("ac").await;
    let action = app.assign(ds, json!([{"id": "ac-1"}])).await[0];
    let d = app.next_of(&["CONFIRM"]).await;
    assert!(!d.data.is_empty());
    let (s, v) = app
        .api_post(
            "/targets/ac-1/autoConfirm/activate",
            json!({"initiator": "ops", "remark": "trusted fleet"}),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    let d = app.next_of(&["DOWNLOAD_AND_INSTALL"]).await;
    assert_eq!(body_json(&d)["actionId"], action);
    let a = app.action("ac-1", action).await;
    assert_eq!(a["status"], "running", "{a}");
    let (_, v) = app.api_get("/targets/ac-1/autoConfirm").await;
    assert_eq!(v["active"], true, "{v}");
    assert_eq!(
        (v["initiator"].as_str(), v["remark"].as_str()),
        (Some("ops"), Some("trusted fleet")),
        "{v}"
    );
    assert!(
        v["activatedAt"].is_i64() && v["_links"]["deactivate"].is_object(),
        "{v}"
    );

    let (s, e) = app
        .api_post("/targets/ac-1/autoConfirm/activate", json!({}))
        .await;
    assert_error(
        s,
        &e,
        StatusCode::CONFLICT,
        "hawkbit.server.error.repo.autoConfAlreadyActive",
    );
    let (s, _) = app
        .api_post("/targets/ac-1/autoConfirm/deactivate", json!({}))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, v) = app.api_get("/targets/ac-1/autoConfirm").await;
    assert_eq!(v["active"], false, "{v}");
}

#[tokio::test]
async fn a_set_lists_the_targets_it_is_assigned_to_and_installed_on() {
    let app = spawn_app().await;
    let ids = app.fleet("st", 3).await;
    let ds = app.create_set("st").await;
    app.assign(ds, json!([{"id": ids[0]}, {"id": ids[1]}]))
        .await;
    let (s, v) = app
        .api_post(
            &format!("/distributionsets/{ds}/assignedTargets?offline=true"),
            json!([{"id": ids[2]}]),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, l) = app
        .api_get(&format!(
            "/distributionsets/{ds}/assignedTargets?sort=controllerId:DESC"
        ))
        .await;
    assert_eq!(s, StatusCode::OK, "{l}");
    assert_eq!(l["total"], 3, "{l}");
    assert_eq!(l["content"][0]["controllerId"], ids[2].as_str(), "{l}");
    let (_, l) = app
        .api_get(&format!("/distributionsets/{ds}/installedTargets"))
        .await;
    assert_eq!(l["total"], 1, "{l}");
    assert_eq!(l["content"][0]["controllerId"], ids[2].as_str(), "{l}");
    let (_, l) = app
        .api_get(&format!(
            "/distributionsets/{ds}/assignedTargets?q=controllerId=={}",
            ids[0]
        ))
        .await;
    assert_eq!(l["total"], 1, "{l}");
    let (s, _) = app
        .api_get("/distributionsets/999999/installedTargets")
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_sets_statistics_count_actions_rollouts_and_auto_assignments() {
    let app = spawn_app().await;
    let ids = app.fleet("ss", 2).await;
    let ds = app.create_set("ss").await;
    let (_, empty) = app
        .api_get(&format!("/distributionsets/{ds}/statistics"))
        .await;
    assert_eq!(
        empty,
        json!({"actions": {"total": 0}, "rollouts": {"total": 0}, "totalAutoAssignments": 0})
    );
    let (_, part) = app
        .api_get(&format!("/distributionsets/{ds}/statistics/actions"))
        .await;
    assert_eq!(part, json!({}));

    app.assign(ds, json!([{"id": ids[0]}, {"id": ids[1]}]))
        .await;
    let (s, v) = app
        .api_post(
            "/autoassignments",
            json!({"name": "ss", "targetFilterQuery": "controllerId==none", "distributionSetId": ds}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, full) = app
        .api_get(&format!("/distributionsets/{ds}/statistics"))
        .await;
    assert_eq!(s, StatusCode::OK, "{full}");
    assert_eq!(full["actions"], json!({"RUNNING": 2, "total": 2}), "{full}");
    assert_eq!(full["rollouts"], json!({"total": 0}), "{full}");
    assert_eq!(full["totalAutoAssignments"], 1, "{full}");
    let (_, part) = app
        .api_get(&format!("/distributionsets/{ds}/statistics/actions"))
        .await;
    assert_eq!(part, json!({"actions": {"RUNNING": 2, "total": 2}}));
    let (s, _) = app.api_get("/distributionsets/999999/statistics").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}
