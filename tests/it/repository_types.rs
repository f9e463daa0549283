//! Writing the repository's types (software module types, distribution set types and their
//! module lists), distribution set metadata, and the module fields hawkBit master added
//! (`complete`, `minArtifacts`, locking through PUT) — all through real HTTP.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{
    ERR_CONSTRAINT, ERR_EXISTS, ERR_NOT_FOUND, TestApp, assert_error, enc, spawn_app,
};

const ERR_DELETED: &str = "hawkbit.server.error.deleted";
const ERR_READ_ONLY: &str = "hawkbit.server.error.entityReadOnly";
const ERR_QUOTA: &str = "hawkbit.server.error.quota.tooManyEntries";

fn ids(list: &Value) -> Vec<i64> {
    list.as_array()
        .map(|a| a.iter().filter_map(|t| t["id"].as_i64()).collect())
        .unwrap_or_default()
}

async fn create_module_type(app: &TestApp, body: Value) -> Value {
    let (s, v) = app.api_post("/softwaremoduletypes", json!([body])).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v[0].clone()
}

async fn create_set_type(app: &TestApp, body: Value) -> Value {
    let (s, v) = app.api_post("/distributionsettypes", json!([body])).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v[0].clone()
}

async fn create_module(app: &TestApp, name: &str, ty: &str) -> i64 {
    let (s, v) = app
        .api_post(
            "/softwaremodules",
            json!([{"name": name, "version": "1.0", "type": ty}]),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v[0]["id"].as_i64().expect("module id")
}

async fn create_set_of(app: &TestApp, name: &str, ty: &str, modules: &[i64]) -> i64 {
    let modules: Vec<Value> = modules.iter().map(|id| json!({"id": id})).collect();
    let (s, v) = app
        .api_post(
            "/distributionsets",
            json!([{"name": name, "version": "1.0", "type": ty, "modules": modules}]),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v[0]["id"].as_i64().expect("set id")
}

#[tokio::test]
async fn module_types_are_created_changed_and_deleted_as_hawkbit_does() {
    let app = spawn_app().await;

    let (s, v) = app
        .api_post(
            "/softwaremoduletypes",
            json!([
                {"key": "fw", "name": "Firmware", "description": "boot firmware",
                 "colour": "#ff0000", "maxAssignments": 2, "minArtifacts": 1},
                {"key": "cfg", "name": "Config"},
            ]),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let fw = &v[0];
    assert_eq!(fw["key"], "fw");
    assert_eq!(fw["name"], "Firmware");
    assert_eq!(fw["description"], "boot firmware");
    assert_eq!(fw["colour"], "#ff0000");
    assert_eq!(fw["maxAssignments"], 2);
    assert_eq!(fw["minArtifacts"], 1);
    assert_eq!(fw["deleted"], false);
    assert_eq!(fw["createdBy"], "admin");
    assert_eq!(v[1]["maxAssignments"], 1);
    assert_eq!(v[1]["minArtifacts"], 0);
    let fw_id = fw["id"].as_i64().expect("id");
    let cfg_id = v[1]["id"].as_i64().expect("id");
    let (s, one) = app.api_get(&format!("/softwaremoduletypes/{fw_id}")).await;
    assert_eq!(s, StatusCode::OK, "{one}");
    assert_eq!(one["minArtifacts"], 1);

    // Key and name are unique; both are required; maxAssignments is at least 1.
    for dup in [
        json!({"key": "fw", "name": "Other"}),
        json!({"key": "other", "name": "Firmware"}),
    ] {
        let (s, v) = app.api_post("/softwaremoduletypes", json!([dup])).await;
        assert_error(s, &v, StatusCode::CONFLICT, ERR_EXISTS);
    }
    for bad in [
        json!({"name": "No key"}),
        json!({"key": "nokey"}),
        json!({"key": "x", "name": "x", "maxAssignments": 0}),
        json!({"key": "y", "name": "y", "minArtifacts": -1}),
        json!({"key": "z".repeat(65), "name": "z"}),
    ] {
        let (s, v) = app.api_post("/softwaremoduletypes", json!([bad])).await;
        assert_error(s, &v, StatusCode::BAD_REQUEST, ERR_CONSTRAINT);
    }
    // All or none: the valid first entry of a failing request is not kept.
    let (s, _) = app
        .api_post(
            "/softwaremoduletypes",
            json!([{"key": "kept", "name": "Kept"}, {"key": "fw", "name": "Dup"}]),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (_, list) = app
        .api_get(&format!("/softwaremoduletypes?q={}", enc("key==kept")))
        .await;
    assert_eq!(list["total"], 0, "{list}");

    // PUT changes description and colour only.
    let (s, v) = app
        .api_put(
            &format!("/softwaremoduletypes/{fw_id}"),
            json!({"description": "new", "colour": "blue", "name": "ignored", "maxAssignments": 9}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["description"], "new");
    assert_eq!(v["colour"], "blue");
    assert_eq!(v["name"], "Firmware");
    assert_eq!(v["maxAssignments"], 2);
    let (s, v) = app
        .api_put("/softwaremoduletypes/987654", json!({"description": "x"}))
        .await;
    assert_error(s, &v, StatusCode::NOT_FOUND, ERR_NOT_FOUND);

    // An unused type goes; one that modules have is only marked deleted.
    let (s, _) = app
        .api_delete(&format!("/softwaremoduletypes/{cfg_id}"))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, v) = app.api_get(&format!("/softwaremoduletypes/{cfg_id}")).await;
    assert_error(s, &v, StatusCode::NOT_FOUND, ERR_NOT_FOUND);
    create_module(&app, "bootloader", "fw").await;
    let (s, _) = app
        .api_delete(&format!("/softwaremoduletypes/{fw_id}"))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, v) = app.api_get(&format!("/softwaremoduletypes/{fw_id}")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["deleted"], true);
    let (_, list) = app.api_get("/softwaremoduletypes").await;
    assert!(!ids(&list["content"]).contains(&fw_id), "{list}");
    let (s, v) = app
        .api_put(
            &format!("/softwaremoduletypes/{fw_id}"),
            json!({"description": "x"}),
        )
        .await;
    assert_error(s, &v, StatusCode::NOT_FOUND, ERR_DELETED);
    let (s, v) = app.api_delete("/softwaremoduletypes/987654").await;
    assert_error(s, &v, StatusCode::NOT_FOUND, ERR_NOT_FOUND);
}

#[tokio::test]
async fn set_types_and_their_module_lists() {
    let app = spawn_app().await;
    let fw = create_module_type(&app, json!({"key": "fw", "name": "Firmware"})).await;
    let cfg = create_module_type(&app, json!({"key": "cfg", "name": "Config"})).await;
    let extra = create_module_type(&app, json!({"key": "extra", "name": "Extra"})).await;
    let (fw_id, cfg_id, extra_id) = (
        fw["id"].as_i64().unwrap_or(0),
        cfg["id"].as_i64().unwrap_or(0),
        extra["id"].as_i64().unwrap_or(0),
    );

    let t = create_set_type(
        &app,
        json!({"key": "device", "name": "Device", "description": "a device", "colour": "red",
               "mandatorymodules": [{"id": fw_id}], "optionalmodules": [{"id": cfg_id}]}),
    )
    .await;
    assert_eq!(t["key"], "device");
    assert_eq!(t["description"], "a device");
    assert_eq!(t["deleted"], false);
    assert_eq!(ids(&t["mandatorymodules"]), vec![fw_id]);
    assert_eq!(ids(&t["optionalmodules"]), vec![cfg_id]);
    let id = t["id"].as_i64().expect("id");
    let base = format!("/distributionsettypes/{id}");

    // Unknown module types are 404, taken keys 409, a missing name 400.
    let (s, v) = app
        .api_post(
            "/distributionsettypes",
            json!([{"key": "k2", "name": "n2", "mandatorymodules": [{"id": 987654}]}]),
        )
        .await;
    assert_error(s, &v, StatusCode::NOT_FOUND, ERR_NOT_FOUND);
    let (s, v) = app
        .api_post(
            "/distributionsettypes",
            json!([{"key": "device", "name": "n3"}]),
        )
        .await;
    assert_error(s, &v, StatusCode::CONFLICT, ERR_EXISTS);
    let (s, v) = app
        .api_post("/distributionsettypes", json!([{"key": "k4"}]))
        .await;
    assert_error(s, &v, StatusCode::BAD_REQUEST, ERR_CONSTRAINT);

    // PUT: description and colour.
    let (s, v) = app
        .api_put(
            &base,
            json!({"description": "changed", "colour": "green", "key": "nope"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["description"], "changed");
    assert_eq!(v["colour"], "green");
    assert_eq!(v["key"], "device");

    // Module lists: add (hawkBit's single {"id"}, or a list), read one, remove.
    let (s, v) = app
        .api_post(
            &format!("{base}/optionalmoduletypes"),
            json!({"id": extra_id}),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    let (s, v) = app.api_get(&format!("{base}/optionalmoduletypes")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(ids(&v), vec![cfg_id, extra_id]);
    let (s, v) = app
        .api_get(&format!("{base}/optionalmoduletypes/{extra_id}"))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["key"], "extra");
    let (s, v) = app
        .api_get(&format!("{base}/mandatorymoduletypes/{extra_id}"))
        .await;
    assert_error(s, &v, StatusCode::NOT_FOUND, ERR_NOT_FOUND);
    // Adding an optional type as mandatory moves it.
    let (s, _) = app
        .api_post(
            &format!("{base}/mandatorymoduletypes"),
            json!([{"id": extra_id}]),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, v) = app.api_get(&format!("{base}/mandatorymoduletypes")).await;
    assert_eq!(ids(&v), vec![fw_id, extra_id]);
    let (s, _) = app
        .api_delete(&format!("{base}/mandatorymoduletypes/{extra_id}"))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, v) = app.api_get(&base).await;
    assert_eq!(ids(&v["mandatorymodules"]), vec![fw_id]);
    assert_eq!(ids(&v["optionalmodules"]), vec![cfg_id]);
    for (path, body) in [
        (
            format!("{base}/mandatorymoduletypes"),
            json!({"id": 987654}),
        ),
        (
            "/distributionsettypes/987654/mandatorymoduletypes".to_owned(),
            json!({"id": fw_id}),
        ),
    ] {
        let (s, v) = app.api_post(&path, body).await;
        assert_error(s, &v, StatusCode::NOT_FOUND, ERR_NOT_FOUND);
    }
    let (s, v) = app
        .api_post(&format!("{base}/mandatorymoduletypes"), json!({}))
        .await;
    assert_error(s, &v, StatusCode::BAD_REQUEST, ERR_CONSTRAINT);

    // Once a set has the type, its module lists are frozen and deleting only marks it.
    let module = create_module(&app, "bootloader", "fw").await;
    create_set_of(&app, "dev-set", "device", &[module]).await;
    let (s, v) = app
        .api_post(
            &format!("{base}/optionalmoduletypes"),
            json!({"id": extra_id}),
        )
        .await;
    assert_error(s, &v, StatusCode::FORBIDDEN, ERR_READ_ONLY);
    let (s, v) = app
        .api_delete(&format!("{base}/optionalmoduletypes/{cfg_id}"))
        .await;
    assert_error(s, &v, StatusCode::FORBIDDEN, ERR_READ_ONLY);
    let (s, _) = app.api_delete(&base).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, v) = app.api_get(&base).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["deleted"], true);
    let (s, v) = app.api_put(&base, json!({"description": "x"})).await;
    assert_error(s, &v, StatusCode::NOT_FOUND, ERR_DELETED);

    // An unused set type is gone, also from the target types that accepted it.
    let unused = create_set_type(&app, json!({"key": "unused", "name": "Unused"})).await;
    let unused_id = unused["id"].as_i64().expect("id");
    let (s, v) = app
        .api_post(
            "/targettypes",
            json!([{"name": "gw", "compatibledistributionsettypes": [{"id": unused_id}]}]),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let tt = v[0]["id"].as_i64().expect("target type id");
    let (s, _) = app
        .api_delete(&format!("/distributionsettypes/{unused_id}"))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, v) = app
        .api_get(&format!("/distributionsettypes/{unused_id}"))
        .await;
    assert_error(s, &v, StatusCode::NOT_FOUND, ERR_NOT_FOUND);
    let (_, v) = app
        .api_get(&format!("/targettypes/{tt}/compatibledistributionsettypes"))
        .await;
    assert_eq!(v, json!([]));
}

#[tokio::test]
async fn set_type_module_lists_have_a_quota() {
    let app = spawn_app().await;
    let many: Vec<Value> = (0..51)
        .map(|i| json!({"key": format!("t{i}"), "name": format!("T{i}")}))
        .collect();
    let (s, v) = app
        .api_post("/softwaremoduletypes", Value::Array(many))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let refs: Vec<Value> = ids(&v).into_iter().map(|id| json!({"id": id})).collect();
    let (s, v) = app
        .api_post(
            "/distributionsettypes",
            json!([{"key": "big", "name": "Big", "optionalmodules": refs}]),
        )
        .await;
    assert_error(s, &v, StatusCode::TOO_MANY_REQUESTS, ERR_QUOTA);
}

#[tokio::test]
async fn set_metadata_is_set_read_and_removed() {
    let app = spawn_app().await;
    let ds = app.create_set("meta").await;
    let base = format!("/distributionsets/{ds}/metadata");

    let (s, v) = app
        .api_post(
            &base,
            json!([{"key": "owner", "value": "ops"}, {"key": "channel", "value": "beta"}]),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = app.api_get(&base).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v,
        json!({"content": [{"key": "channel", "value": "beta"}, {"key": "owner", "value": "ops"}],
               "total": 2, "size": 2})
    );
    let (_, v) = app
        .api_get(&format!("{base}?q={}&limit=1", enc("value==ops")))
        .await;
    assert_eq!(v["total"], 1, "{v}");
    assert_eq!(v["content"][0]["key"], "owner");
    // Sets are found by their metadata.
    let (_, v) = app
        .api_get(&format!(
            "/distributionsets?q={}",
            enc("metadata.channel==beta")
        ))
        .await;
    assert_eq!(ids(&v["content"]), vec![ds], "{v}");

    let (s, v) = app.api_get(&format!("{base}/owner")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v, json!({"key": "owner", "value": "ops"}));

    // A create or a PUT sets a key (hawkBit 1.1): known keys get the new value, new ones are
    // added.
    let (s, _) = app
        .api_post(&base, json!([{"key": "owner", "value": "dev"}]))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = app
        .api_put(&format!("{base}/channel"), json!({"value": "stable"}))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = app
        .api_put(&format!("{base}/region"), json!({"value": "eu"}))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, v) = app.api_get(&base).await;
    assert_eq!(
        v["content"],
        json!([{"key": "channel", "value": "stable"}, {"key": "owner", "value": "dev"},
               {"key": "region", "value": "eu"}])
    );

    let (s, _) = app.api_delete(&format!("{base}/region")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    for (s, v) in [
        app.api_get(&format!("{base}/region")).await,
        app.api_delete(&format!("{base}/region")).await,
        app.api_get("/distributionsets/987654/metadata").await,
        app.api_post("/distributionsets/987654/metadata", json!([{"key": "a"}]))
            .await,
        app.api_put("/distributionsets/987654/metadata/a", json!({"value": "b"}))
            .await,
    ] {
        assert_error(s, &v, StatusCode::NOT_FOUND, ERR_NOT_FOUND);
    }
    for (s, v) in [
        app.api_post(&base, json!([{"value": "no key"}])).await,
        app.api_post(&base, json!([{"key": "k".repeat(129), "value": "v"}]))
            .await,
        app.api_put(&format!("{base}/owner"), json!({})).await,
    ] {
        assert_error(s, &v, StatusCode::BAD_REQUEST, ERR_CONSTRAINT);
    }

    // maxMetaDataEntriesPerDistributionSet (100): the set has 2, 99 more are refused whole.
    let many: Vec<Value> = (0..99)
        .map(|i| json!({"key": format!("k{i}"), "value": "v"}))
        .collect();
    let (s, v) = app.api_post(&base, Value::Array(many)).await;
    assert_error(s, &v, StatusCode::TOO_MANY_REQUESTS, ERR_QUOTA);
    let (_, v) = app.api_get(&base).await;
    assert_eq!(v["total"], 2, "{v}");
    // Overwriting known keys does not count against it.
    let mut many: Vec<Value> = (0..98)
        .map(|i| json!({"key": format!("k{i}"), "value": "v"}))
        .collect();
    many.push(json!({"key": "owner", "value": "x"}));
    let (s, v) = app.api_post(&base, Value::Array(many)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = app
        .api_put(&format!("{base}/one-too-many"), json!({"value": "v"}))
        .await;
    assert_error(s, &v, StatusCode::TOO_MANY_REQUESTS, ERR_QUOTA);
}

#[tokio::test]
async fn modules_show_complete_and_are_locked_through_put() {
    let app = spawn_app().await;
    create_module_type(
        &app,
        json!({"key": "fw", "name": "Firmware", "minArtifacts": 1}),
    )
    .await;
    let sm = create_module(&app, "bootloader", "fw").await;
    let path = format!("/softwaremodules/{sm}");
    let (_, v) = app.api_get(&path).await;
    assert_eq!(v["complete"], false, "{v}");
    assert_eq!(v["encrypted"], false);
    assert_eq!(v["locked"], false);
    let (s, v) = app
        .api_post(
            &format!("{path}/artifacts"),
            json!({"filename": "fw.bin", "size": 10,
                   "hashes": {"sha1": "2fd4e1c67a2d28fced849ee1bb76e7391b93eb12",
                              "md5": "9e107d9d372bb6826bd81d3542a419d6"},
                   "urls": {"HTTPS": "https://cdn.example.net/fw.bin"}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (_, v) = app.api_get(&path).await;
    assert_eq!(v["complete"], true, "{v}");
    // A type without minArtifacts: complete without artifacts.
    let os = create_module(&app, "rootfs", "os").await;
    let (_, v) = app.api_get(&format!("/softwaremodules/{os}")).await;
    assert_eq!(v["complete"], true, "{v}");

    // encrypted is rendered as created.
    let (s, v) = app
        .api_post(
            "/softwaremodules",
            json!([{"name": "secret", "version": "1", "type": "os", "encrypted": true}]),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v[0]["encrypted"], true);

    // PUT locks and, as hawkBit allows, unlocks; leaving it out keeps it.
    let (s, v) = app.api_put(&path, json!({"locked": true})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["locked"], true);
    let (_, v) = app.api_put(&path, json!({"description": "d"})).await;
    assert_eq!(v["locked"], true, "{v}");
    assert_eq!(v["description"], "d");
    let (s, v) = app.api_put(&path, json!({"locked": false})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["locked"], false);

    // A soft-deleted module cannot change.
    create_set_of(&app, "os-set", "os", &[os]).await;
    let (s, _) = app.api_delete(&format!("/softwaremodules/{os}")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, v) = app
        .api_put(&format!("/softwaremodules/{os}"), json!({"locked": true}))
        .await;
    assert_error(s, &v, StatusCode::NOT_FOUND, ERR_DELETED);
}
