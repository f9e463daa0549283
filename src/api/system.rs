//! Tenant configuration: `GET|PUT /rest/v1/system/configs` (PUT: several values at once, all or
//! none), `GET|PUT|DELETE …/configs/{key}`; a change answers 204 (hawkBit master), a value of
//! the wrong type 400 (`configValueInvalid`), and
//! `GET /rest/v1/userinfo` says who is calling.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::common::Ctx;
use super::{ApiError, ApiResult, ApiState, Body};
use crate::auth::Permission;
use crate::engine::config_keys;
use crate::store::tenants::{self, ConfigRow};

pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/rest/v1/system/configs", get(list).put(put_many))
        .route("/rest/v1/userinfo", get(userinfo))
        .route(
            "/rest/v1/system/configs/{key}",
            get(one).put(put).delete(remove),
        )
}

fn value_json(key: &str, row: Option<&ConfigRow>) -> Value {
    match row {
        Some(r) => {
            json!({"value": r.value, "global": false, "createdAt": r.audit.created_at, "createdBy": r.audit.created_by,
            "lastModifiedAt": r.audit.last_modified_at, "lastModifiedBy": r.audit.last_modified_by})
        }
        None => json!({"value": config_keys::default_value(key), "global": true}),
    }
}

const PERMS: &[Permission] = &[Permission::TENANT_CONFIGURATION];

/// The tenant's stored configuration values.
async fn config_rows(cx: &Ctx) -> ApiResult<Vec<ConfigRow>> {
    cx.db()
        .run(async |c| tenants::config_rows(c, cx.tenant()).await)
        .await
        .map_err(ApiError::from)
}

async fn list(cx: Ctx) -> ApiResult<Json<Value>> {
    cx.require(PERMS)?;
    let rows = config_rows(&cx).await?;
    let mut out = Map::new();
    for key in config_keys::names() {
        out.insert(
            key.to_owned(),
            value_json(key, rows.iter().find(|r| r.key == key)),
        );
    }
    Ok(Json(Value::Object(out)))
}

async fn one(cx: Ctx, Path(key): Path<String>) -> ApiResult<Json<Value>> {
    cx.require(PERMS)?;
    if config_keys::kind_of(&key).is_none() {
        return Err(ApiError::NotFound(format!(
            "configuration key {key} does not exist"
        )));
    }
    let rows = config_rows(&cx).await?;
    Ok(Json(value_json(&key, rows.iter().find(|r| r.key == key))))
}

#[derive(Deserialize)]
struct ValueBody {
    value: Value,
}

async fn put(
    cx: Ctx,
    Path(key): Path<String>,
    Body(body): Body<ValueBody>,
) -> ApiResult<StatusCode> {
    cx.require(PERMS)?;
    let engine = &cx.state.engine;
    engine
        .put_config_value(cx.tenant(), &key, body.value, cx.caller.name())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /system/configs` with `{key: value, …}`: every value or none.
async fn put_many(cx: Ctx, Body(body): Body<Map<String, Value>>) -> ApiResult<StatusCode> {
    cx.require(PERMS)?;
    let values = body.into_iter().collect();
    cx.state
        .engine
        .put_config_values(cx.tenant(), values, cx.caller.name())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /rest/v1/userinfo` (hawkBit's `MgmtUserInfo`): the caller's name, tenant and
/// permissions.
async fn userinfo(cx: Ctx) -> Json<Value> {
    let user = &cx.caller.user;
    let permissions: Vec<&str> = user.permissions.iter().map(|p| p.as_str()).collect();
    Json(json!({
        "username": user.username, "tenant": user.tenant.as_str(), "permissions": permissions,
    }))
}

async fn remove(cx: Ctx, Path(key): Path<String>) -> ApiResult<StatusCode> {
    cx.require(PERMS)?;
    let engine = &cx.state.engine;
    engine
        .delete_config_value(cx.tenant(), &key, cx.caller.name())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
