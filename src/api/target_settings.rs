//! A target's type and automatic confirmation as sub-resources (hawkBit master's
//! `MgmtTargetRestApi`): `POST|DELETE /targets/{id}/targettype`, `GET /targets/{id}/autoConfirm`,
//! `POST …/autoConfirm/activate|deactivate`. All answer 204 on a change.

use axum::body::Bytes;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::common::{Ctx, READ_TARGET, find_target};
use super::{ApiError, ApiResult, ApiState, BaseUrl, Body, put_opt};
use crate::auth::Permission;
use crate::domain::ids::TargetId;
use crate::store::table::RowLock;
use crate::store::targets::{self, TargetRow, TargetUpdate};

pub fn router() -> Router<ApiState> {
    Router::new()
        .route(
            "/rest/v1/targets/{id}/targettype",
            post(assign_type).delete(unassign_type),
        )
        .route("/rest/v1/targets/{id}/autoConfirm", get(auto_confirm))
        .route("/rest/v1/targets/{id}/autoConfirm/activate", post(activate))
        .route(
            "/rest/v1/targets/{id}/autoConfirm/deactivate",
            post(deactivate),
        )
}

/// hawkBit's `MgmtId`.
#[derive(Deserialize)]
struct TypeRef {
    id: Option<i64>,
}

/// Set (`Some`) or clear the target's type, then let the auto-assignments it now matches (or
/// is now compatible with) assign it.
async fn set_type(cx: &Ctx, controller_id: &str, type_id: Option<i64>) -> ApiResult<StatusCode> {
    cx.require(&[Permission::UPDATE_TARGET])?;
    let (tenant, user) = (cx.tenant(), cx.caller.name());
    let id = cx
        .db()
        .tx(async |tx| {
            let t = find_target(tx, tenant, controller_id, RowLock::ForUpdate).await?;
            if let Some(tt) = type_id
                && !targets::target_type_exists(tx, tenant, tt).await?
            {
                return Err(ApiError::NotFound(format!("target type {tt} not found")));
            }
            let u = TargetUpdate {
                target_type_id: Some(type_id),
                ..TargetUpdate::default()
            };
            targets::update(tx, TargetId(t.id), &u, user).await?;
            Ok(t.id)
        })
        .await?;
    cx.state.engine.auto_assign_changed(tenant, &[id]).await;
    Ok(StatusCode::NO_CONTENT)
}

async fn assign_type(
    cx: Ctx,
    Path(id): Path<String>,
    Body(b): Body<TypeRef>,
) -> ApiResult<StatusCode> {
    let type_id =
        b.id.ok_or_else(|| ApiError::BadRequest("id (of the target type) is required".into()))?;
    set_type(&cx, &id, Some(type_id)).await
}

async fn unassign_type(cx: Ctx, Path(id): Path<String>) -> ApiResult<StatusCode> {
    set_type(&cx, &id, None).await
}

/// hawkBit's `MgmtTargetAutoConfirm`, with the link that switches it the other way.
fn auto_confirm_json(base: &BaseUrl, t: &TargetRow) -> Value {
    let path = format!("/targets/{}/autoConfirm", t.controller_id);
    match t.auto_confirm_at {
        Some(at) => {
            let mut v = json!({"active": true, "activatedAt": at,
                "_links": {"deactivate": base.link(&format!("{path}/deactivate"))}});
            put_opt(&mut v, "initiator", t.auto_confirm_initiator.as_deref());
            put_opt(&mut v, "remark", t.auto_confirm_remark.as_deref());
            v
        }
        None => json!({"active": false,
            "_links": {"activate": base.link(&format!("{path}/activate"))}}),
    }
}

async fn auto_confirm(cx: Ctx, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    cx.require(READ_TARGET)?;
    let tenant = cx.tenant();
    let t = cx
        .db()
        .run(async |c| find_target(c, tenant, &id, RowLock::None).await)
        .await?;
    Ok(Json(auto_confirm_json(&cx.base, &t)))
}

/// hawkBit's `MgmtTargetAutoConfirmUpdate`; the body may be absent.
#[derive(Deserialize, Default)]
struct ActivateBody {
    initiator: Option<String>,
    remark: Option<String>,
}

async fn activate(cx: Ctx, Path(id): Path<String>, body: Bytes) -> ApiResult<StatusCode> {
    cx.require(&[Permission::UPDATE_TARGET])?;
    let b: ActivateBody = if body.iter().all(u8::is_ascii_whitespace) {
        ActivateBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::NotReadable(e.to_string()))?
    };
    let initiator = b.initiator.unwrap_or_default();
    let remark = b.remark.unwrap_or_default();
    for (field, v) in [("initiator", &initiator), ("remark", &remark)] {
        super::common::check_text(field, v, 0, 255, true)?;
    }
    cx.state
        .engine
        .set_auto_confirm(
            cx.tenant(),
            &id,
            Some((&initiator, &remark)),
            cx.caller.name(),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn deactivate(cx: Ctx, Path(id): Path<String>) -> ApiResult<StatusCode> {
    cx.require(&[Permission::UPDATE_TARGET])?;
    cx.state
        .engine
        .set_auto_confirm(cx.tenant(), &id, None, cx.caller.name())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
