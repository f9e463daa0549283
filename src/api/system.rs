//! Tenant configuration: `GET /rest/v1/system/configs`, `GET|PUT|DELETE …/configs/{key}`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{ApiError, ApiResult, ApiState, Body, Caller};
use crate::auth::Permission;
use crate::engine::config_keys;
use crate::store::tenants::{self, ConfigRow};

pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/rest/v1/system/configs", get(list))
        .route(
            "/rest/v1/system/configs/{key}",
            get(one).put(put).delete(remove),
        )
}

fn value_json(key: &str, row: Option<&ConfigRow>) -> Value {
    let default = config_keys::DEFAULTS
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, d)| *d);
    match row {
        Some(r) => {
            json!({"value": r.value, "global": false, "createdAt": r.audit.created_at, "createdBy": r.audit.created_by,
            "lastModifiedAt": r.audit.last_modified_at, "lastModifiedBy": r.audit.last_modified_by})
        }
        None => json!({"value": default, "global": true}),
    }
}

async fn list(State(s): State<ApiState>, caller: Caller) -> ApiResult<Json<Value>> {
    caller.require(&[Permission::TENANT_CONFIGURATION])?;
    let rows =
        s.db.run(async |c| tenants::config_rows(c, caller.tenant).await)
            .await?;
    let mut out = Map::new();
    for (key, _) in config_keys::DEFAULTS {
        out.insert(
            (*key).to_owned(),
            value_json(key, rows.iter().find(|r| r.key == *key)),
        );
    }
    Ok(Json(Value::Object(out)))
}

async fn one(
    State(s): State<ApiState>,
    caller: Caller,
    Path(key): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require(&[Permission::TENANT_CONFIGURATION])?;
    if !config_keys::DEFAULTS.iter().any(|(k, _)| *k == key) {
        return Err(ApiError::NotFound(format!(
            "configuration key {key} does not exist"
        )));
    }
    let rows =
        s.db.run(async |c| tenants::config_rows(c, caller.tenant).await)
            .await?;
    Ok(Json(value_json(&key, rows.iter().find(|r| r.key == key))))
}

#[derive(Deserialize)]
struct ValueBody {
    value: Value,
}

async fn put(
    State(s): State<ApiState>,
    caller: Caller,
    Path(key): Path<String>,
    Body(body): Body<ValueBody>,
) -> ApiResult<Json<Value>> {
    caller.require(&[Permission::TENANT_CONFIGURATION])?;
    let row = s
        .engine
        .put_config(caller.tenant, &key, body.value, caller.name())
        .await?;
    Ok(Json(value_json(&key, Some(&row))))
}

async fn remove(
    State(s): State<ApiState>,
    caller: Caller,
    Path(key): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(&[Permission::TENANT_CONFIGURATION])?;
    s.engine
        .delete_config(caller.tenant, &key, caller.name())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
