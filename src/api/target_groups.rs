//! Target groups as hawkBit master's `MgmtTargetGroupRestApi` serves them: a group is the
//! `group` text of targets (`Europe/East` is the subgroup `East` of `Europe`), so it exists while
//! a target is in it. Groups are listed, their targets read (with or without subgroups), and
//! targets put into a group or out of theirs by controllerIds or by an RSQL filter, each change
//! in one statement.

use axum::body::Bytes;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::Value;
use sqlx::PgConnection;

use super::common::{Ctx, Listed, READ_TARGET, check_text};
use super::targets::target_json;
use super::{ApiError, ApiResult, ApiState, Body, Page};
use crate::auth::Permission;
use crate::store::filter::{Entity, Filter};
use crate::store::page::PageRequest;
use crate::store::targets::{self, GroupMembers};

pub fn router() -> Router<ApiState> {
    Router::new()
        .route(
            "/rest/v1/targetgroups",
            get(list_groups)
                .put(assign_matching)
                .delete(unassign_matching),
        )
        .route(
            "/rest/v1/targetgroups/assigned",
            get(targets_of_filter).put(assign_ids).delete(unassign_ids),
        )
        .route("/rest/v1/targetgroups/{group}", put(assign_matching_to))
        .route(
            "/rest/v1/targetgroups/{group}/assigned",
            get(targets_of).put(assign_ids_to),
        )
}

const TARGETS: Listed = Listed::new(Entity::Target, &targets::SORT);

const UPDATE: &[Permission] = &[Permission::UPDATE_TARGET];

/// `group`, `subgroups` and `q` of the query string.
#[derive(Deserialize, Default)]
struct GroupParams {
    group: Option<String>,
    #[serde(default)]
    subgroups: bool,
    q: Option<String>,
}

impl GroupParams {
    /// The `group` parameter, required.
    fn group(&self) -> ApiResult<&str> {
        let group = self
            .group
            .as_deref()
            .ok_or_else(|| ApiError::BadRequest("the group parameter is required".into()))?;
        checked(group)
    }

    /// The `q` filter over targets; `required` answers 400 without one.
    fn filter(&self, required: bool) -> ApiResult<Option<Filter>> {
        match self.q.as_deref().filter(|q| !q.trim().is_empty()) {
            Some(q) => Ok(Some(Filter::parse(Entity::Target, q)?)),
            None if required => Err(ApiError::BadRequest("the q parameter is required".into())),
            None => Ok(None),
        }
    }
}

/// A group as the target column holds it: 1 to 256 characters, no control characters.
fn checked(group: &str) -> ApiResult<&str> {
    check_text("group", group, 1, 256, false)?;
    Ok(group)
}

async fn list_groups(cx: Ctx) -> ApiResult<Json<Value>> {
    cx.require(READ_TARGET)?;
    let tenant = cx.tenant();
    let groups = cx
        .db()
        .run(async |c| targets::groups(c, tenant).await)
        .await?;
    Ok(Json(groups.into()))
}

/// A page of the targets of `group` (and its subgroups).
async fn list_members(cx: Ctx, group: &str, subgroups: bool, page: Page) -> ApiResult<Json<Value>> {
    let fetch = async |c: &mut PgConnection, t, q: Option<&Filter>, p: &PageRequest| {
        targets::in_group(c, t, group, subgroups, q, p).await
    };
    cx.list(READ_TARGET, &page, TARGETS, fetch, |t| {
        target_json(&t, &cx.base, &cx.caller)
    })
    .await
}

async fn targets_of(cx: Ctx, Path(group): Path<String>, page: Page) -> ApiResult<Json<Value>> {
    list_members(cx, &group, false, page).await
}

async fn targets_of_filter(
    cx: Ctx,
    Query(p): Query<GroupParams>,
    page: Page,
) -> ApiResult<Json<Value>> {
    let group = p.group()?;
    list_members(cx, group, p.subgroups, page).await
}

/// Put the targets `members` names into `group` (`None`: out of theirs); 204. Targets that
/// changed are offered to the running auto-assignments, whose filters may name the group.
async fn regroup(
    cx: &Ctx,
    group: Option<&str>,
    members: GroupMembers<'_>,
) -> ApiResult<StatusCode> {
    cx.require(UPDATE)?;
    let (tenant, user) = (cx.tenant(), cx.caller.name());
    let changed = cx
        .db()
        .tx(async |tx| targets::set_group(tx, tenant, group, members, user).await)
        .await?;
    cx.state.engine.auto_assign_changed(tenant, &changed).await;
    Ok(StatusCode::NO_CONTENT)
}

async fn assign_ids(
    cx: Ctx,
    Query(p): Query<GroupParams>,
    Body(ids): Body<Vec<String>>,
) -> ApiResult<StatusCode> {
    regroup(&cx, Some(p.group()?), GroupMembers::Ids(&ids)).await
}

async fn assign_ids_to(
    cx: Ctx,
    Path(group): Path<String>,
    Body(ids): Body<Vec<String>>,
) -> ApiResult<StatusCode> {
    regroup(&cx, Some(checked(&group)?), GroupMembers::Ids(&ids)).await
}

async fn assign_matching(cx: Ctx, Query(p): Query<GroupParams>) -> ApiResult<StatusCode> {
    let q = p.filter(true)?;
    regroup(&cx, Some(p.group()?), GroupMembers::Matching(q.as_ref())).await
}

async fn assign_matching_to(
    cx: Ctx,
    Path(group): Path<String>,
    Query(p): Query<GroupParams>,
) -> ApiResult<StatusCode> {
    let q = p.filter(true)?;
    regroup(
        &cx,
        Some(checked(&group)?),
        GroupMembers::Matching(q.as_ref()),
    )
    .await
}

/// The body is optional: without one no target changes.
async fn unassign_ids(cx: Ctx, body: Bytes) -> ApiResult<StatusCode> {
    let ids: Vec<String> = if body.iter().all(u8::is_ascii_whitespace) {
        Vec::new()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::NotReadable(format!("request body is not readable: {e}")))?
    };
    regroup(&cx, None, GroupMembers::Ids(&ids)).await
}

/// Without `q`, every target of the tenant leaves its group.
async fn unassign_matching(cx: Ctx, Query(p): Query<GroupParams>) -> ApiResult<StatusCode> {
    let q = p.filter(false)?;
    regroup(&cx, None, GroupMembers::Matching(q.as_ref())).await
}
