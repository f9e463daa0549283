//! Parked outbox rows (`/rest/v1/system/outbox/parked`): messages the broker refused
//! deterministically (a missing connector exchange, repeated refusals while the connection
//! stayed up), set aside by the publisher instead of dropped. An operator lists a tenant's,
//! requeues them (rendered anew, so a deployment says what the action is now) or discards them.

use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::routing::{delete, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::common::Ctx;
use super::{ApiError, ApiResult, ApiState, PageParams, paged};
use crate::auth::Permission;
use crate::store::outbox::{self, ParkedRow};

pub(super) fn router() -> Router<ApiState> {
    Router::new()
        .route(
            "/rest/v1/system/outbox/parked",
            delete(discard_all).get(list),
        )
        .route("/rest/v1/system/outbox/parked/requeue", post(requeue_all))
        .route("/rest/v1/system/outbox/parked/{id}", delete(discard))
        .route("/rest/v1/system/outbox/parked/{id}/requeue", post(requeue))
}

/// Whoever may change the tenant's configuration looks after its undeliverable messages.
const PERMS: &[Permission] = &[Permission::TENANT_CONFIGURATION];

fn parked_json(p: ParkedRow) -> Value {
    json!({
        "id": p.id,
        "kind": p.kind,
        "actionId": p.action_id,
        "targetId": p.target_id,
        "exchange": p.target_exchange,
        "thingId": p.thing_id,
        "topic": p.topic,
        "reason": p.reason,
        "refusals": p.attempts,
        "createdAt": p.created_at,
        "parkedAt": p.parked_at,
    })
}

async fn list(cx: Ctx, Query(page): Query<PageParams>) -> ApiResult<Json<Value>> {
    cx.require(PERMS)?;
    let tenant = cx.tenant();
    let (rows, total) = cx
        .db()
        .run(async |c| outbox::parked(c, tenant, page.offset(), page.limit()).await)
        .await?;
    Ok(Json(paged(
        rows.into_iter().map(parked_json).collect(),
        total,
    )))
}

/// Requeue or discard the tenant's parked rows (all, or one: 404 when it has no such row).
async fn release(cx: &Ctx, id: Option<i64>, requeue: bool) -> ApiResult<u64> {
    cx.require(PERMS)?;
    let tenant = cx.tenant();
    let ids = id.map(|i| vec![i]);
    let n = cx
        .db()
        .run(async |c| outbox::release_parked(c, tenant, ids.as_deref(), requeue).await)
        .await?;
    if requeue && n > 0 {
        cx.state.engine.outbox_wake().notify_one();
    }
    match id {
        Some(id) if n == 0 => Err(ApiError::NotFound(format!(
            "parked outbox row {id} not found"
        ))),
        _ => Ok(n),
    }
}

async fn requeue_all(cx: Ctx) -> ApiResult<Json<Value>> {
    let n = release(&cx, None, true).await?;
    Ok(Json(json!({"requeued": n})))
}

async fn requeue(cx: Ctx, Path(id): Path<i64>) -> ApiResult<Json<Value>> {
    let n = release(&cx, Some(id), true).await?;
    Ok(Json(json!({"requeued": n})))
}

async fn discard_all(cx: Ctx) -> ApiResult<StatusCode> {
    release(&cx, None, false).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn discard(cx: Ctx, Path(id): Path<i64>) -> ApiResult<StatusCode> {
    release(&cx, Some(id), false).await?;
    Ok(StatusCode::NO_CONTENT)
}
