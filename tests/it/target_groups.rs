//! Target groups (hawkBit master's `/rest/v1/targetgroups`) through real HTTP, and AMQP where a
//! group change makes a device match an auto-assignment.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{
    TestApp, assert_error, assert_error_code, body_json, enc, spawn_app, spawn_app_with_users,
};

/// The controllerIds of a paged target list, in order.
fn ids(list: &Value) -> Vec<&str> {
    list["content"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t["controllerId"].as_str())
                .collect()
        })
        .unwrap_or_default()
}

async fn group_of(app: &TestApp, id: &str) -> Value {
    let (s, t) = app.api_get(&format!("/targets/{id}")).await;
    assert_eq!(s, StatusCode::OK, "{t}");
    t["group"].clone()
}

async fn put(app: &TestApp, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    app.api(Method::PUT, path, body).await
}

#[tokio::test]
async fn groups_are_listed_and_read_with_or_without_subgroups() {
    let app = spawn_app().await;
    let (s, v) = app
        .api_post(
            "/targets",
            json!([
                {"controllerId": "g-a", "group": "Europe/East"},
                {"controllerId": "g-b", "group": "europe"},
                {"controllerId": "g-c"},
                {"controllerId": "g-d", "group": "Europe_x"},
            ]),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");

    let (s, v) = app.api_get("/targetgroups").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v, json!(["Europe/East", "Europe_x", "europe"]));

    // A group by path ignores case and leaves subgroups out.
    let (s, v) = app.api_get("/targetgroups/EUROPE/assigned").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (ids(&v), v["total"].as_i64()),
        (vec!["g-b"], Some(1)),
        "{v}"
    );
    assert_eq!(v["content"][0]["group"], "europe", "{v}");
    let (_, v) = app
        .api_get("/targetgroups/assigned?group=Europe&subgroups=true&sort=controllerId:DESC")
        .await;
    assert_eq!(ids(&v), vec!["g-b", "g-a"], "{v}");
    let (_, v) = app.api_get("/targetgroups/assigned?group=Europe").await;
    assert_eq!(ids(&v), vec!["g-b"], "{v}");
    let (_, v) = app
        .api_get("/targetgroups/assigned?group=Europe/East&limit=1")
        .await;
    assert_eq!(
        (ids(&v), v["total"].as_i64()),
        (vec!["g-a"], Some(1)),
        "{v}"
    );
    let (_, v) = app.api_get("/targetgroups/nowhere/assigned").await;
    assert_eq!(v["total"], 0, "{v}");

    let (s, e) = app.api_get("/targetgroups/assigned").await;
    assert_error(
        s,
        &e,
        StatusCode::BAD_REQUEST,
        "hawkbit.server.error.repo.constraintViolation",
    );
    let (s, e) = app
        .api_get("/targetgroups/assigned?group=x&sort=nosuchfield:ASC")
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
}

