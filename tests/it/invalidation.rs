//! Distribution-set invalidation through REST and a real DMF connector (rollouts.md §6.6, §6.7,
//! §11.6 I01–I03): `none`, `soft` and `force`, with what devices receive and who may do it.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

const FAST: &[&str] = &["--rollout-tick-ms", "50"];
const ERR_INVALID: &str = "hawkbit.server.error.distributionset.invalid";

/// Create a rollout of `ds` over exactly `targets`; returns its id once it is READY.
async fn ready_rollout(app: &TestApp, name: &str, ds: i64, targets: &[&str], groups: u32) -> i64 {
    let body = json!({"name": name, "distributionSetId": ds, "amountGroups": groups,
                      "targetFilterQuery": format!("controllerId=in=({})", targets.join(","))});
    let id = app.create_rollout(body).await["id"]
        .as_i64()
        .expect("rollout id");
    app.wait_rollout(id, |r| r["status"] == "ready").await;
    id
}

/// Poll until the rollout is gone (hard delete).
async fn wait_gone(app: &TestApp, id: i64) {
    poll(Duration::from_secs(15), async || {
        match app.api_get(&format!("/rollouts/{id}")).await.0 {
            StatusCode::NOT_FOUND => Ok(()),
            _ => Err(format!("rollout {id} never hard-deleted")),
        }
    })
    .await
}

async fn deployments(app: &mut TestApp, n: usize) -> BTreeSet<(String, i64)> {
    app.collect_distinct(&["DOWNLOAD_AND_INSTALL"], n).await
}

async fn cancels(app: &mut TestApp, n: usize) -> BTreeSet<(String, i64)> {
    app.collect_distinct(&["CANCEL_DOWNLOAD"], n).await
}

/// Assign `ds` to one target directly; returns the action id.
async fn assign(app: &TestApp, ds: i64, target: &str) -> i64 {
    app.assign(ds, json!([{"id": target}])).await[0]
}

async fn invalidate(app: &TestApp, ds: i64, kind: &str) -> (StatusCode, Value) {
    app.api_post(
        &format!("/distributionsets/{ds}/invalidate"),
        json!({"actionCancelationType": kind}),
    )
    .await
}

/// The newest history entry of an action.
async fn last_history(app: &TestApp, target: &str, id: i64) -> Value {
    let (s, v) = app
        .api_get(&format!("/targets/{target}/actions/{id}/status?limit=1"))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["content"][0].clone()
}

