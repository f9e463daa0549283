//! The software repository resources: types, software modules, artifacts, module metadata,
//! distribution sets (service.md "REST resources that rollouts.md §9 leaves implicit").

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{
    ERR_CONSTRAINT, ERR_EXISTS, ERR_NOT_FOUND, ERR_NOT_READABLE, ERR_PERMISSION, TestApp,
    assert_error, spawn_app, spawn_app_with_users,
};

const SHA1: &str = "2fd4e1c67a2d28fced849ee1bb76e7391b93eb12";
const MD5: &str = "9e107d9d372bb6826bd81d3542a419d6";
const SHA256: &str = "d7a8fbb307d7809469ca9abcb0082e4f8d5651e46d3cdb762d02d0bf37c9e592";

fn artifact(filename: &str) -> Value {
    json!({
        "filename": filename, "size": 1024,
        "hashes": {"sha1": SHA1, "md5": MD5},
        "urls": {"HTTPS": format!("https://cdn.example.net/{filename}")},
    })
}

/// Create one module and return its id.
async fn module(app: &TestApp, name: &str, version: &str, ty: &str) -> i64 {
    let (s, v) = app
        .api_post(
            "/softwaremodules",
            json!([{"name": name, "version": version, "type": ty}]),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v[0]["id"].as_i64().expect("module id")
}

#[tokio::test]
async fn every_tenant_has_the_default_types() {
    let app = spawn_app().await;

    let (s, types) = app.api_get("/softwaremoduletypes").await;
    assert_eq!(s, StatusCode::OK, "{types}");
    assert_eq!(types["total"], 3);
    assert_eq!(types["size"], 3);
    let os = types["content"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["key"] == "os")
        .expect("os type")
        .clone();
    assert_eq!(os["maxAssignments"], 1);
    assert_eq!(os["deleted"], false);
    assert!(os["createdAt"].is_i64() && os["lastModifiedBy"].is_string());
    let os_id = os["id"].as_i64().unwrap();
    assert!(
        os["_links"]["self"]["href"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/rest/v1/softwaremoduletypes/{os_id}"))
    );
    let (s, one) = app.api_get(&format!("/softwaremoduletypes/{os_id}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(one["key"], "os");

    let (s, sets) = app.api_get("/distributionsettypes?sort=key:DESC").await;
    assert_eq!(s, StatusCode::OK, "{sets}");
    assert_eq!(sets["total"], 3);
    let keys: Vec<&str> = sets["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["os_app", "os", "app"]);
    let os_app = &sets["content"][0];
    let id = os_app["id"].as_i64().unwrap();
    let mandatory_href = os_app["_links"]["mandatorymodules"]["href"]
        .as_str()
        .unwrap();
    assert!(mandatory_href.ends_with(&format!("/distributionsettypes/{id}/mandatorymoduletypes")));

    let (s, mandatory) = app
        .api_get(&format!("/distributionsettypes/{id}/mandatorymoduletypes"))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(mandatory.as_array().unwrap().len(), 1);
    assert_eq!(mandatory[0]["key"], "os");
    let (s, optional) = app
        .api_get(&format!("/distributionsettypes/{id}/optionalmoduletypes"))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(optional.as_array().unwrap().len(), 1);
    assert_eq!(optional[0]["key"], "application");
    let (s, one) = app.api_get(&format!("/distributionsettypes/{id}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(one["key"], "os_app");
}

#[tokio::test]
async fn modules_artifacts_metadata_and_sets_round_trip() {
    let app = spawn_app().await;

    // Modules: create, get, list with paging and sort, update.
    let (s, created) = app
        .api_post(
            "/softwaremodules",
            json!([
                {"name": "rootfs", "version": "1.0.0", "type": "os", "vendor": "ACME",
                 "description": "the root file system", "encrypted": true},
                {"name": "agent", "version": "2.1", "type": "application"},
            ]),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    assert_eq!(created.as_array().unwrap().len(), 2);
    let os = created[0]["id"].as_i64().unwrap();
    let agent = created[1]["id"].as_i64().unwrap();
    assert_eq!(created[0]["type"], "os");
    assert_eq!(created[0]["typeName"], "OS");
    assert_eq!(created[0]["vendor"], "ACME");
    assert_eq!(created[0]["encrypted"], true);
    assert_eq!(created[0]["locked"], false);
    assert_eq!(created[0]["deleted"], false);
    assert_eq!(created[0]["createdBy"], "admin");
    assert!(created[1].get("vendor").is_none(), "nulls are omitted");
    for rel in ["self", "type", "artifacts", "metadata"] {
        assert!(
            created[0]["_links"][rel]["href"]
                .as_str()
                .unwrap()
                .starts_with("http://"),
            "{rel}"
        );
    }

    let (s, one) = app.api_get(&format!("/softwaremodules/{os}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(one["name"], "rootfs");

    let (s, page) = app.api_get("/softwaremodules?limit=1&offset=1").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(page["total"], 2);
    assert_eq!(page["size"], 1);
    assert_eq!(page["content"][0]["id"], agent);
    let (_, sorted) = app.api_get("/softwaremodules?sort=name:ASC").await;
    assert_eq!(sorted["content"][0]["name"], "agent");

    let (s, updated) = app
        .api_put(
            &format!("/softwaremodules/{agent}"),
            json!({"vendor": "Example Corp", "description": "fleet agent", "name": "ignored"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{updated}");
    assert_eq!(updated["vendor"], "Example Corp");
    assert_eq!(updated["description"], "fleet agent");
    assert_eq!(updated["name"], "agent");

    // Artifacts: hashes are lower-cased, both URLs kept.
    let (s, a) = app
        .api_post(
            &format!("/softwaremodules/{os}/artifacts"),
            json!({
                "filename": "rootfs.img", "size": 52428800,
                "hashes": {"sha1": SHA1.to_uppercase(), "md5": MD5, "sha256": SHA256.to_uppercase()},
                "urls": {"HTTPS": "https://cdn.example.net/rootfs.img", "HTTP": "http://cdn.example.net/rootfs.img"},
            }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{a}");
    let artifact_id = a["id"].as_i64().unwrap();
    assert_eq!(a["filename"], "rootfs.img");
    assert_eq!(a["size"], 52428800);
    assert_eq!(a["hashes"]["sha1"], SHA1);
    assert_eq!(a["hashes"]["md5"], MD5);
    assert_eq!(a["hashes"]["sha256"], SHA256);
    assert_eq!(a["urls"]["HTTPS"], "https://cdn.example.net/rootfs.img");
    assert_eq!(a["urls"]["HTTP"], "http://cdn.example.net/rootfs.img");
    assert!(a["createdAt"].is_i64());
    assert!(
        a["_links"]["self"]["href"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/softwaremodules/{os}/artifacts/{artifact_id}"))
    );
    let (s, a2) = app
        .api_post(
            &format!("/softwaremodules/{os}/artifacts"),
            artifact("boot.img"),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{a2}");
    assert!(a2["hashes"].get("sha256").is_none());

    let (s, list) = app
        .api_get(&format!("/softwaremodules/{os}/artifacts"))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list.as_array().unwrap().len(), 2);
    let (s, one) = app
        .api_get(&format!("/softwaremodules/{os}/artifacts/{artifact_id}"))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(one["filename"], "rootfs.img");
    let (s, _) = app
        .api_delete(&format!("/softwaremodules/{os}/artifacts/{}", a2["id"]))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, list) = app
        .api_get(&format!("/softwaremodules/{os}/artifacts"))
        .await;
    assert_eq!(list.as_array().unwrap().len(), 1);

    // Metadata.
    let (s, md) = app
        .api_post(
            &format!("/softwaremodules/{os}/metadata"),
            json!([{"key": "install.mode", "value": "ab", "targetVisible": true},
                   {"key": "notes", "value": "internal"}]),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{md}");
    assert_eq!(
        md[0],
        json!({"key": "install.mode", "value": "ab", "targetVisible": true})
    );
    assert_eq!(md[1]["targetVisible"], false);
    let (s, mds) = app
        .api_get(&format!("/softwaremodules/{os}/metadata"))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(mds["total"], 2);
    assert_eq!(mds["content"][1]["key"], "notes");
    let (s, _) = app
        .api_delete(&format!("/softwaremodules/{os}/metadata/notes"))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, mds) = app
        .api_get(&format!("/softwaremodules/{os}/metadata"))
        .await;
    assert_eq!(mds["total"], 1);

    // Distribution sets.
    let (s, sets) = app
        .api_post(
            "/distributionsets",
            json!([{"name": "fleet", "version": "1.0", "description": "first", "type": "os_app",
                    "modules": [{"id": os}, {"id": agent}], "requiredMigrationStep": true},
                   {"name": "fleet", "version": "1.1", "modules": [{"id": agent}]}]),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{sets}");
    let ds = sets[0]["id"].as_i64().unwrap();
    let ds2 = sets[1]["id"].as_i64().unwrap();
    assert_eq!(sets[0]["type"], "os_app");
    assert!(sets[0]["typeName"].is_string());
    assert_eq!(sets[0]["complete"], true);
    assert_eq!(sets[0]["valid"], true);
    assert_eq!(sets[0]["locked"], false);
    assert_eq!(sets[0]["deleted"], false);
    assert_eq!(sets[0]["requiredMigrationStep"], true);
    assert_eq!(sets[0]["modules"].as_array().unwrap().len(), 2);
    assert_eq!(sets[0]["modules"][0]["id"], os);
    for rel in ["self", "modules", "type"] {
        assert!(sets[0]["_links"][rel]["href"].is_string(), "{rel}");
    }
    // Default type os_app; without an os module it is incomplete.
    assert_eq!(sets[1]["type"], "os_app");
    assert_eq!(sets[1]["complete"], false);

    let (s, one) = app.api_get(&format!("/distributionsets/{ds}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(one["name"], "fleet");
    let (s, page) = app
        .api_get("/distributionsets?limit=1&sort=version:DESC")
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(page["total"], 2);
    assert_eq!(page["size"], 1);
    assert_eq!(page["content"][0]["id"], ds2);

    let (s, members) = app
        .api_get(&format!("/distributionsets/{ds}/assignedSM"))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(members["total"], 2);

    let (s, updated) = app
        .api_put(
            &format!("/distributionsets/{ds2}"),
            json!({"description": "second", "version": "1.2"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{updated}");
    assert_eq!(updated["description"], "second");
    assert_eq!(updated["version"], "1.2");

    // Adding the os module completes the second set; removing it again does not.
    let (s, v) = app
        .api_post(
            &format!("/distributionsets/{ds2}/assignedSM"),
            json!([{"id": os}]),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, one) = app.api_get(&format!("/distributionsets/{ds2}")).await;
    assert_eq!(one["complete"], true);
    assert_eq!(one["modules"].as_array().unwrap().len(), 2);
    let (s, _) = app
        .api_delete(&format!("/distributionsets/{ds2}/assignedSM/{os}"))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, one) = app.api_get(&format!("/distributionsets/{ds2}")).await;
    assert_eq!(one["complete"], false);

    // A module still in a set is soft-deleted; a set nothing references is gone for good.
    let (s, _) = app.api_delete(&format!("/softwaremodules/{agent}")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, gone) = app.api_get(&format!("/softwaremodules/{agent}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(gone["deleted"], true);
    let (_, list) = app.api_get("/softwaremodules").await;
    assert_eq!(list["total"], 1);

    let (s, _) = app.api_delete(&format!("/distributionsets/{ds2}")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, v) = app.api_get(&format!("/distributionsets/{ds2}")).await;
    assert_error(s, &v, StatusCode::NOT_FOUND, ERR_NOT_FOUND);

    let fresh = module(&app, "spare", "1", "runtime").await;
    let (s, _) = app.api_delete(&format!("/softwaremodules/{fresh}")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, v) = app.api_get(&format!("/softwaremodules/{fresh}")).await;
    assert_error(s, &v, StatusCode::NOT_FOUND, ERR_NOT_FOUND);
}

#[tokio::test]
async fn invalid_input_is_a_400_with_the_hawkbit_body() {
    let app = spawn_app().await;
    let os = module(&app, "rootfs", "1", "os").await;
    let path = format!("/softwaremodules/{os}/artifacts");

    // Artifacts.
    let bad_artifacts = [
        json!({"filename": "a", "size": 1, "hashes": {"sha1": "xyz", "md5": MD5}, "urls": {"HTTPS": "https://x/a"}}),
        json!({"filename": "a", "size": 1, "hashes": {"sha1": SHA1, "md5": "abc"}, "urls": {"HTTPS": "https://x/a"}}),
        json!({"filename": "a", "size": 1, "hashes": {"sha1": SHA1, "md5": MD5, "sha256": "00"}, "urls": {"HTTPS": "https://x/a"}}),
        json!({"filename": "a", "size": 1, "hashes": {"md5": MD5}, "urls": {"HTTPS": "https://x/a"}}),
        json!({"filename": "a", "size": 1, "hashes": {"sha1": SHA1, "md5": MD5}, "urls": {}}),
        json!({"filename": "a", "size": 1, "hashes": {"sha1": SHA1, "md5": MD5}}),
        json!({"filename": "a", "size": 1, "hashes": {"sha1": SHA1, "md5": MD5}, "urls": {"HTTPS": "ftp://x/a"}}),
        json!({"filename": "a", "size": 1, "hashes": {"sha1": SHA1, "md5": MD5}, "urls": {"HTTP": "https://"}}),
        json!({"filename": "a", "size": -1, "hashes": {"sha1": SHA1, "md5": MD5}, "urls": {"HTTPS": "https://x/a"}}),
        json!({"filename": "", "size": 1, "hashes": {"sha1": SHA1, "md5": MD5}, "urls": {"HTTPS": "https://x/a"}}),
        json!({"filename": "x".repeat(257), "size": 1, "hashes": {"sha1": SHA1, "md5": MD5}, "urls": {"HTTPS": "https://x/a"}}),
        json!({"size": 1, "hashes": {"sha1": SHA1, "md5": MD5}, "urls": {"HTTPS": "https://x/a"}}),
    ];
    for body in bad_artifacts {
        let (s, v) = app.api_post(&path, body.clone()).await;
        assert_error(s, &v, StatusCode::BAD_REQUEST, ERR_CONSTRAINT);
    }
    let (_, list) = app.api_get(&path).await;
    assert_eq!(list, json!([]));
    // Wrong JSON types are unreadable bodies.
    let (s, v) = app
        .api_post(&path, json!({"filename": "a", "size": "big"}))
        .await;
    assert_error(s, &v, StatusCode::BAD_REQUEST, ERR_NOT_READABLE);
    let (s, v) = app
        .api_post(
            "/softwaremodules",
            json!({"name": "not", "version": "an array"}),
        )
        .await;
    assert_error(s, &v, StatusCode::BAD_REQUEST, ERR_NOT_READABLE);

    // Modules.
    let (s, v) = app
        .api_post(
            "/softwaremodules",
            json!([{"name": "x", "version": "1", "type": "firmware"}]),
        )
        .await;
    assert_error(s, &v, StatusCode::BAD_REQUEST, ERR_CONSTRAINT);
    for body in [
        json!([{"version": "1", "type": "os"}]),
        json!([{"name": "x", "type": "os"}]),
        json!([{"name": "x", "version": "1"}]),
        json!([{"name": "x".repeat(129), "version": "1", "type": "os"}]),
        json!([{"name": "x", "version": "1", "type": "os", "vendor": "v".repeat(257)}]),
    ] {
        let (s, v) = app.api_post("/softwaremodules", body).await;
        assert_error(s, &v, StatusCode::BAD_REQUEST, ERR_CONSTRAINT);
    }
    // NUL never reaches the database; line breaks are fine in descriptions only.
    for body in [
        json!([{"name": "a\u{0}b", "version": "1", "type": "os"}]),
        json!([{"name": "a\nb", "version": "1", "type": "os"}]),
        json!([{"name": "ok", "version": "1", "type": "os", "description": "a\u{0}"}]),
    ] {
        let (s, v) = app.api_post("/softwaremodules", body).await;
        assert_error(s, &v, StatusCode::BAD_REQUEST, ERR_CONSTRAINT);
    }
    let (s, v) = app
        .api_post(
            &format!("/softwaremodules/{os}/metadata"),
            json!([{"key": "k\u{0}", "value": "v"}]),
        )
        .await;
    assert_error(s, &v, StatusCode::BAD_REQUEST, ERR_CONSTRAINT);
    let (s, v) = app
        .api_get(&format!("/softwaremodules/{os}/metadata/k%00"))
        .await;
    assert_error(s, &v, StatusCode::NOT_FOUND, ERR_NOT_FOUND);
    let (s, v) = app
        .api_put(
            &format!("/softwaremodules/{os}"),
            json!({"description": "line 1\nline 2"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["description"], "line 1\nline 2");

    let (_, list) = app.api_get("/softwaremodules").await;
    assert_eq!(list["total"], 1, "a refused batch creates nothing");

    // Sets: module type not taken by the set type, too many modules of a type, unknown module,
    // unknown set type.
    let runtime = module(&app, "jre", "17", "runtime").await;
    let os2 = module(&app, "rootfs", "2", "os").await;
    let app1 = module(&app, "a1", "1", "application").await;
    let app2 = module(&app, "a2", "1", "application").await;
    for body in [
        json!([{"name": "s", "version": "1", "type": "os", "modules": [{"id": os}, {"id": runtime}]}]),
        json!([{"name": "s", "version": "1", "type": "os", "modules": [{"id": os}, {"id": os2}]}]),
        json!([{"name": "s", "version": "1", "type": "os", "modules": [{"id": 987654321}]}]),
        json!([{"name": "s", "version": "1", "type": "nonsense", "modules": []}]),
        json!([{"name": "s", "type": "os", "modules": []}]),
        json!([{"name": "s", "version": "1", "type": "os", "modules": [{}]}]),
    ] {
        let (s, v) = app.api_post("/distributionsets", body.clone()).await;
        assert_error(s, &v, StatusCode::BAD_REQUEST, ERR_CONSTRAINT);
    }
    // Any number of applications is fine in an app set.
    let (s, v) = app
        .api_post(
            "/distributionsets",
            json!([{"name": "apps", "version": "1", "type": "app", "modules": [{"id": app1}, {"id": app2}, {"id": runtime}]}]),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let apps = v[0]["id"].as_i64().unwrap();
    assert_eq!(v[0]["complete"], true);
    // ... but a second runtime is one too many, and os is not taken at all.
    let jre2 = module(&app, "jre", "21", "runtime").await;
    let (s, v) = app
        .api_post(
            &format!("/distributionsets/{apps}/assignedSM"),
            json!([{"id": jre2}]),
        )
        .await;
    assert_error(s, &v, StatusCode::BAD_REQUEST, ERR_CONSTRAINT);
    let (s, v) = app
        .api_post(
            &format!("/distributionsets/{apps}/assignedSM"),
            json!([{"id": os}]),
        )
        .await;
    assert_error(s, &v, StatusCode::BAD_REQUEST, ERR_CONSTRAINT);

    // Lists: unknown sort fields refused (q= is covered in query.rs).
    for path in [
        "/softwaremodules?sort=colour:ASC",
        "/distributionsets?sort=name:SIDEWAYS",
    ] {
        let (s, v) = app.api_get(path).await;
        assert_error(s, &v, StatusCode::BAD_REQUEST, ERR_CONSTRAINT);
    }
}

#[tokio::test]
async fn unknown_ids_are_404_and_duplicates_are_409() {
    let app = spawn_app().await;
    let os = module(&app, "rootfs", "1", "os").await;

    for path in [
        "/softwaremodules/987654321".to_owned(),
        "/softwaremodules/abc".to_owned(),
        "/softwaremodules/987654321/artifacts".to_owned(),
        format!("/softwaremodules/{os}/artifacts/987654321"),
        format!("/softwaremodules/{os}/artifacts/x"),
        "/softwaremodules/987654321/metadata".to_owned(),
        format!("/softwaremodules/{os}/metadata/missing"),
        "/softwaremoduletypes/987654321".to_owned(),
        "/softwaremoduletypes/os".to_owned(),
        "/distributionsettypes/987654321".to_owned(),
        "/distributionsettypes/987654321/mandatorymoduletypes".to_owned(),
        "/distributionsets/987654321".to_owned(),
        "/distributionsets/-1".to_owned(),
        "/distributionsets/1.5".to_owned(),
        "/distributionsets/987654321/assignedSM".to_owned(),
    ] {
        let (s, v) = app.api_get(&path).await;
        assert_error(s, &v, StatusCode::NOT_FOUND, ERR_NOT_FOUND);
    }
    let (s, v) = app
        .api_post("/softwaremodules/987654321/artifacts", artifact("a.bin"))
        .await;
    assert_error(s, &v, StatusCode::NOT_FOUND, ERR_NOT_FOUND);
    let (s, v) = app
        .api_put("/softwaremodules/987654321", json!({"vendor": "x"}))
        .await;
    assert_error(s, &v, StatusCode::NOT_FOUND, ERR_NOT_FOUND);
    let (s, v) = app.api_delete("/softwaremodules/987654321").await;
    assert_error(s, &v, StatusCode::NOT_FOUND, ERR_NOT_FOUND);
    let (s, v) = app.api_delete("/distributionsets/987654321").await;
    assert_error(s, &v, StatusCode::NOT_FOUND, ERR_NOT_FOUND);
    let (s, v) = app
        .api_delete(&format!("/softwaremodules/{os}/artifacts/987654321"))
        .await;
    assert_error(s, &v, StatusCode::NOT_FOUND, ERR_NOT_FOUND);
    let (s, v) = app
        .api_delete(&format!("/softwaremodules/{os}/metadata/missing"))
        .await;
    assert_error(s, &v, StatusCode::NOT_FOUND, ERR_NOT_FOUND);

    // Duplicates.
    let (s, v) = app
        .api_post(
            "/softwaremodules",
            json!([{"name": "rootfs", "version": "1", "type": "os"}]),
        )
        .await;
    assert_error(s, &v, StatusCode::CONFLICT, ERR_EXISTS);
    // Same name and version with another type is a different module.
    let (s, v) = app
        .api_post(
            "/softwaremodules",
            json!([{"name": "rootfs", "version": "1", "type": "application"}]),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");

    let (s, v) = app
        .api_post(
            &format!("/softwaremodules/{os}/artifacts"),
            artifact("a.bin"),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = app
        .api_post(
            &format!("/softwaremodules/{os}/artifacts"),
            artifact("a.bin"),
        )
        .await;
    assert_error(s, &v, StatusCode::CONFLICT, ERR_EXISTS);

    let md = json!([{"key": "k", "value": "v"}]);
    let (s, v) = app
        .api_post(&format!("/softwaremodules/{os}/metadata"), md.clone())
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = app
        .api_post(&format!("/softwaremodules/{os}/metadata"), md)
        .await;
    assert_error(s, &v, StatusCode::CONFLICT, ERR_EXISTS);

    let set = json!([{"name": "fleet", "version": "1", "type": "os", "modules": [{"id": os}]}]);
    let (s, v) = app.api_post("/distributionsets", set.clone()).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = app.api_post("/distributionsets", set).await;
    assert_error(s, &v, StatusCode::CONFLICT, ERR_EXISTS);
    let (s, v) = app
        .api_post(
            "/distributionsets",
            json!([{"name": "fleet", "version": "2", "type": "os"}]),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let second = v[0]["id"].as_i64().unwrap();
    let (s, v) = app
        .api_put(
            &format!("/distributionsets/{second}"),
            json!({"version": "1"}),
        )
        .await;
    assert_error(s, &v, StatusCode::CONFLICT, ERR_EXISTS);
}

#[tokio::test]
async fn permissions_and_tenants_are_enforced() {
    let app = spawn_app_with_users(
        r#"
[[users]]
username = "reader"
password = "reader-pw"
tenant = "DEFAULT"
permissions = ["READ_REPOSITORY"]

[[users]]
username = "nobody"
password = "nobody-pw"
tenant = "DEFAULT"
permissions = ["READ_TARGET"]

[[users]]
username = "stranger"
password = "stranger-pw"
tenant = "OTHER"
roles = ["ROLE_TENANT_ADMIN"]
"#,
        &[],
    )
    .await;
    let os = module(&app, "rootfs", "1", "os").await;
    let ds = app.create_set("fleet").await;

    // A reader reads and nothing else.
    let (s, _) = app
        .api_as(
            "reader",
            "reader-pw",
            Method::GET,
            &format!("/softwaremodules/{os}"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = app
        .api_as(
            "reader",
            "reader-pw",
            Method::GET,
            "/distributionsets",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let denied = [
        (
            Method::POST,
            "/softwaremodules".to_owned(),
            Some(json!([{"name": "x", "version": "1", "type": "os"}])),
        ),
        (
            Method::PUT,
            format!("/softwaremodules/{os}"),
            Some(json!({"vendor": "x"})),
        ),
        (Method::DELETE, format!("/softwaremodules/{os}"), None),
        (
            Method::POST,
            format!("/softwaremodules/{os}/artifacts"),
            Some(artifact("a.bin")),
        ),
        (
            Method::POST,
            format!("/softwaremodules/{os}/metadata"),
            Some(json!([{"key": "k", "value": "v"}])),
        ),
        (
            Method::POST,
            "/distributionsets".to_owned(),
            Some(json!([{"name": "x", "version": "1", "type": "os"}])),
        ),
        (
            Method::PUT,
            format!("/distributionsets/{ds}"),
            Some(json!({"description": "x"})),
        ),
        (Method::DELETE, format!("/distributionsets/{ds}"), None),
        (
            Method::POST,
            format!("/distributionsets/{ds}/assignedSM"),
            Some(json!([{"id": os}])),
        ),
    ];
    for (method, path, body) in denied {
        let (s, v) = app
            .api_as("reader", "reader-pw", method.clone(), &path, body)
            .await;
        assert_error(s, &v, StatusCode::FORBIDDEN, ERR_PERMISSION);
    }
    // Without READ_REPOSITORY nothing is visible.
    for path in [
        "/softwaremodules",
        "/softwaremoduletypes",
        "/distributionsettypes",
        "/distributionsets",
    ] {
        let (s, v) = app
            .api_as("nobody", "nobody-pw", Method::GET, path, None)
            .await;
        assert_error(s, &v, StatusCode::FORBIDDEN, ERR_PERMISSION);
    }
    // Wrong password.
    let (s, _) = app
        .api_as("reader", "wrong", Method::GET, "/softwaremodules", None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // Another tenant sees its own default types and none of our modules or sets.
    let (s, v) = app
        .api_as(
            "stranger",
            "stranger-pw",
            Method::GET,
            "/softwaremodules",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["total"], 0);
    let (s, v) = app
        .api_as(
            "stranger",
            "stranger-pw",
            Method::GET,
            "/softwaremoduletypes",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["total"], 3);
    for (method, path, body) in [
        (Method::GET, format!("/softwaremodules/{os}"), None),
        (
            Method::GET,
            format!("/softwaremodules/{os}/artifacts"),
            None,
        ),
        (
            Method::POST,
            format!("/softwaremodules/{os}/artifacts"),
            Some(artifact("b.bin")),
        ),
        (Method::DELETE, format!("/softwaremodules/{os}"), None),
        (Method::GET, format!("/distributionsets/{ds}"), None),
        (Method::DELETE, format!("/distributionsets/{ds}"), None),
    ] {
        let (s, v) = app
            .api_as("stranger", "stranger-pw", method, &path, body)
            .await;
        assert_error(s, &v, StatusCode::NOT_FOUND, ERR_NOT_FOUND);
    }
    // Nor can it build a set from our module.
    let (s, v) = app
        .api_as(
            "stranger",
            "stranger-pw",
            Method::POST,
            "/distributionsets",
            Some(json!([{"name": "x", "version": "1", "type": "os", "modules": [{"id": os}]}])),
        )
        .await;
    assert_error(s, &v, StatusCode::BAD_REQUEST, ERR_CONSTRAINT);
    let (s, _) = app.api_get(&format!("/softwaremodules/{os}")).await;
    assert_eq!(s, StatusCode::OK, "still there");
}

#[tokio::test]
async fn locked_sets_are_frozen_and_used_sets_are_soft_deleted() {
    let app = spawn_app().await;
    let ds = app.create_set("fleet").await;
    let (_, set) = app.api_get(&format!("/distributionsets/{ds}")).await;
    let os = set["modules"][0]["id"].as_i64().unwrap();
    let other_os = module(&app, "rootfs", "9", "os").await;

    // Locking a set locks its modules.
    let (s, v) = app
        .api_put(&format!("/distributionsets/{ds}"), json!({"locked": true}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["locked"], true);
    assert_eq!(v["modules"][0]["locked"], true);
    let (s, v) = app
        .api_delete(&format!("/distributionsets/{ds}/assignedSM/{os}"))
        .await;
    assert_error(s, &v, StatusCode::BAD_REQUEST, ERR_CONSTRAINT);
    let (s, v) = app
        .api_post(
            &format!("/distributionsets/{ds}/assignedSM"),
            json!([{"id": other_os}]),
        )
        .await;
    assert_error(s, &v, StatusCode::BAD_REQUEST, ERR_CONSTRAINT);
    let (s, v) = app
        .api_post(
            &format!("/softwaremodules/{os}/artifacts"),
            artifact("more.bin"),
        )
        .await;
    assert_error(s, &v, StatusCode::BAD_REQUEST, ERR_CONSTRAINT);
    let (s, v) = app
        .api_put(&format!("/distributionsets/{ds}"), json!({"locked": false}))
        .await;
    assert_error(s, &v, StatusCode::BAD_REQUEST, ERR_CONSTRAINT);
    // Descriptive fields may still change.
    let (s, v) = app
        .api_put(
            &format!("/distributionsets/{ds}"),
            json!({"description": "frozen"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");

    // A set with an action is kept as deleted.
    let (s, v) = app
        .api_post(
            "/targets",
            json!([{"controllerId": "dev-1", "name": "dev-1"}]),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = app
        .api_post(
            &format!("/distributionsets/{ds}/assignedTargets"),
            json!([{"id": "dev-1"}]),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["assigned"], 1, "{v}");
    let (s, _) = app.api_delete(&format!("/distributionsets/{ds}")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, v) = app.api_get(&format!("/distributionsets/{ds}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["deleted"], true);
    let (_, list) = app.api_get("/distributionsets").await;
    assert_eq!(list["total"], 0);
    // Its module stays referenced, so it is soft-deleted too.
    let (s, _) = app.api_delete(&format!("/softwaremodules/{os}")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, v) = app.api_get(&format!("/softwaremodules/{os}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["deleted"], true);
    // A deleted set cannot be changed.
    let (s, v) = app
        .api_put(
            &format!("/distributionsets/{ds}"),
            json!({"description": "x"}),
        )
        .await;
    assert_error(s, &v, StatusCode::NOT_FOUND, ERR_NOT_FOUND);
}
