//! Target metadata (`/rest/v1/targets/{controllerId}/metadata`): operator-owned key/value
//! pairs, at most [`MAX_ENTRIES_PER_TARGET`] per target (hawkBit's `maxMetaDataEntriesPerTarget`).

use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use sqlx::PgConnection;

use super::common::{
    Ctx, Ids, Listed, MetadataCreate, MetadataUpdate, READ_TARGET, check_text, find_target,
    get_put_delete,
};
use super::{ApiError, ApiResult, ApiState, Body, Page};
use crate::auth::Permission;
use crate::store::filter::{Entity, Filter};
use crate::store::page::PageRequest;
use crate::store::table::RowLock;
use crate::store::target_metadata::{self as md, MetadataRow};

/// hawkBit's default `maxMetaDataEntriesPerTarget`.
pub const MAX_ENTRIES_PER_TARGET: i64 = 100;

pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/rest/v1/targets/{id}/metadata", get(list).post(create))
        .route(
            "/rest/v1/targets/{id}/metadata/{key}",
            get_put_delete(get(one), &[Permission::UPDATE_TARGET], update, remove),
        )
}

fn metadata_json(m: &MetadataRow) -> Value {
    json!({"key": m.key, "value": m.value})
}

fn no_entry(controller_id: &str, key: &str) -> ApiError {
    ApiError::NotFound(format!(
        "metadata {key:?} of target {controller_id} not found"
    ))
}

/// A key from a path that cannot exist (control characters, too long) is simply not found.
fn path_key(controller_id: &str, key: &str) -> ApiResult<()> {
    check_text("key", key, 1, 128, false).map_err(|_| no_entry(controller_id, key))
}

fn check_value(value: &str) -> ApiResult<()> {
    check_text("value", value, 0, 4000, true)
}

const METADATA: Listed = Listed::new(Entity::TargetMetadata, &md::SORT);

async fn list(cx: Ctx, Ids(controller_id): Ids<String>, page: Page) -> ApiResult<Json<Value>> {
    let fetch = async |c: &mut PgConnection, tenant, q: Option<&Filter>, page: &PageRequest| {
        let t = find_target(c, tenant, &controller_id, RowLock::None).await?;
        Ok::<_, ApiError>(md::TABLE.list(c, tenant, t.id, q, page).await?)
    };
    cx.list(READ_TARGET, &page, METADATA, fetch, |m| metadata_json(&m))
        .await
}

/// All entries or none: an invalid entry → 400, an existing key → 409, more than the quota →
/// 429.
async fn create(
    cx: Ctx,
    Ids(controller_id): Ids<String>,
    Body(body): Body<Vec<MetadataCreate>>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    cx.require(&[Permission::UPDATE_TARGET])?;
    let mut entries = Vec::with_capacity(body.len());
    for item in body {
        let key = item
            .key
            .ok_or_else(|| ApiError::BadRequest("key is required".into()))?;
        check_text("key", &key, 1, 128, false)?;
        let value = item.value.unwrap_or_default();
        check_value(&value)?;
        entries.push(MetadataRow { key, value });
    }
    let tenant = cx.tenant();
    cx.db()
        .tx(async |tx| {
            // Locked, so concurrent requests cannot both pass the quota check.
            let t = find_target(tx, tenant, &controller_id, RowLock::ForUpdate).await?;
            let existing = md::TABLE.count(tx, tenant, t.id).await?;
            let wanted = existing.saturating_add(i64::try_from(entries.len()).unwrap_or(i64::MAX));
            if wanted > MAX_ENTRIES_PER_TARGET {
                return Err(ApiError::TooManyEntries(format!(
                    "target {controller_id} would have {wanted} metadata entries; at most \
                     {MAX_ENTRIES_PER_TARGET} are allowed"
                )));
            }
            for e in &entries {
                md::insert(tx, tenant, t.id, e).await?;
            }
            Ok(())
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(Value::Array(entries.iter().map(metadata_json).collect())),
    ))
}

async fn one(cx: Ctx, Ids((controller_id, key)): Ids<(String, String)>) -> ApiResult<Json<Value>> {
    cx.require(READ_TARGET)?;
    path_key(&controller_id, &key)?;
    let find = async |c: &mut PgConnection| {
        let t = find_target(c, cx.tenant(), &controller_id, RowLock::None).await?;
        Ok::<_, ApiError>(md::TABLE.find(c, cx.tenant(), t.id, &key).await?)
    };
    cx.get_one(
        find,
        || no_entry(&controller_id, &key),
        |m| metadata_json(&m),
    )
    .await
}

async fn update(
    cx: Ctx,
    Ids((controller_id, key)): Ids<(String, String)>,
    body: MetadataUpdate,
) -> ApiResult<Json<Value>> {
    path_key(&controller_id, &key)?;
    let value = body
        .value
        .ok_or_else(|| ApiError::BadRequest("value is required".into()))?;
    check_value(&value)?;
    let change = async |c: &mut PgConnection| {
        let t = find_target(c, cx.tenant(), &controller_id, RowLock::None).await?;
        Ok::<_, ApiError>(md::update(c, cx.tenant(), t.id, &key, &value).await?)
    };
    cx.update_one(
        change,
        || no_entry(&controller_id, &key),
        |m| metadata_json(&m),
    )
    .await
}

async fn remove(
    cx: Ctx,
    Ids((controller_id, key)): Ids<(String, String)>,
) -> ApiResult<StatusCode> {
    cx.require(&[Permission::UPDATE_TARGET])?;
    path_key(&controller_id, &key)?;
    let delete = async |c: &mut PgConnection| {
        let t = find_target(c, cx.tenant(), &controller_id, RowLock::None).await?;
        Ok(md::TABLE.delete(c, cx.tenant(), t.id, &key).await?)
    };
    cx.delete_one(delete, || no_entry(&controller_id, &key))
        .await
}
