//! The query language on list endpoints (`q=`, rollouts.md §1.4, §11.7) and the target filter
//! resource (§9.7), through real HTTP against a real database.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

/// `GET <path>?q=<q>` (plus `extra` parameters); asserts 200 and returns the body.
async fn query(app: &TestApp, path: &str, q: &str, extra: &str) -> Value {
    let (s, v) = app.api_get(&format!("{path}?q={}{extra}", enc(q))).await;
    assert_eq!(s, StatusCode::OK, "{path} q={q}: {v}");
    v
}

/// The `field` of every item of a list body, in order; checks `total` against the page.
fn column(v: &Value, field: &str) -> Vec<String> {
    let items = v["content"].as_array().expect("content");
    assert_eq!(v["size"], items.len(), "{v}");
    items
        .iter()
        .map(|i| match &i[field] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect()
}

async fn controller_ids(app: &TestApp, q: &str) -> Vec<String> {
    let v = query(app, "/targets", q, "").await;
    assert_eq!(v["total"], v["size"], "{v}");
    column(&v, "controllerId")
}

/// Register a device over DMF with a name and controller attributes; wait until they are
/// visible.
async fn device(app: &TestApp, id: &str, name: &str, attributes: Value) {
    let mut m = thing_created(id);
    m.body = json!({"name": name, "attributeUpdate": {"attributes": attributes}})
        .to_string()
        .into_bytes();
    app.send(m).await;
    app.wait_json(
        &format!("/targets/{id}/attributes"),
        Duration::from_secs(10),
        |a| a == &attributes,
    )
    .await;
}

/// Four API-created targets (update status `unknown`) and two DMF-registered sensors
/// (`registered`, with attributes).
async fn fleet(app: &TestApp) {
    let (s, v) = app
        .api_post(
            "/targets",
            json!([
                {"controllerId": "dev-1", "name": "Pump 1", "description": "north"},
                {"controllerId": "dev-2", "name": "Pump 2", "description": ""},
                {"controllerId": "dev-3", "name": "Valve 3", "group": "east"},
                {"controllerId": "other", "name": "Other"},
            ]),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    device(
        app,
        "sensor-a",
        "Sensor A",
        json!({"hw": "rev2", "loc": "North"}),
    )
    .await;
    device(app, "sensor-b", "Sensor B", json!({"hw": "rev1"})).await;
}

#[tokio::test]
async fn targets_are_filtered_by_wildcards_attributes_status_and_lists() {
    let app = spawn_app().await;
    fleet(&app).await;

    let cases: &[(&str, &[&str])] = &[
        // Wildcards and case-insensitive text.
        ("name==pump*", &["dev-1", "dev-2"]),
        ("NAME==*3", &["dev-3"]),
        ("name=='PUMP 1'", &["dev-1"]),
        ("name!=pump*", &["dev-3", "other", "sensor-a", "sensor-b"]),
        // Controller attributes: keys exact, values case-insensitive; "not equal" includes
        // targets without the attribute.
        ("attribute.hw==rev2", &["sensor-a"]),
        ("attribute.hw==REV*", &["sensor-a", "sensor-b"]),
        ("controllerAttributes.loc==north", &["sensor-a"]),
        ("attribute.HW==rev2", &[]),
        (
            "attribute.hw!=rev2",
            &["dev-1", "dev-2", "dev-3", "other", "sensor-b"],
        ),
        // Update status, in either case.
        ("updatestatus==registered", &["sensor-a", "sensor-b"]),
        (
            "updateStatus==UNKNOWN",
            &["dev-1", "dev-2", "dev-3", "other"],
        ),
        // Lists.
        ("controllerId=in=(dev-1,dev-3,nope)", &["dev-1", "dev-3"]),
        (
            "id=out=(dev-1,dev-2)",
            &["dev-3", "other", "sensor-a", "sensor-b"],
        ),
        // Composition and precedence: and binds tighter than or.
        ("name==pump*;description==north", &["dev-1"]),
        ("name==pump*,group==east", &["dev-1", "dev-2", "dev-3"]),
        ("name==other,group==east;name==pump*", &["other"]),
        ("(name==other,group==east);name==valve*", &["dev-3"]),
        (
            "name==other or (group==east and name==valve*)",
            &["dev-3", "other"],
        ),
        // Empty string: null or empty / set and not empty; =is=null / =not=null.
        ("description==''", &["dev-2", "dev-3", "other"]),
        ("description!=''", &["dev-1", "sensor-a", "sensor-b"]),
        (
            "group=is=null",
            &["dev-1", "dev-2", "other", "sensor-a", "sensor-b"],
        ),
        ("group=not=null", &["dev-3"]),
        // Numbers.
        ("lastcontrollerrequestat=gt=0", &["sensor-a", "sensor-b"]),
        ("createdat=lt=0", &[]),
        ("autoconfirm==false;name==valve*", &["dev-3"]),
    ];
    for (q, want) in cases {
        assert_eq!(controller_ids(&app, q).await, *want, "q={q}");
    }

    // The total counts every match, not the page.
    let v = query(&app, "/targets", "name==pump*", "&limit=1&sort=name:DESC").await;
    assert_eq!(v["total"], 2, "{v}");
    assert_eq!(column(&v, "controllerId"), ["dev-2"]);

    // Blank q= is no filter.
    let v = query(&app, "/targets", "  ", "").await;
    assert_eq!(v["total"], 6, "{v}");
}

#[tokio::test]
async fn bad_queries_are_400_with_hawkbit_error_codes() {
    let app = spawn_app().await;
    fleet(&app).await;

    for (q, code) in [
        ("colour==red", ERR_FIELD),
        ("tags.colour==red", ERR_FIELD),
        ("name==", ERR_SYNTAX),
        ("name=li=pump*", ERR_SYNTAX),
        ("name=like=pump*", ERR_SYNTAX),
        ("(name==x", ERR_SYNTAX),
        ("name==x;", ERR_SYNTAX),
        ("name==(a,b)", ERR_SYNTAX),
        ("updatestatus==sleepy", ERR_SYNTAX),
        ("createdat=gt=yesterday", ERR_SYNTAX),
    ] {
        let (s, v) = app.api_get(&format!("/targets?q={}", enc(q))).await;
        assert_error(s, &v, StatusCode::BAD_REQUEST, code);
    }
    let (s, v) = app.api_get(&format!("/actions?q={}", enc("name==x"))).await;
    assert_error(s, &v, StatusCode::BAD_REQUEST, ERR_FIELD);
    let (s, v) = app
        .api_get(&format!("/softwaremodules?q={}", enc("name=li=x")))
        .await;
    assert_error(s, &v, StatusCode::BAD_REQUEST, ERR_SYNTAX);
}

#[tokio::test]
async fn injection_looking_values_are_only_values() {
    let app = spawn_app().await;
    fleet(&app).await;

    for q in [
        r#"name=="x' OR '1'='1""#,
        r#"name=="'; DROP TABLE target; --""#,
        r#"name=="%""#,
        r#"name=="_ump 1""#,
        r#"name=="\\""#,
        "attribute.hw'==x",
    ] {
        let (s, v) = app.api_get(&format!("/targets?q={}", enc(q))).await;
        assert!(
            s == StatusCode::OK && v["total"] == 0 || s == StatusCode::BAD_REQUEST,
            "q={q}: {s} {v}"
        );
    }
    // LIKE metacharacters in a wildcard query are literal.
    assert_eq!(
        controller_ids(&app, "name==*%*").await,
        Vec::<String>::new()
    );
    assert_eq!(
        controller_ids(&app, "name==pump_*").await,
        Vec::<String>::new()
    );
    // Everything is still there.
    let (_, v) = app.api_get("/targets").await;
    assert_eq!(v["total"], 6);
}

#[tokio::test]
async fn actions_are_filtered_by_status_target_and_set() {
    let app = spawn_app().await;
    for id in ["dev-a", "dev-b"] {
        app.send(thing_created(id)).await;
        app.wait_target(id, |_| true).await;
    }
    let ds = app.create_set("fw").await;
    let (s, out) = app
        .api_post(
            &format!("/distributionsets/{ds}/assignedTargets"),
            json!([{"id": "dev-a"}, {"id": "dev-b"}]),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{out}");
    let (_, a) = app.api_get("/targets/dev-a/actions").await;
    let action_a = a["content"][0]["id"].as_i64().expect("action of dev-a");
    let (_, b) = app.api_get("/targets/dev-b/actions").await;
    let action_b = b["content"][0]["id"].as_i64().expect("action of dev-b");
    app.send(status(action_a, "FINISHED")).await;
    app.wait_target("dev-a", |t| t["updateStatus"] == "in_sync")
        .await;

    let ids = |v: &Value| -> Vec<i64> {
        v["content"]
            .as_array()
            .expect("content")
            .iter()
            .map(|a| a["id"].as_i64().expect("id"))
            .collect()
    };
    let cases: &[(&str, Vec<i64>)] = &[
        ("status==running", vec![action_b]),
        ("status==FINISHED", vec![action_a]),
        ("status=in=(running,finished)", vec![action_b, action_a]),
        ("active==false", vec![action_a]),
        ("target.controllerId==DEV-A", vec![action_a]),
        ("target.updateStatus==pending", vec![action_b]),
        ("distributionset.name==fw;active==true", vec![action_b]),
        ("distributionset.type==os", vec![action_b, action_a]),
        (
            &format!("distributionset.id=={ds}"),
            vec![action_b, action_a],
        ),
        ("rollout.id=is=null", vec![action_b, action_a]),
        ("rollout.name==r1", vec![]),
        ("weight=ge=0", vec![action_b, action_a]),
    ];
    for (q, want) in cases {
        let v = query(&app, "/actions", q, "").await;
        assert_eq!(ids(&v), *want, "q={q}: {v}");
        assert_eq!(v["total"], want.len(), "q={q}");
    }

    // On a target's history the filter narrows that target's actions only.
    let v = query(&app, "/targets/dev-b/actions", "status==finished", "").await;
    assert_eq!(v["total"], 0, "{v}");
    let v = query(&app, "/targets/dev-a/actions", "status==finished", "").await;
    assert_eq!(ids(&v), vec![action_a]);

    let (s, v) = app
        .api_get(&format!("/actions?q={}", enc("status==sleeping")))
        .await;
    assert_error(s, &v, StatusCode::BAD_REQUEST, ERR_SYNTAX);
}

#[tokio::test]
async fn repository_lists_take_queries() {
    let app = spawn_app().await;
    let fw_a = app.create_set("fw-a").await;
    app.create_set("fw-b").await;
    let (s, v) = app
        .api_post(
            "/softwaremodules",
            json!([{"name": "jre", "version": "21", "type": "runtime", "vendor": "Acme"}]),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");

    let v = query(&app, "/softwaremodules", "name==FW*", "").await;
    assert_eq!(column(&v, "name"), ["fw-a-os", "fw-b-os"]);
    let v = query(&app, "/softwaremodules", "type==runtime;vendor==acme", "").await;
    assert_eq!(column(&v, "name"), ["jre"]);
    let v = query(&app, "/distributionsets", "name==fw-b", "").await;
    assert_eq!(column(&v, "name"), ["fw-b"]);
    let v = query(&app, "/distributionsets", "type==os;valid==true", "").await;
    assert_eq!(v["total"], 2, "{v}");
    let v = query(&app, "/softwaremoduletypes", "key==os,key==runtime", "").await;
    assert_eq!(v["total"], 2, "{v}");
    let v = query(&app, "/distributionsettypes", "key==os", "").await;
    assert_eq!(column(&v, "key"), ["os"]);
    let v = query(
        &app,
        &format!("/distributionsets/{fw_a}/assignedSM"),
        "type==os",
        "",
    )
    .await;
    assert_eq!(column(&v, "name"), ["fw-a-os"]);
    let v = query(
        &app,
        &format!("/distributionsets/{fw_a}/assignedSM"),
        "type==runtime",
        "",
    )
    .await;
    assert_eq!(v["total"], 0, "{v}");
}

#[tokio::test]
async fn target_filters_are_created_validated_queried_updated_and_deleted() {
    let app = spawn_app().await;

    let (s, f) = app
        .api_post(
            "/targetfilters",
            json!({"name": "north pumps", "query": "name==pump*;description==north"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{f}");
    let id = f["id"].as_i64().expect("id");
    assert_eq!(f["name"], "north pumps");
    assert_eq!(f["query"], "name==pump*;description==north");
    assert_eq!(f["createdBy"], "admin");
    assert_eq!(f["lastModifiedBy"], "admin");
    assert!(
        f["createdAt"].is_i64() && f["lastModifiedAt"].is_i64(),
        "{f}"
    );
    assert!(f.get("autoAssignDistributionSet").is_none(), "{f}");
    assert!(f.get("autoAssignActionType").is_none(), "{f}");
    let self_link = f["_links"]["self"]["href"].as_str().expect("self link");
    assert!(
        self_link.ends_with(&format!("/rest/v1/targetfilters/{id}")),
        "{f}"
    );
    assert!(
        f["_links"]["autoAssignDS"]["href"]
            .as_str()
            .expect("autoAssignDS link")
            .ends_with(&format!("/rest/v1/targetfilters/{id}/autoAssignDS")),
        "{f}"
    );
    let (s, one) = app.api_get(&format!("/targetfilters/{id}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(one, f);

    // Duplicates, bad queries and missing fields.
    let (s, v) = app
        .api_post(
            "/targetfilters",
            json!({"name": "north pumps", "query": "name==x"}),
        )
        .await;
    assert_error(s, &v, StatusCode::CONFLICT, ERR_EXISTS);
    for (body, code) in [
        (json!({"name": "f", "query": "name=li=x"}), ERR_SYNTAX),
        (json!({"name": "f", "query": "name==(a"}), ERR_SYNTAX),
        (json!({"name": "f", "query": "colour==red"}), ERR_FIELD),
        (json!({"name": "f"}), ERR_CONSTRAINT),
        (json!({"query": "name==x"}), ERR_CONSTRAINT),
        (json!({"name": "", "query": "name==x"}), ERR_CONSTRAINT),
        (
            json!({"name": "x".repeat(129), "query": "name==x"}),
            ERR_CONSTRAINT,
        ),
        (
            json!({"name": "f", "query": format!("name=={}", "x".repeat(1020))}),
            ERR_CONSTRAINT,
        ),
    ] {
        let (s, v) = app.api_post("/targetfilters", body.clone()).await;
        assert_error(s, &v, StatusCode::BAD_REQUEST, code);
    }

    let (s, v) = app
        .api_post(
            "/targetfilters",
            json!({"name": "valves", "query": "name==valve*"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let valves = v["id"].as_i64().expect("id");

    // Listing, querying and sorting.
    let (s, all) = app.api_get("/targetfilters").await;
    assert_eq!(s, StatusCode::OK, "{all}");
    assert_eq!(all["total"], 2);
    assert_eq!(column(&all, "name"), ["north pumps", "valves"]);
    let v = query(&app, "/targetfilters", "name==NORTH*", "").await;
    assert_eq!(column(&v, "name"), ["north pumps"]);
    let v = query(&app, "/targetfilters", "query==*valve*", "").await;
    assert_eq!(column(&v, "name"), ["valves"]);
    let v = query(&app, "/targetfilters", &format!("id=={valves}"), "").await;
    assert_eq!(column(&v, "name"), ["valves"]);
    let (_, v) = app.api_get("/targetfilters?sort=name:DESC&limit=1").await;
    assert_eq!(column(&v, "name"), ["valves"]);
    assert_eq!(v["total"], 2);
    let (s, v) = app
        .api_get(&format!("/targetfilters?q={}", enc("controllerid==x")))
        .await;
    assert_error(s, &v, StatusCode::BAD_REQUEST, ERR_FIELD);

    // Updates change only what is given; names stay unique; queries stay valid.
    let (s, v) = app
        .api_put(
            &format!("/targetfilters/{valves}"),
            json!({"query": "name==valve*;group==east"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["name"], "valves");
    assert_eq!(v["query"], "name==valve*;group==east");
    let (s, v) = app
        .api_put(&format!("/targetfilters/{id}"), json!({"name": "valves"}))
        .await;
    assert_error(s, &v, StatusCode::CONFLICT, ERR_EXISTS);
    let (s, v) = app
        .api_put(
            &format!("/targetfilters/{id}"),
            json!({"query": "name=li=x"}),
        )
        .await;
    assert_error(s, &v, StatusCode::BAD_REQUEST, ERR_SYNTAX);
    let (s, v) = app
        .api_put("/targetfilters/987654321", json!({"name": "ghost"}))
        .await;
    assert_error(s, &v, StatusCode::NOT_FOUND, ERR_NOT_FOUND);

    // Deletion.
    let (s, _) = app.api_delete(&format!("/targetfilters/{id}")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    for path in [
        format!("/targetfilters/{id}"),
        "/targetfilters/abc".to_owned(),
    ] {
        let (s, v) = app.api_get(&path).await;
        assert_error(s, &v, StatusCode::NOT_FOUND, ERR_NOT_FOUND);
    }
    let (s, v) = app.api_delete(&format!("/targetfilters/{id}")).await;
    assert_error(s, &v, StatusCode::NOT_FOUND, ERR_NOT_FOUND);
    let (_, v) = app.api_get("/targetfilters").await;
    assert_eq!(v["total"], 1);
}

#[tokio::test]
async fn target_filter_writes_need_target_permissions() {
    let app = spawn_app_with_users(
        r#"
[[users]]
username = "reader"
password = "reader-pass"
tenant = "DEFAULT"
permissions = ["READ_TARGET"]
"#,
        &[],
    )
    .await;

    let (s, v) = app
        .api_post("/targetfilters", json!({"name": "all", "query": "name==*"}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let id = v["id"].as_i64().expect("id");

    let as_reader = |method: Method, path: String, body: Option<Value>| {
        let app = &app;
        async move {
            app.api_as("reader", "reader-pass", method, &path, body)
                .await
        }
    };
    let (s, v) = as_reader(Method::GET, "/targetfilters".into(), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["total"], 1);
    for (method, path, body) in [
        (
            Method::POST,
            "/targetfilters".to_owned(),
            Some(json!({"name": "mine", "query": "name==x"})),
        ),
        (
            Method::PUT,
            format!("/targetfilters/{id}"),
            Some(json!({"name": "renamed"})),
        ),
        (Method::DELETE, format!("/targetfilters/{id}"), None),
    ] {
        let (s, v) = as_reader(method, path, body).await;
        assert_error(s, &v, StatusCode::FORBIDDEN, ERR_PERMISSION);
    }
}
