//! Metadata of software modules (`/rest/v1/softwaremodules/{id}/metadata`): key/value pairs,
//! the target-visible ones sent to devices with their deployments.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::PgConnection;

use super::super::common::{Ctx, Ids, Listed, check_text, get_put_delete};
use super::super::{ApiError, ApiResult, ApiState, Body, Page};
use super::modules::MODULE;
use super::{READ, any_module, live_module};
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
            get_put_delete(
                get(get_metadata),
                &[Permission::UPDATE_REPOSITORY],
                update_metadata,
                delete_metadata,
            ),
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

const METADATA: Listed = Listed::new(Entity::SoftwareModuleMetadata, &metadata::SORT);

async fn list_metadata(cx: Ctx, Ids(id): Ids<i64>, params: Page) -> ApiResult<Json<Value>> {
    cx.list(
        READ,
        &params,
        METADATA,
        async |c, tenant, q, page| {
            any_module(c, tenant, id).await?;
            Ok::<_, ApiError>(metadata::TABLE.list(c, tenant, id, q, page).await?)
        },
        |m| metadata_json(&m),
    )
    .await
}

async fn get_metadata(cx: Ctx, Ids((id, key)): Ids<(i64, String)>) -> ApiResult<Json<Value>> {
    cx.require(READ)?;
    path_key(id, &key)?;
    cx.get_one(
        async |c| metadata::TABLE.find(c, cx.tenant(), id, &key).await,
        || no_metadata(id, &key),
        |m| metadata_json(&m),
    )
    .await
}

async fn create_metadata(
    cx: Ctx,
    Ids(id): Ids<i64>,
    Body(body): Body<Vec<MetadataCreate>>,
) -> ApiResult<Response> {
    cx.require_any(&[Permission::CREATE_REPOSITORY, Permission::UPDATE_REPOSITORY])?;
    let created = cx
        .db()
        .tx(async |tx| {
            live_module(tx, cx.tenant(), id).await?;
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
                if !metadata::insert(tx, cx.tenant(), id, &entry).await? {
                    return Err(MODULE.missing(id));
                }
                created.push(metadata_json(&entry));
            }
            Ok(created)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(Value::Array(created))).into_response())
}

async fn update_metadata(
    cx: Ctx,
    Ids((id, key)): Ids<(i64, String)>,
    body: MetadataUpdate,
) -> ApiResult<Json<Value>> {
    path_key(id, &key)?;
    let value = metadata_value(body.value)?;
    cx.update_one(
        async |c| {
            live_module(c, cx.tenant(), id).await?;
            Ok::<_, ApiError>(
                metadata::update(
                    c,
                    cx.tenant(),
                    id,
                    &key,
                    value.as_deref(),
                    body.target_visible,
                )
                .await?,
            )
        },
        || no_metadata(id, &key),
        |m| metadata_json(&m),
    )
    .await
}

async fn delete_metadata(cx: Ctx, Ids((id, key)): Ids<(i64, String)>) -> ApiResult<StatusCode> {
    cx.require_any(&[Permission::DELETE_REPOSITORY, Permission::UPDATE_REPOSITORY])?;
    path_key(id, &key)?;
    let delete = async |c: &mut PgConnection| {
        live_module(c, cx.tenant(), id).await?;
        Ok(metadata::TABLE.delete(c, cx.tenant(), id, &key).await?)
    };
    cx.delete_one(delete, || no_metadata(id, &key)).await
}
