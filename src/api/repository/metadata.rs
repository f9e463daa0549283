//! Metadata of software modules (`/rest/v1/softwaremodules/{id}/metadata`): key/value pairs,
//! the target-visible ones sent to devices with their deployments.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::super::common::{self, Ids, Listed, check_text, require_any};
use super::super::{ApiError, ApiResult, ApiState, Body, Caller, Page};
use super::{any_module, live_module, no_module};
use crate::auth::Permission;
use crate::store::filter::Entity;
use crate::store::repository::metadata::{self, MetadataRow};

pub(super) fn router() -> Router<ApiState> {
    Router::new()
        .route(
            "/rest/v1/softwaremodules/{id}/metadata",
            get(list_metadata).post(create_metadata),
        )
        .route(
            "/rest/v1/softwaremodules/{id}/metadata/{key}",
            get(get_metadata)
                .put(update_metadata)
                .delete(delete_metadata),
        )
}

fn metadata_json(m: &MetadataRow) -> Value {
    json!({"key": m.key, "value": m.value, "targetVisible": m.target_visible})
}

/// A metadata key from a path that cannot exist (control characters, too long) is simply not
/// found; it never reaches the database.
fn path_key(id: i64, key: &str) -> ApiResult<()> {
    check_text("key", key, 1, 128, false).map_err(|_| no_metadata(id, key))
}

fn no_metadata(id: i64, key: &str) -> ApiError {
    ApiError::NotFound(format!(
        "metadata {key:?} of software module {id} not found"
    ))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MetadataCreate {
    key: Option<String>,
    value: Option<String>,
    target_visible: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MetadataUpdate {
    value: Option<String>,
    target_visible: Option<bool>,
}

fn metadata_value(value: Option<String>) -> ApiResult<Option<String>> {
    if let Some(v) = &value {
        check_text("value", v, 0, 4000, true)?;
    }
    Ok(value)
}

const METADATA: Listed = Listed {
    entity: Entity::SoftwareModuleMetadata,
    sort: &metadata::SORT,
};

async fn list_metadata(
    State(state): State<ApiState>,
    caller: Caller,
    Ids(id): Ids<i64>,
    params: Page,
) -> ApiResult<Json<Value>> {
    common::list(
        &state,
        &caller,
        &[Permission::READ_REPOSITORY],
        &params,
        METADATA,
        async |c, q, page| {
            any_module(c, caller.tenant, id).await?;
            Ok(metadata::list(c, caller.tenant, id, q, page).await?)
        },
        |m| metadata_json(&m),
    )
    .await
}

async fn get_metadata(
    State(state): State<ApiState>,
    caller: Caller,
    Ids((id, key)): Ids<(i64, String)>,
) -> ApiResult<Json<Value>> {
    caller.require(&[Permission::READ_REPOSITORY])?;
    path_key(id, &key)?;
    common::get_one(
        &state,
        async |c| Ok(metadata::find(c, caller.tenant, id, &key).await?),
        || no_metadata(id, &key),
        |m| metadata_json(&m),
    )
    .await
}

async fn create_metadata(
    State(state): State<ApiState>,
    caller: Caller,
    Ids(id): Ids<i64>,
    Body(body): Body<Vec<MetadataCreate>>,
) -> ApiResult<Response> {
    require_any(
        &caller,
        &[Permission::CREATE_REPOSITORY, Permission::UPDATE_REPOSITORY],
    )?;
    let created = state
        .db
        .tx(async |tx| {
            live_module(tx, caller.tenant, id).await?;
            let mut created = Vec::with_capacity(body.len());
            for item in body {
                let key = item
                    .key
                    .filter(|k| !k.is_empty())
                    .ok_or_else(|| ApiError::BadRequest("key is required".into()))?;
                check_text("key", &key, 1, 128, false)?;
                let entry = MetadataRow {
                    key,
                    value: metadata_value(item.value)?.unwrap_or_default(),
                    target_visible: item.target_visible.unwrap_or(false),
                };
                if !metadata::insert(tx, caller.tenant, id, &entry).await? {
                    return Err(no_module(id));
                }
                created.push(metadata_json(&entry));
            }
            Ok(created)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(Value::Array(created))).into_response())
}

async fn update_metadata(
    State(state): State<ApiState>,
    caller: Caller,
    Ids((id, key)): Ids<(i64, String)>,
    Body(body): Body<MetadataUpdate>,
) -> ApiResult<Json<Value>> {
    caller.require(&[Permission::UPDATE_REPOSITORY])?;
    path_key(id, &key)?;
    let value = metadata_value(body.value)?;
    common::update_one(
        &state,
        async |c| {
            live_module(c, caller.tenant, id).await?;
            Ok(metadata::update(
                c,
                caller.tenant,
                id,
                &key,
                value.as_deref(),
                body.target_visible,
            )
            .await?)
        },
        || no_metadata(id, &key),
        |m| metadata_json(&m),
    )
    .await
}

async fn delete_metadata(
    State(state): State<ApiState>,
    caller: Caller,
    Ids((id, key)): Ids<(i64, String)>,
) -> ApiResult<StatusCode> {
    require_any(
        &caller,
        &[Permission::DELETE_REPOSITORY, Permission::UPDATE_REPOSITORY],
    )?;
    path_key(id, &key)?;
    let deleted = state
        .db
        .run(async |c| {
            live_module(c, caller.tenant, id).await?;
            Ok::<_, ApiError>(metadata::delete(c, caller.tenant, id, &key).await?)
        })
        .await?;
    if deleted {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(no_metadata(id, &key))
    }
}