#[tokio::test]
async fn targets_join_and_leave_groups_by_ids_and_by_filter() {
    let app = spawn_app().await;
    let body: Vec<Value> = ["m-a", "m-b", "m-c", "m-d"]
        .iter()
        .map(|id| json!({"controllerId": id}))
        .collect();
    let (s, v) = app.api_post("/targets", json!(body)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");

    // By ids: unknown ones are skipped, as in hawkBit.
    let (s, v) = put(
        &app,
        "/targetgroups/Lab/assigned",
        Some(json!(["m-a", "nobody"])),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    assert_eq!(group_of(&app, "m-a").await, "Lab");
    let (s, _) = put(
        &app,
        "/targetgroups/assigned?group=Lab/Bench",
        Some(json!(["m-b"])),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(group_of(&app, "m-b").await, "Lab/Bench");
    let (s, t) = app.api_get("/targets/m-b").await;
    assert_eq!(
        (s, t["lastModifiedBy"].as_str()),
        (StatusCode::OK, Some("admin")),
        "{t}"
    );

    // By filter, on the path or as a parameter.
    let q = enc("controllerId==m-c");
    let (s, v) = put(&app, &format!("/targetgroups/Field?q={q}"), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    assert_eq!(group_of(&app, "m-c").await, "Field");
    let q = enc("controllerId=in=(m-c,m-d)");
    let (s, _) = put(
        &app,
        &format!("/targetgroups?group=Field/North&q={q}"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(group_of(&app, "m-c").await, "Field/North");
    assert_eq!(group_of(&app, "m-d").await, "Field/North");
    let (_, v) = app.api_get("/targetgroups").await;
    assert_eq!(v, json!(["Field/North", "Lab", "Lab/Bench"]));

    // Leaving: by ids, then by filter.
    let (s, _) = app
        .api(
            Method::DELETE,
            "/targetgroups/assigned",
            Some(json!(["m-a"])),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert!(group_of(&app, "m-a").await.is_null());
    let (s, _) = app
        .api(Method::DELETE, "/targetgroups/assigned", None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let q = enc("group==Field*");
    let (s, _) = app
        .api(Method::DELETE, &format!("/targetgroups?q={q}"), None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert!(group_of(&app, "m-c").await.is_null());
    assert!(group_of(&app, "m-d").await.is_null());
    assert_eq!(group_of(&app, "m-b").await, "Lab/Bench");
    let (s, _) = app.api(Method::DELETE, "/targetgroups", None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, v) = app.api_get("/targetgroups").await;
    assert_eq!(v, json!([]));

    // Errors: a filter is required to assign by filter; bad filters, bodies and groups.
    let (s, e) = put(&app, "/targetgroups/Field", None).await;
    assert_error(
        s,
        &e,
        StatusCode::BAD_REQUEST,
        "hawkbit.server.error.repo.constraintViolation",
    );
    let (s, e) = put(&app, "/targetgroups?q=name==x", None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    let (s, e) = put(&app, "/targetgroups/Field?q=nosuchfield==1", None).await;
    assert_error(
        s,
        &e,
        StatusCode::BAD_REQUEST,
        "hawkbit.server.error.rest.param.rsqlInvalidField",
    );
    let (s, e) = put(&app, "/targetgroups/Field?q=name==", None).await;
    assert_error(
        s,
        &e,
        StatusCode::BAD_REQUEST,
        "hawkbit.server.error.rest.param.rsqlParamSyntax",
    );
    let (s, e) = put(&app, "/targetgroups/Lab/assigned", Some(json!({"id": 1}))).await;
    assert_error(
        s,
        &e,
        StatusCode::BAD_REQUEST,
        "hawkbit.server.error.rest.body.notReadable",
    );
    let long = "g".repeat(257);
    let (s, e) = put(
        &app,
        &format!("/targetgroups/{long}/assigned"),
        Some(json!(["m-a"])),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    assert!(group_of(&app, "m-a").await.is_null());
}

#[tokio::test]
async fn reading_groups_needs_read_target_and_changing_them_update_target() {
    let app = spawn_app_with_users(
        "[[users]]\nusername = \"reader\"\npassword = \"pw\"\ntenant = \"DEFAULT\"\npermissions = [\"READ_TARGET\"]\n\
         [[users]]\nusername = \"nobody\"\npassword = \"pw\"\ntenant = \"DEFAULT\"\npermissions = [\"READ_REPOSITORY\"]\n",
        &[],
    )
    .await;
    let (s, _) = app
        .api_post("/targets", json!([{"controllerId": "p-a", "group": "G"}]))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let forbidden = "hawkbit.server.error.insufficientPermission";
    let (s, v) = app
        .api_as("reader", "pw", Method::GET, "/targetgroups", None)
        .await;
    assert_eq!((s, v), (StatusCode::OK, json!(["G"])));
    let (s, e) = app
        .api_as(
            "nobody",
            "pw",
            Method::GET,
            "/targetgroups/G/assigned",
            None,
        )
        .await;
    assert_error_code(s, &e, StatusCode::FORBIDDEN, forbidden);
    let (s, e) = app
        .api_as(
            "reader",
            "pw",
            Method::PUT,
            "/targetgroups/H/assigned",
            Some(json!(["p-a"])),
        )
        .await;
    assert_error_code(s, &e, StatusCode::FORBIDDEN, forbidden);
    let (s, e) = app
        .api_as("reader", "pw", Method::DELETE, "/targetgroups", None)
        .await;
    assert_error_code(s, &e, StatusCode::FORBIDDEN, forbidden);
    assert_eq!(group_of(&app, "p-a").await, "G");
    let (s, _) = app
        .api_as("x", "y", Method::GET, "/targetgroups", None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_device_put_into_a_group_an_auto_assignment_targets_gets_its_deployment() {
    let mut app = spawn_app().await;
    let ids = app.fleet("ga", 2).await;
    let ds = app.create_set("ga").await;
    let (s, v) = app
        .api_post(
            "/autoassignments",
            json!({"name": "lab", "targetFilterQuery": "group==Lab", "distributionSetId": ds}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    app.assert_quiet(300).await;

    let (s, _) = put(&app, "/targetgroups/Lab/assigned", Some(json!([ids[1]]))).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let d = app.next_of(&["DOWNLOAD_AND_INSTALL"]).await;
    assert_eq!(
        crate::helpers::header(&d, "thingId").as_deref(),
        Some(&*ids[1])
    );
    assert!(body_json(&d)["actionId"].is_i64());
    app.assert_quiet(300).await;
}
