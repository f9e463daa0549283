//! Target types, target tags and target metadata through real HTTP.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{
    TestApp, assert_error_code, enc, spawn_app, spawn_app_with, spawn_app_with_users, sql,
};

/// The service with an extra user `reader` (password `pw`) that may only read targets.
async fn spawn_with_reader() -> TestApp {
    spawn_app_with_users(
        "[[users]]\nusername = \"reader\"\npassword = \"pw\"\ntenant = \"DEFAULT\"\npermissions = [\"READ_TARGET\"]\n",
        &[],
    )
    .await
}

async fn as_reader(app: &TestApp, method: Method, path: &str, body: Option<Value>) -> StatusCode {
    let (s, v) = app.api_as("reader", "pw", method, path, body).await;
    if s == StatusCode::FORBIDDEN {
        assert_eq!(
            v["errorCode"],
            "hawkbit.server.error.insufficientPermission"
        );
    }
    s
}

/// Id of the seeded distribution set type with this key.
async fn ds_type(app: &TestApp, key: &str) -> i64 {
    let (s, v) = app.api_get("/distributionsettypes?limit=500").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["content"]
        .as_array()
        .and_then(|a| a.iter().find(|t| t["key"] == key))
        .and_then(|t| t["id"].as_i64())
        .unwrap_or_else(|| panic!("no DS type {key}: {v}"))
}

