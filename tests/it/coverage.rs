//! The README's table of hawkBit 1.1's Management API endpoints against what the service routes:
//! every endpoint hawkBit 1.1 has is in the table, and each row's claim holds on a live service
//! (a row "served" is routed, a row "not served: <reason>" is not and says why).

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::*;

/// hawkBit 1.1.0's endpoints, extracted from its `Mgmt*RestApi` interfaces.
const HAWKBIT: &str = include_str!("hawkbit_1_1_endpoints.tsv");
const README: &str = include_str!("../../README.md");

type Endpoint = (String, String);

fn hawkbit_endpoints() -> BTreeSet<Endpoint> {
    HAWKBIT
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let mut cols = l.split('\t');
            let method = cols.next().expect("method").to_string();
            (method, cols.next().expect("path").to_string())
        })
        .collect()
}

/// The README's rows `| METHOD | `path` | served |` (a note may follow) or
/// `| … | not served: reason |`.
fn readme_rows() -> Vec<(Endpoint, Option<String>)> {
    README
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l
                .trim()
                .trim_matches('|')
                .split('|')
                .map(str::trim)
                .collect();
            let [method, path, claim] = cells[..] else {
                return None;
            };
            if !matches!(method, "GET" | "POST" | "PUT" | "DELETE") {
                return None;
            }
            let path = path.trim_matches('`').to_string();
            let reason = claim
                .strip_prefix("not served:")
                .map(|r| r.trim().to_string());
            assert!(
                reason.is_some() || claim.starts_with("served"),
                "README row {method} {path}: say `served` or `not served: <reason>`"
            );
            Some(((method.to_string(), path), reason))
        })
        .collect()
}

/// Whether the service has a route for the endpoint: anything but the router's 405 (path known,
/// method not) and its fallback 404 ("no such resource").
async fn routed(app: &TestApp, (method, path): &Endpoint) -> bool {
    let concrete: String = path
        .split('/')
        .map(|seg| if seg.starts_with('{') { "1" } else { seg })
        .collect::<Vec<_>>()
        .join("/");
    let method = Method::from_bytes(method.as_bytes()).expect("method");
    let body = (method == Method::POST || method == Method::PUT).then(|| json!({}));
    let rel = concrete.strip_prefix("/rest/v1").expect("under /rest/v1");
    let (status, body) = app.api(method, rel, body).await;
    let fallback = status == StatusCode::NOT_FOUND && body["message"] == "no such resource";
    status != StatusCode::METHOD_NOT_ALLOWED && !fallback
}

#[tokio::test]
async fn readme_lists_every_hawkbit_endpoint_truthfully() {
    let rows = readme_rows();
    let listed: BTreeSet<Endpoint> = rows.iter().map(|(e, _)| e.clone()).collect();
    assert_eq!(listed.len(), rows.len(), "an endpoint is listed twice");
    let missing: Vec<_> = hawkbit_endpoints().difference(&listed).cloned().collect();
    assert!(missing.is_empty(), "not in the README's table: {missing:?}");

    let app = spawn_app().await;
    let mut wrong = Vec::new();
    for (endpoint, reason) in &rows {
        let served = routed(&app, endpoint).await;
        match (served, reason) {
            (true, Some(r)) => wrong.push(format!("{endpoint:?} is routed, the README: {r}")),
            (false, None) => wrong.push(format!("{endpoint:?} is not routed")),
            (_, Some(r)) if r.is_empty() => wrong.push(format!("{endpoint:?} has no reason")),
            _ => {}
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[tokio::test]
async fn hal_json_is_answered_as_hal_json_and_json_as_json() {
    let app = spawn_app().await;
    app.fleet("hal", 1).await;
    let get = |accept: &'static str| {
        app.http
            .get(format!("{}/rest/v1/targets/hal-00", app.base))
            .basic_auth("admin", Some("admin"))
            .header("Accept", accept)
            .send()
    };
    let content_type = |r: &reqwest::Response| {
        r.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let hal = get("application/hal+json").await.expect("http");
    assert_eq!(hal.status(), StatusCode::OK);
    assert_eq!(content_type(&hal), "application/hal+json");
    let body: serde_json::Value = hal.json().await.expect("JSON body");
    assert_eq!(body["controllerId"], "hal-00");
    let plain = get("application/json").await.expect("http");
    assert!(content_type(&plain).starts_with("application/json"));
    // An error body is HAL too when HAL was asked for.
    let missing = app
        .http
        .get(format!("{}/rest/v1/targets/nope", app.base))
        .basic_auth("admin", Some("admin"))
        .header("Accept", "application/hal+json")
        .send()
        .await
        .expect("http");
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(content_type(&missing), "application/hal+json");
}
