//! Distribution set tags (`/rest/v1/distributionsettags`, hawkBit's
//! `MgmtDistributionSetTagRestApi`): the tags themselves as target tags are served
//! ([`super::tags`]), and which sets carry them — a page of a tag's sets, tagging one set or a
//! list (bare ids, or `{"id": …}` objects as hawkBit 1.1 sends them; answered with the sets),
//! untagging one set or a list (204).

use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::Value;
use sqlx::PgConnection;

use super::common::{Ctx, Ids, Listed};
use super::repository::sets_json;
use super::tags::{SET, find_tag_of, tag_collection, tag_entity};
use super::{ApiError, ApiResult, ApiState, Body, Page};
use crate::auth::Permission;
use crate::domain::ids::TenantId;
use crate::store::filter::{Entity, Filter};
use crate::store::page::PageRequest;
use crate::store::repository::sets::{self, SetRow};
use crate::store::tags;

const WRITE: &[Permission] = &[Permission::UPDATE_REPOSITORY];

pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/rest/v1/distributionsettags", tag_collection(&SET))
        .route("/rest/v1/distributionsettags/{id}", tag_entity(&SET))
        .route(
            "/rest/v1/distributionsettags/{id}/assigned",
            axum::routing::get(assigned)
                .post(assign)
                .delete(unassign_many),
        )
        .route(
            "/rest/v1/distributionsettags/{id}/assigned/{ds}",
            post(assign_one).delete(unassign_one),
        )
}

/// A set in a request body: its id, or `{"id": …}`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum SetRef {
    Id(i64),
    Object { id: i64 },
}

fn ids_of(body: Vec<SetRef>) -> Vec<i64> {
    let mut ids: Vec<i64> = body
        .into_iter()
        .map(|(SetRef::Id(id) | SetRef::Object { id })| id)
        .collect();
    ids.dedup();
    ids
}

const SETS: Listed = Listed::new(Entity::DistributionSet, &sets::SORT);

/// A page of the sets carrying the tag, rendered with their modules.
async fn assigned(cx: Ctx, Ids(id): Ids<i64>, page: Page) -> ApiResult<Json<Value>> {
    let perms = &[Permission::READ_REPOSITORY];
    let fetch = async |c: &mut PgConnection, tenant, q: Option<&Filter>, page: &PageRequest| {
        find_tag_of(&SET, c, tenant, id).await?;
        let (rows, total) = tags::SET_ASSIGNMENTS
            .members(c, tenant, id, q, page)
            .await?;
        Ok::<_, ApiError>((sets_json(c, tenant, &cx.base, &rows).await?, total))
    };
    cx.list(perms, &page, SETS, fetch, |v| v).await
}

/// The sets of the tenant among `ids`, in request order; 404 naming the first unknown one.
async fn known_sets(c: &mut PgConnection, tenant: TenantId, ids: &[i64]) -> ApiResult<Vec<SetRow>> {
    let found = sets::TABLE.find_many(c, tenant, ids).await?;
    let mut ordered = Vec::with_capacity(ids.len());
    for id in ids {
        match found.iter().find(|s| s.id == *id && !s.deleted) {
            Some(s) => ordered.push(s.clone()),
            None => {
                return Err(ApiError::NotFound(format!(
                    "distribution set {id} not found"
                )));
            }
        }
    }
    Ok(ordered)
}

/// Tag (`link`) or untag the sets `ids` in one transaction; any unknown set: 404 and nothing
/// changes. Returns the sets.
async fn retag(cx: &Ctx, id: i64, ids: &[i64], link: bool) -> ApiResult<Vec<SetRow>> {
    cx.require(WRITE)?;
    let tenant = cx.tenant();
    cx.db()
        .tx(async |tx| {
            find_tag_of(&SET, tx, tenant, id).await?;
            let found = known_sets(tx, tenant, ids).await?;
            let ids: Vec<i64> = found.iter().map(|s| s.id).collect();
            if link {
                tags::SET_ASSIGNMENTS.link(tx, tenant, id, &ids).await?;
            } else {
                tags::SET_ASSIGNMENTS
                    .unlink_many(tx, tenant, id, &ids)
                    .await?;
            }
            Ok(found)
        })
        .await
}

async fn assign(
    cx: Ctx,
    Ids(id): Ids<i64>,
    Body(body): Body<Vec<SetRef>>,
) -> ApiResult<Json<Value>> {
    let tagged = retag(&cx, id, &ids_of(body), true).await?;
    let tenant = cx.tenant();
    let rendered = cx
        .db()
        .run(async |c| sets_json(c, tenant, &cx.base, &tagged).await)
        .await?;
    Ok(Json(Value::Array(rendered)))
}

async fn assign_one(cx: Ctx, Ids((id, ds)): Ids<(i64, i64)>) -> ApiResult<StatusCode> {
    retag(&cx, id, &[ds], true).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn unassign_many(
    cx: Ctx,
    Ids(id): Ids<i64>,
    Body(body): Body<Vec<SetRef>>,
) -> ApiResult<StatusCode> {
    retag(&cx, id, &ids_of(body), false).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn unassign_one(cx: Ctx, Ids((id, ds)): Ids<(i64, i64)>) -> ApiResult<StatusCode> {
    retag(&cx, id, &[ds], false).await?;
    Ok(StatusCode::NO_CONTENT)
}