fn ids(list: &Value) -> Vec<i64> {
    list.as_array()
        .map(|a| a.iter().filter_map(|t| t["id"].as_i64()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn target_types_crud_compatibility_and_errors() {
    let app = spawn_with_reader().await;
    let os = ds_type(&app, "os").await;
    let app_type = ds_type(&app, "app").await;

    let (s, v) = app.api_get("/targettypes").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v, json!({"content": [], "total": 0, "size": 0}));

    let (s, v) = app
        .api_post(
            "/targettypes",
            json!([
                {"name": "gateway", "key": "gw", "description": "edge gateways", "colour": "#00ff00",
                 "compatibledistributionsettypes": [{"id": os}, {"id": os}]},
                {"key": "sensor"},
            ]),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let gw = &v[0];
    assert_eq!(gw["name"], "gateway");
    assert_eq!(gw["key"], "gw");
    assert_eq!(gw["description"], "edge gateways");
    assert_eq!(gw["colour"], "#00ff00");
    assert_eq!(gw["createdBy"], "admin");
    assert!(gw["createdAt"].as_i64().unwrap_or(0) > 0, "{gw}");
    let gw_id = gw["id"].as_i64().expect("id");
    assert!(
        gw["_links"]["self"]["href"]
            .as_str()
            .unwrap_or("")
            .ends_with(&format!("/rest/v1/targettypes/{gw_id}")),
        "{gw}"
    );
    assert!(
        gw["_links"]["compatibledistributionsettypes"]["href"]
            .as_str()
            .unwrap_or("")
            .ends_with(&format!(
                "/targettypes/{gw_id}/compatibledistributionsettypes"
            )),
        "{gw}"
    );
    // The name defaults to the key.
    assert_eq!(v[1]["name"], "sensor");
    assert_eq!(v[1]["key"], "sensor");
    assert!(v[1].get("description").is_none(), "{v}");
    let sensor_id = v[1]["id"].as_i64().expect("id");

    // Errors, each leaving nothing behind.
    let (s, v) = app.api_post("/targettypes", json!([{}])).await;
    assert_error_code(
        s,
        &v,
        StatusCode::BAD_REQUEST,
        "hawkbit.server.error.target.type.keyOrNameRequired",
    );
    let (s, v) = app
        .api_post("/targettypes", json!([{"name": "other", "key": "gw"}]))
        .await;
    assert_error_code(
        s,
        &v,
        StatusCode::CONFLICT,
        "hawkbit.server.error.repo.entityAlreadyExists",
    );
    let (s, v) = app
        .api_post(
            "/targettypes",
            json!([{"name": "x", "compatibledistributionsettypes": [{"id": 999999}]}]),
        )
        .await;
    assert_error_code(
        s,
        &v,
        StatusCode::NOT_FOUND,
        "hawkbit.server.error.repo.entityNotFound",
    );
    let (s, v) = app
        .api_post("/targettypes", json!([{"name": "n".repeat(129)}]))
        .await;
    assert_error_code(
        s,
        &v,
        StatusCode::BAD_REQUEST,
        "hawkbit.server.error.repo.constraintViolation",
    );
    let (s, v) = app
        .api_post("/targettypes", json!({"name": "not-an-array"}))
        .await;
    assert_error_code(
        s,
        &v,
        StatusCode::BAD_REQUEST,
        "hawkbit.server.error.rest.body.notReadable",
    );
    let (s, v) = app.api_get("/targettypes?sort=name:DESC").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["total"], 2, "{v}");
    assert_eq!(ids(&v["content"]), vec![sensor_id, gw_id]);
    let (s, v) = app.api_get("/targettypes?offset=1&limit=1").await;
    assert_eq!(
        (s, v["total"].clone(), v["size"].clone()),
        (StatusCode::OK, json!(2), json!(1))
    );
    assert_eq!(ids(&v["content"]), vec![sensor_id]);
    let (s, v) = app.api_get("/targettypes?sort=bogus:ASC").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");

    // Read one, update.
    let (s, v) = app.api_get(&format!("/targettypes/{gw_id}")).await;
    assert_eq!((s, v["key"].clone()), (StatusCode::OK, json!("gw")), "{v}");
    let (s, v) = app.api_get("/targettypes/abc").await;
    assert_error_code(
        s,
        &v,
        StatusCode::NOT_FOUND,
        "hawkbit.server.error.repo.entityNotFound",
    );
    let (s, v) = app.api_get("/targettypes/999999").await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    let (s, v) = app
        .api_put(
            &format!("/targettypes/{gw_id}"),
            json!({"name": "gateway-2", "description": "renamed", "key": "ignored"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (&v["name"], &v["description"], &v["key"], &v["colour"]),
        (
            &json!("gateway-2"),
            &json!("renamed"),
            &json!("gw"),
            &json!("#00ff00")
        )
    );
    let (s, v) = app
        .api_put(&format!("/targettypes/{gw_id}"), json!({"name": "sensor"}))
        .await;
    assert_error_code(
        s,
        &v,
        StatusCode::CONFLICT,
        "hawkbit.server.error.repo.entityAlreadyExists",
    );
    let (s, _) = app
        .api_put("/targettypes/999999", json!({"name": "ghost"}))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Compatible distribution set types.
    let compat = format!("/targettypes/{gw_id}/compatibledistributionsettypes");
    let (s, v) = app.api_get(&compat).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(ids(&v), vec![os]);
    assert_eq!(v[0]["key"], "os");
    let (s, v) = app
        .api_post(&compat, json!([{"id": app_type}, {"id": os}]))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, v) = app.api_get(&compat).await;
    let mut got = ids(&v);
    got.sort_unstable();
    let mut want = vec![os, app_type];
    want.sort_unstable();
    assert_eq!(got, want);
    let (s, v) = app.api_post(&compat, json!([{"id": 999999}])).await;
    assert_error_code(
        s,
        &v,
        StatusCode::NOT_FOUND,
        "hawkbit.server.error.repo.entityNotFound",
    );
    let (s, _) = app.api_delete(&format!("{compat}/{os}")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, v) = app.api_get(&compat).await;
    assert_eq!(ids(&v), vec![app_type]);
    let (s, _) = app.api_delete(&format!("{compat}/999999")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = app
        .api_get("/targettypes/999999/compatibledistributionsettypes")
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // A type in use by a target cannot be deleted.
    let (s, v) = app
        .api_post(
            "/targets",
            json!([{"controllerId": "dev-1", "targetType": gw_id}]),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v[0]["targetTypeName"], "gateway-2", "{v}");
    let (s, v) = app.api_delete(&format!("/targettypes/{gw_id}")).await;
    assert_error_code(
        s,
        &v,
        StatusCode::CONFLICT,
        "hawkbit.server.error.target.type.used",
    );
    let (s, _) = app.api_delete(&format!("/targettypes/{sensor_id}")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = app.api_get(&format!("/targettypes/{sensor_id}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = app.api_delete(&format!("/targettypes/{sensor_id}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = app.api_delete("/targets/dev-1").await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = app.api_delete(&format!("/targettypes/{gw_id}")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);

    // Permissions.
    assert_eq!(
        as_reader(&app, Method::GET, "/targettypes", None).await,
        StatusCode::OK
    );
    assert_eq!(
        as_reader(
            &app,
            Method::POST,
            "/targettypes",
            Some(json!([{"name": "r"}]))
        )
        .await,
        StatusCode::FORBIDDEN
    );
    let (_, v) = app
        .api_post("/targettypes", json!([{"name": "kept"}]))
        .await;
    let kept = v[0]["id"].as_i64().expect("id");
    for (method, path, body) in [
        (
            Method::PUT,
            format!("/targettypes/{kept}"),
            Some(json!({"name": "r"})),
        ),
        (Method::DELETE, format!("/targettypes/{kept}"), None),
        (
            Method::POST,
            format!("/targettypes/{kept}/compatibledistributionsettypes"),
            Some(json!([{"id": os}])),
        ),
    ] {
        assert_eq!(
            as_reader(&app, method, &path, body).await,
            StatusCode::FORBIDDEN,
            "{path}"
        );
    }
}

#[tokio::test]
async fn target_type_accepts_at_most_50_set_types() {
    let app = spawn_app_with(&[]).await;
    // Set types are seeded, not created over REST: add 48 to the 3 seeded ones, 51 in all.
    sql(
        &app,
        "INSERT INTO distribution_set_type (tenant_id, key, name, created_by, last_modified_by)
         SELECT t.id, 'extra-' || i, 'extra ' || i, 'test', 'test'
         FROM tenant t, generate_series(1, 48) AS i WHERE t.name = 'DEFAULT'",
    );
    let (s, v) = app.api_get("/distributionsettypes?limit=500").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let mut all = ids(&v["content"]);
    assert_eq!(all.len(), 51, "{v}");
    all.sort_unstable();
    let refs = |ids: &[i64]| json!(ids.iter().map(|i| json!({"id": i})).collect::<Vec<_>>());

    let (s, v) = app
        .api_post(
            "/targettypes",
            json!([{"name": "many", "compatibledistributionsettypes": refs(&all)}]),
        )
        .await;
    assert_error_code(
        s,
        &v,
        StatusCode::TOO_MANY_REQUESTS,
        "hawkbit.server.error.quota.tooManyEntries",
    );
    let (_, v) = app.api_get("/targettypes").await;
    assert_eq!(v["total"], 0, "nothing created: {v}");

    let (s, v) = app
        .api_post(
            "/targettypes",
            json!([{"name": "many", "compatibledistributionsettypes": refs(&all[..50])}]),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let id = v[0]["id"].as_i64().expect("id");
    let compat = format!("/targettypes/{id}/compatibledistributionsettypes");
    let (s, v) = app.api_post(&compat, refs(&all[50..])).await;
    assert_error_code(
        s,
        &v,
        StatusCode::TOO_MANY_REQUESTS,
        "hawkbit.server.error.quota.tooManyEntries",
    );
    // Adding ones it already accepts changes nothing and is fine.
    let (s, v) = app.api_post(&compat, refs(&all[..3])).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, v) = app.api_get(&compat).await;
    assert_eq!(ids(&v), all[..50].to_vec());
}

#[tokio::test]
async fn target_tags_crud_and_assignment() {
    let app = spawn_with_reader().await;
    let (s, v) = app
        .api_post(
            "/targets",
            json!([{"controllerId": "dev-1"}, {"controllerId": "dev-2"}, {"controllerId": "dev-3"}]),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");

    let (s, v) = app
        .api_post(
            "/targettags",
            json!([{"name": "eu", "description": "Europe", "colour": "blue"}, {"name": "beta"}]),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(
        (&v[0]["name"], &v[0]["description"], &v[0]["colour"]),
        (&json!("eu"), &json!("Europe"), &json!("blue"))
    );
    assert_eq!(v[0]["createdBy"], "admin");
    let eu = v[0]["id"].as_i64().expect("id");
    let beta = v[1]["id"].as_i64().expect("id");
    assert!(
        v[0]["_links"]["assignedTargets"]["href"]
            .as_str()
            .unwrap_or("")
            .ends_with(&format!("/targettags/{eu}/assigned")),
        "{v}"
    );

    let (s, v) = app.api_post("/targettags", json!([{"name": "eu"}])).await;
    assert_error_code(
        s,
        &v,
        StatusCode::CONFLICT,
        "hawkbit.server.error.repo.entityAlreadyExists",
    );
    let (s, v) = app
        .api_post("/targettags", json!([{"description": "no name"}]))
        .await;
    assert_error_code(
        s,
        &v,
        StatusCode::BAD_REQUEST,
        "hawkbit.server.error.repo.constraintViolation",
    );
    let (s, v) = app
        .api_post(
            "/targettags",
            json!([{"name": "c", "colour": "x".repeat(17)}]),
        )
        .await;
    assert_error_code(
        s,
        &v,
        StatusCode::BAD_REQUEST,
        "hawkbit.server.error.repo.constraintViolation",
    );
    let (s, v) = app.api_get("/targettags?sort=name:ASC").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["total"], 2);
    assert_eq!(ids(&v["content"]), vec![beta, eu]);
    let (s, v) = app.api_get(&format!("/targettags/{eu}")).await;
    assert_eq!((s, v["name"].clone()), (StatusCode::OK, json!("eu")));
    let (s, v) = app.api_get("/targettags/999999").await;
    assert_error_code(
        s,
        &v,
        StatusCode::NOT_FOUND,
        "hawkbit.server.error.repo.entityNotFound",
    );

    // Assignment: bare controllerIds and objects both work.
    let assigned = format!("/targettags/{eu}/assigned");
    let (s, v) = app
        .api_post(
            &assigned,
            json!(["dev-1", {"controllerId": "dev-2"}, "dev-1"]),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let cids: Vec<&str> = v
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t["controllerId"].as_str())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(cids, vec!["dev-1", "dev-2"]);
    // Unknown target: 404 and nothing changes.
    let (s, v) = app.api_post(&assigned, json!(["dev-3", "ghost"])).await;
    assert_error_code(
        s,
        &v,
        StatusCode::NOT_FOUND,
        "hawkbit.server.error.repo.entityNotFound",
    );
    assert!(v["message"].as_str().unwrap_or("").contains("ghost"), "{v}");
    let (s, v) = app.api_post(&assigned, json!([{"id": 1}])).await;
    assert_error_code(
        s,
        &v,
        StatusCode::BAD_REQUEST,
        "hawkbit.server.error.rest.body.notReadable",
    );
    let (s, _) = app
        .api_post("/targettags/999999/assigned", json!(["dev-1"]))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    let (s, v) = app.api_get(&assigned).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (v["total"].clone(), v["size"].clone()),
        (json!(2), json!(2))
    );
    // Rendered exactly like GET /targets/{id}.
    let (_, dev1) = app.api_get("/targets/dev-1").await;
    assert_eq!(v["content"][0], dev1);
    let (_, v) = app
        .api_get(&format!("{assigned}?sort=controllerId:DESC&limit=1"))
        .await;
    assert_eq!(
        (v["total"].clone(), v["content"][0]["controllerId"].clone()),
        (json!(2), json!("dev-2"))
    );

    let (s, v) = app.api_get("/targets/dev-1/tags").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(ids(&v), vec![eu]);
    let (_, v) = app.api_get("/targets/dev-3/tags").await;
    assert_eq!(v, json!([]));
    let (s, _) = app.api_get("/targets/ghost/tags").await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    let (s, _) = app.api_delete(&format!("{assigned}/dev-1")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, v) = app.api_get(&assigned).await;
    assert_eq!(v["total"], 1);
    assert_eq!(v["content"][0]["controllerId"], "dev-2");
    let (s, _) = app.api_delete(&format!("{assigned}/ghost")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Update keeps what is not given; delete removes assignments.
    let (s, v) = app
        .api_put(&format!("/targettags/{eu}"), json!({"name": "emea"}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (&v["name"], &v["description"]),
        (&json!("emea"), &json!("Europe"))
    );
    let (s, v) = app
        .api_put(&format!("/targettags/{eu}"), json!({"name": "beta"}))
        .await;
    assert_error_code(
        s,
        &v,
        StatusCode::CONFLICT,
        "hawkbit.server.error.repo.entityAlreadyExists",
    );
    let (s, _) = app.api_delete(&format!("/targettags/{eu}")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, v) = app.api_get("/targets/dev-2/tags").await;
    assert_eq!(v, json!([]));
    let (s, _) = app.api_delete(&format!("/targettags/{eu}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // Deleting a target removes its tag assignments.
    let (s, _) = app
        .api_post(&format!("/targettags/{beta}/assigned"), json!(["dev-3"]))
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = app.api_delete("/targets/dev-3").await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, v) = app.api_get(&format!("/targettags/{beta}/assigned")).await;
    assert_eq!(v["total"], 0);

    // Permissions.
    assert_eq!(
        as_reader(&app, Method::GET, "/targettags", None).await,
        StatusCode::OK
    );
    assert_eq!(
        as_reader(
            &app,
            Method::GET,
            &format!("/targettags/{beta}/assigned"),
            None
        )
        .await,
        StatusCode::OK
    );
    for (method, path, body) in [
        (
            Method::POST,
            "/targettags".to_owned(),
            Some(json!([{"name": "r"}])),
        ),
        (
            Method::PUT,
            format!("/targettags/{beta}"),
            Some(json!({"name": "r"})),
        ),
        (Method::DELETE, format!("/targettags/{beta}"), None),
        (
            Method::POST,
            format!("/targettags/{beta}/assigned"),
            Some(json!(["dev-1"])),
        ),
        (
            Method::DELETE,
            format!("/targettags/{beta}/assigned/dev-1"),
            None,
        ),
    ] {
        assert_eq!(
            as_reader(&app, method, &path, body).await,
            StatusCode::FORBIDDEN,
            "{path}"
        );
    }
}

#[tokio::test]
async fn target_metadata_crud_limits_and_quota() {
    let app = spawn_with_reader().await;
    let (s, v) = app
        .api_post("/targets", json!([{"controllerId": "dev-1"}]))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let md = "/targets/dev-1/metadata";

    let (s, v) = app
        .api_post(
            md,
            json!([{"key": "site", "value": "Berlin"}, {"key": "rack", "value": "7"}]),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(
        v,
        json!([{"key": "site", "value": "Berlin"}, {"key": "rack", "value": "7"}])
    );
    let (s, v) = app.api_get(md).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v,
        json!({"content": [{"key": "rack", "value": "7"}, {"key": "site", "value": "Berlin"}],
               "total": 2, "size": 2})
    );
    let (_, v) = app.api_get(&format!("{md}?sort=key:DESC&limit=1")).await;
    assert_eq!(v["content"], json!([{"key": "site", "value": "Berlin"}]));
    let (s, v) = app.api_get(&format!("{md}/site")).await;
    assert_eq!(
        (s, v),
        (StatusCode::OK, json!({"key": "site", "value": "Berlin"}))
    );

    // Errors: all or nothing.
    let (s, v) = app
        .api_post(
            md,
            json!([{"key": "new", "value": "1"}, {"key": "site", "value": "x"}]),
        )
        .await;
    assert_error_code(
        s,
        &v,
        StatusCode::CONFLICT,
        "hawkbit.server.error.repo.entityAlreadyExists",
    );
    let (s, _) = app.api_get(&format!("{md}/new")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    for bad in [
        json!([{"key": "k".repeat(129), "value": "v"}]),
        json!([{"key": "", "value": "v"}]),
        json!([{"value": "v"}]),
        json!([{"key": "k", "value": "v".repeat(4001)}]),
    ] {
        let (s, v) = app.api_post(md, bad).await;
        assert_error_code(
            s,
            &v,
            StatusCode::BAD_REQUEST,
            "hawkbit.server.error.repo.constraintViolation",
        );
    }
    let (s, v) = app
        .api_post(
            md,
            json!([{"key": "k".repeat(128), "value": "v".repeat(4000)}]),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, _) = app.api_delete(&format!("{md}/{}", "k".repeat(128))).await;
    assert_eq!(s, StatusCode::NO_CONTENT);

    // Update and delete.
    let (s, v) = app
        .api_put(&format!("{md}/site"), json!({"value": "Munich"}))
        .await;
    assert_eq!(
        (s, v),
        (StatusCode::OK, json!({"key": "site", "value": "Munich"}))
    );
    let (s, v) = app
        .api_put(&format!("{md}/nope"), json!({"value": "x"}))
        .await;
    assert_error_code(
        s,
        &v,
        StatusCode::NOT_FOUND,
        "hawkbit.server.error.repo.entityNotFound",
    );
    let (s, _) = app
        .api_put(&format!("{md}/site"), json!({"value": "v".repeat(4001)}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = app.api_delete(&format!("{md}/rack")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = app.api_get(&format!("{md}/rack")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = app.api_delete(&format!("{md}/rack")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, v) = app.api_get("/targets/ghost/metadata").await;
    assert_error_code(
        s,
        &v,
        StatusCode::NOT_FOUND,
        "hawkbit.server.error.repo.entityNotFound",
    );
    let (s, _) = app
        .api_post(
            "/targets/ghost/metadata",
            json!([{"key": "a", "value": "b"}]),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Quota: 100 entries per target.
    let many: Vec<Value> = (0..99)
        .map(|i| json!({"key": format!("k{i:03}"), "value": "v"}))
        .collect();
    let (s, v) = app.api_post(md, Value::Array(many)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = app
        .api_post(md, json!([{"key": "one-too-many", "value": "v"}]))
        .await;
    assert_error_code(
        s,
        &v,
        StatusCode::TOO_MANY_REQUESTS,
        "hawkbit.server.error.quota.tooManyEntries",
    );
    let (_, v) = app.api_get(&format!("{md}?limit=1")).await;
    assert_eq!(v["total"], 100);

    // Permissions.
    assert_eq!(as_reader(&app, Method::GET, md, None).await, StatusCode::OK);
    assert_eq!(
        as_reader(&app, Method::GET, &format!("{md}/site"), None).await,
        StatusCode::OK
    );
    for (method, path, body) in [
        (
            Method::POST,
            md.to_owned(),
            Some(json!([{"key": "r", "value": "r"}])),
        ),
        (
            Method::PUT,
            format!("{md}/site"),
            Some(json!({"value": "r"})),
        ),
        (Method::DELETE, format!("{md}/site"), None),
    ] {
        assert_eq!(
            as_reader(&app, method, &path, body).await,
            StatusCode::FORBIDDEN,
            "{path}"
        );
    }
}

/// `GET <path>?q=<q>`: 200 with the list body, or the error status and body.
async fn get_q(app: &TestApp, path: &str, q: &str) -> (StatusCode, Value) {
    app.api_get(&format!("{path}?q={}", enc(q))).await
}

/// The `field` of every listed item, in order; checks that `total` matches the page.
fn listed(s: StatusCode, v: &Value, field: &str) -> Vec<String> {
    assert_eq!(s, StatusCode::OK, "{v}");
    let items = v["content"].as_array().expect("content");
    assert_eq!(v["total"], items.len(), "{v}");
    items
        .iter()
        .map(|i| i[field].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn q_filters_target_types_tags_tagged_targets_and_metadata() {
    let app = spawn_app_with(&[]).await;
    let (s, v) = app
        .api_post(
            "/targettypes",
            json!([{"name": "Gateway", "key": "gw", "colour": "red"},
                   {"name": "Sensor", "key": "sensor", "description": "field sensors"}]),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = app
        .api_post(
            "/targets",
            json!([{"controllerId": "dev-1", "name": "kitchen"},
                   {"controllerId": "dev-2", "name": "garage"},
                   {"controllerId": "dev-3", "name": "attic"}]),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = app
        .api_post(
            "/targettags",
            json!([{"name": "eu", "colour": "blue"}, {"name": "beta", "description": "early"}]),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let eu = v[0]["id"].as_i64().expect("id");
    let (s, v) = app
        .api_post(
            &format!("/targettags/{eu}/assigned"),
            json!(["dev-1", "dev-2"]),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = app
        .api_post(
            "/targets/dev-1/metadata",
            json!([{"key": "site", "value": "Berlin"}, {"key": "rack", "value": "7"},
                   {"key": "sitecode", "value": "BER-1"}]),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    const FIELD: &str = "hawkbit.server.error.rest.param.rsqlInvalidField";

    // GET /targettypes: matches (case-insensitive, wildcards, composition), a non-match, and
    // an unknown field.
    let types = "/targettypes";
    for (q, want) in [
        ("key==GW", vec!["Gateway"]),
        ("name==*sor", vec!["Sensor"]),
        ("colour==red,description==field*", vec!["Gateway", "Sensor"]),
        ("description=is=null", vec!["Gateway"]),
        ("name==nothing", vec![]),
    ] {
        let (s, v) = get_q(&app, types, q).await;
        assert_eq!(listed(s, &v, "name"), want, "q={q}");
    }
    let (s, v) = get_q(&app, types, "controllerid==x").await;
    assert_error_code(s, &v, StatusCode::BAD_REQUEST, FIELD);

    // GET /targettags: tags have no key.
    let tags = "/targettags";
    for (q, want) in [
        ("name==EU", vec!["eu"]),
        ("colour!=blue", vec!["beta"]),
        ("description==ea*;name==beta", vec!["beta"]),
        ("name==gamma", vec![]),
    ] {
        let (s, v) = get_q(&app, tags, q).await;
        assert_eq!(listed(s, &v, "name"), want, "q={q}");
    }
    let (s, v) = get_q(&app, tags, "key==eu").await;
    assert_error_code(s, &v, StatusCode::BAD_REQUEST, FIELD);

    // GET /targettags/{id}/assigned: the target fields, within the tag's targets only.
    let assigned = format!("/targettags/{eu}/assigned");
    for (q, want) in [
        ("name==garage", vec!["dev-2"]),
        ("controllerId==dev-*", vec!["dev-1", "dev-2"]),
        ("metadata.site==berlin", vec!["dev-1"]),
        ("name==attic", vec![]),
    ] {
        let (s, v) = get_q(&app, &assigned, q).await;
        assert_eq!(listed(s, &v, "controllerId"), want, "q={q}");
    }
    let (s, v) = get_q(&app, &assigned, "colour==blue").await;
    assert_error_code(s, &v, StatusCode::BAD_REQUEST, FIELD);

    // GET /targets/{id}/metadata: key and value.
    let md = "/targets/dev-1/metadata";
    for (q, want) in [
        ("key==site", vec!["site"]),
        ("key==site*", vec!["site", "sitecode"]),
        ("value==ber*", vec!["site", "sitecode"]),
        ("key=in=(rack,site);value!=7", vec!["site"]),
        ("value==Paris", vec![]),
    ] {
        let (s, v) = get_q(&app, md, q).await;
        assert_eq!(listed(s, &v, "key"), want, "q={q}");
    }
    let (s, v) = get_q(&app, md, "createdat==1").await;
    assert_error_code(s, &v, StatusCode::BAD_REQUEST, FIELD);
    // Paging applies after filtering, and the total counts every match.
    let (s, v) = app
        .api_get(&format!(
            "{md}?q={}&limit=1&sort=key:DESC",
            enc("key==site*")
        ))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (v["total"].clone(), v["content"][0]["key"].clone()),
        (json!(2), json!("sitecode"))
    );
}

/// hawkBit master's single-target tagging, bulk untagging and `onNotFoundPolicy`.
#[tokio::test]
async fn tags_follow_the_not_found_policy_one_by_one_and_in_bulk() {
    let app = spawn_app().await;
    let ids = app.fleet("np", 3).await;
    let (s, t) = app.api_post("/targettags", json!([{"name": "np"}])).await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    let tag = t[0]["id"].as_i64().expect("tag id");
    let assigned = format!("/targettags/{tag}/assigned");
    let count = async || {
        let (_, l) = app.api_get(&assigned).await;
        l["total"].as_i64().unwrap_or(-1)
    };

    // FAIL (the default): nothing tagged.
    let (s, _) = app.api_post(&assigned, json!([ids[0], "nobody"])).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(count().await, 0);
    // ON_WHAT_FOUND_AND_FAIL: the found one tagged, still 404.
    let (s, _) = app
        .api_post(
            &format!("{assigned}?onNotFoundPolicy=ON_WHAT_FOUND_AND_FAIL"),
            json!([ids[0], "nobody"]),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(count().await, 1);
    // ON_WHAT_FOUND_AND_SUCCESS: the found one tagged, success.
    let (s, v) = app
        .api_post(
            &format!("{assigned}?onNotFoundPolicy=ON_WHAT_FOUND_AND_SUCCESS"),
            json!([ids[1], "nobody"]),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(count().await, 2);
    let (s, _) = app
        .api_post(&format!("{assigned}/{}", ids[2]), json!({}))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(count().await, 3);
    let (s, _) = app.api_post(&format!("{assigned}/nobody"), json!({})).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Bulk untagging, with the same policies.
    let (s, _) = app
        .api(Method::DELETE, &assigned, Some(json!([ids[0], "nobody"])))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(count().await, 3);
    let (s, _) = app
        .api(
            Method::DELETE,
            &format!("{assigned}?onNotFoundPolicy=ON_WHAT_FOUND_AND_SUCCESS"),
            Some(json!([ids[0], ids[1], "nobody"])),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(count().await, 1);
}

/// Distribution set tags: the tag resource as target tags have it, and which sets carry them.
#[tokio::test]
async fn distribution_set_tags_are_created_assigned_listed_and_removed() {
    let app = spawn_app().await;
    let a = app.create_set("tag-a").await;
    let b = app.create_set("tag-b").await;
    let (s, t) = app
        .api_post(
            "/distributionsettags",
            json!([{"name": "stable", "colour": "#0f0"}, {"name": "skip-implicit-lock"}]),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    let (stable, skip) = (
        t[0]["id"].as_i64().expect("id"),
        t[1]["id"].as_i64().expect("id"),
    );
    assert!(
        t[0]["_links"]["assignedDistributionSets"]["href"]
            .as_str()
            .is_some_and(|h| h.ends_with(&format!("/distributionsettags/{stable}/assigned"))),
        "{t}"
    );
    let (s, e) = app
        .api_post("/distributionsettags", json!([{"name": "stable"}]))
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{e}");
    let (s, v) = app
        .api_put(
            &format!("/distributionsettags/{stable}"),
            json!({"description": "ok"}),
        )
        .await;
    assert_eq!(
        (s, v["description"].as_str()),
        (StatusCode::OK, Some("ok")),
        "{v}"
    );
    let (_, l) = app.api_get("/distributionsettags?q=name==stable").await;
    assert_eq!(l["total"], 1, "{l}");

    let assigned = format!("/distributionsettags/{stable}/assigned");
    let (s, v) = app.api_post(&assigned, json!([a, {"id": b}])).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v.as_array().map(Vec::len), Some(2), "{v}");
    let (s, _) = app.api_post(&assigned, json!([a, 999999])).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (_, l) = app.api_get(&format!("{assigned}?sort=name:DESC")).await;
    assert_eq!(l["total"], 2, "{l}");
    assert_eq!(l["content"][0]["id"], b, "{l}");
    assert!(l["content"][0]["modules"].is_array(), "{l}");
    let (s, _) = app
        .api(Method::DELETE, &format!("{assigned}/{a}"), None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = app.api(Method::DELETE, &assigned, Some(json!([b]))).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, l) = app.api_get(&assigned).await;
    assert_eq!(l["total"], 0, "{l}");
    let (s, _) = app.api_post(&format!("{assigned}/{a}"), json!({})).await;
    assert_eq!(s, StatusCode::NO_CONTENT);

    // A set tagged skip-implicit-lock is not locked by the rollout created over it.
    let (s, _) = app
        .api_post(
            &format!("/distributionsettags/{skip}/assigned/{b}"),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    app.fleet("dst", 1).await;
    for ds in [a, b] {
        let r = app
            .create_rollout(json!({"name": format!("r{ds}"), "distributionSetId": ds,
                "targetFilterQuery": "controllerId==dst-*", "amountGroups": 1}))
            .await;
        assert!(r["id"].is_i64(), "{r}");
    }
    let (_, sa) = app.api_get(&format!("/distributionsets/{a}")).await;
    let (_, sb) = app.api_get(&format!("/distributionsets/{b}")).await;
    assert_eq!(
        (sa["locked"].as_bool(), sb["locked"].as_bool()),
        (Some(true), Some(false))
    );

    assert_eq!(
        app.api_delete(&format!("/distributionsettags/{stable}"))
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    let (s, _) = app.api_get(&format!("/distributionsettags/{stable}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}
