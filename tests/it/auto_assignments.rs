//! Auto-assignments through real AMQP and HTTP: a device that registers or changes so that it
//! matches gets its deployment at once; the existing fleet is assigned by a pass in bounded
//! chunks; the lifecycle operations and their errors are hawkBit's.

use std::time::Duration;

use dmf_broker::domain::auto_assignment::{AutoAssignStatus, assigns};
use dmf_broker::domain::ids::TenantId;
use dmf_broker::store::auto_assignments as store;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Msg, TestApp, TestDb, assert_error, poll, spawn_app, sql, thing_created};

const ILLEGAL_STATE: &str = "hawkbit.server.error.auto.assignment.illegalState";

async fn create(app: &TestApp, body: Value) -> Value {
    let (s, v) = app.api_post("/autoassignments", body).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v
}

fn body(name: &str, query: &str, ds: i64) -> Value {
    json!({"name": name, "targetFilterQuery": query, "distributionSetId": ds})
}

async fn status_of(app: &TestApp, id: i64) -> String {
    let (s, v) = app.api_get(&format!("/autoassignments/{id}")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["status"].as_str().unwrap_or_default().to_owned()
}

async fn op(app: &TestApp, id: i64, op: &str) -> (StatusCode, Value) {
    app.api_post(&format!("/autoassignments/{id}/{op}"), json!({}))
        .await
}

fn update_attributes(thing: &str, body: &str) -> Msg {
    Msg::new(
        &[
            ("type", "EVENT"),
            ("tenant", "DEFAULT"),
            ("topic", "UPDATE_ATTRIBUTES"),
            ("thingId", thing),
        ],
        body,
    )
}

#[tokio::test]
async fn matching_devices_get_their_deployment_when_they_register_and_the_fleet_by_a_pass() {
    let mut app = spawn_app().await;
    let old = app.fleet("aa-old", 3).await;
    let ds = app.create_set("auto").await;
    let a = create(&app, body("pumps", "controllerId==aa-*", ds)).await;
    assert_eq!(a["status"], "ready", "{a}");
    assert_eq!(a["actionType"], "forced");
    assert_eq!(a["weight"], 1000);
    assert_eq!(a["confirmationRequired"], false);
    assert!(a["_links"]["start"]["href"].is_string(), "{a}");
    assert_eq!(a["_links"]["distributionset"]["name"], "auto:1.0.0", "{a}");
    let id = a["id"].as_i64().expect("id");

    // The fleet that was there: one deployment each, by the pass.
    let mut got: Vec<String> = app
        .deployments(3)
        .await
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    got.sort();
    assert_eq!(got, old);
    poll(Duration::from_secs(5), async || {
        match status_of(&app, id).await.as_str() {
            "running" => Ok(()),
            s => Err(s.to_owned()),
        }
    })
    .await;

    // A new matching device: its deployment follows its THING_CREATED, no pass needed.
    app.send(thing_created("aa-new")).await;
    let (thing, action) = app.deployments(1).await.remove(0);
    assert_eq!(thing, "aa-new");
    let (s, h) = app
        .api_get(&format!("/targets/aa-new/actions/{action}/status"))
        .await;
    assert_eq!(s, StatusCode::OK, "{h}");
    let text = h["content"].to_string();
    assert!(
        text.contains("auto assignment 'pumps'") && text.contains(&format!("id {id}")),
        "{h}"
    );
    // One that registers again hears of its open action (no second one); one that does not
    // match gets nothing.
    app.send(thing_created("aa-new")).await;
    assert_eq!(app.deployments(1).await[0], (thing.clone(), action));
    app.send(thing_created("other-1")).await;
    app.assert_quiet(700).await;
    let n = sql(
        &app,
        &format!("SELECT count(*) FROM action WHERE ds_id = {ds}"),
    );
    assert_eq!(n, "4");
}

#[tokio::test]
async fn attributes_that_make_a_device_match_assign_it() {
    let mut app = spawn_app().await;
    let ds = app.create_set("rev2").await;
    create(&app, body("rev2", "attribute.hw==rev2", ds)).await;
    app.send(thing_created("hw-1")).await;
    app.wait_target("hw-1", |_| true).await;
    app.assert_quiet(500).await;
    app.send(update_attributes("hw-1", r#"{"attributes":{"hw":"rev1"}}"#))
        .await;
    app.assert_quiet(500).await;
    app.send(update_attributes("hw-1", r#"{"attributes":{"hw":"rev2"}}"#))
        .await;
    assert_eq!(app.deployments(1).await[0].0, "hw-1");
}

#[tokio::test]
async fn pause_resume_approval_and_their_errors_follow_hawkbit() {
    let mut app = spawn_app().await;
    let ds = app.create_set("ops").await;

    let mut timed = body("timed", "controllerId==x", ds);
    timed["actionType"] = json!("timeforced");
    let (s, e) = app.api_post("/autoassignments", timed).await;
    assert_error(
        s,
        &e,
        StatusCode::BAD_REQUEST,
        "hawkbit.server.error.repo.invalidAutoAssignActionType",
    );
    let (s, e) = app
        .api_post("/autoassignments", body("bad", "nosuchfield==1", ds))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");

    let a = create(&app, body("ops", "controllerId==op-*", ds)).await;
    let id = a["id"].as_i64().expect("id");
    poll(Duration::from_secs(5), async || {
        match status_of(&app, id).await.as_str() {
            "running" => Ok(()),
            s => Err(s.to_owned()),
        }
    })
    .await;
    let (s, e) = op(&app, id, "start").await;
    assert_error(s, &e, StatusCode::CONFLICT, ILLEGAL_STATE);
    let (s, e) = op(&app, id, "approve").await;
    assert_error(s, &e, StatusCode::CONFLICT, ILLEGAL_STATE);
    let (s, e) = op(&app, id, "resume").await;
    assert_error(s, &e, StatusCode::CONFLICT, ILLEGAL_STATE);

    assert_eq!(op(&app, id, "pause").await.0, StatusCode::NO_CONTENT);
    let (s, e) = op(&app, id, "pause").await;
    assert_error(s, &e, StatusCode::CONFLICT, ILLEGAL_STATE);
    let (s, v) = app.api_get(&format!("/autoassignments/{id}")).await;
    assert_eq!(v["status"], "paused", "{v}");
    assert!(
        v["_links"]["resume"].is_object() && v["_links"]["pause"].is_null(),
        "{s} {v}"
    );
    // Paused: a matching device registers and gets nothing...
    app.send(thing_created("op-1")).await;
    app.wait_target("op-1", |_| true).await;
    app.assert_quiet(500).await;
    // ...until the auto-assignment resumes and its pass finds it.
    assert_eq!(op(&app, id, "resume").await.0, StatusCode::NO_CONTENT);
    assert_eq!(app.deployments(1).await[0].0, "op-1");

    // Renaming; listing by status; deleting.
    let (s, v) = app
        .api_put(
            &format!("/autoassignments/{id}"),
            json!({"name": "renamed", "description": "d"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (v["name"].as_str(), v["description"].as_str()),
        (Some("renamed"), Some("d"))
    );
    let (s, l) = app
        .api_get("/autoassignments?q=status==running&sort=name:DESC")
        .await;
    assert_eq!(s, StatusCode::OK, "{l}");
    assert_eq!(l["total"], 1, "{l}");
    assert_eq!(l["content"][0]["id"], id);
    let (s, l) = app.api_get("/autoassignments?q=status==paused").await;
    assert_eq!((s, l["total"].as_i64()), (StatusCode::OK, Some(0)), "{l}");
    assert_eq!(
        app.api_delete(&format!("/autoassignments/{id}")).await.0,
        StatusCode::NO_CONTENT
    );
    let (s, _) = app.api_get(&format!("/autoassignments/{id}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // With approval on, a new one waits; approving makes it ready, with who and why.
    app.set_config("auto.assignment.approval.enabled", true)
        .await;
    let w = create(&app, body("approved", "controllerId==ap-*", ds)).await;
    assert_eq!(w["status"], "waiting_for_approval", "{w}");
    assert!(
        w["_links"]["approve"].is_object() && w["_links"]["deny"].is_object(),
        "{w}"
    );
    let wid = w["id"].as_i64().expect("id");
    let (s, e) = op(&app, wid, "start").await;
    assert_error(s, &e, StatusCode::CONFLICT, ILLEGAL_STATE);
    app.send(thing_created("ap-1")).await;
    app.wait_target("ap-1", |_| true).await;
    app.assert_quiet(500).await;
    let (s, v) = app
        .api_post(
            &format!("/autoassignments/{wid}/approve?remark=looks%20good"),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    let (_, v) = app.api_get(&format!("/autoassignments/{wid}")).await;
    assert_eq!(v["approvalRemark"], "looks good", "{v}");
    assert!(v["approvalDecidedBy"].is_string(), "{v}");
    assert_eq!(app.deployments(1).await[0].0, "ap-1");
    let d = create(&app, body("denied", "controllerId==dn-*", ds)).await;
    let did = d["id"].as_i64().expect("id");
    assert_eq!(op(&app, did, "deny").await.0, StatusCode::NO_CONTENT);
    assert_eq!(status_of(&app, did).await, "approval_denied");
    let (s, e) = op(&app, did, "approve").await;
    assert_error(s, &e, StatusCode::CONFLICT, ILLEGAL_STATE);
}

#[tokio::test]
async fn a_pass_over_a_large_fleet_assigns_in_chunks() {
    let mut app = spawn_app().await;
    let ds = app.create_set("bulk").await;
    // 2,500 registered targets, inserted directly (registering them one by one over AMQP is
    // not what this test is about), with the DMF address of one that registered.
    app.fleet("bulk", 1).await;
    sql(
        &app,
        "INSERT INTO target (tenant_id, controller_id, name, address, security_token, created_by,
                             last_modified_by)
         SELECT (SELECT id FROM tenant WHERE name = 'DEFAULT'), 'bulk-' || i, 'bulk-' || i,
                (SELECT address FROM target LIMIT 1), md5(i::text), 'test', 'test'
         FROM generate_series(1, 2499) i",
    );
    let a = create(&app, body("bulk", "controllerId==bulk-*", ds)).await;
    let id = a["id"].as_i64().expect("id");
    poll(Duration::from_secs(60), async || {
        let left = sql(
            &app,
            &format!("SELECT status || ':' || coalesce(pass_after::text, 'done') FROM auto_assignment WHERE id = {id}"),
        );
        let n = sql(&app, &format!("SELECT count(*) FROM action WHERE ds_id = {ds}"));
        if left == "RUNNING:done" && n == "2500" {
            Ok(())
        } else {
            Err(format!("{left} {n}"))
        }
    })
    .await;
    // One action per target, no more.
    let per_target = sql(
        &app,
        &format!(
            "SELECT max(c) FROM (SELECT count(*) c FROM action WHERE ds_id = {ds} GROUP BY target_id) x"
        ),
    );
    assert_eq!(per_target, "1");
    assert!(app.deployments(1).await[0].0.starts_with("bulk-"));
}

/// The SQL that picks the auto-assignments that assign is the domain's `assigns`, over every
/// status and a start time absent, past and future (on a database no service runs on, so no
/// worker moves the rows).
#[tokio::test]
async fn the_work_query_agrees_with_the_domain() {
    let db = TestDb::migrated().await;
    let pool = db.pool().await;
    let setup = "WITH t AS (INSERT INTO tenant (name) VALUES ('W') RETURNING id),
        ty AS (INSERT INTO distribution_set_type (tenant_id, key, name, created_by, last_modified_by)
               SELECT id, 'k', 'k', 'x', 'x' FROM t RETURNING id, tenant_id)
        INSERT INTO distribution_set (tenant_id, type_id, name, version, created_by, last_modified_by)
        SELECT tenant_id, id, 'w', '1', 'x', 'x' FROM ty RETURNING tenant_id, id";
    let (tenant, ds): (i64, i64) = sqlx::query_as(setup)
        .fetch_one(&pool)
        .await
        .expect("tenant and set");
    let now = 1_000_000_i64;
    let mut expected = Vec::new();
    for status in AutoAssignStatus::ALL {
        for start_at in [None, Some(now - 1), Some(now), Some(now + 1)] {
            let (id,): (i64,) = sqlx::query_as(
                "INSERT INTO auto_assignment (tenant_id, name, query, ds_id, action_type, weight,
                     start_at, status, created_by, last_modified_by)
                 VALUES ($1, 'w', 'id==1', $2, 'FORCED', 1000, $3, $4, 'x', 'x') RETURNING id",
            )
            .bind(tenant)
            .bind(ds)
            .bind(start_at)
            .bind(status.as_db())
            .fetch_one(&pool)
            .await
            .expect("auto-assignment");
            if assigns(status, start_at, now) {
                expected.push(id);
            }
        }
    }
    let mut conn = pool.acquire().await.expect("connection");
    let mut got: Vec<i64> = store::assigning(&mut conn, &[TenantId(tenant)], now)
        .await
        .expect("assigning")
        .into_iter()
        .map(|a| a.id)
        .collect();
    got.sort_unstable();
    assert_eq!(got, expected);
    assert!(!expected.is_empty());
    drop(conn);
    pool.close().await;
}

#[tokio::test]
async fn a_set_lists_counts_and_loses_its_auto_assignments_on_invalidation() {
    let app = spawn_app().await;
    let ds = app.create_set("side").await;
    let other = app.create_set("other").await;
    for name in ["one", "two"] {
        create(&app, body(name, "controllerId==side-*", ds)).await;
    }
    create(&app, body("three", "controllerId==side-*", other)).await;
    let (s, l) = app
        .api_get(&format!(
            "/distributionsets/{ds}/autoAssignments?sort=name:DESC"
        ))
        .await;
    assert_eq!(s, StatusCode::OK, "{l}");
    assert_eq!(l["total"], 2, "{l}");
    assert_eq!(l["content"][0]["name"], "two", "{l}");
    let (s, st) = app
        .api_get(&format!(
            "/distributionsets/{ds}/statistics/autoassignments"
        ))
        .await;
    assert_eq!(
        (s, st),
        (StatusCode::OK, json!({"totalAutoAssignments": 2}))
    );
    let (s, e) = app
        .api_get("/distributionsets/999999/autoAssignments")
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{e}");

    let (s, v) = app
        .api_post(
            &format!("/distributionsets/{ds}/invalidate"),
            json!({"actionCancelationType": "none"}),
        )
        .await;
    assert!(s.is_success(), "{s} {v}");
    let (_, st) = app
        .api_get(&format!(
            "/distributionsets/{ds}/statistics/autoassignments"
        ))
        .await;
    assert_eq!(st["totalAutoAssignments"], 0, "{st}");
    let (_, l) = app.api_get("/autoassignments").await;
    assert_eq!(l["total"], 1, "{l}");
    // An invalidated set cannot get a new one.
    let (s, e) = app
        .api_post("/autoassignments", body("late", "controllerId==x", ds))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
}

/// hawkBit 1.1's filter-embedded auto-assignment, served by an auto-assignment linked to the
/// filter.
#[tokio::test]
async fn the_legacy_filter_api_sets_reads_replaces_follows_and_removes_it() {
    let mut app = spawn_app().await;
    let ds = app.create_set("legacy").await;
    let other = app.create_set("newer").await;
    let (s, f) = app
        .api_post(
            "/targetfilters",
            json!({"name": "lf", "query": "controllerId==lf-*"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{f}");
    let fid = f["id"].as_i64().expect("id");
    assert!(f["_links"]["autoAssignDS"]["href"].is_string(), "{f}");
    let path = format!("/targetfilters/{fid}/autoAssignDS");
    let (s, _) = app.api_get(&path).await;
    assert_eq!(s, StatusCode::NO_CONTENT);

    let (s, e) = app
        .api_post(&path, json!({"id": ds, "type": "timeforced"}))
        .await;
    assert_error(
        s,
        &e,
        StatusCode::BAD_REQUEST,
        "hawkbit.server.error.repo.invalidAutoAssignActionType",
    );
    let (s, e) = app
        .api_post("/targetfilters/999999/autoAssignDS", json!({"id": ds}))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{e}");

    let (s, v) = app
        .api_post(&path, json!({"id": ds, "type": "soft", "weight": 300}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["autoAssignDistributionSet"], ds, "{v}");
    assert_eq!(v["autoAssignActionType"], "soft", "{v}");
    assert_eq!(v["autoAssignWeight"], 300, "{v}");
    let (s, set) = app.api_get(&path).await;
    assert_eq!((s, set["id"].as_i64()), (StatusCode::OK, Some(ds)), "{set}");
    let (s, l) = app
        .api_get(&format!("/distributionsets/{ds}/autoAssignTargetFilters"))
        .await;
    assert_eq!((s, l["total"].as_i64()), (StatusCode::OK, Some(1)), "{l}");
    assert_eq!(l["content"][0]["id"], fid, "{l}");
    let (_, l) = app
        .api_get(&format!(
            "/targetfilters?q=autoAssignDistributionSet.id=={ds}"
        ))
        .await;
    assert_eq!(l["total"], 1, "{l}");

    app.send(thing_created("lf-1")).await;
    assert_eq!(app.deployments(1).await[0].0, "lf-1");

    // Replacing: one auto-assignment per filter, the newer set's.
    let (s, v) = app.api_post(&path, json!({"id": other})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["autoAssignDistributionSet"], other, "{v}");
    assert_eq!(v["autoAssignActionType"], "forced", "{v}");
    let (_, l) = app.api_get("/autoassignments").await;
    assert_eq!(l["total"], 1, "{l}");
    assert_eq!(l["content"][0]["name"], "lf", "{l}");
    assert_eq!(l["content"][0]["distributionSetId"], other, "{l}");

    // The filter's new query is the auto-assignment's.
    let (s, v) = app
        .api_put(
            &format!("/targetfilters/{fid}"),
            json!({"query": "controllerId==lg-*"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, l) = app.api_get("/autoassignments").await;
    assert_eq!(
        l["content"][0]["targetFilterQuery"], "controllerId==lg-*",
        "{l}"
    );

    assert_eq!(app.api_delete(&path).await.0, StatusCode::NO_CONTENT);
    let (s, _) = app.api_get(&path).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, l) = app.api_get("/autoassignments").await;
    assert_eq!(l["total"], 0, "{l}");
    let (_, f) = app.api_get(&format!("/targetfilters/{fid}")).await;
    assert!(f["autoAssignDistributionSet"].is_null(), "{f}");
}

/// Targets the Management API creates or tags are matched at once too.
#[tokio::test]
async fn targets_created_or_tagged_through_rest_are_assigned() {
    let mut app = spawn_app().await;
    let ds = app.create_set("rest").await;
    create(&app, body("made", "controllerId==rest-*", ds)).await;
    create(&app, body("gold", "tag==gold", ds)).await;
    let (s, v) = app
        .api_post("/targets", json!([{"controllerId": "rest-1"}]))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, a) = app.api_get("/targets/rest-1/actions").await;
    assert_eq!((s, a["total"].as_i64()), (StatusCode::OK, Some(1)), "{a}");

    app.send(thing_created("dev-gold")).await;
    app.wait_target("dev-gold", |_| true).await;
    app.assert_quiet(300).await;
    let (s, t) = app.api_post("/targettags", json!([{"name": "gold"}])).await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    let tag = t[0]["id"].as_i64().expect("tag id");
    let (s, v) = app
        .api_post(
            &format!("/targettags/{tag}/assigned"),
            json!([{"controllerId": "dev-gold"}]),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(app.deployments(1).await[0].0, "dev-gold");
}
