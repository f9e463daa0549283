//! Rollouts through REST and real DMF connectors (rollouts.md §11): creation and auto-split,
//! the event-driven cascade, error shutdown (THRESHOLD and COUNT), success PAUSE and resume,
//! trigger next group, stop, delete, retry, approval with permissions and webhook, dynamic
//! enrolment, multi-assignment, and two service instances on one database.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

const FAST: &[&str] = &["--rollout-tick-ms", "50", "--dynamic-idle-ms", "0"];

async fn app() -> TestApp {
    spawn_app_with(FAST).await
}

async fn groups(app: &TestApp, id: i64) -> Vec<Value> {
    let (s, v) = app
        .api_get(&format!(
            "/rollouts/{id}/deploygroups?representation=full&limit=500"
        ))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["content"].as_array().cloned().unwrap_or_default()
}

fn statuses(gs: &[Value]) -> Vec<String> {
    gs.iter()
        .map(|g| g["status"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Collect `n` deployments of actions not in `seen` (repeats of a known action are skipped).
async fn new_deployments(
    app: &mut TestApp,
    n: usize,
    seen: &mut BTreeSet<i64>,
) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    while out.len() < n {
        for (t, a) in app.deployments(1).await {
            if seen.insert(a) {
                out.push((t, a));
            }
        }
    }
    out
}

async fn report_all(app: &TestApp, actions: &[(String, i64)], st: &str) {
    for (_, a) in actions {
        app.send(status(*a, st)).await;
    }
}

async fn ready(app: &TestApp, id: i64) -> Value {
    app.wait_rollout(id, |r| r["status"] == "ready").await
}

#[tokio::test]
async fn creation_validates_and_auto_splits_like_hawkbit() {
    let app = app().await;
    app.fleet("c", 9).await;
    let ds = app.create_set("fw").await;

    // §11.1 C02: the POST answer, before any executor step.
    let r = app
        .create_rollout(
            json!({"name": "r1", "distributionSetId": ds, "targetFilterQuery": "controllerId==c-*",
               "amountGroups": 4, "weight": 66}),
        )
        .await;
    assert_eq!(r["totalTargets"], 9);
    assert_eq!(r["totalTargetsPerStatus"]["notstarted"], 9);
    assert_eq!(r["totalGroups"], 4);
    assert_eq!(r["type"], "forced");
    assert_eq!(r["forcetime"], 0);
    assert_eq!(r["weight"], 66);
    assert_eq!(r["dynamic"], false);
    assert!(r.get("startAt").is_none());
    assert!(
        r["_links"]["start"]["href"]
            .as_str()
            .unwrap()
            .ends_with("/start")
    );
    let id = r["id"].as_i64().unwrap();
    // C05: 9 targets in 4 groups → 2, 2, 3, 2.
    ready(&app, id).await;
    let gs = groups(&app, id).await;
    let sizes: Vec<i64> = gs
        .iter()
        .map(|g| g["totalTargets"].as_i64().unwrap())
        .collect();
    assert_eq!(sizes, vec![2, 2, 3, 2]);
    assert_eq!(gs[0]["targetPercentage"], 25.0);
    assert_eq!(gs[0]["name"], "group-1");
    assert_eq!(
        gs[0]["successCondition"],
        json!({"condition": "THRESHOLD", "expression": "50"})
    );
    // Membership is deterministic: ordered by target id.
    let (_, t) = app
        .api_get(&format!(
            "/rollouts/{id}/deploygroups/{}/targets",
            gs[0]["id"]
        ))
        .await;
    let members: BTreeSet<String> = t["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["controllerId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        members,
        BTreeSet::from(["c-00".to_owned(), "c-01".to_owned()])
    );

    // Validation (§3.1, C08–C21).
    let bad = |body: Value| {
        let app = &app;
        async move { app.api_post("/rollouts", body).await }
    };
    let (s, e) =
        bad(json!({"name": "r1", "distributionSetId": ds, "targetFilterQuery": "name==*"})).await;
    assert_eq!(
        (s, e["errorCode"].as_str()),
        (
            StatusCode::CONFLICT,
            Some("hawkbit.server.error.repo.entityAlreadyExists")
        )
    );
    let (s, e) =
        bad(json!({"name": "x", "distributionSetId": ds, "targetFilterQuery": "name=test"})).await;
    assert_eq!(
        (s, e["errorCode"].as_str()),
        (
            StatusCode::BAD_REQUEST,
            Some("hawkbit.server.error.rest.param.rsqlParamSyntax")
        )
    );
    let (s, e) =
        bad(json!({"name": "x", "distributionSetId": ds, "targetFilterQuery": "nosuchfield==1"}))
            .await;
    assert_eq!(
        (s, e["errorCode"].as_str()),
        (
            StatusCode::BAD_REQUEST,
            Some("hawkbit.server.error.rest.param.rsqlInvalidField")
        )
    );
    let (s, e) =
        bad(json!({"name": "x", "distributionSetId": ds, "targetFilterQuery": "id==notExisting"}))
            .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("does not match any existing")
    );
    let (s, _) =
        bad(json!({"name": "x", "distributionSetId": 999999, "targetFilterQuery": "name==*"}))
            .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, e) = bad(json!({"name": "x", "distributionSetId": ds, "targetFilterQuery": "name==*", "amountGroups": 501})).await;
    assert_eq!(
        (s, e["errorCode"].as_str()),
        (
            StatusCode::TOO_MANY_REQUESTS,
            Some("hawkbit.server.error.quota.tooManyEntries")
        )
    );
    let (s, e) = bad(json!({"name": "x", "distributionSetId": ds, "targetFilterQuery": "name==*", "weight": 1001})).await;
    assert_eq!(
        (s, e["errorCode"].as_str()),
        (
            StatusCode::BAD_REQUEST,
            Some("hawkbit.server.error.repo.constraintViolation")
        )
    );
    let (s, _) = bad(
        json!({"name": "x", "distributionSetId": ds, "targetFilterQuery": "name==*",
                            "groups": [{"name": "a", "targetPercentage": 101}]}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, e) = bad(json!({"name": "x", "distributionSetId": ds, "targetFilterQuery": "name==*",
                            "groups": [{"name": "a", "targetPercentage": 20}, {"name": "b", "targetPercentage": 50}]})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("don't match all targets"),
        "{e}"
    );
    let (s, _) = bad(
        json!({"name": "x", "distributionSetId": ds, "targetFilterQuery": "name==*",
                            "groups": [{"name": "a"}], "dynamic": true}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, e) = app.api(reqwest::Method::POST, "/rollouts", None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");

    // Custom groups: percent from the rest (C07 shape): [c-0* 100 %, 50 %, 100 %] over 9.
    let r = app.create_rollout(json!({"name": "custom", "distributionSetId": ds, "targetFilterQuery": "name==*",
               "groups": [
                   {"name": "canary", "targetFilterQuery": "controllerId==c-00", "targetPercentage": 100},
                   {"name": "half", "targetPercentage": 50},
                   {"name": "rest", "targetPercentage": 100}]}),
    )
    .await;
    let id = r["id"].as_i64().unwrap();
    ready(&app, id).await;
    let sizes: Vec<i64> = groups(&app, id)
        .await
        .iter()
        .map(|g| g["totalTargets"].as_i64().unwrap())
        .collect();
    assert_eq!(sizes, vec![1, 4, 4]);
}

#[tokio::test]
async fn reports_cascade_group_after_group_until_finished() {
    let mut app = app().await;
    app.fleet("d", 6).await;
    let ds = app.create_set("fw").await;
    let r = app.create_rollout(json!({"name": "wave", "distributionSetId": ds, "targetFilterQuery": "controllerId==d-*",
               "amountGroups": 3,
               "successCondition": {"condition": "THRESHOLD", "expression": "50"},
               "errorCondition": {"condition": "THRESHOLD", "expression": "80"}}),
    )
    .await;
    let id = r["id"].as_i64().unwrap();
    ready(&app, id).await;
    app.start_rollout(id).await;

    // Group 1: two devices get DOWNLOAD_AND_INSTALL; nobody else.
    let g1 = app.deployments(2).await;
    let names: BTreeSet<&str> = g1.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(names, BTreeSet::from(["d-00", "d-01"]));
    app.assert_quiet(300).await;
    let v = app.wait_rollout(id, |r| r["status"] == "running").await;
    assert_eq!(v["totalTargetsPerStatus"]["running"], 2);
    assert_eq!(v["totalTargetsPerStatus"]["scheduled"], 4);
    assert_eq!(
        statuses(&groups(&app, id).await),
        vec!["running", "scheduled", "scheduled"]
    );

    // One FINISHED = 50 %: that report itself starts group 2. Measure the cascade latency.
    let sent = Instant::now();
    app.send(status(g1[0].1, "FINISHED")).await;
    let g2 = app.deployments(2).await;
    let latency = sent.elapsed();
    println!("cascade latency (report published → next group's first message): {latency:?}");
    assert!(g2.iter().all(|(t, _)| t == "d-02" || t == "d-03"), "{g2:?}");
    assert_eq!(
        statuses(&groups(&app, id).await),
        vec!["running", "running", "scheduled"]
    );

    // Finishing everything finishes groups and the rollout.
    report_all(&app, &g1[1..], "FINISHED").await;
    report_all(&app, &g2, "FINISHED").await;
    let g3 = app.deployments(2).await;
    report_all(&app, &g3, "FINISHED").await;
    let v = app.wait_rollout(id, |r| r["status"] == "finished").await;
    assert_eq!(v["totalTargetsPerStatus"]["finished"], 6);
    assert_eq!(v["totalTargetsPerStatus"]["notstarted"], 0);
    assert_eq!(statuses(&groups(&app, id).await), vec!["finished"; 3]);
    let t = app
        .wait_target("d-05", |t| t["updateStatus"] == "in_sync")
        .await;
    assert_eq!(t["updateStatus"], "in_sync");
    // Actions are filterable by rollout and carry its id.
    let (_, acts) = app.api_get(&format!("/actions?q=rollout.id=={id}")).await;
    assert_eq!(acts["total"], 6);
    assert_eq!(acts["content"][0]["rollout"], id);
}

#[tokio::test]
async fn error_threshold_and_count_shut_the_rollout_down_until_resumed() {
    let mut app = app().await;
    app.fleet("e", 8).await;
    app.fleet("f", 4).await;
    let ds = app.create_set("fw").await;
    // THRESHOLD 40 %: 1 of 2 errors = 50 % > 40 % → emergency shutdown.
    let r = app
        .create_rollout(
            json!({"name": "thr", "distributionSetId": ds, "targetFilterQuery": "controllerId==e-*",
               "amountGroups": 4,
               "successCondition": {"condition": "THRESHOLD", "expression": "100"},
               "errorCondition": {"condition": "THRESHOLD", "expression": "40"}}),
        )
        .await;
    let id = r["id"].as_i64().unwrap();
    ready(&app, id).await;
    app.start_rollout(id).await;
    let g1 = app.deployments(2).await;
    app.send(status(g1[0].1, "ERROR")).await;
    let v = app.wait_rollout(id, |r| r["status"] == "paused").await;
    assert_eq!(v["totalTargetsPerStatus"]["error"], 1);
    assert_eq!(
        statuses(&groups(&app, id).await)[..2],
        ["error", "scheduled"]
    );
    // The still running device keeps its action; nobody else is contacted.
    app.assert_quiet(400).await;
    // Resume starts the group after the failed one.
    let (s, _) = app
        .api_post(&format!("/rollouts/{id}/resume"), json!({}))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let g2 = app.deployments(2).await;
    assert_eq!(g2.len(), 2);
    assert_eq!(statuses(&groups(&app, id).await)[..2], ["error", "running"]);
    // Pause/resume from wrong states.
    let (s, e) = app
        .api_post(&format!("/rollouts/{id}/resume"), json!({}))
        .await;
    assert_eq!(
        (s, e["errorCode"].as_str()),
        (
            StatusCode::BAD_REQUEST,
            Some("hawkbit.server.error.rollout.illegalState")
        )
    );

    // COUNT 1: more than one failed action → shutdown; exactly one does not.
    let r = app
        .create_rollout(
            json!({"name": "cnt", "distributionSetId": ds, "targetFilterQuery": "controllerId==f-*",
               "amountGroups": 2,
               "successCondition": {"condition": "THRESHOLD", "expression": "100"},
               "errorCondition": {"condition": "COUNT", "expression": "1"}}),
        )
        .await;
    let id2 = r["id"].as_i64().unwrap();
    ready(&app, id2).await;
    let gs = groups(&app, id2).await;
    assert_eq!(
        gs[0]["errorCondition"],
        json!({"condition": "COUNT", "expression": "1"})
    );
    // 4 targets in 2 groups of 2: one error is not more than 1, two are.
    app.start_rollout(id2).await;
    let c1 = app.deployments(2).await;
    app.send(status(c1[0].1, "ERROR")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, v) = app.api_get(&format!("/rollouts/{id2}")).await;
    assert_eq!(v["status"], "running", "one error is not more than 1");
    app.send(status(c1[1].1, "ERROR")).await;
    app.wait_rollout(id2, |r| r["status"] == "paused").await;
    assert_eq!(
        statuses(&groups(&app, id2).await),
        vec!["error", "scheduled"]
    );
    // Stopping the paused rollout removes the SCHEDULED actions of the group that never ran
    // (nothing reached those devices) and ends every group.
    let (_, acts) = app
        .api_get(&format!("/actions?q=rollout.id=={id2};status==scheduled"))
        .await;
    assert_eq!(acts["total"], 2);
    let (s, _) = app
        .api_post(&format!("/rollouts/{id2}/stop"), json!({}))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let v = app.wait_rollout(id2, |r| r["status"] == "stopped").await;
    assert_eq!(v["totalTargetsPerStatus"]["scheduled"], 0);
    let (_, acts) = app
        .api_get(&format!("/actions?q=rollout.id=={id2};status==scheduled"))
        .await;
    assert_eq!(acts["total"], 0);
    assert_eq!(
        statuses(&groups(&app, id2).await),
        vec!["error", "finished"]
    );
}

#[tokio::test]
async fn success_pause_trigger_next_group_and_stop() {
    let mut app = app().await;
    app.fleet("p", 6).await;
    let ds = app.create_set("fw").await;
    let r = app.create_rollout(json!({"name": "canary", "distributionSetId": ds, "targetFilterQuery": "controllerId==p-*",
               "amountGroups": 3,
               "successCondition": {"condition": "THRESHOLD", "expression": "100"},
               "successAction": {"action": "PAUSE", "expression": ""}}),
    )
    .await;
    let id = r["id"].as_i64().unwrap();
    ready(&app, id).await;
    app.start_rollout(id).await;
    let g1 = app.deployments(2).await;
    report_all(&app, &g1, "FINISHED").await;
    // Success action PAUSE: group 1 finished, rollout paused, group 2 waits.
    app.wait_rollout(id, |r| r["status"] == "paused").await;
    assert_eq!(
        statuses(&groups(&app, id).await),
        vec!["finished", "scheduled", "scheduled"]
    );
    app.assert_quiet(300).await;
    // Resume starts the next group immediately (§6.2).
    let (s, _) = app
        .api_post(&format!("/rollouts/{id}/resume"), json!({}))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    app.deployments(2).await;
    // Trigger next group ignores thresholds; then nothing is left to trigger.
    let (s, _) = app
        .api_post(&format!("/rollouts/{id}/triggerNextGroup"), json!({}))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let g3 = app.deployments(2).await;
    let (s, e) = app
        .api_post(&format!("/rollouts/{id}/triggerNextGroup"), json!({}))
        .await;
    assert_eq!(
        (s, e["errorCode"].as_str()),
        (
            StatusCode::BAD_REQUEST,
            Some("hawkbit.server.error.rollout.illegalState")
        )
    );

    // Stop: every running device gets CANCEL_DOWNLOAD; after CANCELED the rollout is stopped.
    let (s, _) = app
        .api_post(&format!("/rollouts/{id}/stop"), json!({}))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let mut cancelled = Vec::new();
    for _ in 0..4 {
        let d = app.next_of(&["CANCEL_DOWNLOAD"]).await;
        cancelled.push(body_json(&d)["actionId"].as_i64().unwrap());
    }
    assert!(g3.iter().all(|(_, a)| cancelled.contains(a)));
    let v = app.wait_rollout(id, |r| r["status"] == "stopped").await;
    assert_eq!(
        v["totalTargetsPerStatus"]["running"], 4,
        "CANCELING counts as running"
    );
    for a in &cancelled {
        app.send(status(*a, "CANCELED")).await;
    }
    let v = app
        .wait_rollout(id, |r| r["totalTargetsPerStatus"]["cancelled"] == 4)
        .await;
    assert_eq!(v["totalTargetsPerStatus"]["finished"], 2);
    assert_eq!(statuses(&groups(&app, id).await), vec!["finished"; 3]);
    let (s, _) = app
        .api_post(&format!("/rollouts/{id}/stop"), json!({}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn delete_retry_and_soft_deleted_listing() {
    let mut app = app().await;
    app.fleet("x", 4).await;
    let ds = app.create_set("fw").await;
    // A never-started rollout disappears completely.
    let r = app.create_rollout(json!({"name": "gone", "distributionSetId": ds, "targetFilterQuery": "name==*", "amountGroups": 2})).await;
    let gone = r["id"].as_i64().unwrap();
    ready(&app, gone).await;
    let (s, _) = app.api_delete(&format!("/rollouts/{gone}")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.api_get(&format!("/rollouts/{gone}")).await.0 != StatusCode::NOT_FOUND {
        assert!(Instant::now() < deadline, "never hard-deleted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A finished rollout with failures: retry targets exactly the failed devices.
    let r = app
        .create_rollout(
            json!({"name": "main", "distributionSetId": ds, "targetFilterQuery": "name==*",
                                "errorCondition": {"condition": "THRESHOLD", "expression": "100"}}),
        )
        .await;
    let id = r["id"].as_i64().unwrap();
    ready(&app, id).await;
    let (s, e) = app
        .api_post(&format!("/rollouts/{id}/retry"), json!({}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    app.start_rollout(id).await;
    let all = app.deployments(4).await;
    report_all(&app, &all[..3], "FINISHED").await;
    report_all(&app, &all[3..], "ERROR").await;
    app.wait_rollout(id, |r| r["status"] == "finished").await;
    let (s, retry) = app
        .api_post(&format!("/rollouts/{id}/retry"), json!({}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{retry}");
    assert_eq!(retry["name"], "main_retry");
    assert_eq!(retry["totalTargets"], 1);
    assert_eq!(retry["targetFilterQuery"], format!("failedrollout=={id}"));
    let rid = retry["id"].as_i64().unwrap();
    ready(&app, rid).await;
    app.start_rollout(rid).await;
    let again = app.deployments(1).await;
    assert_eq!(again[0].0, all[3].0);
    let (s, _) = app
        .api_post(&format!("/rollouts/{id}/retry"), json!({}))
        .await;
    assert_eq!(s, StatusCode::CONFLICT);

    // Deleting a started rollout soft-deletes it: readable, read-only, hidden from lists.
    let (s, _) = app.api_delete(&format!("/rollouts/{rid}")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let v = app.wait_rollout(rid, |r| r["status"] == "deleted").await;
    assert_eq!(v["deleted"], true);
    assert_eq!(v["totalTargetsPerStatus"]["cancelled"], 1);
    let (s, e) = app
        .api_put(&format!("/rollouts/{rid}"), json!({"name": "n"}))
        .await;
    assert_eq!(
        (s, e["errorCode"].as_str()),
        (
            StatusCode::FORBIDDEN,
            Some("hawkbit.server.error.entityReadOnly")
        )
    );
    let (_, l) = app.api_get("/rollouts").await;
    assert_eq!(l["total"], 1);
    let (_, l) = app
        .api_get("/rollouts?soft_deleted_mode=ONLY_SOFT_DELETED")
        .await;
    assert_eq!(l["total"], 1);
    let (_, l) = app
        .api_get("/rollouts?soft_deleted_mode=INCLUDE_SOFT_DELETED&q=name==main*")
        .await;
    assert_eq!(l["total"], 2);
    assert!(
        l["content"][0].get("totalTargetsPerStatus").is_none(),
        "compact list"
    );
    let (_, st) = app
        .api_get(&format!("/distributionsets/{ds}/statistics/rollouts"))
        .await;
    assert_eq!(st["rollouts"]["FINISHED"], 1);
}

#[tokio::test]
async fn approval_waits_for_an_approver_and_calls_the_webhook() {
    let (hook, mut calls) = webhook_sink(0).await;
    let users = r#"
[[users]]
username = "ops"
password = "ops-pw"
tenant = "DEFAULT"
permissions = ["READ_TARGET", "READ_REPOSITORY", "READ_ROLLOUT", "CREATE_ROLLOUT", "HANDLE_ROLLOUT"]

[[users]]
username = "qa"
password = "qa-pw"
tenant = "DEFAULT"
roles = ["ROLE_ROLLOUT_ADMIN"]

[[users]]
username = "other"
password = "other-pw"
tenant = "ACME"
roles = ["ROLE_TENANT_ADMIN"]
"#;
    let mut args = FAST.to_vec();
    args.extend(["--approval-webhook", &hook]);
    let app = spawn_app_with_users(users, &args).await;
    app.fleet("a", 2).await;
    let ds = app.create_set("fw").await;
    let (s, _) = app
        .api_put(
            "/system/configs/rollout.approval.enabled",
            json!({"value": true}),
        )
        .await;
    assert!(s.is_success());
    let post = |user: &'static str, pass: &'static str, path: String, body: Option<Value>| {
        let app = &app;
        async move {
            app.api_as(user, pass, reqwest::Method::POST, &path, body)
                .await
        }
    };
    let (s, r) = post(
        "ops",
        "ops-pw",
        "/rollouts".into(),
        Some(json!({"name": "needs-ok", "distributionSetId": ds, "targetFilterQuery": "name==*"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    let id = r["id"].as_i64().unwrap();
    app.wait_rollout(id, |r| r["status"] == "waiting_for_approval")
        .await;
    let call = tokio::time::timeout(Duration::from_secs(10), calls.recv())
        .await
        .expect("webhook called")
        .unwrap();
    assert_eq!(call["rolloutId"], id);
    assert_eq!(call["tenant"], "DEFAULT");
    assert_eq!(call["createdBy"], "ops");
    assert!(
        call["_links"]["approve"]["href"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/rollouts/{id}/approve"))
    );
    // ops may not approve; another tenant's admin does not even see it.
    let (s, e) = post("ops", "ops-pw", format!("/rollouts/{id}/approve"), None).await;
    assert_eq!(
        (s, e["errorCode"].as_str()),
        (
            StatusCode::FORBIDDEN,
            Some("hawkbit.server.error.insufficientPermission")
        )
    );
    let (s, _) = post("other", "other-pw", format!("/rollouts/{id}/approve"), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = app
        .api_as(
            "other",
            "other-pw",
            reqwest::Method::GET,
            &format!("/rollouts/{id}"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // qa approves with a remark.
    let (s, _) = post(
        "qa",
        "qa-pw",
        format!("/rollouts/{id}/approve?remark=ok%20after%20lab"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let v = app.wait_rollout(id, |r| r["status"] == "ready").await;
    assert_eq!(v["approvalRemark"], "ok after lab");
    assert_eq!(v["approveDecidedBy"], "qa");
    // A creator holding APPROVE_ROLLOUT approves implicitly; deny works from waiting only.
    let (_, r2) = post(
        "qa",
        "qa-pw",
        "/rollouts".into(),
        Some(json!({"name": "self-ok", "distributionSetId": ds, "targetFilterQuery": "name==*"})),
    )
    .await;
    ready(&app, r2["id"].as_i64().unwrap()).await;
    let (_, r3) = post(
        "ops",
        "ops-pw",
        "/rollouts".into(),
        Some(json!({"name": "denied", "distributionSetId": ds, "targetFilterQuery": "name==*"})),
    )
    .await;
    let id3 = r3["id"].as_i64().unwrap();
    app.wait_rollout(id3, |r| r["status"] == "waiting_for_approval")
        .await;
    let (s, _) = post(
        "qa",
        "qa-pw",
        format!("/rollouts/{id3}/deny?remark=no"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    app.wait_rollout(id3, |r| r["status"] == "approval_denied")
        .await;
    let (s, _) = post("qa", "qa-pw", format!("/rollouts/{id3}/start"), None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // startAt needs HANDLE_ROLLOUT: qa (rollout admin) has it.
}

#[tokio::test]
async fn dynamic_rollout_enrols_devices_that_register_later() {
    let mut app = app().await;
    app.fleet("dyn", 1).await;
    let ds = app.create_set("fw").await;
    let r = app.create_rollout(json!({"name": "cont", "distributionSetId": ds, "targetFilterQuery": "controllerId==dyn-*",
               "amountGroups": 1, "dynamic": true,
               "dynamicGroupTemplate": {"nameSuffix": "-dyn", "targetCount": 2},
               "successCondition": {"condition": "THRESHOLD", "expression": "50"}}),
    )
    .await;
    let id = r["id"].as_i64().unwrap();
    ready(&app, id).await;
    let gs = groups(&app, id).await;
    assert_eq!(gs.len(), 2);
    assert_eq!(gs[1]["name"], "group-2-dyn");
    assert_eq!(gs[1]["dynamic"], true);
    app.start_rollout(id).await;
    let first = app.deployments(1).await;
    assert_eq!(first[0].0, "dyn-00");
    // New devices appear after the start: they join the dynamic group, which starts once
    // group 1 succeeded.
    for i in 1..=3 {
        app.send(thing_created(&format!("dyn-{i:02}"))).await;
    }
    app.send(status(first[0].1, "FINISHED")).await;
    // A registration also sends the device its current action, rendered when published: if
    // the device's group started before that, it hears of the same action twice (DMF is
    // at-least-once). Only new actions count here.
    let mut seen: BTreeSet<i64> = first.iter().map(|(_, a)| *a).collect();
    let next = new_deployments(&mut app, 2, &mut seen).await;
    let names: BTreeSet<&str> = next.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(names, BTreeSet::from(["dyn-01", "dyn-02"]));
    // The third one goes to a further dynamic group; the rollout never finishes.
    report_all(&app, &next, "FINISHED").await;
    let last = new_deployments(&mut app, 1, &mut seen).await;
    assert_eq!(last[0].0, "dyn-03");
    let v = app.wait_rollout(id, |r| r["totalTargets"] == 4).await;
    assert_eq!(v["status"], "running");
    assert!(v["totalGroups"].as_i64().unwrap() >= 3);
}

#[tokio::test]
async fn multi_assignment_rollouts_send_multi_action_by_weight() {
    let mut app = app().await;
    app.fleet("m", 1).await;
    let ds1 = app.create_set("app1").await;
    let ds2 = app.create_set("app2").await;
    let (s, _) = app
        .api_put(
            "/system/configs/multi.assignments.enabled",
            json!({"value": true}),
        )
        .await;
    assert!(s.is_success());
    let low = app.create_rollout(json!({"name": "low", "distributionSetId": ds1, "targetFilterQuery": "name==*", "weight": 100})).await;
    let high = app.create_rollout(json!({"name": "high", "distributionSetId": ds2, "targetFilterQuery": "name==*", "weight": 900})).await;
    for r in [&low, &high] {
        let id = r["id"].as_i64().unwrap();
        ready(&app, id).await;
        app.start_rollout(id).await;
        app.wait_rollout(id, |r| r["status"] == "running").await;
    }
    // The last MULTI_ACTION lists both open actions, higher weight first.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let d = app.next_of(&["MULTI_ACTION"]).await;
        let body = body_json(&d);
        let list = body.as_array().unwrap();
        if list.len() == 2 {
            assert_eq!(list[0]["weight"], 900);
            assert_eq!(list[1]["weight"], 100);
            assert_eq!(list[0]["topic"], "DOWNLOAD_AND_INSTALL");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no MULTI_ACTION with both actions"
        );
    }
    // Neither rollout cancelled the other.
    let (_, v) = app.api_get(&format!("/rollouts/{}", low["id"])).await;
    assert_eq!(v["totalTargetsPerStatus"]["running"], 1);
}

#[tokio::test]
async fn two_instances_share_the_work_and_count_every_report_once() {
    let mut app = app().await;
    let second = spawn_peer(&app).await;
    app.fleet("t", 20).await;
    let ds = app.create_set("fw").await;
    let r = app.create_rollout(json!({"name": "pair", "distributionSetId": ds, "targetFilterQuery": "controllerId==t-*",
               "amountGroups": 4, "successCondition": {"condition": "THRESHOLD", "expression": "100"}}),
    )
    .await;
    let id = r["id"].as_i64().unwrap();
    ready(&app, id).await;
    app.start_rollout(id).await;
    // Both instances consume dmf_receiver; every group is started exactly once.
    let mut seen = BTreeSet::new();
    for _ in 0..4 {
        let batch = app.deployments(5).await;
        for (t, a) in &batch {
            assert!(
                seen.insert((t.clone(), *a)),
                "deployment sent twice: {t} {a}"
            );
        }
        report_all(&app, &batch, "RUNNING").await;
        report_all(&app, &batch, "FINISHED").await;
    }
    let v = app.wait_rollout(id, |r| r["status"] == "finished").await;
    assert_eq!(v["totalTargetsPerStatus"]["finished"], 20);
    assert_eq!(seen.len(), 20);
    app.assert_quiet(300).await;
    // The counters the triggers maintained equal a GROUP BY over the actions (§8).
    let pool = app.db.pool().await;
    let drift: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM rollout_group g LEFT JOIN (
             SELECT rollout_group_id AS id,
                    count(*) FILTER (WHERE status = 'SCHEDULED') AS s,
                    count(*) FILTER (WHERE status = 'FINISHED') AS f,
                    count(*) FILTER (WHERE status = 'ERROR') AS e,
                    count(*) FILTER (WHERE status = 'CANCELED') AS c,
                    count(*) FILTER (WHERE status = 'DOWNLOADED') AS d,
                    count(*) AS n
             FROM action WHERE rollout_group_id IS NOT NULL GROUP BY 1) a ON a.id = g.id
         WHERE g.n_scheduled <> COALESCE(a.s, 0) OR g.n_finished <> COALESCE(a.f, 0)
            OR g.n_error <> COALESCE(a.e, 0) OR g.n_canceled <> COALESCE(a.c, 0)
            OR g.n_downloaded <> COALESCE(a.d, 0)
            OR g.n_scheduled + g.n_running + g.n_downloaded + g.n_finished + g.n_error
               + g.n_canceled <> COALESCE(a.n, 0)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(drift, 0, "group counters drifted from the actions");
    pool.close().await;
    // The peer answers for the same data.
    let (s, v2) = second.get(&format!("/rollouts/{id}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v2["status"], "finished");
}

/// A second service instance on the same database and vhost.
struct Peer {
    base: String,
    http: reqwest::Client,
    token: tokio_util::sync::CancellationToken,
}

impl Peer {
    async fn get(&self, path: &str) -> (StatusCode, Value) {
        rest(&self.http, &self.base, reqwest::Method::GET, path, None).await
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

async fn spawn_peer(app: &TestApp) -> Peer {
    let args = serve_args(&app.db.url(), &app.vhost.amqp_url(), FAST);
    let token = tokio_util::sync::CancellationToken::new();
    let (base, _) = start_service(args, token.clone()).await;
    Peer {
        base,
        http: reqwest::Client::new(),
        token,
    }
}

#[tokio::test]
async fn start_at_confirmation_and_a_newer_rollout_taking_over() {
    let mut app = app().await;
    app.fleet("s", 2).await;
    let ds1 = app.create_set("fw1").await;
    let ds2 = app.create_set("fw2").await;

    // startAt in the past: the executor starts it once READY (§4.8).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let a = app
        .create_rollout(
            json!({"name": "a", "distributionSetId": ds1, "targetFilterQuery": "controllerId==s-*",
               "amountGroups": 2, "startAt": now,
               "successCondition": {"condition": "THRESHOLD", "expression": "100"}}),
        )
        .await;
    assert_eq!(a["startAt"], now);
    let a_id = a["id"].as_i64().unwrap();
    let first = app.deployments(1).await;
    assert_eq!(first[0].0, "s-00");
    app.wait_rollout(a_id, |r| r["status"] == "running").await;

    // A newer rollout over the same devices (single assignment): s-00's running action of `a`
    // is cancelled (CANCEL_DOWNLOAD first, the new deployment after CANCELED), s-01's
    // SCHEDULED action of `a` is cancelled silently and s-01 is deployed at once.
    let b = app.create_rollout(json!({"name": "b", "distributionSetId": ds2, "targetFilterQuery": "controllerId==s-*"}),
    )
    .await;
    let b_id = b["id"].as_i64().unwrap();
    ready(&app, b_id).await;
    app.start_rollout(b_id).await;
    let mut cancel = None;
    let mut deployed = Vec::new();
    while cancel.is_none() || deployed.is_empty() {
        let d = app
            .next_of(&["CANCEL_DOWNLOAD", "DOWNLOAD_AND_INSTALL"])
            .await;
        let thing = header(&d, "thingId").unwrap();
        let action = body_json(&d)["actionId"].as_i64().unwrap();
        match header(&d, "topic").as_deref() {
            Some("CANCEL_DOWNLOAD") => {
                assert_eq!((thing.as_str(), action), ("s-00", first[0].1));
                cancel = Some(action);
            }
            _ => deployed.push((thing, action)),
        }
    }
    assert_eq!(deployed[0].0, "s-01");
    let v = app
        .wait_rollout(a_id, |r| r["totalTargetsPerStatus"]["cancelled"] == 1)
        .await;
    assert_eq!(
        v["totalTargetsPerStatus"]["running"], 1,
        "the cancelling action still runs"
    );
    app.send(status(first[0].1, "CANCELED")).await;
    let next = app.deployments(1).await;
    assert_eq!(next[0].0, "s-00");
    app.wait_rollout(a_id, |r| r["totalTargetsPerStatus"]["cancelled"] == 2)
        .await;

    // Confirmation flow: groups require confirmation by default, devices get CONFIRM first.
    let (s, _) = app
        .api_put(
            "/system/configs/user.confirmation.flow.enabled",
            json!({"value": true}),
        )
        .await;
    assert!(s.is_success());
    let c = app.create_rollout(json!({"name": "c", "distributionSetId": ds1, "targetFilterQuery": "controllerId==s-01"}),
    )
    .await;
    let c_id = c["id"].as_i64().unwrap();
    ready(&app, c_id).await;
    assert_eq!(groups(&app, c_id).await[0]["confirmationRequired"], true);
    app.start_rollout(c_id).await;
    // s-01's action of `b` is open: it is cancelled first.
    let d = app.next_of(&["CANCEL_DOWNLOAD"]).await;
    app.send(status(
        body_json(&d)["actionId"].as_i64().unwrap(),
        "CANCELED",
    ))
    .await;
    let d = app.next_of(&["CONFIRM"]).await;
    let action = body_json(&d)["actionId"].as_i64().unwrap();
    app.send(status(action, "CONFIRMED")).await;
    let d = app.next_of(&["DOWNLOAD_AND_INSTALL"]).await;
    assert_eq!(body_json(&d)["actionId"], action);
}

#[tokio::test]
async fn targets_at_their_action_quota_are_left_out_of_a_rollout() {
    let mut args = FAST.to_vec();
    args.extend(["--max-actions-per-target", "2"]);
    let mut app = spawn_app_with(&args).await;
    app.fleet("q", 2).await;
    let ds_old = app.create_set("old").await;
    let ds_new = app.create_set("new").await;
    // q-00 gets two (offline, already finished) actions: its quota is used up.
    for _ in 0..2 {
        let (s, v) = app
            .api_post(
                &format!("/distributionsets/{ds_old}/assignedTargets?offline=true"),
                json!([{"id": "q-00"}]),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    let r = app.create_rollout(json!({"name": "quota", "distributionSetId": ds_new, "targetFilterQuery": "controllerId==q-*"}),
    )
    .await;
    let id = r["id"].as_i64().unwrap();
    ready(&app, id).await;
    app.start_rollout(id).await;
    let d = app.deployments(1).await;
    assert_eq!(d[0].0, "q-01");
    app.assert_quiet(300).await;
    let (_, acts) = app.api_get(&format!("/actions?q=rollout.id=={id}")).await;
    assert_eq!(acts["total"], 1);
    let (_, own) = app.api_get("/targets/q-00/actions").await;
    assert_eq!(own["total"], 2);
    // The rollout completes over the targets it could take.
    app.send(status(d[0].1, "FINISHED")).await;
    let v = app.wait_rollout(id, |r| r["status"] == "finished").await;
    assert_eq!(v["totalTargets"], 1);
}

#[tokio::test]
async fn concurrent_creations_on_one_set_all_succeed() {
    let app = app().await;
    app.fleet("k", 3).await;
    let ds = app.create_set("fw").await;
    let posts = (0..6).map(|i| {
        let app = &app;
        async move {
            app.api_post(
                "/rollouts",
                json!({"name": format!("par-{i}"), "distributionSetId": ds,
                       "targetFilterQuery": "controllerId==k-*"}),
            )
            .await
        }
    });
    for (s, v) in futures::future::join_all(posts).await {
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
    let (_, l) = app.api_get("/rollouts").await;
    assert_eq!(l["total"], 6);
    let (_, set) = app.api_get(&format!("/distributionsets/{ds}")).await;
    assert_eq!(
        set["locked"], true,
        "creating a rollout locks its set implicitly"
    );
}

/// Members of each group of a rollout, by group id order.
async fn members(pool: &sqlx::PgPool, rollout: i64) -> Vec<Vec<i64>> {
    let rows: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT g.id, m.target_id FROM rollout_group g
         JOIN rollout_target_group m ON m.group_id = g.id
         WHERE g.rollout_id = $1 ORDER BY g.id, m.target_id",
    )
    .bind(rollout)
    .fetch_all(pool)
    .await
    .unwrap();
    let mut out: Vec<(i64, Vec<i64>)> = Vec::new();
    for (g, t) in rows {
        match out.last_mut() {
            Some((last, ts)) if *last == g => ts.push(t),
            _ => out.push((g, vec![t])),
        }
    }
    out.into_iter().map(|(_, ts)| ts).collect()
}

#[tokio::test]
async fn a_fill_interrupted_mid_way_resumes_to_the_same_groups() {
    let app = app().await;
    app.fleet("r", 9).await;
    let ds = app.create_set("fw").await;
    let pool = app.db.pool().await;
    for (name, body) in [
        ("auto", json!({"amountGroups": 4})),
        (
            "custom",
            json!({"groups": [
                {"name": "one", "targetFilterQuery": "controllerId==r-00", "targetPercentage": 100},
                {"name": "half", "targetPercentage": 50},
                {"name": "rest", "targetPercentage": 100}]}),
        ),
    ] {
        let mut req = json!({"name": name, "distributionSetId": ds, "targetFilterQuery": "controllerId==r-*"});
        for (k, v) in body.as_object().unwrap() {
            req[k] = v.clone();
        }
        let id = app.create_rollout(req).await["id"].as_i64().unwrap();
        ready(&app, id).await;
        let before = members(&pool, id).await;
        // The state a crash leaves mid-fill: the second group half filled, later groups empty
        // and not READY, the rollout still CREATING.
        sqlx::query(
            "WITH g AS (SELECT id, row_number() OVER (ORDER BY id) AS n FROM rollout_group
                        WHERE rollout_id = $1)
             DELETE FROM rollout_target_group m USING g
             WHERE m.group_id = g.id AND (g.n > 2 OR (g.n = 2 AND m.target_id >
                   (SELECT min(target_id) FROM rollout_target_group WHERE group_id = g.id)))",
        )
        .bind(id)
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query(
            "UPDATE rollout_group SET status = 'CREATING', total_targets = 0
             WHERE rollout_id = $1 AND id > (SELECT min(id) FROM rollout_group WHERE rollout_id = $1)",
        )
        .bind(id)
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query("UPDATE rollout SET status = 'CREATING' WHERE id = $1")
            .bind(id)
            .execute(&pool)
            .await
            .unwrap();
        // The executor's next tick finds the rollout CREATING and continues from there.
        ready(&app, id).await;
        assert_eq!(
            members(&pool, id).await,
            before,
            "{name}: resumed fill differs"
        );
    }
    pool.close().await;
}

/// A group larger than the first inline activation and an executor chunk, with a publisher that
/// claims 7 outbox rows at a time: every device gets its deployment exactly once, in action id
/// order (activation pages through the group from where the last chunk ended; a publishing round
/// keeps claiming after its last row while earlier messages await their confirms).
#[tokio::test]
async fn a_large_group_leaves_complete_once_each_and_in_order() {
    const DEVICES: usize = 1250;
    let mut app = spawn_app_with(&["--rollout-tick-ms", "50", "--outbox-batch", "7"]).await;
    app.fleet("big", DEVICES).await;
    let ds = app.create_set("fw").await;
    let r = app.create_rollout(json!({"name": "big", "distributionSetId": ds, "targetFilterQuery": "controllerId==big-*",
               "amountGroups": 1}),
    )
    .await;
    let id = r["id"].as_i64().unwrap();
    ready(&app, id).await;
    app.start_rollout(id).await;

    let got = app.deployments(DEVICES).await;
    let actions: Vec<i64> = got.iter().map(|(_, a)| *a).collect();
    assert!(
        actions.windows(2).all(|w| w[0] < w[1]),
        "deployments left out of action id order"
    );
    let things: BTreeSet<&str> = got.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(things.len(), DEVICES, "a device got two deployments");
    app.assert_quiet(300).await;
    let v = app
        .wait_rollout(id, |r| r["totalTargetsPerStatus"]["running"] == DEVICES)
        .await;
    assert_eq!(v["totalTargetsPerStatus"]["scheduled"], 0);
    assert_eq!(sql(&app, "SELECT count(*) FROM outbox"), "0");
}
