//! Targets through real HTTP and AMQP: manual assignment as safe as hawkBit's (target-type
//! compatibility, request and action quotas, the implicit lock, all or nothing), the target
//! body (poll status, auto-confirm, links), the assigned and installed set bodies, HAL JSON.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error, body_json, spawn_app, spawn_app_with};

const INCOMPATIBLE: &str = "hawkbit.server.error.target.type.incompatible";
const TOO_MANY: &str = "hawkbit.server.error.quota.tooManyEntries";

/// Id of the seeded distribution set type with this key.
async fn ds_type(app: &TestApp, key: &str) -> i64 {
    let (s, v) = app
        .api_get(&format!("/distributionsettypes?q=key=={key}"))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["content"][0]["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("no DS type {key}: {v}"))
}

/// A target type accepting sets of the types with these ids.
async fn target_type(app: &TestApp, name: &str, ds_types: &[i64]) -> i64 {
    let compatible: Vec<Value> = ds_types.iter().map(|id| json!({"id": id})).collect();
    let (s, v) = app
        .api_post(
            "/targettypes",
            json!([{"name": name, "compatibledistributionsettypes": compatible}]),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v[0]["id"].as_i64().expect("type id")
}

async fn set_type_of(app: &TestApp, target: &str, tt: i64) {
    let (s, v) = app
        .api_post(&format!("/targets/{target}/targettype"), json!({"id": tt}))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
}

/// The target's assigned set id, if any.
async fn assigned_of(app: &TestApp, target: &str) -> Option<i64> {
    let (s, v) = app.api_get(&format!("/targets/{target}/assignedDS")).await;
    match s {
        StatusCode::NO_CONTENT => None,
        StatusCode::OK => v["id"].as_i64(),
        other => panic!("assignedDS answered {other}: {v}"),
    }
}

#[tokio::test]
async fn a_set_is_refused_as_a_whole_when_a_targets_type_does_not_accept_it() {
    let mut app = spawn_app().await;
    let ids = app.fleet("tc", 3).await;
    let ds = app.create_set("tc").await;
    let (os, app_type) = (ds_type(&app, "os").await, ds_type(&app, "app").await);
    let apps_only = target_type(&app, "apps only", &[app_type]).await;
    let os_ok = target_type(&app, "os ok", &[os]).await;
    set_type_of(&app, &ids[1], apps_only).await;
    set_type_of(&app, &ids[2], os_ok).await;

    // One incompatible target refuses the whole request: nothing is assigned, nothing is sent.
    let body = json!([{"id": ids[0]}, {"id": ids[1]}, {"id": ids[2]}]);
    let (s, e) = app
        .api_post(&format!("/distributionsets/{ds}/assignedTargets"), body)
        .await;
    assert_error(s, &e, StatusCode::BAD_REQUEST, INCOMPATIBLE);
    assert!(
        e["message"]
            .as_str()
            .is_some_and(|m| m.contains("apps only")),
        "{e}"
    );
    let (s, e) = app
        .api_post(
            &format!("/targets/{}/assignedDS", ids[1]),
            json!([{"id": ds}]),
        )
        .await;
    assert_error(s, &e, StatusCode::BAD_REQUEST, INCOMPATIBLE);
    for id in &ids {
        assert_eq!(assigned_of(&app, id).await, None, "{id}");
    }
    app.assert_quiet(300).await;

    // An untyped target and one whose type accepts the set's type are assigned.
    let body = json!([{"id": ids[0]}, {"id": ids[2]}]);
    let actions = app.assign(ds, body).await;
    assert_eq!(actions.len(), 2);
    let got = app.deployments(2).await;
    assert!(got.iter().all(|(_, a)| actions.contains(a)), "{got:?}");
    assert_eq!(assigned_of(&app, &ids[2]).await, Some(ds));
}

#[tokio::test]
async fn one_request_may_assign_at_most_the_quota_and_all_or_nothing() {
    let mut app = spawn_app_with(&["--max-targets-per-manual-assignment", "2"]).await;
    let ids = app.fleet("mq", 3).await;
    let a = app.create_set("mq-a").await;
    let b = app.create_set("mq-b").await;
    let c = app.create_set("mq-c").await;

    let all: Vec<Value> = ids.iter().map(|id| json!({"id": id})).collect();
    let (s, e) = app
        .api_post(
            &format!("/distributionsets/{a}/assignedTargets"),
            json!(all),
        )
        .await;
    assert_error(s, &e, StatusCode::TOO_MANY_REQUESTS, TOO_MANY);
    // Three sets to one target count three assignments.
    let target = format!("/targets/{}/assignedDS", ids[0]);
    let (s, e) = app
        .api_post(&target, json!([{"id": a}, {"id": b}, {"id": c}]))
        .await;
    assert_error(s, &e, StatusCode::TOO_MANY_REQUESTS, TOO_MANY);
    // Naming a target twice is one assignment.
    let twice = json!([{"id": ids[0]}, {"id": ids[1]}, {"id": ids[1], "type": "soft"}]);
    assert_eq!(app.assign(a, twice).await.len(), 2);
    app.deployments(2).await;

    // Sets of one request to a target are assigned in one transaction: an unknown second set
    // leaves the first unassigned.
    let (s, e) = app
        .api_post(
            &format!("/targets/{}/assignedDS", ids[2]),
            json!([{"id": b}, {"id": 999999}]),
        )
        .await;
    assert_error(
        s,
        &e,
        StatusCode::NOT_FOUND,
        "hawkbit.server.error.repo.entityNotFound",
    );
    assert_eq!(assigned_of(&app, &ids[2]).await, None);
    let (s, v) = app
        .api_post(
            &format!("/targets/{}/assignedDS", ids[2]),
            json!([{"id": b}]),
        )
        .await;
    assert_eq!(
        (s, v["assigned"].as_i64()),
        (StatusCode::OK, Some(1)),
        "{v}"
    );
    let d = app.next_of(&["DOWNLOAD_AND_INSTALL"]).await;
    assert_eq!(body_json(&d)["actionId"], v["assignedActions"][0]["id"]);
}

#[tokio::test]
async fn a_target_at_its_action_quota_gets_no_further_assignment() {
    let app = spawn_app_with(&["--max-actions-per-target", "1"]).await;
    let ids = app.fleet("aq", 2).await;
    let a = app.create_set("aq-a").await;
    let b = app.create_set("aq-b").await;
    app.assign(a, json!([{"id": ids[0]}])).await;
    let (s, e) = app
        .api_post(
            &format!("/distributionsets/{b}/assignedTargets"),
            json!([{"id": ids[1]}, {"id": ids[0]}]),
        )
        .await;
    assert_error(s, &e, StatusCode::TOO_MANY_REQUESTS, TOO_MANY);
    assert!(
        e["message"].as_str().is_some_and(|m| m.contains(&ids[0])),
        "{e}"
    );
    assert_eq!(assigned_of(&app, &ids[1]).await, None);
    // Already assigned: no new action, so no quota to exceed.
    let (s, v) = app
        .api_post(
            &format!("/distributionsets/{a}/assignedTargets"),
            json!([{"id": ids[0]}]),
        )
        .await;
    assert_eq!(
        (s, v["alreadyAssigned"].as_i64()),
        (StatusCode::OK, Some(1)),
        "{v}"
    );
}

#[tokio::test]
async fn a_manual_assignment_locks_its_set_unless_implicit_locking_is_off() {
    let app = spawn_app().await;
    let ids = app.fleet("il", 2).await;
    let a = app.create_set("il-a").await;
    let b = app.create_set("il-b").await;
    let locked = async |ds: i64| {
        let (s, v) = app.api_get(&format!("/distributionsets/{ds}")).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v["locked"].as_bool().expect("locked")
    };
    assert!(!locked(a).await);
    app.assign(a, json!([{"id": ids[0]}])).await;
    assert!(locked(a).await);
    // Offline assignments lock too.
    let (s, v) = app
        .api_post(
            &format!("/targets/{}/assignedDS?offline=true", ids[1]),
            json!([{"id": a}]),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");

    app.set_config("implicit.lock.enabled", false).await;
    app.assign(b, json!([{"id": ids[1]}])).await;
    assert!(!locked(b).await);
    // A refused assignment locks nothing.
    let c = app.create_set("il-c").await;
    app.set_config("implicit.lock.enabled", true).await;
    let (s, _) = app
        .api_post(
            &format!("/distributionsets/{c}/assignedTargets"),
            json!([{"id": "nobody"}]),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(!locked(c).await);
}
