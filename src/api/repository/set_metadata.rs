//! Metadata of distribution sets (`/rest/v1/distributionsets/{id}/metadata`): operator-owned
//! key/value pairs, at most [`MAX_ENTRIES_PER_SET`] per set (hawkBit's
//! `maxMetaDataEntriesPerDistributionSet`). As in hawkBit 1.1, a create or a PUT sets a key:
//! new keys are added (within the quota), known ones get the new value.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use axum::routing::{get, put};
use axum::{Json, Router};
use serde_json::{Value, json};
use sqlx::PgConnection;

use super::super::common::{
    Ctx, Ids, Listed, MetadataCreate, MetadataUpdate, check_text, not_found,
};
use super::super::{ApiError, ApiResult, ApiState, Body, Page};
use super::READ;
use super::sets::live_set;
use crate::auth::Permission;
use crate::domain::ids::TenantId;
use crate::store::filter::{Entity, Filter};
use crate::store::page::PageRequest;
use crate::store::repository::set_metadata::{self as md, SetMetadataRow};
use crate::store::repository::sets;

/// hawkBit's default `maxMetaDataEntriesPerDistributionSet`.
pub const MAX_ENTRIES_PER_SET: i64 = 100;

pub(super) fn router() -> Router<ApiState> {
    Router::new()
        .route(
            "/rest/v1/distributionsets/{id}/metadata",
            get(list).post(create),
        )
        .route(
            "/rest/v1/distributionsets/{id}/metadata/{key}",
            get(one).merge(put(update)).delete(remove),
        )
}

fn metadata_json(m: &SetMetadataRow) -> Value {
    json!({"key": m.key, "value": m.value})
}

fn no_entry(id: i64, key: &str) -> ApiError {
    ApiError::NotFound(format!(
        "metadata {key:?} of distribution set {id} not found"
    ))
}

/// A key from a path that cannot exist (control characters, too long) is simply not found.
fn path_key(id: i64, key: &str) -> ApiResult<()> {
    check_text("key", key, 1, 128, false).map_err(|_| no_entry(id, key))
}

fn check_value(value: &str) -> ApiResult<()> {
    check_text("value", value, 0, 4000, true)
}

/// Any set of the tenant, deleted or not (reads), or 404.
async fn any_set(c: &mut PgConnection, tenant: TenantId, id: i64) -> ApiResult<()> {
    sets::TABLE
        .find(c, tenant, id)
        .await?
        .map(drop)
        .ok_or_else(|| not_found(Entity::DistributionSet, id))
}

const METADATA: Listed = Listed::new(Entity::DistributionSetMetadata, &md::SORT);

async fn list(cx: Ctx, Ids(id): Ids<i64>, page: Page) -> ApiResult<Json<Value>> {
    let fetch = async |c: &mut PgConnection, tenant, q: Option<&Filter>, page: &PageRequest| {
        any_set(c, tenant, id).await?;
        Ok::<_, ApiError>(md::TABLE.list(c, tenant, id, q, page).await?)
    };
    cx.list(READ, &page, METADATA, fetch, |m| metadata_json(&m))
        .await
}

/// Set `entries` (distinct keys) of a live set in one transaction: 404 for no such set, 429
/// when the set would have more than the quota.
async fn set_entries(cx: &Ctx, id: i64, entries: &BTreeMap<String, String>) -> ApiResult<()> {
    let tenant = cx.tenant();
    let keys: Vec<String> = entries.keys().cloned().collect();
    let values: Vec<String> = entries.values().cloned().collect();
    cx.db()
        .tx(async |tx| {
            // Locked, so concurrent requests cannot both pass the quota check.
            live_set(tx, tenant, id).await?;
            let wanted = md::TABLE.count_with(tx, tenant, id, &keys).await?;
            if wanted > MAX_ENTRIES_PER_SET {
                return Err(ApiError::TooManyEntries(format!(
                    "distribution set {id} would have {wanted} metadata entries; at most \
                     {MAX_ENTRIES_PER_SET} are allowed"
                )));
            }
            md::TABLE.upsert(tx, tenant, id, &keys, &values).await?;
            Ok(())
        })
        .await
}

/// All entries or none: an invalid entry → 400, more than the quota → 429; 201 without a body
/// (hawkBit 1.1). A key given twice takes its last value.
async fn create(
    cx: Ctx,
    Ids(id): Ids<i64>,
    Body(body): Body<Vec<MetadataCreate>>,
) -> ApiResult<StatusCode> {
    cx.require_any(&[Permission::CREATE_REPOSITORY, Permission::UPDATE_REPOSITORY])?;
    let mut entries = BTreeMap::new();
    for item in body {
        let key = item
            .key
            .filter(|k| !k.is_empty())
            .ok_or_else(|| ApiError::BadRequest("key is required".into()))?;
        check_text("key", &key, 1, 128, false)?;
        let value = item.value.unwrap_or_default();
        check_value(&value)?;
        entries.insert(key, value);
    }
    set_entries(&cx, id, &entries).await?;
    tracing::info!(ds_id = id, count = entries.len(), "set metadata created");
    Ok(StatusCode::CREATED)
}

async fn one(cx: Ctx, Ids((id, key)): Ids<(i64, String)>) -> ApiResult<Json<Value>> {
    cx.require(READ)?;
    path_key(id, &key)?;
    let find = async |c: &mut PgConnection| {
        any_set(c, cx.tenant(), id).await?;
        Ok::<_, ApiError>(md::TABLE.find(c, cx.tenant(), id, &key).await?)
    };
    cx.get_one(find, || no_entry(id, &key), |m| metadata_json(&m))
        .await
}

/// Sets the key's value, adding the key when the set has none (hawkBit 1.1); 204.
async fn update(
    cx: Ctx,
    Ids((id, key)): Ids<(i64, String)>,
    Body(body): Body<MetadataUpdate>,
) -> ApiResult<StatusCode> {
    cx.require(&[Permission::UPDATE_REPOSITORY])?;
    path_key(id, &key)?;
    let value = body
        .value
        .ok_or_else(|| ApiError::BadRequest("value is required".into()))?;
    check_value(&value)?;
    set_entries(&cx, id, &BTreeMap::from([(key, value)])).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn remove(cx: Ctx, Ids((id, key)): Ids<(i64, String)>) -> ApiResult<StatusCode> {
    cx.require_any(&[Permission::DELETE_REPOSITORY, Permission::UPDATE_REPOSITORY])?;
    path_key(id, &key)?;
    let delete = async |c: &mut PgConnection| {
        live_set(c, cx.tenant(), id).await?;
        Ok(md::TABLE.delete(c, cx.tenant(), id, &key).await?)
    };
    cx.delete_one(delete, || no_entry(id, &key)).await
}
