//! Actions of the Management API: a target's actions, one action, its status history, its
//! cancellation, switching it to forced, confirming or denying it, and the tenant's actions
//! (`/rest/v1/actions`); deleting actions by id, by query or of a target (hawkBit master).

use axum::body::Bytes;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::PgConnection;

use super::common::{Ctx, Ids, Listed, find_target};
use super::{ApiError, ApiResult, ApiState, BaseUrl, Body, Page, paged, put_opt};
use crate::auth::Permission;
use crate::domain::action::{ActionStatus, ActionType};
use crate::domain::ids::ActionId;
use crate::domain::maintenance::MaintenanceWindow;
use crate::domain::names::Named as _;
use crate::engine::action_ops::{ActionsToDelete, Feedback};
use crate::store::actions::{self, ActionView};
use crate::store::filter::{Entity, Filter};
use crate::store::page::PageRequest;
use crate::store::table::RowLock;

pub fn router() -> Router<ApiState> {
    Router::new()
        .route(
            "/rest/v1/targets/{id}/actions",
            get(target_actions).delete(delete_of_target),
        )
        .route(
            "/rest/v1/targets/{id}/actions/{action}",
            get(target_action).put(force).delete(cancel),
        )
        .route(
            "/rest/v1/targets/{id}/actions/{action}/status",
            get(history),
        )
        .route(
            "/rest/v1/targets/{id}/actions/{action}/confirmation",
            put(confirmation),
        )
        .route("/rest/v1/actions", get(all_actions).delete(delete_many))
        .route(
            "/rest/v1/actions/{id}",
            get(action_by_id).delete(delete_one),
        )
}

const READ: &[Permission] = &[Permission::READ_TARGET];

/// hawkBit's `MgmtAction`. `full` (a single action, `representation=full`) adds what the
/// compact form leaves out: the names on the `target`, `distributionset` and `rollout` links and
/// the `canceledaction` link of a cancel action.
fn action_json(a: &ActionView, base: &BaseUrl, full: bool) -> Value {
    let status = ActionStatus::from_db(&a.status).unwrap_or(ActionStatus::Running);
    let ty = ActionType::from_db(&a.action_type).unwrap_or_default();
    let path = format!("/targets/{}/actions/{}", a.controller_id, a.id);
    let named = |path: &str, name: String| {
        let mut link = base.link(path);
        if full {
            link["name"] = json!(name);
        }
        link
    };
    let mut v = json!({
        "id": a.id,
        "type": if status.is_cancel() { "cancel" } else { "update" },
        "active": a.active, "status": status.api_name(), "forceType": ty.api_name(),
        "weight": a.weight,
        "createdBy": a.audit.created_by, "createdAt": a.audit.created_at,
        "lastModifiedBy": a.audit.last_modified_by, "lastModifiedAt": a.audit.last_modified_at,
        "_links": {
            "self": base.link(&path),
            "target": named(&format!("/targets/{}", a.controller_id), a.target_name.clone()),
            "distributionset": named(
                &format!("/distributionsets/{}", a.ds_id),
                format!("{}:{}", a.ds_name, a.ds_version),
            ),
            "status": base.link(&format!("{path}/status?offset=0&limit=50&sort=id%3ADESC")),
        }
    });
    if ty == ActionType::TimeForced {
        v["forceTime"] = json!(a.forced_time);
    }
    put_opt(&mut v, "rollout", a.rollout_id);
    put_opt(&mut v, "rolloutName", a.rollout_name.clone());
    if let Some(r) = a.rollout_id {
        let name = a.rollout_name.clone().unwrap_or_default();
        v["_links"]["rollout"] = named(&format!("/rollouts/{r}"), name);
    }
    if full && status.is_cancel() {
        v["_links"]["canceledaction"] = base.link(&path);
    }
    put_opt(&mut v, "lastStatusCode", a.last_status_code);
    put_opt(&mut v, "externalRef", a.external_ref.clone());
    if let (Some(s), Some(d), Some(z)) = (&a.mw_schedule, &a.mw_duration, &a.mw_timezone) {
        let mut w = json!({"schedule": s, "duration": d, "timezone": z});
        let next = MaintenanceWindow::parse(s, d, z)
            .ok()
            .and_then(|w| w.next_start(now_ms()));
        put_opt(&mut w, "nextStartAt", next);
        v["maintenanceWindow"] = w;
    }
    v
}

/// The wall clock (epoch ms), for a window's next start.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The tenant's actions.
const ACTIONS: Listed = Listed::new(Entity::Action, &actions::SORT);

