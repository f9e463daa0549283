//! Actions through HTTP (and AMQP where the device is told): deleting them under the tenant's
//! allowed statuses, switching one to forced, confirming or denying one, their JSON, the
//! automatic cleanup of old closed actions and the purge of targets at their action quota.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error, body_json, poll, spawn_app, spawn_app_with, sql};

const NOT_DELETABLE: &str = "hawkbit.server.error.action.notDeletable";

/// `n` FINISHED (closed) actions of `target` for set `ds`, oldest first.
async fn closed_actions(app: &TestApp, ds: i64, target: &str, n: usize) -> Vec<i64> {
    let mut ids = Vec::new();
    for _ in 0..n {
        let (s, out) = app
            .api_post(
                &format!("/distributionsets/{ds}/assignedTargets?offline=true"),
                json!([{"id": target}]),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{out}");
        ids.push(out["assignedActions"][0]["id"].as_i64().expect("action id"));
    }
    ids
}

async fn delete_with(app: &TestApp, path: &str, body: Value) -> (StatusCode, Value) {
    app.api(Method::DELETE, path, Some(body)).await
}

fn action_ids(list: &Value) -> Vec<i64> {
    list["content"]
        .as_array()
        .expect("content")
        .iter()
        .map(|a| a["id"].as_i64().expect("id"))
        .collect()
}

/// A one-group rollout of `ds` over `filter`, created, ready and started; its id.
async fn started_rollout(app: &TestApp, name: &str, ds: i64, filter: &str) -> i64 {
    let r = app
        .create_rollout(json!({"name": name, "distributionSetId": ds,
            "targetFilterQuery": filter, "amountGroups": 1}))
        .await;
    let rid = r["id"].as_i64().expect("rollout id");
    app.wait_rollout(rid, |r| r["status"] == "ready").await;
    app.start_rollout(rid).await;
    rid
}

/// Group counters summed equal the actions of rollout groups counted.
fn assert_counters_match(app: &TestApp) {
    let counted = sql(
        app,
        "SELECT count(*) FROM action WHERE rollout_group_id IS NOT NULL",
    );
    let counters = sql(
        app,
        "SELECT COALESCE(sum(n_scheduled + n_running + n_downloaded + n_finished + n_error + n_canceled), 0) FROM rollout_group",
    );
    assert_eq!(counted, counters, "group counters drifted from the actions");
}

#[tokio::test]
async fn one_action_is_deleted_only_in_an_allowed_status() {
    let app = spawn_app().await;
    app.fleet("del", 1).await;
    let ds = app.create_set("del").await;
    let open = app.assign(ds, json!([{"id": "del-00"}])).await[0];
    let (s, e) = app.api_delete(&format!("/actions/{open}")).await;
    assert_error(s, &e, StatusCode::METHOD_NOT_ALLOWED, NOT_DELETABLE);
    assert_eq!(
        app.api_get(&format!("/actions/{open}")).await.0,
        StatusCode::OK
    );

    let done = closed_actions(&app, ds, "del-00", 1).await[0];
    let (s, b) = app.api_delete(&format!("/actions/{done}")).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    let (s, e) = app.api_get(&format!("/actions/{done}")).await;
    assert_error(
        s,
        &e,
        StatusCode::NOT_FOUND,
        "hawkbit.server.error.repo.entityNotFound",
    );
    let (s, e) = app.api_delete(&format!("/actions/{done}")).await;
    assert_error(
        s,
        &e,
        StatusCode::NOT_FOUND,
        "hawkbit.server.error.repo.entityNotFound",
    );

    // The tenant narrows what may go: FINISHED is no longer deletable.
    let other = closed_actions(&app, ds, "del-00", 1).await[0];
    let (s, b) = app
        .api_put(
            "/system/configs/action.delete.allowed.statuses",
            json!({"value": "canceled,error"}),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    let (s, e) = app.api_delete(&format!("/actions/{other}")).await;
    assert_error(s, &e, StatusCode::METHOD_NOT_ALLOWED, NOT_DELETABLE);
}

#[tokio::test]
async fn actions_are_deleted_by_query_or_by_ids_all_or_none() {
    let app = spawn_app().await;
    app.fleet("dq", 2).await;
    let ds = app.create_set("dq").await;
    let a = closed_actions(&app, ds, "dq-00", 2).await;
    let b = closed_actions(&app, ds, "dq-01", 1).await;
    // Another set: the one just installed offline would count as already assigned.
    let other_set = app.create_set("dq-next").await;
    let open = app.assign(other_set, json!([{"id": "dq-01"}])).await[0];

    // Neither or both of query and ids: hawkBit's 400.
    let (s, e) = app.api_delete("/actions").await;
    assert_error(
        s,
        &e,
        StatusCode::BAD_REQUEST,
        "hawkbit.server.error.rest.body.notReadable",
    );
    let (s, e) = delete_with(&app, "/actions?q=id==1", json!([a[0]])).await;
    assert_error(
        s,
        &e,
        StatusCode::BAD_REQUEST,
        "hawkbit.server.error.rest.body.notReadable",
    );

    // An open action among the ids: nothing goes.
    let (s, e) = delete_with(&app, "/actions", json!([b[0], open])).await;
    assert_error(s, &e, StatusCode::METHOD_NOT_ALLOWED, NOT_DELETABLE);
    assert_eq!(
        app.api_get(&format!("/actions/{}", b[0])).await.0,
        StatusCode::OK
    );
    let (s, r) = delete_with(&app, "/actions", json!([b[0]])).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{r}");
    assert_eq!(
        app.api_get(&format!("/actions/{}", b[0])).await.0,
        StatusCode::NOT_FOUND
    );

    // A query matching an open action is refused; one matching closed actions only deletes them.
    let (s, e) = app.api_delete("/actions?q=target.controllerId==dq-*").await;
    assert_error(s, &e, StatusCode::METHOD_NOT_ALLOWED, NOT_DELETABLE);
    let (s, r) = app.api_delete("/actions?q=status==finished").await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{r}");
    let (_, all) = app.api_get("/actions").await;
    assert_eq!(action_ids(&all), vec![open], "{all}");
    let (s, e) = app.api_delete("/actions?q=nosuchfield==1").await;
    assert_error(
        s,
        &e,
        StatusCode::BAD_REQUEST,
        "hawkbit.server.error.rest.param.rsqlInvalidField",
    );
}

#[tokio::test]
async fn a_targets_history_is_purged_but_its_newest_actions() {
    let app = spawn_app().await;
    app.fleet("dt", 2).await;
    let ds = app.create_set("dt").await;
    let ids = closed_actions(&app, ds, "dt-00", 4).await;
    // Another set: the one just installed offline would count as already assigned.
    let other_set = app.create_set("dt-next").await;
    let open = app.assign(other_set, json!([{"id": "dt-00"}])).await[0];
    let other = closed_actions(&app, ds, "dt-01", 1).await[0];

    let (s, e) = app.api_delete("/targets/dt-00/actions").await;
    assert_error(
        s,
        &e,
        StatusCode::BAD_REQUEST,
        "hawkbit.server.error.rest.body.notReadable",
    );
    let (s, e) = delete_with(&app, "/targets/dt-00/actions?keepLast=1", json!([ids[0]])).await;
    assert_error(
        s,
        &e,
        StatusCode::BAD_REQUEST,
        "hawkbit.server.error.rest.body.notReadable",
    );
    let (s, e) = app.api_delete("/targets/nobody/actions?keepLast=1").await;
    assert_error(
        s,
        &e,
        StatusCode::NOT_FOUND,
        "hawkbit.server.error.repo.entityNotFound",
    );

    // By ids: only the target's own; an open one refuses the whole list.
    let (s, e) = delete_with(&app, "/targets/dt-00/actions", json!([ids[0], open])).await;
    assert_error(s, &e, StatusCode::METHOD_NOT_ALLOWED, NOT_DELETABLE);
    let (s, r) = delete_with(&app, "/targets/dt-00/actions", json!([ids[0], other])).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{r}");
    assert_eq!(
        app.api_get(&format!("/actions/{other}")).await.0,
        StatusCode::OK
    );

    // keepLast=2: of the oldest the allowed go, the open one stays anyway.
    let (s, r) = app.api_delete("/targets/dt-00/actions?keepLast=1").await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{r}");
    let (_, l) = app.api_get("/targets/dt-00/actions").await;
    assert_eq!(action_ids(&l), vec![open], "{l}");
    let (s, r) = app.api_delete("/targets/dt-00/actions?keepLast=0").await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{r}");
    let (_, l) = app.api_get("/targets/dt-00/actions").await;
    assert_eq!(l["total"], 1, "{l}");
}

#[tokio::test]
async fn a_soft_action_is_switched_to_forced_and_nothing_else() {
    let mut app = spawn_app().await;
    app.fleet("fo", 1).await;
    let ds = app.create_set("fo").await;
    let id = app
        .assign(ds, json!([{"id": "fo-00", "type": "soft"}]))
        .await[0];
    app.next_of(&["DOWNLOAD_AND_INSTALL"]).await;
    let path = format!("/targets/fo-00/actions/{id}");
    let (s, e) = app.api_put(&path, json!({"forceType": "soft"})).await;
    assert_error(
        s,
        &e,
        StatusCode::BAD_REQUEST,
        "hawkbit.server.error.repo.constraintViolation",
    );
    let (s, e) = app.api_put(&path, json!({"forceType": 3})).await;
    assert_error(
        s,
        &e,
        StatusCode::BAD_REQUEST,
        "hawkbit.server.error.rest.body.notReadable",
    );
    let (s, e) = app
        .api_put(
            &format!("/targets/nobody/actions/{id}"),
            json!({"forceType": "forced"}),
        )
        .await;
    assert_error(
        s,
        &e,
        StatusCode::NOT_FOUND,
        "hawkbit.server.error.repo.entityNotFound",
    );
    assert_eq!(app.action("fo-00", id).await["forceType"], "soft");

    let (s, a) = app.api_put(&path, json!({"forceType": "forced"})).await;
    assert_eq!(s, StatusCode::OK, "{a}");
    assert_eq!(
        (a["forceType"].as_str(), a["id"].as_i64()),
        (Some("forced"), Some(id)),
        "{a}"
    );
    assert_eq!(app.action("fo-00", id).await["forceType"], "forced");
    // hawkBit sends nothing over DMF for the switch.
    app.assert_quiet(500).await;
}

#[tokio::test]
async fn an_action_waiting_for_confirmation_is_denied_then_confirmed_and_deployed() {
    let mut app = spawn_app().await;
    app.set_config("user.confirmation.flow.enabled", true).await;
    app.fleet("cf", 1).await;
    let ds = app.create_set("cf").await;
    let id = app.assign(ds, json!([{"id": "cf-00"}])).await[0];
    app.next_of(&["CONFIRM"]).await;
    let path = format!("/targets/cf-00/actions/{id}/confirmation");

    let (s, e) = app.api_put(&path, json!({"confirmation": "maybe"})).await;
    assert_error(
        s,
        &e,
        StatusCode::BAD_REQUEST,
        "hawkbit.server.error.rest.body.notReadable",
    );
    let (s, _) = app
        .api_put(
            &format!("/targets/nobody/actions/{id}/confirmation"),
            json!({"confirmation": "confirmed"}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    let (s, b) = app
        .api_put(
            &path,
            json!({"confirmation": "denied", "code": 7, "details": ["not now"]}),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    assert_eq!(
        app.action("cf-00", id).await["status"],
        "wait_for_confirmation"
    );
    app.assert_quiet(300).await;
    let (_, h) = app
        .api_get(&format!("/targets/cf-00/actions/{id}/status"))
        .await;
    let newest = &h["content"][0];
    assert_eq!(newest["code"], 7, "{h}");
    assert_eq!(newest["messages"][0], "not now", "{h}");

    let (s, b) = app
        .api_put(&path, json!({"confirmation": "confirmed"}))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    let d = app.next_of(&["DOWNLOAD_AND_INSTALL"]).await;
    assert_eq!(body_json(&d)["actionId"], id);
    assert_eq!(app.action("cf-00", id).await["status"], "running");
    // Running now: no longer waiting (hawkBit: 404 without a body).
    let (s, _) = app
        .api_put(&path, json!({"confirmation": "confirmed"}))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // A closed action: 410.
    let (s, _) = app
        .api_delete(&format!("/targets/cf-00/actions/{id}"))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = app
        .api_delete(&format!("/targets/cf-00/actions/{id}?force=true"))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = app.api_put(&path, json!({"confirmation": "denied"})).await;
    assert_eq!(s, StatusCode::GONE);
}

#[tokio::test]
async fn an_action_shows_its_rollout_window_and_the_names_of_what_it_links() {
    let mut app = spawn_app().await;
    app.fleet("js", 2).await;
    let ds = app.create_set("js").await;
    let rid = started_rollout(&app, "wave-js", ds, "controllerId==js-00").await;
    let (_, id) = app.deployments(1).await[0].clone();

    let (_, compact) = app.api_get("/targets/js-00/actions").await;
    let c = &compact["content"][0];
    assert_eq!(
        (c["rollout"].as_i64(), c["rolloutName"].as_str()),
        (Some(rid), Some("wave-js")),
        "{c}"
    );
    assert!(
        c["_links"]["rollout"]["href"]
            .as_str()
            .is_some_and(|h| h.ends_with(&format!("/rollouts/{rid}"))),
        "{c}"
    );
    assert!(c["_links"]["target"]["name"].is_null(), "{c}");

    let a = app.action("js-00", id).await;
    assert_eq!(a["_links"]["target"]["name"], "js-00", "{a}");
    assert_eq!(a["_links"]["distributionset"]["name"], "js:1.0.0", "{a}");
    assert_eq!(a["_links"]["rollout"]["name"], "wave-js", "{a}");
    assert!(a["_links"]["canceledaction"].is_null(), "{a}");
    let (_, full) = app
        .api_get("/actions?representation=full&q=target.controllerId==js-00")
        .await;
    assert_eq!(
        full["content"][0]["_links"]["target"]["name"], "js-00",
        "{full}"
    );

    // A cancel action links itself as the cancelled one; a window says when it opens next.
    let (s, _) = app
        .api_delete(&format!("/targets/js-00/actions/{id}"))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let a = app.action("js-00", id).await;
    assert!(
        a["_links"]["canceledaction"]["href"]
            .as_str()
            .is_some_and(|h| h.ends_with(&format!("/actions/{id}"))),
        "{a}"
    );
    let w = app
        .assign(
            ds,
            json!([{"id": "js-01", "maintenanceWindow":
            {"schedule": "0 0 3 * * ?", "duration": "01:00:00", "timezone": "+00:00"}}]),
        )
        .await[0];
    let a = app.action("js-01", w).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let next = a["maintenanceWindow"]["nextStartAt"]
        .as_i64()
        .expect("nextStartAt");
    assert!(next > now && next <= now + 86_400_000, "{a}");
}

#[tokio::test]
async fn old_closed_actions_are_cleaned_up_when_the_tenant_says_so() {
    let app = spawn_app_with(&["--action-cleanup-secs", "1"]).await;
    app.fleet("cu", 1).await;
    let ds = app.create_set("cu").await;
    let old = closed_actions(&app, ds, "cu-00", 3).await;
    // Another set: the one just installed offline would count as already assigned.
    let other_set = app.create_set("cu-next").await;
    let open = app.assign(other_set, json!([{"id": "cu-00"}])).await[0];
    // Off by default (expiry -1): nothing goes.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let (_, l) = app.api_get("/targets/cu-00/actions").await;
    assert_eq!(l["total"], 4, "{l}");

    let (s, b) = app
        .api_put(
            "/system/configs",
            json!({"action.cleanup.auto.expiry": 0, "action.cleanup.auto.status": "FINISHED;ERROR"}),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    let l = app
        .wait_json(
            "/targets/cu-00/actions",
            std::time::Duration::from_secs(10),
            |l| l["total"] == 1,
        )
        .await;
    assert_eq!(action_ids(&l), vec![open], "{l}");
    for id in old {
        assert_eq!(
            app.api_get(&format!("/actions/{id}")).await.0,
            StatusCode::NOT_FOUND
        );
    }
}

/// `q-00` full (3 closed actions at a quota of 3), `q-01` empty; a one-group rollout over both
/// started. Returns the app, the closed actions and the rollout's deployments.
async fn rollout_over_a_full_target(
    percent: Option<i64>,
) -> (TestApp, Vec<i64>, Vec<(String, i64)>) {
    let mut app = spawn_app_with(&["--max-actions-per-target", "3"]).await;
    if let Some(p) = percent {
        let (s, b) = app
            .api_put(
                "/system/configs/action.cleanup.onQuotaHit.percent",
                json!({"value": p}),
            )
            .await;
        assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    }
    app.fleet("q", 2).await;
    let old_set = app.create_set("qold").await;
    let closed = closed_actions(&app, old_set, "q-00", 3).await;
    let ds = app.create_set("qnew").await;
    started_rollout(&app, "quota", ds, "controllerId==q-*").await;
    let mut got = if percent.is_some() {
        app.deployments(2).await
    } else {
        app.deployments(1).await
    };
    got.sort();
    (app, closed, got)
}

#[tokio::test]
async fn a_rollout_leaves_out_a_target_at_its_quota_without_the_purge_key() {
    let (mut app, closed, got) = rollout_over_a_full_target(None).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, "q-01");
    app.assert_quiet(500).await;
    let (_, l) = app.api_get("/targets/q-00/actions").await;
    assert_eq!(l["total"], 3, "{l}");
    assert_eq!(
        app.api_get(&format!("/actions/{}", closed[0])).await.0,
        StatusCode::OK
    );
    assert_counters_match(&app);
}

#[tokio::test]
async fn a_rollout_purges_the_oldest_closed_actions_of_a_target_at_its_quota() {
    let (app, closed, got) = rollout_over_a_full_target(Some(50)).await;
    let targets: Vec<&str> = got.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(targets, vec!["q-00", "q-01"]);
    // 50 % of 3 frees one place: the oldest action went, the newer two stay.
    assert_eq!(
        app.api_get(&format!("/actions/{}", closed[0])).await.0,
        StatusCode::NOT_FOUND
    );
    for id in &closed[1..] {
        assert_eq!(
            app.api_get(&format!("/actions/{id}")).await.0,
            StatusCode::OK
        );
    }
    let (_, l) = app.api_get("/targets/q-00/actions").await;
    assert_eq!(l["total"], 3, "{l}");
    assert_counters_match(&app);
}

#[tokio::test]
async fn deleting_a_finished_rollout_action_keeps_the_group_counters_true() {
    let mut app = spawn_app().await;
    app.fleet("gc", 2).await;
    let ds = app.create_set("gc").await;
    let rid = started_rollout(&app, "gc", ds, "controllerId==gc-*").await;
    let got = app.deployments(2).await;
    // An open action of a running rollout is never deleted, whatever the tenant allows.
    let (s, b) = app
        .api_put(
            "/system/configs/action.delete.allowed.statuses",
            json!({"value": "RUNNING,FINISHED"}),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    let (s, e) = app.api_delete(&format!("/actions/{}", got[0].1)).await;
    assert_error(s, &e, StatusCode::METHOD_NOT_ALLOWED, NOT_DELETABLE);

    app.send(crate::helpers::status(got[0].1, "FINISHED")).await;
    app.wait_action(&got[0].0, got[0].1, |a| a["status"] == "finished")
        .await;
    let (s, b) = app.api_delete(&format!("/actions/{}", got[0].1)).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    assert_counters_match(&app);
    let n = poll(std::time::Duration::from_secs(5), async || {
        let v = sql(
            &app,
            &format!("SELECT n_finished FROM rollout_group WHERE rollout_id = {rid}"),
        );
        if v == "0" {
            Ok(v)
        } else {
            Err(format!("n_finished {v}"))
        }
    })
    .await;
    assert_eq!(n, "0");
}