#[tokio::test]
async fn invalidation_none_blocks_new_use_but_leaves_rollouts_and_actions_running() {
    let mut app = spawn_app_with(FAST).await;
    app.fleet("n", 4).await;
    let ds = app.create_set("fw").await;
    let manual = assign(&app, ds, "n-00").await;
    deployments(&mut app, 1).await;
    let rollout = ready_rollout(&app, "later", ds, &["n-01", "n-02", "n-03"], 1).await;
    let (s, f) = app
        .api_post(
            "/targetfilters",
            json!({"name": "none", "query": "name==none-*"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{f}");
    let filter = f["id"].as_i64().expect("filter id");
    // An auto-assignment of the set that matches no target (it would deploy otherwise).
    let (s, v) = app
        .api_post(
            &format!("/targetfilters/{filter}/autoAssignDS"),
            json!({"id": ds, "type": "forced"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, f) = app.api_get(&format!("/targetfilters/{filter}")).await;
    assert_eq!(f["autoAssignDistributionSet"], ds, "{f}");

    // Bad requests change nothing.
    let (s, e) = invalidate(&app, ds, "hard").await;
    assert_eq!(
        (s, e["errorCode"].as_str()),
        (
            StatusCode::BAD_REQUEST,
            Some("hawkbit.server.error.rest.body.notReadable")
        )
    );
    let (s, e) = invalidate(&app, 999999, "none").await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{e}");
    let (_, d) = app.api_get(&format!("/distributionsets/{ds}")).await;
    assert_eq!(d["valid"], true, "{d}");

    // A missing type means none.
    let (s, e) = app
        .api_post(&format!("/distributionsets/{ds}/invalidate"), json!({}))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{e}");
    let (_, d) = app.api_get(&format!("/distributionsets/{ds}")).await;
    assert_eq!(d["valid"], false, "{d}");
    let (_, f) = app.api_get(&format!("/targetfilters/{filter}")).await;
    assert!(f.get("autoAssignDistributionSet").is_none(), "{f}");
    assert!(f.get("autoAssignActionType").is_none(), "{f}");

    // Nothing is cancelled: the rollout stays READY, the manual action runs on.
    app.assert_quiet(400).await;
    app.wait_rollout(rollout, |r| r["status"] == "ready").await;
    assert_eq!(app.action("n-00", manual).await["status"], "running");
    app.wait_target("n-00", |t| t["updateStatus"] == "pending")
        .await;
    // Invalidating again is fine.
    let (s, _) = invalidate(&app, ds, "none").await;
    assert_eq!(s, StatusCode::NO_CONTENT);

    // No new rollout or assignment with an invalid set.
    let (s, e) = app
        .api_post(
            "/rollouts",
            json!({"name": "new", "distributionSetId": ds, "targetFilterQuery": "name==*"}),
        )
        .await;
    assert_eq!(
        (s, e["errorCode"].as_str()),
        (StatusCode::BAD_REQUEST, Some(ERR_INVALID))
    );
    let (s, e) = app
        .api_post(
            &format!("/distributionsets/{ds}/assignedTargets"),
            json!([{"id": "n-01"}]),
        )
        .await;
    assert_eq!(
        (s, e["errorCode"].as_str()),
        (StatusCode::BAD_REQUEST, Some(ERR_INVALID))
    );

    // The READY rollout can still run.
    app.start_rollout(rollout).await;
    let sent: BTreeSet<String> = deployments(&mut app, 3)
        .await
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    assert_eq!(
        sent,
        BTreeSet::from(["n-01", "n-02", "n-03"].map(String::from))
    );
}

#[tokio::test]
async fn invalidation_soft_stops_rollouts_and_cancels_actions_with_update_rollout_only() {
    let users = r#"
[[users]]
username = "repo"
password = "repo-pw"
tenant = "DEFAULT"
permissions = ["READ_TARGET", "UPDATE_TARGET", "READ_REPOSITORY", "UPDATE_REPOSITORY", "READ_ROLLOUT"]
"#;
    let mut app = spawn_app_with_users(users, FAST).await;
    app.fleet("s", 6).await;
    let ds = app.create_set("fw").await;
    let manual = assign(&app, ds, "s-04").await;
    deployments(&mut app, 1).await;
    let running = ready_rollout(&app, "running", ds, &["s-00", "s-01", "s-02", "s-03"], 2).await;
    let waiting = ready_rollout(&app, "waiting", ds, &["s-05"], 1).await;
    app.start_rollout(running).await;
    let first_group = deployments(&mut app, 2).await;

    // Without UPDATE_ROLLOUT: soft is refused and changes nothing; none is allowed.
    let as_repo = |kind: &'static str| {
        let app = &app;
        async move {
            app.api_as(
                "repo",
                "repo-pw",
                Method::POST,
                &format!("/distributionsets/{ds}/invalidate"),
                Some(json!({"actionCancelationType": kind})),
            )
            .await
        }
    };
    let (s, e) = as_repo("soft").await;
    assert_eq!(
        (s, e["errorCode"].as_str()),
        (
            StatusCode::FORBIDDEN,
            Some("hawkbit.server.error.insufficientPermission")
        )
    );
    let (_, d) = app.api_get(&format!("/distributionsets/{ds}")).await;
    assert_eq!(d["valid"], true);
    let (s, e) = as_repo("none").await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{e}");
    app.wait_rollout(running, |r| r["status"] == "running")
        .await;

    // Soft: both rollouts stop; every open action of the set is asked to cancel.
    let (s, e) = invalidate(&app, ds, "soft").await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{e}");
    let mut want = first_group.clone();
    want.insert(("s-04".to_owned(), manual));
    assert_eq!(cancels(&mut app, 3).await, want);
    let v = app
        .wait_rollout(running, |r| r["status"] == "stopped")
        .await;
    assert_eq!(v["totalTargetsPerStatus"]["running"], 2, "{v}");
    assert_eq!(v["totalTargetsPerStatus"]["scheduled"], 0, "{v}");
    app.wait_rollout(waiting, |r| r["status"] == "stopped")
        .await;
    let a = app.action("s-04", manual).await;
    assert_eq!(
        (a["status"].as_str(), a["active"].as_bool()),
        (Some("canceling"), Some(true))
    );
    let h = last_history(&app, "s-04", manual).await;
    assert_eq!(h["type"], "canceling", "{h}");
    assert_eq!(
        h["messages"],
        json!(["Update Server: A cancellation has been performed by server."])
    );
    app.wait_target("s-04", |t| t["updateStatus"] == "pending")
        .await;
    app.assert_quiet(300).await;

    // The device confirms; a second soft invalidation has nothing left to cancel.
    app.send(status(manual, "CANCELED")).await;
    app.wait_action("s-04", manual, |a| a["status"] == "canceled")
        .await;
    let (s, _) = invalidate(&app, ds, "soft").await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    app.assert_quiet(300).await;
}

#[tokio::test]
async fn invalidation_force_deletes_rollouts_and_closes_actions_after_a_cancel() {
    let mut app = spawn_app_with(FAST).await;
    app.fleet("f", 6).await;
    let ds = app.create_set("fw").await;
    let manual = assign(&app, ds, "f-04").await;
    deployments(&mut app, 1).await;
    // A cancelled-but-unconfirmed action is closed without a second cancel.
    let cancelling = assign(&app, ds, "f-05").await;
    deployments(&mut app, 1).await;
    let (s, e) = app
        .api_delete(&format!("/targets/f-05/actions/{cancelling}"))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{e}");
    cancels(&mut app, 1).await;
    let started = ready_rollout(&app, "started", ds, &["f-00", "f-01"], 1).await;
    let never = ready_rollout(&app, "never", ds, &["f-02", "f-03"], 2).await;
    app.start_rollout(started).await;
    let running = deployments(&mut app, 2).await;

    let (s, e) = invalidate(&app, ds, "force").await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{e}");
    // Every device with an open action of the set is told to cancel it (§6.7) …
    let mut want = running.clone();
    want.insert(("f-04".to_owned(), manual));
    assert_eq!(cancels(&mut app, 3).await, want);
    app.assert_quiet(300).await;
    // … and the actions are closed server-side without waiting for an answer.
    for (target, id) in [("f-04", manual), ("f-05", cancelling)] {
        let a = app.action(target, id).await;
        assert_eq!(
            (a["status"].as_str(), a["active"].as_bool()),
            (Some("canceled"), Some(false)),
            "{a}"
        );
        let h = last_history(&app, target, id).await;
        assert_eq!(
            h["messages"],
            json!(["Update Server: A force quit has been performed by server."])
        );
        app.wait_target(target, |t| t["updateStatus"] == "in_sync")
            .await;
    }
    let (_, acts) = app
        .api_get("/actions?q=status%3D%3Dscheduled%2Cactive%3D%3Dtrue")
        .await;
    assert_eq!(acts["total"], 0, "{acts}");

    // The never-started rollout disappears; the started one ends soft-deleted.
    wait_gone(&app, never).await;
    let v = app
        .wait_rollout(started, |r| r["status"] == "deleted")
        .await;
    assert_eq!(v["deleted"], true);
    assert_eq!(v["totalTargetsPerStatus"]["cancelled"], 2, "{v}");
    let (_, d) = app.api_get(&format!("/distributionsets/{ds}")).await;
    assert_eq!(d["valid"], false);
}