async fn target_actions(cx: Ctx, Ids(id): Ids<String>, page: Page) -> ApiResult<Json<Value>> {
    let fetch = async |c: &mut PgConnection, tenant, q: Option<&Filter>, page: &PageRequest| {
        let t = find_target(c, tenant, &id, RowLock::None).await?;
        Ok::<_, ApiError>(actions::list(c, tenant, Some(t.id), q, page).await?)
    };
    let full = page.full();
    cx.list(READ, &page, ACTIONS, fetch, |a| {
        action_json(&a, &cx.base, full)
    })
    .await
}

/// Action `id` of target `target`, or 404.
async fn find_action(cx: &Ctx, target: &str, id: ActionId) -> ApiResult<ActionView> {
    cx.db()
        .run(async |c| actions::view(c, cx.tenant(), id).await)
        .await?
        .filter(|a| a.controller_id == target)
        .ok_or_else(|| no_action(id))
}

fn no_action(id: ActionId) -> ApiError {
    ApiError::NotFound(format!("action {id} not found"))
}

async fn target_action(cx: Ctx, Ids((id, action)): Ids<(String, i64)>) -> ApiResult<Json<Value>> {
    cx.require(READ)?;
    let a = find_action(&cx, &id, ActionId(action)).await?;
    Ok(Json(action_json(&a, &cx.base, true)))
}

#[derive(Deserialize, Default)]
struct CancelParams {
    force: Option<bool>,
}

async fn cancel(
    cx: Ctx,
    Ids((id, action)): Ids<(String, i64)>,
    Query(p): Query<CancelParams>,
) -> ApiResult<StatusCode> {
    cx.require(&[Permission::UPDATE_TARGET])?;
    let force = p.force.unwrap_or(false);
    cx.state
        .engine
        .cancel_action(cx.tenant(), &id, ActionId(action), force, cx.caller.name())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn history(
    cx: Ctx,
    Ids((id, action)): Ids<(String, i64)>,
    page: Page,
) -> ApiResult<Json<Value>> {
    cx.require(READ)?;
    let a = find_action(&cx, &id, ActionId(action)).await?;
    let ascending = page
        .sort
        .as_deref()
        .is_some_and(|s| s.to_ascii_uppercase().ends_with(":ASC"));
    let (offset, limit) = (page.offset(), page.limit());
    let (rows, total) = cx
        .db()
        .run(async |c| actions::history(c, a.id, ascending, offset, limit).await)
        .await?;
    let content = rows
        .iter()
        .map(|h| {
            let mut v = json!({"id": h.id, "type": h.status.to_ascii_lowercase(), "messages": h.messages.0,
                "reportedAt": h.occurred_at, "timestamp": h.occurred_at});
            put_opt(&mut v, "code", h.code);
            v
        })
        .collect();
    Ok(Json(paged(content, total)))
}

async fn all_actions(cx: Ctx, page: Page) -> ApiResult<Json<Value>> {
    let fetch = async |c: &mut PgConnection, tenant, q: Option<&Filter>, page: &PageRequest| {
        actions::list(c, tenant, None, q, page).await
    };
    let full = page.full();
    cx.list(READ, &page, ACTIONS, fetch, |a| {
        action_json(&a, &cx.base, full)
    })
    .await
}

async fn action_by_id(cx: Ctx, Ids(id): Ids<i64>) -> ApiResult<Json<Value>> {
    cx.require(READ)?;
    let id = ActionId(id);
    let find = async |c: &mut PgConnection| actions::view(c, cx.tenant(), id).await;
    cx.get_one(find, || no_action(id), |a| action_json(&a, &cx.base, true))
        .await
}

// ---------------------------------------------------------------------------------------------
// Changing and deleting actions

/// Deleting actions needs what hawkBit's `DeploymentManagement` enforces (not what its API
/// description says).
const DELETE: &[Permission] = &[Permission::UPDATE_TARGET];

/// A list of action ids in an optional body (`DELETE` with `[1, 2]`); empty without one.
fn optional_ids(body: &Bytes) -> ApiResult<Vec<ActionId>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = serde_json::from_slice(body)
        .map_err(|e| ApiError::NotReadable(format!("request body is not readable: {e}")))?;
    Ok(ids.into_iter().map(ActionId).collect())
}

