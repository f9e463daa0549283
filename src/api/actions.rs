//! Actions of the Management API: a target's actions, one action, its status history, its
//! cancellation, and the tenant's actions (`/rest/v1/actions`).

use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::PgConnection;

use super::common::{Ctx, Ids, Listed, find_target};
use super::{ApiError, ApiResult, ApiState, BaseUrl, Page, paged, put_opt};
use crate::auth::Permission;
use crate::domain::action::{ActionStatus, ActionType};
use crate::domain::ids::ActionId;
use crate::domain::names::Named as _;
use crate::store::actions::{self, ActionView};
use crate::store::filter::{Entity, Filter};
use crate::store::page::PageRequest;
use crate::store::table::RowLock;

pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/rest/v1/targets/{id}/actions", get(target_actions))
        .route(
            "/rest/v1/targets/{id}/actions/{action}",
            get(target_action).delete(cancel),
        )
        .route(
            "/rest/v1/targets/{id}/actions/{action}/status",
            get(history),
        )
        .route("/rest/v1/actions", get(all_actions))
        .route("/rest/v1/actions/{id}", get(action_by_id))
}

const READ: &[Permission] = &[Permission::READ_TARGET];

fn action_json(a: &ActionView, base: &BaseUrl) -> Value {
    let status = ActionStatus::from_db(&a.status).unwrap_or(ActionStatus::Running);
    let ty = ActionType::from_db(&a.action_type).unwrap_or_default();
    let path = format!("/targets/{}/actions/{}", a.controller_id, a.id);
    let mut v = json!({
        "id": a.id,
        "type": if status.is_cancel() { "cancel" } else { "update" },
        "active": a.active, "status": status.api_name(), "forceType": ty.api_name(),
        "weight": a.weight,
        "createdBy": a.audit.created_by, "createdAt": a.audit.created_at,
        "lastModifiedBy": a.audit.last_modified_by, "lastModifiedAt": a.audit.last_modified_at,
        "_links": {
            "self": base.link(&path),
            "target": base.link(&format!("/targets/{}", a.controller_id)),
            "distributionset": base.link(&format!("/distributionsets/{}", a.ds_id)),
            "status": base.link(&format!("{path}/status?offset=0&limit=50&sort=id%3ADESC")),
        }
    });
    if ty == ActionType::TimeForced {
        v["forceTime"] = json!(a.forced_time);
    }
    put_opt(&mut v, "rollout", a.rollout_id);
    put_opt(&mut v, "lastStatusCode", a.last_status_code);
    put_opt(&mut v, "externalRef", a.external_ref.clone());
    if let (Some(s), Some(d), Some(z)) = (&a.mw_schedule, &a.mw_duration, &a.mw_timezone) {
        v["maintenanceWindow"] = json!({"schedule": s, "duration": d, "timezone": z});
    }
    v
}

/// The tenant's actions.
const ACTIONS: Listed = Listed::new(Entity::Action, &actions::SORT);

async fn target_actions(cx: Ctx, Path(id): Path<String>, page: Page) -> ApiResult<Json<Value>> {
    let fetch = async |c: &mut PgConnection, tenant, q: Option<&Filter>, page: &PageRequest| {
        let t = find_target(c, tenant, &id, RowLock::None).await?;
        Ok::<_, ApiError>(actions::list(c, tenant, Some(t.id), q, page).await?)
    };
    cx.list(READ, &page, ACTIONS, fetch, |a| action_json(&a, &cx.base))
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
    Ok(Json(action_json(&a, &cx.base)))
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
    cx.list(READ, &page, ACTIONS, fetch, |a| action_json(&a, &cx.base))
        .await
}

async fn action_by_id(cx: Ctx, Ids(id): Ids<i64>) -> ApiResult<Json<Value>> {
    cx.require(READ)?;
    let id = ActionId(id);
    let find = async |c: &mut PgConnection| actions::view(c, cx.tenant(), id).await;
    cx.get_one(find, || no_action(id), |a| action_json(&a, &cx.base))
        .await
}
