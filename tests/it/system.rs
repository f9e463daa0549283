//! Tenant configuration and user info through HTTP: single and bulk changes answer 204 (hawkBit
//! master), a bulk change is all or none, and `/userinfo` names the caller.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{assert_error, spawn_app};

const MULTI: &str = "multi.assignments.enabled";
const BATCH: &str = "batch.assignments.enabled";
const AUTOCLOSE: &str = "repository.actions.autoclose.enabled";
const CONFIRMATION: &str = "user.confirmation.flow.enabled";

#[tokio::test]
async fn configs_change_one_by_one_or_all_at_once_and_all_or_none() {
    let app = spawn_app().await;
    let (s, all) = app.api_get("/system/configs").await;
    assert_eq!(s, StatusCode::OK, "{all}");
    assert_eq!(
        all["auto.assignment.approval.enabled"],
        json!({"value": false, "global": true}),
        "{all}"
    );

    let (s, b) = app
        .api_put(
            &format!("/system/configs/{AUTOCLOSE}"),
            json!({"value": true}),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    let (_, v) = app.api_get(&format!("/system/configs/{AUTOCLOSE}")).await;
    assert_eq!(
        (v["value"].as_bool(), v["global"].as_bool()),
        (Some(true), Some(false)),
        "{v}"
    );

    // Multi-assignment excludes batch mode: the second value is refused, the first not kept.
    let (s, e) = app
        .api_put("/system/configs", json!({MULTI: true, BATCH: true}))
        .await;
    assert_error(
        s,
        &e,
        StatusCode::FORBIDDEN,
        "hawkbit.server.error.configValueChangeNotAllowed",
    );
    let (_, all) = app.api_get("/system/configs").await;
    assert_eq!(all[MULTI]["value"], false, "{all}");
    assert_eq!(all[BATCH]["value"], false, "{all}");

    let (s, b) = app
        .api_put("/system/configs", json!({CONFIRMATION: true, BATCH: true}))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    let (_, all) = app.api_get("/system/configs").await;
    assert_eq!(
        (
            all[CONFIRMATION]["value"].as_bool(),
            all[BATCH]["value"].as_bool()
        ),
        (Some(true), Some(true)),
        "{all}"
    );

    let (s, _) = app
        .api_put("/system/configs", json!({"no.such.key": true}))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = app
        .api_put("/system/configs", json!({AUTOCLOSE: "yes"}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    assert_eq!(
        app.api_delete(&format!("/system/configs/{AUTOCLOSE}"))
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    let (_, v) = app.api_get(&format!("/system/configs/{AUTOCLOSE}")).await;
    assert_eq!(v, json!({"value": false, "global": true}));
}

#[tokio::test]
async fn userinfo_names_the_caller_its_tenant_and_permissions() {
    let app = spawn_app().await;
    let (s, v) = app.api_get("/userinfo").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["username"], "admin", "{v}");
    assert_eq!(v["tenant"], "DEFAULT", "{v}");
    let perms: Vec<&str> = v["permissions"]
        .as_array()
        .expect("permissions")
        .iter()
        .filter_map(|p| p.as_str())
        .collect();
    assert!(
        perms.contains(&"READ_TARGET") && perms.contains(&"APPROVE_AUTO_ASSIGNMENT"),
        "{v}"
    );
}

#[tokio::test]
async fn typed_configuration_values_are_checked_against_their_key() {
    let app = spawn_app().await;
    let (_, all) = app.api_get("/system/configs").await;
    assert_eq!(
        all["action.cleanup.auto.expiry"],
        json!({"value": -1, "global": true}),
        "{all}"
    );
    assert_eq!(
        all["action.cleanup.auto.status"]["value"], "CANCELED,ERROR",
        "{all}"
    );
    assert_eq!(
        all["action.cleanup.onQuotaHit.percent"]["value"], 0,
        "{all}"
    );
    assert_eq!(
        all["action.delete.allowed.statuses"]["value"], "CANCELED,ERROR,FINISHED",
        "{all}"
    );

    const INVALID: &str = "hawkbit.server.error.configValueInvalid";
    for (key, bad) in [
        ("action.cleanup.auto.expiry", json!("soon")),
        ("action.cleanup.auto.expiry", json!(1.5)),
        ("action.cleanup.onQuotaHit.percent", json!(5_000_000_000i64)),
        ("action.delete.allowed.statuses", json!("FINISHED,DONE")),
        ("action.delete.allowed.statuses", json!(["FINISHED"])),
        (AUTOCLOSE, json!("yes")),
    ] {
        let (s, e) = app
            .api_put(&format!("/system/configs/{key}"), json!({"value": bad}))
            .await;
        assert_error(s, &e, StatusCode::BAD_REQUEST, INVALID);
    }
    // A bad value in a bulk change writes nothing, the good ones included.
    let (s, e) = app
        .api_put(
            "/system/configs",
            json!({"action.cleanup.onQuotaHit.percent": 20, "action.cleanup.auto.expiry": "x"}),
        )
        .await;
    assert_error(s, &e, StatusCode::BAD_REQUEST, INVALID);
    let (_, v) = app
        .api_get("/system/configs/action.cleanup.onQuotaHit.percent")
        .await;
    assert_eq!(v, json!({"value": 0, "global": true}));

    let (s, b) = app
        .api_put(
            "/system/configs",
            json!({"action.cleanup.onQuotaHit.percent": 20, "action.delete.allowed.statuses": "error; canceled", AUTOCLOSE: true}),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    let (_, v) = app
        .api_get("/system/configs/action.delete.allowed.statuses")
        .await;
    assert_eq!(
        (v["value"].as_str(), v["global"].as_bool()),
        (Some("ERROR,CANCELED"), Some(false)),
        "{v}"
    );
    let (_, v) = app
        .api_get("/system/configs/action.cleanup.onQuotaHit.percent")
        .await;
    assert_eq!(v["value"], 20, "{v}");

    let (s, _) = app
        .api_delete("/system/configs/action.cleanup.onQuotaHit.percent")
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, v) = app
        .api_get("/system/configs/action.cleanup.onQuotaHit.percent")
        .await;
    assert_eq!(v, json!({"value": 0, "global": true}));
    let (s, _) = app.api_delete("/system/configs/no.such.key").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}