async fn delete_actions(cx: &Ctx, what: ActionsToDelete) -> ApiResult<StatusCode> {
    cx.require(DELETE)?;
    cx.state.engine.delete_actions(cx.tenant(), what).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete_one(cx: Ctx, Ids(id): Ids<i64>) -> ApiResult<StatusCode> {
    delete_actions(&cx, ActionsToDelete::One(ActionId(id))).await
}

/// `DELETE /actions?q=…` or with a list of ids: exactly one of them (hawkBit: 400 otherwise).
async fn delete_many(cx: Ctx, page: Page, body: Bytes) -> ApiResult<StatusCode> {
    cx.require(DELETE)?;
    let ids = optional_ids(&body)?;
    let q = page.filter(Entity::Action)?;
    let what = match (q, ids.is_empty()) {
        (Some(_), false) => return Err(only_one()),
        (Some(f), true) => ActionsToDelete::Query(f),
        (None, false) => ActionsToDelete::Ids(ids),
        (None, true) => {
            return Err(ApiError::NotReadable(
                "either an action id list or an rsql filter must be given".into(),
            ));
        }
    };
    delete_actions(&cx, what).await
}

fn only_one() -> ApiError {
    ApiError::NotReadable("only one of the parameters may be given".into())
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct KeepParams {
    keep_last: Option<String>,
}

/// `DELETE /targets/{id}/actions?keepLast=n` (all but the newest n, skipping those that may not
/// be deleted) or with a list of ids (all or none), as hawkBit master.
async fn delete_of_target(
    cx: Ctx,
    Ids(controller_id): Ids<String>,
    Query(p): Query<KeepParams>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    cx.require(DELETE)?;
    let keep_last = match p.keep_last.as_deref().map(str::trim) {
        None => -1,
        Some(k) => k
            .parse::<i64>()
            .map_err(|_| ApiError::NotReadable(format!("keepLast {k:?} is not a number")))?,
    };
    let ids = optional_ids(&body)?;
    let what = match (keep_last >= 0, ids.is_empty()) {
        (true, false) => return Err(only_one()),
        (false, false) => ActionsToDelete::OfTarget { controller_id, ids },
        (true, true) => ActionsToDelete::AllButNewest {
            controller_id,
            keep_last,
        },
        (false, true) => {
            return Err(ApiError::NotReadable(
                "either keepLast or an action id list must be given".into(),
            ));
        }
    };
    delete_actions(&cx, what).await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ActionPut {
    force_type: Option<String>,
}

/// `PUT /targets/{id}/actions/{action}` with `{"forceType": "forced"}`: a soft action becomes
/// forced; any other `forceType` is refused (400, hawkBit's "supports only switch to FORCED").
async fn force(
    cx: Ctx,
    Ids((id, action)): Ids<(String, i64)>,
    Body(body): Body<ActionPut>,
) -> ApiResult<Json<Value>> {
    cx.require(&[Permission::UPDATE_REPOSITORY])?;
    let wanted = body.force_type.as_deref().map(ActionType::from_api);
    if wanted != Some(Some(ActionType::Forced)) {
        return Err(ApiError::BadRequest(
            "Resource supports only switch to FORCED.".into(),
        ));
    }
    let action = ActionId(action);
    let engine = &cx.state.engine;
    engine
        .force_action(cx.tenant(), &id, action, cx.caller.name())
        .await?;
    let a = find_action(&cx, &id, action).await?;
    Ok(Json(action_json(&a, &cx.base, true)))
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum Confirmation {
    Confirmed,
    Denied,
}

#[derive(Deserialize)]
struct ConfirmationPut {
    confirmation: Confirmation,
    code: Option<i32>,
    details: Option<Vec<String>>,
}

/// `PUT /targets/{id}/actions/{action}/confirmation`: 204 once confirmed (the device is sent
/// the action) or denied; a closed action answers 410 and one that does not wait for
/// confirmation 404, both without a body (hawkBit).
async fn confirmation(
    cx: Ctx,
    Ids((id, action)): Ids<(String, i64)>,
    Body(body): Body<ConfirmationPut>,
) -> ApiResult<StatusCode> {
    cx.require(&[Permission::READ_REPOSITORY, Permission::UPDATE_TARGET])?;
    let confirm = matches!(body.confirmation, Confirmation::Confirmed);
    let details = body.details.unwrap_or_default();
    let engine = &cx.state.engine;
    let outcome = engine
        .confirm_action(
            cx.tenant(),
            &id,
            ActionId(action),
            confirm,
            body.code,
            details,
        )
        .await?;
    Ok(match outcome {
        Feedback::Applied => StatusCode::NO_CONTENT,
        Feedback::Closed => StatusCode::GONE,
        Feedback::NotWaiting => StatusCode::NOT_FOUND,
    })
}
